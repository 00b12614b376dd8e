"""Optimizer set-up: per-parameter lr/wd multipliers and the gluon Trainer.

Multipliers are set by regular expressions on structural parameter names (those of
``save_parameters``: ``conv1_1.weight``, ``Mconv7_stage6_L2.bias``,
``refinement.0.heat.out.weight`` ...). For each parameter the FIRST pattern (in the
config's order) that ``re.search`` finds in its name gives the multiplier; no match
means 1. Weight decay is off (``wd_mult = 0``) for biases and BatchNorm parameters,
as in CMU's prototxt (``decay_mult: 0`` on biases) and Lightweight OpenPose.
"""
from __future__ import annotations

import re
from typing import List, Mapping, Optional, Tuple

__all__ = ["multiplier_for", "parameter_multipliers", "build_trainer", "NO_DECAY_PATTERN",
           "OptimizerError"]

#: Parameters never decayed: biases and BatchNorm's affine terms and statistics.
NO_DECAY_PATTERN = r"(\.bias|\.beta|\.gamma|running_mean|running_var)$"


class OptimizerError(ValueError):
    """Bad optimizer settings in the config."""


def multiplier_for(name: str, rules: Optional[Mapping[str, float]], default: float = 1.0) -> float:
    """The multiplier of the first pattern of ``rules`` found in ``name``."""
    for pat, mult in (rules or {}).items():
        if re.search(pat, name):
            return float(mult)
    return float(default)


def parameter_multipliers(names: List[str], lr_rules=None, wd_rules=None
                          ) -> List[Tuple[float, float]]:
    """``(lr_mult, wd_mult)`` for each structural name.

    ``wd_rules`` (regex -> multiplier, first match wins) are consulted after the built-in
    no-decay rule for biases/BN, so they can turn decay off for more parameters
    (e.g. depthwise convolutions) but not on for biases.
    """
    for rules, what in ((lr_rules, "lr_mult"), (wd_rules, "wd_mult")):
        for pat, mult in (rules or {}).items():
            try:
                re.compile(pat)
            except re.error as e:
                raise OptimizerError(f"train.{what}: bad pattern {pat!r}: {e}") from None
            if not isinstance(mult, (int, float)) or isinstance(mult, bool) or mult < 0:
                raise OptimizerError(f"train.{what}: multiplier of {pat!r} must be a "
                                     f"number >= 0, got {mult!r}")
    out = []
    for n in names:
        wd = 0.0 if re.search(NO_DECAY_PATTERN, n) else multiplier_for(n, wd_rules)
        out.append((multiplier_for(n, lr_rules), wd))
    return out


def build_trainer(net, train_cfg, schedule, kvstore="device", begin_num_update: int = 0,
                  update_on_kvstore=None):
    """A gluon Trainer over ``net``'s parameters with the config's optimizer.

    Parameters
    ----------
    net : HybridBlock
        Initialised network.
    train_cfg : EasyDict
        ``optimizer`` (sgd, nag, adam, ...), ``lr``, ``momentum``, ``wd``,
        ``clip_gradient`` (element-wise, 0 = off), ``lr_mult`` (and optionally
        ``wd_mult``) rules.
    schedule : mxnet.lr_scheduler.LRScheduler
        Learning-rate schedule, evaluated by the optimizer on its update count.
    kvstore : str or mxnet.kvstore.KVStore
        Gradient aggregation; ``update_on_kvstore`` is left at MXNet's default.
    begin_num_update : int
        Update count to start from (resuming where no optimizer state can be restored).
    update_on_kvstore : bool, optional
        None keeps MXNet's choice (required for ``dist_*``); False for AMP, whose
        overflow check only guards the trainer-side update.

    Returns
    -------
    trainer : mxnet.gluon.Trainer
    names : list of str
        Structural parameter names, ``names[i]`` is the trainer's parameter ``i``.
    """
    import mxnet as mx
    from mxnet import gluon

    params = net._collect_params_with_prefix()
    names = list(params)
    mults = parameter_multipliers(names, train_cfg.get("lr_mult"), train_cfg.get("wd_mult"))
    for (lr_m, wd_m), n in zip(mults, names):
        params[n].lr_mult = lr_m
        params[n].wd_mult = wd_m
    name = str(train_cfg.optimizer).lower()
    opt_params = {"learning_rate": float(train_cfg.lr), "wd": float(train_cfg.wd),
                  "lr_scheduler": schedule, "begin_num_update": int(begin_num_update)}
    if name in ("sgd", "nag"):
        opt_params["momentum"] = float(train_cfg.momentum)
    if float(train_cfg.clip_gradient) > 0:
        opt_params["clip_gradient"] = float(train_cfg.clip_gradient)
    try:
        optimizer = mx.optimizer.create(name, **opt_params)
    except (ValueError, AssertionError, TypeError) as e:
        raise OptimizerError(f"train.optimizer {name!r}: {e}") from None
    # The parameter servers of a dist_* kvstore receive the optimizer without its
    # param_dict (MXNet drops it when pickling), so give the multipliers by index too.
    optimizer.lr_mult = {i: m[0] for i, m in enumerate(mults)}
    optimizer.wd_mult = {i: m[1] for i, m in enumerate(mults)}
    trainer = gluon.Trainer([params[n] for n in names], optimizer, kvstore=kvstore,
                            update_on_kvstore=update_on_kvstore)
    return trainer, names
