"""Predictor tests: the grid mapping round-trips known people to original image
coordinates, flip averaging makes a symmetric image's output symmetric, repeated scales
average to the same maps."""
import numpy as np
import pytest

from mxpose.infer import Predictor
from mxpose.skeleton import get_skeleton
from mxpose.targets import render_heatmaps, render_pafs

import reference_decode as R

OP18 = get_skeleton("openpose_coco18")
MPI15 = get_skeleton("openpose_mpi15")


# ---------------------------------------------------------------------------------------
# grid mapping: a 'numpy' engine that returns ground-truth maps of known people
# ---------------------------------------------------------------------------------------
class GroundTruthEngine:
    """Stands in for a network: renders the maps of ``people`` (original image pixels)
    on the stride grid of the padded network input of each scale, as a perfect network
    would. The resize factors are recomputed here from the documented rule
    (``s = scale * boxsize / h``, sizes rounded), independently of the Predictor."""

    def __init__(self, people, skeleton, image_hw, scales, flip=False, boxsize=368,
                 stride=8):
        self.people, self.skel, self.flip = people, skeleton, flip
        self.hw, self.scales = image_hw, scales
        self.boxsize, self.stride = boxsize, stride
        self.calls = 0

    def _render(self, kp, H, W):
        return (render_pafs(kp, self.skel.limb_index, (H, W), stride=self.stride),
                render_heatmaps(kp, (H, W), stride=self.stride, sigma=7.0))

    def __call__(self, batch):
        B, C, ph, pw = batch.shape
        # the Predictor runs its scales in order, one forward each
        scale = self.scales[self.calls % len(self.scales)]
        self.calls += 1
        h, w = self.hw
        s = scale * self.boxsize / h
        rh, rw = max(1, int(round(h * s))), max(1, int(round(w * s)))
        st = self.stride
        assert (C, ph, pw) == (3, -(-rh // st) * st, -(-rw // st) * st)
        assert B == (2 if self.flip else 1)
        kp = self.people.copy()
        # pixel-centre convention: original centre p -> (p + 0.5) * s - 0.5
        kp[..., 0] = (kp[..., 0] + 0.5) * (rw / w) - 0.5
        kp[..., 1] = (kp[..., 1] + 0.5) * (rh / h) - 0.5
        outs = [self._render(kp, ph // st, pw // st)]
        if B == 2:
            # the mirrored input (mirrored about the padded width)
            outs.append(self._render(self.skel.flip_keypoints(kp, pw), ph // st, pw // st))
        return np.stack([o[0] for o in outs]), np.stack([o[1] for o in outs])


def _worst_error(people, out):
    """Largest keypoint error (px) of each true person against its best decoded match;
    also asserts one decoded person per true person with every keypoint found."""
    assert len(out) == len(people)
    worst = 0.0
    used = set()
    for p in people:
        d = np.abs(out[:, :, :2] - p[None, :, :2]).max(axis=(1, 2))
        j = int(np.argmin(d))
        assert j not in used
        used.add(j)
        assert (out[j, :, 2] > 0).all(), "a keypoint was not found"
        worst = max(worst, float(d[j]))
    return worst


@pytest.mark.parametrize("hw", [(480, 640), (640, 480), (300, 500), (360, 720),
                                (720, 1280)], ids=lambda s: "%dx%d" % s)
@pytest.mark.parametrize("scales, tol", [((0.5,), 0.25), ((1.0,), 0.25), ((1.5,), 0.25),
                                         ((1.0, 0.5, 1.5), 1.0)],
                         ids=["s0.5", "s1", "s1.5", "multi"])
@pytest.mark.parametrize("flip", [False, True], ids=["noflip", "flip"])
def test_grid_mapping_round_trip(hw, scales, tol, flip):
    """People rendered on each scale's grid come back in original image pixels.

    Measured: <= 0.06 px for one scale, <= 0.6 px for several (the bilinear resampling of
    coarser/finer maps onto the base grid blurs the peaks slightly, without bias).
    """
    h, w = hw
    rng = np.random.default_rng(h * 7 + w)
    people = R.synthetic_people(OP18, 2, w, h, rng, jitter=2.0, scale=(0.8, 1.0),
                                max_rotate=10)
    eng = GroundTruthEngine(people, OP18, hw, scales, flip)
    pred = Predictor(eng, OP18, scales=scales, flip=flip, engine="numpy")
    out, scores = pred(np.zeros((h, w, 3), np.uint8))
    assert eng.calls == len(scales)
    assert scores.shape == (2,) and out.shape == (2, 18, 3)
    assert _worst_error(people, out) < tol


def test_grid_mapping_other_skeleton_and_boxsize():
    h, w = 400, 300
    people = R.synthetic_people(MPI15, 2, w, h, np.random.default_rng(3), jitter=2.0,
                                scale=(0.8, 1.0), max_rotate=10)
    eng = GroundTruthEngine(people, MPI15, (h, w), (1.0,), flip=True, boxsize=256)
    pred = Predictor(eng, MPI15, flip=True, boxsize=256, engine="numpy")
    out, _ = pred(np.zeros((h, w, 3), np.uint8))
    assert _worst_error(people, out) < 0.25


# ---------------------------------------------------------------------------------------
# real (random-init) networks
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_net():
    mx = pytest.importorskip("mxnet")
    from mxpose.model_zoo import get_model
    mx.random.seed(7)
    net = get_model("lwpose_mobilenet", num_heatmaps=OP18.num_heatmaps,
                    num_pafs=OP18.num_pafs, width_mult=0.25, num_channels=32)
    net.initialize(mx.init.Xavier(magnitude=2))
    # make the output layers as strong as the rest: near-zero outputs would make the
    # symmetry checks below weak
    for name, p in net.collect_params().items():
        if name.endswith("weight") and p.shape[0] in (OP18.num_heatmaps, OP18.num_pafs):
            p.set_data(p.data() * 30)
    net.hybridize(static_alloc=True)
    return net


def _mirror_name(n):
    if n.startswith("l_"):
        return "r_" + n[2:]
    if n.startswith("r_"):
        return "l_" + n[2:]
    return n


def _mirror_maps(skel, heat, paf):
    """Maps of the mirrored scene, built from keypoint NAMES (independently of
    Skeleton.heatmap_flip_index / paf_flip_index): left/right heatmap channels swapped,
    PAF channels moved to the mirrored limb, x negated, and both components negated when
    the mirrored limb is listed the other way round."""
    names = list(skel.keypoints)
    hperm = [names.index(_mirror_name(n)) for n in names] + [len(names)]
    mh = heat[hperm][:, :, ::-1]
    limbs = [(names[a], names[b]) for a, b in np.asarray(skel.limb_index)]
    mp = np.empty_like(paf)
    for l, (a, b) in enumerate(limbs):
        ma, mb = _mirror_name(a), _mirror_name(b)
        if (ma, mb) in limbs:
            m, s = limbs.index((ma, mb)), 1.0
        else:
            m, s = limbs.index((mb, ma)), -1.0
        mp[2 * m] = -s * paf[2 * l][:, ::-1]
        mp[2 * m + 1] = s * paf[2 * l + 1][:, ::-1]
    return mh, mp


def _symmetric_image(h, w, seed=0):
    half = np.random.default_rng(seed).integers(0, 256, (h, w // 2, 3), dtype=np.uint8)
    img = np.concatenate([half, half[:, ::-1]], axis=1)
    assert np.array_equal(img, img[:, ::-1])
    return img


def _rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.mark.parametrize("scales", [(1.0,), (1.0, 0.75)], ids=["s1", "s1+0.75"])
def test_flip_averaging_gives_symmetric_maps(small_net, scales):
    """A mirror-symmetric image: with flip=True the averaged heatmaps equal their mirror
    with left/right swapped and the PAFs equal theirs with x negated. The network is
    random: the symmetry comes from the averaging (without flip it is absent)."""
    # width 160 at height = boxsize: no resize, no padding, so the input stays symmetric
    # (0.75 gives 96 x 120, again a multiple of the stride)
    img = _symmetric_image(128, 160)
    flipped = Predictor(small_net, OP18, scales=scales, flip=True, boxsize=128)
    heat, paf, _ = flipped.maps(img)
    mh, mp = _mirror_maps(OP18, heat, paf)
    assert _rel(mh, heat) < 1e-5 and _rel(mp, paf) < 1e-5
    plain = Predictor(small_net, OP18, scales=scales, flip=False, boxsize=128)
    heat0, paf0, _ = plain.maps(img)
    mh0, mp0 = _mirror_maps(OP18, heat0, paf0)
    # the control: a random network's own output is far from symmetric
    assert _rel(mh0, heat0) > 1e-2 and _rel(mp0, paf0) > 1e-2


@pytest.mark.parametrize("hw", [(240, 320), (200, 300)], ids=["no-pad", "padded"])
def test_flip_with_a_perfect_engine_equals_no_flip(hw):
    """A perfect network's maps of the mirrored input, un-mirrored (channels swapped, PAF
    x negated, about the padded width), are the maps of the image itself: flip averaging
    must then return exactly what the single pass returns."""
    h, w = hw
    people = R.synthetic_people(OP18, 3, w, h, np.random.default_rng(5), jitter=2.0,
                                scale=(0.5, 0.8), max_rotate=20)
    img = np.full((h, w, 3), 100, np.uint8)
    maps = {}
    for flip in (False, True):
        engine = GroundTruthEngine(people, OP18, (h, w), (1.0,), flip=flip, boxsize=h)
        maps[flip] = Predictor(engine, OP18, flip=flip, boxsize=h, engine="numpy").maps(img)
    (h0, p0, b0), (h1, p1, b1) = maps[False], maps[True]
    assert b0 == b1 and h0.max() > 0.5 and np.abs(p0).max() > 0.5
    np.testing.assert_allclose(h1, h0, rtol=0, atol=1e-5)
    np.testing.assert_allclose(p1, p0, rtol=0, atol=1e-5)


def test_test_config_reaches_the_decoder(tmp_path, monkeypatch, small_net):
    """Predictor.from_params: every non-default ``test.*`` value arrives where it is used
    (the decoder's arguments, the scales, flip and boxsize of the forward passes)."""
    import mxpose.decode
    from mxpose.config import default_config
    params = str(tmp_path / "net.params")
    small_net.save_parameters(params)
    cfg = default_config()
    cfg.data.skeleton = "openpose_coco18"
    cfg.model.name = "lwpose_mobilenet"
    cfg.model.kwargs = {"width_mult": 0.25, "num_channels": 32}
    cfg.test.update(scales=[0.5, 1.0], flip=True, boxsize=96, thre1=0.23, thre2=0.07,
                    min_parts=2, min_score=0.31, sigma=2.5, refine="quadratic",
                    sampling="nearest", margin=12)
    seen = {}
    real = mxpose.decode.decode

    def spy(heat, paf, skeleton, **kw):
        seen.update(kw, shape=heat.shape)
        return real(heat, paf, skeleton, **kw)

    monkeypatch.setattr(mxpose.decode, "decode", spy)
    pred = Predictor.from_params(params, cfg)
    inputs = []
    fwd = pred._forward
    pred._forward = lambda x: (inputs.append(x.shape), fwd(x))[1]
    pred(np.full((96, 128, 3), 90, np.uint8))
    for key in ("thre1", "thre2", "min_parts", "min_score", "sigma", "refine", "sampling"):
        assert seen[key] == cfg.test[key], key
    # two scales of a 96-px high image at boxsize 96, each with its mirrored copy, inside
    # a margin of 12 px rounded up to 16 (two cells) on every side
    assert inputs == [(2, 3, 80, 96), (2, 3, 128, 160)]
    assert seen["shape"][1:] == (6, 8)          # decoded on the first scale's grid


def test_mirror_maps_helper_is_an_involution():
    rng = np.random.default_rng(1)
    for skel in (OP18, MPI15):
        heat = rng.random((skel.num_heatmaps, 5, 7), dtype=np.float32)
        paf = rng.uniform(-1, 1, (skel.num_pafs, 5, 7)).astype(np.float32)
        mh, mp = _mirror_maps(skel, *_mirror_maps(skel, heat, paf))
        np.testing.assert_array_equal(mh, heat)
        np.testing.assert_array_equal(mp, paf)


def test_repeated_scale_gives_identical_maps(small_net):
    img = np.random.default_rng(2).integers(0, 256, (150, 210, 3), dtype=np.uint8)
    one = Predictor(small_net, OP18, scales=(1.0,), boxsize=128)
    two = Predictor(small_net, OP18, scales=(1.0, 1.0), boxsize=128)
    h1, p1, b1 = one.maps(img)
    h2, p2, b2 = two.maps(img)
    assert b1 == b2
    np.testing.assert_allclose(h2, h1, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(p2, p1, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("flip", [False, True], ids=["noflip", "flip"])
def test_batch_of_images_equals_one_by_one(small_net, flip):
    rng = np.random.default_rng(5)
    imgs = [rng.integers(0, 256, (120, 170, 3), dtype=np.uint8) for _ in range(3)]
    pred = Predictor(small_net, OP18, scales=(1.0, 0.5), flip=flip, boxsize=128)
    batched = pred.maps_batch(imgs)
    assert len(batched) == 3
    for img, (h, p, base) in zip(imgs, batched):
        h1, p1, base1 = pred.maps(img)
        assert base == base1
        # batched convolutions may sum in another order: float32 rounding only
        np.testing.assert_allclose(h, h1, rtol=1e-4, atol=1e-4 * np.abs(h1).max())
        np.testing.assert_allclose(p, p1, rtol=1e-4, atol=1e-4 * np.abs(p1).max())
    assert len(pred.predict_batch(imgs)) == 3 and pred.maps_batch([]) == []
    with pytest.raises(ValueError, match="one size"):
        pred.maps_batch([imgs[0], imgs[1][:100]])


@pytest.mark.parametrize("scales", [(1.0,), (1.0, 0.5)], ids=["s1", "multi"])
def test_margin_is_grey_and_cut_off(scales):
    """With ``margin`` the network sees the image inside a grey border of that many pixels
    (rounded up to the stride) on every side, and the border's maps are cut off before
    decoding: people come back where they are, and maps of the border (here garbage
    peaks) never reach the decoder."""
    h, w = 300, 400
    people = R.synthetic_people(OP18, 2, w, h, np.random.default_rng(5), jitter=2.0,
                                scale=(0.8, 1.0), max_rotate=10)
    eng = GroundTruthEngine(people, OP18, (h, w), scales, flip=True)
    m = 24                                            # 20 rounded up to 3 cells

    def fwd(batch):
        assert (batch[..., :m, :] == 0).all() and (batch[..., -m:, :] == 0).all()
        assert (batch[..., :m] == 0).all() and (batch[..., -m:] == 0).all()
        assert (batch[:, :, m:-m, m:-m] != 0).any()   # the image itself is not grey
        paf, heat = eng(np.ascontiguousarray(batch[:, :, m:-m, m:-m]))
        c = m // 8
        wide = [(0, 0), (0, 0), (c, c), (c, c)]
        return np.pad(paf, wide, constant_values=0.7), np.pad(heat, wide, constant_values=0.9)

    pred = Predictor(fwd, OP18, scales=scales, flip=True, margin=20, engine="numpy")
    assert pred.margin == m
    out, _ = pred(np.full((h, w, 3), 30, np.uint8))
    assert _worst_error(people, out) < (0.25 if len(scales) == 1 else 1.0)
    with pytest.raises(ValueError, match="margin"):
        Predictor(fwd, OP18, margin=-8, engine="numpy")


def test_batch_round_trip_with_ground_truth_maps():
    """predict_batch keeps each image's maps apart: a batch engine rendering each image's
    own people (identified by the image's fill value) gets each back."""
    h, w = 240, 320
    rng = np.random.default_rng(8)
    sets = [R.synthetic_people(OP18, n, w, h, rng, jitter=2.0, scale=(0.8, 1.0),
                               max_rotate=10) for n in (1, 2, 3)]
    engines = [GroundTruthEngine(p, OP18, (h, w), (1.0,), flip=True) for p in sets]

    def fwd(batch):
        n = len(sets)
        assert batch.shape[0] == 2 * n
        outs = []
        for i in range(n):
            # image i is filled with grey level 10 * i: find whose it is
            k = int(round(batch[i, 0, 0, 0] * 256 + 128)) // 10
            outs.append(engines[k](np.stack([batch[i], batch[n + i]])))
        return (np.concatenate([o[0][:1] for o in outs] + [o[0][1:] for o in outs]),
                np.concatenate([o[1][:1] for o in outs] + [o[1][1:] for o in outs]))

    pred = Predictor(fwd, OP18, flip=True, engine="numpy")
    imgs = [np.full((h, w, 3), 10 * i, np.uint8) for i in range(len(sets))]
    for people, (out, scores) in zip(sets, pred.predict_batch(imgs)):
        assert _worst_error(people, out) < 0.25


def _zero_forward(seen):
    """A NumPy forward giving all-zero maps; it appends each batch's shape to ``seen``."""
    def fwd(batch):
        seen.append(batch.shape)
        B, _, h, w = batch.shape
        return (np.zeros((B, OP18.num_pafs, h // 8, w // 8), np.float32),
                np.zeros((B, OP18.num_heatmaps, h // 8, w // 8), np.float32))
    return fwd


def test_input_batch_resizes_and_pads():
    seen = []
    fwd = _zero_forward(seen)
    pred = Predictor(fwd, OP18, scales=(1.0, 0.5), boxsize=368, engine="numpy")
    img = np.full((300, 451, 3), 200, np.uint8)
    x, (sx, sy) = pred.input_batch(img, 1.0)
    # 368 x round(451 * 368 / 300) = 368 x 553, padded to 368 x 560
    assert x.shape == (1, 3, 368, 560) and x.dtype == np.float32
    assert sx == pytest.approx(553 / 451) and sy == pytest.approx(368 / 300)
    np.testing.assert_allclose(x[..., :553], (200 - 128) / 256)
    np.testing.assert_array_equal(x[..., 553:], 0.0)     # grey 128 pad -> 0
    heat, paf, base = pred.maps(img)
    assert seen == [(1, 3, 368, 560), (1, 3, 184, 280)]
    assert heat.shape == (19, 46, 70) and paf.shape == (38, 46, 70)
    assert base == (sx, sy)
    people, scores = pred(img)
    assert people.shape == (0, 18, 3) and scores.shape == (0,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="scales"):
        Predictor(lambda b: None, OP18, scales=(), engine="numpy")
    with pytest.raises(ValueError, match="engine"):
        Predictor(lambda b: None, OP18, engine="tensorrt")
    pred = Predictor(lambda b: None, OP18, engine="numpy")
    with pytest.raises(ValueError, match="BGR"):
        pred.maps(np.zeros((10, 10), np.uint8))


@pytest.mark.parametrize("hw", [(8, 4000), (4000, 8)])
def test_very_wide_or_tall_image_has_a_bounded_canvas(hw):
    seen = []
    fwd = _zero_forward(seen)
    img = np.full(hw + (3,), 90, np.uint8)
    # unbounded, the 8 px side would be scaled to 368: a 184000 x 368 input (270 MB)
    pred = Predictor(fwd, OP18, scales=(1.0, 2.0), boxsize=368, engine="numpy")
    people, _ = pred(img)
    assert people.shape == (0, 18, 3)
    for _, _, h, w in seen:
        assert max(h, w) <= 4096 + 8 and h * w <= 4104 * 16
    small = Predictor(fwd, OP18, boxsize=368, max_side=1000, engine="numpy")
    x, (sx, sy) = small.input_batch(img)
    assert max(x.shape[2:]) <= 1000 + 8
    # an ordinary photo is not affected by the default bound
    x, _ = pred.input_batch(np.zeros((480, 640, 3), np.uint8), 2.0)
    assert x.shape[2] == 736


def test_boxsize_must_be_positive():
    with pytest.raises(ValueError, match="boxsize"):
        Predictor(lambda b: None, OP18, boxsize=0, engine="numpy")

# ---------------------------------------------------------------------------------------
# tools/bench/bench_infer.py
# ---------------------------------------------------------------------------------------
def _bench(*args):
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return subprocess.run([sys.executable, os.path.join("tools", "bench", "bench_infer.py"),
                           *args],
                          capture_output=True, text=True, cwd=root, timeout=300)


def test_bench_infer_help_and_tiny_run(tmp_path, media):
    import json
    import os
    out = _bench("--help")
    assert out.returncode == 0 and "--batches" in out.stdout and "--json" in out.stdout
    path = str(tmp_path / "bench.json")
    out = _bench("--models", "lwpose_mobilenet", "--batches", "1,2", "--size", "64",
                 "--iters", "1", "--warmup", "0", "--frames", "1", "--engines", "mxnet",
                 "--image", os.path.join(media, "COCO_val2014_000000000192.jpg"),
                 "--json", path, "--no-progress")
    assert out.returncode == 0, out.stderr
    doc = json.load(open(path))
    assert [(r["model"], r["batch"]) for r in doc["forward"]] == [("lwpose_mobilenet", 1),
                                                                 ("lwpose_mobilenet", 2)]
    assert doc["forward"][0]["ms_per_batch"] > 0 and len(doc["end_to_end"]) == 1
    bad = _bench("--models", "resnet", "--frames", "0")
    assert bad.returncode == 2 and "unknown model" in bad.stderr


def test_bench_infer_activation_forms_fusion_and_reference(tmp_path):
    import json
    path = str(tmp_path / "bench.json")
    out = _bench("--models", "lwpose_mobilenet,cpm_vgg19", "--batches", "1", "--size", "32",
                 "--iters", "1", "--warmup", "0", "--frames", "0", "--engines", "mxnet",
                 "--act", "both", "--mkldnn", "--reference", "--json", path,
                 "--no-progress")
    assert out.returncode == 0, out.stderr
    doc = json.load(open(path))
    rows = [(r["model"], r["variant"]) for r in doc["forward"]]
    lw = ["activation", "relu_op", "activation+mkldnn"]
    assert rows == [("lwpose_mobilenet", v) for v in lw] + \
        [("cpm_vgg19", v) for v in lw + ["plain_gluon"]]
    # every variant is compared with the default form of its model, in the same run
    assert [(r["model"], r["variant"], r["baseline"]) for r in doc["ratios"]] == \
        [(m, v, "activation") for m, v in rows if v != "activation"]
    assert all(r["ratio_median"] > 0 for r in doc["ratios"])
