import { existsSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { describe, expect, it } from "vitest";
import { cpuLabelFrom } from "../src/cpu-label.ts";
import { backendInfo } from "../src/index.ts";

// /proc/cpuinfo excerpts in the kernel's format (two processor blocks; only the first is read)
const xeon = `processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\nmodel name\t: Intel(R) Xeon(R) Processor\nstepping\t: 2\nflags\t\t: fpu avx512f amx_int8\n\nprocessor\t: 1\ncpu family\t: 6\nmodel\t\t: 143\nstepping\t: 8\n`;
const epyc = `processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\nstepping\t: 1\n`;
const arm = `processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n`;

describe("cpuLabelFrom", () => {
  it("adds family / model / stepping of the first processor block on x86", () => {
    expect(cpuLabelFrom("Intel(R) Xeon(R) Processor", xeon)).toBe(
      "Intel(R) Xeon(R) Processor (family 6 model 207 stepping 2)",
    );
    expect(cpuLabelFrom("  AMD   EPYC ", epyc)).toBe("AMD EPYC (family 25 model 1 stepping 1)");
  });
  it("keeps the model name alone where the numbers are missing (ARM, no /proc, empty name)", () => {
    expect(cpuLabelFrom("Neoverse-N1", arm)).toBe("Neoverse-N1");
    expect(cpuLabelFrom("Apple M2", undefined)).toBe("Apple M2");
    expect(cpuLabelFrom("", undefined)).toBe("unknown CPU");
    expect(cpuLabelFrom("X", "cpu family\t: 6\nstepping\t: 3\n")).toBe("X"); // no model line
    expect(cpuLabelFrom("X", "cpu family\t: 6\nmodel\t\t: 85\n")).toBe("X (family 6 model 85)");
  });
});

describe("backendInfo().cpu", () => {
  it("names this machine's CPU, with the numbers /proc/cpuinfo gives", () => {
    const label = backendInfo().cpu;
    expect(label.startsWith((cpus()[0]?.model ?? "unknown CPU").replace(/\s+/g, " ").trim())).toBe(true);
    const info = existsSync("/proc/cpuinfo") ? readFileSync("/proc/cpuinfo", "utf8") : "";
    const model = /^model\s*:\s*(\d+)\s*$/m.exec(info)?.[1];
    if (process.platform === "linux" && /^cpu family\s*:/m.test(info) && model !== undefined)
      expect(label).toContain(`model ${model}`);
    else expect(label).not.toContain("(family");
  });
});
