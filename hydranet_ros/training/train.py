"""hydranet_train: train a HydraNet from a YAML recipe and write a weights file.

    hydranet_train --config config/train_synthetic.yaml [--epochs 3] [--set optim.kind=adamw]
    hydranet_train --config config/train_utkface.yaml --data /path/to/UTKFace
    hydranet_train --resume runs/synthetic_street        # continue a killed run
    torchrun --nproc_per_node=4 -m hydranet_ros.training.train --config ...   # several GPUs

Flat on purpose, like torchvision's reference scripts: parse the recipe, build
data, model, losses, optimiser and schedule, then loop (train an epoch,
validate, checkpoint): ``loop``. What the recipe trains is its ``task``
(``hydranet_ros.training.tasks``): the task module builds the datasets, the model and
its losses, validates and writes the model card; everything else (optimiser,
schedule, steps, NaN guard, balancing, checkpoints and resume, TensorBoard,
progress bar, the weights file, several processes) is the same for every task.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Iterator

from ..inference.weights import WeightsError
from .balancing import build_balancer
from .checkpoint import load_checkpoint
from .config import Config, ConfigError, dump, load_config
from .distributed import DEFAULT_TIMEOUT_S, AgreedError, Distributed, environment, is_peer_lost, launched
from .loop import EXIT_INTERRUPTED, EXPECTED_ERRORS, output_path, train
from .optimisation import build_optimizer, build_scheduler
from .step import train_step
from .tasks import PROG, TrainingError

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_USAGE", "TrainingError", "WeightsError", "build_balancer",
           "build_optimizer", "build_scheduler", "main", "output_path", "train", "train_step"]

EXIT_ERROR, EXIT_USAGE = 1, 2


# -- command line and recipe -----------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Train a HydraNet (depth + segmentation, or face attributes: "
                                "the recipe's task) from a YAML recipe and write a hydranet_ros weights file. "
                                "Under torchrun, trains on several processes (GPUs).")
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


def resolve_config(args: argparse.Namespace, announce: bool = True) -> tuple[Config, dict[str, Any] | None]:
    """The recipe (YAML, or the checkpoint's when resuming) with the CLI's overrides applied."""
    overrides = list(args.overrides)
    for flag, key in (("data", "data.root"), ("epochs", "schedule.epochs"), ("output", "output"),
                      ("run_dir", "run_dir"), ("device", "device")):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.resume is not None:
        state = load_checkpoint(args.resume)
        if args.config is not None and announce:
            print(f"{PROG}: resuming with the recipe stored in the checkpoint; {args.config} is not read "
                  "(use --set to change single values)", file=sys.stderr)
        return load_config(None, overrides, base=state["config"]), state
    if args.config is None:
        raise ConfigError("pass --config RECIPE.yaml (or --resume RUN_DIR to continue a run)")
    return load_config(args.config, overrides), None


# -- the script ------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rank, world_size, local_rank = environment()
    except TrainingError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # the recipe is read before the processes connect (it holds their timeout); a failure
    # to read it is agreed on like any other, so that rank 0 reports it once
    config, resume, error = None, None, None
    try:
        config, resume = resolve_config(args, announce=rank == 0)
    except EXPECTED_ERRORS as exc:
        error = exc
    timeout = config["distributed"]["timeout_s"] if config is not None else DEFAULT_TIMEOUT_S
    dist = Distributed(rank, world_size, local_rank, timeout, launched=launched())
    try:
        dist.start()
        dist.agree(error)
        if error is not None:
            raise error
        assert config is not None
        if args.print_config:
            if dist.is_main:
                print(dump(config), end="")
            return 0
        with _quiet_unless(dist.is_main):  # rank 0 reports progress; every process reports its errors
            return train(config, resume, overwrite=args.overwrite, dist=dist)
    except AgreedError as exc:  # raised on every process: rank 0 says it
        if dist.is_main:
            print(f"{PROG}: {_without_worker_traceback(str(exc))}", file=sys.stderr)
        return EXIT_USAGE if exc.usage else EXIT_ERROR
    except ConfigError as exc:
        print(f"{dist.where()}{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EXPECTED_ERRORS as exc:
        # expected failures (wrong paths, bad data, divergence) get a message, not a traceback
        print(f"{dist.where()}{PROG}: {_without_worker_traceback(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except RuntimeError as exc:
        if not (dist.enabled and is_peer_lost(exc)):
            raise
        first = str(exc).strip().splitlines()[0]
        print(f"{dist.where()}{PROG}: another process stopped or stopped answering ({first}); "
              "its own message says why", file=sys.stderr)
        return EXIT_ERROR
    finally:
        dist.stop()


@contextlib.contextmanager
def _quiet_unless(speak: bool) -> Iterator[None]:
    """Standard output (progress and results, not errors) only where ``speak``."""
    if speak:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def _without_worker_traceback(message: str) -> str:
    """DataLoader workers re-raise with the worker's whole traceback in the message;
    its last line is the error itself."""
    if "Original Traceback" in message:
        return message.strip().splitlines()[-1]
    return message


if __name__ == "__main__":
    sys.exit(main())
