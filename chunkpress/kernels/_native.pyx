# cython: language_level=3
"""Native loops around the codec calls: non-finite scan, fill and mask, error statistics.

Every loop runs with the GIL released over flat, C-contiguous typed memoryviews.
"""

from libc.math cimport fabs, isfinite, INFINITY

ctypedef fused floating:
    float
    double


cdef extern from *:
    """
    /* One pass over n values in 16 independent lanes, so that gcc -O3 emits SIMD min/max.
       lo/hi are of all values (non-finite included); the return value is 0 only when every
       value is finite (x - x is 0 for finite x and NaN otherwise). */
    #define CHUNKPRESS_SCAN(NAME, T)                                              \
    static int NAME(const T *p, Py_ssize_t n, double *out_lo, double *out_hi) {   \
        T lo[16], hi[16], acc[16];                                               \
        Py_ssize_t i, j, body = n - n % 16;                                      \
        for (j = 0; j < 16; j++) { lo[j] = p[0]; hi[j] = p[0]; acc[j] = 0; }     \
        for (i = 0; i < body; i += 16) {                                         \
            for (j = 0; j < 16; j++) {                                           \
                T x = p[i + j];                                                  \
                lo[j] = x < lo[j] ? x : lo[j];                                   \
                hi[j] = x > hi[j] ? x : hi[j];                                   \
                acc[j] += x - x;                                                 \
            }                                                                    \
        }                                                                        \
        for (i = body; i < n; i++) {                                             \
            T x = p[i];                                                          \
            lo[0] = x < lo[0] ? x : lo[0];                                       \
            hi[0] = x > hi[0] ? x : hi[0];                                       \
            acc[0] += x - x;                                                     \
        }                                                                        \
        double l = lo[0], h = hi[0]; int ok = 1;                                 \
        for (j = 0; j < 16; j++) {                                               \
            if (lo[j] < l) l = lo[j];                                            \
            if (hi[j] > h) h = hi[j];                                            \
            if (acc[j] != 0) ok = 0;                                             \
        }                                                                        \
        *out_lo = l; *out_hi = h;                                                \
        return ok;                                                               \
    }
    CHUNKPRESS_SCAN(chunkpress_scan_f32, float)
    CHUNKPRESS_SCAN(chunkpress_scan_f64, double)
    """
    int chunkpress_scan_f32(const float *p, Py_ssize_t n, double *lo, double *hi) nogil
    int chunkpress_scan_f64(const double *p, Py_ssize_t n, double *lo, double *hi) nogil


def scan(const floating[::1] a):
    """Return (number of non-finite cells, min and max of the finite cells).

    The common case, no non-finite cell, is one SIMD pass; only a block with non-finite
    cells is read a second time, to count them and range the finite ones.
    """
    cdef Py_ssize_t i, n = a.shape[0], bad = 0
    cdef double lo = INFINITY, hi = -INFINITY, x
    cdef int ok
    if n == 0:
        return 0, lo, hi
    with nogil:
        if floating is float:
            ok = chunkpress_scan_f32(&a[0], n, &lo, &hi)
        else:
            ok = chunkpress_scan_f64(&a[0], n, &lo, &hi)
        if not ok:
            lo = INFINITY
            hi = -INFINITY
            for i in range(n):
                x = a[i]
                if x - x == 0:
                    if x < lo:
                        lo = x
                    if x > hi:
                        hi = x
                else:
                    bad += 1
    return bad, lo, hi


def fill_and_mask(const floating[::1] a, floating[::1] filled, unsigned char[::1] bits,
                  floating[::1] values, Py_ssize_t rowlen):
    """Copy ``a`` to ``filled`` with each non-finite cell replaced by a finite neighbour.

    Seen as rows of ``rowlen`` cells (the last axis), a non-finite cell takes the filled
    value above it, or in the first row the finite value before it (the first finite value of
    the block for cells before that, 0 if there is none). Land in an ocean field so becomes a
    continuation of the coast, and a codec sees a block as smooth as the data around it.
    Bit ``i`` of ``bits`` (least significant first; ``bits`` zeroed by the caller) marks cell
    ``i`` non-finite, and ``values`` gets the non-finite cells in order, bit for bit.
    Returns the number of non-finite cells.
    """
    cdef Py_ssize_t i, n = a.shape[0], k = 0
    cdef floating x, last = 0
    if rowlen < 1:
        rowlen = 1
    with nogil:
        for i in range(n):
            if isfinite(a[i]):
                last = a[i]
                break
        for i in range(n):
            x = a[i]
            if x - x == 0:
                last = x
                filled[i] = x
            else:
                filled[i] = filled[i - rowlen] if i >= rowlen else last
                bits[i >> 3] |= <unsigned char>(1 << (i & 7))
                values[k] = x
                k += 1
    return k


def apply_mask(floating[::1] out, const unsigned char[::1] bits, const floating[::1] values):
    """Put ``values`` back into the cells of ``out`` marked in ``bits``; return how many."""
    cdef Py_ssize_t j, i, b, n = out.shape[0], nbytes = bits.shape[0], k = 0
    cdef Py_ssize_t nvalues = values.shape[0]
    cdef unsigned char byte
    with nogil:
        for j in range(nbytes):
            byte = bits[j]
            if byte == 0:
                continue
            for b in range(8):
                if byte & (1 << b):
                    i = (j << 3) + b
                    if i >= n or k >= nvalues:
                        with gil:
                            raise ValueError("mask marks more cells than the block holds")
                    out[i] = values[k]
                    k += 1
    return k


def error_stats(const floating[::1] a, const floating[::1] b):
    """Return (max abs error, sum of squared errors, finite count, min, max) over finite ``a``.

    A cell where ``a`` is finite and ``b`` is not counts as an infinite error.
    """
    cdef Py_ssize_t i, n = a.shape[0], count = 0
    cdef double err, maxerr = 0, sse = 0, lo = INFINITY, hi = -INFINITY, x
    with nogil:
        for i in range(n):
            x = a[i]
            if x - x != 0:
                continue
            count += 1
            if x < lo:
                lo = x
            if x > hi:
                hi = x
            err = fabs(x - <double>b[i])
            if not (err <= maxerr):
                maxerr = err if err == err else INFINITY
            sse += err * err
    return maxerr, sse, count, lo, hi


def count_exceeding(const floating[::1] a, const floating[::1] b, double tolerance):
    """Return how many finite cells of ``a`` differ from ``b`` by more than ``tolerance``."""
    cdef Py_ssize_t i, n = a.shape[0], count = 0
    cdef double x
    with nogil:
        for i in range(n):
            x = a[i]
            if x - x == 0 and not (fabs(x - <double>b[i]) <= tolerance):
                count += 1
    return count


def find_exceeding(const floating[::1] a, const floating[::1] b, double tolerance,
                   long long[::1] index):
    """Write the indices of finite cells of ``a`` off ``b`` by more than ``tolerance``."""
    cdef Py_ssize_t i, n = a.shape[0], k = 0, m = index.shape[0]
    cdef double x
    with nogil:
        for i in range(n):
            x = a[i]
            if x - x == 0 and not (fabs(x - <double>b[i]) <= tolerance):
                if k < m:
                    index[k] = i
                k += 1
    return k


from cpython.bytearray cimport PyByteArray_FromStringAndSize


def empty_bytearray(Py_ssize_t size):
    """Return a bytearray of ``size`` bytes left uninitialized: pages never written cost nothing."""
    return PyByteArray_FromStringAndSize(NULL, size)
