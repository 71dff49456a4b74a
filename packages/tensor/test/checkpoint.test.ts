import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  openCheckpoint,
  openModelFolder,
  SafetensorsFile,
  ShardedCheckpoint,
  Tensor,
  TensorError,
  writeSafetensors,
} from "@svdquant/tensor";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rng, tempDir } from "./helpers.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => ({ dir, cleanup } = await tempDir("svdq-ckpt-")));
afterAll(() => cleanup());

const r = rng(5);
const INDEX = "diffusion_pytorch_model.safetensors.index.json";
const SHARDS = [
  "diffusion_pytorch_model-00001-of-00002.safetensors",
  "diffusion_pytorch_model-00002-of-00002.safetensors",
];

/** A diffusers-style sharded model folder, as save_pretrained(max_shard_size=...) writes it. */
async function makeShardedFolder(name: string): Promise<{ folder: string; tensors: Map<string, Tensor> }> {
  const folder = join(dir, name);
  await mkdir(folder);
  const tensors = new Map<string, Tensor>();
  const shardOf = new Map<string, string>();
  for (const [s, file] of SHARDS.entries()) {
    const part = new Map<string, Tensor>();
    for (let b = 0; b < 2; b++) {
      const blk = `transformer_blocks.${2 * s + b}`;
      part.set(`${blk}.attn.to_q.weight`, Tensor.fromFloats("BF16", [8, 8], Array.from({ length: 64 }, r.normal)));
      part.set(`${blk}.attn.to_q.bias`, Tensor.fromFloats("F32", [8], Array.from({ length: 8 }, r.normal)));
    }
    await writeSafetensors(join(folder, file), part, { format: "pt" });
    for (const [n, t] of part) {
      tensors.set(n, t);
      shardOf.set(n, file);
    }
  }
  const total = [...tensors.values()].reduce((s, t) => s + t.byteLength, 0);
  await writeFile(
    join(folder, INDEX),
    JSON.stringify({ metadata: { total_size: total }, weight_map: Object.fromEntries(shardOf) }, null, 2),
  );
  await writeFile(
    join(folder, "config.json"),
    JSON.stringify({ _class_name: "FluxTransformer2DModel", num_layers: 4 }),
  );
  return { folder, tensors };
}

async function rejection(p: Promise<unknown>): Promise<TensorError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(TensorError);
  return e as TensorError;
}

