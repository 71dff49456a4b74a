// One fuzz class in its own process (a crash, an abort or a hang is then seen by the parent, fuzz.test.ts, instead of
// killing the test runner). For each seeded case: the library call behind the command must fail with a typed error
// (or accept a valid input), and the `svdquant` command on the same input must print exactly one line on stderr,
// with no raw control characters, and exit 1 — within CASE_MS. RSS is sampled after every case; the summary (counts
// per outcome, peak RSS, failures) is printed as JSON.
//   node fuzz-child.ts CLASS SEED COUNT WORKDIR PROGRESS_FILE
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readImage } from "@svdquant/metrics";
import { buildProgram, inspectCheckpoint, main } from "../../src/index.ts";
import {
  hostileArgv,
  malformedExperimentConfig,
  malformedJpeg,
  malformedPng,
  malformedSafetensors,
  Rng,
  validPng,
} from "./generators.ts";

const [cls, seedArg, countArg, work, progress] = process.argv.slice(2) as [string, string, string, string, string];
const seed = Number(seedArg);
const count = Number(countArg);
const CASE_MS = 10_000;
const TYPED = new Set([
  "TensorError",
  "MetricsError",
  "ModelError",
  "KernelsError",
  "ExperimentError",
  "CliError",
  "QuantizerError",
  "SmoothingError",
  "CommanderError",
]);
// C0 controls but newline, DEL, C1 controls, bidi overrides: nothing printed may carry them raw.
// biome-ignore lint/suspicious/noControlCharactersInRegex: detecting control characters is the point
const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

mkdirSync(work, { recursive: true });
const paths = {
  file: join(work, "plain.txt"),
  dir: join(work, "pairs"),
  fifo: join(work, "pipe"),
  missing: join(work, "missing"),
};
writeFileSync(paths.file, "not a checkpoint");
mkdirSync(join(paths.dir, "ref"), { recursive: true });
execFileSync("mkfifo", [paths.fifo]);

interface Outcome {
  kind: string; // "accepted", "ErrorName:CODE"
  failure?: string;
}

function classify(err: unknown): Outcome {
  const e = err as { name?: string; code?: unknown; message?: string };
  if (err instanceof Error && TYPED.has(err.name) && typeof e.code === "string")
    return { kind: `${err.name}:${e.code}` };
  return { kind: "untyped", failure: `untyped error ${e?.name}: ${String(e?.message).slice(0, 200)}` };
}

async function library(f: () => Promise<unknown>): Promise<Outcome> {
  try {
    await f();
    return { kind: "accepted" };
  } catch (err) {
    return classify(err);
  }
}

async function command(argv: string[], accepted: boolean): Promise<string | undefined> {
  let out = "";
  let err = "";
  const code = await main(argv, { out: (s) => void (out += s), err: (s) => void (err += s) });
  if (RAW_CONTROL.test(out) || RAW_CONTROL.test(err))
    return `raw control character printed: ${JSON.stringify(err.slice(0, 200))}`;
  if (accepted)
    return code === 0 ? undefined : `library accepted the input but the command exited ${code}: ${err.slice(0, 200)}`;
  if (code !== 1) return `exit code ${code} on a rejected input`;
  const lines = err.split("\n");
  if (lines.length !== 2 || lines[1] !== "" || !/^(svdquant|error): /.test(lines[0]!))
    return `stderr is not one error line: ${JSON.stringify(err.slice(0, 300))}`;
  return undefined;
}

async function runCase(i: number): Promise<Outcome> {
  const r = new Rng(seed * 1_000_003 + i);
  const dir = join(work, `c${i % 8}`); // a few rotating folders keep the disk use flat
  mkdirSync(dir, { recursive: true });
  switch (cls) {
    case "safetensors": {
      const p = join(dir, "case.safetensors");
      writeFileSync(p, malformedSafetensors(r));
      const o = await library(() => inspectCheckpoint(p));
      const f = await command(["inspect", p, ...(r.int(2) ? ["--json"] : [])], o.kind === "accepted");
      return f ? { kind: o.kind, failure: f } : o;
    }
    case "png":
    case "jpeg": {
      const ext = cls === "png" ? "png" : "jpg";
      const ref = join(dir, "ref");
      const test = join(dir, "test");
      mkdirSync(ref, { recursive: true });
      mkdirSync(test, { recursive: true });
      const bytes = cls === "png" ? malformedPng(r) : malformedJpeg(r);
      writeFileSync(join(ref, `x.${ext}`), bytes);
      writeFileSync(join(test, `x.${ext}`), validPng(r, 8, 8));
      const o = await library(() => readImage(join(ref, `x.${ext}`)));
      // a decodable image of another size still fails the pairing: the command's outcome decides "accepted"
      const f = await command(["eval", "--ref", ref, "--test", test, "--threads", "1", "--no-progress"], false);
      if (f?.startsWith("exit code 0")) return o; // a valid 8x8 pair evaluates
      return f ? { kind: o.kind, failure: f } : o;
    }
    case "config": {
      writeFileSync(join(dir, "config.json"), malformedExperimentConfig(r));
      const argv = ["experiment", "run", dir, "--quiet", "--no-figures", "--out", join(dir, "out")];
      let kind = "accepted";
      try {
        await buildProgram({ out: () => {}, err: () => {} }).parseAsync(argv, { from: "user" });
      } catch (err) {
        const c = classify(err);
        if (c.failure) return c;
        kind = c.kind;
      }
      const f = await command(argv, kind === "accepted");
      return f ? { kind, failure: f } : { kind };
    }
    case "cli": {
      const argv = hostileArgv(r, paths);
      let kind = "accepted";
      try {
        await buildProgram({ out: () => {}, err: () => {} }).parseAsync(argv, { from: "user" });
      } catch (err) {
        const c = classify(err);
        if (c.failure) return c;
        kind = c.kind.replace(/^CommanderError:commander\./, "commander:");
      }
      const f = await command(argv, kind === "accepted");
      return f ? { kind, failure: f } : { kind };
    }
    default:
      throw new Error(`unknown class ${cls}`);
  }
}

const outcomes: Record<string, number> = {};
const failures: { case: number; reason: string }[] = [];
let peakRss = 0;
const t0 = performance.now();
for (let i = 0; i < count; i++) {
  writeFileSync(progress, String(i));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Outcome>((resolve) => {
    timer = setTimeout(() => resolve({ kind: "timeout", failure: `no answer within ${CASE_MS} ms` }), CASE_MS);
  });
  const o = await Promise.race([runCase(i).catch((e) => ({ kind: "harness", failure: String(e) })), timeout]);
  clearTimeout(timer);
  outcomes[o.kind] = (outcomes[o.kind] ?? 0) + 1;
  if (o.failure) failures.push({ case: i, reason: o.failure });
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
  if (o.kind === "timeout") break; // a stuck case holds a thread-pool thread; the rest would queue behind it
}
process.stdout.write(
  JSON.stringify({
    class: cls,
    seed,
    cases: Object.values(outcomes).reduce((a, b) => a + b, 0),
    outcomes,
    failures: failures.slice(0, 20),
    failureCount: failures.length,
    peakRssMB: Math.round(peakRss / 2 ** 20),
    maxRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
    seconds: Number(((performance.now() - t0) / 1000).toFixed(1)),
  }),
);
process.exit(0); // the FIFO's waiters (if any case left one) must not keep the process alive
