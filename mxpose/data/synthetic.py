"""Procedural synthetic multi-person pose data: the quickstart set and the end-to-end test set.

Every image is drawn from its own seed, so image ``i`` of a split is the same bytes whatever
order, process or run produced it: generation can be resumed and parallelised freely.

What an image contains
----------------------
- A random size, each side drawn in ``[min_size, max_size]`` (default 192-320 px), so the
  pipeline's rescaling is exercised, on a textured background: a two-colour gradient, smooth
  low-frequency noise, random muted rectangles, discs and lines, sometimes stripes, sometimes
  a few saturated "distractor" sticks and blobs that are not people.
- 1 to ``max_people`` articulated figures, heights 30-90 % of the image height, leaning up to
  about 35 degrees, partly off-image at times, overlapping each other (a later figure is drawn
  on top). Each figure: a textured torso polygon (shirt), limbs as capsules (upper arm,
  forearm, thigh, shin: each a separate outlined shade so elbows and knees show), round hands,
  shoes, a neck, an elliptic head with a hair cap, ears, eyes and a nose. Every COCO keypoint
  sits on an image feature: eyes, ears and nose on their marks, shoulders and hips at the torso
  corners where limbs attach, elbows/knees at the joint between two shades, wrists/ankles where
  the hand/shoe meets the limb.
- Poses from joint angles within human-like ranges (arms down, out, raised or across the body,
  bent elbows, stepping, kicking and bent knees, some foreshortened segments), a body yaw of up
  to about 45 degrees (the torso narrows, the face turns, the far limbs go behind the torso and
  are shaded darker).
- ~10 % of the images have one unlabelled person (stored with no keypoints, plus an ignore
  region of its visible body, reason ``'unlabelled'``) and ~8 % a crowd of small figures
  (one ``is_crowd`` person plus an ignore region, reason ``'crowd'``), as COCO's
  ``num_keypoints == 0`` and ``iscrowd`` annotations become mask_miss regions.

Left and right
--------------
Left/right is told apart by cues that mirror correctly, never by colour: a colour code would
say "red is left" in an original and "red is right" in its horizontal flip, so flip
augmentation would teach a contradiction. Every figure faces the camera (yaw below 90
degrees), so its right side is on the image left of its own body axis, as for people in
photos; the face turns with the yaw (nose and eyes shift towards the facing side) and the
far side's limbs are drawn behind the torso and darker. A mirrored image is again a valid
sample with the labels swapped, exactly as the flip augmentation assumes.

Labels
------
Keypoints use the ``coco`` layout (17 points, x, y, v, 0-based pixel centres), so the same
pipeline as real COCO reads them. ``v = 2`` where the keypoint's own body part is the topmost
drawn pixel, ``v = 1`` where something else covers it (a later person, or the figure's own
limb in front of it), ``v = 0`` off the image. ``bbox`` and ``area`` come from the person's
visible body mask, like COCO's segmentation-derived values.

With ``feet=True`` (``make_synthetic.py --feet``) each foot is a shoe whose heel, big toe
and small toe are labelled too, people are stored in the ``coco_foot`` layout (COCO's 17,
then the 6 foot points in COCO-WholeBody's order) and the DB trains ``body25`` networks.
The shoe is a small 3-D foot projected by a camera looking slightly down: turned out
towards its own side, yawed with the body, big toe medial (towards the other foot),
heel behind the ankle; a heel hidden inside its own shoe (a foot pointing at the camera)
is labelled occluded. Without the option every image is the one drawn before it existed.
"""
from __future__ import annotations

import colorsys
import math
import os
import time
from typing import Dict, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..skeleton import get_skeleton

__all__ = ["GENERATOR_VERSION", "PART_NAMES", "KEYPOINT_PARTS", "DEFAULTS", "generate_image",
           "encode_jpeg", "image_seed", "make_synthetic_db", "draw_keypoints",
           "COCO14_NAMES", "coco14_keypoints", "write_synthetic_coco"]

#: Bumped whenever the drawing changes, so a resumed DB never mixes two generators.
GENERATOR_VERSION = 1

#: Generation parameters and their defaults (recorded in the DB meta under ``synthetic``).
DEFAULTS = {"min_size": 192, "max_size": 320, "max_people": 4, "min_height": 0.3,
            "max_height": 0.9, "p_unlabelled": 0.1, "p_crowd": 0.08, "quality": 90,
            "crowd": False, "feet": False}

_COCO = get_skeleton("coco")
_K = _COCO.num_keypoints
#: The layout of people drawn with feet: COCO-17 then heel, big toe and small toe per foot.
_FOOT = get_skeleton("coco_foot")

#: Body part ids of the part map (index = id; 0 is background).
PART_NAMES = ("background", "torso", "neck", "head", "hair", "l_ear", "r_ear", "l_eye", "r_eye",
              "nose", "l_upper_arm", "l_forearm", "l_hand", "r_upper_arm", "r_forearm",
              "r_hand", "l_thigh", "l_shin", "l_foot", "r_thigh", "r_shin", "r_foot")
_P = {n: i for i, n in enumerate(PART_NAMES)}

#: The body parts each COCO keypoint lies on (a keypoint is visible when one of these is the
#: topmost pixel of its own person there).
KEYPOINT_PARTS: Dict[str, Tuple[str, ...]] = {
    "nose": ("nose",), "l_eye": ("l_eye",), "r_eye": ("r_eye",),
    "l_ear": ("l_ear",), "r_ear": ("r_ear",),
    "l_shoulder": ("torso", "l_upper_arm"), "r_shoulder": ("torso", "r_upper_arm"),
    "l_elbow": ("l_upper_arm", "l_forearm"), "r_elbow": ("r_upper_arm", "r_forearm"),
    "l_wrist": ("l_forearm", "l_hand"), "r_wrist": ("r_forearm", "r_hand"),
    "l_hip": ("torso", "l_thigh"), "r_hip": ("torso", "r_thigh"),
    "l_knee": ("l_thigh", "l_shin"), "r_knee": ("r_thigh", "r_shin"),
    "l_ankle": ("l_shin", "l_foot"), "r_ankle": ("r_shin", "r_foot"),
    "l_big_toe": ("l_foot",), "l_small_toe": ("l_foot",), "l_heel": ("l_foot",),
    "r_big_toe": ("r_foot",), "r_small_toe": ("r_foot",), "r_heel": ("r_foot",),
}
# (K, num_parts) bool: part p carries keypoint k (rows in coco_foot order; COCO's 17 first).
_KP_PART_OK = np.zeros((_FOOT.num_keypoints, len(PART_NAMES)), dtype=bool)
for _name, _parts in KEYPOINT_PARTS.items():
    for _p in _parts:
        _KP_PART_OK[_FOOT.index(_name), _P[_p]] = True

# Parts merged for outlining: face marks sit on the head without a dark ring, hair joins it.
_OUTLINE_LUT = np.arange(len(PART_NAMES), dtype=np.uint8)
for _n in ("hair", "l_eye", "r_eye", "nose"):
    _OUTLINE_LUT[_P[_n]] = _P["head"]

