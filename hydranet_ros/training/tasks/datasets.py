"""The training and validation sets a recipe's ``data`` section describes, for any task."""
from __future__ import annotations

from typing import Any, Sequence

from torch.utils.data import ConcatDataset

from ..config import Config
from ..data.sample import Transform
from ..tasks import TrainingError


def build_recipe_datasets(config: Config, train_transform: Transform | None,
                          val_transform: Transform | None) -> tuple[Any, Any | None]:
    from ..data import build_dataset

    data = config["data"]
    strict = {"strict": True} if data["on_bad_sample"] == "stop" and data["kind"] != "synthetic" else {}
    common = {**data["options"], **strict}
    train = build_dataset(data["kind"], data["root"], data["train_split"], train_transform, **common,
                          **data["train_options"])
    if data["extra_train_sets"]:
        train = JointDataset([train] + [
            build_dataset(extra.get("kind", data["kind"]), extra.get("root"), extra.get("split", data["train_split"]),
                          train_transform, **strict, **extra.get("options", {}))
            for extra in data["extra_train_sets"]])
    if len(train) == 0:
        raise TrainingError(f"training set {data['kind']} at {data['root']!r} (split {data['train_split']!r}) is empty")
    val = None
    if data["val_split"] is not None:
        val = build_dataset(data["kind"], data["root"], data["val_split"], val_transform, **common,
                            **data["val_options"])
        if len(val) == 0:
            raise TrainingError(f"validation set {data['kind']} at {data['root']!r} "
                                f"(split {data['val_split']!r}) is empty")
    if data["verify"]:
        for dataset in (train, val):
            if hasattr(dataset, "verify"):
                dataset.verify()  # fills ``skipped`` in this process (workers keep their own)
    return train, val


class JointDataset(ConcatDataset):
    """Several training sets with one class list, e.g. KITTI depth-only plus KITTI
    semantic labels-only samples (the paper's asymmetric annotations)."""

    def __init__(self, datasets: Sequence[Any]) -> None:
        first = datasets[0]
        for other in datasets[1:]:
            if list(other.class_names) != list(first.class_names):
                raise TrainingError(f"data.extra_train_sets: {type(other).__name__} has other classes "
                                    f"({len(other.class_names)}) than {type(first).__name__} ({len(first.class_names)})")
        super().__init__(datasets)
        self.class_names, self.palette = first.class_names, first.palette

    @property
    def skipped(self) -> list[str]:
        return [name for d in self.datasets for name in getattr(d, "skipped", ())]

    def verify(self) -> list[str]:
        for d in self.datasets:
            if hasattr(d, "verify"):
                d.verify()
        return self.skipped


def skipped_count(dataset: Any) -> int:
    return len(getattr(dataset, "skipped", ()) or ())
