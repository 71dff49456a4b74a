// Worker thread of PixelPool: decodes one image pair, computes PSNR and SSIM, and hands the decoded 8-bit images
// back (transferred, not copied) for the neural metrics.
import { parentPort } from "node:worker_threads";
import { MetricsError } from "./errors.js";
import { checkSameSize, toPlanar } from "./image.js";
import { readImage } from "./image-io.js";
import { psnr } from "./psnr.js";
import { ssim } from "./ssim.js";

export interface PixelJob {
  id: number;
  ref: string;
  test: string;
}

parentPort?.on("message", async (job: PixelJob) => {
  try {
    const [a, b] = await Promise.all([readImage(job.ref), readImage(job.test)]);
    checkSameSize(a, b);
    const fa = toPlanar(a);
    const fb = toPlanar(b);
    const out = { id: job.id, ok: true, psnr: psnr(fa, fb), ssim: ssim(fa, fb), ref: a, test: b };
    parentPort?.postMessage(out, [a.data.buffer as ArrayBuffer, b.data.buffer as ArrayBuffer]);
  } catch (e) {
    const err = e as Error;
    parentPort?.postMessage({
      id: job.id,
      ok: false,
      code: e instanceof MetricsError ? e.code : "E_IO",
      message: err.message,
    });
  }
});
