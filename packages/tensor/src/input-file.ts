import { constants, type Stats } from "node:fs";
import { type FileHandle, lstat, open, stat } from "node:fs/promises";
import { TensorError } from "./errors.js";

/*
 * Every file the project reads from a user (checkpoints, shard indexes, configs, images, prompt files, ONNX models)
 * goes through here first. Opening a FIFO for reading blocks until a writer appears (forever, for a planted one),
 * a character device can stream without end, and a directory fails late with a confusing message; so each input is
 * lstat'ed (a symlink is followed once, with stat, to what it names: Hugging Face caches are symlinks to blobs) and
 * must be a regular file before it is opened. The open itself is non-blocking and the handle is fstat'ed again, so
 * a file swapped for a FIFO between the check and the open is still caught.
 */

/**
 * Byte cap of small JSON inputs read whole (config.json, shard indexes, experiment configs): 16 MiB. A shard index of
 * 100,000 tensors is ~6 MB; diffusers configs are a few KB.
 */
export const MAX_JSON_FILE_BYTES = 16 * 1024 * 1024;
/**
 * Deepest nesting accepted in those JSON files (diffusers configs nest 2-3 levels, experiment configs 4). JSON.parse
 * of 30M nested arrays (a 60 MB file) took 1.7 GB and 17 s when measured; depth is checked first, in one pass.
 */
export const MAX_JSON_DEPTH = 16;

/**
 * Throws TensorError E_TOO_LARGE when the JSON text nests deeper than `maxDepth` (strings skipped; anything else left
 * for JSON.parse to judge). Call before JSON.parse on any JSON from a file.
 */
export function checkJsonNesting(text: string, file: string, maxDepth = MAX_JSON_DEPTH): void {
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < n && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c /* \ */) i++;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > maxDepth)
        throw new TensorError("E_TOO_LARGE", `JSON nests deeper than ${maxDepth} levels (at character ${i})`, { file });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    }
  }
}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return "a directory";
  if (st.isFIFO()) return "a FIFO (named pipe)";
  if (st.isSocket()) return "a socket";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isSymbolicLink()) return "a symbolic link";
  return "not a regular file";
}

function notFile(path: string, st: Stats): TensorError {
  return new TensorError("E_NOT_FILE", `is ${kindOf(st)}, not a regular file`, { file: path });
}

/** Stat `path` (lstat, then the symlink's target) and require a regular file; returns its stats. */
export async function checkInputFile(path: string): Promise<Stats> {
  if (typeof path !== "string" || path.length === 0 || path.includes("\0"))
    throw new TensorError(
      "E_ARGUMENT",
      `input path must be a non-empty string without NUL, got ${JSON.stringify(path)}`,
    );
  let st: Stats;
  try {
    st = await lstat(path);
    if (st.isSymbolicLink()) st = await stat(path);
  } catch (cause) {
    throw new TensorError("E_IO", `cannot open: ${(cause as Error).message}`, { file: path, cause });
  }
  if (!st.isFile()) throw notFile(path, st);
  return st;
}

/**
 * Open a regular file for reading: checked with `checkInputFile`, opened non-blocking, and the handle's own
 * stats compared with the checked ones. Returns the handle and the file's size.
 */
export async function openInputFile(path: string): Promise<{ handle: FileHandle; size: number }> {
  const checked = await checkInputFile(path);
  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (cause) {
    throw new TensorError("E_IO", `cannot open: ${(cause as Error).message}`, { file: path, cause });
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw notFile(path, st);
    if (st.ino !== checked.ino || st.dev !== checked.dev)
      throw new TensorError("E_IO", "the file was replaced while it was being opened", { file: path });
    return { handle, size: st.size };
  } catch (err) {
    await handle.close().catch(() => {});
    if (err instanceof TensorError) throw err;
    throw new TensorError("E_IO", `cannot read: ${(err as Error).message}`, { file: path, cause: err });
  }
}

/** Read a whole regular file of at most `maxBytes` bytes (TensorError E_TOO_LARGE beyond it). */
export async function readInputFile(path: string, maxBytes: number): Promise<Buffer> {
  const { handle, size } = await openInputFile(path);
  try {
    if (size > maxBytes)
      throw new TensorError("E_TOO_LARGE", `is ${size} bytes, more than the ${maxBytes}-byte limit for this input`, {
        file: path,
      });
    const buf = Buffer.allocUnsafe(size);
    await readFully(handle, buf, 0, path);
    return buf;
  } finally {
    await handle.close().catch(() => {});
  }
}

/**
 * Positional reads are issued in chunks of at most this many bytes: one `read` of 2 GiB or more aborts the process
 * in libuv/Node (the length must fit a signed 32-bit int), and smaller requests keep each syscall bounded.
 */
export const READ_CHUNK_BYTES = 1 << 30;

/** Fill `dst` from `position` on, in chunks; a short file is a TensorError (E_IO), never a partial buffer. */
export async function readFully(
  handle: FileHandle,
  dst: Uint8Array,
  position: number,
  file: string,
  tensor?: string,
): Promise<void> {
  let done = 0;
  while (done < dst.length) {
    let bytesRead: number;
    try {
      ({ bytesRead } = await handle.read(dst, done, Math.min(READ_CHUNK_BYTES, dst.length - done), position + done));
    } catch (cause) {
      const where = tensor === undefined ? { file, cause } : { file, tensor, cause };
      throw new TensorError("E_IO", `read failed at byte ${position + done}: ${(cause as Error).message}`, where);
    }
    if (bytesRead === 0) {
      throw new TensorError(
        "E_IO",
        `unexpected end of file at byte ${position + done} (was it truncated after opening?)`,
        tensor === undefined ? { file } : { file, tensor },
      );
    }
    done += bytesRead;
  }
}
