"""The official segment-anything model classes, imported without torchvision.

`import segment_anything` runs the package's `__init__`, which imports the
automatic mask generator and with it torchvision. The modeling subpackage needs
neither, so it is loaded here on its own under a private module name.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from medprompt.common.errors import MedpromptError

_PRIVATE_NAME = "medprompt._segment_anything_modeling"


def _load_modeling() -> ModuleType:
    if _PRIVATE_NAME in sys.modules:
        return sys.modules[_PRIVATE_NAME]
    spec = importlib.util.find_spec("segment_anything")
    if spec is None or not spec.submodule_search_locations:
        raise MedpromptError("the `segment-anything` package is not installed (pip install segment-anything)")
    package_dir = Path(next(iter(spec.submodule_search_locations))) / "modeling"
    modeling_spec = importlib.util.spec_from_file_location(
        _PRIVATE_NAME, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
    )
    module = importlib.util.module_from_spec(modeling_spec)
    sys.modules[_PRIVATE_NAME] = module
    modeling_spec.loader.exec_module(module)
    return module


modeling = _load_modeling()
Sam = modeling.Sam
ImageEncoderViT = modeling.ImageEncoderViT
PromptEncoder = modeling.PromptEncoder
MaskDecoder = modeling.MaskDecoder
TwoWayTransformer = modeling.TwoWayTransformer
LayerNorm2d = modeling.common.LayerNorm2d
