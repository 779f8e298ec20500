"""Flip test-time augmentation."""

from __future__ import annotations

import pytest
import torch

from reid_core.evaluation import flip_embed


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    # plain allclose: torch.testing.assert_close lazily imports ~10 s of torch internals
    assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6, rtol=1e-5), (a, b)


def linear_model(seed=0, dim=5):
    torch.manual_seed(seed)
    layer = torch.nn.Linear(3 * 4 * 6, dim)
    return lambda x: layer(x.flatten(1))


def test_concat_is_the_normalised_concatenation_of_image_and_mirror():
    model = linear_model()
    images = torch.randn(2, 3, 4, 6)
    with torch.inference_mode():
        out = flip_embed(model, images)
        plain, mirrored = model(images), model(images.flip(-1))
    assert out.shape == (2, 10)
    close(out.norm(dim=1), torch.ones(2))
    norm = torch.cat([plain, mirrored], 1).norm(dim=1, keepdim=True)
    close(out[:, :5], plain / norm)
    close(out[:, 5:], mirrored / norm)


def test_a_mirror_symmetric_image_gives_equal_halves_and_mean_mode():
    model = linear_model(1)
    half = torch.randn(1, 3, 4, 3)
    symmetric = torch.cat([half, half.flip(-1)], dim=-1)
    with torch.inference_mode():
        out = flip_embed(model, symmetric)
        mean = flip_embed(model, symmetric, mode="mean")
    close(out[:, :5], out[:, 5:])
    assert mean.shape == (1, 5)
    close(mean, torch.nn.functional.normalize(model(symmetric), dim=1))


def test_errors():
    model = linear_model()
    with pytest.raises(ValueError, match="mode"):
        flip_embed(model, torch.zeros(1, 3, 4, 6), mode="max")
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        flip_embed(model, torch.zeros(3, 4, 6))
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        flip_embed(lambda x: x, torch.zeros(1, 3, 4, 6))
