"""``information=``: bit rounding's ``keepbits`` chosen from the data, once per variable.

``compress(x, "bitround", information=0.99)`` keeps the fewest mantissa bits that hold 99% of
the array's real information (Klöwer et al. 2021; ``chunkpress.kernels.bitinfo``). One small
task per block counts the pairs of neighbouring bits along the last axis; the counts add up
(a block boundary only leaves out the pairs across it), and the sum gives one ``keepbits``,
which every block is then rounded with: the whole array keeps the same precision, whatever
its chunking. The input is read twice, once for the counts, once to compress.

When no bit of the data carries information the counts can tell from chance (pure noise, a
constant field, too few finite neighbours), nothing says which bits may go: every mantissa
bit is kept (keepbits = 23 for float32, 52 for float64), never a rounding on no evidence.
Whether any bit is significant is asked of all the bits at once, at 99% for the family (one
of 32 bits passes a test at 99% by chance on a quarter of pure-noise fields); the bits kept
are then chosen as xbitinfo chooses them.
Where only the sign and exponent bits carry information, keepbits is 0, as the share asks.

The parameter chosen is any chain's ``keepbits`` (``"bitround"``, ``"bitround+pcodec"``);
the choice is kept beside the blocks (:data:`ATTRIBUTE`), in a store's array attributes.
"""

from __future__ import annotations

import functools

import numpy as np
from dask.base import tokenize

from ..kernels import bitinfo, is_real
from . import build
from .codecs import Codec

__all__ = ["PARAMETER", "ATTRIBUTE", "check", "check_share", "takes", "placeholder",
           "choose_keepbits", "counts_array", "keepbits", "attributes", "settled"]

#: the codec parameter ``information`` chooses
PARAMETER = "keepbits"
#: the array attribute that says how a lossy filter's parameters were set (a dict: the
#: parameters, ``information`` where they were chosen from it, ``relative_bound``)
ATTRIBUTE = "chunkpress_rounding"
#: the confidence that a bit's information is real (bitinfo's default, as xbitinfo's)
CONFIDENCE = 0.99
#: the axis along which neighbours are paired (the last: contiguous, as xbitinfo's examples
#: pair along longitude)
AXIS = -1


def takes(codec: Codec) -> bool:
    """Whether ``information=`` can choose a parameter of ``codec`` (it takes ``keepbits``)."""
    return not codec.is_auto and PARAMETER in codec.targets


def check(codec: Codec, information, given: dict) -> float | None:
    """Return ``information`` as a float in (0, 1], or None when not given; raise TypeError or
    ValueError (naming it) for a bad value, a codec without ``keepbits``, or both given.

    ``given`` is the other codec parameters (None where not given).
    """
    if information is None:
        return None
    share = check_share(information)
    if not takes(codec):
        raise ValueError(f"{codec.name}: information= chooses bit rounding's keepbits and this "
                         "codec takes none; use codec='bitround' (or 'bitround+pcodec')")
    if given.get(PARAMETER) is not None:
        raise ValueError(f"give keepbits or information, not both (keepbits={given[PARAMETER]!r}"
                         f", information={information!r})")
    return share


def check_share(information) -> float:
    """Return ``information`` as a float after checking it is a number in (0, 1]."""
    if not is_real(information):
        raise TypeError(f"information must be a number in (0, 1] (the share of the real "
                        f"information to keep, e.g. 0.99), got {information!r}")
    share = float(information)
    if not 0 < share <= 1:  # NaN fails this too
        raise ValueError(f"information must be in (0, 1] (the share of the real information "
                         f"to keep, e.g. 0.99), got {information!r}")
    return share


def placeholder(dtype) -> int:
    """A ``keepbits`` valid for ``dtype`` (all its mantissa bits): the other parameters are
    checked with it before the data is read."""
    return _mantissa_bits(dtype)


def choose_keepbits(counts, information: float, dtype) -> int:
    """Return the keepbits holding ``information`` of the real information in the per-block
    ``counts`` (from :func:`bitinfo.bitinfo_counts`): all mantissa bits where none is
    significant (see the module's docstring).

    >>> rng = np.random.default_rng(0)
    >>> x = 2 + np.sin(np.linspace(0, 20, 4096)) + 1e-3 * rng.standard_normal(4096)
    >>> x = x.astype("float32")  # a smooth wave with a little noise
    >>> choose_keepbits([bitinfo.bitinfo_counts(x)], 0.99, x.dtype)
    7
    >>> halves = [bitinfo.bitinfo_counts(x[:2048]), bitinfo.bitinfo_counts(x[2048:])]
    >>> choose_keepbits(halves, 0.99, x.dtype)  # two blocks: the same
    7
    >>> noise = np.random.default_rng(0).random(4096).astype("float32")
    >>> choose_keepbits([bitinfo.bitinfo_counts(noise)], 0.99, noise.dtype)
    23
    """
    most = _mantissa_bits(dtype)
    if not counts:
        return most
    total = bitinfo.combine_counts(*counts)
    # is anything significant at all? Each bit tested alone at 99% lets one of 32 (64) pass
    # by chance on a quarter (a third) of pure-noise fields, which then got any keepbits, 0
    # included: the question is asked of all the bits together (99% for the family)
    if not bitinfo.bit_information(total, confidence=1 - (1 - CONFIDENCE) / len(total)).any():
        return most
    return min(most, bitinfo.keepbits_from_counts(total, information=information))


def counts_array(x) -> "dask.array.Array":  # noqa: F821
    """Return the object array of each block's bit-pair counts along the last axis (one small
    task a block; a block of one value along it counts nothing)."""
    return build.per_block(x, functools.partial(bitinfo.bitinfo_counts, axis=AXIS),
                           "chunkpress-bitinfo-" + tokenize(x.name, AXIS))


def keepbits(x, information: float) -> int:
    """Return the keepbits of the blocked dask array ``x`` for ``information`` (one compute)."""
    if x.ndim == 0 or x.size == 0:
        return _mantissa_bits(x.dtype)
    cells = counts_array(x).compute()
    return choose_keepbits(list(cells.flat), information, x.dtype)


def attributes(codec: Codec, target: dict, information: float | None = None) -> dict:
    """Return {ATTRIBUTE: ...} for a chain with a lossy filter: the filters' parameters,
    ``information`` where keepbits was chosen from it, and the relative bound they keep (None
    where they keep none); {} for every other codec."""
    if codec.is_auto:
        return {}
    lossy = [f for f in codec.chain.filters if not f.lossless]
    if not lossy:
        return {}
    names = {p.name for f in lossy for p in f.params}
    record = {k: _plain(v) for k, v in target.items() if k in names}
    if information is not None:
        record["information"] = float(information)
    record["relative_bound"] = codec.chain.max_relative_error(target)
    return {ATTRIBUTE: record}


def settled(given: dict, target: dict) -> dict:
    """Return the parameters ``given`` with ``information`` replaced by the ``keepbits`` it
    chose (``target``): the same data compressed again (its edge blocks padded, say) keeps
    that choice, without counting again."""
    if given.get("information") is None:
        return dict(given)
    out = {k: v for k, v in given.items() if k != "information"}
    out[PARAMETER] = target[PARAMETER]
    return out


def _mantissa_bits(dtype) -> int:
    return bitinfo.FORMATS[8 * np.dtype(dtype).itemsize][1]


def _plain(value):
    """A JSON value: numpy scalars as Python numbers."""
    return value.item() if isinstance(value, np.generic) else value
