"""Reading exports: the files of an export, its sidecar, and the onnxruntime engine.

What :meth:`mxpose.infer.Predictor.from_exported` needs to run an export written by
:mod:`mxpose.export` (``tools/export.py``), kept apart from the writer so that inference
does not import the exporter (and the exporter, which verifies through a Predictor, can
import inference). Importing this module imports neither MXNet nor onnxruntime.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import numpy as np

from .jsonio import read_json

__all__ = ["ExportError", "EXPORT_FORMAT", "EXPORT_VERSION", "INPUT_NAME", "SYMBOL_INPUT",
           "resolve_export_prefix", "export_files", "read_meta", "OnnxRunner"]

EXPORT_FORMAT = "mxpose-export"
EXPORT_VERSION = 1
#: Input name of the cleaned ONNX graph (the symbol file keeps MXNet's ``data``).
INPUT_NAME = "image"
SYMBOL_INPUT = "data"
_SUFFIXES = ("-meta.json", "-symbol.json", "-0000.params", ".onnx")


class ExportError(RuntimeError):
    """An export is incomplete, of another format, or could not be written."""


# -- file names and the sidecar ---------------------------------------------------------------
def resolve_export_prefix(path: str) -> str:
    """The prefix ``X`` of an export from ``X`` or any of its file names."""
    p = str(path)
    for s in _SUFFIXES:
        if p.endswith(s):
            return p[: -len(s)]
    return p


def export_files(prefix: str) -> Dict[str, str]:
    """``{'symbol', 'params', 'onnx', 'meta'}`` paths of the export ``prefix``."""
    prefix = resolve_export_prefix(prefix)
    return {"symbol": prefix + "-symbol.json", "params": prefix + "-0000.params",
            "onnx": prefix + ".onnx", "meta": prefix + "-meta.json"}


def read_meta(path: str) -> dict:
    """Read and check the sidecar of the export ``path`` (prefix or any of its files).

    Raises
    ------
    FileNotFoundError
        No ``X-meta.json``.
    ExportError
        Not an mxpose export, or a newer format version.
    """
    p = export_files(path)["meta"]
    if not os.path.isfile(p):
        raise FileNotFoundError(f"export sidecar {p} does not exist (export with "
                                "tools/export.py)")
    meta = read_json(p, "export sidecar", ExportError)
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise ExportError(f"{p} is not an mxpose export sidecar")
    if int(meta.get("version", 0)) > EXPORT_VERSION:
        raise ExportError(f"{p} has format version {meta.get('version')}; this mxpose "
                          f"reads up to {EXPORT_VERSION}")
    return meta


# -- running ------------------------------------------------------------------------------------
class OnnxRunner:
    """onnxruntime session of an exported ``.onnx``: ``runner(batch) -> (pafs, heatmaps)``.

    Parameters
    ----------
    path : str
        The ``.onnx`` file.
    providers : list of str, optional
        onnxruntime execution providers; default CUDA when available (onnxruntime-gpu),
        then CPU.
    threads : int
        Intra-op threads (0: onnxruntime's default, one per physical core).
    spin : bool
        Let idle intra-op threads busy-wait for the next operator (onnxruntime's default:
        fastest alone). False frees the cores between operators for other threads, e.g.
        the decoding and drawing of a video pipeline.
    """

    def __init__(self, path: str, providers: Optional[Sequence[str]] = None, threads: int = 0,
                 spin: bool = True):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError("the onnx engine needs onnxruntime (pip install onnxruntime, "
                              "or onnxruntime-gpu for CUDA)") from None
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX file {path} does not exist")
        avail = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                         if p in avail]
        missing = [p for p in providers if p not in avail]
        if missing:
            raise ExportError(f"onnxruntime providers {missing} are not available "
                              f"(available: {avail})")
        so = ort.SessionOptions()
        so.log_severity_level = 3  # warnings about unused initializers etc. are noise here
        if threads:
            so.intra_op_num_threads = int(threads)
        if not spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(path, so, providers=list(providers))
        self.input_name = self.session.get_inputs()[0].name
        outs = [o.name for o in self.session.get_outputs()]
        if "pafs" not in outs or "heatmaps" not in outs:
            raise ExportError(f"{path} has outputs {outs}, not 'pafs' and 'heatmaps' (not "
                              "an mxpose export?)")

    @property
    def providers(self):
        return self.session.get_providers()

    def __call__(self, batch: np.ndarray):
        """(B, 3, h, w) float32 -> pafs (B, 2L, h/s, w/s), heatmaps (B, K+1, h/s, w/s)."""
        pafs, heat = self.session.run(["pafs", "heatmaps"],
                                      {self.input_name: np.ascontiguousarray(batch, np.float32)})
        return pafs, heat

    def run_all(self, batch: np.ndarray) -> list:
        """Every output of the graph, in its order."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch,
                                                                              np.float32)})
