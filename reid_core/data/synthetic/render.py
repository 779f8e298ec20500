"""One image: pose the individual, draw it on its scene, light it, and maybe put vegetation in front."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reid_core.data.synthetic import seeds
from reid_core.data.synthetic.canvas import Canvas
from reid_core.data.synthetic.geometry import Pose
from reid_core.data.synthetic.keypoints import image_keypoints
from reid_core.data.synthetic.occluders import vegetation
from reid_core.data.synthetic.species import SpeciesPreset, individual_signature
from reid_core.data.synthetic.species import preset as species_preset

DEFAULT_OCCLUSION = 0.3  # probability that an image has a vegetation occluder


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # (S, S, 3) uint8
    parts: np.ndarray  # (S, S) uint8 part labels, 0 where background or occluded
    occluder: np.ndarray  # (S, S) bool, the vegetation drawn in front
    keypoints: tuple[float, ...] = ()  # ATRW's 15 keypoints as flat (x, y, v) in image pixels (keypoints.py)

    @property
    def mask(self) -> np.ndarray:
        return self.parts > 0

    @property
    def occluded(self) -> bool:
        return bool(self.occluder.any())


def _pose(rng: np.random.Generator, preset: SpeciesPreset, size: int, mirror: bool) -> Pose:
    angle = rng.uniform(-0.2, 0.2)
    scale = rng.uniform(0.6, 0.86) * size
    x0, y0, x1, y1 = preset.extent
    corners = np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
    probe = Pose(angle, scale, 0.0, 0.0, mirror, 0.0, 0.0, 0.0)
    px = corners @ probe.matrix().T
    lo, hi = -px.min(axis=0) - 0.02 * size, size - px.max(axis=0) + 0.02 * size
    centre = [rng.uniform(a, b) if b > a else (a + b) / 2 for a, b in zip(lo, hi, strict=True)]
    return Pose(angle, scale, centre[0], centre[1], mirror, rng.uniform(-1, 1), rng.uniform(-0.15, 0.2),
                rng.uniform(-1, 1))


def render_image(
    species: str,
    individual: int,
    index: int,
    side: str,
    background: np.ndarray,
    *,
    seed: int,
    occlusion: float = DEFAULT_OCCLUSION,
) -> Rendered:
    """Draw image ``index`` of ``individual`` on ``background`` (S x S x 3 uint8), seeded by
    (seed, species, individual, index). The occluder has its own random stream and ``occlusion`` only
    decides whether it is applied, so the same image with ``occlusion=0`` is its unoccluded version."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    preset = species_preset(species)
    size = background.shape[0]
    sig = individual_signature(species, individual, seed)
    rng = seeds.stream(seed, seeds.species_code(species), individual, index, seeds.IMAGE)
    pose = _pose(rng, preset, size, mirror=side == "right")
    canvas = Canvas(size, pose)
    preset.draw(canvas, sig, side, pose)
    labels, tones = canvas.arrays()
    shown = labels  # before the occluder is cut out (np.where below makes a new array)
    fg = labels > 0

    # colour of the animal's pixels: palette, shading along the body's up axis, lighting, fur noise
    ys, xs = np.nonzero(fg)
    rgb = preset.palette(sig)[tones[ys, xs]]
    up_x, up_y = math.sin(pose.angle), -math.cos(pose.angle)
    height = ((xs + 0.5 - pose.cx) * up_x + (ys + 0.5 - pose.cy) * up_y) / pose.scale
    rgb *= np.clip(1.0 + 0.6 * height, 0.8, 1.2).astype(np.float32)[:, None]
    brightness, contrast = rng.uniform(0.7, 1.25), rng.uniform(0.75, 1.2)
    cast = rng.uniform(0.93, 1.07, 3)
    mean = rgb.mean(axis=0) if len(rgb) else np.zeros(3, np.float32)
    rgb = ((rgb - mean) * np.float32(contrast) + mean) * (brightness * cast).astype(np.float32)
    rgb += rng.standard_normal((len(rgb), 1), dtype=np.float32) * np.float32(5.0)
    image = background.copy()
    image[ys, xs] = np.clip(rgb, 0, 255).astype(np.uint8)

    # occluder: its own random stream, so ``occlusion`` changes nothing else about the image
    occ = np.zeros_like(fg)
    if rng.random() < occlusion and len(ys):
        box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
        occ_rng = seeds.stream(seed, seeds.species_code(species), individual, index, seeds.OCCLUDER)
        drawn, occ_rgb = vegetation(occ_rng, size, box)
        if (fg & ~drawn).sum() >= 0.5 * fg.sum():  # never hide more than half of the animal
            occ = drawn
            image = np.where(occ[..., None], occ_rgb, image)
            labels = np.where(occ, 0, labels).astype(np.uint8)
    points = image_keypoints(preset.landmarks(sig, side, pose), preset.legs, side, pose, shown, tones, occ)
    return Rendered(image=image, parts=labels, occluder=occ, keypoints=points)


# --------------------------------------------------------------------------------------------------
# The dataset: plan (splits, sides, scenes, roles, cameras, frames) in the parent, render in workers.
