"""Checkpoint writing and resuming: atomic files, optimizer state, the ``.json`` record.

One checkpoint of iteration ``i`` (``i`` optimizer updates done) is three files::

    <prefix>-%04d.params   network parameters (``net.save_parameters``: structural names)
    <prefix>-%04d.states   optimizer state (momenta, Adam moments, update counters) as an
                           MXNet NDArray file; no pickle
    <prefix>-%04d.json     iteration, lr-schedule position, data-stream position, RNG state
                           and the resolved config

plus ``<prefix>-config.yaml`` (the resolved config of the run) and
``<prefix>-train.jsonl`` (the training log). ``%04d`` counts ITERATIONS, not epochs,
as mx-openpose did: ``tools/demo.py --epoch 8600`` loads ``<prefix>-8600.params``.

Every file is written to a temporary name and renamed into place, and the ``.json`` is
written last: a checkpoint counts (:func:`list_checkpoints`) only when its ``.params``
and ``.json`` exist, so a run killed in the middle of a save resumes from the previous
complete one.

:func:`~mxpose.runs.checkpoint_prefix` is the one place that turns a config into a
prefix; training, the demo and evaluation all call it, so they agree without extra flags.
Naming, finding and reading checkpoints live in :mod:`mxpose.runs` (below training and
inference); the names are re-exported here.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, Sequence

import numpy as np

from ..jsonio import read_json
from ..runs import (DEFAULT_EXPERIMENT, CheckpointError, checkpoint_path, checkpoint_prefix,
                    config_path, default_experiment, latest_checkpoint, list_checkpoints,
                    load_run_config, load_weights, log_path, mxnet_cause)

__all__ = ["DEFAULT_EXPERIMENT", "CheckpointError", "default_experiment", "checkpoint_prefix",
           "checkpoint_path", "config_path", "log_path", "list_checkpoints",
           "latest_checkpoint", "atomic_write", "save_checkpoint", "read_checkpoint_info",
           "save_trainer_states", "load_trainer_states", "load_weights", "load_run_config"]

_STATES_FORMAT = "mxpose-trainer-states"
_STATES_VERSION = 1
_META_KEY = "__meta__"


# -- atomic writes ------------------------------------------------------------------------
def atomic_write(path: str, write_fn) -> str:
    """Call ``write_fn(tmp_path)`` then rename ``tmp_path`` to ``path``.

    The rename is atomic on POSIX file systems: readers see the old file or the complete
    new one, never a partial file, even if the process is killed while writing.
    """
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        try:
            write_fn(tmp)
        except Exception as e:
            if isinstance(e, OSError):
                raise
            # MXNet reports a failed fwrite (e.g. a full disk) as an MXNetError: make it an
            # OSError naming the file, the disk-full case recognised by the space left.
            import errno
            import shutil
            full = shutil.disk_usage(d).free < (1 << 20)
            raise OSError(errno.ENOSPC if full else errno.EIO,
                          os.strerror(errno.ENOSPC) if full else
                          f"write failed ({str(e).strip().splitlines()[-1]})", path) from None
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _write_json(path: str, obj) -> str:
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=1)
    return atomic_write(path, w)


# -- optimizer state ----------------------------------------------------------------------
def _updaters(trainer) -> list:
    """The MXNet updaters holding a gluon Trainer's optimizer state in this process."""
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    if trainer._kvstore is not None and trainer._update_on_kvstore:
        if trainer._distributed:
            return []        # the state lives on the parameter servers
        return [trainer._kvstore._updater]
    return list(trainer._updaters)


def _flatten_state(state, key: str, arrays: Dict[str, object]):
    import mxnet as mx
    if state is None:
        return None
    if isinstance(state, mx.nd.NDArray):
        arrays[key] = state.as_in_context(mx.cpu())
        return key
    if isinstance(state, (tuple, list)):
        return {"seq": [_flatten_state(s, f"{key}.{i}", arrays) for i, s in enumerate(state)],
                "tuple": isinstance(state, tuple)}
    raise CheckpointError(f"cannot save optimizer state of type {type(state).__name__}")


def _unflatten_state(spec, arrays, ctx):
    if spec is None:
        return None
    if isinstance(spec, str):
        return arrays[spec].copyto(ctx)
    seq = [_unflatten_state(s, arrays, ctx) for s in spec["seq"]]
    return tuple(seq) if spec["tuple"] else seq


