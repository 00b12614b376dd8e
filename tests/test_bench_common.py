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
