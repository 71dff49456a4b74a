import { openModelFolder, type TensorSource } from "@svdquant/tensor";
import { ModelError } from "../errors.js";
import type { GemmBackend } from "../gemm.js";
import { ConfigReader } from "../json-config.js";
import { attention } from "../ops.js";
import type { ParamSpec } from "../params.js";
import { checkSpecs, loadWeightSet, type WeightSet } from "../weights.js";
import { Conv2d, groupNorm, siluInPlace, upsampleNearest2x } from "./conv.js";

/** AutoencoderKL config (diffusers `vae/config.json`), the decoder's fields. */
export interface VaeConfig {
  readonly outChannels: number;
  readonly latentChannels: number;
  readonly blockOutChannels: readonly number[];
  readonly layersPerBlock: number;
  readonly normNumGroups: number;
  readonly scalingFactor: number;
  /** FLUX: 0.1159; SD/PixArt VAEs have none (0 here, i.e. no shift). */
  readonly shiftFactor: number;
  readonly usePostQuantConv: boolean;
  readonly midBlockAddAttention: boolean;
}

export const VAE_CLASS = "AutoencoderKL";

/** Parse an AutoencoderKL config.json (diffusers defaults); decoder variants this code lacks are E_UNSUPPORTED. */
export function parseVaeConfig(raw: Record<string, unknown>, where = "config.json"): VaeConfig {
  const r = new ConfigReader(raw, where);
  if (raw._class_name !== undefined && raw._class_name !== VAE_CLASS)
    throw new ModelError("E_CONFIG", `_class_name is "${String(raw._class_name)}", expected "${VAE_CLASS}"`, where);
  r.unsupported("act_fn", "silu");
  const blocks = r.intList("block_out_channels", [64]);
  const up = raw.up_block_types ?? ["UpDecoderBlock2D"];
  if (!Array.isArray(up) || up.length !== blocks.length || up.some((t) => t !== "UpDecoderBlock2D"))
    throw new ModelError(
      "E_UNSUPPORTED",
      `"up_block_types" must be ${blocks.length} x "UpDecoderBlock2D", got ${JSON.stringify(up)}`,
      where,
    );
  const groups = r.posInt("norm_num_groups", 32);
  for (const c of blocks)
    if (c % groups !== 0)
      throw new ModelError("E_CONFIG", `block_out_channels ${c} is not divisible by norm_num_groups ${groups}`, where);
  return {
    outChannels: r.posInt("out_channels", 3),
    latentChannels: r.posInt("latent_channels", 4),
    blockOutChannels: blocks,
    layersPerBlock: r.posInt("layers_per_block", 1),
    normNumGroups: groups,
    scalingFactor: r.num("scaling_factor", 0.18215),
    shiftFactor: r.has("shift_factor") ? r.num("shift_factor", 0) : 0,
    usePostQuantConv: r.bool("use_post_quant_conv", true),
    midBlockAddAttention: r.bool("mid_block_add_attention", true),
  };
}

function convSpec(out: ParamSpec[], name: string, cin: number, cout: number, k: number): void {
  out.push({ name: `${name}.weight`, shape: [cout, cin, k, k] }, { name: `${name}.bias`, shape: [cout] });
}
function normSpec(out: ParamSpec[], name: string, c: number): void {
  out.push({ name: `${name}.weight`, shape: [c] }, { name: `${name}.bias`, shape: [c] });
}
function resnetSpec(out: ParamSpec[], name: string, cin: number, cout: number): void {
  normSpec(out, `${name}.norm1`, cin);
  convSpec(out, `${name}.conv1`, cin, cout, 3);
  normSpec(out, `${name}.norm2`, cout);
  convSpec(out, `${name}.conv2`, cout, cout, 3);
  if (cin !== cout) convSpec(out, `${name}.conv_shortcut`, cin, cout, 1);
}

