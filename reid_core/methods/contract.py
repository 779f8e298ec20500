"""The method contract: what a model family declares so one engine, one tuner and one set of workflows
can train, tune, publish and evaluate it without reading any of its fields.

A method is a ``Method`` subclass in its own package under ``reid_core.methods``, registered by name in
``reid_core.methods.registry``. Nothing here imports Ray, MLflow or Optuna.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import polars as pl
import torch
from torch import nn
from torch.utils.data import Dataset

from reid_core.methods.config import MethodConfig, build_config


@dataclass(frozen=True)
class InputSpec:
    """The network's input: every image is resized to H x W and normalised with mean / std."""

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class BatchSpec:
    """How a stage batches its data: ``pk`` (P identities x K images, for metric losses) or ``random``."""

    kind: Literal["pk", "random"]
    ids_per_batch: int = 0  # P (pk)
    images_per_id: int = 0  # K (pk)
    batch_size: int = 0  # random

    def __post_init__(self) -> None:
        if self.kind == "pk" and (self.ids_per_batch < 1 or self.images_per_id < 1):
            raise ValueError(f"a P x K batch needs P, K >= 1, got P={self.ids_per_batch}, K={self.images_per_id}")
        if self.kind == "random" and self.batch_size < 1:
            raise ValueError(f"a random batch needs batch_size >= 1, got {self.batch_size}")

    @property
    def size(self) -> int:
        return self.ids_per_batch * self.images_per_id if self.kind == "pk" else self.batch_size


@dataclass(frozen=True)
class StagePlan:
    """What the driver may know of a stage before any network exists (checks, the tuner's budget).

    ``config_keys`` names the config entries that set this stage's batch, for error messages.
    ``tuned``: whether the tuner's scheduler counts this stage's epochs (``tuned_epoch``) and they are
    validated and may give the best checkpoint. A stage that leaves the test embedding unchanged, such
    as CARE's prompt learning, must not be: its epochs report the validation scores of its start.
    """

    name: str
    epochs: int
    batches: BatchSpec
    tuned: bool = True
    batch_keys: tuple[str, ...] = ()


@dataclass
class StageContext:
    """What stage hooks may use: the training rows (after the method's view) and the column their images
    are read from (``masked_uri`` or ``image_uri``), the device, the session's rank and world size. State
    that must survive a resume belongs in the network (buffers are saved with the model)."""

    rows: pl.DataFrame
    device: torch.device
    rank: int = 0
    world_size: int = 1
    num_classes: int = 0
    image_column: str = "image_uri"


@dataclass
class Stage:
    """One training stage as the engine runs it.

    - ``trainable(network)`` sets ``requires_grad`` for this stage; the engine wraps the network for
      DDP after it, so DDP only tracks what the stage trains (no ``find_unused_parameters``).
    - ``on_start(network, context)`` runs when the stage starts, and again when a run resumes inside it
      (so whatever it computes, e.g. a prototype bank, exists after a resume).
    - ``dataset(context)`` gives the stage's data; None means the training images through the method's
      train transform.
    - ``step(model, batch, epoch)`` returns the loss to minimise and a dict of named loss parts (floats
      or 0-d tensors) that the engine averages and logs as ``train.<name>``.
    - ``precision``: ``bf16`` runs forward passes under autocast on GPU (ignored on CPU).
    """

    plan: StagePlan
    optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    step: Callable[[nn.Module, Mapping[str, torch.Tensor], int], tuple[torch.Tensor, dict[str, float]]]
    scheduler: Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler] | None = None
    trainable: Callable[[nn.Module], None] | None = None
    on_start: Callable[[nn.Module, StageContext], None] | None = None
    on_epoch_start: Callable[[nn.Module, int], None] | None = None
    dataset: Callable[[StageContext], Dataset] | None = None
    precision: Literal["fp32", "bf16"] = "fp32"

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def epochs(self) -> int:
        return self.plan.epochs


@dataclass(frozen=True)
class SearchParam:
    """One searched config entry, as data: ``key`` is its dotted config path.

    kinds: ``float`` (uniform), ``log`` (log-uniform), ``int`` (uniform integers), ``choice``.
    The tuning layer turns these into Optuna distributions.
    """

    key: str
    kind: Literal["float", "log", "int", "choice"]
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if self.kind == "choice":
            if not self.choices:
                raise ValueError(f"search parameter {self.key!r} must list at least one choice")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"search parameter {self.key!r} needs low <= high, got {self.low!r}, {self.high!r}")
        elif self.kind == "log" and self.low <= 0:
            raise ValueError(f"search parameter {self.key!r} is log-uniform and needs low > 0, got {self.low!r}")


