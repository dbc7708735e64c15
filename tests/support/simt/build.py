"""Builds the SIMT harness executable: the plain-CUDA kernel files (csrc/cuda/*.cu and the harness's
own tests/support/simt/kernels/*.cu) compiled as host C++ with SWINIR_SIMT_HARNESS and the stand-in CUDA headers
of tests/support/simt/include, the harness runtime and the drivers, with AddressSanitizer and UBSan.

Objects are cached by the hash of their compile command and of every source and header they may
include, so a rebuild after no change is a few file lookups, and a build with one patched kernel file
(the planted-bug tests) recompiles only that file.

Extern dynamic shared arrays (`extern __shared__ T name[];`) become block-scope `extern thread_local`
declarations (see simt_runtime.h); the build finds their undefined symbols in the kernel objects with
nm and defines each as a buffer of the largest dynamic shared size, registered with the runtime, which
refills and bounds it for every block.

    python3 tests/support/simt/build.py [cache directory]      (prints the executable's path)
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HARNESS = ROOT / "tests" / "support" / "simt"
KERNEL_DIR = ROOT / "csrc" / "cuda"
INCLUDE_DIRS = [HARNESS / "include", KERNEL_DIR]

CXX = os.environ.get("SIMT_CXX", "g++")
# -O1: AddressSanitizer's recommended level (fast enough, accurate reports); -fno-sanitize-recover makes
# any UBSan finding fatal, so a test cannot pass with a report on stderr.
FLAGS = [
    "-std=c++17", "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
    "-fno-sanitize-recover=all", "-Wall", "-Wno-unknown-pragmas",
]
KERNEL_FLAGS = ["-x", "c++", "-DSWINIR_SIMT_HARNESS"]
EXTERN_SHARED = re.compile(r"extern\s+__shared__[^;]*?(\w+)\s*\[\s*\]\s*;")


class BuildError(RuntimeError):
    """A compile or link step failed; the message holds the command's output."""


def compiler_missing() -> str | None:
    """Why the harness cannot be built here (no C++ compiler with the sanitizers), or None."""
    if shutil.which(CXX) is None:
        return f"no C++ compiler {CXX!r} on PATH (set SIMT_CXX)"
    return None


def kernel_sources() -> list[Path]:
    return sorted(KERNEL_DIR.glob("*.cu")) + sorted((HARNESS / "kernels").glob("*.cu"))


def host_sources() -> list[Path]:
    return sorted((HARNESS / "src").glob("*.cpp")) + sorted((HARNESS / "drivers").glob("*.cpp"))


def _headers_digest() -> str:
    """One hash over every header an object may include (harness stand-ins, kernel and driver headers)."""
    digest = hashlib.sha256()
    for directory in (HARNESS / "include", KERNEL_DIR, HARNESS / "kernels", HARNESS / "drivers"):
        for path in sorted(directory.iterdir()):
            if path.suffix in (".h", ".cuh", ".inc"):
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{' '.join(command)}\n{result.stdout}{result.stderr}")
    return result.stdout


def _compile(source_name: str, text: str, is_kernel: bool, headers: str, objects: Path) -> Path:
    flags = FLAGS + (KERNEL_FLAGS if is_kernel else []) + [f"-I{d}" for d in INCLUDE_DIRS]
    key = hashlib.sha256("\0".join([CXX, *flags, headers, source_name, text]).encode()).hexdigest()[:20]
    target = objects / f"{Path(source_name).stem}-{key}.o"
    if target.exists():
        return target
    # Compiled from a copy next to the object, so a patched text needs no write to the checkout; the
    # #line directive keeps diagnostics and the harness's file:line messages pointing at the real file.
    unique = f"{os.getpid()}-{threading.get_ident()}"  # concurrent builds into one cache do not collide
    copy = objects / f"{Path(source_name).stem}-{key}-{unique}{'.cu' if is_kernel else '.cpp'}"
    copy.write_text(f'#line 1 "{source_name}"\n{text}')
    include_here = [f"-I{(ROOT / source_name).parent}"]
    partial = objects / f"{target.name}.{unique}.partial"
    try:
        _run([CXX, *flags, *include_here, "-c", str(copy), "-o", str(partial)])
        partial.replace(target)
    finally:
        copy.unlink()
    return target


