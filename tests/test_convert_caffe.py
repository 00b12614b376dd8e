"""Caffe import: cpm_vgg19 with converted weights == OpenCV's DNN on the CMU prototxts.

No real OpenPose weights are needed: caffemodels with random (He-scaled) weights are
written for the shipped deploy prototxts, OpenCV's Caffe importer runs them as the
independent reference, and the converted mxpose network must agree on a real image.
"""
import os

import mxnet as mx
import numpy as np
import pytest

from mxpose import caffe_import as ci
from mxpose.model_zoo import get_model

cv2 = pytest.importorskip("cv2")

MODELS = {   # prototxt -> (num_heatmaps, num_pafs)
    "coco": ("pose_deploy_linevec_coco.prototxt", 19, 38),
    "mpi": ("pose_deploy_linevec_mpi.prototxt", 16, 28),
}


def _random_layers(proto, seed):
    """He-scaled random weights (activations keep their scale through 6 stages) and
    small random biases (so a bias mapped to the wrong layer shows)."""
    rng = np.random.default_rng(seed)
    layers = []
    for name, c in ci.conv_shapes(proto).items():
        shape = c["weight"]
        fan_in = shape[1] * shape[2] * shape[3]
        w = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        b = rng.uniform(-0.1, 0.1, shape[0]).astype(np.float32)
        layers.append(ci.CaffeLayer(name, "Convolution", [w, b]))
    return layers


@pytest.fixture(scope="module", params=sorted(MODELS))
def random_model(request, openpose_models, tmp_path_factory):
    kind = request.param
    fname, nh, npaf = MODELS[kind]
    prototxt = os.path.join(openpose_models, fname)
    layers = _random_layers(ci.parse_prototxt(prototxt), seed=len(kind))
    path = str(tmp_path_factory.mktemp(kind) / f"{kind}_random.caffemodel")
    ci.write_caffemodel(path, layers, name=f"random {kind}")
    return kind, prototxt, path, nh, npaf, layers


def _image(media, w=200, h=180):
    # 200x180 gives odd feature sizes (25, 23) after the pools: checks Caffe's ceil mode.
    img = cv2.imread(os.path.join(media, "COCO_val2014_000000000192.jpg"))
    assert img is not None
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    return ((img.astype(np.float32) - 128.0) / 256.0).transpose(2, 0, 1)[None].copy()


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_matches_opencv_dnn(random_model, media):
    kind, prototxt, path, nh, npaf, _ = random_model
    x = _image(media)

    ref_net = cv2.dnn.readNetFromCaffe(prototxt, path)
    ref_net.setInput(x)
    # concat_stage7 is the deploy output "net_output": concat(heat_6, paf_6).
    ref_final, ref_s2_paf, ref_s1_heat, ref_s4_heat = ref_net.forward(
        ["concat_stage7", "Mconv7_stage2_L1", "conv5_5_CPM_L2", "Mconv7_stage4_L2"])

    net, rep = ci.convert_openpose(path, prototxt)
    assert rep["full"] and not rep["unused"] and len(rep["loaded"]) == 92
    assert rep["kwargs"] == {"num_heatmaps": nh, "num_pafs": npaf, "num_stages": 6}
    out = [o.asnumpy() for o in net(mx.nd.array(x))]
    assert out[-1].shape == (1, nh, 23, 25) and out[-2].shape == (1, npaf, 23, 25)
    final = np.concatenate([out[-1], out[-2]], axis=1)
    assert ref_final.shape == final.shape
    assert np.abs(ref_final).max() > 0.1          # the signal survived six stages
    assert _rel(final, ref_final) <= 1e-4
    assert _rel(out[2], ref_s2_paf) <= 1e-4       # stage 2 PAF
    assert _rel(out[1], ref_s1_heat) <= 1e-4      # stage 1 heatmaps
    assert _rel(out[7], ref_s4_heat) <= 1e-4      # stage 4 heatmaps

    # Hybridized network, same answer.
    net.hybridize(static_alloc=True, static_shape=True)
    out_h = [o.asnumpy() for o in net(mx.nd.array(x))]
    assert _rel(np.concatenate([out_h[-1], out_h[-2]], axis=1), ref_final) <= 1e-4


