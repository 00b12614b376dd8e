"""Export tests: MXNet == exported symbol == onnxruntime on small networks, a cleaned
ONNX graph, the Predictor running from the exported files (also without MXNet) with the
same people as the Gluon Predictor, and tools/export.py end to end."""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")
from mxnet.gluon import HybridBlock, nn  # noqa: E402

from mxpose import export as ex  # noqa: E402
from mxpose.infer import Predictor  # noqa: E402
from mxpose.model_zoo import get_model  # noqa: E402
from mxpose.skeleton import get_skeleton  # noqa: E402
from mxpose.targets import render_heatmaps, render_pafs  # noqa: E402

import reference_decode as R  # noqa: E402

OP18 = get_skeleton("openpose_coco18")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Parity tolerance (mxpose.export.DEFAULT_RTOL/ATOL): max|a - b| <= 1e-7 + 1e-4 * max|ref|
# per output tensor. Measured: symbol files 0 (same engine), onnxruntime ~1.5e-6 (LW) to
# ~3.5e-6 (CPM-VGG, 2 stages) relative.
RTOL, ATOL = ex.DEFAULT_RTOL, ex.DEFAULT_ATOL

SMALL = {
    "lwpose_mobilenet": {"width_mult": 0.25, "num_channels": 32},
    "cpm_vgg19": {"num_stages": 2},
}


def _needs_onnx():
    pytest.importorskip("onnx", reason="ONNX export needs onnx (onnx==1.15.0 for MXNet 1.9.1)")
    pytest.importorskip("onnxruntime", reason="ONNX parity needs onnxruntime")


def _small_net(name, seed=3):
    mx.random.seed(seed)
    net = get_model(name, num_heatmaps=OP18.num_heatmaps, num_pafs=OP18.num_pafs,
                    **SMALL[name])
    net.initialize(mx.init.Xavier(magnitude=2))
    rng = np.random.default_rng(seed)
    # non-trivial BatchNorm statistics, so that their export is checked too
    for k, p in net.collect_params().items():
        if k.endswith(("running_var", "gamma")):
            p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape)))
        elif k.endswith(("running_mean", "beta")):
            p.set_data(mx.nd.array(rng.uniform(-0.2, 0.2, p.shape)))
        elif k.endswith("weight") and p.shape[0] in (OP18.num_heatmaps, OP18.num_pafs):
            # output layers start near zero; scale them up so that the compared maps are
            # of order one, not 1e-4
            p.set_data(p.data() * 30)
    return net


def _gluon_maps(net, x, all_stages):
    out = [o.asnumpy() for o in net(mx.nd.array(x))]
    return out if all_stages else out[-2:]


@pytest.mark.parametrize("name, all_stages", [("lwpose_mobilenet", False),
                                              ("lwpose_mobilenet", True),
                                              ("cpm_vgg19", False)])
def test_export_parity_mxnet_symbol_onnxruntime(tmp_path, name, all_stages):
    _needs_onnx()
    net = _small_net(name)
    meta = ex.make_meta(OP18, name, SMALL[name], num_stages=net.num_stages,
                        all_stages=all_stages, boxsize=128)
    files = ex.export_network(net, str(tmp_path / "m"), meta)
    assert all(os.path.isfile(files[k]) for k in ("symbol", "params", "onnx", "meta"))
    with warnings.catch_warnings():  # MXNet: "cannot decide type for data" (harmless)
        warnings.simplefilter("ignore", UserWarning)
        sym = mx.gluon.SymbolBlock.imports(files["symbol"], ["data"], files["params"])
    ort = ex.OnnxRunner(files["onnx"], providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    # dynamic batch, height and width: sizes other than the export's sample (1, 3, 64, 64)
    for shape in [(1, 3, 128, 96), (2, 3, 64, 160), (1, 3, 100, 76)]:
        x = rng.uniform(-0.5, 0.5, shape).astype(np.float32)
        ref = _gluon_maps(net, x, all_stages)
        assert len(ref) == (2 * net.num_stages if all_stages else 2)
        s = sym(mx.nd.array(x))
        s = [o.asnumpy() for o in (s if isinstance(s, (list, tuple)) else [s])]
        o = ort.run_all(x)
        r_sym, r_ort = ex.compare_maps(ref, s, RTOL, ATOL), ex.compare_maps(ref, o, RTOL, ATOL)
        assert r_sym["ok"], r_sym
        assert r_ort["ok"], r_ort
        assert np.abs(ref[-1]).max() > 1e-3   # not all-zero maps
        pafs, heat = ort(x)
        np.testing.assert_array_equal(pafs, o[-2])
        np.testing.assert_array_equal(heat, o[-1])


def test_onnx_graph_is_cleaned(tmp_path):
    _needs_onnx()
    import onnx
    net = _small_net("lwpose_mobilenet")
    meta = ex.make_meta(OP18, "lwpose_mobilenet", SMALL["lwpose_mobilenet"],
                        num_stages=net.num_stages, all_stages=True)
    files = ex.export_network(net, str(tmp_path / "m"), meta)
    model = onnx.load(files["onnx"])
    onnx.checker.check_model(model)
    g = model.graph
    assert [i.name for i in g.input] == ["image"]
    assert [o.name for o in g.output] == ["pafs_1", "heatmaps_1", "pafs", "heatmaps"]
    assert len(g.initializer) > 100       # the weights, as initializers only

    def dims(vi):
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

    assert dims(g.input[0]) == ["batch", 3, "height", "width"]
    assert dims(g.output[3]) == ["batch", 19, "map_height", "map_width"]
    assert dims(g.output[2]) == ["batch", 38, "map_height", "map_width"]
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["mxpose_meta"])["skeleton"] == OP18.to_dict()
    assert model.opset_import[0].version >= 13


