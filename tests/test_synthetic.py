"""The procedural synthetic dataset: determinism, labels on the drawn bodies, left/right,
ignore regions, the DB writer, resuming, and the make_synthetic tool."""
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from mxpose.data.store import PoseDB, PoseDBError
from mxpose.data.synthetic import (DEFAULTS, KEYPOINT_PARTS, PART_NAMES, encode_jpeg,
                                   generate_image, image_seed, make_synthetic_db)
from mxpose.skeleton import get_skeleton

COCO = get_skeleton("coco")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = [image_seed(11, "train", i) for i in range(40)]


def _labelled(people):
    return [(i, p) for i, p in enumerate(people)
            if not p["is_crowd"] and not p["extra"].get("unlabelled")]


@pytest.fixture(scope="module")
def samples():
    return [generate_image(s, return_maps=True) for s in SEEDS]


def test_same_seed_same_bytes_other_seed_other_image():
    a, pa, ra = generate_image((3, 0, 5))
    b, pb, rb = generate_image((3, 0, 5))
    assert np.array_equal(a, b)
    assert encode_jpeg(a) == encode_jpeg(b)
    assert len(pa) == len(pb) and ra == rb
    for p, q in zip(pa, pb):
        assert np.array_equal(p["keypoints"], q["keypoints"]) and p["bbox"] == q["bbox"]
    c, _, _ = generate_image((3, 0, 6))
    assert c.shape != a.shape or not np.array_equal(a, c)
    # train and val streams are disjoint
    assert image_seed(3, "train", 5) != image_seed(3, "val", 5)


def test_sizes_people_and_labels_are_sane(samples):
    n_people, heights = [], []
    n_off = n_kp = 0
    for (img, people, rles, maps), seed in zip(samples, SEEDS):
        h, w = img.shape[:2]
        assert img.dtype == np.uint8 and img.shape[2] == 3
        assert DEFAULTS["min_size"] <= h <= DEFAULTS["max_size"]
        assert DEFAULTS["min_size"] <= w <= DEFAULTS["max_size"]
        main = [p for p in people if not p["is_crowd"]]
        assert 1 <= len(main) <= DEFAULTS["max_people"]
        n_people.append(len(main))
        for p in people:
            kp = p["keypoints"]
            assert kp.shape == (17, 3) and kp.dtype == np.float32
            assert set(np.unique(kp[:, 2])) <= {0.0, 1.0, 2.0}
            x, y, bw, bh = p["bbox"]
            assert bw > 0 and bh > 0 and 0 <= x and x + bw <= w and 0 <= y and y + bh <= h
            assert 0 < p["area"] <= bw * bh
        for i, p in _labelled(people):
            kp = p["keypoints"]
            inside = ((kp[:, 0] >= 0) & (kp[:, 0] <= w - 1) & (kp[:, 1] >= 0)
                      & (kp[:, 1] <= h - 1))
            # labelled points lie on the image; off-image ones are v = 0 with zero x, y
            lab = kp[:, 2] > 0
            assert inside[lab].all(), seed
            assert not kp[~lab, :2].any(), seed
            n_off += int((~lab).sum())
            n_kp += kp.shape[0]
            heights.append(p["extra"]["height"] / h)
    assert 0 < n_off < 0.1 * n_kp                  # some figures are cut by the border
    assert len(set(n_people)) >= 3                 # 1..4 people, not a fixed count
    assert min(heights) < 0.45 and max(heights) > 0.7
    assert all(0.15 < v < 0.95 for v in heights)   # crowded images shrink figures a little


def test_visible_keypoints_lie_on_their_own_drawn_body_part(samples):
    n_vis = n_lab = n_contrast = 0
    for img, people, rles, maps in samples:
        owner, part, bg = maps["owner"], maps["part"], maps["background"]
        diff = np.abs(img.astype(np.int16) - bg.astype(np.int16)).max(axis=2)
        for i, p in _labelled(people):
            for k, name in enumerate(COCO.keypoints):
                x, y, v = p["keypoints"][k]
                if v == 0:
                    continue
                n_lab += 1
                px, py = int(round(x)), int(round(y))
                if v == 2:
                    n_vis += 1
                    assert owner[py, px] == i
                    got = PART_NAMES[part[py, px]]
                    assert got in KEYPOINT_PARTS[name], (name, got)
                    n_contrast += diff[py, px] > 20
                else:   # v = 1: something else is drawn on top of the keypoint
                    assert (owner[py, px] != i
                            or PART_NAMES[part[py, px]] not in KEYPOINT_PARTS[name])
    assert n_vis >= 0.8 * n_lab                     # the check above is not vacuous
    assert n_contrast >= 0.95 * n_vis               # the image changed where the body is


