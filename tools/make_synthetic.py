#!/usr/bin/env python
"""Generate the synthetic multi-person pose dataset into a pose DB.

Example::

    python tools/make_synthetic.py --out data/synthetic.db --num-images 2000 --val-images 200

Each image holds 1 to --max-people articulated figures (heights 30-90 % of the image,
leaning, turned up to ~45 degrees, overlapping, partly off-image) on a textured background;
each side of an image is drawn in [--min-size, --max-size] pixels. About 10 % of the images
have one unlabelled figure and about 8 % a crowd of small figures; both are stored with
ignore regions, as COCO's unlabelled people and crowds are. With --crowd every image is a
labelled crowd instead: 5-15 people in rows, neighbours overlapping by 30-70 %, occluders
(poles, signs, railings) in front. Keypoints are stored in the
17-point COCO layout, so training reads the DB exactly like a COCO one. With --feet the
figures wear shoes with a heel, a big toe and a small toe (left and right told apart by
the facing, as for the body) and people are stored in the coco_foot layout (COCO's 17
then the 6 foot points, as COCO-WholeBody), the data of experiments/synthetic_body25.yaml.

Image i of a split is train/000123.jpg or val/000123.jpg, drawn from its own seed derived
from --seed, the split and i: the same command always writes the same bytes, and re-running
it on an existing DB only adds the images that are missing (an interrupted run resumes; a
larger --num-images extends the set). Resuming with other generation options is refused.
"""
import argparse
import os
import sys


