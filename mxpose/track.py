"""People across video frames: stable ids (:class:`Tracker`) and keypoints filtered over
time (:class:`OneEuroFilter`, :class:`PoseSmoother`).

Tracking is greedy matching of each frame's people to the tracks of the previous
frames on OKS (COCO's object keypoint similarity, the same measure the AP uses): every
(person, track) pair is scored, the best pairs are taken first, and a pair is only
taken above ``min_oks``. A track's pose is predicted forward with its centre's velocity
(so that two people walking past each other keep their ids) and a track that finds no
person keeps its id for ``patience`` frames (missed detections, short occlusions, a
person stepping out of the picture and back).

Smoothing is the one-euro filter (Casiez, Roussel and Vogel, CHI 2012): an exponential
low-pass filter whose cutoff frequency rises with the signal's speed, so a still
keypoint's jitter is removed (cutoff ``min_cutoff``) while a moving one follows with
little lag (cutoff ``min_cutoff + beta * speed``). :class:`PoseSmoother` keeps one
filter state per track id and measures speed in person heights per second, so the
same parameters work for people near and far.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

__all__ = ["pose_oks", "Tracker", "OneEuroFilter", "PoseSmoother", "DEFAULT_SIGMA"]

#: OKS sigma for layouts without per-keypoint sigmas (about COCO's shoulders/hips).
DEFAULT_SIGMA = 0.08


def _boxes(people: np.ndarray) -> np.ndarray:
    """(N, 4) x0, y0, x1, y1 of each person's found keypoints (zeros when none)."""
    found = people[..., 2] > 0
    big = np.float32(np.inf)
    x = people[..., 0]
    y = people[..., 1]
    x0 = np.where(found, x, big).min(-1)
    y0 = np.where(found, y, big).min(-1)
    x1 = np.where(found, x, -big).max(-1)
    y1 = np.where(found, y, -big).max(-1)
    out = np.stack([x0, y0, x1, y1], -1)
    out[~found.any(-1)] = 0
    return out


def _heights(people: np.ndarray, floor: float = 1.0) -> np.ndarray:
    """(N,) the larger side of each person's keypoint box (the person's scale in px)."""
    b = _boxes(people)
    return np.maximum(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]), floor)


def pose_oks(a: np.ndarray, b: np.ndarray, sigmas: np.ndarray,
             min_area: float = 100.0) -> np.ndarray:
    """Object keypoint similarity of every pose of ``a`` with every pose of ``b``.

    ``exp(-d^2 / (2 s^2 k^2))`` averaged over the keypoints found in both poses, with
    ``k = 2 sigma`` per keypoint (COCO's constants) and ``s^2`` the mean of the two
    poses' keypoint-box areas (at least ``min_area``).

    Parameters
    ----------
    a : (Na, K, 3) float, b : (Nb, K, 3) float
        x, y, score; a keypoint is found where its score > 0.
    sigmas : (K,) float

    Returns
    -------
    (Na, Nb) float32 in [0, 1]; 0 where the two share no found keypoint.
    """
    a = np.asarray(a, np.float32).reshape(-1, len(sigmas), 3)
    b = np.asarray(b, np.float32).reshape(-1, len(sigmas), 3)
    ba, bb = _boxes(a), _boxes(b)
    area_a = (ba[:, 2] - ba[:, 0]) * (ba[:, 3] - ba[:, 1])
    area_b = (bb[:, 2] - bb[:, 0]) * (bb[:, 3] - bb[:, 1])
    s2 = np.maximum((area_a[:, None] + area_b[None, :]) / 2, min_area)       # (Na, Nb)
    d2 = ((a[:, None, :, :2] - b[None, :, :, :2]) ** 2).sum(-1)               # (Na, Nb, K)
    k2 = (2 * np.asarray(sigmas, np.float32)) ** 2
    e = np.exp(-d2 / (2 * s2[..., None] * k2))
    both = (a[:, None, :, 2] > 0) & (b[None, :, :, 2] > 0)
    n = both.sum(-1)
    return np.where(n > 0, (e * both).sum(-1) / np.maximum(n, 1), 0).astype(np.float32)


