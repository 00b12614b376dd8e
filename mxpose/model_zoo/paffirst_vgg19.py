"""CMU's PAF-first network on a VGG-19 trunk (OpenPose BODY_25, BODY_25B, BODY_135).

Layer for layer the network of OpenPose's ``pose_deploy_body25.prototxt`` (and, with
other arguments, ``pose_deploy_body25b`` / ``pose_deploy_body135``):

* VGG-19 ``conv1_1`` .. ``conv4_2`` (3x3, pad 1; ReLU, except ``conv4_2`` which is
  followed by the PReLU ``prelu4_2``) with 2x2/2 max pools after ``conv1_2``,
  ``conv2_2`` and ``conv3_4``, then ``conv4_3_CPM`` (256) and ``conv4_4_CPM`` (128), each
  3x3 + PReLU (``prelu4_3_CPM``, ``prelu4_4_CPM``): the features F at stride 8.
* PAF stages first (Caffe branch ``L2``), stage ``s = 0 .. P-1`` on F (``s = 0``) or on
  ``concat(F, PAF_{s-1})`` (``concat_stage{s}_L2``).
* Then the heatmap stages (branch ``L1``), stage ``s = 0 .. H-1`` on
  ``concat(F, PAF_{P-1})`` (``s = 0``) or ``concat(F, heat_{s-1}, PAF_{P-1})``: the
  heatmaps are fed by the final PAFs.
* Every stage is ``n`` blocks ``Mconv{b}_stage{s}_L{l}`` (b = 1..n) of three 3x3
  convolutions ``_0, _1, _2`` in sequence, each followed by a PReLU ``Mprelu{b}_..._{i}``,
  whose three outputs are concatenated (3 x width channels); then ``Mconv{n+1}`` 1x1 +
  PReLU ``Mprelu{n+1}`` and ``Mconv{n+2}`` 1x1 to the output channels (no activation).

=========  =====================================  ==============================  ======
model      PAF stages (blocks, width, 1x1 width)  heatmap stages                  out
=========  =====================================  ==============================  ======
BODY_25    (5, 96, 256), 3 x (5, 128, 512)        (5, 96, 256), (5, 128, 512)     26, 52
BODY_25B   (5, 64, 256), (5, 128, 256),           (5, 128, 512)                   25, 72
           3 x (5, 128, 512)
BODY_135   3 x (8, 128, 256/512), (8, 256, 512)   (5, 256, 512)                   135, 304
=========  =====================================  ==============================  ======

:data:`PAFFIRST_CONFIGS` holds these as constructor arguments.

Note that CMU's branch names are the reverse of the 2017 CPM's: here ``L2`` are the PAFs
and ``L1`` the heatmaps. Every convolution and PReLU is a child block registered under
its Caffe layer name, so the structural parameter names are ``Mconv1_stage0_L2_0.weight``,
``Mprelu6_stage1_L1.alpha``, ``prelu4_2.alpha`` ...: Caffe weights (PReLU slopes
included) map onto them by name (:mod:`mxpose.caffe_import`).

Outputs
-------
The flat sequence of all ``P + H`` stage predictions, intermediate ones first in forward
order, then the final pair::

    (paf_0, ..., paf_{P-2}, heat_0, ..., heat_{H-2}, paf_{P-1}, heat_{H-1})

so that, as for every zoo network, ``out[-2], out[-1]`` are the final PAFs and heatmaps
(what the Predictor and the export use). :attr:`PafFirstVGG19.output_kinds` says which
output is which (``'paf'`` or ``'heat'``); :class:`mxpose.loss.MultiStageL2Loss` takes it
as ``kinds`` to supervise every stage with the right target, as CMU's training prototxt
does (a masked Euclidean loss of weight 1 on each of the P + H stages).

Input: BGR, ``(v - 128) / 256`` (CMU's convention). Pooling uses Caffe's ceil rounding.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from .common import resolve_sizes
from .cpm_vgg19 import VGG19_LAYERS

__all__ = ["PafFirstVGG19", "paffirst_vgg19", "PAFFIRST_CONFIGS"]

IntOrSeq = Union[int, Sequence[int]]

#: Constructor arguments of CMU's three PAF-first deploy networks.
PAFFIRST_CONFIGS = {
    "body25": dict(num_heatmaps=26, num_pafs=52, paf_stages=4, heat_stages=2,
                   paf_blocks=5, paf_width=(96, 128, 128, 128), paf_head=(256, 512, 512, 512),
                   heat_blocks=5, heat_width=(96, 128), heat_head=(256, 512)),
    "body25b": dict(num_heatmaps=25, num_pafs=72, paf_stages=5, heat_stages=1,
                    paf_blocks=5, paf_width=(64, 128, 128, 128, 128),
                    paf_head=(256, 256, 512, 512, 512),
                    heat_blocks=5, heat_width=128, heat_head=512),
    "body135": dict(num_heatmaps=135, num_pafs=304, paf_stages=4, heat_stages=1,
                    paf_blocks=8, paf_width=(128, 128, 128, 256),
                    paf_head=(256, 512, 512, 512),
                    heat_blocks=5, heat_width=256, heat_head=512),
}

# (caffe name, out channels) of the layers after the VGG part, each followed by a PReLU.
_CPM_LAYERS = (("conv4_3_CPM", 256), ("conv4_4_CPM", 128))
# Trunk layers followed by a PReLU (named prelu + the conv name without "conv").
_PRELU_TRUNK = ("conv4_2", "conv4_3_CPM", "conv4_4_CPM")

_HE = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
# CMU's training prototxt fills the stages with xavier (Caffe's: uniform, fan-in, scale 3)
# and starts every PReLU at Caffe's default slope 0.25.
_XAVIER = mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=3)
_SLOPE = mx.init.Constant(0.25)


def _per_stage(value: IntOrSeq, n: int, what: str) -> Tuple[int, ...]:
    """An int for every stage, or one value per stage."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        vals = (int(value),) * n
    else:
        vals = tuple(int(v) for v in value)
        if len(vals) != n:
            raise ValueError(f"{what} has {len(vals)} values for {n} stages")
    if any(v < 1 for v in vals):
        raise ValueError(f"{what} must be >= 1, got {vals}")
    return vals


