"""Model zoo: output shapes, hybridize == imperative, a training step, backbone init."""
import math

import mxnet as mx
import numpy as np
import pytest

from mxpose.loss import MultiStageL2Loss
from mxpose.model_zoo import (get_model, list_models, load_pretrained_base, pair_outputs,
                              CPMVGG19, LWPoseMobileNet)

from helpers import reinit_he

# Small configurations so the suite stays fast on 2 CPU cores.
CASES = {
    "cpm_vgg19": dict(num_stages=2),
    "lwpose_mobilenet": dict(),
    "lwpose_mobilenet_slim": dict(width_mult=0.25, num_channels=32, num_refinement=3),
}


def _build(case, **extra):
    name = "lwpose_mobilenet" if case.startswith("lwpose") else case
    kw = dict(CASES[case], **extra)
    return get_model(name, **kw), kw


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("hw", [(64, 64), (96, 72)])
def test_output_shapes(case, hw):
    net, kw = _build(case)
    net.initialize()
    h, w = hw
    out = net(mx.nd.zeros((2, 3, h, w)))
    stages = kw.get("num_stages", 1 + kw.get("num_refinement", 1))
    assert len(out) == 2 * stages
    for paf, heat in pair_outputs(out):
        assert paf.shape == (2, 38, math.ceil(h / 8), math.ceil(w / 8))
        assert heat.shape == (2, 19, math.ceil(h / 8), math.ceil(w / 8))


def test_cpm_vgg19_full_six_stages_and_skeleton_sizes():
    net = get_model("cpm_vgg19", skeleton="openpose_mpi15")
    assert (net.num_heatmaps, net.num_pafs, net.num_stages) == (16, 28, 6)
    for p in net.collect_params().values():     # shapes only: skip the slow random init
        p.initialize(init=mx.init.Zero())
    out = net(mx.nd.zeros((1, 3, 40, 48)))
    assert [o.shape for o in out] == [(1, 28, 5, 6), (1, 16, 5, 6)] * 6
    # Caffe layer names are the structural parameter names.
    names = set(net._collect_params_with_prefix())
    assert {"conv1_1.weight", "conv4_4_CPM.bias", "conv5_5_CPM_L2.weight",
            "Mconv7_stage6_L1.weight"} <= names
    assert not any("stage7" in n for n in names)
    assert len(names) == 2 * (12 + 2 * 5 + 5 * 2 * 7)
    # 52.3M parameters: the size of CMU's 209 MB pose_iter_440000.caffemodel.
    coco = get_model("cpm_vgg19")
    assert sum(int(np.prod(p.shape)) for p in coco.collect_params().values()) == 52311446


def test_sizes_from_skeleton_and_conflicts():
    net = get_model("lwpose_mobilenet", skeleton="openpose_coco18")
    assert (net.num_heatmaps, net.num_pafs) == (19, 38)
    net = get_model("cpm_vgg19", num_heatmaps=5, num_pafs=8, num_stages=1)
    assert (net.num_heatmaps, net.num_pafs) == (5, 8)
    with pytest.raises(ValueError, match="contradicts"):
        get_model("cpm_vgg19", skeleton="openpose_mpi15", num_heatmaps=19)
    with pytest.raises(ValueError, match="num_stages"):
        get_model("cpm_vgg19", num_stages=0)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError) as e:
        get_model("cpm_resnet")
    msg = str(e.value)
    assert "cpm_resnet" in msg
    for n in list_models():
        assert n in msg
    assert list_models() == ["cpm_vgg19", "lwpose_mobilenet", "paffirst_vgg19"]


def test_pair_outputs():
    assert pair_outputs([1, 2, 3, 4]) == [(1, 2), (3, 4)]
    with pytest.raises(ValueError):
        pair_outputs([1, 2, 3])


