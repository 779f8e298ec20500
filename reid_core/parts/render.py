"""PAW-ViT's pseudo part masks from keypoints and a foreground mask, as its authors make them
(``mask_generation/extract_semseg_masks.py``), written as one label map in our vocabulary:

1. A keypoint is used when its visibility (a flag or a score) is over ``min_visibility`` (0.5, the
   authors' threshold) and its mapping does not ignore it; coordinates are clipped to the frame.
2. A midpoint is added on every connection whose two ends are used, with the connection's part.
3. Where the mapping names tail keypoints and both are used, the tail is traced between them along a
   shortest path through the foreground (ends outside it moved to its nearest pixel) and two points
   are placed on it, at a third and two thirds of the path, labelled tail.
4. Every foreground pixel of the ``size`` x ``size`` grid (the mask resized, nearest) gets the part of
   its nearest point; the rest is background (0).

Two choices of ours: the authors split a tie between parts evenly in a soft mask, here the lower label
wins (one label per pixel); distances are measured from pixel centres. The authors trace the tail with
skimage's ``route_through_array`` (unit cost inside the mask, 8-connected, diagonal steps cost sqrt 2);
here scipy's Dijkstra on the same graph, on the mask downscaled to at most ``TRACE_SIDE`` pixels.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from reid_core.parts.mapping import IGNORED, KeypointMapping
from reid_core.parts.schemes import BACKGROUND, LABELS

DEFAULT_SIZE = 64  # PAW-ViT's mask grid (the ATM's 64 x 64 output)
MIN_VISIBILITY = 0.5
TAIL_POINTS = 2
TRACE_SIDE = 256  # the tail is traced at this resolution at most: the points land on a 64 x 64 grid
TAIL = LABELS.index("tail")


class PartMaskError(ValueError):
    """This row cannot have a part mask (no foreground, no usable keypoint): recorded, the job goes on."""


def keypoint_array(values: list[float] | np.ndarray) -> np.ndarray:
    """Flat ``[x1, y1, v1, ...]`` -> (N, 3) floats."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size % 3:
        raise ValueError(f"expected a flat list of (x, y, v) triples, got {array.size} values")
    return array.reshape(-1, 3)


def visible(keypoints: np.ndarray, labels: np.ndarray, min_visibility: float = MIN_VISIBILITY) -> np.ndarray:
    """Which keypoints are used: finite position, visibility over the threshold, not ignored."""
    finite = np.isfinite(keypoints[:, :2]).all(axis=1)
    return finite & (np.nan_to_num(keypoints[:, 2], nan=0.0) > min_visibility) & (np.asarray(labels) != IGNORED)


def with_midpoints(xy: np.ndarray, used: np.ndarray, labels: np.ndarray,
                   connections: tuple[tuple[int, int, int], ...]) -> tuple[np.ndarray, np.ndarray]:
    """The used keypoints plus a midpoint (with the connection's label) per connection with both ends used."""
    points, point_labels = [xy[used]], [np.asarray(labels)[used]]
    for i, j, label in connections:
        if used[i] and used[j]:
            points.append(((xy[i] + xy[j]) / 2)[None])
            point_labels.append(np.array([label]))
    return np.concatenate(points).reshape(-1, 2), np.concatenate(point_labels).astype(np.int64)


def _pixel(foreground: np.ndarray, x: float, y: float) -> tuple[int, int]:
    """The (row, col) of a point, moved to the nearest foreground pixel where it lies outside."""
    height, width = foreground.shape
    row, col = min(max(int(y), 0), height - 1), min(max(int(x), 0), width - 1)
    if foreground[row, col]:
        return row, col
    rows, cols = np.nonzero(foreground)
    nearest = np.argmin((rows + 0.5 - y) ** 2 + (cols + 0.5 - x) ** 2)
    return int(rows[nearest]), int(cols[nearest])


