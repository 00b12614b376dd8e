"""Decoder ceiling and crowd benchmark, per assembly mode.

For each assembly mode (``--modes``, default ``cmu crowd``) prints:

* ceiling AP (pycocotools OKS AP of ground-truth maps decoded) on the COCO sample
  (``--coco``, default ../shared/data/coco_sample when present) and on synthetic crowds
  (``mxpose.data.synthetic.generate_image(crowd=True)``: 5-15 overlapping people,
  occluders), on clean maps and on maps with seeded Gaussian noise and blur, with the
  maps rendered at the image's own resolution (stride 8) and at boxsize 368 (the image
  resized to 368 px high first, as ``tools/evaluate.py --oracle`` does);
* decode time, ms per 640x480 image (80x60 maps), single thread (CPU time of the
  thread, median of --repeat runs: robust on a shared machine), at 1, 10 and 30 people
  (ground-truth maps of people on a grid), and on the uniform-noise frame (the maps an
  untrained network emits), with the number of people it returns.

Example:
    python tools/bench/bench_ceiling.py --crowd-images 40 --json ceiling.json
"""
import os

# Single thread for every library, set before numpy/cv2 load their thread pools.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _bench_common from anywhere
from _bench_common import machine, write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NET = "openpose_coco18"


def coco_cases(folder):
    """(cases, gt) from ``folder``/test_coco.json: cases are dicts id, w, h, people
    (N, 17, 3) coco layout, labelled non-crowd people only."""
    with open(os.path.join(folder, "test_coco.json")) as f:
        gt = json.load(f)
    cases = []
    for im in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == im["id"]
                and a["num_keypoints"] > 0 and not a.get("iscrowd", 0)]
        kp = np.array([a["keypoints"] for a in anns], np.float32).reshape(-1, 17, 3)
        cases.append({"id": im["id"], "w": im["width"], "h": im["height"], "people": kp})
    return cases, gt


def crowd_cases(n, seed=0, min_size=480, max_size=640, min_height=0.5, max_height=0.9):
    """(cases, gt) of ``n`` synthetic crowd images (keypoints only; nothing is drawn
    twice: the generator's own labels and visible-body areas)."""
    from mxpose.data.synthetic import generate_image, image_seed
    from mxpose.skeleton import get_skeleton
    coco = get_skeleton("coco")
    images, anns, cases = [], [], []
    for i in range(n):
        img, people, _ = generate_image(image_seed(seed, "crowd", i), min_size=min_size,
                                        max_size=max_size, min_height=min_height,
                                        max_height=max_height, p_unlabelled=0.0,
                                        p_crowd=0.0, crowd=True)
        h, w = img.shape[:2]
        kp = np.array([p["keypoints"] for p in people], np.float32).reshape(-1, 17, 3)
        images.append({"id": i + 1, "width": w, "height": h})
        for p, k in zip(people, kp):
            nk = int((k[:, 2] > 0).sum())
            if nk == 0:
                continue
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1,
                         "keypoints": k.reshape(-1).tolist(), "num_keypoints": nk,
                         "area": float(p["area"]), "bbox": list(p["bbox"]), "iscrowd": 0})
        cases.append({"id": i + 1, "w": w, "h": h, "people": kp[(kp[..., 2] > 0).any(1)]})
    cats = [{"id": 1, "name": "person", "keypoints": list(coco.keypoints),
             "skeleton": [[int(a) + 1, int(b) + 1] for a, b in coco.limb_index]}]
    return cases, {"images": images, "annotations": anns, "categories": cats}


def degrade(heat, paf, rng, noise, blur):
    """Blur (sigma ``blur`` cells) then add Gaussian noise (std ``noise``), seeded."""
    if blur > 0:
        import cv2
        heat = np.stack([cv2.GaussianBlur(c, (0, 0), blur) for c in heat])
        paf = np.stack([cv2.GaussianBlur(c, (0, 0), blur) for c in paf])
    if noise > 0:
        heat = heat + rng.normal(0, noise, heat.shape).astype(np.float32)
        paf = paf + rng.normal(0, noise, paf.shape).astype(np.float32)
    return heat, paf


def ceiling_ap(cases, gt, decoder, boxsize=None, noise=0.0, blur=0.0, seed=0):
    """COCO OKS AP of ``decoder`` on ground-truth maps of ``cases`` rendered at the
    image's resolution (``boxsize=None``) or with the image resized to ``boxsize`` high."""
    from mxpose.eval.coco import evaluate_keypoints, results_from_people
    from mxpose.eval.runner import OracleMaps
    from mxpose.infer import grid_to_image
    from mxpose.skeleton import convert
    rng = np.random.default_rng(seed)
    results = []
    for c in cases:
        oracle = OracleMaps(NET, boxsize=c["h"] if boxsize is None else boxsize, stride=8)
        heat, paf, base = oracle.maps((c["h"], c["w"]), convert(c["people"], "coco", NET))
        heat, paf = degrade(heat, paf, rng, noise, blur)
        people, scores = decoder(heat, paf, stride=8)
        people = convert(grid_to_image(people, base), NET, "coco")
        results += results_from_people(c["id"], people, scores)
    with contextlib.redirect_stdout(io.StringIO()):
        stats = evaluate_keypoints(gt, results)
    return float(stats["AP"] if isinstance(stats, dict) else stats[0])


