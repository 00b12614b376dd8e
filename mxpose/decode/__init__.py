"""Decoding network maps into people: peak finding and PAF assembly.

Thin validating wrappers (:mod:`mxpose.decode.paf`) over the compiled kernels in
``mxpose.decode._assemble``. Typical use::

    from mxpose.decode import Decoder
    decoder = Decoder("openpose_coco18")                 # CMU's thresholds by default
    people, scores = decoder(heatmaps, pafs, stride=8)   # (N, K, 3), (N,)
"""
from .paf import (ASSEMBLY_MODES, REFINE_MODES, SAMPLING_MODES, DecodeInfo, Decoder, assemble,
                  assemble_crowd, cap_peaks, connect_limbs, decode, find_peaks,
                  gaussian_kernel, limb_order, match_limbs, smooth_maps)

__all__ = ["Decoder", "decode", "find_peaks", "cap_peaks", "connect_limbs", "assemble",
           "assemble_crowd", "match_limbs", "limb_order", "gaussian_kernel", "smooth_maps", "DecodeInfo",
           "REFINE_MODES", "SAMPLING_MODES", "ASSEMBLY_MODES"]
