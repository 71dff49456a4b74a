/**
 * Numeric helpers that reproduce the array semantics of the Python references (numpy float64, torch float32)
 * so schedules computed here equal diffusers' bit for bit or within one float32 rounding.
 */

export const f32 = Math.fround;

/**
 * numpy.linspace(start, stop, num) in float64: y[i] = i·step + start with step = (stop − start)/(num − 1),
 * the last value set to `stop` exactly (numpy's endpoint rule).
 */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const y = new Float64Array(num);
  if (num === 1) {
    y[0] = start;
    return y;
  }
  const step = (stop - start) / (num - 1);
  for (let i = 0; i < num; i++) y[i] = i * step + start;
  y[num - 1] = stop;
  return y;
}

/** numpy.round / rint: round half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** numpy.arange(start, stop, step) for a float step: ceil((stop − start)/step) values start + i·step. */
export function arange(start: number, stop: number, step: number): Float64Array {
  const n = Math.max(0, Math.ceil((stop - start) / step));
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) y[i] = start + i * step;
  return y;
}

/**
 * torch.linspace(start, end, steps, dtype=float32) on the CPU: step = (end − start)/(steps − 1) in float32,
 * the first half counted up from `start`, the second half down from `end` (ATen's linspace kernel), each value
 * rounded once (the kernel's start + step·idx contracts to a fused multiply-add; here the float64 product and sum
 * of float32 operands and an index < 2^24 are exact, so one Math.fround gives the same value — verified against
 * torch 2.11's DPMSolverMultistepScheduler alphas_cumprod: 0 ulps, vs 2 with two roundings).
 */
export function torchLinspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  const s = f32(start);
  const e = f32(end);
  const step = f32(f32(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) out[i] = i < half ? f32(s + step * i) : f32(e - step * (steps - i - 1));
  return out;
}
