"""Training checkpoints that resume the same trajectory, and the data order they rely on.

A checkpoint holds everything the next step depends on: model, optimiser,
scheduler, AMP scaler and task-balancer state, the position (epoch, step in
epoch, global step), the best metric so far, every RNG state (python, numpy,
torch, CUDA) and the recipe. It is written with ``atomic_write``, so a run
killed while saving leaves the previous file intact.

Data order and augmentation do not depend on RNG state carried across
batches: ``EpochSampler`` shuffles with a generator seeded from (seed, epoch),
and ``SeededSamples`` seeds the global RNGs from (seed, epoch, index) around
each sample's loading. So a resumed run - from an epoch boundary or mid-epoch,
with any number of DataLoader workers - sees exactly the samples and random
crops/flips the uninterrupted run would have seen.
"""
from __future__ import annotations

import contextlib
import random
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..common.atomic import atomic_write

LAST, BEST = "last.pt", "best.pt"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or does not fit the run."""


# -- RNG state -------------------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        # as a tensor: checkpoints load with weights_only=True, which refuses numpy arrays
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])


def _misfit(expected: Mapping[str, torch.Tensor], saved: Mapping[str, Any]) -> str:
    """One line on how ``saved`` differs from ``expected`` ("" if it fits)."""
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    shapes = [k for k in expected if k in saved and tuple(saved[k].shape) != tuple(expected[k].shape)]
    parts = []
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} tensors differ in shape, e.g. {k} (checkpoint {list(saved[k].shape)}, "
                     f"model {list(expected[k].shape)})")
    if missing:
        parts.append(f"{len(missing)} tensors missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} tensors the model does not have, e.g. {unexpected[0]}")
    return "; ".join(parts)


def _as_tuple(value: Any) -> Any:
    # random.setstate needs tuples all the way down
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


def derive_seed(*parts: int) -> int:
    """A well-mixed 32-bit seed from several integers (numpy accepts at most 2**32 - 1)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch (CPU) for the block, then put their states back,
    so per-sample seeding in the main process does not disturb the training RNG."""
    saved = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


# -- reproducible data order -----------------------------------------------------------
class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys: this process's share of an epoch whose order is a
    permutation seeded from (seed, epoch), starting ``skip`` samples into that order.

    Shared out as ``DistributedSampler`` does: process r of W takes positions r, r + W,
    r + 2W ... of the order, padded with its first samples to a multiple of W. After k steps
    of B samples on every process the positions used are exactly the first k * B * W, a prefix
    of the order; so a mid-epoch position is one number of samples, whatever the number of
    processes, and a run resumes on another world size by sharing out the rest of the order.
    With W = 1 this is the single-process order with its mid-epoch resume.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        return torch.randperm(self.size, generator=generator).tolist()

    def indices(self) -> list[int]:
        """The sample indices this process takes, in order."""
        order = self.order()
        rest = order[self.skip:]
        pad = -len(rest) % self.world_size
        while pad > 0:  # repeats the epoch's first samples, as DistributedSampler does
            rest += order[:pad]
            pad -= min(pad, len(order))
        return rest[self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in self.indices()])

    def __len__(self) -> int:
        return -(-max(self.size - self.skip, 0) // self.world_size)


class SeededSamples(Dataset):
    """Wraps a dataset; ``dataset[(epoch, index)]`` loads sample ``index`` with the
    RNGs seeded from (seed, epoch, index), so its random augmentation is a pure
    function of that key. A plain integer key loads without seeding."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        if isinstance(key, tuple):
            epoch, index = key
            with seeded_rng(derive_seed(self.seed, epoch, index)):
                return self.dataset[index]
        return self.dataset[key]


# -- checkpoint files ------------------------------------------------------------------
def save_checkpoint(path: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any, scaler: Any, balancer: torch.nn.Module, progress: Mapping[str, Any],
                    config: Mapping[str, Any]) -> None:
    """Write a resumable checkpoint atomically. ``progress`` holds the position
    (epoch, step_in_epoch, global_step), the best metric and any history."""
    state = {
        "version": CHECKPOINT_VERSION,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "balancer": balancer.state_dict(),
        "progress": dict(progress),
        "rng": capture_rng_state(),
        "config": dict(config),
    }
    atomic_write(Path(path), lambda tmp: torch.save(state, tmp))


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run directory meaning its ``last.pt``."""
    path = Path(path)
    if path.is_dir():
        path = path / LAST
        if not path.is_file():
            raise CheckpointError(f"no {LAST} in run directory {str(path.parent)!r}; nothing to resume")
    elif not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found")
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (without unpickling code) and check that it is one of ours."""
    path = resolve_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated files raise several error types
        raise CheckpointError(f"{path}: not a readable training checkpoint ({exc})") from None
    missing = {"version", "model", "optimizer", "scheduler", "scaler", "balancer", "progress", "rng", "config"}
    if not isinstance(state, dict) or missing - set(state):
        raise CheckpointError(f"{path}: not a hydranet training checkpoint "
                              f"(is it a weights file? those are for init.weights, not --resume)")
    if state["version"] != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state['version']} is not supported")
    return state


def restore_checkpoint(state: Mapping[str, Any], *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                       scheduler: Any, scaler: Any, balancer: torch.nn.Module) -> dict[str, Any]:
    """Load every component's state and the RNGs; returns the saved progress."""
    misfit = _misfit(model.state_dict(), state["model"])
    if misfit:
        raise CheckpointError(f"the checkpoint does not fit the recipe's model: {misfit} (was model.* or the "
                              "dataset's classes changed since it was written?)")
    try:
        model.load_state_dict(state["model"])
        balancer.load_state_dict(state["balancer"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"the checkpoint does not fit this run's task balancing or optimiser ({first}); "
                              "was balancing.kind or optim.kind changed since it was written?") from None
    scheduler.load_state_dict(state["scheduler"])
    if state["scaler"]:  # empty when the run was on the CPU, where AMP is off
        scaler.load_state_dict(state["scaler"])
    restore_rng_state(state["rng"])
    return dict(state["progress"])
