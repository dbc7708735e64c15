"""What a new user meets first on a fresh clone: the message when the extension is not built."""

import os
import shutil
import subprocess
import sys

from tests.helpers import ROOT

IMPORT_AND_SHOW_WARNINGS = """
import sys, warnings
# an editable install of another checkout would hand over its own swinir_kernels._C
sys.meta_path = [finder for finder in sys.meta_path if "editable" not in repr(finder)]
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import swinir_kernels
print("\\n".join(str(w.message) for w in caught if "swinir_kernels" in str(w.message)))
"""


def test_missing_extension_warning_says_why_and_how_to_build(tmp_path):
    """A checkout without a built _C: no "circular import" (Python's text for a failed ``from . import
    _C`` in a package being imported), but that it is not built and the build command."""
    shutil.copytree(os.path.join(ROOT, "swinir_kernels"), tmp_path / "swinir_kernels",
                    ignore=shutil.ignore_patterns("_C*", "__pycache__"))
    environment = {**os.environ, "PYTHONPATH": str(tmp_path)}
    environment.pop("TRITON_INTERPRET", None)
    done = subprocess.run([sys.executable, "-c", IMPORT_AND_SHOW_WARNINGS], cwd=tmp_path, env=environment,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    warning = done.stdout.strip()
    assert warning.count("\n") == 0 and "circular import" not in warning, warning
    assert "extension is not built: there is no _C library in" in warning
    assert "pip install ninja" in warning and "pip install --no-build-isolation -e ." in warning