_CROWD_BASE = 100          # owner ids of crowd figures (main people are 0..n-1)
_OCCLUDER = -2             # owner id of occluders drawn over a crowd setting's people
_SHIFT = 4                 # cv2 fixed-point bits: sub-pixel accurate drawing
_ONE = 1 << _SHIFT
_K3 = np.ones((3, 3), np.uint8)

# Body proportions in units of the figure's height H (head top to soles, standing).
_TORSO = 0.30              # pelvis to neck
_UPPER_ARM, _FOREARM = 0.165, 0.145
_THIGH, _SHIN = 0.245, 0.235
_HEAD_RX, _HEAD_RY = 0.058, 0.074
_SKIN = ((224, 190, 160), (198, 150, 110), (160, 110, 75), (110, 75, 50), (238, 208, 185),
         (180, 130, 95))   # RGB


# ------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------
def _hsv(h, s, v):
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return np.array([b, g, r], dtype=np.float32) * 255.0


def _rgb(c):
    return np.array([c[2], c[1], c[0]], dtype=np.float32)


def _dir(angle: float) -> np.ndarray:
    """Unit vector at ``angle`` radians from straight down, positive towards image right."""
    return np.array([math.sin(angle), math.cos(angle)])


def _rot(v: np.ndarray, a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def _fix(p) -> Tuple[int, int]:
    return int(round(p[0] * _ONE)), int(round(p[1] * _ONE))


def image_seed(seed: int, split: str, index: int) -> Tuple[int, int, int]:
    """The seed of image ``index`` of ``split``: disjoint streams for train and val."""
    stream = {"train": 0, "val": 1}.get(split)
    if stream is None:
        stream = 2 + int.from_bytes(split.encode("utf-8")[:7], "little")
    return (int(seed), stream, int(index))


def encode_jpeg(img: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of a BGR uint8 image (deterministic for a given OpenCV build)."""
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buf.tobytes()


def _rle(mask: np.ndarray, reason: str) -> dict:
    from pycocotools import mask as mask_utils
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(r["size"][0]), int(r["size"][1])],
            "counts": r["counts"].decode("ascii"), "reason": reason}


# ------------------------------------------------------------------------------------------
# background
# ------------------------------------------------------------------------------------------
def _muted(rng, vmin=0.15, vmax=0.9, smax=0.3):
    return _hsv(rng.random(), rng.uniform(0.0, smax), rng.uniform(vmin, vmax))


def _background(rng, h: int, w: int) -> np.ndarray:
    # Gradient between two muted colours plus smooth blotches, drawn at quarter resolution
    # (both are smooth) and upsampled.
    lh, lw = max(2, h // 4), max(2, w // 4)
    c1, c2 = _muted(rng), _muted(rng)
    a = rng.uniform(0, 2 * math.pi)
    gx = np.linspace(0, math.cos(a), lw, dtype=np.float32)[None, :]
    gy = np.linspace(0, math.sin(a), lh, dtype=np.float32)[:, None]
    t = gx + gy
    t -= t.min()
    t /= max(float(t.max()), 1e-6)
    low = c1 + t[..., None] * (c2 - c1)
    g = int(rng.integers(3, 9))
    coarse = rng.normal(0, rng.uniform(8, 30), (g, g, 3)).astype(np.float32)
    low += cv2.resize(coarse, (lw, lh), interpolation=cv2.INTER_CUBIC)
    low = np.clip(low, 0, 255).astype(np.uint8)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.3:          # stripes
        period = rng.uniform(6, 40)
        b = rng.uniform(0, math.pi)
        xs = np.arange(w, dtype=np.float32)[None, :] * math.cos(b)
        ys = np.arange(h, dtype=np.float32)[:, None] * math.sin(b)
        amp = rng.uniform(8, 30)
        st = np.sin((xs + ys) * np.float32(2 * math.pi / period)) * np.float32(amp)
        st = cv2.merge([st, st, st])
        img = cv2.add(img.astype(np.float32), st)
        img = np.clip(img, 0, 255).astype(np.uint8)
    # Muted shapes: rectangles, discs, lines, triangles.
    for _ in range(int(rng.integers(2, 10))):
        col = tuple(float(x) for x in _muted(rng))
        kind = rng.random()
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        s = rng.uniform(0.05, 0.4) * min(h, w)
        if kind < 0.3:
            cv2.rectangle(img, _fix((cx - s, cy - s * rng.uniform(0.3, 1.5))),
                          _fix((cx + s, cy + s)), col, -1, cv2.LINE_8, _SHIFT)
        elif kind < 0.55:
            cv2.circle(img, _fix((cx, cy)), int(s * _ONE), col, -1, cv2.LINE_AA, _SHIFT)
        elif kind < 0.8:
            q = (cx + rng.normal(0, s * 2), cy + rng.normal(0, s * 2))
            cv2.line(img, _fix((cx, cy)), _fix(q), col, int(rng.integers(1, 6)), cv2.LINE_AA,
                     _SHIFT)
        else:
            pts = np.array([_fix((cx + rng.normal(0, s), cy + rng.normal(0, s)))
                            for _ in range(3)], np.int32)
            cv2.fillConvexPoly(img, pts, col, cv2.LINE_AA, _SHIFT)
    # Distractors: saturated sticks and blobs that are not people, so "colourful" alone
    # does not mean "body part".
    if rng.random() < 0.35:
        for _ in range(int(rng.integers(1, 4))):
            col = tuple(float(x) for x in
                        _hsv(rng.random(), rng.uniform(0.5, 1), rng.uniform(0.4, 1)))
            p = np.array([rng.uniform(0, w), rng.uniform(0, h)])
            if rng.random() < 0.6:
                q = p + _dir(rng.uniform(0, 2 * math.pi)) * rng.uniform(0.05, 0.25) * h
                cv2.line(img, _fix(p), _fix(q), col, int(max(1, rng.uniform(0.01, 0.04) * h)),
                         cv2.LINE_AA, _SHIFT)
            else:
                ax = (rng.uniform(0.01, 0.06) * h, rng.uniform(0.01, 0.06) * h)
                cv2.ellipse(img, _fix(p), _fix(ax), rng.uniform(0, 180), 0, 360, col, -1,
                            cv2.LINE_AA, _SHIFT)
    return img


# ------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------
def _foot(ankle, sd, s: int, turnout: float, yaw: float, tilt: float) -> dict:
    """Shoe points of one foot in body units: ``heel``, ``big_toe``, ``small_toe`` and the
    shoe's top corners at the ankle (``shoe_a``, ``shoe_b``).

    The foot is placed in 3-D (x image right, y down, z towards the camera) and projected
    by a camera looking slightly down (z shows as + 0.35 z in y): it points forward,
    turned out by ``turnout`` radians towards its own side ``s`` and with the body's
    ``yaw``; the big toe is on the medial side (towards the other foot), the small toe
    lateral and a little shorter, the heel behind and below the ankle. All of it follows
    from the side and the facing, never from colour, so a mirrored foot is the other
    foot's drawing. ``tilt`` turns the shoe in the image with a raised shin.
    """
    a = s * turnout + yaw
    fwd = np.array([math.sin(a), 0.0, math.cos(a)])
    med = np.array([-s * math.cos(a), 0.0, s * math.sin(a)])
    down = np.array([0.0, 1.0, 0.0])

    def proj(v):
        return _rot(np.array([v[0], v[1] + 0.35 * v[2]]), tilt)
    nrm = np.array([-sd[1], sd[0]])
    return {"heel": ankle + proj(-0.03 * fwd + 0.045 * down),
            "big_toe": ankle + proj(0.105 * fwd + 0.016 * med + 0.05 * down),
            "small_toe": ankle + proj(0.085 * fwd - 0.022 * med + 0.05 * down),
            "shoe_a": ankle + 0.026 * nrm, "shoe_b": ankle - 0.026 * nrm}


def _heel_hidden(f: dict) -> bool:
    """Whether the heel lies inside the rest of the shoe (a foot pointing at the camera
    hides its heel: labelled occluded, as COCO labels a keypoint hidden by its own body)."""
    pts = np.array([f[k] for k in ("shoe_a", "shoe_b", "big_toe", "small_toe")], np.float32)
    hull = cv2.convexHull(pts * 1000)
    return cv2.pointPolygonTest(hull, tuple(float(v) * 1000 for v in f["heel"]), True) > 2.0


def _sample_figure(rng, feet: bool = False) -> dict:
    """A posed figure in body units (H = 1), pelvis at the origin, image axes (y down).

    Side ``s`` is -1 for the person's right (image left of the body axis: the figure faces
    the camera) and +1 for the left. With ``feet`` each foot is a shoe with a heel, a big
    toe and a small toe (:func:`_foot`) instead of a plain capsule.
    """
    yaw = rng.normal(0, 0.12) if rng.random() < 0.5 else rng.uniform(-0.75, 0.75)
    cw = math.cos(yaw)
    build = rng.uniform(0.85, 1.2)
    bend = rng.normal(0, 0.07)                  # spine bend relative to the legs
    up = _dir(bend + math.pi)                   # pelvis -> neck
    across = np.array([-up[1], up[0]])          # body's image-right direction
    neck = _TORSO * up
    hw, sw = 0.085 * cw * build, 0.13 * cw * build
    pts = {"neck": neck}
    heel_hidden = {}

    def seg():                                  # out-of-plane foreshortening of a segment
        return 1.0 if rng.random() < 0.7 else rng.uniform(0.6, 1.0)

    for s, side in ((-1, "r"), (1, "l")):
        sh = neck + s * sw * across - 0.03 * up
        pts[f"{side}_shoulder"] = sh
        r = rng.random()                        # arm: down, raised, across the body
        a = (rng.uniform(0.05, 0.7) if r < 0.55 else rng.uniform(0.7, 2.4) if r < 0.8
             else rng.uniform(-0.5, 0.05))
        e = (rng.normal(0, 0.15) if rng.random() < 0.35
             else rng.uniform(0.3, 2.3) * (1 if rng.random() < 0.55 else -1))
        d1 = _rot(_dir(s * a), bend)
        d2 = _rot(_dir(s * (a + e)), bend)
        el = sh + _UPPER_ARM * seg() * d1
        wr = el + _FOREARM * seg() * d2
        pts[f"{side}_elbow"], pts[f"{side}_wrist"] = el, wr
        pts[f"{side}_hand"] = wr + 0.03 * d2
        hip = np.array([s * hw, 0.0])
        pts[f"{side}_hip"] = hip
        r = rng.random()                        # leg: standing, stepping out, crossing
        c = (rng.uniform(-0.05, 0.3) if r < 0.7 else rng.uniform(0.3, 0.8) if r < 0.9
             else rng.uniform(-0.35, -0.05))
        k = (rng.normal(0, 0.08) if rng.random() < 0.55
             else rng.uniform(0.2, 1.5) * (1 if rng.random() < 0.5 else -1))
        c2 = float(np.clip(c + k, -1.2, 1.8))
        kn = hip + _THIGH * seg() * _dir(s * c)
        sd = _dir(s * c2)
        an = kn + _SHIN * seg() * sd
        pts[f"{side}_knee"], pts[f"{side}_ankle"] = kn, an
        if feet:
            f = _foot(an, sd, s, rng.uniform(0.1, 0.8), yaw, -0.5 * s * c2)
            heel_hidden[side] = _heel_hidden(f)
            pts.update({f"{side}_{k}": v for k, v in f.items()})
            continue
        toe = s if abs(yaw) < 0.25 else math.copysign(1.0, yaw)
        fd = 0.4 * sd + np.array([toe, 0.3])
        pts[f"{side}_toe"] = an + 0.07 * fd / np.linalg.norm(fd)
    # Head and face, in the head's own frame (u towards image right, v down).
    ha = bend + rng.normal(0, 0.15)
    hup = _dir(ha + math.pi)
    hright = np.array([-hup[1], hup[0]])
    hc = neck + 0.105 * hup
    rx, ry = _HEAD_RX * (0.9 + 0.1 * build), _HEAD_RY

    def face(u, v):
        return hc + u * rx * hright - v * ry * hup

    sy = math.sin(yaw)
    pts["head"] = hc
    pts["nose"] = face(0.78 * sy, 0.32)
    for s, side in ((-1, "r"), (1, "l")):
        # Eyes and nose turn with the face; the ears stay at the sides (the far one peeks
        # out behind the head) so every mark stays distinct and visible.
        pts[f"{side}_eye"] = face(0.38 * s * cw + 0.45 * sy, 0.02)
        pts[f"{side}_ear"] = face(0.95 * s - 0.1 * sy, 0.12)
    far = 0 if abs(yaw) < 0.25 else (1 if yaw > 0 else -1)   # turning to its left hides the left
    return {"names": tuple(pts), "xy": np.array(list(pts.values())), "yaw": yaw,
            "build": build, "head_angle": ha, "head_axes": (rx, ry), "far": far,
            "feet": bool(feet), "heel_hidden": heel_hidden}


def _style(rng) -> dict:
    skin = _rgb(_SKIN[int(rng.integers(len(_SKIN)))]) * rng.uniform(0.9, 1.05)
    shirt = _hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.45, 0.95))
    pants = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.25, 0.8))
    hair = _hsv(rng.uniform(0.02, 0.12), rng.uniform(0.3, 0.8), rng.uniform(0.08, 0.45))
    shoes = _hsv(rng.random(), rng.uniform(0, 0.5), rng.uniform(0.05, 0.3))
    lut = np.zeros((len(PART_NAMES), 3), np.float32)
    lut[_P["torso"]] = shirt
    lut[_P["neck"]] = skin * 0.9
    lut[_P["head"]] = skin
    lut[_P["hair"]] = hair
    sleeves = rng.random() < 0.5
    shorts = rng.random() < 0.25
    for side in "lr":
        lut[_P[f"{side}_ear"]] = skin * 0.72
        lut[_P[f"{side}_eye"]] = (25, 25, 25)
        lut[_P[f"{side}_upper_arm"]] = shirt * 0.94
        lut[_P[f"{side}_forearm"]] = shirt * 0.8 if sleeves else skin * 0.92
        lut[_P[f"{side}_hand"]] = skin
        lut[_P[f"{side}_thigh"]] = pants
        lut[_P[f"{side}_shin"]] = skin * 0.92 if shorts else pants * 0.82
        lut[_P[f"{side}_foot"]] = shoes
    lut[_P["nose"]] = (60, 60, 190)
    textured = [_P["torso"], _P["l_upper_arm"], _P["r_upper_arm"]]
    if sleeves:
        textured += [_P["l_forearm"], _P["r_forearm"]]
    return {"lut": lut, "texture": int(rng.integers(4)), "textured": textured,
            "tex_period": rng.uniform(0.03, 0.07), "tex_angle": rng.uniform(0, math.pi),
            "tex_amp": rng.uniform(0.15, 0.3)}


def _place(fig: dict, H: float, angle: float, origin) -> dict:
    """Body units -> image pixels: rotate by ``angle`` about the pelvis, scale, translate."""
    c, s = math.cos(angle), math.sin(angle)
    R = np.array([[c, s], [-s, c]]) * H          # transposed: rows are points
    xy = fig["xy"] @ R + np.asarray(origin, dtype=np.float64)
    return dict(zip(fig["names"], xy))


def _extent(fig: dict, H: float, angle: float) -> np.ndarray:
    """(x0, y0, x1, y1) of a figure placed at the origin, padded by the limb thickness."""
    c, s = math.cos(angle), math.sin(angle)
    p = fig["xy"] @ (np.array([[c, s], [-s, c]]) * H)
    pad = 0.09 * H
    return np.array([p[:, 0].min() - pad, p[:, 1].min() - pad,
                     p[:, 0].max() + pad, p[:, 1].max() + pad])


def _draw_figure(img, owner, part, pid: int, fig: dict, P: dict, H: float, angle: float,
                 style: dict, rng):
    """Draw one figure on ``img`` (in place) and record it in the owner/part maps."""
    h, w = owner.shape
    allp = np.array(list(P.values()))
    pad = 0.12 * H + 3
    x0 = max(int(math.floor(allp[:, 0].min() - pad)), 0)
    y0 = max(int(math.floor(allp[:, 1].min() - pad)), 0)
    x1 = min(int(math.ceil(allp[:, 0].max() + pad)) + 1, w)
    y1 = min(int(math.ceil(allp[:, 1].max() + pad)) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return
    pm = np.zeros((y1 - y0, x1 - x0), np.uint8)
    off = np.array([x0, y0], dtype=np.float64)
    b = fig["build"]

    def q(name):
        return _fix(P[name] - off)

    def cap(pid_, a, bb, t):
        cv2.line(pm, q(a), q(bb), pid_, max(1, int(round(t * H * b))), cv2.LINE_8, _SHIFT)

    def disc(pid_, a, r):
        cv2.circle(pm, q(a), max(_ONE, int(round(r * _ONE))), pid_, -1, cv2.LINE_8, _SHIFT)

    def shoe(side):
        # The labelled heel and toes sit just inside the drawn outline (a corner pixel
        # of a filled polygon may fall outside it).
        c = np.array([P[f"{side}_{k}"] for k in ("shoe_a", "shoe_b", "heel", "big_toe",
                                                  "small_toe")]) - off
        mid = c.mean(0)
        d = c - mid
        c = c + d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-6) * max(
            1.5, 0.012 * H)
        hull = cv2.convexHull(np.array([_fix(p) for p in c], np.int32))
        cv2.fillConvexPoly(pm, hull, _P[f"{side}_foot"], cv2.LINE_8, _SHIFT)

    def leg(side):
        cap(_P[f"{side}_thigh"], f"{side}_hip", f"{side}_knee", 0.078)
        cap(_P[f"{side}_shin"], f"{side}_knee", f"{side}_ankle", 0.062)
        if fig.get("feet"):
            shoe(side)
        else:
            cap(_P[f"{side}_foot"], f"{side}_ankle", f"{side}_toe", 0.045)

    def arm(side):
        cap(_P[f"{side}_upper_arm"], f"{side}_shoulder", f"{side}_elbow", 0.055)
        cap(_P[f"{side}_forearm"], f"{side}_elbow", f"{side}_wrist", 0.046)
        disc(_P[f"{side}_hand"], f"{side}_hand", 0.032 * H * b)

    far = fig["far"]
    order = ("l", "r") if far > 0 else ("r", "l") if far < 0 else (
        ("l", "r") if rng.random() < 0.5 else ("r", "l"))
    for side in order:
        leg(side)
    if far:
        arm(order[0])                            # the far arm goes behind the torso
    # Torso: shoulders and hips inside the polygon, where the limbs attach.
    up = P["neck"] - 0.5 * (P["l_hip"] + P["r_hip"])
    up /= max(np.linalg.norm(up), 1e-6)
    rt = np.array([-up[1], up[0]])
    corners = [P["r_shoulder"] - 0.022 * H * rt + 0.03 * H * up,
               P["l_shoulder"] + 0.022 * H * rt + 0.03 * H * up,
               P["l_hip"] + 0.035 * H * rt - 0.03 * H * up,
               P["r_hip"] - 0.035 * H * rt - 0.03 * H * up]
    cv2.fillConvexPoly(pm, np.array([_fix(c - off) for c in corners], np.int32), _P["torso"],
                       cv2.LINE_8, _SHIFT)
    cap(_P["neck"], "neck", "head", 0.05)
    rx, ry = fig["head_axes"]
    hdeg = math.degrees(angle + fig["head_angle"])
    cv2.ellipse(pm, q("head"), _fix((rx * H, ry * H)), hdeg, 0, 360, _P["head"], -1,
                cv2.LINE_8, _SHIFT)
    # Hair: the top of an ellipse whose chord lies just above the eyes.
    hup = np.array([math.sin(math.radians(hdeg)), -math.cos(math.radians(hdeg))])
    hc = P["head"] + 0.3 * ry * H * hup
    cv2.ellipse(pm, _fix(hc - off), _fix((rx * H * 1.03, ry * H * 0.74)), hdeg, 180, 360,
                _P["hair"], -1, cv2.LINE_8, _SHIFT)
    fr = max(1.0, 0.2 * rx * H)
    for side in "lr":
        disc(_P[f"{side}_ear"], f"{side}_ear", max(1.2, 0.3 * rx * H))
    for side in "lr":
        disc(_P[f"{side}_eye"], f"{side}_eye", fr * 0.8)
    disc(_P["nose"], "nose", fr * 0.75)
    for side in (order if far else ("l", "r")):
        if not far or side == order[1]:
            arm(side)

    m = pm > 0
    col = style["lut"][pm]
    # Shirt texture: stripes, checks or blotches modulate the brightness.
    tex = style["texture"]
    if tex:
        tmask = np.isin(pm, style["textured"])
        if tmask.any():
            period = style["tex_period"] * H
            yy = np.arange(y0, y1, dtype=np.float32)[:, None]
            xx = np.arange(x0, x1, dtype=np.float32)[None, :]
            if tex == 1:
                ca, sa = math.cos(style["tex_angle"]), math.sin(style["tex_angle"])
                f = (np.sin((xx * ca + yy * sa) * (2 * math.pi / period)) > 0)
            elif tex == 2:
                f = ((np.floor(xx / period) + np.floor(yy / period)) % 2) > 0
            else:
                g = rng.random((max(2, pm.shape[0] // 6), max(2, pm.shape[1] // 6)))
                f = cv2.resize(g.astype(np.float32), (pm.shape[1], pm.shape[0])) > 0.5
            scale = np.where(tmask & f, 1.0 - style["tex_amp"], 1.0).astype(np.float32)
            col *= scale[..., None]
    # Far-side limbs a shade darker (a depth cue that survives mirroring).
    if far:
        fs = "l" if far > 0 else "r"
        fparts = [_P[f"{fs}_{n}"] for n in ("upper_arm", "forearm", "hand", "thigh", "shin",
                                             "foot")]
        col[np.isin(pm, fparts)] *= 0.78
    # Dark outlines between parts and around the figure.
    coarse = _OUTLINE_LUT[pm]
    edge = (cv2.dilate(coarse, _K3) != cv2.erode(coarse, _K3)) & m
    col[edge] *= 0.45
    roi = img[y0:y1, x0:x1]
    roi[m] = np.clip(col[m], 0, 255).astype(np.uint8)
    owner[y0:y1, x0:x1][m] = pid
    part[y0:y1, x0:x1][m] = pm[m]


def _bbox_overlap(a, b) -> float:
    """Largest fraction of either box covered by their intersection."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    if inter <= 0:
        return 0.0
    aa = (a[2] - a[0]) * (a[3] - a[1])
    ab = (b[2] - b[0]) * (b[3] - b[1])
    return inter / max(min(aa, ab), 1e-6)


def _mask_bbox(mask: np.ndarray):
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        return None, 0.0
    return ([float(xs[0]), float(ys[0]), float(xs[-1] - xs[0] + 1), float(ys[-1] - ys[0] + 1)],
            float(mask.sum()))


# ------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------
def generate_image(seed, min_size: int = 192, max_size: int = 320, max_people: int = 4,
                   min_height: float = 0.3, max_height: float = 0.9,
                   p_unlabelled: float = 0.1, p_crowd: float = 0.08,
                   crowd: bool = False, feet: bool = False, return_maps: bool = False):
    """Draw one synthetic image with its labels.

    Parameters
    ----------
    seed : int or sequence of int
        Everything about the image follows from it (``np.random.default_rng(seed)``); see
        :func:`image_seed` for the seeds of a dataset's images.
    min_size, max_size : int
        Range of each image side in pixels (width and height drawn independently).
    max_people : int
        Labelled-or-unlabelled figures per image are drawn from 1..max_people.
    min_height, max_height : float
        Figure height (head top to soles, standing) as a fraction of the image height.
    p_unlabelled : float
        Probability that one figure of the image is stored unlabelled (ignore region).
    p_crowd : float
        Probability of a crowd of small figures (an ``is_crowd`` person + ignore region).
    crowd : bool
        Crowd setting (labelled crowds, for training and benchmarking crowd decoding):
        5-15 figures in 1-3 rows (back rows smaller and higher; a row fits the image
        width, the front row's feet may leave the image at the bottom), each
        overlapping its row neighbour by 30-70 % of the narrower box width, then 1-3
        occluders (poles, signs,
        a railing) drawn over them; ``max_people`` is ignored, ``min_height`` /
        ``max_height`` give the front row's figure height (rows shrink to fit the
        image width, so figures can be smaller). Keypoints under an occluder get v = 1.
    feet : bool
        Draw shoes with a heel, a big toe and a small toe and label them: people are then
        in the ``coco_foot`` layout (COCO's 17, then left big toe, small toe, heel, right
        big toe, small toe, heel), visibility as for the body points (a heel hidden
        behind its own shoe, as when the foot points at the camera, is v = 1).
        Without it the images are exactly those drawn before the option existed.
    return_maps : bool
        Also return a dict of debugging maps (see below).

    Returns
    -------
    image : ndarray, uint8, (h, w, 3)
        BGR pixels (before JPEG encoding).
    people : list of dict
        In drawing order (later ones on top), ready for :meth:`PoseDBWriter.add_image`:
        ``keypoints`` (17, 3) float32 in the ``coco`` layout ((23, 3) ``coco_foot`` with
        ``feet``; x, y, v; all zero for an unlabelled or crowd entry), ``bbox``
        [x, y, w, h] and ``area`` of the visible body mask, ``is_crowd`` 0/1, ``extra`` (``unlabelled``/``crowd`` flags, ``yaw``/``lean``
        in degrees, ``height`` in pixels).
    ignore_rles : list of dict
        COCO compressed RLEs ``{"size": [h, w], "counts": str, "reason": str}``, reason
        ``'unlabelled'`` or ``'crowd'``.
    maps : dict, only with ``return_maps``
        ``owner`` (h, w) int16: index into ``people`` of the topmost figure (-1 background,
        crowd figures >= 100); ``part`` (h, w) uint8: its :data:`PART_NAMES` id;
        ``background`` (h, w, 3) uint8: the image before any figure was drawn.
    """
    if not (16 <= min_size <= max_size):
        raise ValueError(f"need 16 <= min_size <= max_size, got {min_size}, {max_size}")
    if max_people < 1:
        raise ValueError(f"max_people must be >= 1, got {max_people}")
    if not (0 < min_height <= max_height):
        raise ValueError(f"need 0 < min_height <= max_height, got {min_height}, {max_height}")
    rng = np.random.default_rng(seed)
    layout = _FOOT if feet else _COCO
    K = layout.num_keypoints
    w = int(rng.integers(min_size, max_size + 1))
    h = int(rng.integers(min_size, max_size + 1))
    img = _background(rng, h, w)
    background = img.copy() if return_maps else None
    owner = np.full((h, w), -1, np.int16)
    part = np.zeros((h, w), np.uint8)

    # Crowd first: small figures packed in a band, behind everybody else.
    crowd_n = 0
    if rng.random() < p_crowd:
        crowd_n = int(rng.integers(5, 10))
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.3, 0.8) * h
        for j in range(crowd_n):
            fig = _sample_figure(rng, feet)
            H = rng.uniform(0.12, 0.2) * h
            ang = rng.normal(0, 0.1)
            org = (cx + rng.normal(0, 0.12 * w), cy + rng.normal(0, 0.04 * h))
            _draw_figure(img, owner, part, _CROWD_BASE + j, fig, _place(fig, H, ang, org), H,
                         ang, _style(rng), rng)

    # Main figures, placed so that no two boxes overlap by more than about half.
    n = 0 if crowd else int(rng.integers(1, max_people + 1))
    placed = _place_crowd(rng, w, h, min_height, max_height, feet) if crowd else []
    for _ in range(n):
        fig = _sample_figure(rng, feet)
        ang = float(np.clip(rng.normal(0, 0.2), -0.6, 0.6))
        H = rng.uniform(min_height, max_height) * h
        for attempt in range(20):
            ext = _extent(fig, H, ang)
            bw, bh = ext[2] - ext[0], ext[3] - ext[1]
            lo_x, hi_x = -ext[0] - 0.2 * bw, w - ext[2] + 0.2 * bw
            lo_y, hi_y = -ext[1] - 0.1 * bh, h - ext[3] + 0.2 * bh
            ox = rng.uniform(lo_x, hi_x) if hi_x > lo_x else 0.5 * (lo_x + hi_x)
            oy = rng.uniform(lo_y, hi_y) if hi_y > lo_y else 0.5 * (lo_y + hi_y)
            box = ext + np.array([ox, oy, ox, oy])
            if all(_bbox_overlap(box, p[4]) < 0.5 for p in placed):
                placed.append((fig, _place(fig, H, ang, (ox, oy)), H, ang, box))
                break
            if attempt % 5 == 4:
                H *= 0.85                        # crowded: try a smaller figure
    for i, (fig, P, H, ang, _) in enumerate(placed):
        _draw_figure(img, owner, part, i, fig, P, H, ang, _style(rng), rng)
    if crowd:
        _draw_occluders(img, owner, part, rng)
    unlabelled = (int(rng.integers(len(placed)))
                  if placed and rng.random() < p_unlabelled else -1)

    # Camera: grain and sometimes a slight blur.
    grain = rng.integers(0, 11, size=(h, w), dtype=np.uint8)
    img = cv2.subtract(cv2.add(img, cv2.merge([grain, grain, grain])), (5, 5, 5, 0))
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.4, 0.9))

    people, regions = [], []
    labelled_px = np.zeros((h, w), bool)
    for i, (fig, P, H, ang, _) in enumerate(placed):
        if i != unlabelled:
            labelled_px |= owner == i
    for i, (fig, P, H, ang, _) in enumerate(placed):
        vis = owner == i
        bbox, area = _mask_bbox(vis)
        extra = {"yaw": round(math.degrees(fig["yaw"]), 2), "lean": round(math.degrees(ang), 2),
                 "height": round(float(H), 2)}
        kp = np.zeros((K, 3), np.float32)
        if i == unlabelled:
            extra["unlabelled"] = True
            if area > 0:
                region = cv2.dilate(vis.astype(np.uint8), _K3) & ~labelled_px
                regions.append(_rle(region, "unlabelled"))
        else:
            for k, name in enumerate(layout.keypoints):
                x, y = P[name]
                if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
                    continue                     # off the pixel-centre grid: v = 0
                px, py = int(round(x)), int(round(y))
                ok = owner[py, px] == i and _KP_PART_OK[k, part[py, px]]
                if name.endswith("_heel") and fig["heel_hidden"][name[0]]:
                    ok = False
                kp[k] = (x, y, 2.0 if ok else 1.0)
        people.append({"keypoints": kp, "bbox": bbox, "area": area, "is_crowd": 0,
                       "extra": extra})
        people[-1]["anchors"] = _anchors(fig, P, H, ang, owner, part, i)
    if crowd_n:
        cm = owner >= _CROWD_BASE
        if cm.sum() >= 10:
            region = cv2.dilate(cm.astype(np.uint8), _K3, iterations=2) & ~labelled_px
            bbox, area = _mask_bbox(region.astype(bool))
            regions.append(_rle(region, "crowd"))
            people.append({"keypoints": np.zeros((K, 3), np.float32), "bbox": bbox,
                           "area": area, "is_crowd": 1,
                           "extra": {"crowd": True, "count": crowd_n}})
    if return_maps:
        return img, people, regions, {"owner": owner, "part": part, "background": background}
    return img, people, regions


