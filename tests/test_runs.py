"""mxpose.runs: the layer below training and inference. Imports point one way; corrupt
checkpoints and torn run configs are reported in one line naming the file."""
import os
import subprocess
import sys

import numpy as np
import pytest

from mxpose.config import ConfigError, default_config, save_config
from mxpose.runs import (CheckpointError, CorruptCheckpointError, checkpoint_path,
                         config_path, load_run_config, mxnet_cause, previous_good_checkpoint,
                         read_params)

from helpers import RandomPoseData

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _imports(code):
    """Run ``code`` in a fresh interpreter; returns its stdout lines."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.split()


def test_inference_does_not_import_training():
    code = ("import sys, mxpose.infer, mxpose.cli, mxpose.runs, mxpose.exported; "
            "print('mxpose.train' in sys.modules, 'mxnet' in sys.modules, "
            "'mxpose.export' in sys.modules)")
    assert _imports(code) == ["False", "False", "False"]


def test_inference_code_never_names_the_trainer():
    """Also the lazy imports inside functions: the demo, evaluation and export tools
    reach checkpoints through mxpose.runs only."""
    for rel in ("mxpose/infer.py", "mxpose/cli.py", "mxpose/exported.py", "mxpose/export.py",
                "tools/demo.py", "tools/evaluate.py", "tools/export.py"):
        src = open(os.path.join(ROOT, rel)).read()
        assert ".train" not in src.replace("data.train_split", ""), rel


def test_exported_reader_does_not_import_the_exporter():
    code = ("import sys, mxpose.exported; "
            "print('mxpose.export' in sys.modules, 'mxpose.infer' in sys.modules)")
    assert _imports(code) == ["False", "False"]
    import mxpose.export as ex
    import mxpose.exported as rd
    assert ex.read_meta is rd.read_meta and ex.ExportError is rd.ExportError
    # no cycle: the exporter imports inference (to verify), inference only the reader
    infer_src = open(os.path.join(ROOT, "mxpose", "infer.py")).read()
    assert "from .export import" not in infer_src and "from .exported import" in infer_src


def test_run_helpers_do_not_load_mxnet():
    code = ("import sys; from mxpose.runs import checkpoint_prefix, parse_gpus; "
            "print(parse_gpus('0-1') == [0, 1], 'mxnet' in sys.modules)")
    assert _imports(code) == ["True", "False"]


# -- corrupt parameter files ----------------------------------------------------------------
def test_mxnet_cause_keeps_the_last_line():
    err = RuntimeError('Traceback (most recent call last):\n  File "../src/x.cc", line 1\n'
                       'MXNetError: Check failed: fi->Read(data): Invalid NDArray file format')
    assert mxnet_cause(err) == "Check failed: fi->Read(data): Invalid NDArray file format"
    assert mxnet_cause(ValueError("first\nsecond")) == "first"
    assert mxnet_cause(ValueError("")) == "ValueError"


@pytest.mark.parametrize("damage", ["truncated", "garbled", "empty"])
def test_corrupt_params_file_is_named_with_its_cause(tmp_path, damage):
    mx = pytest.importorskip("mxnet")
    path = str(tmp_path / "run-0002.params")
    mx.nd.save(path, {"w": mx.nd.ones((50, 50))})
    data = open(path, "rb").read()
    data = {"truncated": data[:len(data) // 2], "garbled": b"\x13" * 400, "empty": b""}[damage]
    open(path, "wb").write(data)
    with pytest.raises(CorruptCheckpointError) as e:
        read_params(path)
    msg = str(e.value)
    assert path in msg and "corrupt" in msg and "Invalid NDArray file format" in msg
    assert "Traceback" not in msg and len(msg.splitlines()) == 1
    with pytest.raises(CheckpointError, match="does not exist"):
        read_params(str(tmp_path / "nope.params"))


def test_previous_good_checkpoint(tmp_path):
    mx = pytest.importorskip("mxnet")
    prefix = str(tmp_path / "run")
    for it in (2, 4, 6):
        mx.nd.save(checkpoint_path(prefix, it), {"w": mx.nd.ones((3,))})
        open(checkpoint_path(prefix, it, "json"), "w").write("{}")
    open(checkpoint_path(prefix, 4), "wb").write(b"broken")
    assert previous_good_checkpoint(prefix, 6) == 2
    assert previous_good_checkpoint(prefix, 2) is None


# -- torn run configs -----------------------------------------------------------------------
def test_torn_run_config_is_an_error_not_the_defaults(tmp_path):
    prefix = str(tmp_path / "run")
    assert load_run_config(prefix) is None                      # none: caller's choice
    cfg = default_config()
    cfg.name, cfg.model.name = "mine", "lwpose_mobilenet"
    save_config(cfg, config_path(prefix))
    assert load_run_config(prefix).model.name == "lwpose_mobilenet"
    text = open(config_path(prefix)).read()
    for torn in ("", text[:len(text) // 3], "model: [unclosed\n"):
        open(config_path(prefix), "w").write(torn)
        with pytest.raises(ConfigError, match="torn") as e:
            load_run_config(prefix)
        assert config_path(prefix) in str(e.value) and len(str(e.value).splitlines()) == 1


# -- the tools -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-checkpoint run of a tiny network (config saved beside it)."""
    mx = pytest.importorskip("mxnet")
    from mxpose.runs import checkpoint_prefix
    from mxpose.train import PoseTrainer, RunOptions
    tmp = tmp_path_factory.mktemp("run")
    cfg = default_config()
    cfg.name = "tiny"
    cfg.data.skeleton = "openpose_coco18"
    cfg.model.name = "lwpose_mobilenet"
    cfg.model.kwargs = {"width_mult": 0.25, "num_channels": 16, "num_refinement": 1}
    cfg.test.boxsize = 64
    cfg.train.update(batch_size=1, max_iters=2, save_every=1, workdir=str(tmp),
                     warmup_iters=0)

    PoseTrainer(cfg, RunOptions(contexts=[mx.cpu()], progress=False), echo=lambda m: None,
                dataset=RandomPoseData(n=4)).setup().run()
    prefix = checkpoint_prefix(cfg)
    import cv2
    img = str(tmp / "img.png")
    cv2.imwrite(img, np.full((48, 64, 3), 90, np.uint8))
    return prefix, img


