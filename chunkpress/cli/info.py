"""``chunkpress info STORE`` and ``chunkpress verify STORE``: what a store holds, and
whether every chunk of it is sound."""

from __future__ import annotations

import os

from ._common import EXIT_PROBLEMS, print_table
from .inputs import check_input

INFO_HELP = "per variable: codec, parameters, ratio, error bound, size"
VERIFY_HELP = ("check every chunk of a store: present, at its place, checksum good (no "
               "decoding); with --against, decode and measure the max error against the "
               f"recorded bound. Exits {EXIT_PROBLEMS} on any problem")


def add_info_arguments(sub) -> None:
    sub.add_argument("store", metavar="STORE")


def add_verify_arguments(sub) -> None:
    sub.add_argument("store", metavar="STORE")
    sub.add_argument("--against", metavar="ORIGINAL", help="the original data (netCDF or "
                     "Zarr) to compare every decoded chunk with")
    sub.add_argument("--json", action="store_true", help="print the problems, the arrays "
                     "checked and the summary as JSON")


def info(args) -> int:
    check_input(args.store)
    table = info_table(args.store)
    print_table(table.rename(columns=INFO_COLUMNS))
    print(f"\n{INFO_COLUMNS['error_bound']}: the max error the metadata (zarr.json) claims; "
          f"{INFO_COLUMNS['measured_error']}: the max error the writer measured on every "
          "value (written with verify=True; NaN: not measured)")
    claimed, measured = table["error_bound"], table["measured_error"]
    for name in table.index[measured > claimed]:
        print(f"{name}: the measured error {measured[name]:.4g} exceeds the claimed bound "
              f"{claimed[name]:.4g}: the metadata claims a bound the data does not meet")
    missing = table["missing_chunks"].fillna(0)
    for name in table.index[missing > 0]:
        print(f"{name}: {missing[name]} chunk object(s) missing")
    if (measured > claimed).any() or (missing > 0).any():
        print(f"run `chunkpress verify {args.store}` to name every damaged chunk (with "
              "--against ORIGINAL: measure the error anew)")
    return 0


INFO_COLUMNS = {"error_bound": "claimed_bound", "measured_error": "measured_error"}


def verify(args) -> int:
    import json

    from ..storage.verify import summary, verify

    if args.against is not None:  # the store is not checked here: an unfinished write
        check_input(args.against)  # leaves none, and verify says so
    problems = verify(args.store, against=args.against)
    if args.json:
        arrays = problems.attrs["arrays"]
        print(json.dumps({
            "problems": [{**row, "chunk": None if row["chunk"] is None else list(row["chunk"])}
                         for row in problems.to_dict("records")],
            "arrays": json.loads(arrays.to_json(orient="records")),
            "summary": problems.attrs["summary"]}, indent=1))
    else:
        for row in problems.itertuples():
            where = "" if row.chunk is None else f" chunk {row.chunk}"
            print(f"{row.array}:{where} ({row.object or 'metadata'}): {row.problem}")
        print(summary(problems))
    return EXIT_PROBLEMS if len(problems) else 0


def info_table(store):
    from ..storage import info

    table = info(store)
    choices = auto_choices(store)
    if choices:  # codec="auto": what it chose and why, as the writer recorded it
        table["choice"] = [choices.get(name, "") for name in table.index]
    return table


def auto_choices(store) -> dict:
    """Return {variable: summary} of the arrays whose attributes record an auto choice."""
    import json

    import zarr

    from ..auto import ATTRIBUTE, describe

    if not os.path.isdir(store):
        return {}
    node = zarr.open(store, mode="r")
    arrays = [("", node)] if isinstance(node, zarr.Array) else sorted(node.arrays())
    out = {}
    for name, array in arrays:
        text = array.attrs.get(ATTRIBUTE)
        if isinstance(text, str):
            try:
                out[name or array.path or "/"] = describe(json.loads(text))
            except (ValueError, TypeError, AttributeError):
                out[name or array.path or "/"] = "(unreadable)"
    return out
