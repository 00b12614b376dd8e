"""The SQLite pose store: round trips, validation, multi-process reading, resumable ingestion."""
import json
import multiprocessing as mp
import os
import pickle
import re
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from mxpose.data.store import SCHEMA_VERSION, PoseDB, PoseDBError, PoseDBWriteError, PoseDBWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 16   # mpii


def _kp(seed, n_unlabelled=3):
    rng = np.random.default_rng(seed)
    k = np.zeros((K, 3), np.float32)
    k[:, :2] = rng.uniform(0, 90, (K, 2)).astype(np.float32)
    k[:, 2] = rng.choice([1, 2], K)
    k[:n_unlabelled, 2] = 0
    return k


def _png(w=40, h=30, value=0):
    import cv2
    ok, buf = cv2.imencode(".png", np.full((h, w, 3), value, np.uint8))
    assert ok
    return buf.tobytes()


def _rle(h, w, box):
    from pycocotools import mask as mask_utils
    m = np.zeros((h, w), np.uint8)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = 1
    r = mask_utils.encode(np.asfortranarray(m))
    return {"size": [h, w], "counts": r["counts"].decode("ascii")}, m


@pytest.fixture
def small_db(tmp_path):
    """Two images: one with full and partial people plus a region, one empty."""
    path = str(tmp_path / "s.db")
    rle, m = _rle(30, 40, (2, 10, 5, 20))
    full = {"keypoints": _kp(0), "bbox": [1, 2, 30, 20], "area": 600.0, "is_crowd": 0,
            "scale": 1.5, "center": [20.5, 15.25], "head_box": [1, 2, 11, 12],
            "source_id": 17, "extra": {"note": "x"}}
    partial = {"keypoints": _kp(1, n_unlabelled=K)}       # nothing but keypoints, none labelled
    with PoseDBWriter(path, dataset="mpii", skeleton="mpii", tool="test",
                      args={"a": 1}, commit_every=1) as w:
        w.add_image("a.png", _png(value=10), 40, 30, "train", people=[full, partial],
                    ignore_rles=[dict(rle, reason="unlabelled")], source_id="img-a",
                    extra={"k": [1, 2]})
        w.add_image("sub/b.png", _png(value=200), 40, 30, "val")
    return path, full, partial, m


def test_round_trip_of_every_field(small_db):
    path, full, partial, m = small_db
    db = PoseDB(path)
    assert db.dataset == "mpii" and db.skeleton.name == "mpii"
    assert db.meta["schema_version"] == SCHEMA_VERSION
    assert db.meta["created_by"] == "test" and db.meta["created_args"] == {"a": 1}
    assert len(db) == 2 and db.splits() == {"train": 1, "val": 1}
    a, b = db.image_ids()
    assert db.image_ids("val").tolist() == [b]
    info = db.image_info(a)
    assert info == {"id": a, "file_name": "a.png", "source_id": "img-a", "width": 40,
                    "height": 30, "split": "train", "extra": {"k": [1, 2]}}
    assert db.image_bytes(a) == _png(value=10)
    assert db.load_image(b).shape == (30, 40, 3) and db.load_image(b)[0, 0, 0] == 200
    p = db.people(a)
    ref = full["keypoints"].copy()
    ref[ref[:, 2] == 0] = 0                    # unlabelled rows are stored as zeros
    np.testing.assert_array_equal(p["keypoints"][0], ref)
    np.testing.assert_array_equal(p["keypoints"][1], np.zeros((K, 3), np.float32))
    np.testing.assert_array_equal(p["bbox"][0], [1, 2, 30, 20])
    assert p["area"][0] == 600 and p["scale"][0] == 1.5
    np.testing.assert_array_equal(p["center"][0], [20.5, 15.25])
    np.testing.assert_array_equal(p["head_box"][0], [1, 2, 11, 12])
    assert p["source_id"] == ["17", None] and p["extra"] == [{"note": "x"}, {}]
    assert p["is_crowd"].tolist() == [False, False]
    for key in ("bbox", "area", "scale", "center", "head_box"):
        assert np.all(np.isnan(p[key][1])), key          # missing fields read as NaN
    assert db.people(b)["keypoints"].shape == (0, K, 3)
    rles = db.ignore_rles(a)
    assert len(rles) == 1 and rles[0]["reason"] == "unlabelled" and rles[0]["size"] == [30, 40]
    np.testing.assert_array_equal(db.ignore_mask(a), m)
    assert db.ignore_mask(b).sum() == 0
    st = db.stats()
    assert st["train"] == {"images": 1, "people": 2, "crowd": 0,
                           "keypoints_labelled": K - 3, "ignore_regions": 1}
    assert st["val"]["people"] == 0
    assert db.integrity_check() == "ok"


