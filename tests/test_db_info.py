"""tools/db_info.py: the description and --check, on good and damaged DBs."""
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from mxpose.data.coco import ingest_coco

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "db_info.py")


def _load_tool():
    spec = importlib.util.spec_from_file_location("db_info_tool", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


db_info = _load_tool()


@pytest.fixture(scope="module")
def coco_json(coco_sample):
    with open(os.path.join(coco_sample, "test_coco.json")) as f:
        return json.load(f)


@pytest.fixture
def good_db(coco_sample, tmp_path):
    out = str(tmp_path / "coco.db")
    ingest_coco(os.path.join(coco_sample, "test_coco.json"), coco_sample, out, split="val",
                progress=False, args={"from": "test"})
    return out


def _run(capsys, *argv):
    rc = db_info.main(list(argv) + ["--no-progress"])
    out, err = capsys.readouterr()
    return rc, out, err


def test_help():
    r = subprocess.run([sys.executable, TOOL, "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 0 and "--check" in r.stdout and "integrity_check" in r.stdout


def test_text_output(good_db, coco_json, capsys):
    rc, out, _ = _run(capsys, good_db)
    assert rc == 0
    labelled = sum(sum(1 for v in a["keypoints"][2::3] if v > 0)
                   for a in coco_json["annotations"])
    assert "dataset: coco" in out and "schema version: 1" in out
    assert "skeleton: coco (17 keypoints, 19 limbs)" in out
    assert 'created by: coco_parse {"from": "test"}' in out
    assert "MiB" in out
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == ["val"])
    assert row == ["val", "4", "14", "0", str(labelled), "2"]
    # without --check nothing is decoded or validated (no "check:" line)
    assert not any(line.strip().startswith(("check:", "verify:")) for line in out.splitlines())


def test_json_output(good_db, capsys):
    rc, out, _ = _run(capsys, good_db, "--json")
    assert rc == 0
    info = json.loads(out)
    assert info["dataset"] == "coco" and info["schema_version"] == 1
    sk = info["skeleton"]
    assert (sk["name"], sk["num_keypoints"], sk["num_limbs"]) == ("coco", 17, 19)
    assert sk["keypoints"][:3] == ["nose", "l_eye", "r_eye"] and len(sk["flip_pairs"]) == 8
    assert info["splits"]["val"]["images"] == 4 and info["total"]["people"] == 14
    assert info["total"]["ignore_regions"] == 2
    assert info["file_size"] == os.path.getsize(good_db)
    assert info["created_by"] == "coco_parse" and len(info["runs"]) == 1


def test_check_ok(good_db, capsys):
    rc, out, _ = _run(capsys, good_db, "--check")
    assert rc == 0, out
    assert "check: ok (4 images decoded, integrity ok)" in out
    rc, out, _ = _run(capsys, good_db, "--check", "--json")
    assert rc == 0 and json.loads(out)["check"] == {"ok": True, "problems": []}


def _damage(path, sql, *params):
    con = sqlite3.connect(path)
    con.execute(sql, params)
    con.commit()
    con.close()


def test_check_finds_corrupt_image_blob(good_db, capsys):
    con = sqlite3.connect(good_db)
    iid, name, data = con.execute(
        "SELECT id, file_name, data FROM images ORDER BY id LIMIT 1 OFFSET 1").fetchone()
    con.close()
    _damage(good_db, "UPDATE images SET data=? WHERE id=?", b"\0" * 64 + bytes(data[64:]), iid)
    rc, out, _ = _run(capsys, good_db, "--check")
    assert rc == 1
    lines = [line.strip() for line in out.splitlines() if "cannot be decoded" in line]
    assert len(lines) == 1 and lines[0].startswith(
        f"{name} (image id {iid}): image bytes cannot be decoded (")
    assert "check: 1 problems" in out


def test_check_finds_bad_records(good_db, capsys):
    con = sqlite3.connect(good_db)
    rows = con.execute("SELECT id, file_name FROM images ORDER BY id").fetchall()
    pid, pimg, psrc, kp = con.execute(
        "SELECT id, image_id, source_id, keypoints FROM people ORDER BY id LIMIT 1").fetchone()
    rid, rimg = con.execute("SELECT id, image_id FROM ignore_regions LIMIT 1").fetchone()
    con.close()
    names = dict(rows)
    # width that no longer matches the JPEG
    _damage(good_db, "UPDATE images SET width = width + 3 WHERE id=?", rows[3][0])
    # a keypoint far outside the image and an invalid visibility
    k = np.frombuffer(kp, "<f4").reshape(17, 3).copy()
    k[0] = (5000.0, 10.0, 2.0)
    k[1, 2] = 7.0
    _damage(good_db, "UPDATE people SET keypoints=? WHERE id=?", k.tobytes(), pid)
    # a truncated keypoint blob on the next person
    _damage(good_db, "UPDATE people SET keypoints=? WHERE id=?", kp[:20], pid + 1)
    # RLE runs that do not cover the image
    _damage(good_db, "UPDATE ignore_regions SET counts='0' WHERE id=?", rid)
    rc, out, _ = _run(capsys, good_db, "--check", "--json")
    assert rc == 1
    problems = json.loads(out)["check"]["problems"]
    text = "\n".join(problems)
    assert f"{names[rows[3][0]]} (image id {rows[3][0]}): decodes to" in text
    assert f"{names[pimg]} (image id {pimg}), person 0 (source id {psrc}): " \
           f"visibility values [7.0]" in text
    assert "1 keypoints far outside" in text and "(5000.0, 10.0)" in text
    assert "has 5 keypoint values, expected 51" in text
    assert f"{names[rimg]} (image id {rimg}), ignore region 0 (unlabelled): RLE covers 0 " \
           f"pixels" in text
    assert len(problems) == 5, problems


def test_not_a_db_is_one_line_exit_2(tmp_path, capsys):
    junk = tmp_path / "junk.db"
    junk.write_text("just text")
    for path in (str(junk), str(tmp_path / "missing.db")):
        rc, out, err = _run(capsys, path)
        assert rc == 2 and out == ""
        assert len(err.strip().splitlines()) == 1 and path in err
    r = subprocess.run([sys.executable, TOOL, str(junk)], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
