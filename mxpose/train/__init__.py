"""Training: the loop, checkpoint writing, lr schedules, logging.

Checkpoints are ``<prefix>-%04d.params`` / ``.states`` / ``.json`` where ``%04d`` counts
iterations; :func:`checkpoint_prefix` derives the prefix from a config, so training, the
demo and evaluation agree. Naming, finding and reading checkpoints and the device options
live in :mod:`mxpose.runs` (below training and inference); their names are re-exported
here. The sample stream is :mod:`mxpose.data.loader`'s.
"""
# MXNet first, on purpose: in a parameter-server job (tools/launch.py) importing MXNet
# turns a server process into the server loop, which unpickles the workers' optimizer and
# its lr schedule (mxpose.train.schedule). That module must not be half-imported, blocked
# on its own ``import mxnet``, when it does.
import mxnet  # noqa: F401

from ..runs import RunError, make_contexts, parse_gpus
from .checkpoint import (DEFAULT_EXPERIMENT, CheckpointError, checkpoint_path, checkpoint_prefix,
                         config_path, default_experiment, latest_checkpoint, list_checkpoints,
                         load_run_config, load_weights, log_path)
from .logger import JsonLinesLog, read_log
from .loop import PoseTrainer, RunOptions, TrainError
from .optim import build_trainer, parameter_multipliers
from .schedule import StepWarmupSchedule, schedule_from_config

__all__ = ["DEFAULT_EXPERIMENT", "CheckpointError", "checkpoint_path", "checkpoint_prefix",
           "config_path", "default_experiment", "latest_checkpoint", "list_checkpoints",
           "load_run_config", "load_weights", "log_path", "RunError", "JsonLinesLog",
           "read_log", "PoseTrainer", "RunOptions", "TrainError", "make_contexts",
           "parse_gpus", "build_trainer", "parameter_multipliers", "StepWarmupSchedule",
           "schedule_from_config"]
