"""ImageNet initialisation of a network's trunk from a LOCAL gluoncv params file.

Nothing is downloaded: the user passes the path of a file written by gluoncv (e.g.
``~/.mxnet/models/vgg19-ad2f660d.params`` or ``mobilenet1.0-efbb2ca3.params``, or any
``save_parameters``/``collect_params().save`` of ``gluoncv.model_zoo.get_model('vgg19')``
/ ``'mobilenet1.0'``).

Matching is by position and shape, per parameter role: the file's 4-D conv weights in file
order are paired with the trunk's conv weights in forward order, its biases with our
biases, BN gammas with gammas, and so on. gluoncv writes parameters in creation order,
which for VGG and MobileNet is forward order, so the i-th conv of the file is the i-th conv
of our trunk; every pair must agree in shape, otherwise nothing is loaded.

Input convention: mxpose feeds BGR ``(v - 128) / 256`` (CMU's), gluoncv's ImageNet models
were trained on RGB ``(v / 255 - mean) / std``. With ``adapt_input=True`` (default) the
first convolution is rewritten so that it computes on our input what gluoncv's computed on
its own (channel order reversed, per-channel scale folded into the weights, the offset into
the bias or, for a bias-less conv followed by BN, into the BN running mean); only the
zero-padded border differs.
"""
from __future__ import annotations

import os
from typing import Dict, List, Tuple

import numpy as np
import mxnet as mx

__all__ = ["load_pretrained_base", "base_parameters", "GLUONCV_MEAN", "GLUONCV_STD"]

GLUONCV_MEAN = (0.485, 0.456, 0.406)   # RGB, of v / 255
GLUONCV_STD = (0.229, 0.224, 0.225)

_ROLES = ("running_mean", "running_var", "moving_mean", "moving_var",
          "gamma", "beta", "weight", "bias")
_ROLE_ALIAS = {"moving_mean": "running_mean", "moving_var": "running_var"}


def _role(name: str) -> str:
    for r in _ROLES:
        if name.endswith(r):
            return _ROLE_ALIAS.get(r, r)
    return "other"


def base_parameters(net) -> List[Tuple[str, "mx.gluon.Parameter"]]:
    """The trunk's parameters as ``(structural name, Parameter)`` in forward order.

    Supports the zoo's networks: the VGG-19 part (``conv1_1`` .. ``conv4_2``) of
    :class:`~mxpose.model_zoo.cpm_vgg19.CPMVGG19` and of the PAF-first
    :class:`~mxpose.model_zoo.paffirst_vgg19.PafFirstVGG19`, and the MobileNet part
    (``backbone.*``) of :class:`~mxpose.model_zoo.lwpose_mobilenet.LWPoseMobileNet`.
    """
    from .cpm_vgg19 import CPMVGG19
    from .lwpose_mobilenet import LWPoseMobileNet
    from .paffirst_vgg19 import PafFirstVGG19
    params = net._collect_params_with_prefix()
    if isinstance(net, (CPMVGG19, PafFirstVGG19)):
        out = []
        for layer in net.base_layer_names:
            out += [(f"{layer}.weight", params[f"{layer}.weight"]),
                    (f"{layer}.bias", params[f"{layer}.bias"])]
        return out
    if isinstance(net, LWPoseMobileNet):
        return [(k, p) for k, p in params.items() if k.startswith("backbone.")]
    raise TypeError(f"no known ImageNet trunk in a {type(net).__name__}")


def _ensure_initialized(net, ctx):
    for p in net.collect_params().values():
        try:
            p.list_ctx()
        except RuntimeError:
            p.initialize(ctx=ctx)


