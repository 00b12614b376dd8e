"""Lightweight OpenPose (Osokin 2018): MobileNet v1 trunk, CPM-lite, residual refinement.

* Trunk: MobileNet v1 up to its twelfth layer (``conv5_5``; 512 channels at width 1),
  with the stride of ``conv4_2`` removed and ``conv5_1``'s depthwise conv dilated by 2, so
  the features sit at stride 8 like CMU's. Parameter order and shapes follow gluoncv's
  ``mobilenet{width}``, so its ImageNet weights load by position
  (:func:`mxpose.model_zoo.load_pretrained_base`).
* CPM-lite adapter: 1x1 ``align`` conv to C channels + ReLU, a residual trunk of three
  depthwise-separable 3x3 convs with ELU (no BN), then a 3x3 conv + ReLU.
* Initial stage: three 3x3/C convs + ReLU shared by two heads, each 1x1 to
  ``head_channels`` (512) + ReLU then 1x1 to the outputs.
* ``num_refinement`` refinement stages on ``concat(features, heat, paf)``: five residual
  blocks (1x1 conv + ReLU, then 3x3 conv + BN + ReLU and 3x3 dilation-2 conv + BN + ReLU,
  added to the 1x1 output), then two heads (1x1/C + ReLU, 1x1 to the outputs).

Outputs follow the zoo's convention: ``(paf_1, heat_1, ..., paf_S, heat_S)`` with
``S = 1 + num_refinement``, at stride 8.
"""
from __future__ import annotations

from typing import Optional

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from .common import check_act, relu, resolve_sizes

__all__ = ["LWPoseMobileNet", "lwpose_mobilenet"]

_HE = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
# Output layers start small so the first predictions are near zero (like the targets
# almost everywhere) and the initial loss is not dominated by random output scale.
_OUT = mx.init.Normal(0.01)

# MobileNet v1 depthwise-separable layers kept by LW-OpenPose, as
# (depthwise channels, pointwise channels, stride, dilation) at width 1.
_MOBILENET_DW = (
    (32, 64, 1, 1), (64, 128, 2, 1), (128, 128, 1, 1), (128, 256, 2, 1), (256, 256, 1, 1),
    (256, 512, 1, 1),   # conv4_2: stride 2 in MobileNet, 1 here (keeps stride 8)
    (512, 512, 1, 2),   # conv5_1: dilated instead
    (512, 512, 1, 1), (512, 512, 1, 1), (512, 512, 1, 1), (512, 512, 1, 1),
)


