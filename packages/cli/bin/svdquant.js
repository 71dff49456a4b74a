#!/usr/bin/env node
// Entry point of the `svdquant` command; the implementation is built to dist/ by `pnpm build`.
import { main } from "../dist/index.js";

process.exitCode = await main(process.argv.slice(2));
