"""Scale-out under `torchrun`: process group, device, sampler and rank-0-only writing.

`dsedge train` is the same command with or without `torchrun --nproc-per-node N`:
torchrun sets RANK / WORLD_SIZE / LOCAL_RANK, and `setup()` turns them into a
`DistContext` (NCCL on GPUs, gloo on CPU). Without them it returns a
single-process context and nothing else changes. Only rank 0 writes files; the
others wait at `barrier()` where rank 0's files must exist before they go on.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from dsedge.errors import DsedgeError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: single process

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' -> cuda (this process's GPU under torchrun) when available, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise DsedgeError(f"unknown device '{name}'", hint="use auto, cpu, cuda or cuda:N") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DsedgeError("device 'cuda' requested but no CUDA GPU is available", hint="use --device cpu")
        if dev.index is None:
            dev = torch.device("cuda", local_rank)
    elif dev.type not in ("cpu", "mps", "xpu"):
        raise DsedgeError(f"unsupported training device '{name}'")
    return dev


def setup(device: str = "auto") -> DistContext:
    """Initialise the process group when launched by torchrun; otherwise a 1-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(device=resolve_device(device))
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank, world, local_rank, dev, backend)


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_int(ctx: DistContext, value: int) -> int:
    """Rank 0's integer on every rank (used for the run-folder time stamp). No pickling."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=ctx.device if ctx.backend == "nccl" else "cpu")
    dist.broadcast(t, src=0)
    return int(t.item())


def all_reduce_sum(ctx: DistContext, values: Sequence[float]) -> list[float]:
    """Sum float64 statistics (loss sums, counts) over ranks."""
    if not ctx.distributed:
        return [float(v) for v in values]
    dev = ctx.device if ctx.backend == "nccl" else torch.device("cpu")
    t = torch.tensor(list(values), dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def all_gather_rows(ctx: DistContext, rows: torch.Tensor) -> torch.Tensor:
    """Concatenate a (n_i x k) float tensor from every rank (n_i may differ by rank)."""
    if not ctx.distributed:
        return rows
    dev = ctx.device if ctx.backend == "nccl" else torch.device("cpu")
    rows = rows.to(dev, torch.float64)
    n = torch.tensor([rows.shape[0]], device=dev)
    sizes = [torch.zeros_like(n) for _ in range(ctx.world_size)]
    dist.all_gather(sizes, n)
    biggest = int(max(s.item() for s in sizes))
    padded = torch.zeros((biggest, rows.shape[1]), dtype=rows.dtype, device=dev)
    padded[: rows.shape[0]] = rows
    out = [torch.zeros_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(out, padded)
    return torch.cat([o[: int(s.item())] for o, s in zip(out, sizes, strict=True)]).cpu()


class ShardedSampler(Sampler[int]):
    """Seeded, epoch-dependent sample order, split across ranks (DistributedSampler semantics).

    `balanced=False`: a permutation of the dataset (like `DistributedSampler(shuffle=True)`).
    `balanced=True`: indices drawn with replacement, each class equally likely
    (the `--balance sampler` mode), so the weighted sampler also works under DDP.
    `balance_power` softens that: a sample's weight is count(class)^-power, so 1.0
    equalises the classes and 0.5 (`--balance sqrt`) draws each class in proportion
    to the square root of its size: minority classes are seen far more often, while
    the class prior the model learns stays close to a clinic's (NV the most common).
    The order depends only on (seed, epoch): call `set_epoch` before each epoch;
    that is what makes `--seed` runs and `--resume` reproducible. For training the
    index list is padded by wrapping so every rank runs the same number of steps
    (DDP needs that); for evaluation (`pad=False`) each sample is seen exactly once.
    """

    def __init__(
        self,
        labels: Sequence[int],
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        balanced: bool = False,
        shuffle: bool = True,
        pad: bool = True,
        balance_power: float = 1.0,
    ) -> None:
        self.labels = list(labels)
        self.balance_power = balance_power
        self.rank, self.world_size = rank, world_size
        self.seed, self.balanced, self.shuffle, self.pad = seed, balanced, shuffle, pad
        self.epoch = 0
        n = len(self.labels)
        # pad=False (evaluation): ranks may get one sample fewer, but no sample is counted twice.
        self.num_samples = -(-n // world_size) if pad else len(range(rank, n, world_size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        n = len(self.labels)
        if self.balanced:
            counts = Counter(self.labels)
            w = torch.tensor([counts[y] ** -self.balance_power for y in self.labels], dtype=torch.double)
            return torch.multinomial(w, n, replacement=True, generator=g).tolist()
        if self.shuffle:
            return torch.randperm(n, generator=g).tolist()
        return list(range(n))

    def __iter__(self) -> Iterator[int]:
        idx = self._indices()
        if not self.pad:
            return iter(idx[self.rank :: self.world_size])
        total = self.num_samples * self.world_size
        if total > len(idx) and idx:
            idx = (idx * (total // len(idx) + 1))[:total]
        return iter(idx[self.rank : total : self.world_size])

    def __len__(self) -> int:
        return self.num_samples
