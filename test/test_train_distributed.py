"""hydranet_train under torchrun: two processes on the CPU (Gloo), as a user starts them.

Each torchrun test starts ``python -m torch.distributed.run --standalone`` (a free port of its
own) on ``ddp_worker.py``, which runs ``hydranet_train``'s ``main`` with a spy on what each
process writes and a switch that makes one process fail. They take 15-40 s each on two
shared cores, most of it three Python processes importing torch; the rules (sharding,
batch sizes, bad input) are tested in-process below them.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import hydranet_ros.training.loop as L
import hydranet_ros.training.tasks.depth_segmentation as DS
import hydranet_ros.training.train as T
from hydranet_ros import load_predictor
from hydranet_ros.inference.weights import load_weights
from hydranet_ros.training.checkpoint import LAST, EpochSampler, load_checkpoint
from hydranet_ros.training.config import ConfigError, load_config
from hydranet_ros.training.distributed import Distributed, launched
from hydranet_ros.training.optimisation import base_learning_rates
from hydranet_ros.training.processes import Shape, adapt_progress, batch_per_process, wants_sync_batchnorm
from hydranet_ros.training.step import train_loader

REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "ddp_worker.py"
# the shipped synthetic street recipe, made tiny: 24 training frames of 64x32 (6 steps an epoch on
# 2 processes x 2 frames), 9 validation frames (5 and 4 on 2 processes), a 16-channel decoder, one
# thread per process
TINY = ["--config", str(REPO / "config" / "train_synthetic.yaml"), "--device", "cpu",
        "--set", "threads=1", "--set", "data.options.width=64", "--set", "data.options.height=32",
        "--set", "data.transform.size=[32, 64]", "--set", "data.train_options.num_samples=24",
        "--set", "data.val_options.num_samples=9", "--set", "data.batch_size=2", "--set", "data.val_batch_size=4",
        "--set", "data.num_workers=0", "--set", "model.decoder_width=16", "--set", "schedule.warmup_steps=2",
        "--set", "logging.progress=false"]


def torchrun(tmp_path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 240,
             nproc: int = 2) -> subprocess.CompletedProcess:
    (tmp_path / "spy").mkdir(exist_ok=True)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               str(WORKER), str(tmp_path / "spy"), "--", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def spied(tmp_path: Path, rank: int) -> list[str]:
    log = tmp_path / "spy" / f"rank{rank}.log"
    return log.read_text().split("\n")[:-1] if log.is_file() else []


# -- under torchrun ----------------------------------------------------------------------
def test_two_processes_train_like_one_and_only_rank_0_writes(tmp_path: Path) -> None:
    out = tmp_path / "tiny.safetensors"
    result = torchrun(tmp_path, *TINY, "--run-dir", str(tmp_path / "run"), "--output", str(out),
                      "--epochs", "2", "--set", "balancing.kind=dwa", "--set", "checkpoint.every_steps=4")
    assert result.returncode == 0, result.stderr[-3000:]

    # the predictor loads the weights file
    predictor = load_predictor(out, device="cpu")
    assert predictor.predict(np.zeros((32, 64, 3), np.uint8)).labels.shape == (32, 64)

    # validation on two shares, summed, equals one process evaluating the whole set with those weights
    config = load_config(tmp_path / "run" / "config.yaml")
    _, val_set = DS.build_datasets(config)
    model, card = load_weights(out)
    single, _ = DS.evaluate(model, card, val_set, config, torch.device("cpu"))
    distributed = card.provenance["final_metrics"]
    assert distributed.keys() == single.keys() and card.provenance["processes"] == 2
    for key, value in single.items():
        assert distributed[key] == pytest.approx(value, rel=1e-6), key

    # only rank 0 wrote: checkpoints (every 4 steps and per epoch), TensorBoard, the weights
    assert spied(tmp_path, 1) == []
    written = spied(tmp_path, 0)
    assert f"weights {out}" in written and f"tensorboard {tmp_path / 'run' / 'tb'}" in written
    assert written.count(f"checkpoint {tmp_path / 'run' / LAST}") == 5  # steps 4, 8, 12 and two epoch ends
    assert len(list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))) == 1
    assert result.stdout.count("epoch 2/2") == 1  # one process reports
    assert "training on 2 process(es) with DistributedDataParallel over gloo" in result.stdout

    # every process ends with the same model and the same DWA state, which counts both processes' losses
    states = [torch.load(tmp_path / "spy" / f"state{rank}.pt") for rank in (0, 1)]
    for key, tensor in states[0]["balancer"].items():
        assert torch.equal(tensor, states[1]["balancer"][key]), key
    for key, tensor in states[0]["model"].items():
        assert torch.equal(tensor, states[1]["model"][key]), key
    dwa, history = states[0]["balancer"], states[0]["progress"]["history"]
    assert dwa["history"][1].tolist() == pytest.approx([history[1]["train"]["segm"], history[1]["train"]["depth"]],
                                                       rel=1e-5)
    assert not torch.equal(dwa["current"], torch.ones(2))  # after two epochs the weights have moved


def test_a_run_killed_on_two_processes_resumes_on_one(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "run"
    started = time.monotonic()
    # rank 0 dies without a word at step 9: 3 steps into epoch 2, a checkpoint every step
    result = torchrun(tmp_path, *TINY, "--run-dir", str(run_dir), "--output", str(tmp_path / "out.safetensors"),
                      "--epochs", "2", "--set", "balancing.kind=uncertainty", "--set", "checkpoint.every_steps=1",
                      env={"DDP_FAIL_RANK": "0", "DDP_FAIL_STEP": "9", "DDP_FAIL_HOW": "exit"})
    assert result.returncode != 0 and time.monotonic() - started < 120  # the job ended; nothing hung
    saved = load_checkpoint(run_dir)["progress"]
    assert (saved["epoch"], saved["step_in_epoch"], saved["samples_in_epoch"], saved["world_size"]) == (1, 2, 8, 2)

    changed = ("resuming a run of 2 process(es) on 1: global batch 4 -> 2 (2 per process), 6 -> 12 steps per epoch; "
               "epoch 2 continues after its first 8 samples, the schedule at step 16 (was 8)")
    # one plain process (this test's, no launcher) takes the run up where it stopped; it trains no step here
    runs: list[Any] = []
    monkeypatch.setattr(L, "run_epochs", lambda run: runs.append(run) or T.EXIT_INTERRUPTED)
    assert T.main(["--resume", str(run_dir)]) == T.EXIT_INTERRUPTED
    assert changed in capsys.readouterr().out
    assert not runs[0].dist.enabled and runs[0].forward is runs[0].model  # no DistributedDataParallel
    assert (runs[0].progress["step_in_epoch"], runs[0].progress["global_step"]) == (4, 16)

    # torchrun with one process finishes it, through DistributedDataParallel all the same
    result = torchrun(tmp_path, "--resume", str(run_dir), nproc=1)
    assert result.returncode == 0, result.stderr[-3000:]
    assert changed in result.stdout
    assert "training on 1 process(es) with DistributedDataParallel over gloo" in result.stdout
    done = load_checkpoint(run_dir)["progress"]
    assert (done["epoch"], done["global_step"], done["world_size"]) == (2, 24, 1)
    assert [record["epoch"] for record in done["history"]] == [1, 2]
    load_predictor(tmp_path / "out.safetensors", device="cpu")


def test_a_failing_process_stops_the_job_and_says_why(tmp_path: Path) -> None:
    started = time.monotonic()
    result = torchrun(tmp_path, *TINY, "--run-dir", str(tmp_path / "run"), "--epochs", "3",
                      env={"DDP_FAIL_RANK": "1", "DDP_FAIL_STEP": "3", "DDP_FAIL_HOW": "raise"})
    assert result.returncode != 0 and time.monotonic() - started < 120
    # the failing process logs its own error; the other says it lost it, without a traceback of ours
    assert "[rank 1/2] hydranet_train: injected failure in rank 1 at step 3" in result.stderr
    assert "[rank 0/2] hydranet_train: another process stopped or stopped answering" in result.stderr
    assert "ddp_worker rank 0: exit 1" in result.stdout and "Traceback" not in result.stdout


def test_a_rank_without_its_data_stops_every_process_with_one_message(tmp_path: Path) -> None:
    images = tmp_path / "data0" / "train" / "images"
    images.mkdir(parents=True)
    for name in "abcd":
        (images / f"{name}.png").write_bytes(b"")  # never read: the job stops before training
    result = torchrun(tmp_path, *TINY, "--set", "data.kind=folder", "--set", "data.val_split=null",
                      "--set", "data.options={}", "--set", "data.train_options={}",
                      "--data", str(tmp_path / "data{rank}"), "--run-dir", str(tmp_path / "run"))
    assert result.returncode != 0
    assert result.stderr.count(f"hydranet_train: rank 1: dataset folder '{tmp_path / 'data1' / 'train'}' "
                               "does not exist") == 1
    assert "[rank" not in result.stderr  # said once, by rank 0, for both
    assert "ddp_worker rank 0: exit 1" in result.stdout and "ddp_worker rank 1: exit 1" in result.stdout


def test_ctrl_c_stops_every_process_after_a_step_and_leaves_a_checkpoint(tmp_path: Path) -> None:
    """As a terminal does it: SIGINT to torchrun and its workers (one process group)."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "hydranet_ros.training.train", *TINY, "--run-dir", str(run_dir), "--epochs", "50",
               "--set", "checkpoint.every_steps=3"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 180
        while not (run_dir / LAST).is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (run_dir / LAST).is_file(), "no checkpoint appeared"
        os.killpg(process.pid, signal.SIGINT)
        interrupted = time.monotonic()
        stdout, stderr = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode != 0 and time.monotonic() - interrupted < 60
    # rank 0 says where it stopped, once, and the checkpoint is that position
    stops = re.findall(r"hydranet_train: interrupted at epoch (\d+), step (\d+); continue with --resume", stderr)
    assert len(stops) == 1, stderr[-3000:]
    saved = load_checkpoint(run_dir)["progress"]
    assert (saved["epoch"] + 1, saved["step_in_epoch"]) == tuple(int(v) for v in stops[0])


