"""The DVE (AER) method: TPS warps, backbone surgery, network, training stage, checkpoints, search space."""

from __future__ import annotations

import math

import optuna
import pytest
import torch
from method_support import FakeDDP, tiny_batch
from PIL import Image
from timm.models.senet import SEResNetBottleneck
from torch import nn

from reid_core.losses import grid_to_pixels
from reid_core.methods.config import ConfigError
from reid_core.methods.contract import Stage
from reid_core.methods.dve import DVEMethod
from reid_core.methods.dve.config import DVEConfig
from reid_core.methods.dve.network import DVENet
from reid_core.methods.dve.tps import TPSConfig, TPSWarper, pixel_grid
from reid_core.methods.dve.training import flip_batch, warmup_factor
from reid_core.methods.registry import get_method, method_names
from reid_core.methods.search_space import SearchSpace
from reid_core.nn.resnet_trunk import build_trunk, set_stage_stride

TINY_CHANNELS = (16, 32, 64, 128)
TINY = {
    "backbone.name": "resnet18",
    "backbone.pretrained": None,
    "input.size": 64,
    "backbone.kwargs": {"channels": TINY_CHANNELS},
}


pytestmark = pytest.mark.usefixtures("single_torch_thread")
DVE_SIDES = (0, 1, -1, 0, 1, 1, 0, -1)  # left, right and unknown flanks


@pytest.fixture(scope="module")
def method() -> DVEMethod:
    return get_method("dve")


def tiny_config(method, overrides: dict | None = None) -> DVEConfig:
    return method.config("paper", {**TINY, **(overrides or {})})






# --------------------------------------------------------------------------------------------------
# TPS warps
# --------------------------------------------------------------------------------------------------


def test_zero_warp_returns_the_input_and_an_identity_grid():
    zero = TPSConfig(warpsd_all=0, warpsd_subset=0, transsd=0, scalesd=0, rotsd=0)
    images = torch.rand(3, 3, 20, 28)
    pair = TPSWarper(zero)(images, torch.Generator().manual_seed(0))
    assert torch.allclose(pair.im1, images, atol=1e-5)
    assert torch.allclose(pair.im2, images, atol=1e-5)
    assert pair.grid.shape == (3, 20, 28, 2)
    assert torch.allclose(pair.grid, pixel_grid(20, 28).expand(3, -1, -1, -1), atol=1e-6)
    pixels = grid_to_pixels(pair.grid)
    assert torch.allclose(pixels[0, 5, 7], torch.tensor([7.0, 5.0]), atol=1e-4)


def test_random_warps_are_seeded_mild_and_grid_maps_im2_into_im1():
    images = torch.rand(4, 3, 64, 64)
    warper = TPSWarper()
    a = warper(images, torch.Generator().manual_seed(7))
    b = warper(images, torch.Generator().manual_seed(7))
    c = warper(images, torch.Generator().manual_seed(8))
    assert torch.equal(a.grid, b.grid) and torch.equal(a.im2, b.im2)
    assert not torch.equal(a.grid, c.grid)

    # grid is G2: sampling im1 with it gives im2 (that is what "each pixel of im2 -> place in im1" means).
    resampled = torch.nn.functional.grid_sample(a.im1, a.grid, align_corners=False)
    assert torch.allclose(resampled, a.im2, atol=1e-5)

    # DVE's defaults move pixels by a few percent of the image, not by nothing and not wildly.
    displacement = (grid_to_pixels(a.grid) - grid_to_pixels(pixel_grid(64, 64)[None])).norm(dim=-1)
    assert 1.0 < displacement.mean().item() < 16.0


# --------------------------------------------------------------------------------------------------
# Backbone surgery and the network
# --------------------------------------------------------------------------------------------------


def _stage_sizes(trunk, size: int = 64) -> list[int]:
    trunk.eval()
    with torch.no_grad():
        return [trunk(torch.zeros(1, 3, size, size), upto=k).shape[-1] for k in range(1, 5)]


def test_smallscale_changes_the_feature_map_sizes_of_an_se_resnet():
    stock = build_trunk("legacy_seresnet18", None, smallscale=False)
    small = build_trunk("legacy_seresnet18", None, smallscale=True)
    assert _stage_sizes(stock) == [16, 8, 4, 2] and stock.strides == (4, 8, 16, 32)
    assert _stage_sizes(small) == [16, 16, 8, 8] and small.strides == (4, 4, 8, 8)
    assert small.channels == (64, 128, 256, 512)


