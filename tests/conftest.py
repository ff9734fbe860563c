import pytest
import torch

# Test tensors are tiny: one thread avoids OpenMP barrier costs, which dominate small convolutions
# (and explode when the two cores are shared with other work).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _isolated_user_models(tmp_path_factory, monkeypatch):
    # Tests must never read or write the real user's models folder (~/.local/share/pnp-stable).
    monkeypatch.setenv("PNP_STABLE_MODELS", str(tmp_path_factory.mktemp("user-models")))
    yield


@pytest.fixture(scope="session")
def _session_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _isolated_cache(_session_cache_dir, monkeypatch):
    # Norm bounds are cached on disk: tests share one cache per session, never the user's.
    monkeypatch.setenv("PNP_STABLE_CACHE", str(_session_cache_dir))
    yield
