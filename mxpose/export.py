"""Export a trained network for deployment without the Python model code.

One export ``X`` (a path prefix) is up to four files::

    X-symbol.json   the hybridized MXNet graph (``HybridBlock.export``); input ``data``
    X-0000.params   its parameters (``arg:``/``aux:`` names, as MXNet's Module expects)
    X.onnx          the same graph in ONNX (``mx.onnx.export_model``), cleaned up: input
                    ``image`` (B, 3, H, W) with dynamic batch/height/width, outputs
                    ``pafs`` (B, 2L, H/8, W/8) and ``heatmaps`` (B, K+1, H/8, W/8), weights
                    as initializers only (not graph inputs, so runtimes constant-fold them)
    X-meta.json     the sidecar: skeleton definition, stride, boxsize, default scales/flip,
                    decoder thresholds, model name and kwargs, input normalisation

By default only the last stage's ``(paf, heat)`` are outputs (what inference uses; the
graph is the same, the intermediate stages just are not returned). With
``all_stages=True`` every stage is an output: ``pafs_1, heatmaps_1, ...`` and the last
stage keeps the names ``pafs``, ``heatmaps``.

:meth:`mxpose.infer.Predictor.from_exported` runs an export with MXNet's
``SymbolBlock`` (engine ``'symbol'``) or with onnxruntime (engine ``'onnx'``; CUDA when
onnxruntime-gpu is installed, which is how mxpose models run on GPUs MXNet 1.9.1 has no
kernels for). ``mx.onnx`` in MXNet 1.9.1 needs ``onnx<1.16``; the ONNX opset is the
installed onnx's default (20 for onnx 1.15). Reading an export (its file names, the
sidecar, the onnxruntime runner) lives in :mod:`mxpose.exported`, which inference uses;
the names are re-exported here.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np

from ._version import __version__
from .exported import (EXPORT_FORMAT, EXPORT_VERSION, INPUT_NAME, SYMBOL_INPUT, ExportError,
                       OnnxRunner, export_files, read_meta, resolve_export_prefix)

__all__ = ["ExportError", "keep_last_stage", "EXPORT_FORMAT", "EXPORT_VERSION", "INPUT_NAME",
           "export_files", "resolve_export_prefix", "make_meta", "write_meta", "read_meta",
           "output_names", "export_symbol", "export_onnx", "clean_onnx", "export_network",
           "export_predictor",
           "OnnxRunner", "compare_maps", "float64_maps", "people_difference", "verify_export",
           "DEFAULT_RTOL", "DEFAULT_ATOL"]

#: Parity tolerance of exported maps against MXNet: ``max|a - b| <= atol + rtol * max|ref|``
#: per output tensor. onnxruntime differs from MXNet by 1.4e-6 (LW-MobileNet) to 4.3e-6
#: (CPM-VGG19, 6 stages) of the maps' largest magnitude (other convolution kernels and
#: summation order), the symbol files by 0; 1e-4 leaves room for other CPUs and
#: providers while still catching any real graph difference (a wrong op or weight moves
#: the maps by far more). ``atol`` only guards all-zero maps.
DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-7
#: What float32 can promise for a given network is measured, not assumed: the Gluon
#: network is also run in float64 on the same input, and an engine may differ from the
#: float32 run by this many times the float32-vs-float64 difference (another float32
#: engine's rounding is of that size: measured 1.3x-2.6x; a wrong op or weight is orders
#: of magnitude more). Networks whose maps come out of cancelling large activations lose
#: digits in float32, so a fixed relative tolerance fails correct exports of them.
FLOAT32_MARGIN = 4.0

def keep_last_stage(net):
    """Wrap a zoo network so that it returns only its last stage's ``(paf, heat)``.

    Parameters
    ----------
    net : HybridBlock
        Returns ``(paf_1, heat_1, ..., paf_S, heat_S)``.

    Returns
    -------
    HybridBlock
        Same parameters (shared, not copied); output ``(paf_S, heat_S)``.
    """
    from mxnet.gluon import HybridBlock

    # defined here so that importing this module does not import MXNet (the onnx engine
    # of the Predictor runs without it)
    class _LastStage(HybridBlock):
        def __init__(self, inner, **kwargs):
            super().__init__(**kwargs)
            self.net = inner

        def hybrid_forward(self, F, x):
            out = self.net(x)
            return out[-2], out[-1]

    return _LastStage(net, prefix="")


# -- file names and the sidecar ---------------------------------------------------------------
def output_names(num_stages: int, all_stages: bool, kinds: Optional[Sequence[str]] = None
                 ) -> list:
    """Output names of an export, in the network's order (paf before heat).

    ``kinds`` (a network's ``output_kinds``, for PAF-first networks) numbers the
    intermediate PAF and heatmap outputs separately: ``pafs_1, pafs_2, heatmaps_1, ...``.
    """
    if not all_stages:
        return ["pafs", "heatmaps"]
    if kinds is not None:
        count = {"paf": 0, "heat": 0}
        names = []
        for k in list(kinds)[:-2]:
            count[k] += 1
            names.append(f"{'pafs' if k == 'paf' else 'heatmaps'}_{count[k]}")
        return names + ["pafs", "heatmaps"]
    names = []
    for i in range(1, int(num_stages)):
        names += [f"pafs_{i}", f"heatmaps_{i}"]
    return names + ["pafs", "heatmaps"]


def make_meta(skeleton, model_name: str, model_kwargs: Optional[dict] = None, *,
              num_stages: int, all_stages: bool = False, stride: int = 8,
              boxsize: int = 368, scales: Sequence[float] = (1.0,), flip: bool = False,
              margin: int = 0, decode_params: Optional[dict] = None,
              source: Optional[dict] = None,
              output_kinds: Optional[Sequence[str]] = None) -> dict:
    """The sidecar's content (JSON-serialisable).

    Everything a :class:`~mxpose.infer.Predictor` needs besides the graph: the skeleton
    definition (names, limbs, flip pairs, so custom layouts work), the grid (stride), the
    input size and normalisation, default test-time scales/flip/margin and decoder
    thresholds.
    """
    from .skeleton import get_skeleton
    skel = get_skeleton(skeleton)
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "mxpose_version": __version__,
        "model": {"name": str(model_name), "kwargs": _plain(dict(model_kwargs or {})),
                  "num_stages": int(num_stages)},
        "skeleton": skel.to_dict(),
        "num_heatmaps": skel.num_heatmaps,
        "num_pafs": skel.num_pafs,
        "stride": int(stride),
        "boxsize": int(boxsize),
        "input": {"symbol_name": SYMBOL_INPUT, "onnx_name": INPUT_NAME, "layout": "NCHW",
                  "channels": "BGR", "normalize": "(v - 128) / 256", "pad_value": 128,
                  "multiple_of": int(stride)},
        "outputs": output_names(num_stages, all_stages, output_kinds),
        "all_stages": bool(all_stages),
        "test": {"scales": [float(s) for s in scales], "flip": bool(flip),
                 "margin": int(margin)},
        "decode": _plain(dict(decode_params or {})),
        "source": _plain(dict(source or {})),
    }


def _plain(obj):
    """EasyDict/numpy values -> plain JSON types."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item")
                                 else str(o)))


