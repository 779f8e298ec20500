"""Mean IoU and its chance level on hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from reid_core.evaluation.segmentation import chance_mean_iou, class_iou, confusion_matrix, mean_iou


def test_iou_per_class_and_mean_by_hand():
    predictions = torch.tensor([[0, 0], [1, 1]])
    targets = torch.tensor([[0, 1], [1, 1]])
    confusion = confusion_matrix(predictions, targets, 2)
    assert confusion.tolist() == [[1, 0], [1, 2]]  # rows: target, columns: predicted
    # class 0: TP 1, FP 1 (a 1 called 0), FN 0 -> 1/2; class 1: TP 2, FP 0, FN 1 -> 2/3
    assert np.allclose(class_iou(confusion), [0.5, 2 / 3])
    assert mean_iou(confusion) == pytest.approx((0.5 + 2 / 3) / 2)


def test_a_class_absent_from_targets_and_predictions_is_left_out_but_a_predicted_absent_class_counts():
    targets = torch.tensor([0, 0, 1, 1])
    confusion = confusion_matrix(torch.tensor([0, 0, 1, 1]), targets, 3)
    iou = class_iou(confusion)
    assert iou[:2].tolist() == [1.0, 1.0] and math.isnan(iou[2])
    assert mean_iou(confusion) == 1.0
    # predicting class 2 where it does not occur: IoU 0 for it, and class 1 loses a pixel
    wrong = confusion_matrix(torch.tensor([0, 0, 1, 2]), targets, 3)
    assert np.allclose(class_iou(wrong), [1.0, 0.5, 0.0])
    assert mean_iou(wrong) == pytest.approx(0.5)


def test_images_accumulate_into_one_dataset_level_confusion():
    # image 1 perfect on class 0 only; image 2 all class 1 called 0
    first = confusion_matrix(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), 2)
    second = confusion_matrix(torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long), 2)
    total = first + second
    # class 0: TP 4, FP 2 -> 4/6; class 1: TP 0, FN 2 -> 0 (not the mean of per-image IoUs)
    assert np.allclose(class_iou(total), [4 / 6, 0.0])
    assert mean_iou(total) == pytest.approx(1 / 3)


def test_chance_is_a_guess_with_the_targets_frequencies():
    targets = torch.tensor([0, 1, 1, 1])  # frequencies 1/4, 3/4
    confusion = confusion_matrix(targets, targets, 3)
    expected = ((0.25 / 1.75) + (0.75 / 1.25)) / 2  # p / (2 - p), class 2 absent
    assert chance_mean_iou(confusion) == pytest.approx(expected)
    # and a simulated guess of that kind lands on it
    generator = torch.Generator().manual_seed(0)
    frequencies = torch.tensor([0.6, 0.3, 0.1])
    target = torch.multinomial(frequencies, 200_000, replacement=True, generator=generator)
    guess = torch.multinomial(frequencies, 200_000, replacement=True, generator=generator)
    simulated = mean_iou(confusion_matrix(guess, target, 3))
    assert simulated == pytest.approx(chance_mean_iou(confusion_matrix(target, target, 3)), abs=0.005)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        confusion_matrix(torch.zeros(2, 2), torch.zeros(4), 2)
    with pytest.raises(ValueError, match="0..1"):
        confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 1]), 2)
    empty = np.zeros((2, 2), dtype=np.int64)
    assert math.isnan(mean_iou(empty)) and math.isnan(chance_mean_iou(empty))
