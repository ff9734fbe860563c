"""The output helpers write atomically: a failed write leaves the previous file intact."""

import json

import pytest

from example_loader import load_example


def test_atomic_writes_replace_whole_files_and_leave_no_temporaries(tmp_path):
    io = load_example("example_outputs")
    target = tmp_path / "summary.md"
    io.write_text_atomic(target, "first\n")
    io.write_json_atomic(tmp_path / "r.json", {"a": 1.5})
    with pytest.raises(RuntimeError):
        io._atomic_write(target, lambda handle: (handle.write(b"half"), (_ for _ in ()).throw(RuntimeError("boom"))))
    assert target.read_text() == "first\n"
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "summary.md"]


def test_output_dir_defaults_to_examples_output(tmp_path):
    io = load_example("example_outputs")
    assert io.output_dir(tmp_path / "x", "name") == tmp_path / "x"
    assert io.EXAMPLES_DIR.name == "examples"
    assert io.moving_average([1.0, 3.0, 5.0], 2) == [1.0, 2.0, 4.0]
    assert io.markdown_table(["a", "b"], [[1, 0.123456]]).splitlines()[-1] == "| 1 | 0.1235 |"
