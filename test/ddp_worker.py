"""hydranet_train as torchrun starts it, with a spy: what the distributed tests run.

    python -m torch.distributed.run --standalone --nproc_per_node 2 test/ddp_worker.py SPY_DIR -- ARGS...

Runs ``hydranet_ros.training.train.main(ARGS)`` in each process and records, in
``SPY_DIR/rank<N>.log``, every file that process writes through the training code
(checkpoints, weights, TensorBoard) and, in ``SPY_DIR/state<N>.pt``, its model and task
balancer state at the end. Environment variables make one process misbehave:

    DDP_FAIL_RANK, DDP_FAIL_STEP    the process and the (1-based) train step
    DDP_FAIL_HOW                    raise (a ValueError, reported like bad data) or exit (dies at once)

``{rank}`` in an argument becomes the process's rank (e.g. a data root only rank 0 has).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import torch

import hydranet_ros.training.loop as L
import hydranet_ros.training.train as T


def spy(log: Path) -> None:
    def record(what: str, path: Any) -> None:
        with log.open("a") as f:
            f.write(f"{what} {path}\n")

    real_save_checkpoint, real_save_weights, real_logger = L.save_checkpoint, L.save_weights, L.Logger.__init__

    def save_checkpoint(path: Any, **kwargs: Any) -> None:
        record("checkpoint", path)
        real_save_checkpoint(path, **kwargs)

    def save_weights(path: Any, *args: Any, **kwargs: Any) -> None:
        record("weights", path)
        real_save_weights(path, *args, **kwargs)

    def logger_init(self: Any, log_dir: Path, enabled: bool, purge_step: int) -> None:
        real_logger(self, log_dir, enabled, purge_step)
        if self.writer is not None:
            record("tensorboard", log_dir)

    L.save_checkpoint, L.save_weights, L.Logger.__init__ = save_checkpoint, save_weights, logger_init


def misbehave(rank: int) -> None:
    if os.environ.get("DDP_FAIL_RANK") != str(rank):
        return
    at, how = int(os.environ["DDP_FAIL_STEP"]), os.environ["DDP_FAIL_HOW"]
    real, count = L.train_step, {"n": 0}

    def step(*args: Any, **kwargs: Any) -> dict[str, float]:
        count["n"] += 1
        if count["n"] == at:
            if how == "exit":
                os._exit(9)  # no message, no cleanup: as if the machine lost the process
            raise ValueError(f"injected failure in rank {rank} at step {at}")
        return real(*args, **kwargs)

    L.train_step = step


def keep_state(directory: Path, rank: int) -> None:
    real = L.export

    def export(run: Any, seconds: float) -> int:
        torch.save({"balancer": run.balancer.state_dict(), "model": run.model.state_dict(),
                    "progress": dict(run.progress)}, directory / f"state{rank}.pt")
        return real(run, seconds)

    L.export = export


def main() -> int:
    spy_dir, separator, *args = sys.argv[1:]
    assert separator == "--", "usage: ddp_worker.py SPY_DIR -- ARGS..."
    rank = int(os.environ["RANK"])
    directory = Path(spy_dir)
    spy(directory / f"rank{rank}.log")
    misbehave(rank)
    keep_state(directory, rank)
    code = T.main([a.replace("{rank}", str(rank)) for a in args])
    print(f"ddp_worker rank {rank}: exit {code}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