def test_stride_moves_to_the_3x3_conv_of_legacy_se_bottlenecks():
    # AER's own SE-ResNet50 (timm legacy_seresnet50 weights) strides conv2; timm strides conv1.
    trunk = build_trunk("legacy_seresnet50", None, smallscale=True, stride_on_3x3=True)
    assert trunk.channels == (256, 512, 1024, 2048) and trunk.strides == (4, 4, 8, 8)
    assert trunk.layer3[0].conv1.stride == (1, 1) and trunk.layer3[0].conv2.stride == (2, 2)
    assert trunk.layer3[0].downsample[0].stride == (2, 2)
    for layer in (trunk.layer2, trunk.layer4):
        assert layer[0].conv1.stride == layer[0].conv2.stride == layer[0].downsample[0].stride == (1, 1)

    def caffe_block() -> nn.Sequential:
        shortcut = nn.Sequential(nn.Conv2d(64, 64, 1, stride=2, bias=False), nn.BatchNorm2d(64))
        return nn.Sequential(SEResNetBottleneck(64, 16, groups=1, reduction=4, stride=2, downsample=shortcut))

    kept = caffe_block()
    set_stage_stride(kept, 2, on_3x3=False)
    assert kept[0].conv1.stride == (2, 2) and kept[0].conv2.stride == (1, 1)
    moved = caffe_block()
    set_stage_stride(moved, 2, on_3x3=True)
    assert moved[0].conv1.stride == (1, 1) and moved[0].conv2.stride == (2, 2)
    assert moved(torch.zeros(1, 64, 8, 8)).shape == (1, 64, 4, 4)


def test_avg_down_shortcuts_lose_their_pool_when_the_stride_goes():
    trunk = build_trunk("resnet10t", None, smallscale=True, channels=TINY_CHANNELS, stem_width=8)
    assert _stage_sizes(trunk) == [16, 16, 8, 8]
    assert isinstance(trunk.layer2[0].downsample[0], nn.Identity)


def test_forward_shapes_and_head_dimensions_follow_the_backbone(method):
    config = tiny_config(method, {"backbone.smallscale": True})
    net = method.build(config, num_classes=5)
    assert isinstance(net, DVENet)
    assert net.dve_stage == 2  # deepest stage at stride 4: AER's layer2 under smallscale
    assert net.bottleneck[0].in_features == TINY_CHANNELS[-1] and net.bottleneck[0].out_features == 512
    assert net.dve_head[0].in_channels == TINY_CHANNELS[1] and net.dve_head[0].out_channels == 64

    out = net(torch.randn(4, 3, 64, 64), dve_images=torch.randn(6, 3, 64, 64))
    assert out["embedding"].shape == out["features"].shape == (4, 512)
    assert out["logits_id"].shape == (4, 5) and out["logits_lr"].shape == (4, 2)
    assert out["dve"].shape == (6, 64, 16, 16)  # stride 4
    assert (out["dve"] >= 0).all()  # ReLU descriptors

    stock = method.build(tiny_config(method, {"backbone.smallscale": False}), num_classes=5)
    assert stock.dve_stage == 1 and stock.dve_features(torch.randn(1, 3, 64, 64)).shape[-1] == 16


def test_separate_dve_passes_give_source_and_target_their_own_batch_statistics(method):
    net = method.build(tiny_config(method), num_classes=4).train()
    gen = torch.Generator().manual_seed(0)
    images, source = torch.randn(4, 3, 64, 64, generator=gen), torch.randn(4, 3, 64, 64, generator=gen)
    target = 0.5 * torch.randn(4, 3, 64, 64, generator=gen) + 1.0  # other batch statistics than the source's
    with torch.no_grad():
        separate = net(images, dve_images=(source, target))["dve"]
        two_calls = torch.cat([net.dve_features(source), net.dve_features(target)])  # AER: dve_forward twice
        joint = net(images, dve_images=torch.cat([source, target]))["dve"]
    assert torch.allclose(separate, two_calls, atol=1e-6)
    assert (separate - joint).norm() > 0.05 * joint.norm()  # one BN batch of both: other descriptors
    net.eval()  # running statistics: the batch no longer matters
    with torch.no_grad():
        assert torch.allclose(net(images, dve_images=(source, target))["dve"],
                              net(images, dve_images=torch.cat([source, target]))["dve"], atol=1e-5)


