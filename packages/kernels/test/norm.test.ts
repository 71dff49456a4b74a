// The normalization kernels on the native addon: every ISA path this CPU supports, forced one by one.
import { defineNormSuite } from "./norm-suite.ts";

defineNormSuite();
