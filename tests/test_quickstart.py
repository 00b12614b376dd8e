"""A shortened quickstart, exactly as a user runs it (tools/quickstart.py): the loss must
fall and the trained network's AP on the held-out synthetic val split must be clearly
above the untrained network's."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "experiments", "synthetic_lwpose.yaml")


def _ap(out_json):
    figures = json.load(open(out_json))
    key = max(figures, key=lambda k: int(k))
    return figures[key]["0"]["coco"]


@pytest.mark.slow
def test_short_quickstart_learns(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "quickstart.py"),
                        "--train-images", "600", "--val-images", "60", "--iters", "500",
                        "--demo-images", "2", "--no-progress"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "COCO keypoint AP on the synthetic val split" in r.stdout
    # the loss falls
    log = tmp_path / "work" / "synthetic_lwpose" / "lwpose_mobilenet-train.jsonl"
    losses = [json.loads(l)["loss"] for l in log.read_text().splitlines()
              if '"loss"' in l]
    assert len(losses) >= 20
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.5 * first, (first, last)
    trained = _ap(tmp_path / "quickstart_out" / "eval_val.json")
    assert len(list((tmp_path / "quickstart_out" / "demo").glob("*.jpg"))) == 2
    # the reference curves and the card of the evaluated checkpoint
    out = tmp_path / "quickstart_out"
    assert (out / "loss.png").stat().st_size > 1000
    figures = json.load(open(out / "eval_val.json"))
    card = figures[max(figures, key=int)]["0"]["card"]
    assert card["ground_truth"]["split"] == "val" and card["images"]["count"] == 60
    assert "card: lwpose_mobilenet" in r.stdout

    untrained = _untrained_ap(tmp_path, CONFIG, tmp_path / "data" / "synthetic.db")
    print("trained", trained, "untrained", untrained)
    assert trained["AP50"] >= untrained["AP50"] + 0.1, (trained, untrained)
    assert trained["AP"] >= untrained["AP"] + 0.03, (trained, untrained)


def _untrained_ap(tmp_path, config, db):
    """COCO figures of the config's network initialised as tools/train.py initialises it,
    by tools/evaluate.py on the val split of ``db``."""
    import mxnet as mx
    from mxpose.config import load_config
    from mxpose.model_zoo import get_model
    from mxpose.skeleton import get_skeleton
    cfg = load_config(config)
    skel = get_skeleton(cfg.data.skeleton)
    mx.random.seed(0)
    net = get_model(cfg.model.name, num_heatmaps=skel.num_heatmaps, num_pafs=skel.num_pafs,
                    **cfg.model.kwargs)
    net.initialize()
    net(mx.nd.zeros((1, 3, 64, 64)))
    params = str(tmp_path / "untrained.params")
    net.save_parameters(params)
    js = str(tmp_path / "untrained.json")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "evaluate.py"),
                        "--db", str(db), "--split", "val",
                        "-c", config, "--weights", params, "--json", js, "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return _ap(js)


@pytest.mark.slow
def test_short_body25_quickstart_learns(tmp_path):
    """The BODY_25 journey (quickstart --experiment body25): synthetic figures with feet,
    the slim PAF-first network, the COCO-17 AP with the foot AP beside it; the loss falls
    and the body AP beats the untrained network's."""
    config = os.path.join(ROOT, "experiments", "synthetic_body25.yaml")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "quickstart.py"),
                        "--experiment", "body25", "--train-images", "600",
                        "--val-images", "60", "--iters", "500", "--demo-images", "2",
                        "--no-progress"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "foot AP (6 foot points" in r.stdout
    log = tmp_path / "work" / "synthetic_body25" / "paffirst_vgg19-train.jsonl"
    losses = [json.loads(l)["loss"] for l in log.read_text().splitlines() if '"loss"' in l]
    assert len(losses) >= 20
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.5 * first, (first, last)
    figures = json.load(open(tmp_path / "quickstart_out" / "eval_val.json"))
    entry = figures[max(figures, key=int)]["0"]
    assert entry["foot"] is not None and 0.0 <= entry["foot"]["AP"] <= 1.0
    assert len(list((tmp_path / "quickstart_out" / "demo").glob("*.jpg"))) == 2
    trained = entry["coco"]
    untrained = _untrained_ap(tmp_path, config, tmp_path / "data" / "synthetic_feet.db")
    print("trained", trained, "foot", entry["foot"], "untrained", untrained)
    assert trained["AP50"] >= untrained["AP50"] + 0.1, (trained, untrained)
    assert trained["AP"] >= untrained["AP"] + 0.03, (trained, untrained)