@pytest.mark.parametrize("case", sorted(CASES))
def test_hybridized_equals_imperative(case):
    net, _ = _build(case)
    net.initialize()
    reinit_he(net)
    x = mx.nd.random.uniform(-0.5, 0.5, (2, 3, 64, 56))
    ref = [o.asnumpy() for o in net(x)]
    net.hybridize(static_alloc=True, static_shape=True)
    for _ in range(2):                  # first call builds the graph, second reuses it
        got = [o.asnumpy() for o in net(x)]
        assert len(got) == len(ref)
        for a, b in zip(got, ref):
            scale = max(1.0, float(np.abs(b).max()))
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * scale)
    assert max(float(np.abs(b).max()) for b in ref) > 1e-2   # not trivially zero


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_sgd_step_lowers_loss(case):
    mx.random.seed(0)
    rng = np.random.default_rng(0)
    net, _ = _build(case)
    net.initialize()
    net.hybridize(static_alloc=True, static_shape=True)
    B, h = 2, 64
    x = mx.nd.array(rng.uniform(-0.5, 0.5, (B, 3, h, h)))
    hm = h // 8
    heat = mx.nd.array(rng.random((B, 19, hm, hm)))
    paf = mx.nd.array(rng.uniform(-1, 1, (B, 38, hm, hm)))
    ones_h, ones_p = mx.nd.ones((B, 1, hm, hm)), mx.nd.ones((B, 1, hm, hm))
    loss_fn = MultiStageL2Loss(batch_size=B)
    # The loss sums over pixels (CMU), so learning rates are small; CMU's stages start
    # near zero output (gaussian 0.01) and need a larger step to move in one iteration.
    lr = 1e-3 if case == "cpm_vgg19" else 1e-5
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd",
                               {"learning_rate": lr, "momentum": 0.0})

    def step(update):
        with mx.autograd.record():
            total, _ = loss_fn(net(x), heat, ones_h, paf, ones_p)
        if update:
            total.backward()
            trainer.step(1)     # the loss is already normalised by the batch size
        return total.asscalar()

    before = step(True)
    after = step(False)
    assert np.isfinite(before) and after < before * 0.999


# ---------------------------------------------------------------------------------------
# ImageNet backbone from local gluoncv files
# ---------------------------------------------------------------------------------------
gluoncv = pytest.importorskip("gluoncv")


@pytest.fixture(scope="module")
def gluoncv_files(tmp_path_factory):
    """gluoncv vgg19 / mobilenet params files with random weights (nothing downloaded)."""
    d = tmp_path_factory.mktemp("gluoncv")
    files = {}
    for name in ("vgg19", "mobilenet1.0", "mobilenet0.25"):
        net = gluoncv.model_zoo.get_model(name, pretrained=False)
        net.initialize(mx.init.Xavier())
        # A 32 px input keeps VGG's first dense layer small; conv shapes are the real ones.
        net(mx.nd.zeros((1, 3, 32, 32)))
        for k, p in net.collect_params().items():
            if "running" in k or k.endswith(("beta", "bias")):
                p.set_data(mx.nd.random.uniform(0.5 if "var" in k else -0.5, 1.0, p.shape))
        path = str(d / f"{name}.params")
        net.save_parameters(path)
        files[name] = (path, net)
    return files


def _ours_and_theirs(ours, src):
    return ours.data().asnumpy(), src.data().asnumpy()


def test_pretrained_vgg19_weights_copied(gluoncv_files):
    path, gnet = gluoncv_files["vgg19"]
    net = get_model("cpm_vgg19", num_stages=1)
    rep = load_pretrained_base(net, path, adapt_input=False)
    assert len(rep["loaded"]) == 20 and not rep["adapted"]
    gconvs = [b for b in gnet.features if isinstance(b, mx.gluon.nn.Conv2D)]
    for layer, gconv in zip(net.base_layer_names, gconvs):
        np.testing.assert_array_equal(*_ours_and_theirs(getattr(net, layer).weight,
                                                        gconv.weight))
        np.testing.assert_array_equal(*_ours_and_theirs(getattr(net, layer).bias,
                                                        gconv.bias))
    assert "output.weight" in rep["unused"]
    # The stages keep their own initialisation and the net runs.
    assert net(mx.nd.zeros((1, 3, 32, 32)))[0].shape == (1, 38, 4, 4)


