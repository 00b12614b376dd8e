"""Evaluation runs: images + ground truth -> predictions -> COCO AP (and MPII PCKh).

Ground truth comes from a pose DB split (:func:`samples_from_db`) or a COCO annotation
file with its image folder (:func:`samples_from_coco`). Predictions come from a
:class:`~mxpose.infer.Predictor` or, with the oracle, from ground-truth maps rendered
exactly as the Predictor's base grid would see them (:class:`OracleMaps`), which
measures the decoder's ceiling.

Predicted people are converted from the network's layout to the ground truth's
(``openpose_coco18 -> coco``, ``openpose_mpi15 -> mpii``) before scoring.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np

from ..data.image import read_image
from ..infer import grid_to_image
from ..skeleton import convert, get_skeleton
from .coco import evaluate_keypoints, results_from_people
from .mpii import pckh

__all__ = ["EvalSample", "samples_from_db", "samples_from_coco", "rotate_sample", "rotate_gt",
           "OracleMaps", "run_evaluation", "EvalResult"]


@dataclass
class EvalSample:
    image_id: int
    file_name: str
    load: Callable[[], np.ndarray]            # -> BGR uint8
    people: np.ndarray                         # (G, K, 3) ground truth, GT layout
    width: int = 0
    height: int = 0
    head_box: Optional[np.ndarray] = None      # (G, 4) MPII
    rotate: float = 0.0


def samples_from_db(db, split: str, image_ids: Optional[Sequence[int]] = None
                    ) -> List[EvalSample]:
    ids = db.image_ids(split) if image_ids is None else image_ids
    out = []
    for i in ids:
        i = int(i)
        info = db.image_info(i)
        p = db.people(i)
        out.append(EvalSample(i, info["file_name"], (lambda i=i: db.load_image(i)),
                              p["keypoints"], info["width"], info["height"], p["head_box"]))
    return out


def samples_from_coco(ann_file: str, images: str):
    """Samples of every image of a COCO-format keypoint file that has annotations.

    The file is read as ``coco_parse`` reads it (:class:`~mxpose.data.coco.CocoKeypoints`),
    so its layout is the one a DB made from it stores (COCO, CrowdPose, a custom layout,
    COCO + feet for WholeBody files) and the returned ground truth holds every person's
    keypoints in that layout.

    Returns
    -------
    samples : list of EvalSample
    gt : dict
        COCO-format ground truth in the layout.
    layout : Skeleton
    """
    from ..data.coco import load_coco_keypoints
    coco = load_coco_keypoints(ann_file)
    sk = coco.layout
    anns = []
    for a in (a for v in coco.anns_by_image.values() for a in v):
        kp = coco.person_keypoints(a)
        anns.append({"id": a["id"], "image_id": a["image_id"], "category_id": 1,
                     "keypoints": [float(v) for v in kp.reshape(-1)],
                     "num_keypoints": int((kp[:, 2] > 0).sum()),
                     "area": float(a.get("area") or a["bbox"][2] * a["bbox"][3]),
                     "bbox": [float(v) for v in a["bbox"]],
                     "iscrowd": int(bool(a.get("iscrowd", 0)))})
    gt = {"images": [dict(im) for im in coco.images], "annotations": anns,
          "categories": [{"id": 1, "name": "person", "keypoints": list(sk.keypoints),
                          "skeleton": [[int(a) + 1, int(b) + 1] for a, b in sk.limb_index]}]}
    by_img: Dict[int, list] = {}
    for a in anns:
        by_img.setdefault(a["image_id"], []).append(a)
    out = []
    for im in coco.images:
        anns = by_img.get(im["id"], [])
        if not anns:
            continue
        kp = np.array([a["keypoints"] for a in anns], np.float32).reshape(
            -1, sk.num_keypoints, 3)
        path = os.path.join(images, im["file_name"])

        def load(path=path):
            return read_image(path)
        out.append(EvalSample(int(im["id"]), im["file_name"], load, kp, int(im["width"]),
                              int(im["height"])))
    return out, gt, sk


# -- rotation robustness -------------------------------------------------------------------
def _rotation(w: int, h: int, deg: float):
    """Affine rotating an image about its centre into an expanded canvas, and that size."""
    M = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), deg, 1.0)
    c, s = abs(M[0, 0]), abs(M[0, 1])
    nw, nh = int(math.ceil(h * s + w * c)), int(math.ceil(h * c + w * s))
    M[0, 2] += (nw - w) / 2
    M[1, 2] += (nh - h) / 2
    return M, nw, nh


def _rotate_points(M, kp):
    out = np.array(kp, np.float32, copy=True)
    xy = out[..., :2] @ M[:, :2].T + M[:, 2]
    lab = out[..., 2] > 0
    out[..., :2] = np.where(lab[..., None], xy, 0)
    return out


def rotate_gt(gt: dict, degrees: float) -> dict:
    """A COCO ground-truth dict with every annotation rotated like :func:`rotate_sample`
    rotates its image (keypoints and box; areas are kept: rotation preserves them)."""
    gt = json.loads(json.dumps(gt))
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    for im in gt["images"]:
        _, im["width"], im["height"] = _rotation(im["width"], im["height"], degrees)
    for a in gt["annotations"]:
        w, h = sizes[a["image_id"]]
        M, _, _ = _rotation(w, h, degrees)
        K = len(a["keypoints"]) // 3
        kp = _rotate_points(M, np.array(a["keypoints"], np.float32).reshape(K, 3))
        a["keypoints"] = [float(v) for v in kp.reshape(-1)]
        x, y, bw, bh = a["bbox"]
        corners = np.array([[x, y], [x + bw, y], [x, y + bh], [x + bw, y + bh]])
        rc = corners @ M[:, :2].T + M[:, 2]
        lo, hi = rc.min(0), rc.max(0)
        a["bbox"] = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
        a.pop("segmentation", None)
    return gt


def rotate_sample(s: EvalSample, degrees: float) -> EvalSample:
    """The sample with its image rotated by ``degrees`` about its centre (canvas grown to
    keep every pixel, padding grey) and its ground truth rotated with it (head boxes keep
    their size, so PCKh's normalisation is unchanged)."""
    base = s.load
    M, nw, nh = _rotation(s.width, s.height, degrees)

    def load():
        return cv2.warpAffine(base(), M, (nw, nh), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(128, 128, 128))
    head = None
    if s.head_box is not None:
        hb = np.asarray(s.head_box, np.float64).reshape(-1, 4)
        c = (hb[:, :2] + hb[:, 2:]) / 2
        rc = c @ M[:, :2].T + M[:, 2]
        half = (hb[:, 2:] - hb[:, :2]) / 2
        head = np.concatenate([rc - half, rc + half], axis=1).astype(np.float32)
    return EvalSample(s.image_id, s.file_name, load, _rotate_points(M, s.people), nw, nh,
                      head, degrees)


# -- oracle ----------------------------------------------------------------------------------
class OracleMaps:
    """Ground-truth maps in place of a network: renders the sample's people on the grid a
    :class:`Predictor` with ``boxsize``/``stride`` would produce at scale 1, so decoding
    them measures the decoder (and grid) ceiling."""

    def __init__(self, net_skeleton, boxsize: int = 368, stride: int = 8, sigma: float = 7.0,
                 decode_params: Optional[dict] = None):
        self.skeleton = get_skeleton(net_skeleton)
        self.boxsize, self.stride, self.sigma = int(boxsize), int(stride), float(sigma)
        self.decode_params = dict(decode_params or {})   # Decoder keywords (config test.*)

    def maps(self, img_hw, people_net: np.ndarray):
        from ..targets import render_heatmaps, render_pafs
        h, w = img_hw
        s = self.boxsize / h
        rh, rw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        sx, sy = rw / w, rh / h
        H, W = -(-rh // self.stride), -(-rw // self.stride)
        kp = np.array(people_net, np.float32, copy=True)
        lab = kp[..., 2] > 0
        kp[..., 0] = np.where(lab, (kp[..., 0] + 0.5) * sx - 0.5, 0)
        kp[..., 1] = np.where(lab, (kp[..., 1] + 0.5) * sy - 0.5, 0)
        heat = render_heatmaps(kp, (H, W), self.stride, self.sigma)
        paf = render_pafs(kp, self.skeleton.limb_index, (H, W), self.stride)
        return heat, paf, (sx, sy)


# -- the run ------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    stats: Dict[str, float]
    pckh: Optional[dict]
    images: int
    failures: List[str] = field(default_factory=list)
    seconds: float = 0.0
    results: List[dict] = field(default_factory=list)
    foot: Optional[Dict[str, float]] = None     # foot AP (layouts with the 6 foot points)

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def run_evaluation(samples: Sequence[EvalSample], gt: dict, gt_skeleton, predictor=None,
                   oracle: Optional[OracleMaps] = None, net_skeleton=None,
                   with_pckh: bool = False, progress: bool = True) -> EvalResult:
    """Predict every sample, then score with COCOeval (and PCKh when asked).

    Exactly one of ``predictor`` / ``oracle`` is used. Per-image failures (unreadable
    image, ...) are counted and listed, not fatal.
    """
    from tqdm import tqdm
    from ..decode import decode
    gt_skel = get_skeleton(gt_skeleton)
    net_skel = get_skeleton(net_skeleton if net_skeleton is not None else
                            (predictor.skeleton if predictor is not None else oracle.skeleton))
    # Each layout's own OKS sigmas (pycocotools' kpt_oks_sigmas); COCO's are the default.
    sigmas = None if gt_skel.name == "coco" else gt_skel.sigma_array
    results, failures = [], []
    gts, heads, preds = [], [], []
    t0 = time.perf_counter()
    done = 0
    for s in tqdm(samples, desc="evaluate", unit="img", disable=not progress):
        try:
            img = s.load()
            if predictor is not None:
                people, scores = predictor(img)
            else:
                net_people = convert(s.people, gt_skel, net_skel)
                heat, paf, base = oracle.maps(img.shape[:2], net_people)
                people, scores = decode(heat, paf, net_skel, stride=oracle.stride,
                                        **oracle.decode_params)
                people = grid_to_image(people, base)
        except Exception as e:  # one bad image must not end an evaluation of thousands
            failures.append(f"{s.file_name}: {type(e).__name__}: {e}")
            continue
        done += 1
        # parts the network does not predict (e.g. feet) count as not found
        ppl = convert(people, net_skel, gt_skel, missing="unlabelled")
        results += results_from_people(s.image_id, ppl, scores)
        if with_pckh and s.head_box is not None:
            gts.append(s.people)
            heads.append(s.head_box)
            preds.append(ppl)
    seconds = time.perf_counter() - t0
    failed = {f.split(": ", 1)[0] for f in failures}
    ok_ids = [s.image_id for s in samples if s.file_name not in failed]
    foot = None
    feet = [n for n in _FOOT_NAMES if n in gt_skel.keypoints]
    coco = get_skeleton("coco")
    if len(feet) == len(_FOOT_NAMES) and set(coco.keypoints) <= set(gt_skel.keypoints):
        # Body + feet (COCO-WholeBody, BODY_25): COCO-17 AP with COCO's sigmas, comparable
        # to COCO's figures, and a foot AP over the 6 foot points with their sigmas.
        body = [gt_skel.index(n) for n in coco.keypoints]
        stats = evaluate_keypoints(*keypoint_subset(gt, results, body), image_ids=ok_ids)
        fidx = [gt_skel.index(n) for n in feet]
        foot = evaluate_keypoints(*keypoint_subset(gt, results, fidx),
                                  sigmas=gt_skel.sigma_array[fidx], image_ids=ok_ids)
    else:
        stats = evaluate_keypoints(gt, results, sigmas=sigmas, image_ids=ok_ids)
    pk = pckh(gts, heads, preds, gt_skel.keypoints) if with_pckh and gts else None
    return EvalResult(stats, pk, done, failures, seconds, results, foot)


_FOOT_NAMES = ("l_big_toe", "l_small_toe", "l_heel", "r_big_toe", "r_small_toe", "r_heel")


def keypoint_subset(gt: dict, results: List[dict], index: Sequence[int]):
    """``(gt, results)`` restricted to the keypoints ``index`` (what COCOeval then scores);
    ``num_keypoints`` is recounted, so people without any of them are ignored, and a
    detection without any of them found is no detection of these points (dropped)."""
    idx = np.asarray(index, dtype=np.int64)

    def cut(kp):
        return np.asarray(kp, np.float64).reshape(-1, 3)[idx]
    anns = []
    for a in gt["annotations"]:
        k = cut(a["keypoints"])
        anns.append(dict(a, keypoints=[float(v) for v in k.reshape(-1)],
                         num_keypoints=int((k[:, 2] > 0).sum())))
    cats = [dict(c, keypoints=[c["keypoints"][i] for i in idx], skeleton=[])
            for c in gt["categories"]]
    res = []
    for r in results:
        k = cut(r["keypoints"])
        if (k[:, 2] > 0).any():
            res.append(dict(r, keypoints=[float(v) for v in k.reshape(-1)]))
    return dict(gt, annotations=anns, categories=cats), res


