/** GELU after a linear layer: fused through the layer's own `forwardGelu` / `forwardPreparedGelu` where it has them. */
import { describe, expect, it } from "vitest";
import { forwardShared, type LinearLayer, linearGelu } from "../src/index.ts";
import { geluTanhInPlace } from "../src/ops.ts";

/** Y = 2·X (K = N = 2); its fused variants add 100 after GELU so the test can tell which path ran. */
function layer(fused: boolean, key?: string): LinearLayer & { calls: string[] } {
  const calls: string[] = [];
  const run = <T>(what: string, f: () => T): T => {
    calls.push(what);
    return f();
  };
  const base = (x: Float32Array) => x.map((v) => 2 * v);
  const geluPlus = (x: Float32Array) => geluTanhInPlace(base(x)).map((v) => v + 100);
  const l: LinearLayer & { calls: string[] } = {
    name: "l",
    inFeatures: 2,
    outFeatures: 2,
    kind: "test",
    calls,
    forward: (x) => run("forward", () => base(x)),
  };
  if (key !== undefined) {
    Object.assign(l, {
      inputKey: key,
      prepareInput: (x: Float32Array) => run("prepareInput", () => x),
      forwardPrepared: (p: unknown) => run("forwardPrepared", () => base(p as Float32Array)),
    });
  }
  if (fused) {
    l.forwardGelu = (x) => run("forwardGelu", () => geluPlus(x));
    if (key !== undefined) l.forwardPreparedGelu = (p) => run("forwardPreparedGelu", () => geluPlus(p as Float32Array));
  }
  return l;
}

const x = Float32Array.from([0.3, -1.7]);
const gelu = geluTanhInPlace(x.map((v) => 2 * v));

describe("linearGelu / forwardShared with GELU", () => {
  it("uses forwardGelu where the layer has it, else GELU after forward", () => {
    const f = layer(true);
    expect(Array.from(linearGelu(f, x, 1))).toEqual(Array.from(gelu.map((v) => v + 100)));
    expect(f.calls).toEqual(["forwardGelu"]);
    const p = layer(false);
    expect(Array.from(linearGelu(p, x, 1))).toEqual(Array.from(gelu));
    expect(p.calls).toEqual(["forward"]);
  });

  it("a shared input group runs forwardPreparedGelu for a GELU layer that has it, forwardPrepared otherwise", () => {
    const a = layer(true, "k");
    const b = layer(true, "k");
    const c = layer(false, "k");
    const [ya, yb, yc] = forwardShared([a, b, c], x, 1, [false, true, true]);
    expect(Array.from(ya!)).toEqual(Array.from(x.map((v) => 2 * v)));
    expect(Array.from(yb!)).toEqual(Array.from(gelu.map((v) => v + 100)));
    expect(Array.from(yc!)).toEqual(Array.from(gelu));
    expect([a.calls, b.calls, c.calls]).toEqual([
      ["prepareInput", "forwardPrepared"],
      ["forwardPreparedGelu"],
      ["forwardPrepared"],
    ]);
  });
});