@pytest.mark.parametrize(("preset", "separate", "trunk_batches"), [("paper", True, [8, 8, 8]), ("cpu", False, [8, 16])])
def test_the_paper_preset_passes_the_pairs_halves_separately_through_the_trunk(method, preset, separate,
                                                                               trunk_batches):
    config = method.config(preset, {**TINY, "schedule.warmup_epochs": 0})
    assert config.losses.dve_separate_passes is separate
    net = method.build(config, num_classes=4)
    batches = []
    net.trunk.register_forward_hook(lambda _module, args, _out: batches.append(args[0].shape[0]))
    [stage] = method.stages(config, net, [1])
    stage.on_epoch_start(net, 0)
    _, logs = stage.step(net, tiny_batch(per_class=2, sides=DVE_SIDES), 0)
    assert batches == trunk_batches and logs["loss_dve"] > 0  # re-ID pass, then the DVE source and target


def test_heads_use_aer_initialisation(method):
    torch.manual_seed(0)
    net = method.build(tiny_config(method), num_classes=300)
    assert net.classifier.weight.std().item() == pytest.approx(0.001, rel=0.1)
    assert net.orientation.weight.abs().max().item() < 0.01
    bn = net.bottleneck[1]
    assert bn.weight.mean().item() == pytest.approx(1.0, abs=0.01)
    assert bn.weight.std().item() == pytest.approx(0.02, rel=0.2)
    linear = net.bottleneck[0]  # kaiming fan_out: std = sqrt(2 / out_features)
    assert linear.weight.std().item() == pytest.approx(math.sqrt(2 / 512), rel=0.1)
    for bias in (linear.bias, bn.bias, net.classifier.bias, net.orientation.bias):
        assert torch.count_nonzero(bias) == 0


def test_embedding_is_flip_concatenated_l2_normalised_and_in_eval_mode(method):
    net = method.build(tiny_config(method), num_classes=4)
    net.train()
    images = torch.randn(3, 3, 64, 64)
    embedding = method.embed(FakeDDP(net), images)
    assert embedding.shape == (3, 1024)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(3), atol=1e-5)
    assert net.training  # mode restored

    net.eval()
    with torch.no_grad():
        expected = torch.cat([net.embed(images), net.embed(images.flip(-1))], dim=1)
    assert torch.allclose(embedding, torch.nn.functional.normalize(expected, dim=1), atol=1e-5)
    # Eval mode: no dropout, BN running statistics, so one image embeds alone as in a batch.
    assert torch.allclose(method.embed(net, images[:1]), embedding[:1], atol=1e-5)


# --------------------------------------------------------------------------------------------------
# Training stage
# --------------------------------------------------------------------------------------------------


def test_flip_batch_mirrors_images_and_swaps_known_sides():
    images = torch.arange(2 * 1 * 1 * 3, dtype=torch.float32).reshape(2, 1, 1, 3)
    sides = torch.tensor([0, -1])
    flipped, new_sides = flip_batch(images, sides, 1.0, "image", None)
    assert torch.equal(flipped, images.flip(-1)) and new_sides.tolist() == [1, -1]
    same, same_sides = flip_batch(images, sides, 0.0, "image", None)
    assert torch.equal(same, images) and same_sides.tolist() == [0, -1]

    many = torch.randn(200, 1, 1, 2)
    out, out_sides = flip_batch(many, torch.zeros(200, dtype=torch.long), 0.5, "image", torch.Generator().manual_seed(0))
    assert 60 < int(out_sides.sum()) < 140  # about half, each image its own coin
    assert torch.equal(out[out_sides == 1], many[out_sides == 1].flip(-1))
    _, batch_sides = flip_batch(many, torch.zeros(200, dtype=torch.long), 0.5, "batch", torch.Generator().manual_seed(0))
    assert int(batch_sides.sum()) in (0, 200)  # AER: one coin for the whole batch


