import { DTYPE_INFO, type DType, isDType } from "./dtype.js";
import { TensorError } from "./errors.js";
import { scanHeaderText } from "./header-scanner.js";
import type { Shape } from "./tensor.js";

/*
 * The safetensors format (https://github.com/huggingface/safetensors, README "Format"):
 *
 * | bytes          | content                                                                  |
 * |----------------|--------------------------------------------------------------------------|
 * | 0 .. 8         | u64 little-endian N: byte length of the header                           |
 * | 8 .. 8+N       | UTF-8 JSON object; may be padded with trailing spaces (0x20)             |
 * | 8+N .. end     | the byte buffer: every tensor's data, little-endian, row-major, no gaps  |
 *
 * Header: { "__metadata__"?: {string: string}, NAME: { "dtype": DTYPE, "shape": [int...],
 * "data_offsets": [BEGIN, END] } ... }, offsets relative to the byte buffer.
 */

/** Header lengths above this are rejected before anything is allocated (the reference reader's limit). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: Shape;
  /** [begin, end) within the byte buffer (after the header). */
  readonly dataOffsets: readonly [number, number];
}

export interface ParsedHeader {
  readonly metadata: Readonly<Record<string, string>>;
  /** Tensors in name order. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
}

/**
 * Validate a header's JSON bytes against a byte buffer of `dataLength` bytes: every dtype known, every shape
 * a list of non-negative integers, `end - begin == numel * itemsize`, and the tensors tiling the buffer exactly
 * (no overlap, no hole, nothing past the end). Throws TensorError naming the file and tensor.
 */
export function parseHeader(headerBytes: Uint8Array, dataLength: number, file: string): ParsedHeader {
  // A byte order mark is not JSON (RFC 8259 §8.1: "MUST NOT add"); TextDecoder would drop it silently.
  if (headerBytes[0] === 0xef && headerBytes[1] === 0xbb && headerBytes[2] === 0xbf)
    throw new TensorError("E_HEADER_JSON", "header starts with a UTF-8 byte order mark", { file });
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch (cause) {
    throw new TensorError("E_HEADER_JSON", "header is not valid UTF-8", { file, cause });
  }
  scanHeaderText(text, file); // bounds depth, widths and entry count; finds duplicate keys
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new TensorError("E_HEADER_JSON", `header is not valid JSON (${(cause as Error).message})`, { file, cause });
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new TensorError("E_HEADER_JSON", "header must be a JSON object", { file });
  }

  let metadata: Record<string, string> = {};
  const entries: TensorInfo[] = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      metadata = parseMetadata(raw, file);
      continue;
    }
    entries.push(parseEntry(name, raw, dataLength, file));
  }
  checkTiling(entries, dataLength, file);
  entries.sort((a, b) => compareNames(a.name, b.name));
  return { metadata, tensors: new Map(entries.map((e) => [e.name, e])) };
}

function parseMetadata(raw: unknown, file: string): Record<string, string> {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new TensorError("E_METADATA", "__metadata__ must be an object of strings", { file });
  }
  const out: Record<string, string> = Object.create(null);
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (typeof v !== "string")
      throw new TensorError("E_METADATA", `__metadata__["${k}"] must be a string, got ${typeof v}`, { file });
    out[k] = v;
  }
  return out;
}

function parseEntry(name: string, raw: unknown, dataLength: number, file: string): TensorInfo {
  const where = { file, tensor: name };
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new TensorError("E_HEADER_JSON", "entry must be an object with dtype, shape and data_offsets", where);
  }
  const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
  if (!isDType(dtype)) throw new TensorError("E_DTYPE", `unsupported dtype ${JSON.stringify(dtype)}`, where);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new TensorError("E_SHAPE", `shape ${JSON.stringify(shape)} must be a list of non-negative integers`, where);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new TensorError(
      "E_OFFSETS",
      `data_offsets ${JSON.stringify(offsets)} must be two non-negative integers`,
      where,
    );
  }
  const [begin, end] = offsets as [number, number];
  let bytes = DTYPE_INFO[dtype].itemsize;
  for (const d of shape as number[]) {
    bytes *= d;
    if (!Number.isSafeInteger(bytes))
      throw new TensorError("E_SHAPE", `shape [${shape.join(", ")}] is too large`, where);
  }
  if (end < begin || end - begin !== bytes) {
    throw new TensorError(
      "E_OFFSETS",
      `data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} [${shape.join(", ")}] needs ${bytes}`,
      where,
    );
  }
  if (end > dataLength) {
    throw new TensorError(
      "E_OFFSETS",
      `data_offsets [${begin}, ${end}] run past the end of the data (${dataLength} bytes)`,
      where,
    );
  }
  return { name, dtype, shape: Object.freeze([...(shape as number[])]), dataOffsets: [begin, end] };
}

function checkTiling(entries: TensorInfo[], dataLength: number, file: string): void {
  const byOffset = [...entries].sort(
    (a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1],
  );
  let cursor = 0;
  let last: string | undefined;
  for (const e of byOffset) {
    const [begin, end] = e.dataOffsets;
    if (begin < cursor)
      throw new TensorError(
        "E_OVERLAP",
        `data_offsets [${begin}, ${end}] overlap the previous tensor (ends at ${cursor})`,
        { file, tensor: e.name },
      );
    if (begin > cursor)
      throw new TensorError("E_OFFSETS", `hole in the data: bytes [${cursor}, ${begin}) belong to no tensor`, {
        file,
        tensor: e.name,
      });
    cursor = end;
    last = e.name;
  }
  if (cursor !== dataLength) {
    throw new TensorError(
      "E_OFFSETS",
      `the tensors cover ${cursor} bytes but the data holds ${dataLength} (trailing bytes after this tensor)`,
      last === undefined ? { file } : { file, tensor: last },
    );
  }
}

/** Byte-wise (UTF-8) order, as the reference Rust writer sorts names. */
export function compareNames(a: string, b: string): number {
  if (a === b) return 0;
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/**
 * Serialize a header as the reference writer does: compact JSON, `__metadata__` first, then the tensors in
 * data order (the order given), padded with spaces so that 8 + N is a multiple of 8.
 */
export function serializeHeader(
  metadata: Readonly<Record<string, string>> | undefined,
  tensors: readonly TensorInfo[],
): Uint8Array {
  const parts: string[] = [];
  if (metadata !== undefined && Object.keys(metadata).length > 0) {
    const keys = Object.keys(metadata).sort(compareNames);
    parts.push(`"__metadata__":{${keys.map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`).join(",")}}`);
  }
  for (const t of tensors) {
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(",")}],"data_offsets":[${t.dataOffsets[0]},${t.dataOffsets[1]}]}`,
    );
  }
  const json = Buffer.from(`{${parts.join(",")}}`, "utf8");
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(padded).fill(0x20);
  out.set(json);
  return out;
}
