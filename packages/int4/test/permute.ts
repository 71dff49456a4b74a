// A literal N-d reshape/permute (like torch's .view(shape).permute(perm).contiguous()), for transcribing
// the reference packers' steps in tests independently of the closed-form index functions in src/.
export function permute(data: ArrayLike<number>, shape: readonly number[], perm: readonly number[]): number[] {
  const n = shape.reduce((a, b) => a * b, 1);
  if (n !== data.length) throw new Error(`permute: ${data.length} values do not fit [${shape}]`);
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const outShape = perm.map((p) => shape[p]!);
  const out = new Array<number>(n);
  const idx = new Array<number>(outShape.length).fill(0);
  for (let o = 0; o < n; o++) {
    let src = 0;
    for (let j = 0; j < idx.length; j++) src += idx[j]! * strides[perm[j]!]!;
    out[o] = data[src]!;
    for (let j = idx.length - 1; j >= 0; j--) {
      if (++idx[j]! < outShape[j]!) break;
      idx[j] = 0;
    }
  }
  return out;
}
