#!/usr/bin/env python
"""Run a trained pose network on images, a video or a camera and draw the skeletons.

With no input flag the demo runs on the first --num images of the experiment DB's
validation split (data.db / data.val_split of the run's config), so right after
`python tools/train.py` the command `python tools/demo.py --epoch 8600` works as is.
Checkpoint 8600 means the weights saved after 8600 training ITERATIONS
(<prefix>-8600.params, the prefix that tools/train.py writes for the experiment).

Engines: --engine mxnet (default) runs the checkpoint in MXNet; --engine onnx runs it in
onnxruntime, usually 1.5-2.5x faster on a CPU. With a checkpoint, the onnx engine first
exports it once to onnx_cache/ beside the weights (--onnx-cache; this step needs MXNet
and the onnx package) and reuses that file until the weights change. --exported X runs
the files tools/export.py wrote for prefix X (X.onnx: no MXNet needed at all; the
-symbol.json/.params pair with --engine mxnet).

Frames are read, resized, run through the network and decoded + drawn in separate
threads at the same time, so a video runs at the speed of the network alone; with the
onnx engine the network itself runs on --net-workers frames side by side (default 2 on
a CPU with 2 or more cores: two single-threaded runs got through 1.3-1.4x the frames of
one run on two threads end to end at 256x456, measured on 2 cores), the results kept in
order.
Video and camera input run without test-time flipping unless --flip is given (it
doubles the network's work for a small accuracy gain); images follow the config's
test.flip. Output: annotated images
(or an annotated .avi for --video/--camera) in --out, optional JSON of the poses
(--json), and the frames per second of each part and of the whole.

--track gives each person an id that stays the same across frames (greedy OKS matching
with the previous frames; a person unseen for up to --patience frames keeps the id);
ids are drawn and written to the JSON. --smooth filters the keypoints over time with
the one-euro filter (--smooth-cutoff Hz for still keypoints, --smooth-beta to follow
motion: see mxpose.track.PoseSmoother).

Examples:
  python tools/demo.py --epoch 8600
  python tools/demo.py --epoch 8600 --image street.jpg --flip --scales 0.5,1,1.5,2
  python tools/demo.py --epoch 8600 --engine onnx --video dance.mp4 --track --smooth
  python tools/demo.py --exported export/lw --video dance.mp4 --boxsize 256 --json p.json
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
                        load_exported_predictor, load_onnx_predictor, load_predictor, run_main,
                        use_all_cores, usable_cores)

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
    e = p.add_argument_group("engine")
    e.add_argument("--engine", choices=("mxnet", "onnx"), default=None,
                   help="mxnet or onnx (onnxruntime); default mxnet, or onnx for an "
                        "--exported X that has X.onnx")
    e.add_argument("--exported", default=None, metavar="X",
                   help="run the export X of tools/export.py (X, X.onnx or X-meta.json) "
                        "instead of a checkpoint")
    e.add_argument("--net-workers", type=int, default=None, metavar="N",
                   help="onnx engine: run the network on N frames at once, each with "
                        "cores/N onnxruntime threads (default: 2 for a video/camera on a "
                        "CPU with >= 2 cores, else 1); the mxnet engine always uses 1")
    e.add_argument("--onnx-cache", default=None, metavar="DIR",
                   help="where --engine onnx keeps the export of a checkpoint (default: "
                        "onnx_cache/ beside the checkpoint or --weights file)")
    t = p.add_argument_group("video: tracking and smoothing")
    t.add_argument("--track", action="store_true",
                   help="give each person an id kept across frames (drawn, and in --json)")
    t.add_argument("--patience", type=int, default=8,
                   help="frames a person may be missed and keep the id (default 8)")
    t.add_argument("--smooth", action="store_true",
                   help="one-euro filter the keypoints over time (implies --track)")
    t.add_argument("--smooth-cutoff", type=float, default=1.0,
                   help="cutoff (Hz) of a still keypoint: lower removes more jitter "
                        "(default 1.0)")
    t.add_argument("--smooth-beta", type=float, default=4.0,
                   help="how fast the cutoff rises with speed (per person height per "
                        "second): higher lags less behind motion (default 4.0)")
    o = p.add_argument_group("output")
    o.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    o.add_argument("--json", default=None, help="also write all poses to this JSON file")
    o.add_argument("--min-score", type=float, default=0.0,
                   help="draw only keypoints with a peak value above this")
    return p


def _is_stream(args) -> bool:
    """A video file or a camera (rather than images)."""
    return args.video is not None or args.camera is not None


def _inputs(args, cfg):
    """The frames ``(name, BGR image, time in s)`` and the video's frame rate (None for
    images)."""
    import cv2
    from mxpose.data.image import ImageDecodeError, read_image
    if args.image:
        if not os.path.isfile(args.image):
            raise CLIError(f"image {args.image} does not exist")
        return [(os.path.basename(args.image), read_image(args.image), 0.0)], None
    if args.images:
        if not os.path.isdir(args.images):
            raise CLIError(f"image folder {args.images} does not exist")
        files = sorted(f for f in glob.glob(os.path.join(args.images, "*"))
                       if f.lower().endswith(_IMAGE_EXT))
        if not files:
            raise CLIError(f"no images ({', '.join(_IMAGE_EXT)}) in {args.images}")

        def gen():
            for n, f in enumerate(files):
                try:
                    img = read_image(f)
                except (OSError, ImageDecodeError) as e:
                    print(f"skipping unreadable image {f}: {e}", file=sys.stderr)
                    continue
                yield os.path.basename(f), img, n / 25.0   # a folder of frames: 25 fps
        return gen(), None
    if _is_stream(args):
        src = args.video if args.video is not None else args.camera
        if args.video is not None and not os.path.isfile(args.video):
            raise CLIError(f"video file {args.video} does not exist")
        cap = cv2.VideoCapture(src)
        if not cap.isOpened():
            raise CLIError(f"cannot open {'video ' + args.video if args.video else 'camera %d' % args.camera}")
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0

        def gen():
            n, t0 = 0, time.monotonic()
            try:
                while not (args.max_frames and n >= args.max_frames):
                    ok, frame = cap.read()
                    if not ok:
                        break
                    # a camera's frames are timed by the clock, a file's by its frame rate
                    t = time.monotonic() - t0 if args.video is None else n / fps
                    yield f"frame_{n:06d}", frame, t
                    n += 1
            finally:
                cap.release()
        return gen(), fps
    # default: the experiment's own validation images
    from mxpose.data.store import PoseDB
    if args.db is None and cfg is None:
        raise CLIError("with --exported give an input (--image, --images, --video, --camera) "
                       "or a pose DB (--db)")
    path = args.db or cfg.data.db
    db = PoseDB(path)
    val = cfg.data.val_split if cfg is not None else "val"
    split = val if val in db.splits() else next(iter(db.splits()))
    ids = db.image_ids(split)[:args.num]
    print(f"no input given: using {len(ids)} images of split {split!r} of {path}")
    return ((os.path.basename(db.image_info(int(i))["file_name"]), db.load_image(int(i)), 0.0)
            for i in ids), None


def _net_workers(args, engine: str) -> int:
    """How many frames the network runs on at once (see --net-workers)."""
    if args.net_workers is not None:
        if args.net_workers < 1:
            raise CLIError(f"--net-workers must be >= 1, got {args.net_workers}")
        if args.net_workers > 1 and engine != "onnx":
            raise CLIError("--net-workers above 1 needs --engine onnx (an MXNet network "
                           "must not be run from several threads at once)")
        return args.net_workers
    if engine != "onnx" or not _is_stream(args) or args.gpus:
        return 1
    return 2 if usable_cores() >= 2 else 1


def _load(args):
    """(config or None, Predictor, network workers) of the model and engine flags.
    onnxruntime's threads do not busy-wait here: they would take the cores from the
    reading and drawing threads (measured: 1.9 frames/s with, 3.5 without, on 2 loaded
    cores); with several network workers each run gets its share of the cores."""
    engine = args.engine
    if args.exported and engine is None:
        from mxpose.export import export_files
        engine = "onnx" if os.path.isfile(export_files(args.exported)["onnx"]) else "mxnet"
    workers = _net_workers(args, engine or "mxnet")
    threads = max(1, usable_cores() // workers) if workers > 1 else 0
    if args.exported:
        if args.weights or args.prefix or args.epoch is not None:
            raise CLIError("--exported runs an export; it does not take --weights, --prefix "
                           "or --epoch")
        from mxpose.config import load_config
        if args.config and not os.path.isfile(args.config):
            raise CLIError(f"config file {args.config} does not exist")
        return (load_config(args.config) if args.config else None,
                load_exported_predictor(args.exported, engine, args, spin=False,
                                        threads=threads), workers)
    if engine == "onnx":
        cfg, _, _, pred = load_onnx_predictor(args, spin=False, threads=threads)
    else:
        cfg, _, _, pred = load_predictor(args)
    return cfg, pred, workers


class _Output:
    """The one place where the demo writes pictures: ``<name>.jpg`` per image, or one
    ``demo.avi`` (MJPG) for a video/camera."""

    def __init__(self, folder, fps):
        self.folder, self.fps, self.writer = folder, fps, None
        os.makedirs(folder, exist_ok=True)

    def write(self, name, vis):
        if self.fps is None:
            checked_write(os.path.join(self.folder, os.path.splitext(name)[0] + ".jpg"), vis)
            return
        if self.writer is None:
            self.path = os.path.join(self.folder, "demo.avi")
            self.writer = checked_video_writer(self.path, self.fps,
                                               (vis.shape[1], vis.shape[0]))
        self.writer.write(vis)

    def close(self, check: bool = True):
        """Release the video; with ``check``, a CLIError when nothing was written."""
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            if check:
                check_video_written(self.path)


def main(argv=None):
    args = build_parser().parse_args(argv)
    from mxpose.stream import Pipeline
    from mxpose.track import PoseSmoother, Tracker
    from mxpose.viz import draw_people
    if args.patience < 0:
        raise CLIError(f"--patience must be >= 0, got {args.patience}")
    if args.smooth and (args.smooth_cutoff <= 0 or args.smooth_beta < 0):
        raise CLIError("--smooth-cutoff must be > 0 and --smooth-beta >= 0")
    check_output_file(args.json, "--json")
    if args.flip is None and _is_stream(args):
        args.flip = False      # real time first: --flip turns test-time flipping on
        print("video: no test-time flip (pass --flip to average with the mirrored frame)")
    cfg, pred, workers = _load(args)
    frames, fps = _inputs(args, cfg)
    track = args.track or args.smooth
    tracker = Tracker(pred.skeleton, patience=args.patience) if track else None
    smoother = PoseSmoother(args.smooth_cutoff, args.smooth_beta) if args.smooth else None

    def prepare(item):          # resize + normalise off the network's thread
        name, img, t = item
        return name, img, t, pred.prepare_batch([img])

    def network(item):
        name, img, t, inputs = item
        return name, img, t, pred.maps_from_inputs(inputs)[0]

    def decode_and_draw(item):
        name, img, t, (heat, paf, base) = item
        people, scores = pred.decode_maps(heat, paf, base)
        ids = tracker.update(people) if tracker is not None else None
        if smoother is not None:
            people = smoother(people, ids, t)
        return name, draw_people(img, people, pred.skeleton, min_score=args.min_score,
                                 labels=ids), people, scores, ids

    out = _Output(args.out, fps)
    poses = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    pipe = Pipeline(frames, [prepare, network, decode_and_draw],
                    names=["read", "prepare", "network", "decode"], workers=[1, workers, 1])
    try:
        with pipe:
            for name, vis, people, scores, ids in pipe:
                out.write(name, vis)
                rec = {"name": name, "people": people.round(2).tolist(),
                       "scores": [round(float(s), 4) for s in scores]}
                if ids is not None:
                    rec["ids"] = ids.tolist()
                poses.append(rec)
                print(f"{name}: {len(scores)} people"
                      + (f", ids {rec['ids']}" if ids is not None else ""))
    except BaseException:
        out.close(check=False)
        raise
    out.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    n = len(poses)
    if n == 0:
        raise CLIError("no frame was read from the input")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"skeleton": pred.skeleton.to_dict(), "frames": poses}, f)
    f = pred.fps()
    rate = {k: n / max(v, 1e-9) for k, v in pipe.busy.items()}
    # the network's rate over its workers together (the Predictor's own timer sums them)
    print(f"{n} frames -> {args.out}: network {rate['network']:.2f} FPS, decode "
          f"{f['decode_fps']:.1f} FPS, overall {n / wall:.2f} FPS (engine {pred.engine}"
          + (f", {workers} network workers" if workers > 1 else "")
          + (", flip" if pred.flip else ", no flip") + "; "
          f"read {rate['read']:.0f} FPS, resize {rate['prepare']:.0f} FPS, "
          f"decode+track+draw {rate['decode']:.0f} FPS; "
          f"CPU {1000 * cpu / n:.0f} ms per frame)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
