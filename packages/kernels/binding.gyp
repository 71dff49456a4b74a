{
  "targets": [
    {
      "target_name": "svdquant_kernels",
      "sources": [
        "../../kernels/cpu/binding.cc",
        "../../kernels/cpu/runtime.cc",
        "../../kernels/cpu/simd.cc",
        "../../kernels/cpu/act_quant.cc",
        "../../kernels/cpu/gemm_w4a4.cc",
        "../../kernels/cpu/gemm_f32.cc",
        "../../kernels/cpu/gemm_w8a8.cc",
        "../../kernels/cpu/peak.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-pthread", "-fno-math-errno"],
      "ldflags": ["-pthread"],
      "xcode_settings": { "GCC_ENABLE_CPP_EXCEPTIONS": "YES", "OTHER_CPLUSPLUSFLAGS": ["-std=c++17", "-O3"] },
      "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1 } }
    }
  ]
}
