"""Task balancing: fixed weights, uncertainty weighting, Dynamic Weight Average."""
from __future__ import annotations

import math

import pytest
import torch

from hydranet_ros.training.balancing import DynamicWeightAverage, FixedWeights, UncertaintyWeighting, build_balancer

TASKS = ["segm", "depth"]
BOTH = {"segm": True, "depth": True}


def losses(segm: float, depth: float) -> dict[str, torch.Tensor]:
    return {"segm": torch.tensor(segm, requires_grad=True), "depth": torch.tensor(depth, requires_grad=True)}


def test_fixed_weights_sum_only_present_tasks() -> None:
    balancer = FixedWeights(TASKS, {"depth": 0.5})
    assert balancer(losses(2.0, 4.0), BOTH).item() == pytest.approx(2.0 + 0.5 * 4.0)
    assert balancer(losses(2.0, 4.0), {"segm": True, "depth": False}).item() == pytest.approx(2.0)
    assert balancer.weights() == {"segm": 1.0, "depth": 0.5}
    with pytest.raises(ValueError, match="unknown tasks"):
        FixedWeights(TASKS, {"normals": 1.0})


def test_no_present_task_gives_a_zero_that_can_be_backpropagated() -> None:
    values = losses(2.0, 4.0)
    total = FixedWeights(TASKS)(values, {})
    assert total.item() == 0.0
    total.backward()
    assert values["segm"].grad.item() == 0.0


def test_uncertainty_weighting_formula_and_gradients() -> None:
    balancer = UncertaintyWeighting(TASKS)
    with torch.no_grad():
        balancer.log_vars.copy_(torch.tensor([0.5, -1.0]))
    total = balancer(losses(2.0, 3.0), {"segm": True, "depth": False})
    assert total.item() == pytest.approx(math.exp(-0.5) * 2.0 + 0.5, rel=1e-6)
    total.backward()
    # d/ds (e^-s L + s) = 1 - e^-s L; the absent task's log-variance is not pulled anywhere
    assert balancer.log_vars.grad[0].item() == pytest.approx(1 - math.exp(-0.5) * 2.0, rel=1e-6)
    assert balancer.log_vars.grad[1].item() == 0.0
    assert balancer.weights()["depth"] == pytest.approx(math.e)


def test_dwa_weights_follow_the_loss_ratio_of_the_last_two_epochs() -> None:
    balancer = DynamicWeightAverage(TASKS, temperature=2.0).train()
    for epoch_losses in [(1.0, 1.0), (0.5, 1.0)]:
        assert balancer.weights() == {"segm": 1.0, "depth": 1.0}  # first two epochs: equal weights
        for _ in range(3):
            balancer(losses(*epoch_losses), BOTH)
        balancer(losses(100.0, 100.0), {})  # absent tasks do not enter the epoch means
        balancer.end_epoch()
    ratios = torch.tensor([0.5 / 1.0, 1.0 / 1.0])
    expected = 2 * torch.softmax(ratios / 2.0, dim=0)
    got = balancer.weights()
    assert got["segm"] == pytest.approx(expected[0].item(), rel=1e-6)
    assert got["depth"] == pytest.approx(expected[1].item(), rel=1e-6)
    assert got["segm"] < 1.0 < got["depth"]  # the task that improves less gets more weight
    # the state (means, history, weights) travels in state_dict, for resumed runs
    restored = DynamicWeightAverage(TASKS)
    restored.load_state_dict(balancer.state_dict())
    assert restored.weights() == got


def test_build_balancer_knows_the_three_kinds() -> None:
    assert isinstance(build_balancer("fixed", TASKS), FixedWeights)
    assert isinstance(build_balancer("uncertainty", TASKS), UncertaintyWeighting)
    assert isinstance(build_balancer("dwa", TASKS), DynamicWeightAverage)
    with pytest.raises(ValueError, match="fixed, uncertainty, dwa"):
        build_balancer("gradnorm", TASKS)
