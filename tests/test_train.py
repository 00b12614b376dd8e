"""Training loop, checkpoints, resume, lr schedule and the train/plot CLIs.

Fast in-process tests use a tiny Lightweight-OpenPose (width 0.25, 16 channels) on 64 px
random samples whose content is a pure function of the stream's augmentation seed, so
two runs see identical batches. CLI tests train a few iterations on a synthetic DB.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from mxpose.config import default_config, load_config  # noqa: E402
from mxpose.train import (PoseTrainer, RunOptions, StepWarmupSchedule, TrainError,  # noqa: E402
                          checkpoint_path, checkpoint_prefix, latest_checkpoint,
                          list_checkpoints, log_path, make_contexts, parse_gpus, parameter_multipliers,
                          read_log)
from mxpose.runs import CheckpointError, RunError, load_weights  # noqa: E402

from helpers import RandomPoseData  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "tools", "train.py")
PY = sys.executable


def tiny_cfg(workdir, max_iters=4, **train):
    cfg = default_config()
    cfg.name = "tiny"
    cfg.data.skeleton = "openpose_coco18"
    cfg.data.num_workers = 0
    cfg.model.name = "lwpose_mobilenet"
    cfg.model.kwargs = {"width_mult": 0.25, "num_channels": 16, "num_refinement": 1}
    cfg.train.update(batch_size=2, optimizer="sgd", lr=1e-4, momentum=0.9, wd=5e-4,
                     lr_mult={r"\.bias$": 2.0}, lr_steps=[3], lr_factor=0.5, warmup_iters=2,
                     max_iters=max_iters, save_every=2, log_every=1, workdir=str(workdir))
    cfg.train.update(train)
    return cfg


def run(cfg, data=None, ncpu=2, **opts):
    t = PoseTrainer(cfg, RunOptions(contexts=make_contexts((), ncpu), progress=False, **opts),
                    echo=lambda m: None, dataset=data or RandomPoseData())
    t.setup()
    return t, t.run()


def trainable(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(path).items() if "running_" not in k}


# -- small pieces ---------------------------------------------------------------------------
def test_parse_gpus():
    assert parse_gpus("0-3") == [0, 1, 2, 3]
    assert parse_gpus("0,1,2,3") == [0, 1, 2, 3]
    assert parse_gpus("2") == [2]
    assert parse_gpus("") == [] and parse_gpus(None) == []
    assert parse_gpus("0-1,4") == [0, 1, 4]
    for bad in ("a", "3-1", "0,0", "1-"):
        with pytest.raises(RunError):
            parse_gpus(bad)


def test_cpu_contexts():
    assert make_contexts((), 3) == [mx.cpu(0), mx.cpu(1), mx.cpu(2)]
    assert make_contexts((), 0) == [mx.cpu()]
    if mx.context.num_gpus() == 0:
        with pytest.raises(RunError, match="GPU"):
            make_contexts([0])


def test_schedule_steps_and_warmup():
    s = StepWarmupSchedule(1.0, steps=[10, 20], factor=0.1, warmup_iters=4)
    assert [s(n) for n in (1, 2, 4)] == pytest.approx([0.25, 0.5, 1.0])
    assert s(10) == pytest.approx(1.0) and s(11) == pytest.approx(0.1)
    assert s(20) == pytest.approx(0.1) and s(21) == pytest.approx(0.01)
    # Caffe "step" policy: update k (0-based) uses gamma ** floor(k / stepsize)
    c = StepWarmupSchedule(4e-5, steps=[136106 * i for i in (1, 2, 3, 4)], factor=0.333)
    for k in (0, 136105, 136106, 300000, 599999):
        assert c(k + 1) == pytest.approx(4e-5 * 0.333 ** (k // 136106))


def test_cmu_lr_mult_rules():
    cfg = load_config(os.path.join(ROOT, "experiments", "cpm_vgg19_coco.yaml"))
    names = ["conv1_1.weight", "conv1_1.bias", "conv4_3_CPM.weight", "conv5_1_CPM_L1.bias",
             "conv5_5_CPM_L2.weight", "Mconv1_stage2_L1.weight", "Mconv7_stage6_L2.bias",
             "Mconv3_stage12_L1.weight"]
    got = parameter_multipliers(names, cfg.train.lr_mult)
    assert got == [(1, 1), (2, 0), (1, 1), (2, 0), (1, 1), (4, 1), (8, 0), (4, 1)]


def test_lwpose_config_rules_and_bn_no_decay():
    from mxpose.model_zoo import get_model
    cfg = load_config(os.path.join(ROOT, "experiments", "lwpose_mobilenet_coco.yaml"))
    net = get_model("lwpose_mobilenet", skeleton="openpose_coco18", width_mult=0.25,
                    num_channels=16)
    names = list(net._collect_params_with_prefix())
    m = dict(zip(names, parameter_multipliers(names, cfg.train.lr_mult)))
    assert m["refinement.0.heat.out.weight"] == (4, 1)
    assert m["refinement.0.heat.out.bias"] == (8, 0)
    assert m["backbone.1.bn.gamma"] == (1, 0) and m["backbone.1.bn.beta"] == (2, 0)
    assert m["refinement.0.trunk.0.trunk.1.bn.beta"] == (2, 0)
    assert m["initial.paf.out.bias"] == (2, 0) and m["backbone.0.conv.weight"] == (1, 1)


def test_checkpoint_names_and_completeness(tmp_path):
    cfg = default_config()
    cfg.name = "exp"
    cfg.train.workdir = str(tmp_path)
    prefix = checkpoint_prefix(cfg)
    assert prefix == os.path.join(str(tmp_path), "exp", "cpm_vgg19")
    assert checkpoint_path(prefix, 8600) == prefix + "-8600.params"
    assert checkpoint_path(prefix, 12, "states") == prefix + "-0012.states"
    os.makedirs(os.path.dirname(prefix))
    for it, kinds in ((2, ("params", "json")), (4, ("params",)), (6, ("json",))):
        for k in kinds:
            open(checkpoint_path(prefix, it, k), "w").close()
    open(prefix + "-0008.params.tmp123", "w").close()
    assert list_checkpoints(prefix) == [2] and latest_checkpoint(prefix) == 2
    cfg.train.prefix = "elsewhere/run"
    assert checkpoint_prefix(cfg) == "elsewhere/run"


def test_default_experiment_prefix_matches_demo_usage():
    from mxpose.train import default_experiment
    path = default_experiment()
    assert path is not None and path.endswith(os.path.join("experiments", "cpm_vgg19_mpii.yaml"))
    cfg = load_config(path)
    assert (cfg.model.name, cfg.data.db, cfg.data.skeleton) == ("cpm_vgg19", "data/mpii.db",
                                                                 "openpose_mpi15")
    assert checkpoint_path(checkpoint_prefix(cfg), 8600) == \
        os.path.join("work", "cpm_vgg19_mpii", "cpm_vgg19-8600.params")


# -- the loop -------------------------------------------------------------------------------
def test_resume_continues_exactly(tmp_path):
    """4 iterations straight == 2, then --resume for 2 more: parameters, optimizer state,
    iteration count and lr position (warm-up 2 + a step after 3 cross the resume point)."""
    a = tiny_cfg(tmp_path / "a")
    ta, sa = run(a)
    pa = checkpoint_prefix(a)
    assert sa["checkpoints"] == [2, 4] and list_checkpoints(pa) == [2, 4]

    b = tiny_cfg(tmp_path / "b", max_iters=2)
    run(b)
    pb = checkpoint_prefix(b)
    assert list_checkpoints(pb) == [2]
    info2 = json.load(open(checkpoint_path(pb, 2, "json")))
    assert info2["iteration"] == 2 and info2["num_update"] == 2 and info2["has_states"]
    assert info2["lr"] == pytest.approx(1e-4)                   # end of warm-up
    assert info2["data"]["next_sample"] == 2 * 4
    b.train.max_iters = 4
    tb, sb = run(b, resume="latest")
    assert (sb["start"], sb["iteration"]) == (2, 4)
    assert tb.trainer._optimizer.num_update == 4
    assert tb.trainer._optimizer.lr_scheduler(4) == pytest.approx(0.5e-4)   # after the step

    A, B = trainable(checkpoint_path(pa, 4)), trainable(checkpoint_path(pb, 4))
    assert A.keys() == B.keys()
    for k in A:
        np.testing.assert_array_equal(A[k], B[k], err_msg=k)
    # BN moving statistics: each device keeps its own, a checkpoint stores their mean, so
    # a resumed run restarts both devices from the mean (equal up to float rounding).
    ra, rb = mx.nd.load(checkpoint_path(pa, 4)), mx.nd.load(checkpoint_path(pb, 4))
    for k in ra:
        np.testing.assert_allclose(ra[k].asnumpy(), rb[k].asnumpy(), rtol=1e-5, atol=1e-6)
    sa_, sb_ = mx.nd.load(checkpoint_path(pa, 4, "states")), \
        mx.nd.load(checkpoint_path(pb, 4, "states"))
    meta_a = json.loads(sa_.pop("__meta__").asnumpy().tobytes())
    meta_b = json.loads(sb_.pop("__meta__").asnumpy().tobytes())
    assert meta_a["num_update"] == meta_b["num_update"] == 4
    assert meta_a["update_counts"] == meta_b["update_counts"]
    assert sa_.keys() == sb_.keys() and len(sa_) > 0          # momenta of every parameter
    for k in sa_:
        np.testing.assert_array_equal(sa_[k].asnumpy(), sb_[k].asnumpy(), err_msg=k)
    log = read_log(log_path(pb))
    assert [r["iteration"] for r in log] == [1, 2, 3, 4]
    assert [r["lr"] for r in log] == pytest.approx([0.5e-4, 1e-4, 1e-4, 0.5e-4])
    assert all(len(r["stages"]) == 2 and 0 <= r["data_wait"] <= 1 for r in log)


def test_resume_restores_optimizer_state_into_trainer(tmp_path):
    cfg = tiny_cfg(tmp_path, max_iters=2, optimizer="adam", lr=1e-3)
    run(cfg, ncpu=1)
    prefix = checkpoint_prefix(cfg)
    saved = mx.nd.load(checkpoint_path(prefix, 2, "states"))
    meta = json.loads(saved.pop("__meta__").asnumpy().tobytes())
    cfg.train.max_iters = 3
    t = PoseTrainer(cfg, RunOptions(contexts=[mx.cpu()], resume=2, progress=False),
                    echo=lambda m: None, dataset=RandomPoseData())
    t.setup()
    upd = t.trainer._updaters[0]
    assert len(upd.states) == len(meta["states"])
    for i, name in enumerate(t.names):
        if name not in meta["states"]:
            continue
        mean, var = upd.states[i]                       # Adam: (mean, variance)
        np.testing.assert_array_equal(mean.asnumpy(), saved[name + ".0"].asnumpy())
        np.testing.assert_array_equal(var.asnumpy(), saved[name + ".1"].asnumpy())
    assert t.trainer._optimizer.num_update == 2 and t.start_iter == 2


def test_non_finite_loss_skips_update_then_stops(tmp_path):
    cfg = tiny_cfg(tmp_path, max_iters=3, save_every=0, max_bad_steps=3)
    # stream samples 4..7 form iteration 2 (batch 4); make all of them NaN
    data = RandomPoseData(n=64)
    t = PoseTrainer(cfg, RunOptions(contexts=make_contexts((), 2), progress=False),
                    echo=lambda m: None, dataset=data)
    t.setup()
    stream_idx = {t.stream.position(g)[0] for g in range(4, 8)}
    data.nan_at = stream_idx
    with pytest.warns(RuntimeWarning, match="non-finite loss"):
        s = t.run()
    assert s["skipped"] == 1 and s["iteration"] == 3
    assert t.trainer._optimizer.num_update == 2       # the skipped batch made no update
    rec = read_log(log_path(checkpoint_prefix(cfg)))
    assert rec[1]["loss"] is None and rec[1]["skipped"] == 1

    cfg2 = tiny_cfg(tmp_path / "b", max_iters=10, save_every=0, max_bad_steps=2)
    with pytest.warns(RuntimeWarning), pytest.raises(TrainError, match="2 non-finite losses"):
        run(cfg2, data=RandomPoseData(n=4, nan_at=range(4)))


def test_weights_only_into_other_stage_count(tmp_path):
    src = tiny_cfg(tmp_path / "src", max_iters=1, save_every=1)
    run(src, ncpu=1)
    weights = checkpoint_path(checkpoint_prefix(src), 1)
    dst = tiny_cfg(tmp_path / "dst", max_iters=1, save_every=1)
    dst.model.kwargs["num_refinement"] = 2
    t, _ = run(dst, ncpu=1, weights=weights, weights_only=True)
    rep = t.weights_report
    assert rep["missing"] and all(n.startswith("refinement.1.") for n in rep["missing"])
    assert not rep["unused"] and not rep["mismatched"]
    assert "backbone.0.conv.weight" in rep["loaded"] and t.start_iter == 0
    # and back: a 1-refinement network from the 2-refinement checkpoint
    from mxpose.model_zoo import get_model
    net = get_model("lwpose_mobilenet", skeleton="openpose_coco18", width_mult=0.25,
                    num_channels=16, num_refinement=1)
    net.initialize()
    rep = load_weights(net, checkpoint_path(checkpoint_prefix(dst), 1))
    assert not rep["missing"] and rep["unused"]
    assert all(n.startswith("refinement.1.") for n in rep["unused"])
    # full continuation needs a matching network
    dst.train.max_iters = 3
    with pytest.raises(TrainError, match="weights-only"):
        run(dst, ncpu=1, weights=weights)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(net, str(tmp_path / "nope.params"))


def test_resume_from_a_corrupt_checkpoint_names_the_previous_good_one(tmp_path):
    cfg = tiny_cfg(tmp_path, max_iters=4)
    run(cfg, ncpu=1)
    prefix = checkpoint_prefix(cfg)
    bad = checkpoint_path(prefix, 4)
    data = open(bad, "rb").read()
    open(bad, "wb").write(data[:len(data) // 2])              # a torn copy
    cfg.train.max_iters = 6
    with pytest.raises(TrainError) as e:
        run(cfg, ncpu=1, resume="latest")
    msg = str(e.value)
    assert "corrupt" in msg and bad in msg and "Invalid NDArray file format" in msg
    assert f"previous good checkpoint is {checkpoint_path(prefix, 2)}" in msg
    assert "--resume 2" in msg and "weights-only" not in msg
    assert "Traceback" not in msg and len(msg.splitlines()) == 1
    # --weights-only from the corrupt file: one line, the cause kept
    with pytest.raises(CheckpointError, match="corrupt.*Invalid NDArray file format"):
        run(tiny_cfg(tmp_path / "b", max_iters=1), ncpu=1, weights=bad, weights_only=True)
    # and the run goes on from the good one
    t, summary = run(cfg, ncpu=1, resume=2)
    assert (summary["start"], summary["iteration"]) == (2, 6)


class RecordingData(RandomPoseData):
    """RandomPoseData that records which (index, augmentation seed) it served."""

    def __init__(self, n):
        super().__init__(n=n)
        self.served, self._seed = [], None

    def reseed(self, seed):
        self._seed = seed
        super().reseed(seed)

    def __getitem__(self, i):
        self.served.append((int(i), self._seed))
        return super().__getitem__(i)


def test_trainer_stream_gives_disjoint_shards_covering_every_sample(tmp_path, monkeypatch):
    """What PoseTrainer.run actually trains on, per distributed rank: rank r's shard is
    samples r, r + N, ...; every epoch of a rank is a permutation of its shard; the shards
    are disjoint and cover the dataset; (index, seed) depend on (seed, rank, epoch,
    position) only (a second run of a rank serves the same)."""
    from mxpose.data.loader import sample_seed
    n, parts, epochs = 11, 3, 2

    def served(rank, seed=0):
        def connect(self):
            self.distributed, self.kvstore = False, "device"
            self.rank, self.num_workers, self.is_main = rank, parts, rank == 0
        monkeypatch.setattr(PoseTrainer, "_connect", connect)
        data = RecordingData(n)
        shard = len(range(rank, n, parts))
        cfg = tiny_cfg(tmp_path / f"r{rank}s{seed}", max_iters=-(-epochs * shard // 2),
                       seed=seed)
        run(cfg, data=data, ncpu=1, save=False)
        return data.served, shard

    shards = []
    for rank in range(parts):
        got, shard = served(rank)
        idx = [i for i, _ in got]
        assert len(idx) >= epochs * shard
        for e in range(epochs):
            assert sorted(idx[e * shard:(e + 1) * shard]) == list(range(rank, n, parts))
            assert [sd for _, sd in got[e * shard:(e + 1) * shard]] == \
                [sample_seed(0, rank, e, p) for p in range(shard)]
        assert idx[:shard] != idx[shard:2 * shard] or shard < 3     # reshuffled
        shards.append(set(idx))
        assert served(rank)[0] == got                               # deterministic
    assert sorted(i for sh in shards for i in sh) == list(range(n))  # disjoint, complete
    assert served(0, seed=1)[0] != served(0)[0]                       # the seed matters


def test_use_masks_reaches_the_trainers_loss(tmp_path):
    """All-zero masks: with targets.use_masks the loss is exactly 0, without it the
    unmasked maps count."""
    class Unsupervised(RandomPoseData):
        def __getitem__(self, i):
            img, heat, hm, paf, pm = super().__getitem__(i)
            return img, heat, hm * 0, paf, pm * 0

    losses = {}
    for use in (True, False):
        cfg = tiny_cfg(tmp_path / str(use), max_iters=1)
        cfg.targets.use_masks = use
        t = PoseTrainer(cfg, RunOptions(contexts=make_contexts((), 1), progress=False,
                                        save=False), echo=lambda m: None,
                        dataset=Unsupervised())
        t.setup()
        batch = [mx.nd.array(np.stack(a)) for a in zip(*(t.dataset[i] for i in range(2)))]
        losses[use] = t.forward_backward(batch)[0]
    assert losses[True] == 0.0 and losses[False] > 0.0


def test_one_step_on_two_contexts_equals_one_context(tmp_path):
    """The same 4 samples as one batch on one device or 2 + 2 on two: the loss is
    normalised by the step's whole batch, so the update is the same. CPM-VGG19 (no
    BatchNorm, whose per-device statistics would differ) on 32 px inputs."""
    def update(ncpu):
        cfg = tiny_cfg(tmp_path / str(ncpu), max_iters=1, batch_size=4 // ncpu, lr=1e-2,
                       warmup_iters=0, lr_mult={})
        cfg.model.name, cfg.model.kwargs = "cpm_vgg19", {"num_stages": 1}
        t = PoseTrainer(cfg, RunOptions(contexts=make_contexts((), ncpu), progress=False,
                                        save=False, hybridize=False),
                        echo=lambda m: None, dataset=RandomPoseData(size=32))
        t.setup()
        params = t.net._collect_params_with_prefix()      # structural names
        before = {k: p.data(t.ctxs[0]).asnumpy() for k, p in params.items()}
        t.run()
        assert t.batch == 4
        return {k: (p.data(t.ctxs[0]).asnumpy() - before[k], np.abs(before[k]).max())
                for k, p in params.items()}

    one, two = update(1), update(2)
    assert one.keys() == two.keys()
    moved = 0
    for k, (d1, w) in one.items():
        scale = np.abs(d1).max()
        moved += scale > 0
        # float32 weights: an update is only known to a few ulps of the weight
        tol = 1e-3 * scale + 4 * float(np.spacing(np.float32(w)))
        np.testing.assert_allclose(two[k][0], d1, rtol=0, atol=tol, err_msg=k)
    assert moved > len(one) // 2


def test_amp_on_cpu_is_a_clear_error(tmp_path):
    cfg = tiny_cfg(tmp_path, amp=True)
    with pytest.raises(TrainError, match="GPU"):
        run(cfg, ncpu=1)


# -- CLIs ---------------------------------------------------------------------------------
def _cli(args, cwd=ROOT, timeout=240, **kw):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([PY, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env, **kw)


@pytest.mark.parametrize("tool", ["train.py", "launch.py", "plot_log.py",
                                  "bench/bench_train.py"])
def test_help(tool):
    r = _cli([os.path.join(ROOT, "tools", tool), "--help"])
    assert r.returncode == 0 and "usage" in r.stdout


def test_train_cli_errors_are_one_line(tmp_path):
    r = _cli([TRAIN, "-c", str(tmp_path / "missing.yaml")])
    assert r.returncode == 2 and "missing.yaml" in r.stderr and "Traceback" not in r.stderr
    r = _cli([TRAIN, "--cpus", "1", "--set", f"data.db={tmp_path}/none.db"])
    assert r.returncode == 2 and "none.db does not exist" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = _cli([TRAIN, "--set", "train.bogus=1"])
    assert r.returncode == 2 and "bogus" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def synthetic_db(tmp_path_factory):
    from mxpose.data.synthetic import make_synthetic_db
    path = str(tmp_path_factory.mktemp("syn") / "syn.db")
    make_synthetic_db(path, 16, 2, seed=0, progress=False, max_size=160, min_size=96)
    return path


def _small(db, work, *extra):
    return [TRAIN, "-c", os.path.join(ROOT, "experiments", "synthetic_lwpose.yaml"),
            "--set", f"data.db={db}", "--set", "aug.input_size=64",
            "--set", "model.kwargs={width_mult: 0.25, num_channels: 16, num_refinement: 1}",
            "--workdir", str(work), "--num-workers", "0", "--batch-size", "2",
            "--no-progress", *extra]


def test_cli_two_cpu_contexts_then_resume(synthetic_db, tmp_path):
    r = _cli(_small(synthetic_db, tmp_path, "--cpus", "2", "--max-iters", "3",
                    "--save-every", "2"))
    assert r.returncode == 0, r.stderr[-2000:]
    prefix = os.path.join(str(tmp_path), "synthetic_lwpose", "lwpose_mobilenet")
    assert list_checkpoints(prefix) == [2, 3]
    assert os.path.isfile(prefix + "-config.yaml")
    saved = load_config(prefix + "-config.yaml")
    assert saved.aug.input_size == 64 and saved.data.db == synthetic_db
    r = _cli(_small(synthetic_db, tmp_path, "--cpus", "2", "--max-iters", "5", "--resume"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "iteration 3" in r.stdout and list_checkpoints(prefix)[-1] == 5
    r = _cli(_small(synthetic_db, tmp_path, "--cpus", "2", "--resume", "4"))
    assert r.returncode == 2 and "available iterations: 2, 3, 5" in r.stderr
    out = tmp_path / "loss.png"
    r = _cli([os.path.join(ROOT, "tools", "plot_log.py"), prefix + "-train.jsonl", "--out",
              str(out)])
    assert r.returncode == 0 and out.stat().st_size > 1000, r.stderr


def test_sigkill_between_saves_resumes_cleanly(synthetic_db, tmp_path):
    prefix = os.path.join(str(tmp_path), "synthetic_lwpose", "lwpose_mobilenet")
    cmd = [PY, *_small(synthetic_db, tmp_path, "--cpus", "1", "--max-iters", "10000",
                       "--save-every", "2")]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    try:
        t0 = time.time()
        while not list_checkpoints(prefix):
            assert p.poll() is None, "training ended early"
            assert time.time() - t0 < 180, "no checkpoint within 180 s"
            time.sleep(0.05)
        time.sleep(0.3)                       # somewhere between saves, maybe inside one
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    last = latest_checkpoint(prefix)
    assert last is not None and last % 2 == 0
    r = _cli(_small(synthetic_db, tmp_path, "--cpus", "1", "--max-iters", str(last + 2),
                    "--resume"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"iteration {last}" in r.stdout
    assert latest_checkpoint(prefix) == last + 2
    info = json.load(open(checkpoint_path(prefix, last + 2, "json")))
    assert info["num_update"] == last + 2


def test_log_survives_a_torn_line(tmp_path):
    from mxpose.train import JsonLinesLog
    p = tmp_path / "x-train.jsonl"
    p.write_text('{"iteration": 1, "loss": 2.0}\n{"iteration": 2, "loss": 9.0}\n{"itera')
    log = JsonLinesLog(str(p))
    log.write({"iteration": 2, "loss": 1.0})        # resumed run repeats iteration 2
    log.write({"event": "checkpoint", "iteration": 2})
    log.write({"iteration": 3, "loss": float("nan")})
    log.close()
    recs = read_log(str(p))
    assert [(r["iteration"], r["loss"]) for r in recs] == [(1, 2.0), (2, 1.0), (3, None)]


def test_bench_train_small(tmp_path):
    out = tmp_path / "bench.json"
    r = _cli([os.path.join(ROOT, "tools", "bench", "bench_train.py"), "--models",
              "lwpose_mobilenet", "--size", "64", "--iters", "2", "--num-workers", "1",
              "--json", str(out)])
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.load(open(out))["results"]
    assert [x["mode"] for x in res] == ["train+data", "train only", "data only"]
    assert all(x["img_per_s"] > 0 for x in res)
    assert 0 <= res[0]["data_wait"] <= 1


def test_failed_checkpoint_write_is_an_os_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno
    import shutil
    from mxpose.train.checkpoint import atomic_write
    path = str(tmp_path / "a.params")
    atomic_write(path, lambda tmp: open(tmp, "w").write("good"))

    def fails(tmp):
        open(tmp, "w").write("par")            # MXNet wrote part of it, then fwrite failed
        raise mx.base.MXNetError("Check failed: FileStream.Write incomplete")
    monkeypatch.setattr(shutil, "disk_usage", lambda d: shutil._ntuple_diskusage(10, 10, 0))
    with pytest.raises(OSError) as e:
        atomic_write(path, fails)
    assert e.value.errno == errno.ENOSPC and e.value.filename == path
    assert open(path).read() == "good" and os.listdir(tmp_path) == ["a.params"]


# Runs tools/train.py with checkpoint writes failing as on a full disk from the 2nd save on.
_FULL_DISK = """
import runpy, shutil, sys
import mxnet as mx
from mxnet import gluon
calls = []
real = gluon.Block.save_parameters
def save(self, path, *a, **k):
    calls.append(path)
    if len(calls) > 1:
        shutil.disk_usage = lambda d: shutil._ntuple_diskusage(10, 10, 0)
        raise mx.base.MXNetError("Check failed: FileStream.Write incomplete")
    return real(self, path, *a, **k)
