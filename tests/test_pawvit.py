"""PAW-ViT ("pawvit"): hand-computed values of its pieces (position embeddings, ATM masks, the
aggregation block, the exp-log distillation loss, visibility and orientation averaging), the part
targets, image + mask transforms and the flipped-copies view, the network and one training step.
Random-weight tiny ViTs only: nothing is downloaded."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import timm
import torch
import torch.nn.functional as F
from method_support import FakeDDP, tiny_batch
from PIL import Image
from torch import nn
from torchvision import tv_tensors

from reid_core.data.dataset import ManifestDataset
from reid_core.losses.exp_log import class_weights, exp_log_loss
from reid_core.methods.config import ConfigError
from reid_core.methods.contract import BatchSpec, StageContext, StagePlan
from reid_core.methods.pawvit import PawViTMethod
from reid_core.methods.pawvit import backbone as pawvit_backbone
from reid_core.methods.pawvit.backbone import resize_grid_embedding
from reid_core.methods.pawvit.config import Losses
from reid_core.methods.pawvit.figures import CAPTION, GAP, TILE, TITLE, part_attention_maps, token_names
from reid_core.methods.pawvit.losses import part_orientation_loss, pawvit_loss
from reid_core.methods.pawvit.network import AggregationBlock, ATMDecoder
from reid_core.methods.pawvit.recipe import lr_at
from reid_core.methods.pawvit.targets import merge_table, part_targets, part_visibility
from reid_core.methods.registry import get_method
from reid_core.methods.search_space import SearchSpace

# a patchify ViT (the paper's kind, whose checkpoints the conversion tests write) smaller than the cpu preset's
TINY = {"backbone.name": "vit_tiny_patch16_224",
        "backbone.kwargs": {"patch_size": 16, "depth": 2, "embed_dim": 48, "num_heads": 3},
        "parts.mask_size": 8}  # 64 px -> a 4 x 4 grid; K = 4 (the cpu preset's)
TIGER = pl.DataFrame({"species": ["tiger"]})

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def method() -> PawViTMethod:
    return get_method("pawvit")


def tiny(**overrides):
    return method().config("cpu", {**TINY, **overrides})


def started_stage(config, network):
    (stage,) = method().stages(config, network, [4])
    stage.trainable(network)
    stage.on_start(network, StageContext(rows=TIGER, device=torch.device("cpu")))
    model = FakeDDP(network)
    return stage, model, stage.optimizer(model)


def parts_batch(size: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """tiny_batch (4 identities x 4 images, sides left/right/unknown) plus vocabulary label maps."""
    batch = tiny_batch(sides=[0, 1, -1, 0] * 4)
    labels = torch.randint(0, 6, (16, size, size), generator=torch.Generator().manual_seed(seed))
    return batch | {"parts": labels}


# -- config, presets, search space ---------------------------------------------------------------------


def test_registered_with_the_paper_defaults():
    pawvit = method()
    assert isinstance(pawvit, PawViTMethod) and pawvit.mask_columns == {"parts": "parts_uri"}
    paper = pawvit.config("paper")
    assert (paper.backbone.name, paper.backbone.pretrained) == ("vit_base_patch16_224",
                                                                "vit_base_patch16_224.orig_in21k_ft_in1k")
    assert (paper.input.size, paper.input.rotation, paper.input.flipped_copies, paper.input.test_flip) == (
        256, 15.0, True, False)
    assert (paper.parts.num_parts, paper.parts.mask_size) == (5, 64)
    losses = paper.losses
    assert (losses.label_smoothing, losses.triplet_margin, losses.triplet_distance, losses.alpha,
            losses.lambda_seg, losses.orientation_weight) == (0.2, 0.4, "cosine", 0.5, 1.0, 1.0)
    assert (losses.seg_w_dice, losses.seg_w_cross, losses.seg_gamma_dice, losses.seg_gamma_cross,
            losses.seg_softmax, losses.orientation_average) == (0.5, 0.5, 1.2, 1.2, True, "image")
    assert (paper.optim.lr, paper.optim.weight_decay, paper.schedule.epochs) == (8.5e-5, 5e-4, 50)
    assert pawvit.plan(paper) == [StagePlan("main", 50, BatchSpec("pk", 8, 16),
                                            batch_keys=("batch.ids_per_batch", "batch.images_per_id"))]
    spec = pawvit.input_spec(paper)
    assert (spec.height, spec.width, spec.mean, spec.std) == (256, 256, (0.5,) * 3, (0.5,) * 3)
    cpu = pawvit.config("cpu")
    assert (cpu.backbone.pretrained, cpu.input.size, cpu.parts.num_parts, cpu.parts.mask_size) == (None, 64, 4, 16)
    assert pawvit.offline(paper).backbone.pretrained is None
    with pytest.raises(ConfigError, match=r"unknown config key 'parts\.k'.*parts\.num_parts"):
        pawvit.config("cpu", {"parts.k": 3})


def test_the_schedule_is_the_papers_warm_up_then_the_authors_prefixed_cosine_to_0_8_lr():
    config = method().config("paper")
    lr, w0 = 8.5e-5, 1.7e-7
    assert config.schedule.warmup_epochs == 3 and config.schedule.t_initial == 47  # paper: 3 epochs
    assert config.schedule.warmup_prefix  # the authors' timm warmup_prefix=True: the cosine on t - 3
    assert lr_at(config, 0) == pytest.approx(w0)
    assert lr_at(config, 1) == pytest.approx(w0 + (lr - w0) / 3)
    assert lr_at(config, 2) == pytest.approx(w0 + 2 * (lr - w0) / 3)
    assert lr_at(config, 3) == pytest.approx(lr)  # t = 0: the cosine's top
    assert lr_at(config, 4) == pytest.approx(6.8e-5 + 0.5 * 1.7e-5 * (1 + math.cos(math.pi / 47)))
    assert lr_at(config, 49) == pytest.approx(6.8e-5 + 0.5 * 1.7e-5 * (1 + math.cos(46 * math.pi / 47)))
    assert lr_at(config, 49) > 0.8 * lr and lr_at(config, 50) == pytest.approx(0.8 * lr)  # lr_min = 0.8 lr
    assert method().config("paper", {"schedule.warmup_epochs": 2.5}).schedule.t_initial == 47  # the code's
    # without the prefix the cosine counts the warm-up's epochs and reaches 0.8 lr at epoch 47
    unprefixed = method().config("paper", {"schedule.warmup_prefix": False})
    assert lr_at(unprefixed, 3) == pytest.approx(6.8e-5 + 0.5 * 1.7e-5 * (1 + math.cos(3 * math.pi / 47)))
    assert lr_at(unprefixed, 47) == lr_at(unprefixed, 49) == pytest.approx(0.8 * lr)
    # the cpu preset keeps the unprefixed curve: lr 5e-4, floor 0.1 lr from t_initial = 29 on
    cpu = method().config("cpu")
    assert not cpu.schedule.warmup_prefix and cpu.schedule.t_initial == 29
    assert lr_at(cpu, 1) == pytest.approx(5e-5 + 0.5 * 4.5e-4 * (1 + math.cos(math.pi / 29)))
    assert lr_at(cpu, 29) == pytest.approx(5e-5)


def test_the_search_space_is_data_over_config_keys_that_accept_its_ranges():
    keys = {p.key: p for p in method().search_space}
    assert set(keys) == {"parts.num_parts", "losses.lambda_seg", "losses.triplet_margin", "losses.alpha", "optim.lr"}
    assert keys["parts.num_parts"].choices == (3, 4, 5) and keys["optim.lr"].kind == "log"
    for param in method().search_space:
        for value in param.choices or (param.low, param.high):
            method().config("cpu", {param.key: value})


def test_the_paper_network_is_vit_b16_at_256px_with_six_tokens_in_place_of_cls():
    pawvit = method()
    with torch.device("meta"):
        network = pawvit.build(pawvit.offline(pawvit.config("paper")), 10)
    vit = network.backbone
    assert vit.cls_token is None and vit.reg_token.shape == (1, 6, 768) and vit.num_prefix_tokens == 6
    assert vit.patch_embed.grid_size == (16, 16) and vit.pos_embed.shape == (1, 6 + 256, 768)
    assert len(vit.blocks) == 12 and vit.blocks[0].attn.num_heads == 12
    assert network.atm.mask_size == 64 and len(network.orientation) == 5


# -- pretrained weights: the authors' conversion -------------------------------------------------------


def test_grid_position_embeddings_resize_bicubic_with_aligned_corners():
    grid = torch.tensor([0.0, 1.0, 2.0, 3.0]).reshape(1, 4, 1)  # [[0, 1], [2, 3]]
    resized = resize_grid_embedding(grid, (3, 3)).reshape(3, 3)
    # align_corners=True keeps the corners; bicubic (a = -0.75) halfway between two samples is their mean
    assert torch.allclose(resized, torch.tensor([[0.0, 0.5, 1.0], [1.0, 1.5, 2.0], [2.0, 2.5, 3.0]]), atol=1e-6)
    assert torch.equal(resize_grid_embedding(grid, (2, 2)), grid)
    with pytest.raises(ValueError, match="not a square grid"):
        resize_grid_embedding(torch.zeros(1, 6, 2), (2, 2))


def _class_token_vit(img_size: int = 32):
    """A timm ViT with a class token (the pretrained layout) at a 2 x 2 grid, every weight random."""
    torch.manual_seed(0)
    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=img_size,
                               **TINY["backbone.kwargs"])
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.normal_()
    return source


def _check_converted(network, source) -> None:
    vit, pos = network.backbone, network.backbone.pos_embed
    cls_row = source.pos_embed[:, :1]
    assert torch.equal(pos[:, :5], cls_row.expand(1, 5, -1))  # every token row is the [CLS] row
    assert torch.allclose(pos[:, 5:], resize_grid_embedding(source.pos_embed[:, 1:], (4, 4)))
    assert torch.equal(vit.blocks[1].mlp.fc2.weight, source.blocks[1].mlp.fc2.weight)
    assert torch.equal(vit.patch_embed.proj.weight, source.patch_embed.proj.weight)
    assert vit.reg_token.std() < 0.05  # the tokens stay at trunc_normal(0.02): cls_token is not loaded


def test_a_class_token_checkpoint_is_converted_as_the_authors_do(tmp_path):
    source = _class_token_vit()
    path = tmp_path / "vit.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    network = method().build(tiny(**{"backbone.pretrained": str(path)}), 3)
    _check_converted(network, source)
    torch.save({k: v for k, v in source.state_dict().items() if k != "cls_token"}, path)
    with pytest.raises(ValueError, match="with a class token"):
        method().build(tiny(**{"backbone.pretrained": str(path)}), 3)


def test_hub_weights_come_through_the_resolver_at_their_own_grid(monkeypatch):
    source = _class_token_vit(224 // 16 * 16 // 7)  # any grid: stands in for the hub's 14 x 14
    calls = []

    def hub(name, pretrained, **kwargs):
        calls.append((name, pretrained, kwargs))
        return source

    monkeypatch.setattr(pawvit_backbone, "create_timm_backbone", hub)
    network = method().build(tiny(**{"backbone.pretrained": "vit_tiny_patch16_224.augreg_in21k"}), 3)
    assert calls == [("vit_tiny_patch16_224", "vit_tiny_patch16_224.augreg_in21k", TINY["backbone.kwargs"])]
    _check_converted(network, source)


# -- network pieces, by hand ---------------------------------------------------------------------------


def test_atm_masks_are_head_averaged_sigmoid_similarities_upsampled_bilinearly():
    atm = ATMDecoder(dim=4, num_heads=2, grid=(1, 2), mask_size=2)
    with torch.no_grad():
        for linear in (atm.q, atm.k):
            linear.weight.copy_(torch.eye(4))
            linear.bias.zero_()
    tokens = torch.tensor([[[1.0, 0.0, 0.0, 2.0], [0.0, 1.0, 1.0, 0.0]]])  # (1, T=2, D=4)
    patches = torch.tensor([[[1.0, 1.0, 0.0, 1.0], [2.0, 0.0, 1.0, -1.0]]])  # (1, N=2, D=4), grid 1 x 2
    s = 1 / math.sqrt(2)  # (D / heads) ** -0.5

    def sig(x):
        return 1 / (1 + math.exp(-x))

    # head 0 sees dims 0-1, head 1 dims 2-3
    expected = [[(sig(1 * s) + sig(2 * s)) / 2, (sig(2 * s) + sig(-2 * s)) / 2],
                [(sig(1 * s) + sig(0)) / 2, (sig(0) + sig(1 * s)) / 2]]
    atm.mask_size = 2  # 1 x 2 -> 2 x 2: rows repeat, columns are the two patches
    masks = atm(tokens, patches)
    assert masks.shape == (1, 2, 2, 2)
    assert torch.allclose(masks[0, :, 0], torch.tensor(expected), atol=1e-6)
    assert torch.allclose(masks[0, :, 1], torch.tensor(expected), atol=1e-6)
    atm.mask_size = 4  # bilinear, align_corners=False: 1/4 and 3/4 of the way between the two patches
    wide = atm(tokens, patches)[0, 0, 0]
    a, b = expected[0]
    assert torch.allclose(wide, torch.tensor([a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b]), atol=1e-6)


def test_the_aggregation_token_attends_over_the_parts_without_a_residual():
    torch.manual_seed(0)
    block = AggregationBlock(dim=2, num_heads=1)
    with torch.no_grad():
        block.token.copy_(torch.tensor([[[1.0, 0.0]]]))
        block.q.weight.copy_(torch.eye(2))
        block.kv.weight.copy_(torch.cat([torch.eye(2), 2 * torch.eye(2)]))  # k = parts, v = 2 parts
        block.proj.weight.copy_(torch.eye(2))
        for linear in (block.q, block.kv, block.proj):
            linear.bias.zero_()
    for norm in ("norm_q", "norm_k"):
        setattr(block, norm, nn.Identity())
    parts = torch.tensor([[[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]]])  # (1, K=3, 2)
    logits = torch.tensor([2.0, 0.0, 1.0]) / math.sqrt(2)
    alpha = logits.exp() / logits.exp().sum()
    attended, weights = block.attention(parts)
    assert torch.allclose(weights[0, 0], alpha, atol=1e-6)
    assert torch.allclose(attended[0], 2 * (alpha[:, None] * parts[0]).sum(0), atol=1e-6)
    assert torch.allclose(block(parts), block.norm(block.mlp(block.norm_v(attended))), atol=1e-6)
    # no residual: with identical parts the attention weights do not matter, nor does the token
    same = torch.tensor([[[0.5, -1.0]] * 3])
    before = block(same)
    with torch.no_grad():
        block.token.copy_(torch.tensor([[[-3.0, 7.0]]]))
    assert torch.allclose(block(same), before, atol=1e-6)


def test_the_network_uses_the_k_part_tokens_for_the_descriptor_and_every_token_for_the_masks():
    pawvit = method()
    network = pawvit.build(tiny(**{"losses.triplet_feature": "pre_bn"}), num_classes=7).eval()  # the paper's
    vit = network.backbone
    assert vit.num_prefix_tokens == 5 and vit.patch_embed.grid_size == (4, 4)
    assert [type(m) for m in network.modules() if isinstance(m, nn.BatchNorm1d)] == [nn.BatchNorm1d]  # one BN
    assert not network.neck.bn.bias.requires_grad and network.neck.classifier.bias is not None
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = network(images)
        assert out["features"].shape == out["normed"].shape == (2, 48) and out["logits"].shape == (2, 7)
        assert out["masks"].shape == (2, 5, 8, 8) and out["orientation"].shape == (2, 4)
        assert float(out["masks"].min()) >= 0 and float(out["masks"].max()) <= 1
        tokens, patches = network.tokens(images)
        assert tokens.shape == (2, 5, 48) and patches.shape == (2, 16, 48)
        assert torch.allclose(out["features"], network.aggregation(tokens[:, :4]), atol=1e-6)
        assert torch.allclose(out["orientation"][:, 2:3],
                              network.orientation[2](network.neck.bn(tokens[:, 2])), atol=1e-6)
        embedding = pawvit.embed(network, images)
        assert torch.allclose(embedding, F.normalize(out["features"], dim=1), atol=1e-5)  # pre-BN
        changed = tokens.clone()
        changed[:, 4] += 5.0  # the background token
        network.tokens = lambda _: (changed, patches)
        moved = network(images)
    assert torch.allclose(moved["features"], out["features"], atol=1e-6)  # never aggregated
    assert not torch.allclose(moved["masks"][:, 4], out["masks"][:, 4])
    assert torch.allclose(moved["masks"][:, :4], out["masks"][:, :4], atol=1e-6)

    flipping = pawvit.build(tiny(**{"input.test_flip": True}), 3).eval()
    with torch.no_grad():
        both = pawvit.embed(flipping, images)
        expected = torch.cat([flipping.descriptor(images), flipping.descriptor(images.flip(-1))], 1)
    assert both.shape == (2, 96) and torch.allclose(both, F.normalize(expected, dim=1), atol=1e-5)

    centred = pawvit.build(tiny(), 3)  # the cpu preset: the descriptor less the BN's mean
    assert centred.centred and not network.centred
    with torch.no_grad():
        raw = centred.aggregation(centred.tokens(images)[0][:, :4])
        assert torch.allclose(centred.train()(images)["features"], raw - raw.mean(0), atol=1e-5)
        # one training step moved the running mean towards the descriptor's batch mean only, not the parts'
        # (the orientation heads' per-part BN calls use batch statistics and leave the running ones)
        assert torch.allclose(centred.neck.bn.running_mean, 0.1 * raw.mean(0), atol=1e-5)
        centred.eval()
        running = centred.neck.bn.running_mean
        assert torch.allclose(pawvit.embed(centred, images), F.normalize(raw - running, dim=1), atol=1e-5)


# -- the distillation loss, by hand --------------------------------------------------------------------


def _bce(z: float, y: int) -> float:
    return math.log1p(math.exp(z)) - y * z


def test_exp_log_loss_dice_and_weighted_cross_terms_match_hand_values():
    # one image, 2 classes, 3 pixels: class 0 on pixels 0-1, class 1 on pixel 2
    targets = torch.tensor([[[[1.0, 1.0, 0.0]], [[0.0, 0.0, 1.0]]]])
    p = torch.tensor([[[[0.8, 0.6, 0.3]], [[0.2, 0.4, 0.7]]]])
    eps, g = 1e-6, 1.2
    dice0 = (2 * 1.4 + eps) / (1.7 + 2 + eps)
    dice1 = (2 * 0.7 + eps) / (1.3 + 1 + eps)
    dice = ((-math.log(dice0)) ** g + (-math.log(dice1)) ** g) / 2
    w0, w1 = math.sqrt(3 / 2), math.sqrt(3 / 1)  # sqrt(sum f / f_c), f = (2, 1)
    cross = (w0 * (-math.log(0.8)) ** g + w0 * (-math.log(0.6)) ** g + w1 * (-math.log(0.7)) ** g) / 3
    assert torch.allclose(class_weights(targets), torch.tensor([w0, w1]))
    total, terms = exp_log_loss(p, targets, softmax=False)
    assert float(terms["dice"]) == pytest.approx(dice, rel=1e-5)
    assert float(terms["cross"]) == pytest.approx(cross, rel=1e-5)
    assert float(total) == pytest.approx(0.5 * dice + 0.5 * cross, rel=1e-5)
    _, terms = exp_log_loss(p, targets, softmax=False, gamma_dice=1.0, gamma_cross=2.0)  # one exponent each
    assert float(terms["dice"]) == pytest.approx((-math.log(dice0) - math.log(dice1)) / 2, rel=1e-5)
    assert float(terms["cross"]) == pytest.approx(
        (w0 * math.log(0.8) ** 2 + w0 * math.log(0.6) ** 2 + w1 * math.log(0.7) ** 2) / 3, rel=1e-5)

    # the authors' softmax over the channels of the (sigmoid) masks
    q = torch.softmax(p, dim=1)[0, :, 0]  # (2, 3)
    dice0 = (2 * float(q[0, 0] + q[0, 1]) + eps) / (float(q[0].sum()) + 2 + eps)
    dice1 = (2 * float(q[1, 2]) + eps) / (float(q[1].sum()) + 1 + eps)
    cross = (w0 * (-math.log(q[0, 0])) ** g + w0 * (-math.log(q[0, 1])) ** g + w1 * (-math.log(q[1, 2])) ** g) / 3
    _, terms = exp_log_loss(p, targets)
    assert float(terms["dice"]) == pytest.approx(((-math.log(dice0)) ** g + (-math.log(dice1)) ** g) / 2, rel=1e-5)
    assert float(terms["cross"]) == pytest.approx(cross, rel=1e-5)


def test_class_weights_come_from_each_batch_and_an_absent_class_weighs_nothing():
    targets = F.one_hot(torch.tensor([[[0, 0, 0, 1]], [[0, 1, 1, 1]]]), 3).permute(0, 3, 1, 2).float()
    assert torch.allclose(class_weights(targets), torch.tensor([math.sqrt(8 / 4), math.sqrt(8 / 4), 0.0]))
    predictions = torch.rand(2, 3, 1, 4, requires_grad=True)
    total, terms = exp_log_loss(predictions, targets)
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(predictions.grad).all()
    # the absent class's Dice term is still counted (the authors' mean over every image and class)
    q = torch.softmax(predictions.detach(), 1)
    absent = (-math.log(1e-6 / (float(q[0, 2].sum()) + 1e-6))) ** 1.2
    assert float(terms["dice"].detach()) > absent / 6


def _absent_part_case(p1: float, floor: float) -> tuple[float, torch.Tensor]:
    """exp-log loss of one 11 x 11 image (121 px) that is all class 0, predicting p1 for the absent class 1
    everywhere (no softmax, gamma_dice 1): the Dice term and the gradient on class 1's channel."""
    targets = torch.stack([torch.ones(11, 11), torch.zeros(11, 11)])[None]
    p = torch.stack([torch.full((11, 11), 1 - p1), torch.full((11, 11), p1)])[None].requires_grad_()
    total, terms = exp_log_loss(p, targets, softmax=False, gamma_dice=1.0, dice_floor=floor)
    total.backward()
    return float(terms["dice"].detach()), p.grad[0, 1]


