"""Wire-format parsing: every malformed payload is a PayloadError with a clear message, no pickle."""

from __future__ import annotations

import io
import json

import numpy as np

from scai.inference.budget import Budget
import pytest

from scai.deploy.payloads import (
    PayloadError,
    decode_npy,
    encode_npy,
    parse_json_body,
    parse_options,
    parse_stage,
    spectra_from_json,
)


def test_npy_round_trip_float16_and_float32() -> None:
    for dtype in (np.float16, np.float32):
        a = np.arange(24, dtype=dtype).reshape(2, 3, 4)
        b = decode_npy(encode_npy(a), dtypes=("float16", "float32"), ndim=(3,))
        assert b.dtype == dtype and np.array_equal(a, b)


def test_big_endian_is_accepted_and_made_native() -> None:
    a = np.arange(6, dtype=">f4").reshape(2, 3)
    b = decode_npy(encode_npy(a))
    assert b.dtype == np.float32 and b.dtype.isnative and np.array_equal(a, b)


def _pickled_object_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return buf.getvalue()


def _lying_header() -> bytes:
    good = encode_npy(np.zeros((2, 3), dtype=np.float32))
    return good.replace(b"(2, 3)", b"(9, 3)")


@pytest.mark.parametrize(
    "body, match",
    [
        (b"", "empty body"),
        (b"not an npy file at all", "not a valid .npy"),
        (_pickled_object_npy(), "object"),
        (encode_npy(np.zeros((2, 3), dtype=np.int64)), "dtype int64 is not allowed"),
        (encode_npy(np.zeros((2, 3), dtype=np.complex64)), "dtype complex64"),
        (encode_npy(np.zeros((2, 3, 4), dtype=np.float32)), "3 dimension"),
        (encode_npy(np.zeros((0, 3), dtype=np.float32)), "empty"),
        (encode_npy(np.array([[1.0, np.nan]], dtype=np.float32)), "NaN/inf"),
        (encode_npy(np.array([[1.0, np.inf]], dtype=np.float32)), "NaN/inf"),
        (_lying_header(), "header says shape"),
        (encode_npy(np.zeros((2, 3), dtype=np.float32))[:-4], "header says shape"),
    ],
)
def test_bad_npy_is_refused(body: bytes, match: str) -> None:
    with pytest.raises(PayloadError, match=match) as info:
        decode_npy(body, name="spectra")
    assert info.value.status == 400


def test_structured_dtype_is_refused() -> None:
    a = np.zeros(3, dtype=[("x", "f4"), ("y", "f4")])
    buf = io.BytesIO()
    np.save(buf, a)
    with pytest.raises(PayloadError, match="structured"):
        decode_npy(buf.getvalue(), ndim=(1,))


