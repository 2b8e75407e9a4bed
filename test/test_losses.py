"""Loss functions: formulas, masking of invalid pixels and absent annotations."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hydranet_ros.training.losses import (
    DepthTask,
    SegmentationTask,
    berhu_loss,
    cross_entropy_loss,
    l1_loss,
    silog_loss,
    upsample_to,
)


def test_berhu_matches_hand_computed_value() -> None:
    pred = torch.tensor([1.0, 2.0, 3.0, 10.0])
    target = torch.ones(4)
    valid = torch.ones(4, dtype=torch.bool)
    # |e| = 0, 1, 2, 9; c = 0.2 * 9 = 1.8; |e| <= c -> |e|, else (e^2 + c^2) / 2c
    expected = (0 + 1 + (4 + 1.8 ** 2) / 3.6 + (81 + 1.8 ** 2) / 3.6) / 4
    assert berhu_loss(pred, target, valid).item() == pytest.approx(expected, rel=1e-6)


def test_berhu_threshold_uses_only_valid_pixels_and_perfect_prediction_is_zero() -> None:
    pred = torch.tensor([2.0, 100.0])
    target = torch.tensor([1.0, 1.0])
    only_first = torch.tensor([True, False])
    # with the outlier masked, c = 0.2 * 1 and the single error 1 > c is quadratic
    assert berhu_loss(pred, target, only_first).item() == pytest.approx((1 + 0.04) / 0.4)
    assert berhu_loss(target.clone(), target, torch.ones(2, dtype=torch.bool)).item() == 0.0


def test_silog_is_scale_invariant_with_lambda_one_and_log_mse_with_zero() -> None:
    target = torch.rand(2, 5, 7) * 10 + 1
    pred = target * 3.0
    valid = torch.ones_like(target, dtype=torch.bool)
    assert silog_loss(pred, target, valid, lam=1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert silog_loss(pred, target, valid, lam=0.5).item() == pytest.approx(0.5 * math.log(3) ** 2, rel=1e-5)
    assert silog_loss(pred, target, valid, lam=0.0).item() == pytest.approx(math.log(3) ** 2, rel=1e-5)


def test_silog_averages_per_image() -> None:
    target = torch.ones(2, 4, 4)
    pred = torch.stack([target[0] * 2.0, target[1] * 4.0])
    valid = torch.ones_like(target, dtype=torch.bool)
    # each image is uniformly scaled: mean(d^2) - 0.5 mean(d)^2 = 0.5 log(k)^2 per image
    expected = 0.5 * (0.5 * math.log(2) ** 2 + 0.5 * math.log(4) ** 2)
    assert silog_loss(pred, target, valid, lam=0.5).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("kind", ["l1", "berhu", "silog"])
def test_depth_task_ignores_zero_nan_and_samples_without_depth(kind: str) -> None:
    torch.manual_seed(0)
    target = torch.rand(3, 8, 8) * 5 + 1
    target[0, :2] = 0.0            # invalid: no measurement
    target[0, 2, :3] = float("nan")  # invalid: NaN
    has_depth = torch.tensor([True, True, False])
    pred = torch.rand(3, 1, 8, 8, requires_grad=True)
    task = DepthTask(kind)
    result = task({"depth": pred}, {"depth": target, "has_depth": has_depth})
    assert result.valid == 2 * 64 - 16 - 3
    result.loss.backward()
    grad = pred.grad[:, 0]
    assert torch.isfinite(result.loss) and torch.isfinite(grad).all()
    assert (grad[0, :2] == 0).all() and (grad[0, 2, :3] == 0).all() and (grad[2] == 0).all()
    # changing the prediction where the target is invalid does not change the loss
    other = pred.detach().clone()
    other[0, 0, :2] += 100
    other[2] += 100
    again = task({"depth": other}, {"depth": target, "has_depth": has_depth})
    assert again.loss.item() == pytest.approx(result.loss.item(), rel=1e-6)


def test_l1_is_mean_absolute_error_over_valid_pixels() -> None:
    pred = torch.tensor([1.0, 3.0, 7.0])
    target = torch.tensor([2.0, 1.0, 0.0])
    assert l1_loss(pred, target, target > 0).item() == pytest.approx(1.5)


def test_depth_loss_sees_the_abs_of_the_raw_output_like_the_predictor() -> None:
    target = torch.full((1, 4, 4), 2.0)
    pred = torch.full((1, 1, 4, 4), -2.0)  # the predictor reports |-2| = 2 m
    assert DepthTask("l1")({"depth": pred}, {"depth": target}).loss.item() == 0.0


def test_outputs_are_upsampled_bilinearly_to_the_target_size() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 6)
    labels = torch.randint(0, 3, (2, 16, 24))
    result = SegmentationTask()({"segm": logits}, {"labels": labels})
    expected = F.cross_entropy(F.interpolate(logits, size=(16, 24), mode="bilinear", align_corners=False), labels)
    assert result.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert upsample_to(logits, (4, 6)) is logits


def test_cross_entropy_ignores_label_255() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 4)
    labels = torch.randint(0, 3, (1, 4, 4))
    masked = labels.clone()
    masked[0, 0] = 255
    keep = masked != 255
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], labels[keep])
    result = cross_entropy_loss(logits, masked)
    assert result.valid == 12 and result.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_depth_only_sample_gives_zero_segmentation_loss_and_no_gradient() -> None:
    logits = torch.randn(2, 6, 4, 4, requires_grad=True)
    labels = torch.randint(0, 6, (2, 16, 16))  # values exist but the samples say they carry no labels
    batch = {"labels": labels, "has_labels": torch.tensor([False, False])}
    result = SegmentationTask()({"segm": logits}, batch)
    assert result.valid == 0 and result.loss.item() == 0.0
    result.loss.backward()
    assert (logits.grad == 0).all()


def test_batch_without_any_valid_depth_gives_zero_not_nan() -> None:
    pred = torch.randn(2, 1, 4, 4, requires_grad=True)
    target = torch.zeros(2, 16, 16)
    target[1, 0, 0] = float("nan")
    for kind in ("l1", "berhu", "silog"):
        result = DepthTask(kind)({"depth": pred}, {"depth": target, "has_depth": torch.tensor([True, True])})
        assert result.valid == 0 and result.loss.item() == 0.0
        result.loss.backward()
        assert torch.isfinite(pred.grad).all()


def test_unknown_depth_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="berhu"):
        DepthTask("l2")
