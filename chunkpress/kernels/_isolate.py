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

The values cost no copy: the decoding process writes them into shared memory (a memfd region,
``_shm``) that becomes the returned array. A region goes back to its process's pool when the
last array or view on it is gone, and is reused with its pages mapped in both processes
(mapping them afresh costs as much as a fast decoder's whole decode); idle regions beyond a
few are unmapped. The decoding process maps each region between guard pages. A fork of this
interpreter (multiprocessing) gets private copies of the arrays it inherits, and the regions
under them are never reused, so that parent and child share nothing through them.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import math
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

from . import _shm

_DECODER = Path(__file__).with_name("_decoder.py")
#: seconds a decode may take: a floor, plus one second per this many bytes of values
TIME_FLOOR = 60.0
BYTES_PER_SECOND = 2_000_000
#: seconds a decoding process may take to start
START_TIME = 60.0
#: idle output regions a decoding process keeps, by count and by bytes
IDLE_REGIONS = 2
IDLE_BYTES = 192 << 20
#: idle decoding processes kept for later decodes (more are closed when they come back)
IDLE_PROCESSES = max(4, 2 * (os.cpu_count() or 1))
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
    process = _borrow(error, codec)
    try:
        return process.decode(function, memoryview(stream).cast("B"), shape, dtype, args,
                              kwargs, error, codec)
    finally:
        _give_back(process)


class _Region:
    """A shared-memory region: mapped here, and in the decoding process once sent there."""

    __slots__ = ("ident", "size", "fd", "mapping", "retired")

    def __init__(self, ident: int, size: int):
        self.ident, self.size = ident, size
        self.fd, self.mapping = _shm.region(size)
        self.retired = False  # True: never reused (a fork may still read it)

    def close(self):
        self.mapping.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Process:
    """One decoding process, its socket, and the shared regions it has mapped."""

    def __init__(self, error, codec):
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
        _every.add(self)
        try:
            self.socket.settimeout(START_TIME)
            ready = self.socket.recv(16)
        except OSError:
            ready = b""
        except BaseException:
            self._kill()
            raise
        if ready != b"ready":
            self._kill()
            raise error(f"{codec}: chunkpress's decoding process did not start ({sys.executable} "
                        f"-P {_DECODER}: exit status {self.child.returncode}; its error is on "
                        "stderr). CHUNKPRESS_DECODE_IN_PROCESS=1 decodes in this process")

    def decode(self, function, stream, shape, dtype, args, kwargs, error, codec):
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes == 0:
            return np.empty(shape, dtype)
        self._collect()
        try:
            source = self._input(len(stream))
            target = self._take(nbytes)
        except OSError as exc:  # no memory (or descriptors) for a region
            raise error(f"{codec}: no shared memory for the {nbytes} bytes this block decodes "
                        f"to: {exc}") from None
        np.frombuffer(source.mapping.buffer(len(stream)), np.uint8)[:] = np.frombuffer(
            stream, np.uint8)
        new = [region for region in (source, target) if region.fd >= 0]
        call = (function, args, kwargs, source.ident, len(stream), target.ident, shape,
                dtype.str)
        message = pickle.dumps(([(r.ident, r.size) for r in new], self.dropped, call))
        limit = TIME_FLOOR + nbytes / BYTES_PER_SECOND
        try:
            socket.send_fds(self.socket, [message], [r.fd for r in new])
            self.dropped = []
            for region in new:  # the decoding process has it now
                os.close(region.fd)
                region.fd = -1
            self.socket.settimeout(limit)
            reply = self.socket.recv(1 << 16)
        except TimeoutError:
            self._kill()
            target.close()
            raise error(f"{codec}: the {codec.upper()} decoder did not finish in {limit:.0f} s "
                        "on this stream; it was stopped (the stream is corrupt, or forged)"
                        ) from None
        except OSError:
            reply = b""
        except BaseException:  # Ctrl-C: the process may still answer; it can't be trusted now
            self._kill()
            target.close()
            raise
        if not reply:
            why = self._died()
            target.close()
            if why.startswith("SIG"):
                raise error(f"{codec}: the {codec.upper()} decoder crashed on this stream "
                            f"({why}); the stream is corrupt, or forged. It ran in a separate "
                            "process: this one goes on") from None
            raise error(f"{codec}: chunkpress's decoding process ended ({why}) while "
                        "decoding this stream; its error, if any, is on stderr")
        if reply != b"ok":
            self.idle.append(target)
            if reply[:1] != b"E":
                self._kill()
            raise error(f"{codec}: {reply[1:].decode('utf-8', 'replace')}")
        buffer = target.mapping.buffer(nbytes)
        with _lock:
            _lent[id(target)] = target
        weakref.finalize(buffer, _returned, weakref.ref(self), target).atexit = False
        return np.frombuffer(buffer, np.uint8).view(dtype).reshape(shape)

    def _input(self, size):
        if self.input is None or self.input.size < size:
            old, self.input = self.input, None
            if old is not None:
                self._drop(old)
            self.input = self._new(max(size, 1 << 20, 2 * (old.size if old else 0)))
        return self.input

    def _take(self, size):
        fits = [r for r in self.idle if size <= r.size <= 2 * size + (1 << 20)]
        if fits:
            region = min(fits, key=lambda r: r.size)
            self.idle.remove(region)
            return region
        return self._new(size)

    def _new(self, size):
        size = -(-size // _shm.PAGE) * _shm.PAGE
        self.regions += 1
        return _Region(self.regions, size)

    def _collect(self):
        """Take back the regions whose arrays are gone; unmap idle ones beyond the limits."""
        while self.returned:
            region = self.returned.popleft()
            if region.retired:
                self._drop(region)
            else:
                self.idle.append(region)
        while len(self.idle) > IDLE_REGIONS or sum(r.size for r in self.idle) > IDLE_BYTES:
            self._drop(self.idle.pop(0))

    def _drop(self, region):
        region.close()
        self.dropped.append(region.ident)

    def tidy(self):
        """Collect, and have the decoding process unmap what was dropped, now."""
        if self.pid != os.getpid():
            return
        self._collect()
        if self.dropped and self.alive:
            try:
                socket.send_fds(self.socket, [pickle.dumps(([], self.dropped, None))], [])
                self.dropped = []
                self.socket.settimeout(START_TIME)
                if self.socket.recv(16) != b"ok":
                    self._kill()
            except Exception:  # the process is gone or out of step: the next decode starts one
                self._kill()
            except BaseException:
                self._kill()
                raise

    def _died(self) -> str:
        self.close()
        code = self.child.poll()
        if code is None:
            return "it stopped answering"
        if code < 0:
            try:
                return signal.Signals(-code).name
            except ValueError:
                return f"signal {-code}"
        return f"exit status {code}"

    def _kill(self):
        if self.alive:
            self.child.kill()
        self.close()

    def close(self):
        """Close the socket (the decoding process sees it and exits) and unmap the regions.

        In a forked child the process is its parent's: it is let go of, not waited for.
        """
        with _lock:  # after this, _returned closes regions itself
            alive, self.alive = self.alive, False
            regions = self.idle + list(self.returned) + ([self.input] if self.input else [])
            self.idle, self.input = [], None
            self.returned.clear()
        if alive:
            self.socket.close()
            if self.pid != os.getpid():
                self.child.returncode = 0  # not ours to wait for
            else:
                try:
                    self.child.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.child.kill()
                    self.child.wait()
        for region in regions:
            region.close()


def _returned(process_ref, region):
    """An array on ``region`` is gone: back to its process's pool, or unmapped."""
    process = process_ref()
    with _lock:
        _lent.pop(id(region), None)
        pooled = process is not None and process.alive and process.pid == os.getpid()
        if pooled:
            process.returned.append(region)
            idle = process in _idle
            if idle:
                _idle.remove(process)
    if not pooled:
        region.close()  # its process is gone, or is its parent's (a forked child)
    elif idle:  # an idle process: its regions over the limits are unmapped now
        try:
            process.tidy()
        finally:
            _give_back(process, tidy=False)


# re-entrant: a finalizer (_returned) may run, by garbage collection, where _lock is held
_lock = threading.RLock()
_idle: list[_Process] = []
_every: weakref.WeakSet = weakref.WeakSet()  # every process started here
_lent: dict[int, _Region] = {}  # the regions arrays use now


def _borrow(error, codec) -> _Process:
    with _lock:
        while _idle:
            process = _idle.pop()
            if process.pid == os.getpid():
                return process
    return _Process(error, codec)


def _give_back(process: _Process, tidy=True):
    if not process.alive or process.pid != os.getpid():
        return
    if tidy:
        process.tidy()
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


atexit.register(shutdown)


def _before_fork():
    """Before a fork: the regions under live arrays become private memory (same address, same
    values) and are never reused, so that the fork shares them copy-on-write, as it does any
    other memory, and nothing through the decoding process."""
    _lock.acquire()
    for region in _lent.values():
        if not region.retired:
            region.retired = True
            try:
                region.mapping.privatize()
            except OSError:
                pass  # out of memory: that array stays shared with the fork


def _after_fork_in_parent():
    _lock.release()


def _after_fork_in_child():
    global _lock, _every
    _lock = threading.RLock()  # the parent's is held
    processes, _every = list(_every), weakref.WeakSet()
    _idle.clear()
    _lent.clear()
    for process in processes:
        process.close()


if AVAILABLE:
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
