"""Pose networks: CMU's CPM and PAF-first networks on VGG-19, Lightweight OpenPose.

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
``paffirst_vgg19``     CMU's PAF-first network (OpenPose BODY_25 by default;
                       ``PAFFIRST_CONFIGS`` for BODY_25B / BODY_135): PAF-only stages
                       then heatmap-only stages; ``net.output_kinds`` names each output
=====================  ===============================================================

A network whose outputs do not alternate ``(paf, heat)`` (the PAF-first one) has an
``output_kinds`` attribute; the last two outputs are always the final ``(paf, heat)``.
"""
from __future__ import annotations

from ..config import ModelError
from .common import pair_outputs, resolve_sizes
from .cpm_vgg19 import CPMVGG19, cpm_vgg19
from .lwpose_mobilenet import LWPoseMobileNet, lwpose_mobilenet
from .paffirst_vgg19 import PAFFIRST_CONFIGS, PafFirstVGG19, paffirst_vgg19
from .pretrained import base_parameters, load_pretrained_base

__all__ = ["ModelError", "get_model", "model_arguments", "list_models", "register_model", "pair_outputs", "resolve_sizes", "CPMVGG19",
           "cpm_vgg19", "LWPoseMobileNet", "lwpose_mobilenet", "load_pretrained_base",
           "base_parameters", "PafFirstVGG19", "paffirst_vgg19", "PAFFIRST_CONFIGS"]

_MODELS = {
    "cpm_vgg19": cpm_vgg19,
    "lwpose_mobilenet": lwpose_mobilenet,
    "paffirst_vgg19": paffirst_vgg19,
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


def model_arguments(name: str) -> list:
    """The constructor arguments of model ``name`` (e.g. whether it takes ``act``)."""
    import inspect
    if name not in _MODELS:
        raise ModelError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    return [p for p in inspect.signature(_MODELS[name]).parameters if p != "kwargs"]


def get_model(name: str, **kwargs):
    """Build the network ``name`` with constructor ``kwargs`` (uninitialised).

    Raises
    ------
    ModelError
        Unknown name, or a keyword the constructor does not take; the message lists the
        valid ones.
    """
    import inspect
    try:
        ctor = _MODELS[name]
    except (KeyError, TypeError):
        raise ModelError(f"unknown model {name!r}; valid names: "
                         f"{', '.join(list_models())}") from None
    try:
        return ctor(**kwargs)
    except TypeError as e:
        if "keyword argument" not in str(e):
            raise
        # The constructors pass unknown keywords on to gluon's Block: name them here.
        valid = [p for p in inspect.signature(ctor).parameters
                 if p not in ("kwargs", "num_heatmaps", "num_pafs", "skeleton")]
        bad = sorted(set(kwargs) - set(inspect.signature(ctor).parameters)
                     - {"prefix", "params"})
        raise ModelError(f"model {name!r} takes no argument "
                         f"{', '.join(map(repr, bad)) or str(e)} (model.kwargs; valid: "
                         f"{', '.join(valid)})") from None
