"""Dense correlation loss with Descriptor Vector Exchange (Thewlis et al., ICCV 2019), as AER uses it.

For image ``b`` of the batch, ``f1`` are the descriptors of the *source* image (C x HW), ``f2`` those of
the *target* image (a warp of the source) and ``fa`` those of an auxiliary image, the source of image
``(b + 1) % B``. Then::

    A      = softmax_rows(f1^T fa)            # HW x HW: source location -> auxiliary location
    f1_hat = fa A^T                           # the source described by auxiliary descriptors
    P      = softmax_rows(f1_hat^T f2)        # HW x HW: source location u -> target location v
    L_b    = sum_{u,v} ||g(u) - v||^0.5 P[u, v]

in input-pixel units, where ``g(u)`` is where source location ``u`` lies in the target image (given by
the warp ``grid``) and feature cell ``(i, j)`` stands for input pixel ``(stride*i, stride*j)``,
``stride = H_in // H`` (DVE's and AER's subsampling). The loss is ``sum_b L_b / (H W B)``.

``normalize_vectors``: AER's ``train.py`` calls the loss with ``False`` (raw dot products of the ReLU
descriptors; DVE's smallnet configs do the same); DVE's default is ``True``: L2-normalise each
descriptor and multiply by 20 (a temperature) before the correlations. Both are exposed.

Memory: each image needs a few HW x HW float32 matrices (A, P, the distances) kept for backward:
HW = 16 x 16 at 64 px input is nothing, 56 x 56 at 224 px is ~40 MB per matrix per image (~3.6 GB for
a batch of 30). The batch is processed ``chunk_size`` images at a time (one ``bmm`` per chunk);
``checkpoint=True`` recomputes each chunk in the backward pass so only one chunk's matrices are alive.

The grid follows ``F.grid_sample(align_corners=False)``: -1 and +1 are the outer *edges* of the image,
so pixel ``k`` (of ``n``) has normalised centre ``(2k + 1) / n - 1``; see ``reid_core.methods.dve.tps``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def grid_to_pixels(grid: torch.Tensor) -> torch.Tensor:
    """Normalised (align_corners=False) grid (B, H, W, 2) -> pixel coordinates (x, y), pixel centres at k."""
    height, width = grid.shape[1], grid.shape[2]
    scale = grid.new_tensor([width, height])
    return ((grid + 1.0) * scale - 1.0) / 2.0


def _subsampled_locations(grid: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source locations mapped into the target ``g(u)`` (B, hw, 2) and target locations ``v`` (hw, 2)."""
    batch, height_in, width_in, _ = grid.shape
    sy, sx = height_in // h, width_in // w
    if sy < 1 or sx < 1:
        raise ValueError(f"feature map {h}x{w} is larger than the grid {height_in}x{width_in}")
    g_u = grid_to_pixels(grid)[:, : sy * h : sy, : sx * w : sx, :].reshape(batch, h * w, 2)
    ys = torch.arange(h, device=grid.device, dtype=grid.dtype) * sy
    xs = torch.arange(w, device=grid.device, dtype=grid.dtype) * sx
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    v = torch.stack((xx.reshape(-1), yy.reshape(-1)), dim=1)
    return g_u, v


def _chunk_loss(
    f1: torch.Tensor, f2: torch.Tensor, fa: torch.Tensor, distance: torch.Tensor
) -> torch.Tensor:
    """Sum over the chunk of sum_{u,v} distance[u, v] P[u, v]; f* are (b, C, HW), distance (b, HW, HW)."""
    attention = torch.softmax(torch.bmm(f1.transpose(1, 2), fa), dim=2)  # (b, HW_src, HW_aux)
    f1_hat = torch.bmm(attention, fa.transpose(1, 2))  # (b, HW_src, C)
    match = torch.softmax(torch.bmm(f1_hat, f2), dim=2)  # (b, HW_src, HW_tgt)
    return (distance * match).sum()


