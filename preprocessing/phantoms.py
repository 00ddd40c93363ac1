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

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

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

PHASES = ("ED", "ES")
ACDC_GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")
CAMUS_VIEWS = ("2CH", "4CH")
CAMUS_QUALITIES = ("Good", "Medium", "Poor")
HC18_SHAPE = (540, 800)
HC18_CSV_HEADER = "filename,pixel size(mm),head circumference (mm)"

# The sform of the ACDC release: axes flipped in x and y, unit scale (spacing lives in pixdim).
_ACDC_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])

# Per group: LV basal radius (mm), wall thickness (mm), ES/ED LV radius ratio, RV depth (mm).
_ACDC_ANATOMY: dict[str, tuple[tuple[float, float], ...]] = {
    "NOR": ((22.0, 27.0), (7.0, 9.0), (0.60, 0.70), (12.0, 18.0)),
    "DCM": ((29.0, 35.0), (5.5, 7.0), (0.85, 0.92), (12.0, 18.0)),
    "HCM": ((18.0, 23.0), (10.0, 13.0), (0.45, 0.60), (11.0, 16.0)),
    "MINF": ((26.0, 32.0), (6.0, 8.5), (0.78, 0.88), (12.0, 18.0)),
    "RV": ((21.0, 26.0), (7.0, 9.0), (0.62, 0.72), (20.0, 28.0)),
}


# ---------------------------------------------------------------- shared helpers


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Smooth random field in [-1, 1] with features about `scale_px` pixels wide (textures, bias)."""
    cells = (math.ceil(4 * shape[0] / scale_px) + 2, math.ceil(4 * shape[1] / scale_px) + 2)
    coarse = cv2.GaussianBlur(rng.standard_normal(size=cells).astype(np.float32), (0, 0), 2.0)
    coarse /= 2.0 * coarse.std() + 1e-6
    field = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return np.clip(field, -1.0, 1.0)


def _speckle(
    rng: np.random.Generator, shape: tuple[int, int], sigma_rows: float, sigma_cols: float, looks: int = 1
) -> np.ndarray:
    """Speckle of mean 1: magnitude of blurred complex Gaussian noise (Rayleigh), averaged over `looks`."""
    parts = rng.standard_normal(size=(2 * looks, *shape)).astype(np.float32)
    for k in range(2 * looks):
        parts[k] = cv2.GaussianBlur(parts[k], (0, 0), sigmaX=sigma_cols, sigmaY=sigma_rows)
    magnitude = sum(np.hypot(parts[2 * k], parts[2 * k + 1]) for k in range(looks))
    return magnitude / magnitude.mean()


def _ellipse_rho(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float, angle: float
) -> np.ndarray:
    """Normalised elliptic radius of points (1 on the boundary; `a` along `angle` in radians)."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - cx, y - cy
    u = dx * c + dy * s
    v = dy * c - dx * s
    return np.sqrt((u / a) ** 2 + (v / b) ** 2)


def _grid(shape: tuple[int, int], step_rows: float, step_cols: float) -> tuple[np.ndarray, np.ndarray]:
    """Broadcastable millimetre coordinates of pixel centres: (rows as (H,1), cols as (1,W))."""
    rows = (np.arange(shape[0], dtype=np.float32) * step_rows)[:, None]
    cols = (np.arange(shape[1], dtype=np.float32) * step_cols)[None, :]
    return rows, cols


def _distance_mm(mask: np.ndarray, spacing_rows: float, spacing_cols: float, reach_mm: float) -> np.ndarray:
    """Distance in mm to `mask` (inf beyond `reach_mm` of its bounding box), computed on a crop for speed."""
    out = np.full(mask.shape, np.inf, dtype=np.float32)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return out
    mr, mc = math.ceil(reach_mm / spacing_rows) + 1, math.ceil(reach_mm / spacing_cols) + 1
    r0, r1 = max(rows.min() - mr, 0), min(rows.max() + mr + 1, mask.shape[0])
    c0, c1 = max(cols.min() - mc, 0), min(cols.max() + mc + 1, mask.shape[1])
    crop = ~mask[r0:r1, c0:c1]
    out[r0:r1, c0:c1] = ndimage.distance_transform_edt(crop, sampling=(spacing_rows, spacing_cols))
    return out


def ramanujan_perimeter(a: float, b: float) -> float:
    """Ellipse perimeter from its semi-axes by Ramanujan's second approximation (as HC18 uses)."""
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1.0 + 3.0 * h / (10.0 + math.sqrt(4.0 - 3.0 * h)))


def _write_cfg(path: Path, items: dict[str, object]) -> None:
    """Write a `key: value` file like the releases' Info.cfg (LF endings, final newline)."""
    path.write_bytes("".join(f"{key}: {value}\n" for key, value in items.items()).encode("ascii"))


# ---------------------------------------------------------------------- ACDC


@dataclass(frozen=True)
class AcdcPhantom:
    """One ACDC-like short-axis frame: image and labels (X, Y, Z) and voxel spacing in mm."""

    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]


# Per slice or volume: label map, RV free wall, pericardial fat, papillary muscles.
_HeartLayers = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class _AcdcHeart:
    """One patient's end-diastolic heart per slice, in mm, plus how it contracts at ES."""

    centres: np.ndarray  # (Z, 2) LV centre in (X, Y) millimetres
    lv_radius: np.ndarray  # (Z,) LV cavity radius, 0 where no cavity
    outer_radius: np.ndarray  # (Z,) epicardial radius, 0 where no heart
    rv_depth: np.ndarray  # (Z,) RV cavity depth beyond the septum, 0 where no RV
    rv_angle: float
    rv_spread: float
    ellipticity: float
    tilt: float
    es_lv: float
    es_rv: float
    papillary_angles: tuple[float, float]
    fat_angle: float
    fat_span: float


@dataclass(frozen=True)
class _AcdcScene:
    """Everything about one ACDC-like patient that ED and ES share."""

    spacing: tuple[float, float, float]
    dtype: type
    background: np.ndarray  # (X, Y, Z) relative intensities of everything but the heart
    bias: np.ndarray  # (X, Y, Z) smooth multiplicative coil field
    cut: np.ndarray  # (X, Y) zero-filled region left by reslicing, as at real image borders
    heart: _AcdcHeart
    layers: dict[str, _HeartLayers]  # per phase: label, RV wall, pericardial fat, papillary muscles
    blood: float
    rv_blood: float
    myocardium: float
    scale: float
    noise: float
    blur_px: float


