"""The two baselines, "arcface" (AnimalCLEF25's EfficientNet-B3 + ArcFace) and "vit" (PAW-ViT's ViT-B/16
baseline): configs, networks, one training step, learning on a fixed batch, weights from a file, and
hand-checked values of the ArcFace loss and the lr schedules."""

from __future__ import annotations

import math

import polars as pl
import pytest
import timm
import torch
import torch.nn.functional as F
from method_support import FakeDDP, tiny_batch
from torch import nn

from reid_core.losses.triplet import batch_hard_triplet_loss
from reid_core.methods.arcface import ArcFaceMethod
from reid_core.methods.arcface.network import ArcFaceNet
from reid_core.methods.arcface.recipe import lr_schedule as arcface_lr_schedule
from reid_core.methods.config import ConfigError
from reid_core.methods.contract import BatchSpec, StagePlan
from reid_core.methods.registry import get_method
from reid_core.methods.vit import ViTMethod
from reid_core.methods.vit.recipe import lr_at as vit_lr_at

# smaller than the cpu presets, for speed
TINY = {
    "arcface": {"backbone.kwargs": {"channels": [16, 32, 64, 128]}, "backbone.embed_dim": 32},
    # a patchify ViT (the paper's kind, whose checkpoints the conversion tests write)
    "vit": {"backbone.name": "vit_tiny_patch16_224",
            "backbone.kwargs": {"patch_size": 16, "depth": 2, "embed_dim": 48, "num_heads": 3}},
}
NAMES = ("arcface", "vit")


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def tiny(name: str, **overrides):
    return get_method(name).config("cpu", {**TINY[name], **overrides})






def _trained(name, config, network):
    (stage,) = get_method(name).stages(config, network, [4])
    stage.trainable(network)
    model = FakeDDP(network)
    return stage, model, stage.optimizer(model)


# -- configs -------------------------------------------------------------------------------------------


def test_registered_with_the_paper_defaults():
    arcface, vit = get_method("arcface"), get_method("vit")
    assert isinstance(arcface, ArcFaceMethod) and isinstance(vit, ViTMethod)

    paper = arcface.config("paper")
    assert (paper.backbone.name, paper.backbone.pretrained, paper.backbone.embed_dim) == ("efficientnet_b3", True, 512)
    assert (paper.losses.margin, paper.losses.scale) == (0.5, 64.0)
    assert (paper.input.size, paper.input.flip_p) == (384, 0.5)
    assert arcface.plan(paper) == [StagePlan("main", 30, BatchSpec("random", batch_size=32),
                                             batch_keys=("batch.batch_size",))]
    assert arcface.input_spec(paper).mean == (0.485, 0.456, 0.406)

    paper = vit.config("paper")
    assert paper.backbone.name == "vit_base_patch16_224"
    assert paper.backbone.pretrained == "vit_base_patch16_224.orig_in21k_ft_in1k"
    assert (paper.input.size, paper.input.rotation, paper.backbone.drop_path_rate) == (256, 15.0, 0.1)
    assert (paper.losses.label_smoothing, paper.losses.triplet_margin, paper.losses.triplet_distance) == (
        0.2, 0.4, "cosine")
    assert (paper.losses.id_weight, paper.losses.triplet_weight) == (1.0, 0.5)
    assert (paper.optim.lr, paper.optim.weight_decay, paper.schedule.epochs) == (8.5e-5, 5e-4, 50)
    assert vit.plan(paper) == [StagePlan("main", 50, BatchSpec("pk", 8, 16),
                                         batch_keys=("batch.ids_per_batch", "batch.images_per_id"))]
    spec = vit.input_spec(paper)
    assert (spec.height, spec.width, spec.mean, spec.std) == (256, 256, (0.5,) * 3, (0.5,) * 3)


@pytest.mark.parametrize("name", NAMES)
def test_presets_validate_and_misspelt_keys_raise(name):
    method = get_method(name)
    assert set(method.presets) == {"paper", "cpu"}
    for preset in method.presets:
        config = method.config(preset)
        assert method.load_config(config.model_dump(mode="json")) == config
    cpu = method.config("cpu")
    assert cpu.backbone.pretrained is None and cpu.input.size == 64
    assert method.offline(method.config("paper")).backbone.pretrained is None
    assert method.epochs_key == "schedule.epochs"
    assert method.config("cpu", {"schedule.epochs": 3}).schedule.epochs == 3
    with pytest.raises(ConfigError, match=r"unknown config key 'optim\.lrr'.*valid keys.*optim\.lr"):
        method.config("cpu", {"optim.lrr": 1})
    with pytest.raises(ConfigError):
        method.config("cpu", {"optim.lr": -1.0})
    with pytest.raises(ConfigError):  # extra=forbid in nested sections too
        method.config("cpu", {"backbone": {"nme": "resnet18"}})
    assert {"optim.lr"} <= {p.key for p in method.search_space}
    for param in method.search_space:  # every searched key exists and accepts its range
        for value in (param.choices or (param.low, param.high)):
            method.config("cpu", {param.key: value})


