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