def _conv(cout, k, cin, stride=1, dilation=1, groups=1, bias=True, init=_HE):
    pad = dilation * (k // 2)
    return nn.Conv2D(cout, k, strides=stride, padding=pad, dilation=dilation, groups=groups,
                     in_channels=cin, use_bias=bias, weight_initializer=init)


class _ConvBNReLU(HybridBlock):
    def __init__(self, cout, k, cin, stride=1, dilation=1, groups=1, act="activation",
                 **kwargs):
        super().__init__(**kwargs)
        self.act = act
        with self.name_scope():
            self.conv = _conv(cout, k, cin, stride, dilation, groups, bias=False)
            self.bn = nn.BatchNorm(in_channels=cout)

    def hybrid_forward(self, F, x):
        return relu(F, self.bn(self.conv(x)), self.act)


class _ConvReLU(HybridBlock):
    def __init__(self, cout, k, cin, dilation=1, act="activation", **kwargs):
        super().__init__(**kwargs)
        self.act = act
        with self.name_scope():
            self.conv = _conv(cout, k, cin, dilation=dilation)

    def hybrid_forward(self, F, x):
        return relu(F, self.conv(x), self.act)


class _DWSeparableELU(HybridBlock):
    """Depthwise 3x3 + ELU, pointwise 1x1 + ELU, no BN (CPM-lite trunk)."""

    def __init__(self, c, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.dw = _conv(c, 3, c, groups=c, bias=False)
            self.pw = _conv(c, 1, c, bias=False)

    def hybrid_forward(self, F, x):
        x = F.LeakyReLU(self.dw(x), act_type="elu", slope=1.0)
        return F.LeakyReLU(self.pw(x), act_type="elu", slope=1.0)


class _CPMLite(HybridBlock):
    def __init__(self, cin, c, act="activation", **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.align = _ConvReLU(c, 1, cin, act=act)
            self.trunk = nn.HybridSequential()
            for _ in range(3):
                self.trunk.add(_DWSeparableELU(c))
            self.conv = _ConvReLU(c, 3, c, act=act)

    def hybrid_forward(self, F, x):
        x = self.align(x)
        return self.conv(x + self.trunk(x))


class _Head(HybridBlock):
    """1x1 conv + ReLU, then 1x1 conv to the output channels."""

    def __init__(self, cin, mid, cout, act="activation", **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.hidden = _ConvReLU(mid, 1, cin, act=act)
            self.out = _conv(cout, 1, mid, init=_OUT)

    def hybrid_forward(self, F, x):
        return self.out(self.hidden(x))


class _InitialStage(HybridBlock):
    def __init__(self, c, head_c, num_heatmaps, num_pafs, act="activation", **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.trunk = nn.HybridSequential()
            for _ in range(3):
                self.trunk.add(_ConvReLU(c, 3, c, act=act))
            self.heat = _Head(c, head_c, num_heatmaps, act=act)
            self.paf = _Head(c, head_c, num_pafs, act=act)

    def hybrid_forward(self, F, x):
        y = self.trunk(x)
        return self.paf(y), self.heat(y)


class _RefinementBlock(HybridBlock):
    def __init__(self, cin, c, act="activation", **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.initial = _ConvReLU(c, 1, cin, act=act)
            self.trunk = nn.HybridSequential()
            self.trunk.add(_ConvBNReLU(c, 3, c, act=act),
                           _ConvBNReLU(c, 3, c, dilation=2, act=act))

    def hybrid_forward(self, F, x):
        x = self.initial(x)
        return x + self.trunk(x)


class _RefinementStage(HybridBlock):
    def __init__(self, cin, c, num_heatmaps, num_pafs, num_blocks=5, act="activation",
                 **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.trunk = nn.HybridSequential()
            for i in range(num_blocks):
                self.trunk.add(_RefinementBlock(cin if i == 0 else c, c, act=act))
            self.heat = _Head(c, c, num_heatmaps, act=act)
            self.paf = _Head(c, c, num_pafs, act=act)

    def hybrid_forward(self, F, x):
        y = self.trunk(x)
        return self.paf(y), self.heat(y)


class LWPoseMobileNet(HybridBlock):
    """Lightweight OpenPose.

    Parameters
    ----------
    num_heatmaps, num_pafs : int, optional
        K + 1 and 2L output channels; default COCO's 19 / 38.
    num_refinement : int
        Refinement stages after the initial stage (LW trains 1, then 3 as a last step).
    width_mult : float
        MobileNet channel multiplier (gluoncv's ``mobilenet{width_mult}``: 1.0, 0.75, 0.5,
        0.25); channels are ``int(c * width_mult)``.
    num_channels : int
        Width C of CPM-lite and the stages (LW: 128).
    head_channels : int, optional
        Hidden width of the initial stage's heads; default ``4 * num_channels`` (512).
    skeleton : str or Skeleton, optional
        Gives the output sizes when they are not passed.
    act : {'activation', 'relu_op'}
        How the ReLUs are written (:data:`mxpose.model_zoo.common.ACT_FORMS`); same
        parameters and outputs, 'activation' is the fast one on CPU. The ELUs of CPM-lite
        are ``LeakyReLU(act_type='elu')``, oneDNN's form, either way.

    Outputs
    -------
    ``(paf_1, heat_1, ..., paf_S, heat_S)``, ``S = 1 + num_refinement``, each
    ``(B, C_out, ceil(h/8), ceil(w/8))`` for a ``(B, 3, h, w)`` input.
    """

    def __init__(self, num_heatmaps: Optional[int] = None, num_pafs: Optional[int] = None,
                 num_refinement: int = 1, width_mult: float = 1.0, num_channels: int = 128,
                 head_channels: Optional[int] = None, skeleton=None, act: str = "activation",
                 **kwargs):
        super().__init__(**kwargs)
        self.act = check_act(act)
        self.num_heatmaps, self.num_pafs = resolve_sizes(num_heatmaps, num_pafs, skeleton)
        if int(num_refinement) < 0:
            raise ValueError(f"num_refinement must be >= 0, got {num_refinement}")
        if not width_mult > 0 or int(num_channels) < 1:
            raise ValueError(f"width_mult and num_channels must be positive, got "
                             f"{width_mult}, {num_channels}")
        self.num_refinement = int(num_refinement)
        self.num_stages = 1 + self.num_refinement
        self.stride = 8
        c = int(num_channels)
        head_c = int(head_channels) if head_channels else 4 * c

        def w(ch):
            return max(1, int(ch * width_mult))

        with self.name_scope():
            self.backbone = nn.HybridSequential()
            self.backbone.add(_ConvBNReLU(w(32), 3, 3, stride=2, act=act))
            for dw, pw, s, d in _MOBILENET_DW:
                self.backbone.add(_ConvBNReLU(w(dw), 3, w(dw), stride=s, dilation=d,
                                              groups=w(dw), act=act))
                self.backbone.add(_ConvBNReLU(w(pw), 1, w(dw), act=act))
            self.cpm = _CPMLite(w(512), c, act=act)
            self.initial = _InitialStage(c, head_c, self.num_heatmaps, self.num_pafs, act=act)
            self.refinement = nn.HybridSequential()
            for _ in range(self.num_refinement):
                self.refinement.add(_RefinementStage(c + self.num_heatmaps + self.num_pafs, c,
                                                     self.num_heatmaps, self.num_pafs,
                                                     act=act))

    def hybrid_forward(self, F, x):
        feat = self.cpm(self.backbone(x))
        paf, heat = self.initial(feat)
        outputs = [paf, heat]
        for i in range(self.num_refinement):
            paf, heat = self.refinement[i](F.concat(feat, heat, paf, dim=1))
            outputs += [paf, heat]
        return tuple(outputs)


def lwpose_mobilenet(num_heatmaps: Optional[int] = None, num_pafs: Optional[int] = None,
                     num_refinement: int = 1, width_mult: float = 1.0, num_channels: int = 128,
                     head_channels: Optional[int] = None, skeleton=None,
                     act: str = "activation", **kwargs) -> LWPoseMobileNet:
    """Build :class:`LWPoseMobileNet` (uninitialised)."""
    return LWPoseMobileNet(num_heatmaps=num_heatmaps, num_pafs=num_pafs,
                           num_refinement=num_refinement, width_mult=width_mult,
                           num_channels=num_channels, head_channels=head_channels,
                           skeleton=skeleton, act=act, **kwargs)
