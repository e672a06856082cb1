"""Shared memory mapped with mmap(2) through ctypes, for ``_isolate`` and its decoding process.

Python's ``mmap`` keeps a duplicate of every file descriptor it maps (one per region, in each
process: a few hundred decoded arrays would exhaust a worker's descriptors) and cannot map at
a chosen address. Here a memfd region is mapped shared between two inaccessible guard pages
(a decoder overrunning a neighbouring buffer faults instead of writing into it), its
descriptor can be closed at once, and the mapping can be turned into private memory at the
same address (``privatize``): before a fork, so that parent and child no longer share writes
through it.

Standard library only: the decoding process loads this file by path, without chunkpress.
"""

from __future__ import annotations

import ctypes
import mmap
import os

PAGE = mmap.PAGESIZE
_PROT_NONE, _PROT_RW = 0, mmap.PROT_READ | mmap.PROT_WRITE
_MAP_SHARED, _MAP_PRIVATE, _MAP_FIXED, _MAP_ANONYMOUS = (
    mmap.MAP_SHARED, mmap.MAP_PRIVATE, 0x10, mmap.MAP_ANONYMOUS)
_FAILED = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.mremap.restype = ctypes.c_void_p
_libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                         ctypes.c_void_p]
_MREMAP_MAYMOVE, _MREMAP_FIXED = 1, 2
_libc.munmap.restype = ctypes.c_int
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def _map(address, size, prot, flags, fd) -> int:
    result = _libc.mmap(address, size, prot, flags, fd, 0)
    if result is None or result == _FAILED:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mmap of {size} bytes: {os.strerror(errno)}")
    return result


class Mapping:
    """``size`` bytes (a multiple of PAGE) of the memfd ``fd``, mapped shared, read-write."""

    __slots__ = ("size", "base", "address")

    def __init__(self, fd: int, size: int):
        self.size = size
        self.base = _map(None, size + 2 * PAGE, _PROT_NONE, _MAP_PRIVATE | _MAP_ANONYMOUS, -1)
        try:
            self.address = _map(self.base + PAGE, size, _PROT_RW, _MAP_SHARED | _MAP_FIXED, fd)
        except OSError:
            _libc.munmap(self.base, size + 2 * PAGE)
            self.base = None
            raise

    def buffer(self, nbytes: int):
        """A ctypes array over the first ``nbytes``: it exports them; it does not own them."""
        if self.base is None or not 0 <= nbytes <= self.size:
            raise ValueError(f"no {nbytes} bytes in this mapping")
        return (ctypes.c_char * nbytes).from_address(self.address)

    def privatize(self):
        """Make the mapping private memory with the same contents, at the same address.

        The contents are copied into a new anonymous mapping, which then takes the shared
        one's place (mremap): no second copy, and nothing else at that address meanwhile.
        """
        if self.base is None:
            return
        fresh = _map(None, self.size, _PROT_RW, _MAP_PRIVATE | _MAP_ANONYMOUS, -1)
        ctypes.memmove(fresh, self.address, self.size)
        moved = _libc.mremap(fresh, self.size, self.size, _MREMAP_MAYMOVE | _MREMAP_FIXED,
                             self.address)
        if moved is None or moved == _FAILED:
            errno = ctypes.get_errno()
            _libc.munmap(fresh, self.size)
            raise OSError(errno, f"mremap: {os.strerror(errno)}")

    def close(self):
        """Unmap; nothing may use the memory any more."""
        if self.base is not None:
            _libc.munmap(self.base, self.size + 2 * PAGE)
            self.base = None


def region(size: int) -> tuple[int, Mapping]:
    """Return (a new memfd of ``size`` bytes, its mapping)."""
    fd = os.memfd_create("chunkpress-decode", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, size)
        return fd, Mapping(fd, size)
    except BaseException:
        os.close(fd)
        raise
