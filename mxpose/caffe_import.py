"""Import Caffe models (OpenPose's body models, CMU's VGG-19) without Caffe or protobuf.

A ``.caffemodel`` is a serialized ``caffe.NetParameter`` protocol buffer. Only a handful
of its fields matter for weights, so this module reads the protobuf wire format directly
(field numbers from Caffe's ``caffe.proto``):

=========================  ==============================================================
``NetParameter``           name = 1, layers = 2 (V1LayerParameter, legacy), input = 3,
                           input_dim = 4, layer = 100 (LayerParameter)
``LayerParameter``         name = 1, type = 2, bottom = 3, top = 4, blobs = 7
``V1LayerParameter``       layer = 1 (V0LayerParameter: name = 1, type = 2, blobs = 50),
                           bottom = 2, top = 3, name = 4, type = 5 (enum), blobs = 6
``BlobProto``              num/channels/height/width = 1..4 (legacy 4-D), data = 5
                           (packed float), shape = 7 (BlobShape), double_data = 8
``BlobShape``              dim = 1 (packed int64)
=========================  ==============================================================

Packed float arrays are viewed with :func:`numpy.frombuffer`, so a 200 MB model reads in
well under a second. :func:`write_caffemodel` is the matching minimal writer (used by the
tests to build caffemodels with known weights for the shipped prototxts).

:func:`parse_prototxt` reads the text format of a ``.prototxt`` (enough of it for network
definitions); :func:`conv_shapes` infers every convolution's weight shape from it; and
:func:`convert_openpose` fills :class:`~mxpose.model_zoo.CPMVGG19` (2017 COCO/MPI models)
or :class:`~mxpose.model_zoo.PafFirstVGG19` (BODY_25, BODY_25B, BODY_135; PReLU slopes
included) from a caffemodel, by layer name (our parameters are named after the Caffe
layers). Which of the two a caffemodel holds, and its stage counts and widths, are read
from its layer names and weight shapes (:func:`describe_openpose`,
:func:`describe_paffirst`).

Weight layout needs no change: Caffe's convolution weights are ``(out, in, kh, kw)`` like
MXNet's. The converted network expects what OpenPose's does: BGR input ``v / 256 - 0.5``
(mxpose's :func:`~mxpose.data.transforms.normalize_image`). OpenPose's deploy output
``net_output`` (``concat_stage7``) is ``concat(heat_6, paf_6)``: heatmaps first (the same
for the PAF-first models: ``concat(final heatmaps, final PAFs)``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["CaffeLayer", "CaffeFormatError", "read_caffemodel", "write_caffemodel",
           "parse_prototxt", "prototxt_layers", "conv_shapes", "describe_openpose",
           "describe_paffirst", "convert_openpose"]


class CaffeFormatError(ValueError):
    """A file that is not a (supported) caffemodel / prototxt."""


@dataclass
class CaffeLayer:
    """One layer of a caffemodel: its name, type and parameter blobs."""
    name: str
    type: str
    blobs: List[np.ndarray] = field(default_factory=list)
    bottom: List[str] = field(default_factory=list)
    top: List[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# protobuf wire format: reading
# ---------------------------------------------------------------------------------------
_VARINT, _FIXED64, _LEN, _SGROUP, _EGROUP, _FIXED32 = 0, 1, 2, 3, 4, 5

# V1LayerParameter.LayerType values we name (others are reported as 'V1:<n>').
_V1_TYPES = {3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout", 14: "InnerProduct",
             15: "LRN", 17: "Pooling", 18: "ReLU", 20: "Softmax", 21: "SoftmaxWithLoss",
             22: "Split"}


def _varint(buf, pos: int, end: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise CaffeFormatError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise CaffeFormatError("varint too long")


def _fields(buf, start: int, end: int) -> Iterator[Tuple[int, int, object]]:
    """Yield (field number, wire type, value); value is an int for varints and fixed
    types, or a (start, end) span of ``buf`` for length-delimited fields."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        num, wt = key >> 3, key & 7
        if wt == _VARINT:
            val, pos = _varint(buf, pos, end)
        elif wt == _LEN:
            n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise CaffeFormatError(f"field {num}: length {n} runs past the message end")
            val, pos = (pos, pos + n), pos + n
        elif wt == _FIXED32:
            val, pos = (pos, pos + 4), pos + 4
        elif wt == _FIXED64:
            val, pos = (pos, pos + 8), pos + 8
        else:
            raise CaffeFormatError(f"unsupported wire type {wt} (field {num}) at byte {pos}")
        if pos > end:
            raise CaffeFormatError("truncated message")
        yield num, wt, val


