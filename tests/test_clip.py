"""The CLIP family's backbone and baselines: open_clip's towers as the methods run them (checked against
``encode_image`` / ``encode_text``), the positional grid resized to a non-square input, weights from a
checkpoint file, CLIP-FT's stage and schedule, and CLIP-ZS through the engine (nothing to train)."""

from __future__ import annotations

import pytest
import torch
from method_support import FakeDDP, tiny_batch

from reid_core.engine.loop import TrainJob, train
from reid_core.engine.session import LocalSession
from reid_core.lifecycle.restore import restore
from reid_core.methods.clip.backbone import (
    ClipImageEncoder,
    ClipTextEncoder,
    build_clip,
    resize_position_grid,
)
from reid_core.methods.clip.recipe import TINY_CLIP, lr_schedule
from reid_core.methods.clip.training import parameter_groups
from reid_core.methods.config import ConfigError
from reid_core.methods.registry import get_method
from reid_core.nn.schedules import cosine, warmup_multistep
from reid_core.nn.weights import create_open_clip
from reid_core.pipelines.compare import CompareRequest, method_overrides

pytestmark = pytest.mark.usefixtures("single_torch_thread")

# smaller than the cpu preset's CLIP, for speed
SMALL = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
         "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}


def small(name: str, **overrides):
    return get_method(name).config("cpu", {"backbone.model_cfg": SMALL, "input.height": 32, "input.width": 32,
                                           **overrides})


def test_paper_defaults_are_clip_reid_on_openai_vit_b16_with_the_papers_margin():
    config = get_method("clip_ft").config("paper")
    assert (config.backbone.name, config.backbone.pretrained, config.backbone.quick_gelu) == ("ViT-B-16", "openai", True)
    assert (config.input.height, config.input.width, config.backbone.pos_interpolation) == (256, 128, "bilinear")
    assert (config.losses.triplet_margin, config.losses.id_weight, config.losses.label_smoothing) == (0.7, 0.25, 0.1)
    assert (config.optim.lr, config.optim.bias_lr_factor, config.schedule.milestones) == (5e-6, 2.0, (30, 50))
    assert get_method("clip_ft").input_spec(config).mean == (0.5, 0.5, 0.5)
    with pytest.raises(ConfigError, match="quick_gelu"):
        get_method("clip_zs").config("paper", {"backbone.quick_gelu": False})


def test_image_and_text_towers_give_open_clips_own_features():
    torch.manual_seed(0)
    clip = create_open_clip("unused", None, model_cfg=SMALL, quick_gelu=True).eval()
    images = torch.randn(3, 3, 32, 32)
    out = ClipImageEncoder(clip.visual)(images)
    assert torch.allclose(out["proj"], clip.encode_image(images), atol=1e-5)
    assert out["cls"].shape == out["penultimate"].shape == (3, 64) and not torch.allclose(out["cls"], out["penultimate"])
    import open_clip

    tokens = open_clip.tokenize(["a photo of a striped tiger.", "a yak"], context_length=24)
    assert torch.allclose(ClipTextEncoder(clip).encode(tokens), clip.encode_text(tokens), atol=1e-5)


def test_the_positional_grid_is_resized_bilinearly_to_a_non_square_input():
    # A 2 x 2 grid to 2 x 1: each row's two columns average (bilinear, align_corners=False).
    grid = torch.tensor([[9.0], [1.0], [3.0], [5.0], [7.0]])  # [CLS], then rows (1, 3) and (5, 7)
    assert torch.equal(resize_position_grid(grid, (2, 2), (2, 1)), torch.tensor([[9.0], [2.0], [6.0]]))
    assert resize_position_grid(grid, (2, 2), (2, 2)) is grid
    config = small("clip_ft", **{"input.height": 32, "input.width": 16})
    clip = build_clip(config.backbone, 32, 16)
    assert clip.visual.positional_embedding.shape == (1 + 4 * 2, 64)
    assert ClipImageEncoder(clip.visual)(torch.randn(2, 3, 32, 16))["proj"].shape == (2, 32)
    with pytest.raises(ValueError, match="input.height / input.width"):
        build_clip(config.backbone, 30, 16)


