// writeFileAtomic / writeFilesAtomic / checkOutputPath under faults (issue 18, finding 9): a failing write never
// damages the previous output and never leaves a partial file; a planted symlink never redirects a write.
import { spawn, spawnSync } from "node:child_process";
import { chmod, lstat, mkdir, open, readdir, readFile, readlink, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { checkOutputPath, TensorError, writeFileAtomic, writeFilesAtomic } from "@svdquant/tensor";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { tempDir } from "./helpers.js";

let root: string;
let cleanup: () => Promise<void>;
let n = 0;
beforeAll(async () => ({ dir: root, cleanup } = await tempDir("svdq-atomic-")));
afterAll(() => cleanup());
afterEach(() => vi.restoreAllMocks());

async function fresh(): Promise<string> {
  const d = join(root, `case-${n++}`);
  await mkdir(d);
  return d;
}
const CHILD = join(import.meta.dirname, "atomic-child.ts");
const childArgs = (...a: string[]) => ["--conditions=@svdquant/source", "--import", "tsx", CHILD, ...a];

describe("writeFileAtomic", () => {
  it("writes text, bytes and streamed chunks, leaving nothing else in the folder", async () => {
    const d = await fresh();
    await writeFileAtomic(join(d, "a.txt"), "héllo\n");
    await writeFileAtomic(join(d, "b.bin"), Uint8Array.of(1, 2, 3));
    await writeFileAtomic(join(d, "c.bin"), async (write) => {
      for (let i = 0; i < 3; i++) await write(Uint8Array.of(i, i));
    });
    expect(await readFile(join(d, "a.txt"), "utf8")).toBe("héllo\n");
    expect([...(await readFile(join(d, "b.bin")))]).toEqual([1, 2, 3]);
    expect([...(await readFile(join(d, "c.bin")))]).toEqual([0, 0, 1, 1, 2, 2]);
    expect((await readdir(d)).sort()).toEqual(["a.txt", "b.bin", "c.bin"]);
  });

  it("replaces a symlink at the target with a file and never writes through it", async () => {
    const d = await fresh();
    await writeFile(join(d, "victim"), "precious");
    await symlink(join(d, "victim"), join(d, "out.json"));
    await writeFileAtomic(join(d, "out.json"), "new");
    expect(await readFile(join(d, "victim"), "utf8")).toBe("precious");
    expect((await lstat(join(d, "out.json"))).isFile()).toBe(true);
    expect(await readFile(join(d, "out.json"), "utf8")).toBe("new");
  });

  it("a writer's typed error passes through; a plain one becomes E_IO naming the file; no temp file is left", async () => {
    const d = await fresh();
    const out = join(d, "out.txt");
    await writeFile(out, "old");
    const typed = new TensorError("E_SHAPE", "bad shape", { file: out, tensor: "w" });
    await expect(
      writeFileAtomic(out, async (write) => {
        await write(Uint8Array.of(1));
        throw typed;
      }),
    ).rejects.toBe(typed);
    await expect(
      writeFileAtomic(out, async () => {
        throw new Error("boom");
      }),
    ).rejects.toMatchObject({ code: "E_IO", message: `${out}: cannot write: boom` });
    expect(await readFile(out, "utf8")).toBe("old");
    expect(await readdir(d)).toEqual(["out.txt"]);
  });

  it("a full disk (ENOSPC injected into every write) keeps the old file and leaves no partial file", async () => {
    const d = await fresh();
    const out = join(d, "results.json");
    await writeFileAtomic(out, "old results");
    const probe = await open(join(d, "probe"), "w");
    const proto = Object.getPrototypeOf(probe) as { write: (...a: unknown[]) => Promise<unknown> };
    await probe.close();
    const real = proto.write;
    let budget = 1000; // bytes the "disk" still takes
    vi.spyOn(proto, "write").mockImplementation(async function (this: unknown, ...a: unknown[]) {
      const len = (a[2] as number | undefined) ?? (a[0] as Uint8Array).length;
      if (len > budget)
        throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC", syscall: "write" });
      budget -= len;
      return real.apply(this, a);
    });
    await expect(writeFileAtomic(out, new Uint8Array(5000))).rejects.toMatchObject({
      code: "E_IO",
      message: expect.stringMatching(/results\.json: cannot write: ENOSPC/),
    });
    vi.restoreAllMocks();
    expect(await readFile(out, "utf8")).toBe("old results");
    expect((await readdir(d)).sort()).toEqual(["probe", "results.json"]);
  });

  it("writeFilesAtomic: when any file fails, no target changes (results and report never disagree)", async () => {
    const d = await fresh();
    const [a, b] = [join(d, "results.json"), join(d, "table.md")];
    await writeFilesAtomic([
      { path: a, data: "run 1" },
      { path: b, data: "table 1" },
    ]);
    await expect(
      writeFilesAtomic([
        { path: a, data: "run 2" },
        {
          path: b,
          data: async () => {
            throw new Error("disk gone");
          },
        },
      ]),
    ).rejects.toMatchObject({ code: "E_IO", file: b });
    expect([await readFile(a, "utf8"), await readFile(b, "utf8")]).toEqual(["run 1", "table 1"]);
    expect((await readdir(d)).sort()).toEqual(["results.json", "table.md"]);
    await expect(
      writeFilesAtomic([
        { path: a, data: "x" },
        { path: a, data: "y" },
      ]),
    ).rejects.toMatchObject({
      code: "E_ARGUMENT",
    });
  });

  it("a writer killed mid-write (SIGKILL) leaves the old output intact, and the next write removes its temp file", async () => {
    const d = await fresh();
    const out = join(d, "out.bin");
    await writeFile(out, "previous output");
    const child = spawn(process.execPath, childArgs("slow", d), { cwd: join(import.meta.dirname, "..") });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (b: Buffer) => b.toString().includes("writing") && resolve());
      child.on("exit", (code) => reject(new Error(`child exited early (${code})`)));
    });
    child.kill("SIGKILL");
    await new Promise((r) => child.on("exit", r));
    expect(await readFile(out, "utf8")).toBe("previous output");
    const left = (await readdir(d)).filter((f) => f !== "out.bin");
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^\.out\.bin\.\d+\.[0-9a-f]{12}\.tmp$/);
    await writeFileAtomic(out, "next output");
    expect(await readdir(d)).toEqual(["out.bin"]);
    expect(await readFile(out, "utf8")).toBe("next output");
  }, 60_000);
});

