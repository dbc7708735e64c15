"""Builds swinir_kernels._C: the C++ CPU kernels and schemas always, the CUDA kernels when possible.

Environment:
  SWINIR_KERNELS_CUDA=0|1   force the CUDA kernels off or on (default: on when torch has CUDA and nvcc is found)
  TORCH_CUDA_ARCH_LIST      honoured as torch defines it (e.g. "9.0" for H100/H200); default: the local GPU's arch
  MAX_JOBS                  parallel compile jobs (ninja)
  DEBUG=1                   -O0 -g
  SWINIR_KERNELS_COMMIT     the commit to record in swinir_kernels/_build_info.py (default: git's, else the
                            one already recorded there: a copied tree without .git keeps what it was built from)
"""

import glob
import os
import re
import shutil
import subprocess
import sys

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
BUILD_INFO = os.path.join(ROOT, "swinir_kernels", "_build_info.py")


def source_commit() -> str:
    """The short commit of this tree ("-dirty" with local changes to tracked files), from
    $SWINIR_KERNELS_COMMIT, else git, else the one recorded by an earlier build, else "unknown"."""
    if os.environ.get("SWINIR_KERNELS_COMMIT"):
        return os.environ["SWINIR_KERNELS_COMMIT"]
    try:
        def git(*args):
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()

        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ":/", ":(exclude,top)bench/results")
        return git("rev-parse", "--short=7", "HEAD") + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        with open(BUILD_INFO) as handle:
            return re.search(r'COMMIT = "([^"]*)"', handle.read()).group(1)
    except (OSError, AttributeError):
        return "unknown"


def write_build_info() -> None:
    """swinir_kernels/_build_info.py (git-ignored): the commit this build came from, so that a tree
    without .git (an installed or copied one, e.g. on a GPU machine) still knows it."""
    commit = source_commit()
    text = f'"""Written by setup.py at build time; not in git."""\n\nCOMMIT = "{commit}"\n'
    with open(BUILD_INFO + ".tmp", "w") as handle:
        handle.write(text)
    os.replace(BUILD_INFO + ".tmp", BUILD_INFO)
    print(f"swinir_kernels build: commit {commit} recorded in {os.path.relpath(BUILD_INFO, ROOT)}")


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


write_build_info()
setup(
    packages=find_packages(include=["swinir_kernels", "swinir_kernels.*", "swinir", "swinir.*"]),
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension},
)
