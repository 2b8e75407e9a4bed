"""hydranet_train: train a HydraNet from a YAML recipe and write a weights file.

    hydranet_train --config config/train_synthetic.yaml [--epochs 3] [--set optim.kind=adamw]
    hydranet_train --config config/train_utkface.yaml --data /path/to/UTKFace
    hydranet_train --resume runs/synthetic_street        # continue a killed run

Flat on purpose, like torchvision's reference scripts: parse the recipe, build
data, model, losses, optimiser and schedule, then loop (train an epoch,
validate, checkpoint). What the recipe trains is its ``task``
(``hydranet_ros.training.tasks``): the task module builds the datasets, the model and
its losses, validates and writes the model card; everything here (optimiser,
schedule, steps, NaN guard, balancing, checkpoints and resume, TensorBoard,
progress bar, the weights file) is the same for every task.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import signal
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..inference.predictor import normalise, resolve_device
from ..inference.weights import ModelCard, WeightsError, save_weights
from .balancing import Balancer, build_balancer
from .checkpoint import (
    BEST,
    LAST,
    CheckpointError,
    EpochSampler,
    SeededSamples,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from .config import Config, ConfigError, dump, load_config
from .losses import TaskLoss
from .tasks import PROG, TrainingError, TrainingTask, load_task
from .tasks.datasets import skipped_count

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


# -- command line and recipe -----------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Train a HydraNet (depth + segmentation, or face attributes: "
                                "the recipe's task) from a YAML recipe and write a hydranet_ros weights file.")
    p.add_argument("--config", type=Path, help="recipe YAML (config/train_*.yaml); optional with --resume")
    p.add_argument("--resume", type=Path, help="a training checkpoint, or a run directory (its last.pt)")
    p.add_argument("--data", help="dataset root (data.root)")
    p.add_argument("--epochs", type=int, help="number of epochs (schedule.epochs)")
    p.add_argument("--output", help="final weights file (.safetensors) or a directory for it")
    p.add_argument("--run-dir", help="where checkpoints and TensorBoard logs go (default runs/<name>)")
    p.add_argument("--device", help="auto, cpu or cuda[:N]")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one recipe value, e.g. --set optim.lr_decoder=0.005 (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="start afresh in a run dir that holds a checkpoint")
    p.add_argument("--print-config", action="store_true", help="print the resolved recipe and exit")
    return p


def resolve_config(args: argparse.Namespace) -> tuple[Config, dict[str, Any] | None]:
    """The recipe (YAML, or the checkpoint's when resuming) with the CLI's overrides applied."""
    overrides = list(args.overrides)
    for flag, key in (("data", "data.root"), ("epochs", "schedule.epochs"), ("output", "output"),
                      ("run_dir", "run_dir"), ("device", "device")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.resume is not None:
        state = load_checkpoint(args.resume)
        if args.config is not None:
            print(f"{PROG}: resuming with the recipe stored in the checkpoint; {args.config} is not read "
                  "(use --set to change single values)", file=sys.stderr)
        return load_config(None, overrides, base=state["config"]), state
    if args.config is None:
        raise ConfigError("pass --config RECIPE.yaml (or --resume RUN_DIR to continue a run)")
    return load_config(args.config, overrides), None


# -- data ------------------------------------------------------------------------------
def train_loader(dataset: Any, config: Config, device: torch.device) -> tuple[DataLoader, EpochSampler]:
    data = config["data"]
    sampler = EpochSampler(len(dataset), config["seed"])
    # the loader's own generator: creating an iterator must not draw from the global RNG
    loader = DataLoader(SeededSamples(dataset, config["seed"]), batch_size=data["batch_size"], sampler=sampler,
                        drop_last=True, num_workers=data["num_workers"], pin_memory=device.type == "cuda",
                        generator=torch.Generator().manual_seed(config["seed"]))
    if len(loader) == 0:
        raise TrainingError(f"the training set has {len(dataset)} samples, fewer than one batch "
                            f"(data.batch_size {data['batch_size']})")
    return loader, sampler


# -- optimisation ----------------------------------------------------------------------
def build_optimizer(config: Config, encoder: nn.Module, decoder: Sequence[nn.Module],
                    balancer: nn.Module) -> torch.optim.Optimizer:
    """Groups: encoder (lr_encoder), decoder and heads (lr_decoder), learned task
    weights (lr_decoder, no weight decay: decay would pull log-variances to 0)."""
    o = config["optim"]
    groups = [{"params": list(encoder.parameters()), "lr": o["lr_encoder"], "name": "encoder"},
              {"params": [p for module in decoder for p in module.parameters()], "lr": o["lr_decoder"],
               "name": "decoder"}]
    balancer_params = list(balancer.parameters())
    if balancer_params:
        groups.append({"params": balancer_params, "lr": o["lr_decoder"], "weight_decay": 0.0, "name": "balancer"})
    if o["kind"] == "sgd":
        return torch.optim.SGD(groups, lr=o["lr_decoder"], momentum=o["momentum"], weight_decay=o["weight_decay"])
    return torch.optim.AdamW(groups, lr=o["lr_decoder"], betas=tuple(o["betas"]), weight_decay=o["weight_decay"])


def build_scheduler(config: Config, optimizer: torch.optim.Optimizer,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step multiplier: linear warm-up, then cosine, step decay or constant.
    A plain closure (not an object) so that the scheduler's state_dict holds no
    recipe values: a resume with more --epochs stretches the schedule."""
    s = config["schedule"]
    total = s["epochs"] * steps_per_epoch
    warmup, start = s["warmup_steps"], s["warmup_start_factor"]
    milestones = [e * steps_per_epoch for e in s["step_epochs"]]

    def factor(step: int) -> float:
        if step < warmup:
            return start + (1.0 - start) * step / warmup
        if s["kind"] == "step":
            return s["gamma"] ** sum(step >= m for m in milestones)
        if s["kind"] == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return s["min_lr_factor"] + (1.0 - s["min_lr_factor"]) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class NonFiniteLoss(TrainingError):
    pass


def train_step(model: nn.Module, batch: Mapping[str, Any], tasks: Sequence[TaskLoss], balancer: Balancer,
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, *, mean: Sequence[float],
               std: Sequence[float], device: torch.device, amp: bool, grad_clip: float) -> dict[str, float]:
    """One optimisation step; returns the per-task losses and ``total``. Raises
    ``NonFiniteLoss`` *before* the update when the loss is NaN or infinite."""
    targets = {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}
    images = normalise(targets.pop("image"), mean, std)  # the predictor's own normalisation
    with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        outputs = model(images)
    results = {task.name: task(outputs, targets) for task in tasks}  # losses in float32, outside autocast
    losses = {name: r.loss for name, r in results.items()}
    total = balancer(losses, {name: r.valid > 0 for name, r in results.items()})
    values = {name: float(loss.detach()) for name, loss in losses.items()}
    values["total"] = float(total.detach())
    if not all(math.isfinite(v) for v in values.values()):
        raise NonFiniteLoss(", ".join(f"{k} {v:.4g}" for k, v in values.items()))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    if grad_clip > 0:
        scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return values


def is_better(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


# -- logging ---------------------------------------------------------------------------
class Logger:
    """TensorBoard when installed and wanted; silently nothing otherwise (after one warning)."""

    def __init__(self, log_dir: Path, enabled: bool, purge_step: int) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print(f"{PROG}: TensorBoard is not installed (pip install tensorboard); logging to the console only",
                  file=sys.stderr)
            return
        # purge_step drops what a killed run logged after the checkpoint we resume from
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step or None)

    def scalars(self, prefix: str, values: Mapping[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def images(self, prefix: str, panels: Sequence[torch.Tensor], step: int) -> None:
        if self.writer is not None:
            for i, panel in enumerate(panels):
                self.writer.add_image(f"{prefix}/{i}", panel.numpy(), step, dataformats="HWC")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """For TensorBoard: nested ``per_class_<metric>`` dicts become ``<metric>_<class>``."""
    flat = {k: float(v) for k, v in metrics.items() if not isinstance(v, dict)}
    for key, per_class in metrics.items():
        if isinstance(per_class, dict):
            flat.update({f"{key.removeprefix('per_class_')}_{name}": float(v) for name, v in per_class.items()})
    return flat


def format_metrics(metrics: Mapping[str, Any], keys: Sequence[str]) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys if k in metrics)


@contextmanager
def stop_on_signal() -> Iterator[dict[str, bool]]:
    """SIGINT/SIGTERM set a flag; the loop saves a checkpoint after the current step and stops."""
    flag = {"stop": False}

    def handler(signum: int, frame: Any) -> None:
        if flag["stop"]:  # a second ^C: give up at once
            raise KeyboardInterrupt
        flag["stop"] = True
        print(f"\n{PROG}: stopping after this step (checkpointing); press ^C again to abort", file=sys.stderr)

    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: no handlers, no graceful stop
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- the script ------------------------------------------------------------------------
def output_path(config: Config) -> Path:
    out = Path(config["output"])
    return out if out.suffix == ".safetensors" else out / f"hydranet_{config['name']}.safetensors"


def train(config: Config, resume: dict[str, Any] | None = None, overwrite: bool = False) -> int:
    """Run (or continue) a training run; returns the exit code."""
    if config["threads"]:
        torch.set_num_threads(config["threads"])
    torch.manual_seed(config["seed"])  # the model's initial weights
    device = resolve_device(config["device"])
    run_dir = Path(config["run_dir"])
    if resume is None and (run_dir / LAST).exists() and not overwrite:
        raise TrainingError(f"{run_dir} already holds a checkpoint; continue it with --resume {run_dir}, "
                            "or pass --overwrite / another --run-dir to start afresh")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump(config))

    task = load_task(config["task"])
    best_metric, best_mode = config["checkpoint"]["best_metric"], config["checkpoint"]["best_mode"]
    if best_metric not in task.METRICS:
        raise ConfigError(f"checkpoint.best_metric {best_metric!r} is not a validation metric of task "
                          f"{config['task']}; choose one of {', '.join(task.METRICS)}")
    train_set, val_set = task.build_datasets(config)
    model, init_description = task.build_model(config, train_set)
    model.to(device).train()
    losses = task.build_tasks(config)  # one per head; the balancer weighs them
    b = config["balancing"]
    balancer = build_balancer(b["kind"], [t.name for t in losses], b["weights"], b["dwa_temperature"],
                              b["initial_log_variance"]).to(device)
    loader, sampler = train_loader(train_set, config, device)
    # the encoder gets lr_encoder, every other part (decoder, heads) lr_decoder
    optimizer = build_optimizer(config, model.encoder,
                                [module for name, module in model.named_children() if name != "encoder"], balancer)
    scheduler = build_scheduler(config, optimizer, len(loader))
    amp = bool(config["optim"]["amp"]) and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    card = task.make_card(config, model, train_set, {})
    epochs = config["schedule"]["epochs"]

    progress: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best": None,
                                "best_epoch": None, "history": []}
    if resume is not None:
        progress.update(restore_checkpoint(resume, model=model, optimizer=optimizer, scheduler=scheduler,
                                           scaler=scaler, balancer=balancer))
        print(f"{PROG}: resumed at epoch {progress['epoch'] + 1}, step {progress['step_in_epoch']} "
              f"(global step {progress['global_step']})")

    def checkpoint(path: Path) -> None:
        save_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                        balancer=balancer, progress=progress, config=config)

    logger = Logger(run_dir / "tb", config["logging"]["tensorboard"], progress["global_step"])
    every = config["checkpoint"]["every_steps"]
    grad_clip = float(config["optim"]["grad_clip"])
    started = time.monotonic()
    try:
        with stop_on_signal() as stop:
            while progress["epoch"] < epochs:
                epoch = progress["epoch"]
                skip = progress["step_in_epoch"]
                sampler.set_epoch(epoch, skip=skip * loader.batch_size)
                bar = tqdm(loader, desc=f"epoch {epoch + 1}/{epochs}", initial=skip, total=skip + len(loader),
                           disable=not config["logging"]["progress"], leave=False, dynamic_ncols=True)
                sums: dict[str, float] = {}
                for batch in bar:
                    try:
                        values = train_step(model, batch, losses, balancer, optimizer, scaler, mean=card.mean,
                                            std=card.std, device=device, amp=amp, grad_clip=grad_clip)
                    except NonFiniteLoss as exc:
                        raise TrainingError(
                            f"loss is not finite at epoch {epoch + 1}, step {progress['step_in_epoch'] + 1} "
                            f"(global step {progress['global_step'] + 1}): {exc}. Lower optim.lr_*, set "
                            f"optim.grad_clip, or check the data; checkpoints written so far are in {run_dir}"
                        ) from None
                    scheduler.step()
                    progress["step_in_epoch"] += 1
                    progress["global_step"] += 1
                    for k, v in values.items():
                        sums[k] = sums.get(k, 0.0) + v
                    n = progress["step_in_epoch"] - skip
                    bar.set_postfix({k: f"{v / n:.3f}" for k, v in sums.items()})
                    step = progress["global_step"]
                    logger.scalars("train", values, step)
                    logger.scalars("balance", balancer.weights(), step)
                    logger.scalars("lr", {g["name"]: g["lr"] for g in optimizer.param_groups}, step)
                    if stop["stop"] or (every and step % every == 0):
                        checkpoint(run_dir / LAST)
                    if stop["stop"]:
                        print(f"{PROG}: interrupted at epoch {epoch + 1}, step {progress['step_in_epoch']}; "
                              f"continue with --resume {run_dir}", file=sys.stderr)
                        return EXIT_INTERRUPTED
                bar.close()
                balancer.end_epoch()
                steps_run = max(1, progress["step_in_epoch"] - skip)
                record: dict[str, Any] = {"epoch": epoch + 1, "train": {k: v / steps_run for k, v in sums.items()}}
                if val_set is not None:
                    metrics, panels = task.evaluate(model, card, val_set, config, device,
                                                    config["logging"]["sample_images"])
                    record["val"] = metrics
                    logger.scalars("val", flat_metrics(metrics), progress["global_step"])
                    logger.images("samples", panels, progress["global_step"])
                progress.update(epoch=epoch + 1, step_in_epoch=0)
                progress["history"].append(record)
                value = record.get("val", {}).get(best_metric, float("nan"))
                improved = is_better(value, progress["best"], best_mode)
                if improved:
                    progress.update(best=value, best_epoch=epoch + 1)
                checkpoint(run_dir / LAST)
                if improved:
                    checkpoint(run_dir / BEST)
                print(f"{PROG}: epoch {epoch + 1}/{epochs}  loss {record['train'].get('total', float('nan')):.4f}  "
                      f"{format_metrics(record.get('val', {}), task.SUMMARY_METRICS)}"
                      + ("  (best)" if improved else ""))
    finally:
        logger.close()

    return export(config, task, model, card, train_set, val_set, progress, init_description,
                  time.monotonic() - started, run_dir)


