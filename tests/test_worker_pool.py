"""WorkerPool: tasks in spawned processes, their results and errors, a stop that interrupts the tasks
in progress the way Ctrl-C stops a solve, and a killed worker reported instead of waited for."""

from __future__ import annotations

import time

import pytest

import worker_pool_tasks as tasks
from pnp_stable.worker_pool import WorkerDied, WorkerPool


def test_every_task_once_with_the_shared_value_and_the_threads_given():
    with WorkerPool(tasks.scaled, 10, workers=2, threads=1) as pool:
        results = list(pool.results(range(7)))
    assert sorted(value for value, _ in results) == [10 * k for k in range(7)]
    assert {threads for _, threads in results} == {1}


def test_a_tasks_error_is_raised_where_its_result_would_be():
    with WorkerPool(tasks.refuses_three, None, workers=2) as pool:
        with pytest.raises(ValueError, match="three refused"):
            list(pool.results(range(6)))
        pool.stop()


def test_a_stop_interrupts_the_tasks_in_progress_and_cancels_the_rest():
    """Two tasks wait until interrupted, a quick one finishes, the rest never start: stop() returns the
    running tasks' own results ("stopped") within seconds, and no task is left running."""
    started = time.monotonic()
    with WorkerPool(tasks.waits_for_a_stop, None, workers=2) as pool:
        results = pool.results(["quick", "wait", "wait", "wait", "wait"])
        assert next(results) == "finished"
        time.sleep(1.0)  # the waiting tasks under way
        stopped = pool.stop()
    assert stopped.count("stopped") == 2 and "never stopped" not in stopped
    assert time.monotonic() - started < 45


def test_a_killed_worker_is_reported_not_waited_for():
    with WorkerPool(tasks.dies, None, workers=1) as pool:
        with pytest.raises(WorkerDied, match="run fewer workers"):
            list(pool.results([0]))
    assert issubclass(WorkerDied, MemoryError)


def test_a_pool_needs_a_worker():
    with pytest.raises(ValueError, match="at least one worker"):
        WorkerPool(tasks.scaled, 1, workers=0)


def test_ctrl_c_at_a_terminal_stops_a_busy_worker_s_task_and_spares_an_idle_worker(tmp_path):
    """SIGINT (what Ctrl-C sends every process of the terminal's group) interrupts the task a worker is
    running, which returns as a stopped solve does; a worker between tasks ignores it and goes on."""
    import os
    import signal
    import threading

    with WorkerPool(tasks.both, None, workers=1) as pool:
        worker = next(pool.results([("pid", None)]))
        os.kill(worker, signal.SIGINT)  # idle
        time.sleep(0.5)
        told, returned = tmp_path / "pid", []
        waiting = threading.Thread(target=lambda: returned.extend(pool.results([("wait", str(told))])))
        waiting.start()
        deadline = time.monotonic() + 30
        while not told.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert int(told.read_text()) == worker  # the same process: the first SIGINT did not end it
        os.kill(worker, signal.SIGINT)  # busy
        waiting.join(30)
        assert returned == ["stopped"]


def _wait_for(path, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path} never appeared"


def _gone(pid: int, seconds: float = 15.0) -> bool:
    import os

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a child of ours that ended but was not yet waited for
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.1)
    return False


def test_a_stop_after_a_worker_died_returns():
    """The stop flag is set without waiting on the workers: a dead one cannot hold the stop up."""
    import threading

    with WorkerPool(tasks.dies, None, workers=2) as pool:
        with pytest.raises(WorkerDied):
            list(pool.results([0]))
        stopping = threading.Thread(target=pool.stop, daemon=True)
        stopping.start()
        stopping.join(20)
        assert not stopping.is_alive()


def test_a_second_interrupt_does_not_cut_a_stopping_task_short(tmp_path):
    """Ctrl-C reaches the worker, then the caller's stop: the task, saving its state, is interrupted once."""
    import os
    import signal
    import threading

    told, returned = tmp_path / "task", []
    with WorkerPool(tasks.saves_when_stopped, None, workers=1) as pool:
        waiting = threading.Thread(target=lambda: returned.extend(pool.results([str(told)])))
        waiting.start()
        _wait_for(told)
        os.kill(int(told.read_text()), signal.SIGINT)
        time.sleep(0.3)  # saving
        returned.extend(pool.stop())
        waiting.join(30)
    # (collected by the reading thread, by stop() or by both: they race here, as no caller of a pool does)
    assert returned and set(returned) == {"saved"} and (tmp_path / "task.saved").exists()


def test_sigterm_stops_a_busy_worker_s_task_then_ends_it(tmp_path):
    """SIGTERM (a scheduler's stop, sent to every process of the job): the task stops as by Ctrl-C, saving
    its state, and the worker ends."""
    import os
    import signal
    import threading

    told = tmp_path / "task"
    with WorkerPool(tasks.saves_when_stopped, None, workers=1) as pool:
        waiting = threading.Thread(target=lambda: pytest.raises(WorkerDied, list, pool.results([str(told)])),
                                   daemon=True)
        waiting.start()
        _wait_for(told)
        worker = int(told.read_text())
        os.kill(worker, signal.SIGTERM)
        _wait_for(tmp_path / "task.saved")
        assert _gone(worker)
        waiting.join(30)


def test_a_worker_whose_caller_was_killed_stops_its_task_and_ends(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    told = tmp_path / "task"
    here = Path(__file__).resolve().parent
    caller = subprocess.Popen([sys.executable, str(here / "worker_pool_tasks.py"), str(told)],
                              env={**os.environ, "PYTHONPATH": str(here)})
    try:
        _wait_for(told, 60)
        worker = int(told.read_text())
        caller.send_signal(signal.SIGKILL)
        caller.wait(10)
        _wait_for(tmp_path / "task.saved")  # its task stopped, its state saved
        assert _gone(worker)
    finally:
        caller.kill()


def test_sigterm_to_a_busy_and_an_idle_worker_then_the_caller_s_stop_ends_the_pool(tmp_path):
    """SIGTERM to the whole job while one worker is idle: the busy one's task stops (its state saved), the
    idle one ends without keeping the task queue's lock (it did, and the pool then never closed)."""
    import os
    import signal
    import threading

    told, returned = tmp_path / "task", []
    pool = WorkerPool(tasks.pid_or_saves, None, workers=2)

    def read() -> None:
        try:
            for result in pool.results([("pid once told", str(told)), ("wait", str(told))]):
                returned.append(result)
        except Exception:  # noqa: BLE001 - the pool breaks as its idle worker ends: what is read is beside the point
            pass

    threading.Thread(target=read, daemon=True).start()
    _wait_for(told)
    deadline = time.monotonic() + 30
    while not returned and time.monotonic() < deadline:
        time.sleep(0.05)
    idle, busy = returned[0], int(told.read_text())
    assert idle != busy
    for worker in (idle, busy):
        os.kill(worker, signal.SIGTERM)
    closing = threading.Thread(target=lambda: (pool.stop(), pool.close()), daemon=True)
    closing.start()
    closing.join(30)
    assert not closing.is_alive(), "the pool did not close"
    assert (tmp_path / "task.saved").exists()
