// Every changeset must parse as changesets expects (YAML frontmatter of `"pkg": bump` lines) and name a
// published workspace package: a formatter once turned the frontmatter into a Markdown heading, and
// `changeset version` would then have skipped the release.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const root = join(import.meta.dirname, "../..");

function workspacePackages(): Map<string, { private: boolean }> {
  const out = new Map<string, { private: boolean }>();
  for (const dir of ["packages", "experiments"])
    for (const d of readdirSync(join(root, dir), { withFileTypes: true })) {
      if (!d.isDirectory()) continue;
      const pj = JSON.parse(readFileSync(join(root, dir, d.name, "package.json"), "utf8"));
      out.set(pj.name, { private: pj.private === true });
    }
  return out;
}

const files = readdirSync(join(root, ".changeset")).filter((f) => f.endsWith(".md") && f !== "README.md");
const pkgs = workspacePackages();

describe("changesets", () => {
  it("there is at least one", () => expect(files.length).toBeGreaterThan(0));
  it.each(files)("%s has valid frontmatter naming published packages, and a summary", (f) => {
    const text = readFileSync(join(root, ".changeset", f), "utf8");
    const m = /^---\n((?:"[^"\n]+": (?:major|minor|patch)\n)+)---\n([\s\S]*)$/.exec(text);
    expect(m, `${f}: frontmatter must be ---, lines of "@svdquant/x": major|minor|patch, ---`).not.toBeNull();
    for (const line of m![1]!.trim().split("\n")) {
      const name = /^"([^"]+)"/.exec(line)![1]!;
      expect(pkgs.has(name), `${f}: ${name} is not a workspace package`).toBe(true);
      expect(pkgs.get(name)!.private, `${f}: ${name} is private`).toBe(false);
    }
    expect(m![2]!.trim().length, `${f}: empty summary`).toBeGreaterThan(20);
  });
});