def test_left_and_right_follow_a_mirror_consistent_rule(samples):
    """Every figure faces the camera: its l_* points lie on the image-right side of its
    own body axis, and l_* keypoints sit on l_* parts (never on the r_* twin)."""
    checked = 0
    idx = COCO.index
    for img, people, rles, maps in samples:
        part = maps["part"]
        for i, p in _labelled(people):
            kp = p["keypoints"]
            need = ["l_shoulder", "r_shoulder", "l_hip", "r_hip"]
            if any(kp[idx(n), 2] == 0 for n in need):
                continue
            up = (0.5 * (kp[idx("l_shoulder"), :2] + kp[idx("r_shoulder"), :2])
                  - 0.5 * (kp[idx("l_hip"), :2] + kp[idx("r_hip"), :2]))
            right = np.array([-up[1], up[0]])
            for a in ("shoulder", "hip", "eye", "ear"):
                l, r = kp[idx("l_" + a)], kp[idx("r_" + a)]
                if l[2] > 0 and r[2] > 0:
                    assert np.dot(l[:2] - r[:2], right) > 0, a
                    checked += 1
            for k, name in enumerate(COCO.keypoints):
                if kp[k, 2] == 2 and name[:2] in ("l_", "r_"):
                    got = PART_NAMES[part[int(round(kp[k, 1])), int(round(kp[k, 0]))]]
                    twin = "r_" if name.startswith("l_") else "l_"
                    assert not got.startswith(twin), (name, got)
    assert checked > 100


def test_unlabelled_and_crowd_people_are_masked():
    from pycocotools import mask as mask_utils
    seen_crowd = 0
    for s in range(8):
        img, people, rles, maps = generate_image((5, 0, s), p_unlabelled=1.0, p_crowd=1.0,
                                                 return_maps=True)
        owner = maps["owner"]
        h, w = owner.shape
        unl = [i for i, p in enumerate(people) if p["extra"].get("unlabelled")]
        assert len(unl) == 1
        u = unl[0]
        assert not people[u]["keypoints"].any() and not people[u]["is_crowd"]
        labelled = np.zeros((h, w), bool)
        for i, _ in _labelled(people):
            labelled |= owner == i
        by_reason = {}
        for r in rles:
            assert isinstance(r["counts"], str) and r["size"] == [h, w]
            m = mask_utils.decode({"size": r["size"], "counts": r["counts"].encode("ascii")})
            by_reason.setdefault(r["reason"], []).append(m.astype(bool))
        body = owner == u
        assert body.any()
        assert len(by_reason["unlabelled"]) == 1
        region = by_reason["unlabelled"][0]
        assert region[body].all()                  # covers the unlabelled body
        assert not region[labelled].any()          # and spares the labelled people
        crowd_px = (owner >= 100) & ~labelled
        if crowd_px.sum() >= 10:
            seen_crowd += 1
            assert len(by_reason["crowd"]) == 1
            assert by_reason["crowd"][0][crowd_px].all()
            assert sum(p["is_crowd"] for p in people) == 1
    assert seen_crowd >= 4
    _, people, rles = generate_image((5, 0, 0), p_unlabelled=0.0, p_crowd=0.0)
    assert rles == [] and all(not p["extra"].get("unlabelled") for p in people)


def test_db_counts_splits_and_records(tmp_path):
    out = str(tmp_path / "s.db")
    st = make_synthetic_db(out, 5, 3, seed=2, progress=False)
    assert st["written"] == 8 and st["skipped"] == 0
    assert st["per_split"] == {"train": 5, "val": 3}
    db = PoseDB(out)
    assert db.dataset == "synthetic" and db.skeleton.name == "coco"
    assert db.splits() == {"train": 5, "val": 3}
    assert db.integrity_check() == "ok"
    assert db.meta["synthetic"]["seed"] == 2
    names = sorted(db.image_info(i)["file_name"] for i in db.image_ids())
    assert names == ([f"train/{i:06d}.jpg" for i in range(5)]
                     + [f"val/{i:06d}.jpg" for i in range(3)])
    total_people = 0
    for iid in db.image_ids():
        info = db.image_info(iid)
        split, idx = info["file_name"][:-4].split("/")
        img, people, rles = generate_image(image_seed(2, split, int(idx)))
        assert db.image_bytes(iid) == encode_jpeg(img, DEFAULTS["quality"])
        assert (info["width"], info["height"]) == (img.shape[1], img.shape[0])
        assert db.load_image(iid).shape == img.shape
        rec = db.people(iid)
        assert rec["keypoints"].shape == (len(people), 17, 3)
        for k, p in enumerate(people):
            want = np.where(p["keypoints"][:, 2:3] > 0, p["keypoints"], 0)
            assert np.array_equal(rec["keypoints"][k], want)
            assert rec["is_crowd"][k] == bool(p["is_crowd"])
        assert len(db.ignore_rles(iid)) == len(rles)
        total_people += len(people)
    assert sum(s["people"] for s in db.stats().values()) == total_people
    # val images are not train images
    t0 = db.image_bytes(db.image_ids("train")[0])
    v0 = db.image_bytes(db.image_ids("val")[0])
    assert t0 != v0


