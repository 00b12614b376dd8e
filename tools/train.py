"""Train a pose network: ``python tools/train.py --gpus 0-3``.

With no config this trains the default experiment (experiments/cpm_vgg19_mpii.yaml:
CPM-VGG19 on data/mpii.db, the DB tools/mpi_parse.py writes) and saves checkpoints as
work/cpm_vgg19_mpii/cpm_vgg19-%04d.params, which tools/demo.py --epoch N finds without
further flags.
"""
import argparse
import json
import logging
import os
import sys
import warnings

from mxpose.cli import CLIError, run_main, use_all_cores

use_all_cores()   # before mxnet is imported

_EPILOG = """\
Batch size: train.batch_size / --batch-size is PER DEVICE; one iteration (one optimizer
step) uses batch_size x number of devices samples (x number of workers with a dist
kvstore). --total-batch-size N divides N over the devices instead.

Checkpoints: <prefix>-%04d.params (+ .states, optimizer; + .json, iteration, lr position,
config) where %04d counts ITERATIONS (optimizer steps), not epochs: the checkpoint saved
after 8600 iterations is <prefix>-8600.params (tools/demo.py --epoch 8600). The prefix
is --prefix, else <workdir>/<experiment name>/<model name>. The resolved config is
<prefix>-config.yaml and the JSON-lines log <prefix>-train.jsonl (tools/plot_log.py).

Examples:
  python tools/train.py --gpus 0-3                         # default experiment
  python tools/train.py -c experiments/cpm_vgg19_coco.yaml --gpus 0,1,2,3
  python tools/train.py -c experiments/synthetic_lwpose.yaml --cpus 2 --max-iters 20
  python tools/train.py --gpus 0-3 --resume                # continue the latest checkpoint
  python tools/train.py -c experiments/lwpose_mobilenet_coco.yaml --gpus 0 \\
      --weights work/lwpose_mobilenet_coco/lwpose_mobilenet-420000.params --weights-only \\
      --set model.kwargs.num_refinement=3                   # LW's third training step
  python tools/launch.py -n 2 -s 1 -- python tools/train.py --kvstore dist_sync --cpus 1

See docs/TRAINING.md for GPUs (which mxnet-cu1xx wheel) and multi-machine training.
"""


def _parser():
    p = argparse.ArgumentParser(
        prog="train.py", description="Train an OpenPose-style network (data parallel over "
        "GPUs or CPU contexts, optionally over machines with MXNet's parameter server).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", "--config", help="experiment YAML (default: "
                   "experiments/cpm_vgg19_mpii.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE", help="override a config value (YAML value; "
                   "repeatable), e.g. --set train.lr=1e-4")
    dev = p.add_mutually_exclusive_group()
    dev.add_argument("--gpus", default=None, metavar="IDS",
                     help="GPU ids: 0-3, 0,1,2,3 or 2; empty = CPU")
    dev.add_argument("--cpus", type=int, default=0, metavar="N",
                     help="train on N CPU contexts (tests the multi-device path without GPUs)")
    p.add_argument("--workdir", help="work directory (config train.workdir, default work)")
    p.add_argument("--prefix", help="checkpoint prefix (default <workdir>/<name>/<model>)")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="ITER",
                   help="continue from the latest checkpoint of the prefix, or from ITER: "
                   "parameters, optimizer state, iteration and lr position")
    p.add_argument("--weights", metavar="PATH", help="start from this checkpoint .params "
                   "(with its optimizer state and iteration, unless --weights-only)")
    p.add_argument("--weights-only", action="store_true",
                   help="take only the parameters of --weights that match by name and "
                   "shape (fresh optimizer, iteration 0); reports missing/unused ones; "
                   "works into a network with another number of stages")
    p.add_argument("--pretrained-base", metavar="PATH",
                   help="ImageNet backbone params (local gluoncv vgg19 / mobilenet1.0 file)")
    p.add_argument("--no-masks", action="store_true",
                   help="train without loss masks (ablation; targets.use_masks=false)")
    p.add_argument("--batch-size", type=int, metavar="N", help="samples per device")
    p.add_argument("--total-batch-size", type=int, metavar="N",
                   help="samples per iteration over all devices of this worker (divided "
                   "evenly; must be a multiple of the device count)")
    p.add_argument("--num-workers", type=int, metavar="N", help="data loader processes")
    p.add_argument("--max-iters", type=int, metavar="N", help="stop after N iterations")
    p.add_argument("--save-every", type=int, metavar="N", help="checkpoint every N iterations")
    p.add_argument("--kvstore", default="device",
                   choices=["device", "local", "dist_sync", "dist_device_sync"],
                   help="gradient aggregation (dist_*: multi-machine, start with "
                   "tools/launch.py; default %(default)s)")
    p.add_argument("--amp", action="store_true",
                   help="mixed precision (mxnet.contrib.amp, float16; GPUs only)")
    p.add_argument("--max-items", type=int, metavar="N", help=argparse.SUPPRESS)
    p.add_argument("--final-params", metavar="PATH",
                   help="also write the final parameters to PATH ('{rank}' -> worker rank)")
    p.add_argument("--reproduce", metavar="CKPT.json",
                   help="rerun the run that wrote this checkpoint from iteration 0, with its "
                   "recorded config and options, into a new work dir (--workdir, default "
                   "<recorded workdir>_reproduce); refused when the training DB's content "
                   "hash differs from the recorded one")
    p.add_argument("--force", action="store_true",
                   help="with --reproduce: run although the training DB's content differs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-hybridize", action="store_true", help="run the network imperatively")
    return p


