"""Logging and loading re-identification models as MLflow logged models (torch.export "pt2").

pt2 is MLflow 3.17's default for PyTorch outside Databricks and the only format we use: loading it
runs no pickled code (DESIGN, Safety). Facts measured here that shape this module:
- pt2 traces ``input_example``; dims that are -1 in the signature are exported as ``Dim.AUTO``, so
  an example with batch >= 2 gives a model that accepts any batch size (checked: batch 1 and 3
  from a batch-2 example, for a small CNN, timm resnet18 and vit_tiny). A batch-1 example would
  specialise the batch to 1. Spatial dims stay fixed to the example's.
- Without ``pip_requirements`` MLflow infers them by loading the model in a subprocess (after
  trying ``uv export`` in a uv project): 26-60 s here versus ~0.5 s with pinned requirements.
- With ``run_id`` but no active run, ``log_model`` files the logged model under the *Default*
  experiment (whose artifact root is ``./mlruns`` of the current directory). We create the logged
  model in the run's experiment first and pass its ``model_id``.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Mapping
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.models import infer_signature

from reid_core.settings import Settings
from reid_core.tracking.store import configure

# Enough to load and run a pt2 model: torch executes the program, mlflow/numpy load it.
RUNTIME_PACKAGES = ("torch", "mlflow", "numpy")
PT2_FILE = Path("data") / "model.pt2"


def pip_requirements(packages: tuple[str, ...] = RUNTIME_PACKAGES) -> list[str]:
    """Installed versions pinned, e.g. ``torch==2.14.1`` (distribution versions, no ``+cu130``)."""
    return [f"{name}=={version(name)}" for name in packages]


def _as_example(input_example: np.ndarray | torch.Tensor) -> np.ndarray:
    example = input_example.detach().cpu().numpy() if isinstance(input_example, torch.Tensor) else input_example
    if not isinstance(example, np.ndarray) or example.ndim < 1 or example.shape[0] < 2:
        shape = getattr(example, "shape", None)
        raise ValueError(f"input_example must be an array with batch size >= 2 (got shape {shape}): "
                         "torch.export fixes a batch of 1 into the model; pass e.g. "
                         "np.zeros((2, 3, H, W), np.float32)")
    return example


def _on_cpu(model: torch.nn.Module) -> torch.nn.Module:
    # A pt2 program keeps its weights' device; exported on CPU it loads on any machine.
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == "cpu" for t in tensors):
        return model
    return copy.deepcopy(model).to("cpu")


def log_reid_model(run_id: str, model: torch.nn.Module, input_example: np.ndarray | torch.Tensor,
                   name: str = "model", metadata: Mapping[str, Any] | None = None,
                   tags: Mapping[str, Any] | None = None, settings: Settings | None = None,
                   requirements: list[str] | None = None) -> str:
    """Log ``model`` (exported in eval mode, on CPU) as a logged model of run ``run_id``.

    Returns the model URI (``models:/m-<id>``) to pass to :func:`register`. ``metadata`` lands in
    the MLmodel file (embedding size, image size, normalisation, method config...); ``tags`` on
    the logged model.
    """
    client = configure(settings)
    example = _as_example(input_example)
    experiment_id = client.get_run(run_id).info.experiment_id
    module = _on_cpu(model)
    was_training = module.training
    # torch.export traces the current mode: train mode would bake batch statistics and dropout in.
    module.eval()
    try:
        with torch.no_grad():
            output = module(torch.from_numpy(example))
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"log_reid_model expects a module returning one tensor (the embedding), got "
                            f"{type(output).__name__}; wrap the network so forward returns the embedding")
        # Batch dim -1 in the signature is what makes MLflow export it as Dim.AUTO (dynamic).
        signature = infer_signature(example, output.detach().numpy())
        logged = client.create_logged_model(
            experiment_id=experiment_id, name=name, source_run_id=run_id,
            tags={k: str(v) for k, v in (tags or {}).items()} or None,
        )
        info = mlflow.pytorch.log_model(
            module,
            name=name,
            # A tensor example is traced but not written out: MLflow 3.17 saves only ndarray examples,
            # as JSON twice (input + serving example, ~15 MB at 2x3x224x224), and then reloads and
            # runs the model to validate the serving example. The explicit signature replaces both.
            input_example=torch.from_numpy(example),
            signature=signature,
            pip_requirements=requirements or pip_requirements(),
            metadata=dict(metadata) if metadata else None,
            serialization_format="pt2",
            run_id=run_id,
            model_id=logged.model_id,
        )
    finally:
        module.train(was_training)
    return info.model_uri


def load_model(uri: str, settings: Settings | None = None) -> torch.nn.Module:
    """Load a pt2 model from any MLflow model URI (``models:/reid-dve-tiger@candidate``, ``models:/m-<id>``).

    Refuses anything that is not a pt2 program, whatever ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` says.
    The result is a ``torch.fx.GraphModule`` with eval-mode behaviour baked in; call it like the
    original module (torch 2.14 raises NotImplementedError on its ``.eval()``).
    """
    configure(settings)
    with tempfile.TemporaryDirectory(prefix="reid-model-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        if not (local / PT2_FILE).is_file():
            raise ValueError(f"{uri} is not a torch.export (pt2) model (no {PT2_FILE}); re-log it with "
                             "reid_core.tracking.log_reid_model, which never pickles")
        return mlflow.pytorch.load_model(str(local))


def model_metadata(uri: str, settings: Settings | None = None) -> dict[str, Any]:
    """The metadata in a logged model's MLmodel file (``log_reid_model``'s ``metadata``); {} when none."""
    configure(settings)
    return dict(mlflow.models.get_model_info(uri).metadata or {})
