import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { ModelError } from "../errors.js";
import { parsePythonJson } from "../json-config.js";

/** Token ids and attention mask of a batch of prompts, each row padded/truncated to `length`. */
export interface TokenizedBatch {
  readonly batch: number;
  readonly length: number;
  /** [B, L] token ids. */
  readonly ids: Int32Array;
  /** [B, L]: 1 for real tokens (specials included), 0 for padding. */
  readonly mask: Uint8Array;
}

/** The max_length of each pipeline's tokenizer call (diffusers FluxPipeline / PixArtSigmaPipeline). */
export const FLUX_CLIP_MAX_LENGTH = 77;
export const FLUX_T5_MAX_LENGTH = 512;
export const PIXART_T5_MAX_LENGTH = 300;

/**
 * A tokenizer from a transformers tokenizer folder (`tokenizer.json` + `tokenizer_config.json`) through
 * @huggingface/tokenizers, with the padding and truncation the diffusers pipelines ask for:
 * `padding="max_length", truncation=True, max_length=L` — specials added by the post-processor stay
 * (BOS … EOS for CLIP, … </s> for T5), the content in between is cut, and the row is right-padded with the
 * pad token (mask 0).
 */
export class TextTokenizer {
  readonly padId: number;
  /** tokenizer_config.json's model_max_length (77 for CLIP, 512 for T5), if it has one. */
  readonly modelMaxLength: number | undefined;
  private readonly tok: Tokenizer;

  private constructor(tok: Tokenizer, padId: number, modelMaxLength: number | undefined) {
    this.tok = tok;
    this.padId = padId;
    this.modelMaxLength = modelMaxLength;
  }

