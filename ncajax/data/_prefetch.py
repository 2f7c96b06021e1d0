"""Background read-ahead: an iterator over `fn(item)` computed a few items ahead by a daemon thread.

Used to stream feature minibatches (`FeatureCache.batches`) and the stacked per-seed batches of
training, so reading from the memory-mapped cache overlaps with the jitted step.
"""

from __future__ import annotations

import queue
import threading

_DONE = object()


class Prefetch:
    """Iterator over `fn(item)` for `items`, computed by a daemon thread up to `depth` ahead.

    Exceptions of `fn` are re-raised in the consumer; `close()` (or garbage collection) stops the
    thread.
    """

    def __init__(self, fn, items, depth: int):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        q, stop = self._q, self._stop  # the thread must not reference self, so GC can close it

        def put(entry) -> bool:
            while not stop.is_set():
                try:
                    q.put(entry, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work():
            try:
                for item in items:
                    if stop.is_set() or not put(("ok", fn(item))):
                        return
            except BaseException as err:  # handed to the consumer
                put(("err", err))
                return
            put(("ok", _DONE))

        self._thread = threading.Thread(target=work, daemon=True, name="ncajax-prefetch")
        self._thread.start()

    def __iter__(self):
        return self

    def __next__(self):
        if self._finished:
            raise StopIteration
        kind, item = self._q.get()
        if kind == "err":
            self.close()
            raise item
        if item is _DONE:
            self.close()
            raise StopIteration
        return item

    def close(self) -> None:
        self._finished = True
        self._stop.set()

    def __del__(self):
        self._stop.set()