def write_meta(prefix: str, meta: dict) -> str:
    path = export_files(prefix)["meta"]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, path)
    return path


# -- MXNet symbol -----------------------------------------------------------------------------
def _net_ctx(net):
    import mxnet as mx
    for p in net.collect_params().values():
        try:
            return p.list_ctx()[0]
        except RuntimeError:  # deferred init: not yet on a device
            break
    return mx.cpu()


def export_symbol(net, prefix: str, all_stages: bool = False,
                  sample_shape=(1, 3, 64, 64)) -> Dict[str, str]:
    """Write ``prefix-symbol.json`` and ``prefix-0000.params``.

    Parameters
    ----------
    net : HybridBlock
        A zoo network with loaded parameters.
    prefix : str
    all_stages : bool
        Keep every stage's outputs (default: only the last stage's paf and heat).
    sample_shape : (B, 3, h, w)
        Shape of the dummy forward that builds the graph; the saved graph itself works for
        any input size (h, w multiples of the stride).

    Returns
    -------
    dict with the paths ``symbol`` and ``params``.
    """
    import mxnet as mx
    block = net if all_stages else keep_last_stage(net)
    block.hybridize(static_alloc=False)
    d = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(d, exist_ok=True)
    block(mx.nd.zeros(sample_shape, ctx=_net_ctx(net)))
    block.export(prefix, 0)
    files = export_files(prefix)
    return {"symbol": files["symbol"], "params": files["params"]}


