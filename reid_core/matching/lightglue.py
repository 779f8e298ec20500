"""LightGlue (kornia) on DISK or ALIKED features. Score: the number of matches LightGlue is confident of
(> ``confidence``, 0.5 as WildFusion counts them), or their summed confidence (``score="sum"``).

Weights: ``extractor_weights`` and ``lightglue_weights`` are each None (the released weights from the hub,
downloaded by kornia where reachable), a hub name (DISK: ``depth`` / ``epipolar``; ALIKED: its model name)
or a checkpoint file, local or s3://, holding a state_dict (loaded strictly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from kornia.feature import ALIKED, DISK, LightGlue

from reid_core.matching import weights as w
from reid_core.matching.features import LocalFeatures, PairMatch
from reid_core.matching.images import is_blank, prepare

SCORES = ("count", "sum")
EXTRACTORS = ("disk", "aliked")
DESCRIPTOR_DIM = {"disk": 128, "aliked": 128}
MULTIPLE = {"disk": 16, "aliked": 32}  # input sides the networks' strides need


@dataclass(frozen=True)
class LightGlueOptions:
    extractor_weights: str | None = None
    lightglue_weights: str | None = None
    aliked_model: str = "aliked-n16"  # ALIKED's architecture (and its hub name)
    max_keypoints: int = 1024
    min_side: int = 256
    max_side: int = 640
    confidence: float = 0.5
    score: str = "count"
    filter_threshold: float = 0.1  # LightGlue's own cut for returning a match at all

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")


def build_extractor(kind: str, o: LightGlueOptions, device: str) -> torch.nn.Module:
    if kind == "disk":
        if w.is_checkpoint(o.extractor_weights):
            model = w.load_extractor(DISK, o.extractor_weights, "DISK", wrapper="extractor")
        else:
            model = w.from_hub(lambda: DISK.from_pretrained(o.extractor_weights or "depth"), "DISK")
    else:
        if w.is_checkpoint(o.extractor_weights):
            model = w.load_extractor(lambda: ALIKED(o.aliked_model, max_num_keypoints=o.max_keypoints),
                                     o.extractor_weights, f"ALIKED {o.aliked_model}")
        else:
            name = o.extractor_weights or o.aliked_model
            model = w.from_hub(lambda: ALIKED.from_pretrained(name, max_num_keypoints=o.max_keypoints), "ALIKED")
    return model.to(device).eval()


def build_lightglue(kind: str, o: LightGlueOptions, device: str) -> LightGlue:
    if w.is_checkpoint(o.lightglue_weights):
        # features=None: kornia downloads nothing; the architecture is the one the released weights have
        conf = {k: v for k, v in LightGlue.features[kind].items() if k != "weights"}
        model = LightGlue(None, **conf, filter_threshold=o.filter_threshold)
        model = w.load_lightglue(model, o.lightglue_weights, f"LightGlue for {kind}")
    elif o.lightglue_weights:
        raise ValueError(f"lightglue_weights={o.lightglue_weights!r} is neither a checkpoint file (local or s3://) "
                         f"nor empty (the released {kind} weights from the hub)")
    else:
        model = w.from_hub(lambda: LightGlue(kind, filter_threshold=o.filter_threshold), f"LightGlue for {kind}")
    return model.to(device).eval()


class LightGlueMatcher:
    def __init__(self, extractor: str, options: dict | None = None, device: str = "cpu") -> None:
        if extractor not in EXTRACTORS:
            raise ValueError(f"extractor must be one of {', '.join(EXTRACTORS)}, got {extractor!r}")
        self.kind, self.device = extractor, device
        self.name = f"lightglue-{extractor}"
        self.options = LightGlueOptions(**(options or {}))
        self.extractor = build_extractor(extractor, self.options, device)
        self.lightglue = build_lightglue(extractor, self.options, device)

    def extract(self, image: np.ndarray) -> LocalFeatures:
        o = self.options
        size = np.array(image.shape[1::-1], np.float32)  # (W, H) of the input: LightGlue normalises by it
        if is_blank(image):  # a blank mask: nothing to find (a random network would still "detect")
            return LocalFeatures.empty(DESCRIPTOR_DIM[self.kind], {"image_size": size})
        prepared = prepare(image, min_side=o.min_side, max_side=o.max_side, gray=False, device=self.device,
                           multiple=MULTIPLE[self.kind])
        with torch.inference_mode():
            if self.kind == "disk":
                found = self.extractor(prepared.tensor, n=o.max_keypoints, pad_if_not_divisible=True)[0]
            else:
                found = self.extractor(prepared.tensor)[0]
        keypoints = prepared.to_input(found.keypoints)
        return LocalFeatures(keypoints.cpu().numpy().astype(np.float32),
                             found.descriptors.float().cpu().numpy(), {"image_size": size})

    def _side(self, f: LocalFeatures) -> dict:
        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.asarray(array, np.float32)).to(self.device)[None]

        return {"keypoints": tensor(f.keypoints), "descriptors": tensor(f.descriptors),
                "image_size": tensor(f.extra["image_size"])}

    def match(self, a: LocalFeatures, b: LocalFeatures) -> PairMatch:
        if len(a) == 0 or len(b) == 0:
            return PairMatch.none()
        with torch.inference_mode():
            out = self.lightglue({"image0": self._side(a), "image1": self._side(b)})
        pairs, confidence = out["matches"][0].cpu().numpy(), out["scores"][0].float().cpu().numpy()
        confident = confidence > self.options.confidence
        score = float(confident.sum()) if self.options.score == "count" else float(confidence.sum())
        pairs = pairs[confident]
        return PairMatch(score, a.keypoints[pairs[:, 0]], b.keypoints[pairs[:, 1]])