describe("checkOutputPath", () => {
  it("names the file for a missing folder, a directory target, a NUL byte; passes a writable path and leaves nothing", async () => {
    const d = await fresh();
    await expect(checkOutputPath(join(d, "nope", "x.json"))).rejects.toMatchObject({
      code: "E_IO",
      message: expect.stringContaining(join(d, "nope", "x.json")),
    });
    await mkdir(join(d, "adir"));
    await expect(checkOutputPath(join(d, "adir"))).rejects.toMatchObject({ code: "E_NOT_FILE" });
    await expect(checkOutputPath(`${d}/a\0b`)).rejects.toMatchObject({ code: "E_ARGUMENT" });
    await checkOutputPath(join(d, "ok.json"));
    await symlink("/etc/passwd", join(d, "link.json"));
    await checkOutputPath(join(d, "link.json")); // replaced on write, never followed
    expect(await readlink(join(d, "link.json"))).toBe("/etc/passwd");
    expect((await readdir(d)).sort()).toEqual(["adir", "link.json"]);
  });

  it.skipIf(process.getuid?.() === 0)("a read-only folder is E_IO before any work (non-root: chmod 0555)", async () => {
    const d = await fresh();
    await chmod(d, 0o555);
    try {
      await expect(checkOutputPath(join(d, "x.json"))).rejects.toMatchObject({ code: "E_IO", message: /EACCES/ });
    } finally {
      await chmod(d, 0o755);
    }
  });
});

const unshare = spawnSync("unshare", ["--user", "--map-root-user", "--mount", "true"]).status === 0;
describe("on a real full / read-only filesystem", () => {
  it.skipIf(!unshare)(
    `a 1 MiB tmpfs: ENOSPC and EROFS keep the old output, no partial file${unshare ? "" : " (skipped: unprivileged unshare -rm not available)"}`,
    async () => {
      const d = await fresh();
      const script = `mount -t tmpfs -o size=1m tmpfs "$1" && exec "$2" ${childArgs("tmpfs", '"$1"').join(" ")}`;
      const r = spawnSync(
        "unshare",
        ["--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", d, process.execPath],
        {
          encoding: "utf8",
          cwd: join(import.meta.dirname, ".."),
          timeout: 60_000,
        },
      );
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.first).toBe("ok");
      expect(out.full).toMatchObject({
        name: "TensorError",
        code: "E_IO",
        message: expect.stringMatching(/result\.json: .*ENOSPC/),
      });
      expect(out.afterFull).toBe('{"run":1}\n');
      expect(out.leftAfterFull).toEqual(["result.json"]);
      expect(out.check).toMatchObject({ code: "E_IO", message: expect.stringMatching(/result\.json: .*EROFS/) });
      expect(out.readOnly).toMatchObject({ code: "E_IO", message: expect.stringMatching(/EROFS/) });
      expect(out.afterReadOnly).toBe('{"run":1}\n');
    },
    90_000,
  );
});
