"""PoseDataset + make_loader: workers (fork, threads, spawn), seeding, sharding, bad records."""
import json
import logging
import multiprocessing as mp
import os
import pickle
import shutil
import sqlite3

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")

from mxpose.config import default_config  # noqa: E402
from mxpose.data.dataset import PoseDataset  # noqa: E402
from mxpose.data.loader import ShardSampler, make_loader, sample_seed  # noqa: E402
from mxpose.data.store import PoseDBError  # noqa: E402
from mxpose.data.synthetic import make_synthetic_db  # noqa: E402

SKEL = "openpose_coco18"


def _cfg(size=128):
    cfg = default_config()
    cfg.data.skeleton = SKEL
    cfg.aug.input_size = size          # small crops keep the tests fast
    cfg.aug.scale_ref = float(size)
    cfg.aug.min_keypoints = 3
    cfg.aug.min_area = 256.0
    cfg.targets.sigma = 4.0
    return cfg


@pytest.fixture(scope="module")
def syn_db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("syn") / "syn.db")
    make_synthetic_db(path, num_images=10, num_val=2, seed=3, progress=False)
    return path


def _ds(path, **kw):
    kw.setdefault("config", _cfg())
    return PoseDataset(path, "train", **kw)


def _collect(loader):
    return [tuple(a.asnumpy() for a in b) for b in loader]


def test_items_shapes_and_ranges(syn_db):
    ds = _ds(syn_db)
    assert len(ds) > 10              # several main people per image
    img, heat, hmask, paf, pmask = ds[0]
    assert img.shape == (3, 128, 128) and heat.shape == (19, 16, 16)
    assert paf.shape == (38, 16, 16)
    # one (1, H, W) loss mask, broadcast over the channels by the loss
    assert hmask.shape == (1, 16, 16) and pmask is hmask
    for a in (img, heat, hmask, paf, pmask):
        assert a.dtype == np.float32 and a.flags.c_contiguous
    assert -0.5 <= img.min() and img.max() < 0.5
    assert heat[:-1].max() > 0.5 and np.all((hmask >= 0) & (hmask <= 1))


def test_nothing_open_after_construction_and_picklable(syn_db):
    ds = _ds(syn_db)
    # the index was built through a connection; it must not survive into forked workers
    assert getattr(ds.db._local, "con", None) is None
    a = ds.get(3, seed=11)[0]
    assert getattr(ds.db._local, "con", None) is not None      # reopened lazily
    clone = pickle.loads(pickle.dumps(ds))                     # what spawn does
    b = clone.get(3, seed=11)[0]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_explicit_seed_is_reproducible_and_thread_rng_differs(syn_db):
    ds = _ds(syn_db)
    a, b = ds.get(0, seed=5)[0], ds.get(0, seed=5)[0]
    np.testing.assert_array_equal(a[0], b[0])
    c, d = ds[0], ds[0]            # the dataset's own generator moves on
    assert not np.array_equal(c[0], d[0])
    ds.reseed(7)
    e = ds[0]
    ds.reseed(7)
    np.testing.assert_array_equal(e[0], ds[0][0])


@pytest.mark.parametrize("workers,thread_pool", [(2, False), (2, True)])
def test_loader_workers_match_in_process_loading(syn_db, workers, thread_pool):
    """Fork workers and thread workers serve exactly what in-process loading serves:
    each sample's augmentation depends on its seed only, not on the worker."""
    ds = _ds(syn_db, max_items=12)
    ref = make_loader(ds, 4, shuffle=True, num_workers=0, seed=1)
    ref_batches = _collect(ref)
    with make_loader(ds, 4, shuffle=True, num_workers=workers, thread_pool=thread_pool,
                     seed=1) as loader:
        batches = []
        for b in loader:
            want = "cpu(0)" if thread_pool else "cpu_shared(0)"
            assert str(b[0].context) == want
            batches.append(tuple(a.asnumpy() for a in b))
    assert len(batches) == len(ref_batches) == 3
    for b, r in zip(batches, ref_batches):
        assert b[0].shape == (4, 3, 128, 128) and b[3].shape == (4, 38, 16, 16)
        for x, y in zip(b, r):
            np.testing.assert_array_equal(x, y)
    assert loader.skipped == 0