def save_trainer_states(trainer, path: str, names: Sequence[str]) -> bool:
    """Write a gluon Trainer's optimizer state to ``path`` (atomically), without pickle.

    Parameters
    ----------
    trainer : mxnet.gluon.Trainer
        Built over the parameters named ``names`` (same order).
    names : sequence of str
        Structural parameter names, ``names[i]`` being the trainer's parameter ``i``.

    Returns
    -------
    bool
        False when the state is not held here (``dist_*`` kvstores keep it on the
        parameter servers); nothing is written then.
    """
    import mxnet as mx
    ups = _updaters(trainer)
    if not ups:
        return False
    opt = trainer._optimizer
    arrays: Dict[str, object] = {}
    states = {}
    for idx, st in ups[0].states.items():
        name = names[int(idx)]
        states[name] = _flatten_state(st, name, arrays)
    counts = {str(dev): {names[int(i)]: int(c) for i, c in d.items()}
              for dev, d in opt._all_index_update_counts.items()}
    meta = {"format": _STATES_FORMAT, "version": _STATES_VERSION,
            "optimizer": type(opt).__name__.lower(), "num_update": int(opt.num_update),
            "begin_num_update": int(opt.begin_num_update), "update_counts": counts,
            "params": list(names), "states": states}
    blob = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    arrays[_META_KEY] = mx.nd.array(blob, dtype="uint8")
    atomic_write(path, lambda tmp: mx.nd.save(tmp, arrays))
    return True


def load_trainer_states(trainer, path: str, names: Sequence[str]) -> dict:
    """Restore what :func:`save_trainer_states` wrote into ``trainer``.

    Parameters are matched by structural name; the optimizer type must agree. Returns
    the file's metadata (``num_update`` ...). Raises :class:`CheckpointError` when the
    file is missing, malformed or does not fit.
    """
    import mxnet as mx
    if not os.path.isfile(path):
        raise CheckpointError(f"optimizer state file {path} does not exist")
    try:
        arrays = mx.nd.load(path)
        meta = json.loads(arrays.pop(_META_KEY).asnumpy().tobytes().decode("utf-8"))
    except (mx.base.MXNetError, KeyError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path} is corrupt or not an mxpose optimizer state file "
                              f"({mxnet_cause(e)})") from None
    if meta.get("format") != _STATES_FORMAT:
        raise CheckpointError(f"{path} is not an mxpose optimizer state file")
    opt = trainer._optimizer
    kind = type(opt).__name__.lower()
    if meta["optimizer"] != kind:
        raise CheckpointError(f"{path} holds {meta['optimizer']} state but the trainer uses "
                              f"{kind}; use --weights-only for a fresh optimizer")
    index = {n: i for i, n in enumerate(names)}
    missing = sorted(set(meta["states"]) - set(index))
    if missing:
        raise CheckpointError(f"{path}: optimizer state for parameters the network lacks: "
                              f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    ups = _updaters(trainer)
    if not ups:
        raise CheckpointError("optimizer state cannot be loaded with a dist_* kvstore "
                              "(it lives on the parameter servers)")
    for up in ups:
        ctx = mx.cpu()
        up.states = {index[n]: _unflatten_state(spec, arrays, ctx)
                     for n, spec in meta["states"].items()}
        # synced=False makes the updater copy each state to its weight's device first
        up.states_synced = dict.fromkeys(up.states, False)
    opt.num_update = int(meta["num_update"])
    opt.begin_num_update = int(meta["begin_num_update"])
    opt._all_index_update_counts = {int(dev): {index[n]: c for n, c in d.items()}
                                    for dev, d in meta["update_counts"].items()}
    if 0 not in opt._all_index_update_counts:
        opt._all_index_update_counts[0] = {}
    opt._index_update_count = opt._all_index_update_counts[0]
    return meta


# -- whole checkpoints --------------------------------------------------------------------
def save_checkpoint(prefix: str, iteration: int, net, trainer, names: Sequence[str],
                    info: dict) -> dict:
    """Write ``.params``, ``.states`` (when held locally) and, last, ``.json``.

    ``info`` (JSON-able: lr, schedule, data position, RNG state, config ...) is stored in
    the ``.json`` next to the iteration. Returns the paths written.
    """
    paths = {"params": checkpoint_path(prefix, iteration, "params")}
    atomic_write(paths["params"], net.save_parameters)
    st = checkpoint_path(prefix, iteration, "states")
    has_states = trainer is not None and save_trainer_states(trainer, st, names)
    if has_states:
        paths["states"] = st
    meta = dict(info, format="mxpose-checkpoint", version=1, iteration=int(iteration),
                has_states=bool(has_states), time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    paths["json"] = _write_json(checkpoint_path(prefix, iteration, "json"), meta)
    return paths


def read_checkpoint_info(prefix: str, iteration: int) -> dict:
    """The ``.json`` of a checkpoint; :class:`CheckpointError` if it is absent or broken."""
    p = checkpoint_path(prefix, iteration, "json")
    if not os.path.isfile(p) or not os.path.isfile(checkpoint_path(prefix, iteration)):
        have = list_checkpoints(prefix)
        raise CheckpointError(
            f"no complete checkpoint {prefix}-{int(iteration):04d} (.params + .json); "
            + (f"available iterations: {', '.join(map(str, have))}" if have
               else f"none found under {os.path.dirname(prefix) or '.'}"))
    return read_json(p, "checkpoint record", CheckpointError)
