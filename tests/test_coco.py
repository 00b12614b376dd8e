"""COCO person-keypoints ingestion on the real sample (../shared/data/coco_sample)."""
import copy
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mxpose.data.coco import (CocoFormatError, CocoKeypoints, annotation_people, default_split,
                              ingest_coco)
from mxpose.data.store import PoseDB, PoseDBError

pycocotools_mask = pytest.importorskip("pycocotools.mask")

from helpers import sample_json, write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "coco_parse.py")


def _ann_mask(ann, h, w):
    """Reference mask of one annotation's segmentation, straight from pycocotools."""
    seg = ann["segmentation"]
    if isinstance(seg, list):
        rle = pycocotools_mask.merge(pycocotools_mask.frPyObjects(seg, h, w))
    elif isinstance(seg["counts"], list):
        rle = pycocotools_mask.frPyObjects(seg, h, w)
    else:
        rle = seg
    return pycocotools_mask.decode(rle)


def _by_name(db):
    return {db.image_info(i)["file_name"]: int(i) for i in db.image_ids()}


@pytest.fixture(scope="module")
def sample_db(coco_sample, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("coco") / "coco.db")
    summary = ingest_coco(os.path.join(coco_sample, "test_coco.json"), coco_sample, out,
                          split="val", progress=False)
    return out, summary


def _copy_sample(coco_sample, dst):
    """The sample images and JSON copied into ``dst`` (so tests can break them)."""
    os.makedirs(dst, exist_ok=True)
    for name in os.listdir(coco_sample):
        shutil.copy(os.path.join(coco_sample, name), os.path.join(dst, name))
    return str(dst), sample_json(coco_sample)


# -- the real sample --------------------------------------------------------------------
def test_counts_equal_the_json(sample_db, coco_sample):
    out, summary = sample_db
    data = sample_json(coco_sample)
    db = PoseDB(out)
    per_image = {}
    for a in data["annotations"]:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
    assert len(db) == len(per_image) == 4
    assert summary.written == 4 and summary.people == len(data["annotations"]) == 14
    assert db.splits() == {"val": 4}
    names = _by_name(db)
    for im in data["images"]:
        i = names[im["file_name"]]
        info = db.image_info(i)
        assert (info["width"], info["height"]) == (im["width"], im["height"])
        assert info["source_id"] == str(im["id"])
        assert len(db.people(i)["keypoints"]) == per_image[im["id"]]
        with open(os.path.join(coco_sample, im["file_name"]), "rb") as f:
            assert db.image_bytes(i) == f.read()          # bytes untouched
    st = db.stats()["val"]
    labelled = sum(sum(1 for v in a["keypoints"][2::3] if v > 0) for a in data["annotations"])
    assert st["people"] == 14 and st["keypoints_labelled"] == labelled
    assert db.dataset == "coco" and db.skeleton.name == "coco"
    assert db.meta["created_by"] == "coco_parse"


def test_keypoints_equal_the_json_exactly(sample_db, coco_sample):
    db = PoseDB(sample_db[0])
    data = sample_json(coco_sample)
    anns = {str(a["id"]): a for a in data["annotations"]}
    id_to_name = {im["id"]: im["file_name"] for im in data["images"]}
    names = _by_name(db)
    seen = set()
    for name, i in names.items():
        p = db.people(i)
        for k, sid in enumerate(p["source_id"]):
            a = anns[sid]
            assert id_to_name[a["image_id"]] == name
            ref = np.asarray(a["keypoints"], dtype=np.float32).reshape(17, 3)
            np.testing.assert_array_equal(p["keypoints"][k], ref)
            np.testing.assert_array_equal(p["bbox"][k], np.float32(a["bbox"]))
            assert p["area"][k] == np.float32(a["area"])
            assert bool(p["is_crowd"][k]) == bool(a["iscrowd"])
            seen.add(sid)
    assert seen == set(anns)


