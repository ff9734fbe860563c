"""Independent tasks in worker processes, each stoppable in the middle like a solve at a terminal.

Why processes: a volume's slices are independent solves, and one slice cannot use the cores it is
given. The CT projector samples a grid for one image and its transpose scatters back through that
sampling, on one core whatever torch's thread count (a 128² slice of 180 views: 0.03 s forward,
0.09 s transpose, the same on one thread as on two); they are most of a CT solve. Processes solving
different slices use every core.

Workers are *spawned*, never forked: a fork of a process whose OpenMP threads have run can hang. So a
script that starts workers must do so under ``if __name__ == "__main__":`` (each worker imports the
script's module). Each worker gets ``shared`` once (the denoiser, the options: pickled) and
``threads`` torch threads, then runs ``function(shared, task)`` for task after task. At most two tasks
per worker are handed over at a time, so a task's data (a slice's sinogram) is held only while it is
queued or solved.

Stops. A task is stopped the way Ctrl-C stops a solve: a ``KeyboardInterrupt`` raised inside it, once
(a second one would interrupt the solve's saving of its state), which a solve turns into a clean return
with its state saved. It comes from :meth:`WorkerPool.stop` (a flag in shared memory, which a watcher
thread in each worker polls: setting it never waits on a worker, dead or alive), from Ctrl-C or SIGTERM
sent to the whole process group (a terminal, a batch scheduler: the workers' handlers act only while a
task runs, and SIGINT is left ignored where the caller ignored it), or from the caller's death (a worker
whose parent is gone stops its task and exits). The workers start with SIGINT and SIGTERM ignored, so a
stop while they import torch does not tear them down with tracebacks.
"""

from __future__ import annotations

import _thread
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator

__all__ = ["WorkerPool", "WorkerDied", "usable_cores"]

# tasks handed to the pool per worker at a time: one running, one ready to start
TASKS_IN_FLIGHT_PER_WORKER = 2
# how often (s) a worker's watcher looks at the stop flag and at its parent
WATCH_INTERVAL_S = 0.05
# the signal the watcher raises in its worker's main thread (never sent by a terminal)
_STOP_SIGNAL = getattr(signal, "SIGUSR1", signal.SIGINT)

# the worker process's own state (set by _initialize in each worker)
_WORKER: dict[str, Any] = {"busy": False, "interrupted": False, "leaving": False, "shared": None, "stop": None,
                           "parent": None}
# how long (s) a worker stopped by SIGTERM waits for its caller's stop before it ends on its own
CALLER_STOP_GRACE_S = 2.0


class WorkerDied(MemoryError):
    """A worker process ended without returning its task (killed: by the system for memory, most
    often). A MemoryError, so that callers which report running out of memory as a user error do."""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _on_stop(signum, frame) -> None:
    if _WORKER["busy"] and not _WORKER["interrupted"]:
        _WORKER["interrupted"] = True
        raise KeyboardInterrupt
    # idle between tasks (the pool is closing), or already stopping: nothing more to do


def _on_terminate(signum, frame) -> None:
    """SIGTERM: the task in progress stopped as by Ctrl-C, then the process ends unless its caller is
    stopping the pool too (SIGTERM to the whole job: the pool then ends the workers itself); an idle
    one ends now (as the pool ends workers it cannot use, by SIGTERM, and joins them)."""
    if not _WORKER["busy"]:
        # unwinding, not os._exit: an idle worker waits for its next task holding the queue's shared
        # lock, which a busy one then needs to take its own next (a worker that died with it hung the pool)
        raise SystemExit(0)
    _WORKER["leaving"] = True
    _on_stop(signum, frame)


def _watch(stop, parent: int) -> None:
    while True:
        time.sleep(WATCH_INTERVAL_S)
        if os.getppid() != parent:  # the caller is gone: its task stopped (its state saved), then the end
            if not _WORKER["busy"]:
                os._exit(0)
            _WORKER["leaving"] = True
        if (stop.value or _WORKER["leaving"]) and _WORKER["busy"] and not _WORKER["interrupted"]:
            _thread.interrupt_main(_STOP_SIGNAL)  # runs _on_stop in the worker's main thread


def _initialize(shared: Any, stop, threads: int, parent: int, interrupts: bool) -> None:
    import torch

    torch.set_num_threads(threads)
    signal.signal(_STOP_SIGNAL, _on_stop)
    signal.signal(signal.SIGTERM, _on_terminate)
    if interrupts:  # (the workers started with SIGINT ignored; the caller's own Ctrl-C now reaches them)
        signal.signal(signal.SIGINT, _on_stop)
    _WORKER.update(shared=shared, stop=stop, parent=parent)
    threading.Thread(target=_watch, args=(stop, parent), daemon=True).start()


def _run(function: Callable[[Any, Any], Any], task: Any) -> Any:
    _WORKER["interrupted"] = False
    _WORKER["busy"] = True
    try:
        if _WORKER["stop"].value:  # handed over before the stop, started after it
            raise KeyboardInterrupt
        return function(_WORKER["shared"], task)
    finally:
        _WORKER["busy"] = False
        if _WORKER["leaving"]:  # terminated, or its caller gone
            _leave_unless_the_caller_stops()


def _leave_unless_the_caller_stops() -> None:
    """End this worker, unless its caller, alive, stops the pool within a grace period: a SIGTERM sent
    to the whole job reaches the caller too, which then collects the stopped task's result and ends the
    workers (ending here instead would break the pool under it)."""
    deadline = time.monotonic() + CALLER_STOP_GRACE_S
    while os.getppid() == _WORKER["parent"] and not _WORKER["stop"].value and time.monotonic() < deadline:
        time.sleep(0.02)
    if os.getppid() != _WORKER["parent"] or not _WORKER["stop"].value:
        os._exit(0)
    _WORKER["leaving"] = False


@contextmanager
def _interrupts_ignored():
    """SIGINT and SIGTERM ignored while workers start (they inherit that, and keep it until their
    handlers are set: a worker killed while importing broke the pool, with a traceback from its manager
    thread); left alone outside the main thread, where they cannot be changed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


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
        self._stop = context.RawValue("b", 0)  # shared memory without a lock: setting it waits on nobody
        interrupts = signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        self._executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_initialize,
                                             initargs=(shared, self._stop, threads, os.getpid(), interrupts))
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
                with _interrupts_ignored():  # a submission may start a worker
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
                             "for lack of memory: run fewer workers; from a script, workers start only under "
                             "if __name__ == '__main__':)") from None

    def stop(self) -> list[Any]:
        """Stop: the tasks in progress interrupted (each returns what an interrupted task returns, or
        raises KeyboardInterrupt, skipped here, as are tasks whose worker died), those not started
        cancelled. Returns the results of the tasks that were in progress."""
        self._stop.value = 1
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
