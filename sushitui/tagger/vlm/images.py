"""Images → base64 JPEG data URIs no larger than ``max_side``, in worker processes.

A VLM server rescales every image to its own patch grid anyway; sending the original
(a 6000×4000 JPEG is ~10 MB of base64) costs upload time and server-side decoding for
nothing. So each image is decoded with JPEG ``draft()`` (DCT scaling to the smallest
1/2, 1/4, 1/8 scale whose long side is still ≥ ``max_side``), turned upright by its EXIF
orientation, flattened over white when it has alpha, resized so that its long side is
``max_side`` (never enlarged) and sent as a quality-90 JPEG.

Decoding dominates a captioning run's CPU time, so it runs in a pool of worker
processes (``sushitui.workers``): this module is what they import; keep it light.
Every failure comes back as data (``Encoded.error``), never as an exception.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image, ImageFile, ImageOps

JPEG_QUALITY = 90
# Bumped when what a model receives for the same file changes (cache keys include it).
ENCODING_VERSION = "jpeg90-v1"


@dataclass
class Encoded:
    """One image ready to send (or why it is not)."""

    index: int  # the caller's position of this job
    data_uri: str | None = None
    width: int = 0  # what is sent
    height: int = 0
    source_width: int = 0  # the file's own size (upright)
    source_height: int = 0
    error: str | None = None


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) with the long side at most ``max_side``, aspect kept, never enlarged."""
    long_side = max(width, height)
    if long_side <= max_side or max_side <= 0:
        return width, height
    scale = max_side / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))


def _flatten(img: Image.Image) -> Image.Image:
    """Any mode → RGB; transparency composited over white (what a captioner should see:
    a transparent PNG's hidden pixels are often black or garbage)."""
    from sushitui.tagger.preprocess import to_rgb_over_white

    return to_rgb_over_white(img)


def encode_image(path: str, max_side: int = 1024, index: int = 0, quality: int = JPEG_QUALITY) -> Encoded:
    """Read, decode, orient, flatten, downscale and encode one image file."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return Encoded(index, error=f"cannot read the image: {exc.strerror or exc}")
    return encode_bytes(data, max_side, index, quality)


def encode_bytes(data: bytes, max_side: int = 1024, index: int = 0, quality: int = JPEG_QUALITY) -> Encoded:
    try:
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is reported, not captioned half grey
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img: Image.Image = Image.open(io.BytesIO(data))
            w, h = img.size
            if img.format == "JPEG" and max(w, h) > max_side > 0:
                # draft keeps both sides ≥ the request: ask for the proportional size whose
                # long side is max_side, so the long side never drops below it
                scale = max_side / max(w, h)
                img.draft(
                    "RGB" if img.mode in ("RGB", "YCbCr", "CMYK") else img.mode,
                    (math.ceil(w * scale), math.ceil(h * scale)),
                )
            img.load()
            sw, sh = (h, w) if img.getexif().get(0x0112) in (5, 6, 7, 8) else (w, h)  # turned a quarter
            img = ImageOps.exif_transpose(img) or img
            img = _flatten(img)
            tw, th = target_size(img.size[0], img.size[1], max_side)
            if (tw, th) != img.size:
                img = img.resize((tw, th), Image.Resampling.BICUBIC, reducing_gap=3.0)
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=quality)
    except Image.DecompressionBombError as exc:
        return Encoded(index, error=f"image too large to decode safely ({exc})")
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        return Encoded(index, error=f"not a readable image ({exc})")
    except Exception as exc:  # noqa: BLE001 - a decoder bug in a hostile file must not stop the run
        return Encoded(index, error=f"cannot decode the image ({type(exc).__name__}: {exc})")
    uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return Encoded(index, uri, tw, th, sw, sh)


def encode_many(paths: list[str], max_side: int, index: int, quality: int = JPEG_QUALITY) -> list[Encoded]:
    """Several images of one request (edit-instruction: source and target), in order."""
    return [encode_image(p, max_side, index, quality) for p in paths]