# -- networks ------------------------------------------------------------------------------------------


def test_arcface_network_shapes_and_normalised_embedding():
    method = get_method("arcface")
    network = method.build(tiny("arcface"), num_classes=7)
    assert isinstance(network, ArcFaceNet)
    assert network.arcface.W.shape == (32, 7)  # the class weights are a parameter of the network
    assert "arcface.W" in network.state_dict()
    assert any(p is network.arcface.W for p in network.parameters())
    images = torch.randn(4, 3, 64, 64)
    out = network(images)
    assert set(out) == {"embedding"} and out["embedding"].shape == (4, 32)
    assert network(images, labels=torch.tensor([0, 1, 2, 3]))["loss_arcface"].shape == ()
    network.eval()
    with torch.no_grad():
        embedding = method.embed(network, images)
        assert torch.allclose(embedding, F.normalize(network.bn(network.neck(network.backbone(images))), dim=1), atol=1e-6)
    assert embedding.shape == (4, 32)
    assert torch.allclose(embedding.norm(dim=1), torch.ones(4), atol=1e-5)
    assert isinstance(method.build(tiny("arcface", **{"backbone.bn": True}), 7).bn, nn.BatchNorm1d)


def test_vit_network_shapes_cls_feature_and_bnneck():
    method = get_method("vit")
    network = method.build(tiny("vit", **{"losses.triplet_feature": "pre_bn"}), num_classes=7)
    assert network.backbone.patch_embed.grid_size == (4, 4)  # 64 px / 16
    assert not network.neck.bn.bias.requires_grad and network.neck.classifier.bias is not None
    images = torch.randn(4, 3, 64, 64)
    out = network(images)
    assert out["features"].shape == out["normed"].shape == (4, 48)
    assert out["logits"].shape == (4, 7)
    network.eval()
    with torch.no_grad():
        tokens = network.backbone.forward_features(images)  # (B, 1 + 16, D), after the final norm
        assert tokens.shape == (4, 17, 48)
        assert torch.allclose(network(images)["features"], tokens[:, 0], atol=1e-6)  # the [CLS] token
        embedding = method.embed(network, images)
    assert torch.allclose(embedding, F.normalize(tokens[:, 0], dim=1), atol=1e-5)  # pre-BN
    assert torch.allclose(embedding.norm(dim=1), torch.ones(4), atol=1e-5)
    cpu = method.build(method.config("cpu"), 3)
    assert cpu.backbone.patch_embed.grid_size == (8, 8) and len(cpu.backbone.blocks) == 6
    assert method.config("paper").losses.triplet_feature == "pre_bn" and cpu.centred
    assert method.config("cpu").losses.triplet_selective and not method.config("paper").losses.triplet_selective


def _mean_pairwise_cosine(features: torch.Tensor) -> float:
    unit = F.normalize(features, dim=1)
    off = ~torch.eye(len(features), dtype=torch.bool)
    return float((unit @ unit.t())[off].mean())


def test_the_cpu_vits_pre_bn_feature_is_one_common_component_from_random_weights_the_centred_one_is_not():
    """Why the cpu presets centre the triplet's feature: at initialisation (the cpu ViT, random weights) every
    pre-BN [CLS] feature points the same way (the patches' mean and position embeddings, shared by every
    image), so cosine distances are ~1e-3 and the batch-hard cosine triplet sits at its margin; less the
    batch mean the same features spread (docs/methods.md, the ViT family's triplet). Measured on the
    patchify ViT the cpu preset had before its convolutional stem (8 px patches)."""
    torch.manual_seed(0)
    method = get_method("vit")
    patchify = {"backbone.name": "vit_tiny_patch16_224", "backbone.kwargs": {"patch_size": 8, "depth": 6}}
    network = method.build(method.config("cpu", patchify), num_classes=4).train()
    # masked animals on black, as the synthetic species after segmentation: a 32 px patch of noise each
    generator = torch.Generator().manual_seed(0)
    images = torch.full((16, 3, 64, 64), -1.0)  # black after mean = std = 0.5
    for image in images:
        top, left = torch.randint(0, 33, (2,), generator=generator).tolist()
        image[:, top:top + 32, left:left + 32] = torch.rand(3, 32, 32, generator=generator) * 2 - 1
    labels = torch.arange(16) // 4
    with torch.no_grad():
        raw = network.backbone(images)
        centred = network(images)["features"]
    assert _mean_pairwise_cosine(raw) > 0.95
    assert abs(_mean_pairwise_cosine(centred)) < 0.2
    assert float(batch_hard_triplet_loss(raw, labels, 0.4, "cosine")) == pytest.approx(0.4, abs=0.01)
    assert float(batch_hard_triplet_loss(centred, labels, 0.4, "cosine")) > 0.5


