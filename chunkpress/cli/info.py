"""``chunkpress info STORE`` and ``chunkpress verify STORE``: what a store holds, and
whether every chunk of it is sound."""

from __future__ import annotations

from ._common import EXIT_PROBLEMS, WIDTH, print_table, table_lines
from ._common import size as _size
from .inputs import add_arguments as add_input_arguments
from .inputs import (check_input, expand, open_inputs, remote_errors, storage_option,
                     storage_options)

INFO_HELP = "per variable: codec, parameters, ratio, error bound, size"
# the line breaks are for the description of `verify --help` (printed as it is); the list of
# commands in `chunkpress --help` wraps it anew
VERIFY_HELP = ("check every chunk of a store: present, at its place, checksum good (no\n"
               "decoding); with --against, decode and hold every value to the bound the\n"
               "store records (absolute, relative, or exact). Exits "
               f"{EXIT_PROBLEMS} on any problem")


def add_info_arguments(sub) -> None:
    sub.add_argument("store", metavar="STORE")
    shape = sub.add_mutually_exclusive_group()
    shape.add_argument("--long", action="store_true", help="every field on one line per "
                       "variable (exact byte counts, what codec=\"auto\" chose), however wide")
    shape.add_argument("--json", action="store_true", help="print JSON: per variable its "
                       "codec, parameters, sizes, ratio, claimed bound, measured error and "
                       "auto choice")
    add_storage_option(sub)


def add_storage_option(sub) -> None:
    sub.add_argument("--storage-option", dest="storage_options", action="append",
                     type=storage_option, metavar="KEY=VALUE", default=[],
                     help="for an s3://... (or other fsspec) store, repeatable: key=..., "
                          "secret=..., endpoint_url=..., anon=true; a value is JSON where it "
                          "parses, else text")


def add_verify_arguments(sub) -> None:
    sub.add_argument("store", metavar="STORE")
    sub.add_argument("--against", nargs="+", metavar="ORIGINAL", help="the original data "
                     "to compare every decoded chunk with: what compress was given (netCDF "
                     "files or Zarr stores, or a quoted glob such as 'sst_*.nc'), put together "
                     "the same way; give STORE before it")
    sub.add_argument("--json", action="store_true", help="print the problems, the arrays "
                     "checked and the summary as JSON")
    add_input_arguments(sub)  # --no-decode-times, --engine (for ORIGINAL), --storage-option


def info(args) -> int:
    import json

    options = storage_options(args)
    with remote_errors([args.store]):
        check_input(args.store, options)
        table = info_table(args.store, options)
    if args.json:
        print(json.dumps(info_json(args.store, table, options), indent=1))
        return 0
    if args.long:
        print_table(table.rename(columns=INFO_COLUMNS), long=True)
    else:
        print_table(compact(table))
    original, stored = table["original_bytes"].sum(), table["stored_bytes"].sum()
    ratio = f" ({original / stored:.3g}x)" if stored else ""
    notes = [f"total: {_size(original)} stored in {_size(stored)}{ratio}",
             "claimed bound: the max error the metadata (zarr.json) claims; measured error: the "
             "max error the writer measured on every value (written with verify=True; -: not "
             "measured)"]
    if "rel_bound" in table:
        merged = not args.long and "rel_bound" not in compact(table)  # shown as percentages
        notes.append(("a bound or error in %: relative to each value; " if merged else "")
                     + "rel bound: the max error relative to each value the metadata claims; "
                     "measured rel error: the max the writer measured (verify=True)")
        over = table["measured_rel_error"] > table["rel_bound"]
        for name in table.index[over]:
            notes.append(f"{name}: the measured relative error "
                         f"{table['measured_rel_error'][name]:.4g} exceeds the claimed "
                         f"{table['rel_bound'][name]:.4g}")
    if len(table) and table["codec"].str.endswith("+crc32c").all() and not args.long:
        notes.append("every array's chunks end with a crc32c checksum")
    claimed, measured = table["error_bound"], table["measured_error"]
    for name in table.index[measured > claimed]:
        notes.append(f"{name}: the measured error {measured[name]:.4g} exceeds the claimed "
                     f"bound {claimed[name]:.4g}: the metadata claims a bound the data does "
                     "not meet")
    missing = table["missing_chunks"].fillna(0)
    for name in table.index[missing > 0]:
        notes.append(f"{name}: {missing[name]} chunk object(s) missing")
    if (measured > claimed).any() or (missing > 0).any():
        notes.append(f"run `chunkpress verify {args.store}` to name every damaged chunk (with "
                     "--against ORIGINAL: measure the error anew)")
    print()
    for note in notes:
        print(_wrap(note, long=args.long))
    return 0


INFO_COLUMNS = {"error_bound": "claimed_bound", "measured_error": "measured_error"}


