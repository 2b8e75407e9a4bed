"""hydranet_node as a managed node with real rclpy (configure, activate, deactivate, cleanup,
shutdown through its lifecycle services), failed configures, and the camera's QoS."""
from __future__ import annotations

import json
import weakref

from node_harness import (BEST_EFFORT, RELIABLE, ROS_SKIP, check_outputs, diagnostics_of,  # noqa: F401
                          harness_factory, module_weights, rclpy, reference)

from hydranet_ros.inference.weights import CARD_KEY

if rclpy is not None:
    from sensor_msgs.msg import Image

pytestmark = ROS_SKIP


# ----- lifecycle ------------------------------------------------------------------------

def test_lifecycle_walk(harness_factory, reference):
    harness = harness_factory(subscribe=("depth",), start=False, autostart=False)
    node = harness.node
    assert harness.lifecycle_state() == "unconfigured" and node.running is None
    assert not harness.change_state("activate")                # wrong state: refused, nothing changes
    assert harness.lifecycle_state() == "unconfigured"

    assert harness.change_state("configure")
    assert harness.lifecycle_state() == "inactive"
    assert not harness.change_state("configure")               # already configured
    harness.wait_until_listening()
    stamp, _, _ = harness.publish_frame()
    harness.spin_for(1.0)
    assert not harness.received["depth"] and node.running.first.stats.received == 0   # inactive: nothing

    assert harness.change_state("activate")
    stamp, sent, rgb = harness.publish_frame()
    check_outputs(harness.outputs_for(stamp, ("depth",)), sent, rgb, reference)

    assert harness.change_state("deactivate")
    stamp, _, _ = harness.publish_frame()
    harness.spin_for(1.0)
    assert stamp not in harness.stamps_of("depth")

    assert harness.change_state("activate")
    stamp, _, _ = harness.publish_frame()
    harness.outputs_for(stamp, ("depth",))

    predictor = weakref.ref(node.running.predictor)
    assert harness.change_state("deactivate") and harness.change_state("cleanup")
    assert harness.lifecycle_state() == "unconfigured" and node.running is None
    assert predictor() is None                                 # the model is freed
    assert harness.change_state("shutdown")
    assert node.finalized.is_set() and harness.lifecycle_state() == "finalized"


def test_a_failed_configure_names_the_problem_and_a_fix_lets_it_succeed(harness_factory, module_weights, tmp_path):
    missing = tmp_path / "missing.safetensors"
    harness = harness_factory(start=False, autostart=False, overlay_alpha=2.0, weights=str(missing))
    assert not harness.change_state("configure")
    assert harness.lifecycle_state() == "unconfigured"
    assert "parameter 'overlay_alpha'" in harness.node.failure and str(missing) in harness.node.failure
    assert "configure failed" in diagnostics_of(harness)[-1].message
    assert harness.set_param("overlay_alpha", 0.25).successful          # unconfigured: may be set
    assert harness.set_param("weights", str(module_weights)).successful
    assert harness.change_state("configure") and harness.node.failure == ""
    assert harness.node.running.predictor.overlay_alpha == 0.25


def test_a_weights_card_that_builds_no_network_is_a_weights_problem(harness_factory, module_weights, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(module_weights), framework="pt") as handle:
        metadata = dict(handle.metadata())
    card = json.loads(metadata[CARD_KEY])
    card["model"]["decoder_width"] = -5
    bad = tmp_path / "bad_card.safetensors"
    save_file(load_file(str(module_weights)), str(bad), metadata={**metadata, CARD_KEY: json.dumps(card)})
    harness = harness_factory(start=False, autostart=False, weights=str(bad))
    assert not harness.change_state("configure")
    assert "parameter 'weights'" in harness.node.failure and str(bad) in harness.node.failure
    assert "device" not in harness.node.failure.split(":")[0]


# ----- the camera's QoS ---------------------------------------------------------------

def test_auto_qos_follows_the_camera(harness_factory, reference):
    harness = harness_factory(subscribe=("depth",), camera_qos=BEST_EFFORT)
    assert harness.node.running.first.reliability == "best_effort"
    stamp, sent, rgb = harness.publish_frame()
    check_outputs(harness.outputs_for(stamp, ("depth",)), sent, rgb, reference)
    # a reliable camera replaces it: the subscription becomes reliable
    harness.probe.destroy_publisher(harness.image_pub)
    harness.image_pub = harness.input_pub = harness.probe.create_publisher(Image, "image", RELIABLE)
    harness.wait_until_listening()
    assert harness.node.running.first.reliability == "reliable"
    stamp, _, _ = harness.publish_frame()
    harness.outputs_for(stamp, ("depth",))


def test_a_camera_the_subscription_cannot_match_is_diagnosed(harness_factory):
    harness = harness_factory(subscribe=("depth",), camera_qos=BEST_EFFORT, qos_reliability="reliable", start=False)
    assert harness.node.start()
    harness.node.starved_after_s = 0.5
    camera = harness.node.running.first
    assert harness.spin_until(lambda: "qos_reliability" in camera.starved_note, timeout=10.0), camera.starved_note
    assert "cannot match" in camera.starved_note
    assert "qos_reliability" in diagnostics_of(harness)[-1].message


def test_an_unexpected_error_in_configure_leaves_the_node_unconfigured_and_usable(harness_factory, monkeypatch):
    from hydranet_ros.node import node as node_module

    real = node_module.load_node_predictor
    monkeypatch.setattr(node_module, "load_node_predictor", lambda *args: (_ for _ in ()).throw(RuntimeError("boom")))
    harness = harness_factory(subscribe=("depth",), start=False, autostart=False)
    assert not harness.change_state("configure")
    assert harness.lifecycle_state() == "unconfigured" and harness.node.running is None
    assert "RuntimeError: boom" in harness.node.failure
    monkeypatch.setattr(node_module, "load_node_predictor", real)
    assert harness.change_state("configure") and harness.change_state("activate")
    harness.wait_until_listening()
    stamp, _, _ = harness.publish_frame()
    harness.outputs_for(stamp, ("depth",))
