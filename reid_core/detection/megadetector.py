"""MegaDetector v6, its Apache-2.0 variants (MDV6-apa-rtdetr-c / -e): RT-DETRv2 networks, built with
transformers' ``RTDetrV2ForObjectDetection`` (Apache-2.0) and loaded from the published checkpoints.

Why this route: the MIT (YOLOv9) and Apache (RT-DETR) variants are the only MegaDetector v6 weights
under permissive licences; PytorchWildlife (which ships the Apache variant's original code) depends on
ultralytics (AGPL) and downloads on first use, so it cannot be a default dependency. transformers has
RT-DETRv2 itself; the published files hold the original (lyuwenyu/RT-DETR ``rtdetrv2_pytorch``)
state_dict, whose names ``original_to_hf`` maps onto transformers' (``in_proj`` split into q/k/v).
Variants, as PytorchWildlife's configs build them (3 classes: animal, person, vehicle; 640 x 640 input,
pixels scaled to [0, 1], no mean/std):

    MDV6-apa-rtdetr-c   ResNet-18-vd,  hybrid encoder 256 wide (expansion 0.5), 3 decoder layers   ~20 M
    MDV6-apa-rtdetr-e   ResNet-101-vd, hybrid encoder 384 wide (FFN 2048),      6 decoder layers   ~76 M

``weights``: the variant's published name (downloaded from its Zenodo record where reachable, cached by
torch.hub), a local path or s3:// URI of a checkpoint (original layout, ``{"ema": {"module": ...}}``,
``{"model": ...}`` or bare; or transformers' own names), or ``random`` (untrained: tests, benchmarks).
Files are read with ``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from typing import Literal

import numpy as np

from reid_core.detection.base import Detection, DetectorOptions, DetectorSpec

CATEGORIES = ("animal", "person", "vehicle")
IMAGE_SIZE = 640
RANDOM = "random"
# The published files (PytorchWildlife's MegaDetectorV6Apache): variant -> (URL, file name).
PUBLISHED = {
    "MDV6-apa-rtdetr-c": ("https://zenodo.org/records/15178680/files/MDV6-rtdetr_s.pth?download=1", "MDV6-rtdetr_s.pth"),
    "MDV6-apa-rtdetr-e": ("https://zenodo.org/records/15178680/files/MDV6-rtdetr_x.pth?download=1", "MDV6-rtdetr_x.pth"),
}
Variant = Literal["MDV6-apa-rtdetr-c", "MDV6-apa-rtdetr-e"]


def config(variant: str):
    """transformers' RT-DETRv2 config of a MegaDetector v6 Apache variant."""
    from transformers import RTDetrV2Config

    if variant not in PUBLISHED:
        raise ValueError(f"unknown MegaDetector variant {variant!r}; choose one of {', '.join(PUBLISHED)}")
    cfg = RTDetrV2Config(num_labels=len(CATEGORIES), id2label=dict(enumerate(CATEGORIES)),
                         label2id={c: i for i, c in enumerate(CATEGORIES)}, anchor_image_size=[IMAGE_SIZE, IMAGE_SIZE])
    if variant == "MDV6-apa-rtdetr-c":
        cfg.backbone_config.hidden_sizes, cfg.backbone_config.depths = [64, 128, 256, 512], [2, 2, 2, 2]
        cfg.backbone_config.layer_type = "basic"
        cfg.encoder_in_channels, cfg.hidden_expansion, cfg.decoder_layers = [128, 256, 512], 0.5, 3
    else:
        cfg.backbone_config.depths = [3, 4, 23, 3]
        cfg.encoder_hidden_dim, cfg.encoder_ffn_dim, cfg.decoder_in_channels = 384, 2048, [384, 384, 384]
    return cfg


# --------------------------------------------------------------------------------------------------
# The original names -> transformers' names


