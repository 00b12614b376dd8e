"""Pieces shared by the command-line tools: finding a run's checkpoints, building a
Predictor from them, and turning user mistakes into one clear line."""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence

# One implementation, shared with the library (``import mxpose`` already called it; the
# tools call it again, harmlessly, before they import mxnet).
from ._threads import usable_cores, use_all_cores

__all__ = ["use_all_cores", "usable_cores", "CLIError", "add_checkpoint_args", "add_predictor_args", "resolve_run",
           "parse_iterations", "predictor_options", "build_predictor", "load_predictor",
           "load_exported_predictor", "onnx_cache_prefix", "load_onnx_predictor",
           "context_from_args", "run_main", "os_error_message", "check_output_file",
           "checked_write", "checked_video_writer", "check_video_written"]


class CLIError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def os_error_message(e: OSError) -> str:
    """One line for an OS error, naming the file: 'PATH: No space left on device (...)'."""
    import errno
    what = e.strerror or str(e)
    name = e.filename if e.filename is not None else ""
    hint = {errno.ENOSPC: " (disk full: free some space and re-run)",
            errno.EROFS: " (read-only file system: choose another folder)",
            errno.EACCES: " (no permission: choose another folder)"}.get(e.errno, "")
    return f"{name}: {what}{hint}" if name else f"{what}{hint}"


def run_main(fn, argv=None, errors: tuple = ()) -> int:
    """Call ``fn(argv)``; user errors become ``tool: error: message`` and exit 2.

    The one place where the tools turn known errors (config, DB, skeleton, model, export,
    OS errors such as a read-only or full disk, plus the tool's own ``errors``) into one
    line without a traceback.
    """
    from .config import ConfigError, ModelError
    from .data.coco import CocoFormatError
    from .data.image import ImageDecodeError
    from .data.store import PoseDBError
    from .exported import ExportError
    from .runs import RunError
    from .skeleton import SkeletonError
    prog = os.path.basename(sys.argv[0])
    try:
        return fn(argv) or 0
    except (CLIError, ConfigError, PoseDBError, SkeletonError, ModelError, ExportError,
            CocoFormatError, ImageDecodeError, RunError) + tuple(errors) as e:
        msg = str(e)
        if len(msg) > 1 and msg[0] == msg[-1] and msg[0] in "'\"":
            msg = msg[1:-1]          # KeyError-style quoting
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"{prog}: error: {os_error_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def check_output_file(path: Optional[str], flag: str):
    """Fail early, before any work, when output file ``path`` (of option ``flag``) cannot
    be written: a folder that is missing or read-only, a path that is a folder."""
    if not path:
        return
    if os.path.isdir(path):
        raise CLIError(f"{flag} {path} is a folder; give a file name")
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as e:
        raise CLIError(f"{flag} {path} cannot be written: {os_error_message(e)}") from None
    if not existed:
        os.remove(path)


def checked_write(path: str, img) -> str:
    """``cv2.imwrite`` that fails loudly: a CLIError naming ``path`` when nothing was
    written (read-only folder, full disk, unknown extension); OpenCV only returns False."""
    import cv2
    try:
        ok = cv2.imwrite(path, img)
    except cv2.error as e:
        raise CLIError(f"cannot write image {path}: {str(e).strip().splitlines()[-1]}") from None
    if not ok or not os.path.isfile(path):
        d = os.path.dirname(os.path.abspath(path))
        why = "folder is not writable" if not os.access(d, os.W_OK) else "write failed"
        raise CLIError(f"cannot write image {path} ({why}; check the folder and free space)")
    return path


def checked_video_writer(path: str, fps: float, size):
    """An opened MJPG ``cv2.VideoWriter`` for ``path``, or a CLIError naming it. After
    ``release()`` call :func:`check_video_written` (frames are not checked one by one)."""
    import cv2
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, tuple(size))
    if not writer.isOpened():
        raise CLIError(f"cannot write video {path} (is the folder writable?)")
    return writer


def check_video_written(path: str):
    """CLIError unless the released video ``path`` exists and is not empty."""
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        raise CLIError(f"video {path} was not written (full disk or folder not writable?)")


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
    f = g.add_mutually_exclusive_group()
    f.add_argument("--flip", action="store_true", default=None,
                   help="also run the mirrored image (default: the config's test.flip)")
    f.add_argument("--no-flip", dest="flip", action="store_false",
                   help="do not, even where the config's test.flip asks for it")
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
    from .runs import checkpoint_prefix, default_experiment, list_checkpoints, load_run_config
    if args.config and not os.path.isfile(args.config):
        raise CLIError(f"config file {args.config} does not exist")
    cfg = load_config(args.config) if args.config else None
    if args.prefix:
        prefix = args.prefix
    else:
        base = cfg if cfg is not None else load_config(default_experiment())
        prefix = checkpoint_prefix(base, args.workdir)
    saved = load_run_config(prefix)
    if cfg is None:
        cfg = saved if saved is not None else load_config(default_experiment())
    _resolve_layout(cfg, saved, prefix)
    return cfg, prefix, list_checkpoints(prefix)