def test_the_codes_dice_floor_makes_an_absent_parts_term_a_constant_without_gradient():
    eps = 1e-6
    # predicted mass of the absent class 0.9 x 121 = 108.9 px > 100: its Dice eps / (108.9 + eps) < 1e-8
    present = -math.log((2 * 12.1 + eps) / (12.1 + 121 + eps))  # class 0: sum p t = 12.1, sum p + t = 133.1
    dice, grad = _absent_part_case(0.9, floor=1e-8)  # the authors' clamp
    assert dice == pytest.approx((present - math.log(1e-8)) / 2, rel=1e-5)
    assert torch.equal(grad, torch.zeros(11, 11))  # the constant -ln 1e-8: nothing pushes the mass down
    dice, grad = _absent_part_case(0.9, floor=0.0)  # the paper's formula
    assert dice == pytest.approx((present - math.log(eps / (108.9 + eps))) / 2, rel=1e-5)
    # d/dp of w_dice x (1/2) x -ln(eps / (sum p + eps)) = 0.5 x 0.5 / (sum p + eps) at every pixel
    assert torch.allclose(grad, torch.full((11, 11), 0.25 / (108.9 + eps)), rtol=1e-5)
    # under 100 px of predicted mass (0.5 x 121 = 60.5) the floor does not bind: both agree
    (clamped, clamped_grad), (plain, plain_grad) = _absent_part_case(0.5, 1e-8), _absent_part_case(0.5, 0.0)
    assert clamped == plain and torch.equal(clamped_grad, plain_grad) and plain_grad.abs().min() > 0