def _acdc_heart(
    rng: np.random.Generator, group: str, n_slices: int, centre: np.ndarray, spacing: float
) -> _AcdcHeart:
    """Draw an ED heart that shrinks from base (slice 0) to apex, RV vanishing before the apex."""
    radius_range, wall_range, es_range, rv_range = _ACDC_ANATOMY[group]
    empty_apex = n_slices >= 7 and rng.random() < 0.3
    n_heart = n_slices - 1 if empty_apex else n_slices
    u = np.arange(n_slices) / (n_heart - 1)
    apex_at = rng.uniform(1.0, 1.15)
    lv = rng.uniform(*radius_range) * np.sqrt(np.clip(1.0 - (u / apex_at) ** 2, 0.0, None))
    lv *= 1.0 + rng.uniform(-0.03, 0.03, size=n_slices)
    lv[lv < 1.5 * spacing] = 0.0
    outer = lv + rng.uniform(*wall_range) * (1.0 - 0.2 * u)
    outer[u > 1.0] = 0.0
    rv_end = rng.uniform(0.65, 0.88)
    rv = rng.uniform(*rv_range) * np.sqrt(np.clip(1.0 - (u / rv_end) ** 2, 0.0, None))
    rv[rv < 3.0] = 0.0
    drift = rng.normal(0.0, 4.0, size=2) * u[:, None]
    wander = np.cumsum(rng.normal(0.0, 1.0, size=(n_slices, 2)), axis=0)
    rv_angle = rng.uniform(-0.9, 0.9) - 0.75 * math.pi
    return _AcdcHeart(
        centres=centre[None, :] + drift + wander,
        lv_radius=lv,
        outer_radius=outer,
        rv_depth=rv,
        rv_angle=rv_angle,
        rv_spread=rng.uniform(1.15, 1.4),
        ellipticity=rng.uniform(0.0, 0.08),
        tilt=rng.uniform(0.0, math.pi),
        es_lv=rng.uniform(*es_range),
        es_rv=rng.uniform(0.55, 0.75) if group != "RV" else rng.uniform(0.75, 0.9),
        papillary_angles=(rv_angle + math.pi + rng.uniform(-1.2, -0.6), rv_angle + math.pi + rng.uniform(0.6, 1.2)),
        fat_angle=rng.uniform(0.0, 2.0 * math.pi),
        fat_span=rng.uniform(1.5, 3.5),
    )


def _acdc_heart_slice(x: np.ndarray, y: np.ndarray, heart: _AcdcHeart, z: int, phase: str) -> _HeartLayers:
    """Rasterise one slice: label map (1 RV, 2 myo, 3 LV) and masks of RV wall, fat and papillary muscles."""
    cx, cy = heart.centres[z]
    r_lv, r_out, depth = heart.lv_radius[z], heart.outer_radius[z], heart.rv_depth[z]
    if phase == "ES":
        r_es = r_lv * heart.es_lv
        r_out = math.sqrt(max(r_out**2 - r_lv**2 + r_es**2, 0.0))
        r_lv, depth = r_es, depth * heart.es_rv
    shape = np.broadcast_shapes(x.shape, y.shape)
    label = np.zeros(shape, dtype=np.uint8)
    empty = np.zeros(shape, dtype=bool)
    if r_out <= 0.0:
        return label, empty, empty, empty
    e, tilt = heart.ellipticity, heart.tilt
    rho_out = _ellipse_rho(x, y, cx, cy, r_out * (1 + e), r_out * (1 - e), tilt)
    outside_heart = rho_out >= 1.0
    label[~outside_heart] = 2
    papillary = empty
    if r_lv > 0.0:
        label[_ellipse_rho(x, y, cx, cy, r_lv * (1 + e), r_lv * (1 - e), tilt) < 1.0] = 3
        if 8.0 < r_lv < 0.9 * heart.lv_radius.max():
            size = 0.13 * r_lv if phase == "ED" else 0.2 * r_lv
            papillary = np.zeros(shape, dtype=bool)
            for angle in heart.papillary_angles:
                px, py = cx + 0.7 * r_lv * math.cos(angle), cy + 0.7 * r_lv * math.sin(angle)
                papillary |= _ellipse_rho(x, y, px, py, size, size, 0.0) < 1.0
            papillary &= label == 3
    rv_wall = empty
    if depth > 0.0:
        phi, wall = heart.rv_angle, 3.0
        offset = 0.5 * (0.5 * r_out + depth)
        half_length, half_width = 0.5 * (1.5 * r_out + depth), heart.rv_spread * r_out
        rx, ry = cx + offset * math.cos(phi), cy + offset * math.sin(phi)
        rv = (_ellipse_rho(x, y, rx, ry, half_length, half_width, phi) < 1.0) & outside_heart
        label[rv] = 1
        rho_wall = _ellipse_rho(x, y, rx, ry, half_length + wall, half_width + wall, phi)
        rv_wall = (rho_wall < 1.0) & outside_heart & ~rv
    relative = (np.arctan2(y - cy, x - cx) - heart.fat_angle + math.pi) % (2.0 * math.pi) - math.pi
    fat = outside_heart & (rho_out < 1.0 + 3.5 / r_out) & (np.abs(relative) < heart.fat_span / 2)
    fat &= (label == 0) & ~rv_wall
    return label, rv_wall, fat, papillary


def _window(centre: float, reach: float, step: float, size: int) -> slice:
    """Index range of grid points within `reach` mm of `centre` along one axis."""
    return slice(max(0, math.floor((centre - reach) / step)), min(size, math.ceil((centre + reach) / step) + 1))


def _acdc_heart_layers(shape: tuple[int, int, int], spacing: float, heart: _AcdcHeart, phase: str) -> _HeartLayers:
    """Heart layers of the whole volume at `phase`, each slice rasterised only in a window around the heart."""
    x, y = _grid(shape[:2], spacing, spacing)
    layers = (np.zeros(shape, np.uint8), np.zeros(shape, bool), np.zeros(shape, bool), np.zeros(shape, bool))
    for z in range(shape[2]):
        cx, cy = heart.centres[z]
        reach = 1.7 * heart.outer_radius[z] + heart.rv_depth[z] + 6.0
        rows, cols = _window(cx, reach, spacing, shape[0]), _window(cy, reach, spacing, shape[1])
        for volume, part in zip(layers, _acdc_heart_slice(x[rows], y[:, cols], heart, z, phase)):
            volume[rows, cols, z] = part
    return layers


