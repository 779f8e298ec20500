"""CARE: its config and plan, VDTDG's prompt (the learnt-context text path against open_clip's own
encode_text), the two phases' steps, the prototype bank (computed once, kept across a resume), the
figure."""

from __future__ import annotations

import polars as pl
import pytest
import torch
from method_support import FakeDDP, tiny_batch

from reid_core.data import manifest
from reid_core.data.files import read_image
from reid_core.engine import checkpoint as ckpt
from reid_core.engine.loop import TrainJob, train
from reid_core.engine.session import LocalSession
from reid_core.lifecycle.restore import restore
from reid_core.methods.care import training as care_training
from reid_core.methods.care.prompts import CONTEXT_START, PromptLearner, tokenize_template
from reid_core.methods.care.prototypes import identity_means
from reid_core.methods.clip.backbone import ClipTextEncoder
from reid_core.methods.contract import StageContext
from reid_core.methods.registry import get_method
from reid_core.nn.weights import create_open_clip

pytestmark = pytest.mark.usefixtures("single_torch_thread")

SMALL = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
         "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
TINY = {"backbone.model_cfg": SMALL, "input.height": 32, "input.width": 32, "phase1.epochs": 2,
        "phase1.batch_size": 8, "batch.ids_per_batch": 4, "batch.images_per_id": 2}


def tiny(**overrides):
    return get_method("care").config("cpu", {**TINY, **overrides})


def train_rows(manifest_uri: str) -> pl.DataFrame:
    return manifest.read(manifest_uri).filter(pl.col("split") == "train")


def test_paper_defaults_plan_and_search_space():
    method = get_method("care")
    config = method.config("paper")
    assert (config.text.prompt_tokens, config.text.meta_hidden_ratio, config.losses.triplet_margin) == (4, 16, 0.7)
    assert (config.losses.id_weight, config.losses.triplet_weight, config.losses.i2p_weight) == (0.25, 1.0, 1.0)
    assert (config.phase1.batch_size, config.phase1.epochs, config.phase1.similarity) == (64, 120, "dot")
    prompt, finetune = method.plan(config)
    assert (prompt.name, prompt.tuned, prompt.batches.kind, prompt.batch_keys) == (
        "prompt", False, "random", ("phase1.batch_size",))
    assert (finetune.name, finetune.tuned, finetune.epochs, finetune.batches.size) == ("finetune", True, 55, 32)
    assert method.epochs_key == "schedule.epochs"  # --epochs and the tuner's budget are phase 2's
    space = {p.key: p for p in method.search_space}
    assert space["text.prompt_tokens"].choices == (2, 4, 8, 16)
    assert (space["losses.triplet_margin"].low, space["losses.triplet_margin"].high) == (0.1, 0.9)
    assert {"optim.lr", "losses.i2p_weight", "losses.id_weight"} <= set(space)


def test_the_prompt_template_puts_the_context_after_a_photo_of_a():
    tokens = tokenize_template(4, "sea star", 24)
    x = 343  # "x</w>" in CLIP's vocabulary
    assert tokens[0, :CONTEXT_START].tolist() == [49406, 320, 1125, 539, 320]  # [SOS] a photo of a
    assert tokens[0, CONTEXT_START:CONTEXT_START + 4].tolist() == [x] * 4
    assert int(tokens.argmax()) == 12  # sea star . [EOT]: the feature is read at the EOT
    with pytest.raises(ValueError, match="lower text.prompt_tokens"):
        tokenize_template(16, "tiger", 16)


def test_learnt_context_equal_to_real_words_gives_open_clips_text_feature():
    torch.manual_seed(0)
    clip = create_open_clip("unused", None, model_cfg=SMALL).eval()
    text = ClipTextEncoder(clip)
    words = ["big", "old", "striped", "male"]
    import open_clip

    ids = [open_clip.tokenize([w], context_length=24)[0, 1].item() for w in words]
    assert all(open_clip.tokenize([w], context_length=24)[0, 2].item() == 49407 for w in words)  # one token each
    prompt = PromptLearner(3, 4, text.width, 32, text.context_length)
    prompt.set_template(tokenize_template(4, "tiger", text.context_length))
    with torch.no_grad():
        prompt.context[2] = text.token_embedding.weight[ids]
        prompt.meta_net[2].weight.zero_()  # no image-conditioned shift
        prompt.meta_net[2].bias.zero_()
    embeddings, tokens = prompt(torch.tensor([2]), torch.randn(1, 32), text.token_embedding)
    direct = clip.encode_text(open_clip.tokenize(["A photo of a big old striped male tiger."], context_length=24))
    assert torch.allclose(text(embeddings, tokens), direct, atol=1e-5)
    # the shift moves every context token by the same vector
    with torch.no_grad():
        prompt.meta_net[2].bias.fill_(0.5)
    shifted, _ = prompt(torch.tensor([2]), torch.randn(1, 32), text.token_embedding)
    delta = shifted - embeddings
    assert torch.allclose(delta[0, CONTEXT_START:CONTEXT_START + 4], torch.full((4, text.width), 0.5), atol=1e-6)
    assert delta[0, :CONTEXT_START].abs().max() == 0 and delta[0, CONTEXT_START + 4:].abs().max() == 0


