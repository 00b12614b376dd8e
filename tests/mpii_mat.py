"""Write synthetic MPII release .mat files shaped like the real mpii_human_pose_v1_u12_1.mat.

The real file is a MATLAB struct ``RELEASE`` of nested struct arrays. ``scipy.io.savemat``
writes a numpy structured array with object fields as a MATLAB struct array (a dict as a
1x1 struct), so a description in plain Python lists and dicts is turned into such arrays
here. Fields a record lacks are written as ``[]`` (0x0 double), as MATLAB does for an
unset field of a struct array.

:func:`build_sample_release` builds the release used by tests/test_mpii.py from the real
MPII sample images (``../shared/data/mpii_sample``): their 16 joints from
``test_mpii.json`` (0-based) written 1-based, with every irregularity of the real file
spread over them, and returns what the DB must hold.
"""
import itertools
import json
import os
import shutil

import numpy as np
import scipy.io

EMPTY = np.zeros((0, 0))          # MATLAB []


def struct_array(records, fields=None):
    """A (1, n) struct array from dicts; fields = union of keys (missing -> [])."""
    if fields is None:
        fields = []
        for r in records:
            fields += [k for k in r if k not in fields]
    a = np.zeros((1, len(records)), dtype=[(f, "O") for f in fields])
    for i, r in enumerate(records):
        for f in fields:
            a[0, i][f] = r.get(f, EMPTY)
    return a


def _rect(rect):
    """A person description -> annorect element dict.

    Keys: ``head`` (x1, y1, x2, y2), ``scale``, ``objpos`` (x, y), ``points`` (list of
    dicts x, y, id, is_visible; None is written as []) -- all 1-based, as in the file --,
    ``fields`` to force the field list (e.g. ``[]`` for a struct with no fields).
    """
    out = {}
    if "head" in rect:
        out.update(zip(("x1", "y1", "x2", "y2"), rect["head"]))
    if "points" in rect:
        pts = [{k: (EMPTY if v is None else v) for k, v in p.items()} for p in rect["points"]]
        out["annopoints"] = {"point": struct_array(pts, ["x", "y", "id", "is_visible"])} \
            if pts else EMPTY
    if "scale" in rect:
        out["scale"] = rect["scale"]
    if "objpos" in rect:
        out["objpos"] = {"x": rect["objpos"][0], "y": rect["objpos"][1]}
    return out


def write_release(path, images, video_list=("vidA", "vidB")):
    """Write ``RELEASE`` to ``path``.

    ``images``: dicts with ``name``, ``train`` (1/0), ``annorect`` (list of person dicts
    (see :func:`_rect`), or ``"nofields"`` for a 1x1 struct without fields, or ``[]``),
    ``rect_fields`` (optional field order / subset, e.g. ``["scale", "objpos"]`` as the
    test images have), ``frame_sec``, ``vididx`` (1-based), ``act`` (dict),
    ``single_person`` (list of 1-based annorect indices).
    """
    annolist = []
    for im in images:
        rects = im.get("annorect", [])
        if rects == "nofields":
            annorect = {}
        elif not rects:
            annorect = EMPTY
        else:
            annorect = struct_array([_rect(r) for r in rects], im.get("rect_fields"))
        annolist.append({"image": {"name": im["name"]}, "annorect": annorect,
                         "frame_sec": im.get("frame_sec", EMPTY),
                         "vididx": im.get("vididx", EMPTY)})
    n = len(images)
    single = np.empty((n, 1), dtype=object)
    for i, im in enumerate(images):
        sp = im.get("single_person", [])
        single[i, 0] = np.array(sp, dtype=np.float64).reshape(-1, 1) if sp else EMPTY
    acts = [im.get("act", {"cat_name": EMPTY, "act_name": EMPTY, "act_id": -1.0})
            for im in images]
    act = struct_array(acts, ["cat_name", "act_name", "act_id"]).reshape(n, 1)
    videos = np.empty((1, len(video_list)), dtype=object)
    videos[0, :] = list(video_list)
    release = {
        "annolist": struct_array(annolist, ["image", "annorect", "frame_sec", "vididx"]),
        "img_train": np.array([[float(im["train"]) for im in images]]),
        "version": "12",
        "single_person": single,
        "act": act,
        "video_list": videos,
    }
    scipy.io.savemat(path, {"RELEASE": release}, do_compression=True)


# is_visible as the real file has it, and the store visibility each must become.
VIS_FORMS = [(1.0, 2), ("1", 2), (0.0, 1), ("0", 1), (None, 2), (np.uint8(1), 2), ("", 2),
             (np.uint8(0), 1)]