def test_ignore_masks_exactly_where_unlabelled_people_are(sample_db, coco_sample):
    db = PoseDB(sample_db[0])
    data = sample_json(coco_sample)
    names = _by_name(db)
    n_unlabelled = 0
    for im in data["images"]:
        i = names[im["file_name"]]
        h, w = im["height"], im["width"]
        masked = [a for a in data["annotations"] if a["image_id"] == im["id"]
                  and (a["iscrowd"] or a["num_keypoints"] == 0)]
        mask = db.ignore_mask(i)
        assert mask.shape == (h, w)
        rles = db.ignore_rles(i)
        assert len(rles) == len(masked)
        if not masked:
            assert mask.sum() == 0
            continue
        assert all(r["reason"] == "unlabelled" for r in rles)
        union = np.zeros((h, w), np.uint8)
        for a in masked:
            ref = _ann_mask(a, h, w)
            assert ref.sum() > 0
            assert np.all(mask[ref > 0] == 1), f"annotation {a['id']} not covered"
            union |= ref
            n_unlabelled += 1
        # the mask is the people's outlines, nothing more
        np.testing.assert_array_equal(mask, union)
    assert n_unlabelled == 2     # the sample's two num_keypoints == 0 people


def test_rerun_adds_nothing(sample_db, coco_sample):
    out, _ = sample_db
    before = PoseDB(out).stats()
    s = ingest_coco(os.path.join(coco_sample, "test_coco.json"), coco_sample, out,
                    split="val", progress=False)
    assert s.written == 0 and s.already_stored == 4 and s.num_skipped == 0
    db = PoseDB(out)
    assert db.stats() == before
    assert [r["tool"] for r in db.meta["runs"]] == ["coco_parse", "coco_parse"]
    assert db.integrity_check() == "ok"


# -- crowd and RLE paths (the sample has no crowd: make one) ----------------------------
def test_crowd_and_rle_segmentations(coco_sample, tmp_path):
    images, data = _copy_sample(coco_sample, tmp_path / "img")
    im = next(i for i in data["images"] if i["id"] == 197388)
    h, w = im["height"], im["width"]
    anns = [a for a in data["annotations"] if a["image_id"] == im["id"]]
    # 1) a crowd with an uncompressed RLE (how COCO stores crowds)
    crowd = anns[0]
    m = _ann_mask(crowd, h, w)
    flat = m.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    crowd.update(iscrowd=1, segmentation={"size": [h, w], "counts": runs})
    crowd["keypoints"] = [0] * 51
    crowd["num_keypoints"] = 0
    # 2) an unlabelled person whose outline is a compressed RLE
    other = anns[1]
    m2 = _ann_mask(other, h, w)
    rle = pycocotools_mask.encode(np.asfortranarray(m2))
    other.update(segmentation={"size": [h, w], "counts": rle["counts"].decode("ascii")},
                 keypoints=[0] * 51, num_keypoints=0)
    # 3) an unlabelled person with no outline at all: its box is masked
    third = anns[2]
    third.update(segmentation=[], keypoints=[0] * 51, num_keypoints=0,
                 bbox=[10.0, 20.0, 30.0, 40.0])
    js = write_json(data, tmp_path / "crowd.json")
    out = str(tmp_path / "c.db")
    s = ingest_coco(js, images, out, progress=False)
    assert s.written == 4
    db = PoseDB(out)
    i = _by_name(db)[im["file_name"]]
    p = db.people(i)
    assert len(p["keypoints"]) == len(anns)                # crowds are stored as people too
    crowd_rows = [k for k, sid in enumerate(p["source_id"]) if sid == str(crowd["id"])]
    assert p["is_crowd"][crowd_rows[0]] and p["is_crowd"].sum() == 1
    rles = {r["reason"]: r for r in db.ignore_rles(i)}
    assert sorted(r["reason"] for r in db.ignore_rles(i)) == ["crowd", "unlabelled",
                                                               "unlabelled"]
    np.testing.assert_array_equal(pycocotools_mask.decode(rles["crowd"]), m)
    mask = db.ignore_mask(i)
    box = np.zeros((h, w), np.uint8)
    box[20:60, 10:40] = 1
    np.testing.assert_array_equal(mask, m | m2 | box)
    assert db.stats()["train"]["crowd"] == 1


