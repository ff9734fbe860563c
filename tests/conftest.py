import pytest
import torch

# Test tensors are tiny: one thread avoids OpenMP barrier costs, which dominate small convolutions
# (and explode when the two cores are shared with other work).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
