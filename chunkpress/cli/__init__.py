"""The ``chunkpress`` command: compress, decompress, info, evaluate, demo (thin: the API).

    chunkpress compress IN OUT.zarr --codec zfp --tolerance 0.01 [--var t --var u]
                        [--workers N | --scheduler tcp://host:8786]
    chunkpress compress IN OUT.zarr --codec auto --tolerance 0.01      # chosen on samples
    chunkpress decompress IN.zarr OUT.nc
    chunkpress info STORE
    chunkpress verify STORE [--against ORIGINAL] [--json]              # exits 3 if damaged
    chunkpress evaluate IN [--var t] [--codecs zfp,sz3] [--tolerances 0.1,0.01] [--plot rd.png]
    chunkpress demo [--out DIR]

A user's mistake (a missing file, an unknown codec, a bad tolerance, a variable not found)
prints one line saying what to do and exits with status 1 (2 for a malformed command line),
without a traceback; ``--traceback`` shows it.
"""

from __future__ import annotations

import argparse
import sys

from ..demo import demo_dataset
from .. import __version__
from . import compress, decompress, demo, evaluate, examples, info
from ._common import EXIT_PROBLEMS, EXIT_USAGE, EXIT_USER_ERROR, UserError

__all__ = ["main", "UserError", "EXIT_USER_ERROR", "EXIT_USAGE", "EXIT_PROBLEMS",
           "demo_dataset"]


def main(argv=None) -> int:
    """Run the command; ``argv`` defaults to ``sys.argv[1:]`` (none: ``demo``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        argv = ["demo"]
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        print("chunkpress: interrupted", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError, FileExistsError, IsADirectoryError, KeyError,
            ValueError, TypeError) as exc:
        if args.traceback:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        if isinstance(exc, OSError) and exc.filename:
            message = f"{exc.filename}: {exc.strerror}"
        print(f"chunkpress {args.command}: error: {message}".splitlines()[0], file=sys.stderr)
        return EXIT_USER_ERROR


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
    parser.add_argument("--version", action="version", version=f"chunkpress {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, run, help, add_arguments in COMMANDS:
        sub = commands.add_parser(name, help=help, description=help,
                                  epilog=examples.epilog(name),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.set_defaults(run=run)
        sub.add_argument("--traceback", action="store_true", help=argparse.SUPPRESS)
        add_arguments(sub)
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
