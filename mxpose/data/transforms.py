"""Augmentation: CMU's schedule as one composed affine per sample.

For a sample centred on a "main person" with centre ``c`` and scale ``person_scale``
(person height / ``scale_ref``), the original image point ``p`` (0-based pixel centres)
maps to the crop point

    q = s * R(theta) (p - c) + (S - 1) / 2 + d,      s = target_dist / person_scale * mult

with ``mult ~ U(scale_min, scale_max)``, ``theta ~ U(-max_rotate, max_rotate)`` degrees,
``d ~ U(-center_perturb, center_perturb)^2`` crop pixels, and ``S`` the crop size. With
probability ``flip_prob`` the crop is mirrored, ``q.x <- S - 1 - q.x``, and left/right
keypoint channels swap by the skeleton's flip pairs. Rotating about the image centre and
then cropping around the (rotated) person centre, as CMU does, is the same map, so the
whole schedule is one 2x3 matrix: the image and the mask are each warped once, and the
matrix is recorded in the sample's meta so predictions can be mapped back
(:func:`invert_affine`).

Keypoints that leave the crop: with ``aug.outside = 'keep'`` (default) they stay labelled
and the target renderers draw whatever part of their Gaussian / limb falls on the map
(a limb crossing the border is still supervised up to the border); with ``'drop'`` they
are unlabelled (v = 0) as CMU's caffe_train does.

Outside the original image the crop is padded with ``pad_value`` (128, grey) and the
supervision mask with 1 (supervised), as CMU does.
"""
from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np

__all__ = ["person_scales_centers", "select_main_people", "sample_affine", "affine_matrix",
           "apply_affine", "invert_affine", "warp_image", "crop_region", "warp_mask",
           "normalize_image",
           "denormalize_image", "Augmenter"]


def person_scales_centers(people: dict, scale_ref: float = 368.0):
    """Per-person scale (height / ``scale_ref``) and centre, from what the DB has.

    MPII people carry ``scale`` (height / 200 px) and ``center`` (objpos); COCO-like
    people carry a bbox. Where neither is known, the labelled keypoints' extent is used.

    Returns
    -------
    scale : ndarray, float32, (N,)  (NaN for a person with nothing to measure)
    center : ndarray, float32, (N, 2)
    """
    kp = people["keypoints"]
    n = kp.shape[0]
    scale = np.full(n, np.nan, dtype=np.float32)
    center = np.full((n, 2), np.nan, dtype=np.float32)
    for i in range(n):
        if np.isfinite(people["scale"][i]) and np.all(np.isfinite(people["center"][i])):
            scale[i] = people["scale"][i] * 200.0 / scale_ref
            center[i] = people["center"][i]
            continue
        bb = people["bbox"][i]
        if np.all(np.isfinite(bb)) and bb[3] > 0:
            scale[i] = bb[3] / scale_ref
            center[i] = (bb[0] + bb[2] / 2, bb[1] + bb[3] / 2)
            continue
        lab = kp[i, :, 2] > 0
        if lab.sum() >= 2:
            lo, hi = kp[i, lab, :2].min(0), kp[i, lab, :2].max(0)
            scale[i] = max(hi[1] - lo[1], 1.0) / scale_ref
            center[i] = (lo + hi) / 2
    return scale, center


def select_main_people(people: dict, centers: np.ndarray, min_keypoints: int = 5,
                       min_area: float = 32 * 32, min_center_dist: float = 0.3) -> np.ndarray:
    """CMU's choice of the people a sample is centred on.

    A person qualifies with at least ``min_keypoints`` labelled keypoints, an area of at
    least ``min_area`` px and a centre no closer than ``min_center_dist * max(w, h)`` (its
    own bbox) to an already chosen person's centre. Returns indices, in DB order.
    """
    kp = people["keypoints"]
    chosen = []
    for i in range(kp.shape[0]):
        if people["is_crowd"][i] or int((kp[i, :, 2] > 0).sum()) < min_keypoints:
            continue
        if not np.all(np.isfinite(centers[i])):
            continue
        bb = people["bbox"][i]
        area = people["area"][i]
        if np.all(np.isfinite(bb)):
            w, h = float(bb[2]), float(bb[3])
            if not np.isfinite(area):
                area = w * h
        else:
            lab = kp[i, :, 2] > 0
            ext = kp[i, lab, :2].max(0) - kp[i, lab, :2].min(0)
            w, h = float(ext[0]), float(ext[1])
            if not np.isfinite(area):
                # MPII has no areas: the person box from scale (height) is the measure
                s = people["scale"][i]
                area = (s * 200.0) ** 2 if np.isfinite(s) else w * h
        if area < min_area:
            continue
        lim = min_center_dist * max(w, h)
        if any(np.hypot(*(centers[i] - centers[j])) < lim for j in chosen):
            continue
        chosen.append(i)
    return np.array(chosen, dtype=np.int64)


