#!/usr/bin/env python
"""Ingest a COCO-format keypoint annotation file and its images into a pose DB.

Example::

    python tools/coco_parse.py --annotations annotations/person_keypoints_train2017.json \\
        --images train2017 --out data/coco_train.db

Any keypoint file in COCO format works (CrowdPose, AI Challenger, animal sets, a labelling
tool's export): the layout is read from the category's 'keypoints' names and stored in the
DB. Names that match a shipped layout (COCO-17, CrowdPose-14, COCO + 6 foot points, ...)
give that layout, whatever the file's own 'skeleton' list says; COCO-WholeBody files and
CMU's 23-point foot files keep the 6 foot points. Otherwise the DB gets a custom layout
named after the file (or --layout-name): limbs from the category's 1-based 'skeleton'
pairs, left/right flip pairs from the names (left_x/right_x, l_x/r_x, "Left X"/"Right X",
any case), OKS sigmas from --sigmas or a default (a warning says which). Train on it with
data.skeleton: auto (experiments/custom_lwpose.yaml).

Every person annotation is stored with its K keypoints exactly as in the JSON (x, y, v;
COCO pixel coordinates are already 0-based), bbox, area, crowd flag and annotation id.
Crowd annotations and people without a labelled keypoint also become "ignore" regions
(COCO RLE), the areas the loss must not penalise (CMU's mask_miss). The original image
bytes are stored untouched after checking that they decode to the size the JSON gives.

Bad records do not stop the run: a malformed annotation (keypoints of the wrong length,
NaN or string coordinates, an unknown image id, an undecodable RLE) is left out (its box,
if usable, becomes an ignore region), a missing/corrupt/truncated image or one of another
size than the JSON says is skipped, and labelled keypoints far outside the image are
warned about. The summary counts each reason and names the first records; the full list
is written to OUT.skipped.json. --strict aborts on the first malformed annotation instead.

Re-running on the same --out resumes: images already stored are skipped, so an interrupted
run (Ctrl-C, kill -9) loses at most the last uncommitted --commit-every images.

Test hook: the environment variable MXPOSE_INGEST_SLEEP=SECONDS makes the tool sleep that
long after each stored image (used by the test that kills an ingestion mid-way).
"""
import argparse
import os
import sys
import time


def build_parser():
    p = argparse.ArgumentParser(
        prog="coco_parse.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotations", required=True, metavar="JSON",
                   help="COCO person keypoints file, e.g. person_keypoints_val2017.json")
    p.add_argument("--images", required=True, metavar="DIR",
                   help="folder with the images named by the JSON's file_name")
    p.add_argument("--out", required=True, metavar="DB",
                   help="pose DB to create or continue")
    p.add_argument("--split", default=None,
                   help="split name stored with every image (default: 'train' if the "
                        "annotation file name contains 'train', 'val' if it contains 'val', "
                        "else 'train')")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N images (in file order) of those with people")
    p.add_argument("--keep-empty", action="store_true",
                   help="also store images without any person annotation (default: skip "
                        "them and report how many)")
    p.add_argument("--workers", type=int, default=4,
                   help="threads that read and decode images ahead of the writer (default 4)")
    p.add_argument("--commit-every", type=int, default=64, metavar="N",
                   help="images per transaction (default 64)")
    p.add_argument("--allow-changed-source", action="store_true",
                   help="continue a DB although the annotation file differs (SHA-256) from "
                        "the one it was started from (default: refuse; the DB records each "
                        "source file's SHA-256 and size)")
    p.add_argument("--layout-name", default=None, metavar="NAME",
                   help="name of a custom layout (default: the file name without split and "
                        "year words, e.g. my_dogs for my_dogs_train2017.json)")
    p.add_argument("--sigmas", default=None, metavar="JSON",
                   help="OKS sigmas of a custom layout: a JSON list (one per keypoint, in the "
                        "file's order) or an object name -> sigma (default: a known body "
                        "keypoint's own sigma, else 0.067, the mean COCO sigma)")
    p.add_argument("--strict", action="store_true",
                   help="abort on the first malformed annotation (default: leave it out, "
                        "count it in the summary and list it in OUT.skipped.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def read_sigmas(path):
    """The --sigmas file: a JSON list or object (None when no path)."""
    from mxpose.data.coco import CocoFormatError
    from mxpose.jsonio import read_json
    if path is None:
        return None
    val = read_json(path, "--sigmas file", CocoFormatError)
    if not isinstance(val, (list, dict)):
        raise CocoFormatError(f"--sigmas {path}: expected a list or an object name -> sigma")
    return val


def main(argv=None):
    args = build_parser().parse_args(argv)
    from mxpose.cli import os_error_message
    from mxpose.data.coco import (CocoFormatError, default_split, ingest_coco,
                                  load_coco_keypoints)
    from mxpose.data.store import PoseDBError
    from mxpose.skeleton import SkeletonError, check_connected

    if args.limit is not None and args.limit < 0:
        print("error: --limit must be >= 0", file=sys.stderr)
        return 2
    split = args.split or default_split(args.annotations)
    sleep = float(os.environ.get("MXPOSE_INGEST_SLEEP", "0") or 0)
    hook = (lambda name: time.sleep(sleep)) if sleep > 0 else None
    provenance = {"annotations": os.path.abspath(args.annotations),
                  "images": os.path.abspath(args.images), "split": split,
                  "limit": args.limit, "keep_empty": args.keep_empty,
                  "layout_name": args.layout_name, "sigmas": args.sigmas}
    try:
        coco = load_coco_keypoints(args.annotations, layout_name=args.layout_name,
                                   sigmas=read_sigmas(args.sigmas), strict=args.strict)
        for w in coco.warnings:
            print(f"warning: {w}", file=sys.stderr)
        try:
            check_connected(coco.layout)
        except SkeletonError as e:
            print(f"warning: {e}; training on this DB needs those limbs", file=sys.stderr)
        summary = ingest_coco(coco, args.images, args.out, split=split,
                              limit=args.limit, keep_empty=args.keep_empty,
                              workers=args.workers, commit_every=args.commit_every,
                              progress=not args.no_progress, args=provenance, on_image=hook,
                              allow_source_change=args.allow_changed_source,
                              strict=args.strict)
    except (CocoFormatError, PoseDBError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {os_error_message(e)}; images stored so far are kept in {args.out}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; images stored so far are kept in {args.out}; re-run the same "
              f"command to continue", file=sys.stderr)
        return 130
    sk = coco.layout
    print(f"{args.out} (split {split!r}, layout {sk.name!r}: {sk.num_keypoints} keypoints, "
          f"{sk.num_limbs} limbs, {len(sk.flip_pairs)} flip pairs):")
    for line in summary.lines():
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