describe("sharded checkpoints", () => {
  it("opens the folder, the index and reads every tensor from its shard", async () => {
    const { folder, tensors } = await makeShardedFolder("ok");
    const model = await openModelFolder(folder);
    expect(model.config).toMatchObject({ _class_name: "FluxTransformer2DModel", num_layers: 4 });
    expect(model.weights).toBeInstanceOf(ShardedCheckpoint);
    expect(model.weights.names()).toEqual([...tensors.keys()].sort());
    expect(model.weights.metadata.total_size).toBe(String([...tensors.values()].reduce((s, t) => s + t.byteLength, 0)));
    await model.weights.close();

    for (const path of [folder, join(folder, INDEX)]) {
      const src = await openCheckpoint(path);
      for (const [name, t] of tensors) {
        const info = src.info(name);
        expect(info.file).toContain(name.includes("blocks.0.") || name.includes("blocks.1.") ? SHARDS[0] : SHARDS[1]);
        const u = await src.read(name);
        expect(u.dtype).toBe(t.dtype);
        expect([...u.data]).toEqual([...t.data]);
      }
      expect(src.has("nope")).toBe(false);
      expect(() => src.info("nope")).toThrow(TensorError);
      await expect(src.read("nope")).rejects.toMatchObject({ code: "E_NOT_FOUND", tensor: "nope" });
      await src.close();
    }
  });

  it("readInto fills a caller's buffer with a tensor's bytes from its shard, and checks its length", async () => {
    const { folder, tensors } = await makeShardedFolder("read-into");
    const src = await openCheckpoint(folder);
    const arena = new Uint8Array(64 * 2 + 8);
    for (const [name, t] of tensors) {
      arena.fill(0xa5); // poisoned: every byte must come from the file
      const dst = arena.subarray(8, 8 + t.byteLength); // an offset view, as a reused arena hands out
      await src.readInto!(name, dst);
      expect(Buffer.from(dst)).toEqual(Buffer.from(t.data.buffer, t.data.byteOffset, t.byteLength));
      expect(arena[7]).toBe(0xa5);
    }
    const name = [...tensors.keys()][0]!;
    await expect(src.readInto!(name, new Uint8Array(3))).rejects.toMatchObject({ code: "E_SHAPE", tensor: name });
    await expect(src.readInto!("nope", new Uint8Array(3))).rejects.toMatchObject({ code: "E_NOT_FOUND" });
    await src.close();
  });

  it("rejects a missing shard, naming it", async () => {
    const { folder } = await makeShardedFolder("missing");
    const { rm } = await import("node:fs/promises");
    await rm(join(folder, SHARDS[1]!));
    const e = await rejection(openCheckpoint(folder));
    expect(e.code).toBe("E_IO");
    expect(e.message).toContain(SHARDS[1]);
  });

  it("rejects a tensor that is not in the shard the index names", async () => {
    const { folder } = await makeShardedFolder("wrong-shard");
    const index = join(folder, INDEX);
    const json = JSON.parse(await (await import("node:fs/promises")).readFile(index, "utf8"));
    json.weight_map["transformer_blocks.0.attn.to_q.bias"] = SHARDS[1];
    await writeFile(index, JSON.stringify(json));
    const e = await rejection(openCheckpoint(index));
    expect(e).toMatchObject({ code: "E_INDEX", file: index, tensor: "transformer_blocks.0.attn.to_q.bias" });
    expect(e.message).toContain(index);
    expect(e.message).toContain(SHARDS[1]);
  });

  it.each([
    ["a path escaping the folder", { weight_map: { w: "../outside.safetensors" } }, "w"],
    ["an absolute path", { weight_map: { w: "/etc/passwd" } }, "w"],
    ["a non-string file", { weight_map: { w: 3 } }, "w"],
    ["no weight_map", { metadata: {} }, undefined],
    ["a weight_map array", { weight_map: ["a"] }, undefined],
  ])("rejects %s", async (_, json, tensor) => {
    const folder = join(dir, `bad-${Math.floor(r.float() * 1e9)}`);
    await mkdir(folder);
    await writeSafetensors(join(dir, "outside.safetensors"), { w: new Tensor("F32", [1]) });
    const index = join(folder, "model.safetensors.index.json");
    await writeFile(index, JSON.stringify(json));
    const e = await rejection(openCheckpoint(index));
    expect(e.code).toBe("E_INDEX");
    expect(e.message).toContain(index);
    if (tensor) expect(e.tensor).toBe(tensor);
  });

  it("rejects an index that is not JSON", async () => {
    const index = join(dir, "broken.safetensors.index.json");
    await writeFile(index, "{ nope");
    expect(await rejection(openCheckpoint(index))).toMatchObject({ code: "E_INDEX", file: index });
  });
});

describe("model folders", () => {
  it("finds a single weight file under a non-default name; config.json is optional", async () => {
    const folder = join(dir, "single");
    await mkdir(folder);
    await writeSafetensors(join(folder, "weights.safetensors"), { w: Tensor.fromFloats("F16", [2], [1, 2]) });
    const m = await openModelFolder(folder);
    expect(m.config).toBeUndefined();
    expect(m.weights).toBeInstanceOf(SafetensorsFile);
    expect([...(await m.weights.read("w")).toFloat32()]).toEqual([1, 2]);
    await m.weights.close();
  });

  it("rejects folders without weights, with several candidates, or with a broken config.json", async () => {
    const empty = join(dir, "empty");
    await mkdir(empty);
    expect(await rejection(openModelFolder(empty))).toMatchObject({ code: "E_NOT_FOUND", file: empty });
    const two = join(dir, "two");
    await mkdir(two);
    for (const n of ["a.safetensors", "b.safetensors"])
      await writeSafetensors(join(two, n), { w: new Tensor("F32", [1]) });
    const e = await rejection(openModelFolder(two));
    expect(e.code).toBe("E_NOT_FOUND");
    expect(e.message).toContain("a.safetensors, b.safetensors");
    const badConfig = join(dir, "bad-config");
    await mkdir(badConfig);
    await writeFile(join(badConfig, "config.json"), "{");
    await writeSafetensors(join(badConfig, "model.safetensors"), { w: new Tensor("F32", [1]) });
    expect(await rejection(openModelFolder(badConfig))).toMatchObject({ code: "E_HEADER_JSON" });
    expect(await rejection(openCheckpoint(join(dir, "does-not-exist")))).toMatchObject({ code: "E_IO" });
  });
});
