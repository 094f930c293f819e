"""Image dimensions and integrity from the bytes, without decoding pixels.

The scanner reads every image once (to hash it); this module looks at those bytes:
format by magic number (not by extension), width/height from the header, and cheap
structural checks that catch zero-byte, truncated and corrupt files: PNG chunk lengths
and CRCs up to IEND, JPEG segments up to the scan and an end-of-image marker after it,
WebP RIFF sizes. A decompression bomb (225,000² PNG) is reported from its header alone,
so nothing is ever allocated for its pixels.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

# Pillow's limit (Image.MAX_IMAGE_PIXELS); read lazily so a user's override is honoured.
_DEFAULT_MAX_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)


def max_image_pixels() -> int | None:
    try:
        from PIL import Image

        return Image.MAX_IMAGE_PIXELS
    except ImportError:  # pragma: no cover - pillow is a dependency
        return _DEFAULT_MAX_PIXELS


@dataclass
class ImageInfo:
    format: str | None  # png | jpeg | webp | None when unrecognised
    width: int | None = None
    height: int | None = None
    error: str | None = None  # the file is unusable: not indexed
    warning: str | None = None  # usable, but the user should know (wrong extension, ...)


EXT_FORMAT = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
FORMAT_NAME = {"png": "PNG", "jpeg": "JPEG", "webp": "WebP"}


def sniff(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def inspect(
    data: bytes, ext: str, *, total_size: int | None = None, complete: bool = True, max_pixels: int | None = -1
) -> ImageInfo:
    """Describe the image in ``data`` (the whole file, or its head when ``complete`` is
    False for very large files). ``ext`` is the lowercase extension with its dot."""
    size = len(data) if total_size is None else total_size
    if size == 0:
        return ImageInfo(None, error="empty file (0 bytes); re-export or delete it")
    fmt = sniff(data)
    if fmt is None:
        return ImageInfo(
            None,
            error=f"not a PNG, JPEG or WebP image (unrecognised content, {size} bytes); the file is corrupt or not an image",
        )
    try:
        if fmt == "png":
            info = _png(data, complete)
        elif fmt == "jpeg":
            info = _jpeg(data, complete)
        else:
            info = _webp(data, size, complete)
    except (struct.error, IndexError, ValueError) as exc:
        info = ImageInfo(fmt, error=f"corrupt {FORMAT_NAME[fmt]} header ({exc}); re-export the image")
    if info.error is None:
        if not info.width or not info.height:
            info.error = f"{FORMAT_NAME[fmt]} header gives no size ({info.width}×{info.height}); the file is corrupt"
        else:
            limit = max_image_pixels() if max_pixels == -1 else max_pixels
            if limit and info.width * info.height > limit:
                info.error = (
                    f"{info.width}×{info.height} = {info.width * info.height:,} pixels exceeds the decompression-bomb "
                    f"limit of {limit:,} pixels; not decoded and not indexed (resize it if it is a real image)"
                )
    expected = EXT_FORMAT.get(ext)
    if info.error is None and expected and expected != fmt:
        info.warning = f"is a {FORMAT_NAME[fmt]} file with a {ext} extension; rename it to avoid trainer errors"
    return info


def _png(data: bytes, complete: bool) -> ImageInfo:
    if len(data) < 33 or data[12:16] != b"IHDR":
        return ImageInfo("png", error="truncated or corrupt PNG (no IHDR header); re-export the image")
    width, height = struct.unpack(">II", data[16:24])
    info = ImageInfo("png", width, height)
    if not complete:
        return info
    pos, n = 8, len(data)
    while True:
        if pos == n:
            # Every chunk is complete, only the end marker is missing: decoders cope.
            info.warning = "PNG without an IEND chunk (the file may be cut off); re-export it if it looks wrong"
            return info
        if pos + 8 > n:
            info.error = "truncated PNG (the file ends inside a chunk header); re-export or re-download it"
            return info
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > n:
            info.error = f"truncated PNG (chunk {ctype.decode('latin-1')!r} runs past the end of the file); re-export or re-download it"
            return info
        crc = struct.unpack(">I", data[end - 4 : end])[0]
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            info.error = (
                f"corrupt PNG (chunk {ctype.decode('latin-1')!r} has a bad checksum); re-export or re-download it"
            )
            return info
        if ctype == b"IEND":
            return info
        pos = end


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes, complete: bool) -> ImageInfo:
    pos, n = 2, len(data)
    width = height = None
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            # A wrong segment length: decoders resynchronise on the next marker, so do we.
            pos = data.find(b"\xff", pos)
            if pos < 0:
                break
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in _SOF:
            if pos + 9 > n:
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            if width is None:
                return ImageInfo(
                    "jpeg", error="corrupt JPEG (no frame header before the image data); re-export the image"
                )
            info = ImageInfo("jpeg", width, height)
            # FF D9 cannot occur inside entropy-coded data (FF is stuffed as FF 00), so
            # a file without one after the scan start was cut off.
            if complete and data.rfind(b"\xff\xd9", pos + 2) < 0:
                info.error = "truncated JPEG (no end-of-image marker); re-export or re-download it"
            return info
        pos += 2 + length
    if width is not None and not complete:
        return ImageInfo("jpeg", width, height)
    return ImageInfo(
        "jpeg", width, height, error="truncated JPEG (the file ends inside its header); re-export or re-download it"
    )


def _webp(data: bytes, size: int, complete: bool) -> ImageInfo:
    riff_size = struct.unpack("<I", data[4:8])[0]
    if complete and riff_size + 8 > size:
        return ImageInfo("webp", error=f"truncated WebP ({size} of {riff_size + 8} bytes); re-export or re-download it")
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return ImageInfo("webp", w, h)
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            return ImageInfo("webp", error="corrupt WebP (bad VP8 frame header); re-export the image")
        w, h = struct.unpack("<HH", data[26:30])
        return ImageInfo("webp", w & 0x3FFF, h & 0x3FFF)
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            return ImageInfo("webp", error="corrupt WebP (bad VP8L signature); re-export the image")
        bits = int.from_bytes(data[21:25], "little")
        return ImageInfo("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    return ImageInfo("webp", error=f"corrupt WebP (unknown first chunk {chunk!r}); re-export the image")
