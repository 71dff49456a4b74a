/** Does a metric rise along a claimed order? Pairs of neighbours that break it, and Kendall's τ of value vs position. */
export interface OrderCheck {
  readonly holds: boolean;
  /** neighbours (a before b in the claimed order) where b is not better than a */
  readonly violations: { a: string; b: string; va: number; vb: number }[];
  /** Kendall's τ-a between claimed position and the metric (1 = the order holds exactly, −1 = reversed) */
  readonly kendallTau: number;
}

export function checkOrder(names: readonly string[], values: readonly number[]): OrderCheck {
  const violations: OrderCheck["violations"] = [];
  for (let i = 0; i + 1 < values.length; i++)
    if (!(values[i + 1]! > values[i]!))
      violations.push({ a: names[i]!, b: names[i + 1]!, va: values[i]!, vb: values[i + 1]! });
  let s = 0;
  let pairs = 0;
  for (let i = 0; i < values.length; i++)
    for (let j = i + 1; j < values.length; j++) {
      s += Math.sign(values[j]! - values[i]!);
      pairs++;
    }
  return { holds: violations.length === 0, violations, kendallTau: pairs > 0 ? s / pairs : 1 };
}
