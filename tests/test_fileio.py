"""pnp_stable.fileio: all-or-nothing writes, with the permissions of a plain open()."""

import os
import stat

import pytest

from pnp_stable.fileio import atomic_output, atomic_write_bytes, atomic_write_json, read_torch_file


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_written_file_gets_the_umask_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b.bin", b"y")
    finally:
        os.umask(previous)
    assert _mode(tmp_path / "a.bin") == 0o644  # mkstemp alone would give 0600
    assert _mode(tmp_path / "b.bin") == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_the_temporary_keeps_the_suffix_and_the_result_replaces_the_target(tmp_path):
    target = tmp_path / "plot.png"
    target.write_text("old")
    with atomic_output(target) as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["plot.png"]


def test_bad_folders_are_named_without_the_temporary(tmp_path):
    with pytest.raises(ValueError, match=r"output folder '.*nodir' does not exist"):
        atomic_write_bytes(tmp_path / "nodir" / "x.png", b"")
    (tmp_path / "in.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"cannot write .*in\.png/x\.png: '.*in\.png' is not a folder") as err:
        atomic_write_bytes(tmp_path / "in.png" / "x.png", b"")
    assert ".x." not in str(err.value)
    atomic_write_bytes(tmp_path / "made" / "deep" / "x.bin", b"z", make_parents=True)
    assert (tmp_path / "made" / "deep" / "x.bin").read_bytes() == b"z"


def test_json_has_no_invalid_tokens(tmp_path):
    atomic_write_json(tmp_path / "r.json", {"a": float("nan"), "b": [float("inf"), 1.5], "c": (1, 2)})
    assert (tmp_path / "r.json").read_text() == '{\n  "a": null,\n  "b": [\n    null,\n    1.5\n  ],\n  "c": [\n    1,\n    2\n  ]\n}\n'


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"", b"\x80\x02garbage", "pickle", "protocol 4"])
def test_unreadable_torch_files_give_one_short_line_not_torchs_text(tmp_path, content):
    """Random bytes, an empty or truncated file, a pickle weights-only loading refuses (torch explains
    that in paragraphs on arbitrary code execution), a plain pickle (torch warns of its protocol
    first): one line naming the file and what it should have been, and no warning."""
    import pathlib
    import pickle
    import warnings

    import torch

    path = tmp_path / "bad.pt"
    if content == "pickle":
        torch.save({"step": pathlib.Path("x")}, path)  # a class weights-only loading does not allow
    elif content == "protocol 4":
        path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    else:
        path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError) as refused:
            read_torch_file(path, "a thing")
    assert str(refused.value) == f"{path} is not a thing (it could not be read as one)"


def test_torch_file_system_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_torch_file(tmp_path / "missing.pt", "a thing")
    with pytest.raises(ValueError, match="^cannot read .*: Is a directory$"):
        read_torch_file(tmp_path, "a thing")
    import torch

    torch.save({"a": torch.ones(2)}, tmp_path / "good.pt")
    assert torch.equal(read_torch_file(tmp_path / "good.pt", "a thing")["a"], torch.ones(2))


def test_destination_problem_names_what_stands_in_the_way(tmp_path, monkeypatch):
    from pnp_stable.fileio import destination_problem

    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    assert destination_problem(tmp_path / "new" / "deeper" / "r.json") is None  # parents are made
    assert destination_problem(tmp_path / "folder", folder=True) is None
    assert destination_problem(tmp_path / "folder") == " is a folder, not a file"
    assert destination_problem(tmp_path / "file", folder=True) == " is a file, not a folder"
    assert destination_problem(tmp_path / "file" / "deep" / "r.json") == f": {tmp_path / 'file'} is a file, not a folder"
    monkeypatch.setattr("os.access", lambda path, mode: False)  # root may write anywhere: simulate a read-only folder
    assert destination_problem(tmp_path / "new" / "r.json") == f": {tmp_path} is not writable"


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    """ENOSPC from a writer, or torch's stream writer failing on a full disk ('unexpected pos'):
    a ValueError naming the destination (the commands' one-line error), no temporary file left, the
    previous file intact."""
    import errno
    import shutil
    from collections import namedtuple

    import pytest

    from pnp_stable.fileio import atomic_output

    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match=r"cannot write .*out.bin: No space left on device"):
        with atomic_output(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: Usage(10, 10, 0))
    with pytest.raises(ValueError, match=r"cannot write .*out.bin: no space left on device"):
        with atomic_output(target):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    with pytest.raises(RuntimeError, match="something else"):  # not a write failure: unchanged
        with atomic_output(target):
            raise RuntimeError("something else")


