"""Bounds per variable: ``--tolerance SST=0.01 --tolerance 0.1%``, ``--codec``, ``--config FILE``.

Each setting (codec, tolerance, rel_tolerance, rate, precision, level, mode, quality) is given
for one variable (``VAR=VALUE``) or for the rest (a bare value), on the command line or in a
TOML file::

    [defaults]
    codec = "sz3"
    tolerance = "0.1%"          # of each variable's range (max - min), computed once
    [variables.SST]
    tolerance = 0.01
    [variables.AIRT]
    codec = "zfp"

The most specific place wins: ``VAR=`` on the command line, then ``[variables.VAR]``, then a
bare value on the command line, then ``[defaults]``. A variable's target (tolerance, rate,
precision or quality) comes whole from the first of these that gives one, so a file's
``rate = 8`` and a command line's ``--tolerance 0.1`` never meet; ``mode`` goes with
``quality``. A value for the rest is given only to the variables whose codec takes it
(``--codec T=floatpred+zstd --tolerance 0.01``: the tolerance is for the others).

Bit rounding (``--codec bitround``) takes ``keepbits`` or ``information``, a share of each
variable's real information (its keepbits chosen from its own data, once); quantization
(``--codec quantize``) ``digits``, with its ``method``, which goes with ``digits``.

Every other parameter a registered codec declares (a codec added by its kernel module alone
brings its own) gets an option of the same form from the registry, ``--NAME`` (underscores as
dashes), and a key ``NAME`` in the file: its help is the Param's ``doc``, its value is checked
by the Param's ``check`` (the kernel's), and it goes, as ``level`` does, to the variables whose
codec takes it.
"""

from __future__ import annotations

import argparse
import functools
import math
import re

from ._common import UserError

#: what a variable's compression is made of, in the order the report shows them
KEYS = ("codec", "tolerance", "rate", "precision", "level", "mode", "quality", "rel_tolerance",
        "keepbits", "information", "digits", "method")
#: the target: these say how much may be lost (tolerance and rel_tolerance together: both hold)
TARGETS = ("tolerance", "rate", "precision", "quality", "rel_tolerance", "keepbits",
           "information", "digits")
MODES = ("rate", "psnr", "pwe")
#: codec name that keeps a variable exact (not compressed), as ``chunkpress info`` shows it
EXACT = "exact"
DEFAULT_CODEC = "zfp"
_NAME = re.compile(r"^([^=\s]+)=(.*)$")


class Relative(float):
    """A tolerance given as a fraction of the variable's range (``0.1%`` is ``Relative(0.001)``)."""

    def __repr__(self):
        return f"{float(self) * 100:g}%"


# --- values ---------------------------------------------------------------------------------


def tolerance(text):
    """A max absolute error (``0.01``) or a percentage of the variable's range (``0.1%``)."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"must be a number or a percentage such as \"0.1%\", got {text!r}")
    raw = str(text).strip()
    relative = raw.endswith("%")
    try:
        value = float(raw[:-1] if relative else raw)
    except ValueError:
        raise ValueError("must be a number (the max absolute error, e.g. 0.01) or a "
                         f"percentage of the variable's range (e.g. 0.1%), got {raw!r}") from None
    from ..kernels import check_tolerance

    check_tolerance("", value)  # the kernels' one check: finite and > 0
    if relative:
        if value > 100:
            raise ValueError(f"a percentage of the variable's range must be at most 100%, "
                             f"got {raw}")
        return Relative(value / 100)
    return value


def rel_tolerance(text):
    """A max error relative to each value's magnitude, in (0, 1): ``0.001``."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"must be a number in (0, 1), got {text!r}")
    try:
        value = float(str(text).strip())
    except ValueError:
        raise ValueError("must be a number in (0, 1), the max error relative to each value "
                         f"(e.g. 0.001), got {text!r}") from None
    from ..kernels.relative import check_rel_tolerance

    return check_rel_tolerance(value)  # the kernels' one check


