"""CMU's multi-stage CPM network on a VGG-19 trunk (Cao et al., OpenPose 2017).

Layer for layer the network of OpenPose's ``pose_deploy_linevec_{coco,mpi}.prototxt``:

* VGG-19 ``conv1_1`` .. ``conv4_2`` (3x3, pad 1, ReLU) with 2x2/2 max pools after
  ``conv1_2``, ``conv2_2`` and ``conv3_4``, then ``conv4_3_CPM`` (256) and ``conv4_4_CPM``
  (128), both 3x3 + ReLU: the features F at stride 8.
* Stage 1, two branches on F: ``conv5_{1,2,3}_CPM_L{b}`` 3x3/128 + ReLU,
  ``conv5_4_CPM_L{b}`` 1x1/512 + ReLU, ``conv5_5_CPM_L{b}`` 1x1/out (no ReLU).
* Stage t >= 2 on ``concat(PAF_{t-1}, heat_{t-1}, F)`` (``concat_stage{t}``, in that
  order): ``Mconv{1..5}_stage{t}_L{b}`` 7x7/128 pad 3 + ReLU, ``Mconv6_stage{t}_L{b}``
  1x1/128 + ReLU, ``Mconv7_stage{t}_L{b}`` 1x1/out.

Branch ``L1`` predicts the PAFs (2L channels), ``L2`` the heatmaps (K+1 channels). Every
convolution is a child block registered under its Caffe layer name, so the structural
parameter names (those of ``save_parameters``) are ``conv1_1.weight``,
``Mconv7_stage6_L2.bias`` ...: Caffe weights map onto them by name
(:mod:`mxpose.caffe_import`), and checkpoints with a different number of stages share
every name they have in common.

Pooling uses Caffe's ceil rounding so odd feature sizes match Caffe (and OpenCV's DNN
module) exactly. Input: BGR, ``(v - 128) / 256`` (CMU's convention, see
:func:`mxpose.data.transforms.normalize_image`).
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from .common import check_act, relu, resolve_sizes

__all__ = ["CPMVGG19", "cpm_vgg19", "VGG19_LAYERS"]

# (caffe name, out channels) of the trunk in forward order; None marks a 2x2/2 max pool.
VGG19_LAYERS: Tuple = (
    ("conv1_1", 64), ("conv1_2", 64), None,
    ("conv2_1", 128), ("conv2_2", 128), None,
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), None,
    ("conv4_1", 512), ("conv4_2", 512),
)
_CPM_LAYERS = (("conv4_3_CPM", 256), ("conv4_4_CPM", 128))

# He init keeps a randomly initialised trunk trainable; the stages use CMU's own
# filler (gaussian std 0.01, zero bias), as in the prototxt.
_HE = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
_CMU = mx.init.Normal(0.01)


class CPMVGG19(HybridBlock):
    """The CMU OpenPose body network.

    Parameters
    ----------
    num_heatmaps : int, optional
        K + 1 heatmap channels (branch L2). Default 19 (COCO).
    num_pafs : int, optional
        2L PAF channels (branch L1). Default 38 (COCO).
    num_stages : int
        S >= 1 prediction stages (CMU: 6).
    skeleton : str or Skeleton, optional
        Gives ``num_heatmaps``/``num_pafs`` when those are not passed.
    act : {'activation', 'relu_op'}
        How the ReLUs are written (:data:`mxpose.model_zoo.common.ACT_FORMS`); same
        parameters and outputs, 'activation' is the fast one on CPU.

    Outputs
    -------
    A flat sequence ``(paf_1, heat_1, ..., paf_S, heat_S)`` (tuple imperatively, list
    when hybridized): ``paf_s`` float32 ``(B, 2L, H, W)`` and ``heat_s`` ``(B, K+1, H, W)``
    with ``H = ceil(h / 8)``, ``W = ceil(w / 8)`` for a ``(B, 3, h, w)`` input. Use
    :func:`mxpose.model_zoo.pair_outputs` to group them per stage.
    """

    def __init__(self, num_heatmaps: Optional[int] = None, num_pafs: Optional[int] = None,
                 num_stages: int = 6, skeleton=None, act: str = "activation", **kwargs):
        super().__init__(**kwargs)
        self.act = check_act(act)
        self.num_heatmaps, self.num_pafs = resolve_sizes(num_heatmaps, num_pafs, skeleton)
        if int(num_stages) < 1:
            raise ValueError(f"num_stages must be >= 1, got {num_stages}")
        self.num_stages = int(num_stages)
        self.stride = 8
        # Forward plan of the trunk: layer names, or None for a pool.
        self._trunk: List[Optional[str]] = []
        # _stages[t][b] lists the conv names of stage t+1, branch b (0: PAF, 1: heat).
        self._stages: List[Tuple[List[str], List[str]]] = []
        with self.name_scope():
            cin = 3
            for item in VGG19_LAYERS + _CPM_LAYERS:
                if item is None:
                    self._trunk.append(None)
                    continue
                name, cout = item
                self._add_conv(name, cout, 3, cin, _HE)
                self._trunk.append(name)
                cin = cout
            feat = cin
            outs = (self.num_pafs, self.num_heatmaps)
            for t in range(1, self.num_stages + 1):
                branches = ([], [])
                for b in (0, 1):
                    lb = f"L{b + 1}"
                    if t == 1:
                        spec = [(f"conv5_{i}_CPM_{lb}", 128, 3) for i in (1, 2, 3)]
                        spec += [(f"conv5_4_CPM_{lb}", 512, 1), (f"conv5_5_CPM_{lb}", outs[b], 1)]
                        c = feat
                    else:
                        spec = [(f"Mconv{i}_stage{t}_{lb}", 128, 7) for i in range(1, 6)]
                        spec += [(f"Mconv6_stage{t}_{lb}", 128, 1),
                                 (f"Mconv7_stage{t}_{lb}", outs[b], 1)]
                        c = feat + self.num_pafs + self.num_heatmaps
                    for name, cout, k in spec:
                        self._add_conv(name, cout, k, c, _CMU)
                        branches[b].append(name)
                        c = cout
                self._stages.append(branches)
            self.pool = nn.MaxPool2D(pool_size=2, strides=2, ceil_mode=True)

    def _add_conv(self, name, cout, k, cin, init):
        conv = nn.Conv2D(cout, k, padding=k // 2, in_channels=cin, prefix=name + "_",
                         weight_initializer=init, bias_initializer="zeros")
        setattr(self, name, conv)

    # Caffe layer names of the trunk convolutions (VGG part only), in forward order.
    @property
    def base_layer_names(self) -> List[str]:
        return [it[0] for it in VGG19_LAYERS if it is not None]

    def hybrid_forward(self, F, x):
        for name in self._trunk:
            x = self.pool(x) if name is None else relu(F, getattr(self, name)(x), self.act)
        feat = x
        outputs = []
        prev = None
        for branches in self._stages:
            inp = feat if prev is None else F.concat(prev[0], prev[1], feat, dim=1)
            pair = []
            for names in branches:
                y = inp
                for i, name in enumerate(names):
                    y = getattr(self, name)(y)
                    if i < len(names) - 1:
                        y = relu(F, y, self.act)
                pair.append(y)
            prev = pair
            outputs.extend(pair)
        return tuple(outputs)


def cpm_vgg19(num_heatmaps: Optional[int] = None, num_pafs: Optional[int] = None,
              num_stages: int = 6, skeleton=None, act: str = "activation",
              **kwargs) -> CPMVGG19:
    """Build :class:`CPMVGG19` (uninitialised; call ``initialize()`` or load weights)."""
    return CPMVGG19(num_heatmaps=num_heatmaps, num_pafs=num_pafs, num_stages=num_stages,
                    skeleton=skeleton, act=act, **kwargs)
