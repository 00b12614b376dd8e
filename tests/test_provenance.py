"""Provenance: hashed DBs and db_info --verify, source files, evaluation cards, checkpoint
provenance and train.py --reproduce."""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from mxpose.data.coco import ingest_coco
from mxpose.data.store import PoseDB, PoseDBError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def _tool(name, *args, cwd=ROOT):
    return subprocess.run([PY, os.path.join(ROOT, "tools", name), *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.fixture
def coco_db(coco_sample, tmp_path):
    out = str(tmp_path / "coco.db")
    ingest_coco(os.path.join(coco_sample, "test_coco.json"), coco_sample, out, split="val",
                progress=False)
    return out


# -- hashed DBs --------------------------------------------------------------------------------
def test_content_hash_recorded_and_independent_of_insertion_order(coco_sample, coco_db,
                                                                  tmp_path):
    db = PoseDB(coco_db)
    assert db.content_hash and len(db.content_hash) == 64
    src = db.sources["test_coco.json"]
    assert src["size"] == os.path.getsize(os.path.join(coco_sample, "test_coco.json"))
    v = db.verify()
    assert v["ok"] and v["recomputed"] == db.content_hash and v["images"] == 4
    # Same records written in two halves (an interrupted, resumed ingestion): same hash.
    out = str(tmp_path / "halves.db")
    ann = os.path.join(coco_sample, "test_coco.json")
    ingest_coco(ann, coco_sample, out, split="val", limit=2, progress=False)
    ingest_coco(ann, coco_sample, out, split="val", progress=False)
    assert PoseDB(out).content_hash == db.content_hash


def _flip_byte(path, table, column, where="id = (SELECT MIN(id) FROM {t})"):
    con = sqlite3.connect(path)
    row_id, blob = con.execute(f"SELECT id, {column} FROM {table} WHERE "
                               + where.format(t=table)).fetchone()
    b = bytearray(blob)
    b[len(b) // 2] ^= 0x01
    con.execute(f"UPDATE {table} SET {column}=? WHERE id=?", (bytes(b), row_id))
    con.commit()
    con.close()


def _db_info(*args):
    return _tool("db_info.py", *args, "--no-progress")


def test_verify_catches_a_flipped_image_byte(coco_db):
    name = PoseDB(coco_db).image_info(int(PoseDB(coco_db).image_ids()[0]))["file_name"]
    assert _db_info(coco_db, "--verify").returncode == 0
    _flip_byte(coco_db, "images", "data")
    r = _db_info(coco_db, "--verify")
    assert r.returncode == 1, r.stdout
    assert name in r.stdout and "content hash is" in r.stdout
    assert "Traceback" not in r.stderr


def test_verify_catches_a_changed_keypoint(coco_db):
    con = sqlite3.connect(coco_db)
    pid, image_id, blob = con.execute(
        "SELECT id, image_id, keypoints FROM people WHERE num_keypoints > 0 "
        "ORDER BY id LIMIT 1").fetchone()
    kp = np.frombuffer(blob, "<f4").copy().reshape(-1, 3)
    j = int(np.flatnonzero(kp[:, 2] > 0)[0])
    kp[j, 0] += 1.0                                   # one keypoint moved by one pixel
    con.execute("UPDATE people SET keypoints=? WHERE id=?", (kp.tobytes(), pid))
    name = con.execute("SELECT file_name FROM images WHERE id=?", (image_id,)).fetchone()[0]
    con.commit()
    con.close()
    ver = PoseDB(coco_db).verify()
    assert not ver["ok"] and ver["mismatched"] == [name]
    r = _db_info(coco_db, "--verify", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["verify"]["mismatched"] == [name]


def test_resume_from_a_modified_annotation_file_is_refused(coco_sample, tmp_path):
    ann = str(tmp_path / "ann.json")
    shutil.copy(os.path.join(coco_sample, "test_coco.json"), ann)
    out = str(tmp_path / "c.db")
    args = ["--annotations", ann, "--images", coco_sample, "--out", out, "--no-progress"]
    r = _tool("coco_parse.py", *args, "--limit", "2")
    assert r.returncode == 0, r.stderr
    with open(ann) as f:
        data = json.load(f)
    data["annotations"][-1]["keypoints"][0] += 3       # a new release of the file
    with open(ann, "w") as f:
        json.dump(data, f)
    r = _tool("coco_parse.py", *args)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "ann.json" in r.stderr and "--allow-changed-source" in r.stderr
    assert len(PoseDB(out)) == 2                      # nothing was added or lost
    r = _tool("coco_parse.py", *args, "--allow-changed-source")
    assert r.returncode == 0, r.stderr
    db = PoseDB(out)
    assert len(db) == 4 and db.sources["ann.json"]["previous"]
    # Unchanged file: resuming is fine (no flag needed).
    assert _tool("coco_parse.py", *args).returncode == 0
    # Another file (a val file beside the train file) is another source, not a version.
    other = str(tmp_path / "other.json")
    for im in data["images"]:
        im["file_name"] = "../" + os.path.basename(coco_sample) + "/" + im["file_name"]
    with open(other, "w") as f:
        json.dump(data, f)
    r = _tool("coco_parse.py", "--annotations", other, "--images", coco_sample, "--out", out,
              "--split", "val", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert set(PoseDB(out).sources) == {"ann.json", "other.json"}


# -- evaluation cards --------------------------------------------------------------------------
def _fake_predictor(**kw):
    from mxpose.skeleton import get_skeleton
    base = dict(scales=(1.0,), flip=False, boxsize=368, stride=8, engine="gluon",
                decode_params={"thre1": 0.1, "thre2": 0.05},
                skeleton=get_skeleton("openpose_coco18"))
    base.update(kw)
    return SimpleNamespace(**base)


def test_card_holds_every_field_and_follows_each_change(coco_db, tmp_path):
    from mxpose.eval.card import card_summary, ground_truth_from_db, make_card
    params = tmp_path / "m-0004.params"
    params.write_bytes(b"weights")
    db = PoseDB(coco_db)
    ids = [int(i) for i in db.image_ids("val")]

    def card(pred=None, gt_db=db, image_ids=ids, **kw):
        return make_card(ground_truth=ground_truth_from_db(gt_db, "val"), image_ids=image_ids,
                         predictor=pred or _fake_predictor(), model_name="lwpose_mobilenet",
                         checkpoint=str(params), seconds=2.0, images=len(image_ids), **kw)

    c = card()
    assert c["model"] == {"name": "lwpose_mobilenet", "layout": "openpose_coco18",
                          "engine": "gluon", "checkpoint": str(params),
                          "sha256": __import__("hashlib").sha256(b"weights").hexdigest()}
    assert c["inference"] == {"scales": [1.0], "flip": False, "boxsize": 368, "stride": 8}
    dec = c["decoder"]
    for key in ("thre1", "thre2", "sigma", "refine", "sampling", "n_samples", "min_frac",
                "min_parts", "min_score", "upsample", "person_score"):
        assert key in dec, key
    assert "0-based" in c["coordinates"]
    gt = c["ground_truth"]
    assert gt["content_hash"] == db.content_hash and gt["split"] == "val"
    assert gt["sources"]["test_coco.json"]["sha256"]
    assert c["images"]["count"] == 4 and len(c["images"]["ids_sha256"]) == 64
    assert c["versions"]["pycocotools"] and c["versions"]["mxpose"]
    assert set(c["code"]) == {"git", "dirty"}
    assert c["run"] == {"seconds": 2.0, "images_per_second": 2.0}
    line = card_summary(c)
    assert "single scale 368" in line and "no flip" in line and db.content_hash[:10] in line
    # Each setting changes the card.
    changed = {
        "scale": card(_fake_predictor(scales=(0.5, 1.0))),
        "flip": card(_fake_predictor(flip=True)),
        "threshold": card(_fake_predictor(decode_params={"thre1": 0.2, "thre2": 0.05})),
        "subset": card(image_ids=ids[:2], subset={"max_images": 2, "seed": 0}),
    }
    other = str(tmp_path / "other.db")
    shutil.copy(coco_db, other)
    _flip_byte(other, "images", "data")
    with sqlite3.connect(other) as con:   # re-record the hash as a re-ingestion would
        con.execute("UPDATE meta SET value=? WHERE key='content_hash'",
                    (json.dumps(PoseDB(other).verify()["recomputed"]),))
    changed["db content"] = card(gt_db=PoseDB(other))
    for what, c2 in changed.items():
        assert c2 != c, what
        assert card_summary(c2) != line, what
    assert changed["threshold"]["decoder"]["thre1"] == 0.2


def test_evaluate_prints_and_writes_the_card(coco_db, tmp_path):
    out = tmp_path / "e.json"
    r = _tool("evaluate.py", "--db", coco_db, "--split", "val", "--oracle", "--no-progress",
              "--json", str(out), "--max-images", "3", "--seed", "1")
    assert r.returncode == 0, r.stderr
    assert "card: oracle" in r.stdout and "3 val images of coco.db@" in r.stdout
    card = json.loads(out.read_text())["oracle"]["0"]["card"]
    assert card["images"]["subset"] == {"max_images": 3, "seed": 1}
    assert card["images"]["count"] == 3
    assert card["ground_truth"]["content_hash"] == PoseDB(coco_db).content_hash


# -- checkpoints: provenance and --reproduce ----------------------------------------------------
@pytest.fixture(scope="module")
def syn_db(tmp_path_factory):
    from mxpose.data.synthetic import make_synthetic_db
    path = str(tmp_path_factory.mktemp("prov") / "syn.db")
    make_synthetic_db(path, 12, 2, seed=0, progress=False, max_size=160, min_size=96)
    return path


def _small(db, work, *extra):
    return ["-c", os.path.join(ROOT, "experiments", "synthetic_lwpose.yaml"),
            "--set", f"data.db={db}", "--set", "aug.input_size=64",
            "--set", "model.kwargs={width_mult: 0.25, num_channels: 16, num_refinement: 1}",
            "--workdir", str(work), "--num-workers", "0", "--batch-size", "2",
            "--no-progress", "--max-iters", "3", "--save-every", "3", *extra]


@pytest.mark.slow
def test_checkpoint_provenance_and_bit_identical_reproduce(syn_db, tmp_path):
    import mxnet as mx
    work = tmp_path / "w"
    argv = _small(syn_db, work)
    r = _tool("train.py", *argv)
    assert r.returncode == 0, r.stderr[-2000:]
    prefix = os.path.join(str(work), "synthetic_lwpose", "lwpose_mobilenet")
    info = json.load(open(prefix + "-0003.json"))
    prov = info["provenance"]
    from mxpose.provenance import hash_json
    assert prov["command"] == ["tools/train.py"] + argv
    assert prov["config_sha256"] == hash_json(info["config"])
    db = PoseDB(syn_db)
    assert prov["db"]["content_hash"] == db.content_hash
    assert prov["db"]["splits"] == db.splits() and prov["db"]["schema_version"] == 1
    assert prov["contexts"] == ["cpu(0)"] and prov["kvstore"] == "device"
    assert prov["num_workers"] == 1 and prov["loader_workers"] == 0
    assert prov["run"]["images"] == 3 * 2 and prov["run"]["wall_seconds"] > 0
    assert prov["versions"]["mxpose"] and set(prov["code"]) == {"git", "dirty"}

    new = tmp_path / "again"
    r = _tool("train.py", "--reproduce", prefix + "-0003.json", "--workdir", str(new),
              "--no-progress")
    assert r.returncode == 0, r.stderr[-2000:]
    p2 = os.path.join(str(new), "synthetic_lwpose", "lwpose_mobilenet")
    a, b = mx.nd.load(prefix + "-0003.params"), mx.nd.load(p2 + "-0003.params")
    assert sorted(a) == sorted(b)
    for k in a:
        assert np.array_equal(a[k].asnumpy(), b[k].asnumpy()), k
    assert json.load(open(p2 + "-0003.json"))["provenance"]["command"] == prov["command"]

    # A DB with other content is refused in one line, unless forced.
    con = sqlite3.connect(syn_db)
    con.execute("UPDATE meta SET value=? WHERE key='content_hash'", (json.dumps("0" * 64),))
    con.commit()
    con.close()
    try:
        r = _tool("train.py", "--reproduce", prefix + "-0003.json", "--workdir",
                  str(tmp_path / "third"), "--no-progress")
        assert r.returncode == 2 and "content hash" in r.stderr and "--force" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        con = sqlite3.connect(syn_db)
        con.execute("UPDATE meta SET value=? WHERE key='content_hash'",
                    (json.dumps(db.content_hash),))
        con.commit()
        con.close()


def test_reproduce_of_a_file_without_provenance_is_one_line(tmp_path):
    bad = tmp_path / "x-0001.json"
    bad.write_text(json.dumps({"iteration": 1}))
    r = _tool("train.py", "--reproduce", str(bad))
    assert r.returncode == 2 and "records no command" in r.stderr
    assert "Traceback" not in r.stderr