def _positive(kind):
    def parse(text):
        if isinstance(text, bool):
            raise ValueError(f"must be a number, got {text!r}")
        try:
            value = kind(text)
        except (TypeError, ValueError):
            what = "a whole number" if kind is int else "a number"
            raise ValueError(f"must be {what}, got {text!r}") from None
        if kind is int and isinstance(text, float) and text != value:
            raise ValueError(f"must be a whole number, got {text!r}")
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"must be finite and > 0, got {text}")
        return value
    return parse


def _integer(text):
    if isinstance(text, bool) or isinstance(text, float):
        raise ValueError(f"must be a whole number, got {text!r}")
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError(f"must be a whole number, got {text!r}") from None


def codec(text):
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"must be a codec name such as \"zfp\", got {text!r}")
    name = text.strip().lower()
    if name == EXACT:
        return name
    from ..graph.codecs import get_codec

    get_codec(name)  # says which names there are
    return name


def mode(text):
    if text not in MODES:
        raise ValueError(f"must be one of {', '.join(MODES)} (SPERR's modes), got {text!r}")
    return text


def _codec_name(text):
    # checked once the variables are known, where an unknown codec is a user error (exit 1)
    if not text.strip():
        raise ValueError("must be a codec name such as zfp, got ''")
    return text.strip().lower()


def share(text):
    """A share of a variable's real information, in (0, 1]: ``0.99``."""
    from ..graph.information import check_share

    return check_share(_positive(float)(text))  # then the graph's one check: at most 1


def method(text):
    from ..kernels.quantize import METHODS

    if text not in METHODS:
        raise ValueError(f"must be one of {', '.join(METHODS)} (quantize's methods), "
                         f"got {text!r}")
    return text


#: how each setting's value is read, from the command line (text) or TOML (typed)
PARSE = {"codec": codec, "tolerance": tolerance, "rate": _positive(float),
         "precision": _positive(int), "level": _integer, "mode": mode,
         "quality": _positive(float), "rel_tolerance": rel_tolerance, "keepbits": _integer,
         "information": share, "digits": _integer, "method": method}


# --- the parameters codecs bring ------------------------------------------------------------


@functools.cache
def added() -> dict:
    """{name: ((codec, Param), ...)}: every parameter an available registered codec declares
    that KEYS does not hold (a codec added by its kernel module alone brings its own)."""
    from ..kernels import registry

    found = {}
    for d in registry.descriptors():
        for param in d.params if d.available else ():
            if param.name not in KEYS:
                found.setdefault(param.name, []).append((d.name, param))
    return {name: tuple(takers) for name, takers in found.items()}


def keys() -> tuple:
    """Every setting: KEYS, then the parameters the registry adds."""
    return KEYS + tuple(added())


def parser_of(key):
    """How ``key``'s value is read: PARSE's, or for a parameter the registry adds, its Param's
    check (the kernel's message, which names the codec and what is allowed)."""
    if key in PARSE:
        return PARSE[key]

    def parse(raw):
        # text from the command line is tried as the number it spells first, then as text
        tried = [*_numbers(raw), raw] if isinstance(raw, str) else [raw]
        first = None
        for value in tried:
            for _, param in added()[key]:
                try:
                    param.check(value, None)  # no dtype yet: compress checks again with it
                    return value
                except (TypeError, ValueError) as exc:
                    first = first or exc
        raise ValueError(str(first)) from None
    return parse


def _numbers(text) -> list:
    for kind in (int, float):
        try:
            return [kind(text.strip())]
        except ValueError:
            pass
    return []


# --- the command line -----------------------------------------------------------------------


