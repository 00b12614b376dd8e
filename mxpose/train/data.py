"""A deterministic, resumable stream of training samples.

Sample ``g`` (the g-th sample this worker ever trains on) is a pure function of
``(seed, rank, g)``: its position in an epoch-wise permutation of this worker's shard of
the dataset, and the seed of its augmentation. Iteration ``i`` consumes samples
``i*B .. (i+1)*B - 1`` (B the worker's batch), so:

* a run resumed at iteration ``i`` sees exactly the batches the uninterrupted run saw,
  whatever the number of loader processes;
* every batch has the same size (no short last batch), which ``dist_sync`` requires;
* worker ``rank`` of ``num_shards`` reads samples ``rank, rank + num_shards, ...`` of the
  dataset (its shard of the DB) only.
"""
from __future__ import annotations

import numpy as np

try:
    from mxnet.gluon.data import Dataset as _Base
except ImportError:  # pragma: no cover
    _Base = object

__all__ = ["SampleStream", "StreamBatches", "make_loader"]


class SampleStream(_Base):
    """Index ``g`` -> the dataset sample and augmentation seed of stream position ``g``.

    Parameters
    ----------
    dataset : PoseDataset
        Anything with ``__len__``, ``__getitem__`` and ``reseed(seed)``.
    seed : int
        Stream seed (``train.seed``); equal on every distributed worker.
    rank, num_shards : int
        This worker's shard.
    shuffle : bool
        Permute each epoch (otherwise shard order).
    """

    def __init__(self, dataset, seed: int = 0, rank: int = 0, num_shards: int = 1,
                 shuffle: bool = True):
        self.dataset = dataset
        self.seed = int(seed)
        self.rank = int(rank)
        self.num_shards = int(num_shards)
        self.shuffle = bool(shuffle)
        self.shard = np.arange(self.rank, len(dataset), self.num_shards, dtype=np.int64)
        if self.shard.size == 0:
            raise ValueError(f"shard {rank} of {num_shards} of a dataset of {len(dataset)} "
                             f"samples is empty")
        self._perm_epoch = -1
        self._perm = None

    def __len__(self):
        return int(self.shard.size)

    def position(self, g: int):
        """(dataset index, augmentation seed) of stream position ``g``."""
        n = self.shard.size
        epoch, pos = divmod(int(g), n)
        if self.shuffle:
            if epoch != self._perm_epoch:
                rng = np.random.default_rng([self.seed, self.rank, epoch, 0x5EED])
                self._perm = rng.permutation(n)
                self._perm_epoch = epoch
            pos = int(self._perm[pos])
        ss = np.random.SeedSequence([self.seed, self.rank, int(g)])
        return int(self.shard[pos]), int(ss.generate_state(1, np.uint64)[0])

    def __getitem__(self, g):
        idx, seed = self.position(g)
        self.dataset.reseed(seed)
        return self.dataset[idx]


class StreamBatches:
    """Batch sampler over stream positions: iteration ``i`` -> ``[i*B, (i+1)*B)``."""

    def __init__(self, start_iter: int, stop_iter: int, batch_size: int):
        self.start, self.stop, self.batch = int(start_iter), int(stop_iter), int(batch_size)

    def __iter__(self):
        for it in range(self.start, self.stop):
            yield list(range(it * self.batch, (it + 1) * self.batch))

    def __len__(self):
        return max(0, self.stop - self.start)


def make_loader(stream: SampleStream, start_iter: int, stop_iter: int, batch_size: int,
                num_workers: int = 0):
    """A gluon DataLoader yielding the batches of iterations ``start_iter .. stop_iter-1``.

    Batches are tuples of NDArrays ``(image, heatmaps, heat_mask, pafs, paf_mask)`` with
    a leading batch axis; with ``num_workers > 0`` they arrive on ``cpu_shared(0)``.
    """
    from mxnet.gluon.data import DataLoader
    kw = {}
    if num_workers > 0:
        kw = {"num_workers": int(num_workers), "prefetch": 2 * int(num_workers)}
    return DataLoader(stream, batch_sampler=StreamBatches(start_iter, stop_iter, batch_size),
                      **kw)