def _spawn_get(args):
    ds, idx, seed = args
    return ds.get(idx, seed)[0][1]


def test_spawned_process_opens_its_own_connection(syn_db):
    ds = _ds(syn_db)
    ds.get(0, seed=2)                                         # main process connection open
    with mp.get_context("spawn").Pool(1) as pool:
        heat = pool.map(_spawn_get, [(ds, 0, 2), (ds, 1, 3)])
    np.testing.assert_array_equal(heat[0], ds.get(0, seed=2)[0][1])
    np.testing.assert_array_equal(heat[1], ds.get(1, seed=3)[0][1])


def _image_and_pid(items):
    return items[0][0], os.getpid()


def test_workers_never_repeat_augmentation(syn_db):
    """Raw gluon DataLoader over the dataset (its own per-process generators): the same
    index served repeatedly by two forked workers gives a different crop every time."""
    from mxnet.gluon.data import DataLoader

    ds = _ds(syn_db)
    ds[0]        # the parent's generator has state that a naive fork would duplicate
    dl = DataLoader(ds, batch_size=1, sampler=[0] * 16, num_workers=2,
                    batchify_fn=_image_and_pid)
    try:
        got = list(dl)
    finally:
        dl._worker_pool.terminate()
        dl._worker_pool = None
    pids = {pid for _, pid in got}
    assert len(pids) == 2 and os.getpid() not in pids
    imgs = [img for img, _ in got]
    for i in range(len(imgs)):
        for j in range(i):
            assert not np.array_equal(imgs[i], imgs[j]), (i, j)


def test_loader_seeds_differ_per_worker_and_epoch(syn_db):
    ds = _ds(syn_db)
    ds.index = np.repeat(ds.index[:1], 8, axis=0)     # one sample, eight times per epoch
    with make_loader(ds, 1, shuffle=False, num_workers=2) as loader:
        epochs = [[b[0].asnumpy()[0] for b in loader] for _ in range(2)]
    flat = epochs[0] + epochs[1]
    assert len(flat) == 16
    for i in range(16):
        for j in range(i):
            assert not np.array_equal(flat[i], flat[j]), (i, j)


def test_shard_sampler():
    parts = [list(ShardSampler(10, shuffle=True, seed=4, rank=r, num_parts=3))
             for r in range(3)]
    assert [len(p) for p in parts] == [4, 4, 4]             # padded to ceil(10 / 3)
    idx = [[i for i, _ in p] for p in parts]
    assert sorted(set(sum(idx, []))) == list(range(10))
    for r, p in enumerate(idx):
        assert all(i % 3 == r for i in p)
    # seeds: distinct within and across ranks, and epochs reshuffle
    seeds = [s for p in parts for _, s in p]
    assert len(set(seeds)) == len(seeds)
    s = ShardSampler(10, shuffle=True, seed=4)
    e0, e1 = list(s), list(s)
    assert sorted(e0) != sorted(e1) or [i for i, _ in e0] != [i for i, _ in e1]
    assert {i for i, _ in e0} == {i for i, _ in e1} == set(range(10))
    assert e0[0][1] == sample_seed(4, 0, 0, 0)
    s.set_epoch(0)
    assert list(s) == e0
    with pytest.raises(ValueError):
        ShardSampler(10, rank=3, num_parts=3)