def test_tool_writes_loadable_params(random_model, tmp_path, capsys):
    import importlib.util
    kind, prototxt, path, nh, npaf, layers = random_model
    spec = importlib.util.spec_from_file_location(
        "convert_caffe", os.path.join(os.path.dirname(__file__), "..", "tools",
                                      "convert_caffe.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = str(tmp_path / "sub" / f"{kind}.params")
    assert tool.main(["--prototxt", prototxt, "--caffemodel", path, "--out", out,
                      "--num-stages", "3"]) == 0
    msg = capsys.readouterr().out
    assert "wrote" in msg and f"num_heatmaps={nh}" in msg and "num_stages=3" in msg
    net = get_model("cpm_vgg19", num_heatmaps=nh, num_pafs=npaf, num_stages=3)
    net.load_parameters(out)
    by_name = {L.name: L.blobs for L in layers}
    params = net._collect_params_with_prefix()
    assert len(params) == 2 * (12 + 10 + 2 * 14)
    for k, p in params.items():
        layer, what = k.rsplit(".", 1)
        want = by_name[layer][0 if what == "weight" else 1]
        np.testing.assert_array_equal(p.data().asnumpy(), want)

    # User mistakes: one line on stderr and a non-zero exit, no traceback.
    assert tool.main(["--caffemodel", str(tmp_path / "missing.caffemodel"),
                      "--out", out]) != 0
    other = "mpi" if kind == "coco" else "coco"
    other_proto = os.path.join(os.path.dirname(prototxt), MODELS[other][0])
    assert tool.main(["--prototxt", other_proto, "--caffemodel", path, "--out", out]) != 0
    err = capsys.readouterr().err
    assert "not found" in err and "not the model of this prototxt" in err


def test_prototxt_checks(openpose_models):
    proto = ci.parse_prototxt(os.path.join(openpose_models, MODELS["coco"][0]))
    names = [ci._get(L, "name") for L in ci.prototxt_layers(proto)]
    assert names[0] == "conv1_1" and names[-1] == "concat_stage7"
    concat2 = next(L for L in ci.prototxt_layers(proto) if L["name"] == ["concat_stage2"])
    assert concat2["bottom"] == ["conv5_5_CPM_L1", "conv5_5_CPM_L2", "conv4_4_CPM"]
    net = get_model("cpm_vgg19")
    assert ci._check_prototxt(proto, net) == []
    # A network that differs (MPI sizes) is reported layer by layer.
    problems = ci._check_prototxt(proto, get_model("cpm_vgg19", skeleton="openpose_mpi15"))
    assert any("conv5_5_CPM_L1" in p for p in problems)


def test_vgg_imagenet_v1_partial_import(tmp_path):
    """CMU's VGG_ILSVRC_19 caffemodel is V1 format (``layers``, legacy 4-D blob dims);
    only conv1_1..conv4_2 go into the trunk, the rest keeps its initialisation."""
    rng = np.random.default_rng(3)
    chans = [("conv1_1", 64, 3), ("conv1_2", 64, 64), ("conv2_1", 128, 64),
             ("conv2_2", 128, 128), ("conv3_1", 256, 128), ("conv3_2", 256, 256),
             ("conv3_3", 256, 256), ("conv3_4", 256, 256), ("conv4_1", 512, 256),
             ("conv4_2", 512, 512), ("conv4_3", 512, 512), ("conv4_4", 512, 512)]
    layers = [ci.CaffeLayer("data", "Data")]
    for name, cout, cin in chans:
        layers.append(ci.CaffeLayer(name, "Convolution",
                                    [rng.standard_normal((cout, cin, 3, 3), np.float32),
                                     rng.standard_normal(cout, np.float32)],
                                    bottom=["x"], top=[name]))
        layers.append(ci.CaffeLayer("relu" + name[4:], "ReLU"))
    layers.append(ci.CaffeLayer("fc8", "InnerProduct",   # shrunk; unused anyway
                                [rng.standard_normal((10, 20), np.float32),
                                 rng.standard_normal(10, np.float32)]))
    path = str(tmp_path / "vgg19_v1.caffemodel")
    ci.write_caffemodel(path, layers, legacy_v1=True)

    read = ci.read_caffemodel(path)
    assert [L.name for L in read] == [L.name for L in layers]
    assert read[1].type == "Convolution" and read[1].bottom == ["x"]
    assert read[1].blobs[1].shape == (1, 1, 1, 64)            # legacy bias dims
    np.testing.assert_array_equal(read[1].blobs[0], layers[1].blobs[0])

    net, rep = ci.convert_openpose(path, skeleton="openpose_mpi15", num_stages=2)
    assert rep["loaded"] == [c[0] for c in chans[:10]]
    assert not rep["full"] and "conv4_3_CPM" in rep["missing"]
    assert set(rep["unused"]) == {"conv4_3", "conv4_4", "fc8"}
    assert rep["kwargs"] == {"num_heatmaps": 16, "num_pafs": 28, "num_stages": 2}
    np.testing.assert_array_equal(net.conv4_2.weight.data().asnumpy(), layers[19].blobs[0])
    np.testing.assert_array_equal(net.conv1_1.bias.data().asnumpy(), layers[1].blobs[1])
    # The layers without weights were initialised and the network runs.
    assert net(mx.nd.zeros((1, 3, 32, 32)))[-1].shape == (1, 16, 4, 4)


def test_wire_format_details(tmp_path):
    """Unpacked floats, unknown fields and double data are read; garbage is refused."""
    enc = ci._enc_len
    data = np.arange(6, dtype=np.float32)
    unpacked = b"".join(ci._enc_varint((5 << 3) | 5) + v.tobytes() for v in data)
    shape = enc(7, b"".join(ci._enc_varint((1 << 3) | 0) + ci._enc_varint(d)
                            for d in (2, 3)))                     # non-packed dims
    blob1 = shape + unpacked
    blob2 = enc(7, enc(1, ci._enc_varint(6))) + enc(8, data.astype("<f8").tobytes())
    layer = (enc(1, b"L") + enc(2, b"Convolution") + ci._enc_int(10, 1)   # phase (skipped)
             + enc(7, blob1) + enc(7, blob2) + enc(6, enc(1, b"x")))     # ParamSpec skipped
    path = tmp_path / "m.caffemodel"
    path.write_bytes(enc(1, b"net") + ci._enc_int(5, 7) + enc(100, layer))
    (L,) = ci.read_caffemodel(str(path))
    assert L.name == "L" and L.type == "Convolution"
    np.testing.assert_array_equal(L.blobs[0], data.reshape(2, 3))
    np.testing.assert_array_equal(L.blobs[1], data)

    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(enc(100, layer)[:-5])
    with pytest.raises(ci.CaffeFormatError, match="bad.caffemodel"):
        ci.read_caffemodel(str(bad))
    with pytest.raises(FileNotFoundError):
        ci.read_caffemodel(str(tmp_path / "none.caffemodel"))


def test_parse_prototxt_text_format():
    text = """
    name: "n"  # comment
    input: "image"
    input_dim: 1 input_dim: 3
    layer { name: 'c' type: "Convolution" bottom: "image" top: "c"
      convolution_param { num_output: 8 pad: 1 kernel_size: 3 stride: 2
        weight_filler { type: "gaussian" std: 0.01 } }
      param { lr_mult: 1.0 } param { lr_mult: 2.0 decay_mult: 0 }
    }
    layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: MAX } }
    layer { name: "cat" type: "Concat" bottom: "p" bottom: "c" top: "cat" }
    layer { name: "d" type: "Convolution" bottom: "cat" top: "d"
            convolution_param { num_output: 4 kernel_size: 1 group: 2 bias_term: false } }
    """
    net = ci.parse_prototxt(text)
    assert net["name"] == ["n"] and net["input_dim"] == [1, 3]
    layer = net["layer"][0]
    assert [p["lr_mult"][0] for p in layer["param"]] == [1.0, 2.0]
    assert net["layer"][1]["pooling_param"][0]["pool"] == ["MAX"]
    shapes = ci.conv_shapes(net)
    assert shapes["c"]["weight"] == (8, 3, 3, 3) and shapes["c"]["stride"] == 2
    assert shapes["d"]["weight"] == (4, 8, 1, 1) and shapes["d"]["group"] == 2
    assert shapes["d"]["bias"] is False
    with pytest.raises(ci.CaffeFormatError):
        ci.parse_prototxt("layer { name: 'x' ")


# ---------------------------------------------------------------------------------------
# PAF-first models (BODY_25, BODY_25B, BODY_135)
# ---------------------------------------------------------------------------------------
# prototxt -> (input w, h). 200x180 gives odd feature sizes (25, 23); BODY_135 (64M
# parameters) runs on a smaller image with odd sizes too (17, 15) to keep the test fast.
PAFFIRST = {
    "body25": ("pose_deploy_body25.prototxt", (200, 180)),
    "body25b": ("pose_deploy_body25b.prototxt", (200, 180)),
    "body135": ("pose_deploy_body135.prototxt", (136, 120)),
}


def _random_paffirst_layers(proto, seed):
    """He-scaled convolutions (as above) and random per-channel PReLU slopes in
    [0, 0.5) (a slope on the wrong layer or channel shows)."""
    layers = _random_layers(proto, seed)
    out_ch = {L.name: L.blobs[0].shape[0] for L in layers}
    rng = np.random.default_rng(seed + 100)
    for L in ci.prototxt_layers(proto):
        if ci._get(L, "type") == "PReLU":
            c = out_ch[L["bottom"][0]]
            layers.append(ci.CaffeLayer(ci._get(L, "name"), "PReLU",
                                        [rng.uniform(0.0, 0.5, c).astype(np.float32)]))
    return layers


@pytest.fixture(scope="module", params=sorted(PAFFIRST))
def paffirst_model(request, openpose_models, tmp_path_factory):
    kind = request.param
    fname, size = PAFFIRST[kind]
    prototxt = os.path.join(openpose_models, fname)
    proto = ci.parse_prototxt(prototxt)
    layers = _random_paffirst_layers(proto, seed=len(kind))
    path = str(tmp_path_factory.mktemp(kind) / f"{kind}_random.caffemodel")
    ci.write_caffemodel(path, layers, name=f"random {kind}")
    return kind, prototxt, path, size, layers


def test_paffirst_matches_opencv_dnn(paffirst_model, media):
    from mxpose.model_zoo import PAFFIRST_CONFIGS
    kind, prototxt, path, (w, h), layers = paffirst_model
    x = _image(media, w, h)
    net, rep = ci.convert_openpose(path)                      # no flags, no prototxt
    assert rep["model"] == "paffirst_vgg19" and rep["full"] and not rep["unused"]
    assert len(rep["loaded"]) == len(layers)                  # every conv and PReLU
    want = get_model("paffirst_vgg19", **PAFFIRST_CONFIGS[kind])
    assert {k: tuple(p.shape) for k, p in want._collect_params_with_prefix().items()} == \
        {k: tuple(p.shape) for k, p in net._collect_params_with_prefix().items()}

    # Every stage's output layer: Mconv{n+2}_stage{s}_L{2: PAF, 1: heatmaps}.
    finals = {br: [plan[-1][0][0] for plan in net._stages[br]] for br in ("L2", "L1")}
    ref_net = cv2.dnn.readNetFromCaffe(prototxt, path)
    ref_net.setInput(x)
    names = ["net_output"] + finals["L2"] + finals["L1"]
    ref = dict(zip(names, ref_net.forward(names)))

    out = [o.asnumpy() for o in net(mx.nd.array(x))]
    kinds = net.output_kinds
    assert len(out) == len(kinds) == len(finals["L2"]) + len(finals["L1"])
    pafs = [o for o, k in zip(out, kinds) if k == "paf"]
    heats = [o for o, k in zip(out, kinds) if k == "heat"]
    fh, fw = -(-h // 8), -(-w // 8)
    assert out[-2].shape == (1, net.num_pafs, fh, fw)
    assert out[-1].shape == (1, net.num_heatmaps, fh, fw)
    final = np.concatenate([out[-1], out[-2]], axis=1)        # net_output: heat, then PAF
    assert ref["net_output"].shape == final.shape
    assert np.abs(ref["net_output"]).max() > 0.1              # the signal survived
    errors = {"net_output": _rel(final, ref["net_output"])}
    for name, mine in zip(finals["L2"] + finals["L1"], pafs + heats):
        errors[name] = _rel(mine, ref[name])
    print(f"{kind}: max relative error {max(errors.values()):.2e}")
    assert max(errors.values()) <= 1e-4, errors

    net.hybridize(static_alloc=True, static_shape=True)
    out_h = [o.asnumpy() for o in net(mx.nd.array(x))]
    assert _rel(np.concatenate([out_h[-1], out_h[-2]], axis=1), ref["net_output"]) <= 1e-4


def test_paffirst_tool_and_stage_mismatch(paffirst_model, tmp_path, capsys):
    import importlib.util
    kind, prototxt, path, _, layers = paffirst_model
    spec = importlib.util.spec_from_file_location(
        "convert_caffe", os.path.join(os.path.dirname(__file__), "..", "tools",
                                      "convert_caffe.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = str(tmp_path / f"{kind}.params")
    assert tool.main(["--caffemodel", path, "--out", out, "--prototxt", prototxt]) == 0
    msg = capsys.readouterr().out
    assert "get_model('paffirst_vgg19'" in msg and "wrote" in msg
    from mxpose.model_zoo import PAFFIRST_CONFIGS
    net = get_model("paffirst_vgg19", **PAFFIRST_CONFIGS[kind])
    net.load_parameters(out)
    by_name = {L.name: L.blobs for L in layers}
    params = net._collect_params_with_prefix()
    assert len(params) == sum(len(b) for b in by_name.values())
    for k, p in params.items():                             # slopes included
        layer, what = k.rsplit(".", 1)
        want = by_name[layer][1 if what == "bias" else 0]
        np.testing.assert_array_equal(p.data().asnumpy(), want)

    if kind != "body25":
        return
    # A caffemodel with one PAF stage fewer than the prototxt: one line, no traceback.
    drop = [L for L in layers if "_stage3_L2" not in L.name]
    short = str(tmp_path / "short.caffemodel")
    ci.write_caffemodel(short, drop)
    assert tool.main(["--caffemodel", short, "--prototxt", prototxt, "--out", out]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "4 PAF + 2 heatmap stages" in err and "3 PAF + 2 heatmap stages" in err
    # A PAF-first caffemodel against the 2017 CPM prototxt, and --num-stages.
    coco = os.path.join(os.path.dirname(prototxt), MODELS["coco"][0])
    assert tool.main(["--caffemodel", path, "--prototxt", coco, "--out", out]) == 1
    assert tool.main(["--caffemodel", path, "--num-stages", "2", "--out", out]) == 1
    err = capsys.readouterr().err
    assert "not the model of this prototxt" in err and "imported whole" in err


def test_paffirst_description_errors_and_shared_slope(tmp_path):
    from mxpose.model_zoo import paffirst_vgg19
    tiny = dict(num_heatmaps=3, num_pafs=4, paf_stages=2, heat_stages=1, paf_blocks=1,
                paf_width=4, paf_head=8, heat_blocks=1, heat_width=4, heat_head=8)
    net = paffirst_vgg19(**tiny)
    net.initialize()
    layers = []
    for k, p in net._collect_params_with_prefix().items():
        name, what = k.rsplit(".", 1)
        if what == "bias":
            continue
        if what == "alpha":                                   # Caffe channel_shared
            layers.append(ci.CaffeLayer(name, "PReLU", [np.full(1, 0.125, np.float32)]))
        else:
            layers.append(ci.CaffeLayer(name, "Convolution",
                                        [p.data().asnumpy(),
                                         np.zeros(p.shape[0], np.float32)]))
    path = str(tmp_path / "tiny.caffemodel")
    ci.write_caffemodel(path, layers)
    net2, rep = ci.convert_openpose(path)
    assert rep["kwargs"] == dict(tiny)
    np.testing.assert_array_equal(net2.Mprelu1_stage1_L2_2.alpha.data().asnumpy(),
                                  np.full(4, 0.125, np.float32))
    # A gap in the stages is named.
    gap = [L for L in layers if "stage0_L2" not in L.name]
    ci.write_caffemodel(path, gap)
    with pytest.raises(ci.CaffeFormatError, match="stages .branch L2. are \\[1\\]"):
        ci.convert_openpose(path)
