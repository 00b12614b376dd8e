#!/usr/bin/env python
"""Describe a pose DB, and optionally check every record in it.

Example::

    python tools/db_info.py data/coco_train.db            # counts, skeleton, provenance
    python tools/db_info.py data/coco_train.db --check    # also decode and validate all
    python tools/db_info.py data/coco_train.db --verify   # recompute the content hash

Prints the dataset, schema version, skeleton (name, keypoint and limb count), the tool and
arguments that created the DB, the file size, and per split: images, people, crowd
annotations, labelled keypoints and ignore regions.

--check decodes every image the way the training loader does and validates every record:
decoded size equals the stored width/height; keypoints have the skeleton's shape, are
finite, have v in {0, 1, 2} and lie within a generous margin of the image; ignore regions
are RLEs of the image's size whose runs cover exactly its pixels; and SQLite's
PRAGMA integrity_check is ok. Each problem is printed with the image's file name and the
record.

--verify recomputes the hash of every stored record (image bytes, people, ignore regions)
and the DB's content hash, and compares them with those recorded at ingestion: a flipped
byte or a changed keypoint is reported with the image's file name. The content hash and
the SHA-256 of the source annotation files are printed in any case; evaluation cards and
checkpoints name a DB by that hash.

Exit status: 0 ok, 1 problems found, 2 not a pose DB / bad usage.
"""
import argparse
import json
import os
import sys


def build_parser():
    p = argparse.ArgumentParser(prog="db_info.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("db", metavar="DB", help="pose DB file (.db)")
    p.add_argument("--check", action="store_true",
                   help="decode every image and validate every record (slow on big DBs)")
    p.add_argument("--verify", action="store_true",
                   help="recompute every record's hash and the DB's content hash and compare "
                        "them with those recorded at ingestion")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--max-problems", type=int, default=50, metavar="N",
                   help="print at most N problems in text mode (default 50; all are counted)")
    p.add_argument("--workers", type=int, default=4,
                   help="threads decoding images for --check (default 4)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def describe(db) -> dict:
    """Counts and provenance of a :class:`PoseDB` as a JSON-able dict."""
    meta = db.meta
    per_split = db.stats()
    keys = ("images", "people", "crowd", "keypoints_labelled", "ignore_regions")
    total = {k: sum(int(s[k]) for s in per_split.values()) for k in keys}
    return {"path": db.path, "file_size": os.path.getsize(db.path), "dataset": db.dataset,
            "schema_version": meta.get("schema_version"),
            "skeleton": {"name": db.skeleton.name, "num_keypoints": db.skeleton.num_keypoints,
                         "num_limbs": db.skeleton.num_limbs,
                         "keypoints": list(db.skeleton.keypoints),
                         "flip_pairs": [list(p) for p in db.skeleton.flip_pairs]},
            "created_by": meta.get("created_by"), "created_args": meta.get("created_args"),
            "runs": meta.get("runs", []), "content_hash": db.content_hash,
            "sources": db.sources, "splits": per_split, "total": total}


def check_image(db, image_id: int) -> list:
    """Problems of one image record, as strings naming the file and the record."""
    import numpy as np
    from mxpose.data.coco import rle_run_lengths
    from mxpose.data.ingest import far_outside
    from mxpose.data.store import PoseDBError

    problems = []
    info = db.image_info(image_id)
    w, h = info["width"], info["height"]
    where = f"{info['file_name']} (image id {image_id})"
    try:
        img = db.load_image(image_id)
        if img.shape[:2] != (h, w):
            problems.append(f"{where}: decodes to {img.shape[1]}x{img.shape[0]}, "
                            f"stored size {w}x{h}")
    except PoseDBError as e:
        why = str(e).split("cannot be decoded: ", 1)[-1]
        problems.append(f"{where}: image bytes cannot be decoded ({why})")
    try:
        people = db.people(image_id)
    except PoseDBError as e:
        problems.append(f"{where}: {e}")
        people = None
    if people is not None:
        K = db.skeleton.num_keypoints
        kp = people["keypoints"]
        for i in range(kp.shape[0]):
            who = f"{where}, person {i} (source id {people['source_id'][i]})"
            k = kp[i]
            if k.shape != (K, 3):
                problems.append(f"{who}: keypoints shape {k.shape}, expected ({K}, 3)")
                continue
            if not np.all(np.isfinite(k)):
                problems.append(f"{who}: keypoints contain NaN or inf")
                continue
            bad_v = sorted(set(np.unique(k[:, 2]).tolist()) - {0.0, 1.0, 2.0})
            if bad_v:
                problems.append(f"{who}: visibility values {bad_v} not in {{0, 1, 2}}")
            out = far_outside(k, w, h)
            if np.any(out):
                x, y = k[out][0, :2]
                problems.append(f"{who}: {int(out.sum())} keypoints far outside the "
                                f"{w}x{h} image, e.g. ({x:.1f}, {y:.1f})")
            box = people["bbox"][i]
            if np.all(np.isfinite(box)) and (box[2] < 0 or box[3] < 0):
                problems.append(f"{who}: negative bbox size {box.tolist()}")
    for j, r in enumerate(db.ignore_rles(image_id)):
        who = f"{where}, ignore region {j} ({r.get('reason')})"
        rh, rw = (int(v) for v in r["size"])
        if (rh, rw) != (h, w):
            problems.append(f"{who}: RLE size {rw}x{rh} on a {w}x{h} image")
            continue
        try:
            total = sum(rle_run_lengths(r["counts"]))
        except ValueError as e:
            problems.append(f"{who}: bad RLE counts: {e}")
            continue
        if total != h * w:
            problems.append(f"{who}: RLE covers {total} pixels, the image has {h * w}")
    return problems


def check(db, progress: bool = True, workers: int = 4) -> list:
    """All problems of a DB: every image record, then SQLite's integrity check."""
    from concurrent.futures import ThreadPoolExecutor
    ids = [int(i) for i in db.image_ids()]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(ids), unit="img", desc="check", dynamic_ncols=True)
    problems = []
    # PoseDB opens one connection per thread and OpenCV decodes without the GIL.
    with ThreadPoolExecutor(max(1, workers)) as ex:
        for found in ex.map(lambda i: check_image(db, i), ids):
            problems.extend(found)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    integrity = db.integrity_check()
    if integrity != "ok":
        problems.append(f"{db.path}: PRAGMA integrity_check: {integrity}")
    return problems


