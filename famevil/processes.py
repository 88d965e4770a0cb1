"""The processes `accelerate launch` starts for one command (one process alone without it): which one this
is, its device, and work that the main process does alone for all of them."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import psutil
import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

from data_specs.errors import FamevilError

Result = TypeVar("Result")


def cpu_processes() -> bool:
    """Whether this is one of several processes on a machine without a GPU: Accelerate joins CPU-only
    processes (over gloo) only when told they are CPU processes."""
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def launched() -> PartialState:
    """This process's place among those launched (rank, count, main or not) and its device: its GPU where
    there are GPUs, else the CPU."""
    return PartialState(cpu=cpu_processes())


def threads_of_one_process(processes: PartialState) -> None:
    """Give each of several CPU processes the intra-op threads one process alone has by default (torch's
    default: the machine's physical cores), not the share `accelerate launch` gives it (OMP_NUM_THREADS):
    a CPU kernel's result can depend on its thread count (oneDNN's convolutions do, in the last bit), and
    work shared among processes must come out as one process makes it."""
    if processes.num_processes > 1 and processes.device.type == "cpu":
        torch.set_num_threads(psutil.cpu_count(logical=False) or 1)


def on_main(processes: PartialState, work: Callable[[], Result]) -> Result:
    """work() on the main process alone, the others waiting for it: its result on every process. Its
    FamevilError is raised on every process, so that none waits on for a main process that has given up."""
    outcome: list = [None]
    if processes.is_main_process:
        try:
            outcome = [work()]
        except FamevilError as error:
            if processes.num_processes == 1:
                raise
            outcome = [error]
    outcome = broadcast_object_list(outcome)  # a no-op for one process alone
    if isinstance(outcome[0], FamevilError):
        raise outcome[0]
    return outcome[0]