def _extern_shared_symbols(obj: Path, text: str) -> list[str]:
    """Mangled names of the extern __shared__ arrays `obj` references (declared in `text`)."""
    names = set(EXTERN_SHARED.findall(text))
    if not names:
        return []
    mangled = _run(["nm", "--undefined-only", "--format=posix", str(obj)]).split("\n")
    demangled = _run(["nm", "--undefined-only", "--format=posix", "--demangle", str(obj)]).split("\n")
    symbols = []
    for raw, readable in zip(mangled, demangled):
        if raw.strip() and readable.strip().rsplit(" ", 1)[0].split("::")[-1] in names:
            symbols.append(raw.split()[0])
    return symbols


def _extern_shared_source(symbols: list[str]) -> str:
    lines = [
        "// Generated by tests/support/simt/build.py: storage for the kernels' extern __shared__ arrays.",
        '#include "simt_runtime.h"',
    ]
    if symbols:
        # g++ gives these block-scope externs of an unnamed namespace external symbols, but calls its
        # TU-local thread_local initialiser __tls_init for them without defining it (the arrays need none).
        lines.append('extern "C" void __tls_init() {}')
    for index, symbol in enumerate(symbols):
        lines.append(
            f"alignas(256) thread_local unsigned char simt_dynamic_shared_{index}"
            f'[simt::kMaxDynamicSharedBytes] __asm__("{symbol}");'
        )
    lines.append("namespace {")
    lines.append("struct Registration {")
    lines.append("  Registration() {")
    for index in range(len(symbols)):
        lines.append(f"    simt::detail::register_dynamic_shared(simt_dynamic_shared_{index});")
    lines += ["  }", "} registration;", "}  // namespace", ""]
    return "\n".join(lines)


def build(cache_dir: Path, overrides: dict[str, str] | None = None, jobs: int | None = None) -> Path:
    """The harness executable for the checkout's sources, with `overrides` (path relative to the repository
    root -> replacement text) standing in for some files; built (in parallel) or found in `cache_dir`."""
    overrides = dict(overrides or {})
    objects = Path(cache_dir) / "objects"
    objects.mkdir(parents=True, exist_ok=True)
    headers = _headers_digest()
    units = [(path, True) for path in kernel_sources()] + [(path, False) for path in host_sources()]
    texts = {}
    for path, _ in units:
        name = str(path.relative_to(ROOT))
        texts[name] = overrides.pop(name, None) or path.read_text()
    if overrides:
        raise ValueError(f"overrides: not harness sources: {sorted(overrides)}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        futures = {
            str(path.relative_to(ROOT)): pool.submit(
                _compile, str(path.relative_to(ROOT)), texts[str(path.relative_to(ROOT))], is_kernel, headers, objects
            )
            for path, is_kernel in units
        }
        built = {name: future.result() for name, future in futures.items()}
    symbols = []
    for path, is_kernel in units:
        name = str(path.relative_to(ROOT))
        if is_kernel:
            symbols += _extern_shared_symbols(built[name], texts[name])
    shared_object = _compile(
        "tests/support/simt/generated/extern_shared.cpp", _extern_shared_source(sorted(set(symbols))), False, headers, objects
    )
    all_objects = sorted(built.values()) + [shared_object]
    key = hashlib.sha256("\0".join(o.name for o in all_objects).encode()).hexdigest()[:20]
    executable = Path(cache_dir) / f"simt_kernels-{key}"
    if not executable.exists():
        partial = Path(cache_dir) / f"{executable.name}.{os.getpid()}.partial"
        _run([CXX, *FLAGS, *map(str, all_objects), "-o", str(partial)])
        partial.replace(executable)
    return executable


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/simt-build")
    print(build(target))
