"""``pnp-stable certify`` and ``pnp-stable models`` print proven constants rounded up, never to nearest."""

from click.testing import CliRunner

from pnp_stable.cli.main import main


def test_certify_never_rounds_a_constant_down(monkeypatch):
    import pnp_stable.restore as restore

    def fake_load(name, device):
        # a Lipschitz bound just above 1 (no averagedness proven): "%.6g" printed it as 1
        cert = {"lipschitz": 1.0000004, "averagedness": None, "blocks": []}
        return object(), {"name": "fake", "certified": True, "certificate": cert}

    monkeypatch.setattr(restore, "load_denoiser", fake_load)
    r = CliRunner().invoke(main, ["certify", "fake", "--no-search"])
    assert r.exit_code == 0, r.output
    line = next(s for s in r.output.splitlines() if "certified Lipschitz bound" in s)
    assert float(line.split()[-1]) >= 1.0000004
    assert "not proven" in r.output

    def fake_load_averaged(name, device):
        cert = {"lipschitz": 1.0, "averagedness": 0.9999996, "blocks": []}
        return object(), {"name": "fake", "certified": True, "certificate": cert}

    monkeypatch.setattr(restore, "load_denoiser", fake_load_averaged)
    r = CliRunner().invoke(main, ["certify", "fake", "--no-search"])
    line = next(s for s in r.output.splitlines() if "certified averagedness" in s)
    assert 0.9999996 <= float(line.split()[-1]) < 1


def test_models_never_rounds_a_lipschitz_bound_down(monkeypatch, tmp_path):
    import pnp_stable.denoisers as denoisers

    entry = {"name": "m", "source": "user", "path": str(tmp_path / "m.pt"), "kind": "certified", "channels": 1,
             "certificate": {"lipschitz": 1.0004, "averagedness": None}}
    monkeypatch.setattr(denoisers, "available", lambda: [entry])
    r = CliRunner().invoke(main, ["models"])
    assert r.exit_code == 0, r.output
    row = next(s for s in r.output.splitlines() if s.startswith("m "))
    assert float(row.split()[4]) >= 1.0004  # "%.3g" printed 1


def test_certify_handles_the_identity_and_models_says_where_its_constants_come_from(tmp_path):
    import torch

    from pnp_stable.denoisers import DenoiserConfig, build_denoiser, save_denoiser

    model = build_denoiser(DenoiserConfig(width=3, hidden=4, blocks=1, embedding_dim=4)).eval()
    with torch.no_grad():  # no potential: every block is the identity, averagedness 0
        for name, parameter in model.named_parameters():
            if "linear" in name and name.endswith("weight"):
                parameter.zero_()
    assert model.certificate().averagedness == 0
    save_denoiser(model, tmp_path / "identity.pt", {"channels": 1})
    r = CliRunner().invoke(main, ["certify", str(tmp_path / "identity.pt"), "--size", "8", "--steps", "2"])
    assert r.exit_code == 0 and "certified averagedness     0" in r.output, r.output  # it crashed in the search
    listing = CliRunner().invoke(main, ["models"])
    assert "`pnp-stable certify NAME` recomputes them from the weights" in listing.output


def test_certify_says_whether_the_search_stays_within_the_certified_bound(monkeypatch):
    import pnp_stable.restore as restore

    def lying(name, device):  # claims non-expansive, doubles distances
        cert = {"lipschitz": 1.0, "averagedness": None, "blocks": []}
        return (lambda x, sigma: 2 * x), {"name": "liar", "certified": True, "certificate": cert}

    monkeypatch.setattr(restore, "load_denoiser", lying)
    r = CliRunner().invoke(main, ["certify", "liar", "--size", "8", "--steps", "2", "--restarts", "1"])
    assert r.exit_code == 0 and "Lipschitz >= 2 (ABOVE the certified bound: VIOLATED)" in r.output, r.output

    def honest(name, device):
        cert = {"lipschitz": 1.0, "averagedness": None, "blocks": []}
        return (lambda x, sigma: 0.5 * x), {"name": "half", "certified": True, "certificate": cert}

    monkeypatch.setattr(restore, "load_denoiser", honest)
    r = CliRunner().invoke(main, ["certify", "half", "--size", "8", "--steps", "2", "--restarts", "1"])
    assert "Lipschitz >= 0.5 (within the certified bound)" in r.output, r.output


def test_certify_shows_the_progress_of_its_search_on_stderr(monkeypatch):
    # at --size 512 the search runs for most of an hour: it must not look hung
    import torch

    import pnp_stable.restore as restore

    class Half(torch.nn.Module):
        def forward(self, x, sigma):
            return 0.5 * x

    def fake_load(name, device):
        cert = {"lipschitz": 0.5, "averagedness": 0.25, "blocks": []}
        return Half(), {"name": "half", "certified": True, "certificate": cert}

    monkeypatch.setattr(restore, "load_denoiser", fake_load)
    r = CliRunner().invoke(main, ["certify", "half", "--size", "8", "--steps", "1", "--restarts", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert "adversarial search 8x8" in r.stderr and "evaluations" in r.stderr
    import json

    assert json.loads(r.stdout)["empirical"]["lipschitz_lower_bound"] <= 0.5 + 1e-6  # stdout stays pure JSON
