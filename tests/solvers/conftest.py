import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    # The solver tests use 32x32 images: one thread is fastest, and on a loaded 2-core machine a
    # second thread makes small convolutions ~50x slower through contention.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
