"""Benchmark the training-data pipeline: one sample, its stages, and the loader.

Single-threaded (OMP/MKL/OpenBLAS threads and OpenCV set to 1 before anything is
imported), median over repeats, the config's crop size (368 by default):

* full sample: ``PoseDataset.get`` = DB read + JPEG decode (reduced when the drawn scale
  allows) + augmentation (one warp) + ground truth + loss masks + normalisation;
* its stages, timed separately on the same samples and seeds;
* loader throughput: ``make_loader`` with N worker processes, batch B (samples/s).

By default it builds a DB from the real COCO sample (../shared/data/coco_sample: four
640x4xx val2017 images, 12 main-person samples) in a temporary folder; ``--db`` uses
another DB. Example::

    python tools/bench/bench_pipeline.py --json bench_pipeline.json
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_v] = "1"   # before numpy/mxnet/cv2 start their thread pools

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _bench_common from anywhere
from _bench_common import write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COCO_SAMPLE = os.path.join(os.path.dirname(ROOT), "shared", "data", "coco_sample")


def _median_ms(ts):
    import numpy as np
    return float(np.median(ts) * 1e3)


def keep_heap():
    """Keep freed memory in the heap (glibc), as the loader's worker processes do."""
    from mxpose.data.loader import tune_worker_malloc
    return tune_worker_malloc()


def bench_sample(ds, repeats: int, seed: int):
    """Median ms of the full sample and of each stage, on the same (index, seed) list."""
    import numpy as np
    from mxpose.data.transforms import normalize_image
    n = len(ds)
    jobs = [(k % n, seed + k) for k in range(repeats)]
    for j, s in jobs[: min(n, 8)]:            # warm up: renderer, buffers, DB pages
        ds.get(j, s)
    full = []
    stages = {k: [] for k in ("read", "decode", "warp", "targets", "masks", "normalise")}
    reduced = with_mask = people = 0
    r = ds.renderer
    crop = ds._crop_buffer()
    for j, s in jobs:   # the full sample and its stages, alternately, under equal conditions
        t = time.perf_counter()
        ds.get(j, s)
        full.append(time.perf_counter() - t)
        t0 = time.perf_counter()
        st = ds._prepare(j, np.random.default_rng(s))
        t1 = time.perf_counter()
        img, pre, channels, red = ds._decode(st)
        t2 = time.perf_counter()
        out = ds.augmenter.apply(st["M"], st["flipped"], st["params"], img, st["keypoints"],
                                 None, pre, image_out=crop)
        t3 = time.perf_counter()
        hm, paf = r.render_maps(out["keypoints"], out=(np.empty_like(r.heatmaps),
                                                       np.empty_like(r.pafs)))
        t4 = time.perf_counter()
        sub, off = ds._ignore(st)
        sup = None
        if sub is not None:
            sup = ds.augmenter.apply(st["M"], False, st["params"], img[:1, :1],
                                     st["keypoints"][:0], sub, None, off)["supervise"]
        r.render_mask(sup, out=np.empty((1,) + r.out_shape, dtype=np.float32))
        t5 = time.perf_counter()
        normalize_image(out["image"], channels=channels)
        t6 = time.perf_counter()
        for k, a, b in (("read", t0, t1), ("decode", t1, t2), ("warp", t2, t3),
                        ("targets", t3, t4), ("masks", t4, t5), ("normalise", t5, t6)):
            stages[k].append(b - a)
        reduced += red > 1
        with_mask += sup is not None
        people += int((st["keypoints"][..., 2] > 0).any(-1).sum())
    res = {"full_ms": _median_ms(full), "full_p90_ms": float(np.percentile(full, 90) * 1e3)}
    res.update({f"{k}_ms": _median_ms(v) for k, v in stages.items()})
    res["stage_sum_ms"] = sum(res[f"{k}_ms"] for k in stages)
    res.update(samples=len(jobs), reduced_decode_fraction=reduced / len(jobs),
               mask_in_crop_fraction=with_mask / len(jobs), mean_people=people / len(jobs))
    return res


