"""Benchmark ground-truth rendering: compiled kernels vs the plain-NumPy reference.

Renders the full ground truth of one training sample (heatmaps + background + PAFs) for
a 368x368 input (46x46 maps, stride 8) in the openpose_coco18 layout (19 heatmaps, 38
PAF channels), the way a loader worker does: one TargetRenderer, buffers reused. People
are a standing-person template, randomly scaled, rotated, jittered and placed, every
keypoint labelled. Single thread; each figure is the median over many samples.

    python tools/bench/bench_targets.py
    python tools/bench/bench_targets.py --people 1 10 --json bench_targets.json
    python tools/bench/bench_targets.py --skeleton body25 --people 10 --no-reference

Targets (issue 3): <= 30 us with 1 person, <= 120 us with 10 people (openpose_coco18);
issue 9: <= 60 us with 10 people for body25 (26 heatmaps, 52 PAF channels).
"""
import os

# Single-threaded numbers: fix the thread pools before numpy is imported.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _bench_common from anywhere
from _bench_common import machine, write_json  # noqa: E402

# Targets by layout and people per sample (issue 3: openpose_coco18; issue 9: body25).
TARGET_US = {"openpose_coco18": {1: 30.0, 10: 120.0}, "body25": {10: 60.0}}
INPUT = 368
STRIDE = 8

# A standing person in units of its height (x right, y down), openpose_coco18 order.
_TEMPLATE = np.array([
    (0.00, -0.42), (0.00, -0.32), (-0.10, -0.32), (-0.13, -0.15), (-0.14, 0.00),
    (0.10, -0.32), (0.13, -0.15), (0.14, 0.00), (-0.06, 0.02), (-0.07, 0.24),
    (-0.07, 0.46), (0.06, 0.02), (0.07, 0.24), (0.07, 0.46), (-0.02, -0.44),
    (0.02, -0.44), (-0.04, -0.43), (0.04, -0.43)], dtype=np.float64)
_OP18 = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow",
         "l_wrist", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye",
         "l_eye", "r_ear", "l_ear")
# The template by name, with the points other layouts add (mid-hip, feet).
_BY_NAME = dict(zip(_OP18, _TEMPLATE), mid_hip=(0.0, 0.02),
                r_big_toe=(-0.10, 0.50), r_small_toe=(-0.12, 0.49), r_heel=(-0.06, 0.49),
                l_big_toe=(0.10, 0.50), l_small_toe=(0.12, 0.49), l_heel=(0.06, 0.49))


def template(skel):
    """(K, 2) standing person of ``skel`` (any layout whose points the template names)."""
    missing = [k for k in skel.keypoints if k not in _BY_NAME]
    if missing:
        raise ValueError(f"layout {skel.name!r}: no template position for {missing}")
    return np.array([_BY_NAME[k] for k in skel.keypoints], dtype=np.float64)


def make_people(rng, n, tmpl=_TEMPLATE):
    """(n, K, 3) float32 people of the (K, 2) template ``tmpl``: the first person is the
    CMU-scaled "main" one (height 0.6*368*U(0.5, 1.1) near the centre), the others
    anywhere at 60..250 px."""
    kp = np.zeros((n, len(tmpl), 3), dtype=np.float32)
    for i in range(n):
        if i == 0:
            h = 0.6 * INPUT * rng.uniform(0.5, 1.1)
            centre = INPUT / 2 + rng.uniform(-40, 40, 2)
        else:
            h = rng.uniform(60, 250)
            centre = rng.uniform(0, INPUT, 2)
        a = np.deg2rad(rng.uniform(-40, 40))
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        pts = (tmpl + rng.normal(0, 0.02, tmpl.shape)) * h
        kp[i, :, :2] = pts @ rot.T + centre
        kp[i, :, 2] = 2
    return kp


def _median_us(fn, samples, repeats):
    """Median wall time of one call, in microseconds, cycling over ``samples``."""
    for s in samples[:min(len(samples), 20)]:   # warm caches and code paths
        fn(s)
    t = np.empty(repeats)
    clock = time.perf_counter_ns
    for i in range(repeats):
        s = samples[i % len(samples)]
        t0 = clock()
        fn(s)
        t[i] = clock() - t0
    return float(np.median(t)) / 1e3