def test_stream_of_iterations_is_the_epochs_back_to_back(syn_db):
    """iterations=(start, stop): the trainer's stream. Iterations cross epoch boundaries
    with the epoch-wise order and seeds, and a restart at iteration i repeats the rest."""
    ds = _ds(syn_db, max_items=10)
    epochs = make_loader(ds, 5, shuffle=True, seed=2)
    ref = _collect(epochs) + _collect(epochs)                   # 2 epochs of 2 batches
    stream = make_loader(ds, 5, seed=2, iterations=(0, 4))
    assert len(stream) == 4
    got = _collect(stream)
    for a, b in zip(got, ref):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    resumed = _collect(make_loader(ds, 5, seed=2, iterations=(2, 4)))
    np.testing.assert_array_equal(resumed[0][0], got[2][0])
    # position g of the stream is position g % n of epoch g // n
    s = ShardSampler(10, seed=2)
    e0, e1 = list(s), list(s)
    assert [s.position(g) for g in range(20)] == e0 + e1


def test_loader_shards_and_last_batch(syn_db):
    ds = _ds(syn_db, max_items=10)
    assert len(make_loader(ds, 4, last_batch="keep")) == 3
    assert len(make_loader(ds, 4, last_batch="discard")) == 2
    roll = make_loader(ds, 4, last_batch="rollover")
    assert [sum(b[0].shape[0] for b in roll) for _ in range(2)] == [8, 12]
    with pytest.raises(ValueError):
        make_loader(ds, 4, last_batch="pad")
    # two ranks of a 10-sample dataset: 5 each, together every sample
    seen = []
    for rank in range(2):
        ld = make_loader(ds, 5, shuffle=False, rank=rank, num_parts=2)
        assert list(i for i, _ in ld.sampler) == list(range(rank, 10, 2))
        ld.sampler.set_epoch(0)
        (b,) = _collect(ld)
        seen.append(b[0])
    for rank in range(2):
        for k, i in enumerate(range(rank, 10, 2)):
            ref = ds.get(i, sample_seed(ds.seed, rank, 0, k))[0][0]
            np.testing.assert_array_equal(seen[rank][k], ref)


