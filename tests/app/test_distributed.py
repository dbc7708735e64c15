"""`swinir train` and `swinir restore` on 2 CPU processes (gloo on 127.0.0.1): the same model as one
process, resume under DDP, a dying rank stops the others, a folder shared between ranks."""

import csv
import os
import socket
import subprocess
import sys

import pytest
import torch
from tests.helpers import ROOT
from tests.app.test_train import ARCH_ARGS, SR_X2, _images

import swinir
from swinir import distributed
from swinir import train as training

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without torch.distributed")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(**extra):
    # one thread per process (2 processes share 2 cores); gloo on the loopback interface only
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo", **extra}
    return {key: value for key, value in env.items() if value is not None}


def _torchrun(*args, timeout=240):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
               "--master-port", str(_free_port()), "-m", "swinir", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, env=_environment(), capture_output=True, text=True, timeout=timeout)


def _ranks(code: str, timeout=120) -> list[subprocess.CompletedProcess]:
    """Runs ``code`` in 2 processes with the environment torchrun gives its workers (per-rank exit codes)."""
    port = str(_free_port())
    processes = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=_environment(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                                          MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
        for rank in range(2)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def test_two_processes_train_the_same_model_as_one_and_resume(tmp_path):
    hr = _images(tmp_path / "hr", [(40, 44), (36, 48)])
    common = ["train", "--hr", hr, "--val", hr, "--val-every", "2", "--steps", "4", "--batch", "4", "--save-every", "2",
              *ARCH_ARGS, "--patch", "8", "--workers", "0", "-q"]
    first = _torchrun(*common, "--out", tmp_path / "ddp", "--until", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = _torchrun(*common, "--out", tmp_path / "ddp", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    torch.set_num_threads(1)
    single = training.train(out=str(tmp_path / "one"), hr=hr, val=hr, val_every=2, arch=SR_X2, patch=8, batch=4, steps=4,
                            save_every=2, workers=0, quiet=True)
    one = torch.load(tmp_path / "one" / "step_00000004.pth", weights_only=True)
    two = torch.load(tmp_path / "ddp" / "step_00000004.pth", weights_only=True)
    for key in ("params", "params_ema"):
        for name, value in one[key].items():
            torch.testing.assert_close(two[key][name], value, atol=2e-6, rtol=1e-5, msg=f"{key}.{name}")
    start = torch.load(tmp_path / "ddp" / "step_00000002.pth", weights_only=True)
    moved = not torch.equal(start["params"]["conv_first.weight"], two["params"]["conv_first.weight"])
    assert moved  # the resumed half really trained
    # validation: each rank scored one of the two images, the means agree with one process's
    with open(tmp_path / "ddp" / "val.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == [2, 4]
    for row, expected in zip(rows, single.validation):
        assert float(row["psnr"]) == pytest.approx(expected["psnr"], abs=1e-3)
        assert float(row["ssim_y"]) == pytest.approx(expected["ssim_y"], abs=1e-5)


def test_a_rank_that_dies_stops_the_others_with_a_clear_error(tmp_path):
    hr = _images(tmp_path / "hr", [(40, 44)])
    args = ["train", "--hr", hr, "--out", str(tmp_path / "o"), "--steps", "50", "--batch", "2", "--save-every", "100",
            "--dist-timeout", "30", *ARCH_ARGS, "--patch", "8", "--workers", "0", "-q"]
    code = f"""
import os, sys
from swinir import train
if os.environ["RANK"] == "1":  # rank 1 dies abruptly (as from a signal or OOM killer) before step 3
    step = train.Trainer._train_step
    def die_at_step_3(self, lq, hq):
        if self.step == 2:
            os._exit(9)
        return step(self, lq, hq)
    train.Trainer._train_step = die_at_step_3
from swinir.commands import main
sys.exit(main({args!r}))
"""
    rank0, rank1 = _ranks(code, timeout=120)
    assert rank1.returncode == 9
    assert rank0.returncode == 1, rank0.stderr[-3000:]
    lines = [line for line in rank0.stderr.splitlines() if line.startswith("swinir: error:")]
    assert len(lines) == 1 and "rank 0: the distributed run failed" in lines[0], rank0.stderr[-3000:]
    assert "resume with --resume" in lines[0]


def test_shard_splits_by_key_and_keeps_equal_keys_together():
    items = [("a", 1), ("b", 2), ("c", 3), ("a", 4), ("d", 5), ("e", 6), ("c", 7)]
    shares = [distributed.shard(items, lambda item: item[0], distributed.Context(rank, 3)) for rank in range(3)]
    assert sorted(sum(shares, [])) == sorted(items)  # each item exactly once
    for share in shares:
        others = {item[0] for other in shares if other is not share for item in other}
        assert not {item[0] for item in share} & others  # no key (output file) on two ranks
    assert [len(share) for share in shares] == [3, 2, 2]
    assert distributed.shard(items, lambda item: item[0], distributed.Context()) == items


def test_restore_shares_a_folder_between_two_ranks(tmp_path):
    torch.manual_seed(0)
    model_path = tmp_path / "tiny.pth"
    torch.save({"params": swinir.SwinIR(**SR_X2).state_dict()}, model_path)
    inputs = _images(tmp_path / "in", [(12, 16)] * 5)  # img0..img4
    (tmp_path / "in" / "zz_broken.png").write_bytes(b"not an image")  # the last key: rank 1's share
    out = tmp_path / "out"
    code = f"""
import sys
from swinir.commands import main
sys.exit(main(["restore", {str(inputs)!r}, "-m", {str(model_path)!r}, "-o", {str(out)!r}] + sys.argv[1:]))
"""
    results = _ranks(code)
    assert [r.returncode for r in results] == [1, 1], [r.stderr[-2000:] for r in results]  # rank 0 too: any rank failed
    errors = [line for r in results for line in r.stderr.splitlines() if line.startswith("swinir: error:")]
    assert len(errors) == 1 and "zz_broken.png" in errors[0]
    assert "zz_broken.png" in results[1].stderr
    names = sorted(os.listdir(out))
    assert names == [f"img{i}_SwinIR.png" for i in range(5)]
    expected = {name: (out / name).read_bytes() for name in names}
    # each image once: rank 0's notes name its 3 images, rank 1 is quiet
    assert sum("_SwinIR.png (" in line for line in results[0].stderr.splitlines()) == 3
    assert "_SwinIR.png (" not in results[1].stderr

    # finish an interrupted run: two outputs missing, the broken input gone
    os.unlink(tmp_path / "in" / "zz_broken.png")
    for name in names[1:3]:
        os.unlink(out / name)
    mtimes = {name: os.stat(out / name).st_mtime_ns for name in os.listdir(out)}
    results = _ranks(code.replace("+ sys.argv[1:]", '+ ["--skip-existing", "-q"]'))
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    assert sorted(os.listdir(out)) == names
    assert {name: os.stat(out / name).st_mtime_ns for name in mtimes} == mtimes  # existing ones untouched
    for name in names:  # the same pixels as the first run
        assert (out / name).read_bytes() == expected[name]
