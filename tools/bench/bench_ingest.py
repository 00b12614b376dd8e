#!/usr/bin/env python
"""Measure ingestion speed (images/s) into the SQLite pose store.

Example::

    python tools/bench/bench_ingest.py --repeat 3 --json bench_ingest.json

What is timed, each into a fresh temporary DB, ``--repeat`` times (the median is reported):

- coco: ``mxpose.data.coco.ingest_coco`` on the real COCO sample (../shared/data/coco_sample)
  replicated ``--coco-copies`` times (symlinked image files under new names, the JSON
  replicated with new ids), for each ``--workers`` value: JSON load + reading + full JPEG
  decode check + RLE conversion + hashing + writing. ``hashing %`` is the share of that
  time spent on provenance hashing (every record's hash, the annotation file's SHA-256,
  the DB content hash), timed in the same run on the records just written.
- synthetic (only if ``mxpose.data.synthetic`` is importable):
  ``synthetic-store``: writing pre-generated synthetic records (store throughput alone);
  ``synthetic-make``: ``make_synthetic_db`` end to end (drawing + JPEG encoding + writing,
  one process).

Timings depend on the machine and the disk; compare numbers from the same machine only.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # _bench_common from anywhere
from _bench_common import write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_SAMPLE = os.path.join(os.environ.get(
    "MXPOSE_SHARED_DATA", os.path.join(os.path.dirname(ROOT), "shared", "data")), "coco_sample")


def build_parser():
    p = argparse.ArgumentParser(prog="bench_ingest.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--coco-sample", default=DEFAULT_SAMPLE, metavar="DIR",
                   help=f"folder with test_coco.json and its images (default {DEFAULT_SAMPLE})")
    p.add_argument("--coco-copies", type=int, default=50, metavar="N",
                   help="replicate the 4-image sample N times (default 50: 200 images)")
    p.add_argument("--workers", default="1,4",
                   help="comma-separated reader thread counts for coco (default 1,4)")
    p.add_argument("--synthetic-images", type=int, default=100, metavar="N",
                   help="synthetic images per run (default 100; 0 skips synthetic)")
    p.add_argument("--repeat", type=int, default=3, help="runs per case (default 3)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    return p


def _replicate_coco(sample: str, copies: int, dst: str) -> str:
    with open(os.path.join(sample, "test_coco.json")) as f:
        data = json.load(f)
    img_dir = os.path.join(dst, "images")
    os.makedirs(img_dir)
    images, anns = [], []
    for c in range(copies):
        for im in data["images"]:
            new_id = len(images) + 1
            name = f"c{c:04d}_{im['file_name']}"
            os.symlink(os.path.abspath(os.path.join(sample, im["file_name"])),
                       os.path.join(img_dir, name))
            images.append(dict(im, id=new_id, file_name=name))
            for a in data["annotations"]:
                if a["image_id"] == im["id"]:
                    anns.append(dict(a, id=len(anns) + 1, image_id=new_id))
    path = os.path.join(dst, "person_keypoints_bench.json")
    with open(path, "w") as f:
        json.dump(dict(data, images=images, annotations=anns), f)
    return path


def _case(name, runs, n_images, total_bytes=None):
    rates = [n_images / t for t in runs]
    out = {"case": name, "images": n_images, "runs_s": [round(t, 4) for t in runs],
           "images_per_s": round(statistics.median(rates), 1)}
    if total_bytes:
        out["MiB_per_s"] = round(total_bytes / 2 ** 20 / statistics.median(runs), 1)
    return out


def bench_coco(sample, copies, workers_list, repeat, tmp):
    from mxpose.data.coco import ingest_coco
    js = _replicate_coco(sample, copies, tmp)
    img_dir = os.path.join(tmp, "images")
    n = 4 * copies
    size = sum(os.path.getsize(os.path.join(img_dir, f)) for f in os.listdir(img_dir))
    results = []
    for workers in workers_list:
        runs, hashing = [], []
        for r in range(repeat):
            out = os.path.join(tmp, f"coco_w{workers}_{r}.db")
            t0 = time.perf_counter()
            s = ingest_coco(js, img_dir, out, workers=workers, progress=False)
            runs.append(time.perf_counter() - t0)
            assert s.written == n, s.lines()
            hashing.append(_hash_seconds(out, js))
            os.remove(out)
        case = _case(f"coco (workers={workers})", runs, n, size)
        case["hashing_percent"] = round(100 * statistics.median(
            h / t for h, t in zip(hashing, runs)), 2)
        results.append(case)
    return results


def _hash_seconds(db_path, annotations) -> float:
    """Seconds of the hashing an ingestion into ``db_path`` did: every record's hash over
    its stored values, the annotation file's SHA-256 and the content hash (records read
    into memory first, so only the hashing is timed)."""
    import sqlite3
    from mxpose.data import store
    from mxpose.provenance import sha256_file
    con = sqlite3.connect(db_path)
    ids = [r[0] for r in con.execute("SELECT id FROM images")]
    recs = [store._stored_record(con, i) for i in ids]
    meta = dict(con.execute("SELECT key, value FROM meta"))
    con.close()
    t0 = time.perf_counter()
    hashes = [store.record_hash(*r) for r in recs]
    sha256_file(annotations)
    store._combine_hashes(sorted(zip((r[0][0] for r in recs), hashes)),
                          json.loads(meta["dataset"]), json.loads(meta["skeleton"]))
    return time.perf_counter() - t0


def bench_synthetic(n, repeat, tmp):
    try:
        from mxpose.data import synthetic
    except ImportError as e:
        print(f"synthetic: skipped ({e})", file=sys.stderr)
        return []
    from mxpose.data.store import PoseDBWriter
    p = dict(synthetic.DEFAULTS)
    q = p.pop("quality")
    records = []
    for i in range(n):
        img, people, regions = synthetic.generate_image(synthetic.image_seed(0, "train", i), **p)
        records.append((f"train/{i:06d}.jpg", synthetic.encode_jpeg(img, q), img.shape[1],
                        img.shape[0], people, regions))
    size = sum(len(r[1]) for r in records)
    store_runs, make_runs = [], []
    for r in range(repeat):
        out = os.path.join(tmp, f"synth_store_{r}.db")
        t0 = time.perf_counter()
        with PoseDBWriter(out, dataset="synthetic", skeleton="coco", tool="bench") as w:
            for name, data, width, height, people, regions in records:
                w.add_image(name, data, width, height, "train", people=people,
                            ignore_rles=regions)
        store_runs.append(time.perf_counter() - t0)
        os.remove(out)
        out = os.path.join(tmp, f"synth_make_{r}.db")
        t0 = time.perf_counter()
        stats = synthetic.make_synthetic_db(out, n, progress=False)
        make_runs.append(time.perf_counter() - t0)
        assert stats["written"] == n, stats
        os.remove(out)
    return [_case("synthetic-store (pre-generated records)", store_runs, n, size),
            _case("synthetic-make (draw + encode + store, 1 process)", make_runs, n)]


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        workers = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        print(f"error: --workers must be comma-separated integers, got {args.workers!r}",
              file=sys.stderr)
        return 2
    if args.repeat < 1 or args.coco_copies < 0 or args.synthetic_images < 0:
        print("error: --repeat must be >= 1 and the counts >= 0", file=sys.stderr)
        return 2
    results = []
    with tempfile.TemporaryDirectory(prefix="mxpose_bench_") as tmp:
        if args.coco_copies:
            if not os.path.isfile(os.path.join(args.coco_sample, "test_coco.json")):
                print(f"error: {args.coco_sample} has no test_coco.json (use --coco-sample, "
                      f"or --coco-copies 0 to skip coco)", file=sys.stderr)
                return 2
            os.makedirs(os.path.join(tmp, "coco"))
            results += bench_coco(args.coco_sample, args.coco_copies, workers, args.repeat,
                                  os.path.join(tmp, "coco"))
        if args.synthetic_images:
            results += bench_synthetic(args.synthetic_images, args.repeat, tmp)
    print(f"{'case':52s} {'images':>6s} {'images/s':>9s} {'MiB/s':>7s} {'hashing %':>9s}")
    for r in results:
        print(f"{r['case']:52s} {r['images']:6d} {r['images_per_s']:9.1f} "
              f"{r.get('MiB_per_s', float('nan')):7.1f} "
              f"{r.get('hashing_percent', float('nan')):9.2f}")
    if args.json:
        info = {"results": results, "cpu_count": os.cpu_count(), "repeat": args.repeat,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        return write_json(args.json, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
