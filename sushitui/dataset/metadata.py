"""Captions and tags embedded in images (layout D, SCAN-7).

Read only when the dataset enables it. EXIF through piexif; PNG text chunks, XMP
packets and IPTC through Pillow's header parsing (``Image.open`` reads chunks before
the pixel data; nothing is decoded). Mapping:

- EXIF ``ImageDescription`` → natural_language
- EXIF ``UserComment`` and ``XPComment`` → social_media (a ``UserComment`` holding
  A1111 generation parameters → prompt)
- EXIF ``XPKeywords``, IPTC ``Keywords``, XMP ``dc:subject`` → tags
- IPTC ``Caption-Abstract``, XMP ``dc:description`` → description
- PNG text ``parameters`` (A1111-style) → prompt (the positive prompt); ``Description``,
  ``Comment`` → natural_language

The raw fields are kept (``raw``, stored in ``Item.exif_data``). Broken metadata is a
problem for the item, never a failed scan.

XMP sidecars (``x.xmp`` / ``x.jpg.xmp``, ``add_sidecar``) are read whether or not the
dataset reads embedded metadata: they are files the user put beside the image. Their
dc:subject and dc:description become the same captions as embedded XMP (source
``xmp``, so an edit writes a caption file and the sidecar is never rewritten) and
replace embedded XMP captions of the same subtype (a photo tool's sidecar is the newer
word). ``raw["xmp_sidecar"]`` records the file's name, size and mtime: a scan re-reads
the item when they change.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from typing import Any

from sushitui.tags.normalize import clean, match_key

RAW_VALUE_LIMIT = 64 * 1024
_SKIP_EXIF = {
    "MakerNote",
    "PrintImageMatching",
    "JPEGInterchangeFormat",
    "JPEGInterchangeFormatLength",
    "StripOffsets",
    "StripByteCounts",
}
_A1111 = re.compile(r"(^|\n)Steps: \d+")
_PLACEHOLDER = re.compile(r"<\d+ bytes>")
_DC = "{http://purl.org/dc/elements/1.1/}"
_RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"

# (type, source, field) per mapped field; the caption subtype is "<source>_<field>".
Caption = tuple  # (ctype, subtype, source, field, text, [(tag, key)] | None)


def _subtype(source: str, field: str) -> str:
    return f"{source}_{field}".lower().replace(":", "_").replace("-", "_")


# A keyword list field (XMP dc:subject, IPTC Keywords) holds one keyword per value, which
# may contain ';' (ExifTool's test sidecar has "&-&amp;-&"); Windows XPKeywords is one
# string whose keywords are separated by ';'. Commas split everywhere: a tag caption is
# comma-separated, so a keyword holding one could not survive an edit anyway.
_LIST_SEPARATORS = re.compile(r"[,\n]")
_XP_SEPARATORS = re.compile(r"[;,\n]")


def _tags(values, separators: re.Pattern = _LIST_SEPARATORS) -> list[tuple[str, str]]:
    out, seen = [], set()
    for v in values:
        for part in separators.split(v):
            t = clean(part)
            if not t:
                continue
            k = match_key(t)
            if k not in seen:
                seen.add(k)
                out.append((t, k))
    return out


def _text_caption(ctype: str, source: str, field: str, text: str) -> Caption | None:
    text = (text or "").strip("\x00").strip()
    if not text:
        return None
    return (ctype, _subtype(source, field), source, field, text, None)


def _tag_caption(
    source: str, field: str, values: list[str], separators: re.Pattern = _LIST_SEPARATORS
) -> Caption | None:
    tags = _tags(values, separators)
    if not tags:
        return None
    return ("tags", _subtype(source, field), source, field, ", ".join(t for t, _ in tags), tags)


def _bytes_text(v: bytes) -> str | None:
    """The text in an EXIF byte string, or None when it is binary. Control characters
    are kept (they are neutralised when displayed, NF-4), so a description holding an
    ESC stays a description."""
    try:
        s = v.decode("utf-8")
    except UnicodeDecodeError:
        s = v.decode("latin-1")
    s = s.rstrip("\x00")
    if not s:
        return ""
    texty = sum(1 for c in s if c.isprintable() or c in "\n\r\t")
    return s if texty >= 0.9 * len(s) else None


def _raw_value(v):
    if isinstance(v, bytes):
        if len(v) > RAW_VALUE_LIMIT:
            return f"<{len(v)} bytes>"
        text = _bytes_text(v)
        return text if text is not None else f"<{len(v)} bytes>"
    if isinstance(v, str):
        return v if len(v) <= RAW_VALUE_LIMIT else v[:RAW_VALUE_LIMIT] + "…"
    if isinstance(v, tuple):
        return [_raw_value(x) for x in v][:64]
    return v


def decode_user_comment(value: bytes) -> str:
    """EXIF UserComment: an 8-byte character-code prefix, then the text."""
    head, body = value[:8], value[8:]
    if head.startswith(b"UNICODE"):
        # A1111 writes UTF-16-BE; some writers use little-endian: guess by the zero bytes.
        be = body[:2].startswith(b"\x00")
        try:
            return body.decode("utf-16-be" if be else "utf-16-le").strip("\x00")
        except UnicodeDecodeError:
            return body.decode("utf-16-le", errors="replace").strip("\x00")
    if head.startswith(b"ASCII") or head == b"\x00" * 8:
        return body.decode("utf-8", errors="replace").strip("\x00").strip()
    if head.startswith(b"JIS"):
        return body.decode("iso2022_jp", errors="replace").strip("\x00")
    return value.decode("utf-8", errors="replace").strip("\x00").strip()


def _exif(exif_bytes: bytes, raw: dict, captions: list, problems: list) -> None:
    import piexif

    if exif_bytes.startswith(b"Exif\x00\x00"):
        exif_bytes = exif_bytes[6:]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = piexif.load(exif_bytes)
    except Exception as exc:  # noqa: BLE001 - piexif raises bare ValueError/struct.error/... on bad data; reported
        problems.append(f"EXIF data is damaged ({type(exc).__name__}); embedded captions from EXIF were skipped")
        return
    fields: dict = {}
    for ifd in ("0th", "Exif"):
        for tag, value in (data.get(ifd) or {}).items():
            name = piexif.TAGS.get(ifd, {}).get(tag, {}).get("name", f"{ifd}:{tag}")
            if name in _SKIP_EXIF:
                continue
            if name == "UserComment" and isinstance(value, bytes):
                fields[name] = decode_user_comment(value)
            elif name.startswith("XP") and isinstance(value, tuple):
                try:
                    fields[name] = bytes(value).decode("utf-16-le").rstrip("\x00")
                except UnicodeDecodeError:
                    fields[name] = _raw_value(bytes(value))
            else:
                fields[name] = _raw_value(value)
    if not fields:
        return
    raw["exif"] = fields
    desc = fields.get("ImageDescription")
    if isinstance(desc, str) and not _PLACEHOLDER.fullmatch(desc):
        c = _text_caption("natural_language", "exif", "ImageDescription", desc)
        if c:
            captions.append(c)
    comment = fields.get("UserComment")
    if isinstance(comment, str) and comment.strip():
        if _A1111.search(comment):
            c = _text_caption("prompt", "exif", "UserComment", positive_prompt(comment))
        else:
            c = _text_caption("social_media", "exif", "UserComment", comment)
        if c:
            captions.append(c)
    xp = fields.get("XPComment")
    if isinstance(xp, str) and not _PLACEHOLDER.fullmatch(xp):
        c = _text_caption("social_media", "exif", "XPComment", xp)
        if c:
            captions.append(c)
    kw = fields.get("XPKeywords")
    if isinstance(kw, str) and not _PLACEHOLDER.fullmatch(kw):
        c = _tag_caption("exif", "XPKeywords", [kw], _XP_SEPARATORS)
        if c:
            captions.append(c)


def positive_prompt(parameters: str) -> str:
    """The prompt part of A1111 ``parameters`` (before ``Negative prompt:``/``Steps:``)."""
    text = parameters
    if text.lstrip().startswith("{"):  # Fooocus & co. store JSON with a "prompt" key
        import json

        try:
            value = json.loads(text)
            if isinstance(value, dict) and isinstance(value.get("prompt"), str):
                return value["prompt"].strip()
        except ValueError:
            pass
    for marker in ("\nNegative prompt:", "\nSteps:"):
        cut = text.find(marker)
        if cut >= 0:
            text = text[:cut]
    return text.strip()


def _xmp(packet, raw: dict, captions: list, problems: list) -> None:
    import xml.etree.ElementTree as ET

    if isinstance(packet, bytes):
        if packet.startswith((b"\x00<", b"\xfe\xff")):
            text = packet.decode("utf-16-be", errors="replace")
        elif packet.startswith((b"<\x00", b"\xff\xfe")):
            text = packet.decode("utf-16-le", errors="replace")
        else:
            text = packet.decode("utf-8", errors="replace")
    else:
        text = packet
    text = text.lstrip("\ufeff")
    start = text.find("<x:xmpmeta")
    if start < 0:
        start = text.find("<rdf:RDF")
    end_tag = "</x:xmpmeta>" if text.find("</x:xmpmeta>") >= 0 else "</rdf:RDF>"
    end = text.rfind(end_tag)
    if start < 0 or end < 0:
        return
    try:
        root = ET.fromstring(text[start : end + len(end_tag)])
    except ET.ParseError as exc:
        problems.append(f"XMP metadata is not valid XML ({exc}); embedded captions from XMP were skipped")
        return
    fields: dict = {}
    for desc in root.iter(f"{_DC}description"):
        vals = [li.text or "" for li in desc.iter(f"{_RDF}li")] or [desc.text or ""]
        vals = [v.strip() for v in vals if v and v.strip()]
        if vals:
            fields["dc:description"] = vals[0]
    for subj in root.iter(f"{_DC}subject"):
        vals = [li.text.strip() for li in subj.iter(f"{_RDF}li") if li.text and li.text.strip()]
        if vals:
            fields["dc:subject"] = vals
    # dc:* given as attributes of rdf:Description (short form)
    for node in root.iter(f"{_RDF}Description"):
        if f"{_DC}description" in node.attrib and "dc:description" not in fields:
            fields["dc:description"] = node.attrib[f"{_DC}description"]
    if not fields:
        return
    raw["xmp"] = fields
    if "dc:description" in fields:
        c = _text_caption("description", "xmp", "dc:description", fields["dc:description"])
        if c:
            captions.append(c)
    if "dc:subject" in fields:
        c = _tag_caption("xmp", "dc:subject", fields["dc:subject"])
        if c:
            captions.append(c)


def _iptc_text(v: bytes) -> str:
    try:
        return v.decode("utf-8")
    except UnicodeDecodeError:
        return v.decode("latin-1")


def _iptc(im, raw: dict, captions: list, problems: list) -> None:
    from PIL import IptcImagePlugin

    try:
        info = IptcImagePlugin.getiptcinfo(im)
    except Exception as exc:  # noqa: BLE001 - malformed IPTC blocks raise assorted errors; reported
        problems.append(f"IPTC data is damaged ({type(exc).__name__}); embedded captions from IPTC were skipped")
        return
    if not info:
        return
    fields: dict = {}
    kw = info.get((2, 25))
    if kw is not None:
        kws = kw if isinstance(kw, list) else [kw]
        fields["Keywords"] = [_iptc_text(k) for k in kws]
    cap = info.get((2, 120))
    if cap is not None:
        fields["Caption-Abstract"] = _iptc_text(cap[0] if isinstance(cap, list) else cap)
    if not fields:
        return
    raw["iptc"] = fields
    if "Keywords" in fields:
        c = _tag_caption("iptc", "Keywords", fields["Keywords"])
        if c:
            captions.append(c)
    if "Caption-Abstract" in fields:
        c = _text_caption("description", "iptc", "Caption-Abstract", fields["Caption-Abstract"])
        if c:
            captions.append(c)


_PNG_SKIP = {
    "exif",
    "xmp",
    "XML:com.adobe.xmp",
    "icc_profile",
    "dpi",
    "gamma",
    "transparency",
    "aspect",
    "srgb",
    "chromaticity",
    "interlace",
    "bbox",
    "duration",
    "loop",
    "disposal",
    "blend",
    "default_image",
}


def _png_text(im, raw: dict, captions: list) -> None:
    fields = {
        k: _raw_value(v)
        for k, v in im.info.items()
        if isinstance(k, str) and k not in _PNG_SKIP and isinstance(v, (str, bytes))
    }
    if not fields:
        return
    raw["png_text"] = fields
    params = fields.get("parameters")
    if isinstance(params, str):
        c = _text_caption("prompt", "png_text", "parameters", positive_prompt(params))
        if c:
            captions.append(c)
    for name in ("Description", "Comment"):
        v = fields.get(name)
        if isinstance(v, str):
            c = _text_caption("natural_language", "png_text", name, v)
            if c:
                captions.append(c)


def extract(data: bytes, fmt: str | None) -> dict:
    """``{"raw": {...} | None, "captions": [Caption...], "problems": [str...]}``."""
    raw: dict = {}
    captions: list = []
    problems: list[str] = []
    try:
        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            info = dict(im.info)
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on hostile headers; reported
        detail = (
            "Pillow cannot parse its header"
            if type(exc).__name__ == "UnidentifiedImageError"
            else f"{type(exc).__name__}: {exc}"
        )
        problems.append(f"embedded metadata could not be read ({detail}); the image itself is indexed")
        return {"raw": None, "captions": [], "problems": problems}
    exif = info.get("exif")
    if not exif and fmt in ("jpeg", "webp"):
        exif = None
    if isinstance(exif, bytes) and exif:
        _exif(exif, raw, captions, problems)
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
    if xmp:
        _xmp(xmp, raw, captions, problems)
    if fmt == "jpeg":
        _iptc(im, raw, captions, problems)
    if fmt == "png":
        _png_text(im, raw, captions)
    return {"raw": raw or None, "captions": captions, "problems": problems}


SIDECAR_MAX_BYTES = 16 * 1024 * 1024  # an XMP packet this large is not a sidecar


def add_sidecar(meta: dict | None, path: str | None, name: str | None) -> dict:
    """``meta`` (from ``extract``, or None) with the captions of the XMP sidecar at
    ``path`` merged in; with ``path`` None, the empty result that still replaces what
    an earlier sidecar gave (it was deleted)."""
    out: dict[str, Any] = {
        "raw": dict((meta or {}).get("raw") or {}),
        "captions": list((meta or {}).get("captions") or ()),
        "problems": list((meta or {}).get("problems") or ()),
    }
    if path is None or name is None:
        out["raw"] = out["raw"] or None
        return out
    record: dict = {"file": name}
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            record.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
            data = fh.read(SIDECAR_MAX_BYTES + 1)
    except OSError as exc:
        out["problems"].append(f"XMP sidecar {name} cannot be read ({exc.strerror or exc}); its captions were skipped")
        data = None
    if data is not None and len(data) > SIDECAR_MAX_BYTES:
        out["problems"].append(f"XMP sidecar {name} is larger than {SIDECAR_MAX_BYTES} bytes; not read")
        data = None
    if data is not None:
        found: dict = {}
        captions: list = []
        problems: list[str] = []
        _xmp(data, found, captions, problems)
        if not found and not problems:
            text = data.decode("utf-8", "replace")
            if "<x:xmpmeta" not in text and "<rdf:RDF" not in text:
                problems.append("holds no XMP packet (no x:xmpmeta or rdf:RDF element)")
            elif "</x:xmpmeta>" not in text and "</rdf:RDF>" not in text:
                problems.append("is not valid XML (its x:xmpmeta / rdf:RDF element is never closed)")
        for p in problems:
            p = p.replace("XMP metadata is ", "is ").replace("embedded captions from XMP were skipped", "not read")
            out["problems"].append(f"XMP sidecar {name} {p}")
        record.update(found.get("xmp") or {})
        mine = {c[1] for c in captions}
        out["captions"] = [c for c in out["captions"] if not (c[2] == "xmp" and c[1] in mine)]
        out["captions"].extend(
            (ctype, sub, src, f"{name}: {fld}", text, tags) for ctype, sub, src, fld, text, tags in captions
        )
    out["raw"]["xmp_sidecar"] = record
    return out
