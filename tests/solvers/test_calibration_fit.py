"""bench/calibrate_parameters.py: the rule fitted from a grid-search table."""

from __future__ import annotations

import json
import math

import pytest

from bench_loader import load_bench_script


def _bench_module():
    return load_bench_script("calibrate_parameters")


def _row(noise, weight, ratio, psnr):
    return {"noise": noise, "weight": weight, "sigma_ratio": ratio, "psnr": psnr, "iterations": 1, "seconds": 0}


# ratio 8 wins narrowly at 0.01 and loses badly at 0.03: one ratio for all noise levels must be 4
TABLE = [
    _row(0.01, 1.0, 4.0, 27.79), _row(0.01, 3.0, 4.0, 27.69), _row(0.01, 3.0, 8.0, 27.93), _row(0.01, 1.0, 8.0, 27.01),
    _row(0.03, 1.0, 4.0, 24.65), _row(0.03, 3.0, 4.0, 25.88), _row(0.03, 3.0, 8.0, 25.15), _row(0.03, 1.0, 8.0, 22.78),
]


def test_ratio_is_chosen_for_all_noise_levels_then_the_power_law_is_fitted():
    best, rule = _bench_module().fit_rule(TABLE)
    assert rule["sigma_ratio"] == 4.0
    assert {n: b["weight"] for n, b in best.items()} == {0.01: 1.0, 0.03: 3.0}
    # target = weight * sigma^exponent passes through both chosen points: 1 * 0.01^2 and 3 * 0.03^2
    for noise, weight in ((0.01, 1.0), (0.03, 3.0)):
        assert rule["weight"] * noise ** rule["exponent"] == pytest.approx(weight * noise**2, rel=1e-9)
    assert rule["exponent"] == pytest.approx(3.0)  # weight x3 when the noise level triples: sigma^(2+1)


def test_a_ratio_that_follows_the_noise_keeps_each_levels_best_and_fits_a_power_law():
    """Each noise level keeps its own best row (ratio 8 at 0.01, 4 at 0.03): denoiser strengths
    0.08 and 0.12, so ``s = ratio * sigma^q`` with q = log 1.5 / log 3 passes through both."""
    best, rule = _bench_module().fit_rule(TABLE, ratio_follows_noise=True)
    assert {n: (b["weight"], b["sigma_ratio"]) for n, b in best.items()} == {0.01: (3.0, 8.0), 0.03: (3.0, 4.0)}
    assert rule["sigma_exponent"] == pytest.approx(math.log(1.5) / math.log(3.0))
    for noise, strength, target in ((0.01, 0.08, 3e-4), (0.03, 0.12, 2.7e-3)):
        assert rule["sigma_ratio"] * noise ** rule["sigma_exponent"] == pytest.approx(strength, rel=1e-9)
        assert rule["weight"] * noise ** rule["exponent"] == pytest.approx(target, rel=1e-9)
    _, shared = _bench_module().fit_rule(TABLE)
    assert shared["sigma_exponent"] == 1.0  # one ratio for all noise levels: s proportional to sigma


def test_a_strength_falling_with_the_noise_is_held_constant():
    table = [_row(0.01, 1.0, 8.0, 28.0), _row(0.01, 1.0, 2.0, 27.0), _row(0.03, 1.0, 2.0, 25.0), _row(0.03, 1.0, 8.0, 24.0)]
    _, rule = _bench_module().fit_rule(table, ratio_follows_noise=True)  # s: 0.08 at 0.01, 0.06 at 0.03
    assert rule["sigma_exponent"] == 0.0
    assert rule["sigma_ratio"] == pytest.approx(math.sqrt(0.08 * 0.06))


def test_single_noise_level_keeps_the_map_exponent():
    _, rule = _bench_module().fit_rule([r for r in TABLE if r["noise"] == 0.01])
    assert rule["exponent"] == 2.0 and rule["sigma_ratio"] == 8.0 and rule["weight"] == pytest.approx(3.0)