# -- the collectives, on two spawned processes ---------------------------------------------
def _collectives(rank: int, port: int) -> None:
    """Runs in each of two processes (torch.multiprocessing); an assertion fails the test."""
    import torch.distributed as dist_

    from hydranet_ros.offline.metrics import DepthMetrics, FaceAttributeMetrics, SegmentationMetrics
    from hydranet_ros.training.distributed import AgreedError
    from hydranet_ros.training.reporting import flat_metrics

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    two = Distributed(rank=rank, world_size=2, timeout_s=60)
    two.start()
    try:
        # an odd-sized set evaluated on two shares (5 and 4 samples) and summed: the same
        # accumulators, not only the same ratios, as one process evaluating all of it
        def evaluate(samples: Any) -> list[Any]:
            metrics = [SegmentationMetrics(4), DepthMetrics(), FaceAttributeMetrics(["a", "b", "c"])]
            for sample in samples:
                g = torch.Generator().manual_seed(sample)
                metrics[0].update(torch.randint(0, 4, (50,), generator=g), torch.randint(0, 4, (50,), generator=g))
                metrics[1].update(torch.rand(50, generator=g) * 10 + 1, torch.rand(50, generator=g) * 10 + 1)
                metrics[2].update(torch.rand(6, generator=g) * 80, torch.randint(0, 2, (6,), generator=g),
                                  torch.randint(0, 3, (6,), generator=g), torch.rand(6, generator=g) * 80,
                                  torch.randint(0, 2, (6,), generator=g), torch.randint(0, 3, (6,), generator=g))
            return metrics

        dataset = list(range(9))
        share = two.shard(dataset)
        assert len(share) == (5, 4)[rank]
        whole, local = evaluate(dataset), evaluate(share)
        two.sum_metrics(*local)
        assert torch.equal(local[0].confusion, whole[0].confusion) and int(local[0].confusion.sum()) == 9 * 50
        assert (local[1].count, local[2].count) == (whole[1].count, whole[2].count) == (9 * 50, 9 * 6)
        assert local[1]._sums == pytest.approx(whole[1]._sums, rel=1e-12)
        for ours, reference in zip(local, whole):
            assert flat_metrics(ours.compute()) == pytest.approx(flat_metrics(reference.compute()), rel=1e-12)

        # agreeing on failures: who failed is named; the same failure everywhere is said once
        for errors, expected, usage in (([None, ValueError("no data")], "rank 1: no data", False),
                                        ([ConfigError("bad"), ConfigError("bad")], "bad", True)):
            try:
                two.agree(errors[rank])
                raise AssertionError("agree did not raise")
            except AgreedError as exc:
                assert (str(exc), exc.usage) == (expected, usage)
        two.agree(None)
        assert two.any(rank == 1) and not two.any(False)

        # state that must match: NaN matches NaN, a difference stops both processes
        two.check_equal("state", torch.tensor([1.0, float("nan")]))
        try:
            two.check_equal("the balancer's state", torch.tensor([float(rank)]))
            raise AssertionError("check_equal did not raise")
        except T.TrainingError as exc:
            assert "the balancer's state differ between processes (rank 0 vs [1])" in str(exc)

        # running sums: the total on rank 0 (checkpoints) or everywhere (the epoch's end)
        sums = [torch.tensor([rank + 1.0]), torch.tensor([rank + 1.0])]
        two.consolidate(sums[:1])
        two.consolidate(sums[1:], everywhere=True)
        assert sums[0].item() == (3.0 if rank == 0 else 0.0) and sums[1].item() == 3.0
        # a parameter without a gradient on one process averages as a zero gradient
        weight = torch.nn.Parameter(torch.zeros(2))
        weight.grad = torch.full((2,), 4.0) if rank == 0 else None
        two.average_gradients([weight])
        assert weight.grad.tolist() == [2.0, 2.0]
        dist_.barrier()
    finally:
        two.stop()


