/**
 * The part of vitest's API that @svdquant/kernels' test files use (describe / it / test with .each, .skip, .skipIf;
 * afterAll, beforeAll; the test context's skip), as a plain in-process runner, with vitest's own `expect`
 * (@vitest/expect's matchers on chai, the same plugins vitest installs). tools/cpu-device.sh bundles each test file
 * with esbuild, `vitest` aliased to this module, so the kernel suite runs where node_modules cannot travel (the GPU
 * machine's host CPU: 64 MiB carry limit, no network).
 *
 * Tests run in registration order, one at a time, each with vitest's default timeout of this repo (120 s,
 * vitest.config.ts). `runRegistered()` prints one line per test and a summary, and returns the counts; the entry
 * file tools/cpu-device.sh writes sets the exit code (1 on any failure or when no test ran).
 */

import {
  ASYMMETRIC_MATCHERS_OBJECT,
  ChaiStyleAssertions,
  customMatchers,
  GLOBAL_EXPECT,
  getState,
  JestAsymmetricMatchers,
  JestChaiExpect,
  JestExtend,
  setState,
} from "@vitest/expect";
import * as chai from "chai";

chai.use(JestExtend);
chai.use(JestChaiExpect);
chai.use(ChaiStyleAssertions);
chai.use(JestAsymmetricMatchers);

// biome-ignore lint/suspicious/noExplicitAny: vitest's ExpectStatic is built the same untyped way
type AnyFn = (...args: any[]) => any;

export const expect = ((value: unknown, message?: string) => {
  const { assertionCalls } = getState(expect as never) as { assertionCalls: number };
  setState({ assertionCalls: assertionCalls + 1 }, expect as never);
  return chai.expect(value, message);
  // biome-ignore lint/suspicious/noExplicitAny: see AnyFn
}) as any;
Object.assign(expect, chai.expect);
Object.assign(expect, (globalThis as Record<symbol, unknown>)[ASYMMETRIC_MATCHERS_OBJECT]);
setState(
  {
    assertionCalls: 0,
    isExpectingAssertions: false,
    isExpectingAssertionsError: null,
    expectedAssertionsNumber: null,
    expectedAssertionsNumberErrorGen: null,
    currentTestName: "",
  },
  expect,
);
(globalThis as Record<symbol, unknown>)[GLOBAL_EXPECT] = expect;
expect.extend = (matchers: Record<string, AnyFn>) =>
  (chai.expect as unknown as { extend: AnyFn }).extend(expect, matchers);
expect.extend(customMatchers);

const TIMEOUT_MS = 120_000; // vitest.config.ts testTimeout

class Skip extends Error {}

interface TestNode {
  kind: "test";
  name: string;
  fn: AnyFn;
  skip?: string;
  timeout: number;
}
interface SuiteNode {
  kind: "suite";
  name: string;
  children: (TestNode | SuiteNode)[];
  beforeAll: AnyFn[];
  afterAll: AnyFn[];
  skip?: string;
}

const root: SuiteNode = { kind: "suite", name: "", children: [], beforeAll: [], afterAll: [] };
let current = root;

// vitest's title formatting for .each: printf-style %s %d %i %f %j %o %# %% for array rows, $key for object rows
function title(name: string, row: unknown, index: number): string {
  if (row !== null && typeof row === "object" && !Array.isArray(row))
    return name.replace(/\$([\w.]+)/g, (_, key: string) =>
      String(key.split(".").reduce<unknown>((o, k) => (o as Record<string, unknown>)?.[k], row)),
    );
  const args = Array.isArray(row) ? [...row] : [row];
  return name.replace(/%[sdifjo#%]/g, (m) => {
    if (m === "%%") return "%";
    if (m === "%#") return String(index);
    const a = args.shift();
    if (m === "%d" || m === "%i") return String(m === "%i" ? Math.trunc(Number(a)) : Number(a));
    if (m === "%f") return String(Number(a));
    if (m === "%j" || m === "%o") return JSON.stringify(a);
    return String(a);
  });
}
const spread = (row: unknown): unknown[] => (Array.isArray(row) ? row : [row]);

function addSuite(name: string, fn: () => void, skip?: string): void {
  const s: SuiteNode = { kind: "suite", name, children: [], beforeAll: [], afterAll: [], skip };
  current.children.push(s);
  const parent = current;
  current = s;
  try {
    fn();
  } finally {
    current = parent;
  }
}

function addTest(name: string, a: unknown, b: unknown, skip?: string): void {
  // it(name, fn, timeout | { timeout }) or it(name, { timeout }, fn)
  const fn = (typeof a === "function" ? a : b) as AnyFn | undefined;
  const opt = typeof a === "function" ? b : a;
  const timeout = typeof opt === "number" ? opt : ((opt as { timeout?: number } | undefined)?.timeout ?? TIMEOUT_MS);
  current.children.push({ kind: "test", name, fn: fn ?? (() => {}), skip: fn ? skip : (skip ?? "todo"), timeout });
}

