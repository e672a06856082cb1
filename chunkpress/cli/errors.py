"""What the command says when it stops: every error as one line, and where Ctrl-C left the
output."""

from __future__ import annotations

import errno
import os

from ._common import UserError

EXIT_INTERNAL_ERROR = 4  # an unexpected error: a bug in chunkpress (or below it)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it

#: what the system said, and what to do about it
_OS_HINTS = {
    errno.EACCES: "this user may not; choose a path you can write to (or read, for an input)",
    errno.EPERM: "this user may not; choose a path you can write to (or read, for an input)",
    errno.EROFS: "the file system is read-only; choose a writable place",
    errno.ENOSPC: "the disk is full; free space or choose another disk",
    errno.EDQUOT: "the disk quota is used up; free space or choose another disk",
    errno.ENOTDIR: "a file stands where a directory is needed; check the path",
    errno.EISDIR: "a directory stands where a file is needed; check the path",
    errno.ENOENT: "check the path",
}


def describe(exc: BaseException) -> tuple[str, bool]:
    """``(one line, expected)``: expected errors are the user's or the system's to fix; the
    rest are bugs, said in one line that asks for ``--debug``."""
    if isinstance(exc, UserError):
        return f"error: {_line(exc)}", True
    remote = _remote(exc)
    if remote is not None:
        return f"error: {remote}", True
    if isinstance(exc, OSError):  # chunkpress's store errors (IncompleteStoreError,
        return f"error: {_os_error(exc)}", True  # WriterBusyError) among them
    if isinstance(exc, KeyError) and exc.args and " " in str(exc.args[0]):
        return f"error: {exc.args[0]}", True  # a sentence: a name not found, said so
    if isinstance(exc, ImportError) and exc.name:
        return (f"error: this needs the '{exc.name}' package, which is not installed "
                f"({_line(exc)}); install it (pip install {exc.name})"), True
    if isinstance(exc, (ValueError, _chunkpress_error())):  # zarr's errors are ValueErrors
        return f"error: {_line(exc)}", True
    return (f"internal error: {type(exc).__name__}: {_line(exc)} (a bug; rerun with --debug "
            "for the traceback and report it)"), False


def _line(exc: BaseException) -> str:
    """The first line of what ``exc`` says (its type when it says nothing), in the command's
    words: the library's ``overwrite=True`` is ``--overwrite`` here."""
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0].replace("overwrite=True", "--overwrite") if lines else type(exc).__name__


def _os_error(exc: OSError) -> str:
    if exc.filename is None or not exc.strerror:
        return _line(exc)
    where = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
    hint = _OS_HINTS.get(exc.errno)
    return f"{where}: {exc.strerror}" + (f"; {hint}" if hint else "")


def _chunkpress_error():
    from ..kernels import ChunkpressError

    return ChunkpressError


def _remote(exc: BaseException) -> str | None:
    """What an object store's client raised (botocore), in one line that says what to give."""
    try:
        from botocore import exceptions as boto
    except ImportError:  # pragma: no cover - s3fs brings botocore
        return None
    if isinstance(exc, (boto.NoCredentialsError, boto.PartialCredentialsError)):
        return (f"no credentials for the object store ({_line(exc)}); give --storage-option "
                "key=... --storage-option secret=... (or set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY), or anon=true for a public bucket")
    if isinstance(exc, boto.ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                    "ExpiredToken", "InvalidToken", "403"):
            return (f"the object store refused the credentials ({code}: {_line(exc)}); check "
                    "--storage-option key=/secret= and their rights")
        return f"the object store answered {code or 'an error'} ({_line(exc)})"
    if isinstance(exc, boto.BotoCoreError):
        return (f"cannot reach the object store ({_line(exc)}); check --storage-option "
                "endpoint_url=... and the network")
    return None


# --- Ctrl-C ----------------------------------------------------------------------------------


def output_state(args):
    """What is at the command's OUT before it runs (to say afterwards what Ctrl-C left)."""
    output = getattr(args, "output", None)
    if output is None or "://" in str(output):
        return None
    try:
        st = os.lstat(output)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def after_interrupt(args, before) -> str:
    """One sentence: the state the interrupted command left its output in."""
    output = getattr(args, "output", None)
    if output is None:
        return "nothing was written"
    if "://" in str(output):
        return (f"{output}: a write is published only once whole, so it holds what it held "
                "before (or nothing); run the command again")
    try:
        st = os.lstat(output)
    except OSError:
        st = None
    if st is None:
        return f"nothing was written to {output}; run the command again"
    if before == (st.st_ino, st.st_mtime_ns):
        return f"{output} is unchanged (as it was before); run the command again to replace it"
    if _complete(output):
        return f"{output} was written whole before the interrupt"
    return f"{output} is incomplete; remove it and run the command again"


def _complete(output) -> bool:
    if os.path.isfile(output):
        return True  # a file (netCDF, .zip store) is renamed into place once whole
    from ..storage.publish import IncompleteStoreError, check_complete

    try:
        check_complete(output, None, None)
    except IncompleteStoreError:
        return False
    return True
