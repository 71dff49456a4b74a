import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  CLIP_MEAN,
  CLIP_STD,
  ClipImageEncoder,
  clipScore,
  encodeOnnxModel,
  FidFeatureExtractor,
  ImageReward,
  Lpips,
  MetricsError,
  ONNX_FLOAT,
  resizePlaneF,
  resizeRgb8,
  toPlanar,
  toyClipModel,
  toyFidModel,
  toyImageRewardModel,
  toyLpipsModel,
  toyWeights,
} from "../src/index.js";
import { rng } from "./helpers.js";
import { channel, randomRgb8, resizeRef } from "./reference.js";

const dir = mkdtempSync(join(tmpdir(), "svdq-metrics-"));
const W = toyWeights(3);
const paths = {
  fid: join(dir, "fid.onnx"),
  lpips: join(dir, "lpips.onnx"),
  clip: join(dir, "clip.onnx"),
  ir: join(dir, "ir.onnx"),
};
writeFileSync(paths.fid, toyFidModel(W));
writeFileSync(paths.lpips, toyLpipsModel());
writeFileSync(paths.clip, toyClipModel(W));
writeFileSync(paths.ir, toyImageRewardModel());

/** Float64 toy graph: average-pool k x k stride k then ·W. */
function poolMatmul(x: Float64Array[], size: number, k: number, w: Float32Array, dim: number): Float64Array {
  const o = Math.floor((size - k) / k) + 1;
  const flat: number[] = [];
  for (let c = 0; c < 3; c++)
    for (let py = 0; py < o; py++)
      for (let px = 0; px < o; px++) {
        let s = 0;
        for (let y = 0; y < k; y++) for (let xx = 0; xx < k; xx++) s += x[c][(py * k + y) * size + px * k + xx];
        flat.push(s / (k * k));
      }
  const out = new Float64Array(dim);
  for (let j = 0; j < dim; j++) for (let i = 0; i < flat.length; i++) out[j] += flat[i] * w[i * dim + j];
  return out;
}

describe("Pillow bicubic resize against a float64 reference", () => {
  it("float 'F' mode (clean-fid): up- and downscaling, within float32 rounding", () => {
    const r = rng(17);
    for (const [w, h, ow, oh] of [
      [97, 61, 299, 299],
      [640, 480, 299, 299],
      [50, 50, 50, 20],
    ]) {
      const src = Float32Array.from({ length: w * h }, () => 255 * r());
      const got = resizePlaneF(src, w, h, ow, oh);
      const want = resizeRef(src, w, h, ow, oh);
      let max = 0;
      for (let i = 0; i < want.length; i++) max = Math.max(max, Math.abs(got[i] - want[i]));
      expect(max).toBeLessThan(2e-4);
    }
  });

  it("8-bit mode: equal to round-per-pass float64 except rare ±1 ties of the fixed point", () => {
    const r = rng(19);
    const img = randomRgb8(r, 300, 260);
    const got = resizeRgb8(img, 224, 194);
    let diff = 0;
    for (let c = 0; c < 3; c++) {
      const want = resizeRef(channel(img, c), 300, 260, 224, 194, true);
      for (let p = 0; p < want.length; p++) {
        const d = Math.abs(got.data[p * 3 + c] - want[p]);
        expect(d).toBeLessThanOrEqual(1);
        diff += d;
      }
    }
    expect(diff / got.data.length).toBeLessThan(1e-3);
  });
});

