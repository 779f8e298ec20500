"""After training: evaluate on the test split, log the embedding model, register it as a candidate."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
import torch
from torch import nn

from reid_core import tracking
from reid_core.data.dataset import images_to_evaluate, select_images
from reid_core.engine.evaluate import embed_manifest, evaluate_split, protocol_for
from reid_core.lifecycle import open_set_calibration
from reid_core.lifecycle.local_rerank import LocalRerank, fused_metrics
from reid_core.lifecycle.pictures import log_model_pictures
from reid_core.lifecycle.restore import Restored
from reid_core.methods.contract import Method
from reid_core.settings import Settings


class EmbeddingModel(nn.Module):
    """What gets logged: images (B, 3, H, W), normalised as the method's eval transform does, in;
    the method's test-time embedding out (e.g. flip-concatenated, L2-normalised)."""

    def __init__(self, method: Method, network: nn.Module) -> None:
        super().__init__()
        self.method = method
        self.network = network

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.method.embed(self.network, images)


@dataclass
class Published:
    metrics: dict[str, float]
    model_uri: str
    registered_name: str
    version: str


def test_metrics(restored: Restored, rows: pl.DataFrame, use_masked: bool,
                 rerank: LocalRerank | None = None) -> dict[str, float]:
    """``test.*`` metrics with the species' protocol (ATRW adds mAP_single/cross and mmAP); with ``rerank``
    also ``test.fused.*``, the ranking re-scored by local-feature matching as ``identify`` does."""
    transform = restored.method.eval_transform(restored.config)
    metrics = evaluate_split(restored.method, restored.model, rows, transform, "test", use_masked=use_masked,
                             config=restored.config)
    if rerank is not None:
        metrics |= fused_metrics(lambda part, column: embed_manifest(restored.method, restored.model, part, transform,
                                                                     column=column), rows, use_masked, rerank)
    return {f"test.{k}": float(v) for k, v in metrics.items()}


def identification_calibration(restored: Restored, rows: pl.DataFrame, use_masked: bool, matchers: tuple[str, ...],
                               matcher_options: Mapping[str, dict] | None = None,
                               ) -> open_set_calibration.OpenSetCalibration | None:
    """Scores to probabilities and the known/new operating points, fitted on the validation split (individuals
    the model did not train on) on the images the model sees (masked where it was trained masked)."""
    images = images_to_evaluate(rows.filter(pl.col("split") == "val"), use_masked, "val")

    def embed(val: pl.DataFrame) -> np.ndarray:
        return embed_manifest(restored.method, restored.model, val, restored.method.eval_transform(restored.config),
                              column=images.column)

    return open_set_calibration.calibrate_validation(embed, images.rows, images.column, matchers,
                                                     options=dict(matcher_options or {}))


def preprocessing(rows: pl.DataFrame, use_masked: bool) -> dict:
    """How the training images were made, so ``identify`` prepares new photos the same way."""
    train = select_images(rows.filter(pl.col("split") == "train"), use_masked)
    masked = train.column == "masked_uri"
    configs = train.rows["seg_config"].drop_nulls().unique().to_list() if masked and "seg_config" in rows.columns else []
    return {"masked": masked, "segmentation": configs[0] if len(configs) == 1 else None}


def publish(
    restored: Restored,
    rows: pl.DataFrame,
    run_id: str,
    *,
    species: str,
    tags: dict[str, str],
    use_masked: bool = True,
    alias: str = tracking.CANDIDATE,
    matchers: tuple[str, ...] = open_set_calibration.DEFAULT_MATCHERS,
    matcher_options: Mapping[str, dict] | None = None,
    settings: Settings | None = None,
) -> Published:
    """Evaluate on the test split, log the metrics and the embedding model to run ``run_id``, calibrate
    identification on the validation split (the global model and ``matchers``), register it as a new version
    of ``reid-<method>-<species>`` with ``alias``, and attach its pictures."""
    metrics = test_metrics(restored, rows, use_masked)
    tracking.log_metrics(run_id, metrics, settings=settings)
    spec = restored.method.input_spec(restored.config)
    example = np.random.default_rng(0).standard_normal((2, 3, spec.height, spec.width)).astype(np.float32)
    name = tracking.registered_model_name(restored.method.name, species)
    model_uri = tracking.log_reid_model(
        run_id, EmbeddingModel(restored.method, restored.model).eval(), example,
        metadata={"method": restored.method.name, "species": species,
                  "input": {"height": spec.height, "width": spec.width},
                  "protocol": protocol_for(rows.filter(pl.col("split") == "test")),
                  "config": restored.config.model_dump(mode="json"),
                  "preprocessing": preprocessing(rows, use_masked)},
        settings=settings,
    )
    calibration = identification_calibration(restored, rows, use_masked, matchers, matcher_options)
    stored = open_set_calibration.store(calibration, run_id, settings) if calibration else {}
    version = tracking.register(model_uri, name, tags={**tags, **metrics, **stored, "run_id": run_id}, alias=alias,
                                settings=settings)
    number = str(getattr(version, "version", version))
    log_model_pictures(restored, rows, run_id, name, number, use_masked=use_masked, settings=settings)
    return Published(metrics, model_uri, name, number)