def affine_matrix(center, scale: float, degrees: float, out_size: int,
                  shift=(0.0, 0.0), flip: bool = False) -> np.ndarray:
    """2x3 float64 matrix mapping original pixel centres to crop pixel centres.

    Parameters
    ----------
    center : (2,) original-image point that lands at the crop centre (+ ``shift``).
    scale : total scale factor (crop px per original px).
    degrees : counter-clockwise rotation in degrees (image y axis down, as OpenCV).
    out_size : crop side S.
    shift : (dx, dy) crop-pixel offset of the centre.
    flip : mirror the crop horizontally.
    """
    t = math.radians(degrees)
    c, s = math.cos(t) * scale, math.sin(t) * scale
    # OpenCV's getRotationMatrix2D convention: positive angle rotates counter-clockwise
    # on screen (y down).
    A = np.array([[c, s], [-s, c]], dtype=np.float64)
    half = (out_size - 1) / 2.0
    b = np.array([half + shift[0], half + shift[1]]) - A @ np.asarray(center, np.float64)
    M = np.concatenate([A, b[:, None]], axis=1)
    if flip:
        M = np.array([[-1.0, 0, out_size - 1], [0, 1, 0]]) @ np.vstack([M, [0, 0, 1]])
    return M


def sample_affine(rng: np.random.Generator, center, person_scale: float, aug,
                  train: bool = True):
    """Draw one affine from the schedule in ``aug`` (the config's ``aug`` section).

    Returns ``(M, flipped, params)`` with ``params`` the drawn values (for meta/logging).
    With ``train=False`` or ``aug.enabled`` false: no rotation, no shift, no flip, and the
    scale multiplier is 1.
    """
    base = aug.target_dist / max(float(person_scale), 1e-6)
    if train and aug.enabled:
        mult = rng.uniform(aug.scale_min, aug.scale_max)
        deg = rng.uniform(-aug.max_rotate, aug.max_rotate)
        shift = rng.uniform(-aug.center_perturb, aug.center_perturb, size=2)
        flip = bool(rng.random() < aug.flip_prob)
    else:
        mult, deg, shift, flip = 1.0, 0.0, np.zeros(2), False
    scale = base * mult
    M = affine_matrix(center, scale, deg, int(aug.input_size), shift, flip)
    params = {"scale": float(scale), "mult": float(mult), "degrees": float(deg),
              "shift": [float(shift[0]), float(shift[1])], "flip": flip,
              "center": [float(center[0]), float(center[1])]}
    return M, flip, params


