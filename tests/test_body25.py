"""Inference for OpenPose BODY_25 models: the decoder on body25 (26 limbs with both
redundant shoulder-ear ones), the Predictor's flip averaging with the body25 flip maps,
drawing colours for every limb, and the ONNX export of a PAF-first body25 network run by
``Predictor.from_exported``."""
import numpy as np
import pytest

from mxpose.decode import Decoder
from mxpose.infer import Predictor
from mxpose.skeleton import Skeleton, get_skeleton

import reference_decode as R
from helpers import match_people
from test_infer import GroundTruthEngine

B25 = get_skeleton("body25")


def _inside(people, w, h):
    """Points beyond the image unlabelled (the template's feet can leave a slot)."""
    out = people.copy()
    off = (out[..., 0] < 0) | (out[..., 0] > w - 1) | (out[..., 1] < 0) | (out[..., 1] > h - 1)
    out[off] = 0
    return out


@pytest.mark.parametrize("assembly", ["cmu", "crowd"])
def test_decoder_round_trip_body25(assembly):
    """Ground-truth maps of body25 people (feet included) decode to the same people."""
    assert B25.num_limbs == 26 and B25.num_heatmaps == 26 and B25.num_pafs == 52
    rng = np.random.default_rng(5)
    dec = Decoder(B25, assembly=assembly)
    for n in (1, 4, 8):
        people = _inside(R.synthetic_people(B25, n, 640, 480, rng, scale=(0.8, 1.0),
                                            drop_leaves=0.2), 640, 480)
        hm, pf = R.render_maps(people, B25, 60, 80, 8)
        out, scores = dec(hm, pf, stride=8)
        assert out.shape == (n, 25, 3)
        match_people(people, out, tol=8)


def _flip_pairs_dropped():
    d = B25.to_dict()
    d.update(name="body25_noflip", flip_pairs=[])
    return Skeleton.from_dict(d)


def test_flip_averaging_with_a_perfect_engine_equals_no_flip():
    """A perfect network (ground-truth maps of the input, mirrored input included): the
    flip-averaged maps equal the plain ones, which holds only if the body25 flip maps
    send every heatmap and PAF channel (feet, both shoulder-ear limbs) home."""
    h, w = 300, 420
    people = _inside(R.synthetic_people(B25, 3, w, h, np.random.default_rng(2),
                                        scale=(0.7, 0.9)), w, h)
    img = np.zeros((h, w, 3), np.uint8)
    maps = {}
    for flip in (False, True):
        eng = GroundTruthEngine(people, B25, (h, w), (1.0,), flip=flip, boxsize=h)
        pred = Predictor(eng, B25, flip=flip, boxsize=h, engine="numpy")
        maps[flip] = pred.maps(img)
        got, _ = pred(img)
        match_people(people, got, tol=2.0)
    np.testing.assert_allclose(maps[True][0], maps[False][0], atol=1e-5)
    np.testing.assert_allclose(maps[True][1], maps[False][1], atol=1e-5)
    # control: without the left/right swap the averaged maps are not the plain ones
    eng = GroundTruthEngine(people, B25, (h, w), (1.0,), flip=True, boxsize=h)
    bad = Predictor(eng, _flip_pairs_dropped(), flip=True, boxsize=h, engine="numpy")
    heat, paf, _ = bad.maps(img)
    foot = B25.index("l_big_toe")
    assert np.abs(heat[foot] - maps[False][0][foot]).max() > 0.2


def test_draw_people_gives_every_body25_limb_its_own_colour():
    from mxpose.viz import draw_people, limb_colors
    cols = limb_colors(B25.num_limbs)
    assert len(cols) == 26 and len(set(cols)) == 26
    people = R.synthetic_people(B25, 1, 320, 240, np.random.default_rng(0))
    img = np.zeros((240, 320, 3), np.uint8)
    out = draw_people(img, people, B25, thickness=1, radius=1)
    drawn = {tuple(int(v) for v in px) for px in out.reshape(-1, 3)} - {(0, 0, 0)}
    # the foot limbs are drawn too, in their own colours
    for l, (a, b) in enumerate(B25.limbs):
        if "toe" in a + b or "heel" in a + b:
            assert cols[l] in drawn, (a, b)


