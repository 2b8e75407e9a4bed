"""The training run: build everything (``prepare``), agree across processes that it could
start, train and validate epoch after epoch with checkpoints, then write the weights file.

Under torchrun every process runs this (``distributed``): each trains on its share of every
batch through DistributedDataParallel, and they agree on everything that decides what happens
next (errors, a stop request, the loss, validation metrics). Only rank 0 writes files.
It runs a little over 300 lines because the epoch loop and what every process must agree
on inside it read best in one place.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..common.atomic import atomic_write
from ..inference.weights import ModelCard, save_weights
from .balancing import Balancer, build_balancer
from .checkpoint import BEST, LAST, EpochSampler, load_checkpoint, restore_checkpoint, save_checkpoint
from .config import Config, ConfigError, dump
from .distributed import SINGLE, AgreedError, Distributed
from .losses import TaskLoss
from .optimisation import base_learning_rates, build_optimizer, build_scheduler, move_schedule
from .processes import (Shape, adapt_progress, backend, batch_per_process, process_device, sync_batchnorm,
                        wants_sync_batchnorm)
from .recipe_files import check_recipe_files
from .reporting import Logger, flat_metrics, format_metrics
from .signals import stop_on_signal
from .step import NonFiniteLoss, is_better, train_loader, train_step
from .tasks import PROG, TrainingError, TrainingTask, load_task
from .tasks.datasets import train_provenance

EXIT_INTERRUPTED = 130
# what a failure that is not a bug looks like: a message, no traceback
EXPECTED_ERRORS: tuple[type[Exception], ...] = (TrainingError, OSError, ValueError)  # CheckpointError, WeightsError are ValueErrors


def output_path(config: Config) -> Path:
    out = Path(config["output"])
    return out if out.suffix == ".safetensors" else out / f"hydranet_{config['name']}.safetensors"


@dataclasses.dataclass
class Run:
    """Everything the training loop works with."""

    config: Config
    dist: Distributed
    device: torch.device
    backend: str
    sync_batchnorm: bool      # converted once the device's process group exists (``distribute``)
    run_dir: Path
    task: TrainingTask
    train_set: Any
    val_set: Any
    model: nn.Module          # the model itself: optimiser, checkpoints, validation and export use it
    losses: list[TaskLoss]
    balancer: Balancer
    loader: DataLoader
    sampler: EpochSampler
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp: bool
    card: ModelCard
    init_description: str
    progress: dict[str, Any]
    forward: nn.Module = dataclasses.field(init=False)  # what the step calls: the model, or its DDP wrapper

    def __post_init__(self) -> None:
        self.forward = self.model

    def checkpoint(self, path: Path) -> None:
        """Write ``path`` from rank 0; every process calls it (the balancer's sums are collected)."""
        self.dist.consolidate(self.balancer.accumulators())
        if self.dist.is_main:
            save_checkpoint(path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                            scaler=self.scaler, balancer=self.balancer, progress=self.progress, config=self.config)


def prepare(config: Config, resume: dict[str, Any] | None, overwrite: bool, dist: Distributed) -> Run:
    """Build everything in this process; nothing here talks to the other processes."""
    check_recipe_files(config)  # before minutes of teacher labelling or data indexing
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])  # the model's initial weights
    device = process_device(config, dist)
    chosen_backend = backend(config, device)
    use_sync_batchnorm = wants_sync_batchnorm(config, device, chosen_backend, dist)
    run_dir = Path(config["run_dir"])
    if dist.is_main:
        if resume is None and (run_dir / LAST).exists() and not overwrite:
            raise TrainingError(f"{run_dir} already holds a checkpoint; continue it with --resume {run_dir}, "
                                "or pass --overwrite / another --run-dir to start afresh")
        run_dir.mkdir(parents=True, exist_ok=True)
        text = dump(config)
        atomic_write(run_dir / "config.yaml", lambda tmp: tmp.write_text(text))

    task = load_task(config["task"])
    best_metric = config["checkpoint"]["best_metric"]
    if best_metric not in task.METRICS:
        raise ConfigError(f"checkpoint.best_metric {best_metric!r} is not a validation metric of task "
                          f"{config['task']}; choose one of {', '.join(task.METRICS)}")
    per_process = batch_per_process(config, dist.world_size)
    train_set, val_set = task.build_datasets(config)
    model, init_description = task.build_model(config, train_set)
    model.to(device).train()
    losses = task.build_tasks(config)  # one per head; the balancer weighs them
    b = config["balancing"]
    balancer = build_balancer(b["kind"], [t.name for t in losses], b["weights"], b["dwa_temperature"],
                              b["initial_log_variance"]).to(device)
    loader, sampler = train_loader(train_set, config, device, per_process, dist)
    # the encoder gets lr_encoder, every other part (decoder, heads) lr_decoder
    optimizer = build_optimizer(config, model.encoder,
                                [module for name, module in model.named_children() if name != "encoder"], balancer,
                                dist.world_size)
    scheduler = build_scheduler(config, optimizer, len(loader))
    amp = bool(config["optim"]["amp"]) and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    shape = Shape(dist.world_size, per_process * dist.world_size, len(train_set), len(loader))
    progress: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "samples_in_epoch": 0,
                                "train_sums": {}, "train_steps": 0, "best": None, "best_epoch": None,
                                "history": [], **shape.record()}
    if resume is not None:
        progress.update(restore_checkpoint(resume, model=model, optimizer=optimizer, scheduler=scheduler,
                                           scaler=scaler, balancer=balancer))
        changed = adapt_progress(progress, shape, per_process)
        move_schedule(scheduler, optimizer, progress["global_step"], base_learning_rates(config, dist.world_size))
        if not dist.is_main:  # rank 0 holds the sums so far; the others start from zero
            for tensor in balancer.accumulators():
                tensor.zero_()
        if dist.is_main:
            if changed:
                print(f"{PROG}: {changed}")
            print(f"{PROG}: resumed at epoch {progress['epoch'] + 1}, step {progress['step_in_epoch']} "
                  f"(global step {progress['global_step']})")
    card = task.make_card(config, model, train_set, {})
    return Run(config, dist, device, chosen_backend, use_sync_batchnorm, run_dir, task, train_set, val_set, model,
               losses, balancer, loader, sampler, optimizer, scheduler, scaler, amp, card, init_description, progress)


