"""Wire formats shared by the computing-centre server and the edge client (NumPy only).

Two body formats travel between edge and centre:

* ``.npy`` (``Content-Type: application/x-npy``): one array, parsed with
  ``np.load(..., allow_pickle=False)`` only after its header has been checked, so an object
  array, a lying shape or an unexpected dtype is refused before any memory is allocated;
* JSON ``{"spectra": [[...]], "axis": [...], "policy": ..., "budget": ..., "threshold": ...,
  "on_unknown": ..., "on_ambiguous": ..., "sets": ...}``.

Every malformed payload raises :class:`PayloadError` carrying the HTTP status the server answers
with (400 bad request, 413 too large), and a one-line message naming the field, the bad value and
what is allowed. Nothing here imports torch; the edge client uses the same code to build its
requests.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from scai.errors import PayloadError
from scai.inference.budget import Budget, parse_budget
from scai.inference.thresholds import Thresholds, parse_thresholds

__all__ = [
    "PayloadError",
    "POLICIES",
    "NPY_CONTENT_TYPE",
    "MODEL_HEADER",
    "RequestOptions",
    "encode_npy",
    "decode_npy",
    "parse_json_body",
    "spectra_from_json",
    "parse_options",
    "parse_stage",
    "one_line",
]

#: Policies the server accepts (``scai predict`` has the same four).
POLICIES: tuple[str, ...] = ("full", "anytime", "threshold", "batch")
NPY_CONTENT_TYPE = "application/x-npy"
#: Request and reply header naming the model (SHA-256 of its weights) an exchange is about.
MODEL_HEADER = "X-Scai-Model"
#: dtypes accepted for raw spectra and for intermediate features.
SPECTRA_DTYPES: tuple[str, ...] = ("float16", "float32", "float64")
FEATURE_DTYPES: tuple[str, ...] = ("float16", "float32")


@dataclass(frozen=True)
class RequestOptions:
    """Validated policy options of one request.

    Attributes
    ----------
    policy : str
        One of :data:`POLICIES`.
    budget : Budget or None
        Required by ``anytime`` and ``batch``.
    threshold : Thresholds or None
        Only with ``threshold``; ``None`` means the model's calibrated thresholds.
    on_unknown : str or None
        ``"deeper"`` or ``"answer"`` (:data:`scai.inference.reliability.ON_UNKNOWN`); None: the
        default (``"deeper"``).
    sets : float or None
        Confidence level of the conformal sets to return (one the model calibrated).
    on_ambiguous : str or None
        ``"deeper"`` or ``"answer"`` (:data:`scai.inference.reliability.ON_AMBIGUOUS`): whether a
        spectrum whose set has more than one class runs on; ``"deeper"`` needs ``sets``. None:
        the default (``"answer"``).
    """

    policy: str = "full"
    budget: Budget | None = None
    threshold: Thresholds | None = None
    on_unknown: str | None = None
    sets: float | None = None
    on_ambiguous: str | None = None

    def key(self) -> tuple[Any, ...]:
        """Requests with equal keys can share one forward pass (micro-batching)."""
        return (self.policy, self.budget, self.threshold, self.on_unknown, self.sets, self.on_ambiguous)


# ---------------------------------------------------------------------------------------------
# .npy


def encode_npy(array: np.ndarray) -> bytes:
    """Serialise ``array`` as ``.npy`` bytes (never pickled)."""
    arr = np.asarray(array)
    if arr.dtype.hasobject:
        raise PayloadError(f"cannot encode an array of dtype {arr.dtype}; only numeric arrays travel")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    return buf.getvalue()


def decode_npy(
    body: bytes,
    *,
    name: str = "body",
    dtypes: Sequence[str] = SPECTRA_DTYPES,
    ndim: Sequence[int] = (2,),
) -> np.ndarray:
    """Parse ``.npy`` bytes into a finite float array, checking the header before reading data.

    Parameters
    ----------
    body : bytes
        The request body.
    name : str
        What the array is, for messages (``"spectra"``, ``"features"``).
    dtypes : sequence of str
        Allowed dtypes (little- or big-endian).
    ndim : sequence of int
        Allowed numbers of dimensions.

    Returns
    -------
    ndarray
        The array in native byte order, float32 unless it came as float16/float64.

    Raises
    ------
    PayloadError
        Not ``.npy``, object/structured/unsupported dtype, wrong number of dimensions, a
        header whose shape does not match the data length, or NaN/inf values.
    """
    if not body:
        raise PayloadError(f"{name}: empty body; send a .npy array (numpy.save(..., allow_pickle=False))")
    fh = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:  # pragma: no cover - read_magic accepts only these today
            raise PayloadError(f"unsupported .npy version {version}; send version 1, 2 or 3 (numpy.save)")
    except (ValueError, SyntaxError, TypeError, EOFError, OverflowError, tokenize.TokenError) as exc:
        # numpy reads the header with a Python literal parser: each of these means a broken header
        raise PayloadError(f"{name}: not a valid .npy array ({one_line(exc)})") from None
    if dtype.hasobject or dtype.fields is not None:
        raise PayloadError(f"{name}: dtype {dtype} is not allowed (object/structured arrays are refused); use one of {list(dtypes)}")
    if dtype.newbyteorder("=").name not in dtypes and dtype.name not in dtypes:
        raise PayloadError(f"{name}: dtype {dtype.name} is not allowed; use one of {list(dtypes)}")
    if len(shape) not in ndim:
        raise PayloadError(f"{name}: array has {len(shape)} dimension(s) {tuple(shape)}; expected {' or '.join(map(str, ndim))}")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    remaining = len(body) - fh.tell()
    if expected != remaining:
        raise PayloadError(f"{name}: header says shape {tuple(shape)} ({expected} bytes) but the body holds {remaining} data bytes")
    if expected == 0:
        raise PayloadError(f"{name}: array of shape {tuple(shape)} is empty; send at least one spectrum")
    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # pragma: no cover - header already checked
        raise PayloadError(f"{name}: not a valid .npy array ({one_line(exc)})") from None
    arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
    _check_finite(arr, name)
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise PayloadError(f"{name}: {int(bad.sum())} NaN/inf value(s), first at index {where}; send finite values")


_ADDRESS = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")


def one_line(exc: BaseException, limit: int = 160) -> str:
    """One line of an exception's text for a reply: newlines and memory addresses removed."""
    text = _ADDRESS.sub(r"<\1>", str(exc).replace("\n", " "))
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# JSON


