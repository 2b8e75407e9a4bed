"""Where the package's shipped weights file is: one lookup for the node and every tool.

The file can be in four places, depending on how the package was installed: the
ament share directory (colcon, or a sourced ROS 2), the source checkout (an editable
pip install, or running from a clone), ``<prefix>/share`` (where pip puts setup.py's
``data_files``) or the per-user prefix (``pip install --user``). Looking up the ament
index must never stop a tool: with ``ament_index_python`` importable but
``AMENT_PREFIX_PATH`` unset (a pip ROS 2, a half-sourced shell) it raises an
``OSError``, and the other places are still good.
"""
from __future__ import annotations

import site
import sys
from pathlib import Path

from .weights import WeightsError

PACKAGE = "hydranet_ros"

# relative to the package's share directory (and to the source checkout). The default is the
# file that does best on real streets (README, "Real streets"): synthetic scenes for depth,
# a teacher's labels on MIT-licensed dash-cam frames for classes. weights/ also ships the
# synthetic-only file the earlier releases used by default.
SHIPPED_WEIGHTS = "weights/hydranet_street_distill.safetensors"

# hydranet_ros/inference/shipped.py -> the folder that holds hydranet_ros/ and weights/
_CHECKOUT = Path(__file__).resolve().parents[2]


def ament_share_directory() -> Path | None:
    """The package's ament share directory, or None wherever the ament index cannot say."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    # ImportError: no ROS; LookupError: not installed in it (PackageNotFoundError is a
    # KeyError); OSError: AMENT_PREFIX_PATH unset or empty; ValueError: a bad name
    except (ImportError, LookupError, OSError, ValueError):
        return None


def shipped_weights_candidates() -> list[Path]:
    """Every place the shipped weights may be, most specific first."""
    candidates = []
    share = ament_share_directory()
    if share is not None:
        candidates.append(share / SHIPPED_WEIGHTS)
    candidates.append(_CHECKOUT / SHIPPED_WEIGHTS)
    for prefix in (sys.prefix, site.USER_BASE):
        if prefix:
            candidates.append(Path(prefix) / "share" / PACKAGE / SHIPPED_WEIGHTS)
    return list(dict.fromkeys(candidates))   # without repeats, in order


def shipped_weights(hint: str = "pass --weights FILE") -> Path:
    """The shipped demo weights file; a ``WeightsError`` naming every place looked at and
    ending with ``hint``, what the caller's user should do instead."""
    candidates = shipped_weights_candidates()
    for path in candidates:
        if path.is_file():
            return path
    raise WeightsError("the shipped weights are missing; looked for "
                       + ", ".join(str(p) for p in candidates) + f" ({hint})")
