import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # These tests run tiny tensors, for which a second intra-op thread only adds synchronisation
    # cost (and stalls badly when the shared cores are busy).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