def _overrides(args) -> list:
    """The config overrides of the command line: --set items, then the shortcut flags."""
    overrides = list(args.overrides)
    for flag, key in ((args.workdir, "train.workdir"), (args.prefix, "train.prefix"),
                      (args.batch_size, "train.batch_size"),
                      (args.num_workers, "data.num_workers"),
                      (args.max_iters, "train.max_iters"),
                      (args.save_every, "train.save_every"),
                      (args.pretrained_base, "model.pretrained_base")):
        if flag is not None:
            overrides.append(f"{key}={json.dumps(flag)}")
    if args.amp:
        overrides.append("train.amp=true")
    if args.no_masks:
        overrides.append("targets.use_masks=false")
    return overrides


def _reproduction(args):
    """(config, recorded arguments, recorded command) of ``--reproduce CKPT.json``;
    CLIError when the record is unusable or the training DB is not the one the run used."""
    from mxpose.cli import CLIError
    from mxpose.config import default_config, merge_config
    from mxpose.data.store import PoseDB
    from mxpose.jsonio import read_json
    from mxpose.provenance import short_hash
    path = args.reproduce
    if path.endswith(".params"):
        path = path[:-len(".params")] + ".json"
    info = read_json(path, "--reproduce file", CLIError)
    prov = info.get("provenance") if isinstance(info, dict) else None
    if not prov or not prov.get("command") or "config" not in info:
        raise CLIError(f"--reproduce: {path} records no command/config (not a checkpoint "
                       f".json, or written by an mxpose without provenance)")
    rec = _parser().parse_args(prov["command"][1:])
    cfg = default_config()
    merge_config(cfg, info["config"])
    old_dir = cfg.train.workdir
    cfg.train.workdir = args.workdir or str(old_dir).rstrip("/") + "_reproduce"
    cfg.train.prefix = None
    if os.path.abspath(cfg.train.workdir) == os.path.abspath(old_dir):
        raise CLIError("--reproduce: give a --workdir other than the recorded run's "
                       f"({old_dir})")
    db = cfg.data.db
    if not os.path.isabs(db) and not os.path.isfile(db) and prov.get("cwd"):
        db = os.path.join(prov["cwd"], db)
    if not os.path.isfile(db):
        raise CLIError(f"--reproduce: training DB {cfg.data.db} does not exist")
    cfg.data.db = db
    want = (prov.get("db") or {}).get("content_hash")
    pdb = PoseDB(db)
    have = pdb.content_hash or pdb.verify()["recomputed"]
    if want and have != want and not args.force:
        raise CLIError(f"--reproduce: {db} has content hash {short_hash(have)}, the run "
                       f"trained on {short_hash(want)}: not the same data (--force to run "
                       f"anyway)")
    rec.no_progress, rec.reproduce = args.no_progress, None
    rec.resume, rec.prefix, rec.final_params = None, None, args.final_params
    print(f"reproducing {path} (command: {' '.join(prov['command'])}) into "
          f"{cfg.train.workdir}")
    return cfg, rec, list(prov["command"])


