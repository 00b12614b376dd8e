"""Checkpoint naming, atomic writing, resuming and weight transfer.

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

:func:`checkpoint_prefix` is the one place that turns a config into a prefix; training,
the demo and evaluation all call it, so they agree without extra flags.
"""
from __future__ import annotations

import glob
import json
import os
import re
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ["DEFAULT_EXPERIMENT", "CheckpointError", "default_experiment", "checkpoint_prefix",
           "checkpoint_path", "config_path", "log_path", "list_checkpoints",
           "latest_checkpoint", "atomic_write", "save_checkpoint", "read_checkpoint_info",
           "save_trainer_states", "load_trainer_states", "load_weights", "load_run_config"]

#: Experiment used when no ``--config`` is given (CPM-VGG19 on the DB tools/mpi_parse.py writes).
DEFAULT_EXPERIMENT = os.path.join("experiments", "cpm_vgg19_mpii.yaml")

_STATES_FORMAT = "mxpose-trainer-states"
_STATES_VERSION = 1
_META_KEY = "__meta__"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not fit the network/optimizer."""


# -- names --------------------------------------------------------------------------------
def default_experiment() -> Optional[str]:
    """Path of :data:`DEFAULT_EXPERIMENT`, looked up in the current directory, then in the
    source checkout holding this package; None if neither has it."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for root in (os.getcwd(), here):
        p = os.path.join(root, DEFAULT_EXPERIMENT)
        if os.path.isfile(p):
            return p
    return None


def checkpoint_prefix(cfg, workdir: Optional[str] = None) -> str:
    """The checkpoint prefix of an experiment config.

    ``cfg.train.prefix`` when set, otherwise ``<workdir>/<cfg.name>/<cfg.model.name>``
    with ``workdir`` defaulting to ``cfg.train.workdir`` (``work``). For the default
    experiment that is ``work/cpm_vgg19_mpii/cpm_vgg19``.
    """
    if cfg.train.get("prefix"):
        return str(cfg.train.prefix)
    return os.path.join(workdir or cfg.train.workdir, str(cfg.name), str(cfg.model.name))


def checkpoint_path(prefix: str, iteration: int, kind: str = "params") -> str:
    """``<prefix>-%04d.<kind>`` with kind ``params``, ``states`` or ``json``.

    ``iteration`` counts optimizer updates (not epochs).
    """
    if kind not in ("params", "states", "json"):
        raise ValueError(f"kind must be 'params', 'states' or 'json', got {kind!r}")
    return "%s-%04d.%s" % (prefix, int(iteration), kind)


def config_path(prefix: str) -> str:
    """The resolved config of the run: ``<prefix>-config.yaml``."""
    return prefix + "-config.yaml"


def log_path(prefix: str) -> str:
    """The JSON-lines training log: ``<prefix>-train.jsonl``."""
    return prefix + "-train.jsonl"


def list_checkpoints(prefix: str, require_states: bool = False) -> List[int]:
    """Iterations with a complete checkpoint (``.params`` and ``.json``), ascending."""
    pat = re.compile(re.escape(os.path.basename(prefix)) + r"-(\d{4,})\.json$")
    its = []
    for p in glob.glob(glob.escape(prefix) + "-*.json"):
        m = pat.match(os.path.basename(p))
        if not m:
            continue
        it = int(m.group(1))
        if not os.path.isfile(checkpoint_path(prefix, it, "params")):
            continue
        if require_states and not os.path.isfile(checkpoint_path(prefix, it, "states")):
            continue
        its.append(it)
    return sorted(its)


def latest_checkpoint(prefix: str) -> Optional[int]:
    """The highest complete checkpoint iteration, or None."""
    its = list_checkpoints(prefix)
    return its[-1] if its else None


def load_run_config(prefix: str):
    """The resolved config saved beside the checkpoints of ``prefix`` (an EasyDict), or
    None when there is none (e.g. converted Caffe weights)."""
    from ..config import load_config
    p = config_path(prefix)
    return load_config(p) if os.path.isfile(p) else None


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
        raise CheckpointError(f"{path} is not an mxpose optimizer state file ({e})") from None
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
    try:
        with open(p) as f:
            return json.load(f)
    except ValueError as e:
        raise CheckpointError(f"{p} is not valid JSON: {e}") from None


# -- weight transfer ----------------------------------------------------------------------
def load_weights(net, path: str, ctx=None, strict: bool = False) -> dict:
    """Copy every parameter of the file at ``path`` that ``net`` has with the same
    structural name and shape; leave the rest of ``net`` as it is.

    For staged training: start a network with more (or fewer) stages, or another head,
    from a checkpoint's weights. ``net`` must be initialised.

    Parameters
    ----------
    strict : bool
        Raise :class:`CheckpointError` unless every parameter of ``net`` was loaded and
        every entry of the file used.

    Returns
    -------
    dict
        ``loaded``, ``missing`` (in the net, not in the file), ``unused`` (in the file, not
        in the net) and ``mismatched`` (``(name, file shape, net shape)``).
    """
    import mxnet as mx
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        saved = mx.nd.load(path)
    except mx.base.MXNetError as e:
        raise CheckpointError(f"{path}: not an MXNet params file "
                              f"({str(e).splitlines()[0]})") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} holds unnamed arrays, not named parameters")
    saved = {(k.split(":", 1)[1] if k.startswith(("arg:", "aux:")) else k): v
             for k, v in saved.items()}
    params = net._collect_params_with_prefix()
    report = {"loaded": [], "missing": [], "unused": [], "mismatched": []}
    for name, p in params.items():
        if name not in saved:
            report["missing"].append(name)
            continue
        arr = saved[name]
        if tuple(arr.shape) != tuple(p.shape):
            report["mismatched"].append((name, tuple(arr.shape), tuple(p.shape)))
            continue
        p.set_data(arr.astype(p.dtype))
        report["loaded"].append(name)
    report["unused"] = sorted(set(saved) - set(params))
    if strict and (report["missing"] or report["unused"] or report["mismatched"]):
        raise CheckpointError(f"{path} does not match the network: "
                              f"{len(report['missing'])} missing, {len(report['unused'])} "
                              f"unused, {len(report['mismatched'])} of another shape")
    return report
