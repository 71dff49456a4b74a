import { copyFile, mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  ClipTextEncoder,
  clipPoolIndex,
  erf,
  FLUX_CLIP_MAX_LENGTH,
  FLUX_T5_MAX_LENGTH,
  FluxPromptEncoder,
  ModelError,
  PIXART_T5_MAX_LENGTH,
  PixArtPromptEncoder,
  parseT5Config,
  T5Encoder,
  TextTokenizer,
  t5RelativeBucket,
} from "../src/index.js";
import { type Loaded, PIPELINE, readPipelineFixture, relErr } from "./pipeline-fixtures.js";

let T: Record<string, Loaded>;
let prompts: string[];
beforeAll(async () => {
  const f = await readPipelineFixture("text.safetensors");
  T = f.t;
  prompts = JSON.parse(f.metadata.prompts!) as string[];
});

const get = (n: string) => {
  const v = T[n];
  if (v === undefined) throw new Error(`fixture tensor ${n} missing`);
  return v;
};

describe(`TextTokenizer (tokenizer.json through @huggingface/tokenizers) vs transformers`, () => {
  const cases = [
    ["flux/tokenizer", FLUX_CLIP_MAX_LENGTH, "flux.clip"],
    ["flux/tokenizer_2", FLUX_T5_MAX_LENGTH, "flux.t5"],
    ["pixart/tokenizer", PIXART_T5_MAX_LENGTH, "pixart.t5"],
    ["clip-proj/tokenizer", FLUX_CLIP_MAX_LENGTH, "proj.clip"],
  ] as const;
  it.each(cases)("%s: ids and mask equal (padding max_length %i, truncation)", async (dir, len, tag) => {
    const tok = await TextTokenizer.fromFolder(join(PIPELINE, dir));
    const enc = tok.encode(prompts, len);
    // input_ids_raw: the tokenizers library on the same tokenizer.json, truncation/padding to len
    expect(Array.from(enc.ids)).toEqual(Array.from(get(`${tag}.input_ids_raw`).data));
    // transformers' tokenizer class agrees, except that transformers 5's T5Tokenizer turns the tab of prompt 0
    // into "▁" where this tokenizer.json's normalizer (NFKC, no whitespace mapping) keeps it as <unk>
    const hf = get(`${tag}.input_ids`).data;
    const diff = Array.from(enc.ids).flatMap((v, i) => (v === hf[i] ? [] : [i]));
    expect(diff).toEqual(tag.endsWith(".t5") ? [38] : []);
    expect(Array.from(enc.mask)).toEqual(Array.from(get(`${tag}.attention_mask`).data));
    // the long prompt really was truncated, the empty one is only specials
    expect(tok.encodeOne(prompts[2]!).length).toBeGreaterThan(len);
    expect(enc.mask.subarray(len, 2 * len).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(2);
  });

  it("a CLIP folder with vocab.json + merges.txt only (FLUX.1's tokenizer/) tokenizes the same", async () => {
    const src = JSON.parse(await readFile(join(PIPELINE, "flux/tokenizer/tokenizer.json"), "utf8"));
    const dir = await mkdtemp(join(tmpdir(), "svdq-clip-tok-"));
    const vocab = { ...src.model.vocab };
    for (const a of src.added_tokens) vocab[a.content] = a.id;
    const merges = (src.model.merges as (string | string[])[]).map((m) => (Array.isArray(m) ? m.join(" ") : m));
    await writeFile(join(dir, "vocab.json"), JSON.stringify(vocab));
    await writeFile(join(dir, "merges.txt"), `#version: 0.2\n${merges.join("\n")}\n`);
    await copyFile(join(PIPELINE, "flux/tokenizer/tokenizer_config.json"), join(dir, "tokenizer_config.json"));
    const tok = await TextTokenizer.fromFolder(dir);
    expect(Array.from(tok.encode(prompts, 77).ids)).toEqual(Array.from(get("flux.clip.input_ids").data));
  });

  it("names the folder when tokenizer.json is missing, and rejects bad lengths", async () => {
    await expect(TextTokenizer.fromFolder(join(PIPELINE, "flux/vae"))).rejects.toThrow(
      /tokenizer\.json: cannot read: ENOENT/,
    );
    const tok = await TextTokenizer.fromFolder(join(PIPELINE, "flux/tokenizer"));
    expect(() => tok.encode(["a"], 0)).toThrow(/maxLength must be a positive integer/);
    expect(() => tok.encode(["a red circle"], 2)).toThrow(/leaves no room/);
    expect(() => tok.encode([], 77)).toThrow(/no texts/);
  });
});

describe(`T5Encoder vs transformers' T5EncoderModel (float64 reference)`, () => {
  it("FLUX text_encoder_2: 512 tokens, no attention mask, within 1e-5", async () => {
    const enc = await T5Encoder.fromFolder(join(PIPELINE, "flux/text_encoder_2"));
    const ids = get("flux.t5.input_ids");
    const [b, l] = ids.shape as [number, number];
    const out = enc.forward({ batch: b, length: l, ids: ids.data });
    const err = relErr(out, get("flux.t5.last_hidden_state").data);
    console.log(
      "flux T5 rel err vs float64:",
      err,
      "vs float32:",
      relErr(out, get("flux.t5.last_hidden_state_f32").data),
    );
    expect(err).toBeLessThan(1e-5);
  });

  it("PixArt text_encoder: 300 tokens with the padding mask, within 1e-5 (and the mask matters)", async () => {
    const enc = await T5Encoder.fromFolder(join(PIPELINE, "pixart/text_encoder"));
    const ids = get("pixart.t5.input_ids");
    const [b, l] = ids.shape as [number, number];
    const mask = get("pixart.t5.attention_mask").data;
    const out = enc.forward({ batch: b, length: l, ids: ids.data, mask });
    const err = relErr(out, get("pixart.t5.last_hidden_state").data);
    console.log("pixart T5 rel err vs float64:", err);
    expect(err).toBeLessThan(1e-5);
    const unmasked = enc.forward({ batch: b, length: l, ids: ids.data });
    expect(relErr(unmasked, get("pixart.t5.last_hidden_state").data)).toBeGreaterThan(1e-3);
  });

  it("rejects configs and inputs it cannot run", async () => {
    expect(() => parseT5Config({ feed_forward_proj: "gated-silu" })).toThrow(/not supported/);
    const enc = await T5Encoder.fromFolder(join(PIPELINE, "pixart/text_encoder"));
    expect(() => enc.forward({ batch: 1, length: 2, ids: [0, 100000] })).toThrow(/token id 100000 at position 1/);
    expect(() => enc.forward({ batch: 1, length: 2, ids: [0] })).toThrow(/ids has 1 values, expected \[1, 2\]/);
    expect(() => enc.forward({ batch: 1, length: 2, ids: [0, 1], mask: [1, 2] })).toThrow(/mask value 2/);
    await expect(T5Encoder.fromFolder(join(PIPELINE, "flux/text_encoder"))).rejects.toThrow(ModelError);
  });
});

describe(`ClipTextEncoder vs transformers' CLIPTextModel (float64 reference)`, () => {
  it("FLUX text_encoder (CLIPTextModel, quick_gelu, legacy eos_token_id 2): hidden states and pooled within 1e-5", async () => {
    const enc = await ClipTextEncoder.fromFolder(join(PIPELINE, "flux/text_encoder"));
    expect(enc.config.eosTokenId).toBe(2);
    const ids = get("flux.clip.input_ids");
    const [b, l] = ids.shape as [number, number];
    const out = enc.forward({ batch: b, length: l, ids: ids.data });
    const eh = relErr(out.lastHiddenState, get("flux.clip.last_hidden_state").data);
    const ep = relErr(out.pooled, get("flux.clip.pooled").data);
    console.log("flux CLIP rel err hidden/pooled:", eh, ep);
    expect(eh).toBeLessThan(1e-5);
    expect(ep).toBeLessThan(1e-5);
    expect(out.textEmbeds).toBeUndefined();
  });

  it("CLIPTextModelWithProjection, exact gelu, eos_token_id = the EOS id: text_embeds within 1e-5", async () => {
    const enc = await ClipTextEncoder.fromFolder(join(PIPELINE, "clip-proj/text_encoder"));
    expect(enc.config.hiddenAct).toBe("gelu");
    const ids = get("proj.clip.input_ids");
    const [b, l] = ids.shape as [number, number];
    const out = enc.forward({ batch: b, length: l, ids: ids.data });
    const eh = relErr(out.lastHiddenState, get("proj.clip.last_hidden_state").data);
    const ep = relErr(out.textEmbeds!, get("proj.clip.pooled").data);
    console.log("proj CLIP rel err hidden/text_embeds:", eh, ep);
    expect(eh).toBeLessThan(1e-5);
    expect(ep).toBeLessThan(1e-5);
  });

  it("rejects sequences longer than the position table", async () => {
    const enc = await ClipTextEncoder.fromFolder(join(PIPELINE, "flux/text_encoder"));
    expect(() => enc.forward({ batch: 1, length: 78, ids: new Array(78).fill(0) })).toThrow(/exceeds the model's 77/);
  });
});

describe(`FluxPromptEncoder / PixArtPromptEncoder on the pipeline folders`, () => {
  it("FLUX: T5 prompt_embeds and CLIP pooled_prompt_embeds as the encoders, zero text ids", async () => {
    const enc = await FluxPromptEncoder.fromPipelineFolder(join(PIPELINE, "flux"));
    const out = enc.encode(prompts);
    expect(out.txtTokens).toBe(512);
    // rows 1-2 only: prompt 0's ids differ by that one token between transformers and tokenizer.json
    const row = 512 * 32;
    const ref = get("flux.t5.last_hidden_state").data;
    expect(relErr(out.promptEmbeds.subarray(row), ref.subarray(row))).toBeLessThan(1e-5);
    expect(relErr(out.pooledPromptEmbeds, get("flux.clip.pooled").data)).toBeLessThan(1e-5);
    expect(out.txtIds.every((v) => v === 0)).toBe(true);
    expect(() => enc.encode(prompts, 513)).toThrow(/exceeds 512/);
  });

  it("PixArt: masked T5 embeddings, and negative embeddings of the empty prompt", async () => {
    const enc = await PixArtPromptEncoder.fromPipelineFolder(join(PIPELINE, "pixart"));
    const out = enc.encode(prompts, "");
    const per = 300 * 32;
    const ref = get("pixart.t5.last_hidden_state").data;
    expect(relErr(out.promptEmbeds.subarray(per), ref.subarray(per))).toBeLessThan(1e-5);
    expect(Array.from(out.promptAttentionMask)).toEqual(Array.from(get("pixart.t5.attention_mask").data));
    expect(prompts[1]).toBe("");
    expect(relErr(out.negativePromptEmbeds!.subarray(0, per), out.promptEmbeds.subarray(per, 2 * per))).toBeLessThan(
      1e-6,
    );
  });
});

describe("text ops: erf, T5 buckets, CLIP pool index", () => {
  it("relative position buckets: exact below max_exact, log-spaced, capped, direction in the top half", () => {
    // 32 buckets, max distance 128 (T5 v1.1): 16 per direction, exact below 8
    expect(t5RelativeBucket(0, 32, 128)).toBe(0);
    expect(t5RelativeBucket(-7, 32, 128)).toBe(7);
    expect(t5RelativeBucket(7, 32, 128)).toBe(23);
    expect(t5RelativeBucket(-8, 32, 128)).toBe(8);
    expect(t5RelativeBucket(-1000, 32, 128)).toBe(15);
    expect(t5RelativeBucket(1000, 32, 128)).toBe(31);
    // 8 + trunc(8·log(n/8)/log(16)): n = 16 → 10, 32 → 12, 64 → 14 (the float32 edges)
    expect([16, 32, 64].map((n) => t5RelativeBucket(-n, 32, 128))).toEqual([10, 12, 14]);
    for (let n = 8; n < 128; n++) {
      const exact = 8 + Math.floor((8 * Math.log(n / 8)) / Math.log(16) + 1e-9);
      expect(t5RelativeBucket(-n, 32, 128), `n=${n}`).toBe(Math.min(exact, 15));
    }
  });

  it("pool index: argmax id for eos 2, else the first EOS", () => {
    const ids = [5, 9, 3, 9, 1];
    expect(clipPoolIndex(ids, 0, 5, 2)).toBe(1);
    expect(clipPoolIndex(ids, 0, 5, 3)).toBe(2);
    expect(clipPoolIndex(ids, 0, 5, 42)).toBe(0);
  });

  it("matches reference values to 1e-15 (float64)", () => {
    // Python math.erf (the C library's erf), shortest round-trip repr
    const ref: [number, number][] = [
      [0, 0],
      [0.1, 0.1124629160182849],
      [0.5, 0.5204998778130465],
      [1, 0.8427007929497149],
      [-1.2, -0.9103139782296353],
      [2, 0.9953222650189527],
      [2.9, 0.9999589021219005],
      [3.5, 0.9999992569016276],
      [5, 0.9999999999984626],
    ];
    for (const [x, e] of ref) expect(Math.abs(erf(x) - e), `erf(${x})`).toBeLessThan(2e-15);
  });
});
