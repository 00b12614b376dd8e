"""Batches of training samples: a gluon ``DataLoader`` around :class:`PoseDataset`.

:func:`make_loader` returns a :class:`PoseLoader`; iterating it yields tuples of five
float32 NDArrays ``(image, heatmaps, heat_mask, pafs, paf_mask)`` with a leading batch
axis (shapes as in :mod:`mxpose.data.dataset`).

Worker model (checked in tests/test_dataset.py)
    gluon's ``DataLoader`` creates its worker pool when it is *constructed* (processes
    by fork, or threads with ``thread_pool=True``), so the dataset is copied into the
    workers then. :class:`PoseDataset` holds nothing open at that point: its DB
    connection, target renderer and random generator are created lazily per process and
    per thread (a connection opened in ``Dataset.__init__`` and used by workers only
    works by accident: it breaks with threads, spawn, and SQLite's fork rules).
    Process workers stack the batch into ``cpu_shared(0)`` NDArrays (handed over by file
    descriptor, not copied); thread workers and ``num_workers=0`` produce ``cpu(0)``
    batches. Either way the trainer moves them with ``as_in_context`` /
    ``gluon.utils.split_and_load`` before a (hybridized) net.

Seeding
    The sampler gives every sample of every epoch its own augmentation seed,
    ``SeedSequence([seed, rank, epoch, position])``, passed along with the index to the
    worker that serves it. Augmentation therefore never repeats across workers or epochs
    and is reproducible for a given ``(seed, rank)`` whatever the number or kind of
    workers.

Worker memory
    Every sample allocates a few MB of fresh arrays (decoded image, crop, targets). glibc
    hands blocks that large out by ``mmap`` and returns them on free, so each sample
    page-faults its memory in again (about 800 faults per 368x368 COCO sample: 20-40% of
    the sample's time on a bare machine, more in a VM). Worker processes therefore call
    :func:`tune_worker_malloc` once: big blocks come from the heap, and freed memory
    stays there for the next sample. The calling process is left alone unless
    ``tune_malloc=True`` (worth it with ``thread_pool=True`` or ``num_workers=0``).

OpenCV threads
    The workers leave OpenCV's thread count alone: ``cv2.setNumThreads`` called in a
    forked worker after the parent process has used OpenCV's thread pool deadlocks
    (observed with opencv 4.8). To run single-threaded OpenCV in the workers, call
    ``cv2.setNumThreads(1)`` in the main process before building the loader.

The endless stream (training)
    With ``iterations=(start, stop)`` the loader serves iterations instead of epochs:
    iteration ``i`` is positions ``i*B .. (i+1)*B - 1`` of the sampler's stream (epoch
    after epoch, same order and seeds as the epoch-wise loader), so a resumed run sees
    exactly the batches the uninterrupted run saw and every batch is full. The trainer
    (:class:`mxpose.train.PoseTrainer`) builds its :class:`ShardSampler` with
    ``pad=False``: a stream has no short epoch end to even out, so every epoch of a rank
    visits each sample of its shard exactly once.

Sharding
    With ``num_parts > 1`` (multi-machine training) loader ``rank`` reads only the
    samples ``rank, rank + num_parts, ...`` of the dataset, shuffled within that shard
    every epoch; shards are padded (wrapping around) to ``ceil(M / num_parts)`` samples so
    every rank runs the same number of iterations, as ``dist_sync`` kvstores require.

Bad records
    A sample the dataset cannot read is replaced by the next readable one and logged
    (by the worker); the loader sums the per-batch skip counts in :attr:`PoseLoader.skipped`
    in the main process.
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import numpy as np

try:
    from mxnet.gluon.data import Dataset as _Base, Sampler as _SamplerBase
except ImportError:  # pragma: no cover - mxnet is a hard requirement of the loader
    _Base = _SamplerBase = object

__all__ = ["ShardSampler", "StreamBatches", "make_loader", "PoseLoader", "batchify", "sample_seed",
           "tune_worker_malloc"]

LAST_BATCH = ("keep", "discard", "rollover")


def tune_worker_malloc(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep large freed blocks in this process's heap (glibc ``mallopt``).

    Blocks below ``mmap_threshold`` bytes come from the heap instead of fresh ``mmap``
    pages, and up to ``trim_threshold`` bytes of freed heap are kept rather than returned
    to the system, so a process that allocates and frees the same few MB per sample stops
    page-faulting. Meant for dedicated loader processes; returns False where it cannot
    apply (not glibc).
    """
    import ctypes
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))
                and mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))