def test_the_paper_preset_takes_the_codes_dice_floor_and_the_cpu_preset_the_papers_formula():
    assert method().config("paper").losses.seg_dice_floor == 1e-8
    assert method().config("cpu").losses.seg_dice_floor == 0.0
    # pawvit_loss hands the key to the exp-log loss: masks whose absent class 1 holds ~121 of 121 px
    targets = torch.stack([torch.ones(11, 11), torch.zeros(11, 11)])[None].expand(4, -1, -1, -1)
    masks = torch.stack([torch.zeros(11, 11), torch.full((11, 11), 8.0)])[None].expand(4, -1, -1, -1)
    out = {"logits": torch.zeros(4, 2), "features": torch.randn(4, 8), "masks": masks,
           "orientation": torch.zeros(4, 1)}
    labels, sides = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    for floor in (1e-8, 0.0):
        _, parts = pawvit_loss(out, labels, sides, targets, Losses(seg_dice_floor=floor))
        _, terms = exp_log_loss(masks, targets, dice_floor=floor)
        assert float(parts["loss_seg_dice"]) == pytest.approx(float(terms["dice"]))
    clamped = pawvit_loss(out, labels, sides, targets, Losses())[1]["loss_seg_dice"]
    assert float(clamped) < float(parts["loss_seg_dice"])  # the floor caps the absent class's -ln Dice


