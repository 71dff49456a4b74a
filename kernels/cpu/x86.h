// The x86 intrinsics of the SIMD paths, and SVDQ_X86 (1 on x86-64, else 0) to guard them: on other CPUs (ARM) only
// the portable `scalar` path is compiled (packages/kernels/README.md, "ARM").
#pragma once
#if defined(__x86_64__) || defined(_M_X64)
#define SVDQ_X86 1
// GCC 12 reports its own AVX-512 reduce / extract intrinsics as reading an uninitialized value once inlined (GCC bug
// 105593, fixed in GCC 13): silenced for this header's contents only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#else
#define SVDQ_X86 0
#endif