def test_weights_load_from_a_checkpoint_file_and_bad_sources_name_the_fix(tmp_path):
    torch.manual_seed(1)
    source = create_open_clip("unused", None, model_cfg=SMALL)
    path = tmp_path / "clip.pt"
    # OpenAI's state_dicts carry three non-parameter entries, which are dropped
    torch.save({**source.state_dict(), "input_resolution": torch.tensor(32)}, path)
    loaded = create_open_clip("unused", str(path), model_cfg=SMALL)
    assert torch.equal(loaded.visual.proj, source.visual.proj)
    assert torch.equal(loaded.token_embedding.weight, source.token_embedding.weight)
    other = {**SMALL, "embed_dim": 16}
    with pytest.raises(RuntimeError, match="does not fit open_clip model"):
        create_open_clip("unused", str(path), model_cfg=other)
    with pytest.raises(ValueError, match="no hub weights"):
        create_open_clip("unused", "openai", model_cfg=SMALL)
    with pytest.raises(ValueError, match="not an open_clip architecture"):
        create_open_clip("ViT-Nope", None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_open_clip("unused", str(tmp_path / "missing.pt"), model_cfg=SMALL)


def test_the_authors_schedules_at_their_epochs():
    # WarmupMultiStepLR, stepped at the start of 1-based epochs: engine epoch 0 = the authors' epoch 1
    warmup_multistep_factor = warmup_multistep((30, 50), 0.1, warmup_epochs=10, warmup_start=0.1, first_index=1)
    assert warmup_multistep_factor(0) == pytest.approx(0.1 * 0.9 + 0.1)
    assert warmup_multistep_factor(9) == 1.0
    assert warmup_multistep_factor(29) == pytest.approx(0.1)
    assert warmup_multistep_factor(49) == pytest.approx(0.01)
    # timm's cosine (t_initial = epochs, no warm-up prefix) from t = 1
    def cosine_lr(min_lr):
        return cosine(cycle_epochs=10, min_factor=min_lr, warmup_epochs=5, warmup_start=0.0, first_index=1)

    assert cosine_lr(0.0)(0) == pytest.approx(0.2)
    assert cosine_lr(0.0)(4) == pytest.approx(0.5)
    assert cosine_lr(0.1)(9) == 0.1
    assert lr_schedule(get_method("clip_ft").config("paper"))(0) == pytest.approx(0.19)


def test_clip_ft_step_trains_the_image_branch_with_biases_at_twice_the_lr():
    method = get_method("clip_ft")
    config = small("clip_ft", **{"optim.lr": 1e-3})
    torch.manual_seed(0)
    network = method.build(config, num_classes=4)
    (stage,) = method.stages(config, network, [3])
    assert stage.plan.tuned and stage.plan.batches.size == 24
    stage.trainable(network)
    assert not network.neck_cls.bn.bias.requires_grad and network.encoder.visual.proj.requires_grad
    model = FakeDDP(network)
    optimizer = stage.optimizer(model)
    lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert lrs == {"weights": 1e-3, "biases": 2e-3}
    assert sum(len(g["params"]) for g in parameter_groups(model, config)) == \
        sum(p.requires_grad for p in network.parameters())
    batch = tiny_batch(classes=4, per_class=2, size=32)
    losses = []
    for _ in range(8):
        loss, parts = stage.step(model, batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(parts) == {"loss_id", "loss_triplet"} and model.calls == 8
    assert losses[-1] < losses[0]
    network.eval()
    embedded = method.embed(network, batch["image"][:2])
    assert embedded.shape == (2, 64 + 32) and torch.allclose(embedded.norm(dim=1), torch.ones(2), atol=1e-5)


def test_every_searched_value_makes_a_valid_config():
    for name in ("clip_ft", "care"):
        method = get_method(name)
        for param in method.search_space:
            for value in param.choices or (param.low, param.high):
                method.config("cpu", {param.key: value})


def test_clip_zs_is_scored_untrained_through_the_engine_and_rebuilt_offline(tiny_synthetic, tmp_path):
    job = TrainJob(manifest=tiny_synthetic, species="tiger", method="clip_zs", preset="cpu", use_masked=False)
    session = LocalSession(tmp_path / "run")
    progress = train(job, session)
    assert len(progress.history) == 1 and "val.mAP" in progress.history[0]
    assert progress.meta["best"]["epoch"] == 0
    again = train(job, LocalSession(tmp_path / "run"))  # a rerun finds the finished checkpoint
    assert again.history == progress.history
    restored = restore(session.store.latest())
    assert restored.config.backbone.pretrained is None  # offline: the checkpoint holds every weight
    assert restored.model.neck_cls is None
    # --epochs applies to methods that train; clip_zs has no epochs to set
    request = CompareRequest(manifest=tiny_synthetic, methods=["clip_zs", "clip_ft"], species=["tiger"], epochs=3)
    assert method_overrides("clip_zs", request) == {}
    assert method_overrides("clip_ft", request) == {"schedule.epochs": 3}


def test_the_cpu_preset_is_the_tiny_clip():
    config = get_method("clip_ft").config("cpu")
    assert config.backbone.model_cfg == TINY_CLIP and config.backbone.pretrained is None
    assert (config.input.height, config.input.width, config.input.flip_p) == (64, 64, 0.0)