def _resolve_layout(cfg, saved, prefix):
    """``data.skeleton: auto`` -> the layout the run was trained on (its saved config), else
    the DB's; a config naming another layout than the run's is refused in one line."""
    from .data.dataset import is_auto, resolve_skeleton
    from .skeleton import get_skeleton
    run_skel = None
    if saved is not None and not is_auto(saved.data.skeleton):
        run_skel = get_skeleton(saved.data.skeleton)
    if is_auto(cfg.data.skeleton):
        if run_skel is not None:
            cfg.data.skeleton = run_skel.to_dict()
        else:
            resolve_skeleton(cfg, check=False)
    elif run_skel is not None and get_skeleton(cfg.data.skeleton) != run_skel:
        mine = get_skeleton(cfg.data.skeleton)
        raise CLIError(f"the config's layout {mine.name!r} ({mine.num_keypoints} keypoints) "
                       f"is not the layout {run_skel.name!r} ({run_skel.num_keypoints} "
                       f"keypoints) the checkpoints under {prefix} were trained on")


def predictor_options(args) -> dict:
    """Predictor keyword arguments of the inference flags (--scales, --cmu-scales, --flip /
    --no-flip, --boxsize) that were given, validated (a bad value is a CLIError naming the
    flag); the others keep the run's or the export's defaults."""
    from .infer import CMU_SCALES
    kw = {}
    if getattr(args, "cmu_scales", False):
        kw["scales"] = CMU_SCALES
    elif getattr(args, "scales", None) is not None:
        try:
            kw["scales"] = tuple(float(s) for s in args.scales.split(","))
        except ValueError:
            raise CLIError(f"--scales must be comma-separated numbers, got {args.scales!r}")
        if not kw["scales"] or min(kw["scales"]) <= 0 or max(kw["scales"]) > 8:
            raise CLIError(f"--scales must be numbers in (0, 8] (multiples of --boxsize, "
                           f"e.g. 1 or 0.5,1,1.5,2), got {args.scales!r}")
    if getattr(args, "flip", None) is not None:
        kw["flip"] = bool(args.flip)
    if getattr(args, "boxsize", None) is not None:
        if args.boxsize < 8:
            raise CLIError(f"--boxsize is the network input height in pixels (e.g. 368), at "
                           f"least the stride 8; got {args.boxsize}")
        kw["boxsize"] = args.boxsize
    return kw


