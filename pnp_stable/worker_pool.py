"""Independent tasks in worker processes, each stoppable in the middle like a solve at a terminal.

Why processes: a volume's slices are independent solves, and one slice cannot use the cores it is
given. deepinv's Radon transform samples a grid for one image and its adjoint (autograd through that
sampling) scatters back, on one core whatever torch's thread count (a 128² slice of 180 views: 0.03 s
forward, 0.09 s adjoint, the same on one thread as on two); they are most of a CT solve. Processes
solving different slices use every core.

Workers are *spawned*, never forked: a fork of a process whose OpenMP threads have run can hang. Each
gets ``shared`` once (the denoiser, the options: pickled) and ``threads`` torch threads, then runs
``function(shared, task)`` for task after task. At most two tasks per worker are handed over at a
time, so a task's data (a slice's sinogram) is held only while it is queued or solved.

A stop ends every task in progress the way Ctrl-C ends a solve: :meth:`WorkerPool.stop` raises
``KeyboardInterrupt`` inside each (a watcher thread per worker interrupts its main thread), which a
solve turns into a clean return with its state saved; tasks not started are cancelled. Ctrl-C at a
terminal reaches the workers directly (one process group): the same handler acts only while a task
runs, so an idle worker is never torn down with a traceback.
"""

from __future__ import annotations

import _thread
import multiprocessing
import os
import signal
import threading
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

__all__ = ["WorkerPool", "WorkerDied", "usable_cores"]

# tasks handed to the pool per worker at a time: one running, one ready to start
TASKS_IN_FLIGHT_PER_WORKER = 2

# the worker process's own state (set by _initialize in each worker)
_WORKER: dict[str, Any] = {"busy": False, "shared": None, "stop": None}


class WorkerDied(MemoryError):
    """A worker process ended without returning its task (killed: by the system for memory, most
    often). A MemoryError, so that callers which report running out of memory as a user error do."""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _on_interrupt(signum, frame) -> None:
    if _WORKER["busy"]:
        raise KeyboardInterrupt
    # idle between tasks: the pool is closing, there is nothing to stop


def _watch(stop) -> None:
    stop.wait()
    _thread.interrupt_main(signal.SIGINT)  # runs _on_interrupt in the worker's main thread


def _initialize(shared: Any, stop, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, _on_interrupt)
    _WORKER.update(shared=shared, stop=stop)
    threading.Thread(target=_watch, args=(stop,), daemon=True).start()


def _run(function: Callable[[Any, Any], Any], task: Any) -> Any:
    if _WORKER["stop"].is_set():  # handed over before the stop, started after it
        raise KeyboardInterrupt
    _WORKER["busy"] = True
    try:
        return function(_WORKER["shared"], task)
    finally:
        _WORKER["busy"] = False


class WorkerPool:
    """``workers`` spawned processes running ``function(shared, task)``; ``function`` must be a
    module-level function (it is pickled by name) and ``shared`` and the tasks picklable. Use as a
    context manager (the processes end with it).

    Guarantees: every result of :meth:`results` is one task's return value (in the order they finish);
    a task's exception is raised where its result would be; a worker that dies (killed) raises
    :class:`WorkerDied` instead of waiting forever. :meth:`stop` returns the results of the tasks that
    were running, finished or stopped, and leaves no task running."""

    def __init__(self, function: Callable[[Any, Any], Any], shared: Any, workers: int, threads: int = 1) -> None:
        if workers < 1 or threads < 1:
            raise ValueError(f"a worker pool needs at least one worker of one thread, got {workers} x {threads}")
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_initialize,
                                             initargs=(shared, self._stop, threads))
        self._function = function
        self._workers = workers
        self._running: set[Future] = set()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def results(self, tasks: Iterable[Any]) -> Iterator[Any]:
        """The tasks' results as they finish; the tasks are drawn from ``tasks`` as workers free up."""
        pending = iter(tasks)
        exhausted = False

        def hand_over() -> None:
            nonlocal exhausted
            while not exhausted and len(self._running) < TASKS_IN_FLIGHT_PER_WORKER * self._workers:
                try:
                    task = next(pending)
                except StopIteration:
                    exhausted = True
                    return
                self._running.add(self._executor.submit(_run, self._function, task))

        hand_over()
        while self._running:
            finished, _ = wait(self._running, return_when=FIRST_COMPLETED)
            # one at a time: the others stay running for the caller's stop() should it stop reading here
            future = next(iter(finished))
            self._running.discard(future)
            yield self._result(future)
            hand_over()

    @staticmethod
    def _result(future: Future) -> Any:
        try:
            return future.result()
        except BrokenProcessPool:
            raise WorkerDied("a worker process died before finishing its task (killed by the system, most often "
                             "for lack of memory): run fewer workers") from None

    def stop(self) -> list[Any]:
        """Stop: the tasks in progress interrupted (each returns what an interrupted task returns, or
        raises KeyboardInterrupt, skipped here), those not started cancelled. Returns the results of the
        tasks that were in progress."""
        self._stop.set()
        for future in self._running:
            future.cancel()
        results = []
        for future in list(self._running):
            try:
                results.append(future.result())
            except (KeyboardInterrupt, CancelledError, BrokenProcessPool):
                pass
        self._running.clear()
        return results

    def close(self) -> None:
        """End the worker processes (after the tasks running, which :meth:`stop` ends first)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
