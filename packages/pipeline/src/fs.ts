/**
 * Atomic file writes for the pipeline's JSON outputs: a temporary file with a random name in the same folder
 * (created exclusively, never through a planted link), fsync, rename over the target; removed on any error.
 */
import { randomBytes } from "node:crypto";
import { open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { PipelineError } from "./errors.js";

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(tmp, "wx", 0o644);
    await fh.writeFile(data);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await rename(tmp, path);
  } catch (e) {
    await fh?.close().catch(() => {});
    await rm(tmp, { force: true }).catch(() => {});
    throw new PipelineError("E_CHECKPOINT", `cannot write: ${(e as Error).message}`, path, { cause: e });
  }
}