def test_the_cpu_preset_trains_a_selective_triplet_and_the_paper_preset_the_authors():
    assert method().config("cpu").losses.triplet_selective and not method().config("paper").losses.triplet_selective
    # pawvit_loss hands the key to the triplet: on a batch whose every triplet is hard (the hand case of
    # test_losses: 0, 2 of id a around 1 of id b) the gradient reaching the features is alpha x that case's
    targets = torch.zeros(3, 2, 4, 4)
    targets[:, 1] = 1.0
    labels, sides = torch.tensor([0, 0, 1]), torch.tensor([0, 0, 1])
    grads = {}
    for selective in (False, True):
        features = torch.tensor([[0.0], [2.0], [1.0]], requires_grad=True)
        out = {"logits": torch.zeros(3, 2), "features": features, "masks": targets, "orientation": torch.zeros(3, 1)}
        total, parts = pawvit_loss(out, labels, sides, targets, Losses(triplet_distance="euclidean", triplet_margin=0.5,
                                                                       triplet_selective=selective))
        assert float(parts["loss_triplet"]) == pytest.approx(1.5)
        total.backward()
        grads[selective] = features.grad.flatten().tolist()
    assert grads[False] == pytest.approx([-0.25, 0.25, 0.0])  # alpha 0.5 x the full gradient
    assert grads[True] == pytest.approx([0.25, -0.25, 0.0])  # alpha 0.5 x the selective one


