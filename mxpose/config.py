"""Experiment configuration: defaults as an EasyDict tree, merged with a YAML file.

``load_config(path)`` starts from :func:`default_config`, merges the YAML on top and
rejects keys the defaults do not have (a typo must not silently train the wrong thing).
Sections whose content is free-form (a custom skeleton definition, model kwargs) are
listed in ``_OPEN_KEYS`` and merged without that check.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Iterable, Optional

from easydict import EasyDict

__all__ = ["default_config", "load_config", "merge_config", "apply_overrides",
           "save_config", "ConfigError", "ModelError"]


class ConfigError(ValueError):
    """An unknown key, a wrong type or an unreadable config file."""


class ModelError(ConfigError):
    """An unknown model name, or an argument the model does not take (``model.name`` /
    ``model.kwargs``). Defined here, not in the model zoo, so that catching it does not
    import MXNet; :mod:`mxpose.model_zoo` re-exports it."""


def default_config() -> EasyDict:
    """The full default tree. Every key a YAML file may set is here."""
    c = {
        "name": "default",
        "data": {
            "db": "data/mpii.db",          # the DB tools/mpi_parse.py writes by default
            "train_split": "train",
            "val_split": "val",
            # Layout the network predicts; the DB's own layout is converted to it.
            # A name from mxpose.skeleton, a full definition dict, or 'auto': the
            # layout stored in data.db (resolved into a dict when training starts).
            "skeleton": "auto",
            "num_workers": 2,
            "sample_per": "person",        # 'person' (CMU main-person samples) or 'image'
        },
        "aug": {
            "input_size": 368,             # square crop fed to the network (px)
            "target_dist": 0.6,
            # 'person': the main person is scaled to target_dist * scale_ref px tall (CMU;
            # test at several scales). 'image': the image is scaled as the Predictor does
            # at scale 1 (test.boxsize / image height), so train and test sizes agree
            "scale_mode": "person",
            "scale_min": 0.5,
            "scale_max": 1.1,
            "scale_ref": 368.0,            # person_scale = bbox_h / scale_ref (COCO)
            "max_rotate": 40.0,            # degrees, U(-max, max)
            "center_perturb": 40.0,        # px, U(-p, p) per axis
            "flip_prob": 0.5,
            "pad_value": 128,
            "min_keypoints": 5,            # CMU main-person filter
            "min_area": 1024.0,            # 32^2
            "min_center_dist": 0.3,        # x max(w, h) from an already chosen person
            "outside": "keep",             # keypoints leaving the crop: 'keep' renders
                                           # what falls on the map; 'drop' unlabels them
            "enabled": True,
        },
        "targets": {
            "stride": 8,
            "sigma": 7.0,                  # heatmap Gaussian sigma in input px
            "paf_width": 1.0,              # limb half-width in grid cells
            "heatmap_merge": None,         # 'max' or 'sum_clip'; None = the mode's own
                                           # ('max' for centered, 'sum_clip' for cmu)
            "mode": "centered",            # 'centered' (cell g at stride*g+(stride-1)/2)
                                           # or 'cmu' (exact caffe_train reproduction)
            "use_masks": True,
        },
        "model": {
            "name": "cpm_vgg19",
            "kwargs": {},                  # free-form, passed to get_model
            "pretrained_base": "",         # local backbone params file, '' = random init
        },
        "train": {
            "batch_size": 10,              # per device
            "optimizer": "sgd",
            "lr": 4e-5,
            "momentum": 0.9,
            "wd": 5e-4,
            "lr_mult": {},                 # parameter-name regex -> multiplier
            "wd_mult": {},                 # parameter-name regex -> weight-decay multiplier
            "lr_steps": [136106],
            "lr_factor": 0.333,
            "warmup_iters": 0,
            "clip_gradient": 0.0,          # 0 = off
            "max_iters": 600000,
            "save_every": 200,             # iterations
            "log_every": 20,
            "max_bad_steps": 20,           # non-finite losses in a row before stopping
            "seed": 0,
            "workdir": "work",
            "prefix": "",                  # '' = <workdir>/<name>/<model.name>
            "amp": False,
        },
        "test": {
            "scales": [1.0],
            "flip": False,
            "boxsize": 368,
            "margin": 0,                   # grey border around the test image, input px
            "thre1": 0.1,
            "thre2": 0.05,
            "min_parts": 4,
            "min_score": 0.4,
            "sigma": 3.0,                  # peak smoothing, image px
            "refine": "log",               # sub-cell peak refinement: log, quadratic, none
            "sampling": "bilinear",        # PAF reading: bilinear or nearest (CMU)
            "n_samples": 10,               # PAF samples per limb candidate
            "min_frac": 0.8,               # fraction of samples that must support a limb
            "upsample": 1,                 # decode on maps resized xN first (CMU: 8)
            "assembly": "crowd",           # 'crowd' or 'cmu' (OpenPose's greedy rule)
            "max_peaks": 64,               # peaks kept per keypoint (highest); 0 = all
        },
    }
    return EasyDict(c)


# Keys whose values are free-form mappings (no unknown-key check below them).
_OPEN_KEYS = {("model", "kwargs"), ("train", "lr_mult"), ("train", "wd_mult"),
              ("data", "skeleton")}


def merge_config(base: dict, update: dict, path=()) -> dict:
    """Recursively merge ``update`` into ``base`` (in place), rejecting unknown keys."""
    for k, v in update.items():
        here = path + (k,)
        dotted = ".".join(here)
        if k not in base:
            near = ", ".join(sorted(base))
            raise ConfigError(f"unknown config key {dotted!r} (valid here: {near})")
        if here in _OPEN_KEYS:
            base[k] = EasyDict(v) if isinstance(v, dict) else v
        elif isinstance(base[k], dict):
            if not isinstance(v, dict):
                raise ConfigError(f"config key {dotted!r} must be a mapping, got {v!r}")
            merge_config(base[k], v, here)
        else:
            base[k] = _coerce(base[k], v, dotted)
    return base


def _coerce(old, new, dotted):
    if old is None or new is None:
        return new
    if isinstance(old, bool):
        if not isinstance(new, bool):
            raise ConfigError(f"config key {dotted!r} must be true/false, got {new!r}")
        return new
    if isinstance(old, (int, float)) and not isinstance(old, bool):
        if isinstance(new, bool) or not isinstance(new, (int, float)):
            raise ConfigError(f"config key {dotted!r} must be a number, got {new!r}")
        return float(new) if isinstance(old, float) else new
    if isinstance(old, str) and not isinstance(new, str):
        raise ConfigError(f"config key {dotted!r} must be a string, got {new!r}")
    if isinstance(old, list) and not isinstance(new, (list, tuple)):
        raise ConfigError(f"config key {dotted!r} must be a list, got {new!r}")
    return new


def load_config(path: Optional[str] = None, overrides: Iterable[str] = ()) -> EasyDict:
    """Defaults, merged with the YAML at ``path`` (if given), then ``key=value`` overrides.

    Raises :class:`ConfigError` with the file name for a missing/unparsable file or an
    unknown key.
    """
    cfg = default_config()
    if path:
        import yaml
        if not os.path.isfile(path):
            raise ConfigError(f"config file {path} does not exist")
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping")
        try:
            merge_config(cfg, data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        if "name" not in data:
            cfg.name = os.path.splitext(os.path.basename(path))[0]
    apply_overrides(cfg, overrides)
    return cfg


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    """Apply ``section.key=value`` strings (value parsed as YAML) to ``cfg``."""
    import yaml
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, val = item.split("=", 1)
        parts = key.strip().split(".")
        try:
            upd = yaml.safe_load(val)
        except yaml.YAMLError as e:
            msg = " ".join(str(e).split())
            raise ConfigError(f"override {item!r}: value is not valid YAML ({msg})") from None
        for p in reversed(parts):
            upd = {p: upd}
        merge_config(cfg, upd)
    return cfg


def save_config(cfg: dict, path: str):
    """Write the resolved config as YAML, atomically."""
    import yaml
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(json.loads(json.dumps(cfg)), f, sort_keys=False)
    os.replace(tmp, path)


def to_plain(cfg) -> dict:
    return copy.deepcopy(json.loads(json.dumps(cfg)))