def sample_seed(seed: int, rank: int, epoch: int, position: int) -> int:
    """Augmentation seed of the sample at ``position`` of ``epoch`` on loader ``rank``."""
    ss = np.random.SeedSequence([int(seed), int(rank), int(epoch), int(position)])
    return int(ss.generate_state(1, np.uint64)[0])


class ShardSampler(_SamplerBase):
    """Yields ``(index, seed)`` pairs: this rank's shard, one pass per ``__iter__``.

    Parameters
    ----------
    length : int
        Dataset size M.
    shuffle : bool
        Permute the shard every epoch (``SeedSequence([seed, rank, epoch])``).
    seed : int
        Base seed, the same on every rank.
    rank, num_parts : int
        This loader's shard of ``num_parts``.
    pad : bool
        Pad every shard to ``ceil(M / num_parts)`` samples (default when sharding).

    Attributes
    ----------
    epoch : int
        The epoch the next ``__iter__`` produces; :meth:`set_epoch` sets it (resuming).
    """

    def __init__(self, length: int, shuffle: bool = True, seed: int = 0, rank: int = 0,
                 num_parts: int = 1, pad: Optional[bool] = None):
        length, rank, num_parts = int(length), int(rank), int(num_parts)
        if num_parts < 1 or not 0 <= rank < num_parts:
            raise ValueError(f"rank must be in 0..num_parts-1, got rank {rank} of {num_parts}")
        shard = np.arange(rank, length, num_parts, dtype=np.int64)
        if shard.size == 0:
            raise ValueError(f"shard {rank} of {num_parts} of a dataset of {length} samples "
                             "is empty")
        if pad if pad is not None else num_parts > 1:
            per = -(-length // num_parts)
            shard = np.resize(shard, per)          # wraps around
        self.shard = shard
        self.shuffle = bool(shuffle)
        self.seed, self.rank, self.num_parts = int(seed), rank, num_parts
        self.epoch = 0
        self._order_epoch, self._order = -1, None

    def set_epoch(self, epoch: int):
        self.epoch = int(epoch)

    def __len__(self):
        return int(self.shard.size)

    def order(self, epoch: int) -> np.ndarray:
        """Dataset indices of ``epoch`` in the order served (the shard, permuted by
        ``SeedSequence([seed, rank, epoch])`` when shuffling)."""
        epoch = int(epoch)
        if not self.shuffle:
            return self.shard
        if self._order_epoch != epoch:
            rng = np.random.default_rng([self.seed, self.rank, epoch])
            self._order = self.shard[rng.permutation(self.shard.size)]
            self._order_epoch = epoch
        return self._order

    def position(self, g: int):
        """``(index, seed)`` at position ``g`` of the endless stream: epoch after epoch,
        ``g = epoch * len(self) + position``, exactly what :meth:`__iter__` yields."""
        epoch, pos = divmod(int(g), self.shard.size)
        return int(self.order(epoch)[pos]), sample_seed(self.seed, self.rank, epoch, pos)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        for pos, idx in enumerate(self.order(epoch)):
            yield int(idx), sample_seed(self.seed, self.rank, epoch, pos)


class StreamBatches:
    """Batch sampler over the endless stream of a :class:`ShardSampler`: iteration ``i``
    is stream positions ``i*B .. (i+1)*B - 1``, for ``i`` in ``start .. stop - 1``.

    Every batch is full (epochs are crossed, not cut), which ``dist_sync`` requires, and a
    run restarted at iteration ``i`` sees exactly the batches the uninterrupted run saw,
    whatever the number or kind of loader workers.
    """

    def __init__(self, sampler: ShardSampler, batch_size: int, start: int, stop: int):
        self.sampler = sampler
        self.batch, self.start, self.stop = int(batch_size), int(start), int(stop)

    def __iter__(self):
        for it in range(self.start, self.stop):
            yield [self.sampler.position(g)
                   for g in range(it * self.batch, (it + 1) * self.batch)]

    def __len__(self):
        return max(0, self.stop - self.start)


class _Seeded(_Base):
    """``(index, seed)`` -> the dataset's item plus the number of samples skipped."""

    def __init__(self, dataset, tune_workers: bool = False):
        self.dataset = dataset
        self.tune_workers = tune_workers
        self._pid = os.getpid()

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        if self._pid != os.getpid():     # the first item of a new worker process
            self._pid = os.getpid()
            if self.tune_workers:
                tune_worker_malloc()
        idx, seed = key
        get = getattr(self.dataset, "get", None)
        if get is not None:
            item, skipped = get(idx, seed)
        else:   # any dataset with reseed(seed) + __getitem__ (not thread-safe)
            self.dataset.reseed(seed)
            item, skipped = self.dataset[idx], 0
        return tuple(item) + (skipped,)


def batchify(items, shared: bool = False):
    """Stack ``[(a_1, ..., a_n, skipped), ...]`` into ``[A_1, ..., A_n, total_skipped]``.

    Each ``A_k`` is a float32 NDArray ``(B,) + a_k.shape``, allocated in ``cpu_shared(0)``
    when ``shared`` (process workers: the array crosses to the main process by file
    descriptor), stacked in NumPy and copied in once. (Writing the samples one by one
    into an NDArray, ``arr[i] = a``, made every training step that followed 5-10x slower
    on CPU with MXNet 1.9.1; see docs/PERFORMANCE.md.)
    """
    import mxnet as mx
    ctx = mx.Context("cpu_shared", 0) if shared else mx.cpu(0)
    n = len(items[0]) - 1
    out = []
    for k in range(n):
        first = items[0][k]
        if not isinstance(first, np.ndarray):
            raise TypeError(f"item field {k} is {type(first).__name__}, expected a NumPy "
                            "array (datasets with return_meta=True do not batch)")
        stacked = np.stack([it[k] for it in items]).astype(np.float32, copy=False)
        out.append(mx.nd.array(stacked, ctx=ctx, dtype=np.float32))
    out.append(int(sum(it[n] for it in items)))
    return out


def _batchify_shared(items):
    return batchify(items, shared=True)


def _batchify_local(items):
    return batchify(items, shared=False)


class PoseLoader:
    """Iterable over batches ``(image, heatmaps, heat_mask, pafs, paf_mask)`` (NDArrays).

    Built by :func:`make_loader`. Each ``iter()`` is one epoch of the sampler.

    Attributes
    ----------
    loader : gluon.data.DataLoader
    sampler : ShardSampler
    skipped : int
        Unreadable samples replaced so far (summed over all workers).
    """

    def __init__(self, loader, sampler, num_workers: int, thread_pool: bool):
        self.loader = loader
        self.sampler = sampler
        self.num_workers = num_workers
        self.thread_pool = thread_pool
        self.skipped = 0

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            *arrays, skipped = batch
            self.skipped += int(skipped)
            yield tuple(arrays)

    def close(self):
        """Stop the workers (also done when the loader is garbage-collected)."""
        dl = getattr(self, "loader", None)
        pool = getattr(dl, "_worker_pool", None)
        if pool is not None:
            pool.terminate()
            pool.join()
            # gluon's __del__ asserts a process pool and would complain about threads
            dl._worker_pool = None

    def __del__(self):
        try:
            self.close()
        except Exception:   # interpreter shutdown
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def make_loader(dataset, batch_size: int, shuffle: bool = True, num_workers: int = 0,
                last_batch: str = "keep", thread_pool: bool = False,
                seed: Optional[int] = None, rank: int = 0, num_parts: int = 1,
                prefetch: Optional[int] = None, pin_memory: bool = False,
                timeout: int = 120, tune_malloc: Optional[bool] = None,
                sampler: Optional[ShardSampler] = None,
                iterations: Optional[Tuple[int, int]] = None) -> PoseLoader:
    """A loader of training batches: by epochs, or by iterations of the endless stream.

    Parameters
    ----------
    dataset : PoseDataset
        Or any dataset with ``get(idx, seed) -> (item, skipped)``, or with
        ``reseed(seed)`` and ``__getitem__`` (then ``thread_pool`` is unsafe).
    batch_size : int
    shuffle : bool
        Reshuffle the (shard of the) dataset every epoch.
    num_workers : int
        0: load in the calling thread.
    last_batch : {'keep', 'discard', 'rollover'}
        The incomplete last batch of an epoch: kept (smaller), dropped, or carried into
        the next epoch (gluon's semantics).
    thread_pool : bool
        Threads instead of processes (no fork, no shared memory; the kernels and OpenCV
        release the GIL, the Python glue does not).
    seed : int, optional
        Base of the per-sample augmentation seeds (default: ``dataset.seed``, else 0).
    rank, num_parts : int
        Read only shard ``rank`` of ``num_parts`` (multi-machine training).
    prefetch : int, optional
        Batches in flight (gluon's default ``2 * num_workers``).
    pin_memory : bool
        Pin batches for fast GPU copies (gluon's option).
    timeout : int
        Seconds to wait for a worker's batch.
    tune_malloc : bool, optional
        :func:`tune_worker_malloc` in worker processes (None, the default), also in the
        calling process (True: it then serves the samples with ``thread_pool=True`` or
        ``num_workers=0``), or nowhere (False).
    sampler : ShardSampler, optional
        Serve this sampler's shard and seeds (``shuffle``, ``seed``, ``rank`` and
        ``num_parts`` are then not used).
    iterations : (start, stop), optional
        Yield the batches of iterations ``start .. stop - 1`` of the endless stream
        (:class:`StreamBatches`: every batch full, epochs crossed, a restart at
        ``start`` repeats the uninterrupted run exactly; what the trainer uses) instead of
        one epoch per ``iter()``; ``last_batch`` does not apply.

    Returns
    -------
    PoseLoader
    """
    from mxnet.gluon.data import BatchSampler, DataLoader
    if last_batch not in LAST_BATCH:
        raise ValueError(f"last_batch must be one of {LAST_BATCH}, got {last_batch!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    num_workers = max(0, int(num_workers))
    if seed is None:
        seed = int(getattr(dataset, "seed", 0))
    if sampler is None:
        sampler = ShardSampler(len(dataset), shuffle=shuffle, seed=seed, rank=rank,
                               num_parts=num_parts)
    if iterations is not None:
        batches = StreamBatches(sampler, int(batch_size), *iterations)
    else:
        batches = BatchSampler(sampler, int(batch_size), last_batch)
    # The main process may have read from the DB (index, a test sample): close its
    # connection before the workers are forked (SQLite connections must not cross fork).
    db = getattr(dataset, "db", None)
    if db is not None and hasattr(db, "close"):
        db.close()
    shared = num_workers > 0 and not thread_pool
    if tune_malloc:
        tune_worker_malloc()
    kw = {}
    if num_workers > 0:
        kw = {"num_workers": num_workers, "thread_pool": bool(thread_pool),
              "prefetch": prefetch if prefetch is not None else 2 * num_workers}
    seeded = _Seeded(dataset, tune_workers=shared and tune_malloc is not False)
    dl = DataLoader(seeded, batch_sampler=batches,
                    batchify_fn=_batchify_shared if shared else _batchify_local,
                    pin_memory=pin_memory, timeout=int(timeout), **kw)
    return PoseLoader(dl, sampler, num_workers, bool(thread_pool))
