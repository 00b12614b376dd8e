"""What the benchmarks share: writing their ``--json`` record and naming the machine.

The benchmarks run as scripts (this folder is then on ``sys.path``) or are loaded by the
tests from their file; each puts this folder on ``sys.path`` before importing it."""
import json
import platform
import sys

__all__ = ["machine", "write_json", "act_kwargs", "act_forms"]


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


def act_kwargs(name: str, act: str):
    """Model kwargs selecting the activation form ``act`` ('activation' or 'relu_op') of
    model ``name``: ``{"act": act}``, ``{}`` for a model with one form only (e.g.
    paffirst_vgg19's PReLUs) and 'activation', None for such a model and 'relu_op' (no
    such variant to time)."""
    from mxpose.model_zoo import model_arguments
    if "act" in model_arguments(name):
        return {"act": act}
    return {} if act == "activation" else None


def act_forms(name: str, act: str) -> list:
    """The activation forms to time for model ``name`` under a bench's ``--act`` value
    ('activation', 'relu_op' or 'both'), the default first; a model with one form only
    is timed once, as it is (['activation'])."""
    forms = ["relu_op"] if act == "relu_op" else ["activation"]
    if act == "both":
        forms.append("relu_op")
    return [f for f in forms if act_kwargs(name, f) is not None] or ["activation"]