# -- part targets, visibility, orientation ------------------------------------------------------------


def test_label_maps_merge_to_the_schemes_k_with_the_background_channel_last():
    vocabulary = torch.tensor([[[0, 1, 2, 3, 4, 5]]])  # background, head, body, front, hind, tail
    tiger5 = part_targets(vocabulary, merge_table(get_scheme("tiger"), 5), 5)
    assert tiger5.shape == (1, 6, 1, 6) and torch.equal(tiger5[0, :, 0].argmax(0), torch.tensor([5, 0, 1, 2, 3, 4]))
    tiger3 = part_targets(vocabulary, merge_table(get_scheme("tiger"), 3), 3)  # head, body+tail, legs
    assert torch.equal(tiger3[0, :, 0].argmax(0), torch.tensor([3, 0, 1, 2, 2, 1]))
    assert torch.equal(tiger3.sum(1), torch.ones(1, 1, 6))  # one-hot


def get_scheme(species: str):
    from reid_core.parts.schemes import scheme_for

    return scheme_for(species)


def test_a_part_is_visible_when_its_target_has_a_pixel():
    labels = torch.tensor([[[0, 1], [1, 0]], [[2, 3], [0, 0]], [[0, 0], [0, 0]]])  # K = 3 (tiger: legs merged)
    visible = part_visibility(part_targets(labels, merge_table(get_scheme("tiger"), 3), 3))
    assert visible.tolist() == [[True, False, False], [False, True, True], [False, False, False]]


