"""Run each example once in ``--quick`` mode per test module."""

import pytest
import torch

from example_loader import load_example


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, request):
    """``(module, results, out_dir)`` of one ``--quick`` run of the example named by the test module."""
    name = request.module.EXAMPLE
    module = load_example(name)
    out = tmp_path_factory.mktemp(name)
    results = module.main(["--quick", "--out", str(out)])
    return module, results, out


@pytest.fixture(autouse=True)
def _single_thread():
    """The examples run with one torch thread (as documented); keep the tests the same."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