def main(argv=None):
    args = _parser().parse_args(argv)
    command = ["tools/train.py"] + list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.simplefilter("always", RuntimeWarning)
    from mxpose.config import load_config
    from mxpose.runs import RunError, default_experiment, make_contexts, parse_gpus
    from mxpose.train import PoseTrainer, RunOptions
    from mxpose.train.optim import OptimizerError
    from mxpose.cli import CLIError

    def fail(msg):
        raise CLIError(msg)

    try:
        if args.reproduce:
            cfg, args, command = _reproduction(args)
        else:
            cfg_path = args.config or default_experiment()
            if cfg_path is None:
                return fail("no --config given and experiments/cpm_vgg19_mpii.yaml not found "
                            "(run from the repository root)")
            cfg = load_config(cfg_path, _overrides(args))
        if int(cfg.data.num_workers) < 0:
            return fail(f"--num-workers / data.num_workers must be >= 0 (0 = load in the "
                        f"training process), got {cfg.data.num_workers}")
        ctxs = make_contexts(parse_gpus(args.gpus), args.cpus)
        if args.total_batch_size is not None:
            if args.total_batch_size % len(ctxs):
                return fail(f"--total-batch-size {args.total_batch_size} is not a multiple of "
                            f"the {len(ctxs)} devices")
            cfg.train.batch_size = args.total_batch_size // len(ctxs)
        if args.weights_only and not args.weights:
            return fail("--weights-only needs --weights PATH")
        if not os.path.isfile(cfg.data.db):
            return fail(f"training DB {cfg.data.db} does not exist (config data.db; write it "
                        f"with tools/mpi_parse.py or tools/coco_parse.py)")
        resume = args.resume
        if resume not in (None, "latest"):
            if not resume.isdigit():
                return fail(f"--resume takes an iteration number, got {resume!r}")
            resume = int(resume)
        opts = RunOptions(contexts=ctxs, resume=resume, weights=args.weights,
                          weights_only=args.weights_only, kvstore=args.kvstore,
                          progress=not args.no_progress, hybridize=not args.no_hybridize,
                          max_items=args.max_items, final_params=args.final_params,
                          command=command)
        trainer = PoseTrainer(cfg, opts, echo=print)
        trainer.setup()
        if trainer.is_main:
            print(f"training {cfg.model.name} ({cfg.name}) on {', '.join(map(str, ctxs))}"
                  f"{f' x {trainer.num_workers} workers (rank 0)' if trainer.distributed else ''}: "
                  f"{trainer.batch} samples/iteration/worker from {len(trainer.stream)} training "
                  f"samples, iterations "
                  f"{trainer.start_iter}..{cfg.train.max_iters}, checkpoints "
                  f"{trainer.prefix}-%04d.params")
        summary = trainer.run()
    except (RunError, OptimizerError) as e:
        raise CLIError(str(e)) from None
    if summary["rank"] == 0:
        ck = summary["checkpoints"]
        print(f"done: iterations {summary['start']}..{summary['iteration']}, last loss "
              f"{summary['last_loss']:.5g}, {summary['img_per_s']:.2f} img/s, "
              f"{summary['skipped']} skipped; checkpoints "
              f"{', '.join(map(str, ck)) if ck else 'none'} under {summary['prefix']}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