class PerVariable(argparse.Action):
    """``--KEY VALUE`` (for the rest) or ``--KEY VAR=VALUE``, repeatable; kept as a dict whose
    key None is the value for the rest. A malformed value or one given twice is a usage error.
    ``key`` is the setting (default: ``dest``)."""

    def __init__(self, *args, key=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.key = key or self.dest

    def __call__(self, parser, namespace, text, option_string=None):
        key = self.dest
        match = _NAME.match(text)
        name, raw = (match.group(1), match.group(2)) if match else (None, text)
        try:
            value = (_codec_name if self.key == "codec" else parser_of(self.key))(raw)
        except ValueError as exc:
            where = f" for {name}" if name else ""
            parser.error(f"argument {option_string}{where}: {exc}")
        given = dict(getattr(namespace, key, None) or {})
        if name in given:
            what = f"for {name}" if name else "for the rest (without VAR=)"
            parser.error(f"argument {option_string}: given twice {what}: "
                         f"{given[name]!r} and {value!r}")
        given[name] = value
        setattr(namespace, key, given)


def add_arguments(sub) -> None:
    """--codec, --tolerance, --rate, --precision, --level, --mode, --quality, --keepbits,
    --information, --digits, --method, --config."""
    each = "; VAR=VALUE for one variable (repeat)"
    sub.add_argument("--codec", action=PerVariable, metavar="[VAR=]CODEC",
                     help=_codec_choices() + "; auto: chosen on samples of each variable, per "
                          "block where that wins (auto-array: one codec a variable); exact: not "
                          "compressed" + each)
    sub.add_argument("--tolerance", action=PerVariable, metavar="[VAR=]TOL",
                     help="max absolute error, in the variable's units (0.01), or a percentage "
                          "of its range, max - min (0.1%%)" + each)
    sub.add_argument("--rel-tolerance", action=PerVariable, metavar="[VAR=]R",
                     dest="rel_tolerance",
                     help="max error relative to each value, |x - y| <= R |x| (0.001): zeros "
                          "and signs kept; with --tolerance both hold ("
                          + ", ".join(_relative_codecs()) + ")" + each)
    sub.add_argument("--rate", action=PerVariable, metavar="[VAR=]BITS",
                     help="bits per value (zfp, sperr)" + each)
    sub.add_argument("--precision", action=PerVariable, metavar="[VAR=]PLANES",
                     help="bit planes (zfp)" + each)
    sub.add_argument("--level", action=PerVariable, metavar="[VAR=]LEVEL",
                     help="level of a lossless codec" + each)
    sub.add_argument("--mode", action=PerVariable, metavar="[VAR=]MODE",
                     help="SPERR's mode with --quality: psnr (quality in dB), rate (bits per "
                          "value), pwe (max error)" + each)
    sub.add_argument("--quality", action=PerVariable, metavar="[VAR=]Q",
                     help="SPERR's target for --mode, e.g. --codec sperr --mode psnr "
                          "--quality 60" + each)
    for key, metavar, text in (  # bit rounding and quantization
            ("keepbits", "K", "mantissa bits kept by bit rounding (--codec bitround): a "
             "relative error of at most 2^-(K+1)"),
            ("information", "SHARE", "bit rounding: keep the bits that hold this share of each "
             "variable's real information (0.99), chosen once from its data"),
            ("digits", "N", "quantize: significant digits (mantissa bits with --method "
             "bitround)"),
            ("method", "METHOD", "quantize's method with --digits: bitgroom (default), "
             "granularbr, bitround")):
        sub.add_argument(f"--{key}", action=PerVariable, metavar=f"[VAR=]{metavar}",
                         help=text + each)
    sub.add_argument("--config", metavar="FILE.toml",
                     help="settings per variable: [defaults] and [variables.NAME] tables of "
                          + ", ".join(keys()) + "; the command line's settings win over the "
                          "file's at the same level")


#: where a parameter the registry adds is kept in the parsed arguments (apart from the
#: command's own names: a codec's "input" parameter is not the IN argument)
_DEST = "codec_param_"


def add_codec_arguments(sub) -> None:
    """``--NAME`` for each parameter the registry adds (see :func:`added`), once the command's
    other options are there: a name one of them has already is skipped (tests/test_cli.py
    checks that every registered parameter has its option)."""
    takers = added()
    if not takers:
        return
    group = sub.add_argument_group("parameters of other codecs (from the codec registry)")
    for key, given in takers.items():
        docs = "; ".join(dict.fromkeys(p.doc for _, p in given if p.doc)) or key
        codecs = ", ".join(dict.fromkeys(name for name, _ in given))
        try:
            group.add_argument("--" + key.replace("_", "-"), action=PerVariable, key=key,
                               dest=_DEST + key, metavar=f"[VAR=]{key.upper()}",
                               help=f"{docs} ({codecs})".replace("%", "%%")
                               + "; VAR=VALUE for one variable (repeat)")
        except argparse.ArgumentError:
            continue  # the command has this option already: not this parameter's


def _relative_codecs() -> tuple:
    """The codecs that take --rel-tolerance, from the codec registry."""
    from ..kernels.relative import codecs

    return codecs()


def _codec_choices() -> str:
    """The codecs --codec takes, from the codec registry: zfp (default), sperr, ..."""
    from ..kernels import registry

    arrays = [n for n in registry.names("array", available=True) if n != DEFAULT_CODEC]
    filters = registry.names("filter", available=True)
    chain = f"{filters[0]}+zstd" if filters else "zstd"
    alone = [d.name for d in registry.descriptors()
             if d.kind == "filter" and d.terminal and d.available]
    return (f"{DEFAULT_CODEC} (default), {', '.join(arrays)}, "
            f"{'/'.join(registry.names('bytes', available=True))}, "
            + (f"{', '.join(alone)} (before zstd), " if alone else "")
            + f"or a chain such as {chain}")


def from_args(args) -> dict:
    """The command line's settings: {key: {None or VAR: value}}."""
    return {k: dict(getattr(args, k if k in KEYS else _DEST + k, None) or {}) for k in keys()}


def check_portable(cli: dict) -> None:
    """--portable takes --tolerance and --rel-tolerance (--codec is refused apart): any other
    setting is refused before the default codec's are checked, which no longer apply."""
    others = [k for k in keys() if cli.get(k) and k not in ("codec", "tolerance", "rel_tolerance")]
    if others:
        raise UserError("--portable takes --tolerance and --rel-tolerance only; drop "
                        + ", ".join("--" + k.replace("_", "-") for k in others))


# --- the TOML file --------------------------------------------------------------------------


def load_config(path) -> dict:
    """Read a --config file: {key: {None or VAR: value}}, every value checked."""
    import tomllib

    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; give the TOML file of settings") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory; give the TOML file of settings") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid TOML (not UTF-8 text)") from None
    unknown = sorted(set(document) - {"defaults", "variables"})
    if unknown:
        raise UserError(f"{path}: unknown table or key {unknown[0]!r}; the file has "
                        "[defaults] and [variables.NAME] tables")
    settings = {k: {} for k in keys()}
    tables = [(None, "[defaults]", document.get("defaults", {}))]
    variables = document.get("variables", {})
    if not isinstance(variables, dict):
        raise UserError(f"{path}: 'variables' must be tables [variables.NAME], got {variables!r}")
    tables += [(name, f"[variables.{name}]", table) for name, table in variables.items()]
    for name, where, table in tables:
        if not isinstance(table, dict):
            raise UserError(f"{path}: {where} must be a table of settings, got {table!r}")
        for key, raw in table.items():
            if key not in settings:
                raise UserError(f"{path}: {where}: unknown key {key!r}; the keys are "
                                f"{', '.join(settings)}")
            try:
                settings[key][name] = parser_of(key)(raw)
            except ValueError as exc:
                raise UserError(f"{path}: {where} {key}: {exc}") from None
    return settings