def test_a_truncated_torch_file_is_named_as_not_what_it_should_be(tmp_path):
    import pytest
    import torch

    from pnp_stable.fileio import read_torch_file

    whole = tmp_path / "whole.pt"
    torch.save({"x": torch.zeros(4096)}, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:10000])
    with pytest.raises(ValueError, match=r"cut.pt is not a checkpoint \(it could not be read as one"):
        read_torch_file(cut, "a checkpoint")


def test_a_run_folder_or_checkpoint_in_use_is_refused(tmp_path):
    """Two processes in one run folder interleaved their logs and kept the last writer's checkpoint:
    a second holder is refused at once; the lock goes with its holder (its file too)."""
    import pytest

    from pnp_stable.fileio import exclusive_use

    run = tmp_path / "run"
    with exclusive_use(run, "run folder"):
        assert (tmp_path / ".run.lock").exists()
        with pytest.raises(ValueError, match=r"run folder .*run is in use by another process"):
            with exclusive_use(run, "run folder"):
                pass
    assert not (tmp_path / ".run.lock").exists()
    with exclusive_use(run, "run folder"):  # free again
        pass
    with exclusive_use(tmp_path / "missing" / "run", "run folder"):  # no folder yet: nothing to lock
        pass


def test_a_training_and_a_solve_refuse_a_folder_or_state_in_use(tmp_path):
    import pytest
    import torch

    from pnp_stable.classify import TrainConfig, train_classifier
    from pnp_stable.fileio import exclusive_use
    from pnp_stable.restore import deblur

    with exclusive_use(tmp_path / "run", "run folder"):
        with pytest.raises(ValueError, match="in use by another process"):
            train_classifier(TrainConfig(dataset="mnist", output_dir=str(tmp_path / "run"), epochs=1,
                                         progress=False, data_path=str(tmp_path)))
    state = tmp_path / "s.state"
    with exclusive_use(state, "checkpoint"):
        with pytest.raises(ValueError, match="checkpoint .*s.state is in use"):
            deblur(torch.rand(1, 24, 24), "gauss:1", simulate=True, noise_level=0.02, max_iter=1, checkpoint=state,
                   progress=False)


def test_a_killed_writers_temporary_files_are_removed_and_nothing_else(tmp_path):
    from pnp_stable.fileio import remove_stale_temporaries

    target = tmp_path / "checkpoint.pt"
    stale = tmp_path / ".checkpoint.a1b2c3d4.pt"  # what atomic_output's mkstemp names look like
    keep = [tmp_path / ".checkpoint.pt.lock", tmp_path / ".checkpoint.notmine.pt", tmp_path / "checkpoint.pt"]
    for path in [stale, *keep]:
        path.write_bytes(b"x")
    assert remove_stale_temporaries(target) == [stale]
    assert all(path.exists() for path in keep)


def test_a_file_system_without_locks_is_not_a_process_in_the_way(tmp_path, monkeypatch):
    """ENOLCK/ENOSYS (a network file system without flock) would have refused every run: it runs
    unlocked (and removes no temporaries, since another writer cannot be excluded)."""
    import errno
    import fcntl

    from pnp_stable.fileio import exclusive_use

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with exclusive_use(tmp_path / "run", "run folder") as held:
        assert held is False


def test_an_existing_destination_that_cannot_be_replaced_is_named_before_any_work(tmp_path, monkeypatch):
    """Review 2026-12-06: an immutable (or another user's, in /tmp) report file was found only when
    the report was written, after the restored image: the command failed with outputs on disk."""
    import os

    from pnp_stable.fileio import destination_problem

    target = tmp_path / "report.json"
    target.write_text("{}")
    assert destination_problem(target) is None
    real_open = os.open

    refusal = {}

    def refusing_open(path, flags, *args, **kwargs):
        if os.fspath(path) == os.fspath(target):
            raise PermissionError(*refusal["error"], os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    refusal["error"] = (1, "Operation not permitted")  # EPERM: an immutable file
    assert destination_problem(target) == ": the existing file cannot be replaced (Operation not permitted)"
    refusal["error"] = (13, "Permission denied")  # EACCES: a read-only mode, which a rename replaces
    assert destination_problem(target) is None
    assert target.read_text() == "{}"