# ---------------------------------------------------------------------------------------
# Predictor from exported files: same people as the Gluon Predictor
# ---------------------------------------------------------------------------------------
class MapReader(HybridBlock):
    """A 'network' that reads maps stored in the pixels of an image: each stride x stride
    block holds its cell's 2L + K + 1 values (value m stored as 128 + 127 m), and two
    stride-8 8x8 convolutions with one-hot weights read them back. With real people's
    maps stored in an image this gives the Predictor real people to find, through a real
    exported graph."""

    def __init__(self, num_pafs, num_heatmaps, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.paf = nn.Conv2D(num_pafs, 8, strides=8, in_channels=3)
            self.heat = nn.Conv2D(num_heatmaps, 8, strides=8, in_channels=3)
        self.initialize()
        for conv, first in ((self.paf, 0), (self.heat, num_pafs)):
            c_out = conv.weight.shape[0]
            w = np.zeros((c_out, 3 * 64), np.float32)
            w[np.arange(c_out), first + np.arange(c_out)] = 256.0 / 127.0
            conv.weight.set_data(mx.nd.array(w.reshape(c_out, 3, 8, 8)))
            conv.bias.set_data(mx.nd.zeros(c_out))

    def hybrid_forward(self, F, x):
        return self.paf(x), self.heat(x)


def _store_maps(pafs, heat):
    """The image (BGR uint8) whose pixels MapReader reads as these maps."""
    maps = np.concatenate([pafs, heat])                      # (C, H, W), C <= 192
    C, H, W = maps.shape
    slots = np.full((3 * 64, H, W), 128.0)
    slots[:C] = 128 + 127 * maps
    v = np.clip(np.round(slots), 0, 255).astype(np.uint8)
    # slot = colour * 64 + dy * 8 + dx
    img = v.reshape(3, 8, 8, H, W).transpose(3, 1, 4, 2, 0).reshape(H * 8, W * 8, 3)
    return np.ascontiguousarray(img)


def _two_people_image(h, w):
    """(people, image): two synthetic people and an (h, w) image storing their ground-truth
    maps for a MapReader; test_quantize uses it too."""
    people = R.synthetic_people(OP18, 2, w, h, np.random.default_rng(4), jitter=2.0,
                                scale=(0.9, 1.0), max_rotate=10)
    pafs = render_pafs(people, OP18.limb_index, (h // 8, w // 8), stride=8)
    heat = render_heatmaps(people, (h // 8, w // 8), stride=8, sigma=7.0)
    return people, _store_maps(pafs, heat)


@pytest.fixture(scope="module")
def reader_export(tmp_path_factory):
    """An exported MapReader and an image storing two people's maps."""
    _needs_onnx()
    h, w = 256, 320
    people, img = _two_people_image(h, w)
    net = MapReader(OP18.num_pafs, OP18.num_heatmaps)
    prefix = str(tmp_path_factory.mktemp("export") / "reader")
    meta = ex.make_meta(OP18, "map_reader", num_stages=1, boxsize=h,
                        decode_params={"thre1": 0.1, "thre2": 0.05})
    ex.export_network(net, prefix, meta)
    return {"net": net, "prefix": prefix, "img": img, "people": people, "h": h}


def test_map_reader_reads_the_maps_back(reader_export):
    r = reader_export
    x = Predictor(r["net"], OP18, boxsize=r["h"]).input_batch(r["img"])[0]
    pafs, heat = [o.asnumpy()[0] for o in r["net"](mx.nd.array(x))]
    h, w = r["img"].shape[0] // 8, r["img"].shape[1] // 8
    np.testing.assert_allclose(heat, render_heatmaps(r["people"], (h, w), stride=8),
                               atol=0.5 / 127 + 1e-6)


@pytest.mark.parametrize("engine", ["symbol", "onnx"])
def test_predictor_from_exported_finds_the_same_people(reader_export, engine):
    r = reader_export
    gluon = Predictor(r["net"], OP18, boxsize=r["h"], decode_params={"thre1": 0.1})
    ref_people, ref_scores = gluon(r["img"])
    # the test is meaningful: both people are found, in image coordinates
    assert len(ref_people) == 2
    for p in r["people"]:
        assert np.abs(ref_people[:, :, :2] - p[None, :, :2]).max(axis=(1, 2)).min() < 1.0
    pred = Predictor.from_exported(r["prefix"] + ".onnx", engine=engine)
    assert pred.engine == engine and pred.boxsize == r["h"] and pred.skeleton == OP18
    assert pred.decode_params == {"thre1": 0.1, "thre2": 0.05}
    people, scores = pred(r["img"])
    assert ex.people_difference((ref_people, ref_scores), (people, scores)) < 1e-3
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5)


def test_onnx_engine_runs_without_mxnet_and_model_code(reader_export, tmp_path):
    """The ONNX export runs with onnxruntime alone: MXNet and mxpose.model_zoo blocked."""
    r = reader_export
    import cv2
    img_path = str(tmp_path / "maps.png")
    cv2.imwrite(img_path, r["img"])
    code = (
        "import sys\n"
        "sys.modules['mxnet'] = None\n"
        "sys.modules['mxpose.model_zoo'] = None\n"
        "import cv2\n"
        "from mxpose.infer import Predictor\n"
        f"pred = Predictor.from_exported({r['prefix']!r}, engine='onnx')\n"
        f"people, scores = pred(cv2.imread({img_path!r}))\n"
        "print(len(people), 'mxnet' in sys.modules and sys.modules['mxnet'] is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "False"]


def test_symbol_only_export_and_bad_inputs(tmp_path):
    net = _small_net("lwpose_mobilenet")
    meta = ex.make_meta(OP18, "lwpose_mobilenet", num_stages=2)
    files = ex.export_network(net, str(tmp_path / "s"), meta, formats=("symbol",))
    assert set(files) == {"symbol", "params", "meta"}
    assert not os.path.exists(str(tmp_path / "s.onnx"))
    assert ex.read_meta(files["symbol"])["outputs"] == ["pafs", "heatmaps"]
    assert ex.resolve_export_prefix(files["params"]) == str(tmp_path / "s")
    with pytest.raises(ValueError, match="formats"):
        ex.export_network(net, str(tmp_path / "t"), meta, formats=("tflite",))
    with pytest.raises(FileNotFoundError, match="sidecar"):
        ex.read_meta(str(tmp_path / "absent"))
    (tmp_path / "bad-meta.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ex.ExportError, match="not an mxpose export"):
        ex.read_meta(str(tmp_path / "bad"))
    with pytest.raises(ValueError, match="engine"):
        Predictor.from_exported(files["meta"], engine="tensorrt")


def test_export_predictor_names_paf_first_outputs(tmp_path, monkeypatch):
    # tools/export.py exports through export_predictor: a PAF-first network's all-stages
    # outputs must be numbered by its output_kinds (pafs_1, pafs_2, heatmaps_1, ...).
    from types import SimpleNamespace
    net = SimpleNamespace(num_stages=3, output_kinds=("paf", "paf", "heat", "paf", "heat"))
    pred = SimpleNamespace(net=net, skeleton=OP18, stride=8, boxsize=368, scales=(1.0,),
                           flip=False, decode_params={}, ctx=None)
    monkeypatch.setattr(ex, "export_network", lambda net, prefix, meta, formats: meta)
    meta = ex.export_predictor(pred, "paffirst_vgg19", {}, str(tmp_path / "x"),
                               all_stages=True)
    assert meta["outputs"] == ["pafs_1", "pafs_2", "heatmaps_1", "pafs", "heatmaps"]


# ---------------------------------------------------------------------------------------
# tools/export.py
# ---------------------------------------------------------------------------------------
def _tiny_lw_weights(tmp_path):
    """(experiment YAML, .params) of a tiny random LW network (boxsize 128) for the tools'
    -c/--weights; test_quantize uses it too."""
    net = _small_net("lwpose_mobilenet")
    weights = str(tmp_path / "lw.params")
    net.save_parameters(weights)
    cfg = tmp_path / "lw.yaml"
    cfg.write_text("name: lwtiny\ndata: {skeleton: openpose_coco18}\n"
                   "model: {name: lwpose_mobilenet, kwargs: {width_mult: 0.25, "
                   "num_channels: 32}}\ntest: {boxsize: 128}\n")
    return cfg, weights


def _tool(*args):
    return subprocess.run([sys.executable, os.path.join("tools", "export.py"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_tool_help():
    out = _tool("--help")
    assert out.returncode == 0 and "--all-stages" in out.stdout and "--verify" in out.stdout


def test_tool_exports_and_verifies(tmp_path, media):
    _needs_onnx()
    cfg, weights = _tiny_lw_weights(tmp_path)
    # a test margin (rounded up to the stride: 16) travels in the sidecar
    cfg.write_text(cfg.read_text().replace("test: {boxsize: 128}",
                                           "test: {boxsize: 128, margin: 12}"))
    out_prefix = str(tmp_path / "exp" / "lw")
    out = _tool("-c", str(cfg), "--weights", weights, "--out", out_prefix, "--flip",
                "--verify", "--image", os.path.join(media, "COCO_val2014_000000000192.jpg"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verification passed" in out.stdout
    meta = ex.read_meta(out_prefix)
    assert meta["model"] == {"name": "lwpose_mobilenet", "num_stages": 2,
                             "kwargs": {"width_mult": 0.25, "num_channels": 32}}
    assert meta["boxsize"] == 128 and meta["test"]["flip"] is True
    assert meta["test"]["margin"] == 16
    from mxpose.infer import Predictor
    assert Predictor.from_exported(out_prefix, engine="onnx").margin == 16
    assert meta["source"]["weights"] == weights
    # user mistakes: one line, exit 2
    bad = _tool("-c", str(cfg), "--weights", str(tmp_path / "nope.params"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    bad = _tool("-c", str(cfg), "--weights", weights, "--formats", "tflite")
    assert bad.returncode == 2 and "--formats" in bad.stderr


def _cancelling_net(offset, seed=3):
    """A small net whose last-stage maps come out of cancelling large activations: the
    hidden layer of each last head is shifted by ``offset`` (past its ReLU) and the output
    bias takes the shift back out. The maps stay of order one while float32 loses
    ~offset * eps of them: correct exports then differ from MXNet by more than the fixed
    relative tolerance (the small-model failure that the float64 reference fixes)."""
    net = _small_net("lwpose_mobilenet", seed)
    params = net.collect_params()
    names = [k for k in params if "head" in k]
    last = names[-1].rsplit("__head", 1)[0]
    for head in ("__head0", "__head1"):
        hidden = params[f"{last}{head}__convrelu0_conv0_bias"]
        hidden.set_data(hidden.data() + offset)
        w = params[f"{last}{head}_conv0_weight"].data()
        out = params[f"{last}{head}_conv0_bias"]
        out.set_data(out.data() - offset * w.sum(axis=(1, 2, 3)))
    return net


def test_verify_scales_tolerance_to_float32_and_still_catches_wrong_exports(tmp_path, media):
    _needs_onnx()
    import cv2
    image = cv2.imread(os.path.join(media, "COCO_val2014_000000000192.jpg"))
    net = _cancelling_net(3e5)
    kw = SMALL["lwpose_mobilenet"]
    meta = ex.make_meta(OP18, "lwpose_mobilenet", kw, num_stages=net.num_stages,
                        all_stages=False, boxsize=128)
    prefix = str(tmp_path / "m")
    ex.export_network(net, prefix, meta)
    pred = Predictor(net, OP18, boxsize=128)
    # the fixed relative tolerance alone rejects this correct export ...
    x, _ = pred.input_batch(image)
    ref = _gluon_maps(net, x, False)
    ort = ex.OnnxRunner(prefix + ".onnx", providers=["CPUExecutionProvider"])
    assert not ex.compare_maps(ref, ort.run_all(x), RTOL, ATOL)["ok"]
    # ... measured against what float32 loses on this network, it passes, people agree
    rep = ex.verify_export(prefix, pred, image)
    assert rep["ok"], rep
    assert max(rep["tolerance"]["float32_noise"]) > RTOL * np.abs(ref[-1]).max() / 4
    assert np.array_equal(ref[-1], _gluon_maps(net, x, False)[-1])   # cast back exactly
    # an export of other weights (a genuinely wrong export) still fails, maps and people
    other = Predictor(_cancelling_net(3e5, seed=4), OP18, boxsize=128)
    bad = ex.verify_export(prefix, other, image)
    assert not bad["ok"] and not bad["onnx"]["maps_ok"] and not bad["symbol"]["maps_ok"]
    # and so does a single wrong output weight in the ONNX file
    w = net.collect_params()
    key = [k for k in w if k.endswith("_conv0_weight") and "head1" in k][-1]
    w[key].set_data(w[key].data() * 1.01)
    assert not ex.verify_export(prefix, Predictor(net, OP18, boxsize=128), image)["ok"]
