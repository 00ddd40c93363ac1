"""Several processes started by `torchrun`: this process's place in the group, the device it uses, and the
points where the group waits for all of its members.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them a verb runs as one process and nothing here does
anything. The group talks over NCCL on CUDA and Gloo on the CPU. When one member fails, torchrun stops the
others, so a waiting member never waits for a process that is gone.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ContextManager, Iterator

import numpy as np
import torch

from medprompt.common.errors import MedpromptError

WAIT = timedelta(days=7)  # a member may wait this long at a barrier: the others' share of a benchmark takes hours


@dataclass(frozen=True)
class Group:
    """This process's rank among `size` processes, and its rank on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The member that prepares shared inputs and writes shared outputs."""
        return self.rank == 0

    def share(self, items: list) -> list:
        """This member's share of `items`: every size-th one from its rank."""
        return items[self.rank :: self.size]

    def label(self, text: str) -> str:
        """`text` naming this member when there are several (a progress bar's label)."""
        return text if self.size == 1 else f"{text} (rank {self.rank} of {self.size})"

    def join(self, mine: np.ndarray | None) -> np.ndarray:
        """The array whose rows the members' `share`s split, whole and in order, on every member (boolean
        arrays travel as bits). A member whose share is empty may give None."""
        if self.size == 1:
            return mine
        packed = mine is not None and mine.dtype == bool
        parts = self.gather(None if mine is None else (mine.shape, packed, np.packbits(mine) if packed else mine))
        given = [(rank, *part) for rank, part in enumerate(parts) if part is not None]
        whole = None
        for rank, shape, bits, data in given:
            rows = np.unpackbits(data, count=int(np.prod(shape))).reshape(shape).astype(bool) if bits else data
            if whole is None:
                whole = np.empty((sum(part[1][0] for part in given), *shape[1:]), dtype=rows.dtype)
            whole[rank :: self.size] = rows
        return whole

    def copy_from_main(self, tensors: list[torch.Tensor]) -> None:
        """Overwrite each member's `tensors` (parameters) with the main member's, so that all start alike."""
        if self.size > 1:
            for tensor in tensors:
                torch.distributed.broadcast(tensor.data, src=0)

    def sum_gradients(self, parameters: list[torch.Tensor]) -> None:
        """Each parameter's gradient summed over the members; one that no member used keeps no gradient (as in a
        single process, where the optimiser then leaves it alone), so no member waits on a gradient never made."""
        if self.size == 1:
            return
        used = self.sum(torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32,
                                     device=parameters[0].device))
        summed = [p for p, flag in zip(parameters, used.tolist()) if flag > 0]
        if not summed:
            return
        flat = self.sum(torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                                   for p in summed]))
        for p, grad in zip(summed, flat.split([p.numel() for p in summed])):
            p.grad = grad.view_as(p).clone()

    @contextlib.contextmanager
    def main_holds(self, context: ContextManager) -> Iterator[Any]:
        """`context` (an output folder's lock and mark) held by the main member for the whole group's block: it
        takes it once every member has checked its inputs, the others start once it holds it, and it lets go once
        they have all finished. Others get None."""
        self.wait_for_all()
        if self.is_main:
            with context as value:
                self.wait_for_all()
                yield value
                self.wait_for_all()
        else:
            self.wait_for_all()
            yield None
            self.wait_for_all()

    def device(self, device: torch.device) -> torch.device:
        """The device this member runs on: its own GPU (LOCAL_RANK) when the group runs on CUDA."""
        if self.size > 1 and device.type == "cuda" and device.index is None:
            return torch.device("cuda", self.local_rank)
        return device

    def wait_for_all(self) -> None:
        """Return once every member has reached this point."""
        if self.size > 1:
            torch.distributed.barrier()

    def from_main(self, value: Any) -> Any:
        """The main member's `value`, on every member: the main member decides, the others follow."""
        if self.size == 1:
            return value
        box = [value if self.is_main else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list:
        """Every member's `value`, in rank order, on every member."""
        if self.size == 1:
            return [value]
        values: list = [None] * self.size
        torch.distributed.all_gather_object(values, value)
        return values

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` summed over the members, in place (a tensor on this member's device)."""
        if self.size > 1:
            torch.distributed.all_reduce(tensor)
        return tensor


def process_group() -> Group:
    """The group this process belongs to (joined on first use), or a group of one outside torchrun."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise MedpromptError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (torchrun sets them)") from None
    if size > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)  # NCCL's object collectives run on the current device
        torch.distributed.init_process_group(backend=backend, timeout=WAIT)
    return Group(rank, size, local_rank)
