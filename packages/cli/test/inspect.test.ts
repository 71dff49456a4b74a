import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { Tensor, writeSafetensors } from "@svdquant/tensor";
import { beforeAll, describe, expect, it } from "vitest";
import { cli, ROOT, tempFolder } from "./helpers.ts";

const run = promisify(execFile);
const FIX = join(ROOT, "fixtures");
const CLI_DIR = join(import.meta.dirname, "..");

const tmp = tempFolder("svdq-cli-");

const ITEMSIZE: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1 };

/** Independent reading of a safetensors header: u64 LE length, then JSON. */
async function rawHeader(
  path: string,
): Promise<{ tensors: [string, { dtype: string; shape: number[] }][]; meta: unknown }> {
  const buf = await readFile(path);
  const n = Number(buf.readBigUInt64LE(0));
  const json = JSON.parse(buf.subarray(8, 8 + n).toString("utf8")) as Record<
    string,
    { dtype: string; shape: number[] }
  >;
  const { __metadata__: meta, ...rest } = json;
  return { tensors: Object.entries(rest), meta: meta ?? {} };
}

describe("svdquant inspect", () => {
  it("summarizes a .safetensors file (text)", async () => {
    const path = join(FIX, "models/flux-tiny-a/diffusion_pytorch_model.safetensors");
    const { tensors } = await rawHeader(path);
    const params = tensors.reduce((s, [, t]) => s + t.shape.reduce((a, b) => a * b, 1), 0);
    const { code, out, err } = await cli("inspect", path);
    expect(code).toBe(0);
    expect(err).toBe("");
    expect(out).toContain(`tensors:    ${tensors.length}`);
    expect(out).toContain(`parameters: ${params.toLocaleString("en-US")}`);
    expect(out).toContain(`F32      ${(params * 4).toLocaleString("en-US")} bytes`);
    expect(out).toContain("format: pt");
  });

  it("prints {tensors:[{name,dtype,shape}], metadata, parameters, bytes} with --json", async () => {
    const path = join(FIX, "nunchaku-pack/case-a.safetensors");
    const { tensors, meta } = await rawHeader(path);
    const { code, out } = await cli("inspect", path, "--json");
    expect(code).toBe(0);
    const j = JSON.parse(out);
    expect(Object.keys(j).sort()).toEqual(["bytes", "metadata", "parameters", "tensors"]);
    const want = tensors
      .map(([name, t]) => ({ name, dtype: t.dtype, shape: t.shape }))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    expect(j.tensors).toEqual(want);
    expect(j.metadata).toEqual(meta);
    expect(j.parameters).toBe(tensors.reduce((s, [, t]) => s + t.shape.reduce((a, b) => a * b, 1), 0));
    expect(j.bytes).toBe(tensors.reduce((s, [, t]) => s + t.shape.reduce((a, b) => a * b, 1) * ITEMSIZE[t.dtype]!, 0));
  });

  it("inspects a model folder and a sharded index the same way", async () => {
    const folder = join(tmp.path, "sharded");
    await mkdir(folder);
    const a = { "x.weight": Tensor.fromFloats("BF16", [4, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]) };
    const b = {
      "y.bias": Tensor.fromFloats("F32", [5], [1, 2, 3, 4, 5]),
      "y.idx": Tensor.fromFloats("I64", [2], [1, 2]),
    };
    await writeSafetensors(join(folder, "model-00001-of-00002.safetensors"), a);
    await writeSafetensors(join(folder, "model-00002-of-00002.safetensors"), b);
    await writeFile(
      join(folder, "model.safetensors.index.json"),
      JSON.stringify({
        metadata: { total_size: 60 },
        weight_map: {
          "x.weight": "model-00001-of-00002.safetensors",
          "y.bias": "model-00002-of-00002.safetensors",
          "y.idx": "model-00002-of-00002.safetensors",
        },
      }),
    );
    await writeFile(join(folder, "config.json"), "{}");
    const viaFolder = await cli("inspect", folder, "--json");
    const viaIndex = await cli("inspect", join(folder, "model.safetensors.index.json"), "--json");
    expect(viaFolder.code).toBe(0);
    expect(viaFolder.out).toBe(viaIndex.out);
    expect(JSON.parse(viaFolder.out)).toEqual({
      tensors: [
        { name: "x.weight", dtype: "BF16", shape: [4, 3] },
        { name: "y.bias", dtype: "F32", shape: [5] },
        { name: "y.idx", dtype: "I64", shape: [2] },
      ],
      metadata: { total_size: "60" },
      parameters: 19,
      bytes: 24 + 20 + 16,
    });
    const text = await cli("inspect", folder);
    expect(text.out).toMatch(/BF16\s+24 bytes/);
    expect(text.out).toMatch(/I64\s+16 bytes/);
  });

  it.each([
    [
      "a missing path",
      () => ["inspect", join(tmp.path, "nope.safetensors")],
      /svdquant: .*nope\.safetensors.*cannot open/,
    ],
    [
      "a corrupt file",
      () => ["inspect", join(tmp.path, "corrupt.safetensors")],
      /svdquant: .*corrupt\.safetensors.*header/,
    ],
    ["a missing argument", () => ["inspect"], /error: missing required argument 'path'/],
    ["an unknown command", () => ["frobnicate"], /error: unknown command 'frobnicate'/],
    ["an unknown option", () => ["inspect", "x", "--bogus"], /error: unknown option '--bogus'/],
  ] as [string, () => string[], RegExp][])(
    "reports %s with exit code 1 and one line on stderr",
    async (_, argv, re) => {
      await writeFile(join(tmp.path, "corrupt.safetensors"), Buffer.from([255, 0, 0, 0, 0, 0, 0, 0, 123]));
      const { code, out, err } = await cli(...argv());
      expect(code).toBe(1);
      expect(out).toBe("");
      expect(err).toMatch(re);
      expect(err.endsWith("\n")).toBe(true);
      expect(err.trimEnd().split("\n")).toHaveLength(1);
    },
  );

  it("prints help with exit code 0, and usage plus one error line without a command", async () => {
    const help = await cli("--help");
    expect(help.code).toBe(0);
    expect(help.out).toContain("inspect");
    const none = await cli();
    expect(none.code).toBe(1);
    expect(none.out).toContain("Usage: svdquant");
    expect(none.err.trimEnd().split("\n")).toHaveLength(1);
  });
});

describe("the built svdquant binary", () => {
  beforeAll(async () => {
    // The binary runs dist/; build it (incremental, a no-op when up to date) so this test needs no prior step.
    await run(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-b", "tsconfig.build.json"], {
      cwd: CLI_DIR,
    });
  });

  it("inspects a fixture with --json, and exits 1 with one stderr line on error", async () => {
    const bin = join(CLI_DIR, "bin/svdquant.js");
    const ok = await run(process.execPath, [bin, "inspect", join(FIX, "models/flux-tiny-a-bf16"), "--json"]);
    const j = JSON.parse(ok.stdout);
    expect(j.tensors).toHaveLength(122);
    expect(j.tensors.every((t: { dtype: string }) => t.dtype === "BF16")).toBe(true);
    expect(j.bytes).toBe(j.parameters * 2);
    const bad = await run(process.execPath, [bin, "inspect", join(tmp.path, "nope")]).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect((bad as { code: number }).code).toBe(1);
    expect((bad as { stderr: string }).stderr.trimEnd().split("\n")).toHaveLength(1);
    expect((bad as { stderr: string }).stderr).toContain("svdquant: ");
  });
});