describe("neural metrics through onnxruntime-node with signature-compatible toy graphs", () => {
  it("FID features: uint8 → per-channel F bicubic 299 → clip → graph, equals float64 reference", async () => {
    const r = rng(23);
    const imgs = [randomRgb8(r, 160, 120), randomRgb8(r, 512, 384)];
    const fx = await FidFeatureExtractor.load(paths.fid);
    const feats = await fx.features(imgs);
    for (const [i, img] of imgs.entries()) {
      const planes = [0, 1, 2].map((c) =>
        resizeRef(channel(img, c), img.width, img.height, 299, 299).map((v) => Math.min(255, Math.max(0, v))),
      );
      const want = poolMatmul(planes, 299, 23, W.fid, W.fidDim);
      for (let j = 0; j < W.fidDim; j++)
        expect(Math.abs(feats[i][j] - want[j])).toBeLessThan(1e-3 * (1 + Math.abs(want[j])));
    }
    await fx.release();
  });

  it("LPIPS: [0,1] → [−1,1] pairs, equals float64 reference", async () => {
    const r = rng(29);
    const a = [randomRgb8(r, 40, 32), randomRgb8(r, 40, 32)].map(toPlanar);
    const b = [randomRgb8(r, 40, 32), randomRgb8(r, 40, 32)].map(toPlanar);
    const lp = await Lpips.load(paths.lpips);
    const d = await lp.distances(a, b);
    for (let i = 0; i < 2; i++) {
      let s = 0;
      for (let k = 0; k < a[i].data.length; k++) s += (2 * a[i].data[k] - 1 - (2 * b[i].data[k] - 1)) ** 2;
      expect(d[i]).toBeCloseTo(s / a[i].data.length, 5);
    }
    const other = toPlanar(randomRgb8(r, 41, 32, "b41.png"));
    await expect(lp.distances([a[0]], [other])).rejects.toThrow(/differ in size.*b41\.png/);
    await lp.release();
  });

  it("CLIP: short side 224 + center crop + CLIP mean/std, embeddings and score equal float64 reference", async () => {
    const r = rng(31);
    const img = randomRgb8(r, 300, 260); // → 258x224, crop left = round(17) = 17
    const enc = await ClipImageEncoder.load(paths.clip);
    const [emb] = await enc.embed([img]);
    const planes = [0, 1, 2].map((c) => {
      const rs = resizeRef(channel(img, c), 300, 260, 258, 224, true);
      const crop = new Float64Array(224 * 224);
      for (let y = 0; y < 224; y++)
        for (let x = 0; x < 224; x++) crop[y * 224 + x] = (rs[y * 258 + x + 17] / 255 - CLIP_MEAN[c]) / CLIP_STD[c];
      return crop;
    });
    const want = poolMatmul(planes, 224, 32, W.clip, W.clipDim);
    for (let j = 0; j < W.clipDim; j++) expect(Math.abs(emb[j] - want[j])).toBeLessThan(1e-3);
    const text = Float32Array.from({ length: W.clipDim }, () => r() - 0.5);
    let dot = 0;
    let n1 = 0;
    let n2 = 0;
    for (let j = 0; j < W.clipDim; j++) {
      dot += want[j] * text[j];
      n1 += want[j] ** 2;
      n2 += text[j] ** 2;
    }
    expect(clipScore(emb, text)).toBeCloseTo(Math.max(0, (100 * dot) / Math.sqrt(n1 * n2)), 2);
    await enc.release();
  });

  it("ImageReward: pixels + tokens → reward, equals float64 reference", async () => {
    const r = rng(37);
    const img = randomRgb8(r, 224, 224);
    const ir = await ImageReward.load(paths.ir);
    const ids = BigInt64Array.from([101n, 2023n, 2003n, 102n, 0n, 0n]);
    const mask = BigInt64Array.from([1n, 1n, 1n, 1n, 0n, 0n]);
    const [got] = await ir.rewards([img], [{ inputIds: ids, attentionMask: mask }]);
    let pm = 0;
    for (let p = 0; p < 224 * 224; p++)
      for (let c = 0; c < 3; c++) pm += (img.data[p * 3 + c] / 255 - CLIP_MEAN[c]) / CLIP_STD[c];
    pm /= 3 * 224 * 224;
    const want = pm + 0.01 * ((101 + 2023 + 2003 + 102) / 6);
    expect(got).toBeCloseTo(want, 4);
    await ir.release();
  });

  it("clear errors: missing file, wrong signature, not ONNX, empty batch", async () => {
    await expect(FidFeatureExtractor.load(join(dir, "nope.onnx"))).rejects.toMatchObject({
      code: "E_MODEL_MISSING",
      message: expect.stringContaining("nope.onnx: FID model file not found"),
    });
    // An LPIPS graph where FID is expected: wrong inputs.
    await expect(FidFeatureExtractor.load(paths.lpips)).rejects.toThrow(
      /FID model has inputs \[in0, in1\]; expected inputs \{images/,
    );
    // Right name, wrong fixed size.
    const wrongSize = join(dir, "fid224.onnx");
    writeFileSync(
      wrongSize,
      encodeOnnxModel({
        name: "x",
        nodes: [{ opType: "Flatten", inputs: ["images"], outputs: ["features"], attributes: { axis: 1 } }],
        inputs: [{ name: "images", elemType: ONNX_FLOAT, shape: ["N", 3, 224, 224] }],
        outputs: [{ name: "features", elemType: ONNX_FLOAT, shape: ["N", 150528] }],
      }),
    );
    await expect(FidFeatureExtractor.load(wrongSize)).rejects.toThrow(/input "images" has shape \[N, 3, 224, 224\]/);
    // Declared shape unknown (rank 0 in the proto), actual output [N, 3, 299, 299]: caught at run time.
    const identity = join(dir, "identity.onnx");
    writeFileSync(
      identity,
      encodeOnnxModel({
        name: "x",
        nodes: [{ opType: "Identity", inputs: ["images"], outputs: ["features"] }],
        inputs: [{ name: "images", elemType: ONNX_FLOAT, shape: ["N", 3, 299, 299] }],
        outputs: [{ name: "features", elemType: ONNX_FLOAT, shape: [] }],
      }),
    );
    const bad = await FidFeatureExtractor.load(identity); // ORT merges the shapes leniently (a warning)
    await expect(bad.features([randomRgb8(rng(1), 20, 20, "x.png")])).rejects.toThrow(
      /FID output "features" is float32 \[1, 3, 299, 299\]; expected float32 \[1, \?\]/,
    );
    await bad.release();
    const junk = join(dir, "junk.onnx");
    writeFileSync(junk, "not a model");
    await expect(Lpips.load(junk)).rejects.toMatchObject({ code: "E_MODEL_SIGNATURE" });
    const fx = await FidFeatureExtractor.load(paths.fid);
    await expect(fx.features([])).rejects.toThrow(MetricsError);
    await expect(fx.features([])).rejects.toThrow(/no images given to FID/);
    await fx.release();
  });
});
