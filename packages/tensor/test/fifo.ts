import { execFileSync } from "node:child_process";

/** Make a named pipe (Node has no mkfifo; the coreutils one is everywhere the tests run). */
export function mkfifoSync(path: string): void {
  execFileSync("mkfifo", [path]);
}
