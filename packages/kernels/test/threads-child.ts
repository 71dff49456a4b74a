// Child process of hardening.test.ts: makes thread creation fail and checks that setThreads rolls the pool back.
// The parent runs it with glibc's thread-stack cache off (GLIBC_TUNABLES), so every new thread maps a fresh stack;
// RLIMIT_AS is then set 4 MiB below the current address-space size: joining the one worker frees its 8 MiB stack,
// and no new 8 MiB stack fits.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { backendInfo, gemmF32, packF32, setThreads } from "@svdquant/kernels";

const vmSizeKb = (): number => Number(/VmSize:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1]);
const out: Record<string, unknown> = { cores: availableParallelism() };
const w = packF32(
  Float32Array.from({ length: 64 * 32 }, (_, i) => Math.sin(i)),
  64,
  32,
);
const x = Float32Array.from({ length: 8 * 32 }, (_, i) => Math.cos(i));
const y1 = gemmF32(x, 8, w);
out.threadsBefore = backendInfo().threads;
execFileSync("prlimit", ["--pid", String(process.pid), `--as=${(vmSizeKb() - 4096) * 1024}:`]);
try {
  setThreads(availableParallelism());
  out.error = null;
} catch (e) {
  out.error = { name: (e as Error).name, code: (e as { code?: string }).code, message: (e as Error).message };
}
execFileSync("prlimit", ["--pid", String(process.pid), "--as=unlimited:"]);
out.threadsAfterFailure = backendInfo().threads;
const y2 = gemmF32(x, 8, w); // before the rollback, the pool claimed workers it lacked and this waited forever
out.sameResult = y2.every((v, i) => v === y1[i]);
out.threadsLater = setThreads(availableParallelism());
process.stdout.write(JSON.stringify(out));
