"""Drawing: skeletons on images, heatmap/PAF overlays for checking data by eye."""
from __future__ import annotations

import colorsys

import cv2
import numpy as np

__all__ = ["limb_colors", "draw_people", "heatmap_overlay", "paf_overlay"]


def limb_colors(n: int):
    """``n`` distinct BGR colours (evenly spaced hues), one per limb."""
    out = []
    for i in range(max(n, 1)):
        r, g, b = colorsys.hsv_to_rgb(i / max(n, 1), 0.9, 1.0)
        out.append((int(b * 255), int(g * 255), int(r * 255)))
    return out


def draw_people(img: np.ndarray, people: np.ndarray, skeleton, thickness: int = 0,
                radius: int = 0, min_score: float = 0.0, labels=None) -> np.ndarray:
    """Draw people ``(N, K, 3)`` (x, y, v/score) on a copy of a BGR image.

    Limbs get one colour each (the same limb, the same colour, for every person), and
    keypoints a dot in the colour of their first limb. Sizes scale with the image when
    ``thickness``/``radius`` are 0. ``labels`` (one per person, e.g. track ids) are
    written above each person's highest keypoint.
    """
    out = img.copy()
    h, w = out.shape[:2]
    thickness = thickness or max(2, int(round(max(h, w) / 200)))
    radius = radius or thickness + 1
    colors = limb_colors(skeleton.num_limbs)
    kp_color = {}
    for l, (a, b) in enumerate(skeleton.limb_index):
        kp_color.setdefault(int(a), colors[l])
        kp_color.setdefault(int(b), colors[l])
    for person in np.asarray(people, np.float32).reshape(-1, skeleton.num_keypoints, 3):
        ok = person[:, 2] > min_score
        for l, (a, b) in enumerate(skeleton.limb_index):
            if ok[a] and ok[b]:
                pa = tuple(int(round(v)) for v in person[a, :2])
                pb = tuple(int(round(v)) for v in person[b, :2])
                cv2.line(out, pa, pb, colors[l], thickness, cv2.LINE_AA)
        for k in np.flatnonzero(ok):
            c = tuple(int(round(v)) for v in person[k, :2])
            cv2.circle(out, c, radius, kp_color.get(int(k), (255, 255, 255)), -1, cv2.LINE_AA)
    if labels is not None:
        _draw_labels(out, np.asarray(people, np.float32).reshape(-1, skeleton.num_keypoints, 3),
                     labels, min_score, thickness)
    return out


def _draw_labels(out, people, labels, min_score, thickness):
    scale = thickness / 3.0
    for person, label in zip(people, labels):
        ok = person[:, 2] > min_score
        if not ok.any():
            continue
        top = person[ok][np.argmin(person[ok, 1])]
        org = (int(round(top[0])), max(0, int(round(top[1] - 3 * thickness))))
        for color, t in (((0, 0, 0), thickness + 2), ((255, 255, 255), max(1, thickness // 2))):
            cv2.putText(out, str(label), org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, t,
                        cv2.LINE_AA)


def heatmap_overlay(img: np.ndarray, heatmaps: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the max over keypoint heatmaps (background excluded) onto the image."""
    h, w = img.shape[:2]
    m = np.clip(np.asarray(heatmaps)[:-1].max(0), 0, 1)
    m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
    col = cv2.applyColorMap((m * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(img, 1 - alpha, col, alpha, 0)


def paf_overlay(img: np.ndarray, pafs: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend PAF direction (hue) and magnitude (value) onto the image."""
    h, w = img.shape[:2]
    p = np.asarray(pafs)
    vx, vy = p[0::2].sum(0), p[1::2].sum(0)
    mag = np.clip(np.hypot(vx, vy), 0, 1)
    ang = (np.degrees(np.arctan2(vy, vx)) % 360) / 2
    hsv = np.stack([ang, np.full_like(ang, 255), mag * 255], -1).astype(np.uint8)
    col = cv2.resize(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR), (w, h), interpolation=cv2.INTER_NEAREST)
    return cv2.addWeighted(img, 1 - alpha, col, alpha, 0)