def _acdc_background(
    rng: np.random.Generator, shape: tuple[int, int, int], spacing: float, heart: _AcdcHeart
) -> np.ndarray:
    """Thorax around the heart: fat-lined body, muscle, lungs, liver, aorta and organ blobs, air outside."""
    nx, ny, nz = shape
    x, y = _grid((nx, ny), spacing, spacing)
    fov = np.array([nx * spacing, ny * spacing])
    organic = 1.0 + 0.12 * _smooth_noise(rng, (nx, ny), 30.0 / spacing)
    body_c = fov / 2 + rng.uniform(-0.05, 0.05, size=2) * fov
    body_a, body_b = rng.uniform(0.42, 0.55) * fov[0], rng.uniform(0.5, 0.65) * fov[1]
    rho_body = _ellipse_rho(x, y, *body_c, body_a, body_b, rng.uniform(-0.2, 0.2))
    fat_mm, muscle_mm = rng.uniform(6.0, 16.0), rng.uniform(5.0, 12.0)
    inner = 1.0 - (fat_mm + muscle_mm) / min(body_a, body_b)
    fat_edge = 1.0 - fat_mm / min(body_a, body_b)
    in_body = rho_body < inner
    centre = heart.centres.mean(axis=0)
    reach = heart.outer_radius.max()
    phi = heart.rv_angle

    def organ(direction: float, distance: float, a: float, b: float, angle: float) -> np.ndarray:
        """Organic-edged elliptic radius of an organ placed relative to the heart."""
        cx, cy = centre[0] + distance * math.cos(direction), centre[1] + distance * math.sin(direction)
        return _ellipse_rho(x, y, cx, cy, a, b, angle) * organic

    lungs, vessels = [], []
    for side in (-1.0, 1.0):
        direction = phi + side * rng.uniform(1.7, 2.3)
        la, lb = rng.uniform(50.0, 80.0), rng.uniform(32.0, 50.0)
        distance = reach + 0.7 * lb + rng.uniform(0.0, 10.0)
        lungs.append(organ(direction, distance, la, lb, direction + math.pi / 2))
        for _ in range(4):
            along, across = rng.uniform(-0.4, 0.4) * la, rng.uniform(-0.4, 0.4) * lb
            vx = centre[0] + distance * math.cos(direction) - along * math.sin(direction) + across * math.cos(direction)
            vy = centre[1] + distance * math.sin(direction) + along * math.cos(direction) + across * math.sin(direction)
            radius = rng.uniform(1.2, 2.5)
            vessels.append((len(lungs) - 1, _ellipse_rho(x, y, vx, vy, radius, radius, 0.0) < 1.0))
    aorta_radius = rng.uniform(8.0, 12.0)
    aorta = organ(phi + math.pi + rng.uniform(-0.6, 0.6), reach + rng.uniform(14.0, 24.0), aorta_radius, aorta_radius, 0.0)
    liver = organ(phi + math.pi + rng.uniform(-1.5, 1.5), reach + rng.uniform(40.0, 60.0),
                  rng.uniform(55.0, 80.0), rng.uniform(40.0, 55.0), rng.uniform(0.0, math.pi))
    blobs = [
        (organ(rng.uniform(0.0, 2.0 * math.pi), reach + rng.uniform(30.0, 80.0), rng.uniform(8.0, 25.0),
               rng.uniform(6.0, 18.0), rng.uniform(0.0, math.pi)), rng.uniform(0.1, 0.85))
        for _ in range(int(rng.integers(5, 10)))
    ]
    tissue, fat, muscle = rng.uniform(0.38, 0.48), rng.uniform(0.80, 0.95), rng.uniform(0.22, 0.32)
    lung, liver_level = rng.uniform(0.03, 0.08), rng.uniform(0.50, 0.60)
    out = np.empty(shape, dtype=np.float32)
    for z in range(nz):
        u = z / max(nz - 1, 1)
        tex = 0.1 * _smooth_noise(rng, (nx, ny), 20.0 / spacing) + 0.05 * _smooth_noise(rng, (nx, ny), 6.0 / spacing)
        sl = np.where(in_body, tissue + tex, np.float32(0.015))
        sl = np.where((rho_body >= inner) & (rho_body < fat_edge), muscle + 0.5 * tex, sl)
        sl = np.where((rho_body >= fat_edge) & (rho_body < 1.0), fat + tex, sl)
        sl = np.where(in_body & (liver < 0.35 + 0.65 * u), liver_level + 0.5 * tex, sl)
        for rho, level in blobs:
            sl = np.where(in_body & (rho < 1.0), level + 0.5 * tex, sl)
        in_lungs = [in_body & (rho < 1.0 - 0.35 * u) for rho in lungs]
        for inside in in_lungs:
            sl = np.where(inside, lung + 0.2 * tex, sl)
        for which, vessel in vessels:
            sl = np.where(in_lungs[which] & vessel, np.float32(0.6), sl)
        sl = np.where(in_body & (aorta < 1.0), 0.85 + 0.3 * tex, sl)
        out[:, :, z] = sl
    return out


def _acdc_cut(rng: np.random.Generator, shape: tuple[int, int], keep: np.ndarray) -> np.ndarray:
    """A zero-filled band along one image edge (reslicing border), never over a labelled voxel."""
    cut = np.zeros(shape, dtype=bool)
    if rng.random() < 0.5:
        return cut
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    side = int(rng.integers(4))
    coord, across, size = [(rows, cols, shape[0]), (cols, rows, shape[1])][side % 2]
    coord = coord if side < 2 else (size - 1) - coord
    width = rng.uniform(0.03, 0.12) * size + rng.uniform(-0.06, 0.06) * (across - across.mean())
    cut = coord < width
    return np.zeros(shape, dtype=bool) if (cut & keep).any() else cut


