"""Learning-rate schedule: linear warm-up, then a step decay.

The schedule is a pure function of the optimizer's update count, so a resumed run is at
the same position as soon as the count is restored, and the same object works on MXNet's
parameter servers (the optimizer, with its scheduler, is shipped to them when training
with a ``dist_*`` kvstore).
"""
from __future__ import annotations

from typing import Sequence

from mxnet.lr_scheduler import LRScheduler

__all__ = ["StepWarmupSchedule", "schedule_from_config"]


class StepWarmupSchedule(LRScheduler):
    """``lr(n)`` for the n-th update (n = 1 for the first step).

    Parameters
    ----------
    base_lr : float
        Rate after the warm-up, before the first step.
    steps : sequence of int
        Update counts after which the rate is multiplied by ``factor``: update ``n`` uses
        ``base_lr * factor ** #{s in steps : n > s}``. Caffe's ``step`` policy with
        ``stepsize`` S is ``steps = [S, 2S, 3S, ...]``.
    factor : float
        Multiplier per step.
    warmup_iters : int
        Updates ``1..warmup_iters`` ramp linearly: ``lr(n) = base(n) * n / warmup_iters``.
    """

    def __init__(self, base_lr: float, steps: Sequence[int] = (), factor: float = 1.0,
                 warmup_iters: int = 0):
        super().__init__(base_lr=float(base_lr))
        self.steps = sorted(int(s) for s in steps)
        if any(s < 0 for s in self.steps):
            raise ValueError(f"lr steps must be >= 0, got {self.steps}")
        self.factor = float(factor)
        self.warmup_iters = max(0, int(warmup_iters))

    def __call__(self, num_update: int) -> float:
        n = int(num_update)
        lr = self.base_lr * self.factor ** sum(1 for s in self.steps if n > s)
        if self.warmup_iters and n <= self.warmup_iters:
            lr *= max(n, 1) / self.warmup_iters
        return float(lr)

    def to_dict(self) -> dict:
        return {"type": "step_warmup", "base_lr": self.base_lr, "steps": self.steps,
                "factor": self.factor, "warmup_iters": self.warmup_iters}


def schedule_from_config(train_cfg) -> StepWarmupSchedule:
    """The schedule of a config's ``train`` section (``lr``, ``lr_steps``, ``lr_factor``,
    ``warmup_iters``)."""
    return StepWarmupSchedule(train_cfg.lr, train_cfg.lr_steps, train_cfg.lr_factor,
                              train_cfg.warmup_iters)
