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


#: every journey tool run's output, checked for tracebacks by the last test of this file
OUTPUTS = []


def _record(name, r):
    OUTPUTS.append((name, r.stdout + r.stderr))
    return r


def tool(name, *args, cwd=None, timeout=300, env=None):
    return _record(name, subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", name), *args], capture_output=True,
        text=True, cwd=cwd, timeout=timeout, env=env))


# Runs a tool with SQLite limited to a few pages: writes fail exactly as on a full disk.
_FULL_DISK = """
import runpy, sys
from mxpose.data import store
connect = store._connect
def small(path, readonly):
    con = connect(path, readonly)
    if not readonly:
        con.execute("PRAGMA max_page_count=60")
    return con
store._connect = small
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


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


def test_more_user_mistakes_give_one_clear_line(run, tmp_path, media):
    train = ("train.py", "-c", run["cfg"], "--workdir", str(tmp_path / "w"), "--no-progress")
    # config values that are not YAML, a model or a model argument that does not exist
    _one_line_error(tool(*train, "--set", "train.lr=["), "train.lr=[", "not valid YAML")
    _one_line_error(tool(*train, "--set", "model.name=lwpose"), "unknown model 'lwpose'",
                    "lwpose_mobilenet")
    _one_line_error(tool(*train, "--set", "model.kwargs.num_refinements=2"),
                    "num_refinements", "num_refinement")
    _one_line_error(tool(*train, "--num-workers", "-1"), "--num-workers", ">= 0")
    # an output folder that cannot be created or written
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    _one_line_error(tool("train.py", "-c", run["cfg"], "--workdir", str(blocker / "w"),
                         "--no-progress", "--max-iters", "1"), "a_file")
    img = os.path.join(media, "COCO_val2014_000000000192.jpg")
    demo = ("demo.py", "-c", run["cfg"], "--prefix", run["prefix"], "--epoch", "4",
            "--image", img)
    _one_line_error(tool(*demo, "--out", str(blocker / "out")), "a_file")
    # the image cannot be written (here a folder is in its way; a read-only folder or a
    # full disk fail the same way): an error, not "success" with nothing written
    out = tmp_path / "out"
    (out / "COCO_val2014_000000000192.jpg").mkdir(parents=True)
    _one_line_error(tool(*demo, "--out", str(out)), "cannot write image",
                    "COCO_val2014_000000000192.jpg")
    _one_line_error(tool(*demo, "--out", str(tmp_path / "o"), "--json", str(out)),
                    "--json", "is a folder")
    _one_line_error(tool(*demo, "--out", str(tmp_path / "o"), "--json",
                         str(blocker / "p.json")), "--json", "cannot be written")
    if hasattr(os, "geteuid") and os.geteuid() != 0:   # root writes into 0o555 folders
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        _one_line_error(tool(*demo, "--out", str(ro)), "cannot write image")
    # inference settings that make no sense are named, the checkpoint is not blamed
    _one_line_error(tool(*demo, "--out", str(tmp_path / "o"), "--boxsize", "0"), "--boxsize")
    r = tool(*demo, "--out", str(tmp_path / "o"), "--scales", "0")
    _one_line_error(r, "--scales")
    assert "cannot load" not in r.stderr
    # evaluate: a ground-truth file that is not JSON, or JSON that is not COCO
    notjson = tmp_path / "gt.json"
    notjson.write_text("this is not json")
    ev = ("evaluate.py", "-c", run["cfg"], "--prefix", run["prefix"], "--epoch", "4",
          "--images", str(tmp_path), "--no-progress")
    _one_line_error(tool(*ev, "--annotations", str(notjson)), "gt.json", "not a JSON file")
    notcoco = tmp_path / "list.json"
    notcoco.write_text("[1, 2, 3]")
    _one_line_error(tool(*ev, "--annotations", str(notcoco)), "list.json",
                    "not a COCO annotation file")
    _one_line_error(tool("evaluate.py", "--db", run["db"], "--oracle", "--no-progress",
                         "--json", str(blocker / "e.json")), "--json", "cannot be written")


def test_ingestion_disk_full_and_busy_db(coco_sample, tmp_path):
    js = os.path.join(coco_sample, "test_coco.json")
    out = str(tmp_path / "c.db")
    # disk full part-way: one line, the images committed before are kept and readable
    r = _record("coco_parse.py (full disk)", subprocess.run(
        [sys.executable, "-c", _FULL_DISK, os.path.join(ROOT, "tools", "coco_parse.py"),
         "--annotations", js, "--images", coco_sample, "--out", out, "--commit-every", "1",
         "--workers", "1", "--no-progress"], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=ROOT)))
    _one_line_error(r, "disk full", "kept", "re-run")
    r = tool("db_info.py", out, "--check", "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "check: ok" in r.stdout
    # a second ingestion into a DB another one is writing is refused: "busy"
    slow = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tools", "coco_parse.py"), "--annotations", js,
         "--images", coco_sample, "--out", str(tmp_path / "b.db"), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, MXPOSE_INGEST_SLEEP="3"))
    try:
        import time
        t0 = time.time()
        while not os.path.isfile(str(tmp_path / "b.db")):
            assert slow.poll() is None and time.time() - t0 < 60
            time.sleep(0.1)
        time.sleep(1.0)
        _one_line_error(tool("coco_parse.py", "--annotations", js, "--images", coco_sample,
                             "--out", str(tmp_path / "b.db"), "--no-progress"),
                        "b.db", "busy", "another process")
    finally:
        slow.kill()
        o, e = slow.communicate()
        OUTPUTS.append(("coco_parse.py (killed)", o + e))


def test_no_traceback_in_any_journey_output():
    """Runs last: none of this file's tool runs printed a traceback (errors included)."""
    if len(OUTPUTS) < 20:
        pytest.skip("needs the other tests of this file to have run first")
    bad = [name for name, text in OUTPUTS if "Traceback" in text]
    assert not bad, bad