def _place_crowd(rng, w: int, h: int, min_height: float, max_height: float,
                 feet: bool = False) -> list:
    """The crowd setting's figures as ``(fig, P, H, angle, box)``, back row first."""
    n = int(rng.integers(5, 16))
    rows = 1 if n <= 6 else 2 if n <= 11 else 3
    sizes = [n // rows + (1 if r < n % rows else 0) for r in range(rows)]
    front_h = rng.uniform(min_height, max_height) * h
    bottom = rng.uniform(0.95, 1.1) * h                  # soles of the front row
    placed = []
    for r, m in enumerate(sizes):                        # r = 0 is the back row
        depth = rows - 1 - r
        figs = [_sample_figure(rng, feet) for _ in range(m)]
        angs = [float(np.clip(rng.normal(0, 0.12), -0.4, 0.4)) for _ in range(m)]
        size = rng.uniform(0.9, 1.1, m)
        overlap = rng.uniform(0.3, 0.7, max(m - 1, 0))
        # Lay the row out at unit height, then scale it to fit the image width.
        ext = [_extent(f, s, a) for f, s, a in zip(figs, size, angs)]
        x = [0.0]
        for i in range(1, m):
            prev, cur = ext[i - 1], ext[i]
            o = overlap[i - 1] * min(prev[2] - prev[0], cur[2] - cur[0])
            x.append(x[-1] + prev[2] - o - cur[0])
        span = x[-1] + ext[-1][2] - ext[0][0]
        # Rows stay inside the image width: a person cut at the side loses a shoulder
        # and with it the neck, which disconnects the whole COCO-18 tree.
        H = min(front_h * 0.8 ** depth, 0.98 * w / max(span, 1e-6))
        left = rng.uniform(0.0, max(w - H * span, 0.0)) - H * ext[0][0]
        base = bottom - depth * 0.22 * front_h
        for f, s, a, e, xi in zip(figs, size, angs, ext, x):
            Hi = H * s
            org = (left + H * xi, base - H * e[3] + rng.normal(0, 0.02) * Hi)
            placed.append((f, _place(f, Hi, a, org), Hi, a, e * H + np.r_[org, org]))
    return placed


def _draw_occluders(img, owner, part, rng):
    """1-3 opaque occluders (a pole, a sign, a railing) over the crowd setting's people."""
    h, w = owner.shape
    for _ in range(int(rng.integers(1, 4))):
        kind = int(rng.integers(3))
        if kind == 0:        # vertical pole
            bw, bh = rng.uniform(0.02, 0.06) * w, rng.uniform(0.5, 1.0) * h
        elif kind == 1:      # sign
            bw, bh = rng.uniform(0.1, 0.25) * w, rng.uniform(0.08, 0.2) * h
        else:                # railing
            bw, bh = rng.uniform(0.3, 0.8) * w, rng.uniform(0.02, 0.05) * h
        x0, y0 = rng.uniform(-0.1 * bw, w - 0.9 * bw), rng.uniform(0.2 * h, h - 0.5 * bh)
        x1, y1 = int(min(w, x0 + bw)), int(min(h, y0 + bh))
        x0, y0 = int(max(0, x0)), int(max(0, y0))
        if x1 <= x0 or y1 <= y0:
            continue
        img[y0:y1, x0:x1] = np.clip(_muted(rng, 0.2, 0.8, 0.6), 0, 255).astype(np.uint8)
        owner[y0:y1, x0:x1] = _OCCLUDER
        part[y0:y1, x0:x1] = 0


def _anchors(fig: dict, P: dict, H: float, angle: float, owner, part, pid: int) -> dict:
    """Points a COCO-17 label lacks, for other layouts: ``neck`` (where the neck meets the
    torso) and ``head_top`` (the top of the head along its axis, just inside the hair
    cap), each as [x, y, v] with v as for the keypoints."""
    c, s = math.cos(angle), math.sin(angle)
    R = np.array([[c, s], [-s, c]]) * H
    hup = _dir(fig["head_angle"] + math.pi)
    pts = {"neck": (P["neck"], ("neck", "torso")),
           "head_top": (P["head"] + (0.85 * fig["head_axes"][1] * hup) @ R, ("head", "hair"))}
    h, w = owner.shape
    out = {}
    for name, (xy, parts) in pts.items():
        x, y = float(xy[0]), float(xy[1])
        if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
            out[name] = [0.0, 0.0, 0.0]
            continue
        px, py = int(round(x)), int(round(y))
        ok = owner[py, px] == pid and PART_NAMES[part[py, px]] in parts
        out[name] = [x, y, 2.0 if ok else 1.0]
    return out


def draw_keypoints(img: np.ndarray, people: Sequence[dict]) -> np.ndarray:
    """A copy of ``img`` with the COCO skeletons of ``people`` drawn (with the feet of
    ``coco_foot`` people; left limbs green, right limbs red, occluded keypoints hollow).
    For looking at samples."""
    out = img.copy()
    for p in people:
        kp = np.asarray(p["keypoints"])
        sk = _FOOT if len(kp) == _FOOT.num_keypoints else _COCO
        for a, b in sk.limb_index:
            if kp[a, 2] > 0 and kp[b, 2] > 0:
                na, nb = sk.keypoints[a], sk.keypoints[b]
                col = ((0, 200, 0) if na.startswith("l_") or nb.startswith("l_") else
                       (0, 0, 230) if na.startswith("r_") or nb.startswith("r_") else
                       (230, 160, 0))
                cv2.line(out, _fix(kp[a, :2]), _fix(kp[b, :2]), col, 1, cv2.LINE_AA, _SHIFT)
        for k in range(sk.num_keypoints):
            if kp[k, 2] > 0:
                name = sk.keypoints[k]
                col = (0, 255, 0) if name.startswith("l_") else (
                    (0, 0, 255) if name.startswith("r_") else (255, 200, 0))
                cv2.circle(out, _fix(kp[k, :2]), 2 * _ONE, col, -1 if kp[k, 2] >= 2 else 1,
                           cv2.LINE_AA, _SHIFT)
    return out


# ------------------------------------------------------------------------------------------
# datasets
# ------------------------------------------------------------------------------------------
def _generate_record(job):
    """(file_name, split, seed, params) -> everything ``add_image`` needs (worker-safe)."""
    file_name, split, seed, params = job
    gen = {k: v for k, v in params.items() if k != "quality"}
    img, people, regions = generate_image(seed, **gen)
    return (file_name, split, encode_jpeg(img, params["quality"]), img.shape[1], img.shape[0],
            people, regions, list(seed))


def make_synthetic_db(out: str, num_images: int, num_val: int = 0, seed: int = 0,
                      workers: int = 1, progress: bool = True, tool: str = "make_synthetic",
                      args: Optional[dict] = None, on_image=None, **params) -> dict:
    """Write (or complete) a synthetic pose DB with ``num_images`` train and ``num_val`` val
    images.

    Image ``i`` of split ``s`` is ``{s}/{i:06d}.jpg``, drawn from ``image_seed(seed, s, i)``;
    images already in ``out`` are skipped, so an interrupted run resumes and a larger
    ``num_images`` extends a DB. The keypoints are stored in the ``coco`` layout
    (``coco_foot`` with ``feet=True``).

    Parameters
    ----------
    out : str
        DB path (its folder must exist).
    num_images, num_val : int
        Train and val image counts.
    seed : int
        Dataset seed.
    workers : int
        Processes drawing images (the DB is written by this process; the bytes do not depend
        on the number of workers).
    progress : bool
        Show a tqdm progress bar.
    tool, args : str, dict
        Provenance recorded in the DB meta.
    on_image : callable, optional
        Called with each file name after it is added (progress hooks, tests).
    **params
        Generation parameters, see :data:`DEFAULTS` (``quality`` is the JPEG quality).

    Returns
    -------
    dict
        ``written``, ``skipped`` (already stored), ``people`` (labelled), ``unlabelled``,
        ``crowd``, ``keypoints`` (labelled), ``seconds``, ``per_split`` written counts.

    Raises
    ------
    PoseDBError
        ``out`` cannot be written, holds another dataset, or was made with other
        generation parameters.
    """
    from .store import PoseDB, PoseDBError, PoseDBWriter

    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown synthetic parameters {sorted(unknown)}; "
                        f"known: {sorted(DEFAULTS)}")
    if num_images < 0 or num_val < 0:
        raise ValueError("image counts must be >= 0")
    p = dict(DEFAULTS, **params)
    # Fail early on bad parameters rather than in a worker.
    generate_image(0, **{k: v for k, v in p.items() if k != "quality"})
    recipe = {"generator_version": GENERATOR_VERSION, "seed": int(seed), **p}
    for key in ("crowd", "feet"):
        if not recipe[key]:
            del recipe[key]      # DBs made before these options have no such key
    if os.path.exists(out):
        db = PoseDB(out)
        try:
            old = db.meta.get("synthetic")
        finally:
            db.close()
        if db.dataset == "synthetic" and old is not None and old != recipe:
            diff = sorted(k for k in set(old) | set(recipe) if old.get(k) != recipe.get(k))
            raise PoseDBError(
                f"{out} was generated with other synthetic parameters ({', '.join(diff)} "
                f"differ: stored {[old.get(k) for k in diff]}, now "
                f"{[recipe.get(k) for k in diff]}); use the same ones to resume, or a new file")

    t0 = time.time()
    stats = {"written": 0, "skipped": 0, "people": 0, "unlabelled": 0, "crowd": 0,
             "keypoints": 0, "per_split": {"train": 0, "val": 0}}
    with PoseDBWriter(out, dataset="synthetic", skeleton="coco_foot" if p["feet"] else "coco",
                      tool=tool,
                      args=args if args is not None else {"num_images": num_images,
                                                          "num_val": num_val, **recipe}) as wr:
        wr.set_meta("synthetic", recipe)
        jobs = []
        for split, count in (("train", num_images), ("val", num_val)):
            for i in range(count):
                name = f"{split}/{i:06d}.jpg"
                if wr.has_image(name):
                    stats["skipped"] += 1
                else:
                    jobs.append((name, split, image_seed(seed, split, i), p))
        bar = None
        if progress and jobs:
            from tqdm import tqdm
            bar = tqdm(total=len(jobs), unit="img", desc="synthetic", dynamic_ncols=True)
        pool = None
        try:
            if workers > 1 and len(jobs) > 1:
                import multiprocessing as mp
                # spawn: the caller may hold MXNet/OpenMP threads that fork would break.
                pool = mp.get_context("spawn").Pool(int(workers))
                results = pool.imap(_generate_record, jobs, chunksize=8)
            else:
                results = map(_generate_record, jobs)
            for name, split, data, w, h, people, regions, s in results:
                wr.add_image(name, data, w, h, split, people=people, ignore_rles=regions,
                             extra={"seed": s})
                stats["written"] += 1
                stats["per_split"][split] += 1
                for q in people:
                    if q["is_crowd"]:
                        stats["crowd"] += 1
                    elif q["extra"].get("unlabelled"):
                        stats["unlabelled"] += 1
                    else:
                        stats["people"] += 1
                        stats["keypoints"] += int((q["keypoints"][:, 2] > 0).sum())
                if bar is not None:
                    bar.update(1)
                if on_image is not None:
                    on_image(name)
        finally:
            if pool is not None:
                pool.terminate()
            if bar is not None:
                bar.close()
            stats["seconds"] = time.time() - t0
    return stats


