"""A pipeline of threads for video: frame decoding, the network and decoding + drawing
run at the same time, so the frame rate is set by the slowest stage (the network)
instead of by the sum of all of them.

OpenCV's video decoding, onnxruntime and MXNet release the GIL while they work, so
threads overlap them without copying frames between processes.
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


class Pipeline:
    """Run ``source`` and each of ``stages`` in a thread of its own, linked by bounded
    queues; iterate over the pipeline to get the last stage's results.

    Parameters
    ----------
    source : iterable
        Produces the items (e.g. decoded frames); iterated in its own thread and closed
        there (``close()`` of a generator runs its ``finally``, releasing a capture).
    stages : sequence of callables
        ``stage(item) -> item`` for the next stage; one thread each.
    maxsize : int
        Items waiting between two stages at most (bounds memory and latency).
    names : sequence of str, optional
        Names of the source and the stages for :attr:`busy` (default ``source``,
        ``stage1``...).

    Order: one thread per stage and first-in first-out queues, so results come out in
    the source's order. Shutdown: at the end of the source the pipeline drains and
    stops; an exception in the source or a stage stops every thread and is raised by
    the iteration; leaving the iteration early (``break``, an exception or Ctrl-C in the
    consumer) stops the threads when the iterator is closed (use ``with`` or
    ``contextlib.closing``).

    Attributes
    ----------
    busy : dict
        Seconds each named part spent working (not waiting), for per-stage frame rates.
    """

    def __init__(self, source: Iterable, stages: Sequence[Callable], maxsize: int = 4,
                 names: Optional[Sequence[str]] = None):
        self.source = source
        self.stages = list(stages)
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = int(maxsize)
        self.names = list(names) if names is not None else \
            ["source"] + [f"stage{i + 1}" for i in range(len(self.stages))]
        if len(self.names) != len(self.stages) + 1:
            raise ValueError("names needs one name for the source and one per stage")
        self.busy = {n: 0.0 for n in self.names}
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
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    break
                self.busy[name] += time.perf_counter() - t0
                if not self._put(out, item):
                    return
            self._put(out, _END)
        except BaseException as e:  # noqa: B902 - handed to the consumer, not swallowed
            self._put(out, _Failure(e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def _work(self, fn, name, qin, qout):
        while True:
            item = self._get(qin)
            if item is _END or isinstance(item, _Failure):
                self._put(qout, item)
                return
            t0 = time.perf_counter()
            try:
                item = fn(item)
            except BaseException as e:  # noqa: B902
                self._put(qout, _Failure(e))
                return
            self.busy[name] += time.perf_counter() - t0
            if not self._put(qout, item):
                return

    def _start(self):
        qs = [queue.Queue(self.maxsize) for _ in range(len(self.stages) + 1)]
        self._threads = [threading.Thread(target=self._feed, args=(qs[0],), daemon=True,
                                          name=f"pipeline-{self.names[0]}")]
        for i, fn in enumerate(self.stages):
            self._threads.append(threading.Thread(
                target=self._work, args=(fn, self.names[i + 1], qs[i], qs[i + 1]),
                daemon=True, name=f"pipeline-{self.names[i + 1]}"))
        for t in self._threads:
            t.start()
        self._started = True
        return qs[-1]

    def __iter__(self) -> Iterator:
        if self._started:
            raise RuntimeError("a Pipeline runs once")
        last = self._start()
        try:
            while True:
                item = self._get(last)
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
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
