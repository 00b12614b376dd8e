"""tools/bench/_bench_common.py: the benchmarks' one --json writer."""
import importlib.util
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _common():
    path = os.path.join(ROOT, "tools", "bench", "_bench_common.py")
    spec = importlib.util.spec_from_file_location("_bench_common_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_write_json_writes_and_says_so(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert _common().write_json(str(out), {"rows": [1.5]}, indent=1) == 0
    assert json.loads(out.read_text()) == {"rows": [1.5]}
    assert out.read_text().startswith('{\n "rows"')          # the indent reaches json.dump
    assert capsys.readouterr().out == f"wrote {out}\n"


def test_unwritable_path_is_one_line_and_exit_1(tmp_path, capsys):
    assert _common().write_json(str(tmp_path), {"a": 1}) == 1     # a folder
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot write {tmp_path}:")


def test_act_kwargs_follow_the_model_constructors():
    """Models with the two ReLU forms get ``act``; paffirst_vgg19 (PReLU) has one form:
    no ``act`` argument, and no relu_op variant for the benches to time."""
    act_kwargs = _common().act_kwargs
    assert act_kwargs("lwpose_mobilenet", "relu_op") == {"act": "relu_op"}
    assert act_kwargs("cpm_vgg19", "activation") == {"act": "activation"}
    assert act_kwargs("paffirst_vgg19", "activation") == {}
    assert act_kwargs("paffirst_vgg19", "relu_op") is None
    from mxpose.model_zoo import get_model, model_arguments
    assert "act" not in model_arguments("paffirst_vgg19")
    act_forms = _common().act_forms
    assert act_forms("lwpose_mobilenet", "both") == ["activation", "relu_op"]
    assert act_forms("lwpose_mobilenet", "relu_op") == ["relu_op"]
    assert act_forms("paffirst_vgg19", "both") == ["activation"]
    assert act_forms("paffirst_vgg19", "relu_op") == ["activation"]
    get_model("paffirst_vgg19", num_heatmaps=26, num_pafs=52,
              **act_kwargs("paffirst_vgg19", "activation"))      # builds
