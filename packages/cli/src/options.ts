import { InvalidArgumentError } from "commander";

/** A commander parser for an integer option in [lo, hi]; `what` says what the bound is (e.g. "the cores available"). */
export function intIn(lo: number, hi: number, what?: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi)
      throw new InvalidArgumentError(`expected an integer from ${lo} to ${hi}${what ? ` (${what})` : ""}, got "${v}"`);
    return n;
  };
}
