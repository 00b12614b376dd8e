"""MPII release parsing and ingestion (mxpose.data.mpii, tools/mpi_parse.py)."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import scipy.io

from mxpose.data import PoseDB
from mxpose.data.image import ImageDecodeError
from mxpose.data.mpii import (MPIIError, assign_split, image_size, ingest_mpii, load_release,
                              parse_release)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpii_mat import build_repeated_release, build_sample_release, write_release  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "mpi_parse.py")


@pytest.fixture
def release(mpii_sample, tmp_path):
    return build_sample_release(mpii_sample, str(tmp_path))


def _by_name(db):
    return {db.image_info(i)["file_name"]: int(i) for i in db.image_ids()}


def _run_tool(args, cwd=ROOT, env=None, **kw):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, TOOL] + list(args), cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=120, **kw)


def test_savemat_output_loads_like_the_release(release):
    """The synthetic file must come back in the shapes the real one has."""
    mat_path = release[0]
    rel = scipy.io.loadmat(mat_path, struct_as_record=False, squeeze_me=True)["RELEASE"]
    al = rel.annolist
    assert isinstance(al, np.ndarray) and al.dtype == object and al.ndim == 1
    assert isinstance(al[0].annorect, np.ndarray) and al[0].annorect.size == 3
    assert hasattr(al[1].annorect, "_fieldnames")               # 1x1 struct squeezed
    assert hasattr(al[0].annorect[2].annopoints.point, "x")     # 1x1 point struct squeezed
    assert isinstance(al[0].annorect[1].annopoints, np.ndarray)  # annopoints []
    assert al[6].annorect._fieldnames == []                     # struct without fields
    assert isinstance(al[8].annorect, np.ndarray) and al[8].annorect.size == 0
    assert al[5].annorect[0]._fieldnames == ["scale", "objpos"]
    vis = [p.is_visible for p in al[0].annorect[0].annopoints.point]
    assert {type(v).__name__ for v in vis} >= {"float", "str", "ndarray"}


def test_parse_release_records(release):
    mat_path, _, expected = release
    recs = list(parse_release(mat_path))
    assert [r["index"] for r in recs] == list(range(len(recs)))
    for r in recs:
        name = r["file_name"]
        if name in expected:
            exp = expected[name]
            assert r["error"] is None, r["error"]
            assert r["is_train"] == (exp["split"] != "test")
            assert len(r["people"]) == len(exp["people"])
            assert [p["source_id"] for p in r["people"]] == exp["source_ids"]
            for p, e in zip(r["people"], exp["people"]):
                assert p["keypoints"].dtype == np.float32 and p["keypoints"].shape == (16, 3)
                np.testing.assert_array_equal(p["keypoints"], e["keypoints"])
        elif name == "badjoint.jpg":
            assert "annolist[7]" in r["error"] and "badjoint.jpg" in r["error"]
            assert "joint id 16" in r["error"]
    by = {r["file_name"]: r for r in recs}
    assert by["004645041.jpg"]["dropped"] == 1       # the all-empty struct element
    assert by["test_b.jpg"]["people"] == [] and by["test_b.jpg"]["dropped"] == 1
    assert by["empty.jpg"]["people"] == [] and by["empty.jpg"]["dropped"] == 0
    assert list(parse_release(load_release(mat_path), limit=2))[-1]["index"] == 1


def test_visibility_quirks_map_to_store_convention(release):
    """1 / '1' / empty -> 2, 0 / '0' -> 1, absent -> 0."""
    mat_path, _, expected = release
    rel = scipy.io.loadmat(mat_path, struct_as_record=False, squeeze_me=True)["RELEASE"]
    recs = {r["file_name"]: r for r in parse_release(rel)}
    seen = set()
    for i, item in enumerate(rel.annolist[:5]):
        rects = np.atleast_1d(item.annorect)
        person = next(r for r in rects if hasattr(getattr(r, "annopoints", None), "point"))
        kp = recs[item.image.name]["people"][0]["keypoints"]
        for p in np.atleast_1d(person.annopoints.point):
            raw = p.is_visible
            key = "empty" if np.size(raw) == 0 or raw == "" else str(int(float(raw)))
            seen.add((type(raw).__name__, key))
            assert kp[int(p.id), 2] == {"1": 2, "0": 1, "empty": 2}[key]
        absent = set(range(16)) - {int(p.id) for p in np.atleast_1d(person.annopoints.point)}
        assert all(kp[j, 2] == 0 and kp[j, 0] == 0 and kp[j, 1] == 0 for j in absent)
    assert {k for _, k in seen} == {"1", "0", "empty"}
    assert {t for t, _ in seen} >= {"float", "str", "ndarray"}


def test_ingest_sample_exact(release, tmp_path):
    mat_path, img_dir, expected = release
    out = str(tmp_path / "mpii.db")
    rep = ingest_mpii(mat_path, img_dir, out, include_test=True)
    stored = {k: v for k, v in expected.items() if k != "_skipped"}
    assert rep.written == len(stored) and rep.already_stored == 0
    assert rep.split_counts == {"train": 5, "test": 1}
    skipped = expected["_skipped"]
    assert {k: len(v) for k, v in rep.skipped.items()} == {
        reason: list(skipped.values()).count(reason) for reason in set(skipped.values())}
    for reason in set(skipped.values()):
        for name in [n for n, r in skipped.items() if r == reason]:
            assert name in rep.skipped[reason], (name, rep.skipped)
    text = "\n".join(rep.lines())
    assert "missing.jpg" in text and "image missing on disk" in text

    db = PoseDB(out)
    assert db.dataset == "mpii" and db.skeleton.name == "mpii"
    assert db.meta["created_by"] == "mpi_parse"
    ids = _by_name(db)
    assert set(ids) == set(stored)
    for name, exp in stored.items():
        info = db.image_info(ids[name])
        assert info["split"] == exp["split"]
        with open(os.path.join(img_dir, name), "rb") as f:
            raw = f.read()
        assert db.image_bytes(ids[name]) == raw                  # untouched bytes
        img = cv2.imread(os.path.join(img_dir, name))
        assert (info["width"], info["height"]) == (img.shape[1], img.shape[0])
        for k, v in exp.get("extra", {}).items():
            assert info["extra"][k] == v, (name, k)
        ppl = db.people(ids[name])
        assert ppl["source_id"] == exp["source_ids"]
        assert ppl["keypoints"].shape == (len(exp["people"]), 16, 3)
        for i, e in enumerate(exp["people"]):
            # Exactly the JSON's 0-based values (as float32), not merely close.
            np.testing.assert_array_equal(ppl["keypoints"][i], e["keypoints"])
            assert ppl["scale"][i] == np.float32(e["scale"])
            np.testing.assert_array_equal(ppl["center"][i], np.float32(e["center"]))
            if e["head_box"] is None:
                assert np.isnan(ppl["head_box"][i]).all()
            else:
                np.testing.assert_array_equal(ppl["head_box"][i], np.float32(e["head_box"]))
    assert db.integrity_check() == "ok"


def test_ingest_matches_json_directly(release, mpii_sample, tmp_path):
    """Independent of the helper's bookkeeping: compare with test_mpii.json itself."""
    mat_path, img_dir, _ = release
    out = str(tmp_path / "mpii.db")
    ingest_mpii(mat_path, img_dir, out)
    with open(os.path.join(mpii_sample, "test_mpii.json")) as f:
        sample = json.load(f)
    db = PoseDB(out)
    ids = _by_name(db)
    for s in sample:
        ppl = db.people(ids[s["image"]])
        kp = ppl["keypoints"][[i for i, k in enumerate(ppl["keypoints"]) if k[:, 2].sum() > 2]]
        assert len(kp) == 1
        vis = np.asarray(s["joints_vis"]) > 0
        np.testing.assert_array_equal(kp[0][vis, :2], np.float32(s["joints"])[vis])
        assert (kp[0][~vis] == 0).all() and (kp[0][vis, 2] > 0).all()
        j = [i for i, k in enumerate(ppl["keypoints"]) if k[:, 2].sum() > 2][0]
        assert ppl["scale"][j] == np.float32(s["scale"])
        np.testing.assert_array_equal(ppl["center"][j], np.float32(s["center"]))


