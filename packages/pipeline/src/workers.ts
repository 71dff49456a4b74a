/**
 * A pool of worker threads that quantize groups of W4A4 units in parallel (the layers of a block are
 * independent). Results do not depend on the pool size: every group is seeded and results keep their order.
 * `threads` 1 runs in the calling thread.
 */
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { QuantizedLinear } from "@svdquant/int4";
import type { Calibration } from "@svdquant/quantizer";
import type { QuantizeConfig } from "./config.js";
import { PipelineError, type PipelineErrorCode } from "./errors.js";
import type { UnitSpec } from "./layout.js";
import { type LayerReport, quantizeW4A4Group, type UnitWeight } from "./quantize-units.js";

export interface GroupTask {
  readonly units: readonly { spec: UnitSpec; name: string; w: UnitWeight }[];
  readonly calibration: Calibration;
  readonly config: QuantizeConfig;
}
export interface GroupResult {
  readonly records: QuantizedLinear[];
  readonly reports: LayerReport[];
}

/**
 * The worker: dist/quantize-worker.js when built; from source (tests, tsx) a small ESM module that registers
 * tsx's loader in the worker and then imports quantize-worker.ts (loaders given by --import do not reach the
 * entry module of a worker on Node 20).
 */
function spawnWorker(): Worker {
  if (!import.meta.url.endsWith(".ts")) return new Worker(new URL("./quantize-worker.js", import.meta.url));
  const api = createRequire(import.meta.url)
    .resolve("tsx/esm/api")
    .replace(/index\.cjs$/, "index.mjs");
  const entry = new URL("./quantize-worker.ts", import.meta.url).href;
  const code = `const { register } = await import(${JSON.stringify(pathToFileURL(api).href)}); register(); await import(${JSON.stringify(entry)});`;
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(code)}`), {
    execArgv: ["--conditions=@svdquant/source"],
  });
}

type Pending = { resolve: (r: GroupResult) => void; reject: (e: Error) => void };

/** Largest useful thread count: the cores Node may use. */
export const maxThreads = (): number => availableParallelism();

export class QuantizePool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: { id: number; task: GroupTask }[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly busy = new Map<Worker, number>();
  private nextId = 0;

  constructor(readonly threads: number) {
    if (!Number.isInteger(threads) || threads < 1 || threads > maxThreads())
      throw new PipelineError("E_CONFIG", `threads must be an integer in [1, ${maxThreads()}], got ${threads}`);
    if (threads === 1) return;
    for (let i = 0; i < threads; i++) {
      const w = spawnWorker();
      w.on(
        "message",
        (m: { id: number; result?: GroupResult; error?: { message: string; code?: string; where?: string } }) => {
          const p = this.pending.get(m.id);
          this.pending.delete(m.id);
          this.busy.delete(w);
          this.idle.push(w);
          this.pump();
          if (p === undefined) return;
          if (m.error)
            p.reject(
              new PipelineError((m.error.code ?? "E_CONFIG") as PipelineErrorCode, m.error.message, m.error.where),
            );
          else p.resolve(m.result!);
        },
      );
      w.on("error", (e) => this.fail(w, e));
      w.on("exit", (code) => {
        if (code !== 0) this.fail(w, new Error(`quantization worker exited with code ${code}`));
      });
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  private fail(w: Worker, e: Error): void {
    const id = this.busy.get(w);
    if (id === undefined) return;
    this.busy.delete(w);
    const p = this.pending.get(id);
    this.pending.delete(id);
    p?.reject(e);
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop()!;
      const job = this.queue.shift()!;
      this.busy.set(w, job.id);
      w.postMessage(job);
    }
  }

  run(task: GroupTask): Promise<GroupResult> {
    if (this.threads === 1) {
      try {
        return Promise.resolve(quantizeW4A4Group(task.units, task.calibration, task.config));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    const id = this.nextId++;
    return new Promise<GroupResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.queue.push({ id, task });
      this.pump();
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