def train(config: Config, resume: dict[str, Any] | None = None, overwrite: bool = False,
          dist: Distributed = SINGLE) -> int:
    """Run (or continue) a training run; returns the exit code. Every process of a
    distributed job calls this."""
    run, error = None, None
    try:
        run = prepare(config, resume, overwrite, dist)
    except EXPECTED_ERRORS as exc:
        if not dist.enabled:
            raise
        error = exc
    dist.agree(error)  # every process stops here if any of them could not start
    assert run is not None
    if dist.enabled:
        distribute(run)
    started = time.monotonic()
    code = run_epochs(run)
    if code != 0:
        return code
    return export(run, time.monotonic() - started)


def distribute(run: Run) -> None:
    """Every process: open the device's process group, convert to SyncBatchNorm over it if the
    run wants that, and wrap the model in DistributedDataParallel."""
    dist = run.dist
    dist.use_device(run.device, run.backend)
    if run.sync_batchnorm:
        run.model = sync_batchnorm(run.model, dist)
    ids = [run.device.index] if run.device.type == "cuda" else None
    run.forward = DistributedDataParallel(run.model, device_ids=ids, process_group=dist.device_group)
    if dist.is_main:
        print(f"{PROG}: training on {dist.world_size} process(es) with DistributedDataParallel over "
              f"{run.backend}" + (" and SyncBatchNorm" if run.sync_batchnorm else ""))