@pytest.mark.parametrize("bad, msg", [
    ({"keypoints": np.zeros((K - 1, 3))}, "shape"),
    ({"keypoints": np.full((K, 3), np.nan)}, "NaN"),
    ({"keypoints": np.full((K, 3), 3.0)}, "visibility"),
])
def test_invalid_person_rejected_nothing_written(tmp_path, bad, msg):
    path = str(tmp_path / "v.db")
    with PoseDBWriter(path, dataset="mpii", skeleton="mpii", commit_every=1) as w:
        w.add_image("ok.png", _png(), 40, 30, "train", people=[{"keypoints": _kp(0)}])
        with pytest.raises(PoseDBError, match=f"'bad.png', person 1.*{msg}"):
            w.add_image("bad.png", _png(), 40, 30, "train",
                        people=[{"keypoints": _kp(1)}, bad])
        assert not w.has_image("bad.png")
        w.add_image("after.png", _png(), 40, 30, "train", people=[{"keypoints": _kp(2)}])
    db = PoseDB(path)
    assert [db.image_info(i)["file_name"] for i in db.image_ids()] == ["ok.png", "after.png"]
    con = sqlite3.connect(path)
    assert con.execute("SELECT COUNT(*) FROM people").fetchone()[0] == 2
    con.close()


class _FailingConnection:
    """A writer's connection whose ignore-region insert fails: the image and people rows
    of that record are already written when it does (a disk error half-way)."""

    def __init__(self, con):
        self._inner = con

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def executemany(self, sql, rows):
        if "ignore_regions" in sql:
            raise sqlite3.OperationalError("disk I/O error (injected)")
        return self._inner.executemany(sql, rows)


def test_insert_failing_half_way_leaves_no_rows(tmp_path):
    path = str(tmp_path / "h.db")
    rle, _ = _rle(30, 40, (0, 5, 0, 5))
    with PoseDBWriter(path, dataset="mpii", skeleton="mpii", commit_every=1) as w:
        w.add_image("before.png", _png(), 40, 30, "train", people=[{"keypoints": _kp(0)}])
        real = w._con
        w._con = _FailingConnection(real)
        try:
            # the writer reports SQLite's error as one line (PoseDBWriteError, a PoseDBError)
            with pytest.raises(PoseDBWriteError, match="injected"):
                w.add_image("half.png", _png(), 40, 30, "train",
                            people=[{"keypoints": _kp(1)}, {"keypoints": _kp(2)}],
                            ignore_rles=[rle])
        finally:
            w._con = real
        assert not w.has_image("half.png")
        w.add_image("after.png", _png(), 40, 30, "train", people=[{"keypoints": _kp(3)}])
    con = sqlite3.connect(path)
    assert con.execute("SELECT file_name FROM images ORDER BY id").fetchall() == \
        [("before.png",), ("after.png",)]
    assert con.execute("SELECT COUNT(*) FROM people").fetchone()[0] == 2
    assert con.execute("SELECT COUNT(*) FROM people WHERE image_id NOT IN "
                       "(SELECT id FROM images)").fetchone()[0] == 0
    assert con.execute("SELECT COUNT(*) FROM ignore_regions").fetchone()[0] == 0
    con.close()