def export(config: Config, task: TrainingTask, model: nn.Module, card: ModelCard, train_set: Any, val_set: Any,
           progress: Mapping[str, Any], init_description: str, seconds: float, run_dir: Path) -> int:
    """Write the final weights: the best epoch's model (or the last one if nothing was validated)."""
    chosen = "last"
    if progress["best_epoch"] is not None and (run_dir / BEST).is_file():
        model.load_state_dict(load_checkpoint(run_dir / BEST)["model"])
        chosen = "best"
    history = progress["history"]
    epoch = progress["best_epoch"] if chosen == "best" else progress["epoch"]
    final = next((r for r in history if r["epoch"] == epoch), history[-1] if history else {})
    data = config["data"]
    skipped = {"train": skipped_count(train_set), "val": skipped_count(val_set) if val_set is not None else 0}
    provenance = {
        "source": f"trained with {PROG}",
        "recipe": config["name"],
        "dataset": {"kind": data["kind"], "root": data["root"], "train_split": data["train_split"],
                    "val_split": data["val_split"], "train_samples": len(train_set),
                    "val_samples": len(val_set) if val_set is not None else 0, "skipped_samples": skipped},
        "init": init_description,
        "epochs": progress["epoch"],
        "steps": progress["global_step"],
        "exported": f"{chosen} epoch {epoch} (checkpoint.best_metric {config['checkpoint']['best_metric']})",
        "final_metrics": final.get("val", {}),
        "final_train_losses": final.get("train", {}),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        **config.get("provenance", {}),
    }
    card = dataclasses.replace(card, provenance=provenance)
    out = output_path(config)
    save_weights(out, model.cpu(), card)
    if skipped["train"] or skipped["val"]:
        print(f"{PROG}: skipped unusable samples: {skipped['train']} train, {skipped['val']} val "
              "(see the warnings above for their names)")
    print(f"{PROG}: wrote {out} ({chosen} model, epoch {epoch}; "
          f"{format_metrics(final.get('val', {}), task.SUMMARY_METRICS)}) "
          f"after {seconds / 60:.1f} min")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config, resume = resolve_config(args)
        if args.print_config:
            print(dump(config), end="")
            return 0
        return train(config, resume, overwrite=args.overwrite)
    except ConfigError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (TrainingError, CheckpointError, WeightsError, OSError, ValueError) as exc:
        # expected failures (wrong paths, bad data, divergence) get a message, not a traceback
        print(f"{PROG}: {_without_worker_traceback(str(exc))}", file=sys.stderr)
        return EXIT_ERROR


def _without_worker_traceback(message: str) -> str:
    """DataLoader workers re-raise with the worker's whole traceback in the message;
    its last line is the error itself."""
    if "Original Traceback" in message:
        return message.strip().splitlines()[-1]
    return message


if __name__ == "__main__":
    sys.exit(main())
