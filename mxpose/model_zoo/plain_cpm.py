"""CMU's CPM-VGG19 written the plain Gluon way: the benchmarks' speed reference.

``Conv2D(activation='relu')`` layers in ``HybridSequential`` containers, the way a Gluon
user (or gluoncv) writes a network, with the layers, shapes and parameter order of
:class:`mxpose.model_zoo.CPMVGG19`. It exists so ``tools/bench/bench_infer.py`` and
``tools/bench/bench_train.py`` can time mxpose's network against what Gluon itself makes of
the same graph, in the same run. It is not in :func:`mxpose.model_zoo.get_model` (its
parameter names are Gluon's automatic ones, not Caffe's, so checkpoints do not carry
over); the benchmarks register it under :data:`NAME`.
"""
from __future__ import annotations

from typing import Optional

from mxnet.gluon import HybridBlock, nn

from .common import resolve_sizes
from .cpm_vgg19 import _CMU, _CPM_LAYERS, _HE, VGG19_LAYERS

__all__ = ["PlainCPM", "NAME"]

#: The name the benchmarks register it under.
NAME = "cpm_vgg19_plain_gluon"


def _branch(specs, cin):
    seq = nn.HybridSequential()
    for i, (cout, k) in enumerate(specs):
        last = i == len(specs) - 1
        seq.add(nn.Conv2D(cout, k, padding=k // 2, in_channels=cin,
                          activation=None if last else "relu",
                          weight_initializer=_CMU, bias_initializer="zeros"))
        cin = cout
    return seq


class PlainCPM(HybridBlock):
    """CPM-VGG19 as plain Gluon layers; same arguments and outputs as ``CPMVGG19``.

    Parameters
    ----------
    num_heatmaps, num_pafs : int, optional
        K + 1 and 2L output channels (default COCO's 19, 38).
    num_stages : int
        S prediction stages (default 6).
    skeleton : str or Skeleton, optional
        Gives the sizes when they are not passed.

    Outputs
    -------
    ``(paf_1, heat_1, ..., paf_S, heat_S)`` at stride 8, as the zoo's networks.
    """

    def __init__(self, num_heatmaps: Optional[int] = None, num_pafs: Optional[int] = None,
                 num_stages: int = 6, skeleton=None, **kwargs):
        super().__init__(**kwargs)
        self.num_heatmaps, self.num_pafs = resolve_sizes(num_heatmaps, num_pafs, skeleton)
        self.num_stages = int(num_stages)
        self.stride = 8
        with self.name_scope():
            self.trunk = nn.HybridSequential()
            cin = 3
            for item in VGG19_LAYERS + _CPM_LAYERS:
                if item is None:
                    self.trunk.add(nn.MaxPool2D(pool_size=2, strides=2, ceil_mode=True))
                    continue
                self.trunk.add(nn.Conv2D(item[1], 3, padding=1, in_channels=cin,
                                         activation="relu", weight_initializer=_HE,
                                         bias_initializer="zeros"))
                cin = item[1]
            feat = cin
            self.stages = nn.HybridSequential()
            for t in range(1, self.num_stages + 1):
                for out in (self.num_pafs, self.num_heatmaps):
                    if t == 1:
                        self.stages.add(_branch([(128, 3)] * 3 + [(512, 1), (out, 1)], feat))
                    else:
                        self.stages.add(_branch([(128, 7)] * 5 + [(128, 1), (out, 1)],
                                                feat + self.num_pafs + self.num_heatmaps))

    def hybrid_forward(self, F, x):
        feat = self.trunk(x)
        outputs = []
        inp = feat
        for t in range(self.num_stages):
            paf, heat = self.stages[2 * t](inp), self.stages[2 * t + 1](inp)
            outputs += [paf, heat]
            inp = F.concat(paf, heat, feat, dim=1)
        return tuple(outputs)