_RENAMES: list[tuple[str, str]] = [
    # backbone (PResNet-vd): stem, shortcuts (with or without the average pool), branches
    (r"^backbone\.conv1\.conv1_(\d)\.conv\.", lambda m: f"model.backbone.model.embedder.embedder.{int(m[1]) - 1}.convolution."),
    (r"^backbone\.conv1\.conv1_(\d)\.norm\.", lambda m: f"model.backbone.model.embedder.embedder.{int(m[1]) - 1}.normalization."),
    (r"^backbone\.res_layers\.(\d+)\.blocks\.(\d+)\.", r"model.backbone.model.encoder.stages.\1.layers.\2."),
    (r"\.short\.conv\.conv\.", ".shortcut.1.convolution."),
    (r"\.short\.conv\.norm\.", ".shortcut.1.normalization."),
    (r"\.short\.conv\.", ".shortcut.convolution."),
    (r"\.short\.norm\.", ".shortcut.normalization."),
    (r"\.branch2a\.conv\.", ".layer.0.convolution."), (r"\.branch2a\.norm\.", ".layer.0.normalization."),
    (r"\.branch2b\.conv\.", ".layer.1.convolution."), (r"\.branch2b\.norm\.", ".layer.1.normalization."),
    (r"\.branch2c\.conv\.", ".layer.2.convolution."), (r"\.branch2c\.norm\.", ".layer.2.normalization."),
    # hybrid encoder: the transformer layer (AIFI), projections, the CCFM blocks
    (r"^encoder\.encoder\.(\d+)\.layers\.(\d+)\.", r"model.encoder.aifi.\1.layers.\2."),
    (r"^encoder\.input_proj\.(\d+)\.conv\.", r"model.encoder_input_proj.\1.0."),
    (r"^encoder\.input_proj\.(\d+)\.norm\.", r"model.encoder_input_proj.\1.1."),
    (r"^encoder\.(lateral_convs|fpn_blocks|downsample_convs|pan_blocks)\.", r"model.encoder.\1."),
    # decoder
    (r"^decoder\.decoder\.layers\.(\d+)\.", r"model.decoder.layers.\1."),
    (r"\.cross_attn\.num_points_scale$", ".encoder_attn.n_points_scale"),
    (r"\.cross_attn\.", ".encoder_attn."),
    (r"^decoder\.dec_score_head\.", "model.decoder.class_embed."),
    (r"^decoder\.dec_bbox_head\.", "model.decoder.bbox_embed."),
    (r"^decoder\.input_proj\.(\d+)\.conv\.", r"model.decoder_input_proj.\1.0."),
    (r"^decoder\.input_proj\.(\d+)\.norm\.", r"model.decoder_input_proj.\1.1."),
    (r"^decoder\.enc_output\.proj\.", "model.enc_output.0."),
    (r"^decoder\.enc_output\.norm\.", "model.enc_output.1."),
    (r"^decoder\.(denoising_class_embed|enc_score_head|enc_bbox_head)\.", r"model.\1."),
    (r"^decoder\.query_pos_head\.", "model.decoder.query_pos_head."),
    # inside transformer layers (encoder and decoder alike)
    (r"\.self_attn\.out_proj\.", ".self_attn.o_proj."),
    (r"\.linear1\.", ".mlp.fc1."), (r"\.linear2\.", ".mlp.fc2."),
    (r"(aifi\.\d+\.layers\.\d+)\.norm1\.", r"\1.self_attn_layer_norm."),
    (r"(aifi\.\d+\.layers\.\d+)\.norm2\.", r"\1.final_layer_norm."),
    (r"(decoder\.layers\.\d+)\.norm1\.", r"\1.self_attn_layer_norm."),
    (r"(decoder\.layers\.\d+)\.norm2\.", r"\1.encoder_attn_layer_norm."),
    (r"(decoder\.layers\.\d+)\.norm3\.", r"\1.final_layer_norm."),
]
# Buffers the original computes at build time (anchors for its fixed input size); transformers does too.
_DERIVED = re.compile(r"(num_batches_tracked$)|(^decoder\.(anchors|valid_mask)$)")


def is_original(state: Mapping) -> bool:
    return any(k.startswith(("backbone.res_layers.", "decoder.dec_score_head.")) for k in state)


def original_to_hf(state: Mapping) -> dict:
    """An original RT-DETRv2 state_dict renamed to transformers' ``RTDetrV2ForObjectDetection``."""
    out = {}
    for key, value in state.items():
        if _DERIVED.search(key):
            continue
        name = key
        for pattern, replacement in _RENAMES:
            name = re.sub(pattern, replacement, name)
        if name.endswith("self_attn.in_proj_weight") or name.endswith("self_attn.in_proj_bias"):
            base, kind = name.rsplit(".in_proj_", 1)
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0), strict=True):
                out[f"{base}.{part}.{kind}"] = chunk.clone()
            continue
        out[name] = value
        if name.startswith(("model.decoder.class_embed.", "model.decoder.bbox_embed.")):
            out[name.removeprefix("model.decoder.")] = value  # the heads the top model shares with the decoder
    return out


# --------------------------------------------------------------------------------------------------
# Reading checkpoints


def unwrap(obj) -> Mapping:
    """The weights inside a training checkpoint: the EMA copy first (what PytorchWildlife loads)."""
    if isinstance(obj, Mapping):
        ema = obj.get("ema")
        if isinstance(ema, Mapping) and isinstance(ema.get("module"), Mapping):
            return ema["module"]
        for key in ("model", "state_dict"):
            if isinstance(obj.get(key), Mapping):
                return obj[key]
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError("the checkpoint holds no state_dict (a mapping of parameter names to tensors)")
    return obj