def test_orientation_bce_is_averaged_over_visible_parts_the_papers_or_the_codes_way():
    logits = torch.tensor([[0.5, -1.0], [2.0, 0.3], [1.0, 1.0], [-0.7, 0.2]], requires_grad=True)
    sides = torch.tensor([0, 1, 1, -1])  # left, right, right, unknown
    visible = torch.tensor([[True, False], [True, True], [False, False], [True, True]])
    # image 0: part 0 only; image 1: both; image 2: none visible; image 3: side unknown
    per_image = (_bce(0.5, 0) + (_bce(2.0, 1) + _bce(0.3, 1)) / 2) / 2
    per_part = ((_bce(0.5, 0) + _bce(2.0, 1)) / 2 + _bce(0.3, 1)) / 2
    assert float(part_orientation_loss(logits, sides, visible, "image").detach()) == pytest.approx(per_image, rel=1e-6)
    assert float(part_orientation_loss(logits, sides, visible, "part").detach()) == pytest.approx(per_part, rel=1e-6)
    # a part no image shows is left out of the code's mean, not counted as 0
    only_first = visible & torch.tensor([True, False])
    assert float(part_orientation_loss(logits, sides, only_first, "part").detach()) == pytest.approx(
        (_bce(0.5, 0) + _bce(2.0, 1)) / 2, rel=1e-6)
    nothing = part_orientation_loss(logits, torch.full((4,), -1), visible, "part")
    nothing.backward()
    assert float(nothing) == 0.0 and logits.grad is not None  # still attached (DDP)


# -- data: species check, transforms, flipped copies ----------------------------------------------------


def test_num_parts_is_checked_against_the_species_scheme_with_the_fix():
    rows = pl.DataFrame({"species": ["yak"] * 2, "entity": ["a", "b"], "image_id": ["0", "1"],
                         "side": ["left", "right"]})
    with pytest.raises(ValueError, match=r"parts\.num_parts=5 is not a part grouping of the yak scheme.*"
                                         r"use one of 3,4, e\.g\. --set parts\.num_parts=4"):
        method().training_view(rows, method().config("paper"))
    assert method().training_view(rows, method().config("paper", {"parts.num_parts": 4})).height == 4
    with pytest.raises(ValueError, match="one species at a time"):
        method().training_view(rows.with_columns(pl.Series("species", ["yak", "tiger"])), method().config("cpu"))
    with pytest.raises(ValueError, match="no part scheme for species 'lynx'"):
        method().training_view(rows.with_columns(pl.lit("lynx").alias("species")), method().config("cpu"))


