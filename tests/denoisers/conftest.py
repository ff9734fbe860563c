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


@pytest.fixture
def constant_time_scale():
    """``set(model, tau)``: every block of a time-conditioned denoiser integrates over ``tau T``,
    whatever sigma is; returns the ``tau`` the model actually uses (``tau`` up to rounding)."""
    def set_tau(model, tau: float) -> float:
        last = model.time_embedding.mlp[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(float(torch.logit(torch.tensor(tau, dtype=torch.float64))))
        return float(torch.sigmoid(last.bias.detach()[0]).double())
    return set_tau
