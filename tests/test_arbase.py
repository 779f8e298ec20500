"""The ARBase method: IBN-a conversion, last stride, heads, config, training step, checkpoints."""

from __future__ import annotations

import pytest
import timm
import torch
from method_support import FakeDDP, tiny_batch
from torch import nn

from reid_core.methods.arbase import ARBaseMethod
from reid_core.methods.arbase.network import IBN, build_backbone, convert_ibn_a
from reid_core.methods.arbase.recipe import lr_schedule
from reid_core.methods.config import ConfigError
from reid_core.methods.contract import BatchSpec, StagePlan
from reid_core.methods.registry import get_method

TINY = {"backbone.kwargs": {"channels": [16, 32, 64, 128]}, "backbone.embed_dim": 32}


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def method() -> ARBaseMethod:
    return get_method("arbase")


def tiny(method, **overrides):
    return method.config("cpu", {**TINY, **overrides})






def test_registered_and_paper_defaults(method):
    assert isinstance(method, ARBaseMethod)
    paper = method.config("paper")
    assert paper.backbone.name == "resnet50" and paper.backbone.pretrained is True
    assert (paper.input.size, paper.input.flip_p, paper.input.erasing_p) == (384, 0.5, 0.0)
    assert (paper.losses.triplet_margin, paper.losses.label_smoothing) == (0.3, 0.1)
    assert (paper.optim.lr, paper.optim.weight_decay, paper.schedule.epochs) == (3.5e-4, 5e-4, 60)
    assert method.plan(paper) == [StagePlan("main", 60, BatchSpec("pk", 16, 4),
                                            batch_keys=("batch.ids_per_batch", "batch.images_per_id"))]
    assert method.input_spec(paper).height == method.input_spec(paper).width == 384


def test_presets_validate_and_misspelt_keys_raise(method):
    for preset in method.presets:
        method.config(preset)
    cpu = method.config("cpu")
    assert cpu.backbone.pretrained is None and cpu.input.size == 64
    assert method.offline(method.config("paper")).backbone.pretrained is None
    with pytest.raises(ConfigError, match="optim.lrr"):
        method.config("cpu", {"optim.lrr": 1})
    with pytest.raises(ConfigError):
        method.config("cpu", {"backbone.parts": (0,)})
    assert method.load_config(cpu.model_dump()) == cpu
    keys = {p.key for p in method.search_space}
    assert {"optim.lr", "losses.triplet_margin", "losses.label_smoothing"} <= keys
    for param in method.search_space:  # every searched key exists
        method.config("cpu", {param.key: param.choices[0] if param.choices else param.low})


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_ibn_a_replaces_bn1_in_layer1_to_3_only(name):
    model = timm.create_model(name, pretrained=False, num_classes=0, channels=[16, 32, 64, 128])
    blocks = [len(getattr(model, f"layer{i}")) for i in range(1, 5)]
    widths = [getattr(model, f"layer{i}")[0].bn1.num_features for i in range(1, 4)]
    assert convert_ibn_a(model) == sum(blocks[:3])
    instance_norms = [m for m in model.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert len(instance_norms) == sum(blocks[:3])
    for index, width in zip((1, 2, 3), widths, strict=True):
        for block in getattr(model, f"layer{index}"):
            assert isinstance(block.bn1, IBN) and block.bn1.IN.affine
            assert block.bn1.IN.num_features == int(width * 0.5)
            assert block.bn1.IN.num_features + block.bn1.BN.num_features == width
            assert isinstance(block.bn2, nn.BatchNorm2d)
    assert not any(isinstance(m, IBN) for m in model.layer4.modules())
    assert isinstance(model.bn1, nn.BatchNorm2d)  # the stem keeps BN
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, model.num_features)


def test_ibn_conversion_keeps_the_bn_half_of_the_weights():
    bn = nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.weight.copy_(torch.arange(8.0))
        bn.running_mean.copy_(torch.arange(8.0) + 10)
    ibn = IBN.from_batchnorm(bn)
    assert torch.equal(ibn.BN.weight, torch.arange(4.0, 8.0))
    assert torch.equal(ibn.BN.running_mean, torch.arange(14.0, 18.0))
    assert torch.equal(ibn.IN.weight, torch.ones(4))


def test_last_stride_one_and_output_shapes(method):
    config = tiny(method)
    network = method.build(config, num_classes=7)
    images = torch.randn(4, 3, 64, 64)
    assert network.trunk(images).shape == (4, 128, 4, 4)  # output stride 16, not 32
    assert network.trunk.strides == (4, 8, 16, 16)
    out = network(images)
    assert out["features"].shape == out["normed"].shape == (4, 6, 32)
    assert len(out["logits"]) == 6 and all(lg.shape == (4, 7) for lg in out["logits"])
    network.eval()
    with torch.no_grad():
        embedding = method.embed(network, images)
    assert embedding.shape == (4, 6 * 32)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(4), atol=1e-5)
    stride2 = method.build(tiny(method, **{"backbone.last_stride": 2, "backbone.parts": ()}), 7)
    assert stride2.trunk(images).shape == (4, 128, 2, 2)
    assert stride2(images)["features"].shape == (4, 1, 32)


