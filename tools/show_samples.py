"""Write PNGs of augmented training samples, to check the data pipeline by eye.

Each PNG shows one sample as the network sees it, four panels side by side:

1. the augmented crop with everyone's keypoints and limbs (the crop coordinates the
   targets were rendered from);
2. the keypoint heatmaps (max over keypoints) blended onto the crop;
3. the PAFs (hue = direction, brightness = magnitude) blended onto the crop;
4. the loss mask: red where the loss ignores the maps (unlabelled people, crowds),
   the crop's padding outside the original image left as it is (supervised, as CMU).

A caption names the image, the main person and the drawn augmentation. Example::

    python tools/show_samples.py --db data/coco.db --out /tmp/samples --num 8
"""
from __future__ import annotations

import argparse
import os
import sys


def compose(sample, skeleton, caption: str = ""):
    """The four panels of one ``(image, heatmaps, heat_mask, pafs, paf_mask, meta)`` item,
    side by side, with a caption bar: a BGR uint8 image."""
    import cv2
    import numpy as np
    from mxpose.data.transforms import denormalize_image
    from mxpose.viz import draw_people, heatmap_overlay, paf_overlay
    image, heat, heat_mask, pafs, paf_mask, meta = sample
    crop = denormalize_image(image)
    S = crop.shape[0]
    people = draw_people(crop, meta["keypoints"], skeleton)
    hm = heatmap_overlay(crop, heat, alpha=0.55)
    pf = paf_overlay(crop, pafs, alpha=0.6)
    # masks are one (H, W) map repeated over channels; show the strictest channel
    ignore = 1.0 - np.minimum(heat_mask.min(0), paf_mask.min(0))
    ignore = cv2.resize(ignore, (S, S), interpolation=cv2.INTER_NEAREST)[..., None]
    red = np.zeros_like(crop)
    red[..., 2] = 255
    mk = (crop * (1 - 0.7 * ignore) + red * (0.7 * ignore)).astype(np.uint8)
    panels = [people, hm, pf, mk]
    titles = ["keypoints", "heatmaps", "PAFs", "loss mask (red: ignored)"]
    for p, t in zip(panels, titles):
        cv2.putText(p, t, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(p, t, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
    sep = np.full((S, 4, 3), 255, np.uint8)
    row = np.concatenate([x for p in panels for x in (p, sep)][:-1], axis=1)
    bar = np.full((26, row.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.concatenate([bar, row], axis=0)


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Write PNGs of augmented training samples (keypoints and skeleton, "
                    "heatmap and PAF overlays, loss mask, side by side) to check the data "
                    "pipeline by eye.")
    p.add_argument("--db", required=True, help="pose DB (from coco_parse, mpi_parse, "
                                               "make_synthetic)")
    p.add_argument("--split", help="split to sample (default: the config's train split, "
                                   "or the DB's only split)")
    p.add_argument("--config", help="experiment YAML (augmentation and target settings; "
                                    "default: the built-in defaults)")
    p.add_argument("--skeleton", help="layout to render (default: the config's "
                                      "data.skeleton with --config, else the DB's own)")
    p.add_argument("--out", required=True, help="folder for the PNGs (created)")
    p.add_argument("--num", type=int, default=8, help="samples to write (default 8)")
    p.add_argument("--seed", type=int, default=0, help="which samples and augmentations")
    p.add_argument("--no-aug", action="store_true", help="centred crops, no augmentation")
    p.add_argument("--per-image", action="store_true",
                   help="one sample per image instead of one per main person")
    args = p.parse_args(argv)

    from mxpose.cli import checked_write
    from mxpose.config import ConfigError, default_config, load_config
    from mxpose.data.dataset import PoseDataset
    from mxpose.data.store import PoseDB, PoseDBError
    from mxpose.skeleton import SkeletonError

    try:
        cfg = load_config(args.config) if args.config else default_config()
        db = PoseDB(args.db)
        splits = db.splits()
        skeleton = args.skeleton or (cfg.data.skeleton if args.config else db.skeleton)
        split = args.split or (cfg.data.train_split if cfg.data.train_split in splits
                               or len(splits) != 1 else next(iter(splits)))
        if split not in splits:
            raise PoseDBError(f"{args.db} has no split {split!r} (splits: "
                              f"{', '.join(splits) or 'none'})")
        ds = PoseDataset(args.db, split, skeleton=skeleton, config=cfg, train=not args.no_aug,
                         sample_per="image" if args.per_image else None, seed=args.seed,
                         return_meta=True)
    except (ConfigError, PoseDBError, SkeletonError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as e:
        print(f"error: cannot create {args.out}: {e}", file=sys.stderr)
        return 2

    import numpy as np
    from tqdm import tqdm
    rng = np.random.default_rng(args.seed)
    n = len(ds)
    order = rng.permutation(n)
    picks = np.resize(order, args.num) if args.num > n else order[:args.num]
    written = []
    for k, j in enumerate(tqdm(picks, desc="samples", unit="sample", dynamic_ncols=True)):
        sample, skipped = ds.get(int(j), seed=args.seed * 1000003 + k)
        meta = sample[5]
        img_id, main = (int(v) for v in ds.index[int(j)])
        lab = int((meta["keypoints"][..., 2] > 0).any(-1).sum())
        cap = (f"{meta['file_name']}  main person {main}  people {lab}  "
               f"scale {meta['scale']:.2f}  rot {meta['degrees']:+.0f}  "
               f"flip {'yes' if meta['flip'] else 'no'}  decode 1/{meta['reduce']}")
        out = compose(sample, ds.skeleton, cap)
        stem = os.path.splitext(os.path.basename(meta["file_name"]))[0]
        path = os.path.join(args.out, f"sample_{k:03d}_{stem}_p{main}.png")
        checked_write(path, out)
        written.append(path)
    print(f"wrote {len(written)} PNGs to {args.out} ({n} samples in split {split!r} of "
          f"{args.db}, skeleton {ds.skeleton.name}; {ds.skipped} unreadable skipped)")
    return 0


if __name__ == "__main__":
    from mxpose.cli import run_main
    sys.exit(run_main(main))
