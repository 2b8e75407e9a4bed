"""Random layout of a synthetic street: road, sidewalks, buildings, trees, cars, light.

World frame: x to the right of the road's direction, y up, z along the road; the
ground is the plane y = 0. Every solid is an axis-aligned box or a sphere so that
the renderer can intersect rays with it exactly. Class ids follow the KITTI6 preset.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SKY, BUILDING, ROAD, SIDEWALK, VEGETATION, CAR = range(6)


@dataclass(frozen=True)
class Box:
    lo: np.ndarray          # (3,) world corner with the smallest x, y, z
    hi: np.ndarray          # (3,) opposite corner
    label: int
    material: str           # how the renderer textures it: facade, car_body, car_cabin, trunk, hedge
    colour: np.ndarray      # (3,) float RGB in 0..1
    seed: int               # texture variation
    params: tuple[float, ...] = ()  # material-specific, e.g. a facade's window grid


@dataclass(frozen=True)
class Sphere:
    centre: np.ndarray
    radius: float
    label: int
    colour: np.ndarray
    seed: int


@dataclass(frozen=True)
class StreetScene:
    seed: int
    lane_width: float
    road_half_width: float        # kerb at |x| = road_half_width
    parking_width: float          # parking strip inside the kerb, 0 if none
    sidewalk_width: float
    verge_labels: tuple[int, int]  # ground beyond the sidewalk, (left, right): SIDEWALK or VEGETATION
    asphalt: np.ndarray
    pavement: np.ndarray
    grass: np.ndarray
    tile_size: float
    boxes: list[Box] = field(default_factory=list)
    spheres: list[Sphere] = field(default_factory=list)
    sun: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.8, 0.5]))  # unit vector towards the sun
    ambient: float = 0.5
    sky_zenith: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.5, 0.85]))
    sky_horizon: np.ndarray = field(default_factory=lambda: np.array([0.8, 0.85, 0.9]))
    cloud_cover: float = 0.3
    haze_distance: float = 250.0
    tint: np.ndarray = field(default_factory=lambda: np.ones(3))
    noise_sigma: float = 2.0       # sensor noise, in 8-bit grey levels

    @property
    def camera_lane_x(self) -> float:
        """Centre of the right-hand driving lane, where the camera drives."""
        return self.lane_width / 2


FACADE_COLOURS = np.array([[0.78, 0.72, 0.62], [0.62, 0.60, 0.58], [0.65, 0.38, 0.30], [0.85, 0.82, 0.75],
                           [0.55, 0.50, 0.45], [0.72, 0.66, 0.52], [0.45, 0.47, 0.52]])
CAR_COLOURS = np.array([[0.85, 0.85, 0.85], [0.12, 0.12, 0.13], [0.55, 0.56, 0.58], [0.60, 0.08, 0.08],
                        [0.10, 0.20, 0.50], [0.80, 0.80, 0.75], [0.25, 0.35, 0.25], [0.75, 0.55, 0.10]])


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(colour * rng.uniform(1 - amount, 1 + amount, 3), 0.0, 1.0)


def _box(lo: tuple[float, float, float], hi: tuple[float, float, float], label: int, material: str,
         colour: np.ndarray, seed: int, params: tuple[float, ...] = ()) -> Box:
    return Box(np.array(lo, dtype=np.float64), np.array(hi, dtype=np.float64), label, material,
               np.asarray(colour, dtype=np.float64), seed, params)


def _add_buildings(scene_boxes: list[Box], rng: np.random.Generator, side: int, x_start: float,
                   z_from: float, z_to: float) -> list[tuple[float, float]]:
    """Façades along one side; returns the gaps between buildings as (z0, z1)."""
    gaps, z = [], z_from
    while z < z_to:
        if rng.random() < 0.25:
            gap = rng.uniform(3.0, 12.0)
            gaps.append((z, z + gap))
            z += gap
        width, setback, height = rng.uniform(8.0, 26.0), rng.uniform(0.0, 4.0), rng.uniform(5.0, 26.0)
        near = side * (x_start + setback)
        far = near + side * rng.uniform(10.0, 20.0)
        floor_height = rng.uniform(2.8, 3.6)
        params = (floor_height, rng.uniform(1.8, 3.2), rng.uniform(0.3, 0.6), rng.uniform(0.35, 0.65),
                  float(rng.random() < 0.5))  # floor height, window pitch, window w/h fraction, shopfront
        colour = _jitter(rng, FACADE_COLOURS[rng.integers(len(FACADE_COLOURS))], 0.12)
        scene_boxes.append(_box((min(near, far), 0.0, z), (max(near, far), height, z + width),
                                BUILDING, "facade", colour, int(rng.integers(1 << 30)), params))
        z += width
    return gaps


def _add_car(boxes: list[Box], rng: np.random.Generator, x: float, z: float, facing_camera: bool) -> None:
    """Body and cabin, both labelled car (wheels are painted on); ``z`` is the rear
    (camera-side) end."""
    length, width = rng.uniform(3.8, 4.9), rng.uniform(1.65, 1.9)
    body_top = rng.uniform(0.85, 1.05)
    cabin_top = body_top + rng.uniform(0.4, 0.58)
    colour = _jitter(rng, CAR_COLOURS[rng.integers(len(CAR_COLOURS))], 0.1)
    seed = int(rng.integers(1 << 30))
    half = width / 2
    # params, read by the texturer: facing (1 = its front faces the camera), body top
    params = (float(facing_camera), body_top)
    boxes.append(_box((x - half, 0.1, z), (x + half, body_top, z + length), CAR, "car_body", colour, seed, params))
    cabin_z0 = z + length * rng.uniform(0.2, 0.3)
    boxes.append(_box((x - half + 0.08, body_top, cabin_z0), (x + half - 0.08, cabin_top, cabin_z0 + length * 0.5),
                      CAR, "car_cabin", colour, seed, params))


def _add_tree(boxes: list[Box], spheres: list[Sphere], rng: np.random.Generator, x: float, z: float,
              max_radius: float) -> None:
    trunk_height = rng.uniform(2.0, 3.8)
    radius = min(rng.uniform(1.2, 3.0), max_radius)
    boxes.append(_box((x - 0.16, 0.0, z - 0.16), (x + 0.16, trunk_height + radius * 0.5, z + 0.16),
                      VEGETATION, "trunk", _jitter(rng, np.array([0.35, 0.26, 0.18]), 0.15),
                      int(rng.integers(1 << 30))))
    spheres.append(Sphere(np.array([x, trunk_height + radius * 0.6, z]), radius, VEGETATION,
                          _jitter(rng, np.array([0.25, 0.42, 0.15]), 0.2), int(rng.integers(1 << 30))))


def make_street_scene(rng: np.random.Generator, seed: int, length: float, lane_clear_until: float) -> StreetScene:
    """A random street from z = -30 m to ``length`` (+ 100 m of background). The
    camera's lane is kept free of cars up to z = ``lane_clear_until`` and no solid
    comes within reach of a camera driving along that lane."""
    lane_width = rng.uniform(3.0, 3.7)
    parking = rng.uniform(2.0, 2.5) if rng.random() < 0.6 else 0.0
    road_half = lane_width + parking
    sidewalk = rng.uniform(2.0, 4.5)
    verge_labels = tuple(int(rng.choice([SIDEWALK, VEGETATION])) for _ in range(2))
    boxes: list[Box] = []
    spheres: list[Sphere] = []
    z_end = length + 100.0  # background beyond the last camera position
    camera_x = lane_width / 2
    for side in (-1, 1):
        verge = rng.uniform(0.0, 3.0)
        gaps = _add_buildings(boxes, rng, side, road_half + sidewalk + verge, -30.0, z_end)
        # trees along the kerb; a crown never reaches the camera's lane
        tree_x = side * (road_half + rng.uniform(0.5, 1.0))
        max_radius = abs(tree_x - camera_x) - 1.2
        z = -30.0 + rng.uniform(0.0, 10.0)
        spacing = rng.uniform(7.0, 18.0)
        tree_chance = rng.uniform(0.0, 0.9)
        while z < z_end:
            if rng.random() < tree_chance:
                _add_tree(boxes, spheres, rng, tree_x + rng.uniform(-0.2, 0.2), z, max_radius)
            z += spacing * rng.uniform(0.8, 1.2)
        # bushes and hedges near the buildings, more in the gaps between them
        bush_x = side * (road_half + sidewalk + verge * 0.5)
        for z0, z1 in gaps:
            for _ in range(int(rng.integers(1, 4))):
                radius = rng.uniform(0.5, 1.3)
                spheres.append(Sphere(np.array([bush_x + side * rng.uniform(0.0, 1.0), radius * 0.35,
                                                rng.uniform(z0, z1)]), radius, VEGETATION,
                                      _jitter(rng, np.array([0.22, 0.38, 0.14]), 0.2), int(rng.integers(1 << 30))))
        if rng.random() < 0.5:
            z0 = rng.uniform(-30.0, z_end * 0.5)
            x0 = side * (road_half + sidewalk + 0.1)
            boxes.append(_box((min(x0, x0 + side * 0.8), 0.0, z0), (max(x0, x0 + side * 0.8), rng.uniform(0.7, 1.5),
                               z0 + rng.uniform(5.0, 30.0)), VEGETATION, "hedge",
                              _jitter(rng, np.array([0.2, 0.36, 0.13]), 0.2), int(rng.integers(1 << 30))))
        # parked cars in the parking strip
        if parking:
            z = -30.0 + rng.uniform(0.0, 8.0)
            while z < z_end:
                if rng.random() < 0.6:
                    _add_car(boxes, rng, side * (road_half - parking / 2), z, facing_camera=side < 0)
                z += rng.uniform(5.5, 14.0)
    # oncoming traffic in the left lane, and maybe a car ahead in the camera's lane
    z = rng.uniform(3.0, 20.0)
    while z < z_end:
        _add_car(boxes, rng, -lane_width / 2 + rng.uniform(-0.25, 0.25), z, facing_camera=True)
        z += rng.uniform(10.0, 45.0)
    if rng.random() < 0.7:
        _add_car(boxes, rng, camera_x + rng.uniform(-0.25, 0.25), lane_clear_until + rng.uniform(6.0, 40.0),
                 facing_camera=False)
    sun_elevation, sun_azimuth = np.radians(rng.uniform(15.0, 65.0)), rng.uniform(0.0, 2 * np.pi)
    sun = np.array([np.cos(sun_elevation) * np.sin(sun_azimuth), np.sin(sun_elevation),
                    np.cos(sun_elevation) * np.cos(sun_azimuth)])
    overcast = rng.random() < 0.25
    return StreetScene(
        seed=seed, lane_width=lane_width, road_half_width=road_half, parking_width=parking,
        sidewalk_width=sidewalk, verge_labels=verge_labels,  # type: ignore[arg-type]
        asphalt=np.full(3, rng.uniform(0.25, 0.42)) * np.array([1.0, 1.0, rng.uniform(1.0, 1.08)]),
        pavement=_jitter(rng, np.array([0.62, 0.6, 0.56]), 0.12),
        grass=_jitter(rng, np.array([0.28, 0.42, 0.16]), 0.15),
        tile_size=rng.uniform(0.3, 0.8), boxes=boxes, spheres=spheres, sun=sun,
        ambient=rng.uniform(0.55, 0.75) if overcast else rng.uniform(0.35, 0.55),
        sky_zenith=np.array([0.62, 0.64, 0.68]) if overcast else _jitter(rng, np.array([0.25, 0.45, 0.85]), 0.1),
        sky_horizon=np.array([0.8, 0.8, 0.82]) if overcast else _jitter(rng, np.array([0.78, 0.85, 0.93]), 0.05),
        cloud_cover=rng.uniform(0.5, 0.9) if overcast else rng.uniform(0.0, 0.5),
        haze_distance=rng.uniform(150.0, 450.0), tint=rng.uniform(0.9, 1.1, 3),
        noise_sigma=rng.uniform(1.0, 4.0),
    )