def bench_loader(ds, workers: int, batch: int, batches: int, thread_pool: bool = False):
    """Samples/s of make_loader over ``batches`` batches (after one warm-up batch)."""
    import numpy as np
    from mxpose.data.loader import make_loader
    reps = -(-(batches + 1) * batch // len(ds))
    ds.index = np.tile(ds.index, (reps, 1))   # a long epoch over the same samples
    loader = make_loader(ds, batch, shuffle=True, num_workers=workers, last_batch="discard",
                         thread_pool=thread_pool)
    try:
        it = iter(loader)
        next(it)
        t = time.perf_counter()
        n = 0
        for _ in range(batches):
            b = next(it)
            b[0].wait_to_read()
            n += b[0].shape[0]
        dt = time.perf_counter() - t
    finally:
        loader.close()
    return {"workers": workers, "batch": batch, "thread_pool": thread_pool, "samples": n,
            "samples_per_s": n / dt}


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Time the training-data pipeline (decode + augmentation + ground truth "
                    "+ masks + normalisation) single-threaded, and the loader's throughput.")
    p.add_argument("--db", help="pose DB to read (default: built from the real COCO sample "
                                f"in {COCO_SAMPLE})")
    p.add_argument("--split", default=None, help="split (default: train, or the COCO "
                                                 "sample's only split)")
    p.add_argument("--config", help="experiment YAML (default: the default config with "
                                    "skeleton openpose_coco18)")
    p.add_argument("--repeats", type=int, default=300, help="samples timed (default 300)")
    p.add_argument("--workers", type=int, default=2, help="loader workers (default 2)")
    p.add_argument("--batch", type=int, default=8, help="loader batch size (default 8)")
    p.add_argument("--batches", type=int, default=30, help="loader batches timed (default 30)")
    p.add_argument("--no-loader", action="store_true", help="skip the loader benchmark")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = p.parse_args(argv)

    import cv2
    cv2.setNumThreads(1)
    from mxpose.config import ConfigError, default_config, load_config
    from mxpose.data.dataset import PoseDataset
    from mxpose.data.store import PoseDBError

    try:
        cfg = load_config(args.config) if args.config else default_config()
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not args.config:
        cfg.data.skeleton = "openpose_coco18"
    tmp = None
    db, split = args.db, args.split
    if db is None:
        ann = os.path.join(COCO_SAMPLE, "test_coco.json")
        if not os.path.isfile(ann):
            print(f"error: {ann} not found; pass --db", file=sys.stderr)
            return 2
        from mxpose.data.coco import ingest_coco
        tmp = tempfile.TemporaryDirectory()
        db = os.path.join(tmp.name, "coco_sample.db")
        ingest_coco(ann, COCO_SAMPLE, db, split="train", progress=False)
        split = split or "train"
    try:
        ds = PoseDataset(db, split or cfg.data.train_split, config=cfg, seed=args.seed)
    except (PoseDBError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    size = int(cfg.aug.input_size)
    print(f"DB {db if args.db else 'COCO sample (' + COCO_SAMPLE + ')'}: {len(ds)} samples, "
          f"skeleton {ds.skeleton.name}, crop {size}x{size}, stride {cfg.targets.stride}, "
          f"mode {cfg.targets.mode}; 1 thread, median of {args.repeats}")
    result = {"db": db if args.db else "coco_sample", "input_size": size,
              "skeleton": ds.skeleton.name, "mode": cfg.targets.mode, "threads": 1}
    result["sample"] = bench_sample(ds, args.repeats, args.seed)
    keep_heap()
    result["sample_keep_heap"] = bench_sample(ds, args.repeats, args.seed + 10 ** 6)

    a, b = result["sample"], result["sample_keep_heap"]
    print(f"\n{'ms per sample':<34}{'median':>10}{'p90':>10}")
    print(f"{'full sample, plain process':<34}{a['full_ms']:>10.3f}{a['full_p90_ms']:>10.3f}")
    print(f"{'full sample, loader worker':<34}{b['full_ms']:>10.3f}{b['full_p90_ms']:>10.3f}")
    print("stages (loader worker):")
    for label, key in (("read (DB, affine)", "read"), ("decode", "decode"),
                       ("warp (image, keypoints)", "warp"),
                       ("targets (heatmaps, PAFs)", "targets"), ("masks", "masks"),
                       ("normalise", "normalise"), ("sum of stages", "stage_sum")):
        print(f"  {label:<32}{b[key + '_ms']:>10.3f}")
    print(f"{'decoded at reduced size':<34}{b['reduced_decode_fraction']:>10.0%}")
    print(f"{'ignore region in the crop':<34}{b['mask_in_crop_fraction']:>10.0%}")
    print(f"{'labelled people per sample':<34}{b['mean_people']:>10.2f}")
    print("(loader worker: freed memory kept in the heap, as make_loader's worker processes "
          "do; a plain process page-faults fresh sample buffers in, see mxpose.data.loader)")

    if not args.no_loader:
        from tqdm import tqdm
        runs = [(args.workers, False), (args.workers, True), (0, False)]
        result["loader"] = []
        for w, tp in tqdm(runs, desc="loader", leave=False):
            ds_l = PoseDataset(db, ds.split, config=cfg, seed=args.seed)
            result["loader"].append(bench_loader(ds_l, w, args.batch, args.batches, tp))
        print(f"\n{'loader (batch ' + str(args.batch) + ')':<30}{'samples/s':>15}")
        for r in result["loader"]:
            kind = ("in-process" if r["workers"] == 0 else
                    f"{r['workers']} {'threads' if r['thread_pool'] else 'processes'}")
            print(f"{kind:<30}{r['samples_per_s']:>15.1f}")
    rc = 0
    if args.json:
        print()
        rc = write_json(args.json, result)
    if tmp is not None:
        tmp.cleanup()
    return rc


if __name__ == "__main__":
    sys.exit(main())
