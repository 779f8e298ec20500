"""The lr schedule builder (reid_core.nn.schedules): timm's curves as per-epoch factors, the conventions the
methods rely on, and a resume through the scheduler's state dict. Each method's own curve is pinned in its
test file."""

from __future__ import annotations

import math

import pytest
import torch

from reid_core.nn.schedules import cosine, multistep, per_epoch, warmup_multistep


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)


def test_multistep_decays_from_each_milestone_on_as_torchs_multisteplr():
    optimizer = _optimizer()
    torch_scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2, 5], gamma=0.1)
    expected = []
    for _ in range(8):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        torch_scheduler.step()
    assert [multistep([2, 5], 0.1)(e) for e in range(8)] == pytest.approx(expected)


def test_warmup_multistep_multiplies_the_warm_up_by_the_decay():
    # a milestone inside the warm-up: CLIP-ReID multiplies (timm alone would replace the decayed lr)
    curve = warmup_multistep([1], 0.1, warmup_epochs=4, warmup_start=0.2)
    assert [curve(e) for e in range(5)] == pytest.approx([0.2, 0.1 * 0.4, 0.1 * 0.6, 0.1 * 0.8, 0.1])


def test_the_warm_up_prefix_starts_the_cosine_at_t_minus_warmup_as_timm():
    # a fractional warm-up (PAW-ViT's code: 2.5 epochs): 0.1 -> 1 over 1.5 epochs, cosine over 4 to 0.2
    def curve(prefix: bool) -> list[float]:
        schedule = cosine(cycle_epochs=4, min_factor=0.2, warmup_epochs=1.5, warmup_start=0.1, warmup_prefix=prefix)
        return [schedule(e) for e in range(7)]

    def cos(t: float) -> float:
        return 0.2 + 0.4 * (1 + math.cos(math.pi * t / 4))

    warm_up = [0.1, 0.1 + 0.9 / 1.5]  # t < 1.5: linear, the same either way
    # prefix: epochs 2..5 are t = 0.5, 1.5, 2.5, 3.5 of the cosine, which ends one warm-up later (epoch 5.5)
    assert curve(True) == pytest.approx(warm_up + [cos(0.5), cos(1.5), cos(2.5), cos(3.5), 0.2])
    # no prefix: the cosine runs on the epoch itself and ends at epoch 4
    assert curve(False) == pytest.approx(warm_up + [cos(2), cos(3), 0.2, 0.2, 0.2])


def test_cosine_with_prefix_and_delay_holds_the_lr_before_decaying():
    curve = cosine(cycle_epochs=4, min_factor=0.0, warmup_epochs=2, warmup_start=0.5, warmup_prefix=True,
                   delay_epochs=2)
    expected = [0.5, 0.75, 1.0, 1.0, 1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2,
                0.0, 0.0]
    assert [curve(e) for e in range(10)] == pytest.approx(expected)


def test_per_epoch_scales_every_group_and_resumes_from_its_state_dict():
    curve = cosine(cycle_epochs=5, min_factor=0.1)
    params = [torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)]
    optimizer = torch.optim.SGD([{"params": [params[0]], "lr": 1.0}, {"params": [params[1]], "lr": 10.0}])
    scheduler = per_epoch(curve)(optimizer)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([curve(2), 10 * curve(2)])

    resumed_optimizer = torch.optim.SGD([{"params": [params[0]], "lr": 1.0}, {"params": [params[1]], "lr": 10.0}])
    resumed = per_epoch(curve)(resumed_optimizer)
    resumed_optimizer.load_state_dict(optimizer.state_dict())
    resumed.load_state_dict(scheduler.state_dict())
    resumed_optimizer.step()
    resumed.step()
    assert [g["lr"] for g in resumed_optimizer.param_groups] == pytest.approx([curve(3), 10 * curve(3)])
