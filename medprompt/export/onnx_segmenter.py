"""`medprompt export RUN --onnx FILE`: the trained segmenter as ONNX graphs, to deploy without medprompt or PyTorch.

    FILE                      first pass: `slice` [1,H,W] float32 (a preprocessed slice, any intensity range) ->
                              `probabilities` [1,H,W] and the image `embeddings` [1,C,h,w]
    FILE.second_pass.onnx     (runs whose recipe has the second pass) `embeddings` and `box` [1,4] float32
                              (x_min, y_min, x_max, y_max in slice pixels) -> `probabilities` [1,H,W]
    FILE.json                 the slice size, the threshold and the second pass's box rule

Between the two graphs the box is taken from the first mask (probabilities > 0.5): the box around its
components of at least `min_island` x the largest one's area, widened by `box_margin` x the slice's longer side
and clipped to the slice; an empty first mask is final as it is. The graphs are traced on the CPU in fp32 from
the eager PyTorch modules (the encoder included), at the run's slice size.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medprompt.backbones.encoder_export import OPSET
from medprompt.common.atomic import atomic_path
from medprompt.common.errors import MedpromptError
from medprompt.data.boxes import main_box
from medprompt.methods import Method, Slices
from medprompt.methods.refinement import RefineConfig, prompt_box
from medprompt.methods.run_dir import TrainedModel

THRESHOLD = 0.5


class FirstPass(nn.Module):
    """A preprocessed slice -> the method's probabilities on it, and the embeddings the second pass reuses."""

    def __init__(self, method: Method):
        super().__init__()
        self.method = method

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        backbone = self.method.backbone
        size = tuple(image.shape[-2:])
        frames = backbone.spec.preprocess(image)
        embeddings = backbone.image_encoder(frames)
        low_res = backbone.spec.low_res_images(image) if "images" in self.method.reads else None
        logits = self.method(Slices(embeddings, low_res, size))
        return torch.sigmoid(backbone.logits_to_image(logits, size))[:, 0], embeddings


class SecondPass(nn.Module):
    """Embeddings and one box on the slice -> the probabilities of the method's decoder prompted with it."""

    def __init__(self, method: Method, size: tuple[int, int]):
        super().__init__()
        self.method, self.size = method, size

    def forward(self, embeddings: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        backbone = self.method.backbone
        sparse, dense = backbone.embed_boxes(box, self.size)
        logits = self.method.decode(embeddings, sparse, dense)
        return torch.sigmoid(backbone.logits_to_image(logits, self.size))[:, 0]


def second_pass_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".onnx") + ".second_pass.onnx")


def check_onnx_path(path: str | os.PathLike) -> Path:
    """The graphs' path, refused before any work unless it names a FILE.onnx in an existing folder."""
    path = Path(path)
    if path.suffix != ".onnx":
        raise MedpromptError(f"--onnx {path}: name the file FILE.onnx")
    if not path.parent.is_dir():
        raise MedpromptError(f"--onnx {path}: the folder {path.parent} does not exist")
    return path


def export_onnx(model: TrainedModel, path: str | os.PathLike) -> list[Path]:
    """Write the segmenter's graphs and their description next to `path`; returns the files written."""
    try:
        import onnx  # noqa: F401 - torch's exporter needs it
    except ImportError:
        raise MedpromptError("--onnx needs the onnx package: pip install onnx") from None
    path = check_onnx_path(path)
    method, size = model.method, tuple(model.config["dataset"]["slice_shape"])
    if method.needs_boxes:
        raise MedpromptError(f"--onnx: the run's method {method.name} prompts with the true boxes; nothing to deploy")
    if model.orientations != "none":
        raise MedpromptError("--onnx: a first pass averaged over orientations is not exported; predict with medprompt")
    if method.backbone.device.type != "cpu":
        raise MedpromptError("--onnx: export on the CPU (--device cpu)")
    image = torch.zeros(1, *size)
    written = [path]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python control flow, fixed at this slice size
        with atomic_path(path) as tmp:
            torch.onnx.export(FirstPass(method).eval(), (image,), str(tmp), dynamo=False, opset_version=OPSET,
                              input_names=["slice"], output_names=["probabilities", "embeddings"],
                              external_data=False)
        if model.refine.enabled:
            embeddings = method.backbone.image_encoder(method.backbone.spec.preprocess(image))
            box = torch.tensor([[0.0, 0.0, size[1] - 1.0, size[0] - 1.0]])
            with atomic_path(second_pass_path(path)) as tmp:
                torch.onnx.export(SecondPass(method, size).eval(), (embeddings, box), str(tmp), dynamo=False,
                                  opset_version=OPSET, input_names=["embeddings", "box"],
                                  output_names=["probabilities"], external_data=False)
            written.append(second_pass_path(path))
    description = {"slice_shape": list(size), "threshold": THRESHOLD, "first_pass": path.name,
                   "second_pass": second_pass_path(path).name if model.refine.enabled else None,
                   "min_island": model.refine.min_island, "box_margin": model.refine.box_margin,
                   "backbone": model.config["backbone"]["id"], "method": method.name}
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(description, indent=2) + "\n")
    return [*written, path.with_suffix(".json")]


class OnnxSegmenter:
    """The exported graphs run by ONNX Runtime, with the box rule between them: a reference for deployments."""

    def __init__(self, path: str | os.PathLike):
        try:
            import onnxruntime as ort
        except ImportError:
            raise MedpromptError("running the ONNX segmenter needs onnxruntime: pip install onnxruntime") from None
        path = Path(path)
        self.description = json.loads(path.with_suffix(".json").read_text())
        options = ["CPUExecutionProvider"]
        self.first = ort.InferenceSession(str(path), providers=options)
        second = self.description["second_pass"]
        self.second = ort.InferenceSession(str(path.with_name(second)), providers=options) if second else None

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Probabilities [H,W] for one preprocessed slice [H,W]."""
        probabilities, embeddings = self.first.run(None, {"slice": image[None].astype(np.float32)})
        if self.second is None:
            return probabilities[0]
        d = self.description
        rule = RefineConfig(min_island=d["min_island"], box_margin=d["box_margin"])
        box = prompt_box(main_box(probabilities[0] > d["threshold"], rule.min_island), rule, tuple(d["slice_shape"]))
        if box is None:
            return probabilities[0]
        return self.second.run(None, {"embeddings": embeddings, "box": box[None].astype(np.float32)})[0][0]