def _load_reference():
    here = os.path.dirname(os.path.abspath(__file__))
    tests = os.path.join(os.path.dirname(os.path.dirname(here)), "tests")
    if not os.path.isfile(os.path.join(tests, "reference.py")):
        return None
    sys.path.insert(0, tests)
    try:
        import reference
    finally:
        sys.path.pop(0)
    return reference


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Time ground-truth rendering (heatmaps + background + PAFs) per sample "
                    "for a 368x368 input (46x46 maps), single thread, "
                    "median over random samples; compiled kernels (TargetRenderer, buffers "
                    "reused) vs the NumPy reference in tests/reference.py, in both grid "
                    "modes. Targets: <= 30 us with 1 person, <= 120 us with 10 people "
                    "(openpose_coco18), <= 60 us with 10 people (body25). "
                    "Loss-mask pooling is timed on a separate line.")
    ap.add_argument("--people", type=int, nargs="+", default=[1, 10],
                    help="people per sample, one row each (default: 1 10)")
    ap.add_argument("--modes", nargs="+", default=["centered", "cmu"],
                    choices=["centered", "cmu"], help="grid conventions (default: both)")
    ap.add_argument("--repeats", type=int, default=3000,
                    help="timed calls of the compiled renderer per row (default: 3000)")
    ap.add_argument("--ref-repeats", type=int, default=15,
                    help="timed calls of the NumPy reference per row (default: 15)")
    ap.add_argument("--samples", type=int, default=64,
                    help="distinct random samples cycled through (default: 64)")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the (slow) NumPy reference")
    ap.add_argument("--seed", type=int, default=0, help="random seed of the samples")
    ap.add_argument("--skeleton", default="openpose_coco18",
                    choices=["openpose_coco18", "body25", "body25b"],
                    help="layout of the ground truth (default openpose_coco18; body25: 26 "
                         "heatmaps, 52 PAF channels)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args(argv)
    if min(args.people) < 0 or args.repeats < 1 or args.ref_repeats < 1 or args.samples < 1:
        ap.error("--people must be >= 0 and --repeats/--ref-repeats/--samples >= 1")

    try:
        from mxpose.skeleton import get_skeleton
        from mxpose.targets import TargetRenderer, render_masks
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from tqdm import tqdm

    ref = None if args.no_reference else _load_reference()
    if ref is None and not args.no_reference:
        print("note: tests/reference.py not found; NumPy column skipped", file=sys.stderr)
    skel = get_skeleton(args.skeleton)
    tmpl = template(skel)
    rng = np.random.default_rng(args.seed)
    grid = (INPUT // STRIDE, INPUT // STRIDE)

    rows = []
    jobs = [(m, n) for m in args.modes for n in args.people]
    for mode, n in tqdm(jobs, desc="bench", leave=False):
        samples = [make_people(rng, n, tmpl) for _ in range(args.samples)]
        r = TargetRenderer(skel, INPUT, stride=STRIDE, sigma=7.0, paf_width=1.0, mode=mode)
        cy = _median_us(r.render_maps, samples, args.repeats)
        row = {"mode": mode, "merge": r.merge, "people": n, "cython_us": round(cy, 2)}
        if ref is not None:
            def ref_fn(kp, mode=mode, merge=r.merge):
                ref.heatmaps_ref(kp, grid, STRIDE, 7.0, merge=merge, mode=mode)
                ref.pafs_ref(kp, skel.limb_index, grid, STRIDE, 1.0, mode=mode)
            npy = _median_us(ref_fn, samples, args.ref_repeats)
            row.update(numpy_us=round(npy, 1), ratio=round(npy / cy, 1))
        target = TARGET_US.get(skel.name, {}).get(n)
        if target is not None:
            row.update(target_us=target, met=bool(cy <= target))
        rows.append(row)

    # Loss masks are not part of the GT target but are on the same per-sample path.
    sup = np.ones((INPUT, INPUT), dtype=np.float32)
    sup[100:180, 40:120] = 0
    r = TargetRenderer(skel, INPUT)
    mask_us = _median_us(lambda s: r.render_masks(s), [sup], max(200, args.repeats // 10))
    pool_us = _median_us(lambda s: render_masks(s, grid, STRIDE, out=r.mask), [sup],
                         max(200, args.repeats // 10))
    # What a loader worker runs per sample (PoseDataset's call): maps and the (1, H, W)
    # loss mask rendered into new arrays, the last 10 samples' targets kept alive as in a
    # batch.
    people = [make_people(rng, max(args.people), tmpl) for _ in range(args.samples)]
    held = []

    def loader_path(kp):
        held.append(r.render(kp, sup, copy=True, expand_masks=False))
        if len(held) > 10:
            held.pop(0)
    loader_us = _median_us(loader_path, people, max(200, args.repeats // 10))

    print(f"ground truth per sample: {INPUT}x{INPUT} input -> {grid[0]}x{grid[1]} maps, "
          f"{skel.name} ({skel.num_heatmaps} heatmaps, {skel.num_pafs} PAF channels), "
          "single thread, median")
    head = f"{'mode':<9} {'merge':<9} {'people':>6} {'cython us':>10} {'numpy us':>10} " \
           f"{'ratio':>7} {'target us':>9}  met"
    print(head)
    print("-" * len(head))
    def cell(row, key, width):
        return f"{row[key]:>{width}.0f}" if key in row else f"{'-':>{width}}"

    for row in rows:
        print(f"{row['mode']:<9} {row['merge']:<9} {row['people']:>6} {row['cython_us']:>10.1f} "
              f"{cell(row, 'numpy_us', 10)} {cell(row, 'ratio', 7)} {cell(row, 'target_us', 9)}"
              f"  {('yes' if row['met'] else 'NO') if 'met' in row else '-'}")
    print(f"loss masks: pool 368x368 -> 46x46 {pool_us:.1f} us; pool + expand to "
          f"({skel.num_heatmaps}, 46, 46) and ({skel.num_pafs}, 46, 46) {mask_us:.1f} us")
    print(f"loader path ({max(args.people)} people, a mask; maps and one (1, 46, 46) mask into "
          f"new arrays, as the Dataset renders them): {loader_us:.1f} us")

    if args.json:
        doc = {"benchmark": "targets", "input_size": INPUT, "stride": STRIDE,
               "map_size": list(grid), "layout": skel.name, "sigma": 7.0,
               "paf_width": 1.0, "unit": "microseconds per sample", "statistic": "median",
               "threads": 1, "repeats": args.repeats, "ref_repeats": args.ref_repeats,
               "machine": {"processor": machine(),
                           "python": platform.python_version(), "numpy": np.__version__},
               "results": rows,
               "masks": {"pool_us": round(pool_us, 2), "pool_and_expand_us": round(mask_us, 2)},
               "loader_path_us": round(loader_us, 2), "loader_path_people": max(args.people)}
        return write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