# -- ONNX -------------------------------------------------------------------------------------
def clean_onnx(model, names: Sequence[str], channels: Sequence[int], stride: int = 8,
               input_name: str = INPUT_NAME):
    """Tidy the graph ``mx.onnx`` writes, in place.

    * weights are initializers only, not also graph inputs (which ONNX allows but which
      makes runtimes treat them as overridable inputs: no constant folding, and a graph
      whose input list is hundreds of tensors);
    * the input is called ``input_name`` with shape (batch, 3, height, width);
    * the outputs get ``names`` (e.g. ``pafs``, ``heatmaps``) and the shapes
      (batch, C, map_height, map_width) with ``C`` from ``channels``;
    * per-channel PReLU slopes become (C, 1, 1): ``mx.onnx`` writes them as (C,), which
      ONNX broadcasts against the width, not the channels.

    Returns the model.
    """
    g = model.graph
    slopes = {n.input[1] for n in g.node if n.op_type == "PRelu" and len(n.input) > 1}
    for t in g.initializer:
        if t.name in slopes and len(t.dims) == 1 and t.dims[0] > 1:
            t.dims.extend([1, 1])
    init = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in init]
    if len(inputs) != 1:
        raise ExportError(f"expected one data input in the ONNX graph, found "
                          f"{[i.name for i in inputs]}")
    if len(g.output) != len(names):
        raise ExportError(f"the ONNX graph has {len(g.output)} outputs, expected "
                          f"{len(names)} ({', '.join(names)})")
    rename = {inputs[0].name: input_name}
    rename.update({o.name: n for o, n in zip(g.output, names)})
    del g.input[:]
    g.input.extend(inputs)
    for node in g.node:
        for i, n in enumerate(node.input):
            if n in rename:
                node.input[i] = rename[n]
        for i, n in enumerate(node.output):
            if n in rename:
                node.output[i] = rename[n]
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.name in rename:
            vi.name = rename[vi.name]

    def set_dims(vi, dims):
        shape = vi.type.tensor_type.shape
        del shape.dim[:]
        for d in dims:
            dim = shape.dim.add()
            if isinstance(d, str):
                dim.dim_param = d
            else:
                dim.dim_value = int(d)

    set_dims(g.input[0], ["batch", 3, "height", "width"])
    for o, c in zip(g.output, channels):
        set_dims(o, ["batch", int(c), "map_height", "map_width"])
    # intermediate value_info from the exporter may carry stale names/shapes: drop it,
    # runtimes infer shapes themselves
    del g.value_info[:]
    model.producer_name = "mxpose"
    model.producer_version = __version__
    model.doc_string = (f"mxpose pose network: BGR image (v - 128) / 256, NCHW, height and "
                        f"width multiples of {stride}; outputs {', '.join(names)} at stride "
                        f"{stride}")
    return model


def _order_outputs(model, heads: Sequence[str]) -> None:
    """Put the ONNX graph outputs in the symbol's output order.

    ``mx.onnx`` lists graph outputs in topological order, not in the order of the
    symbol's heads; the two differ for the PAF-first networks (whose final PAF output is
    computed before the intermediate heatmaps but listed after them)."""
    heads = [h[: -len("_output")] if h.endswith("_output") else h for h in heads]
    by_name = {o.name: o for o in model.graph.output}
    if sorted(by_name) != sorted(heads) or list(by_name) == heads:
        return
    outs = []
    for h in heads:
        vi = type(by_name[h])()
        vi.CopyFrom(by_name[h])
        outs.append(vi)
    del model.graph.output[:]
    model.graph.output.extend(outs)


def export_onnx(symbol: str, params: str, onnx_path: str, names: Sequence[str],
                channels: Sequence[int], stride: int = 8, meta: Optional[dict] = None,
                sample_shape=(1, 3, 64, 64)) -> str:
    """Convert an exported symbol + params to a cleaned ONNX file (dynamic batch, height
    and width); ``meta`` is also embedded as the model property ``mxpose_meta``."""
    try:
        import onnx
    except ImportError:
        raise ExportError("ONNX export needs the onnx package (onnx<1.16 for MXNet 1.9.1: "
                          "pip install -c constraints.txt onnx==1.15.0)") from None
    import mxnet as mx
    tmp = onnx_path + ".tmp.onnx"
    try:
        mx.onnx.export_model(symbol, params, [tuple(sample_shape)], [np.float32], tmp,
                             dynamic=True, dynamic_input_shapes=[(None, 3, None, None)])
        model = onnx.load(tmp)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    _order_outputs(model, mx.sym.load(symbol).list_outputs())
    clean_onnx(model, names, channels, stride)
    if meta is not None:
        prop = model.metadata_props.add()
        prop.key, prop.value = "mxpose_meta", json.dumps(meta)
    onnx.checker.check_model(model)
    onnx.save(model, tmp)
    os.replace(tmp, onnx_path)
    return onnx_path


