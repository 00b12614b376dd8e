"""Real photos are learnt: a slim network trained on the COCO sample (4 images, 12 labelled
people) reaches COCO keypoint AP >= 0.9 on those same images, and one trained on the MPII
sample (5 images) reaches PCKh@0.5 >= 90 % on its images.

The synthetic quickstart never takes the real-photo path; this test does, with the tools a
user runs (coco_parse / mpi_parse -> train -> evaluate): JPEGs decoded at 1/2 (COCO) and
1/4 (MPII) size and mapped back to original coordinates, COCO ignore masks, keypoints
converted to the network's layout and back, and the test-time resize of the Predictor
(``aug.scale_mode: image`` makes training see people at the size the evaluation shows
them), its grey margin and its multi-scale averaging (see
experiments/sample_overfit_lwpose.yaml for why each setting).

Not a generalisation test: training and evaluation images are the same. Measured (2026-12,
one MXNet thread, train.seed 0 / 1 / 2, the same 1200 iterations of 4 crops of 160 px):
COCO AP 0.62 at the old boxsize 160 (seed 0; 0.71 with two threads); at boxsize
256 0.81 / - / -, with the 64 px test margin 0.90 / 0.90 / 0.88, and with the five test
scales (the experiment) 0.92 / 0.97 / 0.94 (0.93 with seed 0 and two threads). MPII PCKh
97.9 % after 600 (boxsize 160, margin 64, one scale; 100 % without the margin, 93.3 %
with the five scales: its knees and ankles suffered, so its test keeps one scale).
What the thresholds catch, measured by moving the trained networks' predictions: COCO AP
(seed 2, 0.94) falls to 0.87 when every keypoint is 1 input pixel off, to 0.76 at 2 (a
quarter of a map cell) and to 0.48 at 4; MPII PCKh falls to 86 % at 6 px and 32 % at 8 px.
Training with the 1/4-size decode not mapped back to original pixels (the affine's decode
step dropped) gave MPII PCKh 0 %; testing without the margin gave COCO AP 0.75-0.81 (three
networks). Not guarded: training without ignore masks (targets.use_masks=false) still gave
COCO AP 0.69 at boxsize 160, since the sample's ignore regions cover only two unlabelled
people, which COCO's evaluation ignores too. What is left below 1: the face points of the
smallest person (57 px tall at test) and a wrist whose elbow is not labelled (the decoder
cannot attach it).

Cost: 1200 + 600 iterations of 4 crops of 160 px, as before the boxsize went from 160 to
256 (in 'image' mode the crop, not the boxsize, sets the training cost). The COCO test
alone on 2 cores with the default threads (pytest wall time, the machine otherwise nearly
idle, load 1.2-2.6 with the test itself), old (boxsize 160, one scale) and new back to
back, then again in the other order: old 171 s then new 133 s; new 166 s then old 171 s
(CPU 318 / 255 s and 317 / 328 s; AP 0.714 old and 0.930 new each time). Not slower; the
five test scales add seconds. The MPII test: 87-91 s of wall time the same way.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "sample_overfit_lwpose.yaml")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpii_mat import write_release  # noqa: E402


def _tool(name, *args, timeout=900):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", name), *args],
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert r.returncode == 0, f"{name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def _train_and_evaluate(db, workdir, *overrides):
    """Train the sample experiment on split 'train' of ``db`` and evaluate its last
    checkpoint on the same split; returns the figures of evaluate's --json."""
    sets = [a for o in ("data.db=" + db,) + overrides for a in ("--set", o)]
    _tool("train.py", "-c", CONFIG, *sets, "--workdir", workdir, "--no-progress")
    out = os.path.join(workdir, "eval.json")
    # no -c: evaluate takes the run's resolved config (with the overrides) beside it
    prefix = os.path.join(workdir, "sample_overfit_lwpose", "lwpose_mobilenet")
    _tool("evaluate.py", "--prefix", prefix, "--db", db, "--split", "train", "--json", out,
          "--no-progress")
    with open(out) as f:
        figures = json.load(f)
    last = max(figures, key=int)
    # the last checkpoint is the one max_iters names (training ran to the end)
    from mxpose.config import load_config
    assert int(last) == load_config(CONFIG, overrides).train.max_iters
    return figures[last]["0"]


