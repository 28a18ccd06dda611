"""Readers on real files (small committed slices) and on every supported format."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from scai.data import Spectra, iter_chunks, read

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared datasets folder {SHARED} is absent")


def test_milk_csv_slice() -> None:
    s = read(DATA / "milk_adulteration_30.csv")
    assert s.X.shape == (30, 1738) and s.X.dtype == np.float32
    assert s.axis.dtype == np.float64 and s.axis[0] == pytest.approx(49.87098)
    assert np.all(np.diff(s.axis) > 0)
    assert s.class_names == tuple(sorted(set(s.class_names), key=int))
    assert s.y.dtype == np.int64 and s.n_classes >= 5
    first = (DATA / "milk_adulteration_30.csv").read_text().splitlines()[1].split(",")
    assert s.labels[0] == first[0]
    np.testing.assert_allclose(s.X[0, :3], np.array(first[1:4], dtype=float), rtol=1e-6)


def test_liquor_csv_slice_with_bom_and_crlf() -> None:
    raw = (DATA / "liquor_vintage_30.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfLabel,")
    s = read(DATA / "liquor_vintage_30.csv")
    assert s.X.shape == (30, 2089)
    assert s.class_names == ("0", "1")
    assert s.axis[0] == 251 and s.axis[-1] == 2339


def test_numeric_class_names_sort_numerically(tmp_path: Path) -> None:
    p = tmp_path / "n.csv"
    p.write_text("label,1,2,3\n10,1,2,3\n2,1,2,3\n2,3,4,5\n10,0,0,1\n")
    s = read(p)
    assert s.class_names == ("2", "10")
    assert s.y.tolist() == [1, 0, 0, 1]


def test_string_labels_label_by_name_and_index(tmp_path: Path) -> None:
    p = tmp_path / "s.tsv"
    p.write_text("id\tbrand\t400\t500\n1\tb\t1\t2\n2\ta\t3\t4\n")
    s = read(p, label_column="Brand", ignore_columns=["id"])
    assert s.class_names == ("a", "b") and s.y.tolist() == [1, 0]
    assert s.axis.tolist() == [400, 500]
    s2 = read(p, label_column=1, ignore_columns=[0])
    np.testing.assert_array_equal(s.X, s2.X)


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_delimiter_sniffed(tmp_path: Path, sep: str) -> None:
    p = tmp_path / "d.csv"
    p.write_text(sep.join(["class", "1.5", "2.5"]) + "\n" + sep.join(["x", "1", "2"]) + "\n")
    s = read(p)
    assert s.X.tolist() == [[1.0, 2.0]] and s.class_names == ("x",)


def test_unlabelled_when_all_columns_numeric(tmp_path: Path) -> None:
    p = tmp_path / "u.csv"
    p.write_text("100,200,300\n1,2,3\n4,5,6\n")
    s = read(p)
    assert s.y is None and s.class_names == () and s.axis.tolist() == [100, 200, 300]


def test_non_numeric_headers_use_index_axis(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("label,a,b\nx,1,2\ny,3,4\n")
    with pytest.warns(UserWarning, match="not all numeric"):
        s = read(p)
    assert s.axis.tolist() == [0, 1] and s.axis_unit == "index"


def test_group_column(tmp_path: Path) -> None:
    p = tmp_path / "g.csv"
    p.write_text("label,sample,1,2\na,s1,1,2\na,s1,1,3\nb,s2,4,5\n")
    s = read(p, group_column="sample")
    assert s.groups.tolist() == ["s1", "s1", "s2"] and s.n_points == 2


def test_unsorted_axis_is_sorted_with_warning(tmp_path: Path) -> None:
    p = tmp_path / "r.csv"
    p.write_text("label,300,100,200\na,3,1,2\nb,6,4,5\n")
    with pytest.warns(UserWarning, match="reordered"):
        s = read(p)
    assert s.axis.tolist() == [100, 200, 300]
    assert s.X.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_nan_interpolated_with_warning(tmp_path: Path) -> None:
    p = tmp_path / "nan.csv"
    p.write_text("label,1,2,3,4\na,1,nan,3,4\nb,1,2,3,inf\n")
    with pytest.warns(UserWarning, match="interpolated 2 non-finite"):
        s = read(p, nan_policy="interpolate")
    assert s.X[0].tolist() == [1, 2, 3, 4]
    assert s.X[1, 3] == 3  # edge: nearest finite value


def test_ucr_tsv_detected(tmp_path: Path) -> None:
    p = tmp_path / "Meat_TRAIN.tsv"
    p.write_text("1\t0.1\t0.2\t0.3\n2\t0.4\t0.5\t0.1\n1\t0.2\t0.1\t0.9\n")
    s = read(p)
    assert s.class_names == ("1", "2") and s.y.tolist() == [0, 1, 0]
    assert s.axis_unit == "index" and s.X.shape == (3, 3)


def test_ucr_txt_whitespace_float_labels(tmp_path: Path) -> None:
    p = tmp_path / "old.txt"
    p.write_text("  1.0000000e+00  5.0  6.0  1.0\n  2.0000000e+00  7.0  2.0  8.0\n")
    s = read(p, format="ucr")
    assert s.class_names == ("1", "2") and s.X.tolist() == [[5, 6, 1], [7, 2, 8]]


def test_npz_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "a.npz"
    X = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.savez(p, X=X, y=np.array([0, 1, 0, 1, 0, 1]), axis=np.array([1.0, 2, 3, 4]),
             class_names=np.array(["u", "v"]), train_idx=np.arange(4), test_idx=np.arange(4, 6))
    s = read(p)
    np.testing.assert_array_equal(s.X, X)
    assert s.class_names == ("u", "v") and s.train_idx.tolist() == [0, 1, 2, 3]


def test_npz_string_y(tmp_path: Path) -> None:
    p = tmp_path / "b.npz"
    np.savez(p, X=np.ones((3, 2)), y=np.array(["b", "a", "b"]))
    s = read(p)
    assert s.class_names == ("a", "b") and s.y.tolist() == [1, 0, 1]


def test_npy_and_chunks(tmp_path: Path) -> None:
    p = tmp_path / "x.npy"
    X = np.arange(50, dtype=np.float32).reshape(10, 5)
    np.save(p, X)
    s = read(p)
    assert s.y is None and s.X.shape == (10, 5)
    parts = list(iter_chunks(p, 4))
    assert [c.n_samples for c in parts] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([c.X for c in parts]), X)


def test_hdf5(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    p = tmp_path / "x.h5"
    X = np.random.default_rng(1).normal(size=(7, 3))
    with h5py.File(p, "w") as f:
        f["X"] = X
        f["y"] = np.array([0, 1, 2, 0, 1, 2, 0])
        f["axis"] = np.array([10.0, 20.0, 30.0])
        f["class_names"] = np.array([b"a", b"b", b"c"])
    s = read(p)
    np.testing.assert_allclose(s.X, X.astype(np.float32))
    assert s.class_names == ("a", "b", "c") and s.axis.tolist() == [10, 20, 30]
    parts = list(iter_chunks(p, 3, class_names=["c", "b", "a"]))
    assert [c.n_samples for c in parts] == [3, 3, 1]
    assert np.concatenate([c.labels for c in parts]).tolist() == s.labels.tolist()
    assert parts[0].y.tolist() == [2, 1, 0]


def test_csv_chunks_match_read() -> None:
    full = read(DATA / "milk_adulteration_30.csv")
    parts = list(iter_chunks(DATA / "milk_adulteration_30.csv", 7, class_names=full.class_names))
    assert [c.n_samples for c in parts] == [7, 7, 7, 7, 2]
    np.testing.assert_array_equal(np.concatenate([c.X for c in parts]), full.X)
    np.testing.assert_array_equal(np.concatenate([c.y for c in parts]), full.y)


def _jdx(path: Path, x0: float, ys: list[float]) -> None:
    path.write_text(
        "##TITLE=t\n##JCAMP-DX=4.24\n##DATA TYPE=RAMAN SPECTRUM\n##XUNITS=1/CM\n##YUNITS=ARBITRARY UNITS\n"
        f"##FIRSTX={x0}\n##LASTX={x0 + len(ys) - 1}\n##NPOINTS={len(ys)}\n##XFACTOR=1\n##YFACTOR=1\n"
        "##XYDATA=(X++(Y..Y))\n" + f"{x0} " + " ".join(str(v) for v in ys) + "\n##END=\n"
    )


def test_jcamp_single_and_folder(tmp_path: Path) -> None:
    pytest.importorskip("jcamp")
    _jdx(tmp_path / "one.jdx", 100, [1, 2, 3, 4])
    s = read(tmp_path / "one.jdx")
    assert s.X.tolist() == [[1, 2, 3, 4]] and s.axis.tolist() == [100, 101, 102, 103] and s.axis_unit == "cm-1"
    root = tmp_path / "lib"
    for cls, k in (("beer", 1), ("beer", 2), ("wine", 3)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        _jdx(root / cls / f"s{k}.dx", 100, [k, k, k])
    s = read(root)
    assert s.class_names == ("beer", "wine") and s.y.tolist() == [0, 0, 1] and s.X[2].tolist() == [3, 3, 3]


_TS = """@problemName test
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength 3
@classLabel true a b
@data
1,2,3:a
4,5,6:b
"""


def test_ts_via_aeon_or_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "a.ts"
    p.write_text(_TS)
    try:
        import aeon.datasets  # noqa: F401
    except ImportError:
        pass
    else:
        s = read(p)
        assert s.X.tolist() == [[1, 2, 3], [4, 5, 6]] and s.class_names == ("a", "b")
    import sys

    monkeypatch.setitem(sys.modules, "aeon.datasets", None)  # simulate: neither package installed
    monkeypatch.setitem(sys.modules, "sktime.datasets", None)
    with pytest.raises(ValueError, match=r"a\.ts: reading \.ts files needs aeon \(pip install aeon\)"):
        read(p)


@needs_shared
def test_full_shared_csvs_match_npz() -> None:
    for name in ("milk_adulteration", "liquor_vintage"):
        s = read(SHARED / f"{name}.csv")
        ref = np.load(SHARED / f"{name}.npz", allow_pickle=False)
        np.testing.assert_array_equal(s.X, ref["X"])
        np.testing.assert_allclose(s.axis, ref["axis"])
        np.testing.assert_array_equal(s.y, ref["y"])


@needs_shared
def test_shared_npz_with_official_split() -> None:
    s = read(SHARED / "ucr_meat.npz")
    assert isinstance(s, Spectra) and s.train_idx.size == 60 and s.test_idx.size == 60


def test_no_warning_on_clean_file() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read(DATA / "milk_adulteration_30.csv")


def test_headerless_text_labels(tmp_path: Path) -> None:
    p = tmp_path / "nohead.csv"
    p.write_text("x,1,2\ny,3,4\n")
    s = read(p, label_column=0, header=False)
    assert s.class_names == ("x", "y") and s.X.tolist() == [[1, 2], [3, 4]] and s.axis_unit == "index"
