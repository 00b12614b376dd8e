"""PAF-first network (paffirst_vgg19): shapes, Caffe names, hybridize, a training step with
the loss over every PAF and heatmap stage, the trainer and export seams.

The body25 layout is not needed: the tests use channel counts of their own (19 heatmaps,
38 PAFs: those of the built-in openpose_coco18 where a skeleton is needed)."""
import math
import os

import mxnet as mx
import numpy as np
import pytest

from mxpose.loss import MultiStageL2Loss
from mxpose.model_zoo import PAFFIRST_CONFIGS, PafFirstVGG19, get_model

from helpers import RandomPoseData, reinit_he

# Tiny: 3 PAF stages, 2 heatmap stages, one block each, narrow.
TINY = dict(num_heatmaps=19, num_pafs=38, paf_stages=3, heat_stages=2, paf_blocks=1,
            paf_width=(8, 16, 16), paf_head=16, heat_blocks=(1, 2), heat_width=8,
            heat_head=16)


def _tiny(**kw):
    return get_model("paffirst_vgg19", **dict(TINY, **kw))


@pytest.mark.parametrize("hw", [(64, 64), (96, 72)])
def test_output_shapes_and_kinds(hw):
    net = _tiny()
    net.initialize()
    h, w = hw
    out = net(mx.nd.zeros((2, 3, h, w)))
    assert net.output_kinds == ("paf", "paf", "heat", "paf", "heat")
    assert len(out) == net.num_stages == 5
    fh, fw = math.ceil(h / 8), math.ceil(w / 8)
    for o, kind in zip(out, net.output_kinds):
        assert o.shape == (2, 38 if kind == "paf" else 19, fh, fw)


def test_caffe_names_and_cmu_sizes():
    net = get_model("paffirst_vgg19")                     # BODY_25 by default
    assert (net.num_heatmaps, net.num_pafs, net.paf_stages, net.heat_stages) == (26, 52, 4, 2)
    names = set(net._collect_params_with_prefix())
    assert {"conv1_1.weight", "conv4_1.bias", "prelu4_2.alpha", "prelu4_4_CPM.alpha",
            "Mconv1_stage0_L2_0.weight", "Mprelu5_stage3_L2_2.alpha",
            "Mconv6_stage1_L1.weight", "Mprelu6_stage1_L1.alpha",
            "Mconv7_stage1_L1.bias"} <= names
    assert not any(n.startswith(("prelu4_1", "Mprelu7", "Mconv8")) or "stage4" in n
                   for n in names)
    shapes = {k: p.shape for k, p in net._collect_params_with_prefix().items()}
    assert shapes["Mconv1_stage1_L2_0.weight"] == (128, 128 + 52, 3, 3)
    assert shapes["Mconv1_stage0_L1_0.weight"] == (96, 128 + 52, 3, 3)
    assert shapes["Mconv1_stage1_L1_0.weight"] == (128, 128 + 26 + 52, 3, 3)
    assert shapes["Mconv2_stage1_L1_0.weight"] == (128, 3 * 128, 3, 3)
    assert shapes["Mprelu6_stage0_L2.alpha"] == (256,)
    # 26.2M parameters: the size of CMU's 104 MB BODY_25 pose_iter_584000.caffemodel.
    assert sum(int(np.prod(s)) for s in shapes.values()) == 26166084
    b135 = get_model("paffirst_vgg19", **PAFFIRST_CONFIGS["body135"])
    assert b135.output_kinds == ("paf", "paf", "paf", "paf", "heat")
    assert "Mconv10_stage3_L2.weight" in set(b135._collect_params_with_prefix())


def test_imagenet_trunk_is_the_vgg_part():
    """pretrained_base (gluoncv's VGG-19) fills conv1_1 .. conv4_2, as for cpm_vgg19."""
    from mxpose.model_zoo import base_parameters
    names = [n for n, _ in base_parameters(_tiny())]
    assert len(names) == 20 and names[0] == "conv1_1.weight" and names[-1] == "conv4_2.bias"


def test_bad_arguments():
    with pytest.raises(ValueError, match="paf_width has 2 values for 3 stages"):
        _tiny(paf_width=(8, 8))
    with pytest.raises(ValueError, match="heat_stages"):
        _tiny(heat_stages=0, heat_blocks=1)
    with pytest.raises(ValueError, match="heat_head must be >= 1"):
        _tiny(heat_head=0)
    with pytest.raises(ValueError, match="contradicts"):
        get_model("paffirst_vgg19", skeleton="openpose_coco18", num_heatmaps=26)


