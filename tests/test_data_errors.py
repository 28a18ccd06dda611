"""Every bad-input path gives a one-line error naming the file, row (and line) and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scai.data import Spectra, read, validate_training
from scai.errors import AxisError, DataFormatError, DataValueError, LabelError


def _write(tmp_path: Path, text: str, name: str = "bad.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_nan_refused_names_file_row_line_column(tmp_path: Path) -> None:
    p = _write(tmp_path, "label,100,200,300\na,1,2,3\nb,4,nan,6\n")
    with pytest.raises(DataValueError) as e:
        read(p)
    msg = _one_line(e)
    assert str(p) in msg and "row 2 (line 3)" in msg and "column 3 ('200')" in msg and "interpolate" in msg


def test_inf_refused(tmp_path: Path) -> None:
    p = _write(tmp_path, "label,100,200\na,1,-inf\n")
    with pytest.raises(DataValueError, match=r"row 1 \(line 2\), column 3 \('200'\): non-finite value -inf"):
        read(p)


def test_nan_error_after_axis_sort_names_file_column(tmp_path: Path) -> None:
    p = _write(tmp_path, "label,300,100,200\na,nan,1,2\n")
    with pytest.warns(UserWarning), pytest.raises(DataValueError, match=r"column 2 \('300'\)"):
        read(p)


def test_ragged_row(tmp_path: Path) -> None:
    p = _write(tmp_path, "label,1,2,3\na,1,2,3\nb,1,2,3,4\nc,1,2,3\n")
    with pytest.raises(DataFormatError) as e:
        read(p)
    msg = _one_line(e)
    assert str(p) in msg and "row 2 (line 3)" in msg and "has 5 columns, expected 4" in msg


def test_truncated_last_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "label,1,2,3\na,1,2,3\nb,1,2")
    with pytest.raises(DataFormatError, match=r"row 2 \(line 3\).*truncated"):
        read(p)


def test_non_numeric_cell_quoted(tmp_path: Path) -> None:
    p = _write(tmp_path, "label,1,2,3\na,1,2,3\nb,1,x7,3\n")
    with pytest.raises(DataFormatError) as e:
        read(p)
    msg = _one_line(e)
    assert "row 2 (line 3), column 3 ('2'): non-numeric cell 'x7'" in msg and str(p) in msg


def test_empty_cell(tmp_path: Path) -> None:
    p = _write(tmp_path, "label,1,2\na,,2\n")
    with pytest.raises(DataFormatError, match=r"row 1 \(line 2\), column 2 \('1'\): empty cell"):
        read(p)


def test_empty_label(tmp_path: Path) -> None:
    p = _write(tmp_path, "label,1,2\n,1,2\n")
    with pytest.raises(LabelError, match=r"row 1 \(line 2\), column 1 \('label'\): empty label"):
        read(p)


@pytest.mark.parametrize("text", ["", "\n\n  \n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    p = _write(tmp_path, text)
    with pytest.raises(DataFormatError, match=f"{p}: empty file"):
        read(p)


def test_header_only(tmp_path: Path) -> None:
    p = _write(tmp_path, "label,1,2\n")
    with pytest.raises(DataFormatError, match="no data rows"):
        read(p)


def test_missing_label_column_lists_columns(tmp_path: Path) -> None:
    p = _write(tmp_path, "brand,1,2\na,1,2\n")
    with pytest.raises(LabelError) as e:
        read(p, label_column="kind")
    msg = _one_line(e)
    assert "no column named 'kind'" in msg and "'brand'" in msg and str(p) in msg


def test_unknown_label_column_needs_flag(tmp_path: Path) -> None:
    p = _write(tmp_path, "brand,1,2\na,1,2\n")
    with pytest.raises(LabelError, match="--label-column.*'brand'"):
        read(p)


def test_label_index_out_of_range(tmp_path: Path) -> None:
    p = _write(tmp_path, "label,1,2\na,1,2\n")
    with pytest.raises(LabelError, match="label_column=7 is out of range; the file has 3 columns"):
        read(p, label_column=7)


def test_duplicate_axis_values(tmp_path: Path) -> None:
    p = _write(tmp_path, "label,100,200,100\na,1,2,3\n")
    with pytest.raises(AxisError) as e:
        read(p)
    msg = _one_line(e)
    assert "duplicate axis value 100" in msg and "column 2 ('100')" in msg and "column 4 ('100')" in msg


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="unknown file type '.xyz'"):
        read(tmp_path / "a.xyz")
    with pytest.raises(DataFormatError, match="no such file"):
        read(tmp_path / "missing.csv")
    with pytest.raises(DataFormatError, match="format='bad' is not one of"):
        read(tmp_path / "a.csv", format="bad")


def test_bad_nan_policy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nan_policy='drop' is not one of"):
        read(tmp_path / "a.csv", nan_policy="drop")


def test_interpolate_refuses_row_without_finite_values(tmp_path: Path) -> None:
    p = _write(tmp_path, "label,1,2,3\na,nan,nan,1\n")
    with pytest.raises(DataValueError, match=r"row 1 \(line 2\): only 1 finite value"):
        read(p, nan_policy="interpolate")


def test_npz_errors(tmp_path: Path) -> None:
    p = tmp_path / "k.npz"
    np.savez(p, data=np.ones((2, 2)))
    with pytest.raises(DataFormatError, match=r"no array 'X'.*keys: data"):
        read(p)
    p2 = tmp_path / "nan.npz"
    np.savez(p2, X=np.array([[1.0, np.nan]]))
    with pytest.raises(DataValueError, match=r"nan.npz: row 1, column 1 \(axis value 1\): non-finite"):
        read(p2)
    p3 = tmp_path / "obj.npz"
    np.savez(p3, X=np.array([[1, "a"], [None, 2]], dtype=object))
    with pytest.raises(DataFormatError, match="obj.npz"):
        read(p3)
    p4 = tmp_path / "trunc.npz"
    p4.write_bytes(p2.read_bytes()[:40])
    with pytest.raises(DataFormatError, match="trunc.npz: not a readable .npz"):
        read(p4)


def test_hdf5_missing_dataset(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    p = tmp_path / "x.h5"
    with h5py.File(p, "w") as f:
        f["data"] = np.ones((2, 2))
    with pytest.raises(DataFormatError, match=r"x.h5: no dataset 'X'.*datasets: data"):
        read(p)


def _jdx(path: Path, x0: float, ys: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "##TITLE=t\n##JCAMP-DX=4.24\n##XUNITS=1/CM\n##YUNITS=ARBITRARY UNITS\n"
        f"##FIRSTX={x0}\n##LASTX={x0 + len(ys) - 1}\n##NPOINTS={len(ys)}\n##XFACTOR=1\n##YFACTOR=1\n"
        "##XYDATA=(X++(Y..Y))\n" + f"{x0} " + " ".join(str(v) for v in ys) + "\n##END=\n"
    )


def test_jcamp_folder_with_different_axes(tmp_path: Path) -> None:
    pytest.importorskip("jcamp")
    _jdx(tmp_path / "a" / "1.jdx", 100, [1, 2, 3])
    _jdx(tmp_path / "b" / "2.jdx", 100, [1, 2, 3, 4])
    with pytest.raises(AxisError) as e:
        read(tmp_path)
    msg = _one_line(e)
    assert "b/2.jdx has 4 points on 100..103" in msg and "a/1.jdx has 3 on 100..102" in msg
    _jdx(tmp_path / "loose.jdx", 100, [1, 2, 3])
    with pytest.raises(DataFormatError, match="loose.jdx lies outside the class folders"):
        read(tmp_path)


def test_jcamp_garbage(tmp_path: Path) -> None:
    pytest.importorskip("jcamp")
    p = tmp_path / "g.jdx"
    p.write_text("hello\n")
    with pytest.raises(DataFormatError, match="g.jdx"):
        read(p)


def test_validate_training() -> None:
    X = np.zeros((5, 3))
    s = Spectra(X, np.arange(3.0), np.array([0, 0, 1, 1, 1]), ("a", "b"))
    validate_training(s)
    with pytest.raises(LabelError, match="class 'b' has 1 sample"):
        validate_training(Spectra(X, np.arange(3.0), np.array([0, 0, 0, 0, 1]), ("a", "b")))
    with pytest.raises(LabelError, match="at least 2 classes, found 1"):
        validate_training(Spectra(X, np.arange(3.0), np.zeros(5, dtype=int), ("a",)))
    with pytest.raises(LabelError, match="no labels"):
        validate_training(Spectra(X, np.arange(3.0)))


def test_chunked_errors_keep_global_row_numbers(tmp_path: Path) -> None:
    from scai.data import iter_chunks

    p = _write(tmp_path, "label,1,2\na,1,2\nb,3,4\na,5,6\nb,7,oops\n")
    chunks = iter_chunks(p, 2)
    assert next(chunks).n_samples == 2
    with pytest.raises(DataFormatError, match=r"row 4 \(line 5\), column 3 \('2'\): non-numeric cell 'oops'"):
        next(chunks)
    with pytest.raises(LabelError, match=r"row 2 \(line 3\): label 'b' is not a known class \('a'\)"):
        list(iter_chunks(_write(tmp_path, "label,1,2\na,1,2\nb,3,4\n", "ok.csv"), 10, class_names=["a"]))