def test_warmup_factor_rises_linearly_from_aer_start():
    config = DVEConfig.model_validate({"schedule": {"warmup_epochs": 3}})
    assert warmup_factor(config, 0, 0, 10) == pytest.approx(0.01 + 0.99 / 30)
    assert warmup_factor(config, 1, 4, 10) == pytest.approx(0.01 + 0.99 * 15 / 30)
    assert warmup_factor(config, 2, 9, 10) == pytest.approx(1.0)
    assert warmup_factor(config, 3, 0, 10) == 1.0


def _grads(parameters) -> list[torch.Tensor | None]:
    return [p.grad for p in parameters]


def test_warmup_freezes_the_backbone_and_gradients_reach_the_dve_head(method):
    config = tiny_config(method, {"schedule.warmup_epochs": 1, "schedule.epochs": 80})
    net = method.build(config, num_classes=4)
    model = FakeDDP(net)
    warmup, main = method.stages(config, model, [4, 4])
    assert isinstance(warmup, Stage) and (warmup.name, warmup.epochs, main.name, main.epochs) == ("warmup", 1, "main", 79)
    warmup.trainable(model)
    assert not any(p.requires_grad for p in net.trunk.parameters())  # DDP built now tracks the heads only
    optimizer = warmup.optimizer(model)

    warmup.on_epoch_start(model, 0)
    loss, logs = warmup.step(model, tiny_batch(per_class=2, sides=DVE_SIDES), 0)
    loss.backward()
    assert model.calls == 1  # one forward through the wrapper: DDP would sync every gradient
    assert set(logs) >= {"loss_id", "loss_lr", "loss_circle", "loss_dve"}
    assert logs["warmup_factor"] == pytest.approx(0.01 + 0.99 / 4)
    assert loss.item() == pytest.approx(
        logs["warmup_factor"]
        * (logs["loss_id"] + logs["loss_lr"] + 2.0 * logs["loss_circle"] + 0.2 * logs["loss_dve"]),
        rel=1e-4,
    )
    assert all(g is None for g in _grads(net.trunk.parameters()))
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(net.dve_head.parameters()))
    assert net.classifier.weight.grad.abs().sum() > 0
    assert net.trunk.layer1[0].bn1.training  # BN stays in train mode while frozen

    optimizer.zero_grad()
    main.trainable(model)
    main.on_epoch_start(model, 0)  # global epoch 1: the warm-up is over
    loss, logs = main.step(model, tiny_batch(per_class=2, sides=DVE_SIDES), 0)
    loss.backward()
    assert logs["warmup_factor"] == 1.0
    trunk_grads = _grads(net.trunk.parameters())
    assert all(g is not None for g in trunk_grads) and sum(g.abs().sum() for g in trunk_grads) > 0
    assert all(g is not None and g.abs().sum() > 0 for g in _grads(net.dve_head.parameters()))


def test_training_steps_overfit_a_tiny_batch(method):
    torch.manual_seed(0)
    # Dropout and random flips off so that six steps on one batch show a clear trend.
    config = tiny_config(method, {"schedule.warmup_epochs": 0, "backbone.dropout": 0.0, "input.flip_p": 0.0})
    net = method.build(config, num_classes=4)
    [stage] = method.stages(config, net, [1])
    stage.trainable(net)
    optimizer = stage.optimizer(net)
    scheduler = stage.scheduler(optimizer)
    batch = tiny_batch(per_class=2, sides=DVE_SIDES)
    losses = []
    for epoch in range(6):
        stage.on_epoch_start(net, epoch)
        optimizer.zero_grad()
        loss, _ = stage.step(net, batch, epoch)
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0], losses
    assert sum(losses[-2:]) < sum(losses[:2]), losses


