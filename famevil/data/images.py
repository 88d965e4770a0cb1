"""Image bytes in and out: what goes into a shard is always a baseline RGB JPEG."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from data_specs.errors import FamevilError

JPEG_QUALITY = 95


def encode_jpeg(pixels: np.ndarray | Image.Image, quality: int = JPEG_QUALITY) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    (image if image.mode == "RGB" else image.convert("RGB")).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def image_file_as_jpeg(path: Path, quality: int = JPEG_QUALITY) -> bytes:
    """Decode any image file PIL reads (FashionIQ ships .jpg and .png) and re-encode it as RGB JPEG."""
    try:
        with Image.open(path) as image:
            image.load()
            return encode_jpeg(image, quality)
    except UnidentifiedImageError:
        reason = "not an image format PIL can decode"
    except (OSError, SyntaxError, ValueError) as error:
        reason = str(error)
    raise FamevilError(f"{path}: unreadable image ({reason}); replace the file, or delete it and prepare skips its triplets")