def load_pretrained_base(net, path: str, adapt_input: bool = True, ctx=None) -> Dict:
    """Copy ImageNet weights from a local gluoncv params file into ``net``'s trunk.

    Parameters
    ----------
    net : CPMVGG19 or LWPoseMobileNet
        Parameters that are not initialised yet are initialised first (their own
        initialisers), so this can be called before or after ``net.initialize()``.
    path : str
        gluoncv ``vgg19`` params for ``cpm_vgg19``; ``mobilenet{w}`` params (same width
        multiplier) for ``lwpose_mobilenet``.
    adapt_input : bool
        Fold gluoncv's RGB mean/std input convention into the first convolution so the
        trunk sees mxpose's BGR ``(v - 128) / 256`` input as it saw ImageNet images.
    ctx : Context or list, optional
        Where to initialise parameters that are not yet initialised (default CPU).

    Returns
    -------
    dict
        ``loaded``: list of (our name, file name, shape); ``unused``: file entries not
        used (e.g. the classifier); ``adapted``: whether the input was folded in.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist (nothing is downloaded).
    ValueError
        The file does not hold a compatible trunk (missing parameters or shapes differ).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained base file not found: {path} (mxpose never "
                                f"downloads weights; pass the path of a local gluoncv "
                                f"params file)")
    try:
        loaded = mx.nd.load(path)
    except mx.base.MXNetError as e:
        raise ValueError(f"{path}: not an MXNet params file ({str(e).splitlines()[0]})") \
            from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: holds an unnamed array list, not named parameters")
    src: Dict[Tuple[str, int], List[Tuple[str, mx.nd.NDArray]]] = {}
    for k, v in loaded.items():
        name = k.split(":", 1)[1] if k.startswith(("arg:", "aux:")) else k
        src.setdefault((_role(name), v.ndim), []).append((name, v))

    ours = base_parameters(net)
    taken: Dict[Tuple[str, int], int] = {}
    pairs = []
    for name, p in ours:
        key = (_role(name), len(p.shape))
        i = taken.get(key, 0)
        stream = src.get(key, [])
        if i >= len(stream):
            raise ValueError(f"{path}: too few {key[0]} arrays for {type(net).__name__}'s "
                             f"trunk (file has {len(stream)}, needed at least {i + 1} for "
                             f"{name})")
        sname, arr = stream[i]
        if tuple(arr.shape) != tuple(p.shape):
            raise ValueError(f"{path}: {sname} has shape {tuple(arr.shape)} but {name} "
                             f"needs {tuple(p.shape)}; not a matching trunk (e.g. VGG-19 "
                             f"for cpm_vgg19, mobilenet of the same width_mult for "
                             f"lwpose_mobilenet)")
        taken[key] = i + 1
        pairs.append((name, p, sname, arr.asnumpy().astype(np.float32)))

    if adapt_input:
        _adapt_first_conv(pairs)

    _ensure_initialized(net, ctx)
    for name, p, sname, arr in pairs:
        p.set_data(mx.nd.array(arr, dtype=p.dtype))
    used = {(sname) for _, _, sname, _ in pairs}
    unused = [n for stream in src.values() for n, _ in stream if n not in used]
    return {"loaded": [(name, sname, tuple(arr.shape)) for name, _, sname, arr in pairs],
            "unused": unused, "adapted": bool(adapt_input)}


def _adapt_first_conv(pairs):
    """Rewrite the first conv (and its bias or following BN mean) for BGR (v-128)/256."""
    std = np.asarray(GLUONCV_STD, np.float32)
    mean = np.asarray(GLUONCV_MEAN, np.float32)
    # RGB channel c of gluoncv's input as a function of our BGR input x (channel 2-c):
    # (v/255 - m)/s with v = 256 x + 128, i.e. a_c x + b_c.
    a = 256.0 / (255.0 * std)
    b = 128.0 / (255.0 * std) - mean / std
    w_i = next(i for i, t in enumerate(pairs) if t[0].endswith("weight"))
    name, p, sname, w = pairs[w_i]
    if w.shape[1] != 3:
        raise ValueError(f"first conv {name} has {w.shape[1]} input channels, expected 3")
    offset = (w * b[None, :, None, None]).sum(axis=(1, 2, 3))  # per output channel
    pairs[w_i] = (name, p, sname, np.ascontiguousarray((w * a[None, :, None, None])[:, ::-1]))
    nxt = pairs[w_i + 1] if w_i + 1 < len(pairs) else None
    if nxt is not None and nxt[0].endswith("bias") and nxt[0].rsplit(".", 1)[0] == \
            name.rsplit(".", 1)[0]:
        pairs[w_i + 1] = nxt[:3] + (nxt[3] + offset,)
        return
    for j in range(w_i + 1, len(pairs)):
        if pairs[j][0].endswith("running_mean"):
            # BN(y + offset) with mean m equals BN(y) with mean m - offset.
            pairs[j] = pairs[j][:3] + (pairs[j][3] - offset,)
            return
    raise ValueError(f"cannot fold the input offset: {name} has no bias and no BN after it")
