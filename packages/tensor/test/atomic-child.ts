// Child process of atomic-write.test.ts.
//   slow DIR: replaces DIR/out.bin with 64 MiB written 1 MiB at a time, printing "writing" after the first MiB
//             (the parent SIGKILLs it mid-write);
//   tmpfs DIR: DIR is a fresh 1 MiB tmpfs (the parent runs this under unshare): checks a full disk and a read-only
//             remount against the atomic writer and prints what happened as JSON.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { checkOutputPath, writeFileAtomic } from "@svdquant/tensor";

const [mode, dir] = process.argv.slice(2) as [string, string];
const outcome = async (f: () => Promise<void>): Promise<unknown> => {
  try {
    await f();
    return "ok";
  } catch (e) {
    return { name: (e as Error).name, code: (e as { code?: string }).code, message: (e as Error).message };
  }
};

if (mode === "slow") {
  await writeFileAtomic(join(dir, "out.bin"), async (write) => {
    const chunk = new Uint8Array(1 << 20).fill(0xab);
    for (let i = 0; i < 64; i++) {
      await write(chunk);
      if (i === 0) process.stdout.write("writing\n");
      await new Promise((r) => setTimeout(r, 50));
    }
  });
} else if (mode === "tmpfs") {
  const target = join(dir, "result.json");
  const r: Record<string, unknown> = {};
  r.first = await outcome(() => writeFileAtomic(target, '{"run":1}\n'));
  // 2 MiB into a 1 MiB filesystem: ENOSPC part-way
  r.full = await outcome(() => writeFileAtomic(target, new Uint8Array(2 << 20).fill(1)));
  r.afterFull = readFileSync(target, "utf8");
  r.leftAfterFull = readdirSync(dir);
  execFileSync("mount", ["-o", "remount,ro", dir]);
  r.check = await outcome(() => checkOutputPath(target));
  r.readOnly = await outcome(() => writeFileAtomic(target, '{"run":3}\n'));
  r.afterReadOnly = readFileSync(target, "utf8");
  process.stdout.write(JSON.stringify(r));
}