def _acdc_scene(rng: np.random.Generator, group: str) -> _AcdcScene:
    """Draw one patient's grid, spacing, dtype, thorax and heart."""
    shape = (int(rng.integers(180, 261)), int(rng.integers(200, 261)), int(rng.integers(6, 13)))
    spacing = (float(np.round(rng.uniform(1.2, 1.9), 4)),) * 2 + (float(rng.choice([5.0, 6.5, 7.0, 8.0, 10.0, 10.0])),)
    fov = np.array(shape[:2]) * spacing[0]
    centre = fov / 2 + rng.uniform(-0.1, 0.1, size=2) * fov
    heart = _acdc_heart(rng, group, shape[2], centre, spacing[0])
    background = _acdc_background(rng, shape, spacing[0], heart)
    coil = 0.2 * _smooth_noise(rng, shape[:2], 0.5 * max(shape[:2]))
    ramp = np.linspace(-0.15, 0.15, shape[0], dtype=np.float32)[:, None] * math.cos(rng.uniform(0, 2 * math.pi))
    slice_gain = rng.uniform(0.92, 1.08, size=shape[2]).astype(np.float32)
    bias = np.exp(coil + ramp)[:, :, None] * slice_gain[None, None, :]
    layers = {phase: _acdc_heart_layers(shape, spacing[0], heart, phase) for phase in PHASES}
    keep = (layers["ED"][0] > 0).any(axis=2) | (layers["ES"][0] > 0).any(axis=2)
    return _AcdcScene(
        spacing=spacing,
        dtype=np.float32 if rng.random() < 0.35 else np.int16,
        background=background,
        bias=bias.astype(np.float32),
        cut=_acdc_cut(rng, shape[:2], ndimage.binary_dilation(keep, iterations=3)),
        heart=heart,
        layers=layers,
        blood=rng.uniform(0.95, 1.05),
        rv_blood=rng.uniform(0.85, 1.0),
        myocardium=rng.uniform(0.18, 0.27),
        scale=rng.uniform(350.0, 750.0),
        noise=rng.uniform(0.015, 0.035),
        blur_px=rng.uniform(0.6, 1.0),
    )


def _render_acdc(rng: np.random.Generator, scene: _AcdcScene, phase: str) -> AcdcPhantom:
    """Paint the heart at `phase` into the thorax, blur, apply the coil field and Rician noise."""
    nx, ny, nz = scene.background.shape
    label, rv_walls, fats, papillaries = scene.layers[phase]
    image = np.empty((nx, ny, nz), dtype=np.float32)
    for z in range(nz):
        lab, rv_wall, fat, papillary = label[:, :, z], rv_walls[:, :, z], fats[:, :, z], papillaries[:, :, z]
        texture = 1.0 + 0.05 * _smooth_noise(rng, (nx, ny), 8.0 / scene.spacing[0])
        sl = scene.background[:, :, z].copy()
        sl[fat] = 0.85
        sl[rv_wall] = scene.myocardium
        sl[lab == 1] = scene.rv_blood
        sl[lab == 2] = scene.myocardium
        sl[lab == 3] = scene.blood
        sl[papillary] = scene.myocardium * 1.2
        image[:, :, z] = cv2.GaussianBlur(sl * texture, (0, 0), scene.blur_px)
    image *= scene.bias * scene.scale
    sigma = scene.noise * scene.scale
    noisy = rng.normal(0.0, sigma, size=(2, *image.shape)).astype(np.float32)
    image = np.hypot(image + noisy[0], noisy[1])
    image[scene.cut] = 0.0
    if scene.dtype is np.int16:
        image = np.round(image).astype(np.int16)
    return AcdcPhantom(image=image, label=label.copy(), spacing=scene.spacing)


def acdc_case(rng: np.random.Generator, group: str | None = None) -> dict[str, AcdcPhantom]:
    """One ACDC-like patient: {'ED', 'ES'} frames sharing grid, spacing and thorax; ES is contracted."""
    group = str(rng.choice(ACDC_GROUPS)) if group is None else group
    scene = _acdc_scene(rng, group)
    return {phase: _render_acdc(rng, scene, phase) for phase in PHASES}


def acdc_volume(rng: np.random.Generator, phase: str = "ED", group: str | None = None) -> AcdcPhantom:
    """One ACDC-like short-axis volume at `phase` (labels 0 bg, 1 RV, 2 myocardium, 3 LV)."""
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    group = str(rng.choice(ACDC_GROUPS)) if group is None else group
    return _render_acdc(rng, _acdc_scene(rng, group), phase)


def _save_acdc_nifti(array: np.ndarray, spacing: tuple[float, float, float], path: Path) -> None:
    """Write a volume with the ACDC release's header: unit-scale flipped sform, spacing in pixdim only."""
    image = nib.Nifti1Image(array, _ACDC_AFFINE)
    image.header.set_qform(_ACDC_AFFINE, code=0)
    image.header.set_sform(_ACDC_AFFINE, code=2)
    image.header.set_zooms(spacing)
    nib.save(image, path)


def write_acdc(root: str | Path, n_patients: int = 6, seed: int = 0) -> Path:
    """Write `root/training/patientNNN/` folders laid out like the ACDC release; return `root`."""
    root = Path(root)
    for number in range(1, n_patients + 1):
        rng = np.random.default_rng([seed, number])
        group = ACDC_GROUPS[(number - 1) % len(ACDC_GROUPS)]
        case = acdc_case(rng, group)
        es_frame = int(rng.integers(8, 17))
        info = {
            "ED": 1,
            "ES": es_frame,
            "Group": group,
            "Height": f"{float(rng.integers(150, 195)):.1f}",
            "NbFrame": int(rng.integers(max(es_frame + 8, 20), 36)),
            "Weight": f"{float(rng.integers(45, 115)):.1f}",
        }
        folder = root / "training" / f"patient{number:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        _write_cfg(folder / "Info.cfg", info)
        for phase in PHASES:
            stem = f"patient{number:03d}_frame{info[phase]:02d}"
            frame = case[phase]
            _save_acdc_nifti(frame.image, frame.spacing, folder / f"{stem}.nii.gz")
            _save_acdc_nifti(frame.label, frame.spacing, folder / f"{stem}_gt.nii.gz")
    return root


# --------------------------------------------------------------------- CAMUS


@dataclass(frozen=True)
class CamusPhantom:
    """One CAMUS-like apical view: B-mode image and labels (H, W) and pixel spacing (sx, sy) in mm."""

    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float]
    quality: str = "Good"  # image quality it was rendered with, as Info_*.cfg reports it


@dataclass(frozen=True)
class _CamusFrame:
    """Acquisition shared by all views of one CAMUS-like patient."""

    shape: tuple[int, int]
    spacing: tuple[float, float]  # (sx, sy)
    half_angle: float  # fan half-opening, radians, in millimetre space
    quality: str


@dataclass(frozen=True)
class _CamusHeart:
    """One apical view's anatomy at end-diastole, in mm, with its end-systolic scalings and static textures."""

    view: str
    apex: tuple[float, float]  # (x, y) mm
    tilt: float
    length: float
    width: float
    power: float
    curve: float
    wobble: float
    wobble_phase: float
    wall: float
    la_length: float
    la_width: float
    es_length: float
    es_width: float
    side_width: float  # RV/RA width in 4CH; 0 in 2CH
    dropout_angle: float
    tissue: np.ndarray  # static echogenicity of the surroundings
    texture: np.ndarray  # static smooth field in [-1, 1] for walls and thickness