def compact(table):
    """The info table to print in 100 columns: sizes as 1.5M, no "missing" column when no
    chunk is missing, numbers in the parameters to 6 digits, a crc32c every array ends with
    said once below, relative bounds as percentages in the bound columns where no variable has
    both, codec chains spaced (to wrap) in a table too wide otherwise; what codec="auto" chose
    goes below the table (see print_table)."""
    import re

    out = table.drop(columns=["original_bytes", "stored_bytes", "missing_chunks"])
    out["parameters"] = [re.sub(r"(?<==)-?[0-9.]+(e[-+]?[0-9]+)?(?=,|$)",
                                lambda m: f"{float(m.group()):.6g}", text or "")
                         for text in out["parameters"]]
    if len(out) and out["codec"].str.endswith("+crc32c").all():
        out["codec"] = out["codec"].str.removesuffix("+crc32c")
    if "rel_bound" in out and not (out["error_bound"].notna() & (out["error_bound"] > 0)
                                   & out["rel_bound"].notna()).any():
        for absolute, relative in (("error_bound", "rel_bound"),
                                   ("measured_error", "measured_rel_error")):
            out[absolute] = [f"{100 * r:.4g}%" if r == r else a  # r == r: not NaN
                             for a, r in zip(out[absolute], out[relative])]
        out = out.drop(columns=["rel_bound", "measured_rel_error"])
    out.insert(list(out.columns).index("ratio"), "original",
               [_size(n) for n in table["original_bytes"]])
    out.insert(list(out.columns).index("ratio"), "stored",
               [_size(n) for n in table["stored_bytes"]])
    if (table["missing_chunks"].fillna(0) > 0).any():
        out.insert(list(out.columns).index("error_bound"), "missing",
                   table["missing_chunks"])
    out = out.rename(columns={**INFO_COLUMNS, "choice": 'what codec="auto" chose'})
    if max(map(len, table_lines(out)), default=0) > WIDTH:  # a long chain wraps in its column
        out["codec"] = out["codec"].str.replace("+", " + ")
    return out


def info_json(store, table, storage_options=None) -> dict:
    """What ``info --json`` prints: the store, per variable its figures, the totals."""
    variables = []
    choices = auto_choices(store, summaries=False, storage_options=storage_options)
    for name, row in table.iterrows():
        choice = choices.get(name)
        variables.append({
            "name": name, "codec": row["codec"], "parameters": parameters(row["parameters"]),
            "dtype": row["dtype"], "shape": list(row["shape"]),
            "original_bytes": int(row["original_bytes"]),
            "stored_bytes": int(row["stored_bytes"]), "ratio": _number(row["ratio"]),
            "claimed_bound": _number(row["error_bound"]),
            "measured_error": _number(row["measured_error"]),
            "missing_chunks": _number(row["missing_chunks"]),
            **({"rel_bound": _number(row["rel_bound"]),
                "measured_rel_error": _number(row["measured_rel_error"])}
               if "rel_bound" in row else {}),
            "auto": None if choice is None else
            {"summary": choice[0], "choice": choice[1]}})
    original = int(table["original_bytes"].sum())
    stored = int(table["stored_bytes"].sum())
    return {"store": str(store), "variables": variables,
            "total": {"original_bytes": original, "stored_bytes": stored,
                      "ratio": original / stored if stored else None}}


def parameters(text) -> dict:
    """``"tolerance=0.01, mode=pwe"`` as ``{"tolerance": 0.01, "mode": "pwe"}``."""
    import json
    import re

    out = {}
    for key, value in re.findall(r"(\w+)=(.*?)(?=, \w+=|$)", text or ""):
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _number(value):
    import math

    import pandas as pd

    if value is None or value is pd.NA or not math.isfinite(float(value)):
        return None
    value = float(value)
    return int(value) if value.is_integer() and abs(value) < 2**53 else value


def _wrap(text, long=False) -> str:
    import textwrap

    from ._common import WIDTH

    return text if long else textwrap.fill(text, WIDTH, subsequent_indent="  ")


def verify(args) -> int:
    import json

    from ..storage.verify import summary, verify

    options = storage_options(args)
    against = None
    # the store is not checked here: an unfinished write leaves none, and verify says so
    if args.against is not None:  # what compress was given, opened as compress opens it
        paths = expand(args.against, options)
        for path in paths:
            check_input(path, options)
        with remote_errors(paths):
            against = open_inputs(paths, decode_times=args.decode_times, engine=args.engine,
                                  storage_options=options)
    with remote_errors([args.store]):
        problems = verify(args.store, against=against, storage_options=options or None)
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


def info_table(store, storage_options=None):
    from ..storage import info

    table = info(store, storage_options=storage_options or None)
    choices = auto_choices(store, storage_options=storage_options)
    if choices:  # codec="auto": what it chose and why, as the writer recorded it
        table["choice"] = [choices.get(name, "") for name in table.index]
    return table


def auto_choices(store, summaries=True, storage_options=None) -> dict:
    """Return {variable: summary} of the arrays whose attributes record an auto choice
    (``summaries=False``: {variable: (summary, the recorded choice)}), in any store info
    reads (a directory, a .zip file, s3://...)."""
    import json

    import zarr

    from ..auto import ATTRIBUTE, describe
    from ..storage.reader import read_store

    opened = read_store(store, storage_options or None)
    try:
        node = zarr.open(opened, mode="r")
        arrays = [("", node)] if isinstance(node, zarr.Array) else sorted(node.arrays())
        out = {}
        for name, array in arrays:
            text = array.attrs.get(ATTRIBUTE)
            if isinstance(text, str):
                try:
                    choice = json.loads(text)
                    summary = describe(choice)
                except (ValueError, TypeError, AttributeError):
                    choice, summary = None, "(unreadable)"
                out[name or array.path or "/"] = summary if summaries else (summary, choice)
    finally:
        if opened is not store:  # the zip file (or fsspec store) opened here
            opened.close()
    return out
