import { TensorError } from "./errors.js";

/*
 * A single linear pass over a safetensors header's text that bounds what JSON.parse will build, before it runs.
 * The header-length cap bounds the bytes, not the memory of the parsed value: 98 MB of "[[[[…" is millions of
 * nested arrays (a V8 heap OOM), and millions of tiny entries are millions of objects. A valid header is
 *
 *   depth 1: the top object   { NAME: ENTRY, …, "__metadata__": { KEY: "string", … } }
 *   depth 2: an entry         { "dtype": "F32", "shape": [..], "data_offsets": [b, e] }  (or the metadata object)
 *   depth 3: shape / offsets  [ int, … ]
 *
 * so anything deeper, wider or longer than the limits below cannot be a valid header and is rejected here with a
 * TensorError. The scan also finds duplicate keys (JSON.parse keeps the last one silently; the format forbids
 * them) at depths 1 and 2. Malformed JSON is left for JSON.parse to report: the scanner stops at the first thing
 * it does not understand.
 */

/** Deepest nesting of a valid header: top object → entry → shape/data_offsets array. */
export const MAX_HEADER_DEPTH = 3;
/**
 * Most tensors (top-level keys) in one header: 2^18. FLUX.1 has ~1,000 tensors in one file and large sharded LLM
 * checkpoints a few thousand per shard. Measured (docs/hardening.md): a header at this limit opens with ~0.1 GB of
 * RSS growth; at 10^6 entries it was 0.8 GB and 13 s.
 */
export const MAX_HEADER_ENTRIES = 262_144;
/** Most elements of one array: a shape's rank (PyTorch caps tensors at 64 dims; c10 `kMaxDims`-style limit). */
export const MAX_HEADER_ARRAY_LENGTH = 64;
/** Most keys of one nested object (an entry has 3; `__metadata__` holds free-form string pairs). */
export const MAX_HEADER_OBJECT_KEYS = 100_000;

interface Frame {
  readonly object: boolean;
  expectKey: boolean;
  /** Commas seen in an array: it holds count + 1 elements. */
  count: number;
  readonly keys: Set<string> | undefined;
  /** The last key read in this object. */
  lastKey: string | undefined;
  /** The top-level key (tensor name) this container belongs to, for messages. */
  readonly key: string | undefined;
}

/** Throws TensorError when `text` nests, widens or repeats keys beyond what a valid header can. */
export function scanHeaderText(text: string, file: string): void {
  const stack: Frame[] = [];
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const start = i;
      for (i++; i < n && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c /* \ */) i++;
      if (i >= n) return; // unterminated string: JSON.parse reports it
      const top = stack[stack.length - 1];
      if (top?.object && top.expectKey) {
        top.expectKey = false;
        if (top.keys !== undefined) {
          let key: string;
          try {
            key = JSON.parse(text.slice(start, i + 1)) as string;
          } catch {
            return; // bad escape: JSON.parse reports it
          }
          if (top.keys.has(key)) {
            const where = stack.length === 1 ? { file, tensor: key } : { file, tensor: top.key ?? "" };
            const what = stack.length === 1 ? "appears twice in the header" : `has the key "${key}" twice`;
            throw new TensorError("E_DUPLICATE", what, where);
          }
          top.keys.add(key);
          top.lastKey = key;
          if (stack.length === 1 && top.keys.size > MAX_HEADER_ENTRIES)
            throw new TensorError("E_HEADER_SIZE", `header has more than ${MAX_HEADER_ENTRIES} entries`, { file });
          if (stack.length > 1 && top.keys.size > MAX_HEADER_OBJECT_KEYS)
            throw new TensorError(
              "E_HEADER_SIZE",
              `an object in the header has more than ${MAX_HEADER_OBJECT_KEYS} keys`,
              top.key === undefined ? { file } : { file, tensor: top.key },
            );
        }
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (stack.length >= MAX_HEADER_DEPTH)
        throw new TensorError(
          "E_HEADER_JSON",
          `header nests deeper than ${MAX_HEADER_DEPTH} levels (object → entry → shape) at character ${i}`,
          { file },
        );
      const parent = stack[stack.length - 1];
      const key = stack.length === 1 ? parent?.lastKey : parent?.key;
      const object = c === 0x7b;
      stack.push({
        object,
        expectKey: object,
        count: 0,
        keys: object ? new Set() : undefined,
        lastKey: undefined,
        key,
      });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      if (stack.pop() === undefined) return;
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top === undefined) return;
      if (top.object) top.expectKey = true;
      else if (++top.count + 1 > MAX_HEADER_ARRAY_LENGTH)
        throw new TensorError(
          "E_HEADER_JSON",
          `an array in the header has more than ${MAX_HEADER_ARRAY_LENGTH} elements (at character ${i})`,
          top.key === undefined ? { file } : { file, tensor: top.key },
        );
    }
  }
}