def test_refit_merges_tables_and_refuses_mixed_settings(tmp_path):
    module = _bench_module()
    common = {"denoiser": "d", "kind": "noise_level", "method": "admm", "images": ["a"], "crop": 64, "kernels": ["k"],
              "rule": {"gamma_scale": 1.0}}
    first, second = tmp_path / "1.json", tmp_path / "2.json"
    first.write_text(json.dumps({**common, "table": TABLE[:2] + TABLE[4:6]}))
    second.write_text(json.dumps({**common, "table": TABLE[2:4] + TABLE[6:]}))
    out = tmp_path / "merged.json"
    assert module.refit([first, second], out) == 0
    merged = json.loads(out.read_text())
    assert len(merged["table"]) == len(TABLE) and merged["rule"]["sigma_ratio"] == 4.0
    assert merged["ratio_follows_noise"] is False and merged["rule"]["sigma_exponent"] == 1.0
    assert module.refit([first, second], out, ratio_follows_noise=True) == 0
    following = json.loads(out.read_text())
    assert following["ratio_follows_noise"] is True
    assert following["rule"]["sigma_exponent"] == pytest.approx(math.log(1.5) / math.log(3.0))
    other = tmp_path / "3.json"
    other.write_text(json.dumps({**common, "method": "fb", "table": TABLE}))
    assert module.refit([first, other], None) == 2
    assert module.refit([tmp_path / "missing.json"], None) == 2


def test_ct_calibration_never_uses_the_benchmark_or_validation_slices(tmp_path):
    from PIL import Image

    ct = load_bench_script("calibrate_ct_rule")
    folder = tmp_path / "ct/mayo_crr/train"
    folder.mkdir(parents=True)
    names = ["phantom_1012", "phantom_149", "phantom_2000", "phantom_3", "phantom_4", "phantom_5"]
    for name in names:
        Image.new("L", (8, 8), 128).save(folder / f"{name}.png")
    chosen = [name for name, image in ct.calibration_slices(tmp_path, 3, 16)]
    assert sorted(chosen) == ["phantom_3", "phantom_4", "phantom_5"]
    with pytest.raises(ValueError, match="only 3 usable"):
        ct.calibration_slices(tmp_path, 4, 16)


def test_ct_rule_takes_the_weight_best_on_average_over_angle_counts():
    """60 angles prefer 1, 180 prefer 4 (each by a little), 2 is close at both: 2 wins on average;
    a weight missing at one angle count is not a candidate."""
    ct = load_bench_script("calibrate_ct_rule")
    rows = [{"angles": a, "sigma_x": s, "weight": w, "psnr": p}
            for a, s, w, p in [(60, 0.008, 1.0, 32.1), (60, 0.008, 2.0, 32.0), (60, 0.008, 4.0, 31.0),
                               (180, 0.004, 1.0, 32.4), (180, 0.004, 2.0, 34.0), (180, 0.004, 4.0, 34.1),
                               (180, 0.004, 8.0, 40.0)]]
    fitted = ct._fit(rows)
    assert fitted["rule"] == {"weight": 2.0, "exponent": 2.0, "sigma_ratio": 1.0, "gamma_scale": 1.0}
    assert {k: v["weight"] for k, v in fitted["best"].items()} == {"0.004": 8.0, "0.008": 1.0}
    assert "8.0" not in fitted["mean_psnr_by_weight"]


def test_ct_admm_rule_takes_the_pair_best_on_average_over_angle_counts():
    """ADMM rows carry a denoiser strength: the (weight, strength) pair with the best mean PSNR over
    the angle counts wins, with the strength constant across noise levels (sigma_exponent 0)."""
    ct = load_bench_script("calibrate_ct_rule")
    rows = [{"angles": a, "sigma_x": x, "weight": w, "strength": s, "psnr": p}
            for a, x, w, s, p in [(60, 0.008, 0.5, 0.05, 31.0), (60, 0.008, 1.0, 0.05, 31.5),
                                  (60, 0.008, 0.5, 0.07, 31.8), (60, 0.008, 1.0, 0.07, 31.2),
                                  (180, 0.004, 0.5, 0.05, 33.0), (180, 0.004, 1.0, 0.05, 33.9),
                                  (180, 0.004, 0.5, 0.07, 32.9), (180, 0.004, 1.0, 0.07, 33.0),
                                  (180, 0.004, 2.0, 0.07, 40.0)]]
    fitted = ct._fit(rows)
    assert fitted["rule"] == {"weight": 1.0, "exponent": 2.0, "sigma_ratio": 0.05, "sigma_exponent": 0.0,
                              "gamma_scale": 1.0}
    assert "2.0/0.07" not in fitted["mean_psnr_by_setting"]  # not measured at 60 angles