  /** Load `dir/tokenizer.json` and `dir/tokenizer_config.json` (a diffusers `tokenizer/` or `tokenizer_2/` folder). */
  static async fromFolder(dir: string): Promise<TextTokenizer> {
    const read = async (name: string, required: boolean): Promise<Record<string, unknown> | undefined> => {
      const path = join(dir, name);
      let text: string;
      try {
        text = await readFile(path, "utf8");
      } catch (e) {
        if (!required && (e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        const hint =
          name === "tokenizer.json"
            ? " (CLIP folders may have vocab.json + merges.txt instead; a spiece.model-only folder needs a tokenizer.json made once by transformers)"
            : "";
        throw new ModelError("E_CONFIG", `cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}${hint}`, path);
      }
      return parsePythonJson(text, path);
    };
    const config = (await read("tokenizer_config.json", false)) ?? {};
    const json =
      (await read("tokenizer.json", false)) ??
      (await clipFromVocabMerges(dir, config)) ??
      (await read("tokenizer.json", true))!;
    let tok: Tokenizer;
    try {
      tok = new Tokenizer(json, config);
    } catch (e) {
      throw new ModelError("E_CONFIG", `not a usable tokenizer: ${(e as Error).message}`, join(dir, "tokenizer.json"));
    }
    const padName = tokenName(config.pad_token);
    const pad = padName === undefined ? undefined : tok.token_to_id(padName);
    // T5 pads with <pad>; CLIP-L's config names <|endoftext|>; a tokenizer without one pads with id 0.
    const mml = config.model_max_length;
    return new TextTokenizer(
      tok,
      pad ?? 0,
      typeof mml === "number" && Number.isSafeInteger(mml) && mml > 0 ? mml : undefined,
    );
  }

  /** Token ids of one text with the post-processor's special tokens, unpadded and untruncated. */
  encodeOne(text: string): number[] {
    return this.tok.encode(text).ids;
  }

  /** Tokenize a batch as the pipelines do: every row exactly `maxLength` ids (truncated, then padded). */
  encode(texts: readonly string[], maxLength: number): TokenizedBatch {
    if (!Number.isSafeInteger(maxLength) || maxLength < 1)
      throw new ModelError("E_INPUT", `maxLength must be a positive integer, got ${maxLength}`, "TextTokenizer.encode");
    if (texts.length === 0) throw new ModelError("E_INPUT", "no texts to tokenize", "TextTokenizer.encode");
    const ids = new Int32Array(texts.length * maxLength).fill(this.padId);
    const mask = new Uint8Array(texts.length * maxLength);
    texts.forEach((text, row) => {
      if (typeof text !== "string")
        throw new ModelError("E_INPUT", `text ${row} is not a string`, "TextTokenizer.encode");
      const full = this.tok.encode(text).ids;
      let kept = full;
      if (full.length > maxLength) {
        const plain = this.tok.encode(text, { add_special_tokens: false }).ids;
        const pre = specialPrefix(full, plain);
        const post = full.length - pre - plain.length;
        if (pre + post >= maxLength)
          throw new ModelError(
            "E_INPUT",
            `maxLength ${maxLength} leaves no room for text between ${pre + post} special tokens`,
            "TextTokenizer.encode",
          );
        kept = [...full.slice(0, pre), ...plain.slice(0, maxLength - pre - post), ...full.slice(pre + plain.length)];
      }
      ids.set(kept, row * maxLength);
      mask.fill(1, row * maxLength, row * maxLength + kept.length);
    });
    return { batch: texts.length, length: maxLength, ids, mask };
  }
}

/**
 * A CLIP tokenizer folder without tokenizer.json (FLUX.1's `tokenizer/`: vocab.json + merges.txt, class
 * CLIPTokenizer): the tokenizer.json that transformers' CLIP converter builds from them — byte-level BPE with
 * the `</w>` end-of-word suffix, NFC + whitespace-collapse + lowercase normalizer, CLIP's split pattern, and a
 * BOS … EOS post-processor. Undefined when the folder is not such a folder.
 */
async function clipFromVocabMerges(
  dir: string,
  config: Record<string, unknown>,
): Promise<Record<string, unknown> | undefined> {
  const cls = config.tokenizer_class;
  if (cls !== "CLIPTokenizer" && cls !== "CLIPTokenizerFast") return undefined;
  let vocabText: string;
  let mergesText: string;
  try {
    vocabText = await readFile(join(dir, "vocab.json"), "utf8");
    mergesText = await readFile(join(dir, "merges.txt"), "utf8");
  } catch {
    return undefined;
  }
  const vocab = parsePythonJson(vocabText, join(dir, "vocab.json"));
  const merges = mergesText
    .split("\n")
    .filter((l, i) => l.trim().length > 0 && !(i === 0 && l.startsWith("#version")))
    .map((l) => l.trim());
  const bos = tokenName(config.bos_token) ?? "<|startoftext|>";
  const eos = tokenName(config.eos_token) ?? "<|endoftext|>";
  const unk = tokenName(config.unk_token) ?? eos;
  const id = (t: string) => {
    const v = vocab[t];
    if (typeof v !== "number")
      throw new ModelError(
        "E_CONFIG",
        `special token ${JSON.stringify(t)} is not in vocab.json`,
        join(dir, "vocab.json"),
      );
    return v;
  };
  const special = (t: string) => ({
    id: id(t),
    content: t,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [...new Set([bos, eos, unk])].map(special),
    normalizer: {
      type: "Sequence",
      normalizers: [
        { type: "NFC" },
        { type: "Replace", pattern: { Regex: "\\s+" }, content: " " },
        { type: "Lowercase" },
      ],
    },
    pre_tokenizer: {
      type: "Sequence",
      pretokenizers: [
        {
          type: "Split",
          pattern: { Regex: "'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+" },
          behavior: "Removed",
          invert: true,
        },
        { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: {
      type: "RobertaProcessing",
      sep: [eos, id(eos)],
      cls: [bos, id(bos)],
      trim_offsets: false,
      add_prefix_space: false,
    },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: "",
      end_of_word_suffix: "</w>",
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };
}

function tokenName(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v !== null && typeof v === "object" && typeof (v as { content?: unknown }).content === "string")
    return (v as { content: string }).content;
  return undefined;
}

/** Where `plain` (the ids without specials) starts inside `full` (the ids with the template's specials). */
function specialPrefix(full: readonly number[], plain: readonly number[]): number {
  for (let p = 0; p + plain.length <= full.length; p++) {
    let ok = true;
    for (let i = 0; i < plain.length && ok; i++) ok = full[p + i] === plain[i];
    if (ok) return p;
  }
  throw new ModelError(
    "E_UNSUPPORTED",
    "the post-processor does not wrap the text in special tokens only; cannot truncate it the way transformers does",
    "TextTokenizer.encode",
  );
}