def test_vit_centred_features_lose_the_bns_mean_batch_in_training_running_at_test():
    method = get_method("vit")
    network = method.build(tiny("vit"), num_classes=7)  # the cpu preset: centred
    images = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        cls = network.backbone(images)
        out = network.train()(images)  # also updates the BN's running mean
        assert torch.allclose(out["features"], cls - cls.mean(0), atol=1e-5)
        network.eval()
        running = network.neck.bn.running_mean.clone()
        assert running.abs().sum() > 0
        assert torch.allclose(network(images)["features"], cls - running, atol=1e-5)
        assert torch.allclose(method.embed(network, images), F.normalize(cls - running, dim=1), atol=1e-5)
    with pytest.raises(ValueError, match="class token"):
        method.build(tiny("vit", **{"backbone.kwargs": {"patch_size": 16, "depth": 1, "embed_dim": 48,
                                                        "num_heads": 3, "class_token": False,
                                                        "global_pool": "avg"}}), 3)


def test_vit_trains_on_flipped_copies_as_new_identities_and_flip_concatenates_for_atrw():
    method = get_method("vit")
    rows = pl.DataFrame({"image_id": ["a0", "a1", "b0"], "entity": ["a", "a", "b"],
                         "side": ["left", "unknown", "right"]})
    view = method.training_view(rows, method.config("paper"))  # the authors' training lists
    assert view.height == 6 and sorted(set(view["entity"])) == ["a", "a~flipped", "b", "b~flipped"]
    assert view.filter(pl.col("hflip"))["side"].to_list() == ["right", "unknown", "left"]
    assert method.training_view(rows, method.config("cpu")).height == 3
    network = method.build(tiny("vit", **{"input.test_flip": True}), num_classes=3).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        embedding = method.embed(network, images)
        plain, mirrored = network.backbone(images), network.backbone(images.flip(-1))
    assert embedding.shape == (2, 96)  # 2 x 48
    assert torch.allclose(embedding, F.normalize(torch.cat([plain, mirrored], 1), dim=1), atol=1e-5)


def test_the_paper_vit_is_vit_b16_at_256px():
    with torch.device("meta"):
        network = get_method("vit").build(get_method("vit").offline(get_method("vit").config("paper")), 10)
    backbone = network.backbone
    assert backbone.patch_embed.grid_size == (16, 16) and backbone.pos_embed.shape == (1, 257, 768)
    assert len(backbone.blocks) == 12 and backbone.num_features == 768


# -- training ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_one_step_gives_finite_loss_and_a_gradient_on_every_parameter(name):
    config = tiny(name)
    network = get_method(name).build(config, num_classes=4)
    stage, model, _ = _trained(name, config, network)
    loss, parts = stage.step(model, tiny_batch(), 0)
    assert model.calls == 1  # the forward goes through the wrapper
    assert torch.isfinite(loss) and loss.shape == ()
    assert set(parts) == ({"loss_arcface"} if name == "arcface" else {"loss_id", "loss_triplet"})
    assert all(v.shape == () and math.isfinite(v) and v > 0 for v in parts.values())
    loss.backward()
    trained = [(n, p) for n, p in network.named_parameters() if p.requires_grad]
    missing = [n for n, p in trained if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    frozen = {n for n, p in network.named_parameters() if not p.requires_grad}
    assert frozen == (set() if name == "arcface" else {"neck.bn.bias"})  # BoT's frozen BNNeck bias only
    if name == "arcface":
        assert network.arcface.W.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(name):
    torch.manual_seed(0)
    config = tiny(name, **({"optim.lr": 2e-3} if name == "vit" else {}))  # the 2-block ViT needs a push
    network = get_method(name).build(config, num_classes=4)
    stage, model, optimizer = _trained(name, config, network)
    batch = tiny_batch()
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss, _ = stage.step(model, batch, 0)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_arcface_optimizer_groups_and_schedule():
    config = tiny("arcface", **{"schedule.epochs": 10, "schedule.warmup_epochs": 2})
    network = get_method("arcface").build(config, 4)
    stage, model, optimizer = _trained("arcface", config, network)
    assert isinstance(optimizer, torch.optim.AdamW)
    backbone, head = optimizer.param_groups
    assert backbone["lr"] == pytest.approx(config.optim.lr)
    assert head["lr"] == pytest.approx(config.optim.lr * config.optim.head_lr_mult)
    assert any(p is network.arcface.W for p in head["params"])
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(network.parameters()))
    # warm-up 0.1 -> 1 over 2 epochs, then cosine over 8 epochs down to 1%
    expected = [0.1, 0.55, 1.0, 0.01 + 0.99 * (1 + math.cos(math.pi / 8)) / 2]
    assert [arcface_lr_schedule(config)(e) for e in range(4)] == pytest.approx(expected)
    assert arcface_lr_schedule(config)(10) == pytest.approx(0.01)
    scheduler = stage.scheduler(optimizer)
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    assert lrs == pytest.approx([config.optim.lr * f for f in expected])


