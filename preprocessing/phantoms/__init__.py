"""Synthetic phantoms written in the raw layouts of ACDC, CAMUS and HC18.

Array-level generators draw one case from a ``numpy.random.Generator``;
writers lay cases out on disk exactly as the public downloads do (file names,
formats, headers, side files), so that every dataset pipeline, the demo and
backbone pretraining run without downloaded data.

Anatomy is drawn in millimetres and rasterised on the case's own grid, so an
anisotropic spacing distorts shapes in pixel space as it does in the real
files. Intensities follow each modality's look (bright blood and dark
myocardium in cine MRI; dark cavities, bright walls and Rayleigh speckle in a
fan for echocardiography; a bright broken skull ring for fetal ultrasound),
with smooth bias fields, partial-volume blur and noise so that no structure is
a pure constant.

Layout facts mimicked from the real releases:
- ACDC NIfTI: sform code 2 with affine diag(-1, -1, 1) *without* the spacing,
  qform code 0, spacing only in pixdim, xyzt_units 0 (so spacing must be read
  from ``header.get_zooms()``, not from ``affine``); int16 or float32 images,
  uint8 labels; ``Info.cfg`` with ED, ES, Group, Height, NbFrame, Weight.
- CAMUS MetaImage: (1, H, W) uint8 arrays, ITK size (W, H, 1), spacing
  (sx, sy, 10 * sy), zero origin, identity direction; ``Info_2CH.cfg`` and
  ``Info_4CH.cfg``.
- HC18: 800 x 540 8-bit grey PNGs, the annotation a 2-3 px ellipse outline of
  value 255, and a CSV with CRLF line endings and no final line break.
"""

from preprocessing.phantoms.acdc import ACDC_GROUPS, AcdcPhantom, acdc_case, acdc_volume, write_acdc
from preprocessing.phantoms.camus import (
    CAMUS_QUALITIES,
    CAMUS_VIEWS,
    CamusPhantom,
    camus_patient,
    camus_view,
    write_camus,
)
from preprocessing.phantoms.hc18 import HC18_CSV_HEADER, HC18_SHAPE, Hc18Phantom, hc18_image, write_hc18
from preprocessing.phantoms.shared import PHASES, ramanujan_perimeter

__all__ = [
    "ACDC_GROUPS",
    "CAMUS_QUALITIES",
    "CAMUS_VIEWS",
    "HC18_CSV_HEADER",
    "HC18_SHAPE",
    "PHASES",
    "AcdcPhantom",
    "CamusPhantom",
    "Hc18Phantom",
    "acdc_case",
    "acdc_volume",
    "camus_patient",
    "camus_view",
    "hc18_image",
    "ramanujan_perimeter",
    "write_acdc",
    "write_camus",
    "write_hc18",
]
