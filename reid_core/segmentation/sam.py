"""Segment Anything (the ``segment-anything`` package): load a checkpoint, propose masks.

Checkpoints are the official state dicts, linked from the segment-anything README
(https://github.com/facebookresearch/segment-anything#model-checkpoints):

- vit_h: https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth (2.4 GB; AER's choice)
- vit_l: https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth (1.2 GB)
- vit_b: https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth (375 MB)

Download one where the internet is reachable and pass its local path or an s3:// URI (copied once to
``$REID_HOME/models``). ``tiny`` is a 0.3 M-parameter SAM of the same parts for tests and smoke runs of the
pipeline machinery: random weights, useless masks.

Two ways to propose masks, both AER's: automatic mask generation (a point grid; tigers and elephants) and
the prompted mode (the whole image as the box plus one positive point at its centre; yak training images);
and a third for crops of a detector (``reid detect``): the detector's box as SAM's prompt, one mask.
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from reid_core.segmentation.weights import local_model_file

CHECKPOINT_URLS = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}
# The image encoder's width tells the official architectures apart (for error messages).
_WIDTHS = {1280: "vit_h", 1024: "vit_l", 768: "vit_b"}


def build_tiny_sam(image_size: int = 64) -> Sam:
    """SAM's parts at toy sizes (about 0.3 M parameters): same code paths, seconds on a CPU."""
    prompt_dim, patch = 32, 16
    grid = image_size // patch
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=image_size, patch_size=patch, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2.0,
            out_chans=prompt_dim, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True, window_size=0, global_attn_indexes=(),
        ),
        prompt_encoder=PromptEncoder(embed_dim=prompt_dim, image_embedding_size=(grid, grid),
                                     input_image_size=(image_size, image_size), mask_in_chans=8),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_dim, mlp_dim=64, num_heads=2),
            transformer_dim=prompt_dim, iou_head_depth=3, iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    ).eval()


ARCHITECTURES: dict[str, Callable[[], Sam]] = {
    "vit_h": partial(sam_model_registry["vit_h"], checkpoint=None),
    "vit_l": partial(sam_model_registry["vit_l"], checkpoint=None),
    "vit_b": partial(sam_model_registry["vit_b"], checkpoint=None),
    "tiny": build_tiny_sam,
}


def resolve_device(device: str) -> torch.device:
    """``auto`` is the GPU where torch sees one (a Ray actor with ``num_gpus``), else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but torch sees no GPU: pass device=cpu, or run on a GPU "
                         "(a Ray actor needs num_gpus > 0)")
    return torch.device(device)


def _fix(model_type: str) -> str:
    url = CHECKPOINT_URLS.get(model_type)
    where = f"download {url}" if url else "write one with torch.save(sam.state_dict(), path)"
    return f"{where} and pass its local path or s3:// URI as the SAM checkpoint"


def load_sam(model_type: str = "vit_h", checkpoint: str | Path | None = None, device: str = "auto", *,
             cache_dir: str | Path | None = None, filesystem=None) -> Sam:
    """A SAM in eval mode on ``device``, its weights read (``weights_only``) from ``checkpoint``.

    Only ``tiny`` may go without a checkpoint (random weights, seeded).
    """
    if model_type not in ARCHITECTURES:
        raise ValueError(f"unknown SAM model_type {model_type!r}; choose one of {', '.join(ARCHITECTURES)}")
    target = resolve_device(device)
    if checkpoint is None:
        if model_type != "tiny":
            raise ValueError(f"SAM {model_type} needs a checkpoint: {_fix(model_type)}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            sam = ARCHITECTURES[model_type]()
        return sam.to(target).eval()
    path = local_model_file(checkpoint, what=f"SAM {model_type} checkpoint", fix=_fix(model_type),
                            cache_dir=cache_dir, filesystem=filesystem)
    state = _read_state_dict(path, model_type)
    sam = ARCHITECTURES[model_type]()
    problem = _mismatch(sam.state_dict(), state)
    if problem:
        width = state.get("image_encoder.patch_embed.proj.weight")
        guess = _WIDTHS.get(int(width.shape[0])) if isinstance(width, torch.Tensor) else None
        hint = (f"it looks like a {guess} checkpoint: pass model_type={guess}" if guess and guess != model_type
                else _fix(model_type))
        raise ValueError(f"{checkpoint} is not a SAM {model_type} state dict ({problem}); {hint}")
    sam.load_state_dict(state)
    return sam.to(target).eval()


def _mismatch(expected: dict, state: dict) -> str | None:
    """What keeps ``state`` from loading strictly, in one line; None if it fits."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    parts = [f"{len(keys)} {label}, e.g. {keys[0]}" for keys, label in
             ((missing, "missing keys"), (unexpected, "unexpected keys"), (reshaped, "tensors of another shape"))
             if keys]
    return "; ".join(parts) or None