def _str(buf, span) -> str:
    return bytes(buf[span[0]:span[1]]).decode("utf-8", errors="replace")


def _read_blob(buf, start: int, end: int) -> np.ndarray:
    shape: List[int] = []
    legacy = {}
    chunks: List[np.ndarray] = []
    for num, wt, val in _fields(buf, start, end):
        if num == 7 and wt == _LEN:                      # BlobShape
            for dnum, dwt, dval in _fields(buf, *val):
                if dnum != 1:
                    continue
                if dwt == _LEN:                          # packed int64 dims
                    p, e = dval
                    while p < e:
                        d, p = _varint(buf, p, e)
                        shape.append(d)
                else:
                    shape.append(dval)
        elif num in (5, 8):                              # data (float) / double_data
            dt = np.dtype("<f4") if num == 5 else np.dtype("<f8")
            s, e = val if wt != _VARINT else (0, 0)
            if (e - s) % dt.itemsize:
                raise CaffeFormatError("blob data length is not a multiple of the item size")
            chunks.append(np.frombuffer(buf, dtype=dt, count=(e - s) // dt.itemsize,
                                        offset=s).astype(np.float32))
        elif num in (1, 2, 3, 4) and wt == _VARINT:      # legacy num/channels/h/w
            legacy[num] = val
    data = (chunks[0] if len(chunks) == 1 else
            np.concatenate(chunks) if chunks else np.zeros(0, np.float32))
    if not shape and legacy:
        shape = [legacy.get(i, 0) for i in (1, 2, 3, 4)]
    if shape and int(np.prod(shape)) != data.size:
        raise CaffeFormatError(f"blob of shape {shape} holds {data.size} values")
    return data.reshape(shape) if shape else data


def _read_layer(buf, span, v1: bool) -> CaffeLayer:
    name_f, type_f, blobs_f, bottom_f, top_f = (4, 5, 6, 2, 3) if v1 else (1, 2, 7, 3, 4)
    layer = CaffeLayer(name="", type="")
    v0 = None
    for num, wt, val in _fields(buf, *span):
        if num == name_f and wt == _LEN:
            layer.name = _str(buf, val)
        elif num == type_f:
            if v1:
                layer.type = _V1_TYPES.get(val, f"V1:{val}") if wt == _VARINT else ""
            else:
                layer.type = _str(buf, val)
        elif num == blobs_f and wt == _LEN:
            layer.blobs.append(_read_blob(buf, *val))
        elif num == bottom_f and wt == _LEN:
            layer.bottom.append(_str(buf, val))
        elif num == top_f and wt == _LEN:
            layer.top.append(_str(buf, val))
        elif v1 and num == 1 and wt == _LEN:
            v0 = val
    if v0 is not None:                                   # V0 layer nested in a V1 one
        for num, wt, val in _fields(buf, *v0):
            if num == 1 and wt == _LEN and not layer.name:
                layer.name = _str(buf, val)
            elif num == 2 and wt == _LEN and not layer.type:
                layer.type = _str(buf, val)
            elif num == 50 and wt == _LEN:
                layer.blobs.append(_read_blob(buf, *val))
    return layer


