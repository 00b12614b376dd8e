#!/usr/bin/env python
"""Run a trained pose network on images, a video or a camera and draw the skeletons.

With no input flag the demo runs on the first --num images of the experiment DB's
validation split (data.db / data.val_split of the run's config), so right after
`python tools/train.py` the command `python tools/demo.py --epoch 8600` works as is.
Checkpoint 8600 means the weights saved after 8600 training ITERATIONS
(<prefix>-8600.params, the prefix that tools/train.py writes for the experiment).

Output: annotated images (or an annotated .avi for --video/--camera) in --out, optional
JSON of the poses (--json), and the frames per second of the network and of the decoder.

Examples:
  python tools/demo.py --epoch 8600
  python tools/demo.py --epoch 8600 --image street.jpg --flip --scales 0.5,1,1.5,2
  python tools/demo.py -c experiments/cpm_vgg19_coco.yaml --weights pose_iter_440000.params \\
      --video dance.mp4 --out demo_out
"""
import argparse
import glob
import json
import os
import sys
import time

from mxpose.cli import (CLIError, add_checkpoint_args, add_predictor_args, check_output_file,
                        check_video_written, checked_video_writer, checked_write,
                        load_predictor, run_main, use_all_cores)

use_all_cores()   # before mxnet is imported

_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def build_parser():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_checkpoint_args(p)
    add_predictor_args(p)
    src = p.add_argument_group("input (default: images of the experiment DB's val split)")
    x = src.add_mutually_exclusive_group()
    x.add_argument("--image", help="one image file")
    x.add_argument("--images", help="a folder of images")
    x.add_argument("--video", help="a video file")
    x.add_argument("--camera", type=int, default=None, help="camera index, e.g. 0")
    src.add_argument("--db", default=None,
                     help="with no input flag: take images from this pose DB's val split "
                          "(default: the experiment's data.db)")
    src.add_argument("--num", type=int, default=8, help="images taken from the DB (default 8)")
    src.add_argument("--max-frames", type=int, default=0,
                     help="stop a video/camera after N frames (0 = all)")
    o = p.add_argument_group("output")
    o.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    o.add_argument("--json", default=None, help="also write all poses to this JSON file")
    o.add_argument("--min-score", type=float, default=0.0,
                   help="draw only keypoints with a peak value above this")
    return p


def _inputs(args, cfg):
    """Yield (name, BGR image) and say whether the output is a video."""
    import cv2
    from mxpose.data.image import ImageDecodeError, read_image
    if args.image:
        if not os.path.isfile(args.image):
            raise CLIError(f"image {args.image} does not exist")
        return [(os.path.basename(args.image), read_image(args.image))], None
    if args.images:
        if not os.path.isdir(args.images):
            raise CLIError(f"image folder {args.images} does not exist")
        files = sorted(f for f in glob.glob(os.path.join(args.images, "*"))
                       if f.lower().endswith(_IMAGE_EXT))
        if not files:
            raise CLIError(f"no images ({', '.join(_IMAGE_EXT)}) in {args.images}")

        def gen():
            for f in files:
                try:
                    img = read_image(f)
                except (OSError, ImageDecodeError) as e:
                    print(f"skipping unreadable image {f}: {e}", file=sys.stderr)
                    continue
                yield os.path.basename(f), img
        return gen(), None
    if args.video is not None or args.camera is not None:
        src = args.video if args.video is not None else args.camera
        if args.video is not None and not os.path.isfile(args.video):
            raise CLIError(f"video file {args.video} does not exist")
        cap = cv2.VideoCapture(src)
        if not cap.isOpened():
            raise CLIError(f"cannot open {'video ' + args.video if args.video else 'camera %d' % args.camera}")
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0

        def gen():
            n = 0
            while True:
                ok, frame = cap.read()
                if not ok or (args.max_frames and n >= args.max_frames):
                    break
                yield f"frame_{n:06d}", frame
                n += 1
            cap.release()
        return gen(), fps
    # default: the experiment's own validation images
    from mxpose.data.store import PoseDB
    path = args.db or cfg.data.db
    db = PoseDB(path)
    split = cfg.data.val_split if cfg.data.val_split in db.splits() else next(iter(db.splits()))
    ids = db.image_ids(split)[:args.num]
    print(f"no input given: using {len(ids)} images of split {split!r} of {path}")
    return ((os.path.basename(db.image_info(int(i))["file_name"]), db.load_image(int(i)))
            for i in ids), None


def main(argv=None):
    args = build_parser().parse_args(argv)
    from mxpose.viz import draw_people
    check_output_file(args.json, "--json")
    cfg, prefix, it, pred = load_predictor(args)
    frames, fps = _inputs(args, cfg)
    os.makedirs(args.out, exist_ok=True)
    writer = None
    poses = []
    n = 0
    t0 = time.perf_counter()
    for name, img in frames:
        people, scores = pred(img)
        vis = draw_people(img, people, pred.skeleton, min_score=args.min_score)
        if fps is None:
            checked_write(os.path.join(args.out, os.path.splitext(name)[0] + ".jpg"), vis)
        else:
            if writer is None:
                path = os.path.join(args.out, "demo.avi")
                writer = checked_video_writer(path, fps, (vis.shape[1], vis.shape[0]))
            writer.write(vis)
        poses.append({"name": name, "people": people.round(2).tolist(),
                      "scores": [round(float(s), 4) for s in scores]})
        n += 1
        print(f"{name}: {len(scores)} people")
    if writer is not None:
        writer.release()
        check_video_written(path)
    if n == 0:
        raise CLIError("no frame was read from the input")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"skeleton": pred.skeleton.to_dict(), "frames": poses}, f)
    f = pred.fps()
    wall = time.perf_counter() - t0
    print(f"{n} frames -> {args.out}: network {f['net_fps']:.2f} FPS, decode "
          f"{f['decode_fps']:.1f} FPS, overall {n / wall:.2f} FPS")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
