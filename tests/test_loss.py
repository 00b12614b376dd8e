"""Masked multi-stage L2 loss against a NumPy reference."""
import mxnet as mx
import numpy as np
import pytest

from mxpose.loss import MultiStageL2Loss, multi_stage_l2_loss

B, K1, P, H, W, S = 4, 5, 6, 7, 9, 3


def _numpy_loss(outs, heat_gt, heat_mask, paf_gt, paf_mask, batch, use_masks=True):
    """CMU's Caffe formulation, literally: 0.5 * sum((w*pred - w*gt)^2) / batch."""
    per = np.zeros((len(outs) // 2, 2))
    for i, pred in enumerate(outs):
        gt, m = (paf_gt, paf_mask) if i % 2 == 0 else (heat_gt, heat_mask)
        if not use_masks:
            m = np.ones_like(m)
        per[i // 2, i % 2] = 0.5 * np.sum((m * pred - m * gt).astype(np.float64) ** 2) / batch
    return per.sum(), per


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    outs = [rng.standard_normal((B, c, H, W)).astype(np.float32)
            for _ in range(S) for c in (P, K1)]
    heat_gt = rng.random((B, K1, H, W), dtype=np.float32)
    paf_gt = rng.uniform(-1, 1, (B, P, H, W)).astype(np.float32)
    heat_mask = (rng.random((B, 1, H, W)) > 0.3).astype(np.float32)   # broadcast
    paf_mask = (rng.random((B, P, H, W)) > 0.3).astype(np.float32)    # full
    return outs, heat_gt, heat_mask, paf_gt, paf_mask


def _nd(arrs):
    return [mx.nd.array(a) for a in arrs]


@pytest.mark.parametrize("hybrid", [False, True])
@pytest.mark.parametrize("use_masks", [True, False])
def test_matches_numpy(batch, hybrid, use_masks):
    outs, hg, hm, pg, pm = batch
    ref_total, ref_per = _numpy_loss(outs, hg, np.broadcast_to(hm, hg.shape), pg, pm, B,
                                     use_masks)
    loss = MultiStageL2Loss(batch_size=B, use_masks=use_masks)
    if hybrid:
        loss.hybridize(static_alloc=True, static_shape=True)
    total, per = loss(_nd(outs), *_nd([hg, hm, pg, pm]))
    assert total.shape == (1,) and per.shape == (S, 2)
    np.testing.assert_allclose(per.asnumpy(), ref_per, rtol=1e-5)
    np.testing.assert_allclose(total.asscalar(), ref_total, rtol=1e-5)


@pytest.mark.parametrize("hybrid", [False, True])
def test_default_batch_size_is_local_batch(batch, hybrid):
    outs, hg, hm, pg, pm = batch
    loss = MultiStageL2Loss()
    if hybrid:
        loss.hybridize(static_alloc=True, static_shape=True)
    a, _ = loss(_nd(outs), *_nd([hg, hm, pg, pm]))
    b, _ = multi_stage_l2_loss(_nd(outs), *_nd([hg, hm, pg, pm]), batch_size=B)
    np.testing.assert_allclose(a.asscalar(), b.asscalar(), rtol=1e-6)


def test_masks_zero_out(batch):
    outs, hg, hm, pg, pm = batch
    zeros_h, zeros_p = np.zeros_like(hm), np.zeros_like(pm)
    total, per = multi_stage_l2_loss(_nd(outs), *_nd([hg, zeros_h, pg, zeros_p]),
                                     batch_size=B)
    assert total.asscalar() == 0.0
    # use_masks=False ignores the masks (they may even be None).
    a, _ = multi_stage_l2_loss(_nd(outs), *_nd([hg, zeros_h, pg, zeros_p]), batch_size=B,
                               use_masks=False)
    b, _ = multi_stage_l2_loss(_nd(outs), mx.nd.array(hg), None, mx.nd.array(pg), None,
                               batch_size=B, use_masks=False)
    assert a.asscalar() > 0 and a.asscalar() == b.asscalar()
    # Where the mask is 0 the prediction does not matter (and gets no gradient).
    outs2 = [o.copy() for o in outs]
    hole = pm == 0
    outs2[0][hole] = 1e3
    a, _ = multi_stage_l2_loss(_nd(outs), *_nd([hg, hm, pg, pm]), batch_size=B)
    b, _ = multi_stage_l2_loss(_nd(outs2), *_nd([hg, hm, pg, pm]), batch_size=B)
    np.testing.assert_allclose(a.asscalar(), b.asscalar(), rtol=1e-6)
    pred = mx.nd.array(outs[0])
    pred.attach_grad()
    with mx.autograd.record():
        total, _ = multi_stage_l2_loss([pred] + _nd(outs[1:]), *_nd([hg, hm, pg, pm]),
                                       batch_size=B)
    total.backward()
    g = pred.grad.asnumpy()
    assert np.all(g[hole] == 0) and np.any(g[~hole] != 0)


@pytest.mark.parametrize("hybrid", [False, True])
def test_one_channel_masks_give_the_expanded_masks_loss_and_gradients(batch, hybrid):
    """The Dataset's (B, 1, H, W) mask (shared by heatmaps and PAFs) must train exactly
    as the mask repeated over every channel: same loss, same gradient of every output."""
    outs, hg, _, pg, _ = batch
    m = (np.random.default_rng(5).random((B, 1, H, W)) > 0.4).astype(np.float32)
    full = (np.broadcast_to(m, hg.shape).copy(), np.broadcast_to(m, pg.shape).copy())
    got = []
    for hm, pm in ((m, m), full):
        loss = MultiStageL2Loss(batch_size=B)
        if hybrid:
            loss.hybridize(static_alloc=True, static_shape=True)
        preds = _nd(outs)
        for p in preds:
            p.attach_grad()
        with mx.autograd.record():
            total, per = loss(preds, *_nd([hg, hm, pg, pm]))
        total.backward()
        got.append((total.asscalar(), per.asnumpy(), [p.grad.asnumpy() for p in preds]))
    (t1, p1, g1), (t2, p2, g2) = got
    assert t1 == t2 and np.array_equal(p1, p2)
    for a, b in zip(g1, g2):
        np.testing.assert_array_equal(a, b)
    ref_total, _ = _numpy_loss(outs, hg, full[0], pg, full[1], B)
    np.testing.assert_allclose(t1, ref_total, rtol=1e-5)


def test_device_split_sums_to_full_batch(batch):
    """Two 'devices' each normalise by the total batch: losses and gradients add up."""
    outs, hg, hm, pg, pm = batch
    loss = MultiStageL2Loss(batch_size=B)

    def run(sl):
        preds = [mx.nd.array(o[sl]) for o in outs]
        for p in preds:
            p.attach_grad()
        with mx.autograd.record():
            total, per = loss(preds, *_nd([hg[sl], hm[sl], pg[sl], pm[sl]]))
        total.backward()
        return total.asscalar(), per.asnumpy(), [p.grad.asnumpy() for p in preds]

    full = run(slice(0, B))
    a = run(slice(0, 1))
    b = run(slice(1, B))          # uneven split
    np.testing.assert_allclose(a[0] + b[0], full[0], rtol=1e-5)
    np.testing.assert_allclose(a[1] + b[1], full[1], rtol=1e-5)
    for ga, gb, gf in zip(a[2], b[2], full[2]):
        np.testing.assert_allclose(np.concatenate([ga, gb]), gf, rtol=1e-5, atol=1e-7)


def test_bad_arguments(batch):
    outs, hg, hm, pg, pm = batch
    with pytest.raises(ValueError, match="batch_size"):
        MultiStageL2Loss(batch_size=0)
    with pytest.raises(ValueError, match="paf, heat"):
        MultiStageL2Loss()(_nd(outs[:3]), *_nd([hg, hm, pg, pm]))


@pytest.mark.parametrize("hybrid", [False, True])
def test_paf_first_kinds_match_numpy(batch, hybrid):
    """PAF-first order (3 PAF stages, 2 heatmap stages, final pair last): every output is
    compared with its own target, as CMU's pose_training_body25.prototxt does."""
    _, hg, hm, pg, pm = batch
    rng = np.random.default_rng(1)
    kinds = ("paf", "paf", "heat", "paf", "heat")
    outs = [rng.standard_normal((B, P if k == "paf" else K1, H, W)).astype(np.float32)
            for k in kinds]
    hmf = np.broadcast_to(hm, hg.shape)
    ref = {"paf": [], "heat": []}
    for k, pred in zip(kinds, outs):
        gt, m = (pg, pm) if k == "paf" else (hg, hmf)
        ref[k].append(0.5 * np.sum((m * pred - m * gt).astype(np.float64) ** 2) / B)
    loss = MultiStageL2Loss(batch_size=B, kinds=kinds)
    if hybrid:
        loss.hybridize(static_alloc=True, static_shape=True)
    total, per = loss(_nd(outs), *_nd([hg, hm, pg, pm]))
    assert per.shape == (3, 2)
    np.testing.assert_allclose(per.asnumpy()[:, 0], ref["paf"], rtol=1e-5)
    np.testing.assert_allclose(per.asnumpy()[:, 1], ref["heat"] + [0.0], rtol=1e-5)
    np.testing.assert_allclose(total.asscalar(), sum(ref["paf"] + ref["heat"]), rtol=1e-5)
    # The same outputs read as alternating (paf, heat) pairs: a channel mismatch, named.
    with pytest.raises(ValueError, match="output 1 .heat. has 6 channels"):
        MultiStageL2Loss(batch_size=B)(_nd(outs[:4]), *_nd([hg, hm, pg, pm]))
    with pytest.raises(ValueError, match="5 outputs, but kinds names 4"):
        MultiStageL2Loss(kinds=kinds[:4])(_nd(outs), *_nd([hg, hm, pg, pm]))
    with pytest.raises(ValueError, match="kinds must name"):
        MultiStageL2Loss(kinds=("paf", "paf"))