@pytest.mark.slow
def test_coco_sample_is_learnt(coco_sample, tmp_path):
    db = str(tmp_path / "coco.db")
    _tool("coco_parse.py", "--annotations", os.path.join(coco_sample, "test_coco.json"),
          "--images", coco_sample, "--out", db, "--no-progress")
    res = _train_and_evaluate(db, str(tmp_path / "work"))
    print("COCO sample AP", res["coco"])
    assert res["images"] == 4 and not res["failures"]
    assert res["coco"]["AP"] >= 0.9, res["coco"]


def _mpii_release(sample_dir, path):
    """The MPII sample as a release .mat: one person per image, 1-based coordinates,
    a head box around head top and upper neck (test_mpii.json has none)."""
    with open(os.path.join(sample_dir, "test_mpii.json")) as f:
        sample = json.load(f)
    images = []
    for s in sample:
        pts = [{"x": x + 1.0, "y": y + 1.0, "id": float(j), "is_visible": 1.0}
               for j, ((x, y), v) in enumerate(zip(s["joints"], s["joints_vis"])) if v]
        (tx, ty), (nx, ny) = s["joints"][9], s["joints"][8]
        head = [min(tx, nx) - 9.0, min(ty, ny) + 1.0, max(tx, nx) + 11.0, max(ty, ny) + 1.0]
        images.append({"name": s["image"], "train": 1, "annorect": [{
            "head": head, "points": pts, "scale": s["scale"],
            "objpos": [c + 1.0 for c in s["center"]]}]})
    write_release(path, images)
    return len(images)


@pytest.mark.slow
def test_mpii_sample_is_learnt(mpii_sample, tmp_path):
    mat, db = str(tmp_path / "mpii.mat"), str(tmp_path / "mpii.db")
    n = _mpii_release(mpii_sample, mat)
    _tool("mpi_parse.py", "--annotations", mat, "--images", mpii_sample, "--out", db,
          "--no-progress")
    # 600 iterations suffice here (PCKh 84 % after 400, 98 % after 600); its people fill
    # their images, 117-210 px tall at boxsize 160 (the COCO sample needs 256). One test
    # scale: the five of the experiment lowered PCKh to 93.3 % (knees and ankles)
    res = _train_and_evaluate(db, str(tmp_path / "work"), "data.skeleton=openpose_mpi15",
                              "train.max_iters=600", "test.boxsize=160", "test.scales=[1.0]")
    print("MPII sample PCKh", res["pckh"], "AP", res["coco"]["AP"])
    assert res["images"] == n and not res["failures"]
    assert res["pckh"]["count"] == 76      # every labelled joint of the sample counted
    assert res["pckh"]["mean"] >= 90.0, res["pckh"]


def test_scale_mode_image_trains_at_the_test_size(tmp_path):
    """``aug.scale_mode: image`` reaches the dataset: an unaugmented crop shows the image
    at ``test.boxsize / height``, the Predictor's resize, whoever the main person is; the
    default ('person') scales the main person to ``target_dist * scale_ref`` px."""
    import numpy as np
    from mxpose.config import load_config
    from mxpose.data.dataset import PoseDataset
    from mxpose.data.synthetic import make_synthetic_db
    db = str(tmp_path / "s.db")
    make_synthetic_db(db, 4, progress=False)
    cfg = load_config(CONFIG, ["data.db=" + db, "test.boxsize=200"])
    ds = PoseDataset(db, "train", config=cfg, train=False, return_meta=True)
    for j in range(len(ds)):
        meta = ds.get(j)[0][-1]
        h = ds.db.image_info(meta["image_id"])["height"]
        np.testing.assert_allclose(meta["scale"], 200.0 / h, rtol=1e-9)
    cfg = load_config(CONFIG, ["data.db=" + db, "aug.scale_mode=person"])
    ds = PoseDataset(db, "train", config=cfg, train=False, return_meta=True)
    heights = []
    for j in range(len(ds)):
        img_id, people, _, main = ds.load_raw(j)
        meta = ds.get(j)[0][-1]
        heights.append(meta["scale"] * people["bbox"][main, 3])
    np.testing.assert_allclose(heights, cfg.aug.target_dist * cfg.aug.scale_ref, rtol=1e-5)
    with pytest.raises(ValueError, match="scale_mode"):
        PoseDataset(db, "train", config=load_config(CONFIG, ["aug.scale_mode=box"]))