def export_network(net, prefix: str, meta: dict, formats=("symbol", "onnx"),
                   sample_shape=(1, 3, 64, 64)) -> Dict[str, str]:
    """Export ``net`` as ``formats`` under ``prefix`` and write the sidecar.

    The ONNX file is converted from the symbol files, so ``'onnx'`` also writes them.

    Returns
    -------
    dict
        Paths written, keyed ``symbol``, ``params``, ``onnx``, ``meta``.
    """
    formats = set(formats)
    unknown = formats - {"symbol", "onnx"}
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}; use 'symbol', 'onnx'")
    out = export_symbol(net, prefix, all_stages=meta["all_stages"], sample_shape=sample_shape)
    out["meta"] = write_meta(prefix, meta)
    if "onnx" in formats:
        ch = [meta["num_pafs"] if n.startswith("pafs") else meta["num_heatmaps"]
              for n in meta["outputs"]]
        out["onnx"] = export_onnx(out["symbol"], out["params"], export_files(prefix)["onnx"],
                                  meta["outputs"], ch, meta["stride"], meta, sample_shape)
    return out


def export_predictor(predictor, model_name: str, model_kwargs: Optional[dict], prefix: str,
                     formats=("symbol", "onnx"), all_stages: bool = False,
                     source: Optional[dict] = None) -> Dict[str, str]:
    """Export the Gluon network of a :class:`~mxpose.infer.Predictor` with a sidecar made
    of its settings (skeleton, stride, boxsize, scales, flip, decoder thresholds): what
    ``tools/export.py`` writes. Returns the paths as :func:`export_network`."""
    net = predictor.net
    num_stages = getattr(net, "num_stages", None)
    if num_stages is None:
        import mxnet as mx
        num_stages = len(net(mx.nd.zeros((1, 3, 64, 64), ctx=predictor.ctx))) // 2
    meta = make_meta(predictor.skeleton, model_name, model_kwargs, num_stages=num_stages,
                     all_stages=all_stages, stride=predictor.stride,
                     boxsize=predictor.boxsize, scales=predictor.scales, flip=predictor.flip,
                     margin=getattr(predictor, "margin", 0),
                     decode_params=predictor.decode_params, source=source,
                     output_kinds=getattr(net, "output_kinds", None))
    return export_network(net, prefix, meta, formats)


# -- running ------------------------------------------------------------------------------------
def compare_maps(ref: Sequence[np.ndarray], other: Sequence[np.ndarray],
                 rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
                 noise: Optional[Sequence[float]] = None,
                 margin: float = FLOAT32_MARGIN) -> dict:
    """Parity of output tensors: ``max|a - b| <= atol + max(rtol * max|ref|, margin *
    noise)`` per tensor.

    ``noise`` (one number per tensor, optional) is what float32 itself loses on this
    network and input, ``max|ref - ref_float64|`` (see :func:`float64_maps`).

    Returns ``{'max_abs': worst absolute difference, 'max_rel': worst difference relative
    to its tensor's max |ref|, 'ok': bool}``.
    """
    if len(ref) != len(other) or (noise is not None and len(noise) != len(ref)):
        return {"max_abs": float("inf"), "max_rel": float("inf"), "ok": False}
    worst_abs = worst_rel = 0.0
    ok = True
    for i, (a, b) in enumerate(zip(ref, other)):
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        if a.shape != b.shape:
            return {"max_abs": float("inf"), "max_rel": float("inf"), "ok": False}
        d = float(np.abs(a - b).max()) if a.size else 0.0
        scale = float(np.abs(a).max()) if a.size else 0.0
        worst_abs = max(worst_abs, d)
        worst_rel = max(worst_rel, d / max(scale, 1e-12))
        floor = margin * float(noise[i]) if noise is not None else 0.0
        ok &= d <= atol + max(rtol * scale, floor)
    return {"max_abs": worst_abs, "max_rel": worst_rel, "ok": bool(ok)}


def float64_maps(net, x: np.ndarray, ctx) -> List[np.ndarray]:
    """The last stage's (pafs, heatmaps) of the Gluon ``net`` on input ``x`` computed in
    float64: the reference that shows what float32 itself loses on this network.

    The network is cast to float64 for one forward and back to float32 (exact: its
    parameters are float32 values)."""
    import mxnet as mx
    net.cast("float64")
    try:
        out = net(mx.nd.array(x, ctx=ctx, dtype="float64"))
        return [out[-2].asnumpy(), out[-1].asnumpy()]
    finally:
        net.cast("float32")


