"""Decoding image bytes: the one decoder used at ingestion, check, training, evaluation
and demo.

Policy
------
- **EXIF orientation is never applied.** Annotations (COCO, MPII) refer to the pixels
  as stored in the file, the grid pycocotools and the annotation tools use; a phone photo
  with ``Orientation=6`` is decoded, sized, stored, trained and evaluated in that stored
  order. Width and height everywhere (DB, reports, checks) are the stored-pixel ones.
- **Truncated or corrupt bytes are an error**, never a grey-filled image: Pillow's
  process-wide ``ImageFile.LOAD_TRUNCATED_IMAGES`` (which ``gluoncv.data`` turns on at
  import) is reset before every JPEG decode.
- JPEGs are decoded by Pillow (libjpeg-turbo; about 1.5x faster than ``cv2.imdecode``
  here, same pixels), optionally at 1/2, 1/4 or 1/8 size through DCT scaling; other
  formats (PNG, BMP, TIFF, WebP; 16-bit, grey, alpha) by OpenCV at full size, 16-bit
  scaled to 8-bit and alpha dropped as ``cv2.IMREAD_COLOR`` does.
"""
from __future__ import annotations

import io
import struct
from typing import Optional, Tuple

import numpy as np

__all__ = ["ImageDecodeError", "decode_image", "image_size", "read_image"]


class ImageDecodeError(ValueError):
    """Bytes that do not decode to an image (corrupt, truncated, unknown format), or an
    image whose size differs from the expected one."""


def _is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


def _pil_errors():
    from PIL import Image
    return (OSError, ValueError, SyntaxError, EOFError, struct.error,
            Image.DecompressionBombError)


def _open_jpeg(data: bytes):
    from PIL import Image, ImageFile
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    return Image.open(io.BytesIO(data))


def decode_image(data: bytes, reduce: int = 1, channels: str = "bgr",
                 expect_size: Optional[Tuple[int, int]] = None):
    """Decode encoded image bytes (stored-pixel order, see the module's policy).

    Parameters
    ----------
    data : bytes
        JPEG, PNG, ... as read from a file or a pose DB.
    reduce : {1, 2, 4, 8}
        Requested DCT reduction; JPEG only (other formats decode at full size).
    channels : {'bgr', 'rgb', 'any'}
        Channel order wanted; 'any' returns the decoder's own order without a copy
        (Pillow: RGB, OpenCV: BGR), named in the result.
    expect_size : (width, height), optional
        The size the caller knows (a DB record); another decoded size raises.

    Returns
    -------
    img : uint8 (ceil(h/r), ceil(w/r), 3)
    r : int
        The reduction actually applied (1 or ``reduce``).
    channels : {'rgb', 'bgr'}

    Raises
    ------
    ImageDecodeError
        Undecodable or truncated bytes, or a size other than ``expect_size``.
    """
    reduce = int(reduce)
    if reduce not in (1, 2, 4, 8):
        raise ValueError(f"reduce must be 1, 2, 4 or 8, got {reduce}")
    if not data:
        raise ImageDecodeError("no image bytes")
    if _is_jpeg(data):
        try:
            im = _open_jpeg(data)
            w, h = im.size
            if reduce > 1:
                # draft picks the largest DCT scale s with size // s still >= the request;
                # w // r keeps it at r for every w >= r
                im.draft("RGB", (max(w // reduce, 1), max(h // reduce, 1)))
            im.load()       # raises on truncated data
            if im.mode != "RGB":
                im = im.convert("RGB")
            img, order = np.asarray(im), "rgb"
        except _pil_errors() as e:
            raise ImageDecodeError(f"undecodable image bytes ({type(e).__name__}: {e})") \
                from None
    else:
        import cv2
        img = cv2.imdecode(np.frombuffer(data, np.uint8),
                           cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if img is None:
            raise ImageDecodeError("undecodable image bytes (not a JPEG/PNG/BMP/TIFF/WebP "
                                   "image, or a corrupt one)")
        h, w = img.shape[:2]
        order = "bgr"
    r = next((rr for rr in (reduce, 1) if img.shape[:2] == (-(-h // rr), -(-w // rr))), None)
    if r is None:
        raise ImageDecodeError(f"decoded image is {img.shape[1]}x{img.shape[0]}, its header "
                               f"says {w}x{h}")
    if expect_size is not None and (int(expect_size[0]), int(expect_size[1])) != (w, h):
        raise ImageDecodeError(f"decoded image is {w}x{h}, expected "
                               f"{int(expect_size[0])}x{int(expect_size[1])}")
    if channels != "any" and channels != order:
        img = np.ascontiguousarray(img[..., ::-1])
        order = channels
    return img, r, order


def image_size(data: bytes) -> Tuple[int, int]:
    """(width, height) in stored-pixel order, after checking that the bytes decode whole.

    JPEGs are decoded at 1/8 scale (every byte is still read, so a truncated file is
    caught) and sized from the header; other formats are decoded fully.

    Raises
    ------
    ImageDecodeError
    """
    if _is_jpeg(data):
        try:
            im = _open_jpeg(data)
            w, h = im.size
            im.draft("L", (max(w // 8, 1), max(h // 8, 1)))
            im.load()
        except _pil_errors() as e:
            raise ImageDecodeError(f"undecodable image bytes ({type(e).__name__}: {e})") \
                from None
        if w <= 0 or h <= 0:
            raise ImageDecodeError(f"invalid image size {w}x{h}")
        return int(w), int(h)
    img = decode_image(data)[0]
    return img.shape[1], img.shape[0]


def read_image(path: str) -> np.ndarray:
    """A BGR uint8 image file, decoded by :func:`decode_image` (EXIF not applied).

    Raises
    ------
    OSError
        The file cannot be read.
    ImageDecodeError
        The bytes are not an image; the message names ``path``.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return decode_image(data)[0]
    except ImageDecodeError as e:
        raise ImageDecodeError(f"{path}: {e}") from None
