"""Builds swinir_kernels._C: the C++ CPU kernels and schemas always, the CUDA kernels when possible.

Environment:
  SWINIR_KERNELS_CUDA=0|1   force the CUDA kernels off or on (default: on when torch has CUDA and nvcc is found)
  TORCH_CUDA_ARCH_LIST      honoured as torch defines it (e.g. "9.0" for H100/H200); default: the local GPU's arch
  MAX_JOBS                  parallel compile jobs (ninja)
  DEBUG=1                   -O0 -g
"""

import glob
import os
import shutil
import sys

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def cuda_build_decision():
    """Returns (build_cuda, reason) from SWINIR_KERNELS_CUDA, torch's CUDA support and nvcc."""
    forced = os.environ.get("SWINIR_KERNELS_CUDA")
    nvcc = CUDA_HOME is not None or shutil.which("nvcc") is not None
    possible = torch.version.cuda is not None and nvcc
    why_not = "torch is a CPU build" if torch.version.cuda is None else "nvcc not found (set CUDA_HOME)"
    if forced == "0":
        return False, "SWINIR_KERNELS_CUDA=0"
    if forced == "1":
        if not possible:
            raise RuntimeError(f"SWINIR_KERNELS_CUDA=1 but the CUDA kernels cannot be built: {why_not}")
        return True, "SWINIR_KERNELS_CUDA=1"
    if forced not in (None, ""):
        raise RuntimeError(f"SWINIR_KERNELS_CUDA: expected 0 or 1, got {forced!r}")
    return (True, "torch has CUDA and nvcc was found") if possible else (False, why_not)


def default_arch_list():
    """Only the local GPU's arch, so a build on an H100/H200 takes minutes, not all of torch's archs."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return os.environ["TORCH_CUDA_ARCH_LIST"]
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"{major}.{minor}"
    return "8.0;9.0"


def extension():
    build_cuda, reason = cuda_build_decision()
    debug = os.environ.get("DEBUG") == "1"
    cxx = ["-O0", "-g"] if debug else ["-O3"]
    # at::parallel_for is a header template: without OpenMP in *our* compile it runs serially. torch's
    # wheels ship libgomp.so.1, which the loader reuses for us, so one OpenMP runtime serves both.
    openmp = [] if sys.platform in ("win32", "darwin") else ["-fopenmp"]
    cxx += openmp
    sources = ["csrc/swinir_ops.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    print(f"swinir_kernels build: CUDA kernels {'ON' if build_cuda else 'OFF'} ({reason}); debug={debug}")
    if not build_cuda:
        return CppExtension("swinir_kernels._C", sources, extra_compile_args={"cxx": cxx}, extra_link_args=openmp)
    os.environ["TORCH_CUDA_ARCH_LIST"] = default_arch_list()
    print(f"swinir_kernels build: TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}")
    sources += sorted(glob.glob("csrc/cuda/*.cpp")) + sorted(glob.glob("csrc/cuda/*.cu"))
    nvcc = ["-O0", "-g", "-G"] if debug else ["-O3", "-lineinfo"]
    return CUDAExtension(
        "swinir_kernels._C",
        sources,
        define_macros=[("SWINIR_KERNELS_WITH_CUDA", None)],
        extra_compile_args={"cxx": cxx, "nvcc": nvcc + ["--use_fast_math", "-std=c++17"]},
        extra_link_args=openmp,
    )


setup(
    packages=find_packages(include=["swinir_kernels", "swinir_kernels.*", "swinir", "swinir.*"]),
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension},
)