def people_difference(a, b) -> float:
    """Largest keypoint difference (px) between two decodings ``a`` and ``b``, each
    ``(people (N, K, 3), scores (N,))`` as the Predictor returns them, people matched in
    score order; inf when they differ in people or in which keypoints were found."""
    (pa, sa), (pb, sb) = a, b
    if pa.shape != pb.shape:
        return float("inf")
    if not len(pa):
        return 0.0
    pa, pb = pa[np.argsort(-sa, kind="stable")], pb[np.argsort(-sb, kind="stable")]
    if not np.array_equal(pa[..., 2] > 0, pb[..., 2] > 0):
        return float("inf")
    return float(np.abs(pa[..., :2] - pb[..., :2]).max())


def verify_export(prefix: str, predictor, image: np.ndarray, engines=("symbol", "onnx"),
                  rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
                  people_tol: float = 0.05) -> dict:
    """Check an export against the Gluon network it came from, on one real image.

    Maps: the network input of ``image`` at scale 1 (resized to ``boxsize``, padded,
    normalised) goes through the Gluon network and through each engine;
    :func:`compare_maps` with ``rtol``/``atol``, widened to ``FLOAT32_MARGIN`` times what
    float32 loses on this network (:func:`float64_noise`). People: the full Predictor pipeline
    (the predictor's scales and flip) from the Gluon network and from each engine must
    find the same people with keypoints within ``people_tol`` pixels, or within
    ``FLOAT32_MARGIN`` times what float32 rounding alone moves them (people decoded from
    the float32 and the float64 maps; when float32 alone changes who is found, only the
    maps are compared).

    Parameters
    ----------
    prefix : str
        The export.
    predictor : Predictor
        Gluon predictor of the exported network (``predictor.net``).
    image : ndarray, uint8, (h, w, 3) BGR

    Returns
    -------
    dict
        ``{engine: {'max_abs', 'max_rel', 'maps_ok', 'people', 'people_diff',
        'people_ok', 'ok'}}`` plus ``'gluon': {'people': N}`` and ``'ok'`` overall.
    """
    import mxnet as mx
    from .infer import Predictor
    x, _ = predictor.input_batch(image, 1.0)
    out = predictor.net(mx.nd.array(x, ctx=predictor.ctx))
    ref = [out[-2].asnumpy(), out[-1].asnumpy()]
    ref64 = float64_maps(predictor.net, x, predictor.ctx)
    noise = [float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
             for a, b in zip(ref, ref64)]
    # how far float32 rounding alone moves the decoded people (inf: it changes who is found)
    from .decode import decode
    dec = [decode(m[1][0], m[0][0], predictor.skeleton, stride=predictor.stride,
                  **predictor.decode_params) for m in (ref, ref64)]
    people_tol = max(people_tol, FLOAT32_MARGIN * people_difference(*dec))
    opts = {"scales": predictor.scales, "flip": predictor.flip, "boxsize": predictor.boxsize,
            "stride": predictor.stride, "margin": predictor.margin,
            "decode_params": predictor.decode_params}
    ref_people = predictor(image)
    report = {"gluon": {"people": int(len(ref_people[1]))}}
    ok = True
    for eng in engines:
        kw = dict(opts, ctx=predictor.ctx) if eng == "symbol" else dict(opts)
        p = Predictor.from_exported(prefix, engine=eng, **kw)
        if eng == "symbol":
            o = p.net(mx.nd.array(x, ctx=p.ctx))
            maps = [o[-2].asnumpy(), o[-1].asnumpy()]
        else:
            maps = list(p.net(x))
        m = compare_maps(ref, maps, rtol, atol, noise=noise)
        people = p(image)
        d = people_difference(ref_people, people)
        r = {"max_abs": m["max_abs"], "max_rel": m["max_rel"], "maps_ok": m["ok"],
             "people": int(len(people[1])), "people_diff": d, "people_ok": d <= people_tol}
        r["ok"] = r["maps_ok"] and r["people_ok"]
        if eng == "onnx":
            r["providers"] = list(p.net.providers)
        report[eng] = r
        ok &= r["ok"]
    report["ok"] = bool(ok)
    report["tolerance"] = {"rtol": rtol, "atol": atol, "people_px": people_tol,
                           "float32_noise": noise, "margin": FLOAT32_MARGIN}
    return report
