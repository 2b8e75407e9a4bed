"""The newest frame of each camera, waiting for the inference thread (node.camera_slots), and
the batch statistics the thread keeps: tested without ROS 2."""
from __future__ import annotations

import threading
import time

from hydranet_ros.node.batch_stats import BatchStats
from hydranet_ros.node.camera_slots import CameraSlots


def test_each_camera_keeps_only_its_newest_frame_and_drops_are_reported():
    slots: CameraSlots[int] = CameraSlots(("front", "left"))
    assert slots.put("front", 1) is False
    assert slots.put("front", 2) is True           # replaced before it was taken: dropped
    assert slots.put("left", 10) is False          # another camera's frame replaces nothing
    assert slots.take(timeout=0) == {"front": 2, "left": 10}
    assert slots.take(timeout=0.01) is None


def test_frames_come_out_in_camera_order():
    slots: CameraSlots[int] = CameraSlots(("a", "b", "c"))
    slots.put("c", 3)
    slots.put("a", 1)
    assert list(slots.take(timeout=0)) == ["a", "c"]


def test_close_wakes_a_waiting_worker():
    slots: CameraSlots[int] = CameraSlots()
    result = []
    worker = threading.Thread(target=lambda: result.append(slots.take(timeout=10)))
    worker.start()
    time.sleep(0.05)
    slots.close()
    worker.join(timeout=2)
    assert not worker.is_alive() and result == [None]
    assert slots.put("", 1) is False and slots.take(timeout=0) is None


def test_clear_forgets_the_parked_frames():
    slots: CameraSlots[int] = CameraSlots()
    slots.put("", 1)
    slots.clear()
    assert slots.take(timeout=0.01) is None and not slots.closed


def test_a_slow_worker_never_builds_a_backlog():
    slots: CameraSlots[int] = CameraSlots()
    seen: list[int] = []
    dropped = 0

    def worker():
        while (frames := slots.take(timeout=1.0)) is not None:
            seen.append(frames[""])
            time.sleep(0.01)   # "inference" slower than the camera

    thread = threading.Thread(target=worker)
    thread.start()
    for frame in range(200):
        dropped += slots.put("", frame)
        time.sleep(0.0005)
    time.sleep(0.05)
    slots.close()
    thread.join(timeout=2)
    assert seen == sorted(seen) and seen[-1] == 199      # always the newest, finishing on the last
    assert len(seen) + dropped == 200                    # every frame is processed or counted dropped
    assert dropped > 100


def test_without_a_wait_only_the_frames_already_there_are_taken():
    slots: CameraSlots[int] = CameraSlots(("front", "left"), gather_s=0.0)
    slots.put("front", 1)
    start = time.monotonic()
    assert slots.take(timeout=1.0) == {"front": 1}
    assert time.monotonic() - start < 0.1


def test_a_wait_gathers_the_other_cameras_but_never_longer_than_it_says():
    slots: CameraSlots[int] = CameraSlots(("front", "left"), gather_s=2.0)
    slots.put("front", 1)
    threading.Timer(0.1, lambda: slots.put("left", 2)).start()
    start = time.monotonic()
    assert slots.take(timeout=1.0) == {"front": 1, "left": 2}     # taken as soon as both are there
    assert time.monotonic() - start < 1.5

    slots.gather_s = 0.2                                           # changed live (batch_wait_ms)
    slots.put("front", 3)                                          # the left camera has stopped
    start = time.monotonic()
    assert slots.take(timeout=1.0) == {"front": 3}
    assert 0.15 <= time.monotonic() - start < 1.0


def test_batch_statistics_histogram_and_timing():
    batches = BatchStats()
    assert batches.snapshot().histogram() == "none yet" and batches.snapshot().summary() == "batches none yet"
    for size, seconds in ((3, 0.030), (3, 0.032), (1, 0.012)):
        batches.batch_done(size, seconds)
    snap = batches.snapshot()
    assert snap.sizes == {3: 2, 1: 1} and snap.histogram() == "1: 1, 3: 2"
    pairs = dict(snap.as_pairs())
    assert pairs["batches (frames in one pass: passes)"] == "1: 1, 3: 2"
    assert pairs["batch inference p50/p95/max (ms)"].endswith("/32.0")
    assert snap.summary() == "batches 1: 1, 3: 2 (pass p50 30 ms)"
