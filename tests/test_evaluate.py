"""Rate-distortion reports: every codec at every setting, the figures right, the pictures
written, the same table on a cluster as on threads."""

from __future__ import annotations

import math

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from PIL import Image

import chunkpress
from chunkpress.demo import ocean_field
from chunkpress.evaluation import COLUMNS, chosen, evaluate, plot

SST = ocean_field((4, 48, 96))  # float32, land NaN
COUNTS = np.random.default_rng(2).poisson(5, (4, 48, 96)).astype("int16")


def dataset():
    return xr.Dataset({
        "sst": (("time", "lat", "lon"), SST, {"units": "degC"}),
        "wind": (("time", "lat", "lon"),
                 (5 + np.cumsum(np.random.default_rng(1).standard_normal(SST.shape), axis=2)
                  * 0.05).astype("float32")),
        "counts": (("time", "lat", "lon"), COUNTS),
    })


def test_every_codec_at_every_tolerance_with_true_figures():
    tolerances = [0.1, 0.01]
    table = chunkpress.evaluate(SST, ["zfp", "sz3", "pcodec"], tolerances)
    assert list(table.columns) == COLUMNS
    # lossy codecs at each tolerance, a lossless one once
    assert list(zip(table.codec, table.setting)) == [
        ("zfp", "tolerance=0.1"), ("zfp", "tolerance=0.01"), ("sz3", "tolerance=0.1"),
        ("sz3", "tolerance=0.01"), ("pcodec", "lossless")]
    lossy = table[table.codec != "pcodec"]
    assert (lossy.max_abs_error <= lossy.tolerance).all()
    assert (lossy.rmse <= lossy.max_abs_error).all()
    assert np.allclose(table.bits_per_value * table.ratio, 32)
    for codec, rows in lossy.groupby("codec"):  # a tighter bound costs bits, gains dB
        assert rows.bits_per_value.is_monotonic_increasing and rows.psnr.is_monotonic_increasing
    lossless = table[table.codec == "pcodec"].iloc[0]
    assert lossless.max_abs_error == 0 and lossless.psnr == math.inf
    assert (table.encode_MBps > 0).all() and (table.decode_MBps > 0).all()
    # the same figures compress() gives
    zfp = chunkpress.compress(SST, "zfp", tolerance=0.01, verify=True)
    row = table[(table.codec == "zfp") & (table.tolerance == 0.01)].iloc[0]
    assert row.ratio == pytest.approx(zfp.ratio) and row.max_abs_error == zfp.max_error
    assert row.psnr == pytest.approx(zfp.psnr)


def test_a_dataset_gives_rows_per_variable_with_tolerances_from_each_range():
    table = evaluate(dataset(), ["zfp", "lerc"])
    assert set(table.variable) == {"sst", "wind"}  # the float variables
    sst = table[(table.variable == "sst") & (table.codec == "zfp")]
    span = float(np.nanmax(SST) - np.nanmin(SST))
    assert sst.tolerance.tolist() == pytest.approx([span * 1e-2, span * 1e-3, span * 1e-4],
                                                   rel=1e-2)
    one = evaluate(dataset().sst, ["zfp"], [0.1])  # a DataArray: its name
    assert one.variable.tolist() == ["sst"] and one.max_abs_error[0] <= 0.1
    counts = evaluate(dataset(), variables=["counts"])
    assert set(counts.setting) == {"lossless"} and (counts.max_abs_error == 0).all()
    assert set(counts.codec) == {"pcodec", "szip", "lerc", "zstd"}


def test_the_pictures(tmp_path):
    ds = dataset()
    table = evaluate(ds, ["zfp", "sz3", "sperr"], [0.1, 0.01, 0.001])
    best = chosen(table, "sst")
    assert best.tolerance == 0.1 and best.ratio == table[
        (table.variable == "sst") & (table.tolerance == 0.1)].ratio.max()
    path = plot(table, tmp_path / "rd.png", ds, dpi=50)
    with Image.open(path) as image:  # a row per variable: curves, original, error
        assert image.format == "PNG" and image.size == (round(3 * 5.2 * 50), round(2 * 4.2 * 50))
        colours = len(image.convert("RGB").getcolors(maxcolors=1 << 24))
    assert colours > 500  # maps and curves, not a blank page
    path = plot(table[table.variable == "sst"], tmp_path / "curves.png", dpi=50)
    with Image.open(path) as image:
        assert image.size == (round(5.2 * 50), round(4.2 * 50))


@pytest.mark.parametrize("kwargs, error, words", [
    ({"codecs": ["zfp", "nope"]}, ValueError, "codec must be one of"),
    ({"codecs": ["auto"]}, ValueError, "evaluate compares concrete codecs"),
    ({"codecs": [3]}, TypeError, "list of codec names"),
    ({"tolerances": [0.1, -1]}, ValueError, "tolerances must be finite and > 0"),
    ({"tolerances": ["x"]}, TypeError, "tolerances must be numbers"),
    ({"variables": ["sst"]}, TypeError, "variables= is for an xarray Dataset"),
    ({"codecs": ["sperr"], "data": SST[0, 0]}, ValueError, "sperr: the codec takes 2 to 3"),
])
def test_bad_arguments_say_what_is_allowed(kwargs, error, words):
    data = kwargs.pop("data", SST)
    with pytest.raises(error, match=words):
        evaluate(data, **kwargs)
    with pytest.raises(TypeError, match="DataFrame that chunkpress.evaluate returns"):
        plot(pd.DataFrame({"a": [1]}), "x.png")


def test_on_a_cluster_the_table_is_the_threaded_one(client):
    with dask.config.set(scheduler="threads"):
        local = evaluate(SST, ["zfp", "szip"], [0.05])
    remote = evaluate(SST, ["zfp", "szip"], [0.05])  # the default scheduler is the client
    figures = ["ratio", "bits_per_value", "max_abs_error", "rmse", "psnr"]
    pd.testing.assert_frame_equal(remote[figures], local[figures])
    c = chunkpress.compress(SST, "auto", tolerance=0.05)  # the trials run there too
    assert c.choice.seconds > 0 and c.ratio > 1
