"""Batched random thin-plate-spline warps for DVE training pairs, on whatever device the batch is on.

The warp family is DVE's ``utils/tps.Warper`` (copied into AER): a sampling grid ``G = F W`` where
``F = [U(|p - c_k|^2), 1, x, y]`` holds the TPS radial basis ``U(r2) = r2 log(r2 + 1e-5)`` of every pixel
``p`` against a 10 x 10 lattice of control points ``c_k`` on [-1, 1]^2, plus the affine terms, and ``W``
stacks random radial coefficients (N(0, warpsd_all); an element-wise random half N(0, warpsd_subset))
with a random similarity transform (rotation N(0, rotsd) degrees, scale 1 + N(0, scalesd), translation
N(0, transsd)).

An image is warped twice: ``im1 = warp(x, G1)`` and ``im2 = warp(im1, G2)``; ``grid = G2`` maps each
pixel of ``im2`` to its location in ``im1``: exactly the correspondence the DVE loss needs (source
``im2``, target ``im1``). The first warp is milder: in AER's copy only its radial coefficients are
multiplied by ``first_warp_multiplier`` = 0.5 (``im1_multiplier``; ``im1_multiplier_aff`` = 1 keeps its
affine part); the current DVE repository scales the whole first *and* second warp by 0.5. We follow
AER, and both multipliers are parameters.

Coordinates: ``F.grid_sample(..., align_corners=False)``, the torch default since 1.3, where -1/+1 are
the outer edges of the image and pixel ``k`` of ``n`` sits at ``(2k + 1)/n - 1``. DVE (written for
older torch) put pixels at ``linspace(-1, 1, n)`` (the align_corners=True convention) but sampled with
the new default, so its "identity" warp zooms out by n/(n-1) and its pixel unnormalisation is off by up
to half a pixel. Here the pixel lattice, the sampling and ``reid_core.losses.dve.grid_to_pixels`` use
one convention, so a zero warp returns the input exactly and an identity grid.

Randomness comes from a CPU ``torch.Generator`` (the coefficients are tiny: B x 103 x 2), so runs are
seeded the same way on CPU and GPU; only the basis product and the sampling run on the batch's device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class TPSConfig:
    """DVE's defaults (``tps.Warper(H, W)``)."""

    n_ctrl: int = 10
    warpsd_all: float = 0.001
    warpsd_subset: float = 0.01
    transsd: float = 0.1
    scalesd: float = 0.1
    rotsd: float = 5.0  # degrees
    first_warp_multiplier: float = 0.5  # radial coefficients of the first warp (AER's im1_multiplier)
    first_warp_affine_multiplier: float = 1.0  # affine part of the first warp (AER's im1_multiplier_aff)
    padding_mode: str = "zeros"  # zeros = the normalised mean colour for ImageNet-normalised inputs


@dataclass
class WarpedPair:
    """``im1`` singly warped, ``im2`` doubly warped, ``grid`` (B, H, W, 2): pixel of im2 -> place in im1."""

    im1: torch.Tensor
    im2: torch.Tensor
    grid: torch.Tensor


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Normalised pixel centres (H, W, 2) as (x, y) in the align_corners=False convention."""
    ys = (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height - 1
    xs = (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((xx, yy), dim=-1)


def control_points(n: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """An n x n lattice on [-1, 1]^2, flattened to (n*n, 2) as (x, y), row-major like DVE's."""
    lin = torch.linspace(-1, 1, n, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=1)


def tps_basis(points: torch.Tensor, ctrl: torch.Tensor) -> torch.Tensor:
    """[U(|p - c|^2) for every control point, 1, x, y] for every point: (P, N + 3)."""
    d2 = (points[:, None, :] - ctrl[None, :, :]).pow(2).sum(-1)
    radial = d2 * torch.log(d2 + 1e-5)
    ones = torch.ones(points.shape[0], 1, device=points.device, dtype=points.dtype)
    return torch.cat((radial, ones, points), dim=1)


def random_tps_weights(
    batch: int,
    n_points: int,
    *,
    warpsd_all: float,
    warpsd_subset: float,
    transsd: float,
    scalesd: float,
    rotsd: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random coefficients (B, N + 3, 2): N radial rows, then [tx, ty] and the 2 x 2 similarity part.

    As DVE: the "subset" is an element-wise coin flip over the (N, 2) radial coefficients.
    """
    kw = {"generator": generator, "dtype": torch.float32}
    radial = torch.randn(batch, n_points, 2, **kw) * warpsd_all
    subset = torch.rand(batch, n_points, 2, **kw) > 0.5
    radial = torch.where(subset, torch.randn(batch, n_points, 2, **kw) * warpsd_subset, radial)
    rot = torch.randn(batch, **kw) * rotsd * math.pi / 180
    scale = 1.0 + torch.randn(batch, **kw) * scalesd
    tx = torch.randn(batch, **kw) * transsd
    ty = torch.randn(batch, **kw) * transsd
    cos, sin = scale * torch.cos(rot), scale * torch.sin(rot)
    affine = torch.stack(
        (torch.stack((tx, ty), -1), torch.stack((cos, -sin), -1), torch.stack((sin, cos), -1)), dim=1
    )
    return torch.cat((radial, affine), dim=1)


class TPSWarper:
    """Random TPS pairs for a batch: ``warper(images, generator) -> WarpedPair``.

    The float32 basis matrix (HW x 103) is built once per (H, W, device) and cached.
    """

    def __init__(self, config: TPSConfig | None = None) -> None:
        self.config = config or TPSConfig()
        self._basis: dict[tuple, torch.Tensor] = {}

    def basis(self, height: int, width: int, device) -> torch.Tensor:
        key = (height, width, str(device))
        if key not in self._basis:
            pixels = pixel_grid(height, width, device=device).reshape(-1, 2)
            self._basis[key] = tps_basis(pixels, control_points(self.config.n_ctrl, device=device))
        return self._basis[key]

    def grid(self, weights: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Sampling grid (B, H, W, 2) of coefficients (B, N + 3, 2)."""
        basis = self.basis(height, width, weights.device)
        return torch.matmul(basis, weights.float()).reshape(weights.shape[0], height, width, 2)

    def sample_weights(
        self, batch: int, generator: torch.Generator | None = None, *, first: bool
    ) -> torch.Tensor:
        c = self.config
        radial = c.first_warp_multiplier if first else 1.0
        affine = c.first_warp_affine_multiplier if first else 1.0
        return random_tps_weights(
            batch,
            c.n_ctrl * c.n_ctrl,
            warpsd_all=radial * c.warpsd_all,
            warpsd_subset=radial * c.warpsd_subset,
            transsd=affine * c.transsd,
            scalesd=affine * c.scalesd,
            rotsd=affine * c.rotsd,
            generator=generator,
        )

    def warp(self, images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return F.grid_sample(
            images, grid.to(images.dtype), mode="bilinear", padding_mode=self.config.padding_mode, align_corners=False
        )

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> WarpedPair:
        if images.ndim != 4:
            raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
        batch, _, height, width = images.shape
        if not images.dtype.is_floating_point:
            images = images.float()
        # Grids stay float32 whatever the image dtype: half precision would move pixels at 224 px.
        w1 = self.sample_weights(batch, generator, first=True).to(images.device)
        w2 = self.sample_weights(batch, generator, first=False).to(images.device)
        grid1 = self.grid(w1, height, width)
        grid2 = self.grid(w2, height, width)
        im1 = self.warp(images, grid1)
        im2 = self.warp(im1, grid2)
        return WarpedPair(im1=im1, im2=im2, grid=grid2)