class PafFirstVGG19(HybridBlock):
    """The PAF-first OpenPose network (BODY_25 by default).

    Parameters
    ----------
    num_heatmaps : int, optional
        Heatmap channels (K + 1 with background). Default 26 (BODY_25).
    num_pafs : int, optional
        PAF channels (2L). Default 52 (BODY_25).
    paf_stages, heat_stages : int
        P >= 1 PAF stages and H >= 1 heatmap stages (BODY_25: 4 and 2).
    paf_blocks, heat_blocks : int or sequence of int
        Blocks of three 3x3 convolutions per stage (one value, or one per stage).
    paf_width, heat_width : int or sequence of int
        Output channels of each 3x3 convolution of a stage's blocks.
    paf_head, heat_head : int or sequence of int
        Channels of each stage's 1x1 convolution before its output layer.
    skeleton : str or Skeleton, optional
        Gives ``num_heatmaps``/``num_pafs`` when those are not passed.
    trunk_width : float
        Channel multiplier of the VGG-19 trunk and the two CPM layers (channels
        ``max(8, int(c * trunk_width))``); 1.0 is CMU's network (the only setting the
        Caffe import and ImageNet weights fit), 0.25 a slim trunk for CPU runs.

    Outputs
    -------
    Flat sequence of ``P + H`` float32 maps, see the module docstring: the last two are
    the final ``paf (B, num_pafs, H, W)`` and ``heat (B, num_heatmaps, H, W)`` with
    ``H = ceil(h / 8)``, ``W = ceil(w / 8)``; :attr:`output_kinds` names each output.
    """

    def __init__(self, num_heatmaps: Optional[int] = None, num_pafs: Optional[int] = None,
                 paf_stages: int = 4, heat_stages: int = 2,
                 paf_blocks: IntOrSeq = 5, paf_width: IntOrSeq = (96, 128, 128, 128),
                 paf_head: IntOrSeq = (256, 512, 512, 512),
                 heat_blocks: IntOrSeq = 5, heat_width: IntOrSeq = (96, 128),
                 heat_head: IntOrSeq = (256, 512), skeleton=None, trunk_width: float = 1.0,
                 **kwargs):
        super().__init__(**kwargs)
        if num_heatmaps is None and num_pafs is None and skeleton is None:
            num_heatmaps, num_pafs = 26, 52
        self.num_heatmaps, self.num_pafs = resolve_sizes(num_heatmaps, num_pafs, skeleton)
        for what, n in (("paf_stages", paf_stages), ("heat_stages", heat_stages)):
            if int(n) < 1:
                raise ValueError(f"{what} must be >= 1, got {n}")
        if not float(trunk_width) > 0:
            raise ValueError(f"trunk_width must be > 0, got {trunk_width}")
        self.paf_stages, self.heat_stages = int(paf_stages), int(heat_stages)
        self.num_stages = self.paf_stages + self.heat_stages
        self.stride = 8
        P, H = self.paf_stages, self.heat_stages
        self.output_kinds: Tuple[str, ...] = (("paf",) * (P - 1) + ("heat",) * (H - 1)
                                              + ("paf", "heat"))
        spec = {"L2": (_per_stage(paf_blocks, P, "paf_blocks"),
                       _per_stage(paf_width, P, "paf_width"),
                       _per_stage(paf_head, P, "paf_head"), self.num_pafs),
                "L1": (_per_stage(heat_blocks, H, "heat_blocks"),
                       _per_stage(heat_width, H, "heat_width"),
                       _per_stage(heat_head, H, "heat_head"), self.num_heatmaps)}
        self._trunk: List[Tuple[Optional[str], Optional[str]]] = []   # (conv, prelu)
        # _stages[branch][s]: list of blocks, each a list of (conv, prelu) names; a block
        # of three is concatenated, a single (conv, prelu or None) is not.
        self._stages = {"L2": [], "L1": []}
        with self.name_scope():
            cin = 3
            for item in VGG19_LAYERS + _CPM_LAYERS:
                if item is None:
                    self._trunk.append((None, None))
                    continue
                name, cout = item
                if trunk_width != 1.0:
                    cout = max(8, int(cout * trunk_width))
                self._add_conv(name, cout, 3, cin, _HE)
                act = None
                if name in _PRELU_TRUNK:
                    act = "prelu" + name[len("conv"):]
                    self._add_prelu(act, cout)
                self._trunk.append((name, act))
                cin = cout
            feat = cin
            for branch in ("L2", "L1"):
                blocks, widths, heads, cout_final = spec[branch]
                for s in range(len(blocks)):
                    if branch == "L2":
                        c = feat if s == 0 else feat + self.num_pafs
                    else:
                        c = feat + self.num_pafs + (0 if s == 0 else self.num_heatmaps)
                    self._stages[branch].append(
                        self._add_stage(s, branch, blocks[s], widths[s], heads[s],
                                        cout_final, c))
            self.pool = nn.MaxPool2D(pool_size=2, strides=2, ceil_mode=True)

    def _add_conv(self, name, cout, k, cin, init):
        conv = nn.Conv2D(cout, k, padding=k // 2, in_channels=cin, prefix=name + "_",
                         weight_initializer=init, bias_initializer="zeros")
        setattr(self, name, conv)

    def _add_prelu(self, name, channels):
        setattr(self, name, nn.PReLU(alpha_initializer=_SLOPE, in_channels=channels,
                                     prefix=name + "_"))

    def _add_stage(self, s, branch, nblocks, width, head, cout, cin):
        plan = []
        tag = f"stage{s}_{branch}"
        for b in range(1, nblocks + 1):
            block = []
            for i in range(3):
                conv, act = f"Mconv{b}_{tag}_{i}", f"Mprelu{b}_{tag}_{i}"
                self._add_conv(conv, width, 3, cin if i == 0 else width, _XAVIER)
                self._add_prelu(act, width)
                block.append((conv, act))
            plan.append(block)
            cin = 3 * width
        conv, act = f"Mconv{nblocks + 1}_{tag}", f"Mprelu{nblocks + 1}_{tag}"
        self._add_conv(conv, head, 1, cin, _XAVIER)
        self._add_prelu(act, head)
        plan.append([(conv, act)])
        conv = f"Mconv{nblocks + 2}_{tag}"
        self._add_conv(conv, cout, 1, head, _XAVIER)
        plan.append([(conv, None)])
        return plan

    # Caffe layer names of the trunk convolutions (VGG part only), in forward order.
    @property
    def base_layer_names(self) -> List[str]:
        return [it[0] for it in VGG19_LAYERS if it is not None]

    def _run(self, F, x, plan):
        for block in plan:
            outs = []
            for conv, act in block:
                x = getattr(self, conv)(x)
                if act is not None:
                    x = getattr(self, act)(x)
                outs.append(x)
            if len(outs) > 1:
                x = F.concat(*outs, dim=1)
        return x

    def hybrid_forward(self, F, x):
        for conv, act in self._trunk:
            if conv is None:
                x = self.pool(x)
                continue
            x = getattr(self, conv)(x)
            x = getattr(self, act)(x) if act else F.Activation(x, act_type="relu")
        feat = x
        pafs, heats = [], []
        for plan in self._stages["L2"]:
            inp = feat if not pafs else F.concat(feat, pafs[-1], dim=1)
            pafs.append(self._run(F, inp, plan))
        for plan in self._stages["L1"]:
            inp = (F.concat(feat, pafs[-1], dim=1) if not heats else
                   F.concat(feat, heats[-1], pafs[-1], dim=1))
            heats.append(self._run(F, inp, plan))
        return tuple(pafs[:-1] + heats[:-1] + [pafs[-1], heats[-1]])


def paffirst_vgg19(num_heatmaps: Optional[int] = None, num_pafs: Optional[int] = None,
                   skeleton=None, **kwargs) -> PafFirstVGG19:
    """Build :class:`PafFirstVGG19` (uninitialised; BODY_25's layout by default).

    ``kwargs`` are the stage arguments of :class:`PafFirstVGG19`;
    ``PAFFIRST_CONFIGS['body25b']`` etc. give CMU's other networks.
    """
    return PafFirstVGG19(num_heatmaps=num_heatmaps, num_pafs=num_pafs, skeleton=skeleton,
                         **kwargs)
