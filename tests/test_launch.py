"""tools/launch.py and dist_sync training on one machine (scheduler + 1 server + 2 CPU
workers on 127.0.0.1). Every job runs under a timeout and in its own process groups: a
crashed server would otherwise hang its workers."""
import os
import subprocess
import sys

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(ROOT, "tools", "launch.py")
TRAIN = os.path.join(ROOT, "tools", "train.py")
PY = sys.executable


def _launch(args, timeout=240):
    env = dict(os.environ, PYTHONWARNINGS="ignore", PORT="9")   # PORT must be cleared
    try:
        return subprocess.run([PY, LAUNCH, *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, env=env, start_new_session=True)
    except subprocess.TimeoutExpired as e:   # the launcher's own --timeout should fire first
        pytest.fail(f"launch.py did not return within {timeout} s: {e}")


def test_help_and_usage_errors():
    r = _launch(["--help"])
    assert r.returncode == 0 and "hostfile" in r.stdout
    r = _launch(["-n", "2"])
    assert r.returncode == 2 and "no command" in r.stderr
    r = _launch(["-n", "1", "--hostfile", "/nonexistent/hosts", "--", "true"])
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_failing_worker_stops_the_job():
    # the scheduler waits for workers that never connect; the failure must end everything
    code = ("import os, sys, time\n"
            "role = os.environ['DMLC_ROLE']\n"
            "assert 'PORT' not in os.environ\n"
            "if role == 'worker': sys.exit(3)\n"
            "time.sleep(120)\n")
    r = _launch(["-n", "2", "-s", "1", "--timeout", "60", "--", PY, "-c", code], timeout=90)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "exited with status 3" in r.stderr


def test_timeout_kills_the_job():
    r = _launch(["-n", "1", "-s", "1", "--timeout", "2", "--", PY, "-c",
                 "import time; time.sleep(100)"], timeout=60)
    assert r.returncode == 124 and "timeout" in r.stderr


@pytest.fixture(scope="module")
def synthetic_db(tmp_path_factory):
    from mxpose.data.synthetic import make_synthetic_db
    path = str(tmp_path_factory.mktemp("syn") / "syn.db")
    make_synthetic_db(path, 16, 0, seed=0, progress=False, max_size=160, min_size=96)
    return path


def test_dist_sync_two_workers_end_identical(synthetic_db, tmp_path):
    final = str(tmp_path / "final-{rank}.params")
    cmd = [PY, TRAIN, "-c", os.path.join(ROOT, "experiments", "synthetic_lwpose.yaml"),
           "--set", f"data.db={synthetic_db}", "--set", "aug.input_size=64",
           "--set", "model.kwargs={width_mult: 0.25, num_channels: 16, num_refinement: 1}",
           "--set", "train.optimizer=sgd", "--set", "train.lr=0.01",
           "--set", "train.warmup_iters=0",
           "--set", r"train.lr_mult={'^backbone\.0\.': 0.0}",
           "--workdir", str(tmp_path), "--num-workers", "0", "--batch-size", "2",
           "--no-progress", "--kvstore", "dist_sync", "--cpus", "1", "--max-iters", "3",
           "--save-every", "2", "--final-params", final]
    r = _launch(["-n", "2", "-s", "1", "--timeout", "180", "--", *cmd], timeout=240)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "x 2 workers" in r.stdout
    p0 = mx.nd.load(final.format(rank=0))
    p1 = mx.nd.load(final.format(rank=1))
    assert p0.keys() == p1.keys()
    for k in p0:
        if "running_" in k:
            continue        # BatchNorm moving statistics are per worker (its own data)
        np.testing.assert_array_equal(p0[k].asnumpy(), p1[k].asnumpy(), err_msg=k)
    # training changed the network, except where lr_mult is 0 (the rule reached the
    # servers, which run the update with dist_sync)
    from mxpose.model_zoo import get_model
    mx.random.seed(0)
    net = get_model("lwpose_mobilenet", skeleton="openpose_coco18", width_mult=0.25,
                    num_channels=16, num_refinement=1)
    net.initialize(ctx=[mx.cpu()])
    init = {k: v.data().asnumpy() for k, v in net._collect_params_with_prefix().items()}
    np.testing.assert_array_equal(p0["backbone.0.conv.weight"].asnumpy(),
                                  init["backbone.0.conv.weight"])
    assert not np.array_equal(p0["initial.heat.out.weight"].asnumpy(),
                              init["initial.heat.out.weight"])
    # rank 0 wrote the checkpoints (parameters + iteration; the optimizer state lives on
    # the servers)
    prefix = os.path.join(str(tmp_path), "synthetic_lwpose", "lwpose_mobilenet")
    from mxpose.runs import list_checkpoints
    assert list_checkpoints(prefix) == [2, 3]
    assert not os.path.exists(prefix + "-0002.states")
    import json
    info = json.load(open(prefix + "-0003.json"))
    assert info["iteration"] == 3 and info["num_update"] == 3 and not info["has_states"]
