// The one schema file: every operator of the `swinir_kernels` namespace is declared here.
// Backends register their kernels at the bottom of their own files
// (csrc/cpu/<op>.cpp with TORCH_LIBRARY_IMPL(..., CPU, ...), csrc/cuda/<op>.cpp with CUDA);
// fake (meta) kernels and autograd live in Python, with each op's description (swinir_kernels/registry/).
#include <Python.h>
#include <torch/library.h>

#include "limits.h"

// `import swinir_kernels._C` only needs a module object: loading the shared library runs the
// static TORCH_LIBRARY initialisers below, which is what registers the operators. The module carries
// the kernels' limits (limits.h) as int constants, so Python reads them instead of restating them.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "swinir_kernels C++/CUDA operators", -1, nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr ||
      PyModule_AddIntConstant(module, "CPU_ATTENTION_MAX_HEAD_DIM", swinir_kernels::limits::kCpuAttentionMaxHeadDim) < 0 ||
      PyModule_AddIntConstant(module, "CUDA_ATTENTION_MAX_HEAD_DIM", swinir_kernels::limits::kCudaAttentionMaxHeadDim) < 0 ||
      PyModule_AddIntConstant(module, "CUDA_ATTENTION_MAX_TOKENS", swinir_kernels::limits::kCudaAttentionMaxTokens) < 0) {
    Py_XDECREF(module);
    return nullptr;
  }
  return module;
}

TORCH_LIBRARY(swinir_kernels, m) {
  // window_size = (wh, ww) and shift = (sh, sw) along (H, W): `int[2]`, so one int means both axes.
  // x (B, H, W, C) -> (B*nW, wh*ww, C): roll by (-sh, -sw) over (H, W), then partition.
  m.def("window_partition(Tensor x, int[2] window_size, int[2] shift) -> Tensor");
  // windows (B*nW, wh*ww, C) -> (B, H, W, C): exact inverse of window_partition.
  m.def("window_reverse(Tensor windows, int[2] window_size, SymInt H, SymInt W, int[2] shift) -> Tensor");

  // x (B, C*r*r, H, W) -> (B, C, out_h, out_w), out = shuffle(x)[..., :out_h, :out_w] * scale[c] + bias[c].
  m.def(
      "pixel_shuffle(Tensor x, int upscale_factor, Tensor? scale, Tensor? bias, SymInt out_h, SymInt out_w)"
      " -> Tensor");
  // grad_out (B, C, out_h, out_w) -> grad_x (B, C*r*r, H, W); zeros where the crop dropped pixels.
  m.def(
      "_pixel_shuffle_backward(Tensor grad_out, int upscale_factor, Tensor? scale, SymInt H, SymInt W)"
      " -> Tensor");

  // Window layout: qkv (B*nW, N, 3C), rel_bias (nH, N, N), mask (nW, N, N)? -> (B*nW, N, C).
  m.def(
      "window_attention(Tensor qkv, Tensor rel_bias, Tensor? mask, int num_heads, float scale) -> Tensor");
  // -> (grad_qkv (B*nW, N, 3C), grad_rel_bias (nH, N, N) in rel_bias's dtype).
  m.def(
      "_window_attention_backward(Tensor grad_out, Tensor qkv, Tensor rel_bias, Tensor? mask, int num_heads,"
      " float scale) -> (Tensor, Tensor)");

  // Image layout: qkv (B, H, W, 3C), rel_bias (nH, wh*ww, wh*ww) -> (B, H, W, C); the shift and the
  // official -100 shift mask (cut per axis, DAT's calculate_mask) are index arithmetic inside the kernel.
  m.def(
      "shifted_window_attention(Tensor qkv, Tensor rel_bias, int num_heads, int[2] window_size, int[2] shift,"
      " float scale) -> Tensor");
  m.def(
      "_shifted_window_attention_backward(Tensor grad_out, Tensor qkv, Tensor rel_bias, int num_heads,"
      " int[2] window_size, int[2] shift, float scale) -> (Tensor, Tensor)");
}
