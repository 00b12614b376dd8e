#!/usr/bin/env python
"""Export a trained pose network: MXNet symbol + params, ONNX, and a JSON sidecar.

Loads a checkpoint exactly as tools/demo.py does (same -c/--prefix/--workdir/--epoch/
--weights) and writes, for an output prefix X:

  X-symbol.json, X-0000.params   the hybridized graph (HybridBlock.export)
  X.onnx                         ONNX: input 'image' (B, 3, H, W), outputs 'pafs' and
                                 'heatmaps', dynamic batch/height/width
  X-meta.json                    skeleton, stride, boxsize, default scales/flip, decoder
                                 thresholds, model name: what the Predictor needs to run
                                 the export without the model code

Only the last stage's (pafs, heatmaps) are outputs unless --all-stages. --verify checks
on a real image that the symbol files and onnxruntime give the network's maps within
max|a - b| <= atol + rtol * max|ref| (default rtol 1e-4, atol 1e-7; measured 1.4e-6
(LW) to 4.3e-6 (CPM-VGG19) relative for onnxruntime, 0 for the symbol) and the same people
(keypoints within 0.05 px).

Run an export:
  from mxpose.infer import Predictor
  pred = Predictor.from_exported("X", engine="onnx")    # or engine="symbol"
  people, scores = pred(bgr_image)

INT8 (--int8, CPU deployment): also writes X-int8.onnx and X-int8-meta.json, a statically
quantized copy of X.onnx (onnxruntime.quantization: int8 per-channel weights, uint8
activations whose ranges are calibrated by running X.onnx on --calib-images images of
the --calib-split split of --calib-db, preprocessed as the Predictor does at its test
scales). Run it with Predictor.from_exported("X-int8.onnx", engine="onnx"); score its AP
with tools/evaluate.py --exported X-int8.onnx and time it with tools/bench/bench_infer.py.

Examples:
  python tools/export.py --epoch 8600 --verify
  python tools/export.py --epoch 8600 --int8 --calib-db data/coco_val.db --calib-images 100
  python tools/export.py -c experiments/cpm_vgg19_coco.yaml --weights pose_iter_440000.params \\
      --out export/cmu_coco --formats onnx
"""
import argparse
import os
import sys
import time

from mxpose.cli import (CLIError, add_checkpoint_args, add_predictor_args, load_predictor,
                        run_main, use_all_cores)

use_all_cores()   # before mxnet is imported

_DEFAULT_IMAGE = os.path.normpath(os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.pardir, "shared", "data",
    "media", "COCO_val2014_000000000192.jpg"))


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_args(p)
    add_predictor_args(p)
    o = p.add_argument_group("export")
    o.add_argument("--out", default=None,
                   help="output prefix X (default: <checkpoint dir>/export/<model>-<epoch>, "
                        "or export/<weights name> with --weights)")
    o.add_argument("--formats", default="symbol,onnx",
                   help="comma-separated: symbol, onnx (default both; onnx needs the onnx "
                        "package, onnx<1.16 for MXNet 1.9.1)")
    o.add_argument("--all-stages", action="store_true",
                   help="keep every stage's outputs (default: only the last stage's)")
    q = p.add_argument_group("INT8 quantization")
    q.add_argument("--int8", action="store_true",
                   help="also write X-int8.onnx, statically quantized (needs --calib-db)")
    q.add_argument("--calib-db", default=None, metavar="DB",
                   help="pose DB whose images calibrate the INT8 activation ranges")
    q.add_argument("--calib-split", default="val",
                   help="split of --calib-db to calibrate on (default: val)")
    q.add_argument("--calib-images", type=int, default=64, metavar="N",
                   help="calibration images, a seeded random subset (default: 64)")
    q.add_argument("--calib-method", default="minmax",
                   choices=("minmax", "entropy", "percentile"),
                   help="how ranges are chosen from the calibration runs (default: minmax)")
    v = p.add_argument_group("verification")
    v.add_argument("--verify", action="store_true",
                   help="check the exported files against the network on a real image")
    v.add_argument("--image", default=None,
                   help="image for --verify (default: ../shared/data/media/"
                        "COCO_val2014_000000000192.jpg)")
    v.add_argument("--rtol", type=float, default=None,
                   help="relative tolerance of --verify (default 1e-4 of max|maps|)")
    v.add_argument("--atol", type=float, default=None,
                   help="absolute tolerance of --verify (default 1e-7)")
    return p


def _default_out(args, cfg, prefix, it):
    if args.weights:
        return os.path.join("export", os.path.splitext(os.path.basename(args.weights))[0])
    return os.path.join(os.path.dirname(prefix) or ".", "export",
                        "%s-%04d" % (os.path.basename(prefix), it))