def test_the_tuner_searches_num_parts_among_the_species_groupings():
    def choices(species, bounds=None):
        return SearchSpace("pawvit", bounds or {}, species)._resolved["parts.num_parts"].choices

    assert (choices("tiger"), choices("yak"), choices("elephant")) == ((3, 4, 5), (3, 4), (3, 4))
    assert choices("yak", {"parts.num_parts": [3]}) == (3,)  # --bound still wins
    assert choices("lynx") == (3, 4, 5)  # no scheme: the trials' own check names the fix


PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)


def _labelled_image(tmp_path):
    """An image whose colours are its part labels (no symmetry, so a flip or a turn shows)."""
    labels = np.zeros((48, 48), dtype=np.uint8)
    labels[6:20, 8:40] = 1
    labels[20:42, 8:20] = 2
    labels[26:42, 26:44] = 3
    Image.fromarray(labels, "L").save(tmp_path / "parts.png")
    Image.fromarray(PALETTE[labels], "RGB").save(tmp_path / "image.png")
    return pl.DataFrame({"image_id": ["i0"], "image_uri": [str(tmp_path / "image.png")],
                         "parts_uri": [str(tmp_path / "parts.png")], "species": ["tiger"], "entity": ["t_left"],
                         "side": ["left"]}), labels


def _labels_from_colours(image: torch.Tensor) -> torch.Tensor:
    pixels = (image.permute(1, 2, 0) * 0.5 + 0.5) * 255  # undo mean = std = 0.5
    return ((pixels[..., None, :] - torch.tensor(PALETTE).float()) ** 2).sum(-1).argmin(-1)


def test_the_part_mask_rotates_with_the_image_and_goes_to_the_mask_size(tmp_path):
    rows, labels = _labelled_image(tmp_path)
    config = tiny(**{"input.size": 48, "input.rotation": 45.0, "parts.mask_size": 48})
    dataset = ManifestDataset(rows, method().train_transform(config), masks=method().mask_columns)
    torch.manual_seed(0)
    turned = 0
    for _ in range(6):
        item = dataset[0]
        parts = item["parts"]
        assert parts.shape == (48, 48) and set(parts.unique().tolist()) <= {0, 1, 2, 3}  # nearest
        animal = parts > 0
        agreement = (_labels_from_colours(item["image"]) == parts)[animal].float().mean().item()
        assert agreement > 0.9, agreement  # the same angle for both (only boundary pixels differ)
        turned += not torch.equal(parts, torch.from_numpy(labels).long())
    assert turned >= 5  # the images did turn
    small = method().train_transform(tiny(**{"input.size": 48, "parts.mask_size": 12}))
    image, masks = small(Image.open(tmp_path / "image.png"), {"parts": tv_tensors.Mask(torch.from_numpy(labels))})
    assert image.shape == (3, 48, 48) and masks["parts"].shape == (12, 12)
    assert set(masks["parts"].unique().tolist()) <= {0, 1, 2, 3}


def test_flipped_copies_are_new_identities_with_the_mask_mirrored_and_the_side_swapped(tmp_path):
    rows, _ = _labelled_image(tmp_path)
    config = tiny(**{"input.size": 48, "input.rotation": 0.0, "parts.mask_size": 48, "input.flipped_copies": True})
    view = method().training_view(rows, config)
    assert view["entity"].to_list() == ["t_left", "t_left~flipped"] and view["side"].to_list() == ["left", "right"]
    dataset = ManifestDataset(view, method().train_transform(config), masks=method().mask_columns)
    original, flipped = dataset[0], dataset[1]
    assert int(original["label"]) != int(flipped["label"])
    assert (int(original["side"]), int(flipped["side"])) == (0, 1)  # the flipped orientation
    assert torch.equal(flipped["parts"], original["parts"].flip(-1))
    assert torch.allclose(flipped["image"], original["image"].flip(-1), atol=1e-5)
    assert method().training_view(rows, tiny()).height == 1  # the cpu preset keeps them off


# -- training ------------------------------------------------------------------------------------------


def test_one_step_gives_the_weighted_named_losses_and_a_gradient_on_every_parameter():
    config = tiny(**{"losses.lambda_seg": 0.7, "losses.alpha": 0.3, "losses.orientation_weight": 2.0})
    network = method().build(config, num_classes=4)
    stage, model, _ = started_stage(config, network)
    loss, parts = stage.step(model, parts_batch(), 0)
    assert model.calls == 1  # the forward goes through the wrapper
    assert set(parts) == {"loss_id", "loss_triplet", "loss_seg", "loss_seg_dice", "loss_seg_cross", "loss_orientation"}
    assert all(v.shape == () and math.isfinite(v) and v > 0 for v in parts.values())
    expected = 0.7 * parts["loss_seg"] + 0.3 * parts["loss_triplet"] + 2.0 * parts["loss_orientation"] + parts["loss_id"]
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    assert float(parts["loss_seg"]) == pytest.approx(0.5 * float(parts["loss_seg_dice"] + parts["loss_seg_cross"]),
                                                     rel=1e-5)
    loss.backward()
    trained = [(n, p) for n, p in network.named_parameters() if p.requires_grad]
    missing = [n for n, p in trained if p.grad is None or not torch.isfinite(p.grad).all()
               or not p.grad.abs().sum() > 0]
    assert not missing
    assert {n for n, p in network.named_parameters() if not p.requires_grad} == {"neck.bn.bias"}


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    config = tiny(**{"optim.lr": 2e-3})
    network = method().build(config, num_classes=4)
    stage, model, optimizer = started_stage(config, network)
    batch = parts_batch()
    losses, parts = [], []
    for _ in range(8):
        optimizer.zero_grad()
        loss, named = stage.step(model, batch, 0)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        parts.append(named)
    assert losses[-1] < 0.85 * losses[0], losses
    # random label maps leave the distillation little to learn; identities and sides fall fast
    for name in ("loss_id", "loss_orientation", "loss_seg"):
        assert parts[-1][name] < parts[0][name], name


