"""bench/device/smoke.py, the first thing a borrowed GPU runs, works: its checks pass on the CPU
(with a small untrained denoiser in place of the shipped one, for time), and a failing check is
reported and turns the exit code to 1."""

import torch

from bench_loader import load_bench_script


def _tiny_file(tmp_path):
    from pnp_stable.denoisers import DenoiserConfig, build_denoiser, save_denoiser

    torch.manual_seed(0)
    model = build_denoiser(DenoiserConfig(width=4, hidden=6, blocks=2, embedding_dim=8, time_conditioning=True)).eval()
    cert = model.certificate()
    path = tmp_path / "tiny.pt"
    save_denoiser(model, path, {"channels": 1, "certificate": {"lipschitz": cert.lipschitz,
                                                               "averagedness": cert.averagedness}})
    return path


def test_every_check_passes_on_the_cpu(tmp_path, capsys):
    smoke = load_bench_script("device/smoke")
    assert smoke.main(["--device", "cpu", "--denoiser", str(_tiny_file(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert out.count("\nok ") + out.startswith("ok ") == len(smoke.CHECKS) >= 8
    assert "all checks passed" in out


def test_a_failing_check_is_reported_and_fails_the_run(tmp_path, capsys, monkeypatch):
    smoke = load_bench_script("device/smoke")

    def broken(ctx):
        raise AssertionError("deliberately broken")

    monkeypatch.setattr(smoke, "CHECKS", [broken])
    assert smoke.main(["--device", "cpu", "--denoiser", str(_tiny_file(tmp_path))]) == 1
    captured = capsys.readouterr()
    assert "FAILED broken" in captured.out and "1 failed: broken" in captured.out
    assert "deliberately broken" in captured.err