def set_trainable(parameters, trainable: bool) -> None:
    for parameter in parameters:
        parameter.requires_grad_(trainable)


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DDP (or DataParallel) wrapper."""
    return getattr(model, "module", model)


class Method:
    """Base class of every method. Subclasses set the class attributes and implement the abstract ones.

    Class attributes:
    - ``name``: the registry name (``reid-<name>-<species>`` in the model registry);
    - ``config_type``: the pydantic config (``MethodConfig`` subclass; its defaults are the paper's);
    - ``presets``: name -> nested overrides of the defaults; ``paper`` is ``{}``;
    - ``search_space``: the tuner's default ranges (``search_space_for`` narrows them per species);
    - ``epochs_key``: the config entry the workflows' ``--epochs`` sets; None for a method with nothing to
      train (``plan`` is empty: the engine checkpoints and scores the network as built);
    - ``required_columns``: manifest columns training needs beyond the core ones;
    - ``mask_columns``: batch key -> manifest column of a label map (e.g. ``{"parts": "parts_uri"}``) read
      with every training image; the train transform is then called as ``transform(image, masks)`` and
      returns both, so geometric augmentations move them together (``ManifestDataset``). Training rows
      without one are left out and counted, as rows without a masked image are.
    """

    name: ClassVar[str]
    config_type: ClassVar[type[MethodConfig]]
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = {"paper": {}}
    search_space: ClassVar[tuple[SearchParam, ...]] = ()
    epochs_key: ClassVar[str | None] = "schedule.epochs"
    required_columns: ClassVar[tuple[str, ...]] = ()
    mask_columns: ClassVar[Mapping[str, str]] = {}

    # -- configuration ---------------------------------------------------------------------------
    def config(self, preset: str = "paper", overrides: Mapping[str, Any] | None = None) -> MethodConfig:
        """The validated config of ``preset`` with dotted ``overrides`` (``{"optim.lr": 3e-3}``)."""
        return build_config(self.config_type, self.presets, preset, overrides, method=self.name)

    def load_config(self, dump: Mapping[str, Any]) -> MethodConfig:
        """A config back from its ``model_dump()`` (checkpoints, model metadata)."""
        return self.config_type.model_validate(dict(dump))

    def offline(self, config: MethodConfig) -> MethodConfig:
        """The config for rebuilding a trained network whose weights come from a checkpoint: no download
        of pretrained weights. Override when the config names pretrained weights."""
        return config

    def search_space_for(self, species: str) -> tuple[SearchParam, ...]:
        """The tuner's default ranges for one species; override where a range depends on it."""
        return self.search_space

    # -- data ------------------------------------------------------------------------------------
    def input_spec(self, config: MethodConfig) -> InputSpec:
        raise NotImplementedError

    def training_view(self, rows: pl.DataFrame, config: MethodConfig) -> pl.DataFrame:
        """The training rows as this method trains on them (e.g. flipped copies as new identities)."""
        return rows

    def train_transform(self, config: MethodConfig) -> Callable:
        """PIL image -> normalised tensor; with ``mask_columns``, ``(image, masks) -> (image, masks)``
        where ``masks`` is a dict of ``tv_tensors.Mask`` (torchvision v2 transforms take both)."""
        raise NotImplementedError

    def eval_transform(self, config: MethodConfig) -> Callable:
        from reid_core.data.transforms import eval_transform

        spec = self.input_spec(config)
        return eval_transform((spec.height, spec.width), spec.mean, spec.std)

    # -- training --------------------------------------------------------------------------------
    def plan(self, config: MethodConfig) -> list[StagePlan]:
        raise NotImplementedError

    def build(self, config: MethodConfig, num_classes: int) -> nn.Module:
        raise NotImplementedError

    def stages(self, config: MethodConfig, network: nn.Module, steps_per_epoch: list[int]) -> list[Stage]:
        """The runtime stages, one per ``plan`` entry, in the same order. ``steps_per_epoch[i]`` is the
        number of batches stage ``i`` sees per epoch on this rank."""
        raise NotImplementedError

    # -- inference -------------------------------------------------------------------------------
    def embed(self, network: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Test-time embeddings (L2-normalised) of normalised images; called in eval mode."""
        raise NotImplementedError

    def evaluation_scores(self, network: nn.Module, config: MethodConfig, rows: pl.DataFrame, column: str,
                          transform: Callable, *, batch_size: int = 64, device: torch.device | str = "cpu"
                          ) -> dict[str, float]:
        """Method-specific scores of a split's ``rows`` (images in ``column``, ``transform`` the eval
        transform) beside the ranking metrics, under the same prefix (``val.`` each evaluated epoch, ``test.``
        at the end); e.g. PAW-ViT's part segmentation. None by default."""
        return {}

    # -- pictures --------------------------------------------------------------------------------
    def figures(self, network: nn.Module, config: MethodConfig, rows: pl.DataFrame, column: str) -> dict[str, Any]:
        """Method-specific pictures of a trained network, logged with the registered model: name ->
        PIL image (e.g. DVE's correspondence maps). ``rows`` are test images, their URIs in
        ``column``. None by default; publishing adds the generic rank lists and embedding plot."""
        return {}

