"""Reading a user's JSON file with one-line errors: the one implementation behind the COCO
reader, the export sidecar, checkpoint records and the tools' JSON flags (--sigmas,
--reproduce). Imports neither MXNet nor the rest of mxpose."""
from __future__ import annotations

import json
import os

__all__ = ["read_json"]


def read_json(path, what: str = "file", error: type = ValueError):
    """The parsed JSON of ``path``; ``error`` (a one-line message naming ``what`` and the
    file) when it is missing, unreadable or not JSON.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    what : str
        What the file is to the user, e.g. ``"annotation file"``, ``"--sigmas file"``.
    error : type
        The exception type raised (the caller's layer's error), built from one message.
    """
    path = str(path)
    if not os.path.exists(path):
        raise error(f"{what} {path} does not exist")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{what} {path}: not a JSON file ({e})") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