def _ct_rows_from_power_law(weight, exponent, strength=0.05, peak=35.0, grid=None, steep_below=1.0,
                            density_exponent=None):
    """Rows of a CT calibration at three noise levels and two angle counts whose PSNR peaks, on a
    fine grid of weights, at ``weight * sigma_x^(exponent - 2)`` (times ``density^density_exponent``
    with one: three angle counts, and the rows carry their density, angles / 128), ``steep_below``
    times faster towards small weights."""
    grid = grid or [2.0 ** (k / 4) for k in range(-12, 29)]  # 1/8 .. 128
    rows = []
    views = ((60, 3.0), (180, 1.7)) if density_exponent is None else ((30, 4.2), (60, 3.0), (180, 1.7))
    for noise in (0.001, 0.01, 0.03):
        for angles, scale in views:
            sigma_x = noise * scale / 10
            best = weight * sigma_x ** (exponent - 2.0)
            extra = {}
            if density_exponent is not None:
                extra = {"density": angles / 128}
                best *= extra["density"] ** density_exponent
            rows += [{"noise_relative": noise, "angles": angles, "sigma_x": sigma_x, "weight": w, **extra,
                      "strength": strength, "psnr": peak - (steep_below if w < best else 1.0) * math.log(w / best) ** 2}
                     for w in grid]
    return rows


def test_ct_rule_over_noise_levels_recovers_the_power_law_of_the_best_weights():
    """Every problem's PSNR peaks where ``weight * sigma_x^(exponent - 2)`` says: the fit finds the
    exponent and weight back (to the grid's resolution), no problem loses, none is at its edge."""
    ct = load_bench_script("calibrate_ct_rule")
    fitted = ct._fit(_ct_rows_from_power_law(0.4, 1.5))
    rule = fitted["rule"]
    assert rule["exponent"] == pytest.approx(1.5, abs=0.02)
    assert rule["sigma_ratio"] == 0.05 and rule["sigma_exponent"] == 0.0
    for problem in fitted["per_problem"].values():
        assert problem["rule_psnr"] == pytest.approx(35.0, abs=0.01)
        assert problem["rule_weight"] == pytest.approx(0.4 * problem["sigma_x"] ** -0.5, rel=0.05)
    assert fitted["best_at_grid_edge"] == []
    assert fitted["mean_psnr"] == pytest.approx(35.0, abs=0.01)


def test_ct_rule_over_noise_levels_fits_the_sampling_density_when_the_rows_carry_it():
    """Best weights that also grow like density^0.6 (three angle counts): the fit finds the density
    exponent and the noise exponent back, and records the best rule without the density."""
    ct = load_bench_script("calibrate_ct_rule")
    fitted = ct._fit(_ct_rows_from_power_law(0.4, 1.5, density_exponent=0.6))
    assert fitted["rule"]["density_exponent"] == pytest.approx(0.6, abs=0.03)
    assert fitted["rule"]["exponent"] == pytest.approx(1.5, abs=0.02)
    assert fitted["mean_psnr"] == pytest.approx(35.0, abs=0.01)
    assert fitted["without_density"]["mean_psnr"] < fitted["mean_psnr"] - 0.05
    assert "density_exponent" not in ct._fit(_ct_rows_from_power_law(0.4, 1.5))["rule"]  # no densities: none fitted
    two_counts = [row for row in _ct_rows_from_power_law(0.4, 1.5, density_exponent=0.6) if row["angles"] != 30]
    assert "density_exponent" not in ct._fit(two_counts)["rule"]  # two densities: any exponent fits both