def _tool(name, *args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", name), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_demo_on_corrupt_checkpoint_and_torn_config_is_one_line(tiny_run, tmp_path):
    prefix, img = tiny_run
    bad = checkpoint_path(prefix, 2)
    good = open(bad, "rb").read()
    saved_cfg = open(config_path(prefix)).read()
    try:
        open(bad, "wb").write(good[:len(good) // 2])
        r = _tool("demo.py", "--prefix", prefix, "--image", img, "--out", str(tmp_path / "d"))
        err = r.stderr.strip()
        assert r.returncode == 2 and len(err.splitlines()) == 1, err
        assert bad in err and "corrupt" in err and "Invalid NDArray file format" in err
        assert "previous good checkpoint is 1 (--epoch 1)" in err and "Traceback" not in err
        open(bad, "wb").write(good)
        open(config_path(prefix), "w").write(saved_cfg[:40])
        r = _tool("demo.py", "--prefix", prefix, "--image", img, "--out", str(tmp_path / "c"))
        err = r.stderr.strip()
        assert r.returncode == 2 and len(err.splitlines()) == 1, err
        assert config_path(prefix) in err and "torn" in err and "cpm_vgg19" not in err
    finally:
        open(bad, "wb").write(good)
        open(config_path(prefix), "w").write(saved_cfg)


def test_predictor_and_export_paths_name_the_corrupt_file(tiny_run):
    """evaluate and export build their Predictor through the same cli helper as demo."""
    pytest.importorskip("mxnet")
    import argparse
    from mxpose.cli import CLIError, load_predictor
    prefix, _ = tiny_run
    bad = checkpoint_path(prefix, 1)
    good = open(bad, "rb").read()
    args = argparse.Namespace(config=None, prefix=prefix, workdir=None, epoch=1, weights=None,
                              gpus="", scales=None, cmu_scales=False, flip=False, boxsize=None)
    try:
        open(bad, "wb").write(b"\x00" * 64)
        with pytest.raises(CLIError, match="corrupt") as e:
            load_predictor(args)
        assert bad in str(e.value) and "Traceback" not in str(e.value)
    finally:
        open(bad, "wb").write(good)
    assert load_predictor(args)[2] == 1