class _RecomputedChunk(torch.autograd.Function):
    """``_chunk_loss`` that keeps only its inputs and recomputes the HW x HW matrices in backward.

    The backward is written out by hand (two softmaxes and three batched products), so it needs no
    reentrant autograd: ``torch.utils.checkpoint`` (or ``autograd.grad`` inside a backward) would do the
    same, but their first call imports dynamo/sympy, ~6-14 s on a 2-core CPU box.
    """

    @staticmethod
    def forward(ctx, f1, f2, fa, distance):  # type: ignore[override]
        ctx.save_for_backward(f1, f2, fa, distance)
        return _chunk_loss(f1, f2, fa, distance)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        f1, f2, fa, distance = ctx.saved_tensors
        attention = torch.softmax(torch.bmm(f1.transpose(1, 2), fa), dim=2)  # A: (b, HW, HW)
        f1_hat = torch.bmm(attention, fa.transpose(1, 2))  # (b, HW, C)
        match = torch.softmax(torch.bmm(f1_hat, f2), dim=2)  # P: (b, HW, HW)
        d_match = distance * grad_output
        d_s2 = match * (d_match - (d_match * match).sum(dim=2, keepdim=True))  # softmax backward
        del match, d_match
        d_f1_hat = torch.bmm(d_s2, f2.transpose(1, 2))  # (b, HW, C)
        d_f2 = torch.bmm(f1_hat.transpose(1, 2), d_s2)  # (b, C, HW)
        del d_s2
        d_attention = torch.bmm(d_f1_hat, fa)  # (b, HW, HW)
        d_fa = torch.bmm(d_f1_hat.transpose(1, 2), attention)  # (b, C, HW), through f1_hat
        d_s1 = attention * (d_attention - (d_attention * attention).sum(dim=2, keepdim=True))
        d_f1 = torch.bmm(fa, d_s1.transpose(1, 2))  # (b, C, HW)
        d_fa = d_fa + torch.bmm(f1, d_s1)  # through the first correlation
        return d_f1, d_f2, d_fa, None


def dve_loss(
    source: torch.Tensor,
    target: torch.Tensor,
    grid: torch.Tensor,
    *,
    normalize_vectors: bool = False,
    scale: float = 20.0,
    power: float = 0.5,
    chunk_size: int | None = 8,
    checkpoint: bool = False,
) -> torch.Tensor:
    """DVE loss of descriptor maps ``source`` and ``target`` (B, C, H, W) related by ``grid``.

    ``grid`` (B, H_in, W_in, 2) gives, for every input pixel of the source image, its location in the
    target image in normalised ``grid_sample`` coordinates (align_corners=False). In the TPS warper's
    terms the source is ``im2`` (doubly warped) and the target ``im1`` (singly warped).
    The auxiliary descriptors are ``source`` rolled by one along the batch.
    """
    if source.shape != target.shape or source.ndim != 4:
        raise ValueError(f"source and target must be equal (B, C, H, W), got {source.shape} and {target.shape}")
    if grid.ndim != 4 or grid.shape[0] != source.shape[0] or grid.shape[-1] != 2:
        raise ValueError(f"grid must be (B, H_in, W_in, 2) with B={source.shape[0]}, got {tuple(grid.shape)}")
    # Correlations and softmaxes in float32 even under autocast: HW-way softmaxes are fragile in half.
    source, target, grid = source.float(), target.float(), grid.float()
    batch, channels, h, w = source.shape
    f1 = source.reshape(batch, channels, h * w)
    f2 = target.reshape(batch, channels, h * w)
    if normalize_vectors:
        f1 = F.normalize(f1, dim=1) * scale
        f2 = F.normalize(f2, dim=1) * scale
    fa = torch.roll(f1, shifts=-1, dims=0)  # fa[b] = f1[(b + 1) % B]

    with torch.no_grad():
        g_u, v = _subsampled_locations(grid, h, w)

    step = batch if not chunk_size else max(1, chunk_size)
    total = source.new_zeros(())
    for start in range(0, batch, step):
        stop = min(batch, start + step)
        with torch.no_grad():
            # The matmul shortcut of cdist loses ~0.1 px near 0 at these magnitudes: compute it exactly.
            distance = torch.cdist(
                g_u[start:stop],
                v[None].expand(stop - start, -1, -1),
                compute_mode="donot_use_mm_for_euclid_dist",
            ).pow(power)
        args = (f1[start:stop], f2[start:stop], fa[start:stop], distance)
        if checkpoint and torch.is_grad_enabled():
            total = total + _RecomputedChunk.apply(*args)
        else:
            total = total + _chunk_loss(*args)
    return total / (h * w * batch)