def test_hybridized_equals_imperative():
    net = _tiny()
    net.initialize()
    reinit_he(net)
    for k, p in net.collect_params().items():            # slopes other than 0.25
        if k.endswith("alpha"):
            p.set_data(mx.nd.random.uniform(0, 0.5, p.shape))
    x = mx.nd.random.uniform(-0.5, 0.5, (2, 3, 64, 56))
    ref = [o.asnumpy() for o in net(x)]
    net.hybridize(static_alloc=True, static_shape=True)
    for _ in range(2):
        got = [o.asnumpy() for o in net(x)]
        assert len(got) == len(ref)
        for a, b in zip(got, ref):
            scale = max(1.0, float(np.abs(b).max()))
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * scale)
    assert max(float(np.abs(b).max()) for b in ref) > 1e-2


def test_one_sgd_step_lowers_the_loss_of_every_stage():
    mx.random.seed(0)
    rng = np.random.default_rng(0)
    net = _tiny()
    net.initialize()
    net.hybridize(static_alloc=True, static_shape=True)
    B, h = 2, 64
    hm = h // 8
    x = mx.nd.array(rng.uniform(-0.5, 0.5, (B, 3, h, h)))
    heat = mx.nd.array(rng.random((B, 19, hm, hm)))
    paf = mx.nd.array(rng.uniform(-1, 1, (B, 38, hm, hm)))
    hmask = mx.nd.array(rng.random((B, 19, hm, hm)) > 0.2)
    pmask = mx.nd.ones((B, 1, hm, hm))
    loss_fn = MultiStageL2Loss(batch_size=B, kinds=net.output_kinds)
    loss_fn.hybridize(static_alloc=True, static_shape=True)
    trainer = mx.gluon.Trainer(net.collect_params(), "sgd",
                               {"learning_rate": 1e-5, "momentum": 0.0})

    def step(update):
        with mx.autograd.record():
            total, per = loss_fn(net(x), heat, hmask, paf, pmask)
        if update:
            total.backward()
            trainer.step(1)
        return total.asscalar(), per.asnumpy()

    before, per = step(True)
    # (3, 2): three PAF stages, two heatmap stages and a zero pad; every stage supervised
    assert per.shape == (3, 2) and per[2, 1] == 0 and (per[:, 0] > 0).all() and \
        (per[:2, 1] > 0).all()
    np.testing.assert_allclose(per.sum(), before, rtol=1e-5)
    after, _ = step(False)
    assert np.isfinite(before) and after < before * 0.999


def test_trainer_gives_the_loss_the_output_kinds(tmp_path):
    """Config -> network -> loss: a PAF-first model trains with the right targets."""
    from mxpose.config import default_config
    from mxpose.train import PoseTrainer, RunOptions, make_contexts

    cfg = default_config()
    cfg.name = "tiny_paffirst"
    cfg.data.skeleton = "openpose_coco18"        # stand-in with 19 / 38 channels
    cfg.data.num_workers = 0
    cfg.model.name = "paffirst_vgg19"
    cfg.model.kwargs = {k: v for k, v in TINY.items() if not k.startswith("num_")}
    cfg.train.update(batch_size=2, optimizer="sgd", lr=1e-5, momentum=0.9, max_iters=2,
                     save_every=2, log_every=1, warmup_iters=0, workdir=str(tmp_path))
    t = PoseTrainer(cfg, RunOptions(contexts=make_contexts((), 1), progress=False),
                    echo=lambda m: None, dataset=RandomPoseData(n=4))
    t.setup()
    assert isinstance(t.net, PafFirstVGG19)
    assert t.loss.kinds == t.net.output_kinds == ("paf", "paf", "heat", "paf", "heat")
    total, per_stage = t.forward_backward(next(iter(_batches(t))))
    assert np.isfinite(total) and per_stage.shape == (3, 2)


def _batches(trainer):
    """One batch of the trainer's dataset, stacked as its loader does."""
    items = [trainer.dataset[i] for i in range(trainer.batch)]
    yield [mx.nd.array(np.stack([it[j] for it in items])) for j in range(5)]


