import { Tensor } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import {
  FluxTransformer,
  fluxParams,
  ModelError,
  PixArtTransformer,
  parseFluxConfig,
  parsePixArtConfig,
  pixartParams,
} from "../src/index.js";
import { randn } from "./helpers.js";
import { memorySource } from "./memory-source.js";

const mem = (tensors: Map<string, Tensor>) => memorySource(tensors, "mem.safetensors");

const FLUX = parseFluxConfig({
  num_layers: 1,
  num_single_layers: 1,
  num_attention_heads: 1,
  attention_head_dim: 16,
  axes_dims_rope: [4, 6, 6],
  in_channels: 4,
  joint_attention_dim: 8,
  pooled_projection_dim: 8,
});

function fluxTensors(): Map<string, Tensor> {
  const m = new Map<string, Tensor>();
  for (const [i, p] of fluxParams(FLUX).entries()) {
    const n = p.shape.reduce((a, b) => a * b, 1);
    m.set(p.name, new Tensor("F32", p.shape, randn(n, i)));
  }
  return m;
}

describe("checkpoint validation", () => {
  it("streams from a source without readInto (copied into the arena) with the same output as a resident load", async () => {
    const tensors = fluxTensors();
    const resident = await FluxTransformer.fromSource(FLUX, mem(tensors));
    const streamed = await FluxTransformer.fromSource(FLUX, mem(tensors), { streaming: true });
    const inp = {
      batch: 1,
      imgTokens: 4,
      txtTokens: 3,
      hiddenStates: randn(4 * 4, 101),
      encoderHiddenStates: randn(3 * 8, 102),
      pooledProjections: randn(8, 103),
      timestep: [0.3],
      imgIds: randn(4 * 3, 104),
      txtIds: new Float32Array(3 * 3),
    };
    const a = await resident.forward(inp);
    const b = await streamed.forward(inp);
    expect(a.every(Number.isFinite)).toBe(true);
    expect([...b]).toEqual([...a]);
    await streamed.close();
  });
  it("loads a complete checkpoint", async () => {
    await expect(FluxTransformer.fromSource(FLUX, mem(fluxTensors()))).resolves.toBeInstanceOf(FluxTransformer);
  });
  it("names a missing tensor", async () => {
    const m = fluxTensors();
    m.delete("single_transformer_blocks.0.proj_mlp.bias");
    await expect(FluxTransformer.fromSource(FLUX, mem(m))).rejects.toThrow(
      /mem.safetensors: single_transformer_blocks.0.proj_mlp.bias: missing tensor \(expected shape \[64\]\)/,
    );
  });
  it("names a tensor of the wrong shape", async () => {
    const m = fluxTensors();
    m.set("transformer_blocks.0.attn.to_q.weight", new Tensor("F32", [16, 8], randn(128, 1)));
    await expect(FluxTransformer.fromSource(FLUX, mem(m))).rejects.toThrow(
      /transformer_blocks.0.attn.to_q.weight: shape \[16, 8\] does not match the config's \[16, 16\]/,
    );
  });
  it("rejects tensors of another architecture or config", async () => {
    const m = fluxTensors();
    m.set("transformer_blocks.1.attn.to_q.weight", new Tensor("F32", [16, 16], randn(256, 1)));
    const err = await FluxTransformer.fromSource(FLUX, mem(m)).catch((e) => e);
    expect(err).toBeInstanceOf(ModelError);
    expect(err.code).toBe("E_WEIGHTS");
    expect(err.message).toMatch(
      /1 tensors do not belong to this FLUX config, e.g. transformer_blocks.1.attn.to_q.weight/,
    );
  });
  it("rejects integer weights", async () => {
    const c = parsePixArtConfig({ num_layers: 0, num_attention_heads: 1, attention_head_dim: 8, sample_size: 8 });
    const m = new Map<string, Tensor>();
    for (const p of pixartParams(c)) m.set(p.name, new Tensor(p.name === "proj_out.bias" ? "I32" : "F32", p.shape));
    await expect(PixArtTransformer.fromSource(c, mem(m))).rejects.toThrow(
      /proj_out.bias: dtype I32 is not a float type/,
    );
  });
});