# --- one setting per variable ---------------------------------------------------------------


def resolve(dataset, cli: dict, config: dict | None = None, variables=None,
            config_path=None) -> dict:
    """Return {variable: {key: value}} for every variable to compress (tolerances may still be
    Relative); a variable named that is not in the dataset (or not among ``variables``) is an
    error naming where it was given."""
    from ..accessor import cell_bounds, compressible

    every = keys()
    cli = {k: cli.get(k, {}) for k in every}
    config = {k: (config or {}).get(k, {}) for k in every}
    known = list(dataset.data_vars)
    given_at = {n: f"--var {n}" for n in variables or ()}  # where each variable is named
    for name in variables or ():
        if name not in dataset.data_vars:
            what = ("a coordinate, kept exact" if name in dataset.coords
                    else "not a variable of the input")
            raise UserError(f"--var {name}: {name!r} is {what} (its data variables: "
                            f"{', '.join(map(str, known)) or 'none'})")
    for name, text in cli.get("codec", {}).items():
        try:
            codec(text)
        except ValueError as exc:  # the registry's message: the codecs there are
            raise UserError(f"--codec {name + '=' if name else ''}{text}: {exc}") from None
    for on_command_line, settings in ((True, cli), (False, config)):
        for key, values in settings.items():
            for name in values:
                if name is None:
                    continue
                where = (f"--{key.replace('_', '-')} {name}={_shown(values[name])}"
                         if on_command_line else f"{config_path}: [variables.{name}]")
                if name not in dataset.data_vars:
                    raise UserError(f"{where}: {name!r} is not a data variable of the input "
                                    f"(its data variables: {', '.join(map(str, known)) or 'none'})")
                given_at.setdefault(name, where)
                # a project's file may name every variable and --var pick some: not an error
                if on_command_line and variables is not None and name not in variables:
                    raise UserError(f"{where}: {name!r} is not among the variables to compress "
                                    f"(--var {' --var '.join(variables)}); add --var {name}")
    if variables is None:
        named = {n for values in cli.values() for n in values if n} | {
            n for values in config.values() for n in values if n}
        cells = cell_bounds(dataset)
        variables = [n for n in dataset.data_vars
                     if n in named or (compressible(dataset[n].variable) and n not in cells)]

    def levels(key, name):
        """Where a setting may come from, most specific first: (settings, key in them)."""
        return [(cli[key], name), (config[key], name), (cli[key], None), (config[key], None)]

    out = {}
    for name in variables:
        codec_name = next((s[n] for s, n in levels("codec", name) if n in s), DEFAULT_CODEC)
        if codec_name == EXACT:
            continue
        if name in given_at and not compressible(dataset[name].variable):
            raise UserError(f"{given_at[name]}: {name!r} is {_kept(dataset[name].variable)}, "
                            "which chunkpress keeps exact (it compresses float variables); "
                            f"drop it, or give --codec {name}=exact")
        _check_fits(dataset[name], name, codec_name, levels("codec", name), config_path)
        takes = _takes(codec_name)
        chosen = {"codec": codec_name}
        for place in range(4):
            targets = {}
            for key in TARGETS:
                settings, n = levels(key, name)[place]
                if n in settings and (n is not None or key in takes):
                    targets[key] = settings[n]
            if targets:
                chosen.update(targets)
                break
        for key, partner in (("level", None), ("mode", "quality"), ("method", "digits"),
                             *((key, None) for key in added())):
            if partner is not None and partner not in chosen:
                continue  # a mode goes with its quality, a method with its digits
            for settings, n in levels(key, name):
                if n in settings and (n is not None or key in takes):
                    chosen[key] = settings[n]
                    break
        out[name] = chosen
    _check_taken(cli, out)
    return out


