#!/usr/bin/env python
"""The whole mxpose journey on a laptop CPU, with the tools a real user runs.

  1. tools/make_synthetic.py  a procedural multi-person dataset (train + held-out val)
  2. tools/train.py           a slim Lightweight OpenPose, experiments/synthetic_lwpose.yaml
  3. tools/evaluate.py        COCO keypoint AP (pycocotools) on the val split, for every
                              saved checkpoint (best marked, with its evaluation card)
  4. tools/demo.py            val images with the predicted skeletons drawn

Every step is resumable: re-running skips the images already generated and continues
training from the latest checkpoint. Outputs: data/synthetic.db, work/synthetic_lwpose/
(checkpoints, training log), quickstart_out/ (loss.png, the AP-per-checkpoint table
eval_val.json + ap_per_checkpoint.png, best.json with the evaluation card, demo images):
the reference curves to compare a run with.

--experiment body25 runs the same journey for OpenPose's BODY_25 layout: the synthetic
figures get feet (make_synthetic.py --feet, data/synthetic_feet.db), a slim PAF-first
network trains (experiments/synthetic_body25.yaml, work/synthetic_body25/) and the
evaluation reports the COCO-17 AP with the foot AP beside it.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "synthetic_lwpose.yaml")
# --experiment NAME: (config, default DB, make_synthetic flags)
EXPERIMENTS = {
    "lwpose": (CONFIG, "data/synthetic.db", []),
    "body25": (os.path.join(ROOT, "experiments", "synthetic_body25.yaml"),
               "data/synthetic_feet.db", ["--feet"]),
}


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", choices=sorted(EXPERIMENTS), default="lwpose",
                   help="lwpose: Lightweight OpenPose, COCO-18 (default); body25: OpenPose "
                        "BODY_25 with a slim PAF-first network, figures drawn with feet")
    p.add_argument("--data", default=None,
                   help="dataset DB (data/synthetic.db; data/synthetic_feet.db for body25)")
    p.add_argument("--workdir", default="work", help="training work dir (work)")
    p.add_argument("--out", default="quickstart_out", help="tables and demo images")
    p.add_argument("--config", default=None,
                   help="experiment YAML (default: the --experiment's, "
                        "experiments/synthetic_lwpose.yaml or synthetic_body25.yaml)")
    p.add_argument("--train-images", type=int, default=4000, help="synthetic training images")
    p.add_argument("--val-images", type=int, default=200, help="held-out synthetic images")
    p.add_argument("--iters", type=int, default=None,
                   help="training iterations (default: the config's train.max_iters)")
    p.add_argument("--num-workers", type=int, default=None, help="loader processes")
    p.add_argument("--demo-images", type=int, default=6, help="val images drawn by the demo")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _run(step, cmd):
    print(f"\n[quickstart] {step}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable] + cmd, cwd=os.getcwd())
    if r.returncode != 0:
        print(f"[quickstart] {step} failed (exit {r.returncode})", file=sys.stderr)
        sys.exit(r.returncode)
    dt = time.perf_counter() - t0
    print(f"[quickstart] {step} took {dt:.0f} s", flush=True)
    return dt


def main(argv=None):
    args = build_parser().parse_args(argv)
    config, data, synth_flags = EXPERIMENTS[args.experiment]
    args.config = args.config or config
    args.data = args.data or data
    tool = lambda name: os.path.join(ROOT, "tools", name)  # noqa: E731
    quiet = ["--no-progress"] if args.no_progress else []
    os.makedirs(os.path.dirname(os.path.abspath(args.data)), exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    times = {}
    times["data"] = _run("1/4 synthetic data", [
        tool("make_synthetic.py"), "--out", args.data, "--num-images", str(args.train_images),
        "--val-images", str(args.val_images), "--preview", os.path.join(args.out, "samples"),
        *synth_flags, *quiet])
    from mxpose.config import load_config
    from mxpose.runs import checkpoint_prefix, latest_checkpoint
    cfg = load_config(args.config)
    target = args.iters if args.iters is not None else int(cfg.train.max_iters)
    done = latest_checkpoint(checkpoint_prefix(cfg, args.workdir)) or 0
    train = [tool("train.py"), "-c", args.config, "--set", f"data.db={args.data}",
             "--workdir", args.workdir, "--max-iters", str(target), *quiet]
    if args.num_workers is not None:
        train += ["--num-workers", str(args.num_workers)]
    if done >= target:
        print(f"\n[quickstart] 2/4 training: checkpoint {done} exists, nothing to train")
        times["train"] = 0.0
    else:
        times["train"] = _run("2/4 training", train + (["--resume"] if done else []))
    ckpt = ["-c", args.config, "--workdir", args.workdir]
    table = os.path.join(args.out, "eval_val.json")
    prefix = checkpoint_prefix(cfg, args.workdir)
    _run("loss curve", [tool("plot_log.py"), prefix + "-train.jsonl", "--out",
                        os.path.join(args.out, "loss.png")])
    times["evaluate"] = _run("3/4 evaluation", [
        tool("evaluate.py"), "--db", args.data, "--split", "val", *ckpt, "--epochs", "all",
        "--json", table, "--plot", os.path.join(args.out, "ap_per_checkpoint.png"),
        "--best-json", os.path.join(args.out, "best.json"), *quiet])
    times["demo"] = _run("4/4 demo", [
        tool("demo.py"), *ckpt, "--db", args.data, "--out", os.path.join(args.out, "demo"),
        "--num", str(args.demo_images)])
    with open(table) as f:
        figures = json.load(f)
    last = max(figures, key=int)
    ap = figures[last]["0"]["coco"]["AP"]
    foot = figures[last]["0"].get("foot")
    from mxpose.eval.card import card_summary
    card = card_summary(figures[last]["0"]["card"])
    print(f"\n[quickstart] done in {sum(times.values()) / 60:.1f} min "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in times.items())})")
    print(f"[quickstart] COCO keypoint AP on the synthetic val split: {ap:.3f} "
          f"(checkpoint {int(last):04d}); table in {table}")
    if foot:
        print(f"[quickstart] foot AP (6 foot points, COCO-WholeBody sigmas): {foot['AP']:.3f}")
    print(f"[quickstart] card: {card}")
    print(f"[quickstart] demo images in {os.path.join(args.out, 'demo')}, training samples "
          f"in {os.path.join(args.out, 'samples')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