def test_annotation_people_unit():
    ann = {"id": 7, "image_id": 1, "iscrowd": 0, "bbox": [1, 2, 3, 4], "area": 5.0,
           "keypoints": [0] * 48 + [10, 11, 2], "num_keypoints": 1,
           "segmentation": [[0, 0, 1, 1]]}        # labelled: no ignore region
    people, regions = annotation_people([ann], 50, 60)
    assert regions == []
    assert people[0]["keypoints"].dtype == np.float32
    np.testing.assert_array_equal(people[0]["keypoints"][16], [10, 11, 2])
    assert people[0]["source_id"] == 7
    ann2 = dict(ann, keypoints=[0] * 51, segmentation=[[0, 0, 1, 1]])   # degenerate polygon
    _, regions = annotation_people([ann2], 50, 60)
    assert regions[0]["reason"] == "unlabelled" and regions[0]["size"] == [50, 60]
    assert isinstance(regions[0]["counts"], str)
    assert pycocotools_mask.area({"size": [50, 60],
                                  "counts": regions[0]["counts"].encode()}) == 12  # bbox 3x4


# -- broken inputs ------------------------------------------------------------------------
def test_missing_corrupt_and_mismatched_images_are_skipped(coco_sample, tmp_path):
    images, data = _copy_sample(coco_sample, tmp_path / "img")
    names = [im["file_name"] for im in data["images"]]
    os.remove(os.path.join(images, names[0]))
    with open(os.path.join(images, names[1]), "wb") as f:
        f.write(b"\x00garbage, not a JPEG" * 50)
    data["images"][2]["width"] += 1
    js = write_json(data, tmp_path / "person_keypoints_val2017.json")
    out = str(tmp_path / "b.db")
    s = ingest_coco(js, images, out, progress=False)
    assert s.written == 1
    assert s.skipped == {"missing file": [names[0]], "corrupt image": [names[1]],
                         "size mismatch": [names[2]]}
    text = "\n".join(s.lines())
    assert names[0] in text and "missing file" in text and "size mismatch" in text
    db = PoseDB(out)
    assert db.splits() == {"val": 1}           # split from the file name
    assert list(_by_name(db)) == [names[3]]
    # repair the inputs: a re-run adds exactly the images skipped before (the repaired
    # annotation file is another version of the source: allowed explicitly)
    _copy_sample(coco_sample, images)
    data["images"][2]["width"] -= 1
    write_json(data, js)
    with pytest.raises(PoseDBError, match="allow-changed-source"):
        ingest_coco(js, images, out, progress=False)
    s = ingest_coco(js, images, out, progress=False, allow_source_change=True)
    assert s.written == 3 and s.already_stored == 1 and not s.skipped
    db = PoseDB(out)
    assert sorted(_by_name(db)) == sorted(names)
    assert sum(len(db.people(i)["keypoints"]) for i in db.image_ids()) == 14


def test_empty_images_limit_and_split(coco_sample, tmp_path):
    images, data = _copy_sample(coco_sample, tmp_path / "img")
    shutil.copy(os.path.join(images, "000000000785.jpg"), os.path.join(images, "empty.jpg"))
    data["images"].append(dict(data["images"][0], id=999, file_name="empty.jpg"))
    js = write_json(data, tmp_path / "x.json")
    s = ingest_coco(js, images, str(tmp_path / "a.db"), progress=False)
    assert s.written == 4 and s.empty_skipped == 1
    s = ingest_coco(js, images, str(tmp_path / "b.db"), keep_empty=True, progress=False)
    assert s.written == 5
    db = PoseDB(str(tmp_path / "b.db"))
    assert len(db.people(_by_name(db)["empty.jpg"])["keypoints"]) == 0
    s = ingest_coco(js, images, str(tmp_path / "c.db"), limit=2, split="mine", progress=False)
    assert s.written == 2
    assert PoseDB(str(tmp_path / "c.db")).splits() == {"mine": 2}
    assert default_split("person_keypoints_train2017.json") == "train"
    assert default_split("/a/person_keypoints_val2017.json") == "val"
    assert default_split("test_coco.json") == "train"


