"""A pipeline of threads for video: frame decoding, the network and decoding + drawing
run at the same time, so the frame rate is set by the slowest stage (the network)
instead of by the sum of all of them.

OpenCV's video decoding, onnxruntime and MXNet release the GIL while they work, so
threads overlap them without copying frames between processes. A stage may run in
several threads (``workers``): on 2 cores two single-threaded onnxruntime runs side by
side get through frames faster than one run on two threads (small feature maps split
badly), and the results still come out in the source's order.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterable, Iterator, Optional, Sequence

__all__ = ["Pipeline"]

_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


class _Ordered:
    """The reading end of a queue of ``(seq, item)`` pairs that hands items out in ``seq``
    order (0, 1, 2, ...), however the writers interleaved them; safe for several reading
    threads. A ``_Failure`` is handed out at once, ahead of any order."""

    def __init__(self, q: queue.Queue, pipeline: "Pipeline"):
        self.q, self.p = q, pipeline
        self.pending = {}
        self.next = 0
        self.lock = threading.Lock()
        self.ended = False

    def get(self):
        """The next item, or ``_END`` when the items are over or the pipeline stops."""
        with self.lock:
            while True:
                if self.ended:
                    return _END
                if self.next in self.pending:
                    item = self.pending.pop(self.next)
                    self.next += 1
                    if item is _END:
                        self.ended = True
                        return (self.next - 1, _END)
                    return (self.next - 1, item)
                got = self.p._get(self.q)
                if got is _END:                     # the pipeline is stopping
                    return _END
                if isinstance(got, _Failure):
                    self.ended = True
                    return got
                self.pending[got[0]] = got[1]


class Pipeline:
    """Run ``source`` and each of ``stages`` in a thread of its own, linked by bounded
    queues; iterate over the pipeline to get the last stage's results.

    Parameters
    ----------
    source : iterable
        Produces the items (e.g. decoded frames); iterated in its own thread and closed
        there (``close()`` of a generator runs its ``finally``, releasing a capture).
    stages : sequence of callables
        ``stage(item) -> item`` for the next stage; one thread each unless ``workers``
        says more.
    maxsize : int
        Items waiting between two stages at most (bounds memory and latency).
    names : sequence of str, optional
        Names of the source and the stages for :attr:`busy` (default ``source``,
        ``stage1``...).
    workers : sequence of int, optional
        Threads per stage (default 1 each). A stage with more than one calls its callable
        from all of them at once, so the callable must be thread-safe (onnxruntime's
        ``run`` is; an MXNet network is not).

    Order: items are numbered as the source yields them and every stage takes them in
    that order, so results come out in the source's order even where several workers
    finish out of turn. Shutdown: at the end of the source the pipeline drains and
    stops; an exception in the source or a stage stops every thread and is raised by
    the iteration; leaving the iteration early (``break``, an exception or Ctrl-C in the
    consumer) stops the threads when the iterator is closed (use ``with`` or
    ``contextlib.closing``).

    Attributes
    ----------
    busy : dict
        Seconds each named part spent working (not waiting), summed over its workers and
        divided by their number, so ``items / busy[name]`` is the rate the part sustains.
    """

    def __init__(self, source: Iterable, stages: Sequence[Callable], maxsize: int = 4,
                 names: Optional[Sequence[str]] = None,
                 workers: Optional[Sequence[int]] = None):
        self.source = source
        self.stages = list(stages)
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.workers = [1] * len(self.stages) if workers is None else [int(w) for w in workers]
        if len(self.workers) != len(self.stages) or min(self.workers, default=1) < 1:
            raise ValueError("workers needs one count >= 1 per stage")
        self.maxsize = int(maxsize)
        self.names = list(names) if names is not None else \
            ["source"] + [f"stage{i + 1}" for i in range(len(self.stages))]
        if len(self.names) != len(self.stages) + 1:
            raise ValueError("names needs one name for the source and one per stage")
        self.busy = {n: 0.0 for n in self.names}
        self._busy_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._started = False

    # -- queue helpers that give up when the pipeline stops ------------------------------------
    def _put(self, q, item) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def _get(self, q):
        while True:
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                if self._stop.is_set():
                    return _END

    # -- threads ----------------------------------------------------------------------------------
    def _feed(self, out):
        name = self.names[0]
        it = iter(self.source)
        seq = 0
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    break
                self.busy[name] += time.perf_counter() - t0
                if not self._put(out, (seq, item)):
                    return
                seq += 1
            self._put(out, (seq, _END))
        except BaseException as e:  # noqa: B902 - handed to the consumer, not swallowed
            self._put(out, _Failure(e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def _work(self, fn, name, nworkers, qin, qout):
        while True:
            got = qin.get()
            if got is _END:                          # stopping, or another worker ended
                return
            if isinstance(got, _Failure):
                self._put(qout, got)
                return
            seq, item = got
            if item is _END:
                self._put(qout, got)
                return
            t0 = time.perf_counter()
            try:
                item = fn(item)
            except BaseException as e:  # noqa: B902
                self._put(qout, _Failure(e))
                return
            dt = time.perf_counter() - t0
            with self._busy_lock:
                self.busy[name] += dt / nworkers
            if not self._put(qout, (seq, item)):
                return

    def _start(self):
        qs = [queue.Queue(self.maxsize) for _ in range(len(self.stages) + 1)]
        self._threads = [threading.Thread(target=self._feed, args=(qs[0],), daemon=True,
                                          name=f"pipeline-{self.names[0]}")]
        for i, (fn, nw) in enumerate(zip(self.stages, self.workers)):
            reader = _Ordered(qs[i], self)
            for w in range(nw):
                self._threads.append(threading.Thread(
                    target=self._work, args=(fn, self.names[i + 1], nw, reader, qs[i + 1]),
                    daemon=True, name=f"pipeline-{self.names[i + 1]}"
                                      + (f"-{w}" if nw > 1 else "")))
        for t in self._threads:
            t.start()
        self._started = True
        return _Ordered(qs[-1], self)

    def __iter__(self) -> Iterator:
        if self._started:
            raise RuntimeError("a Pipeline runs once")
        last = self._start()
        try:
            while True:
                got = last.get()
                if got is _END:
                    return
                if isinstance(got, _Failure):
                    raise got.exc
                if got[1] is _END:
                    return
                yield got[1]
        finally:
            self.close()

    def close(self, timeout: float = 5.0):
        """Stop every thread (waiting at most ``timeout`` s each for the one in a call)."""
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
