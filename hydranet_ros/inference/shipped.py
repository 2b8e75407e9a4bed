"""Where the package's shipped weights file is, for every tool and the node alike."""
from __future__ import annotations

import sys
from pathlib import Path

from .weights import WeightsError

PACKAGE = "hydranet_ros"

# relative to the package's share directory
SHIPPED_WEIGHTS = "weights/hydranet_synthetic_street.safetensors"


def shipped_weights_candidates() -> list[Path]:
    """Where the demo weights may be: the ament share directory when ROS 2 is sourced, the
    source checkout, then ``<sys.prefix>/share`` (where pip puts setup.py's data_files)."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / SHIPPED_WEIGHTS)
    except (ImportError, LookupError, ValueError):  # no ROS, or the package is not installed in it
        pass
    candidates.append(Path(__file__).resolve().parent.parent / SHIPPED_WEIGHTS)
    candidates.append(Path(sys.prefix) / "share" / PACKAGE / SHIPPED_WEIGHTS)
    return candidates


def shipped_weights() -> Path:
    candidates = shipped_weights_candidates()
    for path in candidates:
        if path.is_file():
            return path
    raise WeightsError("the shipped demo weights are missing; looked for "
                       + ", ".join(str(p) for p in candidates) + " (pass --weights FILE)")
