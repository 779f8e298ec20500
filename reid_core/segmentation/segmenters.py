"""AER's background removal as a Segmenter: SAM proposals + a foreground model + a fusion criterion +
a no-pass policy, with per-species presets. Registered as ``sam+isnet``, ``sam`` and ``isnet``.

Options are typed (``FusionOptions``) and can come from ``--set key=value`` (strings are coerced):
``sam_checkpoint``, ``model_type`` (vit_h / vit_l / vit_b / tiny), ``isnet_model`` (local path or s3://
URI each), ``device`` (auto / cpu / cuda), ``criterion``, ``theta``, ``sam_mode`` (automatic / prompted /
box: the detector's box of a ``reid detect`` crop as the prompt, automatic where a row has none),
``preset`` (tiger / elephant / yak, or ``species`` for the row's species), ``policy`` (fallback / keep /
flag), ``min_foreground_ratio``, ``max_width`` / ``max_height``, ``isnet_mean`` (aer / dis),
``isnet_post_process``, ``isnet_threads`` (onnxruntime), ``cache_dir`` (for s3:// model files), and
SamAutomaticMaskGenerator's parameters (``points_per_side``, ``pred_iou_thresh``,
``stability_score_thresh``, ``min_mask_region_area``, ...).

Results carry ``details``: criterion, theta, sam_mode, proposals (count), accepted (indices), inverted,
foreground_ratio, policy and scale (segmented height / original height).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import field_validator

from reid_core.segmentation import fusion
from reid_core.segmentation.base import SegmentationResult, SegmenterOptions, SegmenterSpec
from reid_core.segmentation.foreground import ForegroundModel
from reid_core.segmentation.resize import MAX_HEIGHT, MAX_WIDTH, downscale, resize_mask

if TYPE_CHECKING:  # torch and segment-anything load in the actors that build a SAM, not on the driver
    from reid_core.segmentation.sam import SamProposer

SAM_MODES = ("automatic", "prompted", "box")  # box: the detector's box where the row has one, else automatic


@dataclass(frozen=True)
class FusionRule:
    criterion: str
    theta: float | None = None  # None: the criterion's default
    sam_mode: str = "automatic"  # how SAM proposes; unused by foreground_only

    def __post_init__(self):
        if self.criterion not in fusion.CRITERIA:
            raise ValueError(f"unknown fusion criterion {self.criterion!r}; choose one of {', '.join(fusion.CRITERIA)}")
        if self.sam_mode not in SAM_MODES:
            raise ValueError(f"unknown sam_mode {self.sam_mode!r}; choose one of {', '.join(SAM_MODES)}")

    @property
    def needs_sam(self) -> bool:
        return self.criterion in fusion.NEEDS_PROPOSALS

    @property
    def needs_foreground(self) -> bool:
        return self.criterion in fusion.NEEDS_FOREGROUND


# AER's protocol per species, by split ("*": any other split). Yak: prompted SAM for the training
# images, the foreground model alone for the test set.
PRESETS: dict[str, dict[str, FusionRule]] = {
    "tiger": {"*": FusionRule("largest_iou", 0.3)},
    "elephant": {"*": FusionRule("coverage", 0.5)},
    "yak": {"test": FusionRule("foreground_only"), "*": FusionRule("sam_only", sam_mode="prompted")},
}
BY_SPECIES = "species"  # preset value: look the row's species up in PRESETS


def preset_rule(preset: str, split: str | None) -> FusionRule:
    if preset not in PRESETS:
        raise ValueError(f"unknown segmentation preset {preset!r}; choose one of {', '.join(PRESETS)} "
                         f"or {BY_SPECIES!r}")
    rules = PRESETS[preset]
    return rules.get(split or "*", rules["*"])


def possible_rules(rule: FusionRule, preset: str | None) -> list[FusionRule]:
    """Every rule a segmenter may apply, so missing models fail at construction, not per image."""
    if preset is None:
        return [rule]
    if preset == BY_SPECIES:
        return [rule, *(r for rules in PRESETS.values() for r in rules.values())]
    preset_rule(preset, None)  # validates the name
    return list(PRESETS[preset].values())


class ProposalFusionSegmenter:
    """Downscale (AER's 2250 x 1500 limit), propose with SAM, predict the foreground, fuse, resolve
    no-pass cases, and return the mask at the original size."""

    def __init__(self, name: str, rule: FusionRule, *, sam: SamProposer | None = None,
                 foreground: ForegroundModel | None = None, preset: str | None = None, policy: str = "fallback",
                 min_foreground_ratio: float = 0.1, max_width: int | None = MAX_WIDTH,
                 max_height: int | None = MAX_HEIGHT):
        if policy not in fusion.POLICIES:
            raise ValueError(f"unknown no-pass policy {policy!r}; choose one of {', '.join(fusion.POLICIES)}")
        self.name, self.rule, self.preset, self.policy = name, rule, preset, policy
        self.sam, self.foreground = sam, foreground
        self.min_foreground_ratio, self.max_width, self.max_height = min_foreground_ratio, max_width, max_height
        for candidate in possible_rules(rule, preset):
            if candidate.needs_sam and sam is None:
                raise ValueError(f"criterion {candidate.criterion} needs SAM: pass sam_checkpoint (and model_type)")
            if candidate.needs_foreground and foreground is None:
                raise ValueError(f"criterion {candidate.criterion} needs a foreground model: pass isnet_model")

    def rule_for(self, row: dict | None) -> FusionRule:
        row = row or {}
        if self.preset is None:
            return self.rule
        if self.preset == BY_SPECIES:
            species = row.get("species")
            return preset_rule(species, row.get("split")) if species in PRESETS else self.rule
        return preset_rule(self.preset, row.get("split"))

    def _proposals(self, rule: FusionRule, image: np.ndarray, box: tuple | None = None) -> list[np.ndarray]:
        if rule.sam_mode == "box" and box is not None:
            return [_stage("sam", lambda picture: self.sam.boxed(picture, box), image)]
        if rule.sam_mode in ("automatic", "box"):
            return _stage("sam", self.sam.automatic, image)
        return [_stage("sam", self.sam.prompted, image)]

    def _foreground(self, image: np.ndarray) -> np.ndarray:
        return _stage(self.foreground.name, self.foreground.predict, image)

    def segment(self, image: np.ndarray, row: dict | None = None) -> SegmentationResult:
        if not (isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8):
            shape = getattr(image, "shape", None)
            dtype = getattr(image, "dtype", type(image).__name__)
            return SegmentationResult(None, self.name, "failed", f"expected an RGB uint8 H x W x 3 image, got "
                                                                 f"{dtype} of shape {shape}")
        height, width = image.shape[:2]
        rule = self.rule_for(row)
        small = downscale(image, self.max_height, self.max_width)
        box = detected_box(row, small.shape[0] / height)
        try:
            masks = self._proposals(rule, small, box) if rule.needs_sam else None
            foreground = self._foreground(small) if rule.needs_foreground else None
            fused = fusion.fuse(rule.criterion, masks, foreground, rule.theta, self.min_foreground_ratio)
            if fused.mask is None and self.policy == "fallback" and foreground is None and self.foreground is not None:
                foreground = self._foreground(small)  # only now: the fallback needs it (sam_only rules)
        except _ModelError as error:
            return SegmentationResult(None, self.name, "failed", str(error), {"criterion": rule.criterion})
        mask, status, message = fusion.resolve(fused, foreground, self.policy, small.shape[:2])
        details = {
            "criterion": rule.criterion,
            "theta": fusion.DEFAULT_THETA.get(rule.criterion) if rule.theta is None else rule.theta,
            "sam_mode": (rule.sam_mode if rule.sam_mode != "box" or box is not None else "automatic (no box)")
            if rule.needs_sam else None,
            "proposals": None if masks is None else len(masks),
            "accepted": list(fused.accepted),
            "inverted": fused.inverted,
            "foreground_ratio": None if foreground is None else float(foreground.mean()),
            "policy": self.policy,
            "scale": small.shape[0] / height,
        }
        return SegmentationResult(resize_mask(mask, height, width), self.name, status, message, details)


def detected_box(row: dict | None, scale: float) -> tuple[float, float, float, float] | None:
    """A crop row's detector box (``reid detect``: ``box_*`` in the photo, ``crop_left/top`` the crop's corner)
    in the crop's pixels times ``scale``; None for rows that are not a detector's crops."""
    row = row or {}
    names = ("box_x0", "box_y0", "box_x1", "box_y1", "crop_left", "crop_top")
    if any(row.get(name) is None for name in names):
        return None
    x0, y0, x1, y1, left, top = (float(row[name]) for name in names)
    return (x0 - left) * scale, (y0 - top) * scale, (x1 - left) * scale, (y1 - top) * scale


class _ModelError(Exception):
    """A model failed on one image (GPU out of memory, odd content): that row fails, not the job."""


def _stage(name: str, run, image: np.ndarray):
    try:
        return run(image)
    except Exception as error:
        raise _ModelError(f"{name}: {type(error).__name__}: {error}") from error


# SamAutomaticMaskGenerator's parameters (read from segment-anything 1.0); unset ones keep SAM's defaults.
GENERATOR_FIELDS = ("points_per_side", "points_per_batch", "pred_iou_thresh", "stability_score_thresh",
                    "stability_score_offset", "box_nms_thresh", "crop_n_layers", "crop_nms_thresh",
                    "crop_overlap_ratio", "crop_n_points_downscale_factor", "min_mask_region_area")


class FusionOptions(SegmenterOptions):
    """The options of ``sam+isnet``, ``sam`` and ``isnet`` (model files: local paths or s3:// URIs)."""

    sam_checkpoint: str | None = None
    model_type: str = "vit_h"  # vit_h / vit_l / vit_b / tiny
    isnet_model: str | None = None
    device: str = "auto"  # auto / cpu / cuda
    criterion: str | None = None  # None: the segmenter's default (see PRESETS for the species' ones)
    theta: float | None = None
    sam_mode: Literal["automatic", "prompted", "box"] = "automatic"  # box: a detector's box where a row has one
    preset: str | None = None  # tiger / elephant / yak, or "species": the row's species
    policy: str = "fallback"  # fallback / keep / flag: what a row gets when the criterion accepts nothing
    min_foreground_ratio: float = 0.1
    max_width: int | None = MAX_WIDTH
    max_height: int | None = MAX_HEIGHT
    isnet_mean: str = "aer"  # aer / dis
    isnet_post_process: bool = True
    isnet_threads: int | None = None  # onnxruntime's intra-op threads
    cache_dir: str | None = None  # where s3:// model files are copied
    points_per_side: int | None = None
    points_per_batch: int | None = None
    pred_iou_thresh: float | None = None
    stability_score_thresh: float | None = None
    stability_score_offset: float | None = None
    box_nms_thresh: float | None = None
    crop_n_layers: int | None = None
    crop_nms_thresh: float | None = None
    crop_overlap_ratio: float | None = None
    crop_n_points_downscale_factor: int | None = None
    min_mask_region_area: int | None = None

    @field_validator("max_width", "max_height", "isnet_threads", "theta", "criterion", "preset", mode="before")
    @classmethod
    def _none_word(cls, value):
        return None if isinstance(value, str) and value.lower() == "none" else value

    def generator(self) -> dict:
        """The SAM generator parameters given (SAM's defaults for the others)."""
        return self.model_dump(include=set(GENERATOR_FIELDS), exclude_unset=True)


class SamOptions(FusionOptions):
    policy: str = "flag"


class IsnetOptions(FusionOptions):
    policy: str = "flag"


def build(name: str, default_criterion: str, options: FusionOptions) -> ProposalFusionSegmenter:
    """Load what the rules need and assemble the segmenter (runs once per Ray actor)."""
    o = options
    if o.preset not in (None, BY_SPECIES) and (o.criterion is not None or o.theta is not None):
        raise ValueError(f"preset {o.preset!r} fixes the criterion and theta: pass either preset or criterion/theta")
    rule = FusionRule(o.criterion or default_criterion, o.theta, o.sam_mode)
    rules = possible_rules(rule, o.preset)
    sam = None
    if any(r.needs_sam for r in rules):
        from reid_core.segmentation.sam import SamProposer, load_sam

        sam = SamProposer(load_sam(o.model_type, o.sam_checkpoint, o.device, cache_dir=o.cache_dir), **o.generator())
    elif o.generator():
        raise ValueError(f"SAM generator option(s) {', '.join(sorted(o.generator()))} given to {name}, which runs "
                         "no SAM with these settings")
    foreground = None
    if o.isnet_model is not None or any(r.needs_foreground for r in rules):
        if o.isnet_model is None:
            needing = next(r.criterion for r in rules if r.needs_foreground)
            raise ValueError(f"criterion {needing} needs a foreground model: pass isnet_model=<path or s3:// URI> "
                             "(see reid_core/segmentation/foreground.py for the file)")
        from reid_core.segmentation.foreground import ISNetForeground

        foreground = ISNetForeground(o.isnet_model, o.device, o.isnet_mean, o.isnet_post_process,
                                     threads=o.isnet_threads, cache_dir=o.cache_dir)
    return ProposalFusionSegmenter(name, rule, sam=sam, foreground=foreground, preset=o.preset, policy=o.policy,
                                   min_foreground_ratio=o.min_foreground_ratio, max_width=o.max_width,
                                   max_height=o.max_height)


# AER's fusion: ``criterion`` defaults to largest_iou (tigers); see ``PRESETS`` for the others.
SAM_ISNET = SegmenterSpec(FusionOptions, lambda options: build("sam+isnet", "largest_iou", options))
# SAM alone: the largest automatic mask, or the prompted one with ``sam_mode=prompted``.
SAM = SegmenterSpec(SamOptions, lambda options: build("sam", "sam_only", options))
# The foreground model alone (AER's yak test set).
ISNET = SegmenterSpec(IsnetOptions, lambda options: build("isnet", "foreground_only", options))
