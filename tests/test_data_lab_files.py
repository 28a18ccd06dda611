"""Lab files as they come: decimal commas, id columns, Excel, UTF-16, git-lfs pointers,
shuffled axis headers, transposed tables, hidden files; plus property tests of the text reader."""

from __future__ import annotations

import string
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scai.data import iter_chunks, read
from scai.errors import DataFormatError, ScaiError

AXIS = np.linspace(400.0, 1800.0, 15)  # 100 cm-1 apart: exact in any text form


def _table(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).normal(5.0, 1.0, size=(n, AXIS.size)), 4)


def _write_rows(path: Path, rows: list[list[str]], delimiter: str) -> Path:
    path.write_text("\n".join(delimiter.join(r) for r in rows) + "\n")
    return path


def _european(path: Path, X: np.ndarray, ids: bool = True) -> Path:
    def comma(v: float) -> str:
        return f"{v:g}".replace(".", ",")

    head = (["sample"] if ids else []) + ["label"] + [comma(v) for v in AXIS]
    rows = [head] + [([f"S{i}"] if ids else []) + ["ab"[i % 2]] + [comma(v) for v in x] for i, x in enumerate(X)]
    return _write_rows(path, rows, ";")


def test_semicolon_and_decimal_comma_are_sniffed(tmp_path: Path) -> None:
    X = _table()
    s = read(_european(tmp_path / "eu.csv", X), id_column="sample")
    np.testing.assert_allclose(s.X, X, rtol=1e-6)
    np.testing.assert_allclose(s.axis, AXIS, rtol=1e-6)
    assert s.ids.tolist() == [f"S{i}" for i in range(6)] and s.class_names == ("a", "b")


def test_ids_survive_chunks_and_subsets(tmp_path: Path) -> None:
    p = _european(tmp_path / "eu.csv", _table(7))
    chunks = list(iter_chunks(p, chunk_size=3, id_column=0))
    assert [c.ids.tolist() for c in chunks] == [["S0", "S1", "S2"], ["S3", "S4", "S5"], ["S6"]]
    assert read(p, id_column=0).subset([4, 1]).ids.tolist() == ["S4", "S1"]


def test_id_column_makes_an_unlabelled_table_readable(tmp_path: Path) -> None:
    rows = [["sample"] + [f"{v:g}" for v in AXIS]] + [[f"S{i}"] + [str(v) for v in x] for i, x in enumerate(_table())]
    p = _write_rows(tmp_path / "new.csv", rows, ",")
    with pytest.raises(ScaiError, match="cannot tell which column holds the labels"):
        read(p)
    s = read(p, id_column="sample")
    assert s.y is None and s.ids[0] == "S0" and s.n_points == AXIS.size


def test_ignore_columns_and_decimal_option(tmp_path: Path) -> None:
    rows = [["label", "date"] + [f"{v:g}" for v in AXIS]] + [["a", "2024-01-0" + str(i)] + [str(v) for v in x] for i, x in enumerate(_table())]
    p = _write_rows(tmp_path / "meta.tsv", rows, "\t")
    assert read(p, ignore_columns=["date"]).n_points == AXIS.size
    with pytest.raises(DataFormatError, match="decimal='x' is not allowed"):
        read(p, decimal="x")


def test_column_options_are_refused_for_array_formats(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", _table())
    with pytest.raises(DataFormatError, match="id_column apply only to tables"):
        read(tmp_path / "x.npy", id_column="sample")


def test_xlsx_reads_like_csv(tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    X = _table()
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["id", "label", *AXIS.tolist()])
    for i, x in enumerate(X):
        sheet.append([f"S{i}", "ab"[i % 2], *x.tolist()])
    book.create_sheet("notes")
    book.save(tmp_path / "t.xlsx")
    with pytest.warns(UserWarning, match="other sheets are ignored: 'notes'"):
        s = read(tmp_path / "t.xlsx", id_column="id")
    np.testing.assert_array_equal(s.X, X.astype(np.float32))
    np.testing.assert_array_equal(s.axis, AXIS)
    assert s.ids[-1] == "S5" and s.class_names == ("a", "b")


def test_xlsx_without_openpyxl_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    (tmp_path / "t.xlsx").write_bytes(b"PK\x03\x04 not really")
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # import openpyxl now raises ImportError
    with pytest.raises(DataFormatError, match=r"needs the 'openpyxl' package: pip install openpyxl \(or scai\[io\]\)"):
        read(tmp_path / "t.xlsx")


def test_old_xls_and_broken_xlsx(tmp_path: Path) -> None:
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0 old")
    with pytest.raises(DataFormatError, match="save the sheet as .xlsx or CSV"):
        read(tmp_path / "old.xls")
    pytest.importorskip("openpyxl")
    (tmp_path / "bad.xlsx").write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match="not a readable .xlsx workbook"):
        read(tmp_path / "bad.xlsx")


def test_utf16_with_bom_is_read_and_without_bom_is_explained(tmp_path: Path) -> None:
    text = _european(tmp_path / "eu.csv", _table()).read_text()
    (tmp_path / "u16.csv").write_text(text, encoding="utf-16")
    assert read(tmp_path / "u16.csv", id_column=0).n_samples == 6
    (tmp_path / "u16le.csv").write_bytes(text.encode("utf-16-le"))
    with pytest.raises(DataFormatError, match="UTF-16LE text without a byte-order mark; convert it to UTF-8 \\(iconv -f UTF-16LE"):
        read(tmp_path / "u16le.csv")