def test_vit_optimizer_and_pawvit_schedule():
    config = get_method("vit").config("paper")
    # timm CosineLRScheduler(t_initial=47, lr_min=0.8 lr, warmup_t=2.5, warmup_lr_init=1.7e-7,
    # warmup_prefix=True), by hand: after the warm-up the cosine runs on t - 2.5
    lr, w0 = 8.5e-5, 1.7e-7
    assert config.schedule.t_initial == 47 and config.schedule.warmup_prefix
    assert vit_lr_at(config, 0) == pytest.approx(w0)
    assert vit_lr_at(config, 1) == pytest.approx(w0 + (lr - w0) / 2.5)  # 3.4102e-5
    assert vit_lr_at(config, 2) == pytest.approx(6.8034e-5)
    assert vit_lr_at(config, 3) == pytest.approx(6.8e-5 + 0.5 * 1.7e-5 * (1 + math.cos(0.5 * math.pi / 47)))
    assert vit_lr_at(config, 49) == pytest.approx(6.8e-5 + 0.5 * 1.7e-5 * (1 + math.cos(46.5 * math.pi / 47)))
    assert vit_lr_at(config, 50) == pytest.approx(6.8e-5)  # the cosine ends at epoch 49.5

    tiny_config = tiny("vit")
    network = get_method("vit").build(tiny_config, 4)
    stage, model, optimizer = _trained("vit", tiny_config, network)
    assert isinstance(optimizer, torch.optim.AdamW) and len(optimizer.param_groups) == 1
    assert optimizer.param_groups[0]["weight_decay"] == tiny_config.optim.weight_decay
    assert not any(p is network.neck.bn.bias for p in optimizer.param_groups[0]["params"])
    scheduler = stage.scheduler(optimizer)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(tiny_config.schedule.warmup_lr_init)
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(vit_lr_at(tiny_config, 1))


def test_arcface_loss_matches_a_hand_computed_value():
    """cos(theta_y + m) for the true class, scaled by s, then cross-entropy (ArcFace Eq. 3)."""
    torch.manual_seed(0)
    identity = nn.Identity()
    identity.num_features = 2
    network = ArcFaceNet(identity, 3, embed_dim=2, margin=0.5, scale=4.0)
    network.neck = nn.Identity()  # the embedding is the input
    with torch.no_grad():
        network.arcface.W.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]]))  # class directions
    embedding = torch.tensor([[3.0, 3.0]])  # 45 deg from class 0 and class 1, 135 deg from class 2
    loss = network(embedding, labels=torch.tensor([0]))["loss_arcface"]
    r = math.sqrt(0.5)
    logits = [4.0 * math.cos(math.pi / 4 + 0.5), 4.0 * r, -4.0 * r]
    expected = -logits[0] + math.log(sum(math.exp(z) for z in logits))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # 135 deg from its class: cos(theta + m) still (theta + m < pi)
    loss = network(embedding, labels=torch.tensor([2]))["loss_arcface"]
    logits = [4.0 * r, 4.0 * r, 4.0 * math.cos(3 * math.pi / 4 + 0.5)]
    expected = -logits[2] + math.log(sum(math.exp(z) for z in logits))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # beyond pi - m the penalty is ArcFace's linear fallback cos(theta) - m sin(m) (monotonic)
    far = torch.tensor([[1.0, 0.1]])  # 174 deg from class 2
    loss = network(far, labels=torch.tensor([2]))["loss_arcface"]
    c = 1 / math.sqrt(1.01)
    logits = [4.0 * c, 4.0 * 0.1 * c, 4.0 * (-c - 0.5 * math.sin(0.5))]
    expected = -logits[2] + math.log(sum(math.exp(z) for z in logits))
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_vit_loss_is_the_weighted_ce_plus_cosine_triplet():
    from reid_core.losses.classification import identity_loss
    from reid_core.losses.triplet import batch_hard_triplet_loss

    config = tiny("vit")
    network = get_method("vit").build(config, 4)
    stage, model, _ = _trained("vit", config, network)
    batch = tiny_batch()
    torch.manual_seed(1)
    loss, parts = stage.step(model, batch, 0)
    with torch.no_grad():
        out = network(batch["image"])  # no dropout / drop-path in the cpu preset: the same forward
    ce = identity_loss(out["logits"], batch["label"], 0.2)
    triplet = batch_hard_triplet_loss(out["features"], batch["label"], 0.4, "cosine")
    assert parts["loss_id"] == pytest.approx(float(ce), rel=1e-4)
    assert parts["loss_triplet"] == pytest.approx(float(triplet), rel=1e-4)
    assert float(loss) == pytest.approx(float(ce) + 0.5 * float(triplet), rel=1e-4)


