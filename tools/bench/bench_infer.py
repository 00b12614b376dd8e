#!/usr/bin/env python
"""Benchmark inference: network forward time and end-to-end frames per second.

1. Forward (like `caffe time`): the network alone on a random (B, 3, 368, 368) batch,
   for each model and batch size, after --warmup untimed passes; mean and best of
   --iters timed passes, per batch and per image.
2. End to end: the Predictor on a real image (default ../shared/data/media/
   COCO_val2014_000000000192.jpg, 640x480 -> 368x496 network input at scale 1, no flip):
   resize + forward + decode + mapping back, --frames times; frames/s overall, network and
   decoder parts separately.

Engines: 'mxnet' (Gluon, hybridized with static memory) and 'onnx' (onnxruntime on the
network exported by mxpose.export; only if onnx and onnxruntime are installed).
Networks have random weights: forward times do not depend on them, but the decode share
does (a random network's maps have no people but may have many spurious peaks), so it is
not representative here: tools/bench/bench_decode.py times the decoder on maps with people.

Variants of the mxnet engine, timed in the same run, round robin (one pass of each in
turn, so load on a shared machine hits them alike):
  --act both      the networks with their ReLUs as oneDNN's Activation (the default form)
                  and as the old plain relu operator (act='relu_op'), same weights;
  --mkldnn        also the Activation form after optimize_for(backend='MKLDNN'), MXNet's
                  oneDNN subgraph fusion (inference only);
  --reference     for cpm_vgg19, also the same network written as plain Gluon
                  (Conv2D(activation='relu'), mxpose.model_zoo.plain_cpm).
And of the onnx engine: --int8 also times the INT8 model of mxpose.quantize (calibrated
on the end-to-end image, or on random inputs with --frames 0: the ranges do not change
its speed).
The summary gives each variant's time relative to the default form.

cpm_vgg19 and paffirst_vgg19 (OpenPose BODY_25's network; its exact output sizes with
--skeleton body25) are slow on a CPU (seconds per 368x368 image): the defaults keep the
number of passes small. On a shared machine the numbers are inflated by other load: compare the
variants of one run, not runs.

Examples:
  python tools/bench/bench_infer.py
  python tools/bench/bench_infer.py --models lwpose_mobilenet --batches 1,8 --iters 5 --json b.json
  python tools/bench/bench_infer.py --batches 1 --act both --mkldnn --reference --engines mxnet
"""
import argparse
import os
import sys
import tempfile
import time

from mxpose.cli import use_all_cores

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _bench_common from anywhere
from _bench_common import act_forms, act_kwargs, machine, write_json  # noqa: E402

use_all_cores()   # before mxnet is imported

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_IMAGE = os.path.join(os.path.dirname(ROOT), "shared", "data", "media",
                             "COCO_val2014_000000000192.jpg")
MODELS = ("cpm_vgg19", "paffirst_vgg19", "lwpose_mobilenet")


