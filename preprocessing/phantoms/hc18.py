"""HC18-like fetal head ultrasound phantoms and the challenge's PNG + CSV layout."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from preprocessing.phantoms.shared import ellipse_rho, grid, ramanujan_perimeter, smooth_noise, speckle

HC18_SHAPE = (540, 800)
HC18_CSV_HEADER = "filename,pixel size(mm),head circumference (mm)"


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
    echo = rng.uniform(0.25, 0.38) + 0.2 * smooth_noise(rng, HC18_SHAPE, 80.0) + 0.08 * smooth_noise(rng, HC18_SHAPE, 12.0)
    echo = echo + 0.08 * layers
    fluid_c = (cx + rng.uniform(-0.4, 0.4) * a, cy + rng.uniform(-0.3, 0.3) * b)
    fluid = ellipse_rho(x, y, *fluid_c, a * rng.uniform(1.5, 2.2), b * rng.uniform(1.4, 1.9), rng.uniform(0, math.pi))
    fluid = fluid * (1.0 + 0.15 * smooth_noise(rng, HC18_SHAPE, 80.0))
    echo = np.where(fluid < 1.0, 0.03 + 0.02 * smooth_noise(rng, HC18_SHAPE, 20.0), echo)
    body_dir = rad + rng.choice([0.0, math.pi]) + rng.uniform(-0.5, 0.5)
    body_a = a * rng.uniform(0.8, 1.2)
    body_c = (cx + (a + 0.7 * body_a) * math.cos(body_dir), cy + (a + 0.7 * body_a) * math.sin(body_dir))
    body = ellipse_rho(x, y, *body_c, body_a, b * rng.uniform(0.7, 1.0), body_dir) < 1.0
    return np.where(body, 0.3 + 0.1 * smooth_noise(rng, HC18_SHAPE, 25.0), echo)


def _hc18_brain(rng: np.random.Generator, u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Brain in head coordinates (u along the major axis): broken midline echo, CSP, thalami, choroid plexus."""
    brain = 0.2 + 0.07 * smooth_noise(rng, HC18_SHAPE, 30.0)
    gaps = smooth_noise(rng, HC18_SHAPE, 25.0) > -0.3
    brain = np.where((np.abs(v) < 1.5) & (np.abs(u) < 0.85 * a) & gaps, 0.55, brain)
    side = rng.choice([-1.0, 1.0])
    brain = np.where(ellipse_rho(u, v, side * 0.3 * a, 0.0, 0.12 * a, 0.06 * b, 0.0) < 1.0, 0.03, brain)
    for sign in (-1.0, 1.0):
        brain = np.where(ellipse_rho(u, v, -side * 0.05 * a, sign * 0.17 * b, 0.17 * a, 0.1 * b, 0.0) < 1.0, 0.09, brain)
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
    y, x = grid(HC18_SHAPE, 1.0, 1.0)
    cx, cy = center
    a, b = axes
    rad = math.radians(angle)
    echo = _hc18_surroundings(rng, x, y, center, axes, rad)
    u = (x - cx) * math.cos(rad) + (y - cy) * math.sin(rad)
    v = (y - cy) * math.cos(rad) - (x - cx) * math.sin(rad)
    rho = ellipse_rho(x, y, cx, cy, a, b, rad)
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
    speckled = cv2.GaussianBlur(echo * speckle(rng, HC18_SHAPE, 1.5, 2.8, looks=2), (0, 0), 0.8)
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
