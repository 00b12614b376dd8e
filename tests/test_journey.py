"""The user's journey with the real tools: a tiny trained run, then demo and evaluate
from its checkpoints, and the one-line errors a user gets for the usual mistakes."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = """\
name: tiny
data:
  db: {db}
  skeleton: openpose_coco18
  num_workers: 0
  sample_per: image
aug:
  input_size: 64
  scale_ref: 64.0
  center_perturb: 8.0
targets:
  sigma: 8.0
model:
  name: lwpose_mobilenet
  kwargs: {{num_refinement: 1, width_mult: 0.25, num_channels: 16}}
train:
  batch_size: 2
  optimizer: adam
  lr: 1.0e-3
  lr_steps: []
  max_iters: 4
  save_every: 2
  log_every: 1
test:
  boxsize: 96
"""


def tool(name, *args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", name), *args],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A synthetic DB and a 4-iteration training run with checkpoints 2 and 4."""
    d = tmp_path_factory.mktemp("journey")
    db = str(d / "synth.db")
    r = tool("make_synthetic.py", "--out", db, "--num-images", "8", "--val-images", "4",
             "--no-progress")
    assert r.returncode == 0, r.stderr
    cfg = d / "tiny.yaml"
    cfg.write_text(TINY.format(db=db))
    r = tool("train.py", "-c", str(cfg), "--workdir", str(d / "work"), "--no-progress",
             timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    prefix = str(d / "work" / "tiny" / "lwpose_mobilenet")
    assert os.path.isfile(prefix + "-0004.params") and os.path.isfile(prefix + "-0002.params")
    return {"dir": d, "db": db, "cfg": str(cfg), "prefix": prefix}


def test_demo_writes_annotated_image_video_and_json(run, media, tmp_path):
    out = tmp_path / "demo"
    img = os.path.join(media, "COCO_val2014_000000000192.jpg")
    r = tool("demo.py", "-c", run["cfg"], "--prefix", run["prefix"], "--epoch", "4",
             "--image", img, "--out", str(out), "--json", str(tmp_path / "p.json"))
    assert r.returncode == 0, r.stderr
    assert (out / "COCO_val2014_000000000192.jpg").is_file()
    assert "network" in r.stdout and "decode" in r.stdout and "FPS" in r.stdout
    poses = json.load(open(tmp_path / "p.json"))
    assert poses["skeleton"]["name"] == "openpose_coco18" and len(poses["frames"]) == 1
    vid = tmp_path / "vid"
    r = tool("demo.py", "-c", run["cfg"], "--prefix", run["prefix"], "--epoch", "4",
             "--video", os.path.join(media, "video.avi"), "--max-frames", "3",
             "--out", str(vid))
    assert r.returncode == 0, r.stderr
    import cv2
    cap = cv2.VideoCapture(str(vid / "demo.avi"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 3


def test_demo_default_input_is_the_experiment_val_split(run, tmp_path):
    r = tool("demo.py", "-c", run["cfg"], "--workdir", str(run["dir"] / "work"),
             "--out", str(tmp_path / "d"), "--num", "2")
    assert r.returncode == 0, r.stderr
    assert "split 'val'" in r.stdout
    assert len(list((tmp_path / "d").glob("*.jpg"))) == 2


def test_evaluate_checkpoints_summary_plot_and_json(run, tmp_path):
    js, png = str(tmp_path / "e.json"), str(tmp_path / "ap.png")
    r = tool("evaluate.py", "--db", run["db"], "--split", "val", "-c", run["cfg"],
             "--prefix", run["prefix"], "--epochs", "2-4", "--json", js, "--plot", png,
             "--no-progress")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all") == 2
    assert "summary: AP per checkpoint" in r.stdout
    figures = json.load(open(js))
    assert set(figures) == {"2", "4"}
    assert os.path.getsize(png) > 1000


@pytest.mark.parametrize("name", ["train.py", "evaluate.py", "demo.py", "mpi_parse.py",
                                  "coco_parse.py", "make_synthetic.py", "db_info.py",
                                  "show_samples.py", "convert_caffe.py", "launch.py",
                                  "plot_log.py", "quickstart.py"])
def test_help_explains(name):
    r = tool(name, "--help")
    assert r.returncode == 0 and "usage:" in r.stdout and len(r.stdout) > 300, name


def _one_line_error(r, *needles):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr
    err = [l for l in r.stderr.splitlines() if l.strip()]
    assert err, "no error message"
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


def test_user_mistakes_give_one_clear_line(run, tmp_path, coco_sample):
    missing = str(tmp_path / "nope.db")
    # a wrong DB path, for every tool that reads one
    _one_line_error(tool("train.py", "-c", run["cfg"], "--set", f"data.db={missing}",
                         "--workdir", str(tmp_path)), "nope.db")
    _one_line_error(tool("evaluate.py", "--db", missing, "--oracle"), "nope.db",
                    "does not exist")
    _one_line_error(tool("db_info.py", missing), "nope.db")
    _one_line_error(tool("show_samples.py", "--db", missing, "--out", str(tmp_path)),
                    "nope.db")
    # a file that is not a pose DB
    bogus = tmp_path / "bogus.db"
    bogus.write_text("hello")
    _one_line_error(tool("db_info.py", str(bogus)), "bogus.db")
    # a missing checkpoint / wrong --epoch
    _one_line_error(tool("demo.py", "-c", run["cfg"], "--prefix", run["prefix"],
                         "--epoch", "8600"), "8600.params does not exist")
    _one_line_error(tool("evaluate.py", "--db", run["db"], "-c", run["cfg"],
                         "--prefix", run["prefix"], "--epochs", "100-200"), "no checkpoint")
    # a bad YAML key
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lrr: 1\n")
    _one_line_error(tool("train.py", "-c", str(bad)), "unknown config key 'train.lrr'")
    _one_line_error(tool("demo.py", "-c", str(bad), "--epoch", "1"), "train.lrr")
    # a skeleton mismatch between checkpoint and DB/config
    mpi = tmp_path / "mpi.yaml"
    mpi.write_text(TINY.format(db=run["db"]).replace("openpose_coco18", "openpose_mpi15"))
    _one_line_error(tool("demo.py", "-c", str(mpi), "--prefix", run["prefix"], "--epoch", "4",
                         "--out", str(tmp_path / "x")), "openpose_mpi15", "trained on")
    # training a COCO-layout DB into the MPI layout has no conversion
    _one_line_error(tool("train.py", "-c", str(mpi), "--workdir", str(tmp_path / "w"),
                         "--max-iters", "1"), "openpose_mpi15")
    # wrong ingestion inputs
    _one_line_error(tool("coco_parse.py", "--annotations", str(tmp_path / "x.json"),
                         "--images", coco_sample, "--out", str(tmp_path / "c.db")), "x.json")
    _one_line_error(tool("mpi_parse.py", "--annotations", str(tmp_path / "x.mat"),
                         "--images", str(tmp_path), "--out", str(tmp_path / "m.db")), "x.mat")
