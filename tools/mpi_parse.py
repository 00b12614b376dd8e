"""Ingest the MPII Human Pose release into a pose DB.

Run from the repository root. With no arguments it reads the release from its documented
place and writes the DB that tools/train.py reads by default (config ``data.db``):

    data/mpii/mpii_human_pose_v1_u12_2/mpii_human_pose_v1_u12_1.mat   (annotations)
    data/mpii/images/                                                  (images)
    -> data/mpii.db
"""
import argparse
import os
import sys
import time

from mxpose.data.mpii import (DEFAULT_ANNOTATIONS, DEFAULT_IMAGES, DEFAULT_OUT, MPII_URL,
                              MPIIError, ingest_mpii)
from mxpose.cli import os_error_message
from mxpose.data.store import PoseDBError

_GET = (f"download mpii_human_pose_v1_u12_2.zip (annotations) and mpii_human_pose_v1.tar.gz "
        f"(images) from {MPII_URL} and unpack them under data/mpii/ (see --help)")

_EPILOG = f"""\
Getting the data ({MPII_URL}):
  mkdir -p data/mpii && cd data/mpii
  unzip mpii_human_pose_v1_u12_2.zip     # -> mpii_human_pose_v1_u12_2/mpii_human_pose_v1_u12_1.mat
  tar xzf mpii_human_pose_v1.tar.gz      # -> images/

Splits: img_train == 1 images are 'train'; --val-fraction and/or --val-list move some of
them to 'val' (deterministic: the same images on every run and machine). img_train == 0
images are 'test' (people with centre and scale, no joints) and are stored only with
--include-test.

Coordinates are stored 0-based (the .mat is 1-based). is_visible 1 -> v=2, 0 -> v=1,
empty -> v=2 (placed but not flagged); absent joints v=0. Images with nobody annotated,
images missing on disk, undecodable or truncated, and malformed records are skipped (the
run goes on; --strict aborts on a malformed record) and labelled joints far outside the
image are warned about: the summary counts each reason and names the first records, and
OUT.skipped.json lists them all. Re-running continues an interrupted run: stored images
are not written again.
"""


def _parser():
    p = argparse.ArgumentParser(
        prog="mpi_parse.py",
        description="Parse the MPII Human Pose release .mat and store its images (original\n"
        "bytes) and people (16 joints, MPII id order) in a SQLite pose DB.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotations", default=DEFAULT_ANNOTATIONS, metavar="MAT",
                   help="the release .mat (default: %(default)s)")
    p.add_argument("--images", default=DEFAULT_IMAGES, metavar="DIR",
                   help="folder with the MPII images (default: %(default)s)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DB",
                   help="pose DB to write or continue (default: %(default)s)")
    p.add_argument("--val-fraction", type=float, default=0.0, metavar="F",
                   help="move this fraction of the training images to split 'val', chosen "
                   "by a seeded hash of the file name (default: 0)")
    p.add_argument("--val-list", metavar="FILE",
                   help="file names (one per line) of training images to put in 'val'")
    p.add_argument("--split-seed", type=int, default=0, metavar="S",
                   help="seed of the --val-fraction hash (default: 0)")
    p.add_argument("--include-test", action="store_true",
                   help="also store the test images (img_train == 0) as split 'test'")
    p.add_argument("--limit", type=int, metavar="N",
                   help="only the first N selected images (a quick try; same ones every run)")
    p.add_argument("--commit-every", type=int, default=64, metavar="N",
                   help="images per transaction (default: %(default)s)")
    p.add_argument("--allow-changed-source", action="store_true",
                   help="continue a DB although the annotation file differs (SHA-256) from "
                        "the one it was started from (default: refuse; the DB records each "
                        "source file's SHA-256 and size)")
    p.add_argument("--strict", action="store_true",
                   help="abort on the first malformed record (default: skip it and list it "
                   "in OUT.skipped.json)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    if not os.path.isfile(args.annotations):
        print(f"error: MPII annotations {args.annotations} not found; {_GET}", file=sys.stderr)
        return 2
    if not os.path.isdir(args.images):
        print(f"error: MPII image folder {args.images} not found; {_GET}", file=sys.stderr)
        return 2
    if args.val_list and not os.path.isfile(args.val_list):
        print(f"error: validation list {args.val_list} not found", file=sys.stderr)
        return 2
    if args.limit is not None and args.limit < 0:
        print("error: --limit must be >= 0", file=sys.stderr)
        return 2
    # Test hook: seconds to sleep after each stored image, so a test can kill a run mid-way.
    delay = float(os.environ.get("MXPOSE_INGEST_SLEEP", "0") or 0)
    on_image = (lambda name: time.sleep(delay)) if delay > 0 else None
    print(f"reading {args.annotations} ...", file=sys.stderr, flush=True)
    try:
        report = ingest_mpii(args.annotations, args.images, args.out,
                             val_fraction=args.val_fraction, val_list=args.val_list,
                             seed=args.split_seed, include_test=args.include_test,
                             limit=args.limit, commit_every=args.commit_every,
                             progress=not args.no_progress, tool="mpi_parse",
                             args=vars(args), on_image=on_image, strict=args.strict,
                             allow_source_change=args.allow_changed_source)
    except (MPIIError, PoseDBError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: {os_error_message(e)}; the images stored so far are kept in "
              f"{args.out}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; the images stored so far are kept in {args.out}, "
              f"re-run to continue", file=sys.stderr)
        return 130
    print(f"{args.out}:")
    for line in report.lines():
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
