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


class ImageTooLarge(FamevilError):
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
                raise ImageTooLarge(f"{name}: {image.width}x{image.height} pixels is more than famevil decodes ({max_pixels:,}); shrink the image")
            image.load()
            upright = ImageOps.exif_transpose(image)
            return upright if upright.mode == "RGB" else upright.convert("RGB")
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"{name}: more pixels than famevil decodes ({max_pixels:,}); shrink the image") from None
    except UnidentifiedImageError:
        raise FamevilError(f"{name}: not an image format PIL can decode") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise FamevilError(f"{name}: unreadable image ({str(error).splitlines()[0] if str(error) else type(error).__name__})") from None


def encode_jpeg(pixels: np.ndarray | Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    (image if image.mode == "RGB" else image.convert("RGB")).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def read_rgb(path: Path) -> Image.Image:
    """Decode any image file PIL reads (FashionIQ ships .jpg and .png) as RGB."""
    try:
        with Image.open(path) as image:
            image.load()
            return image if image.mode == "RGB" else image.convert("RGB")
    except UnidentifiedImageError:
        reason = "not an image format PIL can decode"
    except (OSError, SyntaxError, ValueError) as error:
        reason = str(error)
    raise FamevilError(f"{path}: unreadable image ({reason}); replace the file, or delete it and prepare skips the samples that use it")


def image_file_as_jpeg(path: Path, quality: int = JPEG_QUALITY) -> bytes:
    """The file's own bytes when it is an RGB JPEG already (FashionIQ's are: a second compression
    would alter what the model sees, and the authors read the files as they are); any other image
    decoded and encoded at `quality`."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a truncated file fails here, not in training
            if image.format == "JPEG" and image.mode == "RGB":
                return data
            return encode_jpeg(image, quality)  # encode_jpeg converts to RGB; the file is read once
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError):
        pass  # read_rgb reads it again and says what is wrong with the file
    return encode_jpeg(read_rgb(path), quality)


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
            image.draft("RGB", (1, 1))
            image.load()
    except UnidentifiedImageError:
        return ImageCheck(digest, "unreadable image", "not an image format PIL can decode")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        return ImageCheck(digest, "unreadable image", str(error))
    return ImageCheck(digest)
