"""CARE's losses and prototype fusion on small cases computed by hand: the supervised contrastive
losses in both directions (Eqs. 5-6), the image-to-prototype loss (Eq. 10) and the mean fusion
(Algorithm 2)."""

from __future__ import annotations

import math

import pytest
import torch

from reid_core.losses.contrastive import (
    image_text_contrastive,
    image_to_prototype_contrastive,
    supervised_contrastive,
)
from reid_core.methods.care.prototypes import identity_means

E = math.e


def test_image_to_text_and_text_to_image_differ_and_match_hand_values():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    texts = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1])
    # images @ texts.T = [[3, 1], [0, 1]]; each image's positive is the text of its label.
    i2t = ((math.log(E**3 + E) - 3) + (math.log(1 + E) - 1)) / 2  # softmax over each row
    t2i = ((math.log(E**3 + 1) - 3) + (math.log(2 * E) - 1)) / 2  # softmax over each column
    loss_i2t, loss_t2i = image_text_contrastive(images, texts, labels)
    assert loss_i2t.item() == pytest.approx(i2t, rel=1e-6)
    assert loss_t2i.item() == pytest.approx(t2i, rel=1e-6)
    assert i2t == pytest.approx(0.220095, abs=1e-6) and t2i == pytest.approx(0.370867, abs=1e-6)


def test_several_positives_are_averaged_and_the_temperature_divides():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    candidates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # rows of logits / T: [2, 0, 2] (positives: candidates 0 and 2) and [0, 2, 2] (positive: candidate 1)
    row0 = -((2 - math.log(2 * E**2 + 1)) + (2 - math.log(2 * E**2 + 1))) / 2
    row1 = -(2 - math.log(1 + 2 * E**2))
    loss = supervised_contrastive(anchors, candidates, torch.tensor([0, 1]), torch.tensor([0, 1, 0]), temperature=0.5)
    assert loss.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_cosine_similarity_ignores_the_feature_norms():
    anchors, candidates = torch.tensor([[3.0, 4.0]]), torch.tensor([[10.0, 0.0], [0.0, 0.1]])
    expected = -(0.6 - math.log(math.exp(0.6) + math.exp(0.8)))
    loss = supervised_contrastive(anchors, candidates, torch.tensor([5]), torch.tensor([5, 7]), normalize=True)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_anchors_without_positives_are_left_out_and_none_gives_an_attached_zero():
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    candidates = torch.tensor([[1.0, 0.0]])
    kept = supervised_contrastive(anchors, candidates, torch.tensor([0, 1]), torch.tensor([0]))
    assert kept.item() == pytest.approx(0.0, abs=1e-7)  # one candidate, its own positive: log 1
    none = supervised_contrastive(anchors, candidates, torch.tensor([1, 1]), torch.tensor([0]))
    none.backward()
    assert none.item() == 0.0 and anchors.grad is not None


def test_image_to_prototype_loss_uses_cosine_and_only_the_batch_identities():
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    labels = torch.tensor([0, 2, 2])
    # identity 1 is not in the batch: its prototype must not enter the softmax
    prototypes = torch.tensor([[2.0, 0.0], [5.0, 5.0], [0.0, 1.0]])
    # cosines to prototypes 0 and 2: [1, 0], [0, 1], [0.6, 0.8]
    expected = ((math.log(1 + E) - 1) + (math.log(1 + E) - 1)
                - (0.8 - math.log(math.exp(0.6) + math.exp(0.8)))) / 3
    loss = image_to_prototype_contrastive(features, prototypes, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    with_all = supervised_contrastive(features, prototypes, labels, torch.arange(3), normalize=True)
    assert with_all.item() != pytest.approx(expected, rel=1e-3)


def test_prototypes_are_the_unnormalised_means_per_identity():
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0], [10.0, 0.0]])
    means = identity_means(features, torch.tensor([1, 1, 0]), 3)
    assert torch.equal(means, torch.tensor([[10.0, 0.0], [2.0, 3.0], [0.0, 0.0]]))


def test_shapes_and_temperatures_are_checked():
    with pytest.raises(ValueError, match="anchors"):
        supervised_contrastive(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match="temperature"):
        supervised_contrastive(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), torch.zeros(2), temperature=0)
