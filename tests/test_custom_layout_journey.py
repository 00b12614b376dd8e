"""'Your own keypoints', as the README recipe runs it: a COCO-format JSON in a 14-point
layout mxpose does not ship (written by the synthetic generator, as a labelling tool
would) -> coco_parse -> evaluate --oracle -> train with experiments/custom_lwpose.yaml
and only --set data.db -> evaluate, demo and export from the checkpoint."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "custom_lwpose.yaml")


def tool(name, *args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", name), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("custom_layout")
    r = tool("make_synthetic.py", "--coco-dir", str(d / "files"), "--num-images", "24",
             "--val-images", "8", "--max-size", "224", "--no-progress")
    assert r.returncode == 0, r.stderr
    db = str(d / "my.db")
    for split in ("train", "val"):
        r = tool("coco_parse.py", "--annotations",
                 str(d / "files" / f"synthetic_people_{split}.json"),
                 "--images", str(d / "files"), "--out", db, "--no-progress")
        assert r.returncode == 0, r.stderr
        assert "layout 'synthetic_people': 14 keypoints, 14 limbs, 6 flip pairs" in r.stdout
    return d, db


def test_the_file_is_plain_coco_with_its_own_layout(coco_dir):
    from mxpose.data.store import PoseDB
    from mxpose.data.synthetic import COCO14_NAMES
    d, db = coco_dir
    data = json.load(open(d / "files" / "synthetic_people_train.json"))
    cat, = data["categories"]
    assert cat["keypoints"] == list(COCO14_NAMES["custom"]) and len(cat["skeleton"]) == 14
    assert all(len(a["keypoints"]) == 42 for a in data["annotations"])
    sk = PoseDB(db).skeleton
    assert sk.keypoints == COCO14_NAMES["custom"]
    assert ("Left Shoulder", "Right Shoulder") in sk.flip_pairs
    assert ("crown", "neck") in sk.limbs
    # every labelled person has its head top above its neck (image y grows downwards)
    pdb = PoseDB(db)
    kp = np.concatenate([pdb.people(int(i))["keypoints"] for i in pdb.image_ids()])
    both = (kp[:, 12, 2] > 0) & (kp[:, 13, 2] > 0)
    assert both.sum() > 20 and np.mean(kp[both, 12, 1] < kp[both, 13, 1]) > 0.9


def test_oracle_on_the_custom_layout(coco_dir, tmp_path):
    d, db = coco_dir
    js = str(tmp_path / "o.json")
    r = tool("evaluate.py", "--db", db, "--oracle", "--json", js, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert json.load(open(js))["oracle"]["0"]["coco"]["AP"] >= 0.98
    # the same from the JSON file itself
    r = tool("evaluate.py", "--annotations", str(d / "files" / "synthetic_people_val.json"),
             "--images", str(d / "files"), "--oracle", "--json", js, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert json.load(open(js))["oracle"]["0"]["coco"]["AP"] >= 0.98


@pytest.mark.slow
def test_train_evaluate_demo_export_with_no_code_change(coco_dir, tmp_path):
    d, db = coco_dir
    work = str(tmp_path / "work")
    r = tool("train.py", "-c", CONFIG, "--set", f"data.db={db}", "--workdir", work,
             "--set", "aug.input_size=96", "--set", "aug.scale_ref=96.0",
             "--set", "model.kwargs={num_refinement: 1, width_mult: 0.25, num_channels: 32}",
             "--set", "train.batch_size=4", "--set", "train.max_iters=16",
             "--set", "train.save_every=16", "--set", "train.log_every=1",
             "--set", "data.num_workers=0", "--set", "test.boxsize=160", "--no-progress",
             timeout=1200)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    prefix = os.path.join(work, "custom_lwpose", "lwpose_mobilenet")
    assert os.path.isfile(prefix + "-0016.params")
    losses = [json.loads(l)["loss"] for l in open(prefix + "-train.jsonl") if '"loss"' in l]
    assert len(losses) >= 10
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    # the saved config carries the DB's layout, so nothing downstream needs the DB
    import yaml
    saved = yaml.safe_load(open(prefix + "-config.yaml"))
    assert saved["data"]["skeleton"]["name"] == "synthetic_people"
    assert len(saved["data"]["skeleton"]["keypoints"]) == 14

    # the run's saved config (the model was shrunk by --set), as a user resuming would
    js = str(tmp_path / "e.json")
    r = tool("evaluate.py", "--prefix", prefix, "--db", db, "--json", js,
             "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "16" in json.load(open(js))

    out = str(tmp_path / "demo")
    r = tool("demo.py", "--prefix", prefix, "--db", db, "--num", "2",
             "--out", out, "--json", str(tmp_path / "d.json"))
    assert r.returncode == 0, r.stderr
    assert len(os.listdir(out)) == 2
    demo = json.load(open(tmp_path / "d.json"))
    assert demo["skeleton"]["name"] == "synthetic_people"
    assert len(demo["skeleton"]["limbs"]) == 14            # the limbs the demo draws

    exp = str(tmp_path / "exp" / "m")
    r = tool("export.py", "--prefix", prefix, "--out", exp, "--formats", "onnx")
    assert r.returncode == 0, r.stderr
    meta = json.load(open(exp + "-meta.json"))
    assert meta["skeleton"]["name"] == "synthetic_people"
    assert meta["skeleton"]["keypoints"][12] == "crown"


def test_crowdpose_named_file_is_the_shipped_layout(tmp_path):
    from mxpose.data.coco import load_coco_keypoints
    from mxpose.data.synthetic import write_synthetic_coco
    from mxpose.skeleton import get_skeleton
    s = write_synthetic_coco(str(tmp_path), 2, names="crowdpose", progress=False)
    c = load_coco_keypoints(s["json"]["train"])
    assert c.layout is get_skeleton("crowdpose") and not c.warnings


def test_the_layout_sigmas_reach_the_oks(coco_dir, tmp_path):
    """--sigmas is stored with the layout and evaluate's OKS uses it: with sigmas ~5000x
    smaller even the oracle's tiny sub-pixel errors cost AP."""
    d, _ = coco_dir
    sig = tmp_path / "sig.json"
    sig.write_text(json.dumps([1e-5] * 14))
    db = str(tmp_path / "tiny_sigmas.db")
    r = tool("coco_parse.py", "--annotations", str(d / "files" / "synthetic_people_val.json"),
             "--images", str(d / "files"), "--out", db, "--sigmas", str(sig), "--no-progress")
    assert r.returncode == 0, r.stderr
    js = str(tmp_path / "o.json")
    r = tool("evaluate.py", "--db", db, "--oracle", "--json", js, "--no-progress")
    assert r.returncode == 0, r.stderr
    # the same file with its default sigmas gives >= 0.98 (test_oracle_on_the_custom_layout)
    assert json.load(open(js))["oracle"]["0"]["coco"]["AP"] < 0.9
