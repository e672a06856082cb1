"""Decoding processes: a hostile SZ3 or LERC stream takes down a decoding process, not the
interpreter (chunkpress/kernels/_isolate.py).

The hostile streams here pass every check chunkpress makes (headers, sizes, checksums a forger
recomputed); in process, each kills the interpreter, which the first test shows in a child
interpreter. Through chunkpress's decoders they raise the codec's error, and decoding goes on.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
from pathlib import Path

import imagecodecs
import numpy as np
import pytest

import chunkpress as cp
from chunkpress.kernels import _isolate
import fuzzing
from common import raw_bits, sample

pytestmark = pytest.mark.skipif(not _isolate.AVAILABLE, reason="decoding processes need Linux")

SHAPE = (16, 32, 32)


def forged_sz3() -> bytes:
    """A bare SZ3 stream with a true header and a well-formed zstd payload of the right size,
    whose content past its first 16 bytes (Huffman tables, codes) is random."""
    stream = bytearray(imagecodecs.sz3_encode(sample(SHAPE, "float32"), mode="abs", abs=1e-3))
    length = stream[0]
    payload = bytearray(imagecodecs.zstd_decode(bytes(stream[length + 8 :])))
    payload[16:] = np.random.default_rng(0).integers(0, 256, len(payload) - 16, np.uint8).tobytes()
    return bytes(stream[: length + 8]) + imagecodecs.zstd_encode(bytes(payload))


def forged_sz3_frame() -> bytes:
    """chunkpress's SZ3 frame around the forged stream, its CRC-32C recomputed."""
    frame = bytearray(cp.sz3_encode(sample(SHAPE, "float32"), tolerance=1e-3))
    start, end = fuzzing._frame_payload(frame)
    forged = forged_sz3()
    frame[start - 8 : end] = struct.pack("<Q", len(forged)) + forged
    return bytes(fuzzing.reseal(frame))


def forged_lerc() -> bytes:
    """A LERC frame (a 1-D block) with two tile bytes forged, LERC's Fletcher-32 and
    chunkpress's CRC-32C recomputed: found by benchmarks/fuzz.py, LERC 4 segfaults on it."""
    frame = bytearray(cp.lerc_encode(fuzzing._f((37,)), tolerance=1e-2))
    frame[114], frame[153] = 128, 128
    return bytes(fuzzing.reseal(frame))


HOSTILE = {
    "sz3 bare": (lambda: cp.sz3_decode(forged_sz3(), SHAPE, "float32"), cp.Sz3Error),
    "sz3 frame": (lambda: cp.sz3_decode(forged_sz3_frame()), cp.Sz3Error),
    "lerc frame": (lambda: cp.lerc_decode(forged_lerc()), cp.LercError),
}


def _decode_in_child(name, in_process: bool):
    env = dict(os.environ, CHUNKPRESS_DECODE_IN_PROCESS="1" if in_process else "0",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent),
                                           os.environ.get("PYTHONPATH", "")]))
    program = ("import test_isolate as t, sys\n"
               f"decode, error = t.HOSTILE[{name!r}]\n"
               "try:\n    decode()\nexcept error as exc:\n    print('refused:', exc)\n"
               "else:\n    print('decoded')\n")
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          env=env, timeout=120, cwd=Path(__file__).parent)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_the_hostile_streams_kill_an_interpreter_that_decodes_them_in_process(name):
    in_process = _decode_in_child(name, in_process=True)
    assert in_process.returncode < 0, (in_process.returncode, in_process.stdout,
                                       in_process.stderr[-500:])
    isolated = _decode_in_child(name, in_process=False)
    assert isolated.returncode == 0, isolated.stderr[-2000:]
    assert isolated.stdout.startswith("refused:") and "crashed" in isolated.stdout, \
        isolated.stdout


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_stream_is_the_codecs_error_and_decoding_goes_on(name):
    decode, error = HOSTILE[name]
    good = sample(SHAPE, "float32")
    kept = cp.sz3_decode(cp.sz3_encode(good, tolerance=1e-3))  # on a region of a process
    expected = kept.copy()
    with pytest.raises(error, match=r"decoder crashed on this stream \(SIG[A-Z]+\).*"
                                    r"corrupt, or forged"):
        decode()
    assert np.array_equal(raw_bits(kept), raw_bits(expected))  # the crash touched nothing
    again = cp.sz3_decode(cp.sz3_encode(good, tolerance=1e-3))
    assert np.array_equal(raw_bits(again), raw_bits(expected))
    blob = cp.lerc_encode(good, tolerance=0)
    assert np.array_equal(raw_bits(cp.lerc_decode(blob)), raw_bits(good))