gluon.Block.save_parameters = save
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_cli_disk_full_at_a_checkpoint_is_one_line(synthetic_db, tmp_path):
    r = _cli(["-c", _FULL_DISK, *_small(synthetic_db, tmp_path, "--cpus", "1",
                                         "--max-iters", "4", "--save-every", "2")])
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and "No space left on device" in r.stderr
    assert "-0004.params" in r.stderr
    prefix = os.path.join(str(tmp_path), "synthetic_lwpose", "lwpose_mobilenet")
    assert list_checkpoints(prefix) == [2]                  # the earlier one is intact
    assert not [f for f in os.listdir(os.path.dirname(prefix)) if ".tmp" in f]


def test_bench_train_activation_forms(tmp_path):
    # --act both: the old form (model.kwargs.act='relu_op') through the same trainer
    out = tmp_path / "bench.json"
    r = _cli([os.path.join(ROOT, "tools", "bench", "bench_train.py"), "--models", "lwpose_mobilenet",
              "--size", "32", "--iters", "1", "--warmup", "0", "--act", "both", "--no-data",
              "--json", str(out)])
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.load(open(out))
    assert [(x["variant"], x["mode"]) for x in doc["results"]] == \
        [("activation", "train only"), ("relu_op", "train only")]
    assert [(x["variant"], x["baseline"]) for x in doc["ratios"]] == [("relu_op", "activation")]
    assert doc["ratios"][0]["speed_ratio"] > 0
