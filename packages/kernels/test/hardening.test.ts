// Issue 18 (findings 8, 11): thread-count bounds, setThreads rolling back when the OS refuses threads, and typed
// errors for malformed structured arguments.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import {
  backendInfo,
  gemmF32,
  gemmW4A4,
  gemmW4A16,
  gemmW8A8,
  nativeUnavailableReason,
  packF32,
  setThreads,
} from "@svdquant/kernels";
import { describe, expect, it } from "vitest";

const prlimit = ["/usr/bin/prlimit", "/bin/prlimit"].some(existsSync);
const native = backendInfo().native;
const skipReason = !native
  ? `native addon unavailable: ${nativeUnavailableReason()}`
  : process.platform !== "linux" || !prlimit
    ? "needs Linux with prlimit (util-linux)"
    : "";

describe("setThreads bounds and rollback (finding 8)", () => {
  it("rejects more threads than the available parallelism, and non-integers, with E_ARGUMENT", () => {
    const before = backendInfo().threads;
    expect(() => setThreads(availableParallelism() + 1)).toThrow(
      expect.objectContaining({ code: "E_ARGUMENT", message: expect.stringMatching(/available parallelism/) }),
    );
    expect(() => setThreads(2000)).toThrow(expect.objectContaining({ code: "E_ARGUMENT" }));
    expect(() => setThreads(1.5)).toThrow(expect.objectContaining({ code: "E_ARGUMENT" }));
    expect(backendInfo().threads).toBe(before);
  });

  it.skipIf(skipReason !== "")(
    `rolls the pool back when the OS refuses a thread, and the next GEMM runs${skipReason ? ` (skipped: ${skipReason})` : ""}`,
    () => {
      // threads-child.ts keeps half a thread stack of address space free under its lowered RLIMIT_AS (V8's heap
      // pages and the main stack fit, a worker's stack does not); --single-threaded: no V8 background thread maps or
      // unmaps memory meanwhile.
      const r = spawnSync(
        process.execPath,
        [
          "--single-threaded",
          "--conditions=@svdquant/source",
          "--import",
          "tsx",
          join(import.meta.dirname, "threads-child.ts"),
        ],
        {
          encoding: "utf8",
          cwd: join(import.meta.dirname, ".."),
          timeout: 60_000,
          env: { ...process.env, GLIBC_TUNABLES: "glibc.pthread.stack_cache_size=0" },
        },
      );
      expect(r.signal, `child hung or crashed: ${r.stderr}`).toBeNull();
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout);
      if (out.cores < 2) return; // one core: no worker thread to refuse
      expect(out.stackKb).toBeGreaterThan(0); // a worker maps its stack (the limit is set from it)
      expect(out.error).toMatchObject({ name: "KernelsError", code: "E_NATIVE" });
      expect(out.error.message).toMatch(/cannot start \d+ threads .*the pool keeps 1$/);
      expect(out.threadsBefore).toBe(1);
      expect(out.threadsAfterFailure).toBe(1); // back to its previous size
      expect(out.sameResult).toBe(true);
      expect(out.threadsLater).toBe(out.cores);
    },
    90_000,
  );
});

describe("structured arguments (finding 11)", () => {
  it("null or non-object activations and weights are KernelsError E_ARGUMENT naming the argument", () => {
    const w = packF32(new Float32Array(16 * 64).fill(0.5), 16, 64);
    for (const f of [
      () => gemmW4A4(null as never, null as never),
      () => gemmW4A4({ M: 1 } as never, null as never),
      () => gemmW4A16(new Float32Array(64), 1, null as never),
      () => gemmW8A8(null as never, { kind: "w8a8" } as never),
      () => gemmW8A8({} as never, null as never),
      () => gemmF32(new Float32Array(64), 1, 7 as never),
      () => gemmF32(new Float32Array(64), 1, { ...w, kind: "w4a4" } as never),
    ])
      expect(f).toThrow(expect.objectContaining({ name: "KernelsError", code: expect.stringMatching(/^E_/) }));
    expect(() => gemmW4A4(null as never, null as never)).toThrow(/tensor "activations": expected an object, got null/);
  });
});