/** The decoder's parameters (and post_quant_conv) in diffusers' state-dict names. */
export function vaeDecoderParams(c: VaeConfig): ParamSpec[] {
  const p: ParamSpec[] = [];
  const lc = c.latentChannels;
  const top = c.blockOutChannels[c.blockOutChannels.length - 1]!;
  if (c.usePostQuantConv) convSpec(p, "post_quant_conv", lc, lc, 1);
  convSpec(p, "decoder.conv_in", lc, top, 3);
  resnetSpec(p, "decoder.mid_block.resnets.0", top, top);
  if (c.midBlockAddAttention) {
    const a = "decoder.mid_block.attentions.0";
    normSpec(p, `${a}.group_norm`, top);
    for (const n of ["to_q", "to_k", "to_v", "to_out.0"])
      p.push({ name: `${a}.${n}.weight`, shape: [top, top] }, { name: `${a}.${n}.bias`, shape: [top] });
  }
  resnetSpec(p, "decoder.mid_block.resnets.1", top, top);
  const rev = [...c.blockOutChannels].reverse();
  let prev = rev[0]!;
  rev.forEach((out, i) => {
    for (let j = 0; j <= c.layersPerBlock; j++)
      resnetSpec(p, `decoder.up_blocks.${i}.resnets.${j}`, j === 0 ? prev : out, out);
    if (i < rev.length - 1) convSpec(p, `decoder.up_blocks.${i}.upsamplers.0.conv`, out, out, 3);
    prev = out;
  });
  normSpec(p, "decoder.conv_norm_out", c.blockOutChannels[0]!);
  convSpec(p, "decoder.conv_out", c.blockOutChannels[0]!, c.outChannels, 3);
  return p;
}

export interface VaeLoadOptions {
  /** GEMM backend of the convolutions and attention projections; default: the process-wide one. */
  readonly gemm?: GemmBackend;
}

/**
 * AutoencoderKL's decoder on the CPU, float32 compute, convolutions as im2col GEMMs:
 * [post_quant_conv] → conv_in → mid (resnet, single-head self-attention, resnet) → up blocks of
 * (layers_per_block + 1) ResnetBlock2D and a nearest-2x + conv upsampler (all but the last) →
 * GroupNorm → SiLU → conv_out. GroupNorm eps 1e-6 throughout (diffusers' Decoder).
 *
 * | tensor  | shape                          |
 * | ------- | ------------------------------ |
 * | z       | [B, latent_channels, h, w]     |
 * | image   | [B, out_channels, h·f, w·f]    | f = 2^(len(block_out_channels) − 1), in about [−1, 1]
 */
export class VaeDecoder {
  readonly config: VaeConfig;
  private readonly ws: WeightSet;
  private readonly convs = new Map<string, Conv2d>();
  private readonly gemm: GemmBackend | undefined;

  private constructor(config: VaeConfig, ws: WeightSet, specs: ParamSpec[], gemm: GemmBackend | undefined) {
    this.config = config;
    this.ws = ws;
    this.gemm = gemm;
    for (const s of specs)
      if (s.shape.length === 4) {
        const n = s.name.slice(0, -".weight".length);
        const [cout, cin, k] = s.shape as [number, number, number];
        this.convs.set(n, new Conv2d(n, ws.f32(s.name), ws.f32(`${n}.bias`), cout, cin, k, gemm));
      }
  }

  /** Load a diffusers `vae/` folder (config.json + diffusion_pytorch_model.safetensors); the encoder's tensors are skipped. */
  static async fromFolder(dir: string, opts: VaeLoadOptions = {}): Promise<VaeDecoder> {
    const folder = await openModelFolder(dir);
    try {
      if (folder.config === undefined) throw new ModelError("E_CONFIG", "no config.json in the folder", dir);
      return await VaeDecoder.fromSource(parseVaeConfig(folder.config, `${dir}/config.json`), folder.weights, opts);
    } finally {
      await folder.weights.close();
    }
  }

