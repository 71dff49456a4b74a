{
  "targets": [
    {
      "target_name": "svdquant_kernels",
      "variables": {
        "csrc": "<!(node -p \"require('fs').existsSync('csrc') ? 'csrc' : '../../kernels/cpu'\")"
      },
      "sources": [
        "<(csrc)/binding.cc",
        "<(csrc)/runtime.cc",
        "<(csrc)/simd.cc",
        "<(csrc)/act_quant.cc",
        "<(csrc)/gemm_w4a4.cc",
        "<(csrc)/gemm_w4a4_avx512.cc",
        "<(csrc)/gemm_w4a4_amx.cc",
        "<(csrc)/gemm_f32.cc",
        "<(csrc)/gemm_f32_amx.cc",
        "<(csrc)/gemm_f32_split_napi.cc",
        "<(csrc)/gemm_w8a8.cc",
        "<(csrc)/gemm_w8a8_x86.cc",
        "<(csrc)/peak.cc",
        "<(csrc)/attention_f32.cc",
        "<(csrc)/attention_f32_amx.cc",
        "<(csrc)/norm_f32.cc",
        "<(csrc)/linalg_f64.cc",
        "<(csrc)/residual_quant.cc",
        "<(csrc)/cholqr_f64.cc",
        "<(csrc)/binding_p2.cc",
        "<(csrc)/act_quant_p2.cc",
        "<(csrc)/gemm_p2.cc",
        "<(csrc)/gemm_p2_amx.cc",
        "<(csrc)/p2_branch_bf16.cc",
        "<(csrc)/binding_p2_int8.cc",
        "<(csrc)/pack_p2_int8.cc",
        "<(csrc)/gemm_p2_int8_amx.cc",
        "<(csrc)/gemm_p2_avx2.cc",
        "<(csrc)/binding_p2_avx2.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-pthread", "-fno-math-errno", "-Wno-maybe-uninitialized"],
      "ldflags": ["-pthread"],
      "xcode_settings": { "GCC_ENABLE_CPP_EXCEPTIONS": "YES", "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-O3"] },
      "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1 } }
    }
  ]
}
