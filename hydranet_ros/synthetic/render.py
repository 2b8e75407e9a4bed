"""Exact ray casting of a ``StreetScene`` through a pinhole camera, vectorised in numpy.

Each pixel's ray is p(t) = o + t * R @ K^-1 [u, v, 1] with (u, v) the pixel centre,
so the camera-frame z of the hit point, the depth a depth sensor reports, is t
itself. Depth comes from exact ray-plane / ray-box / ray-sphere intersections;
colours are procedural textures of the world-space hit point with Lambert shading
and distance haze. Each solid is only intersected within the image rectangle its
projected bounding box covers, which keeps a frame cheap (no per-pixel Python loops).
The intersections and the textures they shade share per-pixel arrays, so they stay in one
module of a little over 300 lines.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .noise import fbm, hash01, value_noise
from .scene import ROAD, SIDEWALK, SKY, Box, Sphere, StreetScene

_EPS = 1e-6
Shader = Callable[[np.ndarray], np.ndarray]  # world hit points (N, 3) -> colours (N, 3)
Rect = tuple[slice, slice]
# which of lo / hi each of a box's 8 corners takes, per axis
_CORNER_PICKS = np.array([[(i >> a) & 1 for a in range(3)] for i in range(8)], dtype=bool)


@dataclass
class _Canvas:
    """Per-frame ray directions and the z-buffered outputs."""

    origin: np.ndarray       # (3,) camera centre, world
    rotation: np.ndarray     # (3, 3) world_from_camera
    K: np.ndarray
    dirs: np.ndarray         # (3, H, W) world ray directions (camera-frame z = 1)
    inv_dirs: np.ndarray     # (3, H, W) 1 / dirs, for the box slabs
    t: np.ndarray            # (H, W) float64 z-depth, inf where nothing was hit
    labels: np.ndarray       # (H, W) uint8
    colour: np.ndarray       # (H, W, 3) float32 RGB 0..1, before haze and noise

    @classmethod
    def create(cls, K: np.ndarray, pose: np.ndarray, width: int, height: int) -> "_Canvas":
        u = np.arange(width, dtype=np.float64)
        v = np.arange(height, dtype=np.float64)
        x = np.broadcast_to(((u - K[0, 2]) / K[0, 0])[None, :], (height, width))
        y = np.broadcast_to(((v - K[1, 2]) / K[1, 1])[:, None], (height, width))
        rotation = pose[:3, :3]
        dirs = (rotation[:, 0, None, None] * x + rotation[:, 1, None, None] * y
                + rotation[:, 2, None, None])
        with np.errstate(divide="ignore"):
            inv_dirs = 1.0 / dirs
        return cls(pose[:3, 3].astype(np.float64), rotation, K, dirs, inv_dirs, np.full((height, width), np.inf),
                   np.full((height, width), SKY, dtype=np.uint8), np.zeros((height, width, 3), dtype=np.float32))

    def screen_rects(self, lo: np.ndarray, hi: np.ndarray) -> tuple[list[Rect | None], np.ndarray]:
        """For N world boxes [lo, hi] ((N, 3) each): the image rectangle each one's
        projection can cover (None if off screen) and its nearest camera-frame z."""
        height, width = self.t.shape
        corners = np.where(_CORNER_PICKS[None], hi[:, None, :], lo[:, None, :])  # (N, 8, 3)
        cam = (corners - self.origin) @ self.rotation                            # rows: R^T (p - o)
        z = cam[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.K[0, 0] * cam[..., 0] / z + self.K[0, 2]
            v = self.K[1, 1] * cam[..., 1] / z + self.K[1, 2]
        rects: list[Rect | None] = []
        for i in range(len(lo)):
            if z[i].max() <= 0:
                rects.append(None)
            elif z[i].min() < 0.05:  # straddles the camera plane: be conservative
                rects.append((slice(0, height), slice(0, width)))
            else:
                c0, c1 = max(int(np.floor(u[i].min())), 0), min(int(np.ceil(u[i].max())) + 1, width)
                r0, r1 = max(int(np.floor(v[i].min())), 0), min(int(np.ceil(v[i].max())) + 1, height)
                rects.append((slice(r0, r1), slice(c0, c1)) if c0 < c1 and r0 < r1 else None)
        return rects, z.min(axis=1)

    def draw(self, rect: Rect, t: np.ndarray, hit: np.ndarray, label: int, shade: Shader) -> None:
        """z-buffer a surface: where ``hit`` and nearer than what is there, write depth,
        label and the colours ``shade`` gives the world hit points."""
        region_t = self.t[rect]
        closer = hit & (t < region_t)
        if not closer.any():
            return
        t_hit = t[closer]
        region_t[closer] = t_hit
        self.labels[rect][closer] = label
        points = self.origin + t_hit[:, None] * self.dirs[(slice(None),) + rect][:, closer].T
        self.colour[rect][closer] = shade(points)


def _lambert(scene: StreetScene, colour: np.ndarray, normals: np.ndarray) -> np.ndarray:
    light = scene.ambient + (1 - scene.ambient) * np.clip(normals @ scene.sun, 0.0, 1.0)
    return (colour * light[:, None]).astype(np.float32)


# -- ground ----------------------------------------------------------------------------
def _shade_ground(scene: StreetScene, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, z = points[:, 0], points[:, 2]
    ax = np.abs(x)
    n = len(x)
    labels = np.where(ax < scene.road_half_width, ROAD, SIDEWALK).astype(np.uint8)
    beyond = ax >= scene.road_half_width + scene.sidewalk_width
    labels[beyond] = np.where(x[beyond] < 0, scene.verge_labels[0], scene.verge_labels[1])
    colour = np.empty((n, 3), dtype=np.float32)
    seed = scene.seed

    road = labels == ROAD
    if road.any():
        rx, rz = x[road], z[road]
        grain = (0.75 + 0.35 * fbm(rx * 1.5, rz * 1.5, seed, 3)
                 + 0.12 * hash01(np.floor(rx * 25), np.floor(rz * 25), seed))
        patches = value_noise(rx / 5, rz / 5, seed + 1) > 0.72
        shade = grain * np.where(patches, 0.8, 1.0)
        # worn tyre tracks in the driving lanes
        lane_offset = np.abs(np.abs(rx) - scene.lane_width / 2)
        shade *= np.where(np.abs(lane_offset - 0.8) < 0.3, 0.9, 1.0)
        c = scene.asphalt[None, :] * shade[:, None]
        # markings: dashed centre line, solid lines at the lane / parking edge
        dashed = (np.abs(rx) < 0.07) & (np.mod(rz, 6.0) < 3.0)
        solid = np.abs(np.abs(rx) - (scene.lane_width if scene.parking_width else scene.road_half_width - 0.3)) < 0.07
        paint = dashed | solid
        c[paint] = (0.8 + 0.12 * value_noise(rx[paint] * 8, rz[paint] * 2, seed + 5))[:, None]
        colour[road] = c

    paved = labels == SIDEWALK
    if paved.any():
        px, pz = x[paved], z[paved]
        tile = scene.tile_size
        joint = (np.mod(px, tile) < 0.04) | (np.mod(pz, tile) < 0.04)
        stone = 0.85 + 0.25 * hash01(np.floor(px / tile), np.floor(pz / tile), seed + 2) \
            + 0.1 * fbm(px, pz, seed + 3, 2)
        c = scene.pavement[None, :] * np.where(joint, 0.7, stone)[:, None]
        kerb = np.abs(px) - scene.road_half_width < 0.25
        c[kerb] = scene.pavement * 1.15
        colour[paved] = c

    grass = ~(road | paved)
    if grass.any():
        gx, gz = x[grass], z[grass]
        colour[grass] = scene.grass[None, :] * (0.65 + 0.6 * fbm(gx * 2, gz * 2, seed + 4, 3))[:, None]
    return np.clip(colour, 0, 1), labels


def _draw_ground(canvas: _Canvas, scene: StreetScene) -> None:
    dy = canvas.dirs[1]
    down = dy < -_EPS
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(down, -canvas.origin[1] / dy, np.inf)
    hit = down & (t > 0)
    if not hit.any():
        return
    canvas.t[hit] = t[hit]
    points = canvas.origin + t[hit][:, None] * canvas.dirs[:, hit].T
    colour, labels = _shade_ground(scene, points)
    canvas.labels[hit] = labels
    canvas.colour[hit] = _lambert(scene, colour, np.broadcast_to(np.array([0.0, 1.0, 0.0]), points.shape))


# -- boxes -----------------------------------------------------------------------------
def _face_coordinates(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Horizontal coordinate along a vertical face: z on x-facing faces, x on z-facing ones."""
    return np.where(np.abs(normals[:, 0]) > 0.5, points[:, 2], points[:, 0])


