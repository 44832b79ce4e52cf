"""The file store: photos and attachments, checked on the way in, with thumbnails for images.

Blobs go to an `ObjectStore` under a content-derived key; the default keeps them in a local
directory under `settings.var_dir/files`. A deployment with object storage (S3, OSS, MinIO)
implements the four methods of `ObjectStore` and puts an instance in
`context.extras["files.store"]`. Which row a file belongs to is the calling module's business:
the store only keeps bytes and says what they are.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, ImageOps, UnidentifiedImageError

from pujiang.platform.errors import Problem
from pujiang.platform.i18n import register

STORE_KEY = "files.store"
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
THUMBNAIL_PX = 320
# Decompression bombs: refuse images whose pixel count is absurd for a phone photo.
MAX_PIXELS = 64_000_000

# Types are told by their first bytes, never by the name or the declared Content-Type.
_SIGNATURES: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png", "png"),
    (b"GIF87a", 0, "image/gif", "gif"),
    (b"GIF89a", 0, "image/gif", "gif"),
    (b"WEBP", 8, "image/webp", "webp"),
    (b"%PDF-", 0, "application/pdf", "pdf"),
)
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
DEFAULT_TYPES = IMAGE_TYPES | {"application/pdf"}

register(
    {
        "files.empty": ("文件 {name} 为空", "File {name} is empty"),
        "files.too_large": (
            "文件 {name} 有 {size} 字节，超过 {limit} 字节的上限",
            "File {name} has {size} bytes, more than the limit of {limit}",
        ),
        "files.type": (
            "文件 {name} 的类型不被接受；允许：{allowed}",
            "File {name} is not an accepted type; allowed: {allowed}",
        ),
        "files.bad_image": (
            "文件 {name} 不是可读的图片：{reason}",
            "File {name} is not a readable image: {reason}",
        ),
        "files.missing": ("文件 {key} 不存在", "No file {key}"),
    }
)


class ObjectStore(Protocol):
    """Where blobs live. Keys are relative, slash-separated, made by `put_file`."""

    def put(self, key: str, data: bytes, media_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...


class LocalStore:
    """Blobs as files under one directory; writes are atomic (temporary file, then rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"file key {key!r} leaves the store")
        return path

    def put(self, key: str, data: bytes, media_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise Problem.of(404, "not-found", "files.missing", key=key) from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def file_store(context: Any) -> ObjectStore:
    """The app's store: one put in `context.extras`, else a LocalStore under var_dir/files."""
    store: ObjectStore | None = context.extras.get(STORE_KEY)
    if store is None:
        store = LocalStore(Path(context.settings.var_dir) / "files")
        context.extras[STORE_KEY] = store
    return store


@dataclass(frozen=True)
class StoredFile:
    key: str
    media_type: str
    size: int
    sha256: str
    filename: str
    thumbnail_key: str | None = None
    width: int | None = None
    height: int | None = None


def sniff(data: bytes) -> tuple[str, str] | None:
    """(media type, extension) from the content's signature, or None if unknown."""
    for magic, offset, media_type, extension in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            if media_type == "image/webp" and not data.startswith(b"RIFF"):
                continue
            return media_type, extension
    return None


def check(
    data: bytes,
    filename: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allowed: frozenset[str] = DEFAULT_TYPES,
) -> tuple[str, str]:
    """Raise a 413/415/422 problem unless `data` is a non-empty allowed file within the limit."""
    name = filename or "(unnamed)"
    if not data:
        raise Problem.of(422, "validation-error", "files.empty", name=name)
    if len(data) > max_bytes:
        raise Problem.of(
            413, "payload-too-large", "files.too_large", name=name, size=len(data), limit=max_bytes
        )
    kind = sniff(data)
    if kind is None or kind[0] not in allowed:
        raise Problem.of(
            415,
            "unsupported-media-type",
            "files.type",
            name=name,
            allowed=", ".join(sorted(allowed)),
        )
    return kind


def thumbnail(data: bytes, size: int = THUMBNAIL_PX) -> tuple[bytes, int, int]:
    """A JPEG no larger than size×size, turned upright by its EXIF, and the original's size."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ValueError(f"{width}x{height} pixels is too many")
        upright = ImageOps.exif_transpose(image)
        upright.thumbnail((size, size))
        out = io.BytesIO()
        upright.convert("RGB").save(out, "JPEG", quality=80, optimize=True)
        return out.getvalue(), width, height


def put_file(
    store: ObjectStore,
    data: bytes,
    filename: str,
    *,
    prefix: str = "files",
    max_bytes: int = DEFAULT_MAX_BYTES,
    allowed: frozenset[str] = DEFAULT_TYPES,
) -> StoredFile:
    """Check, store and (for images) thumbnail one file. Same bytes, same key: stored once."""
    media_type, extension = check(data, filename, max_bytes=max_bytes, allowed=allowed)
    digest = hashlib.sha256(data).hexdigest()
    key = f"{prefix}/{digest[:2]}/{digest}.{extension}"
    thumb_key: str | None = None
    width = height = None
    if media_type in IMAGE_TYPES:
        try:
            small, width, height = thumbnail(data)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise Problem.of(
                422, "validation-error", "files.bad_image", name=filename, reason=str(exc)
            ) from exc
        thumb_key = f"{prefix}/{digest[:2]}/{digest}.thumb.jpg"
        if not store.exists(thumb_key):
            store.put(thumb_key, small, "image/jpeg")
    if not store.exists(key):
        store.put(key, data, media_type)
    return StoredFile(
        key=key,
        media_type=media_type,
        size=len(data),
        sha256=digest,
        filename=Path(filename or "").name[:255],
        thumbnail_key=thumb_key,
        width=width,
        height=height,
    )