def build_predictor(args, cfg, prefix, iteration, ctx=None):
    """A Predictor for ``iteration`` of ``prefix`` (or ``args.weights``)."""
    from .infer import Predictor
    from .runs import CorruptCheckpointError, previous_good_checkpoint
    kw = predictor_options(args)
    params = _params_file(args, prefix, iteration)
    try:
        return Predictor.from_params(params, cfg, ctx=ctx, **kw)
    except CorruptCheckpointError as e:     # the file itself, not the model
        prev = None if args.weights else previous_good_checkpoint(prefix, iteration)
        hint = ("" if prev is None
                else f"; the previous good checkpoint is {prev} (--epoch {prev})")
        raise CLIError(f"{e}{hint}") from None
    except (AssertionError, ValueError, RuntimeError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CLIError(f"cannot load {params} into {cfg.model.name} for skeleton "
                       f"{cfg.data.skeleton if isinstance(cfg.data.skeleton, str) else 'custom'}"
                       f": {msg}")


def _params_file(args, prefix, iteration) -> str:
    """The .params file of ``args.weights`` or of ``iteration`` of ``prefix``; checked."""
    from .runs import checkpoint_path
    if args.weights:
        if not os.path.isfile(args.weights):
            raise CLIError(f"weights file {args.weights} does not exist")
        params = args.weights
    else:
        params = checkpoint_path(prefix, iteration, "params")
        if not os.path.isfile(params):
            raise CLIError(f"checkpoint {params} does not exist")
    return params


def context_from_args(args):
    """The one MXNet context of ``--gpus`` (CPU when empty); a bad value is a CLIError."""
    from .runs import RunError, make_contexts, parse_gpus
    try:
        return make_contexts(parse_gpus(args.gpus), 0)[0]
    except RunError as e:  # malformed ids or a GPU that is not there
        raise CLIError(str(e)) from None


def load_predictor(args):
    """Resolve the checkpoint arguments of a tool and build its Predictor.

    Returns ``(cfg, prefix, iteration, predictor)``; ``--epoch`` defaults to the latest
    saved checkpoint, ``--weights`` counts as iteration 0.
    """
    cfg, prefix, saved = resolve_run(args)
    it = _selected_iteration(args, prefix, saved)
    pred = build_predictor(args, cfg, prefix, it, ctx=context_from_args(args))
    return cfg, prefix, it, pred


def _selected_iteration(args, prefix, saved) -> int:
    if args.weights:
        return 0
    if args.epoch is not None:
        return args.epoch
    if not saved:
        raise CLIError(f"no checkpoint found under prefix {prefix}; train first or give "
                       "--prefix/--workdir/--weights")
    return parse_iterations(None, saved)[0]


def load_exported_predictor(path: str, engine: str, args=None, spin: bool = True,
                            threads: int = 0):
    """Predictor of an export of tools/export.py; ``engine`` 'mxnet' runs its symbol files,
    'onnx' its .onnx in onnxruntime (MXNet is not imported; ``spin`` and ``threads``: see
    :class:`mxpose.export.OnnxRunner`). The inference flags of ``args`` override the
    export's defaults."""
    from .export import export_files
    from .infer import Predictor
    files = export_files(path)
    if not os.path.isfile(files["meta"]):
        raise CLIError(f"{path} is not an export of tools/export.py: {files['meta']} does "
                       "not exist")
    if engine == "onnx" and not os.path.isfile(files["onnx"]):
        raise CLIError(f"export {path} has no ONNX file {files['onnx']}; export with "
                       "--formats onnx or use --engine mxnet")
    kw = predictor_options(args) if args is not None else {}
    if engine == "mxnet":
        return Predictor.from_exported(path, engine="symbol", ctx=context_from_args(args)
                                       if args is not None else None, **kw)
    return Predictor.from_exported(path, engine="onnx", spin=spin, threads=threads, **kw)


def onnx_cache_prefix(args, prefix: str, iteration: int) -> str:
    """Where the onnx engine keeps the ONNX export of a checkpoint: ``--onnx-cache`` or
    ``onnx_cache/`` beside the weights, named after the checkpoint."""
    if args.weights:
        folder, name = os.path.dirname(args.weights), os.path.splitext(
            os.path.basename(args.weights))[0]
    else:
        folder, name = os.path.dirname(prefix), "%s-%04d" % (os.path.basename(prefix), iteration)
    cache = getattr(args, "onnx_cache", None) or os.path.join(folder or ".", "onnx_cache")
    return os.path.join(cache, name)


def _weights_stamp(params: str) -> dict:
    st = os.stat(params)
    return {"params": os.path.realpath(params), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def load_onnx_predictor(args, spin: bool = True, threads: int = 0):
    """The onnx engine for a checkpoint: exported once to :func:`onnx_cache_prefix` (this
    step needs MXNet and onnx) and reused while the weights file, the model and the
    skeleton are unchanged. Returns ``(cfg, prefix, iteration, predictor)`` as
    :func:`load_predictor`; the run's test settings are the defaults."""
    from .export import export_files, export_predictor, read_meta, _plain
    from .infer import Predictor, decode_params_from_config
    from .skeleton import get_skeleton
    cfg, prefix, saved = resolve_run(args)
    it = _selected_iteration(args, prefix, saved)
    params = _params_file(args, prefix, it)
    out = onnx_cache_prefix(args, prefix, it)
    source = dict(_weights_stamp(params), experiment=str(cfg.name))
    model = {"name": cfg.model.name, "kwargs": _plain(dict(cfg.model.kwargs))}
    skel = get_skeleton(cfg.data.skeleton).to_dict()
    try:
        meta = read_meta(out) if os.path.isfile(export_files(out)["onnx"]) else None
    except Exception:   # a broken cache entry is rebuilt
        meta = None
    fresh = (meta is not None and meta.get("source") == source and meta["skeleton"] == skel
             and {k: meta["model"][k] for k in ("name", "kwargs")} == model)
    if not fresh:
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise CLIError("the onnx engine exports the checkpoint first, which needs the onnx "
                           "package (pip install -c constraints.txt onnx==1.15.0); or export "
                           "with tools/export.py and pass --exported, or use --engine mxnet")
        gluon = build_predictor(args, cfg, prefix, it)
        print(f"exporting {params} to {out}.onnx for the onnx engine (reused until the "
              "weights change)")
        try:
            os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
            export_predictor(gluon, cfg.model.name, dict(cfg.model.kwargs), out,
                             formats=("onnx",), source=source)
        except OSError as e:
            raise CLIError(f"cannot write the ONNX export {out}: {e}; pass --onnx-cache DIR")
    t = cfg.test
    kw = dict({"scales": t.scales, "flip": t.flip, "boxsize": t.boxsize, "margin": t.margin,
               "decode_params": decode_params_from_config(cfg)}, **predictor_options(args))
    return cfg, prefix, it, Predictor.from_exported(out, engine="onnx", spin=spin,
                                                    threads=threads, **kw)
