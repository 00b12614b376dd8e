"""Training: the loop, checkpoints, lr schedules, logging.

Checkpoints are ``<prefix>-%04d.params`` / ``.states`` / ``.json`` where ``%04d`` counts
iterations; :func:`checkpoint_prefix` derives the prefix from a config, so training, the
demo and evaluation agree (see :mod:`mxpose.train.checkpoint`).
"""
from .checkpoint import (DEFAULT_EXPERIMENT, CheckpointError, checkpoint_path, checkpoint_prefix,
                         config_path, default_experiment, latest_checkpoint, list_checkpoints,
                         load_run_config, load_weights, log_path)
from .data import SampleStream
from .logger import JsonLinesLog, read_log
from .loop import PoseTrainer, RunOptions, TrainError, make_contexts, parse_gpus
from .optim import build_trainer, parameter_multipliers
from .schedule import StepWarmupSchedule, schedule_from_config

__all__ = ["DEFAULT_EXPERIMENT", "CheckpointError", "checkpoint_path", "checkpoint_prefix",
           "config_path", "default_experiment", "latest_checkpoint", "list_checkpoints",
           "load_run_config", "load_weights", "log_path", "SampleStream", "JsonLinesLog",
           "read_log", "PoseTrainer", "RunOptions", "TrainError", "make_contexts",
           "parse_gpus", "build_trainer", "parameter_multipliers", "StepWarmupSchedule",
           "schedule_from_config"]
