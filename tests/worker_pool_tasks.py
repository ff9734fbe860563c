"""Tasks for tests/test_worker_pool.py, in a module of their own: a spawned worker imports a task's
function by its module's name."""

from __future__ import annotations

import os
import signal
import time


def scaled(shared: int, task: int) -> tuple[int, int]:
    """The task times the pool's shared value, and the worker's torch thread count."""
    import torch

    return task * shared, torch.get_num_threads()


def refuses_three(shared, task: int) -> int:
    if task == 3:
        raise ValueError("three refused")
    return task


def waits_for_a_stop(shared, task: str) -> str:
    """Returns quickly for "quick"; otherwise waits (up to a minute) until interrupted, as a solve stops."""
    if task == "quick":
        return "finished"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.01)
        return "never stopped"
    except KeyboardInterrupt:
        return "stopped"


def dies(shared, task) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def pid(shared, task) -> int:
    """The worker's process id."""
    return os.getpid()


def waits_after_telling(shared, task: str) -> str:
    """Writes its process id to the file ``task``, then waits until interrupted (as Ctrl-C at a terminal
    interrupts a solve)."""
    with open(task + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(task + ".tmp", task)
    return waits_for_a_stop(shared, "wait")


def both(shared, task):
    """``pid`` or ``waits_after_telling`` by the task's kind."""
    kind, value = task
    return pid(shared, value) if kind == "pid" else waits_after_telling(shared, value)


def saves_when_stopped(shared, task: str) -> str:
    """Writes its process id to ``task``, waits until interrupted, then takes a second to "save its state"
    (writing ``task + '.saved'``), as an interrupted solve does: a second interrupt must not cut that short."""
    with open(task + ".tmp", "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(task + ".tmp", task)
    try:
        while True:
            time.sleep(0.01)
    except KeyboardInterrupt:
        time.sleep(1.0)
        with open(task + ".saved", "w") as handle:
            handle.write("saved")
        return "saved"


def pool_that_waits(told: str) -> None:
    """A caller (run as a process of its own) whose worker waits in a task until stopped: killing this
    process must not leave the worker behind."""
    from pnp_stable.worker_pool import WorkerPool

    with WorkerPool(saves_when_stopped, None, workers=1) as pool:
        list(pool.results([told]))


if __name__ == "__main__":
    import sys

    pool_that_waits(sys.argv[1])


def pid_or_saves(shared, task):
    """``saves_when_stopped``, or (kind "pid once told") the worker's process id once the file ``value``
    exists: another worker is then running ``saves_when_stopped``."""
    kind, value = task
    if kind == "wait":
        return saves_when_stopped(shared, value)
    deadline = time.monotonic() + 60
    while not os.path.exists(value) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()
