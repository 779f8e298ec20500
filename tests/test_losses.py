"""Loss values checked against hand computations and straightforward reference loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reid_core.losses import (
    CircleLoss,
    circle_loss,
    circle_loss_from_similarities,
    dve_loss,
    grid_to_pixels,
    identity_loss,
    orientation_loss,
    pair_similarities,
)
from reid_core.methods.dve.tps import TPSWarper, pixel_grid

# --------------------------------------------------------------------------------------------------
# Circle loss
# --------------------------------------------------------------------------------------------------


def _circle_by_hand(sp: list[float], sn: list[float], m: float, gamma: float) -> float:
    """softplus(LSE(-g*ap*(sp-(1-m))) + LSE(g*an*(sn-m))), ap = [1+m-sp]+, an = [sn+m]+ (numpy)."""
    sp_, sn_ = np.asarray(sp, dtype=np.float64), np.asarray(sn, dtype=np.float64)
    ap = np.maximum(1 + m - sp_, 0)
    an = np.maximum(sn_ + m, 0)
    lse_p = np.log(np.sum(np.exp(-gamma * ap * (sp_ - (1 - m)))))
    lse_n = np.log(np.sum(np.exp(gamma * an * (sn_ - m))))
    return float(np.log1p(np.exp(lse_p + lse_n)))


def test_circle_loss_three_samples_matches_hand_computation():
    # Unit vectors at 0, 60 and 90 degrees: cos similarities s01 = 0.5, s02 = 0, s12 = cos(30) = 0.866.
    angles = torch.tensor([0.0, 60.0, 90.0], dtype=torch.float64) * math.pi / 180
    embeddings = torch.stack([torch.cos(angles), torch.sin(angles)], dim=1) * 3.0  # normalised inside
    labels = torch.tensor([0, 0, 1])
    m, gamma = 0.25, 64.0

    # Pairs i < j: (0,1) positive with s = 0.5; (0,2) and (1,2) negatives with s = 0 and 0.866.
    sp, sn = pair_similarities(F.normalize(embeddings, dim=1), labels)
    assert sp.tolist() == pytest.approx([0.5])
    assert sorted(sn.tolist()) == pytest.approx([0.0, math.cos(math.pi / 6)])

    # By hand: ap = 0.75, logit_p = -64*0.75*(0.5-0.75) = 12; an = (0.25, 1.116),
    # logit_n = (64*0.25*(0-0.25), 64*1.116*(0.866-0.25)) = (-4, 44.0): L ~= 12 + 44 = 56.
    expected = _circle_by_hand([0.5], [0.0, math.cos(math.pi / 6)], m, gamma)
    assert expected == pytest.approx(12 + 64 * (math.cos(math.pi / 6) + 0.25) * (math.cos(math.pi / 6) - 0.25), abs=1e-3)
    assert circle_loss(embeddings, labels, m=m, gamma=gamma).item() == pytest.approx(expected, rel=1e-9)
    assert CircleLoss(m, gamma)(embeddings, labels).item() == pytest.approx(expected, rel=1e-9)

    # gamma is a real knob: the code's 32 gives the hand value at 32.
    assert circle_loss(embeddings, labels, m=m, gamma=32.0).item() == pytest.approx(
        _circle_by_hand([0.5], [0.0, math.cos(math.pi / 6)], m, 32.0), rel=1e-9
    )


def test_circle_loss_from_similarities_with_several_pairs_and_detached_weights():
    sp = torch.tensor([0.9, 0.3, 1.3], dtype=torch.float64, requires_grad=True)  # 1.3: ap clamps to 0
    sn = torch.tensor([-0.5, 0.2, 0.6], dtype=torch.float64, requires_grad=True)  # -0.5: an clamps to 0
    m, gamma = 0.3, 16.0
    loss = circle_loss_from_similarities(sp, sn, m=m, gamma=gamma)
    assert loss.item() == pytest.approx(_circle_by_hand(sp.tolist(), sn.tolist(), m, gamma), rel=1e-12)

    # ap/an are detached: d logit_p / d sp = -gamma * ap (no derivative through ap).
    loss.backward()
    ap = torch.clamp_min(1 + m - sp.detach(), 0)
    logit_p = -gamma * ap * (sp.detach() - (1 - m))
    logit_n = gamma * torch.clamp_min(sn.detach() + m, 0) * (sn.detach() - m)
    outer = torch.sigmoid(torch.logsumexp(logit_p, 0) + torch.logsumexp(logit_n, 0))
    expected_grad = outer * torch.softmax(logit_p, 0) * (-gamma * ap)
    assert torch.allclose(sp.grad, expected_grad, rtol=1e-9, atol=1e-12)
    assert sp.grad[2] == 0 and sn.grad[0] == 0


def test_circle_loss_without_positive_pairs_is_zero_and_differentiable():
    embeddings = torch.randn(4, 8, requires_grad=True)
    loss = circle_loss(embeddings, torch.arange(4))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(embeddings.grad).all() and embeddings.grad.abs().sum() == 0


# --------------------------------------------------------------------------------------------------
# Classification losses
# --------------------------------------------------------------------------------------------------


def test_identity_loss_is_label_smoothed_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels = torch.tensor([0, 2])
    eps, classes = 0.1, 3
    log_p = torch.log_softmax(logits, dim=1)
    target = torch.full_like(log_p, eps / classes)
    target[torch.arange(2), labels] += 1 - eps
    expected = -(target * log_p).sum(1).mean()
    assert identity_loss(logits, labels, 0.1).item() == pytest.approx(expected.item(), rel=1e-6)


def test_orientation_loss_ignores_unknown_sides():
    logits = torch.tensor([[1.0, -1.0], [0.0, 2.0], [5.0, -5.0]])
    sides = torch.tensor([1, -1, 0])
    known = sides != -1
    expected = F.cross_entropy(logits[known], sides[known], label_smoothing=0.1)
    assert orientation_loss(logits, sides, 0.1).item() == pytest.approx(expected.item(), rel=1e-6)

    all_unknown = logits.clone().requires_grad_(True)
    loss = orientation_loss(all_unknown, torch.full((3,), -1))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(all_unknown.grad, torch.zeros_like(all_unknown))


# --------------------------------------------------------------------------------------------------
# DVE loss
# --------------------------------------------------------------------------------------------------


def _dve_reference(src, tgt, grid, *, normalize=False, scale=20.0, power=0.5):
    """A literal per-image, per-location transcription of the formula (DVE's loop)."""
    batch, channels, h, w = src.shape
    height_in, width_in = grid.shape[1:3]
    sy, sx = height_in // h, width_in // w
    pixels = ((grid + 1) * torch.tensor([width_in, height_in], dtype=grid.dtype) - 1) / 2
    total = 0.0
    for b in range(batch):
        f1 = src[b].reshape(channels, -1)
        f2 = tgt[b].reshape(channels, -1)
        fa = src[(b + 1) % batch].reshape(channels, -1)
        if normalize:
            f1, f2, fa = (F.normalize(f, dim=0) * scale for f in (f1, f2, fa))
        attention = torch.softmax(f1.t() @ fa, dim=1)
        f1_hat = fa @ attention.t()
        match = torch.softmax(f1_hat.t() @ f2, dim=1)
        positions = torch.tensor([[(v % w) * sx, (v // w) * sy] for v in range(h * w)], dtype=grid.dtype)
        for u in range(h * w):
            gu = pixels[b, (u // w) * sy, (u % w) * sx]
            distance = torch.linalg.vector_norm(gu[None] - positions, dim=1) ** power
            total = total + (distance * match[u]).sum()
    return total / (h * w * batch)


@pytest.mark.parametrize("normalize", [False, True])
def test_dve_loss_matches_reference_loop(normalize):
    gen = torch.Generator().manual_seed(0)
    src = torch.randn(3, 5, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    tgt = torch.randn(3, 5, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    grid = (torch.rand(3, 16, 16, 2, generator=gen, dtype=torch.float64) * 2.2 - 1.1).float()

    expected = _dve_reference(src.float(), tgt.float(), grid, normalize=normalize)
    expected.backward()
    ref_grads = src.grad.clone(), tgt.grad.clone()

    for chunk, ckpt in [(None, False), (1, False), (2, True)]:
        src.grad = tgt.grad = None
        got = dve_loss(src, tgt, grid, normalize_vectors=normalize, chunk_size=chunk, checkpoint=ckpt)
        assert got.item() == pytest.approx(expected.item(), rel=1e-4)
        got.backward()
        # (allclose, not torch.testing.assert_close: the latter's first call costs seconds of imports)
        assert torch.allclose(src.grad, ref_grads[0], rtol=1e-3, atol=1e-5)
        assert torch.allclose(tgt.grad, ref_grads[1], rtol=1e-3, atol=1e-5)


def test_grid_convention_is_shared_with_the_warper():
    grid = pixel_grid(6, 10)[None]
    pixels = grid_to_pixels(grid)[0]
    assert torch.allclose(pixels[..., 0], torch.arange(10.0).expand(6, 10), atol=1e-5)
    assert torch.allclose(pixels[..., 1], torch.arange(6.0)[:, None].expand(6, 10), atol=1e-5)


def _distinct_descriptors(batch: int, channels: int, h: int, w: int) -> torch.Tensor:
    """The same random descriptor per location in every image: distinctive per location."""
    gen = torch.Generator().manual_seed(1)
    per_location = torch.randn(channels, h, w, generator=gen) * 3.0
    return per_location.expand(batch, -1, -1, -1).contiguous()


def test_dve_loss_identity_grid_is_near_zero_and_a_shift_costs_sqrt_distance():
    feats = _distinct_descriptors(batch=2, channels=64, h=4, w=4)
    identity = pixel_grid(16, 16)[None].expand(2, -1, -1, -1)
    at_identity = dve_loss(feats, feats, identity).item()
    assert at_identity < 1e-3

    # Shift the claimed correspondence by one feature cell (4 input px): P still matches the same
    # locations, so every u pays ||4 px||^0.5 = 2.
    shifted = identity.clone()
    shifted[..., 0] += 2 * 4 / 16
    assert dve_loss(feats, feats, shifted).item() == pytest.approx(2.0, abs=1e-2)


def _fourier_descriptors(positions: torch.Tensor, frequencies: torch.Tensor) -> torch.Tensor:
    """(..., 2) pixel positions -> (..., 2K) descriptors that vary smoothly with position."""
    phase = positions @ frequencies
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


def test_dve_loss_rewards_descriptors_that_follow_a_known_warp():
    batch, size, h = 4, 64, 16
    pair = TPSWarper()(torch.zeros(batch, 1, size, size), torch.Generator().manual_seed(3))
    frequencies = torch.randn(2, 32, generator=torch.Generator().manual_seed(4)) / 6.0

    stride = size // h
    g_u = grid_to_pixels(pair.grid)[:, ::stride, ::stride, :]  # where each source cell is in the target
    cells = torch.arange(h, dtype=torch.float32) * stride
    yy, xx = torch.meshgrid(cells, cells, indexing="ij")
    v = torch.stack([xx, yy], dim=-1).expand(batch, -1, -1, -1)

    source = _fourier_descriptors(g_u, frequencies).permute(0, 3, 1, 2).contiguous()
    target = _fourier_descriptors(v, frequencies).permute(0, 3, 1, 2).contiguous()
    matching = dve_loss(source, target, pair.grid, normalize_vectors=True)

    perm = torch.randperm(h * h, generator=torch.Generator().manual_seed(5))
    shuffled_source = source.flatten(2)[:, :, perm].reshape_as(source)
    shuffled = dve_loss(shuffled_source, target, pair.grid, normalize_vectors=True)

    # Bounds from the geometry alone: P one-hot on the cell nearest g(u) (the best any descriptor can do
    # on this lattice) and P uniform (descriptors that carry no information).
    distance = torch.cdist(g_u.reshape(batch, -1, 2), v[0].reshape(-1, 2).expand(batch, -1, -1))
    oracle = distance.min(dim=-1).values.sqrt().mean().item()
    uniform = distance.sqrt().mean().item()
    assert oracle < 1.6 and uniform > 5.0

    # Matching descriptors come close to the oracle (the exchange through the auxiliary image adds up
    # to one more lattice hop); shuffled ones are no better than uniform.
    assert matching.item() < oracle + 1.0
    assert shuffled.item() > 0.85 * uniform
    assert shuffled.item() > 2 * matching.item()


def test_dve_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="source and target"):
        dve_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 5), torch.zeros(2, 16, 16, 2))
    with pytest.raises(ValueError, match="grid"):
        dve_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4), torch.zeros(3, 16, 16, 2))


def test_batch_hard_triplet_on_a_hand_computed_case():
    from reid_core.losses.triplet import batch_hard_triplet_loss

    # Points on a line: 0, 1 (id a) and 3, 7 (id b). Euclidean batch-hard, margin 0.5:
    # anchor 0: d_ap 1, d_an 3 -> 0; anchor 1: 1, 2 -> 0; anchor 3: 4, 2 -> 2.5; anchor 7: 4, 6 -> 0.
    features = torch.tensor([[0.0], [1.0], [3.0], [7.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    loss = batch_hard_triplet_loss(features, labels, margin=0.5)
    assert loss.item() == pytest.approx(2.5 / 4)
    loss.backward()
    assert features.grad is not None
    # Cosine distance (1 - cos) / 2, PAW-ViT's: orthogonal = 0.5, opposite = 1.
    unit = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    cosine = batch_hard_triplet_loss(unit, torch.tensor([0, 0, 1, 1]), margin=0.4, distance="cosine")
    # every anchor: hardest positive 0.5 (orthogonal), hardest negative 0.5 -> 0.4 each
    assert cosine.item() == pytest.approx(0.4)
    # A batch without positives gives 0, still attached to the graph.
    alone = batch_hard_triplet_loss(features, torch.tensor([0, 1, 2, 3]))
    assert alone.item() == 0.0 and alone.requires_grad


def test_selective_batch_hard_triplet_only_pushes_the_negative_of_a_hard_triplet():
    from reid_core.losses.triplet import batch_hard_triplet_loss

    # Points on a line: 0, 2 (id a) and 1 (id b, no positive: no anchor). Euclidean, margin 0.5.
    # Anchors 0 and 2: hardest positive 2, hardest negative 1 -> hard, loss 0.5 + 2 - 1 = 1.5 each.
    labels = torch.tensor([0, 0, 1])
    full = torch.tensor([[0.0], [2.0], [1.0]], requires_grad=True)
    selective = full.detach().clone().requires_grad_(True)
    loss_full = batch_hard_triplet_loss(full, labels, margin=0.5)
    loss_selective = batch_hard_triplet_loss(selective, labels, margin=0.5, selective=True)
    assert loss_full.item() == loss_selective.item() == pytest.approx(1.5)
    loss_full.backward()
    loss_selective.backward()
    # Full: d(|x0-x1| - |x0-x2|)/dx summed over both anchors, / 2 -> x0 -1, x1 +1, x2 0: a descent step
    # moves the two positives towards each other across the negative.
    assert full.grad.flatten().tolist() == pytest.approx([-0.5, 0.5, 0.0])
    # Selective: only -|x0-x2| and -|x1-x2| -> x0 +1, x1 -1, x2 0, / 2: both anchors move away from the
    # negative, nothing pulls the positives in.
    assert selective.grad.flatten().tolist() == pytest.approx([0.5, -0.5, 0.0])


def test_selective_batch_hard_triplet_leaves_easy_triplets_alone():
    from reid_core.losses.triplet import batch_hard_triplet_loss

    # 0, 1 (id a) and 3 (id b), margin 5: anchor 0 d_ap 1 < d_an 3 (loss 3), anchor 1: 1 < 2 (loss 4).
    labels = torch.tensor([0, 0, 1])
    grads = []
    for selective in (False, True):
        features = torch.tensor([[0.0], [1.0], [3.0]], requires_grad=True)
        loss = batch_hard_triplet_loss(features, labels, margin=5.0, selective=selective)
        assert loss.item() == pytest.approx(3.5)
        loss.backward()
        grads.append(features.grad.flatten().tolist())
    # anchor 0: d(|x0-x1| - |x0-x2|) -> x0 0, x1 +1, x2 -1; anchor 1: d(|x1-x0| - |x1-x2|) -> x0 -1, x1 2, x2 -1
    assert grads[0] == grads[1] == pytest.approx([-0.5, 1.5, -1.0])
