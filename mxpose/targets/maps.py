"""Ground-truth maps: Gaussian heatmaps, Part Affinity Fields and loss masks.

Thin validating wrappers over the compiled kernels in ``mxpose.targets._maps``. All maps
are float32 at ``stride`` times lower resolution than the network input.

Grid convention (``mode='centered'``, the default)
    Map cell ``g`` is centred at input pixel ``stride*g + (stride-1)/2`` (0-based pixel
    centres), for heatmaps and PAFs alike: cell g covers input pixels
    ``[stride*g, stride*g + stride)``, which is also the block the loss mask averages.
    A horizontal flip of the input, ``x' = w - 1 - x`` with ``w = stride * W``, maps
    cell centres exactly onto mirrored cell centres, so rendering commutes with flipping.

CMU compatibility (``mode='cmu'``)
    Reproduces CMU's caffe_train (``cpm_data_transformer.cpp``): heatmap cells at
    ``stride*g + stride/2 - 0.5`` (the same as centred), PAF cells at ``stride*g``
    (endpoints multiplied by 1/stride, no offset), the PAF box
    ``round(min - width) <= g < round(max + width)`` with C's round-half-away-from-zero,
    heatmaps merged by sum clipped at 1, and CMU's -1 px annotation shift: caffe_train
    subtracts 1 from every coordinate ("Matlab 1-index to C++ 0-index") although its
    COCO JSON holds COCO's 0-based coordinates, so in cmu mode the wrappers subtract 1
    from x and y of every keypoint before rendering. Deliberate differences: PAFs are
    always the true mean of overlapping people (caffe_train's counter never increments,
    so there the last person overwrites), arithmetic is double rather than float (values
    agree to float rounding), and loss masks are area-averaged in both modes (caffe_train
    shrinks its 0/255 mask with bicubic interpolation). The flip equivariance above does
    not hold in cmu mode (PAF cells at ``stride*g`` are not mirror-symmetric, and the
    -1 px shift moves mirrored points apart by 2 px).

Heatmaps
    Gaussian with ``sigma`` input pixels, cut where the exponent
    ``dx^2/(2 sigma^2) + dy^2/(2 sigma^2)`` exceeds 4.6052 (ln 100, CMU's constant);
    people merge by max (default) or by sum clipped at 1 (``'sum_clip'``, CMU).
    Background (last channel) is ``1 - max`` over the keypoint channels, in [0, 1].

PAFs
    Limb ``l = (a, b)`` writes the unit vector from a to b into channels ``2l`` (x) and
    ``2l+1`` (y) on every cell whose perpendicular distance to the limb's line is
    ``<= width`` grid cells and which lies in the limb's bounding box grown by
    ``width`` (centred mode: ``ceil(min - width) <= g <= floor(max + width)``). Both
    endpoints must be labelled; limbs shorter than 1e-6 cells write nothing; a cell
    covered by several people holds the mean of their unit vectors. The distance is
    measured from the endpoint nearer the grid origin (mathematically the same line; it
    keeps a far-off endpoint, e.g. at 1e30 px, from cancelling all precision away).

Labelling policy
    Only keypoints with ``v > 0`` are drawn, wherever they are (points off the map draw
    the part of their Gaussian / limb that falls on it). Which keypoints are labelled
    (e.g. dropping the ones that left the crop) is the caller's decision.

Loss masks
    Convention: 1 = supervise, 0 = ignore. :func:`render_masks` area-averages the
    (already warped) input-resolution supervision mask over each cell's
    ``stride x stride`` block. As in CMU, the same mask applies to every heatmap channel
    (background included) and every PAF channel: unlabelled keypoints of annotated
    people are supervised as negatives, while people without keypoints and crowds are
    expected to be zero in the supervision mask. caffe_train also leaves a keypoint
    channel out of the loss when the main person's keypoint has "unknown" visibility
    (its internal ``isVisible == 3``; COCO's v = 0/1/2 become its 2/0/1, so COCO never
    triggers it); :class:`TargetRenderer` offers that as per-channel weights
    (``heat_weight``) and otherwise uses one mask for all channels.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

try:
    from . import _maps
except ImportError as _e:  # a missing build must say how to build, not fall back
    raise ImportError(
        "mxpose.targets._maps (the compiled target kernels) is not built: run "
        "`pip install --no-build-isolation -e .` or "
        "`MXPOSE_ONLY_EXT=targets._maps python setup.py build_ext --inplace` "
        f"in the repository root ({_e})") from _e

__all__ = ["render_heatmaps", "render_pafs", "render_masks", "expand_mask",
           "render_targets", "TargetRenderer", "MODES", "MERGES", "GAUSSIAN_CUT"]

MODES = ("centered", "cmu")
MERGES = ("max", "sum_clip")
GAUSSIAN_CUT = _maps.CUT


# -- validation helpers -------------------------------------------------------------------
def _check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown target mode {mode!r}; expected one of {MODES}")
    return mode


def _check_merge(merge: Optional[str], mode: str) -> str:
    if merge is None:
        return "sum_clip" if mode == "cmu" else "max"
    if merge not in MERGES:
        raise ValueError(f"unknown heatmap merge {merge!r}; expected one of {MERGES}")
    return merge


def _shape2(out_shape, what="out_shape") -> Tuple[int, int]:
    try:
        H, W = (int(v) for v in out_shape)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be (H, W), got {out_shape!r}") from None
    if H <= 0 or W <= 0:
        raise ValueError(f"{what} must be positive, got {(H, W)}")
    return H, W


def _people(keypoints) -> np.ndarray:
    kp = np.ascontiguousarray(keypoints, dtype=np.float32)
    if kp.ndim == 2:
        kp = kp[None]
    if kp.ndim != 3 or kp.shape[2] != 3:
        raise ValueError(f"keypoints must be (N, K, 3) or (K, 3) as x, y, v; got shape "
                         f"{np.shape(keypoints)}")
    return kp


def _positive(name, v) -> float:
    v = float(v)
    if not v > 0 or not np.isfinite(v):
        raise ValueError(f"{name} must be a positive number, got {v!r}")
    return v


def _buffer(out, shape, name) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if not isinstance(out, np.ndarray) or out.dtype != np.float32:
        raise TypeError(f"{name} must be a float32 numpy array, got "
                        f"{getattr(out, 'dtype', type(out))}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} has shape {out.shape}, expected {tuple(shape)}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous and writeable")
    return out


def _limbs(limb_index, K: int) -> np.ndarray:
    li = np.ascontiguousarray(limb_index, dtype=np.int32)
    if li.size == 0:
        return li.reshape(0, 2)
    if li.ndim != 2 or li.shape[1] != 2:
        raise ValueError(f"limb_index must be (L, 2), got shape {np.shape(limb_index)}")
    if li.min() < 0 or li.max() >= K:
        raise ValueError(f"limb_index refers to keypoints outside 0..{K - 1}")
    return li


def _raise_bad(bad: int, what: str):
    if bad:
        raise ValueError(f"{bad} labelled {what} have non-finite coordinates; unlabel "
                         "them (v = 0) or fix the annotation")


# -- functions ----------------------------------------------------------------------------
def render_heatmaps(keypoints, out_shape, stride: float = 8, sigma: float = 7.0,
                    merge: Optional[str] = None, mode: str = "centered",
                    out: Optional[np.ndarray] = None) -> np.ndarray:
    """Gaussian keypoint heatmaps with a background channel.

    Parameters
    ----------
    keypoints : array, (N, K, 3) or (K, 3)
        x, y in input pixels, v (drawn where v > 0).
    out_shape : (H, W)
        Map size.
    stride : float
        Input pixels per map cell.
    sigma : float
        Gaussian sigma in input pixels.
    merge : {'max', 'sum_clip'}, optional
        How people merge; default 'max' in centred mode and 'sum_clip' in cmu mode.
    mode : {'centered', 'cmu'}
        Grid convention (see the module docstring).
    out : ndarray, float32, (K+1, H, W), optional
        Filled in place (every cell is written).

    Returns
    -------
    heatmaps : ndarray, float32, (K+1, H, W)
        Background last.
    """
    mode = _check_mode(mode)
    merge = _check_merge(merge, mode)
    kp = _people(keypoints)
    H, W = _shape2(out_shape)
    out = _buffer(out, (kp.shape[1] + 1, H, W), "out")
    bad = _maps.render_heatmaps(kp, out, _positive("stride", stride), _positive("sigma", sigma),
                                -1.0 if mode == "cmu" else 0.0, merge == "sum_clip", True)
    _raise_bad(bad, "keypoints")
    return out


def render_pafs(keypoints, limb_index, out_shape, stride: float = 8, width: float = 1.0,
                mode: str = "centered", out: Optional[np.ndarray] = None) -> np.ndarray:
    """Part Affinity Fields.

    Parameters
    ----------
    keypoints : array, (N, K, 3) or (K, 3)
        x, y in input pixels, v (a limb is drawn when both ends have v > 0).
    limb_index : array of int, (L, 2)
        Keypoint indices (from, to) of each limb, e.g. ``Skeleton.limb_index``.
    out_shape : (H, W)
        Map size.
    stride : float
        Input pixels per map cell.
    width : float
        Limb half-width in grid cells.
    mode : {'centered', 'cmu'}
        Grid convention (see the module docstring).
    out : ndarray, float32, (2L, H, W), optional
        Filled in place (every cell is written).

    Returns
    -------
    pafs : ndarray, float32, (2L, H, W)
        Limb l's x component at channel 2l, y at 2l+1.
    """
    mode = _check_mode(mode)
    kp = _people(keypoints)
    li = _limbs(limb_index, kp.shape[1])
    H, W = _shape2(out_shape)
    out = _buffer(out, (2 * li.shape[0], H, W), "out")
    count = np.empty((H, W), dtype=np.int32)   # kernel scratch, cleared by the kernel
    bad = _maps.render_pafs(kp, li, out, count, _positive("stride", stride),
                            _positive("width", width), -1.0 if mode == "cmu" else 0.0,
                            mode == "cmu")
    _raise_bad(bad, "limbs")
    return out


def render_masks(supervise, out_shape, stride: int = 8,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
    """Loss mask at map resolution: the mean of each cell's ``stride x stride`` block.

    Parameters
    ----------
    supervise : ndarray, (h, w), float32/float64 in [0, 1] or bool
        1 = supervise, 0 = ignore, at input resolution (after augmentation).
        ``h >= stride*H`` and ``w >= stride*W``; rows/columns beyond are not covered by
        any cell. uint8 is refused because both 0/1 and 0/255 conventions (and the
        inverted "ignore" mask of ``PoseDB.ignore_mask``) are common: convert explicitly,
        e.g. ``1 - db.ignore_mask(i).astype(np.float32)``.
    out_shape : (H, W)
        Map size.
    stride : int
        Input pixels per map cell.
    out : ndarray, float32, (H, W), optional
        Filled in place.

    Returns
    -------
    mask : ndarray, float32, (H, W)
        In [0, 1]; use :func:`expand_mask` for per-channel stacks.
    """
    s = np.asarray(supervise)
    if s.dtype == np.bool_:
        s = s.astype(np.float32)
    elif s.dtype not in (np.float32, np.float64):
        raise TypeError(f"supervise mask must be float (1 = supervise) or bool, got {s.dtype}; "
                        "convert uint8 masks explicitly (0/1 or 0/255? supervise or ignore?)")
    s = np.ascontiguousarray(s, dtype=np.float32)
    H, W = _shape2(out_shape)
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be a positive integer for mask pooling, got {stride!r}")
    stride = int(stride)
    if s.ndim != 2 or s.shape[0] < stride * H or s.shape[1] < stride * W:
        raise ValueError(f"supervise mask of shape {s.shape} does not cover {(H, W)} cells "
                         f"of stride {stride} (needs at least {(stride * H, stride * W)})")
    out = _buffer(out, (H, W), "out")
    _maps.pool_mask(s, out, stride)
    return out


def expand_mask(mask: np.ndarray, channels: int, weight=None,
                out: Optional[np.ndarray] = None) -> np.ndarray:
    """Repeat an (H, W) loss mask over ``channels``, optionally weighted per channel.

    Parameters
    ----------
    mask : ndarray, float32, (H, W)
    channels : int
        C, e.g. K+1 for heatmaps or 2L for PAFs.
    weight : array, (C,), optional
        Per-channel multiplier (0 drops a channel from the loss).
    out : ndarray, float32, (C, H, W), optional

    Returns
    -------
    ndarray, float32, (C, H, W)
    """
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    out = _buffer(out, (int(channels),) + mask.shape, "out")
    if weight is None:
        out[...] = mask
    else:
        w = np.asarray(weight, dtype=np.float32).reshape(-1)
        if w.shape[0] != out.shape[0]:
            raise ValueError(f"weight has {w.shape[0]} entries for {out.shape[0]} channels")
        np.multiply(mask[None], w[:, None, None], out=out)
    return out


def render_targets(keypoints, skeleton, input_size, targets_cfg=None,
                   supervise=None) -> dict:
    """Heatmaps, PAFs and loss masks of one sample in one call.

    Convenience over :class:`TargetRenderer` (which a data loader should hold once per
    worker instead: it reuses its buffers). ``targets_cfg`` is the config's ``targets``
    section (``stride``, ``sigma``, ``paf_width``, ``heatmap_merge``, ``mode``); missing
    keys take the defaults. Returns fresh arrays; see :meth:`TargetRenderer.render`.
    """
    r = TargetRenderer.from_config(skeleton, input_size, targets_cfg)
    return r.render(keypoints, supervise, copy=False)


# -- renderer -----------------------------------------------------------------------------
class TargetRenderer:
    """Renders all ground truth of a sample into buffers it owns (allocate once per worker).

    Parameters
    ----------
    skeleton : Skeleton or str
        Keypoint layout (K keypoints, L limbs).
    input_size : int or (h, w)
        Network input size in pixels; maps are ``(h // stride, w // stride)``.
    stride : int
        Input pixels per map cell.
    sigma : float
        Heatmap Gaussian sigma in input pixels.
    paf_width : float
        Limb half-width in grid cells.
    merge : {'max', 'sum_clip'}, optional
        Default 'max' (centred) / 'sum_clip' (cmu).
    mode : {'centered', 'cmu'}
        Grid convention, see :mod:`mxpose.targets.maps`.

    Attributes
    ----------
    out_shape : (H, W)
    heatmaps : ndarray, float32, (K+1, H, W)
    pafs : ndarray, float32, (2L, H, W)
    heat_mask : ndarray, float32, (K+1, H, W)
    paf_mask : ndarray, float32, (2L, H, W)
    mask : ndarray, float32, (H, W)
        The buffers :meth:`render` fills; each call overwrites them.
    """

    def __init__(self, skeleton, input_size, stride: int = 8, sigma: float = 7.0,
                 paf_width: float = 1.0, merge: Optional[str] = None,
                 mode: str = "centered"):
        from ..skeleton import get_skeleton
        self.skeleton = get_skeleton(skeleton)
        if isinstance(input_size, (int, np.integer)):
            input_size = (int(input_size), int(input_size))
        self.input_size = _shape2(input_size, "input_size")
        self.stride = int(stride)
        if self.stride != stride or self.stride < 1:
            raise ValueError(f"stride must be a positive integer, got {stride!r}")
        self.sigma = _positive("sigma", sigma)
        self.paf_width = _positive("paf_width", paf_width)
        self.mode = _check_mode(mode)
        self.merge = _check_merge(merge, self.mode)
        h, w = self.input_size
        if h < self.stride or w < self.stride:
            raise ValueError(f"input_size {self.input_size} is smaller than one cell of "
                             f"stride {self.stride}")
        self.out_shape = (h // self.stride, w // self.stride)
        H, W = self.out_shape
        K, L = self.skeleton.num_keypoints, self.skeleton.num_limbs
        self.limb_index = np.ascontiguousarray(self.skeleton.limb_index, dtype=np.int32)
        self.heatmaps = np.zeros((K + 1, H, W), dtype=np.float32)
        self.pafs = np.zeros((2 * L, H, W), dtype=np.float32)
        self.mask = np.ones((H, W), dtype=np.float32)
        self.heat_mask = np.ones((K + 1, H, W), dtype=np.float32)
        self.paf_mask = np.ones((2 * L, H, W), dtype=np.float32)
        self._count = np.zeros((H, W), dtype=np.int32)
        self._shift = -1.0 if self.mode == "cmu" else 0.0
        self._sum_clip = self.merge == "sum_clip"
        self._masks_are_ones = True

    @classmethod
    def from_config(cls, skeleton, input_size, targets_cfg=None) -> "TargetRenderer":
        """Build from the config's ``targets`` section (a mapping; missing keys default)."""
        t = dict(targets_cfg or {})
        return cls(skeleton, input_size, stride=t.get("stride", 8), sigma=t.get("sigma", 7.0),
                   paf_width=t.get("paf_width", 1.0), merge=t.get("heatmap_merge"),
                   mode=t.get("mode", "centered"))

    def render_maps(self, keypoints, out=None) -> Tuple[np.ndarray, np.ndarray]:
        """Fill and return ``(heatmaps (K+1, H, W), pafs (2L, H, W))``.

        ``keypoints`` (N, K, 3) float32 C-contiguous avoids a conversion copy. ``out``
        (a pair of float32 arrays of those shapes, any contents) receives the maps instead
        of the renderer's own buffers: every cell is written.
        """
        kp = keypoints
        if not (isinstance(kp, np.ndarray) and kp.dtype == np.float32 and kp.ndim == 3
                and kp.flags.c_contiguous):
            kp = _people(kp)
        if kp.shape[1:] != (self.skeleton.num_keypoints, 3):
            raise ValueError(f"keypoints of shape {kp.shape} do not match skeleton "
                             f"{self.skeleton.name!r} (N, {self.skeleton.num_keypoints}, 3)")
        if out is None:
            hm, paf = self.heatmaps, self.pafs
        else:
            hm = _buffer(out[0], self.heatmaps.shape, "heatmaps")
            paf = _buffer(out[1], self.pafs.shape, "pafs")
        bad = _maps.render_heatmaps(kp, hm, self.stride, self.sigma, self._shift,
                                    self._sum_clip, True)
        _raise_bad(bad, "keypoints")
        _maps.render_pafs(kp, self.limb_index, paf, self._count, self.stride,
                          self.paf_width, self._shift, self.mode == "cmu")
        return hm, paf

    def render_masks(self, supervise=None, heat_weight=None, paf_weight=None,
                     out=None) -> Tuple[np.ndarray, np.ndarray]:
        """Fill and return ``(heat_mask (K+1, H, W), paf_mask (2L, H, W))``.

        ``supervise`` (h, w) is the input-resolution supervision mask (1 = supervise;
        None = supervise everything); ``heat_weight`` (K+1,) / ``paf_weight`` (2L,)
        multiply single channels (e.g. 0 for a keypoint of unknown visibility). ``out``
        (a pair of float32 arrays, any contents) receives the masks instead of the
        renderer's own buffers.
        """
        plain = supervise is None and heat_weight is None and paf_weight is None
        if out is None:
            # _masks_are_ones: the own stacks hold ones (only this branch writes them)
            if plain and self._masks_are_ones:
                return self.heat_mask, self.paf_mask
            hmask, pmask = self.heat_mask, self.paf_mask
        else:
            hmask = _buffer(out[0], self.heat_mask.shape, "heat_mask")
            pmask = _buffer(out[1], self.paf_mask.shape, "paf_mask")
        self.render_mask(supervise)
        expand_mask(self.mask, hmask.shape[0], heat_weight, out=hmask)
        expand_mask(self.mask, pmask.shape[0], paf_weight, out=pmask)
        if out is None:
            self._masks_are_ones = plain
        return hmask, pmask

    def render_mask(self, supervise=None, out=None) -> np.ndarray:
        """Fill and return the ``(1, H, W)`` loss mask: ``supervise`` (h, w) pooled to the
        map (see :func:`render_masks`), or all ones when None. The loss broadcasts it over
        the channels (:class:`mxpose.loss.MultiStageL2Loss`). ``out``: the array to fill
        (default: a view of the renderer's own ``mask``, overwritten by the next call)."""
        m = self.mask[None] if out is None else _buffer(out, (1,) + self.out_shape, "mask")
        if supervise is None:
            m.fill(1.0)
        else:
            render_masks(supervise, self.out_shape, self.stride, out=m[0])
        return m

    def render(self, keypoints, supervise=None, heat_weight=None, paf_weight=None,
               copy: bool = False, expand_masks: bool = True) -> dict:
        """All targets of one sample.

        Parameters
        ----------
        keypoints : array, (N, K, 3)
            Everyone's keypoints in input pixels (x, y, v); drawn where v > 0.
        supervise : ndarray, (h, w), optional
            Supervision mask at input resolution, 1 = supervise (see :func:`render_masks`).
        heat_weight, paf_weight : array, optional
            Per-channel mask weights, (K+1,) and (2L,).
        copy : bool
            Return new arrays (rendered straight into them) instead of the renderer's
            buffers.
        expand_masks : bool
            False: ``heat_mask`` and ``paf_mask`` are one ``(1, H, W)`` array (the same
            object), which the loss broadcasts over the channels: what the training
            Dataset uses (it spares writing the mask once per channel and 2/3 of a
            batch's target memory). Needs no per-channel weights.

        Returns
        -------
        dict with ``heatmaps`` (K+1, H, W), ``heat_mask`` (K+1, H, W), ``pafs`` (2L, H, W),
        ``paf_mask`` (2L, H, W), all float32. Without ``copy`` these ARE the renderer's
        buffers, overwritten by the next call: a Dataset that returns them must copy
        (gluon's DataLoader collects a whole batch before stacking it).
        """
        # copy: render straight into new arrays (every cell is written), which spares
        # rendering into the own buffers and then copying 4 maps per sample.
        if not expand_masks and (heat_weight is not None or paf_weight is not None):
            raise ValueError("per-channel mask weights need expand_masks=True")
        hm, paf = self.render_maps(keypoints, out=(np.empty_like(self.heatmaps),
                                                   np.empty_like(self.pafs)) if copy else None)
        if expand_masks:
            out = (np.empty_like(self.heat_mask), np.empty_like(self.paf_mask)) if copy else None
            hmask, pmask = self.render_masks(supervise, heat_weight, paf_weight, out=out)
        else:
            out = np.empty((1,) + self.out_shape, dtype=np.float32) if copy else None
            hmask = pmask = self.render_mask(supervise, out=out)
        return {"heatmaps": hm, "heat_mask": hmask, "pafs": paf, "paf_mask": pmask}

    def __repr__(self):
        return (f"TargetRenderer({self.skeleton.name!r}, input_size={self.input_size}, "
                f"stride={self.stride}, sigma={self.sigma}, paf_width={self.paf_width}, "
                f"merge={self.merge!r}, mode={self.mode!r})")
