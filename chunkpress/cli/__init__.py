"""The ``chunkpress`` command: compress, decompress, info, evaluate, demo (thin: the API).

    chunkpress compress IN OUT.zarr --codec zfp --tolerance 0.01 [--var t --var u]
                        [--workers N | --scheduler tcp://host:8786]
    chunkpress compress IN OUT.zarr --codec auto --tolerance 0.01      # chosen on samples
    chunkpress decompress IN.zarr OUT.nc
    chunkpress info STORE
    chunkpress verify STORE [--against ORIGINAL] [--json]              # exits 3 if damaged
    chunkpress evaluate IN [--var t] [--codecs zfp,sz3] [--tolerances 0.1,0.01] [--plot rd.png]
    chunkpress demo [--out DIR]

Every error is one line on stderr, without a traceback (``--debug``, alias ``--traceback``,
shows it): a user's mistake or what the system refused (a missing file, an unknown codec, a
path not writable, no credentials, a damaged chunk) says what to do and exits 1; a malformed
command line exits 2; an unexpected error (a bug) says "internal error" and exits 4; Ctrl-C
says in what state it leaves the output and exits 130.
"""

from __future__ import annotations

import argparse
import sys
import traceback
import warnings

from .. import __version__
from . import compress, decompress, demo, errors, evaluate, examples, info
from ._common import EXIT_PROBLEMS, EXIT_USAGE, EXIT_USER_ERROR, UserError
from .errors import EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED

__all__ = ["main", "console", "UserError", "EXIT_USER_ERROR", "EXIT_USAGE", "EXIT_PROBLEMS",
           "EXIT_INTERNAL_ERROR", "EXIT_INTERRUPTED"]


def main(argv=None) -> int:
    """Run the command; ``argv`` defaults to ``sys.argv[1:]`` (none: ``demo``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["demo"]
    parser = _parser()
    args = parser.parse_args(argv)
    # said of every store with a numcodecs filter (--portable's): nothing for the user to do
    warnings.filterwarnings("ignore", "Numcodecs codecs are not in the Zarr version 3")
    # xarray's, of a variable packed as integers without a _FillValue: chunkpress writes
    # what the input held, and refuses a value the packing cannot hold (an append's NaN)
    warnings.filterwarnings("ignore", "saving variable .* as an integer dtype without any "
                            "_FillValue")
    # zarr's, of text variables (fixed-length strings): the stored dtype is zarr-python's own
    # for now; said once in the README (Known limits), not on every run
    warnings.filterwarnings("ignore", "The data type .* does not have a Zarr V3 specification")
    before = errors.output_state(args)
    try:
        try:
            return args.run(args) or 0
        finally:
            sys.stdout.flush()  # here, where a reader gone away is caught, not at exit
    except KeyboardInterrupt:
        return _said_interrupted(args, before)
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        return EXIT_BROKEN_PIPE  # `chunkpress info STORE | head -1`: quiet, as Unix tools are
    except Exception as exc:  # noqa: BLE001 - every error is one line; --debug shows it whole
        if _interrupted(exc):
            return _said_interrupted(args, before)
        if args.debug:
            raise
        message, expected = errors.describe(exc)
        print(f"chunkpress {args.command}: {message}", file=sys.stderr)
        return EXIT_USER_ERROR if expected else EXIT_INTERNAL_ERROR


def _interrupted(exc: BaseException) -> bool:
    """Whether Ctrl-C caused ``exc``: a library cleaning up after the interrupt can raise an
    error of its own (threading's "release unlocked lock") with the KeyboardInterrupt as its
    context."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _said_interrupted(args, before) -> int:
    """Say in one line in what state Ctrl-C left the output; return the exit code."""
    if args.debug:
        traceback.print_exc()
    # a zarr call cut off leaves a coroutine never awaited: no warning about it after this;
    # and what the interrupt cut off half made fails again as it is collected (an event loop
    # half started: "Exception ignored in BaseEventLoop.__del__"): the line below says it
    warnings.filterwarnings("ignore", "coroutine .* was never awaited", RuntimeWarning)
    if not args.debug:
        sys.unraisablehook = lambda unraisable: None
    print(f"chunkpress {args.command}: interrupted; {errors.after_interrupt(args, before)}",
          file=sys.stderr)
    return EXIT_INTERRUPTED


def console():
    """The installed ``chunkpress`` (and ``python -m chunkpress``): :func:`main`, then exit.

    After Ctrl-C the output is already left as :func:`main` said; the process then ends at
    once. Its usual exit would wait on what the interrupt cut off: a dask thread still
    writing, a netCDF file whose library lock the interrupted call held, zarr's event-loop
    thread half started. Any of these hung, or printed tracebacks, after the one line."""
    import os

    code = main()
    if code == EXIT_INTERRUPTED:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a reader gone: nothing more to say to it
                pass
        os._exit(code)
    sys.exit(code)


#: what a shell reports for a command killed by SIGPIPE (128 + 13): the reader went away
EXIT_BROKEN_PIPE = 141


def _stdout_closed() -> bool:
    """Whether the reader of stdout has gone away (``| head``); if so, what is left to print
    goes nowhere, so that Python says nothing about it at exit."""
    import os

    try:
        sys.stdout.flush()
        if not _reader_gone(sys.stdout.fileno()):
            return False  # another pipe broke (a worker's, a socket's): an error to say
    except BrokenPipeError:
        pass
    except (OSError, ValueError):  # pragma: no cover - stdout without a file descriptor
        return False
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # pragma: no cover - stdout without a file descriptor
        pass
    return True


def _reader_gone(fd) -> bool:
    """Whether ``fd`` is a pipe whose reading end is closed (poll says POLLERR)."""
    import select

    if not hasattr(select, "poll"):  # pragma: no cover - Windows
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # one line, no usage block: what is wrong and where the help is
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


#: the subcommands: name, what runs it, its one-line help, what adds its arguments
COMMANDS = (
    ("compress", compress.main, compress.HELP, compress.add_arguments),
    ("decompress", decompress.main, decompress.HELP, decompress.add_arguments),
    ("info", info.info, info.INFO_HELP, info.add_info_arguments),
    ("verify", info.verify, info.VERIFY_HELP, info.add_verify_arguments),
    ("evaluate", evaluate.main, evaluate.HELP, evaluate.add_arguments),
    ("demo", demo.main, demo.HELP, demo.add_arguments),
)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chunkpress", description="Compress scientific arrays to Zarr v3 "
                     "with error-bounded and lossless codecs, in parallel.")
    parser.add_argument("--debug", "--traceback", dest="debug", action="store_true",
                        help="on an error, show the full traceback")
    parser.add_argument("--version", action="version", version=f"chunkpress {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, run, help, add_arguments in COMMANDS:
        sub = commands.add_parser(name, help=help, description=help,
                                  epilog=examples.epilog(name),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(run=run)
        sub.add_argument("--debug", "--traceback", dest="debug", action="store_true",
                         default=argparse.SUPPRESS,
                         help="on an error, show the full traceback (a bug report wants it)")
        add_arguments(sub)
    return parser


if __name__ == "__main__":  # pragma: no cover
    console()
