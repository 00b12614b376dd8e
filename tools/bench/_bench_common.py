"""What the benchmarks share: writing their ``--json`` record and naming the machine.

The benchmarks run as scripts (this folder is then on ``sys.path``) or are loaded by the
tests from their file; each puts this folder on ``sys.path`` before importing it."""
import json
import platform
import sys

__all__ = ["machine", "write_json"]


def machine() -> str:
    """The processor's name, else the machine type (``platform.processor()`` is empty on
    some Linux builds)."""
    return platform.processor() or platform.machine()


def write_json(path: str, doc, indent: int = 2) -> int:
    """Write the benchmark's record ``doc`` to ``path`` and say so; 0, or 1 after one line
    on stderr when it cannot be written (the timings above are already printed)."""
    try:
        with open(path, "w") as f:
            json.dump(doc, f, indent=indent)
    except OSError as e:
        print(f"error: cannot write {path}: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0