#: Deepest nesting a request body may have; a predict body needs 3 (object, spectra, spectrum).
MAX_JSON_DEPTH = 32
_FLOAT_MAX = float(np.finfo(np.float64).max)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
#: An integer literal longer than this is outside the float range whatever its digits.
_MAX_INT_DIGITS = len(str(int(_FLOAT_MAX)))


def parse_json_body(body: bytes) -> dict[str, Any]:
    """Decode a JSON object body; every way it can be wrong is a one-line :class:`PayloadError`.

    Refused: bad UTF-8, bad JSON, ``NaN``/``Infinity`` literals, numbers outside the float64
    range (``1e400``, or an integer literal with 400 digits, which Python would otherwise keep
    as an exact integer or refuse beyond 4,300 digits), nesting deeper than
    :data:`MAX_JSON_DEPTH`, and a top level that is not an object. Numbers are checked where
    the decoder reads them, so no field (spectra, axis, budget, threshold) can hold one that
    later fails to convert.
    """
    if not body:
        raise PayloadError('empty body; send JSON {"spectra": [[...], ...]} or a .npy array with Content-Type application/x-npy')
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"body is not UTF-8 text ({one_line(exc)})") from None
    try:
        obj = json.loads(text, parse_constant=_refuse_constant, parse_float=_json_float, parse_int=_json_int)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise PayloadError(f"JSON is nested too deeply; a request needs at most {MAX_JSON_DEPTH} levels") from None
    if not isinstance(obj, dict):
        raise PayloadError(f'JSON body must be an object {{"spectra": [[...]]}}; got {type(obj).__name__}')
    _check_depth(obj)
    return obj


def _refuse_constant(token: str) -> float:
    raise PayloadError(f"JSON holds {token}; spectra must be finite numbers")


def _out_of_range(token: str) -> PayloadError:
    shown = token if len(token) <= 24 else f"{token[:12]}...{token[-6:]} ({len(token)} characters)"
    return PayloadError(f"JSON number {shown} is outside the float range (magnitude up to {_FLOAT_MAX:.4g})")


def _json_float(token: str) -> float:
    value = float(token)
    if value in (np.inf, -np.inf):
        raise _out_of_range(token)
    return value


