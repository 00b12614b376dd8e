#!/usr/bin/env python
"""Evaluate pose checkpoints (or the decoder's ceiling) with COCO keypoint AP.

Ground truth: a pose DB split (--db, --split) or a COCO-format keypoints file
(--annotations, --images; any layout coco_parse reads). OKS uses the layout's own sigmas
(pycocotools' kpt_oks_sigmas). Prints pycocotools' 10-line table per checkpoint; for MPII
DBs also PCKh@0.5 (head-box normalised) and OKS AP with the MPII sigmas of mxpose.skeleton;
for ground truth with feet (COCO-WholeBody / foot files, layout coco_foot) the COCO-17 AP
and a second table, the foot AP over the 6 foot points (COCO-WholeBody's foot sigmas).

Examples:
  python tools/evaluate.py --db data/mpii.db --split val --epoch 8600
  python tools/evaluate.py --db data/coco_val.db -c experiments/cpm_vgg19_coco.yaml \\
      --epochs 100000-440000 --plot ap.png
  python tools/evaluate.py --annotations person_keypoints_val2017.json \\
      --images val2017 --weights pose_iter_440000.params -c experiments/cpm_vgg19_coco.yaml \\
      --cmu-scales
  python tools/evaluate.py --db data/coco_val.db --oracle          # decoder ceiling
  python tools/evaluate.py --db data/coco_val.db --exported export/lw-int8.onnx  # an export
"""
import argparse
import json
import os
import sys

from mxpose.cli import (CLIError, add_checkpoint_args, add_predictor_args, build_predictor,
                        check_output_file, context_from_args, parse_iterations,
                        predictor_options, resolve_run, run_main, use_all_cores)

use_all_cores()   # before mxnet is imported


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("ground truth")
    src.add_argument("--db", help="pose DB written by mpi_parse/coco_parse/make_synthetic")
    src.add_argument("--split", default="val", help="DB split to evaluate (default: val)")
    src.add_argument("--annotations", help="COCO person_keypoints_*.json instead of a DB")
    src.add_argument("--images", help="image folder of --annotations")
    add_checkpoint_args(p, many=True)
    add_predictor_args(p)
    o = p.add_argument_group("run")
    o.add_argument("--exported", default=None, metavar="PATH",
                   help="score a model written by tools/export.py (X.onnx, X-int8.onnx, "
                        "X-symbol.json or the prefix X) instead of a checkpoint; its sidecar "
                        "gives skeleton, boxsize and decoder settings")
    o.add_argument("--engine", default="onnx", choices=("onnx", "symbol"),
                   help="runtime of --exported: onnxruntime (default) or MXNet's symbol "
                        "files")
    o.add_argument("--oracle", action="store_true",
                   help="decode ground-truth maps instead of running a network (the "
                        "decoder's ceiling)")
    o.add_argument("--max-images", type=int, default=0,
                   help="evaluate a seeded random subset of N images (fast validation)")
    o.add_argument("--seed", type=int, default=0, help="seed of --max-images")
    o.add_argument("--rotate", type=float, nargs="*", default=None, metavar="DEG",
                   help="also evaluate on images rotated by these angles (robustness rows)")
    o.add_argument("--json", default=None, help="write the figures to this JSON file")
    o.add_argument("--results", default=None,
                   help="write the COCO results (detections) JSON of the last run here")
    o.add_argument("--plot", default=None, help="PNG of AP against checkpoint (with --epochs)")
    o.add_argument("--best-json", default=None, metavar="PATH",
                   help="where several checkpoints are evaluated, write the best one (its "
                        "path, AP and evaluation card) here (default: best.json beside the "
                        "checkpoints)")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _samples(args):
    """(samples, COCO ground truth dict, GT skeleton, the card's ground-truth entry)."""
    from mxpose.eval.card import ground_truth_from_db, ground_truth_from_file
    from mxpose.eval.runner import samples_from_coco, samples_from_db
    if args.db and args.annotations:
        raise CLIError("give either --db or --annotations, not both")
    if args.db:
        from mxpose.data.store import PoseDB
        from mxpose.eval.coco import gt_from_db
        db = PoseDB(args.db)
        ids = db.image_ids(args.split)
        if ids.size == 0:
            raise CLIError(f"{args.db} has no images in split {args.split!r} "
                           f"(splits: {db.splits()})")
        samples = samples_from_db(db, args.split, ids)
        return (samples, gt_from_db(db, args.split, ids), db.skeleton,
                ground_truth_from_db(db, args.split))
    if args.annotations:
        if not os.path.isfile(args.annotations):
            raise CLIError(f"annotation file {args.annotations} does not exist")
        if not args.images or not os.path.isdir(args.images):
            raise CLIError(f"--images must name the image folder of {args.annotations}")
        from mxpose.data.coco import CocoFormatError
        try:
            samples, gt, layout = samples_from_coco(args.annotations, args.images)
        except CocoFormatError as e:
            raise CLIError(str(e)) from None
        return samples, gt, layout, ground_truth_from_file(args.annotations, args.images)
    raise CLIError("give the ground truth: --db DB [--split val] or --annotations JSON --images DIR")