@pytest.mark.parametrize("width", ["1.0", "0.25"])
def test_pretrained_mobilenet_weights_copied(gluoncv_files, width):
    path, gnet = gluoncv_files[f"mobilenet{width}"]
    net = get_model("lwpose_mobilenet", width_mult=float(width))
    net.initialize()
    rep = load_pretrained_base(net, path, adapt_input=False)
    assert len(rep["loaded"]) == 23 * 5          # 23 conv + BN (4 params) units
    ours = [b for b in net.backbone]
    theirs = [b for b in gnet.features if isinstance(b, mx.gluon.nn.Conv2D)]
    bns = [b for b in gnet.features if isinstance(b, mx.gluon.nn.BatchNorm)]
    assert len(ours) == 23
    for unit, conv, bn in zip(ours, theirs, bns):
        np.testing.assert_array_equal(*_ours_and_theirs(unit.conv.weight, conv.weight))
        np.testing.assert_array_equal(*_ours_and_theirs(unit.bn.running_var, bn.running_var))


def _interior(a, m=2):
    return a[..., m:-m, m:-m]


def test_pretrained_input_adaptation(gluoncv_files, media):
    """Adapted first layer on mxpose's BGR (v-128)/256 input == gluoncv's on its RGB
    mean/std input (away from the zero-padded border)."""
    import cv2
    from mxpose.model_zoo.pretrained import GLUONCV_MEAN, GLUONCV_STD
    img = cv2.resize(cv2.imread(f"{media}/COCO_val2014_000000000192.jpg"), (48, 40))
    ours_in = mx.nd.array(((img.astype(np.float32) - 128) / 256).transpose(2, 0, 1)[None])
    rgb = img[:, :, ::-1].astype(np.float32) / 255
    g_in = mx.nd.array(((rgb - GLUONCV_MEAN) / GLUONCV_STD).transpose(2, 0, 1)[None])

    path, gnet = gluoncv_files["vgg19"]
    net = get_model("cpm_vgg19", num_stages=1)
    assert load_pretrained_base(net, path)["adapted"]
    a = mx.nd.relu(net.conv1_1(ours_in)).asnumpy()
    b = gnet.features[1](gnet.features[0](g_in)).asnumpy()
    np.testing.assert_allclose(_interior(a), _interior(b), rtol=1e-4,
                               atol=1e-4 * np.abs(b).max())

    path, gnet = gluoncv_files["mobilenet1.0"]
    net = get_model("lwpose_mobilenet")
    load_pretrained_base(net, path)
    a = net.backbone[0](ours_in).asnumpy()                       # conv + BN + ReLU
    b = gnet.features[2](gnet.features[1](gnet.features[0](g_in))).asnumpy()
    np.testing.assert_allclose(a[..., 1:, 1:], b[..., 1:, 1:], rtol=1e-4,
                               atol=1e-4 * np.abs(b).max())


def test_pretrained_errors(gluoncv_files, tmp_path):
    missing = str(tmp_path / "nope.params")
    with pytest.raises(FileNotFoundError, match="nope.params"):
        load_pretrained_base(get_model("cpm_vgg19"), missing)
    with pytest.raises(ValueError, match="not a matching trunk"):
        load_pretrained_base(get_model("lwpose_mobilenet"), gluoncv_files["vgg19"][0])
    with pytest.raises(ValueError, match="not a matching trunk"):
        load_pretrained_base(get_model("lwpose_mobilenet", width_mult=0.5),
                             gluoncv_files["mobilenet1.0"][0])
    bad = tmp_path / "garbage.params"
    bad.write_bytes(b"not a params file")
    with pytest.raises(ValueError, match="garbage.params"):
        load_pretrained_base(get_model("cpm_vgg19"), str(bad))