def test_the_vit_step_trains_its_presets_selective_triplet():
    from reid_core.losses.classification import identity_loss
    from reid_core.losses.triplet import batch_hard_triplet_loss

    config = tiny("vit")  # the cpu preset: selective
    network = get_method("vit").build(config, 4)
    stage, model, _ = _trained("vit", config, network)
    batch = tiny_batch()
    weight = network.backbone.blocks[0].mlp.fc1.weight

    def gradient(loss):
        network.zero_grad()
        loss.backward()
        return weight.grad.clone()

    stepped = gradient(stage.step(model, batch, 0)[0])
    manual = {}
    for selective in (False, True):
        out = network(batch["image"])
        triplet = batch_hard_triplet_loss(out["features"], batch["label"], 0.4, "cosine", selective=selective)
        manual[selective] = gradient(identity_loss(out["logits"], batch["label"], 0.2) + 0.5 * triplet)
    assert torch.allclose(stepped, manual[True], atol=1e-7)
    assert not torch.allclose(stepped, manual[False], atol=1e-7)  # the random network's triplets are hard


def test_transforms_give_square_normalised_tensors():
    from PIL import Image

    image = Image.new("RGB", (90, 50), (255, 255, 255))
    for name in NAMES:
        method = get_method(name)
        config = tiny(name)
        for transform in (method.train_transform(config), method.eval_transform(config)):
            assert transform(image).shape == (3, 64, 64)
    assert torch.allclose(get_method("vit").eval_transform(tiny("vit"))(image), torch.ones(3, 64, 64))  # (1-.5)/.5
    arcface_paper = repr(get_method("arcface").train_transform(get_method("arcface").config("paper")))
    assert "RandomHorizontalFlip" in arcface_paper and "RandomRotation" not in arcface_paper
    vit_paper = repr(get_method("vit").train_transform(get_method("vit").config("paper")))
    assert "RandomRotation" in vit_paper and "RandomHorizontalFlip" not in vit_paper
    assert "RandomHorizontalFlip" not in repr(get_method("arcface").train_transform(tiny("arcface")))


# -- pretrained weights --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_pretrained_state_dict_from_a_path(name, tmp_path):
    method = get_method(name)
    source = method.build(tiny(name), 3)
    with torch.no_grad():
        for p in source.backbone.parameters():
            p.normal_()
    path = tmp_path / "backbone.pth"
    torch.save({"state_dict": source.backbone.state_dict()}, path)
    loaded = method.build(tiny(name, **{"backbone.pretrained": str(path)}), 3)
    for (key, a), b in zip(source.backbone.state_dict().items(), loaded.backbone.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    with pytest.raises(FileNotFoundError):
        method.build(tiny(name, **{"backbone.pretrained": str(tmp_path / "missing.pth")}), 3)


def test_vit_checkpoint_at_another_resolution_is_resampled(tmp_path):
    """A 224-px-style checkpoint (another position grid, a 1000-class head) fits the 64-px model."""
    kwargs = TINY["vit"]["backbone.kwargs"]
    other = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, **kwargs)  # 2 x 2 grid
    path = tmp_path / "vit32.pth"
    torch.save(other.state_dict(), path)
    network = get_method("vit").build(tiny("vit", **{"backbone.pretrained": str(path)}), 3)
    assert network.backbone.pos_embed.shape == (1, 17, 48)
    assert torch.equal(network.backbone.blocks[0].attn.qkv.weight, other.blocks[0].attn.qkv.weight)
    assert torch.equal(network.backbone.cls_token, other.cls_token)
