"""Evaluation: COCO keypoint AP (pycocotools) and MPII PCKh."""
from .coco import STAT_NAMES, evaluate_keypoints, format_table, gt_from_db, results_from_people
from .mpii import format_pckh, pckh

__all__ = ["STAT_NAMES", "evaluate_keypoints", "format_table", "gt_from_db",
           "results_from_people", "pckh", "format_pckh"]