# ------------------------------------------------------------------------------------------
# COCO-format JSON + images in a 14-keypoint layout (the "your own keypoints" example)
# ------------------------------------------------------------------------------------------
#: Keypoint names written by :func:`write_synthetic_coco`, in array order. ``custom``: a
#: layout mxpose does not ship ("Left X"/"Right X" names, the head top called ``crown``),
#: read by ``coco_parse`` from the names and the file's skeleton; ``crowdpose``: the
#: CrowdPose release's names, recognised as the shipped ``crowdpose`` layout.
COCO14_NAMES = {
    "custom": ("Left Shoulder", "Right Shoulder", "Left Elbow", "Right Elbow", "Left Wrist",
               "Right Wrist", "Left Hip", "Right Hip", "Left Knee", "Right Knee",
               "Left Ankle", "Right Ankle", "crown", "neck"),
    "crowdpose": ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
                  "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle", "head", "neck"),
}
# Where each of the 14 points comes from: a COCO keypoint, or an anchor of the figure.
_COCO14_SOURCE = ("l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist", "r_wrist",
                  "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle", "head_top",
                  "neck")
# 1-based skeleton of the written file (the custom layout's limbs).
_COCO14_SKELETON = ((13, 14), (14, 1), (14, 2), (1, 3), (3, 5), (2, 4), (4, 6), (1, 7),
                    (2, 8), (7, 8), (7, 9), (9, 11), (8, 10), (10, 12))


