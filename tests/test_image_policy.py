"""One image decoder, one EXIF policy: a phone JPEG whose EXIF says 'rotate 90' is stored
and trained in stored-pixel order by both ingestions; truncated JPEGs are rejected at
ingestion and by db_info --check; bad MPII records are skipped (--strict aborts)."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mpii_mat import write_release
from mxpose.config import default_config
from mxpose.data.coco import ingest_coco
from mxpose.data.dataset import PoseDataset
from mxpose.data.image import decode_image, image_size, read_image
from mxpose.data.mpii import MPIIError, ingest_mpii
from mxpose.data.store import PoseDB, PoseDBWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W, H = 160, 96          # stored pixels: landscape; EXIF Orientation 6 would show portrait


def _photo(orientation=None, w=W, h=H):
    """JPEG bytes of a textured w x h image, optionally tagged with an EXIF orientation."""
    from PIL import Image
    rng = np.random.default_rng(0)
    px = (rng.random((h, w, 3)) * 60 + np.linspace(0, 180, w)[None, :, None]).astype(np.uint8)
    im = Image.fromarray(px)
    buf = io.BytesIO()
    if orientation is None:
        im.save(buf, "JPEG", quality=92)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(buf, "JPEG", quality=92, exif=exif.tobytes())
    return buf.getvalue(), px


def test_decoder_ignores_exif_orientation_everywhere(tmp_path):
    import cv2
    data, px = _photo(orientation=6)
    # OpenCV's default (and PIL's exif_transpose) would rotate to 96x160: we must not
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[:2] == (W, H)
    assert image_size(data) == (W, H)
    img, r, ch = decode_image(data)
    assert img.shape == (H, W, 3) and r == 1 and ch == "bgr"
    # the left-to-right ramp is still left to right (column means), in BGR order
    assert np.abs(img.mean((0, 2)) - px.mean((0, 2))).max() < 3
    assert np.abs(img[..., ::-1].astype(float) - px).mean() < \
        np.abs(img.astype(float) - px[..., ::-1][..., [1, 2, 0]]).mean()
    small, r, _ = decode_image(data, 4, channels="rgb", expect_size=(W, H))
    assert small.shape == (H // 4, W // 4, 3) and r == 4
    (tmp_path / "p.jpg").write_bytes(data)
    assert read_image(str(tmp_path / "p.jpg")).shape == (H, W, 3)


def _person(w=W, h=H):
    """16 MPII joints inside a w x h image (0-based)."""
    xs = np.linspace(0.3 * w, 0.7 * w, 16)
    ys = np.linspace(0.15 * h, 0.9 * h, 16)
    return np.stack([xs, ys], 1)


def _mpii_rect(joints, far=False):
    pts = [{"x": float(x + 1), "y": float(y + 1), "id": float(j), "is_visible": 1.0}
           for j, (x, y) in enumerate(joints)]
    if far:
        pts[0]["x"] = -5.0 * W
    return {"head": [float(joints[9, 0] - 5), float(joints[9, 1] - 5),
                     float(joints[9, 0] + 5), float(joints[9, 1] + 5)],
            "points": pts, "scale": 0.4, "objpos": [W / 2, H / 2]}


def _mpii_release(tmp_path):
    img_dir = tmp_path / "images"
    img_dir.mkdir()
    rotated, _ = _photo(orientation=6)
    plain, _ = _photo()
    (img_dir / "rotated.jpg").write_bytes(rotated)
    (img_dir / "far.jpg").write_bytes(plain)
    (img_dir / "truncated.jpg").write_bytes(plain[: len(plain) * 2 // 3])
    (img_dir / "badjoint.jpg").write_bytes(plain)
    j = _person()
    bad = _mpii_rect(j)
    bad["points"][3]["id"] = 99.0
    images = [{"name": "rotated.jpg", "train": 1, "annorect": [_mpii_rect(j)]},
              {"name": "far.jpg", "train": 1, "annorect": [_mpii_rect(j, far=True)]},
              {"name": "truncated.jpg", "train": 1, "annorect": [_mpii_rect(j)]},
              {"name": "badjoint.jpg", "train": 1, "annorect": [bad]}]
    mat = str(tmp_path / "release.mat")
    write_release(mat, images)
    return mat, str(img_dir)


def _train_cfg(skeleton):
    cfg = default_config()
    cfg.data.skeleton = skeleton
    cfg.aug.input_size = 64
    cfg.aug.min_area = 16.0
    cfg.targets.sigma = 4.0
    return cfg


def _assert_trains_every_image(db_path, skeleton):
    ds = PoseDataset(db_path, "train", config=_train_cfg(skeleton), sample_per="image")
    for i in range(len(ds)):
        item = ds[i]
        assert item[0].shape == (3, 64, 64)
    assert ds.skipped == 0                     # the EXIF-tagged image is not skipped


def test_mpii_ingestion_exif_truncated_far_and_bad_records(tmp_path):
    mat, img_dir = _mpii_release(tmp_path)
    out = str(tmp_path / "m.db")
    rep = ingest_mpii(mat, img_dir, out)
    db = PoseDB(out)
    by_name = {db.image_info(i)["file_name"]: int(i) for i in db.image_ids()}
    assert sorted(by_name) == ["far.jpg", "rotated.jpg"]
    info = db.image_info(by_name["rotated.jpg"])
    assert (info["width"], info["height"]) == (W, H)            # stored-pixel order
    assert db.load_image(by_name["rotated.jpg"]).shape == (H, W, 3)
    assert rep.skipped["image undecodable"] == ["truncated.jpg"]
    assert "truncated" in rep.details["truncated.jpg"]
    assert rep.skipped["bad annotation"] == ["badjoint.jpg"]
    assert rep.warnings["labelled keypoints far outside the image"] == ["far.jpg, person 0"]
    report = json.load(open(out + ".skipped.json"))
    assert report["skipped"]["image undecodable"] == ["truncated.jpg"]
    _assert_trains_every_image(out, "openpose_mpi15")
    with pytest.raises(MPIIError, match="joint id 99"):
        ingest_mpii(mat, img_dir, str(tmp_path / "strict.db"), strict=True)


def test_coco_ingestion_exif_and_truncated(tmp_path):
    img_dir = tmp_path / "img"
    img_dir.mkdir()
    rotated, _ = _photo(orientation=6)
    plain, _ = _photo()
    (img_dir / "rotated.jpg").write_bytes(rotated)
    (img_dir / "truncated.jpg").write_bytes(plain[: len(plain) * 2 // 3])
    kp = np.zeros((17, 3))
    kp[:16, :2] = _person()
    kp[16, :2] = kp[15, :2]
    kp[:, 2] = 2
    ann = {"keypoints": kp.ravel().round(1).tolist(), "num_keypoints": 17, "iscrowd": 0,
           "bbox": [0.3 * W, 0.1 * H, 0.4 * W, 0.8 * H], "area": 0.32 * W * H,
           "category_id": 1}
    from mxpose.skeleton import get_skeleton
    coco = get_skeleton("coco")
    data = {"images": [{"id": 1, "file_name": "rotated.jpg", "width": W, "height": H},
                       {"id": 2, "file_name": "truncated.jpg", "width": W, "height": H}],
            "annotations": [dict(ann, id=10, image_id=1), dict(ann, id=11, image_id=2)],
            "categories": [{"id": 1, "name": "person", "keypoints": list(coco.keypoints),
                            "skeleton": []}]}
    js = tmp_path / "person_keypoints_train.json"
    js.write_text(json.dumps(data))
    out = str(tmp_path / "c.db")
    s = ingest_coco(str(js), str(img_dir), out, progress=False)
    assert s.written == 1 and s.skipped["corrupt image"] == ["truncated.jpg"]
    assert "truncated" in s.details["truncated.jpg"]
    db = PoseDB(out)
    info = db.image_info(int(db.image_ids()[0]))
    assert (info["file_name"], info["width"], info["height"]) == ("rotated.jpg", W, H)
    _assert_trains_every_image(out, "openpose_coco18")


def test_db_info_check_rejects_a_truncated_jpeg(tmp_path):
    plain, _ = _photo()
    out = str(tmp_path / "t.db")
    with PoseDBWriter(out, dataset="mpii", skeleton="mpii") as w:
        w.add_image("whole.jpg", plain, W, H, "train")
        w.add_image("cut.jpg", plain[: len(plain) - 40], W, H, "train")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "db_info.py"), out,
                        "--check", "--no-progress"], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 1, r.stdout + r.stderr
    bad = [l for l in r.stdout.splitlines() if "cannot be decoded" in l]
    assert len(bad) == 1 and "cut.jpg" in bad[0] and "truncated" in bad[0]
