"""``hydranet_bench``: is one multi-task network faster than two single-task ones, how
much does the fast path gain over the tutorial way, which backend is fastest here, and
how many bytes does a frame cost the host?

On the same inputs, in one process (or one per variant with ``--isolate``), after
warm-up and with the device synchronised around every timed call, it measures:

* variants: ``segm`` (encoder + decoder + segmentation head), ``depth`` (the same
  with the depth head), ``stacked`` (those two, one after the other), ``hydranet``
  (shared encoder and decoder, both heads), each in two modes: ``model`` (uint8
  frames on the device in, raw outputs out; the backends take normalisation with
  them) and ``e2e`` (uint8 image in, depth, labels and overlay out as numpy arrays:
  ``Predictor.predict``, what the node publishes), for each ``--backend``;
* ``naive``: HydraNet end to end the tutorial way (numpy normalisation, fp32,
  raw outputs copied to the CPU, OpenCV upsampling, numpy argmax, palette and blend);

and reports frames per second, latency p50/p99, peak memory, parameters and
multiply-accumulates (MACs) per frame, as a table, JSON and a PNG chart; with
several resolutions or batch sizes, also how HydraNet's cost grows with pixel
count and its throughput with batch size. ``--compare-backends`` times every
backend installed for the device side by side and checks ``auto``'s choice against
them; ``--host-copies`` counts the bytes a frame costs the host, before and after
the reused-buffer path; ``--cameras N`` runs N cameras through one network, their
frames batched as ``hydranet_node`` batches them, against N separate networks.

Modules: ``variants`` (the networks and the naive baseline), ``measure`` (timing,
MACs, memory), ``run`` (the variant runs), ``backend_choice``, ``host_copies``,
``cameras``, ``report`` (tables, ratios, scaling, JSON), ``chart`` and ``cli``.
"""
from .cli import main

__all__ = ["main"]
