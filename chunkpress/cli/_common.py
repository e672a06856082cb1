"""What every subcommand shares: user errors, exit codes, the scheduler, tables, arguments."""

from __future__ import annotations

import argparse
import contextlib
import os

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_PROBLEMS = 3  # verify found problems in the store


class UserError(Exception):
    """A mistake the user can fix; its message says how."""


def check_output(path, overwrite, kind="zarr"):
    """Refuse, before any work, an OUT that exists (without --overwrite), or that --overwrite
    would not replace: a Zarr store replaces only a Zarr store, a file only a file."""
    if "://" in str(path) or not os.path.lexists(path):
        return
    if kind == "file":
        if os.path.isdir(path):
            raise UserError(f"{path} is a directory; give the name of the file to write")
    elif not (os.path.isdir(path) and not os.listdir(path)):  # an empty directory: written
        from ..storage.publish import check_replaceable

        check_replaceable(path)  # says what is there when it is not a Zarr store
    else:
        return
    if not overwrite:
        raise UserError(f"{path} exists; choose another name or pass --overwrite")


def print_table(table):
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.4g}".format):
        print(table.to_string())


@contextlib.contextmanager
def scheduler(args):
    """The local threads (``--workers N``) or a distributed scheduler (``--scheduler``)."""
    import dask

    address = getattr(args, "scheduler", None)
    if address:
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover - distributed is a dependency
            raise UserError("--scheduler needs the 'distributed' package") from None
        try:
            client = Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise UserError(f"cannot reach the scheduler at {address} ({exc}); check the "
                            "address, or use --workers N for this machine") from None
        with client:
            yield client
        return
    workers = getattr(args, "workers", None)
    config = {"scheduler": "threads"}
    if workers:
        config["num_workers"] = workers
    with dask.config.set(config):
        yield None


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def names(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"must be codec names separated by commas, got {text!r}")
    return names


def tolerances(text):
    parts = [t for t in text.split(",") if t.strip()]
    if not parts:
        raise argparse.ArgumentTypeError(f"must be numbers separated by commas, got {text!r}")
    return [tolerance(t) for t in parts]


def tolerance(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number (the max absolute error, e.g. 0.01), got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text}")
    return value


def add_scheduler(sub) -> None:
    """--workers N | --scheduler ADDRESS."""
    group = sub.add_mutually_exclusive_group()
    group.add_argument("--workers", type=positive_int, metavar="N",
                       help="threads on this machine (default: one per core)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="a dask.distributed scheduler, e.g. tcp://host:8786")