@pytest.mark.parametrize(
    "body, match",
    [
        (b"", "empty body"),
        (b"{bad json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be an object"),
        (b'{"spectra": [[1, NaN]]}', "NaN"),
    ],
)
def test_bad_json_is_refused(body: bytes, match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        parse_json_body(body)


@pytest.mark.parametrize(
    "obj, match",
    [
        ({}, "lacks \"spectra\""),
        ({"spectra": []}, "non-empty list"),
        ({"spectra": [1, 2]}, r"spectra\[0\] must be a list"),
        ({"spectra": [[1, 2], [1]]}, "same length"),
        ({"spectra": [["a", 2]]}, "is not a number"),
        ({"spectra": [[True, 2]]}, "is not a number"),
        ({"spectra": [[]]}, "is empty"),
        ({"spectra": [[1e400, 1]]}, "NaN/inf"),
        ({"spectra": [[1, 2]], "axis": [1]}, "axis has 1 values"),
        ({"spectra": [[1, 2]], "axis": "x"}, "axis must be a list"),
        ({"spectra": [[1, 2]], "pickle": 1}, "unknown field"),
    ],
)
def test_bad_spectra_are_refused(obj: dict, match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        spectra_from_json(obj, max_rows=10)


def test_too_many_rows_is_413() -> None:
    with pytest.raises(PayloadError) as info:
        spectra_from_json({"spectra": [[1.0]] * 11}, max_rows=10)
    assert info.value.status == 413


@pytest.mark.parametrize(
    "policy, budget, threshold, match",
    [
        ("greedy", None, None, "unknown"),
        ("anytime", None, None, "needs a budget"),
        ("batch", "2ms", None, "MACs"),
        ("anytime", "-5", None, "budget"),
        ("anytime", "lots", None, "budget"),
        ("anytime", [1], None, "budget must be"),
        ("threshold", None, 1.5, r"\[0, 1\]"),
        ("threshold", None, "a,b", "not a number"),
        ("threshold", None, [0.5, 0.5, 0.5, 0.5], "give 1, 2 or 3"),
        ("full", None, 0.5, "only used by policy 'threshold'"),
        ("full", "150k", None, "budget is only used by policies 'anytime' and 'batch'"),
        ("threshold", "150k", None, "budget is only used by policies 'anytime' and 'batch'"),
        ("anytime", "1e400", None, "too large"),
        ("anytime", 10**400, None, "budget"),
    ],
)
def test_bad_options_are_refused(policy, budget, threshold, match) -> None:
    with pytest.raises(PayloadError, match=match):
        parse_options(policy, budget, threshold, n_exits=3)


def test_good_options() -> None:
    assert parse_options(None, None, None, n_exits=3).policy == "full"
    assert parse_options("anytime", "150k", None, n_exits=3).budget == Budget(150_000.0, "macs")
    assert parse_options("anytime", "25%", None, n_exits=3).budget == Budget(0.25, "fraction")
    th = parse_options("threshold", None, "0.9,0.8", n_exits=3).threshold
    assert th is not None and th.values.tolist() == [0.9, 0.8, 0.0]
    assert parse_options("threshold", None, 0.7, n_exits=3).threshold.values.tolist() == [0.7, 0.7, 0.0]
    assert parse_options("batch", 2e5, None, n_exits=3).budget == Budget(200_000.0, "macs")


@pytest.mark.parametrize(
    "on_unknown, on_ambiguous, sets, match",
    [
        ("ignore", None, None, "on_unknown='ignore' is unknown"),
        (None, "maybe", "0.9", "on_ambiguous='maybe' is unknown"),
        (None, ["deeper"], "0.9", "on_ambiguous=a JSON list is unknown"),
        (None, True, "0.9", "on_ambiguous=True is unknown"),
        (None, "deeper", None, "needs sets=LEVEL"),
        ("answer", "deeper", "", "needs sets=LEVEL"),
    ],
)
def test_bad_hold_options_are_refused_with_400(on_unknown, on_ambiguous, sets, match) -> None:
    with pytest.raises(PayloadError, match=match) as err:
        parse_options("threshold", None, None, n_exits=3, on_unknown=on_unknown, on_ambiguous=on_ambiguous, sets=sets)
    assert err.value.status == 400


def test_hold_options() -> None:
    o = parse_options("threshold", None, None, n_exits=3)
    assert o.on_unknown is None and o.on_ambiguous is None  # the defaults: deeper, answer
    o = parse_options("threshold", None, None, n_exits=3, on_ambiguous="deeper", sets="0.95")
    assert o.on_ambiguous == "deeper" and o.sets == 0.95
    assert parse_options("full", None, None, n_exits=3, on_ambiguous="answer").on_ambiguous == "answer"
    # requests that differ in on_ambiguous do not share a forward pass
    assert o.key() != parse_options("threshold", None, None, n_exits=3, sets="0.95").key()
    X, _ = spectra_from_json({"spectra": [[1.0, 2.0]], "on_ambiguous": "deeper", "sets": 0.9}, max_rows=4)
    assert X.shape == (1, 2)


@pytest.mark.parametrize("value, match", [(None, "missing"), ("x", "not an integer"), ("-1", "out of range"), ("2", "out of range")])
def test_bad_stage_is_refused(value, match) -> None:
    with pytest.raises(PayloadError, match=match):
        parse_stage(value, n_exits=3)
    assert parse_stage("1", n_exits=3) == 1


def test_encode_refuses_object_arrays() -> None:
    with pytest.raises(PayloadError):
        encode_npy(np.array([None], dtype=object))
    assert json.loads(json.dumps({"ok": True}))