def _subset(samples, gt, n, seed):
    import numpy as np
    if not n or n >= len(samples):
        return samples, gt
    keep = sorted(np.random.default_rng(seed).choice(len(samples), n, replace=False))
    samples = [samples[i] for i in keep]
    ids = {s.image_id for s in samples}
    gt = dict(gt, images=[im for im in gt["images"] if im["id"] in ids],
              annotations=[a for a in gt["annotations"] if a["image_id"] in ids])
    return samples, gt


def _print_result(title, res, with_pckh, card):
    from mxpose.eval import STAT_NAMES, format_pckh, format_table
    from mxpose.eval.card import card_summary
    print(f"\n== {title}: {res.images} images, {res.images_per_second:.1f} img/s")
    if res.foot is not None:
        print("COCO-17 keypoints (COCO sigmas):")
    print(format_table([res.stats[k] for k in STAT_NAMES]))
    if res.foot is not None:
        print("the 6 foot points (COCO-WholeBody foot sigmas):")
        print(format_table([res.foot[k] for k in STAT_NAMES]))
    if with_pckh and res.pckh:
        print(format_pckh(res.pckh))
    print(f"card: {card_summary(card)}")
    if res.failures:
        print(f"{len(res.failures)} image(s) failed:")
        for f in res.failures[:20]:
            print("  " + f)


