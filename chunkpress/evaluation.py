"""Rate-distortion reports: every codec at every setting on the user's own data, in parallel.

``evaluate(x, codecs=[...], tolerances=[...])`` compresses ``x`` (an array, a DataArray or
each float variable of a Dataset) with every codec at every tolerance, decodes it and
measures it, one task per block and setting, all in one dask computation (the local threads,
or a ``distributed`` cluster unchanged), and returns a pandas DataFrame. :func:`plot` draws it:
rate-distortion curves and, for one setting, the error over a 2-D slice beside the original.
"""

from __future__ import annotations

import functools
import math
import time

import dask
import numpy as np
import pandas as pd
import xarray as xr
from dask.base import tokenize

from . import api, kernels
from .graph import blocks, build, measure, pipeline, plan, sample
from .graph.codecs import block_kwargs, check_input, get_codec, normalize_targets, probe

__all__ = ["evaluate", "plot", "chosen"]

#: tolerances tried when none are given: these shares of each variable's value range
RELATIVE_TOLERANCES = (1e-2, 1e-3, 1e-4)
COLUMNS = ["variable", "codec", "setting", "tolerance", "ratio", "bits_per_value",
           "max_abs_error", "rmse", "psnr", "encode_MBps", "decode_MBps"]


def evaluate(data, codecs=None, tolerances=None, *, variables=None,
             chunks="auto") -> pd.DataFrame:
    """Return one row per variable, codec and setting: ratio, errors and speeds.

    ``data`` is an array (numpy, dask, anything ``chunkpress.compress`` takes), an xarray
    DataArray or a Dataset (its float data variables, or ``variables``). ``codecs`` (default:
    the candidates of codec="auto" for the dtype) are codec names; ``tolerances`` are max
    absolute errors (default for floats: 1e-2, 1e-3 and 1e-4 of each variable's value range;
    for integers: none). A lossy codec runs at every tolerance; a lossless one, or LERC
    without tolerances, once (setting "lossless").

    Columns: ``codec``, ``setting``, ``tolerance``, ``ratio``, ``bits_per_value``,
    ``max_abs_error`` and ``rmse`` (of the finite values), ``psnr`` (dB, over the value range),
    ``encode_MBps`` and ``decode_MBps`` (uncompressed MB per second of one core: bytes over
    the time of the codec calls alone, so that they compare on any cluster).
    """
    arrays = _arrays(data, variables)
    codecs = _codec_names(codecs)
    given = _check_tolerances(tolerances)
    jobs = []
    for name, x in arrays:
        names = codecs or [c.name for c in sample.candidates(
            x.dtype, x.ndim, 1.0 if x.dtype.kind == "f" else None)]
        settings = []
        for codec in names:
            spec = get_codec(codec)
            try:
                check_input(spec, x.dtype, x.ndim)
            except ValueError:
                if codecs and len(arrays) == 1:
                    raise
                continue  # a Dataset: the codecs that take this variable
            settings.append(spec)
        if not settings:
            raise ValueError(f"evaluate: none of the codecs {', '.join(names)} takes "
                             f"{_what(name)} ({x.dtype}, {x.ndim} dimensions)")
        steps = given  # integers without tolerances: LERC too is lossless
        if steps is None and x.dtype.kind == "f" and any(not s.lossless for s in settings):
            steps = _relative_tolerances(x)
        for spec in settings:
            for tolerance in ([None] if spec.lossless or steps is None else steps):
                jobs.append(_job(name, x, spec, tolerance, chunks))
    cells = dask.compute(*(job["cells"] for job in jobs))
    rows = [_row(job, result) for job, result in zip(jobs, cells)]
    return pd.DataFrame(rows, columns=COLUMNS)


def _arrays(data, variables) -> list:
    """Return [(variable name, array)] of what is to be evaluated."""
    if isinstance(data, xr.Dataset):
        if variables is None:
            names = [n for n, v in data.data_vars.items()
                     if v.dtype.kind == "f" and v.ndim >= 1 and v.size]
        else:
            names = [variables] if isinstance(variables, str) else list(variables)
            for n in names:
                if n not in data.data_vars:
                    raise KeyError(f"variable {n!r} is not a data variable of the dataset (its "
                                   f"data variables: {', '.join(map(str, data.data_vars))})")
        if not names:
            raise ValueError("evaluate: the dataset has no float data variable; name "
                             "variables=")
        return [(n, pipeline.as_array(data[n].data)) for n in names]
    if variables is not None:
        raise TypeError("evaluate: variables= is for an xarray Dataset")
    if isinstance(data, xr.DataArray):
        return [(data.name if data.name is not None else "", pipeline.as_array(data.data))]
    return [("", pipeline.as_array(data))]


