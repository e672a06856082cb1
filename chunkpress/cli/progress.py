"""Running the work with a progress display: a live bar on a terminal, plain lines elsewhere.

On a terminal the bar says what is being done (the variable), blocks done/total and MB/s, and
updates in place. Written to a file, a pipe or a CI log there are no carriage returns and no
escape codes: one line when the work starts, one every few seconds
(``CHUNKPRESS_PROGRESS_INTERVAL`` seconds, default 5) and one at the end. When stdout is not a
terminal but stderr is, the bar goes to stderr and the last line to stdout as well.

What is counted: the blocks of a chunkpress write (its ``chunkpress-write-...`` tasks, each
writing a known group of blocks), or the blocks of the compressed arrays a callable persists;
MB/s is of the uncompressed data. Any other work counts its tasks.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import threading
import time

#: seconds between two lines when the output is not a terminal
INTERVAL_VARIABLE = "CHUNKPRESS_PROGRESS_INTERVAL"
WRITE_PREFIX = "chunkpress-write-"


def run(work, label):
    """Compute ``work`` (a delayed, or a callable that computes), showing its progress."""
    from dask.delayed import Delayed

    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):  # no distributed client: the local scheduler
        client = None
    tally = Tally()
    arrays = _arrays_of(work)
    if arrays:
        tally.add_arrays(arrays)
    display = Display(label, tally)
    try:
        if client is None:
            result = _run_local(work, tally, display)
        elif isinstance(work, Delayed):
            result = _run_on_cluster(work, client, tally, display)
        else:
            display.start()
            result = work()
            _follow(_futures_of(result, tally), tally)
    except KeyboardInterrupt:
        display.close("interrupted")
        raise
    except BaseException:
        display.close("failed")
        raise
    display.close()
    return result


def _run_local(work, tally, display):
    from dask.callbacks import Callback
    from dask.delayed import Delayed

    class Counting(Callback):
        def _start(self, dsk):
            tally.add_graph(dsk)
            display.start()

        def _pretask(self, key, dsk, state):
            tally.started(key)

        def _posttask(self, key, result, dsk, state, id):
            tally.finished(key)

    with Counting():
        return work.compute() if isinstance(work, Delayed) else work()


def _run_on_cluster(work, client, tally, display):
    from dask.delayed import Delayed

    # (a Delayed answers any attribute: the type tells a chunkpress write, whose chunks are
    # written on the cluster, then published in this process)
    if callable(getattr(type(work), "finish", None)):
        graph = work.writes.dask
        for name, layer in graph.layers.items():
            if name.startswith(WRITE_PREFIX):
                tally.add_graph(layer)
        keys = list(tally.units)
        display.start()
        try:
            # each write task a future of its own, to be counted as it finishes
            final, *tasks = client.compute([work.writes] +
                                           [Delayed(k, graph, layer=k[0]) for k in keys])
            _follow(dict(zip(keys, tasks)), tally, final)
            results = final.result()
            del tasks
        except BaseException:
            work.abort()
            raise
        return work.finish(results)
    display.start()
    final = client.compute(work)
    _follow({}, tally, final)
    return final.result()


def _follow(futures: dict, tally, final=None) -> None:
    """Wait for ``final`` (or every future), counting the futures (key: future) as they end."""
    waiting = dict(futures)
    while waiting or (final is not None and not final.done()):
        for key, future in list(waiting.items()):
            if future.status == "finished":
                tally.finished(key)
                del waiting[key]
            elif future.status in ("error", "cancelled"):
                future.result()  # raises the task's error
        if final is not None and final.status in ("error", "cancelled"):
            final.result()
        time.sleep(0.05)


def _arrays_of(work) -> dict:
    """The compressed arrays (name: array) a callable such as ``encoded.persist`` makes."""
    arrays = getattr(getattr(work, "__self__", None), "arrays", None)
    return arrays if isinstance(arrays, dict) else {}


def _futures_of(result, tally) -> dict:
    from distributed import futures_of

    futures = futures_of(list(getattr(result, "arrays", {}).values()))
    return {f.key: f for f in futures if f.key in tally.units}


class Tally:
    """What the work counts (blocks, or tasks): by key, its variable, blocks and bytes."""

    def __init__(self):
        self.units = {}  # key: (variable, blocks, uncompressed bytes)
        self.unit = None  # "blocks" or "tasks"; None: nothing to count
        self.total = self.total_bytes = self.done = self.done_bytes = 0
        self.variables = {}  # in order of appearance
        self.current = None
        self.ended = set()
        self.lock = threading.Lock()

    def add(self, key, variable, blocks, nbytes) -> None:
        if key in self.units:
            return
        self.units[key] = (variable, blocks, nbytes)
        self.total += blocks
        self.total_bytes += nbytes
        if variable:
            self.variables.setdefault(variable, None)

    def add_arrays(self, arrays: dict) -> None:
        """Count the blocks of dask arrays (name: array) by their output keys."""
        from dask.core import flatten

        for name, array in arrays.items():
            itemsize = array.dtype.itemsize
            for key in flatten(array.__dask_keys__()):
                index = key[1:]
                values = math.prod(c[i] for c, i in zip(array.chunks, index))
                self.add(key, name, 1, values * itemsize)
        self.unit = "blocks"

    def add_graph(self, graph) -> None:
        """Count the write tasks of a graph (key: task); none, and nothing counted yet: every
        task."""
        with self.lock:
            before = len(self.units)
            for key, task in graph.items():
                if isinstance(key, tuple) and str(key[0]).startswith(WRITE_PREFIX):
                    self.add(key, *_write_task(task))
            if len(self.units) > before:
                self.unit = "blocks"
            elif self.unit is None:
                from dask.task_spec import DataNode

                for key, task in graph.items():
                    if not isinstance(task, DataNode):  # data: never run as a task
                        self.add(key, None, 1, 0)
                self.unit = "tasks"

    def started(self, key) -> None:
        unit = self.units.get(key)
        if unit is not None and unit[0]:
            self.current = unit[0]

    def finished(self, key) -> None:
        with self.lock:
            unit = self.units.get(key)
            if unit is None or key in self.ended:
                return
            self.ended.add(key)
            self.done += unit[1]
            self.done_bytes += unit[2]
            if unit[0]:
                self.current = unit[0]


def _write_task(task) -> tuple:
    """(variable, blocks, uncompressed bytes) of a ``chunkpress-write-`` task: its arguments
    are (blocks, indices, codec, kwargs, verify, sink, shard, offset, chunk_shape)."""
    try:
        args = task.args
        indices, sink, offset, chunk = args[1], args[5], args[7], args[-1]
        indices = list(getattr(indices, "value", indices))
        shape = tuple(sink.metadata.shape)
        dtype = sink.metadata.dtype
        itemsize = getattr(dtype, "itemsize", None) or dtype.to_native_dtype().itemsize
    except (AttributeError, IndexError, TypeError):  # not the task this module knows
        return None, 1, 0
    nbytes = 0
    for index in indices:
        place = [i + o for i, o in zip(index, offset)]
        nbytes += itemsize * math.prod(max(0, min(c, n - p * c))
                                       for p, c, n in zip(place, chunk, shape))
    return sink.path or None, len(indices), nbytes


class Display:
    """The bar (a terminal) or the lines (anything else) of one run."""

    def __init__(self, label: str, tally: Tally):
        self.label = label
        self.tally = tally
        self.live = None
        self.log = sys.stdout  # where the last line goes (None: the live stream has it)
        if _isatty(sys.stdout):
            self.live, self.log = sys.stdout, None
        elif _isatty(sys.stderr):
            self.live = sys.stderr
        self.interval = _interval()
        self.began = self.last = None
        self.width = 0  # of the bar drawn last
        self.drawn = None
        self.stop = threading.Event()
        self.thread = None

    def start(self) -> None:
        if self.began is not None:
            return
        self.began = self.last = time.monotonic()
        if self.live is None:
            self._line(self._opening())
        else:
            self._draw(self._bar(self.began))
        self.thread = threading.Thread(target=self._loop, daemon=True,
                                       name="chunkpress-progress")
        self.thread.start()

    def _loop(self) -> None:
        pause = 0.1 if self.live is not None else min(0.5, self.interval)
        while not self.stop.wait(pause):
            now = time.monotonic()
            if self.live is not None:
                self._draw(self._bar(now))
            elif now - self.last >= self.interval:
                self.last = now
                self._line(self._status(now))

    def close(self, failure: str | None = None) -> None:
        self.start()
        self.stop.set()
        self.thread.join()
        text = self._ending(time.monotonic(), failure)
        if self.live is not None:
            self._draw(text, end=True)
        if self.log is not None:
            self._line(text)

    # --- what is written ---------------------------------------------------------------

    def _columns(self) -> int:
        """The width of the terminal the bar is drawn on (stderr's when stdout is a file)."""
        try:
            return os.get_terminal_size(self.live.fileno()).columns or 100
        except (AttributeError, ValueError, OSError):  # no terminal size there
            return shutil.get_terminal_size((100, 24)).columns

    def _draw(self, text: str, end=False) -> None:
        if not end:  # a wrapped line is not redrawn in place (the last one may wrap)
            text = text[: max(1, self._columns() - 1)]
        if text == self.drawn and not end:
            return
        self.drawn = text
        self.live.write("\r" + text.ljust(self.width) + ("\n" if end else ""))
        self.live.flush()
        self.width = 0 if end else len(text)

    def _line(self, text: str) -> None:
        self.log.write(text + "\n")
        self.log.flush()

    def _what(self) -> str:
        current = self.tally.current or _names(list(self.tally.variables))
        return f"{self.label} {current}" if current else self.label

    def _counts(self) -> str:
        t = self.tally
        return f"{t.done}/{t.total} {t.unit}" if t.unit else ""

    def _rate(self, now) -> str:
        seconds = max(now - self.began, 1e-6)
        if not self.tally.total_bytes:
            return ""
        return f"{self.tally.done_bytes / 1e6 / seconds:.1f} MB/s"

    def _opening(self) -> str:
        t = self.tally
        if not t.unit:
            return f"{self.label}: started"
        names = _names(list(t.variables))
        size = f", {_megabytes(t.total_bytes)}" if t.total_bytes else ""
        return f"{self.label}: {t.total} {t.unit}" + (f" of {names}" if names else "") + size

    def _bar(self, now) -> str:
        """What is done, the bar, blocks done/total, MB/s and the time, in the terminal's
        width: a narrow one gets a shorter bar, then none, then a shortened name."""
        t = self.tally
        room = self._columns() - 1
        what = f"{self._what()}:"
        figures = "  ".join(p for p in (self._counts(), self._rate(now),
                                        _clock(now - self.began)) if p)
        widest = len(f"{t.total}/{t.total} {t.unit}  9999.9 MB/s  00:00")  # a bar that keeps
        width = min(24, room - len(what) - max(widest, len(figures)) - 6) if t.total else 0
        if width < 6:
            width = 0
            spare = room - len(figures) - 2
            if len(what) > spare:
                what = what[: max(0, spare - 3)] + "..:" if spare >= 6 else ""
        bar = ""  # its width as the figures' widest: the same from frame to frame
        if width:
            filled = round(width * t.done / t.total)
            bar = "[" + "#" * filled + "-" * (width - filled) + "]"
        return "  ".join(p for p in (what, bar, figures) if p)

    def _status(self, now) -> str:
        t = self.tally
        share = f" ({100 * t.done / t.total:.0f}%)" if t.total else ""
        parts = [self._counts() + share if t.unit else "running", self._rate(now),
                 _clock(now - self.began)]
        return f"{self._what()}: " + ", ".join(p for p in parts if p)

    def _ending(self, now, failure) -> str:
        t = self.tally
        seconds = now - self.began
        if failure:
            counted = f" after {t.done}/{t.total} {t.unit}" if t.unit else ""
            return f"{self.label}: {failure}{counted}, {seconds:.1f} s"
        done = f" {t.total} {t.unit}" if t.unit else ""
        names = _names(list(t.variables))
        size = f", {_megabytes(t.total_bytes)}" if t.total_bytes else ""
        rate = f" ({t.total_bytes / 1e6 / max(seconds, 1e-6):.1f} MB/s)" if t.total_bytes \
            else ""
        what = f"{done} of {names}" if names else done
        return f"{self.label}: done{',' if what else ''}{what}{size} in {seconds:.1f} s{rate}"


def _names(names: list) -> str:
    if len(names) <= 3:
        return ", ".join(names)
    return ", ".join(names[:3]) + f" and {len(names) - 3} more"


def _megabytes(nbytes) -> str:
    return f"{nbytes / 1e6:.1f} MB"


def _clock(seconds) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced, or closed
        return False


def _interval() -> float:
    text = os.environ.get(INTERVAL_VARIABLE, "")
    try:
        value = float(text) if text else 5.0
    except ValueError:
        value = 5.0
    return value if value > 0 else 5.0
