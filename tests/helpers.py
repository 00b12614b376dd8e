"""Builders and checks shared by several test files (``import helpers``, as the tests
import reference.py); plain Python and NumPy at import, MXNet only inside the function
that needs it."""
import json
import os

import numpy as np


def sample_json(folder, name="test_coco.json"):
    """The parsed annotation file ``name`` of a sample folder (the tests change a copy)."""
    with open(os.path.join(folder, name)) as f:
        return json.load(f)


def write_json(data, path) -> str:
    """``data`` written as JSON to ``path``; the path as a string."""
    with open(path, "w") as f:
        json.dump(data, f)
    return str(path)


def match_people(people, decoded, tol):
    """Assert that ``decoded`` (N, K, 3) holds exactly the N ``people`` (N, K, 3): each
    labelled keypoint of each person within ``tol`` of one decoded person's, each decoded
    person used once."""
    assert len(decoded) == len(people)
    used = set()
    for p in people:
        lab = p[:, 2] > 0
        d = np.linalg.norm(decoded[:, :, :2] - p[None, :, :2], axis=2)
        ok = ((d < tol) & (decoded[:, :, 2] > 0) | ~lab[None]).all(axis=1)
        cand = [j for j in np.nonzero(ok)[0] if j not in used]
        assert cand, f"person not recovered: {p[lab, :2].tolist()}"
        used.add(cand[0])


def reinit_he(net):
    """He-initialise ``net`` with small random biases: CMU's gaussian(0.01) stage init
    gives outputs ~1e-4, He init O(1) outputs, so numeric comparisons mean something."""
    import mxnet as mx
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2),
                   force_reinit=True)
    for k, p in net.collect_params().items():
        if k.endswith("bias"):
            p.set_data(mx.nd.random.uniform(-0.1, 0.1, p.shape))


class RandomPoseData:
    """A training set of random samples (image, heat, heat mask, paf, paf mask) of ``size``
    px, K heatmaps and P PAFs at stride 8, drawn from the seed the stream gives
    (deterministic per position); ``nan_at``: positions whose image and heatmaps are NaN."""

    def __init__(self, n=12, size=64, K=19, P=38, nan_at=()):
        self.n, self.size, self.K, self.P = n, size, K, P
        self.nan_at = set(nan_at)
        self.rng = np.random.default_rng(0)

    def __len__(self):
        return self.n

    def reseed(self, seed):
        self.rng = np.random.default_rng(seed)

    def __getitem__(self, i):
        r, s = self.rng, self.size
        h = s // 8
        img = r.standard_normal((3, s, s)).astype(np.float32) * 0.5
        heat = r.random((self.K, h, h)).astype(np.float32)
        if i in self.nan_at:
            # NaN targets: oneDNN's fused ReLU (the zoo's Activation form) maps a NaN input
            # to 0, so a NaN image alone would not reach the loss
            img[:] = np.nan
            heat[:] = np.nan
        paf = (r.standard_normal((self.P, h, h)) * 0.1).astype(np.float32)
        return (img, heat, np.ones((self.K, h, h), np.float32), paf,
                np.ones((self.P, h, h), np.float32))