CASES = [("sz3", SHAPE, "float32"), ("sz3", (100,), "float64"), ("sz3", (3, 4, 5, 6), "float32"),
         ("lerc", SHAPE, "float32"), ("lerc", (37,), "float64"), ("lerc", (20, 30), "int16"),
         ("lerc", (8, 9, 3), "uint8")]


def _encode(codec, array):
    if codec == "sz3":
        return cp.sz3_encode(array, tolerance=1e-3)
    return cp.lerc_encode(array, tolerance=1e-3 if array.dtype.kind == "f" else 0)


@pytest.mark.parametrize("codec,shape,dtype", CASES)
def test_a_decoding_process_gives_the_values_decoding_here_gives(codec, shape, dtype):
    array = sample(shape, dtype)
    streams = [_encode(codec, array)]
    if codec == "sz3" and array.dtype.kind == "f":
        streams.append(imagecodecs.sz3_encode(array, mode="abs", abs=1e-3))
    if codec == "lerc":
        streams.append(imagecodecs.lerc_encode(array, 1e-3 if array.dtype.kind == "f" else 0))
    decode = getattr(cp, f"{codec}_decode")
    for stream in streams:
        args = (shape, dtype) if codec == "sz3" and not cp.sz3_check(stream) else ()
        isolated = decode(stream, *args)
        with _isolate.here():
            here = decode(stream, *args)
        assert isolated.shape == here.shape and isolated.dtype == here.dtype
        assert np.array_equal(raw_bits(isolated), raw_bits(here))
        out = np.zeros_like(here)
        assert decode(stream, *args, out=out) is out
        assert np.array_equal(raw_bits(out), raw_bits(here))


def test_decoded_arrays_keep_their_values_while_later_decodes_reuse_shared_memory():
    arrays = [sample(SHAPE, "float32", seed=seed) for seed in range(6)]
    streams = [cp.sz3_encode(a, tolerance=1e-3) for a in arrays]
    with _isolate.here():
        expected = [cp.sz3_decode(s) for s in streams]
    first = cp.sz3_decode(streams[0])
    view = first[2:, ::3]  # a view outlives its array
    held = memoryview(cp.sz3_decode(streams[1]))
    del first
    for _ in range(3):
        for stream in streams:
            cp.sz3_decode(stream)  # dropped at once: its region goes back to the pool
    assert np.array_equal(view, expected[0][2:, ::3])
    assert np.array_equal(np.asarray(held), expected[1])
    # and results written to by their user stay theirs
    mine = cp.sz3_decode(streams[2])
    mine[...] = -1
    assert np.array_equal(cp.sz3_decode(streams[2]), expected[2])
    assert (mine == -1).all()


def test_threads_decode_at_once_each_in_its_own_process():
    arrays = [sample((32, 64, 64), "float32", seed=seed) for seed in range(8)]
    streams = [cp.sz3_encode(a, tolerance=1e-3) for a in arrays]
    with _isolate.here():
        expected = [cp.sz3_decode(s) for s in streams]
    results, errors = {}, []

    def work(i):
        try:
            for _ in range(5):
                results[i] = cp.sz3_decode(streams[i])
                assert np.array_equal(results[i], expected[i])
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert all(np.array_equal(results[i], expected[i]) for i in range(8))