def run_epochs(run: Run) -> int:
    """Train and validate up to ``schedule.epochs``; 0, or EXIT_INTERRUPTED after a stop request."""
    config, dist, progress = run.config, run.dist, run.progress
    epochs = config["schedule"]["epochs"]
    logger = Logger(run.run_dir / "tb", config["logging"]["tensorboard"] and dist.is_main, progress["global_step"])
    every = config["checkpoint"]["every_steps"]
    grad_clip = float(config["optim"]["grad_clip"])
    try:
        with stop_on_signal(announce=dist.is_main) as stop:
            while progress["epoch"] < epochs:
                epoch = progress["epoch"]
                run.sampler.set_epoch(epoch, skip=progress["samples_in_epoch"])
                skip = progress["step_in_epoch"]
                bar = tqdm(run.loader, desc=f"epoch {epoch + 1}/{epochs}", initial=skip,
                           total=skip + len(run.loader), leave=False, dynamic_ncols=True,
                           disable=not (config["logging"]["progress"] and dist.is_main))
                sums = progress["train_sums"]  # carried in the checkpoint: a resumed epoch reports all its steps
                for batch in bar:
                    try:
                        values = train_step(run.forward, batch, run.losses, run.balancer, run.optimizer, run.scaler,
                                            mean=run.card.mean, std=run.card.std, device=run.device, amp=run.amp,
                                            grad_clip=grad_clip, dist=dist)
                    except NonFiniteLoss as exc:  # every process has the same values: they all stop here
                        raise AgreedError(
                            f"loss is not finite at epoch {epoch + 1}, step {progress['step_in_epoch'] + 1} "
                            f"(global step {progress['global_step'] + 1}): {exc}. Lower optim.lr_*, set "
                            f"optim.grad_clip, or check the data; checkpoints written so far are in {run.run_dir}",
                            usage=False) from None
                    run.scheduler.step()
                    progress["step_in_epoch"] += 1
                    progress["global_step"] += 1
                    progress["samples_in_epoch"] += progress["global_batch"]
                    progress["train_steps"] += 1
                    for k, v in values.items():
                        sums[k] = sums.get(k, 0.0) + v
                    bar.set_postfix({k: f"{v / progress['train_steps']:.3f}" for k, v in sums.items()})
                    step = progress["global_step"]
                    logger.scalars("train", values, step)
                    logger.scalars("balance", run.balancer.weights(), step)
                    logger.scalars("lr", {g["name"]: g["lr"] for g in run.optimizer.param_groups}, step)
                    stopping = dist.any(stop["stop"])  # one process's ^C stops them all after the same step
                    if stopping or (every and step % every == 0):
                        run.checkpoint(run.run_dir / LAST)
                    if stopping:
                        if dist.is_main:
                            print(f"{PROG}: interrupted at epoch {epoch + 1}, step {progress['step_in_epoch']}; "
                                  f"continue with --resume {run.run_dir}", file=sys.stderr)
                        return EXIT_INTERRUPTED
                bar.close()
                end_epoch(run, epoch, logger)
    finally:
        logger.close()
    return 0