@pytest.mark.parametrize("steep_below", [1.0, 6.0])
def test_ct_rule_over_noise_levels_finds_the_power_law_on_a_coarse_grid(steep_below):
    """A factor-2 grid, as the calibrations use: quadratic curves (each problem's peak between grid
    points) give the power law back, where capping at the best *measured* PSNR made the tops flat
    and the first of many tied rules won (exponent 1.40 for 1.5); curves 6x steeper towards small
    weights, whose three-point parabolas overshoot, still do, which uncapped parabolas do not
    (weight 0.26 for 0.4)."""
    ct = load_bench_script("calibrate_ct_rule")
    fitted = ct._fit(_ct_rows_from_power_law(0.4, 1.5, grid=[2.0**k for k in range(-3, 8)],
                                             steep_below=steep_below))
    assert fitted["rule"]["exponent"] == pytest.approx(1.5, abs=0.01 if steep_below == 1.0 else 0.05)
    assert fitted["rule"]["weight"] == pytest.approx(0.4, rel=0.03 if steep_below == 1.0 else 0.1)


def test_ct_rule_over_noise_levels_keeps_the_strength_best_everywhere_and_never_extrapolates():
    """Two strengths: the one whose best rule scores higher wins. A grid that stops below a
    problem's optimum is flagged, and the rule's weight there stays inside the grid."""
    ct = load_bench_script("calibrate_ct_rule")
    rows = _ct_rows_from_power_law(0.4, 1.5, strength=0.05) + _ct_rows_from_power_law(0.4, 1.5, strength=0.07,
                                                                                     peak=34.0)
    assert ct._fit(rows)["rule"]["sigma_ratio"] == 0.05
    truncated = [row for row in _ct_rows_from_power_law(0.4, 1.5)
                 if not (row["noise_relative"] == 0.001 and row["angles"] == 180 and row["weight"] > 16.0)]
    fitted = ct._fit(truncated)
    assert fitted["best_at_grid_edge"] == ["0.001/180"]
    assert fitted["per_problem"]["0.001/180"]["rule_weight"] <= 16.0 * (1 + 1e-9)
    with pytest.raises(ValueError, match="strength"):
        ct._fit([row for row in truncated if not (row["noise_relative"] == 0.03 and row["weight"] != 1.0)])


def test_ct_refit_merges_calibrations_made_at_different_noise_levels(tmp_path, capsys):
    """Files of one noise level each (rows without their own level, as written before) merge into
    one table whose rule is fitted over the noise levels; another slice set is refused."""
    ct = load_bench_script("calibrate_ct_rule")
    rows = _ct_rows_from_power_law(0.4, 1.5)
    common = {"denoiser": "gray", "method": "admm", "problem": "ct", "images": ["a", "b"], "size": 128}
    files = []
    for noise in (0.001, 0.01, 0.03):
        path = tmp_path / f"n{noise}.json"
        table = [{k: v for k, v in row.items() if k != "noise_relative"} for row in rows
                 if row["noise_relative"] == noise]
        path.write_text(json.dumps({**common, "noise_relative": noise, "angles": [60, 180], "table": table}))
        files.append(path)
    out = tmp_path / "merged.json"
    assert ct.refit(files, out) == 0
    merged = json.loads(out.read_text())
    assert merged["noise_relative"] == [0.001, 0.01, 0.03]
    assert merged["rule"]["exponent"] == pytest.approx(1.5, abs=0.02)
    assert ct.refit([out, files[0]], tmp_path / "again.json") == 0  # rows named by level merge again
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(files[0].read_text()), "images": ["c"]}))
    assert ct.refit([files[0], other], None) == 2
    assert "different settings" in capsys.readouterr().err
    limited = tmp_path / "limited.json"  # a missing wedge is not in the law: such rows only check a rule
    limited.write_text(json.dumps({**json.loads(files[1].read_text()), "angle_range": 120.0}))
    assert ct.refit([files[0], limited, files[2]], None) == 2
    assert "limited-angle" in capsys.readouterr().err
    fan = tmp_path / "fan.json"  # nor does another geometry
    fan.write_text(json.dumps({**json.loads(files[1].read_text()), "geometry": "fan"}))
    assert ct.refit([files[0], fan, files[2]], None) == 2
    assert "fan-beam scan (--geometry fan): fit on parallel-beam scans only" in capsys.readouterr().err


