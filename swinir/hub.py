"""Named checkpoints: ``-m classical_sr_x4`` downloads the official release file once and reuses it.

Files come from ``$SWINIR_DOWNLOAD_URL`` (default: the official v0.0 GitHub release) and are cached
in ``$SWINIR_CACHE``, else ``$XDG_CACHE_HOME/swinir``, else ``~/.cache/swinir``. We do not know the
official files' hashes offline, so a download is trusted as follows: its size must equal the
server's Content-Length, it must load as a SwinIR, and only then is it moved into the cache (temp
file + rename) together with a ``<file>.sha256`` sidecar holding its SHA-256. Every later use checks
the cached file against that sidecar, so a corrupted or swapped cache file is detected.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable

from .files import atomic_write_bytes, default_file_mode

OFFICIAL_URL = "https://github.com/JingyunLiang/SwinIR/releases/download/v0.0"
_CHUNK = 1 << 20


class HubError(Exception):
    """A named checkpoint could not be resolved, downloaded or verified; the message says why.

    ``str(error)`` is worded for Python callers ("pass a local path to swinir.load"); where the advice
    differs on the command line, :func:`command_wording` gives the command's ("pass its path to -m").
    """

    def __init__(self, message: str, *, api_hint: str = "", command_hint: str | None = None):
        super().__init__(message + api_hint)
        self.message = message
        # "{option}" in it: the command-line option that took the checkpoint (-m, --init)
        self.command_hint = api_hint if command_hint is None else command_hint


class CheckpointNotFound(HubError, FileNotFoundError):
    """Neither an existing file nor a known checkpoint name."""


def command_wording(error: BaseException, option: str = "-m") -> str:
    """The message of ``error`` as the ``swinir`` command should print it: a :class:`HubError`'s advice
    names the command-line ``option`` that took the checkpoint instead of the Python API; any other
    error's message is unchanged. The command layer prints ``command_wording(error, "-m")`` where it
    would print ``str(error)``."""
    if isinstance(error, HubError):
        return error.message + error.command_hint.format(option=option)
    return str(error)


def cache_dir() -> str:
    """Where downloaded checkpoints live (see module docstring)."""
    if os.environ.get("SWINIR_CACHE"):
        return os.environ["SWINIR_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "swinir")


def download_url(file_name: str) -> str:
    return os.environ.get("SWINIR_DOWNLOAD_URL", OFFICIAL_URL).rstrip("/") + "/" + file_name


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_sidecar(path: str, digest: str) -> None:
    atomic_write_bytes(path + ".sha256", f"{digest}  {os.path.basename(path)}\n".encode())


def official_file_names() -> dict[str, str]:
    """Preset name -> official checkpoint file name."""
    import swinir

    return {name: preset.checkpoint for name, preset in swinir.PRESETS.items() if preset.checkpoint}


def resolve(spec: str, *, verify: Callable[[str], object], progress: bool = True) -> str:
    """Path of a checkpoint given as a file path, a preset name or an official file name.

    verify(path) must raise if the file is not a usable SwinIR checkpoint; it runs on fresh downloads
    before they enter the cache.
    """
    if os.path.isfile(spec):
        return spec
    names = official_file_names()
    if spec in names:
        file_name = names[spec]
    elif spec in names.values():
        file_name = spec
    elif os.path.sep in spec or os.path.splitext(spec)[1]:
        raise CheckpointNotFound(f"checkpoint file not found: {spec}")
    else:
        import difflib

        close = difflib.get_close_matches(spec, sorted(names), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise CheckpointNotFound(f"unknown checkpoint {spec!r}: not a file and not a named checkpoint ({hint}the "
                                 "names are ", api_hint="the keys of swinir.PRESETS)",
                                 command_hint="listed in `swinir restore --help`)")
    return fetch(file_name, verify=verify, progress=progress)


def fetch(file_name: str, *, verify: Callable[[str], object], progress: bool = True) -> str:
    """Cached path of official checkpoint ``file_name``, downloading and verifying it on first use."""
    folder = cache_dir()
    path = os.path.join(folder, file_name)
    if os.path.isfile(path):
        _check_cached(path)
        return path
    url = download_url(file_name)
    try:
        os.makedirs(folder, exist_ok=True)
        descriptor, temp_path = tempfile.mkstemp(prefix="." + file_name + ".", suffix=".part", dir=folder)
    except OSError as error:
        raise HubError(f"cannot write to the checkpoint cache {folder} ({error.strerror or error}); "
                       "set SWINIR_CACHE to a writable folder") from None
    try:
        os.fchmod(descriptor, default_file_mode())  # mkstemp's 0600 would hide the cache from other users
        with os.fdopen(descriptor, "wb") as handle:
            digest = _download(url, handle, progress)
        try:
            verify(temp_path)
        except Exception as error:  # noqa: BLE001  (any failure means: not a SwinIR checkpoint)
            raise HubError(f"{url} did not give a usable SwinIR checkpoint ({error})") from None
        os.replace(temp_path, path)
        _write_sidecar(path, digest)
    finally:
        if os.path.exists(temp_path):
            os.unlink(temp_path)
    return path


def _check_cached(path: str) -> None:
    sidecar = path + ".sha256"
    if not os.path.isfile(sidecar):  # placed there by hand: record what we found, trust it from now on
        _write_sidecar(path, _sha256(path))
        return
    with open(sidecar) as handle:
        recorded = handle.read().split()
    expected = recorded[0] if recorded else ""
    if _sha256(path) != expected:
        raise HubError(f"cached checkpoint {path} does not match its recorded SHA-256 ({sidecar}); "
                       "delete both files to download it again")


def _download(url: str, handle, progress: bool) -> str:
    """Stream ``url`` into ``handle``; returns the SHA-256; checks the size against Content-Length."""
    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            expected = response.headers.get("Content-Length")
            expected = int(expected) if expected is not None else None
            received = 0
            with tqdm(total=expected, unit="B", unit_scale=True, desc=os.path.basename(url),
                      disable=not progress, leave=False) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    handle.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as error:
        raise HubError(f"download failed: {url}: HTTP {error.code} {error.reason}") from None
    except http.client.IncompleteRead:
        raise HubError(f"download of {url} incomplete: the connection closed before Content-Length bytes "
                       "arrived") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", error)
        raise HubError(f"download failed: {url}: {reason}; download it by hand and ",
                       api_hint="pass its local path to swinir.load (or set SWINIR_DOWNLOAD_URL to a mirror)",
                       command_hint="pass its path to {option} (or set SWINIR_DOWNLOAD_URL to a mirror)") from None
    if expected is not None and received != expected:
        raise HubError(f"download of {url} incomplete: got {received} of {expected} bytes")
    return digest.hexdigest()