def test_pre_bn_embedding_option(method):
    network = method.build(tiny(method, **{"backbone.neck_feat": "before"}), 3).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = nn.functional.normalize(network(images)["features"].flatten(1), dim=1)
        assert torch.allclose(method.embed(network, images), expected, atol=1e-5)


def _trained(method, config, network):
    (stage,) = method.stages(config, network, [4])
    stage.trainable(network)
    model = FakeDDP(network)
    optimizer = stage.optimizer(model)
    return stage, model, optimizer


def test_one_step_gives_finite_loss_and_a_gradient_on_every_parameter(method):
    config = tiny(method)
    network = method.build(config, num_classes=4)
    stage, model, optimizer = _trained(method, config, network)
    loss, parts = stage.step(model, tiny_batch(), 0)
    assert model.calls == 1  # the forward goes through the wrapper
    assert torch.isfinite(loss) and set(parts) == {"loss_id", "loss_triplet"}
    assert all(v.shape == () and not v.requires_grad and v > 0 for v in parts.values())  # logged, not trained
    loss.backward()
    trained = [(n, p) for n, p in network.named_parameters() if p.requires_grad]
    missing = [n for n, p in trained if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    frozen = {n for n, p in network.named_parameters() if not p.requires_grad}
    assert frozen == {f"necks.{i}.bn.bias" for i in range(6)}  # BoT's frozen BNNeck bias only
    # timm zero-initialises each block's last BN, so the residual branches (and their IN halves) get
    # zero gradients at first; after one update they are non-zero
    optimizer.step()
    optimizer.zero_grad()
    stage.step(model, tiny_batch(), 0)[0].backward()
    assert all(p.grad.abs().sum() > 0 for n, p in trained if ".IN." in n)


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(method):
    torch.manual_seed(0)
    config = tiny(method)
    network = method.build(config, num_classes=4)
    stage, model, optimizer = _trained(method, config, network)
    batch = tiny_batch()
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss, _ = stage.step(model, batch, 0)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_optimizer_and_cosine_schedule(method):
    config = tiny(method, **{"schedule.epochs": 10})
    network = method.build(config, 4)
    stage, model, optimizer = _trained(method, config, network)
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["weight_decay"] == config.optim.weight_decay
    scheduler = stage.scheduler(optimizer)
    lrs = []
    for _ in range(10):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(config.optim.lr)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))
    assert lr_schedule(config)(10) == pytest.approx(config.schedule.eta_min / config.optim.lr)
    warm = tiny(method, **{"schedule.warmup_epochs": 2, "schedule.delay_epochs": 1})
    assert [lr_schedule(warm)(e) for e in range(4)] == pytest.approx([0.1, 0.55, 1.0, 1.0])


def test_transforms_give_square_normalised_tensors(method):
    from PIL import Image

    config = tiny(method)
    image = Image.new("RGB", (90, 50), (120, 60, 30))
    for transform in (method.train_transform(config), method.eval_transform(config)):
        assert transform(image).shape == (3, 64, 64)
    paper = method.train_transform(method.config("paper"))
    assert "RandomHorizontalFlip" in repr(paper) and "RandomErasing" not in repr(paper)


def test_pretrained_ibn_state_dict_from_a_path(method, tmp_path):
    config = tiny(method)
    source = method.build(config, 3)
    with torch.no_grad():
        for p in source.trunk.parameters():
            p.normal_()
    # an IBN-a checkpoint in timm / IBN-Net key names (bn1.IN.*, bn1.BN.*), as resnet50_ibn_a's
    model = build_backbone(config.backbone.name, None, **config.backbone.kwargs)
    stem, layers = model, [model.layer1, model.layer2, model.layer3, model.layer4]
    stem.conv1.load_state_dict(source.trunk.stem[0].state_dict())
    stem.bn1.load_state_dict(source.trunk.stem[1].state_dict())
    for layer, trained in zip(layers, source.trunk.stages(), strict=True):
        layer.load_state_dict(trained.state_dict())
    path = tmp_path / "ibn_a.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    assert any(".bn1.IN.weight" in k for k in model.state_dict())

    loaded = method.build(tiny(method, **{"backbone.pretrained": str(path)}), 3)
    for (name, a), b in zip(source.trunk.state_dict().items(), loaded.trunk.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_pretrained_plain_resnet_state_dict_fills_the_bn_half(method, tmp_path):
    config = tiny(method)
    plain = timm.create_model("resnet18", pretrained=False, num_classes=0, **config.backbone.kwargs)
    with torch.no_grad():
        plain.layer1[0].bn1.weight.copy_(torch.arange(16.0))
    path = tmp_path / "resnet18.pth"
    torch.save(plain.state_dict(), path)
    network = method.build(tiny(method, **{"backbone.pretrained": str(path)}), 3)
    ibn = network.trunk.layer1[0].bn1
    assert isinstance(ibn, IBN) and torch.equal(ibn.BN.weight, torch.arange(8.0, 16.0))
    assert torch.equal(network.trunk.layer4[0].conv1.weight, plain.layer4[0].conv1.weight)
    with pytest.raises(RuntimeError, match="does not fit"):
        bad = tmp_path / "bad.pth"
        torch.save({"layer1.0.bn1.IN.weight": torch.ones(3)}, bad)
        method.build(tiny(method, **{"backbone.pretrained": str(bad)}), 3)