def test_test_images_skipped_by_default(release, tmp_path):
    mat_path, img_dir, _ = release
    out = str(tmp_path / "mpii.db")
    rep = ingest_mpii(mat_path, img_dir, out)
    assert rep.split_counts == {"train": 5}
    assert len(rep.skipped["test image (not requested)"]) == 2
    assert PoseDB(out).splits() == {"train": 5}
    # Asking for them later adds them to the same DB.
    rep = ingest_mpii(mat_path, img_dir, out, include_test=True)
    assert rep.written == 1 and rep.already_stored == 5
    db = PoseDB(out)
    assert db.splits() == {"test": 1, "train": 5}
    ppl = db.people(_by_name(db)["test_a.jpg"])
    assert (ppl["keypoints"] == 0).all()
    np.testing.assert_array_equal(ppl["center"], [[10, 20], [30, 40]])


def test_rerun_adds_nothing(release, tmp_path):
    mat_path, img_dir, _ = release
    out = str(tmp_path / "mpii.db")
    first = ingest_mpii(mat_path, img_dir, out, include_test=True)
    second = ingest_mpii(mat_path, img_dir, out, include_test=True)
    assert second.written == 0 and second.already_stored == first.written
    con = sqlite3.connect(out)
    assert con.execute("SELECT COUNT(*) FROM images").fetchone()[0] == first.written
    assert con.execute("SELECT COUNT(*) FROM people").fetchone()[0] == first.people
    assert con.execute("SELECT COUNT(DISTINCT file_name) FROM images").fetchone()[0] \
        == first.written
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    runs = json.loads(con.execute("SELECT value FROM meta WHERE key='runs'").fetchone()[0])
    assert len(runs) == 2


