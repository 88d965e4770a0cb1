"""Image bytes in and out: what goes into a shard is always an RGB JPEG."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from data_specs.errors import FamevilError

JPEG_QUALITY = 95
# The most pixels famevil decodes from one image: a product photo has a few tens of megapixels at most.
# Pillow's own limit (89 M, an error only past twice that) lets one upload cost gigabytes of memory.
MAX_PIXELS = 40_000_000
ORIENTATION_TAG = 0x0112  # EXIF's orientation: 1 is upright; 2 to 8 name a flip or rotation a reader must apply


class ImageError(FamevilError):
    """An image famevil cannot decode. `reason` is what is wrong with it, without its name: what a list
    of skipped files gives, and what a caller that knows a better fix than `fix` words its own line with."""

    def __init__(self, name: str, reason: str, fix: str = ""):
        super().__init__(f"{name}: {reason}" + (f"; {fix}" if fix else ""))
        self.reason = reason


class ImageTooLarge(ImageError):
    """An image whose header declares more than MAX_PIXELS pixels; it is refused before it is decoded."""


def decode_image(data: bytes, name: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An image file's bytes as RGB, turned upright as its EXIF orientation says (a phone's photo is stored
    sideways with a tag). The pixel count is read from the header and checked before anything is
    decoded. Errors are one line naming `name` (a path, an upload's file name)."""
    try:
        with warnings.catch_warnings():  # Pillow warns of a large image on opening it; the check below refuses it instead
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
        with opened as image:
            if image.width * image.height > max_pixels:
                raise ImageTooLarge(name, f"{image.width}x{image.height} pixels is more than famevil decodes ({max_pixels:,})", "shrink the image")
            image.load()
            upright = ImageOps.exif_transpose(image)
            return upright if upright.mode == "RGB" else upright.convert("RGB")
    except Image.DecompressionBombError:
        raise ImageTooLarge(name, f"more pixels than famevil decodes ({max_pixels:,})", "shrink the image") from None
    except UnidentifiedImageError:
        raise ImageError(name, "not an image format PIL can decode") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageError(name, f"unreadable image ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None


def encode_jpeg(pixels: np.ndarray | Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    (image if image.mode == "RGB" else image.convert("RGB")).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def read_rgb(path: Path) -> Image.Image:
    """Decode any image file PIL reads (FashionIQ ships .jpg and .png) as RGB, upright (decode_image)."""
    return _decoded(_file_bytes(path), path)


def _file_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise _unusable(path, f"unreadable ({error.strerror or error})") from None


def _decoded(data: bytes, path: Path) -> Image.Image:
    try:
        return decode_image(data, str(path))
    except ImageError as error:
        raise _unusable(path, error.reason) from None


def _unusable(path: Path, reason: str) -> FamevilError:
    """Prepare's line for an image it cannot write into a shard, with how to go on."""
    return FamevilError(f"{path}: {reason}; replace the file, or delete it and prepare skips the samples that use it")


def image_file_as_jpeg(path: Path, quality: int = JPEG_QUALITY) -> bytes:
    """The file's own bytes when it is an upright RGB JPEG already (FashionIQ's are: a second
    compression would alter what the model sees, and the authors read the files as they are); any
    other image decoded, turned upright, and encoded at `quality`. A JPEG with an EXIF orientation
    other than 1 is re-encoded: a shard's reader ignores the tag, so its pixels must stand upright."""
    data = _file_bytes(path)
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "JPEG" and image.mode == "RGB" and _upright(image) and image.width * image.height <= MAX_PIXELS:
                image.load()  # a truncated file fails here, not in training
                return data
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
        pass  # decode_image reads it again and says what is wrong with the file
    return encode_jpeg(_decoded(data, path), quality)


def _upright(image: Image.Image) -> bool:
    """Whether the image's pixels stand as they are meant to be seen: no EXIF orientation tag, or 1."""
    return image.getexif().get(ORIENTATION_TAG, 1) == 1


@dataclass(frozen=True)
class ImageCheck:
    sha256: str  # of the file's bytes; empty when they could not be read
    problem: str | None = None  # why the file cannot go into a shard; None when it can
    detail: str = ""


def check_image_file(path: Path) -> ImageCheck:
    """Read an image file whole, hash its bytes and decode it, as writing it into a shard would.

    JPEGs decode in draft mode, at an eighth of their size: every byte is still decoded, so a
    truncated or corrupt file fails as it would in full, at a fraction of the cost."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ImageCheck("", "missing image")
    except OSError as error:
        return ImageCheck("", "unreadable image", error.strerror or str(error))
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:  # refused now, not when the shard is written
                return ImageCheck(digest, "unreadable image", f"{image.width}x{image.height} pixels is more than famevil decodes ({MAX_PIXELS:,})")
            image.draft("RGB", (1, 1))
            image.load()
    except UnidentifiedImageError:
        return ImageCheck(digest, "unreadable image", "not an image format PIL can decode")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return ImageCheck(digest, "unreadable image", str(error))
    return ImageCheck(digest)