def _shown(value) -> str:
    """A setting's value as the command line gave it: 0.01, 1%, sz3."""
    return repr(value) if isinstance(value, (Relative, float)) else str(value)


def _check_fits(var, name, codec_name, levels, config_path) -> None:
    """A codec that cannot take the variable (``--codec sperr`` and a 1-D series) is an error
    saying where the codec was given and what to give that variable instead."""
    from ..graph import codecs

    try:
        codecs.check_input(codecs.get_codec(codec_name), var.dtype, var.ndim)
    except ValueError as exc:
        place = next((i for i, (s, n) in enumerate(levels) if n in s), None)
        where = {None: f"the default codec {codec_name}",
                 0: f"--codec {name}={codec_name}",
                 1: f"{config_path}: [variables.{name}] codec = {codec_name!r}",
                 2: f"--codec {codec_name}",
                 3: f"{config_path}: [defaults] codec = {codec_name!r}"}[place]
        other = next(c for c in (DEFAULT_CODEC, "sz3", "zstd") if c != codec_name)
        raise UserError(f"{where}: variable {name!r} ({var.ndim}-d {var.dtype}) "
                        f"does not fit it ({exc}); give it another (--codec {name}={other}) "
                        f"or leave it out (--codec {name}=exact)") from None


def _kept(var) -> str:
    """Why a variable is not compressed, in words: packed as int16, stored as int32, ..."""
    import numpy as np

    stored = np.dtype(var.encoding.get("dtype", var.dtype))
    if "scale_factor" in var.encoding or "add_offset" in var.encoding:
        return f"packed as {stored} (scale_factor/add_offset)"
    if var.ndim == 0 or var.size == 0:
        return "a scalar" if var.ndim == 0 else "empty"
    return f"stored as {stored}"


