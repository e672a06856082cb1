"""numba set up in one place: every numba kernel of chunkpress is made with ``kernel``.

A kernel is compiled with ``nogil=True`` (dask worker threads run it in parallel), for the
signatures it declares and no others, without fastmath (codecs must be bit-exact), and cached
on disk only when ``CHUNKPRESS_NUMBA_CACHE=1``.

Compilation is lazy: numba is imported and the declared signatures are compiled on the first
call, so ``import chunkpress`` does not pay for numba or for codecs that are never used. A
kernel with one signature per dtype (see floatpred) compiles only what a call needs, about a
second; with the cache on, later processes load it in milliseconds. ``error_model="numpy"``
keeps exception paths for integer division by zero out of the loops.
"""

from __future__ import annotations

import os
import threading

CACHE_ENV = "CHUNKPRESS_NUMBA_CACHE"


def cache_enabled() -> bool:
    """Return whether compiled kernels are cached on disk (``CHUNKPRESS_NUMBA_CACHE=1``)."""
    return os.environ.get(CACHE_ENV, "") == "1"


class Kernel:
    """A Python function compiled by numba for its declared signatures on first use."""

    def __init__(self, func, signatures: tuple[str, ...]):
        if not signatures:
            raise ValueError(f"kernel {func.__qualname__}: declare at least one signature")
        self.py_func = func
        self.signatures = signatures
        self.__name__ = func.__name__
        self.__qualname__ = func.__qualname__
        self.__doc__ = func.__doc__
        self.__module__ = func.__module__
        self._dispatcher = None
        self._lock = threading.Lock()

    def compile(self):
        """Compile every declared signature now (once) and return the numba dispatcher."""
        dispatcher = self._dispatcher
        if dispatcher is None:
            with self._lock:  # one thread compiles, the others wait for it
                if self._dispatcher is None:
                    import numba

                    # a signature list makes numba compile now and refuse other types later
                    self._dispatcher = numba.njit(
                        list(self.signatures),
                        nogil=True,
                        fastmath=False,
                        cache=cache_enabled(),
                        error_model="numpy",
                    )(self.py_func)
                dispatcher = self._dispatcher
        return dispatcher

    def __call__(self, *args):
        dispatcher = self._dispatcher
        if dispatcher is None:
            dispatcher = self.compile()
        return dispatcher(*args)

    def __repr__(self) -> str:
        state = "compiled" if self._dispatcher is not None else "not compiled yet"
        return f"<chunkpress kernel {self.__qualname__} ({state})>"


def kernel(*signatures: str):
    """Decorate a function as a numba kernel for the given signatures, e.g. ``"void(f4[::1])"``."""

    def wrap(func):
        return Kernel(func, signatures)

    return wrap