def end_epoch(run: Run, epoch: int, logger: Logger) -> None:
    """Close the epoch: task weights, validation on every process's share, history, checkpoints."""
    config, dist, progress = run.config, run.dist, run.progress
    dist.consolidate(run.balancer.accumulators(), everywhere=True)
    run.balancer.end_epoch()
    record: dict[str, Any] = {"epoch": epoch + 1, "train": {k: v / max(1, progress["train_steps"])
                                                            for k, v in progress["train_sums"].items()}}
    if run.val_set is not None:
        dist.broadcast_buffers(run.model)  # evaluate (and save) rank 0's batch-norm statistics everywhere
        metrics, panels = run.task.evaluate(run.model, run.card, run.val_set, config, run.device,
                                            config["logging"]["sample_images"] if dist.is_main else 0, dist=dist)
        record["val"] = metrics
        logger.scalars("val", flat_metrics(metrics), progress["global_step"])
        logger.images("samples", panels, progress["global_step"])
    dist.check_equal("the task balancer's state and the model's parameters", torch.cat(
        [t.detach().double().flatten().cpu() for t in run.balancer.state_dict().values()]
        + [p.detach().double().sum().reshape(1).cpu() for p in run.model.parameters()]))
    progress.update(epoch=epoch + 1, step_in_epoch=0, samples_in_epoch=0, train_sums={}, train_steps=0)
    progress["history"].append(record)
    best_metric, best_mode = config["checkpoint"]["best_metric"], config["checkpoint"]["best_mode"]
    value = record.get("val", {}).get(best_metric, float("nan"))
    improved = is_better(value, progress["best"], best_mode)
    if improved:
        progress.update(best=value, best_epoch=epoch + 1)
    run.checkpoint(run.run_dir / LAST)
    if improved:
        run.checkpoint(run.run_dir / BEST)
    if dist.is_main:
        print(f"{PROG}: epoch {epoch + 1}/{config['schedule']['epochs']}  loss "
              f"{record['train'].get('total', float('nan')):.4f}  "
              f"{format_metrics(record.get('val', {}), run.task.SUMMARY_METRICS)}" + ("  (best)" if improved else ""))


def export(run: Run, seconds: float) -> int:
    """Write the final weights from rank 0: the best epoch's model (or the last one if nothing was validated)."""
    config, progress, dist = run.config, run.progress, run.dist
    skipped_names = {"train": set(), "val": set()}
    for names in dist.gather({"train": list(getattr(run.train_set, "skipped", ()) or ()),
                              "val": list(getattr(run.val_set, "skipped", ()) or ())}):
        for split in skipped_names:
            skipped_names[split].update(names[split])
    if not dist.is_main:
        return 0
    model = run.model
    chosen = "last"
    if progress["best_epoch"] is not None and (run.run_dir / BEST).is_file():
        model.load_state_dict(load_checkpoint(run.run_dir / BEST)["model"])
        chosen = "best"
    history = progress["history"]
    epoch = progress["best_epoch"] if chosen == "best" else progress["epoch"]
    final = next((r for r in history if r["epoch"] == epoch), history[-1] if history else {})
    data = config["data"]
    skipped = {split: len(names) for split, names in skipped_names.items()}
    provenance = {
        "source": f"trained with {PROG}",
        "recipe": config["name"],
        "dataset": {"kind": data["kind"], "root": data["root"], "train_split": data["train_split"],
                    "val_split": data["val_split"], "train_samples": len(run.train_set),
                    "val_samples": len(run.val_set) if run.val_set is not None else 0, "skipped_samples": skipped},
        "init": run.init_description,
        **({"teacher_labelled_data": sets} if (sets := train_provenance(run.train_set)) else {}),
        "epochs": progress["epoch"],
        "steps": progress["global_step"],
        "processes": dist.world_size,
        "exported": f"{chosen} epoch {epoch} (checkpoint.best_metric {config['checkpoint']['best_metric']})",
        "final_metrics": final.get("val", {}),
        "final_train_losses": final.get("train", {}),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        **config.get("provenance", {}),
    }
    card = dataclasses.replace(run.card, provenance=provenance)
    out = output_path(config)
    save_weights(out, model.cpu(), card)
    if skipped["train"] or skipped["val"]:
        print(f"{PROG}: skipped unusable samples: {skipped['train']} train, {skipped['val']} val "
              "(see the warnings above for their names)")
    print(f"{PROG}: wrote {out} ({chosen} model, epoch {epoch}; "
          f"{format_metrics(final.get('val', {}), run.task.SUMMARY_METRICS)}) "
          f"after {seconds / 60:.1f} min")
    return 0
