"""Decoding in a separate process, for the codecs whose decoders trust their input.

SZ3 and LERC are C++ decoders that follow what a stream says (Huffman tables, offsets, counts)
without checking it against the stream's length. chunkpress checks what it can in front of
them (headers, sizes, its CRC-32C), but a stream can pass all that and still be hostile: a
bare stream made elsewhere and damaged, or a frame whose checksum a forger recomputed. Fed
one, those decoders read or write out of bounds and take the interpreter down with SIGSEGV or
SIGABRT, with the rest of a dask worker's tasks.

So their decode calls run here, in a decoding process (``_decoder.py``): a crash there is the
codec's error here, a decoder that never returns is killed after a time limit, and the
interpreter and its other threads go on. Each thread that decodes borrows a process from a
pool (one per concurrent decode; it starts in about 0.2 s, the first time).

Two kinds of decode stay in this process: a stream encode() has just made here (decoded to
check its bound, see ``here``), and every decode where the environment variable
``CHUNKPRESS_DECODE_IN_PROCESS`` is 1, for data from trusted hands where the round trip to
the decoding process (about 0.2 ms a block) matters. On platforms without memfd_create and
file-descriptor passing (not Linux), decoding stays in this process too.

The values cost no copy: the decoding process writes them into shared memory (memfd) that
becomes the returned array. A region goes back to its process's pool when the last array or
view on it is gone, and is reused with its pages already mapped in both processes; idle
regions beyond a few are unmapped.
"""

from __future__ import annotations

import collections
import contextlib
import math
import mmap
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import weakref
from pathlib import Path

import imagecodecs
import numpy as np

_DECODER = Path(__file__).with_name("_decoder.py")
#: seconds a decode may take: a floor, plus one second per this many bytes of values
TIME_FLOOR = 120.0
BYTES_PER_SECOND = 2_000_000
#: idle output regions a decoding process keeps, by count and by bytes
IDLE_REGIONS = 4
IDLE_BYTES = 256 << 20
#: idle decoding processes kept for later decodes (more are closed when they come back)
IDLE_PROCESSES = max(2, os.cpu_count() or 1)


#: whether this platform has what the decoding process needs
AVAILABLE = hasattr(os, "memfd_create") and hasattr(socket, "send_fds") and sys.platform == "linux"
_local = threading.local()


@contextlib.contextmanager
def here():
    """Decode in this process, in this thread, within the block: for streams made here."""
    depth = getattr(_local, "here", 0)
    _local.here = depth + 1
    try:
        yield
    finally:
        _local.here = depth


def isolated() -> bool:
    """Whether a decode called now runs in a decoding process."""
    return AVAILABLE and not getattr(_local, "here", 0) and (
        os.environ.get("CHUNKPRESS_DECODE_IN_PROCESS", "0") in ("", "0"))


def decode(function: str, stream, shape, dtype, error: type, codec: str, *args, **kwargs):
    """Return ``imagecodecs.<function>(stream, *args, **kwargs)``, run in a decoding process
    (see the module's docstring) into a new array of ``shape`` and ``dtype``; raise ``error``
    if the decoder fails, crashes or hangs."""
    if not isolated():
        return getattr(imagecodecs, function)(stream, *args, **kwargs)
    shape = tuple(int(n) for n in shape)
    dtype = np.dtype(dtype)
    process = _borrow()
    try:
        return process.decode(function, memoryview(stream).cast("B"), shape, dtype, args,
                              kwargs, error, codec)
    finally:
        _give_back(process)