def test_single_image_release(mpii_sample, tmp_path):
    """annolist of one entry is squeezed to a bare struct by loadmat."""
    with open(os.path.join(mpii_sample, "test_mpii.json")) as f:
        s = json.load(f)[0]
    pts = [{"x": x + 1, "y": y + 1, "id": float(j), "is_visible": "1"}
           for j, (x, y) in enumerate(s["joints"])]
    mat = str(tmp_path / "one.mat")
    write_release(mat, [{"name": s["image"], "train": 1, "single_person": [1],
                         "annorect": [{"head": [1, 2, 3, 4], "points": pts, "scale": 2.0,
                                       "objpos": [5, 6]}]}])
    rel = load_release(mat)
    assert hasattr(rel.annolist, "_fieldnames")
    (rec,) = parse_release(rel)
    assert rec["error"] is None and rec["extra"]["single_person"] == [0]
    kp = rec["people"][0]["keypoints"]
    np.testing.assert_array_equal(kp[:, :2], np.float32(s["joints"]))
    assert (kp[:, 2] == 2).all()
    assert rec["people"][0]["head_box"] == (0, 1, 2, 3)


def test_bad_files(tmp_path):
    with pytest.raises(MPIIError, match="does not exist"):
        load_release(str(tmp_path / "nope.mat"))
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not a mat file at all" * 20)
    with pytest.raises(MPIIError, match="junk.mat"):
        load_release(str(junk))
    other = str(tmp_path / "other.mat")
    scipy.io.savemat(other, {"x": np.ones(3)})
    with pytest.raises(MPIIError, match="no RELEASE"):
        load_release(other)


def test_image_size(mpii_sample, tmp_path):
    for name in sorted(os.listdir(mpii_sample)):
        if name.endswith(".jpg"):
            with open(os.path.join(mpii_sample, name), "rb") as f:
                data = f.read()
            img = cv2.imread(os.path.join(mpii_sample, name))
            assert image_size(data) == (img.shape[1], img.shape[0])
    ok, png = cv2.imencode(".png", np.zeros((7, 13, 3), np.uint8))
    assert image_size(png.tobytes()) == (13, 7)
    for junk in (b"\xff\xd8\xff\xe0 garbage", b"garbage"):
        with pytest.raises(ImageDecodeError):
            image_size(junk)


def test_assign_split_deterministic():
    names = [f"{i:09d}.jpg" for i in range(2000)]
    a = [assign_split(n, True, 0.2, seed=3) for n in names]
    assert a == [assign_split(n, True, 0.2, seed=3) for n in names]
    frac = a.count("val") / len(a)
    assert 0.15 < frac < 0.25 and set(a) == {"train", "val"}
    assert a != [assign_split(n, True, 0.2, seed=4) for n in names]
    assert all(assign_split(n, False, 0.5, {n}) == "test" for n in names[:10])
    assert assign_split(names[0], True, 0.0, {names[0]}) == "val"
    assert assign_split(names[0], True) == "train"


def test_split_options(mpii_sample, tmp_path):
    mat, img_dir, names = build_repeated_release(mpii_sample, str(tmp_path), copies=4)
    splits = []
    for k in range(2):
        out = str(tmp_path / f"f{k}.db")
        rep = ingest_mpii(mat, img_dir, out, val_fraction=0.4, seed=1)
        db = PoseDB(out)
        splits.append({db.image_info(i)["file_name"]: db.image_info(i)["split"]
                       for i in db.image_ids()})
        assert rep.written == len(names)
    assert splits[0] == splits[1]
    assert splits[0] == {n: assign_split(n, True, 0.4, seed=1) for n in names}
    assert 0 < list(splits[0].values()).count("val") < len(names)
    # A list file, with a name the annotations do not have.
    lst = tmp_path / "val.txt"
    lst.write_text(f"# held out\n{names[0]}\n\n{names[7]}\nnot_in_mpii.jpg\n")
    out = str(tmp_path / "l.db")
    rep = ingest_mpii(mat, img_dir, out, val_list=str(lst))
    db = PoseDB(out)
    got = {db.image_info(i)["file_name"]: db.image_info(i)["split"] for i in db.image_ids()}
    assert {n for n, s in got.items() if s == "val"} == {names[0], names[7]}
    assert rep.val_list_unknown == ["not_in_mpii.jpg"]
    # Continuing a DB with other split options would mix two splits: refused.
    with pytest.raises(MPIIError, match="split options"):
        ingest_mpii(mat, img_dir, out, val_fraction=0.1)
    assert len(PoseDB(out)) == len(names)
    # --limit takes the first N selected images, the same ones each time.
    out = str(tmp_path / "lim.db")
    assert ingest_mpii(mat, img_dir, out, limit=3).written == 3
    assert ingest_mpii(mat, img_dir, out, limit=3).written == 0
    assert set(_by_name(PoseDB(out))) == set(names[:3])