def build_parser():
    from mxpose.data.synthetic import DEFAULTS
    p = argparse.ArgumentParser(prog="make_synthetic.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", metavar="DB", help="pose DB to write or complete")
    p.add_argument("--coco-dir", metavar="DIR",
                   help="instead of a DB, write COCO-format JSON + JPEGs in a 14-keypoint "
                        "layout (head top + neck instead of the face points) into DIR: "
                        "DIR/synthetic_people_{train,val}.json and DIR/{train,val}/*.jpg, "
                        "a file to try tools/coco_parse.py on (README 'your own keypoints')")
    p.add_argument("--names", choices=("custom", "crowdpose"), default="custom",
                   help="with --coco-dir: keypoint names of the file: 'custom' (Left X / "
                        "Right X, 'crown' for the head top: read as a custom layout) or "
                        "'crowdpose' (CrowdPose's names: recognised as that layout)")
    p.add_argument("--num-images", type=int, required=True, metavar="N",
                   help="number of train images")
    p.add_argument("--val-images", type=int, default=0, metavar="M",
                   help="number of val images (drawn from seeds disjoint from train; default 0)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--min-size", type=int, default=DEFAULTS["min_size"], metavar="PX",
                   help=f"smallest image side (default {DEFAULTS['min_size']})")
    p.add_argument("--max-size", type=int, default=DEFAULTS["max_size"], metavar="PX",
                   help=f"largest image side (default {DEFAULTS['max_size']})")
    p.add_argument("--max-people", type=int, default=DEFAULTS["max_people"], metavar="N",
                   help=f"figures per image are 1..N (default {DEFAULTS['max_people']})")
    p.add_argument("--p-unlabelled", type=float, default=DEFAULTS["p_unlabelled"], metavar="P",
                   help="fraction of images with one unlabelled, masked figure "
                        f"(default {DEFAULTS['p_unlabelled']})")
    p.add_argument("--p-crowd", type=float, default=DEFAULTS["p_crowd"], metavar="P",
                   help=f"fraction of images with a masked crowd (default {DEFAULTS['p_crowd']})")
    p.add_argument("--crowd", action="store_true",
                   help="crowd setting: every image holds 5-15 labelled people in rows, "
                        "neighbours overlapping by 30-70 %%, with occluders in front "
                        "(--max-people is then unused; try --min-size 480 --max-size 640)")
    p.add_argument("--feet", action="store_true",
                   help="draw and label feet (heel, big toe, small toe): people stored in "
                        "the coco_foot layout (COCO-17 + 6 foot points), for body25 "
                        "training")
    p.add_argument("--quality", type=int, default=DEFAULTS["quality"], metavar="Q",
                   help=f"JPEG quality (default {DEFAULTS['quality']})")
    p.add_argument("--workers", type=int, default=1, metavar="W",
                   help="processes drawing images (default 1; the bytes do not depend on it)")
    p.add_argument("--preview", metavar="DIR",
                   help="also write the first 8 train images with their labelled skeletons "
                        "drawn (left green, right red, occluded hollow) as PNGs into DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def write_previews(folder, seed, params, count=8):
    """PNGs of the first ``count`` train images with their keypoints drawn."""
    from mxpose.cli import checked_write
    from mxpose.data.synthetic import draw_keypoints, generate_image, image_seed
    os.makedirs(folder, exist_ok=True)
    gen = {k: v for k, v in params.items() if k != "quality"}
    paths = []
    for i in range(count):
        img, people, _ = generate_image(image_seed(seed, "train", i), **gen)
        path = os.path.join(folder, f"train_{i:06d}.png")
        checked_write(path, draw_keypoints(img, people))
        paths.append(path)
    return paths


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.out is None) == (args.coco_dir is None):
        parser.error("give exactly one of --out DB and --coco-dir DIR")
    if args.num_images < 0 or args.val_images < 0:
        parser.error("--num-images and --val-images must be >= 0")
    if not 16 <= args.min_size <= args.max_size:
        parser.error(f"need 16 <= --min-size <= --max-size, got {args.min_size}, {args.max_size}")
    if args.max_people < 1:
        parser.error("--max-people must be >= 1")
    for name in ("p_unlabelled", "p_crowd"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('_', '-')} must be in [0, 1]")
    if not 1 <= args.quality <= 100:
        parser.error("--quality must be in [1, 100]")
    if args.workers < 1:
        parser.error("--workers must be >= 1")

    from mxpose.data.store import PoseDBError
    from mxpose.data.synthetic import make_synthetic_db

    params = {"min_size": args.min_size, "max_size": args.max_size,
              "max_people": args.max_people, "p_unlabelled": args.p_unlabelled,
              "p_crowd": args.p_crowd, "quality": args.quality, "crowd": args.crowd,
              "feet": args.feet}
    if args.coco_dir:
        from mxpose.data.synthetic import write_synthetic_coco
        s = write_synthetic_coco(args.coco_dir, args.num_images, args.val_images,
                                 seed=args.seed, names=args.names,
                                 progress=not args.no_progress, **params)
        print(f"{args.coco_dir}: {s['images']} images, {s['people']} labelled people; "
              f"annotations {', '.join(s['json'].values())}")
        return 0
    provenance = {"num_images": args.num_images, "val_images": args.val_images,
                  "seed": args.seed, **params}
    try:
        s = make_synthetic_db(args.out, args.num_images, args.val_images, seed=args.seed,
                              workers=args.workers, progress=not args.no_progress,
                              args=provenance, **params)
    except PoseDBError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; images stored so far are kept in {args.out}; re-run the same "
              f"command to continue", file=sys.stderr)
        return 130
    rate = s["written"] / s["seconds"] if s["seconds"] > 0 else 0.0
    print(f"{args.out}:")
    print(f"  written {s['written']} images (train {s['per_split']['train']}, "
          f"val {s['per_split']['val']}) in {s['seconds']:.1f} s ({rate:.0f} images/s)")
    print(f"  skipped {s['skipped']} images already stored")
    print(f"  new people: {s['people']} labelled ({s['keypoints']} labelled keypoints), "
          f"{s['unlabelled']} unlabelled, {s['crowd']} crowds")
    print(f"  size {os.path.getsize(args.out) / 1e6:.1f} MB")
    if args.preview:
        paths = write_previews(args.preview, args.seed, params)
        print(f"  previews: {len(paths)} PNGs in {args.preview}")
    return 0


if __name__ == "__main__":
    from mxpose.cli import run_main
    sys.exit(run_main(main))
