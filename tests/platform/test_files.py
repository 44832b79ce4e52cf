"""The file store: type and size checks, content keys, thumbnails, the local directory."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from pujiang.platform import files
from pujiang.platform.errors import Problem


def _jpeg(width: int = 800, height: int = 600, color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "JPEG")
    return out.getvalue()


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (40, 20), (0, 0, 255, 128)).save(out, "PNG")
    return out.getvalue()


def test_image_is_stored_once_with_a_thumbnail(tmp_path: Path) -> None:
    store = files.LocalStore(tmp_path)
    data = _jpeg()
    first = files.put_file(store, data, "../../photo.jpg")
    again = files.put_file(store, data, "other.jpg")
    assert first.key == again.key
    assert first.media_type == "image/jpeg"
    assert (first.width, first.height) == (800, 600)
    assert first.filename == "photo.jpg"
    assert store.get(first.key) == data
    assert first.thumbnail_key is not None
    with Image.open(io.BytesIO(store.get(first.thumbnail_key))) as thumb:
        assert max(thumb.size) == files.THUMBNAIL_PX
        assert thumb.format == "JPEG"


def test_png_with_alpha_and_pdf(tmp_path: Path) -> None:
    store = files.LocalStore(tmp_path)
    assert files.put_file(store, _png(), "a.png").thumbnail_key
    pdf = files.put_file(store, b"%PDF-1.4\n%%EOF\n", "report.pdf")
    assert pdf.media_type == "application/pdf"
    assert pdf.thumbnail_key is None


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 422),
        (b"MZ\x90\x00 not an image", 415),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", 415),
        (b"\xff\xd8\xff broken jpeg", 422),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, data: bytes, status: int) -> None:
    with pytest.raises(Problem) as caught:
        files.put_file(files.LocalStore(tmp_path), data, "x.jpg")
    assert caught.value.status == status
    assert "x.jpg" in caught.value.detail


def test_size_limit_and_allowed_types(tmp_path: Path) -> None:
    store = files.LocalStore(tmp_path)
    with pytest.raises(Problem) as caught:
        files.put_file(store, _jpeg(), "big.jpg", max_bytes=100)
    assert caught.value.status == 413
    with pytest.raises(Problem) as caught:
        files.put_file(store, b"%PDF-1.4", "a.pdf", allowed=files.IMAGE_TYPES)
    assert caught.value.status == 415


def test_local_store_keeps_keys_inside(tmp_path: Path) -> None:
    store = files.LocalStore(tmp_path / "root")
    with pytest.raises(ValueError, match="leaves the store"):
        store.put("../escape.txt", b"x", "text/plain")
    with pytest.raises(Problem):
        store.get("files/none.jpg")
    store.put("a/b.bin", b"1", "application/octet-stream")
    assert store.exists("a/b.bin")
    store.delete("a/b.bin")
    assert not store.exists("a/b.bin")


def test_file_store_defaults_to_var_dir(tmp_path: Path) -> None:
    context = SimpleNamespace(settings=SimpleNamespace(var_dir=tmp_path), extras={})
    store = files.file_store(context)
    assert isinstance(store, files.LocalStore)
    assert store.root == tmp_path / "files"
    assert files.file_store(context) is store