def test_learning_rates_follow_groups_and_the_step_schedule(method):
    config = tiny_config(method, {"optim.lr": 0.02, "schedule.epochs": 9, "schedule.warmup_epochs": 0})
    assert config.schedule.milestone == 6 and DVEConfig().schedule.milestone == 53  # AER: 80 * 2 // 3
    net = method.build(config, num_classes=4)
    [stage] = method.stages(config, net, [3])
    optimizer = stage.optimizer(net)
    scheduler = stage.scheduler(optimizer)
    assert isinstance(optimizer, torch.optim.SGD)
    backbone, heads = optimizer.param_groups
    assert backbone["lr"] == pytest.approx(0.002) and heads["lr"] == pytest.approx(0.02)
    assert heads["nesterov"] and heads["momentum"] == 0.9 and heads["weight_decay"] == 5e-4
    assert {id(p) for p in backbone["params"]} == {id(p) for p in net.trunk.parameters()}
    n_params = len(list(net.parameters()))
    assert len(backbone["params"]) + len(heads["params"]) == n_params

    stage.on_epoch_start(net, 6)
    assert heads["lr"] == pytest.approx(0.002) and backbone["lr"] == pytest.approx(0.0002)
    optimizer.step()  # (no gradients: a no-op that keeps torch's step-order check quiet)
    scheduler.step()  # whether the engine steps per iteration or per epoch, the epoch decides
    assert heads["lr"] == pytest.approx(0.002)
    stage.on_epoch_start(net, 5)
    assert heads["lr"] == pytest.approx(0.02)


def test_lambda_dve_zero_skips_the_dve_pass_and_head(method):
    config = tiny_config(method, {"losses.lambda_dve": 0.0, "schedule.warmup_epochs": 0})
    net = method.build(config, num_classes=4)
    assert net.dve_head is None
    trunk_calls = []
    net.trunk.register_forward_hook(lambda *_: trunk_calls.append(1))
    [stage] = method.stages(config, net, [1])
    stage.on_epoch_start(net, 0)
    loss, logs = stage.step(net, tiny_batch(per_class=2, sides=DVE_SIDES), 0)
    loss.backward()
    assert len(trunk_calls) == 1 and logs["loss_dve"] == 0.0
    assert all(p.grad is not None for p in net.parameters())  # nothing unused for DDP


# --------------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------------


def _reference_state(channels=TINY_CHANNELS) -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(123)
    return timm.create_model("resnet18", pretrained=False, channels=channels).state_dict()  # with fc


def test_pretrained_local_state_dict_is_loaded_into_the_trunk(method, tmp_path):
    state = _reference_state()
    path = tmp_path / "resnet18-tiny.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)  # wrapped, DDP prefix
    net = method.build(tiny_config(method, {"backbone.pretrained": str(path)}), num_classes=4)
    assert torch.equal(net.trunk.stem[0].weight, state["conv1.weight"])
    assert torch.equal(net.trunk.layer3[0].conv2.weight, state["layer3.0.conv2.weight"])
    assert torch.equal(net.trunk.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_missing_or_mismatched_checkpoints_name_the_path(method, tmp_path):
    missing = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(FileNotFoundError, match="nowhere/weights.pth"):
        method.build(tiny_config(method, {"backbone.pretrained": str(missing)}), num_classes=4)

    wrong = tmp_path / "wide.pth"
    torch.save(_reference_state(channels=(8, 16, 32, 64)), wrong)
    with pytest.raises(RuntimeError, match="wide.pth"):
        method.build(tiny_config(method, {"backbone.pretrained": str(wrong)}), num_classes=4)

    with pytest.raises(ValueError, match="another architecture"):
        method.build(tiny_config(method, {"backbone.pretrained": "legacy_seresnet50.in1k"}), num_classes=4)


def test_unreachable_hub_says_what_to_pass_instead(method, monkeypatch):
    import timm

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("Name or service not known")
        return create_model(name, pretrained=False, **kwargs)

    create_model = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="local path or s3:// URI.*pretrained=None"):
        method.build(tiny_config(method, {"backbone.pretrained": True}), num_classes=4)
    with pytest.raises(RuntimeError, match="'resnet18.a1_in1k'"):
        method.build(tiny_config(method, {"backbone.pretrained": "resnet18.a1_in1k"}), num_classes=4)


def test_pretrained_state_dict_from_s3(method, s3_bucket):
    import io

    from reid_core.data.files import write_bytes

    state = _reference_state()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    uri = f"{s3_bucket}/weights/resnet18-tiny.pth"
    write_bytes(uri, buffer.getvalue())
    net = method.build(tiny_config(method, {"backbone.pretrained": uri}), num_classes=4)
    assert torch.equal(net.trunk.layer2[0].downsample[0].weight, state["layer2.0.downsample.0.weight"])