def _camus_frame(rng: np.random.Generator) -> _CamusFrame:
    """Draw image size, anisotropic spacing (sx about twice sy, as in CAMUS) and image quality."""
    rows = int(rng.integers(640, 921))
    cols = int(round(rows * rng.uniform(0.62, 0.72)))
    sy = round(float(rng.uniform(0.14, 0.155)), 3)
    sx = round(sy * 2.0 * float(rng.uniform(0.96, 1.0)), 3)
    quality = str(rng.choice(CAMUS_QUALITIES, p=[0.45, 0.4, 0.15]))
    half_angle = math.radians(rng.uniform(40.0, 46.0))
    return _CamusFrame(shape=(rows, cols), spacing=(sx, sy), half_angle=half_angle, quality=quality)


def _camus_heart(rng: np.random.Generator, frame: _CamusFrame, view: str) -> _CamusHeart:
    """Draw an apical 2CH or 4CH heart scaled to the imaging depth, apex near the top of the fan."""
    rows, cols = frame.shape
    sx, sy = frame.spacing
    depth = rows * sy
    length = depth * rng.uniform(0.48, 0.6)
    tissue = (
        rng.uniform(0.25, 0.38)
        + 0.2 * _smooth_noise(rng, frame.shape, 12.0 / sy)
        + 0.1 * _smooth_noise(rng, frame.shape, 3.0 / sy)
    )
    return _CamusHeart(
        view=view,
        apex=(cols * sx / 2 + rng.uniform(-8.0, 8.0), depth * rng.uniform(0.09, 0.18)),
        tilt=rng.uniform(-0.15, 0.15),
        length=length,
        width=length * rng.uniform(0.55, 0.7),
        power=rng.uniform(1.8, 2.6),
        curve=rng.uniform(-4.0, 4.0),
        wobble=rng.uniform(0.0, 0.05),
        wobble_phase=rng.uniform(0.0, 2.0 * math.pi),
        wall=rng.uniform(7.0, 11.0),
        la_length=depth * rng.uniform(0.25, 0.33),
        la_width=length * rng.uniform(0.45, 0.6),
        es_length=rng.uniform(0.85, 0.93),
        es_width=rng.uniform(0.65, 0.82),
        side_width=length * rng.uniform(0.35, 0.5) if view == "4CH" else 0.0,
        dropout_angle=rng.uniform(-0.6, 0.6),
        tissue=tissue.astype(np.float32),
        texture=_smooth_noise(rng, frame.shape, 6.0 / sy),
    )


@dataclass(frozen=True)
class _CamusMasks:
    """One view rasterised at one phase: label masks plus the LV-aligned coordinates the echo map needs."""

    lv: np.ndarray
    myo: np.ndarray
    la: np.ndarray
    side: np.ndarray  # RV and RA cavities (4CH), empty in 2CH
    dist: np.ndarray  # distance to the LV cavity, mm
    along: np.ndarray  # mm from the apex along the long axis
    rel: np.ndarray  # mm across the (curved) long axis
    half: np.ndarray  # LV half-width at each `along`, mm
    length: float  # apex to mitral plane, mm


def _half_width(frac: np.ndarray | float, width: float, power: float) -> np.ndarray | float:
    """LV cavity half-width at fraction `frac` of the long axis: a super-ellipse cap from the apex (0)."""
    return 0.5 * width * (1.0 - (1.0 - frac) ** power) ** (1.0 / power)


def _camus_masks(frame: _CamusFrame, heart: _CamusHeart, phase: str, x: np.ndarray, y: np.ndarray) -> _CamusMasks:
    """Rasterise LV, myocardium, LA (and RV/RA in 4CH) at `phase`; ES shortens and narrows the LV, thickens the wall."""
    es = phase == "ES"
    length = heart.length * (heart.es_length if es else 1.0)
    width = heart.width * (heart.es_width if es else 1.0)
    wall = heart.wall * (1.2 if es else 1.0)
    la_length = heart.la_length * (1.12 if es else 1.0)
    la_width = heart.la_width * (1.1 if es else 1.0)
    c, s = math.cos(heart.tilt), math.sin(heart.tilt)
    dx, dy = x - heart.apex[0], y - heart.apex[1]
    along = dx * s + dy * c
    across = dx * c - dy * s
    frac = np.clip(along / length, 0.0, 1.0)
    half = _half_width(frac, width, heart.power) * (1.0 - 0.12 * frac**4)
    half = half * (1.0 + heart.wobble * np.sin(2 * math.pi * frac + heart.wobble_phase))
    rel = across - heart.curve * np.sin(math.pi * frac)
    lv = (along >= 0.0) & (along <= length) & (np.abs(rel) <= half)
    sx, sy = frame.spacing
    dist = _distance_mm(lv, sy, sx, 1.4 * wall + 4.0)
    myo = (dist <= wall * (1.0 + 0.25 * heart.texture)) & ~lv & (along <= length)
    la_rho = np.hypot((along - length - 0.4 * la_length) / (0.6 * la_length), across / (0.5 * la_width))
    la = (la_rho < 1.0) & (along > length) & ~myo
    side = np.zeros(lv.shape, dtype=bool)
    if heart.view == "4CH":
        rv_offset = -(_half_width(0.62, width, heart.power) + wall + 2.5 + 0.5 * heart.side_width)
        rv = np.hypot((along - 0.62 * length) / (0.42 * length), (across - rv_offset) / (0.5 * heart.side_width)) < 1.0
        ra_offset = -(0.5 * la_width + 4.0 + 0.5 * heart.side_width)
        ra_along = length + 0.5 * la_length
        ra = np.hypot((along - ra_along) / (0.45 * la_length), (across - ra_offset) / (0.5 * heart.side_width)) < 1.0
        side = (rv | ra) & ~lv & ~myo & ~la & (dist > 2.0)
    return _CamusMasks(lv=lv, myo=myo, la=la, side=side, dist=dist, along=along, rel=rel, half=half, length=length)