def test_classes_exported():
    assert isinstance(get_model("cpm_vgg19", num_stages=1), CPMVGG19)
    assert isinstance(get_model("lwpose_mobilenet"), LWPoseMobileNet)


# ---------------------------------------------------------------------------------------
# Activation form: oneDNN's Activation by default, the old relu operator on request
# ---------------------------------------------------------------------------------------
def _graph_ops(net, shape):
    net.hybridize()
    net(mx.nd.zeros(shape))
    sym = net._cached_graph[1]
    import json
    return [n["op"] for n in json.loads(sym.tojson())["nodes"]]


@pytest.mark.parametrize("case", sorted(CASES))
def test_activation_form_same_names_and_outputs(case):
    new, _ = _build(case)
    old, _ = _build(case, act="relu_op")
    assert new.act == "activation" and old.act == "relu_op"
    names = sorted(new._collect_params_with_prefix())
    assert names == sorted(old._collect_params_with_prefix())
    new.initialize()
    reinit_he(new)
    old.initialize()
    for k, p in old._collect_params_with_prefix().items():
        p.set_data(new._collect_params_with_prefix()[k].data())
    x = mx.nd.random.uniform(-0.5, 0.5, (1, 3, 48, 40))
    for a, b in zip(new(x), old(x)):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-6)
    # The ops really differ: every ReLU is an Activation in the new graph, none in the old.
    ops_new, ops_old = _graph_ops(new, (1, 3, 48, 40)), _graph_ops(old, (1, 3, 48, 40))
    assert "relu" not in ops_new and ops_new.count("Activation") == ops_old.count("relu") > 0
    assert "Activation" not in ops_old


def test_activation_form_checked_and_passed_through_get_model():
    with pytest.raises(ValueError, match="act must be one of"):
        get_model("lwpose_mobilenet", act="gelu")
    with pytest.raises(ValueError, match="act must be one of"):
        get_model("cpm_vgg19", num_stages=1, act="Relu")
    assert get_model("cpm_vgg19", num_stages=1, act="relu_op").act == "relu_op"


def test_plain_gluon_reference_is_the_same_network():
    # The benchmarks' speed reference must compute CPMVGG19's function: weights copied by
    # position give the same outputs, and the parameter count is the same.
    from mxpose.model_zoo.plain_cpm import PlainCPM
    ours, plain = get_model("cpm_vgg19", num_stages=2), PlainCPM(num_stages=2)
    ours.initialize()
    reinit_he(ours)
    plain.initialize()
    x = mx.nd.random.uniform(-0.5, 0.5, (1, 3, 40, 48))
    ours(x), plain(x)
    src, dst = list(ours.collect_params().values()), list(plain.collect_params().values())
    assert [p.shape for p in src] == [p.shape for p in dst]
    for a, b in zip(src, dst):
        b.set_data(a.data())
    for a, b in zip(ours(x), plain(x)):
        np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-5, atol=1e-6)
    # ... and is the same graph for MXNet: the same operators in the same order, so the
    # two run the same kernels (what the benchmarks' timing comparison relies on).
    def ops(net):
        return [op for op in _graph_ops(net, (1, 3, 40, 48)) if op != "null"]
    assert ops(ours) == ops(plain)
    old = get_model("cpm_vgg19", num_stages=2, act="relu_op")
    old.initialize()
    assert ops(old) != ops(plain)


def test_register_model(monkeypatch):
    import mxpose.model_zoo as zoo
    from mxpose.model_zoo import register_model
    monkeypatch.setattr(zoo, "_MODELS", dict(zoo._MODELS))   # leave the real one alone
    from mxpose.model_zoo.plain_cpm import NAME, PlainCPM
    register_model(NAME, PlainCPM)
    register_model(NAME, PlainCPM)          # same constructor again: fine
    assert isinstance(get_model(NAME, num_stages=1), PlainCPM)
    with pytest.raises(ValueError, match="taken"):
        register_model("cpm_vgg19", PlainCPM)
