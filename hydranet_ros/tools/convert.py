"""hydranet_convert: turn a reference checkpoint (DrSleep/multi-task-refinenet)
into a self-describing hydranet_ros weights file."""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from ..inference.weights import ModelCard, WeightsError, load_state_dict_strict, save_weights
from ..model import HydraNet
from ..model.presets import PRESETS, get_preset
from ..model.reference_checkpoint import read_reference_checkpoint

REFERENCE_REPO = "https://github.com/DrSleep/multi-task-refinenet"
REFERENCE_LICENCE = "authors' weights: non-commercial use only (see the reference repository's licence)"


def convert(src: Path, dst: Path, dataset: str) -> ModelCard:
    preset = get_preset(dataset)
    state, config = read_reference_checkpoint(src)
    if config.num_classes != len(preset.class_names):
        raise WeightsError(f"{src}: checkpoint has {config.num_classes} classes but dataset {dataset!r} "
                           f"has {len(preset.class_names)}; pick the matching --dataset")
    model = HydraNet(config)
    load_state_dict_strict(model, state, source=str(src))
    card = ModelCard(
        model=config,
        class_names=list(preset.class_names),
        palette=list(preset.palette),
        depth_range=preset.depth_range,
        provenance={
            "source": "converted reference checkpoint",
            "source_file": src.name,
            "reference_repository": REFERENCE_REPO,
            "dataset": dataset,
            "licence": REFERENCE_LICENCE,
            "converted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    )
    save_weights(dst, model, card)
    return card


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hydranet_convert",
        description="Convert a reference multi-task-refinenet checkpoint (e.g. ExpKITTI_joint.ckpt) "
                    "into a hydranet_ros weights file (safetensors with a model card).")
    parser.add_argument("src", type=Path, help="reference checkpoint (.ckpt with a 'state_dict')")
    parser.add_argument("dst", type=Path, help="output weights file (.safetensors)")
    parser.add_argument("--dataset", required=True, choices=sorted(PRESETS),
                        help="class names and palette to record: kitti (6), nyud (40), nyudkitti (46)")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.dst.exists() and not args.overwrite:
        print(f"hydranet_convert: {args.dst} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    try:
        card = convert(args.src, args.dst, args.dataset)
    except (OSError, ValueError) as exc:
        print(f"hydranet_convert: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.dst}: {card.model.num_classes} classes ({args.dataset}), "
          f"heads {', '.join(card.model.head_channels())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
