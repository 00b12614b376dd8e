"""``Predictor``: image -> (multi-scale, flip) maps -> decode -> people in image coordinates.

For each scale ``s_i = scale * boxsize / h`` the image is resized (bicubic), padded on the
right and bottom to a multiple of the stride with grey (128), optionally surrounded by a
grey ``margin`` (the maps of the margin are cut off again), normalised as in training
and passed through the network (the flipped copy in the same batch). The last stage's
maps of every scale and flip are resampled onto one common grid, the stride grid of the
first scale, averaged, and decoded there (with sub-cell peak refinement); the decoded
points are mapped back to the original image exactly (pixel-centre convention).

Grid convention (as in training): map cell ``g`` is centred at input pixel
``stride * g + (stride - 1) / 2``; an image resized by ``s`` maps original pixel centre
``p`` to ``(p + 0.5) * s - 0.5``.

Engines: a Gluon network (``net=``), a checkpoint (:meth:`Predictor.from_checkpoint`),
the exported symbol files or an ONNX file run by onnxruntime
(:meth:`Predictor.from_exported`).
"""
from __future__ import annotations

import os
import time
import warnings
from typing import Sequence

import cv2
import numpy as np

from .data.transforms import normalize_image
from .skeleton import get_skeleton

__all__ = ["Predictor", "CMU_SCALES", "grid_to_image"]

#: CMU's evaluation setting.
CMU_SCALES = (0.5, 1.0, 1.5, 2.0)