def _json_int(token: str) -> int:
    if len(token.lstrip("-")) > _MAX_INT_DIGITS:
        raise _out_of_range(token)
    value = int(token)
    if abs(value) > _FLOAT_MAX:
        raise _out_of_range(token)
    return value


def _check_depth(obj: Any) -> None:
    """Refuse nesting beyond MAX_JSON_DEPTH (the decoder itself stops only near Python's recursion limit)."""
    level = [obj]
    for depth in range(1, MAX_JSON_DEPTH + 2):
        nxt = [v for c in level for v in (c.values() if isinstance(c, dict) else c) if isinstance(v, (list, dict))]
        if not nxt:
            return
        if depth > MAX_JSON_DEPTH:
            break
        level = nxt
    raise PayloadError(f"JSON is nested more than {MAX_JSON_DEPTH} levels deep; spectra are a list of lists of numbers")


def _numeric_matrix(value: Any, name: str, max_rows: int) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise PayloadError(f"{name} must be a non-empty list of spectra (lists of numbers); got {_kind(value)}")
    if not isinstance(value[0], list):
        raise PayloadError(
            f"{name}[0] must be a list of numbers; got {_kind(value[0])} "
            f"({name} is a list of spectra: send one spectrum as [[...]])"
        )
    if len(value) > max_rows:
        raise PayloadError(f"{name} holds {len(value)} spectra; at most {max_rows} per request", status=413)
    width = None
    for i, row in enumerate(value):
        if not isinstance(row, list):
            raise PayloadError(f"{name}[{i}] must be a list of numbers; got {_kind(row)}")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise PayloadError(f"{name}[{i}] has {len(row)} values but {name}[0] has {width}; all spectra need the same length")
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise PayloadError(f"{name}[{i}][{j}] = {_show(v)} is not a number")
    if not width:
        raise PayloadError(f"{name}[0] is empty; each spectrum needs at least one value")
    return as_float32(np.asarray(value, dtype=np.float64), name)


def as_float32(arr: np.ndarray, name: str) -> np.ndarray:
    """``arr`` as float32, refusing NaN/inf and values that float32 cannot hold (they would become inf)."""
    _check_finite(arr, name)
    if arr.dtype.itemsize <= 4:
        return arr.astype(np.float32)
    big = np.abs(arr) > _FLOAT32_MAX
    if big.any():
        where = tuple(int(i) for i in np.argwhere(big)[0])
        raise PayloadError(
            f"{name}: {int(big.sum())} value(s) beyond the float32 range ({_FLOAT32_MAX:.4g}), first at index {where}"
        )
    return arr.astype(np.float32)


def _show(value: Any) -> str:
    """A short description of a JSON value for a message (never a repr with a memory address)."""
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'list'}"
    if isinstance(value, str) and len(value) > 40:
        return f"{value[:40]!r}..."
    return f"{value!r:.40}"