def _codec_names(codecs):
    if codecs is None:
        return None
    if isinstance(codecs, str):
        codecs = [c for c in codecs.split(",") if c.strip()]
    codecs = list(codecs)
    if not codecs or not all(isinstance(c, str) for c in codecs):
        raise TypeError(f"codecs must be a list of codec names such as ['zfp', 'sz3'], got "
                        f"{codecs!r}")
    out = []
    for c in codecs:
        spec = get_codec(c)  # an unknown name: a ValueError naming the codecs
        if spec.name == "auto":
            raise ValueError("codecs: evaluate compares concrete codecs; 'auto' chooses among "
                             "them (chunkpress.compress(x, 'auto') says what it chose)")
        out.append(spec.name)
    return list(dict.fromkeys(out))


def _check_tolerances(tolerances):
    if tolerances is None:
        return None
    if isinstance(tolerances, (int, float, np.number)):
        tolerances = [tolerances]
    out = []
    for t in tolerances:
        try:
            out.append(kernels.check_tolerance("", t, name="tolerances"))
        except TypeError:
            raise TypeError(f"tolerances must be numbers (max absolute errors), got {t!r}") from None
    if not out:
        raise ValueError("tolerances is empty; give at least one max absolute error")
    return out


def _relative_tolerances(x) -> list:
    blocked = pipeline.blocked(x, get_codec("zfp" if x.dtype.kind == "f" else "szip"),
                               "auto")
    span = build.global_range(build.block_ranges(blocked).compute().reshape(-1))
    if not span > 0:
        span = 1.0
    return [float(f"{span * r:.3g}") for r in RELATIVE_TOLERANCES]


def _job(name, x, spec, tolerance, chunks) -> dict:
    params = {} if tolerance is None else {"tolerance": tolerance}
    target = normalize_targets(spec, params, x.dtype)
    kwargs = block_kwargs(spec, target)
    probe(spec, x.dtype, x.ndim, kwargs)
    blocked = pipeline.blocked(x, spec, chunks)
    function = functools.partial(_measure_block, spec=spec, kwargs=kwargs)
    cells = build.per_block(blocked, function, "chunkpress-evaluate-" +
                            tokenize(blocked.name, spec, kwargs))
    setting = "lossless" if tolerance is None else f"tolerance={tolerance:g}"
    return {"variable": name, "codec": spec.name, "setting": setting, "tolerance": tolerance,
            "cells": cells, "size": x.size, "itemsize": x.dtype.itemsize}


def _measure_block(block, spec, kwargs) -> tuple:
    """Encode, decode and measure one block: (raw, compressed, encode s, decode s, max error,
    sum of squared errors, finite values, min, max)."""
    block = np.ascontiguousarray(block)
    start = time.perf_counter()
    data = blocks.encode(block, spec, kwargs).data
    middle = time.perf_counter()
    decoded = blocks.decode(data, spec, block.shape, block.dtype)
    end = time.perf_counter()
    m = measure.measure(block, decoded, data, spec, None)
    return (block.nbytes, len(data), middle - start, end - middle, m.max_error, m.sse, m.count,
            m.lo, m.hi)


def _row(job, cells) -> dict:
    figures = np.array([list(c) for c in np.asarray(cells, dtype=object).reshape(-1)],
                       dtype=np.float64).reshape(-1, 9)
    raw, nbytes, t_enc, t_dec, max_error, sse, count, lo, hi = figures.T
    raw_total, nbytes_total = raw.sum(), nbytes.sum()
    span = float(hi.max() - lo.min()) if count.sum() and hi.max() >= lo.min() else 0.0
    n = float(count.sum())
    return {
        "variable": job["variable"], "codec": job["codec"], "setting": job["setting"],
        "tolerance": math.nan if job["tolerance"] is None else job["tolerance"],
        "ratio": raw_total / nbytes_total if nbytes_total else math.inf,
        "bits_per_value": 8 * nbytes_total / job["size"] if job["size"] else 0.0,
        "max_abs_error": float(max_error.max()) if len(max_error) else 0.0,
        "rmse": math.sqrt(sse.sum() / n) if n else 0.0,
        "psnr": plan.psnr_from_sse(float(sse.sum()), int(n), span),
        "encode_MBps": raw_total / 1e6 / t_enc.sum() if t_enc.sum() else math.inf,
        "decode_MBps": raw_total / 1e6 / t_dec.sum() if t_dec.sum() else math.inf,
    }