def _check_taken(cli: dict, out: dict) -> None:
    """A value given on the command line for the rest (``--keepbits 5``) that no variable's
    codec takes would be dropped without a word: refuse it, saying what the codecs take. A
    bound (``--tolerance``) for lossless codecs only holds as it is: not an error."""
    from ..graph.codecs import get_codec

    if not out:
        return
    takes = {c["codec"]: _takes(c["codec"]) for c in out.values()}
    lossless = all(get_codec(name).lossless for name in takes)
    for key, values in cli.items():
        if key == "codec" or None not in values:
            continue
        if any(key in taken for taken in takes.values()):
            continue
        if lossless and key in ("tolerance", "rel_tolerance"):
            continue
        flag = "--" + key.replace("_", "-")
        what = "; ".join(f"{name} takes " + (", ".join("--" + k.replace("_", "-") for k in taken)
                                             or "no setting but --codec")
                         for name, taken in sorted(takes.items()))
        raise UserError(f"{flag} {values[None]!r}: no variable's codec takes it ({what}); "
                        f"choose a codec that does with --codec, or drop {flag}")


def _takes(codec_name) -> tuple:
    from ..graph import information
    from ..graph.codecs import get_codec

    codec = get_codec(codec_name)
    if codec.is_auto:  # its candidates that keep a relative bound are chosen from for one
        return codec.targets + ("rel_tolerance",)
    return codec.targets + (("information",) if information.takes(codec) else ())


def absolute(dataset, chosen: dict) -> dict:
    """Turn each tolerance given as a percentage into the max error in the variable's units:
    the ranges of all such variables come from one pass over the data (one dask.compute)."""
    import dask
    import dask.array as da
    import numpy as np

    relative = [n for n, c in chosen.items() if isinstance(c.get("tolerance"), Relative)]
    if not relative:
        return chosen
    extremes = []
    for name in relative:
        data = dataset[name].data
        data = data if isinstance(data, da.Array) else da.asarray(data)
        data = da.where(da.isfinite(data), data, np.nan)  # infinities, kept as they are
        extremes += [da.nanmin(data), da.nanmax(data)]
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN", RuntimeWarning)
        values = dask.compute(*extremes)
    out = {n: dict(c) for n, c in chosen.items()}
    for i, name in enumerate(relative):
        low, high = float(values[2 * i]), float(values[2 * i + 1])
        fraction = out[name]["tolerance"]
        span = high - low
        if not np.isfinite(span) or not span > 0:
            what = "has no finite values" if not np.isfinite(span) else f"is constant ({low:g})"
            raise UserError(f"--tolerance {name}={fraction!r}: {name} {what}, so a percentage "
                            f"of its range is no bound; give an absolute --tolerance {name}=VALUE")
        out[name].update(tolerance=float(fraction) * span, range=span, percent=fraction)
    return out


def encode_arguments(chosen: dict) -> dict:
    """The keyword arguments of ``ds.chunkpress.encode``: a dict per setting, by variable."""
    kwargs = {"variables": list(chosen),
              "codec": {n: c["codec"] for n, c in chosen.items()}}
    for key in keys()[1:]:
        values = {n: c[key] for n, c in chosen.items() if key in c}
        if values:
            kwargs[key] = {n: float(v) if isinstance(v, Relative) else v
                           for n, v in values.items()}
    return kwargs


def describe_relative(chosen: dict) -> str | None:
    """One line saying what each percentage became, or None when none was given."""
    parts = [f"{n} {c['tolerance']:.4g} ({c['percent']!r} of {c['range']:.4g})"
             for n, c in chosen.items() if "range" in c]
    return "tolerances from percentages of the range: " + ", ".join(parts) if parts else None