class _Region:
    __slots__ = ("ident", "size", "map", "fd")

    def __init__(self, ident: int, size: int):
        self.ident, self.size = ident, size
        self.fd = os.memfd_create(f"chunkpress-{ident}", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, size)
            self.map = mmap.mmap(self.fd, size)
        except BaseException:
            os.close(self.fd)
            raise

    def close(self):
        self.map.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Process:
    """One decoding process, its socket, and the shared regions it has mapped."""

    def __init__(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.child = subprocess.Popen(
                [sys.executable, "-P", str(_DECODER), str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        self.socket = ours
        self.pid = os.getpid()
        self.alive = True
        self.regions = 0  # ids handed out
        self.input: _Region | None = None
        self.idle: list[_Region] = []
        self.returned = collections.deque()  # regions whose arrays are gone (any thread)
        self.dropped: list[int] = []  # region ids the decoding process is to unmap

    def decode(self, function, stream, shape, dtype, args, kwargs, error, codec):
        nbytes = math.prod(shape) * dtype.itemsize
        self._collect()
        source = self._input(len(stream))
        source.map[: len(stream)] = stream
        target = self._take(max(nbytes, 1))
        new = [region for region in (source, target) if region.fd >= 0]
        call = (function, args, kwargs, source.ident, len(stream), target.ident, shape,
                dtype.str)
        message = pickle.dumps(([(r.ident, r.size) for r in new], self.dropped, call))
        try:
            socket.send_fds(self.socket, [message], [r.fd for r in new])
            self.dropped = []
            for region in new:  # the decoding process has it now
                os.close(region.fd)
                region.fd = -1
            self.socket.settimeout(TIME_FLOOR + nbytes / BYTES_PER_SECOND)
            reply = self.socket.recv(1 << 16)
        except TimeoutError:
            self._kill()
            target.close()
            raise error(f"{codec}: the {codec.upper()} decoder did not finish in "
                        f"{self.socket.gettimeout():.0f} s on this stream; it was stopped "
                        "(the stream is corrupt, or forged)") from None
        except OSError:
            reply = b""
        if not reply:
            why = self._died()
            target.close()
            raise error(f"{codec}: the {codec.upper()} decoder crashed on this stream "
                        f"({why}); the stream is corrupt, or forged. It ran in a separate "
                        "process: nothing else was affected") from None
        if reply != b"ok":
            self.idle.append(target)
            kind, text = pickle.loads(reply)
            raise error(f"{codec}: {kind}: {text}")
        # the array's base is a memoryview made for it: gone when the array and its views are
        whole = np.frombuffer(memoryview(target.map), np.uint8, nbytes)
        weakref.finalize(whole.base, _returned, weakref.ref(self), target)
        return whole.view(dtype).reshape(shape)

    def _input(self, size):
        if self.input is None or self.input.size < size:
            if self.input is not None:
                self._drop(self.input)
            self.input = self._new(max(size, 1 << 20, 2 * (self.input.size if self.input
                                                          else 0)))
        return self.input

    def _take(self, size):
        fits = [r for r in self.idle if size <= r.size <= 2 * size + (1 << 20)]
        if fits:
            region = min(fits, key=lambda r: r.size)
            self.idle.remove(region)
            return region
        return self._new(size)

    def _new(self, size):
        size = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
        self.regions += 1
        return _Region(self.regions, size)

    def _collect(self):
        """Take back the regions whose arrays are gone; unmap idle ones beyond the limits."""
        while self.returned:
            self.idle.append(self.returned.popleft())
        while len(self.idle) > IDLE_REGIONS or sum(r.size for r in self.idle) > IDLE_BYTES:
            self._drop(self.idle.pop(0))

    def _drop(self, region):
        region.close()
        self.dropped.append(region.ident)

    def _died(self) -> str:
        self.close()
        code = self.child.poll()
        if code is None or code == 0:
            return "it stopped answering"
        if code < 0:
            try:
                return signal.Signals(-code).name
            except ValueError:
                return f"signal {-code}"
        return f"exit status {code}"

    def _kill(self):
        self.child.kill()
        self.close()

    def close(self):
        if self.alive:
            self.alive = False
            self.socket.close()  # the decoding process sees it and exits
            try:
                self.child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.child.kill()
        for region in [*self.idle, *self.returned] + ([self.input] if self.input else []):
            region.close()
        self.idle, self.input = [], None
        self.returned.clear()


def _returned(process_ref, region):
    """An array on ``region`` is gone: back to its process's pool, or unmapped."""
    process = process_ref()
    if process is not None and process.alive:
        process.returned.append(region)
    else:
        region.close()


_lock = threading.Lock()
_idle: list[_Process] = []
_pid = os.getpid()


def _borrow() -> _Process:
    global _pid
    with _lock:
        if _pid != os.getpid():  # a forked child: its parent's processes are not its own
            _idle.clear()
            _pid = os.getpid()
        if _idle:
            return _idle.pop()
    return _Process()


def _give_back(process: _Process):
    if not process.alive or process.pid != os.getpid():
        return
    with _lock:
        if len(_idle) < IDLE_PROCESSES:
            _idle.append(process)
            return
    process.close()


def shutdown():
    """Close the idle decoding processes (they also exit by themselves with this one)."""
    with _lock:
        processes = list(_idle)
        _idle.clear()
    for process in processes:
        process.close()
