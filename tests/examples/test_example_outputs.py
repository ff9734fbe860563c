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


@pytest.mark.parametrize("name", ["inverse_problem_2d", "lyapunov_dynamics", "vanishing_gradients"])
@pytest.mark.parametrize("options, fragment", [
    (["--threads", "0"], "argument --threads: '0' is not a positive integer"),
    (["--iterations", "0"], "argument --iterations: '0' is not a positive integer"),  # was: silently the default
    (["--iterations", "-3"], "argument --iterations: '-3' is not a positive integer"),
    (["--lr", "nan"], "argument --lr: 'nan' is not a positive number"),
    (["--seed", "x"], "argument --seed: invalid int value"),
])
def test_bad_options_are_one_line_errors_with_exit_code_2(name, options, fragment, capsys, tmp_path):
    module = load_example(name)
    with pytest.raises(SystemExit) as stopped:
        module.main(["--quick", "--out", str(tmp_path / "out"), *options])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and "error:" in err[0], err
    assert not (tmp_path / "out").exists()  # nothing ran


@pytest.mark.parametrize("name", ["inverse_problem_2d", "lyapunov_dynamics", "vanishing_gradients"])
def test_an_out_folder_that_is_a_file_is_refused_before_any_work(name, capsys, tmp_path):
    module = load_example(name)
    (tmp_path / "taken").write_text("x")
    for out in (tmp_path / "taken", tmp_path / "taken" / "sub"):
        with pytest.raises(SystemExit) as stopped:
            module.main(["--quick", "--out", str(out)])
        assert stopped.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is a file, not a folder" in err[0], err