def test_the_collectives_training_relies_on() -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_collectives, args=(port,), nprocs=2, start_method="spawn")


# -- the rules, in one process -----------------------------------------------------------
def consumed(size: int, seed: int, epoch: int, world_size: int, batch: int, steps: int, skip: int = 0) -> list[int]:
    """The samples ``steps`` steps of every process take from position ``skip`` of the epoch."""
    taken = []
    for rank in range(world_size):
        sampler = EpochSampler(size, seed, rank=rank, world_size=world_size)
        sampler.set_epoch(epoch, skip)
        taken += [index for _, index in list(sampler)[:steps * batch]]
    return taken


@pytest.mark.parametrize("resume_on", [1, 2, 4])
def test_a_mid_epoch_position_resumes_on_any_number_of_processes(resume_on: int) -> None:
    size, batch, seed, epoch = 37, 3, 5, 2
    sampler = EpochSampler(size, seed)
    sampler.set_epoch(epoch)
    order = sampler.order()
    first = consumed(size, seed, epoch, world_size=2, batch=batch, steps=4)
    assert sorted(first) == sorted(order[:24])  # 4 steps x 3 samples x 2 processes: a prefix of the order
    rest = consumed(size, seed, epoch, world_size=resume_on, batch=1, steps=size, skip=24)
    # the rest of the epoch once each, plus DistributedSampler's padding from the epoch's start
    assert sorted(rest) == sorted(order[24:] + order[:-(size - 24) % resume_on])
    if resume_on == 2:  # on as many processes as before: exactly what the uninterrupted run takes
        for rank in range(2):
            straight, resumed = (EpochSampler(size, seed, rank=rank, world_size=2) for _ in range(2))
            straight.set_epoch(epoch)
            resumed.set_epoch(epoch, skip=24)
            assert list(straight)[4 * batch:] == list(resumed)