def test_ct_calibration_refuses_an_angle_range_outside_a_half_turn(capsys):
    ct = load_bench_script("calibrate_ct_rule")
    for bad in ("0", "-30", "200"):
        with pytest.raises(SystemExit) as stop:
            ct.main(["--angle-range", bad])
        assert stop.value.code == 2
        assert "--angle-range" in capsys.readouterr().err


def test_colour_calibration_solves_rgb_problems_and_its_rule_records_the_mode(tmp_path, capsys):
    """A full (tiny) calibration run on RGB train crops: one 3-channel problem per crop and kernel,
    the colour mode recorded in the file and carried into a model's metadata by export."""
    import numpy as np
    import torch
    from PIL import Image

    from pnp_stable.denoisers import DenoiserConfig, build_denoiser, save_denoiser
    from pnp_stable.training.export import read_calibrated_rule

    train = tmp_path / "data" / "denoising" / "bsds500" / "images" / "train"
    train.mkdir(parents=True)
    yy, xx = np.mgrid[0:40, 0:40] / 40.0
    rgb = np.stack([0.2 + 0.6 * xx, 0.3 + 0.4 * yy, 0.8 - 0.5 * xx * yy], axis=-1)
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(train / "1.jpg", quality=95)
    (tmp_path / "data" / "kernels" / "npy").mkdir(parents=True)
    np.save(tmp_path / "data" / "kernels" / "npy" / "box3.npy", np.full((3, 3), 1 / 9))
    torch.manual_seed(0)
    gray = build_denoiser(DenoiserConfig(width=3, hidden=5, blocks=2, embedding_dim=8, power_size=8)).eval()
    cert = gray.certificate()
    meta = {"certificate": {"lipschitz": cert.lipschitz, "averagedness": cert.averagedness}}
    save_denoiser(gray, tmp_path / "g.pt", {**meta, "channels": 1})
    save_denoiser(gray, tmp_path / "c.pt", {**meta, "channels": 3, "color": {"mode": "opponent"}})

    module = _bench_module()
    common = ["--data", str(tmp_path / "data"), "--images", "1", "--crop", "32", "--kernels", "box3",
              "--noise-levels", "0.02", "--weights", "10", "100", "--sigma-ratios", "1", "--max-iter", "3",
              "--method", "fb"]
    tables = {}
    for model, colour in (("g", None), ("g", "opponent"), ("c", "opponent")):
        out = tmp_path / f"{model}-{colour}.json"
        args = ["--denoiser", str(tmp_path / f"{model}.pt"), *common, "--out", str(out)]
        assert module.main(args + (["--color", colour] if colour else [])) == 0
        result = json.loads(out.read_text())
        assert result.get("color") == colour and len(result["table"]) == 2
        tables[model, colour] = [row["psnr"] for row in result["table"]]
    # RGB problems are not the gray ones; the colour model file is the gray weights in opponent mode
    assert tables["g", "opponent"] != pytest.approx(tables["g", None], abs=1e-3)
    assert tables["c", "opponent"] == pytest.approx(tables["g", "opponent"], abs=1e-6)
    _, method, _, provenance = read_calibrated_rule(f"fb={tmp_path / 'c-opponent.json'}")
    assert method == "fb" and provenance["color"] == "opponent" and provenance["images"] == ["1"]

    capsys.readouterr()
    assert module.main(["--denoiser", str(tmp_path / "c.pt"), *common]) == 2  # a colour model on gray crops
    assert "is a colour model" in capsys.readouterr().err
    refit_out = tmp_path / "refit.json"
    assert module.refit([tmp_path / "c-opponent.json"], refit_out) == 0
    assert json.loads(refit_out.read_text())["color"] == "opponent"
    assert module.refit([tmp_path / "c-opponent.json", tmp_path / "g-None.json"], None) == 2  # colour and gray mixed
