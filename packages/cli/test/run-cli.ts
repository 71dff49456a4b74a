// Runs the CLI from source in a child process (tests that kill it mid-way): node --import tsx --conditions=@svdquant/source
import { main } from "../src/index.ts";

process.exitCode = await main(process.argv.slice(2));
