// One in-memory TensorSource for the tests and benchmarks: @svdquant/tensor's.
export { memorySource } from "@svdquant/tensor";
