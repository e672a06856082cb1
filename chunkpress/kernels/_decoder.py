"""The decoding process of ``_isolate``: runs imagecodecs decoders for its parent, one request at
a time, writing the values into shared memory the parent maps too.

Started by ``_isolate`` as ``python -P _decoder.py FD``, FD being its end of a SOCK_SEQPACKET
socket pair. It imports numpy and imagecodecs only (not chunkpress, whose import is heavier)
and exits when its parent closes the socket, or dies.

Each request is one pickled tuple, with the file descriptors of new shared-memory regions
alongside: ``(new, dropped, call)``. ``new`` lists (region id, size) of the regions whose
descriptors come with the message, in order; ``dropped`` the region ids to unmap; ``call``
is None or (function name, args, kwargs, input region id, input length, output region id,
shape, dtype string). The reply is b"ok", or a pickled (exception type name, message).
"""

import math
import mmap
import os
import pickle
import signal
import socket
import sys

import imagecodecs
import numpy as np


def serve(sock):
    regions = {}
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 1 << 16, 16)
        except OSError:
            return
        if not message:
            return  # the parent closed its end, or died
        new, dropped, call = pickle.loads(message)
        for (ident, size), fd in zip(new, fds):
            regions[ident] = mmap.mmap(fd, size)
            os.close(fd)
        for ident in dropped:
            regions.pop(ident).close()
        if call is None:
            sock.send(b"ok")
            continue
        sock.send(run(regions, *call))


def run(regions, name, args, kwargs, source, length, target, shape, dtype):
    """Decode one stream into its region; return the reply."""
    try:
        values = np.frombuffer(regions[target], dtype, math.prod(shape)).reshape(shape)
        with memoryview(regions[source]) as whole, whole[:length] as stream:
            result = getattr(imagecodecs, name)(stream, *args, out=values, **kwargs)
        if result is not values:
            if result.shape != values.shape or result.dtype != values.dtype:
                raise ValueError(f"decoded {result.shape} {result.dtype}, not the "
                                 f"{values.shape} {values.dtype} the stream says")
            values[...] = result
    except Exception as exc:  # reported to the parent, which raises the codec's error
        return pickle.dumps((type(exc).__name__, str(exc)[:2000]))
    return b"ok"


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    serve(socket.socket(fileno=int(sys.argv[1])))
