"""MPII PCKh: the fraction of joints within ``alpha`` x the head size of the truth.

Head size follows the MPII evaluation code: ``0.6 * ||(x2 - x1, y2 - y1)||`` of the head
box (``SC_BIAS = 0.6``). Multi-person images: each ground-truth person is matched to the
predicted person with the most joints within the threshold (ties: the smaller mean
normalised distance), each prediction used once, greedily over ground-truth people in
order of their best match count. A ground-truth joint whose person has no match counts
as missed. Joints unlabelled in the truth are not counted.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

__all__ = ["pckh", "format_pckh", "SC_BIAS"]

SC_BIAS = 0.6


def _head_size(head_box: np.ndarray) -> np.ndarray:
    hb = np.asarray(head_box, np.float64).reshape(-1, 4)
    return SC_BIAS * np.hypot(hb[:, 2] - hb[:, 0], hb[:, 3] - hb[:, 1])


def _match(gt: np.ndarray, head: np.ndarray, pred: np.ndarray, alpha: float):
    """Per-GT-person (K,) bool hits after greedy one-to-one assignment."""
    G, K = gt.shape[:2]
    hits = np.zeros((G, K), bool)
    if pred.shape[0] == 0 or G == 0:
        return hits
    d = np.linalg.norm(gt[:, None, :, :2] - pred[None, :, :, :2], axis=-1)      # (G, P, K)
    d = d / np.maximum(head[:, None, None], 1e-6)
    valid = (gt[:, None, :, 2] > 0) & (pred[None, :, :, 2] > 0)
    ok = valid & (d <= alpha)
    count = ok.sum(-1)                                                          # (G, P)
    mean_d = np.where(valid, d, np.inf).mean(-1)
    order = sorted(((-count[g, p], mean_d[g, p], g, p) for g in range(G)
                    for p in range(pred.shape[0])))
    used_g, used_p = set(), set()
    for negc, _, g, p in order:
        if g in used_g or p in used_p or negc == 0:
            continue
        used_g.add(g)
        used_p.add(p)
        hits[g] = ok[g, p]
    return hits


def pckh(gts: Sequence[np.ndarray], head_boxes: Sequence[np.ndarray],
         preds: Sequence[np.ndarray], joint_names: Sequence[str], alpha: float = 0.5) -> Dict:
    """PCKh@alpha per joint and mean over a set of images.

    Parameters
    ----------
    gts : per image (G, K, 3) ground truth (x, y, v) in the MPII-16 layout.
    head_boxes : per image (G, 4) head boxes x1, y1, x2, y2.
    preds : per image (P, K, 3) predictions (x, y, score; 0 = not found).
    joint_names : K names.

    Returns
    -------
    dict with ``per_joint`` {name: %}, ``mean`` (%) and ``count`` (labelled joints).
    """
    K = len(joint_names)
    hit = np.zeros(K)
    total = np.zeros(K)
    for gt, hb, pr in zip(gts, head_boxes, preds):
        gt = np.asarray(gt, np.float32).reshape(-1, K, 3)
        pr = np.asarray(pr, np.float32).reshape(-1, K, 3)
        keep = np.all(np.isfinite(np.asarray(hb, np.float64).reshape(-1, 4)), axis=1)
        gt, head = gt[keep], _head_size(np.asarray(hb)[keep])
        h = _match(gt, head, pr, alpha)
        lab = gt[..., 2] > 0
        hit += (h & lab).sum(0)
        total += lab.sum(0)
    per = np.where(total > 0, 100.0 * hit / np.maximum(total, 1), np.nan)
    return {"per_joint": {n: float(v) for n, v in zip(joint_names, per)},
            "mean": float(np.nanmean(per)) if np.any(total > 0) else float("nan"),
            "count": int(total.sum())}


def format_pckh(res: Dict, alpha: float = 0.5) -> str:
    """The usual PCKh table: Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Mean (%),
    left/right averaged."""
    pj = res["per_joint"]

    def avg(*names):
        v = [pj[n] for n in names if n in pj and np.isfinite(pj[n])]
        return float(np.mean(v)) if v else float("nan")
    cols = [("Head", avg("head_top", "upper_neck")), ("Shoulder", avg("l_shoulder", "r_shoulder")),
            ("Elbow", avg("l_elbow", "r_elbow")), ("Wrist", avg("l_wrist", "r_wrist")),
            ("Hip", avg("l_hip", "r_hip")), ("Knee", avg("l_knee", "r_knee")),
            ("Ankle", avg("l_ankle", "r_ankle")), ("Mean", res["mean"])]
    head = f"PCKh@{alpha}: " + " | ".join(f"{n:>8s}" for n, _ in cols)
    vals = " " * len(f"PCKh@{alpha}: ") + " | ".join(f"{v:8.2f}" for _, v in cols)
    return head + "\n" + vals
