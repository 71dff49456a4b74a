import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { main } from "../src/index.ts";

describe("svdquant --version", () => {
  it.each([["--version"], ["-V"]])("%s prints package.json's version", async (flag) => {
    const want = JSON.parse(readFileSync(join(import.meta.dirname, "../package.json"), "utf8")).version;
    let out = "";
    const code = await main([flag], { out: (s) => void (out += s), err: () => {} });
    expect(code).toBe(0);
    expect(out).toBe(`${want}\n`);
  });
});