def test_phase_one_learns_the_prompt_on_cached_frozen_features(tiny_synthetic):
    method = get_method("care")
    config = tiny(**{"phase1.lr": 1e-2})
    rows = train_rows(tiny_synthetic)
    torch.manual_seed(0)
    network = method.build(config, num_classes=rows["entity"].n_unique())
    prompt, _ = method.stages(config, network, [2, 2])
    context = StageContext(rows=rows, device=torch.device("cpu"), num_classes=network.prototypes.shape[0])
    prompt.trainable(network)
    assert {n.split(".")[0] for n, p in network.named_parameters() if p.requires_grad} == {"prompt"}
    prompt.on_start(network, context)
    assert network.prompt.has_template
    dataset = prompt.dataset(context)
    assert len(dataset) == rows.height and prompt.dataset(context).features is dataset.features  # computed once
    network.eval()
    first = method.eval_transform(config)(read_image(rows["image_uri"][0]))
    with torch.no_grad():
        assert torch.allclose(dataset[0]["feature"], network.image.encoder(first[None])["proj"][0], atol=1e-5)
    model = FakeDDP(network)
    optimizer = prompt.optimizer(model)
    batch = {key: torch.stack([dataset[i][key] for i in range(8)]) if key != "index" else list(range(8))
             for key in ("feature", "label", "index")}
    before = network.image.encoder.visual.proj.detach().clone()
    losses = []
    for _ in range(15):
        loss, parts = prompt.step(model, batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(parts) == {"loss_i2t", "loss_t2i"} and losses[-1] < losses[0]
    assert torch.equal(before, network.image.encoder.visual.proj)  # the image encoder stays frozen


def test_phase_two_fills_the_prototypes_once_and_adds_the_prototype_loss(tiny_synthetic, monkeypatch):
    method = get_method("care")
    config = tiny()
    rows = train_rows(tiny_synthetic)
    torch.manual_seed(0)
    network = method.build(config, num_classes=rows["entity"].n_unique())
    _, finetune = method.stages(config, network, [2, 2])
    context = StageContext(rows=rows, device=torch.device("cpu"), num_classes=network.prototypes.shape[0])
    finetune.trainable(network)
    trained = {n.split(".")[0] for n, p in network.named_parameters() if p.requires_grad}
    assert trained == {"image"} and not network.image.neck_proj.bn.bias.requires_grad
    assert not bool(network.prototypes_ready)
    finetune.on_start(network, context)
    assert bool(network.prototypes_ready)
    # Algorithm 2 by hand: each training image's text feature, averaged per identity
    features, labels = care_training.FrozenFeatures().get(care_training.frozen_image_features(network), network,
                                                          context, method.eval_transform(config))
    network.eval()
    with torch.no_grad():
        expected = identity_means(network.describe(features, labels), labels, network.prototypes.shape[0])
    assert torch.allclose(network.prototypes, expected, atol=1e-5)

    monkeypatch.setattr(care_training, "fill_prototypes", lambda *a: pytest.fail("prototypes recomputed"))
    finetune.on_start(network, context)  # present: kept as they are

    network.train()
    model = FakeDDP(network)
    optimizer = finetune.optimizer(model)
    batch = tiny_batch(classes=4, per_class=2, size=32)
    loss, parts = finetune.step(model, batch, 0)
    assert set(parts) == {"loss_id", "loss_triplet", "loss_i2p"}
    losses = config.losses
    total = losses.id_weight * parts["loss_id"] + losses.triplet_weight * parts["loss_triplet"] + parts["loss_i2p"]
    assert loss.item() == pytest.approx(float(total), rel=1e-5)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert network.prompt.context.grad is None  # the text side is frozen in phase 2


def test_the_prototypes_survive_a_resume_and_are_not_recomputed(tiny_synthetic, tmp_path, monkeypatch):
    def job(epochs: int) -> TrainJob:
        return TrainJob(manifest=tiny_synthetic, species="tiger", method="care", preset="cpu", use_masked=False,
                        overrides={**TINY, "schedule.epochs": epochs})

    first = train(job(1), LocalSession(tmp_path / "run"))
    assert [h["stage"] for h in first.history] == [0, 0, 1] and "val.mAP" in first.history[-1]
    assert "tuned_epoch" not in first.history[0] and first.history[-1]["tuned_epoch"] == 1
    # phase 1 leaves the image encoder frozen: its reports carry the validation scores of the phase's start
    assert first.history[0]["val.mAP"] == first.history[1]["val.mAP"]
    saved = ckpt.load_state(LocalSession(tmp_path / "run").store.latest())
    assert bool(saved["model"]["prototypes_ready"]) and saved["model"]["prototypes"].abs().sum() > 0

    monkeypatch.setattr(care_training, "fill_prototypes", lambda *a: pytest.fail("prototypes recomputed"))
    session = LocalSession(tmp_path / "run")
    resumed = train(job(2), session)
    assert [h["stage"] for h in resumed.history] == [0, 0, 1, 1]
    restored = restore(session.store.latest())
    assert torch.equal(restored.model.prototypes, saved["model"]["prototypes"])  # static: phase 2 leaves them

    figures = restored.method.figures(restored.model, restored.config,
                                      manifest.read(tiny_synthetic).filter(pl.col("split") == "test"), "image_uri")
    assert figures["care_prototypes"].size == (700, 600)


def test_the_species_word_comes_from_the_rows_unless_set():
    rows = pl.DataFrame({"species": ["yak", "yak"]})
    assert care_training.prompt_species(tiny(), rows) == "yak"
    assert care_training.prompt_species(tiny(**{"text.species": "bovine"}), rows) == "bovine"
    with pytest.raises(ValueError, match="set text.species"):
        care_training.prompt_species(tiny(), pl.DataFrame({"species": ["yak", "tiger"]}))