def _shade_box(scene: StreetScene, box: Box, points: np.ndarray, normals: np.ndarray) -> np.ndarray:
    n = len(points)
    base = np.broadcast_to(box.colour, (n, 3)).astype(np.float32)
    y = points[:, 1]
    along = _face_coordinates(points, normals)
    vertical_face = np.abs(normals[:, 1]) < 0.5
    if box.material == "facade":
        floor_h, pitch, win_w, win_h, shopfront = box.params
        colour = base * (0.8 + 0.35 * fbm(along / 2, y / 2, box.seed, 2))[:, None]
        fu, fv = np.mod(along / pitch, 1.0), np.mod(y / floor_h, 1.0)
        window = (vertical_face & (np.abs(fu - 0.5) < win_w / 2) & (fv > 0.3) & (fv < 0.3 + win_h)
                  & (y > floor_h) & (y < box.hi[1] - 0.6))
        if shopfront:
            window |= vertical_face & (y > 0.4) & (y < floor_h * 0.8) & (np.mod(along / (pitch * 2), 1.0) > 0.15)
        if window.any():
            cell = hash01(np.floor(along[window] / pitch), np.floor(y[window] / floor_h), box.seed)
            glass = np.array([0.16, 0.2, 0.27]) + 0.35 * cell[:, None] * np.array([0.6, 0.7, 0.9])
            lit = cell > 0.93
            glass[lit] = np.array([0.95, 0.85, 0.55])
            colour[window] = glass
        roof = ~vertical_face
        colour[roof] = base[roof] * 0.55
    elif box.material == "car_body":
        colour = base * (0.92 + 0.08 * value_noise(along * 3, y * 3, box.seed))[:, None]
        colour[y < box.lo[1] + 0.12] *= 0.35  # sills and bumper shadow
        # wheels painted on the sides (keeps a car to two boxes)
        sides = np.abs(normals[:, 0]) > 0.5
        for wheel_z in (box.lo[2] + 0.85, box.hi[2] - 0.85):
            r2 = (along - wheel_z) ** 2 + (y - 0.33) ** 2
            colour[sides & (r2 < 0.33 ** 2)] = 0.06
            colour[sides & (r2 < 0.16 ** 2)] = 0.45
        facing, body_top = box.params
        ends = np.abs(normals[:, 2]) > 0.5
        lamp_rows = ends & (y > body_top - 0.28) & (y < body_top - 0.12)
        lamp = lamp_rows & (np.abs(np.abs(points[:, 0] - (box.lo[0] + box.hi[0]) / 2)
                                   - (box.hi[0] - box.lo[0]) / 2 + 0.25) < 0.15)
        # the face towards -z is the end the camera sees: red tail lights unless the car faces us
        towards_camera = normals[:, 2] < 0
        headlight = towards_camera == bool(facing)
        colour[lamp & headlight] = np.array([0.95, 0.93, 0.8])
        colour[lamp & ~headlight] = np.array([0.75, 0.05, 0.05])
    elif box.material == "car_cabin":
        colour = np.broadcast_to(np.array([0.1, 0.12, 0.15]), (n, 3)).astype(np.float32).copy()
        colour += (0.25 * value_noise(along * 2, y * 8, box.seed))[:, None]
        colour[~vertical_face] = base[~vertical_face]
    elif box.material == "trunk":
        colour = base * (0.75 + 0.4 * value_noise(along * 20, y * 2, box.seed))[:, None]
    else:  # hedge
        colour = base * (0.6 + 0.7 * fbm(along * 3, y * 3, box.seed, 2))[:, None]
    return _lambert(scene, np.clip(colour, 0, 1), normals)