def test_cli_help():
    r = _run_tool(["--help"])
    assert r.returncode == 0
    for word in ("--annotations", "--images", "--out", "--val-fraction", "--val-list",
                 "--include-test", "--limit", "mpii_human_pose_v1_u12_1.mat", "data/mpii.db"):
        assert word in r.stdout


def test_cli_defaults_missing_data(tmp_path):
    r = _run_tool([], cwd=str(tmp_path))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1
    assert "data/mpii/mpii_human_pose_v1_u12_2/mpii_human_pose_v1_u12_1.mat" in lines[0]
    assert "http://human-pose.mpi-inf.mpg.de/" in lines[0]
    assert "mpii_human_pose_v1_u12_2.zip" in lines[0]
    assert "mpii_human_pose_v1.tar.gz" in lines[0]
    # Annotations present, images absent.
    ann = tmp_path / "data" / "mpii" / "mpii_human_pose_v1_u12_2"
    ann.mkdir(parents=True)
    write_release(str(ann / "mpii_human_pose_v1_u12_1.mat"), [{"name": "a.jpg", "train": 1}])
    r = _run_tool([], cwd=str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "data/mpii/images" in r.stderr
    assert not (tmp_path / "data" / "mpii.db").exists()


def test_cli_defaults_and_summary(release, tmp_path):
    mat_path, img_dir, _ = release
    work = tmp_path / "w"
    (work / "data" / "mpii" / "mpii_human_pose_v1_u12_2").mkdir(parents=True)
    os.symlink(mat_path, work / "data" / "mpii" / "mpii_human_pose_v1_u12_2" /
               "mpii_human_pose_v1_u12_1.mat")
    os.symlink(img_dir, work / "data" / "mpii" / "images")
    r = _run_tool(["--no-progress"], cwd=str(work))
    assert r.returncode == 0, r.stderr
    assert "written: 5 images" in r.stdout and "image missing on disk: 1" in r.stdout
    assert "missing.jpg" in r.stdout
    assert len(PoseDB(str(work / "data" / "mpii.db"))) == 5
    r = _run_tool(["--no-progress", "--val-fraction", "0.5"], cwd=str(work))
    assert r.returncode == 2 and "split options" in r.stderr and "Traceback" not in r.stderr


def test_cli_interrupted_run_resumes(mpii_sample, tmp_path):
    mat, img_dir, names = build_repeated_release(mpii_sample, str(tmp_path), copies=8)
    out = str(tmp_path / "mpii.db")
    args = ["--annotations", mat, "--images", img_dir, "--out", out, "--commit-every", "3",
            "--no-progress"]
    env = dict(os.environ, MXPOSE_INGEST_SLEEP="0.1")
    proc = subprocess.Popen([sys.executable, TOOL] + args, cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stored = 0
    deadline = time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
            if not os.path.exists(out):
                continue
            try:
                con = sqlite3.connect(out, timeout=1)
                stored = con.execute("SELECT COUNT(*) FROM images").fetchone()[0]
                con.close()
            except sqlite3.Error:
                continue
            if stored >= 6:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    con = sqlite3.connect(out)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    n_killed = con.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    con.close()
    assert 6 <= n_killed < len(names)
    r = _run_tool(args)
    assert r.returncode == 0, r.stderr
    assert f"already stored: {n_killed} images" in r.stdout
    con = sqlite3.connect(out)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = con.execute("SELECT file_name FROM images").fetchall()
    assert sorted(r[0] for r in rows) == sorted(names)             # complete, no duplicates
    assert con.execute("SELECT COUNT(*) FROM people").fetchone()[0] == len(names)
    assert con.execute("SELECT COUNT(*) FROM people p LEFT JOIN images i "
                       "ON p.image_id = i.id WHERE i.id IS NULL").fetchone()[0] == 0
    con.close()
    db = PoseDB(out)
    for i in db.image_ids():
        assert db.people(i)["keypoints"].shape == (1, 16, 3)
