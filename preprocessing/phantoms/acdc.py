"""ACDC-like cine MRI phantoms (short-axis volumes at ED and ES) and their NIfTI layout."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
from scipy import ndimage

from preprocessing.phantoms.shared import PHASES, ellipse_rho, grid, smooth_noise, write_cfg

ACDC_GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")

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
    rho_out = ellipse_rho(x, y, cx, cy, r_out * (1 + e), r_out * (1 - e), tilt)
    outside_heart = rho_out >= 1.0
    label[~outside_heart] = 2
    papillary = empty
    if r_lv > 0.0:
        label[ellipse_rho(x, y, cx, cy, r_lv * (1 + e), r_lv * (1 - e), tilt) < 1.0] = 3
        if 8.0 < r_lv < 0.9 * heart.lv_radius.max():
            size = 0.13 * r_lv if phase == "ED" else 0.2 * r_lv
            papillary = np.zeros(shape, dtype=bool)
            for angle in heart.papillary_angles:
                px, py = cx + 0.7 * r_lv * math.cos(angle), cy + 0.7 * r_lv * math.sin(angle)
                papillary |= ellipse_rho(x, y, px, py, size, size, 0.0) < 1.0
            papillary &= label == 3
    rv_wall = empty
    if depth > 0.0:
        phi, wall = heart.rv_angle, 3.0
        offset = 0.5 * (0.5 * r_out + depth)
        half_length, half_width = 0.5 * (1.5 * r_out + depth), heart.rv_spread * r_out
        rx, ry = cx + offset * math.cos(phi), cy + offset * math.sin(phi)
        rv = (ellipse_rho(x, y, rx, ry, half_length, half_width, phi) < 1.0) & outside_heart
        label[rv] = 1
        rho_wall = ellipse_rho(x, y, rx, ry, half_length + wall, half_width + wall, phi)
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
    x, y = grid(shape[:2], spacing, spacing)
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
    x, y = grid((nx, ny), spacing, spacing)
    fov = np.array([nx * spacing, ny * spacing])
    organic = 1.0 + 0.12 * smooth_noise(rng, (nx, ny), 30.0 / spacing)
    body_c = fov / 2 + rng.uniform(-0.05, 0.05, size=2) * fov
    body_a, body_b = rng.uniform(0.42, 0.55) * fov[0], rng.uniform(0.5, 0.65) * fov[1]
    rho_body = ellipse_rho(x, y, *body_c, body_a, body_b, rng.uniform(-0.2, 0.2))
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
        return ellipse_rho(x, y, cx, cy, a, b, angle) * organic

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
            vessels.append((len(lungs) - 1, ellipse_rho(x, y, vx, vy, radius, radius, 0.0) < 1.0))
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
        tex = 0.1 * smooth_noise(rng, (nx, ny), 20.0 / spacing) + 0.05 * smooth_noise(rng, (nx, ny), 6.0 / spacing)
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
    coil = 0.2 * smooth_noise(rng, shape[:2], 0.5 * max(shape[:2]))
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
        texture = 1.0 + 0.05 * smooth_noise(rng, (nx, ny), 8.0 / scene.spacing[0])
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
        write_cfg(folder / "Info.cfg", info)
        for phase in PHASES:
            stem = f"patient{number:03d}_frame{info[phase]:02d}"
            frame = case[phase]
            _save_acdc_nifti(frame.image, frame.spacing, folder / f"{stem}.nii.gz")
            _save_acdc_nifti(frame.label, frame.spacing, folder / f"{stem}_gt.nii.gz")
    return root