def _box_normals(box: Box, points: np.ndarray) -> np.ndarray:
    """Outward normal of the face each point lies on (the nearest face)."""
    to_lo, to_hi = np.abs(points - box.lo), np.abs(points - box.hi)
    nearest = np.minimum(to_lo, to_hi)
    axis = np.argmin(nearest, axis=1)
    rows = np.arange(len(points))
    normals = np.zeros_like(points)
    normals[rows, axis] = np.where(to_lo[rows, axis] < to_hi[rows, axis], -1.0, 1.0)
    return normals


def _draw_box(canvas: _Canvas, scene: StreetScene, box: Box, rect: Rect) -> None:
    # slab method: the ray is inside the box between the last entry and the first exit
    inv = canvas.inv_dirs[(slice(None),) + rect]
    with np.errstate(invalid="ignore"):
        t1 = (box.lo - canvas.origin)[:, None, None] * inv
        t2 = (box.hi - canvas.origin)[:, None, None] * inv
        t_near = np.minimum(t1, t2).max(axis=0)
        t_far = np.maximum(t1, t2).min(axis=0)
        hit = (t_near <= t_far) & (t_near > _EPS)
    canvas.draw(rect, t_near, hit, box.label, lambda p: _shade_box(scene, box, p, _box_normals(box, p)))


