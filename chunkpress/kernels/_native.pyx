# cython: language_level=3
"""Native loops around the codec calls: non-finite scan, fill and mask, error statistics.

Every loop runs with the GIL released over flat, C-contiguous typed memoryviews.
"""

from libc.math cimport fabs, isfinite, INFINITY
from libc.stdint cimport uint32_t, uint64_t

ctypedef fused floating:
    float
    double


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* The largest |x| of a float block, as bits. For IEEE floats the order of |x| is the
       integer order of its bits with the sign cleared, so this is an integer max that gcc
       turns into SIMD code, and a result at or above the bits of infinity means a non-finite
       value is present. For doubles only the high 32-bit words are compared (SSE2 has no
       64-bit compare): that bounds |x| from above to 2**-20 relative, and still sees every
       non-finite value, whose high word alone has the exponent all ones. Where gcc can, an
       AVX2 copy is made beside the SSE2 one and chosen when the CPU has it (about 3x faster on
       data in cache: the scan is a pass over every block before its codec sees it). */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
    #define CHUNKPRESS_SIMD __attribute__((target_clones("avx2", "default")))
    #else
    #define CHUNKPRESS_SIMD
    #endif
    CHUNKPRESS_SIMD
    static uint32_t chunkpress_amax_f32(const uint32_t *p, Py_ssize_t n) {
        int32_t m = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            int32_t v = (int32_t)(p[i] & 0x7fffffffu);
            m = v > m ? v : m;
        }
        return (uint32_t)m;
    }
    CHUNKPRESS_SIMD
    static uint32_t chunkpress_amax_hi_f64(const uint32_t *p, Py_ssize_t n) {
        int32_t m = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            int32_t v = (int32_t)(p[2 * i + 1] & 0x7fffffffu);  /* little-endian high word */
            m = v > m ? v : m;
        }
        return (uint32_t)m;
    }
    static float chunkpress_f32_from_bits(uint32_t bits) {
        float f; memcpy(&f, &bits, 4); return f;
    }
    static double chunkpress_f64_from_bits(uint64_t bits) {
        double f; memcpy(&f, &bits, 8); return f;
    }
    """
    uint32_t chunkpress_amax_f32(const uint32_t *p, Py_ssize_t n) nogil
    uint32_t chunkpress_amax_hi_f64(const uint32_t *p, Py_ssize_t n) nogil
    float chunkpress_f32_from_bits(uint32_t bits) nogil
    double chunkpress_f64_from_bits(uint64_t bits) nogil



def scan(const floating[:, :, :] a):
    """Return (number of non-finite cells, an upper bound of |x| over the finite cells).

    ``a`` is read in place: a 3-D view whose rows (last axis) are contiguous, such as a block
    sliced out of a larger array, or a contiguous block as one row. The bound is exact for
    float32 and, for normal float64 values, within 2**-20. The common case, no non-finite cell,
    is one SIMD pass; a block with non-finite cells is read again.
    """
    cdef Py_ssize_t i, j, k, nz = a.shape[0], ny = a.shape[1], nx = a.shape[2], bad = 0
    cdef double amax = 0, x
    cdef uint32_t top = 0, row
    if nz == 0 or ny == 0 or nx == 0:
        return 0, 0.0
    if nx > 1 and a.strides[2] != sizeof(floating):
        raise ValueError("scan: the rows (last axis) must be contiguous")
    with nogil:
        for i in range(nz):
            for j in range(ny):
                if floating is float:
                    row = chunkpress_amax_f32(<const uint32_t *>&a[i, j, 0], nx)
                else:
                    row = chunkpress_amax_hi_f64(<const uint32_t *>&a[i, j, 0], nx)
                if row > top:
                    top = row
        if floating is float:
            if top < 0x7f800000u:
                amax = chunkpress_f32_from_bits(top)
        else:
            if top < 0x7ff00000u:
                amax = chunkpress_f64_from_bits((<uint64_t>top << 32) | 0xffffffffu)
        if (floating is float and top >= 0x7f800000u) or (
                floating is double and top >= 0x7ff00000u):
            amax = 0
            for i in range(nz):
                for j in range(ny):
                    for k in range(nx):
                        x = a[i, j, k]
                        if x - x == 0:
                            if fabs(x) > amax:
                                amax = fabs(x)
                        else:
                            bad += 1
    return bad, amax


def fill_and_mask(const floating[::1] a, floating[::1] filled, unsigned char[::1] bits,
                  floating[::1] values, Py_ssize_t ny, Py_ssize_t nx):
    """Copy ``a`` to ``filled`` with each non-finite cell replaced by a smooth guess.

    The block is seen as 2-D slices of ``ny`` rows of ``nx`` cells (its last two axes). A gap
    in a row is bridged by the straight line between the finite cells either side of it (the
    nearest one where there is one side only), likewise a gap in a column, and a cell in both
    takes the mean of the two lines; a cell whose row and column hold nothing finite takes
    the first finite value of the block (0 if none). Land in an ocean field so becomes a
    continuation of its coasts, and a codec sees a block nearly as smooth as the sea.
    Bit ``i`` of ``bits`` (least significant first; zeroed by the caller) marks cell ``i``
    non-finite, and ``values`` gets the non-finite cells in order, bit for bit.
    Returns the number of non-finite cells.
    """
    cdef Py_ssize_t n = a.shape[0], k = 0, start, row, i, j, left, right, y, top, bottom
    cdef Py_ssize_t nrows = n // nx if nx > 0 else 0, col, base, stride
    cdef double vl, vr, first = 0, guess
    cdef bint found = False, row_has
    cdef unsigned char[::1] row_empty = bytearray(nrows if nrows > 0 else 1)
    if n == 0 or nx < 1 or ny < 1 or n % (nx * ny):
        raise ValueError("fill_and_mask: the block is not ny x nx slices")
    with nogil:
        for i in range(n):
            if isfinite(a[i]):
                first = a[i]
                found = True
                break
        # rows: mark, collect, and bridge each gap along the row
        for row in range(nrows):
            start = row * nx
            left = -1
            row_has = False
            j = start
            while j < start + nx:
                if a[j] - a[j] == 0:
                    filled[j] = a[j]
                    left = j
                    row_has = True
                    j += 1
                    continue
                right = j
                while right < start + nx and not (a[right] - a[right] == 0):
                    bits[right >> 3] |= <unsigned char>(1 << (right & 7))
                    values[k] = a[right]
                    k += 1
                    right += 1
                for i in range(j, right):
                    if left >= 0 and right < start + nx:
                        vl = a[left]
                        vr = a[right]
                        filled[i] = <floating>(vl + (vr - vl) * (i - left) / (right - left))
                    elif left >= 0:
                        filled[i] = a[left]
                    elif right < start + nx:
                        filled[i] = a[right]
                    else:
                        filled[i] = <floating>first
                j = right
            row_empty[row] = not row_has
        # columns: bridge each gap along the column, averaging with the row's line
        if ny > 1:
            stride = nx
            base = 0
            while base < n:
                for col in range(nx):
                    top = -1
                    y = 0
                    while y < ny:
                        i = base + y * stride + col
                        if a[i] - a[i] == 0:
                            top = y
                            y += 1
                            continue
                        bottom = y
                        while bottom < ny and not (
                                a[base + bottom * stride + col] - a[base + bottom * stride + col] == 0):
                            bottom += 1
                        if top >= 0 or bottom < ny:
                            for j in range(y, bottom):
                                i = base + j * stride + col
                                if top >= 0 and bottom < ny:
                                    vl = a[base + top * stride + col]
                                    vr = a[base + bottom * stride + col]
                                    guess = vl + (vr - vl) * (j - top) / (bottom - top)
                                elif top >= 0:
                                    guess = a[base + top * stride + col]
                                else:
                                    guess = a[base + bottom * stride + col]
                                if row_empty[(base + j * stride) // nx]:
                                    filled[i] = <floating>guess
                                else:
                                    filled[i] = <floating>(0.5 * (filled[i] + guess))
                        y = bottom
                base += nx * ny
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
