"""mxpose: OpenPose-style bottom-up multi-person pose estimation on MXNet/Gluon.

Importing the package is cheap: subpackages (and MXNet itself) load on first use,
e.g. ``mxpose.skeleton``, ``mxpose.data``, ``mxpose.model_zoo``.

Importing it also sets ``OMP_NUM_THREADS`` to the usable core count unless it is set
already (or MXNet was imported first), so MXNet uses every core: see
:func:`mxpose._threads.use_all_cores`.
"""
import importlib

from ._threads import use_all_cores as _use_all_cores
from ._version import __version__

_use_all_cores()

__all__ = ["__version__", "skeleton", "config", "data", "targets", "decode", "model_zoo", "caffe_import",
           "loss", "train", "infer", "eval", "viz", "export", "cli"]


def __getattr__(name):
    if name in __all__[1:]:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'mxpose' has no attribute {name!r}")