def test_format_errors_name_the_record(coco_sample, tmp_path):
    data = sample_json(coco_sample)
    with pytest.raises(CocoFormatError, match="not a COCO"):
        CocoKeypoints({"images": []}, "x.json")
    no_kp = copy.deepcopy(data)
    no_kp["categories"][0].pop("keypoints")
    with pytest.raises(CocoFormatError, match="keypoints"):
        CocoKeypoints(no_kp, "x.json")
    bad = copy.deepcopy(data)
    bad["annotations"][3]["keypoints"] = bad["annotations"][3]["keypoints"][:50]
    with pytest.raises(CocoFormatError, match="annotation id 1202706 \\(image id 40083\\)"):
        CocoKeypoints(bad, "x.json")
    bad = copy.deepcopy(data)
    bad["annotations"][0]["keypoints"][2] = 3
    with pytest.raises(CocoFormatError, match="annotation id 442619.*visibility"):
        CocoKeypoints(bad, "x.json")
    bad = copy.deepcopy(data)
    bad["annotations"][0]["keypoints"][0] = float("nan")
    with pytest.raises(CocoFormatError, match="annotation id 442619.*keypoints\\[0\\] must be"):
        CocoKeypoints(bad, "x.json")
    bad = copy.deepcopy(data)
    bad["annotations"][0]["image_id"] = 5
    with pytest.raises(CocoFormatError, match="annotation id 442619.*not in 'images'"):
        CocoKeypoints(bad, "x.json")
    bad = copy.deepcopy(data)
    del bad["images"][1]["width"]
    with pytest.raises(CocoFormatError, match="image record #1 \\(id 40083\\)"):
        CocoKeypoints(bad, "x.json")


# -- the command-line tool ----------------------------------------------------------------
def _tool(*args, env=None):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


def test_tool_help():
    r = _tool("--help")
    assert r.returncode == 0 and "--annotations" in r.stdout and "resume" in r.stdout