def test_a_decoder_over_its_time_limit_is_stopped(monkeypatch):
    big = sample((64, 128, 128), "float32")
    stream = cp.sz3_encode(big, tolerance=1e-4)
    monkeypatch.setattr(_isolate, "TIME_FLOOR", 0.0)
    monkeypatch.setattr(_isolate, "BYTES_PER_SECOND", 1e15)  # about a microsecond
    with pytest.raises(cp.Sz3Error, match="did not finish in"):
        cp.sz3_decode(stream)
    monkeypatch.undo()
    with _isolate.here():
        expected = cp.sz3_decode(stream)
    assert np.array_equal(cp.sz3_decode(stream), expected)


def test_a_forged_chunk_on_a_cluster_fails_its_task_not_the_worker(client):
    pids = client.run(os.getpid)
    stream = forged_sz3_frame()
    future = client.submit(cp.sz3_decode, stream, pure=False)
    with pytest.raises(cp.Sz3Error, match="crashed"):
        future.result()
    assert client.run(os.getpid) == pids  # no worker died or was restarted
    good = sample(SHAPE, "float32")
    frame = cp.sz3_encode(good, tolerance=1e-3)
    with _isolate.here():
        expected = cp.sz3_decode(frame)
    assert np.array_equal(client.submit(cp.sz3_decode, frame, pure=False).result(), expected)


def _child_reads_and_writes(array, expected, stream, done):
    """In a forked child: the array inherited holds its values, a new decode works, and a
    write to the array stays in the child."""
    ok = np.array_equal(array, expected) and np.array_equal(cp.sz3_decode(stream), expected)
    array[...] = -7
    done.send(bool(ok))


def test_a_forked_child_and_its_parent_share_nothing_through_decoded_arrays():
    import multiprocessing

    good = sample(SHAPE, "float32")
    stream = cp.sz3_encode(good, tolerance=1e-3)
    with _isolate.here():
        expected = cp.sz3_decode(stream)
    array = cp.sz3_decode(stream)
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    child = context.Process(target=_child_reads_and_writes,
                            args=(array, expected, stream, theirs))
    child.start()
    assert ours.poll(60) and ours.recv() is True
    child.join(60)
    assert child.exitcode == 0
    assert np.array_equal(array, expected)  # the child's write stayed in the child
    del array  # its region is not reused: the child might still have read it
    for _ in range(3):
        assert np.array_equal(cp.sz3_decode(stream), expected)


def test_an_interrupted_decode_leaves_later_decodes_right():
    import signal

    big = sample((256, 128, 128), "float32")
    stream = cp.sz3_encode(big, tolerance=1e-5)
    small = cp.sz3_encode(sample(SHAPE, "float32"), tolerance=1e-3)
    with _isolate.here():
        expected, expected_small = cp.sz3_decode(stream), cp.sz3_decode(small)
    cp.sz3_decode(small)  # a decoding process is started: the interrupt falls in the decode

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        with pytest.raises(KeyboardInterrupt):
            cp.sz3_decode(stream)  # interrupted while its decoding process works
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    for _ in range(3):  # not the interrupted decode's late answer
        assert np.array_equal(cp.sz3_decode(small), expected_small)
    assert np.array_equal(cp.sz3_decode(stream), expected)


def test_decoded_arrays_hold_no_file_descriptors():
    stream = cp.sz3_encode(sample((8, 16, 16), "float32"), tolerance=1e-3)
    cp.sz3_decode(stream)
    before = len(os.listdir("/proc/self/fd"))
    kept = [cp.sz3_decode(stream) for _ in range(300)]
    assert len(os.listdir("/proc/self/fd")) <= before + 2
    assert all(np.array_equal(k, kept[0]) for k in kept)
