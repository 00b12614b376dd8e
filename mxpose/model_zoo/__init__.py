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

from .common import pair_outputs, resolve_sizes
from .cpm_vgg19 import CPMVGG19, cpm_vgg19
from .lwpose_mobilenet import LWPoseMobileNet, lwpose_mobilenet
from .paffirst_vgg19 import PAFFIRST_CONFIGS, PafFirstVGG19, paffirst_vgg19
from .pretrained import base_parameters, load_pretrained_base

__all__ = ["get_model", "list_models", "pair_outputs", "resolve_sizes", "CPMVGG19",
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
