"""Tracking and smoothing: ids kept on a synthetic moving-people sequence with known
identities (walking, crossing, leaving and re-entering, missed detections), and the
one-euro filter against a scalar twin written from the paper's formulas."""
import math

import numpy as np
import pytest

from mxpose.skeleton import get_skeleton
from mxpose.track import OneEuroFilter, PoseSmoother, Tracker, pose_oks
from reference_decode import synthetic_people

OP18 = get_skeleton("openpose_coco18")
W, H, FPS = 640, 480, 50.0


def _template(rng, scale):
    """One person's pose (K, 2) centred on 0 (the decoder tests' stick figure)."""
    p = synthetic_people(OP18, 1, 200, 400, rng, jitter=2.0, scale=(scale, scale),
                         max_rotate=5)[0, :, :2]
    return p - p.mean(0)


def moving_people(num_frames=200, seed=0):
    """Detections of a synthetic sequence and the true identity of each.

    Five people: 1 walks right and 2 walks left at the same height, crossing mid-way
    (2 is hidden behind 1 for 4 frames there); 3 walks out at the right edge, is out of
    the picture for 4 frames, and comes back; 4 stands and sways; 5 walks in from the
    left after frame 60. Every detection has 1.5 px keypoint noise and loses 10 % of its
    keypoints; 6 % of detections are missed altogether.

    Returns
    -------
    list of (people (N, K, 3), truth (N,)) per frame.
    """
    rng = np.random.default_rng(seed)
    K = OP18.num_keypoints
    shapes = {1: _template(rng, 0.8), 2: _template(rng, 0.95), 3: _template(rng, 0.7),
              4: _template(rng, 0.75), 5: _template(rng, 0.85)}
    frames = []
    for f in range(num_frames):
        centres = {1: (60 + 3.0 * f, 250), 2: (620 - 3.0 * f, 262),
                   4: (90 + 6 * math.sin(f / 9), 120 + 3 * math.sin(f / 5))}
        # 3 walks right at 4 px/frame from 520, turns around at frame 37 (x = 668)
        x3 = 520 + 4.0 * f if f <= 37 else 668 - 4.0 * (f - 37)
        centres[3] = (x3, 110)
        if f >= 60:
            centres[5] = (-40 + 2.5 * (f - 60), 380)
        people, truth = [], []
        for pid, (cx, cy) in centres.items():
            if pid == 2 and 95 <= f < 99:       # behind person 1 (they cross near f = 93)
                continue
            if rng.random() < 0.06:             # a missed detection
                continue
            pts = shapes[pid] + (cx, cy) + rng.normal(0, 1.5, (K, 2))
            found = ((pts[:, 0] >= 0) & (pts[:, 0] < W) & (pts[:, 1] >= 0) & (pts[:, 1] < H)
                     & (rng.random(K) > 0.1))
            if found.sum() < 3:                 # the decoder drops people this small
                continue
            p = np.zeros((K, 3), np.float32)
            p[:, :2] = pts
            p[:, 2] = found * rng.uniform(0.3, 1.0, K)
            p[~found, :2] = 0
            people.append(p)
            truth.append(pid)
        order = rng.permutation(len(people))    # the decoder's order means nothing
        frames.append((np.array(people, np.float32).reshape(-1, K, 3)[order],
                       np.array(truth, np.int64)[order]))
    return frames


def count_id_switches(frames, tracker):
    """(switches, person-frames): a switch is a true person getting another id than
    the one it had when last seen."""
    last = {}
    switches = n = 0
    for people, truth in frames:
        ids = tracker.update(people)
        assert len(set(ids.tolist())) == len(ids)          # unique within a frame
        for pid, tid in zip(truth.tolist(), ids.tolist()):
            n += 1
            if pid in last and last[pid] != tid:
                switches += 1
            last[pid] = tid
    return switches, n


def test_tracker_keeps_ids_on_moving_crossing_and_reentering_people():
    frames = moving_people()
    # the sequence holds the hard cases: 3 out of the picture for 5 frames in a row,
    # 2 hidden for 4 frames right after crossing 1
    gone = [f for f, (_, truth) in enumerate(frames) if 3 not in truth.tolist()]
    assert set(range(35, 40)) <= set(gone) and 34 not in gone and 40 not in gone
    assert not any(2 in frames[f][1].tolist() for f in range(95, 99))
    switches, n = count_id_switches(frames, Tracker(OP18))
    assert n > 700
    assert switches <= n / 100, f"{switches} id switches in {n} person-frames"


def test_id_switch_count_can_fail():
    """The same sequence with no patience and no motion prediction loses ids: the
    counter above sees switches when there are some."""
    frames = moving_people()
    switches, n = count_id_switches(frames, Tracker(OP18, patience=0))
    assert switches > n / 100
    switches, n = count_id_switches(frames, Tracker(OP18, min_oks=0.95))
    assert switches > n / 100


def test_tracker_new_ids_retirement_and_config_reaching_matching():
    K = OP18.num_keypoints
    a = np.zeros((1, K, 3), np.float32)
    a[0, :, :2] = _template(np.random.default_rng(1), 0.8) + (200, 200)
    a[0, :, 2] = 1
    t = Tracker(OP18, patience=2)
    assert t.update(a).tolist() == [1]
    assert t.update(np.zeros((0, K, 3))).tolist() == []
    assert t.update(np.zeros((0, K, 3))).tolist() == []
    assert t.update(a).tolist() == [1]                  # 2 missed frames: within patience
    for _ in range(3):
        t.update(np.zeros((0, K, 3)))
    assert t.update(a).tolist() == [2]                  # 3 missed: retired, new id
    far = a.copy()
    far[..., 0] += 300
    assert t.update(np.concatenate([far, a])).tolist() == [3, 2]
    t.reset()                                           # a new shot: ids are not reused
    assert t.update(a).tolist() == [4]
    # min_oks reaches the matching: a 20 px shift is below a strict threshold only
    shifted = a.copy()
    shifted[..., 0] += 20
    loose, strict = Tracker(OP18, min_oks=0.05), Tracker(OP18, min_oks=0.9)
    for tr in (loose, strict):
        tr.update(a)
    assert loose.update(shifted).tolist() == [1] and strict.update(shifted).tolist() == [2]
    with pytest.raises(ValueError):
        Tracker(OP18, min_oks=1.5)


