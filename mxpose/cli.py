"""Pieces shared by the command-line tools: finding a run's checkpoints, building a
Predictor from them, and turning user mistakes into one clear line."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence

# One implementation, shared with the library (``import mxpose`` already called it; the
# tools call it again, harmlessly, before they import mxnet).
from ._threads import use_all_cores

__all__ = ["use_all_cores", "CLIError", "add_checkpoint_args", "add_predictor_args",
           "predictor_kwargs", "resolve_run",
           "parse_iterations", "build_predictor", "load_predictor", "context_from_args",
           "run_main"]


class CLIError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def run_main(fn, argv=None) -> int:
    """Call ``fn(argv)``; known user errors become ``tool: error: message`` and exit 2."""
    from .config import ConfigError
    from .data.store import PoseDBError
    from .skeleton import SkeletonError
    prog = os.path.basename(sys.argv[0])
    from .export import ExportError
    try:
        return fn(argv) or 0
    except (CLIError, ConfigError, PoseDBError, SkeletonError, FileNotFoundError,
            ExportError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def add_checkpoint_args(p: argparse.ArgumentParser, many: bool = False):
    g = p.add_argument_group("model / checkpoint")
    g.add_argument("-c", "--config", default=None,
                   help="experiment YAML (default: the run's saved config, else "
                        "experiments/cpm_vgg19_mpii.yaml)")
    g.add_argument("--prefix", default=None,
                   help="checkpoint prefix: files are PREFIX-%%04d.params (default: the one "
                        "tools/train.py writes for the experiment, work/<name>/<model>)")
    g.add_argument("--workdir", default=None,
                   help="work dir holding <experiment name>/<model> checkpoints (default: work)")
    g.add_argument("--epoch", type=int, default=None,
                   help="checkpoint number to load; %%04d counts training ITERATIONS "
                        "(mx-openpose's usage, e.g. 8600); default: the latest")
    if many:
        g.add_argument("--epochs", default=None,
                       help="several checkpoints: a range '3000-8600', a list '100,200', "
                            "'all' (every saved one); one table each plus a summary")
    g.add_argument("--weights", default=None,
                   help="a .params file to load instead of a checkpoint (e.g. converted "
                        "Caffe weights); needs -c for the model")
    g.add_argument("--gpus", default="", help="GPU ids, e.g. '0' (default: CPU)")


def add_predictor_args(p: argparse.ArgumentParser):
    g = p.add_argument_group("inference")
    g.add_argument("--scales", default=None,
                   help="comma-separated scale multipliers of boxsize/image height "
                        "(default: the config's test.scales, 1.0)")
    g.add_argument("--cmu-scales", action="store_true",
                   help="CMU's evaluation setting: scales 0.5,1,1.5,2")
    g.add_argument("--flip", action="store_true", help="also run the mirrored image")
    g.add_argument("--boxsize", type=int, default=None, help="network input height (368)")


def parse_iterations(spec: Optional[str], available: Sequence[int]) -> List[int]:
    """'3-10' -> the saved iterations in [3, 10]; '1,5' -> those; 'all'; None -> latest."""
    avail = sorted(available)
    if spec is None or spec == "latest":
        if not avail:
            raise CLIError("no checkpoint found")
        return [avail[-1]]
    if spec == "all":
        if not avail:
            raise CLIError("no checkpoint found")
        return avail
    out = []
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            try:
                lo, hi = int(a), int(b)
            except ValueError:
                raise CLIError(f"bad checkpoint range {part!r} (expected e.g. 3000-8600)")
            sel = [i for i in avail if lo <= i <= hi]
            if not sel:
                raise CLIError(f"no checkpoint in {lo}-{hi}; saved: {avail or 'none'}")
            out += sel
        else:
            try:
                out.append(int(part))
            except ValueError:
                raise CLIError(f"bad checkpoint number {part!r}")
    return sorted(set(out))


def resolve_run(args):
    """(cfg, prefix, available iterations) for the checkpoint arguments."""
    from .config import load_config
    from .train.checkpoint import (checkpoint_prefix, default_experiment, list_checkpoints,
                                   load_run_config)
    if args.config and not os.path.isfile(args.config):
        raise CLIError(f"config file {args.config} does not exist")
    cfg = load_config(args.config) if args.config else None
    if args.prefix:
        prefix = args.prefix
    else:
        base = cfg if cfg is not None else load_config(default_experiment())
        prefix = checkpoint_prefix(base, args.workdir)
    if cfg is None:
        saved = load_run_config(prefix)
        cfg = saved if saved is not None else load_config(default_experiment())
    return cfg, prefix, list_checkpoints(prefix)


def predictor_kwargs(args) -> dict:
    """Predictor overrides from the inference flags (``add_predictor_args``): scales,
    flip, boxsize; only those the user gave."""
    from .infer import CMU_SCALES
    kw = {}
    if getattr(args, "cmu_scales", False):
        kw["scales"] = CMU_SCALES
    elif getattr(args, "scales", None):
        try:
            kw["scales"] = tuple(float(s) for s in args.scales.split(","))
        except ValueError:
            raise CLIError(f"--scales must be comma-separated numbers, got {args.scales!r}")
    if getattr(args, "flip", False):
        kw["flip"] = True
    if getattr(args, "boxsize", None):
        kw["boxsize"] = args.boxsize
    return kw


def build_predictor(args, cfg, prefix, iteration, ctx=None):
    """A Predictor for ``iteration`` of ``prefix`` (or ``args.weights``)."""
    from .infer import Predictor
    from .train.checkpoint import checkpoint_path
    kw = predictor_kwargs(args)
    if args.weights:
        if not os.path.isfile(args.weights):
            raise CLIError(f"weights file {args.weights} does not exist")
        params = args.weights
    else:
        params = checkpoint_path(prefix, iteration, "params")
        if not os.path.isfile(params):
            raise CLIError(f"checkpoint {params} does not exist")
    try:
        return Predictor.from_params(params, cfg, ctx=ctx, **kw)
    except (AssertionError, ValueError, RuntimeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CLIError(f"cannot load {params} into {cfg.model.name} for skeleton "
                       f"{cfg.data.skeleton if isinstance(cfg.data.skeleton, str) else 'custom'}"
                       f": {msg}")


def context_from_args(args):
    """The one MXNet context of ``--gpus`` (CPU when empty); a bad value is a CLIError."""
    from .train.loop import make_contexts, parse_gpus
    try:
        return make_contexts(parse_gpus(args.gpus), 0)[0]
    except Exception as e:  # TrainError: malformed ids or a GPU that is not there
        raise CLIError(str(e)) from None


def load_predictor(args):
    """Resolve the checkpoint arguments of a tool and build its Predictor.

    Returns ``(cfg, prefix, iteration, predictor)``; ``--epoch`` defaults to the latest
    saved checkpoint, ``--weights`` counts as iteration 0.
    """
    cfg, prefix, saved = resolve_run(args)
    if args.weights:
        it = 0
    elif args.epoch is not None:
        it = args.epoch
    else:
        if not saved:
            raise CLIError(f"no checkpoint found under prefix {prefix}; train first or give "
                           "--prefix/--workdir/--weights")
        it = parse_iterations(None, saved)[0]
    pred = build_predictor(args, cfg, prefix, it, ctx=context_from_args(args))
    return cfg, prefix, it, pred
