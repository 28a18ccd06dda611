"""Property tests of the request parser: whatever the bytes, the parser returns validated arrays
and options or raises one PayloadError with a 4xx status and a one-line message (no other
exception, no memory address), the same path the server runs for every JSON body."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scai.deploy.payloads import PayloadError, decode_npy, parse_json_body, parse_options, spectra_from_json

ADDRESS = re.compile(r"at 0x[0-9a-fA-F]+|object at")
N_EXITS = 4

# JSON text built from tokens, so that numbers Python's json.dumps would never write (1e400 as
# digits, 5,000-digit integers, -0, exponents) reach the parser.
_int_token = st.one_of(st.integers(-(10**6), 10**6).map(str), st.from_regex(r"-?[1-9][0-9]{300,5000}", fullmatch=True))
_float_token = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.from_regex(r"-?[0-9]\.[0-9]{1,5}[eE][+-]?[0-9]{1,4}", fullmatch=True),
)
_scalar = st.one_of(_int_token, _float_token, st.sampled_from(["true", "false", "null", "NaN", "Infinity", "-Infinity"]),
                    st.text(max_size=12).map(json.dumps))
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.dictionaries(st.sampled_from(["spectra", "axis", "policy", "budget", "threshold", "x"]), inner, max_size=4).map(
            lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}"
        ),
    ),
    max_leaves=30,
)
_row = st.lists(st.one_of(_int_token, _float_token), min_size=1, max_size=6).map(lambda xs: "[" + ",".join(xs) + "]")
_body = st.one_of(
    _value,
    st.builds(
        lambda rows, extra: '{"spectra": [' + ",".join(rows) + "]" + "".join(f',"{k}":{v}' for k, v in extra.items()) + "}",
        st.lists(_row, min_size=1, max_size=3),
        st.dictionaries(st.sampled_from(["axis", "policy", "budget", "threshold"]), _value, max_size=3),
    ),
    st.integers(1, 3000).map(lambda d: '{"spectra": ' + "[" * d + "]" * d + "}"),
)


def _parse(body: bytes) -> tuple[np.ndarray, Any, Any]:
    obj = parse_json_body(body)
    X, axis = spectra_from_json(obj, max_rows=8)
    options = parse_options(obj.get("policy"), obj.get("budget"), obj.get("threshold"), n_exits=N_EXITS)
    return X, axis, options


def _check_refusal(exc: PayloadError) -> None:
    text = str(exc)
    assert 400 <= exc.status < 500
    assert text and "\n" not in text and len(text) < 600, text
    assert not ADDRESS.search(text), text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_body)
def test_json_parser_accepts_or_refuses_in_one_line(body: str) -> None:
    try:
        X, axis, options = _parse(body.encode("utf-8"))
    except PayloadError as exc:
        _check_refusal(exc)
        return
    assert X.dtype == np.float32 and X.ndim == 2 and np.isfinite(X).all()
    assert axis is None or (axis.shape == (X.shape[1],) and np.isfinite(axis).all())
    assert options.policy in ("full", "anytime", "threshold", "batch")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_are_refused_in_one_line(body: bytes) -> None:
    for parse in (_parse, lambda b: decode_npy(b, ndim=(1, 2))):
        try:
            parse(body)
        except PayloadError as exc:
            _check_refusal(exc)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=64), st.integers(0, 200))
def test_corrupted_npy_is_refused_in_one_line(noise: bytes, cut: int) -> None:
    from scai.deploy.payloads import encode_npy

    good = encode_npy(np.arange(12, dtype=np.float32).reshape(3, 4))
    for body in (good[:cut] + noise, good[:cut] + noise + good[cut + len(noise):]):
        try:
            arr = decode_npy(body, ndim=(1, 2))
        except PayloadError as exc:
            _check_refusal(exc)
        else:
            assert np.isfinite(arr).all()


_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    width=st.integers(1, 40),
    n=st.integers(1, 3),
    values=st.one_of(_finite, st.sampled_from([0.0, 1.0, 1e38, -1e38, 1e-300, 3e38])),
    axis=st.one_of(st.none(), st.sampled_from(["linspace", "reversed", "constant", "huge"])),
    options=st.fixed_dictionaries({}, optional={
        "policy": st.sampled_from(["full", "anytime", "threshold", "batch", "nope"]),
        "budget": st.one_of(st.sampled_from(["150k", "1", "25%", "2ms", "0", "1e300", "inf", "k"]), _finite),
        "threshold": st.one_of(_finite, st.lists(st.one_of(_finite, st.none()), max_size=5)),
    }),
)
def test_the_live_server_answers_200_or_one_line_4xx(client: Any, width: int, n: int, values: float, axis: Any,
                                                     options: dict[str, Any]) -> None:
    """Spectra of any finite values on any axis, with any options: never a 5xx."""
    rng = np.random.default_rng(width)
    with np.errstate(over="ignore"):
        X = np.clip(values * (1 + 0.1 * rng.standard_normal((n, width))), -1.7e308, 1.7e308)
    body: dict[str, Any] = {"spectra": X.tolist(), **options}
    if axis is not None:
        ax = {"linspace": np.linspace(50, 3400, width), "reversed": np.linspace(3400, 50, width),
              "constant": np.full(width, 100.0), "huge": np.linspace(1e300, 1.5e300, width)}[axis]
        body["axis"] = ax.tolist()
    r = client.post("/v1/predict", content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    if r.status_code == 200:
        res = r.json()["results"]
        assert len(res) == n and all(np.isfinite(x["confidence"]) for x in res)
        return
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    detail = r.json()["detail"]
    assert "\n" not in detail and not ADDRESS.search(detail), detail
