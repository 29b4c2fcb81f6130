"""Turn any picture of a digit into optdigits' 8x8 form, and draw predictions.

UCI optdigits was made by scaling each handwritten digit to fill a 32x32 binary
bitmap and counting the ink pixels in each 4x4 block (0..16). :func:`load_digit`
imitates that on an arbitrary picture, so the network sees inputs like the ones it
was trained on.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter, ImageOps, UnidentifiedImageError

__all__ = ["load_digit", "render"]

FloatArray = NDArray[np.float64]

# Larger pictures are shrunk first: 8x8 is all we keep, so detail beyond this only
# costs time and memory.
WORK_SIDE = 512
MAX_PIXELS = 50_000_000
FRAME = 32
BLOCK = FRAME // 8
# Ink weaker than this fraction of the strongest ink is noise for the bounding box.
INK_THRESHOLD = 0.2
# Below this contrast (on a 0..1 scale) there is nothing that could be a digit.
MIN_CONTRAST = 0.1
# Every optdigits sample covers at least ~18 % of its frame with ink; thinner
# strokes (a pen line on a large canvas) are thickened until they come near that.
MIN_COVERAGE = 0.17
MAX_THICKENING = 3


class _TooLarge(ValueError):
    """A picture refused for its size; its message is already the one to show."""


def load_digit(path: str | os.PathLike[str], name: str | None = None) -> FloatArray:
    """Read a picture of one digit and reduce it to an optdigits-like 8x8 array.

    The picture may be of any size and format Pillow reads, dark ink on a light
    background or light on dark, or ink on a transparent background.

    Args:
        path: The image file.
        name: How to call the file in error messages (defaults to ``path``).

    Returns:
        An ``(8, 8)`` array of values from 0 to 16.

    Raises:
        ValueError: The file is not a readable image, or shows no digit.
    """
    label = name or Path(path).name
    try:
        with Image.open(path) as opened:
            # Checked before decoding: a small file can declare a huge picture.
            if opened.width * opened.height > MAX_PIXELS:
                raise _TooLarge(
                    f"'{label}' is too large: {opened.width}x{opened.height} pixels, "
                    f"more than {MAX_PIXELS}"
                )
            opened.draft(None, (WORK_SIDE, WORK_SIDE))
            picture = ImageOps.exif_transpose(opened)
            picture.thumbnail((WORK_SIDE, WORK_SIDE))
            gray = _grayscale(picture)
    except _TooLarge:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ValueError(f"'{label}' is not an image that can be read: {exc}") from None
    except (OSError, SyntaxError, ValueError, IndexError, struct.error) as exc:
        # Pillow reports damaged or truncated files with any of these.
        raise ValueError(
            f"'{label}' is a damaged or unsupported image: {exc}"
        ) from None
    return _to_optdigits(_ink(gray, label), label)


def _grayscale(picture: Image.Image) -> FloatArray:
    """Luminance in 0..1; transparent areas become the background."""
    has_alpha = picture.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        picture.mode == "P" and "transparency" in picture.info
    )
    if picture.mode == "F" or picture.mode.startswith("I"):
        # Pillow clips these (16-bit PNGs, scientific TIFFs) when converting to
        # 8 bits instead of scaling them, which would turn most pictures white.
        values = np.asarray(picture, dtype=np.float64)
        full = min(
            (limit for limit in (1.0, 255.0, 65535.0) if float(values.max()) <= limit),
            default=float(values.max()),
        )
        return np.clip(values / full, 0.0, 1.0)
    if not has_alpha:
        return np.asarray(picture.convert("L"), dtype=np.float64) / 255.0
    rgba = picture.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255.0
    luma = np.asarray(rgba.convert("L"), dtype=np.float64) / 255.0
    if float(alpha.sum()) == 0.0:
        return np.ones_like(luma)
    # Drawings exported from canvases have strokes on a transparent background
    # whose hidden colour is arbitrary (often black): lay them on the background
    # that contrasts with the strokes.
    stroke = float((luma * alpha).sum() / alpha.sum())
    background = 1.0 if stroke < 0.5 else 0.0
    return luma * alpha + background * (1.0 - alpha)


def _ink(gray: FloatArray, label: str) -> FloatArray:
    """Ink in 0..1 (1 = strongest), whatever the polarity of the picture."""
    if gray.size == 0:
        raise ValueError(f"'{label}' is an empty image")
    border = max(1, min(gray.shape) // 20)
    edges = np.concatenate(
        [
            gray[:border].ravel(),
            gray[-border:].ravel(),
            gray[:, :border].ravel(),
            gray[:, -border:].ravel(),
        ]
    )
    # The border is mostly background, so its median tells the polarity and level.
    background = float(np.median(edges))
    ink = background - gray if background > 0.5 else gray - background
    ink = np.clip(ink, 0.0, None)
    peak = float(ink.max())
    if peak < MIN_CONTRAST:
        raise ValueError(
            f"'{label}' shows no digit: the image is blank or has too little contrast"
        )
    return ink / peak


def _to_optdigits(ink: FloatArray, label: str) -> FloatArray:
    """Crop, square, scale to 32x32 and count ink per 4x4 block, as optdigits did."""
    mask = ink > INK_THRESHOLD
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:  # pragma: no cover - _ink guarantees some ink at 1.0
        raise ValueError(f"'{label}' shows no digit")
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    # No margin around the ink: optdigits digits touch the top and bottom of their
    # frame, and a margin of even 4 % costs several points of accuracy.
    side = max(crop.shape)
    square = np.zeros((side, side), dtype=np.float32)
    top = (side - crop.shape[0]) // 2
    left = (side - crop.shape[1]) // 2
    square[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
    # BOX resampling averages the ink under each output pixel, like counting pixels.
    frame = Image.fromarray(square).resize((FRAME, FRAME), Image.Resampling.BOX)
    for _ in range(MAX_THICKENING):
        values = np.asarray(frame, dtype=np.float64)
        peak = float(values.max())
        if peak > 0 and float(values.mean()) / peak >= MIN_COVERAGE:
            break
        frame = frame.filter(ImageFilter.MaxFilter(3))
    values = np.asarray(frame, dtype=np.float64)
    # Thin strokes are faint once averaged; the strongest pixel is full ink.
    values = np.clip(values / max(float(values.max()), 1e-12), 0.0, 1.0)
    return values.reshape(8, BLOCK, 8, BLOCK).sum(axis=(1, 3))  # type: ignore[no-any-return]


def render(pixels: FloatArray, probabilities: FloatArray) -> bytes:
    """Draw the 8x8 input beside a bar chart of the class probabilities.

    Args:
        pixels: The ``(8, 8)`` input, 0..16.
        probabilities: The 10 class probabilities.

    Returns:
        A PNG picture.
    """
    cell, pad, row = 16, 10, 16
    digit_side = 8 * cell
    bar_left = pad + digit_side + 2 * pad + 14
    bar_width = 150
    width = bar_left + bar_width + 44
    height = max(digit_side, 10 * row) + 2 * pad
    canvas = Image.new("RGB", (width, height), "white")
    shade = (255.0 - np.clip(pixels, 0.0, 16.0) * (255.0 / 16.0)).astype(np.uint8)
    digit = Image.fromarray(shade).resize(
        (digit_side, digit_side), Image.Resampling.NEAREST
    )
    canvas.paste(digit.convert("RGB"), (pad, pad))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle(
        (pad - 1, pad - 1, pad + digit_side, pad + digit_side), outline="gray"
    )
    best = int(np.argmax(probabilities))
    for digit_class, probability in enumerate(probabilities):
        top = pad + digit_class * row
        colour = "#d9534f" if digit_class == best else "#4a7fb5"
        draw.text((bar_left - 12, top + 2), str(digit_class), fill="black")
        length = round(float(probability) * bar_width)
        if length > 0:
            draw.rectangle(
                (bar_left, top + 3, bar_left + length, top + row - 3), fill=colour
            )
        draw.text(
            (bar_left + length + 4, top + 2), f"{float(probability):.2f}", fill="black"
        )
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
