"""ATRW-format keypoints of one synthetic image, placed on the geometry the species drew (its pose, leg
curves, head, tail and body shapes) as an annotator would click them, not read off the part masks.

ATRW's 15 keypoints in ATRW's order, image pixels (x, y) with pixel (r, c) covering [c, c+1) x [r, r+1),
and ``v`` = 2 where the point is seen, 0 (with x = y = 0) where it is hidden behind the animal's own near
side, under vegetation, outside the frame, or not drawn at all (the yak's and elephant's far ear).
Left and right follow the flank shown: the near legs and ear are the shown side's (``side``), the far
ones the other's. Where on each shape a keypoint sits: ears at their centre, the nose at the muzzle (the
elephant's at its trunk's tip), shoulders and hips at the top of the leg curves, the knee at the hind
leg's bend (the curve's middle), paws near the foot of the leg, the tail at its root where it comes out
from behind the body (clear of it by the tail's width), the centre at the main body ellipse's centre.

Seen is decided by what the drawing shows in front (the canvas's part and tone layers before the
occluder is cut out, which carry the drawing order): within ``REACH`` pixels of the keypoint the drawing
shows its part (a far-side leg point needs a far-side leg pixel), and its own pixel is not under the
vegetation. So the far shoulder and hip, always behind the body, are never seen; nor is the elephant's
near shoulder where its ear covers it.
"""

from __future__ import annotations

import numpy as np

from reid_core.data.synthetic.canvas import BODY, FAR, FRONT_LEGS, HEAD, HIND_LEGS, TAIL
from reid_core.data.synthetic.geometry import Pose
from reid_core.data.synthetic.limbs import leg_controls

ATRW_KEYPOINTS = ("left_ear", "right_ear", "nose", "right_shoulder", "right_front_paw", "left_shoulder",
                  "left_front_paw", "right_hip", "right_knee", "right_back_paw", "left_hip", "left_knee",
                  "left_back_paw", "tail", "center")
VISIBLE, HIDDEN = 2.0, 0.0
REACH = 1  # pixels: a keypoint on a shape's edge (a leg's top, the tail's root) still lies on it
PAW_T = 0.9  # where on the leg curve the paw is: above the foot's flat end, inside the drawn leg
KNEE_T = 0.5


def _on_curve(controls: tuple, t: float) -> np.ndarray:
    p0, p1, p2 = (np.asarray(p, dtype=float) for p in controls)
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2


def canonical(landmarks: dict, legs: dict, side: str, pose: Pose) -> dict[str, tuple]:
    """name -> (canonical point or None, part label, far: True / False / None for either tone)."""
    other = "right" if side == "left" else "left"
    points = {
        f"{side}_ear": (landmarks["near_ear"], HEAD, None),
        f"{other}_ear": (landmarks["far_ear"], HEAD, None),
        "nose": (landmarks["nose"], HEAD, None),
        "tail": (landmarks["tail"], TAIL, None),
        "center": (landmarks["center"], BODY, None),
    }
    for far, name in ((False, side), (True, other)):
        (_, front), (_, hind) = leg_controls(pose, legs, far)
        points[f"{name}_shoulder"] = (_on_curve(front, 0.0), FRONT_LEGS, far)
        points[f"{name}_front_paw"] = (_on_curve(front, PAW_T), FRONT_LEGS, far)
        points[f"{name}_hip"] = (_on_curve(hind, 0.0), HIND_LEGS, far)
        points[f"{name}_knee"] = (_on_curve(hind, KNEE_T), HIND_LEGS, far)
        points[f"{name}_back_paw"] = (_on_curve(hind, PAW_T), HIND_LEGS, far)
    return points


def _seen(x: float, y: float, part: int, far: bool | None, labels: np.ndarray, tones: np.ndarray,
          occluder: np.ndarray) -> bool:
    height, width = labels.shape
    if not (0 <= x < width and 0 <= y < height):
        return False
    row, col = int(y), int(x)
    if occluder[row, col]:
        return False
    window = np.s_[max(row - REACH, 0):row + REACH + 1, max(col - REACH, 0):col + REACH + 1]
    shown = labels[window] == part
    if far is not None:
        shown &= (tones[window] >= FAR) == far
    return bool(shown.any())


def image_keypoints(landmarks: dict, legs: dict, side: str, pose: Pose, labels: np.ndarray, tones: np.ndarray,
                    occluder: np.ndarray) -> tuple[float, ...]:
    """The flat 45 numbers (x, y, v per ATRW keypoint) of one image. ``labels`` and ``tones`` are the
    canvas's layers before the occluder is cut out; ``occluder`` the vegetation drawn in front."""
    points = canonical(landmarks, legs, side, pose)
    matrix, centre = pose.matrix(), np.array([pose.cx, pose.cy])
    flat: list[float] = []
    for name in ATRW_KEYPOINTS:
        point, part, far = points[name]
        if point is None:
            flat += [0.0, 0.0, HIDDEN]
            continue
        # the canvas draws with PIL, whose pixel centres are at integer coordinates: + 0.5 to ATRW's
        x, y = np.asarray(point, dtype=float) @ matrix.T + centre + 0.5
        if _seen(x, y, part, far, labels, tones, occluder):
            flat += [round(float(x), 2), round(float(y), 2), VISIBLE]
        else:
            flat += [0.0, 0.0, HIDDEN]
    return tuple(flat)