def shortest_path(foreground: np.ndarray, start: tuple[int, int], end: tuple[int, int]) -> list[tuple[int, int]]:
    """(row, col) pixels of a shortest 8-connected path through the foreground, start to end; empty when
    the two are not connected."""
    height, width = foreground.shape
    index = np.full(foreground.shape, -1, dtype=np.int64)
    index[foreground] = np.arange(int(foreground.sum()))
    sources, targets, weights = [], [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):  # each neighbour pair once (the graph is undirected)
        c0, c1 = max(0, -dc), width - max(0, dc)
        a = index[0:height - dr, c0:c1]
        b = index[dr:height, c0 + dc:c1 + dc]
        both = (a >= 0) & (b >= 0)
        sources.append(a[both])
        targets.append(b[both])
        weights.append(np.full(int(both.sum()), np.hypot(dr, dc)))
    n = int(foreground.sum())
    graph = coo_matrix((np.concatenate(weights), (np.concatenate(sources), np.concatenate(targets))),
                       shape=(n, n)).tocsr()
    first, last = index[start], index[end]
    distances, predecessors = dijkstra(graph, directed=False, indices=first, return_predecessors=True)
    if not np.isfinite(distances[last]):
        return []
    path, node = [last], last
    while node != first:
        node = predecessors[node]
        path.append(node)
    rows, cols = np.nonzero(foreground)  # node k is the k-th foreground pixel in row-major order
    return [(int(rows[k]), int(cols[k])) for k in reversed(path)]


def trace_tail(foreground: np.ndarray, start: np.ndarray, end: np.ndarray, count: int = TAIL_POINTS) -> np.ndarray:
    """``count`` points (x, y) spread along a shortest path through the foreground from ``start`` to
    ``end`` (both ends left out, as the authors place them); none where the path is too short or broken."""
    height, width = foreground.shape
    scale = min(1.0, TRACE_SIDE / max(height, width))
    if scale < 1.0:  # any foreground in a cell keeps it: a thin tail stays connected
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        foreground = cv2.resize(foreground.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0
    sy, sx = foreground.shape[0] / height, foreground.shape[1] / width
    path = shortest_path(foreground, _pixel(foreground, start[0] * sx, start[1] * sy),
                         _pixel(foreground, end[0] * sx, end[1] * sy))
    if len(path) < count:
        return np.zeros((0, 2))
    picked = [path[k] for k in np.linspace(0, len(path) - 1, count + 2).astype(int)[1:-1]]
    return np.array([((col + 0.5) / sx, (row + 0.5) / sy) for row, col in picked], dtype=np.float64)


def to_grid(foreground: np.ndarray, size: int) -> np.ndarray:
    """The foreground on the size x size grid (nearest, sampled at pixel centres)."""
    return cv2.resize(foreground.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST_EXACT) > 0


def nearest_part(foreground: np.ndarray, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each foreground pixel gets the label of its nearest point (points in pixel units of this grid,
    pixel (r, c) centred at (c + 0.5, r + 0.5)); ties go to the lower label; background stays 0."""
    height, width = foreground.shape
    rows, cols = np.mgrid[0:height, 0:width]
    centres = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1)
    squared = ((centres[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)  # pixels x points
    per_label = np.full((len(LABELS), centres.shape[0]), np.inf)
    for label in np.unique(labels):
        per_label[label] = squared[:, labels == label].min(axis=1)
    out = per_label.argmin(axis=0).reshape(height, width).astype(np.uint8)
    out[~foreground] = BACKGROUND
    return out


def part_label_map(foreground: np.ndarray, values: list[float] | np.ndarray, mapping: KeypointMapping,
                   size: int = DEFAULT_SIZE, min_visibility: float = MIN_VISIBILITY) -> np.ndarray:
    """The (size, size) uint8 label map of one image: ``foreground`` (H, W) bool on the image's frame,
    ``values`` its flat keypoints (pixel coordinates of that frame) in the mapping's order."""
    keypoints = keypoint_array(values)
    if len(keypoints) != len(mapping.names):
        raise ValueError(f"{len(keypoints)} keypoints given, mapping {mapping.name} has {len(mapping.names)}")
    height, width = foreground.shape
    grid = to_grid(foreground, size)
    if not grid.any():
        raise PartMaskError("no foreground: the mask is empty" if not foreground.any() else
                            f"no foreground: the mask covers no pixel of the {size}x{size} grid")
    labels = np.asarray(mapping.labels)
    used = visible(keypoints, labels, min_visibility)
    if not used.any():
        raise PartMaskError(f"no usable keypoint: none of the {len(keypoints)} has visibility > {min_visibility}")
    xy = np.clip(np.nan_to_num(keypoints[:, :2]), 0, [width, height])
    points, point_labels = with_midpoints(xy, used, labels, mapping.connections)
    if mapping.tail is not None and used[list(mapping.tail)].all():
        tail = trace_tail(foreground, xy[mapping.tail[0]], xy[mapping.tail[1]])
        points = np.concatenate([points, tail])
        point_labels = np.concatenate([point_labels, np.full(len(tail), TAIL)])
    scale = np.array([size / width, size / height])
    return nearest_part(grid, points * scale, point_labels)
