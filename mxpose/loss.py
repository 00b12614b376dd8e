"""Masked multi-stage L2 loss (CMU's intermediate supervision).

For every stage s and branch (PAF, heatmap), as CMU's Caffe training computes it (an
``Eltwise`` PROD of prediction and target with the mask, then ``EuclideanLoss``)::

    loss[s, branch] = 0.5 * sum((w * pred - w * gt) ** 2) / batch_size

summed over channels, pixels and the samples on this device; ``w`` is the loss mask
(0 where an unlabelled person may be, 1 elsewhere), broadcast over channels when it has
one. It is computed as ``w * (pred - gt)``, algebraically the same with one multiply
fewer. The total is the sum over stages and both branches, each with weight 1.

PAF-first networks (``paffirst_vgg19``: BODY_25 and kin) have PAF-only and heatmap-only
stages; their ``output_kinds`` (``'paf'``/``'heat'`` per output), passed as ``kinds``,
says which target supervises each output. CMU's ``pose_training_body25.prototxt`` puts
the same masked ``EuclideanLoss`` of weight 1 on every one of them (``loss_stage{s}_L2``
on the PAFs, ``loss_stage{s}_L1`` on the heatmaps).

Normalisation and multiple devices
----------------------------------
``batch_size`` is the TOTAL batch of one optimizer step, over all devices. Each device
divides its own sum by it, so the per-device losses add up to the full-batch loss and
the gradients summed over devices (what ``gluon.Trainer``/kvstore do) are the full-batch
gradient, however the batch is split. The loss is already normalised: step the trainer
with ``trainer.step(1)``. With ``batch_size=None`` the device's own batch is used
(right for a single device only).
"""
from __future__ import annotations

from typing import Optional, Sequence

from mxnet.gluon import HybridBlock

__all__ = ["MultiStageL2Loss", "multi_stage_l2_loss"]


class MultiStageL2Loss(HybridBlock):
    """Masked L2 over all stages and both branches.

    Parameters
    ----------
    batch_size : int, optional
        Total batch size over all devices (see the module docstring). ``None``: the
        batch size of the inputs.
    use_masks : bool
        ``False`` ignores the masks (ablation: unlabelled people are then penalised as
        background).
    kinds : sequence of {'paf', 'heat'}, optional
        What each network output predicts (a network's ``output_kinds``). Default: the
        outputs alternate ``(paf, heat)`` per stage.

    Inputs (``forward(outputs, heat_gt, heat_mask, paf_gt, paf_mask)``)
    ------------------------------------------------------------------
    outputs : sequence of NDArray
        A network's flat output: ``(paf_1, heat_1, ..., paf_S, heat_S)``, or in the order
        of ``kinds``.
    heat_gt : (B, K+1, H, W) ; heat_mask : (B, K+1, H, W) or (B, 1, H, W)
    paf_gt : (B, 2L, H, W) ; paf_mask : (B, 2L, H, W) or (B, 1, H, W)

    Returns
    -------
    total : NDArray, shape (1,)
        Sum over stages and branches; call ``backward()`` on it.
    per_stage : NDArray, shape (S, 2)
        ``[s, 0]`` the loss of the s-th PAF output, ``[s, 1]`` that of the s-th heatmap
        output (for logging); with ``kinds``, S is the larger of the two counts and the
        shorter column is padded with zeros.
    """

    def __init__(self, batch_size: Optional[int] = None, use_masks: bool = True,
                 kinds: Optional[Sequence[str]] = None, **kwargs):
        super().__init__(**kwargs)
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = None if batch_size is None else int(batch_size)
        self.use_masks = bool(use_masks)
        if kinds is not None:
            kinds = tuple(str(k) for k in kinds)
            if set(kinds) != {"paf", "heat"}:
                raise ValueError(f"kinds must name 'paf' and 'heat' outputs (and nothing "
                                 f"else), got {kinds}")
        self.kinds = kinds

    def forward(self, outputs, heat_gt, heat_mask, paf_gt, paf_mask):
        outputs = list(outputs)
        if self.kinds is None:
            if not outputs or len(outputs) % 2:
                raise ValueError(f"outputs must be (paf, heat) per stage, got "
                                 f"{len(outputs)} arrays")
        elif len(outputs) != len(self.kinds):
            raise ValueError(f"{len(outputs)} outputs, but kinds names {len(self.kinds)}")
        kinds = self.kinds or ("paf", "heat") * (len(outputs) // 2)
        for i, (pred, kind) in enumerate(zip(outputs, kinds)):
            gt = paf_gt if kind == "paf" else heat_gt
            if hasattr(pred, "shape") and hasattr(gt, "shape") and pred.shape[1] != gt.shape[1]:
                raise ValueError(f"output {i} ({kind}) has {pred.shape[1]} channels but its "
                                 f"target has {gt.shape[1]}")
        # Masks are only graph inputs when used (an unused input makes Gluon warn).
        masks = (heat_mask, paf_mask) if self.use_masks else ()
        return super().forward(heat_gt, paf_gt, *masks, *outputs)

    def hybrid_forward(self, F, heat_gt, paf_gt, *rest):
        if self.use_masks:
            heat_mask, paf_mask, outputs = rest[0], rest[1], rest[2:]
            # A (B, 1, H, W) mask is expanded to its target's channels once here, not
            # broadcast in every stage's product: broadcast_mul's backward reduces over
            # the broadcast axis for each stage (4x the whole loss's time, measured).
            heat_mask = F.broadcast_like(F.BlockGrad(heat_mask), heat_gt)
            paf_mask = F.broadcast_like(F.BlockGrad(paf_mask), paf_gt)
        else:
            heat_mask = paf_mask = None
            outputs = rest
        if self.batch_size is None:
            norm = F.slice_axis(F.shape_array(heat_gt), axis=0, begin=0, end=1)
            scale = 0.5 / F.cast(norm, dtype="float32")
        else:
            scale = None
        kinds = self.kinds or ("paf", "heat") * (len(outputs) // 2)
        terms = {"paf": [], "heat": []}
        for pred, kind in zip(outputs, kinds):
            gt, mask = (paf_gt, paf_mask) if kind == "paf" else (heat_gt, heat_mask)
            diff = pred - gt
            if self.use_masks:
                diff = diff * mask
            s = F.sum(F.square(diff)).reshape((1,))
            s = s * (0.5 / self.batch_size) if scale is None else s * scale
            terms[kind].append(s)
        total = F.sum(F.concat(*(terms["paf"] + terms["heat"]), dim=0)).reshape((1,))
        rows = max(len(terms["paf"]), len(terms["heat"]))
        zero = F.zeros_like(terms["paf"][0])
        cols = [t + [zero] * (rows - len(t)) for t in (terms["paf"], terms["heat"])]
        per = F.concat(*[x for pair in zip(*cols) for x in pair], dim=0)
        return total, per.reshape((-1, 2))


def multi_stage_l2_loss(outputs: Sequence, heat_gt, heat_mask, paf_gt, paf_mask,
                        batch_size: Optional[int] = None, use_masks: bool = True,
                        kinds: Optional[Sequence[str]] = None):
    """Functional form of :class:`MultiStageL2Loss` (imperative; same arguments)."""
    return MultiStageL2Loss(batch_size=batch_size, use_masks=use_masks, kinds=kinds)(
        outputs, heat_gt, heat_mask, paf_gt, paf_mask)
