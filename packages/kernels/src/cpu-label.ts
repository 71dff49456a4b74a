import { readFileSync } from "node:fs";
import { cpus } from "node:os";

/**
 * The CPU as benchmark lines and logs name it: the OS's model name, plus family / model / stepping on x86 Linux.
 * Virtual machines often report a generic name ("Intel(R) Xeon(R) Processor" for a KVM guest of any Xeon), and two
 * such machines of different generations gave different speeds under the same name (docs/benchmarks.md: family 6
 * model 167 on the dev machine, model 207 on the GPU machine's host); the numbers tell them apart.
 */
export function cpuLabelFrom(modelName: string, cpuinfo: string | undefined): string {
  const name = modelName.replace(/\s+/g, " ").trim() || "unknown CPU";
  if (!cpuinfo) return name;
  // fields of the first processor block of /proc/cpuinfo (x86: "cpu family", "model", "stepping")
  const first = cpuinfo.split(/\n\s*\n/)[0] ?? "";
  const field = (key: string) => new RegExp(`^${key}\\s*:\\s*(\\d+)\\s*$`, "m").exec(first)?.[1];
  const family = field("cpu family");
  const model = field("model");
  if (family === undefined || model === undefined) return name;
  const stepping = field("stepping");
  return `${name} (family ${family} model ${model}${stepping === undefined ? "" : ` stepping ${stepping}`})`;
}

let cached: string | undefined;

/** cpuLabelFrom for this machine (read once). */
export function cpuLabel(): string {
  if (cached === undefined) {
    let info: string | undefined;
    try {
      if (process.platform === "linux") info = readFileSync("/proc/cpuinfo", "utf8");
    } catch {} // no /proc (a sandbox): the model name alone
    cached = cpuLabelFrom(cpus()[0]?.model ?? "", info);
  }
  return cached;
}