def _verify_problems(db, ver: dict) -> list:
    """--verify's findings as problem lines naming the records."""
    out = [f"{name}: stored record differs from the hash recorded at ingestion (image bytes "
           f"or annotations changed)" for name in ver["mismatched"]]
    if ver["content_hash"] is not None and ver["content_hash"] != ver["recomputed"]:
        out.append(f"{db.path}: content hash is {ver['recomputed']}, ingestion recorded "
                   f"{ver['content_hash']}")
    return out


def _print_text(info: dict):
    mb = info["file_size"] / 2 ** 20
    sk = info["skeleton"]
    print(f"{info['path']}  ({mb:.2f} MiB)")
    print(f"  dataset: {info['dataset']}   schema version: {info['schema_version']}")
    print(f"  skeleton: {sk['name']} ({sk['num_keypoints']} keypoints, {sk['num_limbs']} limbs)")
    if "keypoints" in sk:
        print(f"    keypoints: {', '.join(sk['keypoints'])}")
        print(f"    flip pairs: {len(sk['flip_pairs'])}"
              + "".join(f", {a}/{b}" for a, b in sk["flip_pairs"][:4])
              + (", ..." if len(sk["flip_pairs"]) > 4 else ""))
    print(f"  created by: {info['created_by']} {json.dumps(info['created_args'])}")
    print("  content hash: " + (info["content_hash"] or
                                "not recorded (DB written before mxpose hashed its records)"))
    for role, src in info["sources"].items():
        print(f"  {role}: {src.get('path')} (sha256 {src.get('sha256')}, {src.get('size')} bytes)")
    if len(info["runs"]) > 1:
        last = info["runs"][-1]
        print(f"  runs: {len(info['runs'])} (last: {last.get('tool')} at {last.get('time')})")
    cols = ("images", "people", "crowd", "keypoints_labelled", "ignore_regions")
    head = ("split", "images", "people", "crowd", "keypoints", "ignore regions")
    rows = [(s, *(d[c] for c in cols)) for s, d in info["splits"].items()]
    rows.append(("total", *(info["total"][c] for c in cols)))
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  " + "  ".join(str(v).rjust(wd) if i else str(v).ljust(wd)
                               for i, (v, wd) in enumerate(zip(r, widths))))


def main(argv=None):
    args = build_parser().parse_args(argv)
    from mxpose.data.store import PoseDB, PoseDBError

    try:
        db = PoseDB(args.db)
        info = describe(db)
    except PoseDBError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    problems = None
    if args.check:
        problems = check(db, progress=not args.no_progress, workers=args.workers)
        info["check"] = {"ok": not problems, "problems": problems}
    if args.verify:
        ver = db.verify(progress=not args.no_progress)
        info["verify"] = ver
        problems = (problems or []) + _verify_problems(db, ver)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_text(info)
        if args.verify and info["verify"]["ok"]:
            v = info["verify"]
            print(f"  verify: ok ({v['images']} records, content hash {v['recomputed']}"
                  + (f"; {v['unhashed']} records predate hashing" if v["unhashed"] else "")
                  + ")")
        if problems is not None:
            if not problems:
                if args.check:
                    print(f"  check: ok ({info['total']['images']} images decoded, "
                          f"integrity ok)")
            else:
                print(f"  {'check' if args.check else 'verify'}: {len(problems)} problems")
                for p in problems[:args.max_problems]:
                    print("    " + p)
                if len(problems) > args.max_problems:
                    print(f"    ... {len(problems) - args.max_problems} more (--json lists all)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
