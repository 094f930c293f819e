"""Image → model input (TAGGERS.md §6.2–6.3).

Decoding produces a square ``uint8`` RGB array of side ``S`` (alpha composited over
white, white padding, BICUBIC resize) — that is what crosses the process boundary in
the pipeline (4× smaller than float32). The family-specific conversion to the model's
tensor layout (WD: NHWC BGR 0..255; cl_tagger: NCHW BGR −1..1) runs batched in the
consumer with numpy.

This module is imported by decode worker processes: keep its imports light.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile

DEFAULT_SIZE = 448
WHITE = (255, 255, 255)
# JPEG DCT scaling (Image.draft) decodes at 1/2, 1/4 or 1/8 size. We only let it go
# down to DRAFT_FACTOR × the model size so the final BICUBIC step still downsamples
# (see the README's measurement of what it changes).
DRAFT_FACTOR = 1

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


@dataclass
class Decoded:
    """What a decode worker returns for one file."""

    index: int
    sha256: str | None = None
    pixels: np.ndarray | None = None  # uint8: (S, S, 3) RGB, or the family layout (see decode_file)
    error: str | None = None


def to_rgb_over_white(img: Image.Image) -> Image.Image:
    """Any mode → RGB; transparent pixels become white (a fully transparent pixel is (255,255,255))."""
    if img.mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, WHITE + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit greyscale: convert("RGB") would clip at 255; scale to 8 bits instead.
        a = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or a.max() > 255 else 255.0
        return Image.fromarray(np.clip(a * (255.0 / peak), 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "F":
        a = np.asarray(img, dtype=np.float64)
        peak = 1.0 if a.max() <= 1.0 else 255.0
        return Image.fromarray(np.clip(a * (255.0 / peak), 0, 255).astype(np.uint8), "L").convert("RGB")
    return img.convert("RGB") if img.mode != "RGB" else img


def pad_square(img: Image.Image) -> Image.Image:
    """Centre on a white square of side max(w, h) (floor on the top/left)."""
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), WHITE)
    canvas.paste(img, ((side - w) // 2, (side - h) // 2))
    return canvas


def square_pixels(img: Image.Image, size: int = DEFAULT_SIZE) -> np.ndarray:
    """A loaded PIL image → (size, size, 3) uint8 RGB, padded white, BICUBIC."""
    img = pad_square(to_rgb_over_white(img))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8)


def open_image(data: bytes | str | os.PathLike, size: int = DEFAULT_SIZE, draft: bool = False) -> Image.Image:
    """Open and fully decode (first frame of animations). ``draft`` lets a JPEG decode at
    a reduced scale that is still ≥ DRAFT_FACTOR × size."""
    img = Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data)
    if draft and img.format == "JPEG":
        img.draft(img.mode if img.mode in ("RGB", "L") else None, (size * DRAFT_FACTOR, size * DRAFT_FACTOR))
    img.load()
    return img


def decode_file(
    index: int,
    path: str,
    size: int = DEFAULT_SIZE,
    draft: bool = False,
    want_hash: bool = True,
    family: str | None = None,
) -> Decoded:
    """Read, hash and decode one image; every failure is data, never an exception.

    ``pixels`` is (S, S, 3) RGB, or already in the family's layout (``to_layout``)
    when ``family`` is given."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return Decoded(index, error=f"cannot read the file: {exc.strerror or exc}")
    digest = hashlib.sha256(data).hexdigest() if want_hash else None
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is reported, not half-tagged
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = open_image(data, size, draft)
            px = square_pixels(img, size)
            return Decoded(index, digest, to_layout(px, family) if family else px)
    except Image.DecompressionBombError as exc:
        return Decoded(index, digest, error=f"image too large to decode safely ({exc})")
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        return Decoded(index, digest, error=f"not a readable image ({exc})")
    except Exception as exc:  # noqa: BLE001 - Pillow's decoders raise any type on hostile files; reported per image
        return Decoded(index, digest, error=f"cannot decode the image ({type(exc).__name__}: {exc})")


def hash_file(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def to_layout(rgb: np.ndarray, family: str) -> np.ndarray:
    """(S, S, 3) uint8 RGB → the family's channel order and layout, still uint8 and
    contiguous: WD (S, S, 3) BGR, cl_tagger (3, S, S) BGR. Done in the decode worker,
    so the consumer only has a contiguous cast left (a strided float copy of a batch
    costs ~4 ms per image, which the main process cannot spare)."""
    bgr = rgb[..., ::-1]
    return np.ascontiguousarray(bgr if family == "wd" else bgr.transpose(2, 0, 1))


def layout_to_input(batch: np.ndarray, family: str, out: np.ndarray | None = None) -> np.ndarray:
    """uint8 batch in the family layout → float32 model input.

    WD: 0..255 as is. cl_tagger: x/255 then (x − 0.5)/0.5, i.e. 2x/255 − 1.
    ``out`` (preallocated, float32) avoids a fresh allocation per batch."""
    if out is None:
        out = np.empty(batch.shape, np.float32)
    np.copyto(out, batch, casting="unsafe")
    if family != "wd":
        out *= 2.0 / 255.0
        out -= 1.0
    return out


def to_model_input(pixels: np.ndarray, family: str, out: np.ndarray | None = None) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB → the family's float tensor (WD: NHWC BGR 0..255;
    cl_tagger: NCHW BGR −1..1)."""
    bgr = pixels[..., ::-1]
    laid = np.ascontiguousarray(bgr if family == "wd" else bgr.transpose(0, 3, 1, 2))
    return layout_to_input(laid, family, out)


def prepare_image(img: Image.Image, family: str, size: int = DEFAULT_SIZE) -> np.ndarray:
    """One image → one unbatched tensor ((S,S,3) for WD, (3,S,S) for cl_tagger)."""
    return to_model_input(square_pixels(img, size)[None], family)[0]