def test_invalid_image_records_rejected(tmp_path):
    path = str(tmp_path / "v.db")
    rle, _ = _rle(20, 40, (0, 5, 0, 5))
    with PoseDBWriter(path, dataset="mpii", skeleton="mpii") as w:
        w.add_image("a.png", _png(), 40, 30, "train")
        with pytest.raises(PoseDBError, match="'a.png' is already stored"):
            w.add_image("a.png", _png(), 40, 30, "train")
        with pytest.raises(PoseDBError, match="'e.png': no image bytes"):
            w.add_image("e.png", b"", 40, 30, "train")
        with pytest.raises(PoseDBError, match="'s.png': invalid size"):
            w.add_image("s.png", _png(), 0, 30, "train")
        with pytest.raises(PoseDBError, match="'r.png': ignore region of size 40x20"):
            w.add_image("r.png", _png(), 40, 30, "train", ignore_rles=[rle])
        with pytest.raises(PoseDBError, match="'u.png'.*compressed"):
            w.add_image("u.png", _png(), 40, 30, "train",
                        ignore_rles=[{"size": [30, 40], "counts": [1200]}])
    con = sqlite3.connect(path)
    assert con.execute("SELECT file_name FROM images").fetchall() == [("a.png",)]
    assert con.execute("SELECT COUNT(*) FROM ignore_regions").fetchone()[0] == 0
    con.close()


def test_meta_mismatch_refused(small_db):
    path = small_db[0]
    with pytest.raises(PoseDBError, match="already holds dataset 'mpii'"):
        PoseDBWriter(path, dataset="coco", skeleton="mpii")
    with pytest.raises(PoseDBError, match="skeleton 'mpii'"):
        PoseDBWriter(path, dataset="mpii", skeleton="coco")
    con = sqlite3.connect(path)
    assert con.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 2
    assert json.loads(dict(con.execute("SELECT key, value FROM meta"))["dataset"]) == "mpii"
    con.close()


def test_refused_writer_leaves_the_db_usable(small_db):
    """A writer refused on open must not keep a connection that blocks the next one."""
    path = small_db[0]
    refused = []
    try:
        PoseDBWriter(path, dataset="coco", skeleton="mpii")
    except PoseDBError as e:
        refused.append(e)          # keeping the error alive (as a caller may) keeps its frames
    assert refused
    with PoseDBWriter(path, dataset="mpii", skeleton="mpii", tool="again") as w:
        assert w.has_image("a.png") and not w.has_image("c.png")
    assert [r["tool"] for r in PoseDB(path).meta["runs"]] == ["test", "again"]


def test_writer_closes_while_a_reader_is_open(tmp_path):
    """db_info or a loader may read a DB while its ingestion finishes."""
    path = str(tmp_path / "r.db")
    w = PoseDBWriter(path, dataset="mpii", skeleton="mpii", commit_every=1)
    w.add_image("a.png", _png(), 40, 30, "train")
    reader = PoseDB(path)
    assert len(reader) == 1
    w.add_image("b.png", _png(), 40, 30, "train")
    w.close()
    assert len(reader) == 2 and len(PoseDB(path)) == 2
    assert reader.integrity_check() == "ok"


def test_not_a_db(tmp_path):
    with pytest.raises(PoseDBError, match="does not exist"):
        PoseDB(str(tmp_path / "missing.db"))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"hello, not sqlite" * 100)
    with pytest.raises(PoseDBError, match="not a pose DB"):
        PoseDB(str(junk))
    with pytest.raises(PoseDBError, match="is not a usable SQLite pose DB"):
        PoseDBWriter(str(junk), dataset="mpii", skeleton="mpii")
    with pytest.raises(PoseDBError, match="does not exist"):
        PoseDBWriter(str(tmp_path / "nodir" / "x.db"), dataset="mpii", skeleton="mpii")


def test_read_only_connection(small_db):
    db = PoseDB(small_db[0])
    con = db._con()
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        con.execute("DELETE FROM images")
    assert len(db) == 2



@pytest.mark.parametrize("folder", ["x%41", "a#b", "q?mode=rw", "sp ace%20"])
def test_special_characters_in_the_path_open_that_file(tmp_path, folder):
    # A folder named x%41 must not be read as xA; '#' and '?' must not cut the path (the
    # cut path would be created, empty, by a connection meant to be read-only).
    d = tmp_path / folder
    d.mkdir()
    decoy = tmp_path / "xA"
    decoy.mkdir()
    for where, name in ((d, "s.db"), (decoy, "s.db")):
        with PoseDBWriter(str(where / name), dataset="mpii", skeleton="mpii") as w:
            w.add_image(f"{where.name}.png", _png(), 40, 30, "train")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    db = PoseDB(str(d / "s.db"))
    assert db.image_info(int(db.image_ids()[0]))["file_name"] == f"{folder}.png"
    assert len(db) == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before   # nothing created


