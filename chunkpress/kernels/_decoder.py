"""The decoding process of ``_isolate``: runs imagecodecs decoders for its parent, one request at
a time, writing the values into shared memory the parent maps too.

Started by ``_isolate`` as ``python -P _decoder.py FD``, FD being its end of a SOCK_SEQPACKET
socket pair. It imports numpy, imagecodecs and ``_shm`` (by path, not chunkpress, whose import
is heavier), says b"ready", and exits when its parent closes the socket, or dies.

Each request is one pickled tuple, with the file descriptors of new shared-memory regions
alongside: ``(new, dropped, call)``. ``new`` lists (region id, size) of the regions whose
descriptors come with the message, in order; ``dropped`` the region ids to unmap; ``call``
is None or (function name, args, kwargs, input region id, input length, output region id,
shape, dtype string). The reply is b"ok", or b"E" and the error's text (UTF-8): a fixed
format, so that a decoder gone wrong cannot hand its parent anything to unpickle.
"""

import importlib.util
import math
import os
import pickle
import signal
import socket
import sys

import imagecodecs
import numpy as np

_spec = importlib.util.spec_from_file_location(
    "chunkpress_shm", os.path.join(os.path.dirname(os.path.abspath(__file__)), "_shm.py"))
_shm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_shm)


def serve(sock):
    regions = {}
    sock.send(b"ready")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 16, 16)
        except OSError:
            return
        if not message:
            return  # the parent closed its end, or died
        try:
            new, dropped, call = pickle.loads(message)
            for ident in dropped:
                regions.pop(ident).close()
            for (ident, size), fd in zip(new, fds):
                regions[ident] = _shm.Mapping(fd, size)
        except Exception as exc:  # out of memory or descriptors: the parent reports it
            sock.send(_error(exc))
            continue
        finally:
            for fd in fds:
                os.close(fd)
        sock.send(b"ok" if call is None else run(regions, *call))


def run(regions, name, args, kwargs, source, length, target, shape, dtype):
    """Decode one stream into its region; return the reply."""
    try:
        stream = np.frombuffer(regions[source].buffer(length), np.uint8)
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        values = np.frombuffer(regions[target].buffer(nbytes), dtype).reshape(shape)
        result = getattr(imagecodecs, name)(stream, *args, out=values, **kwargs)
        if result is not values:
            if result.shape != values.shape or result.dtype != values.dtype:
                raise ValueError(f"decoded {result.shape} {result.dtype}, not the "
                                 f"{values.shape} {values.dtype} the stream says")
            values[...] = result
    except Exception as exc:  # reported to the parent, which raises the codec's error
        return _error(exc)
    return b"ok"


def _error(exc) -> bytes:
    return b"E" + f"{type(exc).__name__}: {exc}"[:4000].encode("utf-8", "replace")


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    serve(socket.socket(fileno=int(sys.argv[1])))
