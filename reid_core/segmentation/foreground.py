"""Salient-object foreground models: one mask per image, the animal against everything else.

``ForegroundModel`` is the interface; ``ISNetForeground`` is ISNet (DIS, "isnet-general-use") as AER ran
it through rembg: ``remove(image, session=new_session("isnet-general-use"), only_mask=True,
post_process_mask=True)``, foreground = any non-zero pixel.

The model file is rembg's ONNX export: https://github.com/danielgatis/rembg/releases/download/v0.0.0/isnet-general-use.onnx
(170 MB, md5 fc16ebd8b0c10d971d3513d564d01e29). Download it where the internet is reachable and pass its
local path or an s3:// URI (copied once to ``$REID_HOME/models``).

Why onnxruntime and not rembg itself: rembg's pre- and post-processing changed after AER. AER's rembg
(2023, <= 2.0.60) normalised with mean (0.485, 0.456, 0.406) and post-processed with OpenCV (3x3 elliptic
opening, 5x5 Gaussian with sigma 2, threshold 127); rembg >= 2.0.66 uses mean 0.5 and >= 2.0.72 a
scipy Gaussian with a 17x17 support. Current rembg also refuses custom model paths outside its own home
directory and pulls in pymatting/numba and scikit-image. The few lines below replicate AER's version
exactly (rembg's ``DisSession.predict``, ``BaseSession.normalize`` and ``post_process``); ``mean="dis"``
selects DIS's own normalisation, which current rembg uses.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
from PIL import Image

from reid_core.segmentation.weights import local_model_file

log = logging.getLogger(__name__)

ISNET_URL = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/isnet-general-use.onnx"
MEANS = {"aer": (0.485, 0.456, 0.406), "dis": (0.5, 0.5, 0.5)}
_FIX = f"download {ISNET_URL} and pass its local path or s3:// URI as the foreground model"


class ForegroundModel(Protocol):
    """Anything that maps an RGB uint8 H x W x 3 image to a boolean H x W foreground mask."""

    name: str

    def predict(self, image: np.ndarray) -> np.ndarray: ...


def rembg_input(image: np.ndarray, mean: tuple[float, float, float], size: int) -> np.ndarray:
    """rembg's ``normalize`` (std 1): Lanczos to size x size, divide by the image's own maximum (not 255),
    subtract the mean; 1 x 3 x size x size float32."""
    resized = np.asarray(Image.fromarray(image).convert("RGB").resize((size, size), Image.Resampling.LANCZOS))
    scaled = resized / max(float(resized.max()), 1e-6)  # rembg's guard against an all-black image
    return ((scaled - np.asarray(mean)).transpose(2, 0, 1)[None]).astype(np.float32)


def rembg_mask(prediction: np.ndarray, height: int, width: int) -> np.ndarray:
    """rembg's ``DisSession.predict`` after the network: min-max scale the first output's first channel to
    0..255 (truncating), Lanczos back to the image size; uint8 H x W."""
    pred = prediction[:, 0, :, :]  # kept in the network's float32, as rembg, for identical truncation
    lo, hi = pred.min(), pred.max()
    pred = np.squeeze((pred - lo) / (hi - lo) if hi > lo else np.zeros_like(pred))  # rembg: 0/0 -> NaN
    mask = Image.fromarray((pred * 255).astype(np.uint8), mode="L")
    return np.asarray(mask.resize((width, height), Image.Resampling.LANCZOS))


_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


def post_process_mask(mask: np.ndarray) -> np.ndarray:
    """rembg's ``post_process`` as AER ran it (OpenCV): 3x3 elliptic opening, 5x5 Gaussian (sigma 2),
    threshold at 127; uint8 0/255."""
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _KERNEL)
    mask = cv2.GaussianBlur(mask, (5, 5), sigmaX=2, sigmaY=2, borderType=cv2.BORDER_DEFAULT)
    return np.where(mask < 127, 0, 255).astype(np.uint8)


def onnx_providers(device: str) -> list[str]:
    """onnxruntime execution providers for ``device`` (auto / cpu / cuda)."""
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device.startswith("cuda"):
        # A GPU actor still segments correctly on the CPU, only slower: warn rather than fail the job.
        log.warning("device=%s but this onnxruntime has no CUDAExecutionProvider: ISNet runs on the CPU. "
                    "Install onnxruntime-gpu in place of onnxruntime to run it on the GPU.", device)
    return ["CPUExecutionProvider"]


class ISNetForeground:
    """ISNet general-use from rembg's ONNX file. ``post_process=True`` is AER's ``post_process_mask``."""

    name = "isnet"

    def __init__(self, model: str | Path, device: str = "auto", mean: str = "aer", post_process: bool = True,
                 input_size: int = 1024, threads: int | None = None, *, cache_dir: str | Path | None = None,
                 filesystem=None):
        import onnxruntime as ort

        if mean not in MEANS:
            raise ValueError(f"unknown ISNet normalisation mean={mean!r}; choose one of {', '.join(MEANS)}")
        self.mean, self.post_process, self.input_size = MEANS[mean], post_process, int(input_size)
        path = local_model_file(model, what="ISNet model", fix=_FIX, cache_dir=cache_dir, filesystem=filesystem)
        options = ort.SessionOptions()
        # Inside a Ray actor OMP_NUM_THREADS is its CPU share (rembg reads the same variable).
        threads = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=onnx_providers(device))
        except Exception as error:  # onnxruntime's InvalidProtobuf / Fail are not ValueErrors
            raise ValueError(f"{model} is not an ONNX model onnxruntime can load ({error}); {_FIX}") from None
        first = self.session.get_inputs()[0]
        shape = first.shape  # ints for fixed dimensions, names or None for dynamic ones
        if len(shape) != 4 or isinstance(shape[1], int) and shape[1] != 3:
            raise ValueError(f"{model} takes input {first.name} of shape {shape}, not N x 3 x H x W: "
                             f"is it an image segmentation model? {_FIX}")
        fixed = [d for d in shape[2:] if isinstance(d, int)]
        if any(d != self.input_size for d in fixed):
            raise ValueError(f"{model} takes {shape[2]} x {shape[3]} inputs, not input_size={self.input_size}: "
                             f"pass input_size={fixed[0]}")
        self.input_name = first.name

    def probability(self, image: np.ndarray) -> np.ndarray:
        """The uint8 H x W mask rembg's session returns, before post-processing."""
        feed = {self.input_name: rembg_input(image, self.mean, self.input_size)}
        prediction = self.session.run(None, feed)[0]
        return rembg_mask(prediction, *image.shape[:2])

    def predict(self, image: np.ndarray) -> np.ndarray:
        mask = self.probability(image)
        if self.post_process:
            mask = post_process_mask(mask)
        return mask != 0


FOREGROUND_MODELS = {"isnet": ISNetForeground}


def build_foreground(name: str, model: str | Path, **options) -> ForegroundModel:
    """A foreground model by name (``isnet``), its file at ``model`` (local path or s3:// URI)."""
    if name not in FOREGROUND_MODELS:
        raise ValueError(f"unknown foreground model {name!r}; choose one of {', '.join(FOREGROUND_MODELS)}")
    return FOREGROUND_MODELS[name](model, **options)
