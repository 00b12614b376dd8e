"""mxpose: OpenPose-style bottom-up multi-person pose estimation on MXNet/Gluon.

Importing the package is cheap: subpackages (and MXNet itself) load on first use,
e.g. ``mxpose.skeleton``, ``mxpose.data``, ``mxpose.model_zoo``.
"""
import importlib

from ._version import __version__

__all__ = ["__version__", "skeleton", "config", "data", "targets", "decode", "model_zoo", "caffe_import",
           "loss", "train", "infer", "eval", "viz", "export", "cli"]


def __getattr__(name):
    if name in __all__[1:]:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'mxpose' has no attribute {name!r}")
