import type { FileHandle } from "node:fs/promises";
import { endianness } from "node:os";
import { writeFileAtomic } from "./atomic-write.js";
import { DTYPE_INFO, type DType, isDType, type StorageOf } from "./dtype.js";
import { TensorError } from "./errors.js";
import { openInputFile, readFully } from "./input-file.js";
import {
  MAX_HEADER_BYTES,
  type ParsedHeader,
  parseHeader,
  serializeHeader,
  type TensorInfo,
} from "./safetensors-header.js";
import { numelOf, type Shape, Tensor } from "./tensor.js";

if (endianness() !== "LE")
  throw new Error("@svdquant/tensor needs a little-endian host (safetensors data is little-endian)");

/** Anything tensors can be read from by name: one file, a sharded checkpoint, a model folder. */
export interface TensorSource {
  /** The path this source was opened from. */
  readonly path: string;
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensor names in byte order. */
  names(): string[];
  has(name: string): boolean;
  /** Dtype, shape and location of a tensor, without reading it. Throws E_NOT_FOUND. */
  info(name: string): TensorInfo & { readonly file: string };
  /** Read one tensor; costs about its own bytes of I/O and memory. */
  read(name: string): Promise<Tensor>;
  /**
   * Read one tensor's raw little-endian bytes into `dst`, which must hold exactly its byte length: for callers
   * that reuse one buffer across tensors (block streaming). Optional: in-memory sources may leave it out.
   */
  readInto?(name: string, dst: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** One .safetensors file, header validated at open, tensors read lazily with positional reads. */
export class SafetensorsFile implements TensorSource {
  readonly path: string;
  readonly metadata: Readonly<Record<string, string>>;
  /** Byte offset of the data buffer within the file (8 + header length). */
  readonly dataStart: number;
  private readonly header: ParsedHeader;
  private handle: FileHandle | undefined;

  private constructor(path: string, handle: FileHandle, header: ParsedHeader, dataStart: number) {
    this.path = path;
    this.handle = handle;
    this.header = header;
    this.metadata = header.metadata;
    this.dataStart = dataStart;
  }

  static async open(path: string): Promise<SafetensorsFile> {
    const { handle, size } = await openInputFile(path); // a regular file, or a TensorError (never a FIFO's hang)
    try {
      if (size < 8)
        throw new TensorError("E_HEADER_SIZE", `file has ${size} bytes, fewer than the 8-byte header length`, {
          file: path,
        });
      const lenBuf = Buffer.alloc(8);
      await readFully(handle, lenBuf, 0, path);
      const n = lenBuf.readBigUInt64LE(0);
      if (n > BigInt(MAX_HEADER_BYTES))
        throw new TensorError("E_HEADER_SIZE", `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`, {
          file: path,
        });
      const headerLen = Number(n);
      if (8 + headerLen > size)
        throw new TensorError(
          "E_HEADER_SIZE",
          `header length ${headerLen} runs past the end of the ${size}-byte file`,
          { file: path },
        );
      if (headerLen < 2)
        throw new TensorError("E_HEADER_SIZE", `header length ${headerLen} is too small for a JSON object`, {
          file: path,
        });
      const headerBytes = Buffer.alloc(headerLen);
      await readFully(handle, headerBytes, 8, path);
      const header = parseHeader(headerBytes, size - 8 - headerLen, path);
      return new SafetensorsFile(path, handle, header, 8 + headerLen);
    } catch (err) {
      await handle.close();
      if (err instanceof TensorError) throw err;
      throw new TensorError("E_IO", `cannot read: ${(err as Error).message}`, { file: path, cause: err });
    }
  }

  names(): string[] {
    return [...this.header.tensors.keys()];
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  info(name: string): TensorInfo & { readonly file: string } {
    const t = this.header.tensors.get(name);
    if (t === undefined) throw new TensorError("E_NOT_FOUND", "no such tensor", { file: this.path, tensor: name });
    return { ...t, file: this.path };
  }

  /** All tensor infos, in name order. */
  infos(): TensorInfo[] {
    return [...this.header.tensors.values()];
  }

  async read(name: string): Promise<Tensor> {
    const t = this.info(name);
    const handle = this.requireOpen();
    const [begin, end] = t.dataOffsets;
    // A fresh, unpooled buffer of exactly the tensor's bytes (byteOffset 0: aligned for any typed array); not
    // zero-filled since readFully overwrites all of it or throws.
    const buf = Buffer.allocUnsafeSlow(end - begin);
    await readFully(handle, buf, this.dataStart + begin, this.path, name);
    const info = DTYPE_INFO[t.dtype];
    const data = info.wrap(buf.buffer as ArrayBuffer, 0, (end - begin) / info.itemsize) as StorageOf[DType];
    return new Tensor(t.dtype, t.shape, data);
  }

  async readInto(name: string, dst: Uint8Array): Promise<void> {
    const t = this.info(name);
    const [begin, end] = t.dataOffsets;
    if (dst.length !== end - begin)
      throw new TensorError("E_SHAPE", `destination holds ${dst.length} bytes, the tensor has ${end - begin}`, {
        file: this.path,
        tensor: name,
      });
    await readFully(this.requireOpen(), dst, this.dataStart + begin, this.path, name);
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close();
  }

  private requireOpen(): FileHandle {
    if (this.handle === undefined) throw new TensorError("E_IO", "file is closed", { file: this.path });
    return this.handle;
  }
}

// ------------------------------------------------------------------------------------------------ writer

/** One tensor to write: its declared dtype/shape and the data, or a function producing it on demand. */
export interface TensorEntry {
  name: string;
  dtype: DType;
  shape: Shape;
  data: Tensor | (() => Tensor | Promise<Tensor>);
}

export type TensorsToWrite = Iterable<TensorEntry> | ReadonlyMap<string, Tensor> | Readonly<Record<string, Tensor>>;

function toEntries(tensors: TensorsToWrite): TensorEntry[] {
  const fromTensor = (name: string, t: Tensor): TensorEntry => ({ name, dtype: t.dtype, shape: t.shape, data: t });
  if (tensors instanceof Map) return [...tensors].map(([n, t]) => fromTensor(n, t));
  if (Symbol.iterator in (tensors as object)) return [...(tensors as Iterable<TensorEntry>)];
  return Object.entries(tensors as Record<string, Tensor>).map(([n, t]) => fromTensor(n, t));
}

/**
 * Write a safetensors file as the reference writer lays it out (data ordered by dtype, then name; header
 * padded with spaces to 8 bytes). Streaming: tensors given as functions are produced one at a time, in data
 * order, and released after writing. Atomic: the bytes go to a temporary file beside `path`, which is
 * fsync'ed and renamed over `path` only when complete.
 */
export async function writeSafetensors(
  path: string,
  tensors: TensorsToWrite,
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const entries = toEntries(tensors);
  const seen = new Set<string>();
  for (const e of entries) {
    if (e.name === "__metadata__")
      throw new TensorError("E_ARGUMENT", "the name __metadata__ is reserved", { file: path, tensor: e.name });
    if (seen.has(e.name)) throw new TensorError("E_DUPLICATE", "given twice", { file: path, tensor: e.name });
    seen.add(e.name);
    if (!isDType(e.dtype))
      throw new TensorError("E_DTYPE", `unknown dtype ${String(e.dtype)}`, { file: path, tensor: e.name });
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw new TensorError("E_SHAPE", `shape ${JSON.stringify(e.shape)} must hold non-negative integers`, {
        file: path,
        tensor: e.name,
      });
  }
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string")
        throw new TensorError("E_METADATA", `metadata["${k}"] must be a string`, { file: path });
    }
  }
  // Data order of the reference writer: dtype (larger first, by its enum order), then name.
  const order = [...entries].sort(
    (a, b) =>
      DTYPE_INFO[b.dtype].writerRank - DTYPE_INFO[a.dtype].writerRank ||
      Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)),
  );
  const infos: TensorInfo[] = [];
  let offset = 0;
  for (const e of order) {
    const bytes = numelOf(e.shape) * DTYPE_INFO[e.dtype].itemsize;
    infos.push({ name: e.name, dtype: e.dtype, shape: e.shape, dataOffsets: [offset, offset + bytes] });
    offset += bytes;
  }
  const header = serializeHeader(metadata, infos);
  await writeFileAtomic(path, async (write) => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    await write(len);
    await write(header);
    for (const e of order) {
      let t: Tensor;
      try {
        t = typeof e.data === "function" ? await e.data() : e.data;
      } catch (cause) {
        if (cause instanceof TensorError) throw cause;
        throw new TensorError("E_ARGUMENT", `its producer failed: ${(cause as Error)?.message ?? String(cause)}`, {
          file: path,
          tensor: e.name,
          cause,
        });
      }
      if (t.dtype !== e.dtype || t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
        throw new TensorError(
          "E_SHAPE",
          `declared ${e.dtype} [${e.shape.join(", ")}] but got ${t.dtype} [${t.shape.join(", ")}]`,
          { file: path, tensor: e.name },
        );
      }
      await write(t.bytes());
    }
  });
}