def _read_state_dict(path: Path, model_type: str) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated download, an HTML error page, a pickled model object
        # torch's own weights_only message suggests weights_only=False, which would run pickled code.
        reason = ("not a file of plain tensors: a truncated or HTML download, or a pickled model object"
                  if isinstance(error, pickle.UnpicklingError) else f"{type(error).__name__}: {error}"[:300])
        raise ValueError(f"{path} cannot be read as a torch state dict ({reason}); {_fix(model_type)}") from None
    # Fine-tuning scripts often wrap the weights; the official files are the bare state dict.
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a SAM state dict; {_fix(model_type)}")
    return state


# SamAutomaticMaskGenerator's tuning knobs, pass-through by name (output_mode stays binary masks).
GENERATOR_OPTIONS = {
    name: param.default
    for name, param in inspect.signature(SamAutomaticMaskGenerator.__init__).parameters.items()
    if name not in {"self", "model", "output_mode"}
}


def generator_options(options: dict) -> dict:
    """Check names against SamAutomaticMaskGenerator's and coerce strings (from ``--set k=v``) to the
    default's type."""
    unknown = sorted(set(options) - set(GENERATOR_OPTIONS))
    if unknown:
        raise ValueError(f"unknown SAM generator option(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(GENERATOR_OPTIONS)}")
    out = {}
    for name, value in options.items():
        default = GENERATOR_OPTIONS[name]
        if isinstance(value, str) and isinstance(default, int | float) and not isinstance(default, bool):
            value = int(float(value)) if isinstance(default, int) else float(value)
        out[name] = value
    return out


class SamProposer:
    """Mask proposals from one loaded SAM, in either of AER's two modes."""

    def __init__(self, sam: Sam, **options):
        self.sam = sam
        self.options = generator_options(options)
        self._generator: SamAutomaticMaskGenerator | None = None
        self._predictor: SamPredictor | None = None

    def automatic(self, image: np.ndarray) -> list[np.ndarray]:
        """Every mask of the automatic generator (boolean H x W), in the generator's order."""
        if self._generator is None:
            self._generator = SamAutomaticMaskGenerator(self.sam, output_mode="binary_mask", **self.options)
        return [record["segmentation"].astype(bool) for record in self._generator.generate(image)]

    def prompted(self, image: np.ndarray) -> np.ndarray:
        """One mask: box = the whole image, one positive point at the centre, a single output (AER's yaks)."""
        if self._predictor is None:
            self._predictor = SamPredictor(self.sam)
        height, width = image.shape[:2]
        self._predictor.set_image(image)
        masks, _, _ = self._predictor.predict(
            point_coords=np.array([[width // 2, height // 2]]), point_labels=np.array([1]),
            box=np.array([[0, 0, width, height]]), multimask_output=False,
        )
        self._predictor.reset_image()  # drop the features: the next image is a different one
        return masks[0].astype(bool)

    def boxed(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """One mask for the animal a detector boxed (x0, y0, x1, y1 in the image's pixels), a single output."""
        if self._predictor is None:
            self._predictor = SamPredictor(self.sam)
        self._predictor.set_image(image)
        masks, _, _ = self._predictor.predict(box=np.asarray([box], np.float32), multimask_output=False)
        self._predictor.reset_image()
        return masks[0].astype(bool)