def _fan(frame: _CamusFrame, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sector geometry: inside-fan mask, range (mm) and steering angle (rad) of every pixel."""
    apex_x = frame.shape[1] * frame.spacing[0] / 2
    dx, dy = x - apex_x, np.broadcast_to(y, np.broadcast_shapes(x.shape, y.shape))
    depth = frame.shape[0] * frame.spacing[1]
    radius = np.hypot(dx, dy)
    theta = np.arctan2(dx, dy)
    return (radius <= depth) & (np.abs(theta) <= frame.half_angle), radius, theta


def _polar_speckle(
    rng: np.random.Generator, frame: _CamusFrame, radius: np.ndarray, theta: np.ndarray
) -> np.ndarray:
    """Speckle drawn on the beam grid (range x angle) and scan-converted, so grains widen with depth."""
    depth = frame.shape[0] * frame.spacing[1]
    n_range, n_angle = int(depth / 0.35), 128
    grains = _speckle(rng, (n_range, n_angle), 1.0, 0.9)
    map_r = (radius / depth * (n_range - 1)).astype(np.float32)
    map_a = ((theta + frame.half_angle) / (2 * frame.half_angle) * (n_angle - 1)).astype(np.float32)
    return cv2.remap(grains, map_a, map_r, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _camus_echo(frame: _CamusFrame, heart: _CamusHeart, m: _CamusMasks, phase: str) -> np.ndarray:
    """Echogenicity before speckle: dark cavities, bright walls and pericardium, mitral leaflets, tissue."""
    poor = {"Good": 0.0, "Medium": 0.5, "Poor": 1.0}[frame.quality]
    cavity = 0.07 + 0.06 * poor + 0.03 * heart.texture
    above_plane = m.along <= m.length
    pericardium = (m.dist > 0) & (m.dist <= heart.wall * 1.2 + 5.0) & ~m.myo & above_plane & (m.rel > 0)
    echo = np.where(pericardium, 0.95 + 0.1 * heart.texture, heart.tissue)
    echo = np.where(m.side, cavity, echo)
    echo = np.where(m.myo, 0.8 - 0.1 * poor + 0.15 * heart.texture, echo)
    echo = np.where(m.lv | m.la, cavity, echo)
    if phase == "ES":
        closed = (np.abs(m.along - m.length) < 1.0) & (np.abs(m.rel) <= m.half)
        echo = np.where(closed, 0.55, echo)
    else:
        for side in (-1.0, 1.0):
            leaflet = np.abs(m.rel - side * (m.half - 0.5 * (m.length - m.along))) < 0.8
            echo = np.where(leaflet & (m.along > 0.82 * m.length) & above_plane, 0.5, echo)
    return echo


def _render_camus(rng: np.random.Generator, frame: _CamusFrame, heart: _CamusHeart, phase: str) -> CamusPhantom:
    """Echo map at `phase` with haze, depth gain and dropout, times scan-converted speckle, log-compressed in a fan."""
    sx, sy = frame.spacing
    y, x = _grid(frame.shape, sy, sx)
    fan, radius, theta = _fan(frame, x, y)
    masks = _camus_masks(frame, heart, phase, x, y)
    poor = {"Good": 0.0, "Medium": 0.5, "Poor": 1.0}[frame.quality]
    depth = frame.shape[0] * sy
    echo = _camus_echo(frame, heart, masks, phase) + (0.35 + 0.4 * poor) * np.exp(-radius / 12.0)
    echo = echo * (0.75 + 0.45 * radius / depth)
    echo = echo * (1.0 - (0.2 + 0.4 * poor) * np.exp(-(((theta - heart.dropout_angle) / 0.15) ** 2)))
    echo = echo * (0.55 + 0.45 * np.clip((frame.half_angle - np.abs(theta)) / math.radians(6.0), 0.0, 1.0))
    echo = cv2.GaussianBlur(np.maximum(echo, 0.02).astype(np.float32), (0, 0), sigmaX=0.5 / sx, sigmaY=0.5 / sy)
    intensity = echo * _polar_speckle(rng, frame, radius, theta) * rng.uniform(0.9, 1.1)
    image = 255.0 * np.log1p(12.0 * intensity) / math.log1p(12.0 * 1.3)
    image = cv2.GaussianBlur(np.clip(image, 0, 255).astype(np.float32), (0, 0), 0.6)
    image = np.where(fan, image, 0.0).astype(np.uint8)
    label = np.zeros(frame.shape, dtype=np.uint8)
    label[masks.myo] = 2
    label[masks.la] = 3
    label[masks.lv] = 1
    label[~fan] = 0
    return CamusPhantom(image=image, label=label, spacing=frame.spacing, quality=frame.quality)


def camus_view(rng: np.random.Generator, view: str = "2CH", phase: str = "ED") -> CamusPhantom:
    """One CAMUS-like apical view (labels 0 bg, 1 LV endocardium, 2 myocardium, 3 LA)."""
    if view not in CAMUS_VIEWS or phase not in PHASES:
        raise ValueError(f"view must be one of {CAMUS_VIEWS} and phase one of {PHASES}, got {view!r}, {phase!r}")
    frame = _camus_frame(rng)
    return _render_camus(rng, frame, _camus_heart(rng, frame, view), phase)


def camus_patient(rng: np.random.Generator) -> dict[str, CamusPhantom]:
    """One CAMUS-like patient: keys '2CH_ED', '2CH_ES', '4CH_ED', '4CH_ES', sharing size and spacing."""
    frame = _camus_frame(rng)
    views: dict[str, CamusPhantom] = {}
    for view in CAMUS_VIEWS:
        heart = _camus_heart(rng, frame, view)
        for phase in PHASES:
            views[f"{view}_{phase}"] = _render_camus(rng, frame, heart, phase)
    return views


def _lv_volume_ml(two: CamusPhantom, four: CamusPhantom) -> float:
    """Biplane area-length LV volume (ml) from the 2CH and 4CH masks at one phase."""
    sx, sy = two.spacing
    areas, lengths = [], []
    for view in (two, four):
        rows = np.nonzero((view.label == 1).any(axis=1))[0]
        areas.append(float((view.label == 1).sum()) * sx * sy)
        lengths.append(float(rows.max() - rows.min() + 1) * sy)
    return 8.0 / (3.0 * math.pi) * areas[0] * areas[1] / min(lengths) / 1000.0


def _save_mhd(array: np.ndarray, spacing: tuple[float, float], path: Path) -> None:
    """Write a 2D uint8 array as CAMUS does: a (1, H, W) MetaImage with spacing (sx, sy, 10 sy)."""
    image = sitk.GetImageFromArray(array[None, :, :])
    sx, sy = spacing
    image.SetSpacing((sx, sy, round(10.0 * sy, 6)))
    sitk.WriteImage(image, str(path), useCompression=False)


def write_camus(root: str | Path, n_patients: int = 4, seed: int = 0) -> Path:
    """Write `root/training/patientNNNN/` folders laid out like the CAMUS release; return `root`."""
    root = Path(root)
    for number in range(1, n_patients + 1):
        rng = np.random.default_rng([seed, number])
        views = camus_patient(rng)
        folder = root / "training" / f"patient{number:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for key, view in views.items():
            _save_mhd(view.image, view.spacing, folder / f"patient{number:04d}_{key}.mhd")
            _save_mhd(view.label, view.spacing, folder / f"patient{number:04d}_{key}_gt.mhd")
        edv = _lv_volume_ml(views["2CH_ED"], views["4CH_ED"])
        esv = _lv_volume_ml(views["2CH_ES"], views["4CH_ES"])
        sex, age = str(rng.choice(["F", "M"])), int(rng.integers(20, 90))
        quality = views["2CH_ED"].quality
        for name in CAMUS_VIEWS:
            n_frames = int(rng.integers(12, 26))
            _write_cfg(folder / f"Info_{name}.cfg", {
                "ED": 1, "ES": n_frames, "NbFrame": n_frames, "Sex": sex, "Age": age, "ImageQuality": quality,
                "LVedv": f"{edv:.1f}", "LVesv": f"{esv:.1f}", "LVef": f"{100.0 * (edv - esv) / edv:.1f}",
            })
    return root


# ---------------------------------------------------------------------- HC18


@dataclass(frozen=True)
class Hc18Phantom:
    """One HC18-like fetal head image with its annotation and the ellipse it was drawn from."""

    image: np.ndarray  # (540, 800) uint8
    outline: np.ndarray  # (540, 800) uint8, ellipse outline of value 255
    mask: np.ndarray  # (540, 800) uint8 0/1, the filled outline
    pixel_size: float  # mm
    circumference_mm: float  # Ramanujan perimeter of the drawn ellipse times pixel size
    center: tuple[float, float]  # (x, y) pixels, cv2 convention
    axes: tuple[float, float]  # semi-axes (a, b) in pixels, a along `angle`
    angle: float  # degrees, cv2 convention


def _quantise(value: float) -> float:
    """Round to the 1/16 px grid of cv2's drawing with shift=4, so stored parameters are the drawn ones."""
    return round(value * 16.0) / 16.0


def _hc18_ellipse(
    rng: np.random.Generator, pixel_size: float
) -> tuple[tuple[float, float], tuple[float, float], float]:
    """Draw a head ellipse inside the image whose circumference is 45-340 mm at `pixel_size`, on cv2's 1/16 px grid."""
    rows, cols = HC18_SHAPE
    ratio = rng.uniform(0.72, 0.9)
    per_unit = ramanujan_perimeter(1.0, ratio) * pixel_size
    a = rng.uniform(max(70.0, 45.0 / per_unit), min(205.0, 340.0 / per_unit))
    b = a * ratio
    angle = rng.uniform(0.0, 180.0)
    rad = math.radians(angle)
    ex = math.sqrt((a * math.cos(rad)) ** 2 + (b * math.sin(rad)) ** 2)
    ey = math.sqrt((a * math.sin(rad)) ** 2 + (b * math.cos(rad)) ** 2)
    cx = rng.uniform(ex + 15.0, cols - ex - 15.0)
    cy = rng.uniform(ey + 15.0, rows - ey - 15.0)
    return (_quantise(cx), _quantise(cy)), (_quantise(a), _quantise(b)), _quantise(angle)


def _draw_ellipse(center: tuple[float, float], axes: tuple[float, float], angle: float, thickness: int) -> np.ndarray:
    """Draw an ellipse (outline, or filled with thickness -1) of value 255 at sub-pixel precision."""
    canvas = np.zeros(HC18_SHAPE, dtype=np.uint8)
    c = (int(round(center[0] * 16)), int(round(center[1] * 16)))
    ax = (int(round(axes[0] * 16)), int(round(axes[1] * 16)))
    cv2.ellipse(canvas, c, ax, angle, 0.0, 360.0, 255, thickness, cv2.LINE_8, 4)
    return canvas


def _hc18_surroundings(
    rng: np.random.Generator,
    x: np.ndarray,
    y: np.ndarray,
    center: tuple[float, float],
    axes: tuple[float, float],
    rad: float,
) -> np.ndarray:
    """Layered maternal tissue, a dark amniotic-fluid pocket around the head and the fetal body beside it."""
    cx, cy = center
    a, b = axes
    tilt = rng.uniform(-0.3, 0.3)
    layers = np.sin(2 * math.pi * (y * math.cos(tilt) + x * math.sin(tilt)) / rng.uniform(40.0, 90.0) + rng.uniform(0, 6.3))
    echo = rng.uniform(0.25, 0.38) + 0.2 * _smooth_noise(rng, HC18_SHAPE, 80.0) + 0.08 * _smooth_noise(rng, HC18_SHAPE, 12.0)
    echo = echo + 0.08 * layers
    fluid_c = (cx + rng.uniform(-0.4, 0.4) * a, cy + rng.uniform(-0.3, 0.3) * b)
    fluid = _ellipse_rho(x, y, *fluid_c, a * rng.uniform(1.5, 2.2), b * rng.uniform(1.4, 1.9), rng.uniform(0, math.pi))
    fluid = fluid * (1.0 + 0.15 * _smooth_noise(rng, HC18_SHAPE, 80.0))
    echo = np.where(fluid < 1.0, 0.03 + 0.02 * _smooth_noise(rng, HC18_SHAPE, 20.0), echo)
    body_dir = rad + rng.choice([0.0, math.pi]) + rng.uniform(-0.5, 0.5)
    body_a = a * rng.uniform(0.8, 1.2)
    body_c = (cx + (a + 0.7 * body_a) * math.cos(body_dir), cy + (a + 0.7 * body_a) * math.sin(body_dir))
    body = _ellipse_rho(x, y, *body_c, body_a, b * rng.uniform(0.7, 1.0), body_dir) < 1.0
    return np.where(body, 0.3 + 0.1 * _smooth_noise(rng, HC18_SHAPE, 25.0), echo)


def _hc18_brain(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Brain in head coordinates (u along the major axis): broken midline echo, CSP, thalami, choroid plexus."""
    brain = 0.2 + 0.07 * _smooth_noise(rng, HC18_SHAPE, 30.0)
    gaps = _smooth_noise(rng, HC18_SHAPE, 25.0) > -0.3
    brain = np.where((np.abs(v) < 1.5) & (np.abs(u) < 0.85 * a) & gaps, 0.55, brain)
    side = rng.choice([-1.0, 1.0])
    brain = np.where(_ellipse_rho(u, v, side * 0.3 * a, 0.0, 0.12 * a, 0.06 * b, 0.0) < 1.0, 0.03, brain)
    for sign in (-1.0, 1.0):
        brain = np.where(_ellipse_rho(u, v, -side * 0.05 * a, sign * 0.17 * b, 0.17 * a, 0.1 * b, 0.0) < 1.0, 0.09, brain)
        if rng.random() < 0.7:
            plexus = (np.abs(v - sign * 0.4 * b) < 1.5) & (u * side > -0.65 * a) & (u * side < 0.1 * a) & gaps
            brain = np.where(plexus, 0.42, brain)
    return brain


def _hc18_skull(rng: np.random.Generator, rho: np.ndarray, polar: np.ndarray, b: float) -> np.ndarray:
    """Skull ring just inside the annotation: brightest where perpendicular to the (vertical) beam, with gaps."""
    thickness = rng.uniform(8.0, 16.0) / b
    ripples = sum(rng.uniform(0.0, 0.15) * np.cos(k * polar + rng.uniform(0, 6.3)) for k in range(2, 7))
    brightness = (0.5 + 0.5 * np.abs(np.sin(polar)) ** 1.5) * (1.0 + ripples)
    for _ in range(int(rng.integers(1, 4))):
        gap_at = rng.choice([0.0, math.pi]) + rng.uniform(-0.5, 0.5)
        offset = (polar - gap_at + math.pi) % (2.0 * math.pi) - math.pi
        brightness = brightness * (1.0 - 0.75 * np.exp(-((offset / rng.uniform(0.08, 0.2)) ** 2)))
    profile = np.exp(-0.5 * ((rho - (1.0 - 0.35 * thickness)) / (0.35 * thickness)) ** 2)
    return rng.uniform(1.1, 1.5) * brightness * profile


def _hc18_echo(
    rng: np.random.Generator, center: tuple[float, float], axes: tuple[float, float], angle: float
) -> np.ndarray:
    """Echogenicity map of a fetal head scan, with the acoustic shadow the skull casts below it."""
    y, x = _grid(HC18_SHAPE, 1.0, 1.0)
    cx, cy = center
    a, b = axes
    rad = math.radians(angle)
    echo = _hc18_surroundings(rng, x, y, center, axes, rad)
    u = (x - cx) * math.cos(rad) + (y - cy) * math.sin(rad)
    v = (y - cy) * math.cos(rad) - (x - cx) * math.sin(rad)
    rho = _ellipse_rho(x, y, cx, cy, a, b, rad)
    echo = np.where(rho < 1.0, _hc18_brain(rng, u, v, a, b), echo)
    echo = np.maximum(echo, _hc18_skull(rng, rho, np.arctan2(y - cy, x - cx), b))
    head = (rho < 1.0).astype(np.uint8)
    shadow = cv2.GaussianBlur((np.maximum.accumulate(head, axis=0) - head).astype(np.float32), (0, 0), 6.0)
    return echo * (1.0 - rng.uniform(0.25, 0.45) * shadow)


def _hc18_overlays(rng: np.random.Generator, image: np.ndarray, head_box: tuple[int, int, int, int]) -> np.ndarray:
    """Scanner-screen artefacts of the real images: black corner blocks and a grey-scale bar, away from the head."""
    x0, y0, x1, y1 = head_box
    rows, cols = image.shape
    image = image.copy()
    for corner in range(4):
        if rng.random() < 0.3:
            w, h = int(rng.integers(80, 200)), int(rng.integers(60, 170))
            left = 0 if corner % 2 == 0 else cols - w
            top = 0 if corner < 2 else rows - h
            if left + w < x0 - 10 or left > x1 + 10 or top + h < y0 - 10 or top > y1 + 10:
                image[top : top + h, left : left + w] = 0
    if rng.random() < 0.6 and (x0 > 16 or y0 > 170):
        image[20:160, 2:6] = np.linspace(255, 0, 140, dtype=np.float32).astype(np.uint8)[:, None]
    return image


def hc18_image(rng: np.random.Generator) -> Hc18Phantom:
    """One HC18-like fetal head ultrasound (540 x 800) with its outline annotation and circumference."""
    pixel_size = float(math.exp(rng.uniform(math.log(0.052), math.log(0.3))))
    center, axes, angle = _hc18_ellipse(rng, pixel_size)
    perimeter = ramanujan_perimeter(*axes)
    echo = cv2.GaussianBlur(np.maximum(_hc18_echo(rng, center, axes, angle), 0.01).astype(np.float32), (0, 0), 1.5)
    speckled = cv2.GaussianBlur(echo * _speckle(rng, HC18_SHAPE, 1.5, 2.8, looks=2), (0, 0), 0.8)
    image = np.clip(255.0 * np.clip(rng.uniform(0.8, 1.1) * speckled, 0.0, 1.0) ** 1.3, 0, 255).astype(np.uint8)
    outline = _draw_ellipse(center, axes, angle, 2)
    filled = _draw_ellipse(center, axes, angle, -1)
    mask = ((outline > 0) | (filled > 0)).astype(np.uint8)
    ys, xs = np.nonzero(mask)
    image = _hc18_overlays(rng, image, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())))
    return Hc18Phantom(
        image=image,
        outline=outline,
        mask=mask,
        pixel_size=pixel_size,
        circumference_mm=perimeter * pixel_size,
        center=center,
        axes=axes,
        angle=angle,
    )


def _hc18_stems(rng: np.random.Generator, n_images: int) -> list[str]:
    """File stems as in the real set: NNN_HC, with the odd repeat scan of a fetus as NNN_2HC / NNN_3HC."""
    stems: list[str] = []
    number = 0
    while len(stems) < n_images:
        stems.append(f"{number:03d}_HC")
        repeat = 1
        while len(stems) < n_images and repeat < 3 and rng.random() < 0.15:
            repeat += 1
            stems.append(f"{number:03d}_{repeat}HC")
        number += 1
    return stems


def write_hc18(root: str | Path, n_images: int = 12, seed: int = 0) -> Path:
    """Write `root/training_set/` PNGs and `root/training_set_pixel_size_and_HC.csv` like HC18; return `root`."""
    root = Path(root)
    folder = root / "training_set"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for index, stem in enumerate(_hc18_stems(np.random.default_rng([seed, 0]), n_images)):
        case = hc18_image(np.random.default_rng([seed, 1, index]))
        cv2.imwrite(str(folder / f"{stem}.png"), case.image)
        cv2.imwrite(str(folder / f"{stem}_Annotation.png"), case.outline)
        rows.append(f"{stem}.png,{case.pixel_size:.12g},{round(case.circumference_mm, 2)}")
    csv = "\r\n".join([HC18_CSV_HEADER, *sorted(rows)])
    (root / "training_set_pixel_size_and_HC.csv").write_bytes(csv.encode("ascii"))
    return root