def _median_ms(fn, repeat):
    # CPU time of this thread, not wall time: the decoder is single-threaded, and on a
    # shared machine wall time also counts the other processes' time slices (a 20 ms
    # decode measured 30-90 ms wall with 8 jobs on 2 cores).
    t = []
    for _ in range(repeat):
        t0 = time.thread_time()
        fn()
        t.append(time.thread_time() - t0)
    return 1e3 * float(np.median(t))


def time_people(decoder, n, images, repeat, rng):
    """Mean over ``images`` of the median decode ms of a 640x480 image of ``n`` people."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import reference_decode as R
    from mxpose.targets import render_heatmaps, render_pafs
    skel = decoder.skeleton
    ms = []
    for _ in range(images):
        people = R.synthetic_people(skel, n, 640, 480, rng)
        heat = render_heatmaps(people, (60, 80), 8, 7.0)
        paf = render_pafs(people, skel.limb_index, (60, 80), 8)
        decoder(heat, paf, stride=8)
        ms.append(_median_ms(lambda: decoder(heat, paf, stride=8), repeat))
    return float(np.mean(ms))


def noise_frame(decoder, repeat):
    """(ms, people) on the issue's uniform-noise 640x480 frame (seed 0)."""
    r = np.random.default_rng(0)
    h = r.uniform(0, 1, (19, 60, 80)).astype("f4")
    p = r.uniform(-1, 1, (38, 60, 80)).astype("f4")
    n = len(decoder(h, p, stride=8)[0])
    return _median_ms(lambda: decoder(h, p, stride=8), repeat), n


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Decoder ceiling AP (COCO sample, synthetic crowds; clean/noisy; image "
                    "resolution/boxsize 368) and decode ms, per assembly mode.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--modes", nargs="+", default=["cmu", "crowd"],
                    help="assembly modes, one row each (default: cmu crowd); MODE:N also "
                         "sets the peak cap max_peaks=N (cmu:0 is the decoder before the "
                         "cap)")
    ap.add_argument("--coco", default=os.path.join(ROOT, "..", "shared", "data", "coco_sample"),
                    help="folder with test_coco.json (default ../shared/data/coco_sample; "
                         "skipped when absent)")
    ap.add_argument("--crowd-images", type=int, default=40,
                    help="synthetic crowd images (default 40)")
    ap.add_argument("--noise", type=float, default=0.03, help="noise std (default 0.03)")
    ap.add_argument("--blur", type=float, default=0.5, help="blur sigma, cells (default 0.5)")
    ap.add_argument("--people", type=int, nargs="+", default=[1, 10, 30],
                    help="people per timed image (default 1 10 30)")
    ap.add_argument("--images", type=int, default=5, help="timed images per count (default 5)")
    ap.add_argument("--repeat", type=int, default=20, help="timed runs per image (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    ap.add_argument("--no-ap", action="store_true", help="timings only")
    ap.add_argument("--json", metavar="PATH", help="also write the table as JSON here")
    args = ap.parse_args(argv)

    from mxpose.decode import ASSEMBLY_MODES, Decoder
    decoders = {}
    for spec in args.modes:
        mode, _, cap = spec.partition(":")
        if mode not in ASSEMBLY_MODES or (cap and not cap.isdigit()):
            print(f"error: bad mode {spec!r}; give MODE or MODE:N with MODE in "
                  f"{list(ASSEMBLY_MODES)} and N >= 0 peaks per keypoint", file=sys.stderr)
            return 2
        decoders[spec] = Decoder(NET, assembly=mode, **({"max_peaks": int(cap)} if cap else {}))
    try:
        import cv2
        cv2.setNumThreads(1)
    except ImportError:
        pass
    sets = []
    if not args.no_ap:
        if os.path.isfile(os.path.join(args.coco, "test_coco.json")):
            sets.append(("coco",) + coco_cases(args.coco))
        else:
            print(f"note: no COCO sample at {args.coco}; its columns are skipped")
        if args.crowd_images > 0:
            sets.append(("crowd",) + crowd_cases(args.crowd_images, args.seed))
    conds = [("clean", 0.0, 0.0), ("noisy", args.noise, args.blur)]
    rows = []
    for mode, dec in decoders.items():
        row = {"mode": mode}
        for name, cases, gt in sets:
            for res, box in (("img", None), ("368", 368)):
                for cname, nz, bl in conds:
                    row[f"{name}/{res}/{cname}"] = ceiling_ap(cases, gt, dec, box, nz, bl,
                                                              args.seed)
        rng = np.random.default_rng(args.seed)
        for n in args.people:
            row[f"ms@{n}"] = time_people(dec, n, args.images, args.repeat, rng)
        row["ms@noise"], row["people@noise"] = noise_frame(dec, max(3, args.repeat // 4))
        rows.append(row)
        print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in row.items()), flush=True)

    keys = [k for k in rows[0] if k != "mode"]
    print(f"\nAP columns: set/resolution/maps (noisy: noise {args.noise}, blur {args.blur} "
          f"cells, seed {args.seed}); ms: 640x480, single-thread CPU time, median of "
          f"{args.repeat}")
    print("| mode | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for r in rows:
        cells = [f"{r[k]:.3f}" if k.startswith(("coco", "crowd")) else
                 f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k]) for k in keys]
        print(f"| {r['mode']} | " + " | ".join(cells) + " |")
    if args.json:
        doc = {"benchmark": "ceiling", "threads": 1, "crowd_images": args.crowd_images,
               "noise": args.noise, "blur": args.blur, "seed": args.seed,
               "machine": machine(), "rows": rows}
        return write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
