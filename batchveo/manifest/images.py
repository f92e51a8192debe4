"""Images a job names: really an image Veo takes, and the sha256 that makes part of its identity.

Image paths are relative to the manifest's folder; each distinct file is read once, in
chunks, to sniff its type and hash it, and its bytes are never kept; Pillow then reads its
header (type and dimensions, no pixels), so a file of magic bytes only is refused. The type
is what the bytes are, whatever the file is called; a name that claims another is refused.

A ``gs://bucket/object`` image is a Cloud Storage object that Vertex reads itself: nothing
here can read it, so its type is what its name says, and its URI is its identity (whether
the job's provider takes such an image is a rule of the route, ``job.route_problems``).
"""

from __future__ import annotations

import hashlib
import os
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

from batchveo.manifest.fields import split_gcs
from batchveo.manifest.opening import OPEN_FLAGS, READ_CHUNK_BYTES
from batchveo.manifest.show import cut, show
from batchveo.spec import ImageRef

MAX_IMAGE_BYTES = 20 * 1024 * 1024
"""Images travel base64-encoded inside the request, whose size is capped around 20 MB."""
MAX_IMAGE_SIDE_PX = 32_768
"""Wider than any camera or panorama Veo would take; a header that claims more is broken."""

# Magic bytes; Veo accepts the first three, the others only get a better message.
_IMAGE_KINDS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP"}
_CLAIMED = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
_PILLOW_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def sniff(head: bytes) -> str | None:
    """The image type the bytes really are, whatever the file is called."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"avif", b"mif1"):
        return "HEIC/AVIF"
    return None


class ImageFiles:
    """The images of one load: each path as written resolved once per manifest folder, each
    distinct file checked and hashed once (100k rows often share a handful)."""

    def __init__(self) -> None:
        self._resolved: dict[tuple[Path, str], Path] = {}
        self._refs: dict[Path, ImageRef | str] = {}

    def ref(self, v: object, what: str, base: Path, bad: list[str]) -> ImageRef | None:
        """The image ``v`` (a path relative to ``base``), or None with its problem in ``bad``."""
        if not isinstance(v, str):
            bad.append(f"{what} must be a file path, not {show(v)}")
            return None
        if v.lstrip().startswith("gs://"):
            return cloud_image(v.strip(), what, bad)
        path = self._resolved.get((base, v))
        if path is None:
            try:
                path = self._resolved[base, v] = (base / Path(v).expanduser()).resolve()
            except (OSError, RuntimeError, ValueError) as e:  # NUL byte, unknown ~user, loop
                bad.append(f"{what} {show(v)} is not a usable path ({e})")
                return None
        ref = self._refs.get(path)
        if ref is None:
            ref = self._refs[path] = hash_image(path)
        if isinstance(ref, str):
            bad.append(f"{what} {cut(v)} {ref}")
            return None
        return ref


def cloud_image(uri: str, what: str, bad: list[str]) -> ImageRef | None:
    """A Cloud Storage image, its type from its name; None with its problem in ``bad``."""
    parts = split_gcs(uri)
    if parts is None or not parts[1] or parts[1].endswith("/"):
        bad.append(f"{what} {show(uri)} is not a Cloud Storage object (gs://BUCKET/NAME.png)")
        return None
    mime = _CLAIMED.get(Path(parts[1]).suffix.lower())
    if mime is None:
        bad.append(
            f"{what} {show(uri)}: a Cloud Storage image is not read here, so its name must "
            "tell its type: .png, .jpg, .jpeg or .webp"
        )
        return None
    return ImageRef.cloud(uri, mime)


def hash_image(path: Path) -> ImageRef | str:
    """An ImageRef, or why the file is not a usable image (completing "image x.png ...").

    The file is opened once (without blocking, so a FIFO cannot hang the load), hashed in
    chunks, and its header read by Pillow (type and size only, no pixel is decoded).
    """
    opened = _open_image(path)
    if isinstance(opened, str):
        return opened
    fd, size = opened
    too_big = f"is {size / 2**20:.1f} MB; images must be at most {MAX_IMAGE_BYTES / 2**20:g} MB"
    if size > MAX_IMAGE_BYTES:
        os.close(fd)
        return too_big
    with os.fdopen(fd, "rb") as f:
        try:
            read = _read_hashed(f)
            if read is None:
                return too_big
            head, sha256 = read
            kind = _kind_or_problem(head, path)
            if kind not in _IMAGE_KINDS:
                return kind  # not a kind: the problem
            f.seek(0)
            if problem := _header_problem(f, kind):
                return problem
        except OSError as e:
            return f"cannot be read: {e.strerror}"
    return ImageRef(path=str(path), sha256=sha256, mime_type=kind)


def _open_image(path: Path) -> tuple[int, int] | str:
    """An open descriptor of a regular file and its size as stat says, or why not."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        return f"not found (looked for {path})"
    except IsADirectoryError:
        return "is not a file"
    except OSError as e:
        return f"cannot be read: {e.strerror}"
    try:
        st = os.fstat(fd)
    except OSError as e:
        os.close(fd)
        return f"cannot be read: {e.strerror}"
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return "is not a file"
    return fd, st.st_size


def _read_hashed(f: BinaryIO) -> tuple[bytes, str] | None:
    """The first chunk and the sha256 of the whole file, or None past ``MAX_IMAGE_BYTES``
    (counted on what is read: a file may be longer than stat said)."""
    digest = hashlib.sha256()
    head = f.read(READ_CHUNK_BYTES)
    digest.update(head)
    total = len(head)
    while total <= MAX_IMAGE_BYTES and (chunk := f.read(READ_CHUNK_BYTES)):
        digest.update(chunk)
        total += len(chunk)
    return None if total > MAX_IMAGE_BYTES else (head, digest.hexdigest())


def _kind_or_problem(head: bytes, path: Path) -> str:
    """The mime type the bytes are (one of ``_IMAGE_KINDS``), or why they will not do."""
    if not head:
        return "is empty"
    kind = sniff(head)
    if kind is None:
        return "is not a PNG, JPEG or WebP image"
    if kind not in _IMAGE_KINDS:
        return f"is {kind} data; Veo takes PNG, JPEG or WebP"
    claimed = _CLAIMED.get(path.suffix.lower())
    if claimed is not None and claimed != kind:
        return f"is {_IMAGE_KINDS[kind]} data, not {_IMAGE_KINDS[claimed]}"
    return kind


def _header_problem(f: BinaryIO, kind: str) -> str | None:
    """Why the image's header does not make it a real ``kind`` image, if it does not.

    Pillow's ``Image.open`` reads the header only (dimensions included) and decodes no pixel,
    so a load of 100k rows sharing a few images stays fast; each file is read once anyway.
    """
    from PIL import Image, JpegImagePlugin, PngImagePlugin, WebPImagePlugin  # noqa: F401

    name = _IMAGE_KINDS[kind]
    broken = f"is not a readable {name} image (its header is missing, cut short or broken)"
    try:
        with warnings.catch_warnings():  # large but real photos: no warning on stderr
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(f, formats=[_PILLOW_FORMATS[kind]]) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        return f"is not a readable {name} image (over {limit:,} pixels: a decompression bomb?)"
    except Exception:  # Pillow's parsers raise many kinds of errors on a broken header
        return broken
    if not (1 <= width <= MAX_IMAGE_SIDE_PX and 1 <= height <= MAX_IMAGE_SIDE_PX):
        return f"is {width}×{height} pixels; at most {MAX_IMAGE_SIDE_PX} on a side"
    return None