def test_onnx_export_of_a_body25_paffirst_model_runs_in_the_predictor(tmp_path):
    """A tiny random PAF-first body25 network exported to ONNX: Predictor.from_exported
    reads the skeleton (body25) from the export and gives the Gluon Predictor's maps and
    people (flip on, so the body25 flip maps are used on both sides)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import mxnet as mx
    from mxpose import export as ex
    from mxpose.model_zoo import get_model
    kw = dict(trunk_width=0.125, paf_stages=2, heat_stages=1, paf_blocks=1, paf_width=8,
              paf_head=16, heat_blocks=1, heat_width=8, heat_head=16)
    mx.random.seed(0)
    net = get_model("paffirst_vgg19", skeleton=B25, **kw)
    net.initialize(mx.init.Xavier(magnitude=2))
    for k, p in net.collect_params().items():
        if k.endswith("bias"):
            p.set_data(mx.nd.random.uniform(0, 0.3, p.shape))
    net.hybridize()
    img = np.random.default_rng(1).integers(0, 256, (120, 150, 3), dtype=np.uint8)
    ref = Predictor(net, B25, flip=True, boxsize=96, decode_params={"thre1": 0.05})
    ref_heat, ref_paf, _ = ref.maps(img)
    meta = ex.make_meta(B25, "paffirst_vgg19", kw, num_stages=net.num_stages, boxsize=96,
                        flip=True, decode_params={"thre1": 0.05},
                        output_kinds=net.output_kinds)
    ex.export_network(net, str(tmp_path / "b25"), meta)
    pred = Predictor.from_exported(str(tmp_path / "b25.onnx"), engine="onnx",
                                   providers=["CPUExecutionProvider"])
    assert pred.skeleton == B25 and pred.flip and pred.boxsize == 96
    heat, paf, _ = pred.maps(img)
    scale = max(np.abs(ref_heat).max(), np.abs(ref_paf).max())
    assert np.abs(heat - ref_heat).max() <= 1e-4 * scale + 1e-6
    assert np.abs(paf - ref_paf).max() <= 1e-4 * scale + 1e-6
    # sub-cell refinement moves a point by ~1e-3 px for ~1e-6 map differences
    assert ex.people_difference(ref(img), pred(img)) < 1e-2


def test_trunk_width_slims_the_trunk_only():
    """``trunk_width`` (the slim network of experiments/synthetic_body25.yaml) narrows the
    VGG-19 trunk and the CPM layers; stage and output shapes follow."""
    import mxnet as mx
    from mxpose.config import load_config
    from mxpose.model_zoo import get_model
    import os
    cfg = load_config(os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "experiments", "synthetic_body25.yaml"))
    assert cfg.data.skeleton == "body25" and cfg.model.kwargs.trunk_width == 0.25
    net = get_model("paffirst_vgg19", skeleton=B25, **cfg.model.kwargs)
    net.initialize()
    outs = net(mx.nd.zeros((1, 3, 64, 80)))
    assert [o.shape for o in outs] == [(1, 52, 8, 10), (1, 52, 8, 10), (1, 26, 8, 10)]
    assert net.output_kinds == ("paf", "paf", "heat")
    assert net.conv1_1.weight.shape == (16, 3, 3, 3)
    assert net.conv4_2.weight.shape == (128, 128, 3, 3)
    assert net.conv4_4_CPM.weight.shape == (32, 64, 3, 3)
    full = get_model("paffirst_vgg19", skeleton=B25)
    assert full.conv1_1._channels == 64 and full.conv4_4_CPM._channels == 128
    with pytest.raises(ValueError, match="trunk_width"):
        get_model("paffirst_vgg19", skeleton=B25, trunk_width=0)
