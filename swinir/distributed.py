"""torch.distributed for ``swinir train`` and ``swinir restore`` under ``torchrun``.

``torchrun`` (torch.distributed.run) launches the processes and sets RANK, WORLD_SIZE and LOCAL_RANK;
:func:`setup` joins its process group (NCCL for CUDA devices, gloo otherwise) with a timeout, so that a
collective whose partner died raises an error instead of waiting forever. Without those variables
everything runs as one process (rank 0 of 1) and no process group is created.

Helpers every rank calls in the same order: :func:`total` (a sum over ranks), :func:`all_ok`; and
:func:`shard`, which splits work items between ranks by a key, without communication.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

Item = TypeVar("Item")
DEFAULT_TIMEOUT_S = 600.0


@dataclasses.dataclass(frozen=True)
class Context:
    """This process's place in the run: rank in [0, world_size), and the device it computes on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> Context:
    """Join torchrun's process group if there is one; the device is ``device`` or the default one.

    Under torchrun with CUDA, each process takes ``cuda:LOCAL_RANK`` (a ``--device cuda`` without an
    index means the same). ``timeout_s`` bounds every collective (gloo) and the NCCL watchdog.
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = torch.device(device)
    if not launched_by_torchrun():
        return Context(device=chosen)
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if chosen.type == "cuda" and chosen.index is None:
        chosen = torch.device("cuda", local_rank)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    return Context(rank, world_size, local_rank, chosen)


def teardown(context: Context) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()


def total(context: Context, values: Sequence[float]) -> list[float]:
    """The element-wise sum of ``values`` over all ranks (float64; ``values`` itself on one process)."""
    if not context.distributed:
        return [float(value) for value in values]
    # gloo reduces CPU tensors, NCCL device tensors
    device = context.device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([float(value) for value in values], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_ok(context: Context, ok: bool) -> bool:
    """True when ``ok`` is true on every rank."""
    return total(context, [0.0 if ok else 1.0])[0] == 0.0


def shard(items: Iterable[Item], key: Callable[[Item], object], context: Context) -> list[Item]:
    """This rank's share of ``items``: those whose key is the i-th distinct key (in sorted order) with
    ``i % world_size == rank``. Items with equal keys (e.g. two inputs that would write one output
    file) land on the same rank, so no two ranks ever handle one key; every rank computes the same
    split from the same list, without communication."""
    items = list(items)
    if not context.distributed:
        return items
    position = {k: i for i, k in enumerate(sorted({key(item) for item in items}))}
    return [item for item in items if position[key(item)] % context.world_size == context.rank]