def test_a_stage_that_has_not_started_says_so():
    config = tiny()
    (stage,) = method().stages(config, method().build(config, 4), [4])
    with pytest.raises(RuntimeError, match="on_start"):
        stage.step(method().build(config, 4), parts_batch(), 0)
    started, model, _ = started_stage(config, method().build(config, 4))
    with pytest.raises(KeyError, match="'parts'"):
        started.step(model, tiny_batch(), 0)


# -- the part attention figure -------------------------------------------------------------------------


def test_part_attention_maps_show_one_panel_per_token_over_test_images(tiny_synthetic):
    from reid_core.data import manifest

    rows = manifest.read(tiny_synthetic).filter(pl.col("split") == "test")
    config = tiny()
    network = method().build(config, 4)
    figures = method().figures(network, config, rows, "image_uri")
    assert set(figures) == {"part_attention"}
    figure = figures["part_attention"]
    assert token_names(rows, 4) == ["head", "body+tail", "front_legs", "hind_legs", "background"]
    assert token_names(rows, 2) == ["part 1", "part 2", "background"]
    panels = 1 + 5
    assert figure.size == (panels * TILE + (panels - 1) * GAP, TITLE + 3 * (TILE + CAPTION + GAP))
    assert network.training  # the figure leaves the mode as it was
    assert part_attention_maps(nn.Linear(2, 2), None, rows, "image_uri") is None


# -- part segmentation scores ---------------------------------------------------------------------------


class _FixedMasks(nn.Module):
    """Stands in for the network: ``part_masks`` gives one-hot masks of a fixed (K+1)-channel label map."""

    def __init__(self, predicted: torch.Tensor, channels: int) -> None:
        super().__init__()
        self.predicted, self.channels = predicted, channels

    def part_masks(self, images: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(self.predicted, self.channels).permute(2, 0, 1).float()
        return one_hot[None].expand(len(images), -1, -1, -1)


def test_part_miou_scores_the_atm_argmax_against_the_merged_part_maps_at_the_mask_size(tmp_path):
    # 8 x 8 vocabulary labels: head (1) top-left 4 x 4, tail (5) top-right 4 x 4, background below;
    # at K = 4 the tail merges into body+tail (channel 1) and the background is channel 4
    labels = np.zeros((8, 8), dtype=np.uint8)
    labels[:4, :4], labels[:4, 4:] = 1, 5
    Image.fromarray(labels, "L").save(tmp_path / "parts.png")
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "image.png")  # twice the maps' size
    rows = pl.DataFrame({"image_id": ["a", "b"], "image_uri": [str(tmp_path / "image.png")] * 2,
                         "parts_uri": [str(tmp_path / "parts.png"), None], "species": ["tiger"] * 2,
                         "entity": ["t1", "t2"], "side": ["left", "right"]})
    config = tiny(**{"parts.mask_size": 4, "input.size": 16})
    # predicted at 4 x 4: channel 0 (head) on the whole top half, background below: head IoU 4/8,
    # body+tail 0/4, background 8/8; front and hind legs absent from both -> left out
    predicted = torch.full((4, 4), 4)
    predicted[:2] = 0
    scores = method().evaluation_scores(_FixedMasks(predicted, 5), config, rows, "image_uri",
                                        method().eval_transform(config))
    assert scores["part_mIoU"] == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    assert scores["part_mIoU_n_images"] == 1  # the row without a part map is left out
    chance = (0.25 / 1.75 + 0.25 / 1.75 + 0.5 / 1.5) / 3  # frequencies 1/4, 1/4, 1/2
    assert scores["part_mIoU_chance"] == pytest.approx(chance)
    assert method().evaluation_scores(_FixedMasks(predicted, 5), config, rows.drop("parts_uri"), "image_uri",
                                      method().eval_transform(config)) == {}


def test_the_cpu_presets_put_the_vit_family_on_a_convolutional_stem_with_the_same_grid():
    """The cpu presets' ViTs see the 64 px image through timm's hybrid stem (conv, GroupNorm, max-pool,
    2 x 2 patches): the 8 x 8 grid the 8 px patches gave, so the part maps keep their resolution."""
    vit_method = get_method("vit")
    vit = vit_method.build(vit_method.config("cpu"), 3)
    paw = method().build(method().config("cpu"), 3)
    for backbone, depth in ((vit.backbone, 6), (paw.backbone, 4)):
        assert type(backbone.patch_embed).__name__ == "HybridEmbed" and len(backbone.blocks) == depth
        assert tuple(backbone.patch_embed.grid_size) == (8, 8)
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert vit.eval().embed(images).shape == (3, 192)
        assert paw.eval().part_masks(images).shape == (3, 5, 16, 16)