def _break(db_path, out, how):
    """Copy ``db_path`` to ``out`` and break image records in it; returns the image ids."""
    shutil.copy(db_path, out)
    con = sqlite3.connect(out)
    ids = [r[0] for r in con.execute("SELECT id FROM images WHERE split='train' ORDER BY id")]
    broken = {}
    if "garbage" in how:
        con.execute("UPDATE images SET data=? WHERE id=?", (b"\x00not a jpeg" * 50, ids[1]))
        broken["garbage"] = ids[1]
    if "truncated" in how:
        (data,) = con.execute("SELECT data FROM images WHERE id=?", (ids[3],)).fetchone()
        con.execute("UPDATE images SET data=? WHERE id=?", (data[: len(data) // 2], ids[3]))
        broken["truncated"] = ids[3]
    if "keypoints" in how:
        con.execute("UPDATE people SET keypoints=? WHERE id=(SELECT MIN(id) FROM people "
                    "WHERE image_id=?)", (b"\x00" * 12, ids[5]))
        broken["keypoints"] = ids[5]
    con.commit()
    con.close()
    return broken


def test_corrupt_records_are_skipped_by_workers(syn_db, tmp_path):
    bad_db = str(tmp_path / "bad.db")
    broken = _break(syn_db, bad_db, ("garbage", "truncated", "keypoints"))
    ds = _ds(bad_db)
    bad = np.isin(ds.index[:, 0], list(broken.values()))
    assert bad.sum() >= 3
    # serving a bad sample tries the following ones until one reads: every failed try
    # is one skip
    n = len(ds)
    expect = sum(next(k for k in range(n) if not bad[(i + k) % n]) for i in range(n))
    with make_loader(ds, 4, shuffle=True, num_workers=2, last_batch="keep") as loader:
        batches = _collect(loader)
        assert loader.skipped == expect          # counted in the main process
    served = sum(b[0].shape[0] for b in batches)
    assert served == len(ds)                      # every slot filled by a readable sample
    for img, heat, hmask, paf, pmask in batches:
        for k in range(img.shape[0]):
            assert img[k].std() > 0.01            # a real crop, not a blank
            assert heat[k, :-1].max() > 0.3       # with its people rendered


def test_corrupt_record_warning_names_the_record(syn_db, tmp_path, caplog):
    bad_db = str(tmp_path / "bad.db")
    broken = _break(syn_db, bad_db, ("garbage",))
    ds = _ds(bad_db)
    j = int(np.flatnonzero(ds.index[:, 0] == broken["garbage"])[0])
    with caplog.at_level(logging.WARNING, logger="mxpose.data.dataset"):
        item, skipped = ds.get(j, seed=0)
    assert skipped >= 1 and ds.skipped == skipped
    name = ds.db.image_info(broken["garbage"])["file_name"]
    assert any(name in r.getMessage() and "undecodable" in r.getMessage()
               for r in caplog.records)
    assert item[1][:-1].max() > 0.3


def test_all_unreadable_raises(syn_db, tmp_path):
    bad_db = str(tmp_path / "bad.db")
    shutil.copy(syn_db, bad_db)
    con = sqlite3.connect(bad_db)
    con.execute("UPDATE images SET data=?", (b"junk" * 10,))
    con.commit()
    con.close()
    ds = _ds(bad_db, max_items=5)
    with pytest.raises(PoseDBError, match="unreadable"):
        ds[0]


def test_meta_items_do_not_batch(syn_db):
    ds = _ds(syn_db, return_meta=True, max_items=4)
    with pytest.raises(TypeError, match="return_meta"):
        next(iter(make_loader(ds, 2)))


# -- tools ---------------------------------------------------------------------------------
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(name, *args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, os.path.join("tools", name), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", ["show_samples.py", "bench/bench_pipeline.py"])
def test_tool_help(name):
    r = _tool(name, "--help")
    assert r.returncode == 0 and "usage" in r.stdout


def test_show_samples_writes_pngs(syn_db, tmp_path):
    import cv2
    out = tmp_path / "png"
    r = _tool("show_samples.py", "--db", syn_db, "--out", str(out), "--num", "3",
              "--skeleton", SKEL, "--seed", "2")
    assert r.returncode == 0, r.stderr
    files = sorted(os.listdir(out))
    assert len(files) == 3 and "wrote 3 PNGs" in r.stdout
    img = cv2.imread(str(out / files[0]))
    assert img.shape[1] == 4 * 368 + 3 * 4 and img.shape[0] == 368 + 26
    r = _tool("show_samples.py", "--db", str(tmp_path / "missing.db"), "--out", str(out))
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_bench_pipeline_json(syn_db, tmp_path):
    out = tmp_path / "bench.json"
    r = _tool("bench/bench_pipeline.py", "--db", syn_db, "--repeats", "6", "--no-loader",
              "--json", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    for key in ("full_ms", "decode_ms", "warp_ms", "targets_ms", "masks_ms", "normalise_ms",
                "reduced_decode_fraction"):
        assert res["sample"][key] >= 0
    assert "full sample" in r.stdout


def test_truncated_jpeg_is_rejected_even_after_gluoncv_import(syn_db):
    # gluoncv.data.mhp flips PIL's LOAD_TRUNCATED_IMAGES on at import time
    import gluoncv.data  # noqa: F401
    from PIL import ImageFile

    from mxpose.data import PoseDB
    from mxpose.data.image import ImageDecodeError, decode_image, image_size
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    db = PoseDB(syn_db)
    i = int(db.image_ids("train")[0])
    info = db.image_info(i)
    data = db.image_bytes(i)
    for cut in (len(data) // 2, len(data) - 2):
        with pytest.raises(ImageDecodeError, match="undecodable"):
            decode_image(data[:cut])
        with pytest.raises(ImageDecodeError, match="truncated"):
            image_size(data[:cut])
        ImageFile.LOAD_TRUNCATED_IMAGES = True
    assert decode_image(data)[0].shape == (info["height"], info["width"], 3)