def apply_affine(M: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``(..., 2+)`` points (x, y first) through a 2x3 affine; extra columns kept;
    unlabelled rows (third column 0) stay zeros."""
    pts = np.array(points, dtype=np.float32, copy=True)
    xy = pts[..., :2].astype(np.float64)
    out = xy @ M[:, :2].T + M[:, 2]
    pts[..., :2] = out
    if pts.shape[-1] > 2:
        pts[pts[..., 2] <= 0] = 0
    return pts


def invert_affine(M: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine, as a 2x3 matrix."""
    return cv2.invertAffineTransform(np.asarray(M, np.float64))


def warp_image(img: np.ndarray, M: np.ndarray, size: int, pad_value: int = 128,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """Warp a BGR uint8 image into a ``size`` x ``size`` crop (bilinear, padded).

    ``out`` (size, size, 3) uint8 C-contiguous is written in place (a reused buffer
    saves page-faulting a fresh crop in per sample)."""
    if out is not None and (out.shape != (size, size, 3) or out.dtype != np.uint8
                            or not out.flags.c_contiguous):
        raise ValueError(f"out must be a C-contiguous uint8 ({size}, {size}, 3) array")
    return cv2.warpAffine(img, M, (size, size), dst=out, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(pad_value,) * 3)


def crop_region(M: np.ndarray, box, size: int):
    """Crop rectangle that the original-image box can reach through ``M``.

    Parameters
    ----------
    M : (2, 3) affine, original -> crop.
    box : (x0, y0, x1, y1) pixel-centre bounds (inclusive) of a region in the original.
    size : crop side S.

    Returns
    -------
    (cx0, cy0, cx1, cy1) int, half-open, clipped to the crop, or None when the region
    falls outside it. One pixel of margin on each side covers bilinear interpolation
    and OpenCV's fixed-point (1/32 px) coordinates.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    corners = np.array([[x0 - 1, y0 - 1], [x1 + 1, y0 - 1], [x0 - 1, y1 + 1], [x1 + 1, y1 + 1]])
    q = corners @ np.asarray(M, np.float64)[:, :2].T + np.asarray(M, np.float64)[:, 2]
    cx0, cy0 = (max(int(math.floor(v)) - 1, 0) for v in q.min(0))
    cx1, cy1 = (min(int(math.ceil(v)) + 2, size) for v in q.max(0))
    if cx0 >= cx1 or cy0 >= cy1:
        return None
    return cx0, cy0, cx1, cy1


def warp_mask(mask: np.ndarray, M: np.ndarray, size: int, border: float = 1.0,
              offset=(0, 0), roi=None) -> np.ndarray:
    """Warp a float32 supervision mask (1 = supervise) into the crop; outside the
    original image the mask is ``border``.

    Parameters
    ----------
    mask : float32 (h, w)
        The mask, or a sub-rectangle of it whose top-left pixel is the original
        pixel ``offset``; everything outside the sub-rectangle must equal ``border``
        (so warping only it is exact: bilinear samples outside read ``border`` either way).
    M : (2, 3) affine, original -> crop.
    size : crop side S.
    offset : (x, y) original pixel of ``mask[0, 0]``.
    roi : (cx0, cy0, cx1, cy1), optional
        Only this crop rectangle is warped (see :func:`crop_region`); the rest of the
        crop is ``border``. Default: the whole crop.

    Returns
    -------
    float32 (S, S)
    """
    M = np.asarray(M, np.float64)
    cx0, cy0, cx1, cy1 = (0, 0, size, size) if roi is None else roi
    Ms = M.copy()
    # mask pixel (i, j) is original pixel (j + ox, i + oy); the roi shifts the crop origin
    Ms[:, 2] += M[:, :2] @ np.asarray(offset, np.float64) - np.array([cx0, cy0], np.float64)
    warped = cv2.warpAffine(mask, Ms, (cx1 - cx0, cy1 - cy0), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=float(border))
    if (cx0, cy0, cx1, cy1) == (0, 0, size, size):
        return warped
    out = np.full((size, size), border, dtype=np.float32)
    out[cy0:cy1, cx0:cx1] = warped
    return out


# (v - 128) / 256 for every uint8 value: one table lookup per pixel instead of two passes
_NORM_LUT = ((np.arange(256, dtype=np.float32) - 128.0) / 256.0).reshape(1, 256)


def normalize_image(img: np.ndarray, out: Optional[np.ndarray] = None,
                    channels: str = "bgr") -> np.ndarray:
    """BGR uint8 (h, w, 3) -> CHW float32 ``(v - 128) / 256`` (CMU's VGG input).

    ``channels='rgb'`` takes an RGB image and still writes BGR planes (the reorder is
    free here, so decoders that produce RGB need no conversion pass). ``out`` (3, h, w)
    float32 C-contiguous is filled in place.
    """
    if channels not in ("bgr", "rgb"):
        raise ValueError(f"channels must be 'bgr' or 'rgb', got {channels!r}")
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) image, got shape {img.shape}")
    h, w = img.shape[:2]
    if out is None:
        out = np.empty((3, h, w), dtype=np.float32)
    order = [0, 1, 2] if channels == "bgr" else [2, 1, 0]
    if (img.dtype == np.uint8 and out.flags.c_contiguous and out.dtype == np.float32
            and out.shape == (3, h, w)):
        for c, plane in zip(order, cv2.split(np.ascontiguousarray(img))):
            cv2.LUT(plane, _NORM_LUT, dst=out[c])
    else:   # other dtypes (float images) and odd output buffers: plain arithmetic
        np.subtract(img[..., order].transpose(2, 0, 1), 128.0, out=out, dtype=np.float32)
        out *= 1.0 / 256.0
    return out


def denormalize_image(chw: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize_image`: CHW float32 -> BGR uint8 HWC (C-contiguous,
    so OpenCV can draw on it)."""
    hwc = np.clip(np.asarray(chw).transpose(1, 2, 0) * 256.0 + 128.0, 0, 255)
    return np.ascontiguousarray(hwc, dtype=np.uint8)


class Augmenter:
    """Turns a decoded image, its people and its ignore mask into one training crop.

    Parameters
    ----------
    skeleton : Skeleton
        Layout of the keypoints given to :meth:`__call__` (for flip pairs).
    aug : EasyDict
        The config's ``aug`` section.
    """

    def __init__(self, skeleton, aug):
        self.skeleton = skeleton
        self.aug = aug
        self.size = int(aug.input_size)

    def __call__(self, rng, img, keypoints, supervise, center, person_scale, train=True,
                 pre=None):
        """Warp one sample.

        Parameters
        ----------
        rng : numpy Generator
        img : uint8 (h', w', 3) BGR, possibly decoded at reduced size (see ``pre``).
        keypoints : float32 (N, K, 3) all people in ORIGINAL image coordinates.
        supervise : float32 (h, w) mask (1 = supervise) at the ORIGINAL image size,
            or None when the image has no ignore regions.
        center, person_scale : the main person's centre and scale (original coords).
        pre : optional 2x3 affine from the decoded image's pixels to original pixels
            (for reduced-size decoding); the recorded matrix stays original -> crop.

        Returns
        -------
        dict: ``image`` uint8 (S, S, 3), ``keypoints`` (N, K, 3) in crop pixels,
        ``supervise`` float32 (S, S) or None, ``meta`` with the 2x3 ``affine``
        (original -> crop) and the drawn parameters.
        """
        M, flipped, params = sample_affine(rng, center, person_scale, self.aug, train)
        return self.apply(M, flipped, params, img, keypoints, supervise, pre)

    def apply(self, M, flipped, params, img, keypoints, supervise, pre=None,
              supervise_offset=(0, 0), image_out=None):
        """Warp with an already drawn affine (see :func:`sample_affine`); same returns as
        :meth:`__call__`. ``supervise`` is at ORIGINAL resolution (warped with ``M``),
        ``img`` at the resolution ``pre`` maps from.

        ``supervise`` may be just the sub-rectangle of the original mask that holds its
        ignore regions, starting at original pixel ``supervise_offset`` (x, y); the
        mask is 1 everywhere else. Only the crop pixels that sub-rectangle can reach are
        warped, and ``supervise`` comes back None when it does not reach the crop at all
        (nothing to ignore in this sample). ``image_out`` is an optional reused crop
        buffer (see :func:`warp_image`)."""
        Mimg = M if pre is None else M @ np.vstack([pre, [0, 0, 1]])
        crop = warp_image(img, Mimg, self.size, int(self.aug.pad_value), out=image_out)
        sup = None
        if supervise is not None:
            h, w = supervise.shape[:2]
            ox, oy = supervise_offset
            roi = crop_region(M, (ox, oy, ox + w - 1, oy + h - 1), self.size)
            if roi is not None:
                sup = warp_mask(supervise, M, self.size, 1.0, offset=(ox, oy), roi=roi)
        kp = apply_affine(M, keypoints)
        if flipped:
            kp = kp[:, self.skeleton.flip_index]
        if self.aug.outside == "drop":
            out = ((kp[..., 0] < 0) | (kp[..., 1] < 0) | (kp[..., 0] > self.size - 1)
                   | (kp[..., 1] > self.size - 1))
            kp[out] = 0
        meta = dict(params, affine=M.tolist(), input_size=self.size)
        return {"image": crop, "keypoints": kp, "supervise": sup, "meta": meta}
