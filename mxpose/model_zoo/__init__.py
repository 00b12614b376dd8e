"""Pose networks: CMU's CPM on VGG-19 and Lightweight OpenPose on MobileNet.

``get_model(name, **kwargs)`` builds a network by name. Every network is a Gluon
``HybridBlock`` (hybridize with ``static_alloc=True, static_shape=True``) whose output is
the flat sequence ``(paf_1, heat_1, ..., paf_S, heat_S)`` of every stage's predictions,
for intermediate supervision; :func:`pair_outputs` groups it per stage. Constructors take
the output sizes (``num_heatmaps`` = K + 1, ``num_pafs`` = 2L) or ``skeleton=`` so any
keypoint layout trains.

=====================  ===============================================================
``cpm_vgg19``          CMU OpenPose body network (``num_stages``, default 6)
``lwpose_mobilenet``   Lightweight OpenPose (``num_refinement``, ``width_mult``,
                       ``num_channels``, ``head_channels``)
=====================  ===============================================================
"""
from __future__ import annotations

from .common import pair_outputs, resolve_sizes
from .cpm_vgg19 import CPMVGG19, cpm_vgg19
from .lwpose_mobilenet import LWPoseMobileNet, lwpose_mobilenet
from .pretrained import base_parameters, load_pretrained_base

__all__ = ["get_model", "list_models", "register_model", "pair_outputs", "resolve_sizes", "CPMVGG19",
           "cpm_vgg19", "LWPoseMobileNet", "lwpose_mobilenet", "load_pretrained_base",
           "base_parameters"]

_MODELS = {
    "cpm_vgg19": cpm_vgg19,
    "lwpose_mobilenet": lwpose_mobilenet,
}


def list_models():
    """Names :func:`get_model` accepts, sorted."""
    return sorted(_MODELS)


def register_model(name: str, ctor):
    """Make ``get_model(name, **kw)`` call ``ctor(**kw)`` (e.g. a benchmark's reference
    network run through the real trainer). An existing name is an error."""
    if name in _MODELS and _MODELS[name] is not ctor:
        raise ValueError(f"model name {name!r} is taken")
    _MODELS[name] = ctor


def get_model(name: str, **kwargs):
    """Build the network ``name`` with constructor ``kwargs`` (uninitialised).

    Raises
    ------
    ValueError
        Unknown name; the message lists the valid ones.
    """
    try:
        ctor = _MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; valid names: "
                         f"{', '.join(list_models())}") from None
    return ctor(**kwargs)