  static async fromSource(config: VaeConfig, source: TensorSource, opts: VaeLoadOptions = {}): Promise<VaeDecoder> {
    const specs = vaeDecoderParams(config);
    checkSpecs(source, specs);
    return new VaeDecoder(config, await loadWeightSet(source, specs), specs, opts.gemm);
  }

  /** Upsampling factor from latents to pixels (FluxPipeline's vae_scale_factor). */
  get scaleFactor(): number {
    return 2 ** (this.config.blockOutChannels.length - 1);
  }

  /** The pipelines' latents → z: `latents / scaling_factor + shift_factor` (FLUX) or `/ scaling_factor` (PixArt), float32 per op. */
  unscale(latents: Float32Array): Float32Array {
    const { scalingFactor: s, shiftFactor: t } = this.config;
    const sf = Math.fround(s);
    const tf = Math.fround(t);
    return latents.map((v) => Math.fround(v / sf) + tf);
  }

  /** Decode z [B, latent_channels, h, w] (already unscaled; see `unscale`) to images [B, out_channels, h·f, w·f]. */
  decode(z: Float32Array, batch: number, h: number, w: number): Float32Array {
    const c = this.config;
    const lc = c.latentChannels;
    if (![batch, h, w].every((v) => Number.isSafeInteger(v) && v > 0))
      throw new ModelError("E_INPUT", `batch ${batch}, h ${h}, w ${w} must be positive integers`, "VaeDecoder.decode");
    if (z.length !== batch * lc * h * w)
      throw new ModelError(
        "E_SHAPE",
        `latents have ${z.length} values, expected [${batch}, ${lc}, ${h}, ${w}]`,
        "VaeDecoder.decode",
      );
    for (let i = 0; i < z.length; i++)
      if (!Number.isFinite(z[i]!))
        throw new ModelError("E_INPUT", `latent ${i} is ${z[i]} (not finite)`, "VaeDecoder.decode");
    const f = this.scaleFactor;
    const per = c.outChannels * h * f * w * f;
    const out = new Float32Array(batch * per);
    for (let b = 0; b < batch; b++)
      out.set(this.decodeOne(z.subarray(b * lc * h * w, (b + 1) * lc * h * w), h, w), b * per);
    return out;
  }

  private conv(name: string, x: Float32Array, h: number, w: number): Float32Array {
    return this.convs.get(name)!.forward(x, h, w);
  }

  private norm(name: string, x: Float32Array, ch: number, hw: number): Float32Array {
    return groupNorm(
      x,
      ch,
      hw,
      this.config.normNumGroups,
      this.ws.f32(`${name}.weight`),
      this.ws.f32(`${name}.bias`),
      1e-6,
    );
  }

  private resnet(name: string, x: Float32Array, cin: number, cout: number, h: number, w: number): Float32Array {
    let y = siluInPlace(this.norm(`${name}.norm1`, x, cin, h * w));
    y = this.conv(`${name}.conv1`, y, h, w);
    y = siluInPlace(this.norm(`${name}.norm2`, y, cout, h * w));
    y = this.conv(`${name}.conv2`, y, h, w);
    const skip = cin === cout ? x : this.conv(`${name}.conv_shortcut`, x, h, w);
    for (let i = 0; i < y.length; i++) y[i] = skip[i]! + y[i]!; // output_scale_factor 1
    return y;
  }

