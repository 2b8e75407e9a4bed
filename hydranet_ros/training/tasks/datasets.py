"""The training and validation sets a recipe's ``data`` section describes, for any task.

``data.extra_train_sets`` joins more training sets to the first (asymmetric annotations).
An entry ``{kind: teacher, root: RECORDING, options: {teacher: FILE, classes: ..., class_map: ...}}``
is a recording without labels that a teacher network labels once (``training.distill``),
cached in ``<run_dir>/teacher_labels`` (``options.cache_dir`` elsewhere); its frames train
segmentation only. An entry's ``transform`` changes single augmentation settings for that
set (e.g. another zoom range for real frames), over ``data.transform``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from torch.utils.data import ConcatDataset

from ..config import Config
from ..data.sample import Transform
from ..recipe_files import TEACHER
from ..tasks import TrainingError

# build_teacher_dataset's arguments the trainer supplies itself
_TRAINER_ARGUMENTS = ("class_names", "palette", "transform", "strict")

TransformFactory = Callable[[Mapping[str, Any]], Transform]


def build_recipe_datasets(config: Config, make_train_transform: TransformFactory,
                          val_transform: Transform | None) -> tuple[Any, Any | None]:
    """``make_train_transform(settings)`` builds the task's augmentation from ``data.transform``
    (updated by an extra set's own ``transform``)."""
    from ..data import build_dataset

    data = config["data"]
    strict = {"strict": True} if data["on_bad_sample"] == "stop" and data["kind"] != "synthetic" else {}
    common = {**data["options"], **strict}
    train_transform = make_train_transform(data["transform"])
    train = build_dataset(data["kind"], data["root"], data["train_split"], train_transform, **common,
                          **data["train_options"])
    if data["extra_train_sets"]:
        extras = []
        for extra in data["extra_train_sets"]:
            transform = (make_train_transform({**data["transform"], **extra["transform"]}) if extra.get("transform")
                         else train_transform)
            if extra.get("kind") == TEACHER:
                extras.append(build_teacher_set(extra, train, transform, config, strict=bool(strict)))
            else:
                extras.append(build_dataset(extra.get("kind", data["kind"]), extra.get("root"),
                                            extra.get("split", data["train_split"]), transform, **strict,
                                            **extra.get("options", {})))
        train = JointDataset([train] + extras)
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


def build_teacher_set(extra: Mapping[str, Any], primary: Any, transform: Transform, config: Config,
                      strict: bool) -> Any:
    """The teacher-labelled frames of ``extra["root"]`` in the primary set's classes."""
    import inspect

    from ..distill import build_teacher_dataset

    options = dict(extra.get("options") or {})
    accepted = [name for name, p in inspect.signature(build_teacher_dataset).parameters.items()
                if p.kind is p.KEYWORD_ONLY and name not in _TRAINER_ARGUMENTS]
    unknown = sorted(set(options) - set(accepted))
    if unknown or not extra.get("root") or "teacher" not in options:
        problem = (f"unknown option(s) {', '.join(unknown)}" if unknown
                   else "needs root (the recording) and options.teacher (a .tflite or .onnx file)")
        raise TrainingError(f"data.extra_train_sets: a {TEACHER} set {problem}; its options: {', '.join(accepted)}")
    options.setdefault("cache_dir", Path(config["run_dir"]) / "teacher_labels")
    return build_teacher_dataset(extra["root"], class_names=primary.class_names, palette=primary.palette,
                                 transform=transform, strict=strict, **options)


def train_provenance(dataset: Any) -> list[dict[str, Any]]:
    """What each training set that records its origin says about it (a teacher's sets:
    the teacher, the recording, the frames and the class map), for the model card."""
    parts = dataset.datasets if isinstance(dataset, JointDataset) else [dataset]
    return [dict(d.provenance) for d in parts if getattr(d, "provenance", None)]


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
