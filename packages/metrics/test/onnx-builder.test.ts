import * as ort from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import { encodeOnnxModel, ONNX_FLOAT } from "../src/index.js";
import { rng } from "./helpers.js";

describe("encodeOnnxModel", () => {
  it("builds a graph that onnxruntime-node loads and runs: Y = ReduceMean(X·W + B, axis 1)", async () => {
    const r = rng(21);
    const w = Float32Array.from({ length: 12 }, () => r() - 0.5);
    const b = Float32Array.from({ length: 3 }, () => r() - 0.5);
    const model = encodeOnnxModel({
      name: "t",
      nodes: [
        { opType: "MatMul", inputs: ["X", "W"], outputs: ["xw"] },
        { opType: "Add", inputs: ["xw", "B"], outputs: ["z"] },
        { opType: "ReduceMean", inputs: ["z"], outputs: ["Y"], attributes: { axes: { ints: [1] }, keepdims: 0 } },
      ],
      inputs: [{ name: "X", elemType: ONNX_FLOAT, shape: ["N", 4] }],
      outputs: [{ name: "Y", elemType: ONNX_FLOAT, shape: ["N"] }],
      initializers: [
        { name: "W", dims: [4, 3], data: w },
        { name: "B", dims: [3], data: b },
      ],
    });
    const session = await ort.InferenceSession.create(model);
    expect(session.inputNames).toEqual(["X"]);
    expect(session.outputNames).toEqual(["Y"]);
    const x = Float32Array.from({ length: 8 }, () => r() * 2 - 1);
    const out = await session.run({ X: new ort.Tensor("float32", x, [2, 4]) });
    const y = out.Y.data as Float32Array;
    for (let n = 0; n < 2; n++) {
      let want = 0;
      for (let j = 0; j < 3; j++) {
        let s = b[j];
        for (let k = 0; k < 4; k++) s += x[n * 4 + k] * w[k * 3 + j];
        want += s / 3;
      }
      expect(y[n]).toBeCloseTo(want, 5);
    }
    await session.release();
  });
});
