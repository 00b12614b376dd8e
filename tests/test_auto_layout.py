"""data.skeleton: auto takes the DB's layout: it reaches the dataset, the model's channel
counts and the saved config; unconnected layouts and layout mismatches are refused."""
import argparse

import cv2
import numpy as np
import pytest

from mxpose.config import default_config, load_config
from mxpose.data.store import PoseDBWriter
from mxpose.skeleton import Skeleton, SkeletonError

LAYOUT = {"name": "pets", "keypoints": ["head", "l_paw", "r_paw", "tail"],
          "limbs": [["head", "l_paw"], ["head", "r_paw"], ["head", "tail"]],
          "flip_pairs": [["l_paw", "r_paw"]],
          "sigmas": {"head": 0.03, "l_paw": 0.05, "r_paw": 0.05, "tail": 0.08}}


def _db(path, layout):
    sk = Skeleton.from_dict(layout)
    img = np.full((64, 64, 3), 128, np.uint8)
    data = cv2.imencode(".jpg", img)[1].tobytes()
    with PoseDBWriter(str(path), dataset="coco", skeleton=sk, tool="test") as w:
        for i in range(3):
            kp = np.array([[30, 10, 2], [20, 30, 2], [40, 30, 2], [31, 50, 2]], np.float32)
            w.add_image(f"{i}.jpg", data, 64, 64, "train",
                        people=[{"keypoints": kp, "bbox": [10, 5, 40, 50], "area": 2000.0}])
    return str(path)


def test_auto_is_the_default_and_takes_the_db_layout(tmp_path):
    from mxpose.data.dataset import PoseDataset, resolve_skeleton
    from mxpose.model_zoo import get_model
    db = _db(tmp_path / "p.db", LAYOUT)
    cfg = default_config()
    assert cfg.data.skeleton == "auto"
    cfg.data.db = db
    cfg.aug.min_keypoints = 2                 # 4-point people
    ds = PoseDataset(db, "train", config=cfg, train=False)
    assert ds.skeleton.name == "pets" and ds.skeleton == ds.src_skeleton
    sk = resolve_skeleton(cfg)
    assert sk == Skeleton.from_dict(LAYOUT)
    assert dict(cfg.data.skeleton) == sk.to_dict()        # written back for the saved config
    net = get_model("lwpose_mobilenet", skeleton=cfg.data.skeleton, num_refinement=1,
                    width_mult=0.25, num_channels=16)
    net.initialize()
    import mxnet as mx
    outs = net(mx.nd.zeros((1, 3, 64, 64)))
    chans = sorted({o.shape[1] for o in outs})
    assert chans == [5, 6]                               # K+1 heatmaps, 2L PAFs


def test_auto_without_a_db_is_one_clear_error(tmp_path):
    from mxpose.data.dataset import resolve_skeleton
    cfg = default_config()
    cfg.data.db = str(tmp_path / "missing.db")
    with pytest.raises(SkeletonError, match="'auto'.*does not exist"):
        resolve_skeleton(cfg)


def test_unconnected_layout_is_refused_with_a_proposal_from_the_data(tmp_path):
    from mxpose.data.dataset import resolve_skeleton
    lay = dict(LAYOUT, limbs=[["head", "l_paw"], ["head", "r_paw"]])
    cfg = default_config()
    cfg.data.db = _db(tmp_path / "u.db", lay)
    with pytest.raises(SkeletonError) as e:
        resolve_skeleton(cfg)
    # tail (31, 50) is closest to the paws (20, 30)/(40, 30) among the connected parts
    assert "['tail'] are not connected" in str(e.value)
    assert '[["r_paw", "tail"]]' in str(e.value) or '[["l_paw", "tail"]]' in str(e.value)


def test_checkpoint_layout_mismatch_is_one_line(tmp_path):
    from mxpose.cli import CLIError, _resolve_layout
    saved = default_config()
    saved.data.skeleton = dict(LAYOUT)
    cfg = default_config()
    cfg.data.skeleton = "openpose_coco18"
    with pytest.raises(CLIError, match="'openpose_coco18' .* is not the layout 'pets'"):
        _resolve_layout(cfg, saved, "work/x/model")
    auto = default_config()
    _resolve_layout(auto, saved, "work/x/model")       # auto: the run's own layout
    assert auto.data.skeleton["name"] == "pets"


def test_db_config_layout_mismatch_is_one_line(tmp_path):
    from mxpose.data.dataset import PoseDataset
    db = _db(tmp_path / "p.db", LAYOUT)
    cfg = default_config()
    cfg.data.skeleton = "openpose_coco18"
    with pytest.raises(SkeletonError, match="stores skeleton 'pets' but the network predicts "
                                            "'openpose_coco18'"):
        PoseDataset(db, "train", config=cfg)


def test_custom_experiment_names_auto():
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = load_config(os.path.join(root, "experiments", "custom_lwpose.yaml"),
                      ["data.db=elsewhere.db"])
    assert cfg.data.skeleton == "auto" and cfg.data.db == "elsewhere.db"


def test_yaml_dict_redefines_the_db_layout(tmp_path):
    """A data.skeleton dict over a DB layout: extra limbs for the PAFs, a derived point."""
    from mxpose.data.dataset import PoseDataset
    from mxpose.skeleton import convert
    db = _db(tmp_path / "p.db", LAYOUT)
    extra = dict(LAYOUT, name="pets_more", limbs=LAYOUT["limbs"] + [["l_paw", "r_paw"]])
    cfg = default_config()
    cfg.aug.min_keypoints = 2
    cfg.data.skeleton = extra
    ds = PoseDataset(db, "train", config=cfg, train=False)
    assert ds.skeleton.num_limbs == 4 and ds.src_skeleton.name == "pets"
    assert ds[0][3].shape[0] == 8                   # 2L PAF targets for the 4 limbs
    # a neck derived from the shoulders of a custom layout by the mid-point rule
    src = Skeleton("arms", ["Left Shoulder", "Right Shoulder", "Left Hand", "Right Hand"],
                   [["Left Shoulder", "Left Hand"], ["Right Shoulder", "Right Hand"],
                    ["Left Shoulder", "Right Shoulder"]],
                   [["Left Shoulder", "Right Shoulder"], ["Left Hand", "Right Hand"]])
    dst = Skeleton("arms_neck", ["neck", "Left Shoulder", "Right Shoulder"],
                   [["neck", "Left Shoulder"], ["neck", "Right Shoulder"]],
                   [["Left Shoulder", "Right Shoulder"]])
    kp = np.array([[[10, 20, 2], [30, 22, 2], [5, 40, 2], [35, 40, 1]]], np.float32)
    out = convert(kp, src, dst)
    np.testing.assert_allclose(out[0], [[20, 21, 2], [10, 20, 2], [30, 22, 2]])
    with pytest.raises(SkeletonError, match=r"has keypoints \['tail'\] that 'arms' lacks"):
        convert(kp, src, Skeleton("t", ["tail", "neck"], [["tail", "neck"]]))
