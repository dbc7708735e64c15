"""Named checkpoints: download from a local HTTP server, cache, SHA-256 sidecar, failures."""

import functools
import http.server
import importlib
import os
import socket
import threading
import tomllib

import numpy as np
import pytest
import torch
from tests.helpers import ROOT

import swinir
from swinir import hub, imageio


def main(argv):
    """The `swinir` command's main, looked up where pyproject.toml's console script points (the command's
    module may move)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        module, _, name = tomllib.load(handle)["project"]["scripts"]["swinir"].partition(":")
    return getattr(importlib.import_module(module), name)(argv)

PRESET = "classical_sr_x2"
FILE_NAME = swinir.PRESETS[PRESET].checkpoint


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []
    truncate: set[str] = set()

    def do_GET(self):  # noqa: N802  (http.server's naming)
        type(self).requests.append(self.path)
        name = self.path.lstrip("/")
        if name in self.truncate:  # announce the full size, send half, hang up
            data = open(os.path.join(self.directory, name), "rb").read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture()
def server(tmp_path, monkeypatch):
    """A local HTTP mirror serving a tiny SwinIR under the official x2 file name; SWINIR_* env set."""
    served = tmp_path / "mirror"
    served.mkdir()
    torch.manual_seed(0)
    model = swinir.build(PRESET, embed_dim=12, depths=[1], num_heads=[2])
    torch.save({"params": model.state_dict()}, served / FILE_NAME)
    torch.save({"weights": torch.zeros(4)}, served / swinir.PRESETS["color_dn_25"].checkpoint)
    _Handler.requests, _Handler.truncate = [], set()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SWINIR_DOWNLOAD_URL", f"http://127.0.0.1:{httpd.server_address[1]}/")
    monkeypatch.setenv("SWINIR_CACHE", str(tmp_path / "cache"))
    yield served, tmp_path / "cache"
    httpd.shutdown()
    httpd.server_close()


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("SWINIR_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hub.cache_dir() == str(tmp_path / "xdg" / "swinir")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert hub.cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "swinir")
    monkeypatch.setenv("SWINIR_CACHE", str(tmp_path / "mine"))
    assert hub.cache_dir() == str(tmp_path / "mine")


def test_download_verify_and_reuse(server):
    served, cache = server
    path = hub.resolve(PRESET, verify=swinir.load, progress=False)
    assert path == str(cache / FILE_NAME)
    assert open(path, "rb").read() == (served / FILE_NAME).read_bytes()
    sidecar = (cache / (FILE_NAME + ".sha256")).read_text().split()[0]
    assert sidecar == hub._sha256(path)
    assert not [name for name in os.listdir(cache) if name.endswith(".part")]
    # reused: no second request; the official file name works as well as the preset name
    assert hub.resolve(FILE_NAME, verify=swinir.load, progress=False) == path
    assert _Handler.requests == ["/" + FILE_NAME]
    # a changed cache file no longer matches its recorded hash
    with open(path, "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(hub.HubError, match="SHA-256"):
        hub.resolve(PRESET, verify=swinir.load, progress=False)


def test_download_failures_leave_nothing_in_the_cache(server):
    served, cache = server
    with pytest.raises(hub.HubError, match="usable SwinIR"):  # served, but not a SwinIR
        hub.resolve("color_dn_25", verify=swinir.load, progress=False)
    with pytest.raises(hub.HubError, match="HTTP 404"):
        hub.resolve("gray_dn_15", verify=swinir.load, progress=False)
    _Handler.truncate.add(FILE_NAME)
    with pytest.raises(hub.HubError, match="incomplete"):
        hub.resolve(PRESET, verify=swinir.load, progress=False)
    assert os.listdir(cache) == []
    with pytest.raises(hub.HubError, match="unknown checkpoint"):
        hub.resolve("no_such_model", verify=swinir.load)
    with pytest.raises(hub.HubError, match="not found"):
        hub.resolve("missing/file.pth", verify=swinir.load)


def test_restore_with_a_named_checkpoint(server, tmp_path, capsys):
    image = tmp_path / "in.png"
    imageio.write_image(str(image), np.random.default_rng(0).random((20, 28, 3), dtype=np.float32))
    assert main(["restore", str(image), "-m", PRESET, "-o", str(tmp_path / "out"), "-q"]) == 0
    assert imageio.read_image(str(tmp_path / "out" / "in_SwinIR.png")).pixels.shape == (40, 56, 3)
    assert main(["restore", str(image), "-m", "color_dn_25", "-o", str(tmp_path / "out2"), "-q"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("swinir: error: ") and "usable SwinIR" in error and "Traceback" not in error
    assert not (tmp_path / "out2").exists()


def test_load_takes_the_names_the_command_takes(server):
    served, cache = server
    model = swinir.load(PRESET, progress=False)
    assert model.upscale == 2 and os.path.isfile(cache / FILE_NAME)
    assert swinir.load(FILE_NAME, progress=False).upscale == 2  # the official file name, from the cache
    assert _Handler.requests == ["/" + FILE_NAME]
    with pytest.raises(FileNotFoundError, match="did you mean classical_sr_x2"):
        swinir.load("classical_sr_x22")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_cached_files_follow_the_umask(server, umask):
    served, cache = server
    previous = os.umask(umask)
    try:
        path = hub.resolve(PRESET, verify=swinir.load, progress=False)
    finally:
        os.umask(previous)
    for name in (path, path + ".sha256"):
        assert os.stat(name).st_mode & 0o777 == 0o666 & ~umask


def test_a_cached_file_of_another_architecture_is_refused(server, tmp_path, capsys):
    served, cache = server
    cache.mkdir()
    other = swinir.build("classical_sr_x3", embed_dim=12, depths=[1], num_heads=[2])
    torch.save({"params": other.state_dict()}, cache / FILE_NAME)  # an x3 model under the x2 name
    image = tmp_path / "in.png"
    imageio.write_image(str(image), np.random.default_rng(0).random((8, 8, 3), dtype=np.float32))
    assert main(["restore", str(image), "-m", PRESET, "-o", str(tmp_path / "out"), "-q"]) == 1
    error = capsys.readouterr().err
    assert "holds a different model than classical_sr_x2 (upscale 3, expected 2)" in error
    assert "delete it and its .sha256" in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_mirror_serving_another_architecture_is_not_cached(server):
    served, cache = server
    other = swinir.build("classical_sr_x4", embed_dim=12, depths=[1], num_heads=[2])
    torch.save({"params": other.state_dict()}, served / FILE_NAME)
    with pytest.raises(hub.HubError, match=r"did not give a usable SwinIR checkpoint .*upscale 4, expected 2"):
        swinir.load(PRESET, progress=False)
    assert os.listdir(cache) == []


# --- wording: the Python API's advice names the API, the command's names its option ----------------


@pytest.fixture()
def offline(tmp_path, monkeypatch):
    """Downloads fail at once: the mirror is a local port nobody listens on (connection refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("SWINIR_DOWNLOAD_URL", f"http://127.0.0.1:{port}/")
    monkeypatch.setenv("SWINIR_CACHE", str(tmp_path / "cache"))


def test_api_errors_use_api_wording(offline):
    """Issue 23 item 13: swinir.load("classical_sr_x4") offline said "pass its path to -m"."""
    with pytest.raises(hub.HubError) as raised:
        swinir.load("classical_sr_x4", progress=False)
    message = str(raised.value)
    assert message.startswith("download failed: ")
    assert "download it by hand and pass its local path to swinir.load" in message
    assert "-m" not in message.replace("SwinIR-M", "")
    with pytest.raises(FileNotFoundError) as raised:
        swinir.load("classical_sr_x44")
    message = str(raised.value)
    assert "did you mean classical_sr_x4" in message and "the keys of swinir.PRESETS" in message
    assert "swinir restore --help" not in message


def test_the_command_wording_names_the_option(offline):
    with pytest.raises(hub.HubError) as raised:
        swinir.load("classical_sr_x4", progress=False)
    command = hub.command_wording(raised.value)
    assert "download it by hand and pass its path to -m (or set SWINIR_DOWNLOAD_URL" in command
    assert "pass its path to --init (" in hub.command_wording(raised.value, "--init")
    assert "swinir.load" not in hub.command_wording(raised.value)
    with pytest.raises(hub.HubError) as raised:
        swinir.load("classical_sr_x44")
    assert "listed in `swinir restore --help`" in hub.command_wording(raised.value)
    other = ValueError("something else")
    assert hub.command_wording(other) == "something else"


def test_the_command_keeps_its_wording(offline, tmp_path, capsys):
    image = tmp_path / "in.png"
    imageio.write_image(str(image), np.random.default_rng(0).random((8, 8, 3), dtype=np.float32))
    assert main(["restore", str(image), "-m", "classical_sr_x4", "-o", str(tmp_path / "out"), "-q"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("swinir: error: download failed: ") and error.count("\n") == 1, error
    assert "pass its path to -m" in error and "swinir.load" not in error
    assert main(["restore", str(image), "-m", "classical_sr_x44", "-o", str(tmp_path / "out"), "-q"]) == 1
    error = capsys.readouterr().err
    assert "listed in `swinir restore --help`" in error and "swinir.PRESETS" not in error
