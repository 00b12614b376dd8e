"""tools/evaluate.py on the real COCO sample: the oracle path end to end."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(*args, cwd=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "evaluate.py"), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def coco_db(tmp_path_factory, coco_sample):
    out = str(tmp_path_factory.mktemp("evaldb") / "coco_val.db")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "coco_parse.py"),
                        "--annotations", os.path.join(coco_sample, "test_coco.json"),
                        "--images", coco_sample, "--out", out, "--split", "val"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out


def test_oracle_table_rotation_rows_and_json(coco_db, tmp_path):
    js = str(tmp_path / "o.json")
    r = _tool("--db", coco_db, "--oracle", "--rotate", "90", "--no-progress", "--json", js)
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stdout.splitlines() if l.startswith(" Average")]
    assert len(lines) == 20                         # two full 10-line tables
    figures = json.load(open(js))["oracle"]
    assert set(figures) == {"0", "90"}
    for deg in ("0", "90"):
        assert figures[deg]["coco"]["AP"] >= 0.95
        assert figures[deg]["images"] == 4 and figures[deg]["failures"] == []


def test_oracle_from_annotation_file_matches_db(coco_sample, coco_db, tmp_path):
    a, b = str(tmp_path / "a.json"), str(tmp_path / "b.json")
    r1 = _tool("--annotations", os.path.join(coco_sample, "test_coco.json"), "--images",
               coco_sample, "--oracle", "--no-progress", "--json", a)
    r2 = _tool("--db", coco_db, "--oracle", "--no-progress", "--json", b)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    ap1 = json.load(open(a))["oracle"]["0"]["coco"]["AP"]
    ap2 = json.load(open(b))["oracle"]["0"]["coco"]["AP"]
    assert ap1 == pytest.approx(ap2, abs=1e-6)


def test_bad_arguments_are_one_line(coco_db, tmp_path):
    r = _tool("--db", str(tmp_path / "missing.db"), "--oracle")
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    r = _tool("--db", coco_db, "--split", "nosuch", "--oracle")
    assert r.returncode == 2 and "no images in split 'nosuch'" in r.stderr
    r = _tool("--db", coco_db, "--prefix", str(tmp_path / "none" / "run"), "--epoch", "8600")
    assert r.returncode == 2 and "8600.params does not exist" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("flag, value", [("--boxsize", "0"), ("--scales", "0"),
                                         ("--scales", "a,b")])
def test_oracle_bad_inference_flags_are_one_line(coco_db, flag, value):
    r = _tool("--db", coco_db, "--oracle", "--no-progress", flag, value)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0]
