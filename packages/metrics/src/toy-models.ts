import { CLIP_SIZE, FID_SIZE } from "./neural.js";
import { encodeOnnxModel, ONNX_FLOAT, ONNX_INT64 } from "./onnx-builder.js";

/**
 * Tiny ONNX graphs with exactly the signatures of the real metric networks (FID_SPEC, LPIPS_SPEC,
 * CLIP_IMAGE_SPEC, IMAGE_REWARD_SPEC). They let tests and users check the whole evaluation path — file loading,
 * signature checks, preprocessing, batching — without the real weights. Their numbers mean nothing.
 *
 * | graph        | computation                                                                        |
 * | ------------ | ---------------------------------------------------------------------------------- |
 * | fid          | AveragePool 23x23 stride 23 → [N,3,13,13] → Flatten → ·W [507, D] → features [N,D] |
 * | lpips        | mean over C,H,W of (in0 − in1)² → distance [N,1,1,1]                                |
 * | clip         | AveragePool 32x32 stride 32 → [N,3,7,7] → Flatten → ·W [147, E] → image_embeds     |
 * | imageReward  | mean(pixel_values over C,H,W) + 0.01·mean(input_ids·attention_mask) → reward [N]  |
 */
export interface ToyWeights {
  /** [507, D] row-major */
  fid: Float32Array;
  fidDim: number;
  /** [147, E] row-major */
  clip: Float32Array;
  clipDim: number;
}

/** Seeded weights of the toy graphs (mulberry32). */
export function toyWeights(seed = 1, fidDim = 16, clipDim = 8): ToyWeights {
  let a = seed >>> 0;
  const r = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
  return {
    fid: Float32Array.from({ length: 507 * fidDim }, r),
    fidDim,
    clip: Float32Array.from({ length: 147 * clipDim }, r),
    clipDim,
  };
}

export function toyFidModel(w: ToyWeights): Uint8Array {
  return encodeOnnxModel({
    name: "toy-fid",
    nodes: [
      {
        opType: "AveragePool",
        inputs: ["images"],
        outputs: ["pooled"],
        attributes: { kernel_shape: { ints: [23, 23] }, strides: { ints: [23, 23] } },
      },
      { opType: "Flatten", inputs: ["pooled"], outputs: ["flat"], attributes: { axis: 1 } },
      { opType: "MatMul", inputs: ["flat", "W"], outputs: ["features"] },
    ],
    inputs: [{ name: "images", elemType: ONNX_FLOAT, shape: ["N", 3, FID_SIZE, FID_SIZE] }],
    outputs: [{ name: "features", elemType: ONNX_FLOAT, shape: ["N", w.fidDim] }],
    initializers: [{ name: "W", dims: [507, w.fidDim], data: w.fid }],
  });
}

export function toyLpipsModel(): Uint8Array {
  return encodeOnnxModel({
    name: "toy-lpips",
    nodes: [
      { opType: "Sub", inputs: ["in0", "in1"], outputs: ["d"] },
      { opType: "Mul", inputs: ["d", "d"], outputs: ["d2"] },
      {
        opType: "ReduceMean",
        inputs: ["d2"],
        outputs: ["distance"],
        attributes: { axes: { ints: [1, 2, 3] }, keepdims: 1 },
      },
    ],
    inputs: [
      { name: "in0", elemType: ONNX_FLOAT, shape: ["N", 3, "H", "W"] },
      { name: "in1", elemType: ONNX_FLOAT, shape: ["N", 3, "H", "W"] },
    ],
    outputs: [{ name: "distance", elemType: ONNX_FLOAT, shape: ["N", 1, 1, 1] }],
  });
}

export function toyClipModel(w: ToyWeights): Uint8Array {
  return encodeOnnxModel({
    name: "toy-clip",
    nodes: [
      {
        opType: "AveragePool",
        inputs: ["pixel_values"],
        outputs: ["pooled"],
        attributes: { kernel_shape: { ints: [32, 32] }, strides: { ints: [32, 32] } },
      },
      { opType: "Flatten", inputs: ["pooled"], outputs: ["flat"], attributes: { axis: 1 } },
      { opType: "MatMul", inputs: ["flat", "W"], outputs: ["image_embeds"] },
    ],
    inputs: [{ name: "pixel_values", elemType: ONNX_FLOAT, shape: ["N", 3, CLIP_SIZE, CLIP_SIZE] }],
    outputs: [{ name: "image_embeds", elemType: ONNX_FLOAT, shape: ["N", w.clipDim] }],
    initializers: [{ name: "W", dims: [147, w.clipDim], data: w.clip }],
  });
}

export function toyImageRewardModel(): Uint8Array {
  return encodeOnnxModel({
    name: "toy-imagereward",
    nodes: [
      {
        opType: "ReduceMean",
        inputs: ["pixel_values"],
        outputs: ["pm"],
        attributes: { axes: { ints: [1, 2, 3] }, keepdims: 0 },
      },
      { opType: "Mul", inputs: ["input_ids", "attention_mask"], outputs: ["ids"] },
      { opType: "Cast", inputs: ["ids"], outputs: ["idsf"], attributes: { to: ONNX_FLOAT } },
      { opType: "ReduceMean", inputs: ["idsf"], outputs: ["tm"], attributes: { axes: { ints: [1] }, keepdims: 0 } },
      { opType: "Mul", inputs: ["tm", "k"], outputs: ["ts"] },
      { opType: "Add", inputs: ["pm", "ts"], outputs: ["reward"] },
    ],
    inputs: [
      { name: "pixel_values", elemType: ONNX_FLOAT, shape: ["N", 3, CLIP_SIZE, CLIP_SIZE] },
      { name: "input_ids", elemType: ONNX_INT64, shape: ["N", "L"] },
      { name: "attention_mask", elemType: ONNX_INT64, shape: ["N", "L"] },
    ],
    outputs: [{ name: "reward", elemType: ONNX_FLOAT, shape: ["N"] }],
    initializers: [{ name: "k", dims: [], data: Float32Array.of(0.01) }],
  });
}
