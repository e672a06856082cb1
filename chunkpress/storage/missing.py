"""Missing cells of CF-encoded variables: the values that mark them (``_FillValue``,
``missing_value``), and those cells as NaN, which the codecs keep exactly. Shared by the
dataset writer, appends and portable writes (numpy and dask only: no writer imported)."""

from __future__ import annotations

import dask.array as da
import numpy as np

__all__ = ["missing_values", "codec_missing", "missing_as_nan"]


def missing_values(attrs) -> list:
    """The finite values that mark missing cells of a CF-encoded float variable: its
    ``_FillValue`` and its ``missing_value`` (one or several; CF's older attribute, which
    xarray writes missing cells as when there is no ``_FillValue``)."""
    values = []
    for key in ("_FillValue", "missing_value"):
        try:
            given = np.asarray(attrs.get(key), dtype=np.float64).ravel()
        except (TypeError, ValueError):
            continue
        values += [float(v) for v in given if np.isfinite(v) and float(v) not in values]
    return values


def codec_missing(attrs) -> float | None:
    """The value the codec stores as NaN (its ``missing``): what xarray writes a missing cell
    as, the ``_FillValue``, or without one the (first) ``missing_value``."""
    for key in ("_FillValue", "missing_value"):
        values = missing_values({key: attrs[key]}) if key in attrs else []
        if values:
            return values[0]
    return None


def missing_as_nan(data, attrs):
    """``data`` (CF-encoded floats, numpy or dask) with its missing cells as NaN, which the
    codecs keep exactly: a value marking them, pushed into a lossy codec, would come back as
    another number, no longer missing."""
    values = missing_values(attrs) if data.dtype.kind == "f" else []
    if not values:
        return data
    where = da if isinstance(data, da.Array) else np
    missing = None
    for value in values:
        equal = data == np.asarray(value, data.dtype)
        missing = equal if missing is None else missing | equal
    return where.where(missing, np.asarray(np.nan, data.dtype), data)
