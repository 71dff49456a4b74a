/**
 * checkpoint → calibration → quantization → file → load → forward on the native kernels, for both tiny models;
 * the packed-kernel forward is checked against the float64 fake-quant forward of the same parameters.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { backendInfo } from "@svdquant/kernels";
import { SafetensorsFile, type Tensor } from "@svdquant/tensor";
import { describe, expect, it } from "vitest";
import { permuteAdaNormRows, quantizeModel, readQuantizedCheckpoint } from "../src/index.ts";
import { w4a4FileTensors, w4a16FileTensors } from "../src/quantize-units.ts";
import { modelDir, relFrob } from "./helpers.ts";
import { dataBytes, predictedBytes, quantizeTiny, reducedConfig, tinyForwards } from "./tiny-checkpoints.ts";

const CONFIG = reducedConfig();

describe("flux-tiny end to end", async () => {
  const { dir, out, res } = await quantizeTiny("flux-tiny-a", CONFIG, "flux-tiny.svdq.safetensors");

  it("writes the published FLUX layout with the quantization metadata", async () => {
    const f = await SafetensorsFile.open(out);
    const names = new Set(f.names());
    for (const n of [
      "transformer_blocks.0.qkv_proj.qweight",
      "transformer_blocks.0.qkv_proj.lora_down",
      "transformer_blocks.0.qkv_proj.smooth",
      "transformer_blocks.1.mlp_context_fc2.wscales",
      "transformer_blocks.0.norm1.linear.wzeros",
      "transformer_blocks.0.norm_added_q.weight",
      "single_transformer_blocks.2.mlp_fc2.lora_up",
      "single_transformer_blocks.2.out_proj.bias",
      "single_transformer_blocks.0.norm.linear.qweight",
      "x_embedder.weight",
      "norm_out.linear.weight",
    ])
      expect(names.has(n), n).toBe(true);
    expect(names.has("transformer_blocks.0.attn.to_q.weight")).toBe(false);
    expect(JSON.parse(f.metadata.quantization_config!)).toMatchObject({ method: "svdquant", rank: 32 });
    expect(f.metadata.model_class).toBe("NunchakuFluxTransformer2dModel");
    // qkv fused along N: 3·64 rows, K = 64 padded to 128 (the format's padding)
    expect(f.info("transformer_blocks.0.qkv_proj.qweight").shape).toEqual([256, 64]);
    await f.close();
    expect(res.report.length).toBe(2 * 10 + 3 * 5);
    expect(await dataBytes(out)).toBe(await predictedBytes("flux-tiny-a", CONFIG));
    for (const r of res.report) expect(Number.isFinite(r.relError)).toBe(true);
  });

  it("runs on the packed kernels within 1e-5 of the fake-quant forward, near the 16-bit model", async () => {
    const { y, yr, y16 } = await tinyForwards(out, "flux-tiny-a");
    const d = relFrob(y, yr);
    expect(d).toBeLessThan(1e-5);
    expect(d).toBeGreaterThan(0); // two different implementations, not one path twice
    const e = relFrob(y, y16);
    expect(e).toBeLessThan(0.5);
    console.log(
      `flux-tiny (${backendInfo().isa}): kernels vs reference ${d.toExponential(2)}; W4A4 vs 16-bit ${e.toFixed(4)}`,
    );
  });

  it("two worker threads write the same bytes as one thread", async () => {
    const out2 = join(dir, "flux-tiny.2threads.safetensors");
    await quantizeModel({ modelDir: modelDir("flux-tiny-a"), out: out2, config: CONFIG, threads: 2 });
    expect(Buffer.compare(await readFile(out2), await readFile(out))).toBe(0);
  });

  it("reads back what it wrote: every record re-packs to the same bytes", async () => {
    const ck = await readQuantizedCheckpoint(out);
    expect(ck.w4a4.size).toBe(2 * 8 + 3 * 4);
    expect(ck.w4a16.size).toBe(2 * 2 + 3);
    const f = await SafetensorsFile.open(out);
    let compared = 0;
    const same = async (tensors: Record<string, Tensor>) => {
      for (const [n, t] of Object.entries(tensors)) {
        const back = await f.read(n);
        expect(back.dtype, n).toBe(t.dtype);
        expect(back.shape, n).toEqual(t.shape);
        expect(Buffer.compare(Buffer.from(back.bytes()), Buffer.from(t.bytes())), n).toBe(0);
        compared++;
      }
    };
    for (const [name, { record }] of ck.w4a4) await same(w4a4FileTensors(name, record));
    for (const [name, { unit, record }] of ck.w4a16) {
      const { chunks, scaleChunks } = unit.adaNorm ?? { chunks: 1, scaleChunks: [] };
      const n = record.q.rows;
      const d = n / chunks;
      const bias = Float32Array.from(record.bias!);
      for (const c of scaleChunks) for (let i = 0; i < d; i++) bias[c * d + i]! += 1;
      const G = record.q.cols / record.q.groupSize;
      const q = {
        ...record.q,
        codes: Int8Array.from(permuteAdaNormRows(Float32Array.from(record.q.codes), n, record.q.cols, chunks)),
        scales: permuteAdaNormRows(record.q.scales, n, G, chunks),
        zeros: permuteAdaNormRows(record.q.zeros, n, G, chunks),
      };
      await same(w4a16FileTensors(name, q, permuteAdaNormRows(bias, n, 1, chunks)));
    }
    expect(compared).toBeGreaterThan(100);
    await f.close();
    await ck.close();
  });
});

describe("pixart-tiny end to end", async () => {
  const { out } = await quantizeTiny("pixart-tiny-a", CONFIG, "pixart-tiny.svdq.safetensors");

  it("writes exactly the bytes the size model predicts", async () => {
    expect(await dataBytes(out)).toBe(await predictedBytes("pixart-tiny-a", CONFIG));
  });

  it("runs on the packed kernels within 1e-5 of the fake-quant forward", async () => {
    const { y, yr, y16 } = await tinyForwards(out, "pixart-tiny-a");
    expect(relFrob(y, yr)).toBeLessThan(1e-5);
    const e = relFrob(y, y16);
    expect(e).toBeLessThan(0.5);
    console.log(`pixart-tiny: W4A4 vs 16-bit output rel. error ${e.toFixed(4)}`);
  });
});