def _coord(v, as_int):
    return np.uint16(v) if as_int and float(v).is_integer() else float(v)


def build_sample_release(sample_dir, work_dir):
    """The quirk-covering release over the real sample images.

    Returns ``(mat_path, image_dir, expected)``; ``expected`` maps file name to
    ``{"split", "train", "people": [{"keypoints" (16, 3) float32 0-based, "head_box",
    "scale", "center", "source_id"}], "extra": {...}}`` for the images that must be
    stored, plus ``expected["_skipped"]``: file name -> reason for the rest.
    """
    with open(os.path.join(sample_dir, "test_mpii.json")) as f:
        sample = json.load(f)
    img_dir = os.path.join(work_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    for s in sample:
        shutil.copyfile(os.path.join(sample_dir, s["image"]), os.path.join(img_dir, s["image"]))
    src0 = os.path.join(sample_dir, sample[0]["image"])
    for extra in ("test_a.jpg", "test_b.jpg", "badjoint.jpg", "empty.jpg"):
        shutil.copyfile(src0, os.path.join(img_dir, extra))
    with open(os.path.join(img_dir, "corrupt.jpg"), "wb") as f:
        f.write(b"\xff\xd8 this is not a JPEG at all" * 10)

    forms = itertools.cycle(VIS_FORMS)
    expected = {"_skipped": {}}
    images = []

    def person_from_json(s, shuffle=False, int_coords=False):
        """Rect dict (1-based) and expected person (0-based) for one JSON entry."""
        joints = np.asarray(s["joints"], dtype=np.float64)
        kp = np.zeros((16, 3), dtype=np.float32)
        pts = []
        for j in range(16):
            if not s["joints_vis"][j]:
                continue           # missing joint: absent from annopoints.point
            vis, v = next(forms)
            x, y = joints[j]
            pts.append({"x": _coord(x + 1, int_coords), "y": _coord(y + 1, int_coords),
                        "id": float(j), "is_visible": vis})
            kp[j] = (x, y, v)
        if shuffle:
            pts = pts[::-1]
        ht, un = joints[9], joints[8]
        head0 = (np.floor(min(ht[0], un[0])) - 10, np.floor(min(ht[1], un[1])),
                 np.ceil(max(ht[0], un[0])) + 10, np.ceil(max(ht[1], un[1])))
        rect = {"head": [np.uint16(h + 1) for h in head0], "points": pts,
                "scale": s["scale"], "objpos": [c + 1 for c in s["center"]]}
        exp = {"keypoints": kp, "head_box": head0, "scale": s["scale"],
               "center": tuple(s["center"])}
        return rect, exp

    s0, s1, s2, s3, s4 = sample
    # A: numeric visibility, three people: a full one, one without joints (annopoints []),
    # one with a single joint (a 1x1 point struct, squeezed by loadmat).
    r0, e0 = person_from_json(s0)
    r1 = {"head": [11.0, 21.0, 41.0, 61.0], "points": [], "scale": 1.5, "objpos": [101, 201]}
    e1 = {"keypoints": np.zeros((16, 3), np.float32), "head_box": (10, 20, 40, 60),
          "scale": 1.5, "center": (100, 200)}
    r2 = {"head": [51.0, 61.0, 71.0, 81.0],
          "points": [{"x": 300.5, "y": 400.25, "id": 7.0, "is_visible": "1"}],
          "scale": 0.9, "objpos": [301, 401]}
    e2 = {"keypoints": np.zeros((16, 3), np.float32), "head_box": (50, 60, 70, 80),
          "scale": 0.9, "center": (300, 400)}
    e2["keypoints"][7] = (299.5, 399.25, 2)
    images.append({"name": s0["image"], "train": 1, "annorect": [r0, r1, r2],
                   "frame_sec": 42.0, "vididx": 2.0, "single_person": [1, 3],
                   "act": {"cat_name": "sports", "act_name": "running", "act_id": 5.0}})
    expected[s0["image"]] = {"split": "train", "people": [e0, e1, e2],
                             "source_ids": ["0", "1", "2"],
                             "extra": {"annolist_index": 0, "frame_sec": 42.0, "video_index": 1,
                                       "video_id": "vidB", "single_person": [0, 2],
                                       "act": {"cat_name": "sports", "act_name": "running",
                                               "act_id": 5}}}
    # B: a single person (annorect 1x1, squeezed), no frame/video, empty act names.
    r, e = person_from_json(s1)
    images.append({"name": s1["image"], "train": 1, "annorect": [r], "single_person": [1]})
    expected[s1["image"]] = {"split": "train", "people": [e], "source_ids": ["0"],
                             "extra": {"annolist_index": 1, "single_person": [0]}}
    # C: missing joints, points in reverse order.
    r, e = person_from_json(s2, shuffle=True)
    images.append({"name": s2["image"], "train": 1, "annorect": [r]})
    expected[s2["image"]] = {"split": "train", "people": [e], "source_ids": ["0"]}
    # D: missing joints, integer (uint16) coordinates where integral, a second person whose
    # struct element has every field empty (dropped, its index is not reused).
    r, e = person_from_json(s3, int_coords=True)
    images.append({"name": s3["image"], "train": 1, "annorect": [{}, r]})
    expected[s3["image"]] = {"split": "train", "people": [e], "source_ids": ["1"]}
    # E: plain.
    r, e = person_from_json(s4)
    images.append({"name": s4["image"], "train": 1, "annorect": [r]})
    expected[s4["image"]] = {"split": "train", "people": [e], "source_ids": ["0"]}
    # Test images: rects with only scale/objpos; one whose annorect has no fields at all.
    images.append({"name": "test_a.jpg", "train": 0, "rect_fields": ["scale", "objpos"],
                   "annorect": [{"scale": 2.5, "objpos": [11, 21]},
                                {"scale": 3.0, "objpos": [np.uint16(31), np.uint16(41)]}]})
    z = np.zeros((16, 3), np.float32)
    expected["test_a.jpg"] = {"split": "test", "test_only": True, "source_ids": ["0", "1"],
                              "people": [{"keypoints": z, "head_box": None, "scale": 2.5,
                                          "center": (10, 20)},
                                         {"keypoints": z, "head_box": None, "scale": 3.0,
                                          "center": (30, 40)}]}
    images.append({"name": "test_b.jpg", "train": 0, "annorect": "nofields"})
    expected["_skipped"]["test_b.jpg"] = "no people annotated"
    # Records that must be skipped with a reason.
    bad = {"head": [1, 1, 5, 5], "scale": 1.0, "objpos": [3, 3],
           "points": [{"x": 5.0, "y": 5.0, "id": 16.0, "is_visible": 1.0}]}
    images.append({"name": "badjoint.jpg", "train": 1, "annorect": [bad]})
    expected["_skipped"]["badjoint.jpg"] = "bad annotation"
    images.append({"name": "empty.jpg", "train": 1, "annorect": []})
    expected["_skipped"]["empty.jpg"] = "no people annotated"
    ok = {"head": [1, 1, 5, 5], "scale": 1.0, "objpos": [3, 3],
          "points": [{"x": 5.0, "y": 5.0, "id": 0.0, "is_visible": 1.0}]}
    images.append({"name": "missing.jpg", "train": 1, "annorect": [ok]})
    expected["_skipped"]["missing.jpg"] = "image missing on disk"
    images.append({"name": "corrupt.jpg", "train": 1, "annorect": [ok]})
    expected["_skipped"]["corrupt.jpg"] = "image undecodable"

    mat_path = os.path.join(work_dir, "mpii_human_pose_v1_u12_1.mat")
    write_release(mat_path, images)
    return mat_path, img_dir, expected


def build_repeated_release(sample_dir, work_dir, copies):
    """``copies`` x 5 train images (symlinks to the samples under new names), one person
    each; for resumability tests. Returns ``(mat_path, image_dir, names)``."""
    with open(os.path.join(sample_dir, "test_mpii.json")) as f:
        sample = json.load(f)
    img_dir = os.path.join(work_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    images, names = [], []
    for c in range(copies):
        for s in sample:
            name = f"r{c:03d}_{s['image']}"
            os.symlink(os.path.join(os.path.abspath(sample_dir), s["image"]),
                       os.path.join(img_dir, name))
            pts = [{"x": x + 1, "y": y + 1, "id": float(j), "is_visible": 1.0}
                   for j, ((x, y), v) in enumerate(zip(s["joints"], s["joints_vis"])) if v]
            images.append({"name": name, "train": 1,
                           "annorect": [{"head": [1, 1, 9, 9], "points": pts,
                                         "scale": s["scale"],
                                         "objpos": [c + 1 for c in s["center"]]}]})
            names.append(name)
    mat_path = os.path.join(work_dir, "release.mat")
    write_release(mat_path, images)
    return mat_path, img_dir, names
