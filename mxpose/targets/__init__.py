"""Ground truth: Gaussian heatmaps, Part Affinity Fields and loss masks.

Thin validating wrappers (:mod:`mxpose.targets.maps`) over the compiled kernels in
``mxpose.targets._maps``; the grid convention and the CMU compatibility mode are
documented in :mod:`mxpose.targets.maps`.
"""
from .maps import (GAUSSIAN_CUT, MERGES, MODES, TargetRenderer, expand_mask,
                   render_heatmaps, render_masks, render_pafs, render_targets)

__all__ = ["render_heatmaps", "render_pafs", "render_masks", "expand_mask",
           "render_targets", "TargetRenderer", "MODES", "MERGES", "GAUSSIAN_CUT"]
