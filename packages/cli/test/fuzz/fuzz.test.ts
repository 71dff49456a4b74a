// The fuzz suite of issue 18: seeded malformed safetensors files, PNG/JPEG images, experiment configs and command
// lines, each class in its own child process (fuzz-child.ts) so that a crash or a hang is a failure here, not a dead
// runner. Every case must end in one typed error line (or be accepted as valid), within its time limit, and the
// child's peak RSS must stay under RSS_LIMIT_MB.
//   default (CI):          2,900 cases, about a minute on 2 loaded cores
//   SVDQ_FUZZ=full:        10x the cases
//   SVDQ_FUZZ_SEED=N:      another seed (default 18)
//   SVDQ_FUZZ_REPORT=FILE: append the per-class summaries (JSON lines) to FILE (docs/hardening.md's table)
import { spawnSync } from "node:child_process";
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const SCALE = process.env.SVDQ_FUZZ === "full" ? 10 : 1;
const SEED = Number(process.env.SVDQ_FUZZ_SEED ?? 18);
/** Cases per class in CI (ms per case measured on the 2-core CI-like machine: ~15, 25, 100, 8, 3). */
const CASES: Record<string, number> = { safetensors: 1000, png: 500, jpeg: 200, config: 400, cli: 800 };
const RSS_LIMIT_MB = 640;
const work = mkdtempSync(join(tmpdir(), "svdq-fuzz-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe(`fuzz suite (seed ${SEED}, ${SCALE === 1 ? "CI budget" : "full"})`, () => {
  it.each(Object.entries(CASES))(
    "%s: every case is one typed error line or a valid input",
    (cls, n) => {
      const count = n * SCALE;
      const progress = join(work, `${cls}.progress`);
      const r = spawnSync(
        process.execPath,
        [
          "--conditions=@svdquant/source",
          "--import",
          "tsx",
          join(import.meta.dirname, "fuzz-child.ts"),
          cls,
          String(SEED),
          String(count),
          join(work, cls),
          progress,
        ],
        { encoding: "utf8", cwd: join(import.meta.dirname, "../.."), timeout: 600_000 * SCALE, maxBuffer: 1 << 24 },
      );
      const at = (() => {
        try {
          return readFileSync(progress, "utf8");
        } catch {
          return "?";
        }
      })();
      expect(r.signal, `child killed (${r.signal}) at case ${at}: ${r.stderr.slice(-2000)}`).toBeNull();
      expect(r.status, `child exited ${r.status} at case ${at}: ${r.stderr.slice(-2000)}`).toBe(0);
      const summary = JSON.parse(r.stdout);
      if (process.env.SVDQ_FUZZ_REPORT) appendFileSync(process.env.SVDQ_FUZZ_REPORT, `${JSON.stringify(summary)}\n`);
      expect(summary.failures, JSON.stringify(summary.failures, null, 2)).toEqual([]);
      expect(summary.cases).toBe(count);
      expect(summary.maxRssMB).toBeLessThan(RSS_LIMIT_MB);
    },
    600_000 * SCALE,
  );
});