def _fill_until_full(w, start=0):
    """Add images to writer ``w`` until SQLite reports the (simulated) disk full."""
    w._con.execute("PRAGMA max_page_count=40")   # SQLITE_FULL, exactly as a full disk
    for i in range(start, start + 1000):
        w.add_image(f"im{i}.png", _png(w=60, h=60, value=i % 255) + bytes(3000), 60, 60,
                    "train")
    raise AssertionError("the page limit was never reached")


def test_disk_full_is_one_error_and_keeps_committed_images(tmp_path):
    path = str(tmp_path / "full.db")
    with PoseDBWriter(path, dataset="mpii", skeleton="mpii", commit_every=2) as w:
        w.add_image("first.png", _png(), 40, 30, "train")
    with pytest.raises(PoseDBError, match="disk full.*kept.*re-run") as e:
        with PoseDBWriter(path, dataset="mpii", skeleton="mpii", commit_every=2) as w:
            _fill_until_full(w)
    assert "\n" not in str(e.value)
    db = PoseDB(path)
    assert db.integrity_check() == "ok"
    names = [db.image_info(int(i))["file_name"] for i in db.image_ids()]
    assert names[0] == "first.png" and len(names) >= 3     # earlier commits intact
    for i in db.image_ids():
        db.load_image(int(i))
    # the lock was released: the next run continues
    with PoseDBWriter(path, dataset="mpii", skeleton="mpii") as w:
        assert w.has_image("first.png")


def test_second_writer_is_refused_as_busy(tmp_path):
    path = str(tmp_path / "busy.db")
    with PoseDBWriter(path, dataset="mpii", skeleton="mpii") as w:
        w.add_image("a.png", _png(), 40, 30, "train")
        w.commit()
        code = (f"from mxpose.data.store import PoseDBWriter, PoseDBError\n"
                f"try:\n    PoseDBWriter({path!r}, dataset='mpii', skeleton='mpii')\n"
                f"except PoseDBError as e:\n    print(e)\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
        assert "is busy" in r.stdout and "another process" in r.stdout, r.stdout + r.stderr
        assert len(PoseDB(path)) == 1          # readers are not blocked by the lock
    with PoseDBWriter(path, dataset="mpii", skeleton="mpii") as w:   # released at close
        assert w.has_image("a.png")

# -- multi-process safety -----------------------------------------------------------------
def test_pickle_drops_the_connection(small_db):
    db = PoseDB(small_db[0])
    assert len(db) == 2                              # a connection is open now
    blob = pickle.dumps(db)                          # a sqlite3.Connection is not picklable
    db2 = pickle.loads(blob)
    assert db2.people(db2.image_ids()[0])["keypoints"].shape == (2, K, 3)
    assert db2._con() is not db._con()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_pool_worker_reads_pickled_db(small_db, method):
    if method not in mp.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    db = PoseDB(small_db[0])
    a = int(db.image_ids()[0])
    here = db.people(a)
    with ProcessPoolExecutor(1, mp_context=mp.get_context(method)) as ex:
        there = ex.submit(db.people, a).result(timeout=120)       # db travels pickled
        assert ex.submit(len, db).result(timeout=120) == 2
    np.testing.assert_array_equal(there["keypoints"], here["keypoints"])


def _inherited_reader(db, image_id, q):
    try:
        k = db.people(image_id)["keypoints"]
        q.put((k.tolist(), db._local.pid == os.getpid()))
    except Exception as e:                            # report instead of hanging the test
        q.put(repr(e))


def test_forked_child_opens_its_own_connection(small_db):
    if "fork" not in mp.get_all_start_methods():
        pytest.skip("no fork here")
    db = PoseDB(small_db[0])
    a = int(db.image_ids()[0])
    here = db.people(a)["keypoints"]                  # parent's connection is open
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_inherited_reader, args=(db, a, q))   # inherited, not pickled
    p.start()
    res = q.get(timeout=60)
    p.join(60)
    assert not isinstance(res, str), res
    kp, own = res
    np.testing.assert_array_equal(np.asarray(kp, np.float32), here)
    assert own, "the child reused the parent's connection"
    assert len(db) == 2                               # parent still fine