def test_resume_adds_exactly_the_missing_images(tmp_path):
    full = str(tmp_path / "full.db")
    make_synthetic_db(full, 6, 2, seed=4, progress=False)

    part = str(tmp_path / "part.db")
    done = []

    def stop_after_three(name):
        done.append(name)
        if len(done) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_synthetic_db(part, 6, 2, seed=4, progress=False, on_image=stop_after_three)
    assert len(PoseDB(part)) == 3                  # completed images were kept
    st = make_synthetic_db(part, 6, 2, seed=4, progress=False)
    assert (st["written"], st["skipped"]) == (5, 3)

    # a hole in the middle is filled, nothing else is touched
    con = sqlite3.connect(part)
    con.execute("PRAGMA foreign_keys=ON")
    con.execute("DELETE FROM images WHERE file_name='train/000002.jpg'")
    con.commit()
    con.close()
    st = make_synthetic_db(part, 6, 2, seed=4, progress=False)
    assert (st["written"], st["skipped"]) == (1, 7)

    a, b = PoseDB(full), PoseDB(part)
    assert a.splits() == b.splits() == {"train": 6, "val": 2}

    def by_name(db):
        return {db.image_info(i)["file_name"]: (db.image_bytes(i), db.people(i)["keypoints"])
                for i in db.image_ids()}
    fa, fb = by_name(a), by_name(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert fa[k][0] == fb[k][0] and np.array_equal(fa[k][1], fb[k][1])
    assert b.integrity_check() == "ok"

    # extending is a resume with larger counts; other parameters are refused
    st = make_synthetic_db(part, 7, 2, seed=4, progress=False)
    assert (st["written"], st["skipped"]) == (1, 8)
    with pytest.raises(PoseDBError, match="seed"):
        make_synthetic_db(part, 7, 2, seed=5, progress=False)
    with pytest.raises(PoseDBError, match="max_people"):
        make_synthetic_db(part, 7, 2, seed=4, progress=False, max_people=2)


def test_workers_write_the_same_bytes(tmp_path):
    one, two = str(tmp_path / "1.db"), str(tmp_path / "2.db")
    make_synthetic_db(one, 6, 0, seed=9, progress=False)
    make_synthetic_db(two, 6, 0, seed=9, progress=False, workers=2)
    a, b = PoseDB(one), PoseDB(two)
    for i, j in zip(a.image_ids(), b.image_ids()):
        assert a.image_info(i)["file_name"] == b.image_info(j)["file_name"]
        assert a.image_bytes(i) == b.image_bytes(j)


def test_bad_parameters_are_refused(tmp_path):
    with pytest.raises(ValueError):
        generate_image(0, min_size=300, max_size=200)
    with pytest.raises(TypeError, match="unknown synthetic parameters"):
        make_synthetic_db(str(tmp_path / "x.db"), 1, progress=False, max_persons=3)
    with pytest.raises(PoseDBError, match="does not exist"):
        make_synthetic_db(str(tmp_path / "nope" / "x.db"), 1, progress=False)


def test_tool_help_run_and_errors(tmp_path, capsys):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_synthetic.py"), "--help"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0
    for opt in ("--out", "--num-images", "--val-images", "--seed", "--min-size", "--max-size",
                "--max-people", "resume"):
        assert opt in r.stdout

    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import make_synthetic
    finally:
        sys.path.pop(0)
    out = str(tmp_path / "t.db")
    assert make_synthetic.main(["--out", out, "--num-images", "3", "--val-images", "2",
                                "--min-size", "100", "--max-size", "140", "--no-progress",
                                "--preview", str(tmp_path / "prev")]) == 0
    text = capsys.readouterr().out
    assert len(os.listdir(tmp_path / "prev")) == 8
    assert "written 5 images (train 3, val 2)" in text
    db = PoseDB(out)
    assert db.splits() == {"train": 3, "val": 2}
    assert db.meta["created_args"]["max_size"] == 140
    for i in db.image_ids():
        info = db.image_info(i)
        assert 100 <= info["width"] <= 140 and 100 <= info["height"] <= 140
    # same command again: nothing to do
    assert make_synthetic.main(["--out", out, "--num-images", "3", "--val-images", "2",
                                "--min-size", "100", "--max-size", "140", "--no-progress"]) == 0
    assert "skipped 5" in capsys.readouterr().out
    # other options on the same DB: one clear line, no traceback
    assert make_synthetic.main(["--out", out, "--num-images", "3", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert make_synthetic.main(["--out", str(tmp_path / "no" / "x.db"), "--num-images", "1",
                                "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        make_synthetic.main(["--out", out, "--num-images", "-1"])


def test_crowd_setting_rows_overlap_and_occluders(tmp_path):
    from mxpose.data.synthetic import _place_crowd
    occluded = 0
    for i in range(5):
        img, people, _, maps = generate_image(image_seed(5, "train", i), min_size=480,
                                              max_size=640, p_unlabelled=0, p_crowd=0,
                                              crowd=True, return_maps=True)
        h, w = img.shape[:2]
        lab = _labelled(people)
        assert 5 <= len(lab) <= 15 and len(lab) == len(people)
        occ = maps["owner"] == -2
        assert occ.any(), "no occluder drawn"
        for _, p in lab:
            kp = p["keypoints"]
            on = kp[:, 2] > 0
            xy = np.round(kp[on, :2]).astype(int)
            under = occ[xy[:, 1], xy[:, 0]]
            # a keypoint behind an occluder is labelled, as occluded (v = 1)
            assert (kp[on][under, 2] == 1).all()
            occluded += int(under.sum())
            # rows fit the image width: no shoulder is cut off at the sides
            for name in ("l_shoulder", "r_shoulder"):
                assert 0 <= kp[COCO.index(name), 0] <= w - 1
    assert occluded > 0
    # neighbours in a row overlap by 30-70 % of the narrower box (row breaks excepted)
    rng = np.random.default_rng(0)
    for _ in range(10):
        placed = _place_crowd(rng, 600, 500, 0.5, 0.9)
        boxes = np.array([b for *_, b in placed])
        wid = boxes[:, 2] - boxes[:, 0]
        frac = (boxes[:-1, 2] - boxes[1:, 0]) / np.minimum(wid[:-1], wid[1:])
        inside = (frac > 0.3 - 1e-6) & (frac < 0.7 + 1e-6)
        rows = 1 if len(placed) <= 6 else 2 if len(placed) <= 11 else 3
        assert inside.sum() == len(placed) - rows
    # the DB records the setting; a default DB's recipe keeps its old keys
    out = str(tmp_path / "c.db")
    make_synthetic_db(out, 1, progress=False, crowd=True, min_size=200, max_size=240)
    plain = str(tmp_path / "p.db")
    make_synthetic_db(plain, 1, progress=False, min_size=200, max_size=240)
    assert PoseDB(out).meta["synthetic"]["crowd"] is True
    assert "crowd" not in PoseDB(plain).meta["synthetic"]


def test_tool_preview_that_cannot_be_written_is_one_line(tmp_path):
    prev = tmp_path / "prev"
    (prev / "train_000000.png").mkdir(parents=True)   # in the way, as a read-only folder is
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_synthetic.py"),
                        "--out", str(tmp_path / "t.db"), "--num-images", "1", "--no-progress",
                        "--min-size", "96", "--max-size", "96", "--preview", str(prev)],
                       capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cannot write image" in r.stderr and "train_000000.png" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------
# feet (make_synthetic --feet): coco_foot people for body25 training
# ---------------------------------------------------------------------------------------
FOOT = get_skeleton("coco_foot")


def test_without_feet_the_images_are_those_drawn_before_the_option():
    """Hashes of images + labels from the generator before --feet existed (same pinned
    OpenCV/NumPy): DBs made then resume with identical images."""
    import hashlib
    want = {(3, 0, 0): "c68f478e7d8b325c", (3, 1, 5): "bcc0883da2a108e9",
            (3, 0, 7): "2d4e13e40f513e25"}
    for seed, digest in want.items():
        img, people, _ = generate_image(seed)
        h = hashlib.sha256(img.tobytes())
        for p in people:
            assert p["keypoints"].shape == (17, 3)
            h.update(np.asarray(p["keypoints"], np.float32).tobytes())
        assert h.hexdigest()[:16] == digest, seed


@pytest.fixture(scope="module")
def feet_samples():
    return [generate_image(s, feet=True, return_maps=True) for s in SEEDS]


def test_feet_are_labelled_on_their_own_shoe(feet_samples):
    """coco_foot people: a visible (v=2) foot point lies on its own side's shoe of its own
    figure, an occluded one (v=1) under something else or, for a heel, inside its own
    shoe (a foot pointing at the camera); every foot point of a figure is labelled
    unless off the image."""
    counts = {0: 0, 1: 0, 2: 0}
    hidden_heels = 0
    for img, people, rles, maps in feet_samples:
        owner, part = maps["owner"], maps["part"]
        h, w = owner.shape
        for i, p in _labelled(people):
            kp = p["keypoints"]
            assert kp.shape == (23, 3)
            for k in range(17, 23):
                name = FOOT.keypoints[k]
                x, y, v = kp[k]
                counts[int(v)] += 1
                if v == 0:
                    continue
                assert 0 <= x <= w - 1 and 0 <= y <= h - 1
                px, py = int(round(x)), int(round(y))
                mine = owner[py, px] == i and PART_NAMES[part[py, px]] == name[:2] + "foot"
                if v == 2:
                    assert mine, name
                elif mine:
                    assert name.endswith("heel")
                    hidden_heels += 1
    assert counts[2] > 0.6 * sum(counts.values())      # the checks are not vacuous
    assert counts[1] > 0 and hidden_heels > 0


def test_feet_left_right_and_toes_follow_the_facing(feet_samples):
    """Left/right as for the body, by the facing and never by colour: on a figure facing
    the camera, upright with an upright shin, each foot's big toe is on the inner
    (medial) side of its small toe, so the left foot's small toe is image-right of its
    big toe and the right foot's image-left: a rule that mirrors with the image."""
    idx = FOOT.index
    checked = 0
    for img, people, rles, maps in feet_samples:
        for i, p in _labelled(people):
            if abs(p["extra"]["yaw"]) > 10 or abs(p["extra"]["lean"]) > 15:
                continue
            kp = p["keypoints"]
            for s, sign in (("l", 1.0), ("r", -1.0)):
                pts = [kp[idx(f"{s}_{n}")] for n in ("knee", "ankle", "big_toe", "small_toe")]
                if any(q[2] == 0 for q in pts):
                    continue
                shin = pts[1][:2] - pts[0][:2]
                if abs(np.degrees(np.arctan2(shin[0], shin[1]))) > 20:
                    continue
                assert sign * (pts[3][0] - pts[2][0]) > 0, (s, pts)
                checked += 1
    assert checked >= 10


def test_feet_db_layout_recipe_and_resume(tmp_path):
    out = str(tmp_path / "f.db")
    make_synthetic_db(out, 3, num_val=1, progress=False, feet=True, min_size=160,
                      max_size=200)
    db = PoseDB(out)
    assert db.skeleton.name == "coco_foot"
    assert db.meta["synthetic"]["feet"] is True
    kp = np.concatenate([db.people(int(i))["keypoints"] for i in db.image_ids("train")])
    assert kp.shape[1:] == (23, 3) and (kp[:, 17:, 2] > 0).any()
    db.close()
    # resuming without --feet is refused, naming the parameter
    with pytest.raises(PoseDBError, match="feet"):
        make_synthetic_db(out, 4, progress=False, min_size=160, max_size=200)
    plain = str(tmp_path / "p.db")
    make_synthetic_db(plain, 1, progress=False, min_size=160, max_size=200)
    assert "feet" not in PoseDB(plain).meta["synthetic"]
    assert PoseDB(plain).skeleton.name == "coco"


def test_feet_db_reads_as_body25(tmp_path):
    """The training view: a coco_foot DB read as body25 (neck, mid-hip derived, the foot
    points as stored), as experiments/synthetic_body25.yaml does."""
    from mxpose.skeleton import convert
    out = str(tmp_path / "f.db")
    make_synthetic_db(out, 4, progress=False, feet=True, min_size=160, max_size=200)
    db = PoseDB(out)
    kp = np.concatenate([db.people(int(i))["keypoints"] for i in db.image_ids("train")])
    b25 = convert(kp, "coco_foot", "body25")
    B25 = get_skeleton("body25")
    for name in FOOT.keypoints[17:]:
        np.testing.assert_array_equal(b25[:, B25.index(name)], kp[:, FOOT.index(name)])