def main(argv=None):
    args = build_parser().parse_args(argv)
    from mxpose.eval.runner import OracleMaps, rotate_gt, rotate_sample, run_evaluation
    from mxpose.eval.card import make_card
    for flag in ("json", "results", "plot", "best_json"):
        check_output_file(getattr(args, flag), "--" + flag.replace("_", "-"))
    predictor_options(args)          # bad --scales/--boxsize: one line before any work
    samples, gt, gt_skel, gt_entry = _samples(args)
    subset = ({"max_images": args.max_images, "seed": args.seed}
              if args.max_images and args.max_images < len(samples) else None)
    samples, gt = _subset(samples, gt, args.max_images, args.seed)
    with_pckh = gt_skel.name == "mpii"
    rows = []
    angles = [0.0] + [a for a in (args.rotate or []) if a != 0]

    def evaluate(title, predictor=None, oracle=None, net_skel=None, model_name=None,
                 checkpoint=None):
        out = {}
        for deg in angles:
            ss = samples if not deg else [rotate_sample(s, deg) for s in samples]
            g = gt if not deg else rotate_gt(gt, deg)
            res = run_evaluation(ss, g, gt_skel, predictor=predictor, oracle=oracle,
                                 net_skeleton=net_skel, with_pckh=with_pckh,
                                 progress=not args.no_progress)
            name = title if not deg else f"{title}, rotated {deg:g} deg"
            card = make_card(ground_truth=gt_entry, image_ids=[s.image_id for s in ss],
                             predictor=predictor, oracle=oracle, model_name=model_name,
                             checkpoint=checkpoint, subset=subset, rotate=deg,
                             seconds=res.seconds, images=res.images,
                             failures=len(res.failures))
            _print_result(name, res, with_pckh, card)
            out[f"{deg:g}"] = {"coco": res.stats, "pckh": res.pckh, "foot": res.foot,
                               "images": res.images,
                               "failures": res.failures,
                               "images_per_second": res.images_per_second, "card": card}
            if args.results:
                with open(args.results, "w") as f:
                    json.dump(res.results, f)
        return out

    if args.exported:
        pred = _exported_predictor(args)
        from mxpose.exported import export_files
        files = export_files(args.exported)
        figures = {"exported": evaluate(args.exported, predictor=pred,
                                        model_name=f"export ({args.engine})",
                                        checkpoint=files["onnx" if args.engine == "onnx"
                                                         else "params"])}
    elif args.oracle:
        from mxpose.config import load_config
        from mxpose.skeleton import get_skeleton
        from mxpose.data.dataset import is_auto
        cfg = load_config(args.config) if args.config else None
        if cfg is not None and not is_auto(cfg.data.skeleton):
            net_skel = get_skeleton(cfg.data.skeleton)
        else:   # the usual network layout of the ground truth's, else that layout itself
            net_skel = get_skeleton({"coco": "openpose_coco18", "mpii": "openpose_mpi15",
                                     "coco_foot": "body25"}.get(gt_skel.name, gt_skel))
        boxsize = args.boxsize or (cfg.test.boxsize if cfg else 368)
        from mxpose.infer import decode_params_from_config
        oracle = OracleMaps(net_skel, boxsize=boxsize,
                            decode_params=decode_params_from_config(cfg) if cfg else None)
        figures = {"oracle": evaluate("oracle (ground-truth maps)", oracle=oracle,
                                      net_skel=net_skel)}
    else:
        cfg, prefix, saved = resolve_run(args)
        ctx = context_from_args(args)
        if args.weights:
            its = [0]
        elif args.epochs:
            its = parse_iterations(args.epochs, saved)
        elif args.epoch is not None:
            its = [args.epoch]
        else:
            its = parse_iterations(None, saved) if saved else []
            if not its:
                raise CLIError(f"no checkpoint found under prefix {prefix} (train first, or "
                               "give --prefix/--workdir/--weights)")
        from mxpose.runs import checkpoint_path
        figures = {}
        for it in its:
            pred = build_predictor(args, cfg, prefix, it, ctx=ctx)
            title = args.weights if args.weights else f"{prefix}-{it:04d}"
            params = args.weights or checkpoint_path(prefix, it, "params")
            figures[str(it)] = evaluate(title, predictor=pred, model_name=cfg.model.name,
                                        checkpoint=params)
            rows.append((it, figures[str(it)]["0"]["coco"]["AP"]))
        if len(rows) > 1:
            best = _best_table(rows, figures)
            path = args.best_json or os.path.join(os.path.dirname(os.path.abspath(prefix)),
                                                  "best.json")
            _write_json(path, best)
            print(f"best checkpoint: {best['iteration']} (AP {best['AP']:.3f}); card in {path}")
        if args.plot and rows:
            _plot(rows, args.plot, prefix)
    if args.json:
        _write_json(args.json, figures)
    return 0


def _write_json(path, obj):
    try:
        with open(path, "w") as f:
            json.dump(obj, f, indent=1)
    except OSError as e:
        raise CLIError(f"cannot write {path}: {e.strerror or e}") from None


def _best_table(rows, figures) -> dict:
    """Print AP per checkpoint with the best one marked; return ``best.json``'s content."""
    best_it, best_ap = max(rows, key=lambda r: (r[1], r[0]))
    print("\n== summary: AP per checkpoint")
    print(f"{'iteration':>10s}  {'AP':>6s}  {'AP50':>6s}  {'AR':>6s}")
    for it, ap in rows:
        st = figures[str(it)]["0"]["coco"]
        mark = "  <- best" if it == best_it else ""
        print(f"{it:>10d}  {ap:6.3f}  {st['AP50']:6.3f}  {st['AR']:6.3f}{mark}")
    entry = figures[str(best_it)]["0"]
    return {"iteration": int(best_it), "AP": float(best_ap),
            "checkpoint": entry["card"]["model"]["checkpoint"], "coco": entry["coco"],
            "card": entry["card"],
            "table": [{"iteration": int(it), "AP": float(ap)} for it, ap in rows]}


def _exported_predictor(args):
    """Predictor.from_exported for --exported, with the inference flags as overrides."""
    from mxpose.cli import predictor_options
    from mxpose.infer import Predictor
    if args.oracle or args.weights or args.epochs or args.epoch is not None:
        raise CLIError("--exported scores the exported file alone: drop --oracle/--weights/"
                       "--epoch/--epochs")
    kw = predictor_options(args)
    ctx = context_from_args(args) if args.engine == "symbol" else None
    return Predictor.from_exported(args.exported, engine=args.engine, ctx=ctx, **kw)


def _plot(rows, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-")
    ax.set_xlabel("iteration")
    ax.set_ylabel("COCO keypoint AP")
    ax.set_title(os.path.basename(title))
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(run_main(main))
