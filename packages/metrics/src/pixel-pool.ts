import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { MetricsError, type MetricsErrorCode } from "./errors.js";
import { checkSameSize, type Rgb8Image, toPlanar } from "./image.js";
import { readImage } from "./image-io.js";
import { psnr } from "./psnr.js";
import { ssim } from "./ssim.js";

export interface PixelResult {
  psnr: number;
  ssim: number;
  ref: Rgb8Image;
  test: Rgb8Image;
}

/** Decode + PSNR + SSIM of one pair in this thread. */
export async function pixelPair(refPath: string, testPath: string): Promise<PixelResult> {
  const [ref, test] = await Promise.all([readImage(refPath), readImage(testPath)]);
  checkSameSize(ref, test);
  const a = toPlanar(ref);
  const b = toPlanar(test);
  return { psnr: psnr(a, b), ssim: ssim(a, b), ref, test };
}

/** file URL of tsx's ESM API (its `exports["./esm/api"].import`), for workers started from TypeScript sources. */
function tsxEsmApi(): string {
  const pkg = createRequire(import.meta.url).resolve("tsx/package.json");
  const exp = JSON.parse(readFileSync(pkg, "utf8")).exports["./esm/api"].import.default as string;
  return pathToFileURL(join(dirname(pkg), exp)).href;
}

interface Pending {
  resolve: (r: PixelResult) => void;
  reject: (e: Error) => void;
}

/**
 * Worker threads that decode image pairs and compute PSNR/SSIM in parallel (the CPU-bound part of the runner).
 * Runs from dist/*.js as is; from the TypeScript sources (tests, `--conditions=@svdquant/source`) the workers load
 * through tsx.
 */
export class PixelPool {
  private readonly workers: Worker[] = [];
  private readonly idle: Worker[] = [];
  private readonly queue: { id: number; ref: string; test: string }[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly busy = new Map<Worker, number>();
  private nextId = 0;

  constructor(threads: number) {
    const fromSource = import.meta.url.endsWith(".ts");
    const url = new URL(fromSource ? "./pixel-worker.ts" : "./pixel-worker.js", import.meta.url);
    // From sources, the worker first registers tsx's ESM hooks (a dev dependency of the workspace), then imports.
    const boot = fromSource
      ? `import(${JSON.stringify(tsxEsmApi())}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`
      : undefined;
    for (let i = 0; i < threads; i++) {
      const w = boot ? new Worker(boot, { eval: true }) : new Worker(url);
      w.on("message", (m: { id: number; ok: boolean; code?: MetricsErrorCode; message?: string } & PixelResult) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        this.busy.delete(w);
        this.idle.push(w);
        this.pump();
        if (!p) return;
        if (m.ok) {
          p.resolve({ psnr: m.psnr, ssim: m.ssim, ref: m.ref, test: m.test });
        } else {
          p.reject(new MetricsError(m.code ?? "E_IO", m.message ?? "worker failed"));
        }
      });
      w.on("error", (e) => {
        // A crashed worker is gone: fail its job, and every queued job once no worker is left.
        const id = this.busy.get(w);
        if (id !== undefined) this.pending.get(id)?.reject(e);
        this.busy.delete(w);
        this.workers.splice(this.workers.indexOf(w), 1);
        if (this.workers.length === 0) {
          for (const job of this.queue.splice(0)) this.pending.get(job.id)?.reject(e);
        }
      });
      this.workers.push(w);
      this.idle.push(w);
    }
  }

  run(ref: string, test: string): Promise<PixelResult> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.queue.push({ id, ref, test });
      this.pump();
    });
  }

  private pump(): void {
    while (this.idle.length > 0 && this.queue.length > 0) {
      const w = this.idle.pop() as Worker;
      const job = this.queue.shift() as { id: number; ref: string; test: string };
      this.busy.set(w, job.id);
      w.postMessage(job);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
