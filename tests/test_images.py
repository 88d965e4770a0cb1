"""famevil.data.images: every image famevil reads is decoded upright, its pixel count checked from the
header before decoding, and a bad one is one line naming it."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_specs.errors import FamevilError
from famevil.data.images import MAX_PIXELS, ORIENTATION_TAG, ImageError, ImageTooLarge, check_image_file, decode_image, image_file_as_jpeg, read_rgb

ROTATED_90 = 6  # EXIF: the stored pixels must be turned 90 degrees clockwise to stand upright


def sideways_jpeg(orientation: int = ROTATED_90) -> tuple[bytes, Image.Image]:
    """A JPEG stored as a phone stores a portrait photo: landscape pixels and an orientation tag; and
    the upright image the tag asks for."""
    stored = Image.fromarray(np.arange(24 * 16 * 3, dtype=np.uint8).reshape(16, 24, 3) * 3)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=95, exif=exif)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        upright = decoded.transpose(Image.Transpose.ROTATE_270) if orientation == ROTATED_90 else decoded.copy()
    return buffer.getvalue(), upright


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds none: a decompression bomb's header, which is
    all a reader that checks before decoding ever reads."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IEND", b"")


def test_decode_image_turns_a_sideways_photo_upright():
    data, upright = sideways_jpeg()
    decoded = decode_image(data, "photo.jpg")
    assert decoded.mode == "RGB" and decoded.size == (16, 24)
    assert np.array_equal(np.asarray(decoded), np.asarray(upright))


def test_decode_image_refuses_too_many_pixels_from_the_header_alone():
    with pytest.raises(ImageTooLarge, match=r"^bomb.png: 12000x12000 pixels is more than famevil decodes \(40,000,000\); shrink the image$"):
        decode_image(png_header(12000, 12000), "bomb.png")
    with pytest.raises(ImageTooLarge, match="more pixels than famevil decodes"):  # past Pillow's own limit, which refuses it on opening
        decode_image(png_header(20000, 20000), "bomb.png")


@pytest.mark.parametrize(("data", "reason"), [(b"not an image", "not an image format PIL can decode"), (sideways_jpeg()[0][:200], "unreadable image (")])
def test_decode_image_says_what_is_wrong_in_one_line_with_the_reason_apart(data, reason):
    with pytest.raises(ImageError) as refusal:
        decode_image(data, "upload.jpg")
    assert str(refusal.value).startswith(f"upload.jpg: {reason}") and "\n" not in str(refusal.value)
    assert refusal.value.reason.startswith(reason) and isinstance(refusal.value, FamevilError)


def test_a_sideways_jpeg_goes_into_a_shard_upright_and_an_upright_one_as_it_is(tmp_path):
    sideways, upright = sideways_jpeg()
    (tmp_path / "sideways.jpg").write_bytes(sideways)
    written = image_file_as_jpeg(tmp_path / "sideways.jpg")
    assert written != sideways
    with Image.open(io.BytesIO(written)) as shard_image:
        assert shard_image.size == (16, 24) and shard_image.getexif().get(ORIENTATION_TAG, 1) == 1
        assert np.abs(np.asarray(shard_image, dtype=int) - np.asarray(upright, dtype=int)).mean() < 4  # a second JPEG pass
    already_upright, _ = sideways_jpeg(orientation=1)
    (tmp_path / "upright.jpg").write_bytes(already_upright)
    assert image_file_as_jpeg(tmp_path / "upright.jpg") == already_upright  # never compressed twice
    assert read_rgb(tmp_path / "sideways.jpg").size == (16, 24)


def test_prepare_refuses_a_bomb_when_it_checks_the_file_and_says_how_to_go_on(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header(8000, 8000))
    check = check_image_file(bomb)
    assert check.problem == "unreadable image" and f"({MAX_PIXELS:,})" in check.detail
    with pytest.raises(FamevilError, match=r"bomb.png: 8000x8000 pixels is more than famevil decodes .*; replace the file, or delete it and prepare skips"):
        image_file_as_jpeg(bomb)
    with pytest.raises(FamevilError, match=r"gone.png: unreadable \(No such file or directory\); replace the file"):
        read_rgb(Path(tmp_path / "gone.png"))
