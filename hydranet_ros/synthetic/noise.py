"""Deterministic, vectorised value noise for procedural textures.

Textures are functions of world coordinates (not of pixels), so a surface keeps its
pattern from frame to frame as the camera moves along a synthetic street.
"""
from __future__ import annotations

import numpy as np

_MASK64 = (1 << 64) - 1


def hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """A pseudo-random float32 in [0, 1) per integer lattice point (ix, iy)."""
    # uint64 arithmetic wraps silently on arrays, which is what a hash wants
    h = ix.astype(np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h ^= iy.astype(np.int64).astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    h ^= np.uint64((seed * 0x165667B19E3779F9) & _MASK64)
    h ^= h >> np.uint64(29)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(32)
    return (h >> np.uint64(40)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def value_noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smoothly interpolated lattice noise in [0, 1), one lattice cell per unit."""
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    ix, iy = x0.astype(np.int64), y0.astype(np.int64)
    top = hash01(ix, iy, seed) * (1 - fx) + hash01(ix + 1, iy, seed) * fx
    bottom = hash01(ix, iy + 1, seed) * (1 - fx) + hash01(ix + 1, iy + 1, seed) * fx
    return top * (1 - fy) + bottom * fy


def fbm(x: np.ndarray, y: np.ndarray, seed: int, octaves: int = 3) -> np.ndarray:
    """Fractal sum of ``octaves`` value noises, each twice the frequency at half the weight; in [0, 1)."""
    total = np.zeros(np.shape(x), dtype=np.float32)
    weight, norm = 1.0, 0.0
    for octave in range(octaves):
        scale = float(1 << octave)
        total += np.float32(weight) * value_noise(x * scale, y * scale, seed + 7919 * octave)
        norm += weight
        weight *= 0.5
    return total / np.float32(norm)