def test_batch_sizes_and_the_world_size_must_fit_the_data() -> None:
    config = load_config(None, ["data.global_batch_size=8"])
    assert batch_per_process(config, 2) == 4 and batch_per_process(load_config(None, []), 4) == 8
    with pytest.raises(ConfigError, match="data.global_batch_size 8 does not divide among 3 processes"):
        batch_per_process(config, 3)
    two = Distributed(rank=0, world_size=2)
    with pytest.raises(T.TrainingError, match=r"3 samples, fewer than one batch \(data.batch_size 2\) on each of "
                                              r"2 processes"):
        train_loader(list(range(3)), load_config(None, []), torch.device("cpu"), 2, two)
    with pytest.raises(T.TrainingError, match="1 samples, fewer than one batch"):  # more processes than samples
        train_loader([0], load_config(None, []), torch.device("cpu"), 1, two)


def test_syncbatchnorm_is_chosen_while_building_and_made_over_the_device_group(monkeypatch: pytest.MonkeyPatch) -> None:
    two, cpu, cuda = Distributed(rank=0, world_size=2), torch.device("cpu"), torch.device("cuda", 0)
    default, on = load_config(None, []), load_config(None, ["distributed.sync_batchnorm=true"])
    with pytest.raises(ConfigError, match="SyncBatchNorm runs on GPUs only"):
        wants_sync_batchnorm(on, cpu, "gloo", two)
    # automatic: depth + segmentation under a launcher over NCCL
    assert wants_sync_batchnorm(default, cuda, "nccl", two) and wants_sync_batchnorm(on, cuda, "gloo", two)
    assert not any([wants_sync_batchnorm(default, cpu, "gloo", two), wants_sync_batchnorm(default, cuda, "gloo", two),
                    wants_sync_batchnorm(default, cuda, "nccl", Distributed()),
                    wants_sync_batchnorm(load_config(None, ["task=face_attributes", "data.kind=utkface"]), cuda,
                                         "nccl", two)])

    # the conversion waits for the device's group (NCCL), which exists only after use_device
    nccl_group = object()
    monkeypatch.setattr(Distributed, "use_device", lambda self, device, backend: setattr(self, "device_group",
                                                                                       nccl_group))
    monkeypatch.setattr(L, "DistributedDataParallel", lambda model, device_ids, process_group: (model, process_group))
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4))
    parameters = list(model.parameters())
    run = SimpleNamespace(dist=Distributed(rank=0, world_size=2), device=cpu, backend="nccl", sync_batchnorm=True,
                          model=model, forward=model)
    L.distribute(run)  # type: ignore[arg-type]
    converted = [m for m in run.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(converted) == 2 and all(isinstance(m, torch.nn.SyncBatchNorm) for m in converted)
    assert all(m.process_group is nccl_group for m in converted)
    assert run.forward == (run.model, nccl_group)
    # the optimiser, built before, still holds the model's parameters
    assert all(a is b for a, b in zip(parameters, run.model.parameters(), strict=True))


def test_a_launcher_makes_even_one_process_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TORCHELASTIC_RUN_ID", "RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(name, raising=False)
    assert not launched() and not Distributed().enabled  # a plain hydranet_train
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not launched()
    monkeypatch.setenv("MASTER_ADDR", "node0")  # a launcher of its own (SLURM, Kubernetes)
    assert launched()
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun
    assert launched()
    alone = Distributed(world_size=1, launched=True)
    assert alone.enabled and alone.where() == "[rank 0/1] "


@pytest.mark.parametrize("overrides, world_size, factor", [
    ([], 4, 1.0),                                                           # scale_lr off
    (["distributed.scale_lr=true"], 4, 4.0),                                # 4 x data.batch_size
    (["distributed.scale_lr=true"], 1, 1.0),
    (["distributed.scale_lr=true", "data.global_batch_size=16"], 4, 1.0),  # the global batch stays 16
])
def test_scale_lr_follows_the_global_batch(overrides: list[str], world_size: int, factor: float) -> None:
    config = load_config(None, ["optim.lr_encoder=0.001", "optim.lr_decoder=0.01", *overrides])
    assert base_learning_rates(config, world_size) == pytest.approx(
        {"encoder": 0.001 * factor, "decoder": 0.01 * factor, "balancer": 0.01 * factor})


def test_resuming_on_another_world_size_keeps_the_epochs_position() -> None:
    progress: dict[str, Any] = {"epoch": 3, "step_in_epoch": 5, "global_step": 35, "samples_in_epoch": 40,
                                **Shape(4, 8, 80, 10).record()}
    message = adapt_progress(progress, Shape(1, 2, 80, 40), per_process=2)
    assert progress["samples_in_epoch"] == 40 and progress["step_in_epoch"] == 20
    assert progress["global_step"] == 3 * 40 + 20 and progress["world_size"] == 1
    assert message and "global batch 8 -> 2" in message and "10 -> 40 steps per epoch" in message
    same = {"epoch": 0, "step_in_epoch": 2, "global_step": 2, **Shape(1, 2, 80, 40).record()}  # an old checkpoint
    assert adapt_progress(same, Shape(1, 2, 80, 40), per_process=2) is None and same["samples_in_epoch"] == 4
    with pytest.raises(T.TrainingError, match="the training set has 81 samples, the checkpoint's run had 80"):
        adapt_progress({**progress, "samples_in_epoch": 4}, Shape(1, 2, 81, 40), per_process=2)


def test_nccl_without_cuda_stops_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert T.main([*TINY, "--run-dir", str(tmp_path / "run"), "--set", "distributed.backend=nccl"]) == T.EXIT_USAGE
    err = capsys.readouterr().err
    assert "distributed.backend nccl needs CUDA, but this process trains on cpu" in err and "Traceback" not in err


def test_a_checkpoint_of_another_model_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run_dir = tmp_path / "run"
    assert T.main([*TINY, "--run-dir", str(run_dir), "--epochs", "1", "--set", "data.val_split=null",
                   "--output", str(tmp_path / "w.safetensors")]) == 0
    assert T.main(["--resume", str(run_dir), "--set", "model.decoder_width=32"]) == T.EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("hydranet_train: the checkpoint does not fit the recipe's model: 29 tensors differ in "
                          "shape, e.g. decoder.stages.0.laterals.0.weight (checkpoint [16, 320, 1, 1], model "
                          "[32, 320, 1, 1])")
    yaml.safe_load((run_dir / "config.yaml").read_text())  # the run's recipe is untouched