# -- spheres ---------------------------------------------------------------------------
def _draw_sphere(canvas: _Canvas, scene: StreetScene, sphere: Sphere, rect: Rect) -> None:
    r = sphere.radius
    d = canvas.dirs[(slice(None),) + rect]
    oc = canvas.origin - sphere.centre
    a = (d * d).sum(0)
    b = (d * oc[:, None, None]).sum(0)
    disc = b * b - a * (oc @ oc - r * r)
    hit = disc >= 0
    t = (-b - np.sqrt(np.where(hit, disc, 0.0))) / a  # the nearer root: the camera is never inside
    hit &= t > _EPS

    def shade(points: np.ndarray) -> np.ndarray:
        normals = (points - sphere.centre) / r
        # leafy clumps: noise on the direction, so the pattern sticks to the crown
        leaves = fbm(normals[:, 0] * 4 + normals[:, 2] * 2, normals[:, 1] * 4, sphere.seed, 3)
        colour = sphere.colour[None, :] * (0.45 + 0.9 * leaves)[:, None]
        return _lambert(scene, np.clip(colour, 0, 1), normals)

    canvas.draw(rect, t, hit, sphere.label, shade)


def _draw_solids(canvas: _Canvas, scene: StreetScene) -> None:
    """Boxes and spheres front to back, skipping any whose screen rectangle is already
    entirely covered by nearer surfaces (the z-buffer makes the order otherwise irrelevant)."""
    solids: list[Box | Sphere] = [*scene.boxes, *scene.spheres]
    if not solids:
        return
    lo = np.array([s.lo if isinstance(s, Box) else s.centre - s.radius for s in solids])
    hi = np.array([s.hi if isinstance(s, Box) else s.centre + s.radius for s in solids])
    rects, nearest = canvas.screen_rects(lo, hi)
    for index in np.argsort(nearest, kind="stable"):
        rect = rects[index]
        if rect is None or canvas.t[rect].max() < nearest[index]:
            continue
        solid = solids[index]
        if isinstance(solid, Box):
            _draw_box(canvas, scene, solid, rect)
        else:
            _draw_sphere(canvas, scene, solid, rect)


# -- sky, haze, sensor -----------------------------------------------------------------
def _shade_sky(canvas: _Canvas, scene: StreetScene) -> None:
    sky = ~np.isfinite(canvas.t)
    if not sky.any():
        return
    d = canvas.dirs[:, sky]
    up = d[1] / np.linalg.norm(d, axis=0)
    blend = np.clip(up * 3.0, 0.0, 1.0)[:, None]
    colour = scene.sky_horizon * (1 - blend) + scene.sky_zenith * blend
    # clouds on a plane 1 km up, seen through the ray
    height = np.maximum(d[1], 0.02)
    cloud = fbm(d[0] / height * 2.0, d[2] / height * 2.0, scene.seed + 11, 3)
    amount = np.clip((cloud - (1 - scene.cloud_cover)) * 3.0, 0.0, 1.0)[:, None]
    canvas.colour[sky] = (colour * (1 - amount) + np.array([0.93, 0.93, 0.95]) * amount).astype(np.float32)


def render(scene: StreetScene, K: np.ndarray, pose: np.ndarray, width: int, height: int,
           noise_rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image uint8 HxWx3 RGB, z-depth float64 HxW with inf for sky, labels uint8 HxW)."""
    canvas = _Canvas.create(K, pose, width, height)
    _draw_ground(canvas, scene)
    _draw_solids(canvas, scene)
    _shade_sky(canvas, scene)
    solid = np.isfinite(canvas.t)
    haze = np.zeros(canvas.t.shape, dtype=np.float32)
    haze[solid] = 1.0 - np.exp(-canvas.t[solid] / scene.haze_distance)
    colour = canvas.colour * (1 - haze[..., None]) + scene.sky_horizon.astype(np.float32) * haze[..., None]
    # vignetting, white balance, sensor noise
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    radius2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (width / 2)) ** 2
    colour = colour * (1 - 0.2 * radius2)[..., None] * scene.tint.astype(np.float32)
    image = colour * 255.0 + noise_rng.normal(0.0, scene.noise_sigma, colour.shape).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), canvas.t, canvas.labels
