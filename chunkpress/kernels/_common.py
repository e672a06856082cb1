"""Shared pieces of every kernel: the error base class, argument checks, ``out=`` handling."""

from __future__ import annotations

import numbers

import numpy as np


class ChunkpressError(RuntimeError):
    """Base class of every error raised by a chunkpress codec."""


FLOAT_DTYPES = (np.dtype("float32"), np.dtype("float64"))


def as_native(data, codec: str, *, dtypes=None, ndims=None, zero_d=False) -> np.ndarray:
    """Return ``data`` as a C-contiguous native-endian ndarray, checking dtype and ndim.

    ``zero_d`` lets a 0-d array through whatever ``ndims`` says.
    """
    if not isinstance(data, np.ndarray):
        if isinstance(data, (bytes, bytearray, memoryview, str, dict)) or data is None:
            raise TypeError(f"{codec}: data must be a numpy array, got {type(data).__name__}")
        given, data = data, np.asarray(data)
        if data.dtype == object:
            raise TypeError(f"{codec}: data must be a numpy array, got {type(given).__name__}")
    if dtypes is not None and data.dtype.newbyteorder("=") not in dtypes:
        allowed = ", ".join(str(d) for d in dtypes)
        raise ValueError(f"{codec}: dtype must be one of {allowed}, got {data.dtype}")
    if ndims is not None and data.ndim not in ndims and not (zero_d and data.ndim == 0):
        allowed = ", ".join(str(n) for n in ndims)
        raise ValueError(f"{codec}: data must have ndim in ({allowed}), got ndim={data.ndim}")
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    return data if data.flags.c_contiguous else data.copy(order="C")


def check_tolerance(codec: str, tolerance, *, allow_zero: bool = False,
                    name: str = "tolerance") -> float:
    """Return ``tolerance`` as a float after checking it is a finite number, > 0 (or >= 0).

    The one tolerance check: the kernels call it, and so does every layer above (through the
    codec registry, or directly for a tolerance given before its codec is known). A string or
    a bool is a TypeError, not a number. ``codec`` prefixes the message (none if empty);
    ``name`` is the argument's.
    """
    what = f"{codec}: {name}" if codec else name
    if not is_real(tolerance):
        raise TypeError(f"{what} must be a number (the max absolute error), got {tolerance!r}")
    value = float(tolerance)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{what} must be finite and {bound}, got {tolerance!r}")
    return value


def is_real(value) -> bool:
    """Whether ``value`` is a real number: an int or float (numpy's too), not a bool or str."""
    return (isinstance(value, (numbers.Real, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)))


def check_integer(codec: str, name: str, value, low: int, high: int) -> int:
    """Return ``value`` as an int after checking it is an integer in ``low..high``."""
    if not is_real(value) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{codec}: {name} must be an integer in {low}..{high}, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{codec}: {name} must be an integer in {low}..{high}, got {value!r}")
    return int(value)


def check_number(codec: str, name: str, value, low: float, high: float, what: str) -> float:
    """Return ``value`` as a float after checking it is a number in (``low``, ``high``].

    ``what`` says what the number is, e.g. "bits per value".
    """
    if not is_real(value):
        raise TypeError(f"{codec}: {name} must be a number of {what} in ({low:g}, {high:g}], "
                        f"got {value!r}")
    if not low < value <= high:  # NaN fails this too
        raise ValueError(f"{codec}: {name} must be a number of {what} in ({low:g}, {high:g}], "
                         f"got {value!r}")
    return float(value)


def as_bytes(data, codec: str) -> memoryview:
    """Return a flat byte view of an encoded stream, or raise TypeError."""
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(
            f"{codec}: encoded data must be bytes-like, got {type(data).__name__}"
        ) from None
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def write_bytes_out(encoded, out, codec: str):
    """Return ``encoded``, or copy it into the pre-allocated buffer ``out`` and return that.

    A bytearray is cut to the stream's length, as imagecodecs does; a numpy array or other
    buffer keeps its size and the stream's part of it is returned.
    """
    if out is None:
        return encoded
    if isinstance(out, (int, str)):
        raise TypeError(f"{codec}: out must be a writable buffer (bytearray or ndarray), "
                        f"got {type(out).__name__}")
    try:
        target = memoryview(out).cast("B")
    except TypeError:
        raise TypeError(f"{codec}: out must be a writable buffer, got {type(out).__name__}") from None
    with target:
        if target.readonly:
            raise ValueError(f"{codec}: out is read-only")
        size = len(encoded)
        if target.nbytes < size:
            raise ValueError(f"{codec}: out is too small: {target.nbytes} bytes given, {size} needed")
        target[:size] = encoded
    if isinstance(out, bytearray):
        del out[size:]
        return out
    if isinstance(out, np.ndarray):
        return out.reshape(-1).view(np.uint8)[:size]
    return memoryview(out).cast("B")[:size]


def write_array_out(decoded: np.ndarray, out, codec: str) -> np.ndarray:
    """Return ``decoded``, or copy it into the pre-allocated array ``out`` and return that."""
    if out is None:
        return decoded
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{codec}: out must be a numpy array, got {type(out).__name__}")
    if out.size < decoded.size or out.itemsize != decoded.itemsize:
        raise ValueError(
            f"{codec}: out is too small or of the wrong type: {out.shape} {out.dtype} given, "
            f"{decoded.shape} {decoded.dtype} needed"
        )
    if out.shape != decoded.shape:
        if not out.flags.c_contiguous:
            raise ValueError(f"{codec}: out must be C-contiguous when its shape differs")
        target = out.reshape(-1)[: decoded.size].reshape(decoded.shape)
    else:
        target = out
    np.copyto(target, decoded.astype(out.dtype, copy=False), casting="same_kind")
    return out


# --- filters (an array in, an array of the same shape and dtype out) --------------------------

#: the float widths the float filters take (float16, float32, float64), by itemsize
_FLOAT_SIZES = (2, 4, 8)


def check_floats(data, codec: str) -> np.ndarray:
    """Return ``data`` after checking it is a float16/32/64 numpy array (either byte order)."""
    if not isinstance(data, np.ndarray):
        raise TypeError(f"{codec}: data must be a numpy array, got {type(data).__name__}")
    if data.dtype.kind != "f" or data.dtype.itemsize not in _FLOAT_SIZES:
        raise ValueError(
            f"{codec}: data dtype must be float16, float32 or float64 (either byte order), "
            f"got {data.dtype}"
        )
    return data


def filter_output(out, data: np.ndarray, codec: str) -> np.ndarray:
    """Return ``out`` checked to hold a filter's result (data's shape and type), or a new array.

    ``data``'s byte order need not match ``out``'s.
    """
    if out is None:
        return np.empty(data.shape, data.dtype)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{codec}: out must be a numpy array or None, got {type(out).__name__}")
    if out.shape != data.shape or out.dtype.newbyteorder("=") != data.dtype.newbyteorder("="):
        raise ValueError(f"{codec}: out must have the shape and dtype of data, "
                         f"{data.shape} {data.dtype}; got {out.shape} {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{codec}: out is read-only")
    return out


def filter_identity(data: np.ndarray, out, codec: str) -> np.ndarray:
    """Return ``data`` itself, or a copy of it in ``out``: a lossy filter's decoding."""
    if out is None:
        return data
    result = filter_output(out, data, codec)
    if result is not data:
        np.copyto(result, data)
    return result