def test_pose_oks_matches_the_coco_formula():
    rng = np.random.default_rng(3)
    K = OP18.num_keypoints
    a = rng.uniform(0, 100, (2, K, 3)).astype(np.float32)
    b = rng.uniform(0, 100, (3, K, 3)).astype(np.float32)
    a[0, :4, 2] = 0
    b[1, 5:, 2] = 0
    sig = OP18.sigma_array
    got = pose_oks(a, b, sig)
    for i in range(2):
        for j in range(3):
            both = (a[i, :, 2] > 0) & (b[j, :, 2] > 0)

            def area(p):
                q = p[p[:, 2] > 0]
                return (q[:, 0].max() - q[:, 0].min()) * (q[:, 1].max() - q[:, 1].min())
            s2 = max((area(a[i]) + area(b[j])) / 2, 100.0)
            e = [math.exp(-((a[i, k, 0] - b[j, k, 0]) ** 2 + (a[i, k, 1] - b[j, k, 1]) ** 2)
                          / (2 * s2 * (2 * sig[k]) ** 2)) for k in range(K) if both[k]]
            assert got[i, j] == pytest.approx(sum(e) / len(e), rel=1e-5)
    assert pose_oks(a[:1], a[:1], sig)[0, 0] == pytest.approx(1.0)


# -- one-euro filter ---------------------------------------------------------------------------
def one_euro_twin(xs, ts, min_cutoff, beta, d_cutoff, scale=1.0):
    """The one-euro filter of one scalar signal, written from Casiez et al. (2012)."""
    def alpha(cutoff, dt):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)
    out, x_hat, dx_hat, t_prev = [], None, 0.0, None
    for x, t in zip(xs, ts):
        if x_hat is None:
            x_hat, t_prev = x, t
            out.append(x)
            continue
        dt = t - t_prev
        dx = (x - x_hat) / dt
        dx_hat = dx_hat + alpha(d_cutoff, dt) * (dx - dx_hat)
        cutoff = min_cutoff + beta * abs(dx_hat) / scale
        x_hat = x_hat + alpha(cutoff, dt) * (x - x_hat)
        t_prev = t
        out.append(x_hat)
    return np.array(out)


def test_one_euro_matches_scalar_twin_with_missing_samples():
    rng = np.random.default_rng(0)
    n = 120
    ts = np.arange(n) / 30.0
    xs = np.cumsum(rng.normal(0, 2, (n, 3)), 0) + rng.normal(0, 1, (n, 3))
    mask = rng.random((n, 3)) > 0.2
    mask[0] = True
    f = OneEuroFilter(min_cutoff=1.2, beta=0.3, d_cutoff=1.5)
    got = np.array([f(xs[i], ts[i], mask=mask[i], scale=2.0) for i in range(n)])
    for c in range(3):
        sel = mask[:, c]
        ref = one_euro_twin(xs[sel, c], ts[sel], 1.2, 0.3, 1.5, scale=2.0)
        np.testing.assert_allclose(got[sel, c], ref, rtol=1e-9, atol=1e-9)
        np.testing.assert_array_equal(got[~sel, c], xs[~sel, c])   # passed through


def test_one_euro_static_jitter_and_lag():
    sm = PoseSmoother()                          # documented defaults
    n, height = 200, 200.0
    rng = np.random.default_rng(5)
    K = OP18.num_keypoints
    base = np.zeros((1, K, 3), np.float32)
    base[0, :, :2] = _template(rng, 1.0) * height / 180 + (300, 240)
    base[0, :, 2] = 1
    # a still person: exactly unchanged
    f = PoseSmoother()
    for i in range(20):
        assert np.array_equal(f(base, [1], i / FPS), base)
    # jitter of 2 px on a still person: reduced at least 3x
    noisy = base + np.concatenate([rng.normal(0, 2, (n, 1, K, 2)),
                                   np.zeros((n, 1, K, 1))], -1).astype(np.float32)
    out = np.array([sm(noisy[i], [7], i / FPS) for i in range(n)])
    err_in = (noisy[50:, ..., :2] - base[..., :2]).std()
    err_out = (out[50:, ..., :2] - base[..., :2]).std()
    assert err_out < err_in / 3, (err_in, err_out)
    # moving at one person height per second (4 px per frame): lag under 2 frames
    v = height / FPS
    ramp = np.array([base + np.array([v * i, 0, 0], np.float32) for i in range(n)])
    sm2 = PoseSmoother()
    out = np.array([sm2(ramp[i], [1], i / FPS) for i in range(n)])
    lag = (ramp[50:, ..., 0] - out[50:, ..., 0]).max()
    assert 0 < lag < 2 * v, lag
    # states are per id: a second person elsewhere does not disturb the first
    sm3 = PoseSmoother()
    other = base + np.array([100, 50, 0], np.float32)
    for i in range(10):
        got = sm3(np.concatenate([ramp[i], other]) if i % 2 else np.concatenate([other, ramp[i]]),
                  [1, 2] if i % 2 else [2, 1], i / FPS)
    np.testing.assert_array_equal(got[1], other[0])
