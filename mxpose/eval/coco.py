"""COCO keypoint AP with pycocotools (never re-implemented).

Ground truth comes either from a COCO annotation file or from a pose DB split; results
are people arrays ``(N, K, 3)`` (x, y, part score) in the ground truth's layout plus one
score per person. A person's detection score is the decoder's person score, ``total /
num_parts``: the sum of the heatmap values of the person's peaks plus the scores of the
limbs that joined them, divided by the number of parts found (CMU's "mean score", the
quantity ``min_score`` thresholds; see :mod:`mxpose.decode.paf`). It is not scaled by
the fraction of parts found. COCOeval sorts detections by it.

For layouts other than COCO-17 (e.g. MPII) the same protocol runs with the layout's own
OKS sigmas (:attr:`Skeleton.sigmas`, documented in :mod:`mxpose.skeleton`). OKS needs a
person area: the stored COCO segment area where there is one, else the person box
``w*h``, else (MPII) the square of the person height ``(200*scale)^2``.
"""
from __future__ import annotations

import contextlib
import io
import json
from typing import Iterable, List, Optional, Sequence

import numpy as np

__all__ = ["STAT_NAMES", "results_from_people", "gt_from_db", "evaluate_keypoints",
           "format_table"]

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

_LINES = (
    " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ] = {:0.3f}",
    " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets= 20 ] = {:0.3f}",
    " Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets= 20 ] = {:0.3f}",
    " Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets= 20 ] = {:0.3f}",
    " Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets= 20 ] = {:0.3f}",
    " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ] = {:0.3f}",
    " Average Recall     (AR) @[ IoU=0.50      | area=   all | maxDets= 20 ] = {:0.3f}",
    " Average Recall     (AR) @[ IoU=0.75      | area=   all | maxDets= 20 ] = {:0.3f}",
    " Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets= 20 ] = {:0.3f}",
    " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets= 20 ] = {:0.3f}",
)


def format_table(stats: Sequence[float]) -> str:
    """The standard 10-line COCO keypoint table, as pycocotools prints it."""
    return "\n".join(l.format(float(s)) for l, s in zip(_LINES, stats))


def results_from_people(image_id: int, people: np.ndarray, scores: np.ndarray,
                        category_id: int = 1) -> List[dict]:
    """COCO results entries for one image.

    Parameters
    ----------
    people : (N, K, 3) float32, x, y, part score (0 where the part was not found).
    scores : (N,) person scores.
    """
    out = []
    for p, s in zip(np.asarray(people, np.float32), np.asarray(scores, np.float32)):
        kp = p.copy()
        kp[:, 2] = np.where(p[:, 2] > 0, 1.0, 0.0)   # COCO results carry v, not part scores
        out.append({"image_id": int(image_id), "category_id": category_id,
                    "keypoints": [round(float(v), 2) for v in kp.reshape(-1)],
                    "score": float(s)})
    return out


def _person_area(bbox, scale, kp) -> float:
    if np.all(np.isfinite(bbox)) and bbox[2] > 0 and bbox[3] > 0:
        return float(bbox[2] * bbox[3])
    if np.isfinite(scale) and scale > 0:
        return float((200.0 * scale) ** 2)
    lab = kp[:, 2] > 0
    if lab.sum() >= 2:
        ext = kp[lab, :2].max(0) - kp[lab, :2].min(0)
        return float(max(ext[0], 1.0) * max(ext[1], 1.0))
    return 0.0


def gt_from_db(db, split: str, image_ids: Optional[Iterable[int]] = None,
               skeleton=None) -> dict:
    """A COCO-format ground-truth dict from a pose DB split.

    Keypoints are converted to ``skeleton`` (default: the DB's own layout). Areas: the
    stored ``area`` where the dataset has one (COCO segment area), else the person box
    (see module doc). Crowd people become ``iscrowd`` annotations (ignored by COCOeval).
    """
    from ..skeleton import convert, get_skeleton
    sk = db.skeleton if skeleton is None else get_skeleton(skeleton)
    ids = db.image_ids(split) if image_ids is None else list(image_ids)
    images, anns = [], []
    for img_id in ids:
        info = db.image_info(int(img_id))
        images.append({"id": int(img_id), "width": info["width"], "height": info["height"],
                       "file_name": info["file_name"]})
        p = db.people(int(img_id))
        kp = p["keypoints"] if sk == db.skeleton else convert(p["keypoints"], db.skeleton, sk)
        for i in range(kp.shape[0]):
            area = float(p["area"][i]) if np.isfinite(p["area"][i]) else _person_area(
                p["bbox"][i], p["scale"][i], p["keypoints"][i])
            bb = p["bbox"][i]
            if not np.all(np.isfinite(bb)):
                lab = kp[i, :, 2] > 0
                if lab.any():
                    lo, hi = kp[i, lab, :2].min(0), kp[i, lab, :2].max(0)
                    bb = np.array([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1]])
                else:
                    bb = np.zeros(4)
            anns.append({"id": len(anns) + 1, "image_id": int(img_id), "category_id": 1,
                         "keypoints": [float(v) for v in kp[i].reshape(-1)],
                         "num_keypoints": int((kp[i, :, 2] > 0).sum()),
                         "area": area, "bbox": [float(v) for v in bb],
                         "iscrowd": int(bool(p["is_crowd"][i]))})
    cats = [{"id": 1, "name": "person", "supercategory": "person",
             "keypoints": list(sk.keypoints),
             "skeleton": [[int(a) + 1, int(b) + 1] for a, b in sk.limb_index]}]
    return {"images": images, "annotations": anns, "categories": cats}


def evaluate_keypoints(gt, results: List[dict], sigmas: Optional[np.ndarray] = None,
                       image_ids: Optional[Sequence[int]] = None, verbose: bool = False):
    """Run COCOeval (iouType 'keypoints').

    Parameters
    ----------
    gt : str (annotation file), dict (COCO-format) or a pycocotools COCO object.
    results : list of COCO result dicts (see :func:`results_from_people`).
    sigmas : (K,) OKS sigmas when the layout is not COCO-17.
    image_ids : restrict the evaluation to these images (default: all in ``gt``).

    Returns
    -------
    stats : dict name -> float for the 10 figures of :data:`STAT_NAMES`.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    quiet = contextlib.redirect_stdout(io.StringIO())
    with quiet:
        if isinstance(gt, COCO):
            coco = gt
        elif isinstance(gt, str):
            coco = COCO(gt)
        else:
            coco = COCO()
            coco.dataset = json.loads(json.dumps(gt))
            coco.createIndex()
    ids = sorted(coco.getImgIds()) if image_ids is None else sorted(int(i) for i in image_ids)
    if not results:
        return {k: 0.0 for k in STAT_NAMES}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = coco.loadRes(json.loads(json.dumps(results)))
        ev = COCOeval(coco, dt, "keypoints")
        ev.params.imgIds = ids
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ev.summarize()
    if verbose:
        print(buf.getvalue(), end="")
    return {k: float(v) for k, v in zip(STAT_NAMES, ev.stats)}