def read_caffemodel(path: str) -> List[CaffeLayer]:
    """Read a binary ``.caffemodel`` (new ``layer`` or legacy V1 ``layers`` format).

    Returns
    -------
    list of CaffeLayer
        In file order. Blobs are float32 arrays in Caffe's shapes (a convolution has
        ``[weight (out, in, kh, kw), bias (out,)]``; legacy files give the bias as
        ``(1, 1, 1, out)``).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"caffemodel not found: {path}")
    with open(path, "rb") as f:
        buf = f.read()
    layers = []
    try:
        for num, wt, val in _fields(buf, 0, len(buf)):
            if num == 100 and wt == _LEN:
                layers.append(_read_layer(buf, val, v1=False))
            elif num == 2 and wt == _LEN:
                layers.append(_read_layer(buf, val, v1=True))
    except CaffeFormatError as e:
        raise CaffeFormatError(f"{path}: not a readable caffemodel ({e})") from None
    if not layers:
        raise CaffeFormatError(f"{path}: no layers found (is it a binary .caffemodel?)")
    return layers


# ---------------------------------------------------------------------------------------
# protobuf wire format: writing (minimal, for tests and tools)
# ---------------------------------------------------------------------------------------
def _enc_varint(v: int) -> bytes:
    out = bytearray()
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _enc_len(num: int, payload: bytes) -> bytes:
    return _enc_varint((num << 3) | _LEN) + _enc_varint(len(payload)) + payload


def _enc_int(num: int, v: int) -> bytes:
    return _enc_varint((num << 3) | _VARINT) + _enc_varint(int(v))


def _enc_blob(a: np.ndarray, legacy: bool) -> bytes:
    a = np.asarray(a, dtype="<f4")
    if legacy:
        dims = [1] * (4 - a.ndim) + list(a.shape)
        head = b"".join(_enc_int(i + 1, d) for i, d in enumerate(dims))
    else:
        dims = b"".join(_enc_varint(d) for d in a.shape)
        head = _enc_len(7, _enc_len(1, dims))
    return head + _enc_len(5, a.tobytes())


def write_caffemodel(path: str, layers: Sequence[CaffeLayer], name: str = "",
                     legacy_v1: bool = False) -> None:
    """Write ``layers`` as a binary caffemodel (NetParameter).

    Parameters
    ----------
    layers : sequence of CaffeLayer
        Name, type and blobs of each layer (bottom/top are written too when set).
    legacy_v1 : bool
        Write the deprecated V1 ``layers`` field (with 4-D legacy blob dims), like 2014
        caffemodels such as VGG_ILSVRC_19_layers; otherwise the current ``layer`` field.
    """
    inv_v1 = {v: k for k, v in _V1_TYPES.items()}
    with open(path, "wb") as f:
        if name:
            f.write(_enc_len(1, name.encode()))
        for L in layers:
            if legacy_v1:
                body = _enc_len(4, L.name.encode())
                if L.type in inv_v1:
                    body += _enc_int(5, inv_v1[L.type])
                body += b"".join(_enc_len(2, b.encode()) for b in L.bottom)
                body += b"".join(_enc_len(3, t.encode()) for t in L.top)
                body += b"".join(_enc_len(6, _enc_blob(b, True)) for b in L.blobs)
                f.write(_enc_len(2, body))
            else:
                body = _enc_len(1, L.name.encode()) + _enc_len(2, L.type.encode())
                body += b"".join(_enc_len(3, b.encode()) for b in L.bottom)
                body += b"".join(_enc_len(4, t.encode()) for t in L.top)
                body += b"".join(_enc_len(7, _enc_blob(b, False)) for b in L.blobs)
                f.write(_enc_len(100, body))


# ---------------------------------------------------------------------------------------
# prototxt (protobuf text format)
# ---------------------------------------------------------------------------------------
_TOKEN = re.compile(r"""\s*(?:
    (\#[^\n]*)                                   # comment
  | ("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')   # quoted string
  | ([{}:\[\],;<>])                              # punctuation
  | ([^\s{}:\[\],;<>"'\#]+)                      # bare word / number / enum
)""", re.VERBOSE)


def _tokens(text: str) -> Iterator[str]:
    pos = 0
    n = len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                return
            raise CaffeFormatError(f"cannot parse prototxt near {text[pos:pos + 30]!r}")
        pos = m.end()
        if m.group(1) is not None:
            continue
        tok = m.group(2) or m.group(3) or m.group(4)
        if tok:
            yield tok


def _scalar(tok: str):
    if tok[0] in "\"'":
        return bytes(tok[1:-1], "utf-8").decode("unicode_escape")
    try:
        return int(tok)
    except ValueError:
        pass
    try:
        return float(tok)
    except ValueError:
        return tok        # enum value (MAX, true, ...)


def parse_prototxt(text_or_path: str) -> Dict[str, list]:
    """Parse protobuf text format into nested dicts: ``{field: [value, ...]}``.

    Every field maps to a list (repeated or not); a message value is again such a dict.
    Strings are unquoted, numbers become int/float, enums stay strings.
    """
    if "\n" not in text_or_path and os.path.isfile(text_or_path):
        with open(text_or_path) as f:
            text = f.read()
    elif "\n" not in text_or_path and text_or_path.endswith(".prototxt"):
        raise FileNotFoundError(f"prototxt not found: {text_or_path}")
    else:
        text = text_or_path
    toks = list(_tokens(text))
    pos = 0

    def message(closing):
        nonlocal pos
        out: Dict[str, list] = {}
        while pos < len(toks):
            t = toks[pos]
            if t == closing:
                pos += 1
                return out
            if t in (",", ";"):
                pos += 1
                continue
            key = t
            pos += 1
            if pos < len(toks) and toks[pos] == ":":
                pos += 1
            if pos >= len(toks):
                raise CaffeFormatError(f"prototxt ends after field {key!r}")
            t = toks[pos]
            if t in ("{", "<"):
                pos += 1
                val = message("}" if t == "{" else ">")
                out.setdefault(key, []).append(val)
            elif t == "[":
                pos += 1
                while toks[pos] != "]":
                    if toks[pos] != ",":
                        out.setdefault(key, []).append(_scalar(toks[pos]))
                    pos += 1
                pos += 1
            else:
                out.setdefault(key, []).append(_scalar(t))
                pos += 1
        if closing is not None:
            raise CaffeFormatError("prototxt: unbalanced braces")
        return out

    return message(None)


def _get(msg: Dict[str, list], key: str, default=None):
    v = msg.get(key)
    return v[0] if v else default


def prototxt_layers(net: Dict[str, list]) -> List[Dict[str, list]]:
    """The layer messages of a parsed prototxt (``layer`` or legacy ``layers``)."""
    return net.get("layer", []) + net.get("layers", [])


def _conv_geometry(layer) -> Tuple[int, int, int, int, int]:
    p = _get(layer, "convolution_param", {})
    k = p.get("kernel_size", [None])[0]
    kh, kw = _get(p, "kernel_h", k), _get(p, "kernel_w", k)
    return (int(_get(p, "num_output")), int(kh), int(kw),
            int(_get(p, "pad", 0)), int(_get(p, "stride", 1)))


def conv_shapes(net: Dict[str, list], input_channels: int = 3) -> Dict[str, dict]:
    """Shape-infer the channels of a parsed prototxt; describe every convolution.

    Follows blob channels through Convolution, Concat and channel-preserving layers
    (ReLU, Pooling, ...). Returns ``{layer name: {"weight": (out, in, kh, kw),
    "pad": p, "stride": s, "dilation": d, "group": g, "bias": bool, "bottom": name}}``.
    """
    channels: Dict[str, int] = {}
    for inp in net.get("input", []):
        channels[inp] = input_channels
    out = {}
    for layer in prototxt_layers(net):
        ltype = str(_get(layer, "type", ""))
        bottoms, tops = layer.get("bottom", []), layer.get("top", [])
        if ltype in ("Input", "Data", "ImageData", "MemoryData"):
            for t in tops:
                channels[t] = input_channels
            continue
        try:
            cin = [channels[b] for b in bottoms]
        except KeyError as e:
            raise CaffeFormatError(f"layer {_get(layer, 'name')!r}: unknown bottom {e}") \
                from None
        if ltype in ("Convolution", "CONVOLUTION"):
            p = _get(layer, "convolution_param", {})
            cout, kh, kw, pad, stride = _conv_geometry(layer)
            group = int(_get(p, "group", 1))
            out[_get(layer, "name")] = {
                "weight": (cout, cin[0] // group, kh, kw), "pad": pad, "stride": stride,
                "dilation": int(_get(p, "dilation", 1)), "group": group,
                "bias": str(_get(p, "bias_term", "true")).lower() != "false",
                "bottom": bottoms[0]}
            c = cout
        elif ltype in ("Concat", "CONCAT"):
            c = sum(cin)
        else:
            c = cin[0] if cin else input_channels
        for t in tops:
            channels[t] = c
    return out


# ---------------------------------------------------------------------------------------
# OpenPose -> CPMVGG19 / PafFirstVGG19
# ---------------------------------------------------------------------------------------
_STAGE_RE = re.compile(r"^Mconv\d+_stage(\d+)_L1$")
# PAF-first stage layers: Mconv{block}_stage{s}_L{branch}[_{0,1,2}] (stages count from 0).
_PF_RE = re.compile(r"^Mconv(\d+)_stage(\d+)_L([12])(?:_([012]))?$")
_PF_BRANCHES = (("L2", "paf"), ("L1", "heat"))


def describe_openpose(conv_blobs: Dict[str, Sequence[np.ndarray]]) -> Optional[dict]:
    """``cpm_vgg19`` kwargs of a 2017 OpenPose body model from its conv weights by name.

    Returns ``None`` when the weights hold no CPM stages (e.g. the VGG-19 ImageNet model,
    or a PAF-first model).
    """
    if "conv5_5_CPM_L1" not in conv_blobs or "conv5_5_CPM_L2" not in conv_blobs:
        return None
    stages = [int(m.group(1)) for n in conv_blobs for m in [_STAGE_RE.match(n)] if m]
    return {"num_pafs": int(conv_blobs["conv5_5_CPM_L1"][0].shape[0]),
            "num_heatmaps": int(conv_blobs["conv5_5_CPM_L2"][0].shape[0]),
            "num_stages": max(stages) if stages else 1}


def _compact(values: List[int]):
    return values[0] if len(set(values)) == 1 else list(values)


def describe_paffirst(conv_blobs: Dict[str, Sequence[np.ndarray]], source: str = ""
                      ) -> Optional[dict]:
    """``paffirst_vgg19`` kwargs of a PAF-first OpenPose model (BODY_25, 25B, 135).

    Read from the layer names and the output channels (``blobs[0].shape[0]``) of the
    stage convolutions ``Mconv{b}_stage{s}_L{2: PAF, 1: heatmaps}[_{i}]``. A per-stage
    value that is the same for every stage is given as one int.

    Returns
    -------
    dict or None
        ``None`` when there are no PAF-first stage layers (e.g. a 2017 CPM model).

    Raises
    ------
    CaffeFormatError
        Stages with gaps, or a stage without its 1x1 layers (names ``source``).
    """
    found: Dict[str, Dict[int, Dict[int, dict]]] = {"L2": {}, "L1": {}}
    for name, blobs in conv_blobs.items():
        m = _PF_RE.match(name)
        if not m or not blobs:
            continue
        b, s, br, i = int(m.group(1)), int(m.group(2)), "L" + m.group(3), m.group(4)
        found[br].setdefault(s, {}).setdefault(b, {})[i] = int(blobs[0].shape[0])
    # The PAF-first family has a stage 0 with blocks of three (the 2017 CPM has neither).
    if not any(0 in st and any("0" in blk for blk in st[0].values())
               for st in found.values()):
        return None
    where = f"{source}: " if source else ""
    out: dict = {}
    for br, kind in _PF_BRANCHES:
        stages = found[br]
        if sorted(stages) != list(range(len(stages))) or not stages:
            raise CaffeFormatError(f"{where}{kind} stages (branch {br}) are "
                                   f"{sorted(stages) or 'missing'}, expected 0, 1, ...")
        blocks, widths, heads, outs = [], [], [], []
        for s in range(len(stages)):
            st = stages[s]
            n = max([b for b, v in st.items() if "0" in v], default=0)
            head, final = st.get(n + 1, {}).get(None), st.get(n + 2, {}).get(None)
            if n == 0 or head is None or final is None:
                raise CaffeFormatError(f"{where}stage {s} of branch {br} lacks its blocks or "
                                       f"its 1x1 layers Mconv{n + 1}/Mconv{n + 2}_stage{s}_{br}")
            blocks.append(n)
            widths.append(st[1]["0"])
            heads.append(head)
            outs.append(final)
        if len(set(outs)) != 1:
            raise CaffeFormatError(f"{where}the {kind} stages disagree on their output "
                                   f"channels: {outs}")
        out[f"num_{'pafs' if kind == 'paf' else 'heatmaps'}"] = outs[0]
        out[f"{kind}_stages"] = len(stages)
        out[f"{kind}_blocks"] = _compact(blocks)
        out[f"{kind}_width"] = _compact(widths)
        out[f"{kind}_head"] = _compact(heads)
    return out


def _stages_text(d: dict) -> str:
    if "paf_stages" in d:
        return f"{d['paf_stages']} PAF + {d['heat_stages']} heatmap stages"
    return f"{d['num_stages']} CPM stages"


def _check_convs(proto: Dict[str, list], net, skip=lambda name: False) -> List[str]:
    """Differences between a prototxt's convolutions/PReLUs and ``net``'s layers."""
    problems = []
    convs = conv_shapes(proto)
    prelus = {str(_get(L, "name")) for L in prototxt_layers(proto)
              if str(_get(L, "type", "")) == "PReLU"}
    params = net._collect_params_with_prefix()
    ours = sorted({k.rsplit(".", 1)[0] for k in params if not k.endswith(".alpha")})
    our_prelus = {k.rsplit(".", 1)[0] for k in params if k.endswith(".alpha")}
    for name in ours:
        c = convs.get(name)
        if c is None:
            problems.append(f"{name}: not in the prototxt")
            continue
        w = tuple(params[f"{name}.weight"].shape)
        conv = getattr(net, name)
        if c["weight"] != w:
            problems.append(f"{name}: prototxt weight {c['weight']}, network {w}")
        if (c["pad"], c["stride"], c["dilation"], c["group"]) != \
                (conv._kwargs["pad"][0], conv._kwargs["stride"][0],
                 conv._kwargs["dilate"][0], conv._kwargs["num_group"]):
            problems.append(f"{name}: pad/stride/dilation/group differ")
    extra = [n for n in convs if n not in set(ours) and not skip(n)]
    problems += [f"{n}: convolution in the prototxt but not in the network" for n in extra]
    problems += [f"{n}: PReLU in the prototxt but not in the network"
                 for n in sorted(prelus - our_prelus)]
    problems += [f"{n}: PReLU in the network but not in the prototxt"
                 for n in sorted(our_prelus - prelus)]
    return problems


def _paffirst_concats(net) -> Dict[str, List[str]]:
    """Caffe name -> bottoms of every stage-input concat of a PafFirstVGG19."""
    last = {br: [plan[-1][0][0] for plan in net._stages[br]] for br in ("L2", "L1")}
    feat, paf = "conv4_4_CPM", last["L2"][-1]
    want = {f"concat_stage{s}_L2": [feat, last["L2"][s - 1]]
            for s in range(1, len(last["L2"]))}
    want["concat_stage0_L1"] = [feat, paf]
    for s in range(1, len(last["L1"])):
        want[f"concat_stage{s}_L1"] = [feat, last["L1"][s - 1], paf]
    return want


def _check_prototxt(proto: Dict[str, list], net) -> List[str]:
    """Differences between a prototxt's convolutions/concats and ``net``'s layers."""
    if hasattr(net, "output_kinds"):                       # PAF-first
        problems = _check_convs(proto, net)
        want = _paffirst_concats(net)
        got = {str(_get(L, "name")): L.get("bottom", []) for L in prototxt_layers(proto)
               if str(_get(L, "type", "")) == "Concat"}
        for name, bottoms in want.items():
            if got.get(name) != bottoms:
                problems.append(f"{name}: bottoms {got.get(name)} != {bottoms}")
        return problems

    def truncated(n):   # a later stage of the model when fewer stages are imported
        m = re.match(r"^Mconv\d+_stage(\d+)_L\d$", n)
        return bool(m) and int(m.group(1)) > net.num_stages

    problems = _check_convs(proto, net, skip=truncated)
    for layer in prototxt_layers(proto):
        m = re.match(r"concat_stage(\d+)$", str(_get(layer, "name", "")))
        if not m:
            continue
        t = int(m.group(1))
        if t < 2 or t > net.num_stages:
            continue
        prev = (["conv5_5_CPM_L1", "conv5_5_CPM_L2"] if t == 2 else
                [f"Mconv7_stage{t - 1}_L1", f"Mconv7_stage{t - 1}_L2"])
        want = prev + ["conv4_4_CPM"]
        if layer.get("bottom", []) != want:
            problems.append(f"concat_stage{t}: bottoms {layer.get('bottom')} != {want}")
    return problems


def _describe(blobs, source: str):
    """(model name, kwargs) of a caffemodel/prototxt's stages; kwargs None if none."""
    pf = describe_paffirst(blobs, source)
    if pf is not None:
        return "paffirst_vgg19", pf
    return "cpm_vgg19", describe_openpose(blobs)


def convert_openpose(caffemodel: str, prototxt: Optional[str] = None,
                     num_stages: Optional[int] = None, num_heatmaps: Optional[int] = None,
                     num_pafs: Optional[int] = None, skeleton=None,
                     allow_partial: Optional[bool] = None):
    """Build the mxpose network holding a caffemodel's weights.

    Parameters
    ----------
    caffemodel : str
        OpenPose body model: 2017 CPM (``pose_iter_440000.caffemodel`` COCO,
        ``pose_iter_160000`` MPI) -> ``cpm_vgg19``; PAF-first (BODY_25
        ``pose_iter_584000``, BODY_25B, BODY_135) -> ``paffirst_vgg19``; or CMU's
        ``VGG_ILSVRC_19_layers.caffemodel`` (trunk only, into ``cpm_vgg19``). The kind is
        detected from the layer names.
    prototxt : str, optional
        The matching deploy prototxt; when given, its stages must be those of the
        caffemodel, and every convolution (shape, pad, stride), PReLU and stage concat is
        checked against the network.
    num_stages, num_heatmaps, num_pafs, skeleton :
        Network sizes. Detected from the weights for OpenPose models (an explicit value
        that disagrees is an error, except ``num_stages`` below a CPM model's: the first
        stages are imported; PAF-first models are imported whole); used as given for a
        trunk-only model (default COCO, 6).
    allow_partial : bool, optional
        Accept weights that do not cover the whole network. Default: allowed only when
        the caffemodel has no stages (ImageNet trunk), where the rest keeps its random
        initialisation.

    Returns
    -------
    net : CPMVGG19 or PafFirstVGG19
        Initialised on CPU.
    report : dict
        ``model`` (the zoo name) and ``kwargs`` (for ``get_model(model, **kwargs)``),
        ``loaded`` (layer names), ``missing`` (our layers left at their initialisation),
        ``unused`` (caffemodel layers with weights that were not imported), ``full``.
    """
    from .model_zoo import get_model, resolve_sizes

    layers = read_caffemodel(caffemodel)
    blobs = {L.name: L.blobs for L in layers if L.blobs}
    model, detected = _describe(blobs, caffemodel)
    proto = None
    if prototxt is not None:
        proto = parse_prototxt(prototxt)
        pmodel, pdesc = _describe({n: [np.zeros((c["weight"][0],))]
                                   for n, c in conv_shapes(proto).items()}, prototxt)
        if detected is not None and pdesc is not None and (pmodel, pdesc) != (model, detected):
            raise CaffeFormatError(f"{prototxt} has {_stages_text(pdesc)} ({pdesc}) but "
                                   f"{caffemodel} holds {_stages_text(detected)} "
                                   f"({detected}): not the model of this prototxt")
    if model == "paffirst_vgg19" and num_stages is not None:
        raise ValueError(f"{caffemodel} is a PAF-first model ({_stages_text(detected)}), "
                         f"imported whole: num_stages applies to 2017 CPM models only")
    if detected is not None:
        if num_stages is not None and int(num_stages) > detected["num_stages"]:
            raise ValueError(f"num_stages={num_stages} but {caffemodel} has only "
                             f"{detected['num_stages']} stages")
        kwargs = dict(detected)
        if num_stages is not None:
            kwargs["num_stages"] = int(num_stages)
        for what, given in (("num_heatmaps", num_heatmaps), ("num_pafs", num_pafs)):
            if given is not None and int(given) != kwargs[what]:
                raise ValueError(f"{what}={given} but {caffemodel} has {kwargs[what]}")
        if skeleton is not None:
            resolve_sizes(kwargs["num_heatmaps"], kwargs["num_pafs"], skeleton)
    else:
        nh, npaf = resolve_sizes(num_heatmaps, num_pafs, skeleton)
        kwargs = {"num_heatmaps": nh, "num_pafs": npaf,
                  "num_stages": int(num_stages) if num_stages is not None else 6}
    if allow_partial is None:
        allow_partial = detected is None

    net = get_model(model, **kwargs)
    if proto is not None and detected is not None:
        problems = _check_prototxt(proto, net)
        if problems:
            raise CaffeFormatError(f"{prototxt} does not match {model}: "
                                   + "; ".join(problems[:5])
                                   + (f" (+{len(problems) - 5} more)" if len(problems) > 5
                                      else ""))
    loaded, missing = _fill(net, blobs, caffemodel)
    if missing and not allow_partial:
        raise CaffeFormatError(f"{caffemodel}: no weights for {len(missing)} layers of "
                               f"{model} ({', '.join(missing[:4])}...)")
    if not loaded:
        raise CaffeFormatError(f"{caffemodel}: none of its layers match {model}'s")
    unused = [n for n in blobs if n not in set(loaded)]
    return net, {"model": model, "kwargs": kwargs, "loaded": loaded, "missing": missing,
                 "unused": unused, "full": not missing}


def _fill(net, blobs: Dict[str, List[np.ndarray]], caffemodel: str):
    """Copy Caffe blobs into ``net`` by layer name: a convolution's ``[weight, bias]``,
    a PReLU's ``[slopes]`` (a channel-shared slope is repeated per channel). Layers
    without blobs keep their own initialiser. Returns (loaded, missing) layer names."""
    import mxnet as mx

    params = net._collect_params_with_prefix()
    layers: Dict[str, Dict[str, object]] = {}
    for k, p in params.items():
        name, what = k.rsplit(".", 1)
        layers.setdefault(name, {})[what] = p
    loaded, missing = [], []
    for name, ps in layers.items():
        if name not in blobs:
            missing.append(name)
            # Left to its own initialiser (He for the trunk, CMU's fillers for stages).
            for p in ps.values():
                p.initialize(ctx=mx.cpu())
            continue
        b = blobs[name]
        if "alpha" in ps:                                   # PReLU
            a = ps["alpha"]
            if len(b) != 1 or b[0].size not in (1, a.shape[0]):
                raise CaffeFormatError(f"{caffemodel}: PReLU {name} has "
                                       f"{[tuple(x.shape) for x in b]}, network needs one "
                                       f"slope blob of {a.shape[0]} (or 1) values")
            values = [np.broadcast_to(b[0].reshape(-1), a.shape)]
            targets = [a]
        else:
            w, bias = ps["weight"], ps["bias"]
            if len(b) != 2:
                raise CaffeFormatError(f"{caffemodel}: layer {name} has {len(b)} blobs, "
                                       f"expected weight and bias")
            if tuple(b[0].shape) != tuple(w.shape) or b[1].size != bias.shape[0]:
                raise CaffeFormatError(f"{caffemodel}: layer {name} has weight "
                                       f"{tuple(b[0].shape)} / bias {b[1].size}, network "
                                       f"needs {tuple(w.shape)} / {bias.shape[0]}")
            values, targets = [b[0], b[1].reshape(-1)], [w, bias]
        for p, v in zip(targets, values):
            # Zero-fill instead of drawing random numbers that are overwritten at once.
            p.initialize(init=mx.init.Zero(), ctx=mx.cpu())
            p.set_data(mx.nd.array(v))
        loaded.append(name)
    return loaded, missing
