import { randomBytes } from "node:crypto";
import type { Stats } from "node:fs";
import { type FileHandle, lstat, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { TensorError } from "./errors.js";

/*
 * The one way this project writes an output file. Each file is written to a fresh temporary file beside its target
 * — `.NAME.PID.RANDOM.tmp`, created with O_CREAT|O_EXCL ("wx"), so a planted file or symlink of that name makes the
 * open fail instead of redirecting the write — then fsync'ed, closed and renamed over the target (rename replaces a
 * symlink at the target itself, never the file it points to). Until the rename the previous output is untouched; on
 * any error the temporary file is removed. A process killed mid-write leaves only its hidden temporary file, which
 * the next write to the same target removes (its PID is no longer alive).
 */

/** Receives a `write` that writes all of its bytes (in bounded chunks) at the current end of the temporary file. */
export type AtomicWriter = (write: (bytes: Uint8Array) => Promise<void>) => Promise<void>;

/** What to write: text (UTF-8), bytes, or a function that streams the content. */
export type AtomicData = string | Uint8Array | AtomicWriter;

const TMP_SUFFIX = ".tmp";
const WRITE_CHUNK = 1 << 26; // FileHandle.write may write fewer bytes than asked; 64 MiB per call keeps it bounded

function ioError(path: string, what: string, cause: unknown): TensorError {
  return new TensorError("E_IO", `${what}: ${String((cause as Error)?.message ?? cause)}`, { file: path, cause });
}

/**
 * Check, before any work, that `path` can receive an output: a non-empty path without NUL, whose folder exists and
 * accepts a new file (probed by creating and removing a temporary file), and that is not a directory or another
 * non-regular file. Throws TensorError (E_ARGUMENT, E_NOT_FILE, E_IO) naming the path.
 */
export async function checkOutputPath(path: string): Promise<void> {
  if (typeof path !== "string" || path.length === 0 || path.includes("\0"))
    throw new TensorError(
      "E_ARGUMENT",
      `output path must be a non-empty string without NUL, got ${JSON.stringify(path)}`,
    );
  const dir = dirname(path);
  let st: Stats;
  try {
    st = await stat(dir);
  } catch (cause) {
    throw ioError(path, "cannot write into its folder", cause);
  }
  if (!st.isDirectory()) throw new TensorError("E_IO", `${dir} is not a directory`, { file: path });
  let target: Stats | undefined;
  try {
    target = await lstat(path);
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code !== "ENOENT") throw ioError(path, "cannot check the output", cause);
  }
  if (target !== undefined && !target.isFile() && !target.isSymbolicLink())
    throw new TensorError("E_NOT_FILE", "exists and is not a regular file; refusing to replace it", { file: path });
  const probe = tempName(path);
  let h: FileHandle | undefined;
  try {
    h = await open(probe, "wx");
  } catch (cause) {
    throw ioError(path, "cannot create a file in its folder", cause);
  } finally {
    await h?.close().catch(() => {});
    if (h !== undefined) await unlink(probe).catch(() => {});
  }
}

function tempName(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}${TMP_SUFFIX}`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // exists, another user's
  }
}

/** Remove temporary files of earlier writes to `path` whose process is gone (killed mid-write). */
async function sweepStale(path: string): Promise<void> {
  const dir = dirname(path);
  const prefix = `.${basename(path)}.`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return;
  }
  for (const n of names) {
    if (!n.startsWith(prefix) || !n.endsWith(TMP_SUFFIX)) continue;
    const m = /^(\d+)\.[0-9a-f]{12}$/.exec(n.slice(prefix.length, -TMP_SUFFIX.length));
    if (m === null) continue;
    const pid = Number(m[1]);
    if (pid !== process.pid && !alive(pid)) await unlink(join(dir, n)).catch(() => {});
  }
}

async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let done = 0;
  while (done < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, done, Math.min(WRITE_CHUNK, bytes.length - done));
    done += bytesWritten;
  }
}

/**
 * Write several files so that each is either fully replaced or left as it was: all are staged (written, fsync'ed)
 * first and renamed into place only when every one is complete, so an error while writing any of them leaves all
 * targets untouched (a results file and its report never disagree). Errors are TensorError naming the target, or
 * whatever typed error a writer throws; temporary files are removed on every error.
 */
export async function writeFilesAtomic(files: readonly { path: string; data: AtomicData }[]): Promise<void> {
  const targets = new Set<string>();
  for (const f of files) {
    if (typeof f.path !== "string" || f.path.length === 0 || f.path.includes("\0"))
      throw new TensorError(
        "E_ARGUMENT",
        `output path must be a non-empty string without NUL, got ${JSON.stringify(f.path)}`,
      );
    if (targets.has(f.path)) throw new TensorError("E_ARGUMENT", "given twice in one atomic write", { file: f.path });
    targets.add(f.path);
  }
  const staged: { tmp: string; path: string }[] = [];
  try {
    for (const f of files) {
      await sweepStale(f.path);
      const tmp = tempName(f.path);
      let handle: FileHandle;
      try {
        handle = await open(tmp, "wx");
      } catch (cause) {
        throw ioError(f.path, "cannot create the output", cause);
      }
      staged.push({ tmp, path: f.path });
      try {
        if (typeof f.data === "function") await f.data((bytes) => writeAll(handle, bytes));
        else await writeAll(handle, typeof f.data === "string" ? Buffer.from(f.data, "utf8") : f.data);
        await handle.sync();
      } catch (err) {
        // A writer's own typed error (a string `code`, not a system call's) passes through; the rest name the file.
        const e = err as NodeJS.ErrnoException;
        if (typeof e?.code === "string" && e.syscall === undefined) throw err;
        throw ioError(f.path, "cannot write", err);
      } finally {
        await handle.close().catch(() => {});
      }
    }
    for (const s of staged) {
      try {
        await rename(s.tmp, s.path);
      } catch (cause) {
        throw ioError(s.path, "cannot move the finished output into place", cause);
      }
    }
  } catch (err) {
    await Promise.all(staged.map((s) => unlink(s.tmp).catch(() => {})));
    throw err;
  }
  // Make the renames durable too (best effort: some filesystems cannot fsync a directory).
  for (const dir of new Set(staged.map((s) => dirname(s.path)))) {
    const h = await open(dir, "r").catch(() => undefined);
    await h?.sync().catch(() => {});
    await h?.close().catch(() => {});
  }
}

/** Write one file atomically (see `writeFilesAtomic`). `data`: text, bytes, or an `AtomicWriter` that streams. */
export function writeFileAtomic(path: string, data: AtomicData): Promise<void> {
  return writeFilesAtomic([{ path, data }]);
}
