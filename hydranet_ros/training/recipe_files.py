"""The files a recipe names, checked before anything is built.

A recipe's relative paths (``data.root``, ``model.encoder_weights``, a teacher and its
recording ...) are read from the working directory, like every path on the command line:
the shipped recipes are written for ``hydranet_train`` started in the project root (e.g.
``../shared/data/coral/...``). Labelling a recording with a teacher takes minutes, so a
missing encoder file found only afterwards would waste them: ``check_recipe_files`` names
every missing file at once, first, and reads the encoder file (a wrong ``.tflite``, such as
a teacher's, is otherwise found only when the model is built, after the labelling).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..inference.weights import WeightsError
from .config import Config, ConfigError
from .tasks.encoder_files import encoder_from_file

TEACHER = "teacher"  # the extra_train_sets kind of a teacher-labelled recording


def recipe_files(config: Config) -> list[tuple[str, str]]:
    """(recipe key, path) of every file or recording the recipe names and needs to exist."""
    named: list[tuple[str, str]] = []
    for key, value in (("model.encoder_weights", config["model"]["encoder_weights"]),
                       ("init.weights", config["init"]["weights"]),
                       ("init.reference_checkpoint", config["init"]["reference_checkpoint"])):
        if value:
            named.append((key, str(value)))
    for index, extra in enumerate(config["data"]["extra_train_sets"]):
        if isinstance(extra, dict) and extra.get("kind") == TEACHER:
            where = f"data.extra_train_sets[{index}]"
            if extra.get("root"):
                named.append((f"{where}.root", str(extra["root"])))
            teacher = (extra.get("options") or {}).get("teacher")
            if teacher:
                named.append((f"{where}.options.teacher", str(teacher)))
    return named


def check_recipe_files(config: Config) -> None:
    """ConfigError naming each missing file, its recipe key, and where relative paths were looked for."""
    missing = [f"{key} {path!r}" for key, path in recipe_files(config) if not Path(path).expanduser().exists()]
    if missing:
        relative = any(not Path(p).expanduser().is_absolute() for _, p in recipe_files(config))
        where = f" (relative paths are read from the working directory, {os.getcwd()})" if relative else ""
        raise ConfigError(f"not found: {'; '.join(missing)}{where}")
    check_encoder_file(config)


def check_encoder_file(config: Config) -> None:
    """Read ``model.encoder_weights`` and fit it to ``model.backbone``'s encoder, as building the
    model will (a second or two for a ``.tflite``, which is converted); WeightsError naming the
    recipe key and the file when it is not such an encoder."""
    path = config["model"]["encoder_weights"]
    if not path:
        return
    try:
        encoder_from_file(path, config["model"]["backbone"])
    except WeightsError as error:
        raise WeightsError(f"model.encoder_weights: {error}") from None
