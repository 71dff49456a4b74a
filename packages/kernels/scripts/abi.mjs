// The addon ABI these scripts accept: kernels/cpu/binding.cc sets `abiVersion`; src/native.ts checks the same number.
export const ADDON_ABI = 2;