def _calibration_images(args, formats):
    """The --int8 calibration images (None without --int8), read before any export so a
    bad calibration set fails first."""
    if not args.int8:
        if args.calib_db:
            raise CLIError("--calib-db is only used with --int8")
        return None
    if "onnx" not in formats:
        raise CLIError("--int8 quantizes the ONNX model: keep onnx in --formats")
    if not args.calib_db:
        raise CLIError("--int8 needs --calib-db DB (images to calibrate the INT8 ranges on)")
    from mxpose.quantize import calibration_images
    return calibration_images(args.calib_db, args.calib_split, args.calib_images)


def _write_int8(args, out, pred, images):
    from tqdm import tqdm
    from mxpose.quantize import calibration_batches, quantize_export
    t0 = time.perf_counter()
    info = {"db": os.path.abspath(args.calib_db), "split": args.calib_split,
            "images": len(images), "scales": list(pred.scales)}
    with tqdm(total=len(images) * len(pred.scales), desc="calibrating INT8",
              unit="input") as bar:
        files = quantize_export(out, calibration_batches(images, pred.input_batch,
                                                         pred.scales),
                                method=args.calib_method, calibration=info,
                                progress=bar.update)
    print(f"INT8 model calibrated on {len(images)} image(s) of {args.calib_db} "
          f"[{args.calib_split}] in {time.perf_counter() - t0:.1f} s:")
    for k in ("onnx", "meta"):
        print(f"  {k:7s} {files[k]} ({os.path.getsize(files[k]) / 2**20:.1f} MiB)")


def main(argv=None):
    args = build_parser().parse_args(argv)
    from mxpose import export as ex
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("symbol", "onnx")]
    if bad or not formats:
        raise CLIError(f"--formats takes symbol and/or onnx, got {args.formats!r}")
    if "onnx" in formats:
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise CLIError("ONNX export needs the onnx package (pip install -c "
                           "constraints.txt onnx==1.15.0), or pass --formats symbol")
    if args.verify and "onnx" in formats:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise CLIError("--verify of the ONNX file needs onnxruntime (pip install "
                           "onnxruntime)")
    image = None
    if args.verify:
        from mxpose.data.image import read_image
        path = args.image or _DEFAULT_IMAGE
        if not os.path.isfile(path):
            raise CLIError(f"verification image {path} does not exist (pass --image)")
        image = read_image(path)     # an undecodable file: one line from run_main

    calib = _calibration_images(args, formats)
    cfg, prefix, it, pred = load_predictor(args)
    out = args.out or _default_out(args, cfg, prefix, it)
    source = {"experiment": str(cfg.name), "weights": args.weights} if args.weights else \
        {"experiment": str(cfg.name), "prefix": prefix, "iteration": it}
    t0 = time.perf_counter()
    try:
        files = ex.export_predictor(pred, cfg.model.name, dict(cfg.model.kwargs), out,
                                    formats, all_stages=args.all_stages, source=source)
    except (ex.ExportError, OSError) as e:
        raise CLIError(f"cannot export to {out}: {e}")
    num_stages = ex.read_meta(out)["model"]["num_stages"]
    print(f"exported {cfg.model.name} ({num_stages} stages, "
          f"{'all stages' if args.all_stages else 'last stage'}) in "
          f"{time.perf_counter() - t0:.1f} s:")
    for k in ("symbol", "params", "onnx", "meta"):
        if k in files:
            print(f"  {k:7s} {files[k]} ({os.path.getsize(files[k]) / 2**20:.1f} MiB)")
    if calib is not None:
        _write_int8(args, out, pred, calib)
    if not args.verify:
        return 0

    rtol = ex.DEFAULT_RTOL if args.rtol is None else args.rtol
    atol = ex.DEFAULT_ATOL if args.atol is None else args.atol
    try:
        rep = ex.verify_export(out, pred, image, engines=formats, rtol=rtol, atol=atol)
    except ex.ExportError as e:
        raise CLIError(str(e))
    t = rep["tolerance"]
    print(f"verify on {args.image or _DEFAULT_IMAGE} (tolerance max|a - b| <= {atol:g} + "
          f"max({rtol:g} * max|ref|, {t['margin']:g} x float32-vs-float64 difference "
          f"{max(t['float32_noise']):.3g}); people within {t['people_px']} px):")
    print(f"  gluon   {rep['gluon']['people']} people")
    for eng in formats:
        r = rep[eng]
        extra = f", providers {','.join(r['providers'])}" if "providers" in r else ""
        print(f"  {eng:7s} maps max abs {r['max_abs']:.3g} rel {r['max_rel']:.3g} "
              f"{'ok' if r['maps_ok'] else 'FAILED'}; {r['people']} people, max diff "
              f"{r['people_diff']:.3g} px {'ok' if r['people_ok'] else 'FAILED'}{extra}")
    if not rep["ok"]:
        print("verification FAILED", file=sys.stderr)
        return 1
    print("verification passed")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