def coco14_keypoints(person: dict) -> np.ndarray:
    """(14, 3) x, y, v of a :func:`generate_image` person in the 14-point layout."""
    out = np.zeros((14, 3), np.float32)
    if "anchors" not in person or not np.any(np.asarray(person["keypoints"])[:, 2] > 0):
        return out
    kp = np.asarray(person["keypoints"], np.float32)
    for j, src in enumerate(_COCO14_SOURCE):
        out[j] = person["anchors"][src] if src in person["anchors"] else kp[_COCO.index(src)]
    return out


def write_synthetic_coco(out_dir: str, num_images: int, num_val: int = 0, seed: int = 0,
                         names: str = "custom", prefix: str = "synthetic_people",
                         progress: bool = True, **params) -> dict:
    """Write synthetic people as a COCO-format keypoint dataset in a 14-point layout.

    Writes ``out_dir/{split}/{i:06d}.jpg`` (``file_name`` ``{split}/{i:06d}.jpg``, relative
    to ``out_dir``) and ``out_dir/{prefix}_{split}.json`` for the splits ``train``
    (``num_images``) and ``val`` (``num_val``): a file a user could have
    exported from a labelling tool, with one ``person`` category naming its 14 keypoints
    (:data:`COCO14_NAMES`) and its 1-based ``skeleton``. Images are those of
    :func:`generate_image` (same seeds as :func:`make_synthetic_db`); unlabelled figures
    and crowds are written as COCO does (no keypoints / ``iscrowd`` with an RLE
    segmentation). Existing image files are kept (their bytes do not change), the JSON is
    rewritten.

    Returns
    -------
    dict
        ``images``, ``people`` (labelled), ``json`` (the paths by split).
    """
    import json
    if names not in COCO14_NAMES:
        raise ValueError(f"names must be one of {sorted(COCO14_NAMES)}, got {names!r}")
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown synthetic parameters {sorted(unknown)}")
    p = dict(DEFAULTS, **params)
    gen = {k: v for k, v in p.items() if k != "quality"}
    category = {"id": 1, "name": "person", "supercategory": "person",
                "keypoints": list(COCO14_NAMES[names]),
                "skeleton": [list(e) for e in _COCO14_SKELETON]}
    stats = {"images": 0, "people": 0, "json": {}}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=num_images + num_val, unit="img", desc="synthetic coco",
                   dynamic_ncols=True)
    for split, count in (("train", num_images), ("val", num_val)):
        if count <= 0:
            continue
        os.makedirs(os.path.join(out_dir, split), exist_ok=True)
        images, anns = [], []
        for i in range(count):
            img, people, regions = generate_image(image_seed(seed, split, i), **gen)
            fn = f"{split}/{i:06d}.jpg"         # unique across splits: one DB holds both
            path = os.path.join(out_dir, fn)
            if not os.path.isfile(path):
                with open(path + ".tmp", "wb") as f:
                    f.write(encode_jpeg(img, p["quality"]))
                os.replace(path + ".tmp", path)
            iid = i + 1
            images.append({"id": iid, "file_name": fn, "width": int(img.shape[1]),
                           "height": int(img.shape[0])})
            by_reason = {r["reason"]: r for r in regions}
            for q in people:
                kp = coco14_keypoints(q)
                ann = {"id": len(anns) + 1, "image_id": iid, "category_id": 1,
                       "bbox": [round(float(v), 2) for v in q["bbox"]],
                       "area": round(float(q["area"]), 2), "iscrowd": int(q["is_crowd"]),
                       "num_keypoints": int((kp[:, 2] > 0).sum()),
                       "keypoints": [round(float(v), 2) if j % 3 < 2 else int(v)
                                     for j, v in enumerate(kp.reshape(-1))]}
                reason = "crowd" if q["is_crowd"] else (
                    "unlabelled" if q["extra"].get("unlabelled") else None)
                if reason is not None:
                    if reason not in by_reason or q["area"] <= 0:
                        continue
                    r = by_reason[reason]
                    ann["segmentation"] = {"size": list(r["size"]), "counts": r["counts"]}
                else:
                    stats["people"] += 1
                anns.append(ann)
            stats["images"] += 1
            if bar is not None:
                bar.update(1)
        path = os.path.join(out_dir, f"{prefix}_{split}.json")
        with open(path + ".tmp", "w") as f:
            json.dump({"info": {"description": f"mxpose synthetic people, {names} 14-point "
                                               f"layout", "seed": int(seed), **p},
                       "images": images, "annotations": anns, "categories": [category]}, f)
        os.replace(path + ".tmp", path)
        stats["json"][split] = path
    if bar is not None:
        bar.close()
    return stats
