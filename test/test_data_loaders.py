"""Dataset loaders on tiny fixtures that reproduce each dataset's file names and encodings."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hydranet_ros.model.presets import KITTI6, NYUD40
from hydranet_ros.training.data import (
    CityscapesDataset,
    FolderDataset,
    KittiDepthDataset,
    KittiSemanticDataset,
    NyudDataset,
    SampleError,
    build_dataset,
    eval_transforms,
)

H, W = 6, 8


def write_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def write_rgb(path: Path, seed: int = 0, size: tuple[int, int] = (H, W)) -> np.ndarray:
    """Writes a random image; returns it as RGB."""
    rgb = np.random.default_rng(seed).integers(0, 256, size + (3,), dtype=np.uint8)
    write_png(path, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return rgb


def tiled(values: list[int], dtype: type) -> np.ndarray:
    """An (H, W) map whose first row holds ``values`` and whose other pixels repeat values[0]."""
    array = np.full((H, W), values[0], dtype=dtype)
    array[0, : len(values)] = values
    return array


def check_contract(sample: dict) -> None:
    assert sample["image"].dtype == torch.uint8 and sample["image"].shape[0] == 3
    assert sample["depth"].dtype == torch.float32 and sample["labels"].dtype == torch.int64
    assert sample["depth"].shape == sample["labels"].shape == sample["image"].shape[1:]
    assert sample["has_depth"].dtype == torch.bool and sample["has_depth"].dim() == 0
    assert sample["has_labels"].dtype == torch.bool and sample["has_labels"].dim() == 0
    if not sample["has_depth"]:
        assert (sample["depth"] == 0).all()
    if not sample["has_labels"]:
        assert (sample["labels"] == 255).all()


# -- Cityscapes -----------------------------------------------------------------------------
def make_cityscapes(root: Path) -> np.ndarray:
    city = "aachen"
    rgb = write_rgb(root / "leftImg8bit/train" / city / f"{city}_000000_000019_leftImg8bit.png")
    write_png(root / "gtFine/train" / city / f"{city}_000000_000019_gtFine_labelIds.png",
              tiled([7, 26, 0, 23, 8, 9, 33], np.uint8))
    write_png(root / "disparity/train" / city / f"{city}_000000_000019_disparity.png",
              tiled([25601, 0, 1, 257, 12801], np.uint16))
    camera = root / "camera/train" / city / f"{city}_000000_000019_camera.json"
    camera.parent.mkdir(parents=True)
    camera.write_text(json.dumps({"extrinsic": {"baseline": 0.2, "pitch": 0.04, "roll": 0.0, "x": 1.7, "y": 0.1,
                                                "yaw": -0.01, "z": 1.2},
                                  "intrinsic": {"fx": 2000.0, "fy": 2000.0, "u0": 1000.0, "v0": 500.0}}))
    # a second frame with labels but no disparity
    write_rgb(root / "leftImg8bit/train" / city / f"{city}_000001_000019_leftImg8bit.png", seed=1)
    write_png(root / "gtFine/train" / city / f"{city}_000001_000019_gtFine_labelIds.png", tiled([21], np.uint8))
    return rgb


def test_cityscapes_decodes_train_ids_and_disparity_depth(tmp_path: Path) -> None:
    rgb = make_cityscapes(tmp_path)
    ds = CityscapesDataset(tmp_path, "train")
    assert len(ds) == 2 and len(ds.class_names) == 19 and len(ds.palette) == 19
    assert ds.class_names[13] == "car" and ds.palette[0] == (128, 64, 128)
    sample = ds[0]
    check_contract(sample)
    assert sample["name"] == "aachen_000000_000019"
    assert torch.equal(sample["image"], torch.from_numpy(rgb).permute(2, 0, 1))
    # labelIds road 7 -> 0, car 26 -> 13, unlabeled 0 -> 255, sky 23 -> 10, sidewalk 8 -> 1,
    # parking 9 -> 255 (not evaluated), bicycle 33 -> 18
    assert sample["labels"][0, :7].tolist() == [0, 13, 255, 10, 1, 255, 18]
    # disparity (v - 1) / 256: 25601 -> 100 px -> 0.2 m * 2000 px / 100 px = 4 m; 0 and 1 are invalid
    assert sample["depth"][0, :5].tolist() == pytest.approx([4.0, 0.0, 0.0, 400.0, 8.0])
    assert bool(sample["has_depth"]) and bool(sample["has_labels"])
    other = ds[1]
    check_contract(other)
    assert not other["has_depth"] and other["has_labels"] and (other["labels"] == 8).all()


def test_cityscapes_missing_split_names_the_path(tmp_path: Path) -> None:
    make_cityscapes(tmp_path)
    with pytest.raises(FileNotFoundError, match="leftImg8bit.*val"):
        CityscapesDataset(tmp_path, "val")


# -- KITTI ----------------------------------------------------------------------------------
def test_kitti_depth_benchmark_layout(tmp_path: Path) -> None:
    drive = "2011_09_26_drive_0001_sync"
    gt = tmp_path / "depth/train" / drive / "proj_depth/groundtruth"
    write_png(gt / "image_02/0000000005.png", tiled([5120, 0, 256, 65535, 384], np.uint16))
    rgb = write_rgb(tmp_path / "raw/2011_09_26" / drive / "image_02/data/0000000005.png")
    write_png(gt / "image_03/0000000005.png", tiled([512], np.uint16))  # its raw frame was not downloaded
    with pytest.warns(RuntimeWarning, match="1 depth maps .* no raw frame"):
        ds = KittiDepthDataset(tmp_path / "depth", "train", raw_root=tmp_path / "raw")
    assert len(ds) == 1 and len(ds.skipped) == 1 and "image_03" in ds.skipped[0]
    sample = ds[0]
    check_contract(sample)
    assert sample["name"] == f"{drive}_image_02_0000000005"
    assert torch.equal(sample["image"], torch.from_numpy(rgb).permute(2, 0, 1))
    assert sample["depth"][0, :5].tolist() == [20.0, 0.0, 1.0, 65535 / 256, 1.5]  # v / 256, exact in float32
    assert bool(sample["has_depth"]) and not sample["has_labels"]


def test_kitti_semantic_maps_cityscapes_ids(tmp_path: Path) -> None:
    write_rgb(tmp_path / "training/image_2/000000_10.png")
    write_png(tmp_path / "training/semantic/000000_10.png", tiled([7, 8, 26, 21, 0, 11], np.uint8))
    write_rgb(tmp_path / "testing/image_2/000000_10.png", seed=2)
    sample = KittiSemanticDataset(tmp_path, "training")[0]
    check_contract(sample)
    assert sample["labels"][0, :6].tolist() == [0, 1, 13, 8, 255, 2]
    assert sample["has_labels"] and not sample["has_depth"] and sample["name"] == "000000_10"
    test_sample = KittiSemanticDataset(tmp_path, "testing")[0]
    check_contract(test_sample)
    assert not test_sample["has_labels"]
    with pytest.raises(ValueError, match="split"):
        KittiSemanticDataset(tmp_path, "validation")


# -- NYUDv2 ---------------------------------------------------------------------------------
def make_nyud(root: Path) -> None:
    for stem, seed in (("000464", 0), ("000465", 1)):
        write_rgb(root / f"rgb/{stem}.png", seed)
        write_png(root / f"masks/{stem}.png", tiled([0, 39, 255, 5], np.uint8))
    write_png(root / "depth/000464.png", tiled([5000, 0, 12345, 65535], np.uint16))
    (root / "train.txt").write_text("rgb/000464.png\tmasks/000464.png\tdepth/000464.png\n"
                                    "# a comment\n"
                                    "rgb/000465.png\tmasks/000465.png\t-\n")


def test_nyud_list_file_and_depth_scale(tmp_path: Path) -> None:
    make_nyud(tmp_path)
    ds = NyudDataset(tmp_path, "train")
    assert len(ds) == 2 and ds.class_names == list(NYUD40.class_names)
    first, second = ds[0], ds[1]
    check_contract(first)
    check_contract(second)
    assert first["name"] == "000464"
    assert first["depth"][0, :4].tolist() == pytest.approx([1.0, 0.0, 2.469, 13.107])  # v / 5000
    assert first["labels"][0, :4].tolist() == [0, 39, 255, 5]
    assert second["has_labels"] and not second["has_depth"]
    # the same files matched by folder, without a list
    assert len(NyudDataset(tmp_path, None)) == 2
    with pytest.raises(FileNotFoundError, match="val"):
        NyudDataset(tmp_path, "val")


# -- plain folder ---------------------------------------------------------------------------
def test_folder_layout_with_asymmetric_annotations(tmp_path: Path) -> None:
    write_rgb(tmp_path / "images/a.png", 0)
    write_png(tmp_path / "depth/a.png", tiled([256, 0, 512], np.uint16))
    write_png(tmp_path / "labels/a.png", tiled([2, 255, 5], np.uint8))
    write_rgb(tmp_path / "images/b.png", 1)
    np.save(tmp_path / "depth/b.npy", np.full((H, W), 7.5, dtype=np.float64))
    write_rgb(tmp_path / "images/c.png", 2)
    write_png(tmp_path / "labels/c.png", tiled([1], np.uint8))
    write_rgb(tmp_path / "images/d.png", 3)
    write_png(tmp_path / "depth/d.tiff", np.full((H, W), 3.25, dtype=np.float32))
    ds = FolderDataset(tmp_path)
    assert [f.name for f in ds.files] == ["a", "b", "c", "d"]
    assert ds.class_names == list(KITTI6.class_names) and ds.palette == list(KITTI6.palette)
    a, b, c, d = (ds[i] for i in range(4))
    for sample in (a, b, c, d):
        check_contract(sample)
    assert a["depth"][0, :3].tolist() == [1.0, 0.0, 2.0] and a["labels"][0, :3].tolist() == [2, 255, 5]
    assert b["has_depth"] and not b["has_labels"] and (b["depth"] == 7.5).all()
    assert c["has_labels"] and not c["has_depth"]
    assert (d["depth"] == 3.25).all()
    assert FolderDataset(tmp_path, depth_scale=1 / 1000)[0]["depth"][0, 0].item() == pytest.approx(0.256)


def test_corrupt_and_mismatched_samples_are_skipped_and_counted(tmp_path: Path) -> None:
    write_rgb(tmp_path / "images/a_good.png")
    (tmp_path / "images/b_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    write_rgb(tmp_path / "images/c_mismatch.png", 3)
    write_png(tmp_path / "depth/c_mismatch.png", np.zeros((H + 1, W), dtype=np.uint16))
    ds = FolderDataset(tmp_path)
    # sample 1 is corrupt, so is its successor 2: the next good one (0) stands in
    with pytest.warns(RuntimeWarning) as caught:
        assert ds[1]["name"] == "a_good"
    assert [("b_corrupt" in str(w.message), "c_mismatch" in str(w.message)) for w in caught] == \
        [(True, False), (False, True)]
    assert ds[2]["name"] == "a_good"  # known-bad samples are passed over without a second warning
    assert len(ds.skipped) == 2
    assert ds.skipped[0].endswith("b_corrupt.png") and ds.skipped[1].endswith("depth/c_mismatch.png")
    strict = FolderDataset(tmp_path, strict=True)
    with pytest.raises(SampleError, match="b_corrupt"):
        strict[1]
    fresh = FolderDataset(tmp_path)
    with pytest.warns(RuntimeWarning):
        assert len(fresh.verify()) == 2


def test_out_of_range_class_ids_are_ignored_with_a_warning(tmp_path: Path) -> None:
    write_rgb(tmp_path / "images/a.png")
    write_png(tmp_path / "labels/a.png", tiled([9, 3, 255], np.uint8))
    with pytest.warns(RuntimeWarning, match="outside 0..5"):
        sample = FolderDataset(tmp_path)[0]
    assert sample["labels"][0, :3].tolist() == [255, 3, 255]


def test_empty_and_wrong_roots_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FolderDataset(tmp_path / "nowhere")
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="no samples"):
        FolderDataset(tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(FileNotFoundError, match="KITTI raw root .*raw"):
        KittiDepthDataset(tmp_path, "train", raw_root=tmp_path / "raw")


def test_build_dataset_and_default_collate(tmp_path: Path) -> None:
    make_nyud(tmp_path / "nyud")
    make_cityscapes(tmp_path / "cityscapes")
    write_rgb(tmp_path / "folder/train/images/x.png", size=(5, 9))
    write_rgb(tmp_path / "folder/train/images/y.png", size=(7, 4))
    assert isinstance(build_dataset("nyud", tmp_path / "nyud", "train"), NyudDataset)
    assert isinstance(build_dataset("cityscapes", tmp_path / "cityscapes", "train", annotation="gtFine"),
                      CityscapesDataset)
    assert isinstance(build_dataset("folder", tmp_path / "folder", "train"), FolderDataset)
    write_rgb(tmp_path / "kitti/training/image_2/000000_10.png")
    assert isinstance(build_dataset("kitti", tmp_path / "kitti", "training", task="semantic"), KittiSemanticDataset)
    with pytest.raises(ValueError, match="unknown dataset kind"):
        build_dataset("coco", tmp_path, "train")
    with pytest.raises(ValueError, match="depth_scael"):
        build_dataset("nyud", tmp_path / "nyud", "train", depth_scael=0.001)
    with pytest.raises(ValueError, match="task"):
        build_dataset("kitti", tmp_path, "train", task="flow")
    # samples of different sizes and annotations batch together after the transform
    ds = build_dataset("folder", tmp_path / "folder", "train", eval_transforms((4, 6)))
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["image"].shape == (2, 3, 4, 6) and batch["labels"].shape == (2, 4, 6)
    assert batch["has_depth"].tolist() == [False, False] and batch["name"] == ["x", "y"]