class Tracker:
    """Stable ids for the people of consecutive frames.

    Parameters
    ----------
    skeleton : Skeleton or str, optional
        Gives the per-keypoint OKS sigmas (``DEFAULT_SIGMA`` for layouts without).
    sigmas : (K,) array, optional
        Instead of the skeleton's.
    min_oks : float
        A person continues a track only with an OKS above this (0.1: the poses overlap
        clearly; lower keeps ids through faster motion, higher splits tracks sooner).
    patience : int
        Frames a track waits for its person before its id is retired.
    momentum : float
        Weight of the old velocity in the running estimate of a track's velocity (px per
        frame); 0 uses only the last step, 1 disables the motion prediction's update.

    Ids start at 1 and are never reused.
    """

    def __init__(self, skeleton=None, sigmas=None, min_oks: float = 0.1, patience: int = 8,
                 momentum: float = 0.5):
        if sigmas is None:
            if skeleton is None:
                raise ValueError("Tracker needs a skeleton or sigmas")
            from .skeleton import get_skeleton
            skel = get_skeleton(skeleton)
            sigmas = (skel.sigma_array if skel.sigma_array is not None
                      else np.full(skel.num_keypoints, DEFAULT_SIGMA, np.float32))
        self.sigmas = np.asarray(sigmas, np.float32)
        if not 0 <= min_oks < 1:
            raise ValueError(f"min_oks must be in [0, 1), got {min_oks}")
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.min_oks = float(min_oks)
        self.patience = int(patience)
        self.momentum = float(momentum)
        self.next_id = 1
        self.reset()

    def reset(self):
        """Forget every track (ids keep counting up)."""
        K = len(self.sigmas)
        self.ids = np.zeros(0, np.int64)
        self.poses = np.zeros((0, K, 3), np.float32)       # last seen pose per track
        self.velocity = np.zeros((0, 2), np.float32)       # px per frame
        self.missed = np.zeros(0, np.int64)                # frames since last seen

    def predicted(self) -> np.ndarray:
        """(T, K, 3) where each track's person is expected in the next frame."""
        out = self.poses.copy()
        # a lost track's velocity is damped: people stop and turn around while unseen
        steps = (1 - 0.5 ** (self.missed + 1)) / 0.5           # 1, 1.5, 1.75, ... frames
        out[..., :2] += (self.velocity * steps[:, None])[:, None, :]
        return out

    def update(self, people: np.ndarray) -> np.ndarray:
        """Match one frame's people to the tracks and return their ids.

        Parameters
        ----------
        people : (N, K, 3) float
            x, y, score of the frame's people (score 0: keypoint not found).

        Returns
        -------
        (N,) int64 ids, new ones for people that continue no track.
        """
        people = np.asarray(people, np.float32).reshape(-1, len(self.sigmas), 3)
        N, T = len(people), len(self.ids)
        match = np.full(N, -1, np.int64)
        if N and T:
            sim = pose_oks(people, self.predicted(), self.sigmas)
            order = np.argsort(-sim, axis=None, kind="stable")
            used_p = np.zeros(N, bool)
            used_t = np.zeros(T, bool)
            for flat in order:
                i, j = divmod(int(flat), T)
                if sim[i, j] <= self.min_oks:
                    break
                if used_p[i] or used_t[j]:
                    continue
                match[i] = j
                used_p[i] = used_t[j] = True
        ids = np.empty(N, np.int64)
        hit = match >= 0
        j = match[hit]
        ids[hit] = self.ids[j]
        # velocity from the centre shift over the keypoints found in both poses
        if hit.any():
            old = self.poses[j]
            new = people[hit]
            both = ((old[..., 2] > 0) & (new[..., 2] > 0))[..., None]
            n = np.maximum(both.sum(1), 1)
            shift = ((new[..., :2] - old[..., :2]) * both).sum(1) / n
            shift /= (self.missed[j] + 1)[:, None]
            m = self.momentum
            self.velocity[j] = m * self.velocity[j] + (1 - m) * shift
            self.poses[j] = new
            self.missed[j] = -1              # +1 below
        fresh = ~hit
        n_new = int(fresh.sum())
        ids[fresh] = np.arange(self.next_id, self.next_id + n_new)
        self.next_id += n_new
        self.missed += 1
        keep = self.missed <= self.patience
        self.ids = np.concatenate([self.ids[keep], ids[fresh]])
        self.poses = np.concatenate([self.poses[keep], people[fresh]])
        self.velocity = np.concatenate([self.velocity[keep], np.zeros((n_new, 2), np.float32)])
        self.missed = np.concatenate([self.missed[keep], np.zeros(n_new, np.int64)])
        return ids


