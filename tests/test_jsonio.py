"""mxpose.jsonio.read_json: the one JSON reader of the library and the tools; each way a
user's file can be wrong is one line of the caller's error type naming the file."""
import os
import subprocess
import sys

import pytest

from mxpose.jsonio import read_json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Mine(Exception):
    pass


def test_reads_json(tmp_path):
    p = tmp_path / "ok.json"
    p.write_text('{"a": [1, 2.5]}')
    assert read_json(p) == {"a": [1, 2.5]}


@pytest.mark.parametrize("make, msg", [
    (lambda d: d / "absent.json", r"^--x file .*absent\.json does not exist$"),
    (lambda d: d, r"^cannot read --x file .*: Is a directory$"),
    (lambda d: (d / "t.json").write_text("{1: 2") and d / "t.json",
     r"^--x file .*t\.json: not a JSON file \(.*line 1"),
    (lambda d: (d / "b.json").write_bytes(b"\xff\xfe\x00garbage") and d / "b.json",
     r"^--x file .*b\.json: not a JSON file \("),
])
def test_each_bad_file_is_one_line_of_the_callers_error(tmp_path, make, msg):
    with pytest.raises(_Mine, match=msg) as e:
        read_json(make(tmp_path), "--x file", _Mine)
    assert "\n" not in str(e.value)


def test_importing_it_imports_no_mxnet():
    code = "import sys, mxpose.jsonio; print('mxnet' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