def test_latin1_file_says_how_to_convert(tmp_path: Path) -> None:
    (tmp_path / "l1.csv").write_bytes("label,1,2,3\nµ,1,2,3\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match="not UTF-8 text .*iconv -f CP1252 -t UTF-8"):
        read(tmp_path / "l1.csv")


@pytest.mark.parametrize("name", ["data.npy", "data.npz", "data.csv", "data.h5"])
def test_git_lfs_pointer_is_named(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146\nsize 1234567\n")
    with pytest.raises(DataFormatError, match="git-lfs pointer file.*git lfs pull"):
        read(p)


def test_shuffled_numeric_header_is_a_header(tmp_path: Path) -> None:
    X = _table()
    perm = np.random.default_rng(3).permutation(AXIS.size)
    rows = [[f"{v:g}" for v in AXIS[perm]]] + [[str(v) for v in x[perm]] for x in X]
    p = _write_rows(tmp_path / "shuffled.csv", rows, ",")
    with pytest.warns(UserWarning, match="not monotonic; columns reordered"):
        s = read(p)
    assert s.n_samples == 6 and s.axis_unit == "unknown"
    np.testing.assert_allclose(s.axis, AXIS, rtol=1e-5)
    np.testing.assert_allclose(s.X, X, rtol=1e-6)


def test_headerless_rows_are_not_taken_for_a_header(tmp_path: Path) -> None:
    X = _table(8)
    p = _write_rows(tmp_path / "plain.csv", [[str(v) for v in x] for x in X], ",")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = read(p)
    assert s.n_samples == 8 and s.axis_unit == "index"


def test_transposed_table_with_sample_names_is_refused(tmp_path: Path) -> None:
    X = _table()
    rows = [["wavenumber"] + [f"s{i}" for i in range(6)]] + [[f"{a:g}"] + [str(v) for v in X[:, j]] for j, a in enumerate(AXIS)]
    with pytest.raises(DataFormatError, match="this looks transposed: column 1 \\('wavenumber'\\) runs 400"):
        read(_write_rows(tmp_path / "t.csv", rows, ","))


def test_transposed_numeric_table_is_warned_about(tmp_path: Path) -> None:
    X = _table()
    rows = [[f"{a:g}"] + [str(v) for v in X[:, j]] for j, a in enumerate(AXIS)]
    with pytest.warns(UserWarning, match="this looks transposed"):
        read(_write_rows(tmp_path / "t.csv", rows, ","))


def test_hidden_and_foreign_files_in_jcamp_folders_are_named(tmp_path: Path) -> None:
    pytest.importorskip("jcamp")
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        for k in range(2):
            (tmp_path / cls / f"{k}.jdx").write_text(
                "##TITLE=x\n##JCAMP-DX=4.24\n##DATA TYPE=INFRARED SPECTRUM\n##XUNITS=1/CM\n##YUNITS=ABSORBANCE\n"
                "##NPOINTS=3\n##XYPOINTS=(XY..XY)\n400, 1\n500, 2\n600, 3\n##END=\n"
            )
    (tmp_path / "a" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / "b" / "._0.jdx").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / "b" / "notes.txt").write_text("operator: me")
    with pytest.warns(UserWarning, match=r"skipped 3 file\(s\) that are hidden or not JCAMP-DX .*a/.DS_Store.*b/._0.jdx.*b/notes.txt"):
        s = read(tmp_path)
    assert s.n_samples == 4 and s.class_names == ("a", "b")


# --- property tests -----------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    X=st.integers(1, 6).flatmap(lambda n: st.integers(3, 9).flatmap(
        lambda w: st.lists(st.lists(finite, min_size=w, max_size=w), min_size=n, max_size=n))),
    delimiter=st.sampled_from([",", ";", "\t"]),
    comma=st.booleans(),
)
def test_numeric_tables_read_back_equal(tmp_path: Path, X: list[list[float]], delimiter: str, comma: bool) -> None:
    """A labelled table with an axis header reads back the numbers written, whatever the delimiter
    (and with decimal commas when the delimiter is not a comma)."""
    values = np.asarray(X, dtype=np.float64)
    axis = 100.0 + 10.0 * np.arange(values.shape[1])
    fmt = (lambda v: repr(float(v)).replace(".", ",")) if comma and delimiter != "," else (lambda v: repr(float(v)))
    rows = [["label"] + [fmt(a) for a in axis]] + [["ab"[i % 2]] + [fmt(v) for v in row] for i, row in enumerate(values)]
    p = _write_rows(tmp_path / "t.csv", rows, delimiter)
    s = read(p)
    np.testing.assert_array_equal(s.X, values.astype(np.float32))
    np.testing.assert_array_equal(s.axis, axis)
    assert s.n_samples == values.shape[0]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.text(alphabet=string.printable + "µ°é;,\t\x00\ufeff", max_size=300),
        st.lists(st.lists(st.sampled_from(["1", "2,5", "x", "", "nan", "-", "1e400", "label", "3.5", '"', ";"]),
                          min_size=1, max_size=6), min_size=1, max_size=6).map(
            lambda rows: "\n".join(",".join(r) for r in rows)),
    ),
    suffix=st.sampled_from([".csv", ".tsv", ".txt", ".npy", ".npz", ".xlsx"]),
)
def test_garbage_raises_only_scai_errors(tmp_path: Path, data: bytes | str, suffix: str) -> None:
    p = tmp_path / f"garbage{suffix}"
    if isinstance(data, str):
        p.write_text(data, encoding="utf-8")
    else:
        p.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            read(p)
        except ScaiError:
            pass
