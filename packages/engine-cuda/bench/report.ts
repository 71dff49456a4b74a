// What the engine's device scripts (device-run.ts for FLUX, pixart-run.ts for PixArt) share: the check runner
// (a PASS/FAIL line per check, the summary, every row as JSON), the timing of an engine's step with the common
// columns of a bench row, the per-op breakdown of a profiled step, and the reading of a diffusers peer's output file
// (tools/engine/*_diffusers.py).
import { readFileSync, writeFileSync } from "node:fs";
import type { EngineMemory, OpTime } from "../src/index.js";
import { bf16ToF32, type CheckResult, checkLine } from "../test/helpers.js";

/** Runs checks one by one; a check that throws is a failed row with its stack printed. */
export class CheckRun {
  readonly rows: CheckResult[] = [];

  async run(name: string, f: () => CheckResult | CheckResult[] | Promise<CheckResult | CheckResult[]>): Promise<void> {
    const t0 = Date.now();
    try {
      const r = await f();
      for (const x of Array.isArray(r) ? r : [r]) {
        this.rows.push(x);
        console.log(checkLine(x, Date.now() - t0));
      }
    } catch (e) {
      this.rows.push({ name, relL2: Number.NaN, relMax: Number.NaN, tol: 0, ok: false });
      console.log(`FAIL ${name}: ${(e as Error).stack ?? e}`);
    }
  }

  /** Prints how many passed, writes every row to `file`; true when all passed. */
  finish(file: string): boolean {
    console.log(`${this.rows.filter((r) => r.ok).length}/${this.rows.length} checks passed`);
    writeFileSync(file, JSON.stringify(this.rows, null, 1));
    return this.rows.every((r) => r.ok);
  }
}

/** The per-op breakdown of one profiled step, slowest first (sorts `prof`). */
export function printProfile(prof: OpTime[], label: string): OpTime[] {
  prof.sort((a, b) => b.ms - a.ms);
  const total = prof.reduce((a, p) => a + p.ms, 0);
  console.log(`per-op breakdown (${label}, one profiled step, ${total.toFixed(1)} ms with events):`);
  for (const p of prof)
    console.log(
      `  ${p.op.padEnd(30)} ${p.ms.toFixed(2).padStart(9)} ms ${((100 * p.ms) / total).toFixed(1).padStart(5)}%  x${p.count}`,
    );
  return prof;
}

/** A peer's raw output file: bf16 bit patterns or float32 values (little-endian), as float32. */
export function readPeerOutput(file: string, dtype: "bf16" | "f32"): Float32Array {
  const b = readFileSync(file);
  const bytes = b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  return dtype === "f32" ? new Float32Array(bytes) : bf16ToF32(new Uint16Array(bytes));
}

/** What benchSteps needs of an engine (FluxEngine and PixArtEngine, inputs set). */
export interface BenchEngine {
  readonly raw: { synchronize(): void };
  run(opts?: { profile?: boolean; graph?: boolean }): void;
  timeSteps(iterations: number, graph?: boolean): number;
  profile(): OpTime[];
  memory(): EngineMemory;
}

const GiB = 2 ** 30;

/**
 * One step as a CUDA graph — the engine's first step, as a user who only replays graphs runs it (eager when capture
 * fails) — whose output `output` reads; then step ms: the best of two timings of `iters` steps, eager and graph
 * replays (NaN when capture fails), one eager step whose output must equal the graph's bit for bit
 * (`graphEqualsEager`), a profiled step and the engine's memory. Returns the output, the profile and the columns
 * every bench row has.
 */
export function benchSteps(
  e: BenchEngine,
  iters: number,
  output: () => Float32Array,
  engine: string,
  initMs: number,
): { out: Float32Array; prof: OpTime[]; row: Record<string, unknown> } {
  let captured = true;
  try {
    e.run({ graph: true });
  } catch (err) {
    console.log(`graph capture failed: ${(err as Error).message}`);
    captured = false;
    e.run();
  }
  e.raw.synchronize();
  const out = output();
  const eager = [e.timeSteps(iters, false), e.timeSteps(iters, false)];
  const graph = captured ? [e.timeSteps(iters, true), e.timeSteps(iters, true)] : [Number.NaN];
  e.run();
  e.raw.synchronize();
  const again = output();
  const graphEqualsEager = captured ? again.every((v, i) => Object.is(v, out[i])) : null;
  e.run({ profile: true });
  const prof = e.profile();
  const mem = e.memory();
  const row: Record<string, unknown> = {
    engine,
    weightsGiB: mem.weights / GiB,
    engineBytesGiB: mem.peak / GiB,
    deviceUsedGiB: (mem.deviceTotal - mem.deviceFree) / GiB,
    stepMsEager: Math.min(...eager),
    stepMsGraph: Math.min(...graph),
    graphEqualsEager,
    initMs,
    finite: out.every(Number.isFinite),
  };
  return { out, prof, row };
}
