"""Masked multi-stage L2 loss (CMU's intermediate supervision).

For every stage s and branch (PAF, heatmap), as CMU's Caffe training computes it (an
``Eltwise`` PROD of prediction and target with the mask, then ``EuclideanLoss``)::

    loss[s, branch] = 0.5 * sum((w * pred - w * gt) ** 2) / batch_size

summed over channels, pixels and the samples on this device; ``w`` is the loss mask
(0 where an unlabelled person may be, 1 elsewhere), broadcast over channels when it has
one. It is computed as ``w * (pred - gt)``, algebraically the same with one multiply
fewer. The total is the sum over stages and both branches, each with weight 1.

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

    Inputs (``forward(outputs, heat_gt, heat_mask, paf_gt, paf_mask)``)
    ------------------------------------------------------------------
    outputs : sequence of NDArray
        A network's flat output ``(paf_1, heat_1, ..., paf_S, heat_S)``.
    heat_gt : (B, K+1, H, W) ; heat_mask : (B, K+1, H, W) or (B, 1, H, W)
    paf_gt : (B, 2L, H, W) ; paf_mask : (B, 2L, H, W) or (B, 1, H, W)

    Returns
    -------
    total : NDArray, shape (1,)
        Sum over stages and branches; call ``backward()`` on it.
    per_stage : NDArray, shape (S, 2)
        ``[s, 0]`` the PAF loss, ``[s, 1]`` the heatmap loss of stage s (for logging).
    """

    def __init__(self, batch_size: Optional[int] = None, use_masks: bool = True, **kwargs):
        super().__init__(**kwargs)
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = None if batch_size is None else int(batch_size)
        self.use_masks = bool(use_masks)

    def forward(self, outputs, heat_gt, heat_mask, paf_gt, paf_mask):
        outputs = list(outputs)
        if not outputs or len(outputs) % 2:
            raise ValueError(f"outputs must be (paf, heat) per stage, got {len(outputs)} "
                             f"arrays")
        # Masks are only graph inputs when used (an unused input makes Gluon warn).
        masks = (heat_mask, paf_mask) if self.use_masks else ()
        return super().forward(heat_gt, paf_gt, *masks, *outputs)

    def hybrid_forward(self, F, heat_gt, paf_gt, *rest):
        if self.use_masks:
            heat_mask, paf_mask, outputs = rest[0], rest[1], rest[2:]
        else:
            heat_mask = paf_mask = None
            outputs = rest
        if self.batch_size is None:
            norm = F.slice_axis(F.shape_array(heat_gt), axis=0, begin=0, end=1)
            scale = 0.5 / F.cast(norm, dtype="float32")
        else:
            scale = None
        terms = []
        for i, pred in enumerate(outputs):
            gt, mask = (paf_gt, paf_mask) if i % 2 == 0 else (heat_gt, heat_mask)
            diff = pred - gt
            if self.use_masks:
                diff = F.broadcast_mul(diff, mask)
            s = F.sum(F.square(diff)).reshape((1,))
            s = s * (0.5 / self.batch_size) if scale is None else s * scale
            terms.append(s)
        per = F.concat(*terms, dim=0)
        per_stage = per.reshape((-1, 2))
        return F.sum(per).reshape((1,)), per_stage


def multi_stage_l2_loss(outputs: Sequence, heat_gt, heat_mask, paf_gt, paf_mask,
                        batch_size: Optional[int] = None, use_masks: bool = True):
    """Functional form of :class:`MultiStageL2Loss` (imperative; same arguments)."""
    return MultiStageL2Loss(batch_size=batch_size, use_masks=use_masks)(
        outputs, heat_gt, heat_mask, paf_gt, paf_mask)