def _kind(value: Any) -> str:
    if isinstance(value, list) and not value:
        return "an empty list"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def spectra_from_json(obj: dict[str, Any], *, max_rows: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``{"spectra": [[...]], "axis": [...]?}`` -> (float32 (n, W) spectra, float64 axis or None)."""
    unknown = set(obj) - {"spectra", "axis", "policy", "budget", "threshold", "on_unknown", "on_ambiguous", "sets"}
    if unknown:
        raise PayloadError(
            f"unknown field(s) {sorted(unknown)}; allowed: spectra, axis, policy, budget, threshold, on_unknown, "
            "on_ambiguous, sets"
        )
    if "spectra" not in obj:
        raise PayloadError('JSON body lacks "spectra": a list of spectra (lists of numbers)')
    X = _numeric_matrix(obj["spectra"], "spectra", max_rows)
    axis = obj.get("axis")
    if axis is None:
        return X, None
    if not isinstance(axis, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in axis):
        raise PayloadError("axis must be a list of numbers (one per spectrum point)")
    if len(axis) != X.shape[1]:
        raise PayloadError(f"axis has {len(axis)} values but each spectrum has {X.shape[1]}")
    ax = np.asarray(axis, dtype=np.float64)
    _check_finite(ax, "axis")
    return X, ax


# ---------------------------------------------------------------------------------------------
# options


def parse_options(policy: Any, budget: Any, threshold: Any, *, n_exits: int, on_unknown: Any = None,
                  sets: Any = None, on_ambiguous: Any = None) -> RequestOptions:
    """Validate the policy options of a request (JSON fields or query parameters).

    ``policy`` defaults to ``"full"``; ``anytime`` and ``batch`` need a budget (``batch`` in
    MACs or as a share of the full path); ``threshold`` without a value uses the model's
    calibrated thresholds. An option the policy does not use is refused, not ignored. Budgets
    and thresholds are parsed by :func:`scai.inference.parse_budget` and
    :func:`scai.inference.parse_thresholds`; their errors become 400s here. ``on_unknown`` is
    ``deeper`` (the default) or ``answer``; ``sets`` a confidence level in (0, 1) (whether the
    model calibrated it is checked when the request runs); ``on_ambiguous`` ``answer`` (the
    default) or ``deeper``, which needs ``sets`` (a set of more than one class then runs on).
    """
    policy = "full" if policy in (None, "") else policy
    if not isinstance(policy, str) or policy not in POLICIES:
        raise PayloadError(f"policy={_show(policy)} is unknown; use one of {list(POLICIES)}")
    parsed: Budget | None = None
    if budget not in (None, ""):
        if isinstance(budget, bool) or not isinstance(budget, (str, int, float)):
            raise PayloadError(f"budget must be a string such as '150k' or '2ms' or a number of MACs; got {_kind(budget)}")
        try:
            parsed = parse_budget(budget)
        except (ValueError, TypeError, OverflowError) as exc:
            raise PayloadError(f"budget={_show(budget)} is not allowed: {one_line(exc)}") from None
        if policy not in ("anytime", "batch"):
            raise PayloadError(f"budget is only used by policies 'anytime' and 'batch'; got policy {policy!r}")
        if policy == "batch" and parsed.unit == "ms":
            raise PayloadError(f"policy 'batch' takes a mean budget in MACs (e.g. '200k') or a share ('25%'); got {_show(budget)}")
    if policy in ("anytime", "batch") and parsed is None:
        raise PayloadError(f"policy {policy!r} needs a budget, e.g. budget=150k (MACs), 25% or 2ms")
    th: Thresholds | None = None
    if threshold not in (None, ""):
        if policy != "threshold":
            raise PayloadError(f"threshold is only used by policy 'threshold'; got policy {policy!r}")
        try:
            th = parse_thresholds(threshold, n_exits)
        except (ValueError, TypeError, OverflowError) as exc:
            raise PayloadError(one_line(exc)) from None
    from scai.inference.reliability import ON_AMBIGUOUS, ON_UNKNOWN

    if on_unknown in (None, ""):
        on_unknown = None
    elif not isinstance(on_unknown, str) or on_unknown not in ON_UNKNOWN:
        raise PayloadError(f"on_unknown={_show(on_unknown)} is unknown; use one of {list(ON_UNKNOWN)}")
    level: float | None = None
    if sets not in (None, ""):
        try:
            level = float(sets) if not isinstance(sets, bool) else float("nan")
        except (TypeError, ValueError):
            level = float("nan")
        if not 0.0 < level < 1.0:
            raise PayloadError(f"sets={_show(sets)} is not allowed; use a confidence level in (0, 1) such as 0.95")
    if on_ambiguous in (None, ""):
        on_ambiguous = None
    elif not isinstance(on_ambiguous, str) or on_ambiguous not in ON_AMBIGUOUS:
        raise PayloadError(f"on_ambiguous={_show(on_ambiguous)} is unknown; use one of {list(ON_AMBIGUOUS)}")
    elif on_ambiguous == "deeper" and level is None:
        raise PayloadError("on_ambiguous=deeper holds spectra whose conformal set has more than one class; "
                           "it needs sets=LEVEL (e.g. sets=0.95)")
    return RequestOptions(policy=policy, budget=parsed, threshold=th, on_unknown=on_unknown, sets=level,
                          on_ambiguous=on_ambiguous)


def parse_stage(value: Any, n_exits: int) -> int:
    """The stage index ``k`` whose features are sent; the centre continues at ``k + 1``."""
    if value is None or value == "":
        raise PayloadError(f"missing query parameter stage (the index 0..{n_exits - 2} of the last stage run on the edge)")
    try:
        k = int(str(value))
    except ValueError:
        raise PayloadError(f"stage={_show(value)} is not an integer; use 0..{n_exits - 2}") from None
    if not 0 <= k <= n_exits - 2:
        raise PayloadError(
            f"stage={k} is out of range; features of stage 0..{n_exits - 2} can be continued "
            f"(the model has {n_exits} stages, the last one has nothing after it)"
        )
    return k