def _what(name) -> str:
    return f"variable {name!r}" if name else "the array"


# --- pictures ------------------------------------------------------------------------------


def chosen(table: pd.DataFrame, variable=None) -> pd.Series | None:
    """Return the row shown as "the chosen setting": the highest ratio at the first tolerance.

    The first tolerance in the table's order (for the default sweep, the loosest) is the one
    a reader sees the error of; lossless rows are chosen only where there is no lossy one.
    """
    rows = table if variable is None else table[table["variable"] == variable]
    lossy = rows[rows["tolerance"].notna()]
    if len(lossy):
        rows = lossy[lossy["tolerance"] == lossy["tolerance"].iloc[0]]
    if not len(rows):
        return None
    return rows.loc[rows["ratio"].idxmax()]


def plot(table: pd.DataFrame, path, data=None, *, chunks="auto", dpi: int = 100) -> str:
    """Write a PNG of ``table`` (from :func:`evaluate`) to ``path``; return ``path``.

    One row of pictures per variable: the rate-distortion curves (bits per value against
    PSNR, one line per codec) and, given ``data`` (what was evaluated), the original over a
    2-D slice (the last two axes, the middle of the others) next to the error of the chosen
    setting (:func:`chosen`) over it.
    """
    from matplotlib.figure import Figure  # the object API: no pyplot state, no GUI backend

    if not isinstance(table, pd.DataFrame) or not set(COLUMNS) <= set(table.columns):
        raise TypeError("plot takes the DataFrame that chunkpress.evaluate returns")
    variables = list(dict.fromkeys(table["variable"]))
    arrays = dict(_arrays(data, variables if isinstance(data, xr.Dataset) else None)) \
        if data is not None else {}
    columns = 3 if arrays else 1
    figure = Figure(figsize=(5.2 * columns, 4.2 * len(variables)), dpi=dpi,
                    layout="constrained")
    axes = figure.subplots(len(variables), columns, squeeze=False)
    for row, variable in enumerate(variables):
        rows = table[table["variable"] == variable]
        _curves(axes[row][0], rows, variable)
        if arrays:
            best = chosen(table, variable)
            _maps(figure, axes[row][1], axes[row][2], arrays[variable], best, chunks)
    figure.savefig(path, dpi=dpi)
    return str(path)


def _curves(ax, rows, variable) -> None:
    for codec, group in rows.groupby("codec", sort=False):
        finite = group[np.isfinite(group["psnr"])].sort_values("bits_per_value")
        if len(finite):
            ax.plot(finite["bits_per_value"], finite["psnr"], marker="o", label=codec)
        else:  # lossless: no error to draw, its rate marked
            ax.axvline(group["bits_per_value"].min(), linestyle=":", color="grey")
            ax.annotate(f"{codec} (lossless)", (group["bits_per_value"].min(), 0.02),
                        xycoords=("data", "axes fraction"), rotation=90, fontsize=8)
    ax.set_xlabel("bits per value")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"{variable or 'array'}: rate-distortion")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _maps(figure, left, right, x, best, chunks) -> None:
    index = tuple(n // 2 for n in x.shape[:-2])
    original = np.asarray(x[index] if x.ndim >= 2 else x)
    if best is not None:
        params = {} if not np.isfinite(best["tolerance"]) else {"tolerance": best["tolerance"]}
        decoded = api.decompress(api.compress(x, best["codec"], chunks=chunks, **params))
        decoded = np.asarray(decoded[index] if x.ndim >= 2 else decoded)
        error = decoded.astype(np.float64) - original
        title = f"error: {best['codec']} {best['setting']}, ratio {best['ratio']:.3g}"
    else:
        error, title = np.zeros(original.shape), "error"
    where = f"[{', '.join(map(str, index))}, :, :]" if index else ""
    if original.ndim == 1:
        left.plot(original)
        right.plot(error)
    else:
        image = left.imshow(_masked(original), origin="lower", aspect="auto",
                            cmap="viridis")
        figure.colorbar(image, ax=left, shrink=0.8)
        limit = float(np.nanmax(np.abs(error))) if np.isfinite(error).any() else 1.0
        image = right.imshow(_masked(error), origin="lower", aspect="auto", cmap="RdBu_r",
                             vmin=-limit or -1, vmax=limit or 1)
        figure.colorbar(image, ax=right, shrink=0.8)
    left.set_title(f"original {where}".strip())
    right.set_title(title)


def _masked(a):
    return np.ma.masked_invalid(np.asarray(a, dtype=np.float64))
