"""INT8 export: calibration set from a DB split, a quantized model close to fp32 (and
finding the same people), tools/export.py --int8 and tools/evaluate.py --exported."""
import os
import subprocess
import sys

import numpy as np
import pytest

mx = pytest.importorskip("mxnet")
pytest.importorskip("onnx", reason="INT8 export needs onnx")
pytest.importorskip("onnxruntime", reason="INT8 export needs onnxruntime")
pytest.importorskip("ml_dtypes", reason="onnxruntime.quantization needs ml_dtypes "
                    "(requirements.txt)")

from mxpose import export as ex  # noqa: E402
from mxpose.infer import Predictor  # noqa: E402
from mxpose.quantize import (QuantizeError, calibration_batches,  # noqa: E402
                             calibration_images, int8_prefix, quantize_export)
from mxpose.skeleton import get_skeleton  # noqa: E402

from test_export import (MapReader, _small_net, _tiny_lw_weights,  # noqa: E402
                         _two_people_image)

OP18 = get_skeleton("openpose_coco18")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# INT8 against fp32 on a tiny random LW network (outputs of order 300): uint8 activations
# through ~30 layers. Measured: max error 13 % and mean error 1.5 % of max|fp32|; the
# bounds leave room for other CPUs while a broken calibration (ranges off by a factor,
# a wrong scale) moves the maps by far more.
INT8_MAX_REL, INT8_MEAN_REL = 0.25, 0.03


@pytest.fixture(scope="module")
def synth_db(tmp_path_factory):
    from mxpose.data.synthetic import make_synthetic_db
    db = str(tmp_path_factory.mktemp("calib") / "synth.db")
    make_synthetic_db(db, 2, 3, seed=0, progress=False, min_size=160, max_size=224)
    return db


def test_calibration_images_subset_and_errors(synth_db, tmp_path):
    imgs = calibration_images(synth_db, "val", 2)
    assert len(imgs) == 2 and all(i.dtype == np.uint8 and i.ndim == 3 for i in imgs)
    assert len(calibration_images(synth_db, "val", 100)) == 3          # all there are
    with pytest.raises(QuantizeError, match="calibration set is empty.*'test'"):
        calibration_images(synth_db, "test", 10)
    with pytest.raises(QuantizeError, match="does not exist"):
        calibration_images(str(tmp_path / "nope.db"), "val", 10)
    with pytest.raises(QuantizeError, match="empty"):
        quantize_export(str(tmp_path / "x"), iter([]))  # checked before anything is read


def test_int8_lw_close_to_fp32(tmp_path, media):
    import cv2
    net = _small_net("lwpose_mobilenet")
    prefix = str(tmp_path / "lw")
    ex.export_network(net, prefix, ex.make_meta(OP18, "lwpose_mobilenet", num_stages=2,
                                                boxsize=128), ("onnx",))
    img = cv2.imread(os.path.join(media, "COCO_val2014_000000000192.jpg"))
    pred = Predictor(net, OP18, boxsize=128)
    calib = [img, np.ascontiguousarray(img[:, ::-1]), cv2.resize(img, (300, 400))]
    files = quantize_export(prefix, calibration_batches(calib, pred.input_batch, (1.0, 0.5)),
                            calibration={"images": 3})
    assert files["onnx"] == int8_prefix(prefix) + ".onnx" and files["batches"] == 6
    meta = ex.read_meta(files["meta"])
    assert meta["quantization"]["int8"] is True and meta["quantization"]["calibration"] == \
        {"images": 3}
    import onnx
    ops = {n.op_type for n in onnx.load(files["onnx"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    fp32, int8 = ex.OnnxRunner(prefix + ".onnx"), ex.OnnxRunner(files["onnx"])
    x = pred.input_batch(cv2.resize(img, (500, 350)))[0]     # not a calibration image
    for a, b in zip(fp32(x), int8(x)):
        scale = float(np.abs(a).max())
        assert scale > 1.0
        assert np.abs(a - b).max() <= INT8_MAX_REL * scale
        assert np.abs(a - b).mean() <= INT8_MEAN_REL * scale


def test_int8_map_reader_finds_the_same_people(tmp_path):
    # A network reading real people's maps from pixels (tests/test_export.py): after
    # quantization the Predictor must find the same people, in image coordinates.
    h, w = 256, 320
    _, img = _two_people_image(h, w)
    net = MapReader(OP18.num_pafs, OP18.num_heatmaps)
    prefix = str(tmp_path / "reader")
    ex.export_network(net, prefix, ex.make_meta(OP18, "map_reader", num_stages=1, boxsize=h,
                                                decode_params={"thre1": 0.1}), ("onnx",))
    ref = Predictor(net, OP18, boxsize=h, decode_params={"thre1": 0.1})
    ref_people, ref_scores = ref(img)
    assert len(ref_people) == 2
    files = quantize_export(prefix, calibration_batches([img], ref.input_batch))
    pred = Predictor.from_exported(files["onnx"], engine="onnx")
    got_people, got_scores = pred(img)
    assert len(got_people) == 2
    assert ex.people_difference((ref_people, ref_scores), (got_people, got_scores)) < 1.0


def _tool(name, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "tools", name), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)


def test_tools_int8_export_then_evaluate_exported(tmp_path, synth_db):
    cfg, weights = _tiny_lw_weights(tmp_path)
    out = str(tmp_path / "exp" / "lw")
    base = ["-c", str(cfg), "--weights", weights, "--out", out, "--formats", "onnx"]
    # an empty calibration split: one line, exit 2, nothing written
    bad = _tool("export.py", *base, "--int8", "--calib-db", synth_db, "--calib-split", "test")
    assert bad.returncode == 2 and "calibration set is empty" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not os.path.exists(out + ".onnx")
    bad = _tool("export.py", *base, "--int8")
    assert bad.returncode == 2 and "--calib-db" in bad.stderr
    r = _tool("export.py", *base, "--int8", "--calib-db", synth_db, "--calib-images", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    meta = ex.read_meta(out + "-int8.onnx")
    assert meta["quantization"]["calibration"]["images"] == 2
    assert meta["quantization"]["calibration"]["split"] == "val"
    assert meta["boxsize"] == 128
    # evaluate scores the exported file alone (its sidecar gives the skeleton etc.)
    ev = _tool("evaluate.py", "--db", synth_db, "--split", "val", "--exported",
               out + "-int8.onnx", "--no-progress", "--json", str(tmp_path / "ap.json"))
    assert ev.returncode == 0, ev.stdout + ev.stderr
    assert "Average Precision" in ev.stdout and "3 images" in ev.stdout
    import json
    figures = json.loads((tmp_path / "ap.json").read_text())
    assert figures["exported"]["0"]["images"] == 3
    bad = _tool("evaluate.py", "--db", synth_db, "--exported", out + "-int8.onnx", "--oracle")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
