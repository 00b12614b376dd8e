"""Runs on disk: checkpoint names, finding and reading them, and the devices to run on.

This module sits below both training (:mod:`mxpose.train`) and inference
(:mod:`mxpose.infer`, the tools): the demo finds and loads a checkpoint without importing
the trainer, and importing it does not import MXNet (the functions that need MXNet import
it when called).

A run with prefix ``P`` (:func:`checkpoint_prefix`) writes, per checkpoint of iteration
``i`` (``i`` optimizer updates done)::

    P-%04d.params   network parameters (``net.save_parameters``: structural names)
    P-%04d.states   optimizer state (MXNet NDArray file, no pickle)
    P-%04d.json     iteration, lr-schedule position, data-stream position, RNG state

plus ``P-config.yaml`` (the resolved config) and ``P-train.jsonl`` (the log). ``%04d``
counts ITERATIONS, not epochs, as mx-openpose did: ``tools/demo.py --epoch 8600`` loads
``P-8600.params``. A checkpoint counts (:func:`list_checkpoints`) only when its
``.params`` and ``.json`` exist; the writer (:mod:`mxpose.train.checkpoint`) writes the
``.json`` last.
"""
from __future__ import annotations

import glob
import os
import re
from typing import List, Optional, Sequence

__all__ = ["DEFAULT_EXPERIMENT", "RunError", "CheckpointError", "CorruptCheckpointError",
           "default_experiment",
           "checkpoint_prefix", "checkpoint_path", "config_path", "log_path",
           "list_checkpoints", "latest_checkpoint", "load_run_config", "mxnet_cause",
           "read_params", "is_loadable", "previous_good_checkpoint", "load_params",
           "load_weights", "parse_gpus", "make_contexts"]

#: Experiment used when no ``--config`` is given (CPM-VGG19 on the DB tools/mpi_parse.py writes).
DEFAULT_EXPERIMENT = os.path.join("experiments", "cpm_vgg19_mpii.yaml")

#: Top-level sections every saved run config has (``save_config`` writes the whole tree).
_RUN_CONFIG_SECTIONS = ("name", "data", "model", "train", "test")


class RunError(RuntimeError):
    """A run's files or device options are wrong: printed as one line by the tools."""


class CheckpointError(RunError):
    """A checkpoint is missing, incomplete, corrupt or does not fit the network/optimizer."""


class CorruptCheckpointError(CheckpointError):
    """A parameter file does not read at all (truncated, garbled, not MXNet's format)."""


# -- names --------------------------------------------------------------------------------
def default_experiment() -> Optional[str]:
    """Path of :data:`DEFAULT_EXPERIMENT`, looked up in the current directory, then in the
    source checkout holding this package; None if neither has it."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
    None when there is none (e.g. converted Caffe weights).

    Raises :class:`~mxpose.config.ConfigError` naming the file when it exists but is torn
    (empty, not YAML, or missing a section the trainer always writes): silently falling
    back to the defaults would load the checkpoint into the wrong network.
    """
    from .config import ConfigError, load_config
    p = config_path(prefix)
    if not os.path.isfile(p):
        return None
    import yaml
    try:
        with open(p) as f:
            data = yaml.safe_load(f)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: the run config beside the checkpoints is torn or not YAML "
                          f"({str(e).splitlines()[0]}); restore it or give the experiment "
                          f"with -c") from None
    missing = ([s for s in _RUN_CONFIG_SECTIONS if s not in data]
               if isinstance(data, dict) else list(_RUN_CONFIG_SECTIONS))
    if missing:
        raise ConfigError(f"{p}: the run config beside the checkpoints is torn (no "
                          f"{', '.join(missing)} section{'s' if len(missing) > 1 else ''}); "
                          f"restore it or give the experiment with -c")
    return load_config(p)