# -- no pickle in the package ---------------------------------------------------------------
_PICKLE = re.compile(r"^\s*(import\s+[\w., ]*\b(c?pickle|_pickle|dill|cloudpickle)\b"
                     r"|from\s+(c?pickle|_pickle|dill|cloudpickle)\b)", re.M)


def test_no_module_imports_pickle():
    offenders = []
    for top in ("mxpose", "tools", "cython_ext"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for name in files:
                if not name.endswith((".py", ".pyx", ".pxd")):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as f:
                    src = f.read()
                if _PICKLE.search(src) or re.search(r"allow_pickle\s*=\s*True", src) \
                        or "__import__('pickle')" in src or '__import__("pickle")' in src:
                    offenders.append(os.path.relpath(path, ROOT))
    assert offenders == []
    assert _PICKLE.search("import os, pickle\n") and _PICKLE.search("from pickle import dumps")
    assert not _PICKLE.search("# we do not import pickle here\n")


# -- resumable ingestion after kill -9 --------------------------------------------------------
N_IMAGES = 120


def _big_coco(coco_sample, tmp_path):
    """The sample replicated: N_IMAGES image ids, symlinks to the 4 real images."""
    with open(os.path.join(coco_sample, "test_coco.json")) as f:
        data = json.load(f)
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    images, anns, expected = [], [], {}
    ann_id = 1
    for i in range(N_IMAGES):
        src = data["images"][i % len(data["images"])]
        name = f"img_{i:04d}.jpg"
        os.symlink(os.path.join(coco_sample, src["file_name"]), img_dir / name)
        images.append(dict(src, id=i + 1, file_name=name))
        kps = []
        for a in data["annotations"]:
            if a["image_id"] == src["id"]:
                anns.append(dict(a, id=ann_id, image_id=i + 1))
                kps.append((str(ann_id), a["keypoints"]))
                ann_id += 1
        expected[name] = kps
    big = dict(data, images=images, annotations=anns)
    js = tmp_path / "person_keypoints_big.json"
    js.write_text(json.dumps(big))
    return str(js), str(img_dir), expected


def _count_images(path):
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:                             # not created yet / schema not there
        return 0


def test_ingestion_resumes_after_kill_9(coco_sample, tmp_path):
    js, img_dir, expected = _big_coco(coco_sample, tmp_path)
    out = str(tmp_path / "big.db")
    cmd = [sys.executable, os.path.join(ROOT, "tools", "coco_parse.py"), "--annotations", js,
           "--images", img_dir, "--out", out, "--commit-every", "5", "--no-progress"]
    # Test hook: 50 ms per image makes the full run take ~6 s, so killing once 20 images
    # are committed lands deterministically mid-way (and usually mid-transaction).
    env = dict(os.environ, MXPOSE_INGEST_SLEEP="0.05")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    try:
        while _count_images(out) < 20:
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "ingestion made no progress"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    n_killed = _count_images(out)
    assert 20 <= n_killed < N_IMAGES
    # the interrupted DB is consistent as it stands: whole images only
    con = sqlite3.connect(out)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    orphans = con.execute("SELECT COUNT(*) FROM people WHERE image_id NOT IN "
                          "(SELECT id FROM images)").fetchone()[0]
    assert orphans == 0
    for name, n in con.execute("SELECT i.file_name, COUNT(p.id) FROM images i LEFT JOIN "
                               "people p ON p.image_id = i.id GROUP BY i.id"):
        assert n == len(expected[name])
    con.close()
    # resume
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"already stored: {n_killed} images" in r.stdout
    assert f"written: {N_IMAGES - n_killed} images" in r.stdout
    db = PoseDB(out)
    assert len(db) == N_IMAGES
    names = [db.image_info(i)["file_name"] for i in db.image_ids()]
    assert sorted(names) == sorted(expected) and len(set(names)) == N_IMAGES
    for i, name in zip(db.image_ids(), names):
        p = db.people(i)
        assert [(s, k) for s, k in zip(p["source_id"], p["keypoints"].reshape(-1, 51).tolist())] \
            == [(s, [float(v) for v in k]) for s, k in expected[name]]
    assert sum(1 for _ in expected.values()) == N_IMAGES
    assert db.integrity_check() == "ok"
    assert not os.path.exists(out + "-wal") or os.path.getsize(out + "-wal") == 0