type SuiteFn = ((name: string, fn: () => void) => void) & {
  skip: (name: string, fn: () => void) => void;
  skipIf: (cond: unknown) => (name: string, fn: () => void) => void;
  each: (table: readonly unknown[]) => (name: string, fn: AnyFn) => void;
};
export const describe: SuiteFn = Object.assign((name: string, fn: () => void) => addSuite(name, fn), {
  skip: (name: string, fn: () => void) => addSuite(name, fn, "describe.skip"),
  skipIf: (cond: unknown) => (name: string, fn: () => void) => addSuite(name, fn, cond ? "describe.skipIf" : undefined),
  each: (table: readonly unknown[]) => (name: string, fn: AnyFn) =>
    table.forEach((row, i) => {
      addSuite(title(name, row, i), () => fn(...spread(row)));
    }),
});

type TestFn = ((name: string, a?: unknown, b?: unknown) => void) & {
  skip: (name: string, a?: unknown, b?: unknown) => void;
  skipIf: (cond: unknown) => (name: string, a?: unknown, b?: unknown) => void;
  each: (table: readonly unknown[]) => (name: string, fn: AnyFn, timeout?: unknown) => void;
};
export const it: TestFn = Object.assign((name: string, a?: unknown, b?: unknown) => addTest(name, a, b), {
  skip: (name: string, a?: unknown, b?: unknown) => addTest(name, a, b, "it.skip"),
  skipIf: (cond: unknown) => (name: string, a?: unknown, b?: unknown) =>
    addTest(name, a, b, cond ? "it.skipIf" : undefined),
  each: (table: readonly unknown[]) => (name: string, fn: AnyFn, timeout?: unknown) =>
    table.forEach((row, i) => {
      addTest(title(name, row, i), () => fn(...spread(row)), timeout);
    }),
});
export const test = it;
export const beforeAll = (fn: AnyFn): void => void current.beforeAll.push(fn);
export const afterAll = (fn: AnyFn): void => void current.afterAll.push(fn);

export interface RunCounts {
  passed: number;
  failed: number;
  skipped: number;
}

async function withTimeout(p: unknown, ms: number, name: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      p,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${name}: timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs every registered test (registration order), prints a line per test and a summary, returns the counts. */
export async function runRegistered(file: string): Promise<RunCounts> {
  const counts: RunCounts = { passed: 0, failed: 0, skipped: 0 };
  const log = (s: string) => process.stdout.write(`${s}\n`);
  const skipped = (full: string, why: string) => {
    counts.skipped++;
    log(`  ↓ ${full} (${why})`);
  };
  // beforeAll stops at its first failure (the suite does not run), afterAll runs every hook
  async function hooks(list: AnyFn[], full: string, label: string, stopOnFailure: boolean): Promise<boolean> {
    let ok = true;
    for (const h of list) {
      try {
        await h();
      } catch (e) {
        counts.failed++;
        log(`  ✗ ${full} ${label}: ${(e as Error)?.message ?? e}`);
        ok = false;
        if (stopOnFailure) break;
      }
    }
    return ok;
  }
  async function runTest(node: TestNode, full: string): Promise<void> {
    const t0 = performance.now();
    setState({ assertionCalls: 0, currentTestName: full }, expect);
    const ctx = {
      skip: (reason?: string) => {
        throw new Skip(reason ?? "ctx.skip");
      },
      task: { name: node.name },
    };
    try {
      await withTimeout(node.fn(ctx), node.timeout, full);
      counts.passed++;
      log(`  ✓ ${full} (${(performance.now() - t0).toFixed(0)} ms)`);
    } catch (e) {
      if (e instanceof Skip) return skipped(full, e.message);
      counts.failed++;
      const stack = String((e as Error)?.stack ?? e)
        .split("\n")
        .slice(0, 6);
      log(`  ✗ ${full}\n      ${stack.join("\n      ")}`);
    }
  }
  async function run(node: TestNode | SuiteNode, path: string, skip: string | undefined): Promise<void> {
    const full = path ? `${path} > ${node.name}` : node.name;
    const why = skip ?? node.skip;
    if (node.kind === "test") return why ? skipped(full, why) : runTest(node, full);
    if (!why && !(await hooks(node.beforeAll, full, "beforeAll", true))) return;
    for (const c of node.children) await run(c, full, why);
    if (!why) await hooks(node.afterAll, full, "afterAll", false);
  }
  await run(root, "", undefined);
  log(`${file}: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
  return counts;
}