def test_export_all_stages_and_last_stage(tmp_path):
    """PReLU and the PAF-first output order survive the symbol and ONNX export."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from mxpose import export as ex
    net = _tiny()
    net.initialize()
    reinit_he(net)
    for k, p in net.collect_params().items():
        if k.endswith("alpha"):
            p.set_data(mx.nd.random.uniform(0, 0.5, p.shape))
    x = np.random.default_rng(1).uniform(-0.5, 0.5, (1, 3, 72, 64)).astype(np.float32)
    ref = [o.asnumpy() for o in net(mx.nd.array(x))]
    assert ex.output_names(net.num_stages, True, net.output_kinds) == \
        ["pafs_1", "pafs_2", "heatmaps_1", "pafs", "heatmaps"]
    for all_stages in (False, True):
        meta = ex.make_meta("openpose_coco18", "paffirst_vgg19", TINY,
                            num_stages=net.num_stages, all_stages=all_stages,
                            output_kinds=net.output_kinds)
        prefix = str(tmp_path / f"m{int(all_stages)}")
        files = ex.export_network(net, prefix, meta)
        got = ex.OnnxRunner(files["onnx"], providers=["CPUExecutionProvider"]).run_all(x)
        want = ref if all_stages else ref[-2:]
        assert len(got) == len(want)
        rep = ex.compare_maps(want, got, ex.DEFAULT_RTOL, ex.DEFAULT_ATOL)
        assert rep["ok"], rep


def test_body25_experiment_follows_cmus_training_prototxt(openpose_models):
    """experiments/body25_vgg19_coco.yaml against pose_training_body25.prototxt: the
    network, every parameter's lr/decay multipliers and the data layer's settings."""
    from mxpose import caffe_import as ci
    from mxpose.config import load_config
    from mxpose.train import parameter_multipliers
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = load_config(os.path.join(root, "experiments", "body25_vgg19_coco.yaml"))
    assert cfg.model.name == "paffirst_vgg19" and cfg.data.skeleton == "body25"
    body25 = {k: v for k, v in PAFFIRST_CONFIGS["body25"].items() if not k.startswith("num_")}
    assert {k: tuple(v) if isinstance(v, list) else v
            for k, v in cfg.model.kwargs.items()} == body25
    proto = ci.parse_prototxt(os.path.join(openpose_models, "pose_training_body25.prototxt"))
    want = {}
    for L in ci.prototxt_layers(proto):
        name = ci._get(L, "name")
        specs = [(p["lr_mult"][0], p["decay_mult"][0]) for p in L.get("param", [])]
        for what, spec in zip(("alpha",) if ci._get(L, "type") == "PReLU"
                              else ("weight", "bias"), specs):
            want[f"{name}.{what}"] = (float(spec[0]), float(spec[1]))
    net = get_model(cfg.model.name, num_heatmaps=26, num_pafs=52, **cfg.model.kwargs)
    names = list(net._collect_params_with_prefix())
    assert sorted(names) == sorted(want)           # same layers, same parameters
    got = dict(zip(names, parameter_multipliers(names, cfg.train.lr_mult)))
    assert {n: (float(a), float(b)) for n, (a, b) in got.items()} == want
    data = proto["layer"][0]
    t = data["op_transform_param"][0]
    assert cfg.train.batch_size == data["data_param"][0]["batch_size"][0]
    assert cfg.aug.input_size == t["crop_size_x"][0] == t["crop_size_y"][0]
    assert cfg.targets.stride == t["stride"][0]
    assert cfg.aug.max_rotate == t["max_rotate_degree"][0]
    assert cfg.aug.center_perturb == t["center_perterb_max"][0]
    assert cfg.aug.target_dist == pytest.approx(t["target_dist"][0])
    assert (cfg.aug.scale_min, cfg.aug.scale_max) == \
        pytest.approx((t["scale_min"][0], t["scale_max"][0]))


def test_predictor_reads_the_final_paf_and_heatmaps():
    """The Predictor (out[-2], out[-1]) gets the last PAF stage and the last heatmap
    stage, not an intermediate one."""
    from mxpose.infer import Predictor
    net = _tiny()
    net.initialize()
    reinit_he(net)
    pred = Predictor(net, "openpose_coco18", boxsize=64)
    img = np.random.default_rng(2).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    heat, paf, _ = pred.maps(img)
    x, _ = pred.input_batch(img)
    out = [o.asnumpy()[0] for o in net(mx.nd.array(x))]
    h, w = heat.shape[1:]
    np.testing.assert_allclose(heat, out[-1][:, :h, :w], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(paf, out[-2][:, :h, :w], rtol=1e-5, atol=1e-6)
    assert np.abs(out[2][:, :h, :w] - heat).max() > 1e-3     # heat stage 0 differs
    assert np.abs(out[1][:, :h, :w] - paf).max() > 1e-3      # PAF stage 1 differs
