"""tools/demo.py engines and video features: the onnx engine on an export with MXNet
blocked, the onnx engine on a checkpoint (exported once, then reused), --track ids
through the whole demo on frames holding known moving people, and a short run on the
shared sample video."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")
pytest.importorskip("onnx", reason="ONNX export needs onnx (onnx==1.15.0 for MXNet 1.9.1)")
pytest.importorskip("onnxruntime", reason="the onnx engine needs onnxruntime")

from mxpose import export as ex  # noqa: E402
from mxpose.skeleton import get_skeleton  # noqa: E402
from mxpose.targets import render_heatmaps, render_pafs  # noqa: E402

import reference_decode as R  # noqa: E402
from test_export import MapReader, _store_maps  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OP18 = get_skeleton("openpose_coco18")

TINY = ("name: tinylw\ndata: {skeleton: openpose_coco18}\n"
        "model: {name: lwpose_mobilenet, kwargs: {num_refinement: 1, width_mult: 0.25, "
        "num_channels: 16}}\n"
        # a random network's maps are near 0: thresholds that still let people through
        "test: {boxsize: 96, thre1: 0.0, thre2: 0.0, min_parts: 2, min_score: 0.0}\n")


def demo(*args, block_mxnet=False, timeout=300):
    """Run tools/demo.py; with ``block_mxnet`` in a process where ``import mxnet`` (and
    the model zoo and trainer) fail, and report whether MXNet got loaded."""
    if not block_mxnet:
        return subprocess.run([sys.executable, os.path.join(ROOT, "tools", "demo.py"), *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    code = ("import runpy, sys\n"
            "for m in ('mxnet', 'mxpose.model_zoo', 'mxpose.train'):\n"
            "    sys.modules[m] = None\n"
            f"sys.argv = ['demo.py'] + {list(args)!r}\n"
            "try:\n"
            "    runpy.run_path('tools/demo.py', run_name='__main__')\n"
            "except SystemExit as e:\n"
            "    rc = e.code\n"
            "print('MXNET_LOADED', sys.modules.get('mxnet') is not None)\n"
            "sys.exit(rc)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def moving_maps(tmp_path_factory):
    """An exported MapReader and a folder of 8 PNG frames whose pixels store the maps
    of two people walking towards each other (known positions per frame)."""
    d = tmp_path_factory.mktemp("moving")
    h, w = 256, 384
    base = R.synthetic_people(OP18, 2, w - 120, h, np.random.default_rng(2), jitter=1.0,
                              scale=(0.8, 0.8), max_rotate=5)
    frames = d / "frames"
    frames.mkdir()
    truth = []
    import cv2
    for f in range(8):
        people = base.copy()
        people[0, :, 0] += 20 + 8 * f            # left person walks right
        people[1, :, 0] += 100 - 8 * f           # right person walks left
        pafs = render_pafs(people, OP18.limb_index, (h // 8, w // 8), stride=8)
        heat = render_heatmaps(people, (h // 8, w // 8), stride=8, sigma=7.0)
        cv2.imwrite(str(frames / f"f{f:02d}.png"), _store_maps(pafs, heat))
        truth.append(people)
    net = MapReader(OP18.num_pafs, OP18.num_heatmaps)
    prefix = str(d / "reader")
    meta = ex.make_meta(OP18, "map_reader", num_stages=1, boxsize=h,
                        decode_params={"thre1": 0.1, "thre2": 0.05})
    ex.export_network(net, prefix, meta)
    return {"prefix": prefix, "frames": str(frames), "truth": truth}


def test_onnx_engine_on_an_export_runs_without_mxnet_and_tracks(moving_maps, tmp_path):
    js = tmp_path / "p.json"
    r = demo("--exported", moving_maps["prefix"], "--images", moving_maps["frames"],
             "--track", "--smooth", "--out", str(tmp_path / "o"), "--json", str(js),
             block_mxnet=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "MXNET_LOADED False" in r.stdout
    assert "engine onnx" in r.stdout and "network" in r.stdout and "overall" in r.stdout
    frames = json.load(open(js))["frames"]
    assert len(frames) == 8 and len(list((tmp_path / "o").glob("*.jpg"))) == 8
    # each true person keeps one id over the 8 frames, the two ids differ
    seen = {0: set(), 1: set()}
    for rec, truth in zip(frames, moving_maps["truth"]):
        people = np.array(rec["people"])
        assert len(rec["ids"]) == len(people) == 2
        for t in range(2):
            d = np.abs(people[..., :2] - truth[t][None, :, :2]).max(axis=(1, 2))
            assert d.min() < 16.0        # smoothing lags a little behind 8 px/frame
            seen[t].add(rec["ids"][int(d.argmin())])
    assert len(seen[0]) == 1 and len(seen[1]) == 1 and seen[0] != seen[1]


def test_exported_symbol_files_with_mxnet_engine(moving_maps, tmp_path):
    js = tmp_path / "p.json"
    r = demo("--exported", moving_maps["prefix"] + "-symbol.json", "--engine", "mxnet",
             "--images", moving_maps["frames"], "--out", str(tmp_path / "o"),
             "--json", str(js))
    assert r.returncode == 0, r.stderr
    assert "engine symbol" in r.stdout
    frames = json.load(open(js))["frames"]
    assert [len(f["people"]) for f in frames] == [2] * 8
    assert "ids" not in frames[0]                        # no --track, no ids


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from mxpose.model_zoo import get_model
    d = tmp_path_factory.mktemp("tiny")
    net = get_model("lwpose_mobilenet", num_heatmaps=OP18.num_heatmaps,
                    num_pafs=OP18.num_pafs, num_refinement=1, width_mult=0.25, num_channels=16)
    net.initialize(mx.init.Xavier(magnitude=3), ctx=mx.cpu())
    net(mx.nd.zeros((1, 3, 64, 64)))
    weights = d / "tiny.params"
    net.save_parameters(str(weights))
    cfg = d / "tiny.yaml"
    cfg.write_text(TINY)
    return {"weights": str(weights), "cfg": str(cfg), "dir": d}


@pytest.mark.slow
def test_onnx_engine_on_a_checkpoint_exports_once_and_matches_mxnet(tiny_weights, media,
                                                                     tmp_path):
    img = os.path.join(media, "COCO_val2014_000000000192.jpg")
    common = ["-c", tiny_weights["cfg"], "--weights", tiny_weights["weights"], "--image", img,
              "--out", str(tmp_path / "o")]
    cache = tiny_weights["dir"] / "onnx_cache" / "tiny.onnx"
    r1 = demo(*common, "--engine", "onnx", "--json", str(tmp_path / "a.json"))
    assert r1.returncode == 0, r1.stderr
    assert "exporting" in r1.stdout and cache.is_file()
    r2 = demo(*common, "--engine", "onnx", "--json", str(tmp_path / "b.json"))
    assert r2.returncode == 0 and "exporting" not in r2.stdout      # the cache is reused
    r3 = demo(*common, "--json", str(tmp_path / "c.json"))              # mxnet engine
    assert r3.returncode == 0 and "engine gluon" in r3.stdout
    a, c = (json.load(open(tmp_path / n))["frames"][0] for n in ("a.json", "c.json"))
    assert len(c["people"]) > 0                       # low thresholds: something is found
    pa, pc = np.array(a["people"]), np.array(c["people"])
    assert ex.people_difference((pa, np.array(a["scores"])), (pc, np.array(c["scores"]))) < 0.05
    # new weights in the same file: exported again
    os.utime(tiny_weights["weights"], ns=(0, os.stat(cache).st_mtime_ns + 10**9))
    r4 = demo(*common, "--engine", "onnx")
    assert r4.returncode == 0 and "exporting" in r4.stdout


def test_two_network_workers_keep_the_frame_order(moving_maps, tmp_path):
    """--net-workers 2 runs the network on two frames at once; frame f's people must be
    the people of frame f (they move 8 px per frame, so a swapped frame shows)."""
    js = tmp_path / "p.json"
    r = demo("--exported", moving_maps["prefix"], "--images", moving_maps["frames"],
             "--net-workers", "2", "--out", str(tmp_path / "o"), "--json", str(js))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 network workers" in r.stdout
    frames = json.load(open(js))["frames"]
    assert [f["name"] for f in frames] == [f"f{i:02d}.png" for i in range(8)]
    for rec, truth in zip(frames, moving_maps["truth"]):
        people = np.array(rec["people"])
        assert len(people) == 2
        for t in range(2):
            d = np.abs(people[..., :2] - truth[t][None, :, :2]).max(axis=(1, 2))
            assert d.min() < 4.0


def test_track_and_smooth_on_the_sample_video(tiny_weights, media, tmp_path):
    js = tmp_path / "v.json"
    r = demo("-c", tiny_weights["cfg"], "--weights", tiny_weights["weights"],
             "--engine", "onnx", "--onnx-cache", str(tmp_path / "cache"),
             "--video", os.path.join(media, "video.avi"), "--max-frames", "6", "--track",
             "--smooth", "--boxsize", "128", "--out", str(tmp_path / "v"), "--json", str(js))
    assert r.returncode == 0, r.stderr
    # a video runs without flipping by default, on two network workers (onnx, 2+ cores)
    assert "no test-time flip" in r.stdout and ", no flip" in r.stdout
    from mxpose._threads import usable_cores
    assert ("2 network workers" in r.stdout) == (usable_cores() >= 2)
    frames = json.load(open(js))["frames"]
    assert len(frames) == 6
    assert all(len(f["ids"]) == len(f["people"]) for f in frames)
    import cv2
    cap = cv2.VideoCapture(str(tmp_path / "v" / "demo.avi"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 6


def test_engine_user_errors(moving_maps, tiny_weights, tmp_path):
    r = demo("--exported", str(tmp_path / "nothing"), "--images", moving_maps["frames"])
    assert r.returncode == 2 and "not an export" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = demo("--exported", moving_maps["prefix"], "--weights", tiny_weights["weights"],
             "--images", moving_maps["frames"])
    assert r.returncode == 2 and "--exported" in r.stderr
    r = demo("--exported", moving_maps["prefix"], "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--db" in r.stderr
    r = demo("--exported", moving_maps["prefix"], "--images", moving_maps["frames"],
             "--track", "--patience", "-1")
    assert r.returncode == 2 and "--patience" in r.stderr
    for bad in (["--net-workers", "0"], ["--net-workers", "2", "--engine", "mxnet"]):
        r = demo("--exported", moving_maps["prefix"], "--images", moving_maps["frames"], *bad)
        assert r.returncode == 2 and "--net-workers" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_video_flips_only_when_asked(tiny_weights, media, tmp_path):
    """A config with test.flip true: images flip, a video does not unless --flip."""
    cfg = tmp_path / "flip.yaml"
    cfg.write_text(TINY.replace("test: {", "test: {flip: true, "))
    video = ["--video", os.path.join(media, "video.avi"), "--max-frames", "2"]
    common = ["-c", str(cfg), "--weights", tiny_weights["weights"], "--engine", "onnx",
              "--onnx-cache", str(tmp_path / "cache"), "--boxsize", "96"]
    r = demo(*common, *video, "--out", str(tmp_path / "a"))
    assert r.returncode == 0 and ", no flip" in r.stdout, r.stdout + r.stderr
    r = demo(*common, *video, "--flip", "--out", str(tmp_path / "b"))
    assert r.returncode == 0 and ", flip" in r.stdout and "no test-time flip" not in r.stdout
    r = demo(*common, "--image", os.path.join(media, "COCO_val2014_000000000192.jpg"),
             "--out", str(tmp_path / "c"))
    assert r.returncode == 0 and ", flip" in r.stdout, r.stdout


def test_flip_flags_reach_the_predictor(moving_maps):
    import argparse
    from mxpose.cli import add_predictor_args, predictor_options
    from mxpose.infer import Predictor
    p = argparse.ArgumentParser()
    add_predictor_args(p)
    assert "flip" not in predictor_options(p.parse_args([]))
    for argv, want in ((["--flip"], True), (["--no-flip"], False)):
        kw = predictor_options(p.parse_args(argv))
        assert kw["flip"] is want
        assert Predictor.from_exported(moving_maps["prefix"], engine="onnx", **kw).flip is want
    with pytest.raises(SystemExit):
        p.parse_args(["--flip", "--no-flip"])
