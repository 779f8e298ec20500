"""MegaDetector v6 (Apache-2.0 RT-DETRv2 variant) built with transformers and loaded from a checkpoint
file the test writes in the published files' layout: the original code's parameter names and shapes
(tests/fixtures/mdv6_apa_rtdetr_c_keys.json, read off lyuwenyu/RT-DETR's own model), random values.
Nothing downloads."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from reid_core.detection import megadetector as md
from reid_core.detection import registry

KEYS = json.loads((Path(__file__).parent / "fixtures" / "mdv6_apa_rtdetr_c_keys.json").read_text())["keys"]
VARIANT = "MDV6-apa-rtdetr-c"


@pytest.fixture(scope="module")
def original_checkpoint(tmp_path_factory):
    """A training checkpoint as the original code saves it: the EMA weights under ``ema.module``."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in KEYS.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(7)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[name] = torch.randn(shape, generator=generator) * 0.05
    path = tmp_path_factory.mktemp("md") / "MDV6-rtdetr_s.pth"
    torch.save({"ema": {"module": state, "updates": 10}, "model": {"stale": torch.zeros(1)}, "last_epoch": 3}, path)
    return path, state


def test_every_original_weight_lands_in_the_transformers_model(original_checkpoint, single_torch_thread):
    path, state = original_checkpoint
    detector = registry.build_detector("megadetector", {"variant": VARIANT, "weights": str(path), "device": "cpu"})
    assert detector.version == f"{VARIANT}:MDV6-rtdetr_s.pth"
    loaded = detector.model.state_dict()
    # The stem, a bottleneck of the CCFM, a decoder head, and the attention's packed q/k/v split in three.
    stem = "model.backbone.model.embedder.embedder.0.convolution.weight"
    assert torch.equal(loaded[stem], state["backbone.conv1.conv1_1.conv.weight"])
    assert torch.equal(loaded["model.encoder.fpn_blocks.0.bottlenecks.2.conv1.conv.weight"],
                       state["encoder.fpn_blocks.0.bottlenecks.2.conv1.conv.weight"])
    assert torch.equal(loaded["class_embed.2.weight"], state["decoder.dec_score_head.2.weight"])
    packed = state["decoder.decoder.layers.1.self_attn.in_proj_weight"]
    for i, part in enumerate(("q_proj", "k_proj", "v_proj")):
        assert torch.equal(loaded[f"model.decoder.layers.1.self_attn.{part}.weight"], packed[256 * i:256 * (i + 1)])
    renamed = md.original_to_hf(state)  # nothing of the file is left over, nothing of the model missing
    model_keys = {k for k in loaded if not k.endswith("num_batches_tracked")}
    assert model_keys == {k for k in renamed if not k.endswith("num_batches_tracked")}

    photo = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    found = detector.detect(photo)
    assert found and all(d.category in md.CATEGORIES for d in found)
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True)
    boxes = np.array([d.box for d in found])  # in the photo's pixels (400 wide, 300 high), not the 640 input
    assert boxes[:, 2].max() <= 400 * 1.5 and boxes[:, 3].max() <= 300 * 1.5 and (boxes[:, 2] > boxes[:, 0]).all()


def test_a_checkpoint_of_another_variant_or_missing_fails_naming_itself(original_checkpoint, tmp_path):
    path, state = original_checkpoint
    with pytest.raises(RuntimeError, match=r"does not fit MDV6-apa-rtdetr-e"):
        md.build_model("MDV6-apa-rtdetr-e", str(path))
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if "dec_score_head" not in k}, partial)
    with pytest.raises(RuntimeError, match=r"partial.pth' does not fit MDV6-apa-rtdetr-c: missing"):
        md.build_model(VARIANT, str(partial))
    with pytest.raises(FileNotFoundError, match="pass a local path or s3:// URI"):
        md.build_model(VARIANT, str(tmp_path / "nowhere.pth"))
    with pytest.raises(ValueError, match="another variant"):
        md.read_checkpoint("MDV6-apa-rtdetr-e", VARIANT)


def test_postprocess_is_the_original_top_k_over_queries_and_classes():
    logits = torch.tensor([[-5.0, 2.0, -5.0], [0.0, -5.0, -5.0]])  # query 0: person, query 1: animal
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.25, 0.25, 0.5, 0.5]])
    found = md.postprocess(logits, boxes, width=200, height=100, top=2)
    assert [(c, round(s, 3)) for _, s, c in found] == [(1, 0.881), (0, 0.5)]
    assert found[0][0] == pytest.approx((80.0, 30.0, 120.0, 70.0)) and found[1][0] == pytest.approx((0, 0, 100, 50))