class OneEuroFilter:
    """The one-euro filter on an array of signals (each element filtered on its own).

    ``x_hat += a(cutoff) * (x - x_hat)`` with ``a(f) = 1 / (1 + 1 / (2 pi f dt))`` and
    ``cutoff = min_cutoff + beta * |dx_hat| / scale``, where ``dx_hat`` is the signal's
    speed low-passed at ``d_cutoff``.

    Parameters
    ----------
    min_cutoff : float
        Cutoff (Hz) of a still signal: lower removes more jitter.
    beta : float
        Cutoff increase per unit of (speed / scale): higher follows motion with less lag.
    d_cutoff : float
        Cutoff (Hz) of the speed estimate.

    Elements may skip updates (``mask``): each keeps its own last time, so a keypoint
    that was not found for a while is filtered over the real time gap.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("one-euro filter needs min_cutoff > 0, d_cutoff > 0, beta >= 0")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.x = self.dx = self.t = None

    @staticmethod
    def _alpha(cutoff, dt):
        return 1.0 / (1.0 + 1.0 / (2 * np.pi * cutoff * dt))

    def __call__(self, x: np.ndarray, t: float, mask: Optional[np.ndarray] = None,
                 scale=1.0) -> np.ndarray:
        """Filter the samples ``x`` taken at time ``t`` (seconds).

        Parameters
        ----------
        x : float array, the same shape at every call
        mask : bool array broadcastable to ``x``, optional
            Elements to update; the others are returned as given and keep their state.
        scale : float or array broadcastable to ``x``
            Divides the speed before ``beta`` (e.g. the person's height in px).
        """
        x = np.asarray(x, np.float64)
        upd = np.ones(x.shape, bool) if mask is None else np.broadcast_to(mask, x.shape)
        if self.x is None or self.x.shape != x.shape:
            self.x = x.copy()
            self.dx = np.zeros_like(x)
            self.t = np.full(x.shape, np.nan)
        first = upd & np.isnan(self.t)
        dt = np.where(upd & ~first, t - np.nan_to_num(self.t, nan=t), 0.0)
        step = upd & ~first & (dt > 0)
        dts = np.where(step, dt, 1.0)
        dx = (x - self.x) / dts
        a_d = self._alpha(self.d_cutoff, dts)
        edx = self.dx + a_d * (dx - self.dx)
        cutoff = self.min_cutoff + self.beta * np.abs(edx) / scale
        a = self._alpha(cutoff, dts)
        new_x = self.x + a * (x - self.x)
        self.x = np.where(step, new_x, np.where(first, x, self.x))
        self.dx = np.where(step, edx, self.dx)
        self.t = np.where(upd, t, self.t)
        return np.where(upd, self.x, x)


class PoseSmoother:
    """One-euro filtering of tracked people's keypoints, one state per track id.

    Parameters
    ----------
    min_cutoff : float
        Hz; the cutoff of a still keypoint (1.0: jitter above ~1 Hz is damped).
    beta : float
        Per (person height / s) of keypoint speed: at ``beta = 4`` a keypoint moving at one
        person height per second is filtered at ``1 + 4 = 5`` Hz (about 30 ms lag).
    d_cutoff : float
        Hz; the cutoff of the speed estimate.
    forget : float
        Seconds after which the state of an id that was not seen is dropped.

    Keypoints with score 0 are passed through (and do not update their state).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 4.0, d_cutoff: float = 1.0,
                 forget: float = 2.0):
        OneEuroFilter(min_cutoff, beta, d_cutoff)       # validates
        self.params = (float(min_cutoff), float(beta), float(d_cutoff))
        self.forget = float(forget)
        self._filters: Dict[int, OneEuroFilter] = {}
        self._seen: Dict[int, float] = {}

    def __call__(self, people: np.ndarray, ids: np.ndarray, t: float) -> np.ndarray:
        """Smoothed copy of ``people (N, K, 3)`` whose track ids are ``ids (N,)`` at time
        ``t`` (seconds)."""
        people = np.asarray(people, np.float32)
        out = people.copy()
        if len(people):
            heights = _heights(people)
        for n, pid in enumerate(np.asarray(ids).tolist()):
            f = self._filters.get(pid)
            if f is None:
                f = self._filters[pid] = OneEuroFilter(*self.params)
            found = people[n, :, 2:3] > 0
            out[n, :, :2] = f(people[n, :, :2], t, mask=found, scale=heights[n])
            self._seen[pid] = t
        for pid in [p for p, s in self._seen.items() if t - s > self.forget]:
            del self._seen[pid], self._filters[pid]
        return out
