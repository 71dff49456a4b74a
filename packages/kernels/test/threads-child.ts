// Child process of hardening.test.ts: makes thread creation fail and checks that setThreads rolls the pool back.
// The parent runs it with glibc's thread-stack cache off (GLIBC_TUNABLES), so a worker maps a fresh stack when it
// starts and unmaps it when joined, and with V8's background threads off (--single-threaded), so no GC or compiler
// thread maps or unmaps memory while the limit is down. The child measures the mapping one worker adds (its stack S,
// from the VmSize of the pool with and without its workers), shrinks the pool to the caller alone and sets RLIMIT_AS
// to the current size + S/2: V8's heap pages and the main thread's stack keep S/2 of room while the limit is down,
// and no worker's stack (S and a guard page) fits.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { backendInfo, gemmF32, packF32, setThreads } from "@svdquant/kernels";

const vmSizeKb = (): number => Number(/VmSize:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1]);
const cores = availableParallelism();
const out: Record<string, unknown> = { cores };
const w = packF32(
  Float32Array.from({ length: 64 * 32 }, (_, i) => Math.sin(i)),
  64,
  32,
);
const x = Float32Array.from({ length: 8 * 32 }, (_, i) => Math.cos(i));
const y1 = gemmF32(x, 8, w);
if (cores >= 2) {
  // one worker's mapping: the smallest of three measurements (a V8 heap page mapped in between only adds)
  let stackKb = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 3; i++) {
    setThreads(1);
    const alone = vmSizeKb();
    setThreads(cores);
    stackKb = Math.min(stackKb, (vmSizeKb() - alone) / (cores - 1));
  }
  out.stackKb = stackKb;
  setThreads(1);
  out.threadsBefore = backendInfo().threads;
  const limitKb = vmSizeKb() + Math.floor(stackKb / 2);
  execFileSync("prlimit", ["--pid", String(process.pid), `--as=${limitKb * 1024}:`]);
  try {
    setThreads(cores);
    out.error = null;
  } catch (e) {
    out.error = { name: (e as Error).name, code: (e as { code?: string }).code, message: (e as Error).message };
  }
  execFileSync("prlimit", ["--pid", String(process.pid), "--as=unlimited:"]);
  out.threadsAfterFailure = backendInfo().threads;
  const y2 = gemmF32(x, 8, w); // before the rollback, the pool claimed workers it lacked and this waited forever
  out.sameResult = y2.every((v, i) => v === y1[i]);
  out.threadsLater = setThreads(cores);
}
process.stdout.write(JSON.stringify(out));