  /** The mid block's single-head self-attention over the h·w positions, with its residual. */
  private midAttention(x: Float32Array, ch: number, h: number, w: number): Float32Array {
    const a = "decoder.mid_block.attentions.0";
    const hw = h * w;
    const n = this.norm(`${a}.group_norm`, x, ch, hw);
    // a Linear over the [HW, C] tokens is a 1x1 conv over the channel-major [C, 1, HW] map
    const proj = (name: string, t: Float32Array) =>
      new Conv2d(name, this.ws.f32(`${name}.weight`), this.ws.f32(`${name}.bias`), ch, ch, 1, this.gemm).forward(
        t,
        1,
        hw,
      );
    const cm = (t: Float32Array) => {
      const o = new Float32Array(hw * ch);
      for (let p = 0; p < hw; p++) for (let ci = 0; ci < ch; ci++) o[p * ch + ci] = t[ci * hw + p]!;
      return o;
    };
    const q = cm(proj(`${a}.to_q`, n));
    const k = cm(proj(`${a}.to_k`, n));
    const v = cm(proj(`${a}.to_v`, n));
    const att = attention(q, k, v, 1, hw, hw, 1, ch); // one head of dim C: scale 1/√C
    // back to channel-major for to_out.0 (as a 1x1 conv), then the residual
    const attCm = new Float32Array(hw * ch);
    for (let p = 0; p < hw; p++) for (let ci = 0; ci < ch; ci++) attCm[ci * hw + p] = att[p * ch + ci]!;
    const o = proj(`${a}.to_out.0`, attCm);
    for (let i = 0; i < o.length; i++) o[i] = o[i]! + x[i]!; // residual_connection, rescale_output_factor 1
    return o;
  }

  private decodeOne(z: Float32Array, h: number, w: number): Float32Array {
    const c = this.config;
    const top = c.blockOutChannels[c.blockOutChannels.length - 1]!;
    let x = c.usePostQuantConv ? this.conv("post_quant_conv", z, h, w) : z;
    x = this.conv("decoder.conv_in", x, h, w);
    x = this.resnet("decoder.mid_block.resnets.0", x, top, top, h, w);
    if (c.midBlockAddAttention) x = this.midAttention(x, top, h, w);
    x = this.resnet("decoder.mid_block.resnets.1", x, top, top, h, w);
    const rev = [...c.blockOutChannels].reverse();
    let prev = rev[0]!;
    let hh = h;
    let ww = w;
    rev.forEach((out, i) => {
      for (let j = 0; j <= c.layersPerBlock; j++)
        x = this.resnet(`decoder.up_blocks.${i}.resnets.${j}`, x, j === 0 ? prev : out, out, hh, ww);
      if (i < rev.length - 1) {
        x = upsampleNearest2x(x, out, hh, ww);
        hh *= 2;
        ww *= 2;
        x = this.conv(`decoder.up_blocks.${i}.upsamplers.0.conv`, x, hh, ww);
      }
      prev = out;
    });
    const c0 = c.blockOutChannels[0]!;
    x = siluInPlace(this.norm("decoder.conv_norm_out", x, c0, hh * ww));
    return this.conv("decoder.conv_out", x, hh, ww);
  }
}

/**
 * diffusers' VaeImageProcessor.postprocess to 8-bit: (x/2 + 0.5).clamp(0, 1), ·255, round half to even.
 * [B, 3, H, W] float → [B, H, W, 3] RGB bytes.
 */
export function imageToRgb8(image: Float32Array, batch: number, channels: number, h: number, w: number): Uint8Array {
  if (image.length !== batch * channels * h * w)
    throw new ModelError(
      "E_SHAPE",
      `image has ${image.length} values, expected [${batch}, ${channels}, ${h}, ${w}]`,
      "imageToRgb8",
    );
  const f32 = Math.fround;
  const out = new Uint8Array(image.length);
  const hw = h * w;
  for (let b = 0; b < batch; b++)
    for (let ci = 0; ci < channels; ci++)
      for (let p = 0; p < hw; p++) {
        const v = image[(b * channels + ci) * hw + p]!;
        if (Number.isNaN(v))
          throw new ModelError("E_INPUT", `pixel value is NaN at image ${b}, channel ${ci}`, "imageToRgb8");
        const d = Math.min(1, Math.max(0, f32(f32(v / 2) + 0.5)));
        const s = f32(d * 255);
        const r = Math.round(s);
        out[(b * hw + p) * channels + ci] = Math.abs(s % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
      }
  return out;
}
