#!/usr/bin/env python
"""Convert an OpenPose Caffe body model (or CMU's VGG-19 ImageNet model) to mxpose.

Examples
--------
  python tools/convert_caffe.py --caffemodel pose_iter_584000.caffemodel \\
      --out models/cmu_body25.params                          # BODY_25 (PAF-first)
  python tools/convert_caffe.py --prototxt pose_deploy_linevec.prototxt \\
      --caffemodel pose_iter_440000.caffemodel --out models/openpose_coco.params
  python tools/convert_caffe.py --caffemodel pose_iter_160000.caffemodel \\
      --out models/openpose_mpi.params                       # MPI: 16 heatmaps, 28 PAFs
  python tools/convert_caffe.py --caffemodel VGG_ILSVRC_19_layers.caffemodel \\
      --skeleton openpose_mpi15 --out models/vgg19_base.params  # trunk only

Neither Caffe nor the protobuf package is needed: the caffemodel is read directly.
The architecture (2017 CPM -> ``cpm_vgg19``; PAF-first BODY_25 / BODY_25B / BODY_135 ->
``paffirst_vgg19``, PReLU slopes included), stage counts and channel sizes are detected
from the weights; a prototxt, when given, must describe the same stages and is checked
against the network. The output is a ``save_parameters`` file for
``mxpose.model_zoo.get_model(name, **kwargs)`` with the printed name and kwargs (for
training, put them in ``model.name`` / ``model.kwargs`` and pass ``--weights FILE
--weights-only``). The network expects BGR input ``v / 256 - 0.5``, like OpenPose.
"""
import argparse
import os
import sys


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="convert_caffe.py",
        description="Import OpenPose's body caffemodels (COCO/MPI into cpm_vgg19; BODY_25, "
                    "BODY_25B, BODY_135 into paffirst_vgg19) or CMU's VGG_ILSVRC_19 "
                    "caffemodel (trunk conv1_1..conv4_2 only, into cpm_vgg19), without "
                    "Caffe.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split(
            "Examples\n--------\n", 1)[1].split("\n\n", 1)[0])
    ap.add_argument("--caffemodel", required=True, help="binary .caffemodel to import")
    ap.add_argument("--prototxt", default=None,
                    help="matching deploy prototxt (optional): its stages must be the "
                         "caffemodel's; convolutions, PReLUs and stage concat order are "
                         "checked against the network")
    ap.add_argument("--out", required=True, help="output .params file")
    ap.add_argument("--num-stages", type=int, default=None,
                    help="CPM stages to build (default: all stages of the model; 6 for a "
                         "trunk-only model); PAF-first models are imported whole")
    ap.add_argument("--skeleton", default=None,
                    help="keypoint layout giving the output sizes of a trunk-only import "
                         "(default COCO: 19 heatmaps, 38 PAFs); checked for full models")
    ap.add_argument("--allow-partial", action="store_true",
                    help="accept a stage model whose weights do not cover every layer")
    args = ap.parse_args(argv)

    from mxpose.caffe_import import CaffeFormatError, convert_openpose

    for what, path in (("caffemodel", args.caffemodel), ("prototxt", args.prototxt)):
        if path is not None and not os.path.isfile(path):
            print(f"error: {what} not found: {path}", file=sys.stderr)
            return 2
    print(f"reading {args.caffemodel} ...")
    try:
        net, rep = convert_openpose(args.caffemodel, prototxt=args.prototxt,
                                    num_stages=args.num_stages, skeleton=args.skeleton,
                                    allow_partial=True if args.allow_partial else None)
    except (CaffeFormatError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.out + ".tmp"
    net.save_parameters(tmp)
    os.replace(tmp, args.out)

    kw = ", ".join(f"{k}={v}" for k, v in rep["kwargs"].items())
    print(f"imported {len(rep['loaded'])} conv layers"
          + ("" if rep["full"] else f"; {len(rep['missing'])} left at random init "
             f"({', '.join(rep['missing'][:3])}, ...)"))
    if rep["unused"]:
        print(f"not used from the caffemodel: {', '.join(rep['unused'][:8])}"
              + (" ..." if len(rep["unused"]) > 8 else ""))
    print(f"wrote {args.out}")
    print(f"load with: get_model({rep['model']!r}, {kw}).load_parameters({args.out!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