def _resample(maps: np.ndarray, M: np.ndarray, out_hw) -> np.ndarray:
    """Resample (C, H, W) maps with a 2x3 affine (destination -> source is its inverse)
    onto an ``out_hw`` grid, channel-last for OpenCV."""
    C = maps.shape[0]
    src = np.ascontiguousarray(maps.transpose(1, 2, 0))
    out = np.empty((out_hw[0], out_hw[1], C), np.float32)
    for c0 in range(0, C, 512):  # cv2 handles at most 512 channels at once
        c1 = min(C, c0 + 512)
        r = cv2.warpAffine(src[..., c0:c1], M, (out_hw[1], out_hw[0]), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
        out[..., c0:c1] = r.reshape(out_hw[0], out_hw[1], c1 - c0)
    return out.transpose(2, 0, 1)


def grid_to_image(pts: np.ndarray, base) -> np.ndarray:
    """Map (..., 3) points (x, y, score) from the input pixels of an image resized by
    ``base = (sx, sy)`` back to original image pixels; points with score 0 stay zeros."""
    out = np.array(pts, dtype=np.float32, copy=True)
    found = out[..., 2] > 0
    out[..., 0] = np.where(found, (out[..., 0] + 0.5) / base[0] - 0.5, 0)
    out[..., 1] = np.where(found, (out[..., 1] + 0.5) / base[1] - 0.5, 0)
    return out


def decode_params_from_config(cfg) -> dict:
    """Decoder keyword arguments from the config's ``test`` section."""
    t = cfg.test
    return {"thre1": t.thre1, "thre2": t.thre2, "min_parts": t.min_parts,
            "min_score": t.min_score, "sigma": t.sigma, "refine": t.refine,
            "sampling": t.sampling, "n_samples": t.n_samples, "min_frac": t.min_frac,
            "upsample": t.upsample, "assembly": t.assembly, "max_peaks": t.max_peaks}


class Predictor:
    """Run a pose network on images and return people.

    Parameters
    ----------
    net : callable
        A Gluon HybridBlock returning (paf_1, heat_1, ..., paf_S, heat_S), or any callable
        ``forward(batch float32 (B, 3, h, w)) -> (pafs (B, 2L, h/s, w/s), heatmaps (B,
        K+1, h/s, w/s))`` as numpy (see ``engine``).
    skeleton : str or Skeleton
        The layout the network predicts.
    scales : sequence of float
        Multipliers of ``boxsize / image_h``; :data:`CMU_SCALES` is CMU's setting.
    flip : bool
        Also run the mirrored image and average.
    boxsize, stride : int
    max_side : int
        Longest side, in pixels, of the network input at any scale (default 4096). The
        image height is scaled to ``scale * boxsize``; a very wide or tall image (a 4000x8
        strip would become 184000x368) is scaled down further so that its longer side fits,
        which bounds memory and time. Ordinary photos at CMU's scales stay well below it.
    margin : int
        Grey border (input pixels, rounded up to a multiple of the stride) put around
        the resized image on every side; its maps are cut off before decoding (default 0,
        CMU's way). Training crops show an image edge with grey beyond it, while without a
        margin the image edge is the network input's edge, where the convolutions pad
        with zeros instead: people touching the image border are then found less
        precisely (measured on the COCO sample, see experiments/sample_overfit_lwpose.yaml).
    ctx : mxnet Context, optional (default CPU).
    decode_params : dict
        Passed to :func:`mxpose.decode.decode` (thresholds).
    engine : {'gluon', 'numpy'}
        'gluon' treats ``net`` as a Gluon block; 'numpy' as the callable described above
        (e.g. :class:`mxpose.exported.OnnxRunner`). Exported models:
        :meth:`from_exported`.
    """

    def __init__(self, net, skeleton, scales: Sequence[float] = (1.0,), flip: bool = False,
                 boxsize: int = 368, stride: int = 8, ctx=None, decode_params=None,
                 engine: str = "gluon", max_side: int = 4096, margin: int = 0):
        self.skeleton = get_skeleton(skeleton)
        self.scales = tuple(float(s) for s in scales)
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"scales must be positive, got {scales!r}")
        self.flip = bool(flip)
        self.boxsize = int(boxsize)
        self.stride = int(stride)
        self.max_side = int(max_side)
        if int(margin) != margin or margin < 0:
            raise ValueError(f"margin must be a non-negative integer, got {margin!r}")
        self.margin = -(-int(margin) // self.stride) * self.stride
        if self.boxsize < self.stride or self.max_side < self.stride:
            raise ValueError(f"boxsize ({boxsize}) and max_side ({max_side}) must be at least "
                             f"the network stride {self.stride}")
        self.decode_params = dict(decode_params or {})
        self.timings = {"net": 0.0, "decode": 0.0, "frames": 0}
        #: the network (Gluon block or numpy callable) and the engine's name; exported
        #: models set 'symbol' or 'onnx' here (see :meth:`from_exported`)
        self.net = net
        self.engine = engine
        if engine == "gluon":
            import mxnet as mx
            self.ctx = ctx or mx.cpu()
            self._forward = self._gluon_forward(net)
        elif engine == "numpy":
            self.ctx = None
            self._forward = net
        else:
            raise ValueError(f"unknown engine {engine!r}")
        self._heat_flip = self.skeleton.heatmap_flip_index()
        self._paf_flip, self._paf_sign = self.skeleton.paf_flip_index()

    # -- engines -----------------------------------------------------------------------------
    def _gluon_forward(self, net):
        import mxnet as mx
        ctx = self.ctx

        def fwd(batch):
            out = net(mx.nd.array(batch, ctx=ctx))
            paf, heat = out[-2], out[-1]
            return paf.asnumpy(), heat.asnumpy()
        return fwd

    @classmethod
    def from_checkpoint(cls, prefix: str, iteration: int, config=None, ctx=None, **kw):
        """Build the network of a training run and load ``<prefix>-%04d.params``.

        The run's resolved config (saved beside the checkpoints) gives the model and the
        skeleton unless ``config`` is passed.
        """
        from .runs import checkpoint_path, load_run_config
        params = checkpoint_path(prefix, iteration, "params")
        if not os.path.isfile(params):
            raise FileNotFoundError(f"checkpoint {params} does not exist")
        cfg = config if config is not None else load_run_config(prefix)
        if cfg is None:
            raise FileNotFoundError(f"no run config beside {prefix}; pass the experiment config")
        return cls.from_params(params, cfg, ctx=ctx, **kw)

    @classmethod
    def from_params(cls, params: str, cfg, ctx=None, **kw):
        """Build ``cfg.model`` for ``cfg.data.skeleton`` and load a ``.params`` file;
        the ``test`` section gives scales, flip, boxsize and the decoder thresholds
        unless overridden in ``kw``."""
        import mxnet as mx
        from .model_zoo import get_model
        from .runs import load_params
        skel = get_skeleton(cfg.data.skeleton)
        net = get_model(cfg.model.name, num_heatmaps=skel.num_heatmaps, num_pafs=skel.num_pafs,
                        **dict(cfg.model.kwargs))
        ctx = ctx or mx.cpu()
        load_params(net, params, ctx=ctx)
        net.hybridize(static_alloc=True)
        t = cfg.test
        kw.setdefault("scales", t.scales)
        kw.setdefault("flip", t.flip)
        kw.setdefault("boxsize", t.boxsize)
        kw.setdefault("margin", t.margin)
        kw.setdefault("decode_params", decode_params_from_config(cfg))
        return cls(net, skel, ctx=ctx, **kw)

    @classmethod
    def from_exported(cls, path: str, engine: str = "symbol", ctx=None, providers=None,
                      threads: int = 0, spin: bool = True, **kw):
        """Run an export of :mod:`mxpose.export` (``tools/export.py``) without the model
        code: the sidecar ``X-meta.json`` gives the skeleton, stride, boxsize and the
        default scales, flip and decoder thresholds (``kw`` overrides them).

        Parameters
        ----------
        path : str
            The export prefix ``X`` or any of its files (``X.onnx``, ``X-symbol.json``...).
        engine : {'symbol', 'onnx'}
            'symbol': ``X-symbol.json`` + ``X-0000.params`` in MXNet (``SymbolBlock``);
            'onnx': ``X.onnx`` in onnxruntime (no MXNet needed).
        ctx : mxnet Context, optional
            Device of the 'symbol' engine (default CPU).
        providers : list of str, optional
            onnxruntime providers of the 'onnx' engine (default: CUDA if available, CPU).
        threads : int
            onnxruntime intra-op threads (0: its default).
        spin : bool
            onnxruntime threads busy-wait between operators (see
            :class:`mxpose.export.OnnxRunner`).
        """
        from .exported import OnnxRunner, export_files, read_meta
        from .skeleton import Skeleton
        meta = read_meta(path)
        files = export_files(path)
        kw.setdefault("scales", meta["test"]["scales"])
        kw.setdefault("flip", meta["test"]["flip"])
        kw.setdefault("margin", meta["test"].get("margin", 0))   # older sidecars: none
        kw.setdefault("boxsize", meta["boxsize"])
        kw.setdefault("stride", meta["stride"])
        kw.setdefault("decode_params", meta["decode"])
        skel = Skeleton.from_dict(meta["skeleton"])
        if engine == "symbol":
            import mxnet as mx
            for k in ("symbol", "params"):
                if not os.path.isfile(files[k]):
                    raise FileNotFoundError(f"exported {k} file {files[k]} does not exist")
            ctx = ctx or mx.cpu()
            with warnings.catch_warnings():
                # "cannot decide type for data": the input's dtype is only known at the
                # first call (float32); harmless
                warnings.simplefilter("ignore", UserWarning)
                net = mx.gluon.SymbolBlock.imports(files["symbol"],
                                                   [meta["input"]["symbol_name"]],
                                                   files["params"], ctx=ctx)
            net.hybridize(static_alloc=True)
            pred = cls(net, skel, ctx=ctx, **kw)
        elif engine == "onnx":
            runner = OnnxRunner(files["onnx"], providers=providers, threads=threads, spin=spin)
            pred = cls(runner, skel, engine="numpy", **kw)
        else:
            raise ValueError(f"unknown engine {engine!r}; use 'symbol' or 'onnx'")
        pred.engine = engine
        pred.meta = meta
        return pred

    # -- maps ------------------------------------------------------------------------------------
    def input_batch(self, img: np.ndarray, scale: float = 1.0):
        """The network input of one BGR uint8 image at ``scale``: ``(batch (1, 3, h, w)
        float32, (sx, sy) resize factors)``, resized, padded and normalised as
        :meth:`maps` feeds it."""
        padded, base = self._prepare(img, scale)
        return normalize_image(padded)[None], base

    def _prepare(self, img: np.ndarray, scale: float):
        h, w = img.shape[:2]
        s = min(scale * self.boxsize / h, self.max_side / max(h, w))
        rh, rw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        # the exact factors of the resize actually done
        sx, sy = rw / w, rh / h
        resized = cv2.resize(img, (rw, rh), interpolation=cv2.INTER_CUBIC)
        ph = -(-rh // self.stride) * self.stride
        pw = -(-rw // self.stride) * self.stride
        m = self.margin
        padded = cv2.copyMakeBorder(resized, m, ph - rh + m, m, pw - rw + m,
                                    cv2.BORDER_CONSTANT, value=(128, 128, 128))
        return padded, (sx, sy)

    def _unflip(self, heat, paf):
        heat = heat[self._heat_flip, :, ::-1]
        paf = paf[self._paf_flip, :, ::-1] * self._paf_sign[:, None, None]
        return heat, paf

    def maps(self, img: np.ndarray):
        """Averaged maps of one BGR uint8 image.

        Returns
        -------
        heatmaps : (K+1, H0, W0) float32 and pafs (2L, H0, W0) on the base grid;
        base : (sx, sy) resize factors of the base grid's image (first scale).
        """
        return self.maps_batch([img])[0]

    def maps_batch(self, imgs: Sequence[np.ndarray]) -> list:
        """Averaged maps of several BGR uint8 images of one size (e.g. video frames), one
        network forward per scale for all of them (and their mirrored copies).

        Returns
        -------
        list of (heatmaps, pafs, base) as :meth:`maps` gives for each image.
        """
        t0 = time.perf_counter()
        inputs = self.prepare_batch(imgs)
        if not inputs:
            return []
        self.timings["net"] += time.perf_counter() - t0
        return self.maps_from_inputs(inputs)

    def prepare_batch(self, imgs: Sequence[np.ndarray]) -> list:
        """The network inputs of images of one size, per scale: ``(batch float32 (B, 3,
        h, w), then the B mirrored copies with flip; (sx, sy) resize factors)``: resized,
        padded and normalised. :meth:`maps_batch` is ``maps_from_inputs(prepare_batch(
        imgs))``; a video pipeline prepares the next frame while the network runs."""
        imgs = list(imgs)
        if not imgs:
            return []
        for img in imgs:
            if img is None or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError("expected a BGR uint8 image of shape (h, w, 3)")
        if any(img.shape != imgs[0].shape for img in imgs):
            raise ValueError("maps_batch needs images of one size, got "
                             f"{sorted({img.shape for img in imgs})}")
        out = []
        for scale in self.scales:
            xs = []
            for img in imgs:
                padded, base = self._prepare(img, scale)
                xs.append(normalize_image(padded))
            x = np.stack(xs)
            if self.flip:
                # batch order: the images, then their mirrored copies
                x = np.concatenate([x, x[..., ::-1]], axis=0)
            out.append((np.ascontiguousarray(x), base))
        return out

    def maps_from_inputs(self, inputs: list) -> list:
        """Averaged maps of the images of :meth:`prepare_batch`'s ``inputs``: the
        network and the merging of scales and flips; a list as :meth:`maps_batch`."""
        t0 = time.perf_counter()
        n_img = inputs[0][0].shape[0] // (2 if self.flip else 1)
        heat_sum = [None] * n_img
        paf_sum = [None] * n_img
        base = None
        for x, (sx, sy) in inputs:
            paf, heat = self._forward(x)
            if self.margin:
                c = self.margin // self.stride
                paf, heat = paf[:, :, c:-c, c:-c], heat[:, :, c:-c, c:-c]
            if base is None:
                base = (sx, sy)
                out_hw = heat.shape[2:]
            for i in range(n_img):
                pairs = [(heat[i], paf[i])]
                if self.flip:
                    pairs.append(self._unflip(heat[n_img + i], paf[n_img + i]))
                for h_, p_ in pairs:
                    if (sx, sy) != base or h_.shape[1:] != tuple(out_hw):
                        # base cell g0 <-> original p = (stride*g0 + stride/2)/s0 - 0.5
                        #             <-> this scale's cell g = r*g0 + (r - 1)/2, r = s/s0
                        rx, ry = sx / base[0], sy / base[1]
                        A = np.array([[rx, 0, (rx - 1) / 2], [0, ry, (ry - 1) / 2]])
                        M = cv2.invertAffineTransform(A)
                        h_ = _resample(h_, M, out_hw)
                        p_ = _resample(p_, M, out_hw)
                    if heat_sum[i] is None:
                        heat_sum[i], paf_sum[i] = h_.astype(np.float32), p_.astype(np.float32)
                    else:
                        heat_sum[i] += h_
                        paf_sum[i] += p_
        n = len(self.scales) * (2 if self.flip else 1)
        self.timings["net"] += time.perf_counter() - t0
        return [(heat_sum[i] / n, paf_sum[i] / n, base) for i in range(n_img)]

    # -- people ------------------------------------------------------------------------------------
    def __call__(self, img: np.ndarray):
        """People of one image: ``(people (N, K, 3) x, y, part score in image pixels,
        scores (N,))``."""
        return self.predict_batch([img])[0]

    def predict_batch(self, imgs: Sequence[np.ndarray]) -> list:
        """People of several images of one size, the network run once per scale for all
        (:meth:`maps_batch`): a list of ``(people, scores)`` as :meth:`__call__` gives."""
        return [self.decode_maps(heat, paf, base) for heat, paf, base in self.maps_batch(imgs)]

    def decode_maps(self, heat: np.ndarray, paf: np.ndarray, base) -> tuple:
        """People of one image from its averaged maps (what :meth:`maps` returns):
        ``(people (N, K, 3) in image pixels, scores (N,))``. Split from the network part
        so that a video pipeline can run the two in different threads."""
        from .decode import decode
        t0 = time.perf_counter()
        # the decoder's limb-length prior uses the height of the image the maps come from
        people, scores = decode(heat, paf, self.skeleton, stride=self.stride,
                                **self.decode_params)
        self.timings["decode"] += time.perf_counter() - t0
        self.timings["frames"] += 1
        return grid_to_image(people, base), scores

    def fps(self) -> dict:
        """Frames per second of the network part and of the decoder so far."""
        n = max(self.timings["frames"], 1)
        return {"net_fps": n / max(self.timings["net"], 1e-9),
                "decode_fps": n / max(self.timings["decode"], 1e-9),
                "frames": self.timings["frames"]}
