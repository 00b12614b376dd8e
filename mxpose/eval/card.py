"""The evaluation card: everything needed to rerun an AP and get the same number.

A keypoint AP depends on far more than the checkpoint: scales, flip, boxsize, the
decoder's mode and thresholds, how people are ranked, the coordinate convention of the
results, which ground truth (file and release), which images, and the versions of
pycocotools and of the code. :func:`make_card` gathers all of them into one JSON-able
dict that ``tools/evaluate.py`` prints (as a one-line summary under each table) and
writes with ``--json``; :func:`card_summary` is that line.
"""
from __future__ import annotations

import inspect
import os
from typing import Optional, Sequence

from ..provenance import (code_revision, file_fingerprint, hash_ids, library_versions,
                          sha256_file, short_hash)

__all__ = ["COORDINATES", "decoder_settings", "ground_truth_from_db",
           "ground_truth_from_file", "make_card", "card_summary"]

#: The coordinate convention of the keypoints mxpose writes as COCO results.
COORDINATES = ("x, y in pixels of the original (stored) image, 0-based, (0, 0) = centre of "
               "the top-left pixel, rounded to 0.01; v = 1 where the part was found, else 0 "
               "(pycocotools' convention)")


def decoder_settings(decode_params: Optional[dict] = None) -> dict:
    """Every parameter of :class:`mxpose.decode.Decoder`: its defaults overridden by
    ``decode_params``, plus the person-score formula the results are ranked by."""
    from ..decode import paf
    sig = inspect.signature(paf.Decoder.__init__)
    out = {name: p.default for name, p in sig.parameters.items()
           if name not in ("self", "skeleton") and p.default is not inspect.Parameter.empty}
    out.update(decode_params or {})
    out["person_score"] = paf.PERSON_SCORE
    return out


def ground_truth_from_db(db, split: str) -> dict:
    """The card's ground-truth entry of a pose DB split."""
    return {"kind": "db", "path": os.path.abspath(db.path), "content_hash": db.content_hash,
            "split": split, "dataset": db.dataset, "layout": db.skeleton.name,
            "sources": db.sources}


def ground_truth_from_file(path: str, images: str) -> dict:
    """The card's ground-truth entry of a COCO annotation file."""
    fp = file_fingerprint(path)
    return {"kind": "coco_file", "path": fp["path"], "sha256": fp["sha256"],
            "size": fp["size"], "images": os.path.abspath(images)}


def _model_entry(predictor=None, oracle=None, model_name: Optional[str] = None,
                 checkpoint: Optional[str] = None) -> dict:
    if oracle is not None:
        return {"name": "oracle (ground-truth maps)", "layout": oracle.skeleton.name,
                "checkpoint": None, "sha256": None}
    return {"name": model_name, "layout": predictor.skeleton.name,
            "engine": predictor.engine,
            "checkpoint": os.path.abspath(checkpoint) if checkpoint else None,
            "sha256": sha256_file(checkpoint) if checkpoint and os.path.isfile(checkpoint)
            else None}


def make_card(*, ground_truth: dict, image_ids: Sequence[int], predictor=None, oracle=None,
              model_name: Optional[str] = None, checkpoint: Optional[str] = None,
              subset: Optional[dict] = None, rotate: float = 0.0, seconds: float = 0.0,
              images: int = 0, failures: int = 0) -> dict:
    """The evaluation card of one run.

    Parameters
    ----------
    ground_truth : dict
        :func:`ground_truth_from_db` or :func:`ground_truth_from_file`.
    image_ids : sequence of int
        The evaluated images (count and SHA-256 of the sorted ids go in the card).
    predictor, oracle
        The :class:`~mxpose.infer.Predictor` that ran, or the
        :class:`~mxpose.eval.runner.OracleMaps` (exactly one).
    model_name, checkpoint : str
        The model zoo name and the ``.params`` file (hashed).
    subset : dict, optional
        How the images were chosen, e.g. ``{"max_images": 200, "seed": 0}``.
    rotate : float
        Rotation applied to the images (robustness rows).
    seconds, images, failures
        Wall time of the run, images evaluated, images that failed.
    """
    if (predictor is None) == (oracle is None):
        raise ValueError("make_card needs exactly one of predictor / oracle")
    if oracle is not None:
        inference = {"scales": [1.0], "flip": False, "boxsize": oracle.boxsize,
                     "stride": oracle.stride, "sigma": oracle.sigma}
        decode_params = {}
    else:
        inference = {"scales": list(predictor.scales), "flip": bool(predictor.flip),
                     "boxsize": int(predictor.boxsize), "stride": int(predictor.stride)}
        for key in ("max_side", "max_pixels"):   # canvas bounds, where the Predictor has them
            if hasattr(predictor, key):
                inference[key] = getattr(predictor, key)
        if getattr(predictor, "margin", 0):
            inference["margin"] = int(predictor.margin)
        decode_params = predictor.decode_params
    ids = [int(i) for i in image_ids]
    versions = library_versions()
    return {
        "format": "mxpose-eval-card", "version": 1,
        "model": _model_entry(predictor, oracle, model_name, checkpoint),
        "inference": inference,
        "decoder": decoder_settings(decode_params),
        "coordinates": COORDINATES,
        "ground_truth": ground_truth,
        "images": {"count": len(ids), "ids_sha256": hash_ids(ids), "subset": subset,
                   "evaluated": int(images), "failed": int(failures),
                   "rotate_degrees": float(rotate)},
        "versions": versions,
        "code": code_revision(),
        "run": {"seconds": round(float(seconds), 3),
                "images_per_second": round(images / seconds, 3) if seconds > 0 else None},
    }


def _scales_text(inf: dict) -> str:
    sc = inf["scales"]
    if len(sc) == 1:
        size = inf["boxsize"] * sc[0]
        return f"single scale {size:g}"
    return f"{len(sc)} scales x{','.join(f'{s:g}' for s in sc)} of {inf['boxsize']}"


def card_summary(card: dict) -> str:
    """One line: e.g. ``single scale 368, no flip, cmu decoder (thre1 0.1, thre2 0.05),
    200 val images of synthetic.db@3f2a91c0de, pycocotools 2.0.7, mxpose 0.1.0@ab12cd3``."""
    inf, dec, gt, im = card["inference"], card["decoder"], card["ground_truth"], card["images"]
    mode = dec.get("assembly", "cmu")
    if gt["kind"] == "db":
        where = (f"{im['count']} {gt['split']} images of {os.path.basename(gt['path'])}"
                 f"@{short_hash(gt.get('content_hash'))}")
    else:
        where = (f"{im['count']} images of {os.path.basename(gt['path'])}"
                 f"@{short_hash(gt.get('sha256'))}")
    if im.get("subset"):
        where += f" (subset seed {im['subset'].get('seed')})"
    if im.get("rotate_degrees"):
        where += f", rotated {im['rotate_degrees']:g} deg"
    code = card["code"]
    rev = "" if not code.get("git") else "@" + code["git"][:7] + ("+dirty" if code["dirty"]
                                                                   else "")
    model = card["model"]
    what = (f"{model['name']} {os.path.basename(model['checkpoint'])}@"
            f"{short_hash(model['sha256'])}" if model.get("checkpoint") else model["name"])
    return (f"{what}: {_scales_text(inf)}, {'flip' if inf['flip'] else 'no flip'}, "
            f"{mode} decoder (thre1 {dec.get('thre1')}, thre2 {dec.get('thre2')}), {where}, "
            f"pycocotools {card['versions'].get('pycocotools')}, "
            f"mxpose {card['versions'].get('mxpose')}{rev}")