def read_checkpoint(weights: str, variant: str) -> Mapping:
    """The state_dict of ``weights``: a published variant name (downloaded where reachable), or a local
    path / s3:// URI."""
    import torch

    from reid_core.data import files as rio

    if weights in PUBLISHED:
        if weights != variant:
            raise ValueError(f"weights {weights!r} are another variant than variant={variant!r}: pass both alike")
        url, file_name = PUBLISHED[weights]
        try:
            obj = torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True, file_name=file_name)
        except Exception as error:  # no network, a proxy, a changed record: one way out
            raise RuntimeError(f"could not download {weights} ({type(error).__name__}: {error}); where Zenodo is "
                               f"unreachable, copy {file_name} to a local path or s3:// and pass --set weights=URI") \
                from error
        return unwrap(obj)
    if not rio.exists(weights):
        raise FileNotFoundError(f"MegaDetector weights {weights!r} do not exist; pass a local path or s3:// URI of the "
                                f"checkpoint, a published name ({', '.join(PUBLISHED)}) or {RANDOM!r}")
    if weights.endswith(".safetensors"):
        from safetensors.torch import load as load_safetensors

        return unwrap(load_safetensors(rio.read_bytes(weights)))
    return unwrap(torch.load(io.BytesIO(rio.read_bytes(weights)), map_location="cpu", weights_only=True))


def build_model(variant: str, weights: str):
    """The network with ``weights`` loaded strictly (every parameter; a wrong file fails, naming itself)."""
    from transformers import RTDetrV2ForObjectDetection

    model = RTDetrV2ForObjectDetection(config(variant))
    if weights != RANDOM:
        state = read_checkpoint(weights, variant)
        state = original_to_hf(state) if is_original(state) else dict(state)
        own = model.state_dict()
        shapes = [f"{k} {tuple(v.shape)} (the model's {tuple(own[k].shape)})" for k, v in state.items()
                  if k in own and tuple(v.shape) != tuple(own[k].shape)]
        missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
        unexpected = [k for k in state if k not in own]
        problems = [f"{what} {found[:3]} ({len(found)})" for what, found in
                    (("other shapes", shapes), ("missing", missing), ("unexpected", unexpected)) if found]
        if problems:
            raise RuntimeError(f"checkpoint {weights!r} does not fit {variant}: {', '.join(problems)}; pass the "
                               f"checkpoint of that variant (or --set variant=... for this one)")
        model.load_state_dict(state, strict=False)
    return model.eval()


# --------------------------------------------------------------------------------------------------
# The detector


def postprocess(logits, boxes, width: int, height: int, top: int = 300) -> list[tuple[tuple, float, int]]:
    """The original post-processor (focal-loss scores): the top ``top`` (query, class) pairs by sigmoid
    score, boxes from centre/size in [0, 1] to pixel corners of the photo. -> [(box, score, class)]."""
    import torch

    scores = logits.sigmoid().flatten()
    values, index = torch.topk(scores, min(top, scores.numel()))
    classes = index % logits.shape[-1]
    cx, cy, w, h = boxes[index // logits.shape[-1]].unbind(-1)
    corners = torch.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], -1)
    return [(tuple(float(v) for v in box), float(s), int(c))
            for box, s, c in zip(corners.tolist(), values.tolist(), classes.tolist(), strict=True)]


class MegaDetector:
    name = "megadetector"

    def __init__(self, variant: str = "MDV6-apa-rtdetr-e", weights: str | None = None, device: str = "auto",
                 min_score: float = 0.05, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        weights = weights or variant
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   "cpu" if device == "auto" else device)
        self.model = build_model(variant, weights).to(self.device)
        self.min_score = min_score  # the stage applies its own threshold; this only trims the 300 queries
        self.version = f"{variant}:{RANDOM if weights == RANDOM else os.path.basename(weights.split('?')[0])}"

    def detect(self, image: np.ndarray, row: dict | None = None) -> list[Detection]:
        import torch
        from PIL import Image

        height, width = image.shape[:2]
        resized = Image.fromarray(image).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
        pixels = torch.from_numpy(np.asarray(resized, np.float32) / 255.0).permute(2, 0, 1)[None].to(self.device)
        with torch.inference_mode():
            out = self.model(pixel_values=pixels)
        found = postprocess(out.logits[0].float().cpu(), out.pred_boxes[0].float().cpu(), width, height)
        return [Detection(box, score, CATEGORIES[c]) for box, score, c in found if score >= self.min_score]


class MegaDetectorOptions(DetectorOptions):
    variant: Variant = "MDV6-apa-rtdetr-e"  # the Apache-2.0 variants; -e is the most accurate MegaDetector v6
    weights: str | None = None  # None: the variant's published file; a local path / s3:// URI; "random"
    device: str = "auto"  # auto / cpu / cuda
    min_score: float = 0.05
    threads: int | None = None  # torch's intra-op threads on CPU (None: torch's default)


MEGADETECTOR = DetectorSpec(MegaDetectorOptions, lambda o: MegaDetector(o.variant, o.weights, o.device, o.min_score,
                                                                         o.threads))
