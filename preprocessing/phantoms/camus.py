"""CAMUS-like apical echocardiography phantoms (2CH / 4CH at ED and ES) and their MetaImage layout."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import SimpleITK as sitk

from preprocessing.phantoms.shared import PHASES, distance_mm, grid, smooth_noise, speckle, write_cfg

CAMUS_VIEWS = ("2CH", "4CH")
CAMUS_QUALITIES = ("Good", "Medium", "Poor")


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
        + 0.2 * smooth_noise(rng, frame.shape, 12.0 / sy)
        + 0.1 * smooth_noise(rng, frame.shape, 3.0 / sy)
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
        texture=smooth_noise(rng, frame.shape, 6.0 / sy),
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
    dist = distance_mm(lv, sy, sx, 1.4 * wall + 4.0)
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
    grains = speckle(rng, (n_range, n_angle), 1.0, 0.9)
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
    y, x = grid(frame.shape, sy, sx)
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
            write_cfg(folder / f"Info_{name}.cfg", {
                "ED": 1, "ES": n_frames, "NbFrame": n_frames, "Sex": sex, "Age": age, "ImageQuality": quality,
                "LVedv": f"{edv:.1f}", "LVesv": f"{esv:.1f}", "LVef": f"{100.0 * (edv - esv) / edv:.1f}",
            })
    return root
