"""Several processes through ``torchrun``: who am I, and sums over every process.

With one process (no ``torchrun``) every function here is a cheap no-op, so the trainer
has one code path.
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist
from torch import Tensor

from rnnzoo.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among ``size`` processes; rank 0 writes the run folder."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_world(device_type: str) -> World:
    """Join the process group ``torchrun`` set up (gloo on CPU, nccl on CUDA), if any."""
    if "WORLD_SIZE" not in os.environ or int(os.environ["WORLD_SIZE"]) == 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def all_sum(tensor: Tensor, world: World) -> Tensor:
    """The element-wise sum of ``tensor`` over all processes (in place, and returned)."""
    if world.size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_bytes(data: bytes, world: World, device: torch.device) -> list[bytes]:
    """Every process's ``data``, in rank order, on every process (``[data]`` with one).

    Sent as uint8 tensors on ``device``, which both gloo (CPU) and nccl (CUDA) carry;
    ``all_gather_object`` would need the CUDA device to have been made current."""
    if world.size == 1:
        return [data]
    sizes = [torch.zeros((), dtype=torch.int64, device=device) for _ in range(world.size)]
    dist.all_gather(sizes, torch.tensor(len(data), device=device))
    padded = torch.zeros(int(max(sizes)), dtype=torch.uint8, device=device)
    padded[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    dist.all_gather(parts, padded)
    return [bytes(p[: int(n)].cpu().numpy()) for p, n in zip(parts, sizes, strict=True)]


def broadcast_from_main(module: torch.nn.Module, world: World) -> None:
    """Give every process rank 0's parameters and buffers (in place). Not the rest of
    its state_dict: a module's extra state (what a language model carries from batch to
    batch) is each process's own, and of its own shape."""
    if world.size > 1:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def close_world(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def device_type(name: str) -> str:
    """``auto``, ``cpu`` or ``cuda`` to the device type it means on this machine."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def resolve_device(name: str, world: World) -> torch.device:
    """``auto`` is CUDA when present; under torchrun each process takes its local GPU."""
    name = device_type(name)
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was asked for, but no CUDA device is available")
        return torch.device("cuda", world.local_rank)
    return torch.device(name)