# -- reading parameter files ----------------------------------------------------------------
def mxnet_cause(err: BaseException) -> str:
    """The informative line of an MXNet error.

    ``MXNetError`` texts start with ``Traceback (most recent call last):`` and a C++ file
    position; the cause (``Check failed: ...: Invalid NDArray file format``) is the last
    line. Other exceptions give their first non-empty line.
    """
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    if lines[0].startswith("Traceback"):
        last = lines[-1]
        return last.split("MXNetError: ", 1)[-1]
    return lines[0]


def read_params(path: str) -> dict:
    """The named arrays of an MXNet ``.params`` file (``arg:``/``aux:`` prefixes removed).

    Raises :class:`CorruptCheckpointError` when the file is corrupt (truncated or garbled:
    MXNet's cause is kept), :class:`CheckpointError` when it is missing or holds unnamed
    arrays.
    """
    import mxnet as mx
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        saved = mx.nd.load(path)
    except mx.base.MXNetError as e:
        raise CorruptCheckpointError(f"{path} is corrupt or not an MXNet params file "
                              f"({mxnet_cause(e)})") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} holds unnamed arrays, not named parameters")
    return {(k.split(":", 1)[1] if k.startswith(("arg:", "aux:")) else k): v
            for k, v in saved.items()}


def is_loadable(path: str) -> bool:
    """Whether ``path`` reads as a parameter file (see :func:`read_params`)."""
    try:
        read_params(path)
    except CheckpointError:
        return False
    return True


def previous_good_checkpoint(prefix: str, before: int) -> Optional[int]:
    """The latest complete checkpoint of ``prefix`` before iteration ``before`` whose
    ``.params`` reads, or None."""
    for it in reversed(list_checkpoints(prefix)):
        if it < int(before) and is_loadable(checkpoint_path(prefix, it)):
            return it
    return None


def load_params(net, path: str, ctx=None):
    """``net.load_parameters(path, ctx)`` with one-line errors.

    Raises :class:`CorruptCheckpointError` when the file does not read,
    :class:`CheckpointError` when it does not fit ``net`` (names or shapes differ), each
    with the cause in one line.
    """
    import mxnet as mx
    if not os.path.isfile(path):
        raise CheckpointError(f"weights file {path} does not exist")
    try:
        net.load_parameters(path, ctx=ctx)
    except (AssertionError, ValueError, mx.base.MXNetError) as e:
        read_params(path)      # raises "corrupt" when the file itself does not read
        raise CheckpointError(f"{path} does not fit the network: {mxnet_cause(e)}") from None


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
    saved = read_params(path)
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


# -- devices --------------------------------------------------------------------------------
def parse_gpus(spec: Optional[str]) -> List[int]:
    """``"0-3"`` -> [0, 1, 2, 3]; ``"0,2"`` -> [0, 2]; ``"2"`` -> [2]; ``""``/None -> []."""
    if spec is None:
        return []
    spec = str(spec).strip()
    if not spec:
        return []
    out: List[int] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise RunError(f"--gpus {spec!r}: expected ids like 0-3, 0,1,2,3 or 2")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) is not None else a
        if b < a:
            raise RunError(f"--gpus {spec!r}: range {part} is empty")
        out += list(range(a, b + 1))
    if len(set(out)) != len(out):
        raise RunError(f"--gpus {spec!r}: a GPU is listed twice")
    return out


def make_contexts(gpus: Sequence[int] = (), cpus: int = 0):
    """MXNet contexts: the given GPUs, else ``cpus`` CPU contexts (>= 2 exercises the
    multi-device path without GPUs), else one CPU."""
    import mxnet as mx
    if gpus:
        n = mx.context.num_gpus()
        bad = [g for g in gpus if g >= n]
        if bad:
            raise RunError(f"GPU(s) {bad} requested but MXNet sees {n} GPU(s)"
                           + ("" if n else " (CPU-only mxnet wheel or no CUDA device; see "
                              "docs/TRAINING.md for the GPU wheels)"))
        return [mx.gpu(g) for g in gpus]
    if cpus and int(cpus) > 1:
        return [mx.cpu(i) for i in range(int(cpus))]
    return [mx.cpu()]
