#pragma once
// epgraph's public headers are C++20 (std::source_location in the error checks, among others).
// The exported CMake targets carry cxx_std_20; this catches builds that do not use them or that
// force an older standard (a PyTorch extension passes -std=c++17, nvcc defaults to C++17), with
// one message that says what to do instead of a cascade of errors from inside the headers.
#if defined(_MSVC_LANG)
#define EPGRAPH_CPLUSPLUS_ _MSVC_LANG
#else
#define EPGRAPH_CPLUSPLUS_ __cplusplus
#endif
#if EPGRAPH_CPLUSPLUS_ < 202002L
#error "epgraph needs C++20: compile with -std=c++20 (CMake: link the epgraph:: targets, which carry cxx_std_20, and set CUDA_STANDARD 20 for .cu files; nvcc and setup.py builds: pass -std=c++20)"
#endif
#undef EPGRAPH_CPLUSPLUS_