def test_tool_ingests_and_summarises(coco_sample, tmp_path):
    out = str(tmp_path / "t.db")
    r = _tool("--annotations", os.path.join(coco_sample, "test_coco.json"),
              "--images", coco_sample, "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "written: 4 images (14 people, 2 ignore regions)" in r.stdout
    r = _tool("--annotations", os.path.join(coco_sample, "test_coco.json"),
              "--images", coco_sample, "--out", out, "--no-progress")
    assert r.returncode == 0 and "already stored: 4 images" in r.stdout


def test_tool_user_errors_are_one_line(coco_sample, tmp_path):
    data = sample_json(coco_sample)
    data["annotations"][5]["bbox"] = [1, 2]
    bad = write_json(data, tmp_path / "bad.json")
    cases = [
        (("--annotations", str(tmp_path / "nope.json")), "nope.json does not exist"),
        (("--annotations", TOOL), "not a JSON file"),
        (("--annotations", write_json({"images": [], "annotations": []},
                                       tmp_path / "e.json")), "not a COCO annotation file"),
        (("--annotations", bad, "--strict"), "annotation id 488308 (image id 196141)"),
    ]
    for args, msg in cases:
        r = _tool(*args, "--images", coco_sample, "--out", str(tmp_path / "o.db"))
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and msg in lines[0], r.stderr
    r = _tool("--annotations", os.path.join(coco_sample, "test_coco.json"),
              "--images", str(tmp_path / "noimg"), "--out", str(tmp_path / "o.db"))
    assert r.returncode == 2 and "noimg does not exist" in r.stderr


# -- bad records are skipped, not fatal ----------------------------------------------------
def _broken(coco_sample, tmp_path):
    """The sample JSON with one bad record of each kind, and one person far outside."""
    data = sample_json(coco_sample)
    anns = data["annotations"]
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    anns[0]["keypoints"] = anns[0]["keypoints"][:50]
    anns[1]["keypoints"][0] = float("nan")
    anns[2]["keypoints"][3] = "12"
    anns[3]["segmentation"][0][0] = "x"          # the outline of an unlabelled person
    anns[4]["image_id"] = 999999
    h, w = sizes[anns[5]["image_id"]]
    anns[5]["segmentation"] = {"size": [h, w], "counts": "0\x7f bad"}
    far = next(a for a in anns[6:] if a["keypoints"][2] > 0)
    far["keypoints"][0] = -10.0 * sizes[far["image_id"]][1]
    bad_ids = [anns[i]["id"] for i in (0, 1, 2, 4, 5, 3)]
    return write_json(data, tmp_path / "broken.json"), data, bad_ids, far


def test_bad_annotations_are_skipped_counted_and_reported(coco_sample, tmp_path):
    js, data, bad_ids, far = _broken(coco_sample, tmp_path)
    out = str(tmp_path / "b.db")
    s = ingest_coco(js, coco_sample, out, progress=False)
    assert s.written == 4 and s.people == len(data["annotations"]) - 6
    assert {k: len(v) for k, v in s.skipped.items()} == {
        "keypoints of the wrong length": 1, "non-numeric or non-finite keypoints": 2,
        "bad segmentation": 1, "unknown image id": 1, "undecodable RLE": 1}
    assert s.skipped["unknown image id"] == [f"annotation id {bad_ids[3]} (image id 999999)"]
    assert list(s.warnings) == ["labelled keypoints far outside the image"]
    assert s.warnings["labelled keypoints far outside the image"][0].endswith(
        f"person {far['id']}")
    text = "\n".join(s.lines())
    assert "keypoints of the wrong length: 1" in text and "far outside" in text
    assert f"annotation id {bad_ids[0]}" in text and out + ".skipped.json" in text
    report = json.load(open(out + ".skipped.json"))
    named = [n for names in report["skipped"].values() for n in names]
    assert sorted(int(n.split()[2]) for n in named) == sorted(bad_ids)
    assert all(n in report["details"] for n in named)
    db = PoseDB(out)
    stored = {sid for i in db.image_ids() for sid in db.people(i)["source_id"]}
    assert not stored & {str(b) for b in bad_ids} and str(far["id"]) in stored
    # the left-out people (on known images) are masked out instead of taught as background
    reasons = [r["reason"] for i in db.image_ids() for r in db.ignore_rles(i)]
    assert reasons.count("invalid annotation") == 5
    # strict keeps the abort
    with pytest.raises(CocoFormatError, match=f"annotation id {bad_ids[0]}"):
        ingest_coco(js, coco_sample, str(tmp_path / "s.db"), progress=False, strict=True)


def test_tool_skips_bad_annotations_and_exits_0(coco_sample, tmp_path):
    js, data, bad_ids, _ = _broken(coco_sample, tmp_path)
    out = str(tmp_path / "t.db")
    r = _tool("--annotations", js, "--images", coco_sample, "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "skipped, unknown image id: 1" in r.stdout and "Traceback" not in r.stderr
    assert os.path.isfile(out + ".skipped.json") and out + ".skipped.json" in r.stdout
    r = _tool("--annotations", js, "--images", coco_sample, "--out", str(tmp_path / "s.db"),
              "--strict", "--no-progress")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert f"annotation id {bad_ids[0]}" in r.stderr
