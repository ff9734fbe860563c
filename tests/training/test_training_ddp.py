"""DDP through torchrun on CPU (gloo, 2 processes): gradients are averaged across ranks."""

import json
import os
import subprocess
import sys

import torch
import torch.nn.functional as F

from pnp_stable.denoisers import build_denoiser
from pnp_stable.training import preset
from pnp_stable.training.checkpoint import load_checkpoint
from pnp_stable.training.data import PatchSampler, training_image_paths


def test_two_process_gloo_step_equals_the_step_on_both_batches_and_a_time_limit_stops_every_rank_there(
        image_folder, tmp_path):
    """One torchrun launch (each costs seconds) checks both: the ranks' first step is the one-process
    step on both ranks' batches, and under a time limit of 0 the ranks agree (an all-reduce) to stop
    after it, together, and exit cleanly, although 50 steps were asked for."""
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pnp_stable.training.run", "--preset", "tiny", "--train", str(image_folder),
           "--run-dir", str(run_dir), "--set", "steps=50", "--set", "grad_clip=0", "--set", "warmup_steps=1",
           "--time-limit", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    start = json.loads((run_dir / "log.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["world_size"] == 2
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert state["step"] == 1
    trained = state["model"]

    # reference: one process, one Adam step on the mean loss over rank 0's and rank 1's batches
    config = preset("tiny", [str(image_folder)], str(tmp_path / "ref"), grad_clip=0, warmup_steps=1)
    torch.manual_seed(config.seed)
    model = build_denoiser(config.model)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    sampler = PatchSampler(training_image_paths(config.train_dirs), 1, config.patch_size,
                           (config.sigma_min, config.sigma_max))
    batches = [sampler.batch(config.batch_size, 0, config.seed, rank) for rank in (0, 1)]
    clean = torch.cat([b[0] for b in batches])
    noisy = torch.cat([b[1] for b in batches])
    sigma = torch.cat([b[2] for b in batches])
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    F.mse_loss(model(noisy, sigma), clean).backward()
    optimizer.step()
    for name, param in model.named_parameters():
        torch.testing.assert_close(trained[name], param.detach(), rtol=1e-4, atol=1e-6)
    assert not torch.equal(trained["network.1.linear.weight"], initial["network.1.linear.weight"])
    # rank 0's own batch alone gives a different step: the comparison above is not vacuous
    alone = build_denoiser(config.model)
    alone.load_state_dict(initial)
    alone.train()
    optimizer = torch.optim.Adam(alone.parameters(), lr=config.lr)
    F.mse_loss(alone(batches[0][1], batches[0][2]), batches[0][0]).backward()
    optimizer.step()
    assert any(not torch.allclose(trained[n], p.detach(), rtol=1e-4, atol=1e-6) for n, p in alone.named_parameters())


def _stop_reason_on_rank(rank, store_path, results_path):
    import threading

    import torch.distributed as dist

    from pnp_stable.training.loop import _stop_reason

    dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=2)
    try:
        signalled = threading.Event()
        if rank == 1:  # only rank 1 got the signal; neither has a deadline
            signalled.set()
        first = _stop_reason(signalled, None, 2, torch.device("cpu"))
        # no signal anywhere, rank 0's clock has run out
        second = _stop_reason(threading.Event(), 0.0 if rank == 0 else None, 2, torch.device("cpu"))
        third = _stop_reason(threading.Event(), None, 2, torch.device("cpu"))
        with open(f"{results_path}.{rank}", "w") as f:
            json.dump([first, second, third], f)
    finally:
        dist.destroy_process_group()


def test_a_stop_signal_or_deadline_seen_by_one_rank_stops_every_rank(tmp_path):
    """A SIGTERM or a deadline that only one rank has seen yet must stop both at the same step;
    otherwise the other waits forever in the next step's all-reduce."""
    import torch.multiprocessing as mp

    results = tmp_path / "reasons"
    mp.spawn(_stop_reason_on_rank, args=(str(tmp_path / "store"), str(results)), nprocs=2, join=True)
    for rank in (0, 1):
        assert json.loads((tmp_path / f"reasons.{rank}").read_text()) == ["terminated", "time_limit", None]