class BenchError(Exception):
    pass


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(MODELS),
                   help=f"comma-separated model names (default: {','.join(MODELS)}), "
                        "with their default sizes")
    p.add_argument("--batches", default="1,8,16", help="batch sizes (default: 1,8,16)")
    p.add_argument("--size", type=int, default=368, help="input height = width (default 368)")
    p.add_argument("--iters", type=int, default=2, help="timed passes per row (default 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes first (default 1)")
    p.add_argument("--engines", default="auto",
                   help="mxnet and/or onnx, comma-separated (default: both if onnx and "
                        "onnxruntime are installed, else mxnet)")
    p.add_argument("--skeleton", default="openpose_coco18",
                   help="output layout (default openpose_coco18: 19 heatmaps, 38 PAFs)")
    p.add_argument("--image", default=None, help="end-to-end image (default: "
                   "../shared/data/media/COCO_val2014_000000000192.jpg)")
    p.add_argument("--frames", type=int, default=3,
                   help="end-to-end frames per model and engine (default 3; 0: skip)")
    p.add_argument("--gpus", default="", help="GPU id for the mxnet engine (default: CPU)")
    p.add_argument("--threads", type=int, default=0,
                   help="onnxruntime intra-op threads (default: its own choice)")
    p.add_argument("--act", default="activation", choices=("activation", "relu_op", "both"),
                   help="activation form of the mxnet engine's networks: oneDNN's "
                        "Activation (default), the old relu operator, or both")
    p.add_argument("--mkldnn", action="store_true",
                   help="also time the Activation form after optimize_for(backend='MKLDNN')")
    p.add_argument("--reference", action="store_true",
                   help="also time cpm_vgg19 written as plain Gluon "
                        "(Conv2D(activation='relu'))")
    p.add_argument("--int8", action="store_true",
                   help="onnx engine: also time the statically quantized INT8 model")
    p.add_argument("--json", default=None, metavar="PATH",
                   help="also write every figure to this JSON file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _ints(spec, what):
    try:
        out = [int(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise BenchError(f"--{what} must be comma-separated integers, got {spec!r}")
    if not out or min(out) < 1:
        raise BenchError(f"--{what} must be positive integers, got {spec!r}")
    return out


def _engines(spec):
    have_onnx = True
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        have_onnx = False
    if spec == "auto":
        return ["mxnet", "onnx"] if have_onnx else ["mxnet"], have_onnx
    eng = [e.strip() for e in spec.split(",") if e.strip()]
    bad = [e for e in eng if e not in ("mxnet", "onnx")]
    if bad or not eng:
        raise BenchError(f"--engines takes mxnet and/or onnx, got {spec!r}")
    if "onnx" in eng and not have_onnx:
        raise BenchError("the onnx engine needs onnx (==1.15.0 for MXNet 1.9.1) and "
                         "onnxruntime installed")
    return eng, have_onnx


def _device(ctx):
    if ctx.device_type == "gpu":
        return f"GPU {ctx.device_id} (mxnet)"
    cpu = machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {cpu}, {os.cpu_count()} logical cores"


def _time(fn, iters, warmup):
    return _time_round_robin({"": fn}, iters, warmup)[""]


def _time_round_robin(fns, iters, warmup):
    """``{label: [seconds per pass]}``, the passes of the ``fns`` interleaved."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    ts = {k: [] for k in fns}
    for _ in range(iters):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t0)
    return ts


def _variants(name, args):
    """Labels of the mxnet-engine networks to time for model ``name``, default first."""
    out = act_forms(name, args.act)
    if args.mkldnn:
        out.append("activation+mkldnn")
    if args.reference and name == "cpm_vgg19":
        out.append("plain_gluon")
    return out


def _build_variant(name, variant, skel, ctx, x):
    """A hybridized network of ``variant``; its weights are seeded alike across variants
    (times do not depend on them)."""
    import mxnet as mx
    from mxpose.model_zoo import get_model
    mx.random.seed(0)
    if variant == "plain_gluon":
        from mxpose.model_zoo.plain_cpm import PlainCPM
        net = PlainCPM(num_heatmaps=skel.num_heatmaps, num_pafs=skel.num_pafs)
    else:
        act = "relu_op" if variant == "relu_op" else "activation"
        net = get_model(name, num_heatmaps=skel.num_heatmaps, num_pafs=skel.num_pafs,
                        **act_kwargs(name, act))
    net.initialize(ctx=ctx)
    if variant.endswith("+mkldnn"):
        if ctx.device_type != "cpu":
            raise BenchError("--mkldnn is a CPU backend; drop it with --gpus")
        net.optimize_for(mx.nd.array(x, ctx=ctx), backend="MKLDNN", static_alloc=True,
                         static_shape=True)
    else:
        net.hybridize(static_alloc=True, static_shape=True)
    return net


def _int8_runner(prefix, skel, args, img):
    """OnnxRunner of the INT8 model quantized from the export ``prefix``."""
    import numpy as np
    from mxpose import export as ex
    from mxpose.infer import Predictor
    from mxpose.quantize import calibration_batches, quantize_export
    if img is None:
        img = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), np.uint8)
    pre = Predictor(None, skel, engine="numpy", boxsize=args.size)
    files = quantize_export(prefix, calibration_batches([img], pre.input_batch))
    return ex.OnnxRunner(files["onnx"], threads=args.threads)


def _ratios(forward):
    """Each variant's time over its engine's first variant's, per model and batch."""
    out = []
    for r in forward:
        base = next(b for b in forward if b["engine"] == r["engine"] and
                    b["model"] == r["model"] and b["batch"] == r["batch"])
        if base is r:
            continue
        out.append({"model": r["model"], "batch": r["batch"], "variant": r["variant"],
                    "baseline": base["variant"],
                    "ratio_mean": r["ms_per_batch"] / base["ms_per_batch"],
                    "ratio_best": r["ms_per_batch_best"] / base["ms_per_batch_best"],
                    "ratio_median": r["ms_per_batch_median"] / base["ms_per_batch_median"]})
    return out


def main(argv=None):
    args = build_parser().parse_args(argv)
    import cv2
    import mxnet as mx
    import numpy as np
    from tqdm import tqdm
    from mxpose import export as ex
    from mxpose.infer import Predictor
    from mxpose.model_zoo import get_model, list_models
    from mxpose.skeleton import get_skeleton
    from mxpose.runs import make_contexts, parse_gpus

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in list_models()]
    if bad or not models:
        raise BenchError(f"unknown model(s) {bad or args.models!r}; valid: "
                         f"{', '.join(list_models())}")
    batches = _ints(args.batches, "batches")
    if args.size < 8 or args.size % 8:
        raise BenchError(f"--size must be a positive multiple of 8, got {args.size}")
    if args.iters < 1 or args.warmup < 0 or args.frames < 0:
        raise BenchError("--iters must be >= 1, --warmup and --frames >= 0")
    engines, have_onnx = _engines(args.engines)
    skel = get_skeleton(args.skeleton)
    try:
        ctx = make_contexts(parse_gpus(args.gpus), 0)[0]
    except Exception as e:  # bad --gpus or no such GPU
        raise BenchError(str(e))
    img = None
    image_path = args.image or DEFAULT_IMAGE
    if args.frames:
        if not os.path.isfile(image_path):
            raise BenchError(f"image {image_path} does not exist (pass --image, or "
                             "--frames 0)")
        img = cv2.imread(image_path, cv2.IMREAD_COLOR)
        if img is None:
            raise BenchError(f"cannot read image {image_path}")

    device = _device(ctx)
    print(f"device: {device}; engines: {', '.join(engines)}"
          + ("" if have_onnx else " (onnx/onnxruntime not installed)"))
    print("note: a shared machine inflates these numbers")
    forward, e2e = [], []
    rng = np.random.default_rng(0)
    tmp = tempfile.TemporaryDirectory(prefix="mxpose_bench_")
    jobs = [(m, e, b) for m in models for e in engines for b in batches]
    bar = tqdm(total=len(jobs) + (len(models) * len(engines) if args.frames else 0),
               disable=args.no_progress, desc="bench", unit="run")
    try:
        for name in models:
            variants = _variants(name, args)
            bar.set_postfix_str(f"building {name}")
            x0 = np.zeros((1, 3, args.size, args.size), np.float32)
            nets = {v: _build_variant(name, v, skel, ctx, x0) for v in variants}
            net = nets[variants[0]]
            runners = {}
            for eng in engines:
                if eng == "mxnet":
                    def make_run(net):
                        def run(x):
                            out = net(mx.nd.array(x, ctx=ctx))
                            return out[-2].asnumpy(), out[-1].asnumpy()
                        return run
                    # asnumpy() waits for the result and copies it to the host, as
                    # the Predictor does
                    runners[eng] = {v: make_run(n) for v, n in nets.items()}
                else:
                    meta = ex.make_meta(skel, name, num_stages=net.num_stages,
                                        boxsize=args.size)
                    prefix = os.path.join(tmp.name, name)
                    bar.set_postfix_str(f"exporting {name} to ONNX")
                    ex.export_network(net, prefix, meta)
                    runners[eng] = {"onnx": ex.OnnxRunner(prefix + ".onnx",
                                                          threads=args.threads)}
                    if args.int8:
                        bar.set_postfix_str(f"quantizing {name} to INT8")
                        runners[eng]["onnx-int8"] = _int8_runner(prefix, skel, args, img)
            for eng in engines:
                for b in batches:
                    bar.set_postfix_str(f"{name} {eng} batch {b}")
                    x = rng.uniform(-0.5, 0.5, (b, 3, args.size, args.size)).astype(np.float32)
                    fns = {v: (lambda run=run: run(x)) for v, run in runners[eng].items()}
                    try:
                        tss = _time_round_robin(fns, args.iters, args.warmup)
                    except MemoryError:
                        raise BenchError(f"out of memory at {name} batch {b}; use smaller "
                                         "--batches")
                    for v, ts in tss.items():
                        mean, best = float(np.mean(ts)), float(np.min(ts))
                        forward.append({"model": name, "engine": eng, "variant": v,
                                        "batch": b, "size": args.size, "iters": args.iters,
                                        "ms_per_batch": 1e3 * mean,
                                        "ms_per_batch_best": 1e3 * best,
                                        "ms_per_batch_median": 1e3 * float(np.median(ts)),
                                        "ms_per_image": 1e3 * mean / b,
                                        "images_per_s": b / mean})
                    bar.update()
                if args.frames:
                    bar.set_postfix_str(f"{name} {eng} end to end")
                    if eng == "mxnet":
                        pred = Predictor(net, skel, ctx=ctx, boxsize=args.size)
                    else:
                        pred = Predictor(runners[eng]["onnx"], skel, engine="numpy",
                                         boxsize=args.size)
                    pred(img)  # warm-up (graph for this input size, decoder caches)
                    pred.timings = {"net": 0.0, "decode": 0.0, "frames": 0}
                    t0 = time.perf_counter()
                    for _ in range(args.frames):
                        people, _ = pred(img)
                    wall = time.perf_counter() - t0
                    f = pred.fps()
                    e2e.append({"model": name, "engine": eng, "frames": args.frames,
                                "image": os.path.basename(image_path),
                                "image_size": [int(img.shape[1]), int(img.shape[0])],
                                "fps": args.frames / wall, "net_fps": f["net_fps"],
                                "decode_fps": f["decode_fps"],
                                "ms_net": 1e3 * pred.timings["net"] / args.frames,
                                "ms_decode": 1e3 * pred.timings["decode"] / args.frames,
                                "people": int(len(people))})
                    bar.update()
            del net, nets, runners
    finally:
        bar.close()
        tmp.cleanup()

    print(f"\nforward, {args.size}x{args.size} input, mean of {args.iters} pass(es) after "
          f"{args.warmup} warm-up:")
    print(f"{'model':18s} {'engine':6s} {'variant':17s} {'batch':>5s} {'ms/batch':>10s} "
          f"{'best':>10s} {'ms/image':>9s} {'images/s':>9s}")
    for r in forward:
        print(f"{r['model']:18s} {r['engine']:6s} {r['variant']:17s} {r['batch']:5d} "
              f"{r['ms_per_batch']:10.1f} {r['ms_per_batch_best']:10.1f} "
              f"{r['ms_per_image']:9.1f} {r['images_per_s']:9.2f}")
    ratios = _ratios(forward)
    if ratios:
        print("\nsame-run ratios (time of the variant / time of the engine's first "
              "variant; > 1: the first is faster), median, mean, best:")
        for r in ratios:
            print(f"{r['model']:18s} batch {r['batch']:<3d} {r['variant']:17s} "
                  f"{r['ratio_median']:6.3f} {r['ratio_mean']:6.3f} {r['ratio_best']:6.3f}")
    if e2e:
        h, w = img.shape[:2]
        print(f"\nend to end on {os.path.basename(image_path)} ({w}x{h}, scale 1, no flip, "
              f"{args.frames} frames; random weights: decode time not representative):")
        print(f"{'model':18s} {'engine':6s} {'fps':>7s} {'net ms':>9s} {'decode ms':>9s}")
        for r in e2e:
            print(f"{r['model']:18s} {r['engine']:6s} {r['fps']:7.2f} {r['ms_net']:9.1f} "
                  f"{r['ms_decode']:9.2f}")
    if args.json:
        versions = {"mxnet": mx.__version__, "numpy": np.__version__}
        if "onnx" in engines:
            import onnxruntime
            versions["onnxruntime"] = onnxruntime.__version__
        doc = {"device": device, "note": "shared machine: numbers inflated by other load",
               "size": args.size, "skeleton": skel.name, "versions": versions,
               "act": args.act, "forward": forward, "ratios": ratios, "end_to_end": e2e}
        return write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"{os.path.basename(sys.argv[0])}: error: {e}", file=sys.stderr)
        sys.exit(2)
