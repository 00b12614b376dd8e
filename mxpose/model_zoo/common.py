"""Pieces shared by the pose networks: output sizes from a skeleton, output pairing, the
activation form."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

__all__ = ["resolve_sizes", "pair_outputs", "COCO_SIZES", "ACT_FORMS", "check_act", "relu"]

# (num_heatmaps, num_pafs) of OpenPose's COCO body: 18 parts + background, 19 limbs.
COCO_SIZES = (19, 38)

# How a network writes its ReLUs. Both compute the same function with no parameters;
# they differ in speed on CPU. 'activation' (the default) is ``Activation(act_type=relu)``,
# an operator MXNet 1.9's oneDNN backend implements: the convolution's output stays in
# oneDNN's blocked memory layout and the oneDNN subgraph pass can fuse it into the
# convolution. 'relu_op' is the plain ``relu`` operator, which has no oneDNN kernel: every
# one forces a reorder back to the default layout and runs single-threaded elementwise
# code (measured in docs/PERFORMANCE.md: LW OpenPose forward ~1.7x slower). It is kept so
# the benchmarks can time the old form beside the new one in the same run.
ACT_FORMS = ("activation", "relu_op")


def check_act(act: str) -> str:
    """Validate an activation form name (one of :data:`ACT_FORMS`) and return it."""
    if act not in ACT_FORMS:
        raise ValueError(f"act must be one of {', '.join(ACT_FORMS)}, got {act!r}")
    return act


def relu(F, x, act: str = "activation"):
    """ReLU of ``x`` written in the activation form ``act`` (see :data:`ACT_FORMS`)."""
    if act == "relu_op":
        return F.relu(x)
    return F.Activation(x, act_type="relu")


def resolve_sizes(num_heatmaps: Optional[int], num_pafs: Optional[int],
                  skeleton=None) -> Tuple[int, int]:
    """Output channel counts from explicit sizes and/or a skeleton.

    Parameters
    ----------
    num_heatmaps, num_pafs : int or None
        K + 1 (keypoints plus background) and 2L (two channels per limb).
    skeleton : str, Skeleton, dict or None
        Anything :func:`mxpose.skeleton.get_skeleton` accepts. Gives the sizes that were
        not passed explicitly; an explicit size that disagrees with it is an error.

    Returns
    -------
    (num_heatmaps, num_pafs) : (int, int)
        COCO's (19, 38) when neither sizes nor a skeleton are given.
    """
    if skeleton is not None:
        from ..skeleton import get_skeleton
        skel = get_skeleton(skeleton)
        for what, given, want in (("num_heatmaps", num_heatmaps, skel.num_heatmaps),
                                  ("num_pafs", num_pafs, skel.num_pafs)):
            if given is not None and int(given) != want:
                raise ValueError(f"{what}={given} contradicts skeleton {skel.name!r}, "
                                 f"which needs {what}={want}")
        num_heatmaps, num_pafs = skel.num_heatmaps, skel.num_pafs
    if num_heatmaps is None:
        num_heatmaps = COCO_SIZES[0]
    if num_pafs is None:
        num_pafs = COCO_SIZES[1]
    num_heatmaps, num_pafs = int(num_heatmaps), int(num_pafs)
    if num_heatmaps < 1 or num_pafs < 1:
        raise ValueError(f"num_heatmaps and num_pafs must be >= 1, got "
                         f"{num_heatmaps}, {num_pafs}")
    return num_heatmaps, num_pafs


def pair_outputs(outputs: Sequence) -> List[Tuple[object, object]]:
    """Group a network's flat output into per-stage ``(paf, heatmap)`` pairs.

    Every network in the zoo returns the flat sequence
    ``(paf_1, heat_1, paf_2, heat_2, ..., paf_S, heat_S)`` (a tuple when run
    imperatively, a list when hybridized), because hybridized blocks hand back flat
    outputs. ``paf_s`` is ``(B, 2L, H, W)``, ``heat_s`` is ``(B, K+1, H, W)``; the last
    pair is the final prediction.

    Not for PAF-first networks (``paffirst_vgg19``), whose stages predict PAFs or
    heatmaps only: their ``output_kinds`` names each output (the last two are still the
    final ``(paf, heat)``), and :class:`mxpose.loss.MultiStageL2Loss` takes it as ``kinds``.

    Returns
    -------
    list of (paf, heat), length S
    """
    outputs = list(outputs)
    if len(outputs) % 2:
        raise ValueError(f"expected an even number of outputs (paf, heat per stage), "
                         f"got {len(outputs)}")
    return [(outputs[i], outputs[i + 1]) for i in range(0, len(outputs), 2)]