# --------------------------------------------------------------------------------------------------
# Config, transforms, search space, registry
# --------------------------------------------------------------------------------------------------


def test_default_config_has_the_paper_values_and_rejects_unknown_keys(method):
    config = method.config()
    losses, optim, schedule, backbone = config.losses, config.optim, config.schedule, config.backbone
    assert (losses.circle_gamma, losses.circle_m, losses.lambda_reid, losses.lambda_dve) == (64.0, 0.25, 2.0, 0.2)
    assert (optim.lr, optim.backbone_lr_mult, schedule.epochs, schedule.warmup_epochs) == (0.01, 0.1, 80, 3)
    assert (backbone.dve_dim, backbone.embed_dim, backbone.dropout, losses.label_smoothing) == (64, 512, 0.5, 0.1)
    assert config.batch.ids_per_batch * config.batch.images_per_id == 30 and losses.dve_normalize is False
    assert method.config("paper", {"losses.circle_gamma": 32}).losses.circle_gamma == 32
    with pytest.raises(ConfigError, match="unknown config key 'losses.lamda_dve'.*losses.lambda_dve"):
        method.config("paper", {"losses.lamda_dve": 0.5})
    with pytest.raises(ConfigError, match="unknown config key 'lambda_dve'"):
        method.config("paper", {"lambda_dve": 0.5})  # the old flat name: the message lists the dotted ones
    with pytest.raises(ConfigError, match=r"optim.name.*'sgd' or 'adamw'"):
        method.config("paper", {"optim.name": "adam"})
    with pytest.raises(ConfigError, match="unknown preset 'gpu'.*paper, cpu"):
        method.config("gpu")
    cpu = method.config("cpu")
    assert cpu.backbone.pretrained is None and cpu.input.size == 64 and method.offline(config).backbone.pretrained is None


def test_transforms_produce_normalised_square_tensors(method):
    config = tiny_config(method)
    image = Image.new("RGB", (120, 90), color=(200, 120, 40))
    train = method.train_transform(config)(image)
    evaluation = method.eval_transform(config)(image)
    assert train.shape == evaluation.shape == (3, 64, 64) and train.dtype == torch.float32
    red = (200 / 255 - 0.485) / 0.229
    assert evaluation[0].mean().item() == pytest.approx(red, abs=1e-2)


def test_search_space_samples_within_bounds_and_respects_overrides(method):
    fixed = optuna.trial.FixedTrial({"losses.lambda_dve": 0.4, "losses.circle_m": 0.3, "losses.circle_gamma": 128,
                                     "losses.lambda_reid": 5, "optim.lr": 0.02})
    params = SearchSpace("dve")(fixed)
    assert params == {"losses.lambda_dve": 0.4, "losses.circle_m": 0.3, "losses.circle_gamma": 128,
                      "losses.lambda_reid": 5, "optim.lr": 0.02}
    method.config("paper", params)  # every sampled name is a config key

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    bounded = SearchSpace("dve", {"losses.lambda_dve": (0.0, 1.0), "optim.lr": (1e-3, 3e-2),
                                  "losses.circle_gamma": [32, 64], "losses.lambda_reid": 2})
    for _ in range(25):
        params = bounded(study.ask())
        assert 0.0 <= params["losses.lambda_dve"] <= 1.0 and 1e-3 <= params["optim.lr"] <= 3e-2
        assert 0.1 <= params["losses.circle_m"] <= 0.5
        assert params["losses.circle_gamma"] in (32, 64) and params["losses.lambda_reid"] == 2
    # A study keeps one space per parameter name (Optuna rejects changed choices): a fresh one here.
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    default = [SearchSpace("dve")(study.ask()) for _ in range(25)]
    assert all(0 <= p["losses.lambda_dve"] <= 2 and 1e-3 <= p["optim.lr"] <= 1e-1 for p in default)
    assert {p["losses.circle_gamma"] for p in default} <= {32, 64, 128}

    with pytest.raises(ValueError, match="unknown search-space bound"):
        SearchSpace("dve", {"margin": (0.1, 0.2)})
    with pytest.raises(ValueError, match="low <= high"):
        SearchSpace("dve", {"optim.lr": (0.1, 0.01)})


def test_dve_is_registered():
    assert "dve" in method_names()
    assert isinstance(get_method("dve"), DVEMethod)
