// The split-bf16 f32 GEMM on the native addon: every ISA path this CPU supports, forced one by one.
import { defineSplitSuite } from "./split-suite.ts";

defineSplitSuite();
