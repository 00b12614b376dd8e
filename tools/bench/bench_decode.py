"""Benchmark the decoder: milliseconds per image from stride-8 maps to people.

Renders ground-truth maps of synthetic, non-overlapping people (1, 5 and 10 by default)
for a 640x480 image (80x60 maps at stride 8), then times, single-threaded:

  cython   mxpose.decode.Decoder (the compiled kernels), at stride resolution
  numpy    the plain-NumPy twin of the same algorithm (tests/reference_decode.py)
  upsample the compiled decoder on maps resized x8 first (--upsample, CMU's way)

Example:
    python tools/bench/bench_decode.py --json bench_decode.json
"""
import os

# Single thread for every library, set before numpy/cv2 load their thread pools.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _bench_common from anywhere
from _bench_common import machine, write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load_reference():
    path = os.path.join(ROOT, "tests")
    if not os.path.exists(os.path.join(path, "reference_decode.py")):
        raise SystemExit(f"error: {path}/reference_decode.py not found (run from a source "
                         "checkout: the NumPy reference and the renderer live there)")
    sys.path.insert(0, path)
    import reference_decode
    return reference_decode


def _time(fn, repeat):
    best = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t)
    return float(np.median(best))


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Time the PAF decoder (compiled vs NumPy reference) on ground-truth "
                    "maps of synthetic people, single-threaded; prints ms per image.")
    ap.add_argument("--people", type=int, nargs="+", default=[1, 5, 10],
                    help="people per image, one table row each (default: 1 5 10)")
    ap.add_argument("--width", type=int, default=640, help="image width in px (default 640)")
    ap.add_argument("--height", type=int, default=480, help="image height in px (default 480)")
    ap.add_argument("--stride", type=int, default=8, help="map stride (default 8)")
    ap.add_argument("--skeleton", default="openpose_coco18",
                    help="skeleton name (default openpose_coco18)")
    ap.add_argument("--images", type=int, default=10,
                    help="different images per row (default 10)")
    ap.add_argument("--repeat", type=int, default=20,
                    help="timed runs per image for the compiled decoder (default 20)")
    ap.add_argument("--ref-repeat", type=int, default=3,
                    help="timed runs per image for the NumPy reference (default 3)")
    ap.add_argument("--upsample", type=int, default=0, metavar="F",
                    help="also time the decoder on maps resized xF first (e.g. 8); 0 = skip")
    ap.add_argument("--no-reference", action="store_true", help="skip the NumPy reference")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    ap.add_argument("--json", metavar="PATH", help="also write the timings as JSON here")
    args = ap.parse_args(argv)

    if args.width % args.stride or args.height % args.stride:
        print(f"error: image size {args.width}x{args.height} is not a multiple of the "
              f"stride {args.stride}", file=sys.stderr)
        return 2
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:  # only the --upsample mode needs it
        pass
    from tqdm import tqdm

    from mxpose.decode import Decoder
    from mxpose.skeleton import SkeletonError, get_skeleton
    R = _load_reference()
    try:
        skel = get_skeleton(args.skeleton)
    except SkeletonError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    dec = Decoder(skel)
    up = Decoder(skel, upsample=args.upsample) if args.upsample > 1 else None
    h, w = args.height // args.stride, args.width // args.stride
    rng = np.random.default_rng(args.seed)
    rows = []
    bar = tqdm(total=len(args.people) * args.images, desc="decode bench", unit="img")
    for n in args.people:
        t_c, t_r, t_u, found, agree = [], [], [], [], True
        for _ in range(args.images):
            people = R.synthetic_people(skel, n, args.width, args.height, rng)
            hm, pf = R.render_maps(people, skel, h, w, args.stride)
            out, _ = dec(hm, pf, stride=args.stride)  # warm-up and sanity
            found.append(len(out))
            t_c.append(_time(lambda: dec(hm, pf, stride=args.stride), args.repeat))
            if not args.no_reference:
                ref, _ = R.decode_ref(hm, pf, skel, stride=args.stride)
                agree &= ref.shape == out.shape and bool(np.allclose(ref, out, atol=1e-3))
                t_r.append(_time(lambda: R.decode_ref(hm, pf, skel, stride=args.stride),
                                 args.ref_repeat))
            if up is not None:
                t_u.append(_time(lambda: up(hm, pf, stride=args.stride), 3))
            bar.update(1)
        row = {"people": n, "decoded_mean": float(np.mean(found)),
               "cython_ms": 1e3 * float(np.mean(t_c))}
        if t_r:
            row["numpy_ms"] = 1e3 * float(np.mean(t_r))
            row["ratio"] = row["numpy_ms"] / row["cython_ms"]
            row["outputs_agree"] = bool(agree)
        if t_u:
            row[f"upsample{args.upsample}_ms"] = 1e3 * float(np.mean(t_u))
        rows.append(row)
    bar.close()

    print(f"\nDecoder, {args.width}x{args.height} image, {w}x{h} maps (stride {args.stride}), "
          f"{skel.name}, single thread, mean over {args.images} images")
    head = f"{'people':>6} {'decoded':>8} {'cython ms':>10}"
    if not args.no_reference:
        head += f" {'numpy ms':>9} {'ratio':>7} {'agree':>6}"
    if up is not None:
        head += f" {f'upsample x{args.upsample} ms':>17}"
    print(head)
    print("-" * len(head))
    for r in rows:
        line = f"{r['people']:>6} {r['decoded_mean']:>8.1f} {r['cython_ms']:>10.3f}"
        if "numpy_ms" in r:
            line += f" {r['numpy_ms']:>9.2f} {r['ratio']:>6.1f}x {str(r['outputs_agree']):>6}"
        if up is not None:
            line += f" {r[f'upsample{args.upsample}_ms']:>17.2f}"
        print(line)
    worst = max(r["cython_ms"] for r in rows)
    print(f"worst compiled decode: {worst:.3f} ms per image (target <= 3 ms)")
    if args.json:
        doc = {"benchmark": "decode", "image": [args.width, args.height], "maps": [w, h],
               "stride": args.stride, "skeleton": skel.name, "threads": 1,
               "images_per_row": args.images, "machine": machine(),
               "python": platform.python_version(), "rows": rows}
        return write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
