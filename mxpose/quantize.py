"""INT8 ONNX models for CPU deployment: static quantization calibrated on a DB split.

An fp32 export ``X`` (:mod:`mxpose.export`) becomes ``X-int8.onnx`` with its own sidecar
``X-int8-meta.json`` (the fp32 one plus a ``quantization`` record), so
``Predictor.from_exported("X-int8.onnx", engine="onnx")`` runs it like any export.

Quantization is onnxruntime's static kind (``onnxruntime.quantization.quantize_static``):
weights int8 per output channel, activations uint8 with ranges fixed beforehand by
running the fp32 model on calibration images. The calibration images come from a pose DB
split and are preprocessed exactly as the Predictor feeds its network
(:meth:`mxpose.infer.Predictor.input_batch`: resized to the boxsize at each test scale,
padded to the stride, normalised), so the ranges are those the model meets at run time.
The graph is stored in QDQ form (QuantizeLinear/DequantizeLinear pairs around each
operator), which onnxruntime's CPU provider fuses into integer kernels.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Iterable, List, Optional, Sequence

import numpy as np

from .export import INPUT_NAME, ExportError, export_files, read_meta, write_meta

__all__ = ["QuantizeError", "INT8_SUFFIX", "CALIBRATION_METHODS", "int8_prefix",
           "calibration_images", "calibration_batches", "quantize_export"]

#: The quantized export of ``X`` is ``X-int8``.
INT8_SUFFIX = "-int8"
#: ``--calib-method`` values: onnxruntime's CalibrationMethod names.
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class QuantizeError(ExportError):
    """Quantization cannot run: no calibration images, no onnxruntime, no fp32 ONNX."""


def _onnx_compat():
    """Let onnxruntime's quantization tool import beside onnx 1.15.

    The tool names onnx >= 1.16's 4-bit tensor types in a table built at import, while
    MXNet 1.9.1's ONNX exporter needs onnx < 1.16. The 8-bit path never uses those types:
    the older onnx gets their two enum numbers (those of onnx's spec) and nothing else.
    """
    import onnx
    for name, number in (("UINT4", 21), ("INT4", 22)):
        if not hasattr(onnx.TensorProto, name):
            setattr(onnx.TensorProto, name, number)


def int8_prefix(prefix: str) -> str:
    """The export prefix of the INT8 model quantized from the fp32 export ``prefix``."""
    from .export import resolve_export_prefix
    return resolve_export_prefix(prefix) + INT8_SUFFIX


def calibration_images(db_path: str, split: str = "val", count: int = 64,
                       seed: int = 0) -> List[np.ndarray]:
    """``count`` BGR images of ``split`` of the pose DB ``db_path`` (a seeded random
    subset when the split has more; all of them when fewer).

    Raises
    ------
    QuantizeError
        The DB does not exist or the split has no images (an empty calibration set would
        give the quantizer no ranges at all).
    """
    from .data.store import PoseDB
    if not os.path.isfile(db_path):
        raise QuantizeError(f"calibration DB {db_path} does not exist")
    if int(count) < 1:
        raise QuantizeError(f"the number of calibration images must be >= 1, got {count}")
    db = PoseDB(db_path)
    try:
        ids = db.image_ids(split)
        if ids.size == 0:
            raise QuantizeError(f"calibration set is empty: {db_path} has no images in split "
                                f"{split!r} (splits: {db.splits() or 'none'})")
        if ids.size > count:
            ids = np.sort(np.random.default_rng(seed).choice(ids, int(count), replace=False))
        return [db.load_image(int(i)) for i in ids]
    finally:
        db.close()


def calibration_batches(images: Iterable[np.ndarray],
                        input_batch: Callable[[np.ndarray, float], tuple],
                        scales: Sequence[float] = (1.0,)):
    """Yield the network inputs of ``images``: ``input_batch(img, scale)[0]`` for each
    scale, e.g. a Predictor's :meth:`~mxpose.infer.Predictor.input_batch`."""
    for img in images:
        for s in scales:
            yield np.ascontiguousarray(input_batch(img, float(s))[0], np.float32)


def quantize_export(prefix: str, batches: Iterable[np.ndarray], out: Optional[str] = None,
                    method: str = "minmax", calibration: Optional[dict] = None,
                    progress=None) -> dict:
    """Quantize the fp32 ONNX model of the export ``prefix`` to INT8.

    Parameters
    ----------
    prefix : str
        An fp32 export (its ``.onnx`` and sidecar must exist).
    batches : iterable of (1, 3, h, w) float32
        Calibration inputs, preprocessed as the Predictor does
        (:func:`calibration_batches`); sizes may differ.
    out : str, optional
        Output prefix (default :func:`int8_prefix` of ``prefix``).
    method : {'minmax', 'entropy', 'percentile'}
        How activation ranges are chosen from the calibration runs.
    calibration : dict, optional
        Where the batches came from (DB, split, image count), recorded in the sidecar.
    progress : callable, optional
        Called once per calibration batch consumed (e.g. a progress bar's ``update``).

    Returns
    -------
    dict
        ``{'onnx', 'meta'}`` paths and ``batches`` (how many calibrated the ranges).

    Raises
    ------
    QuantizeError
        No batches, onnxruntime missing, unknown method, or no fp32 ONNX file.
    """
    try:
        _onnx_compat()
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                              QuantFormat, QuantType, quantize_static)
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as e:
        raise QuantizeError(f"INT8 export needs onnx, onnxruntime and ml_dtypes (pip install "
                            f"-c constraints.txt -r requirements.txt): {e}") from None
    if method not in CALIBRATION_METHODS:
        raise QuantizeError(f"calibration method must be one of "
                            f"{', '.join(CALIBRATION_METHODS)}, got {method!r}")
    it = iter(batches)
    first = next(it, None)
    if first is None:
        raise QuantizeError("calibration set is empty: no images to calibrate on")
    src = export_files(prefix)
    if not os.path.isfile(src["onnx"]):
        raise QuantizeError(f"fp32 ONNX model {src['onnx']} does not exist (export with "
                            "--formats onnx)")
    meta = read_meta(prefix)
    out = out or int8_prefix(prefix)
    dst = export_files(out)
    count = [0]

    class _Reader(CalibrationDataReader):
        def __init__(self):
            self.pending = first

        def get_next(self):
            x = self.pending if self.pending is not None else next(it, None)
            self.pending = None
            if x is None:
                return None
            count[0] += 1
            if progress is not None:
                progress()
            return {INPUT_NAME: x}

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    os.makedirs(os.path.dirname(os.path.abspath(dst["onnx"])), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mxpose_int8_") as tmp:
        # shape inference + graph optimisation first, as onnxruntime recommends
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(src["onnx"], pre, skip_symbolic_shape=True)
        part = os.path.join(tmp, "int8.onnx")
        quantize_static(pre, part, _Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True, calibrate_method=methods[method],
                        extra_options={"CalibTensorRangeSymmetric": False})
        shutil.move(part, dst["onnx"])
    meta = dict(meta)
    meta["quantization"] = {
        "int8": True, "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ", "weights": "int8 per channel", "activations": "uint8",
        "calibration_method": method, "calibration_batches": count[0],
        "calibration": dict(calibration or {}),
        "fp32_export": os.path.basename(export_files(prefix)["onnx"]),
    }
    write_meta(out, meta)
    return {"onnx": dst["onnx"], "meta": dst["meta"], "batches": count[0]}
