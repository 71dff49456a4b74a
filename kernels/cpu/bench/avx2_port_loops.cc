// Cycles per 8 vpmaddubsw in the instruction mixes of the AVX2 W4A4 GEMM's inner loop (kernels/cpu/gemm_w4a4.cc,
// micro_avx2: 4 rows × 2 panels, int16 accumulators), as inline-asm loops on L1-resident data, against a chain of
// dependent vpaddw (1 cycle each) as the clock. Run by hand, not part of the addon:
//
//   g++ -O2 kernels/cpu/bench/avx2_port_loops.cc -o /tmp/avx2_port_loops && flock /tmp/svdq-bench.lock /tmp/avx2_port_loops
//
// Mixes (per 8 vpmaddubsw, each followed by a dependent vpaddw into one of 8 accumulators): no loads; weights
// loaded (2 vectors) + activations broadcast (4 × vpbroadcastd); the same with 32-byte activation loads; with the
// activations as memory operands; broadcasts + the weights unpacked in the loop (vpand, vpsrlw, vpand per panel).
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <cstdint>
static double now(){timespec t;clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t);return t.tv_sec+t.tv_nsec*1e-9;}
alignas(64) static char buf[8192];
#define T(name, body) __attribute__((noinline)) double name(int64_t n){ double t0=now(); for(int64_t i=0;i<n;++i) asm volatile(body ::"r"(buf):"memory", "xmm0","xmm1","xmm2","xmm3","xmm4","xmm5","xmm6","xmm7","xmm8","xmm9","xmm10","xmm11","xmm12","xmm13","xmm14","xmm15"); return (now()-t0)/n*1e9; }
// acc regs 8..15 ; w 0,1 ; x 2 ; tmp 3,4
#define MA(w,x,acc) "vpmaddubsw %%ymm" #x ", %%ymm" #w ", %%ymm3\n vpaddw %%ymm3, %%ymm" #acc ", %%ymm" #acc "\n"
#define MAM(w,off,acc) "vpmaddubsw " #off "(%0), %%ymm" #w ", %%ymm3\n vpaddw %%ymm3, %%ymm" #acc ", %%ymm" #acc "\n"
#define ROW(off,a0,a1) "vpbroadcastd " #off "(%0), %%ymm2\n" MA(0,2,a0) MA(1,2,a1)
#define ROWL(off,a0,a1) "vmovdqa " #off "(%0), %%ymm2\n" MA(0,2,a0) MA(1,2,a1)
#define ROWM(off,a0,a1) MAM(0,off,a0) MAM(1,off,a1)
#define WL "vmovdqa 4096(%0), %%ymm0\n vmovdqa 4128(%0), %%ymm1\n"
#define WU "vmovdqa 4096(%0), %%ymm5\n vpand %%ymm5, %%ymm6, %%ymm0\n vpsrlw $4, %%ymm5, %%ymm5\n vpand %%ymm5, %%ymm6, %%ymm1\n"
#define STEP_B WL ROW(0,8,9) ROW(4,10,11) ROW(8,12,13) ROW(12,14,15)
#define STEP_L WL ROWL(0,8,9) ROWL(32,10,11) ROWL(64,12,13) ROWL(96,14,15)
#define STEP_M WL ROWM(0,8,9) ROWM(32,10,11) ROWM(64,12,13) ROWM(96,14,15)
#define STEP_U WU ROW(0,8,9) ROW(4,10,11) ROW(8,12,13) ROW(12,14,15)
#define STEP_N MA(0,2,8) MA(1,2,9) MA(0,2,10) MA(1,2,11) MA(0,2,12) MA(1,2,13) MA(0,2,14) MA(1,2,15)
T(t_b, STEP_B STEP_B STEP_B STEP_B)
T(t_l, STEP_L STEP_L STEP_L STEP_L)
T(t_m, STEP_M STEP_M STEP_M STEP_M)
T(t_u, STEP_U STEP_U STEP_U STEP_U)
T(t_n, STEP_N STEP_N STEP_N STEP_N)
T(t_chain, "vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n vpaddw %%ymm0,%%ymm2,%%ymm2\n")
int main(){
  const int64_t n=5000000;
  for(int r=0;r<4;++r){
    double cyc=t_chain(n*4)/16;
    printf("cycles per 8 maddubs (4x4 step, 1 tmp): no loads %.2f | bcast x %.2f | load x %.2f | mem-operand x %.2f | bcast x + unpack w %.2f   [clock %.2f GHz]\n",
      t_n(n)/cyc/4, t_b(n)/cyc/4, t_l(n)/cyc/4, t_m(n)/cyc/4, t_u(n)/cyc/4, 1/cyc);
  }
}
