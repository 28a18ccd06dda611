"""Instrument vendors' formats through the ``io`` extra's readers, on real files (tests/data/vendor).

Expected values are independent of the reader under test: the reader package's own tests, the
instrument software's text export of the same measurement, or a second reader (renishawWiRE
0.1.16, brukeropusreader 1.3.4, SpectroChemPy 1.1.3's ``read_omnic`` and ``read_spc``) run once at
development time, or OpenSpecy's tests of its own R readers, as each test says. Most files hold
decreasing axes, which scai sorts (with a warning): there, file index ``i`` is column ``-1 - i``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from scai.data import FILE_ID_FORMATS, format_of, iter_chunks, read
from scai.errors import AxisError, DataFormatError

VENDOR = Path(__file__).parent / "data" / "vendor"


def _read(path: Path):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*axis is decreasing.*")
        return read(path)


def _need(module: str) -> None:
    pytest.importorskip(module, reason=f"optional reader '{module}' is not installed (pip install scai[io])")


def _export(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The instrument software's two-column text export of the same measurement (file order)."""
    table = np.loadtxt(VENDOR / name)  # a "#Wave  #Intensity" header, where there is one, is a comment
    return table[:, 0], table[:, 1]


# --- Renishaw WDF (renishaw-wdf) ---------------------------------------------------------------


def test_wdf_map_is_one_spectrum_per_pixel_with_coordinates_as_ids() -> None:
    _need("wdf")
    s = _read(VENDOR / "Si-map.wdf")
    # renishaw-wdf's test_wdf.py: 88 spectra of 575 points, Raman shift; map area 8 x 11 pixels
    # from x=-7.090 um in steps of 2.0
    assert s.X.shape == (88, 575) and s.axis_unit == "cm-1"
    file_order = s.X[:, ::-1]
    assert [int(v) for v in file_order[0, :4]] == [1595, 1565, 1590, 1580]
    assert [int(v) for v in file_order[-1, :4]] == [1612, 1615, 1514, 1553]
    assert [int(file_order[i, 0]) for i in range(4)] == [1595, 1583, 1640, 2120]
    # renishawWiRE 0.1.16, a second reader: float values and pixel positions
    np.testing.assert_allclose(file_order[0, :4], [1595.6577, 1565.4559, 1590.3949, 1580.1002], rtol=1e-6)
    np.testing.assert_allclose(file_order[37, 300], 488.25815, rtol=1e-6)
    assert s.ids[0] == "x=-7.09,y=-8.93" and s.ids[1] == "x=-5.09,y=-8.93" and s.ids[-1] == "x=6.91,y=11.07"
    grid = {f"x={-7.09 + 2 * i:.6g},y={-8.93 + 2 * j:.6g}" for i in range(8) for j in range(11)}
    assert set(s.ids) == grid and len(set(s.ids)) == 88


def test_wdf_single_spectrum_matches_the_wire_text_export() -> None:
    _need("wdf")
    s = _read(VENDOR / "nCal_Qontor785_z005H12_100_1x3s.wdf")
    x, y = _export("nCal_Qontor785_z005H12_100_1x3s.txt")
    assert s.X.shape == (1, 1021) == (1, x.size) and s.axis_unit == "cm-1"
    assert s.ids.tolist() == ["nCal_Qontor785_z005H12_100_1x3s"]
    # the export prints 6 decimals
    np.testing.assert_allclose(s.axis, x[::-1], rtol=0, atol=1e-6)
    np.testing.assert_allclose(s.X[0], y[::-1], rtol=0, atol=1e-5)


def test_wdf_stopped_map_reads_the_collected_spectra_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    _need("wdf")
    import wdf.wdf as wdf_module

    full = _read(VENDOR / "Si-map.wdf")
    original = wdf_module.WdfHeader.fromstream

    def stopped_after_50(stream):  # a map stopped early: the header counts 50 of 88 collected
        hdr = original(stream)
        hdr.ncollected = 50
        return hdr

    monkeypatch.setattr(wdf_module.WdfHeader, "fromstream", staticmethod(stopped_after_50))
    with pytest.warns(UserWarning, match=r"Si-map.wdf: the measurement was stopped early: 50 of 88 spectra"):
        s = _read(VENDOR / "Si-map.wdf")
    np.testing.assert_array_equal(s.X, full.X[:50])
    assert s.ids.tolist() == full.ids[:50].tolist()


def test_wdf_chunks_are_the_whole_map_sliced() -> None:
    _need("wdf")
    full = _read(VENDOR / "Si-map.wdf")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*axis is decreasing.*")
        parts = list(iter_chunks(VENDOR / "Si-map.wdf", 40))
    assert [p.n_samples for p in parts] == [40, 40, 8]
    np.testing.assert_array_equal(np.concatenate([p.X for p in parts]), full.X)
    assert [i for p in parts for i in p.ids] == full.ids.tolist()


# --- Galactic SPC (spc-io) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "n"), [("nCal_Qontor785_z005H12_100_1x3s", 1021), ("PST_Reflex532_Z050_010_10000msx2", 2578)]
)
def test_spc_matches_the_text_export_at_its_ends(name: str, n: int) -> None:
    _need("spc_io")
    s = _read(VENDOR / f"{name}.spc")
    x, y = _export(f"{name}.txt")
    # SPC stores an evenly spaced axis (first, last, count); the text export has the instrument's
    # uneven axis, so the ends and the point count are what both must share
    assert s.X.shape == (1, n) == (1, x.size) and s.axis_unit == "cm-1" and s.ids.tolist() == [name]
    # (the inVia export prints 6 significant digits)
    np.testing.assert_allclose([s.axis[-1], s.axis[0]], [x[0], x[-1]], rtol=1e-5)
    np.testing.assert_allclose([s.X[0, -1], s.X[0, 0]], [y[0], y[-1]], rtol=1e-5)


def test_spc_and_wdf_of_one_measurement_agree() -> None:
    _need("spc_io")
    _need("wdf")
    spc = _read(VENDOR / "nCal_Qontor785_z005H12_100_1x3s.spc")
    wdf = _read(VENDOR / "nCal_Qontor785_z005H12_100_1x3s.wdf")
    assert spc.X.shape == wdf.X.shape
    np.testing.assert_allclose(np.interp(spc.axis, wdf.axis, wdf.X[0]), spc.X[0], rtol=0.05)


def test_spc_with_subfiles_is_one_row_per_subfile_with_z_as_ids() -> None:
    _need("spc_io")
    s = _read(VENDOR / "specio_zscan.spc")
    # specio's test_spc.py: 31 spectra of 1024 points; SpectroChemPy 1.1.3's read_spc, a second
    # reader with its own SPC parser: identical values, z from -95.01 in steps of about 6.34
    assert s.X.shape == (31, 1024) and s.axis_unit == "nm"
    np.testing.assert_allclose([s.axis[0], s.axis[-1]], [541.15039, 731.58966], rtol=1e-7)
    assert s.ids[[0, 1, 2, -1]].tolist() == ["z=-95.0085", "z=-88.6653", "z=-82.3287", "z=94.9973"]
    np.testing.assert_array_equal(s.X[0, [0, 1, 2, -3, -2, -1]], [781, 797, 796, 13685, 13843, 13853])
    np.testing.assert_array_equal(s.X[-1, :3], [681, 681, 695])
    assert s.X[15, 500] == 2860


def test_spc_subfiles_on_different_x_are_refused() -> None:
    _need("spc_io")
    # specio's test_spc.py: the subfiles have 8 and 6 points
    with pytest.raises(AxisError, match=r"specio_xyxy.spc: spectrum 'z=1.09667' has 6 points on 27.95..43.9, but "
                                        r"'z=1.08667' has 8 on 25.85..43.9; the spectra of one file must share one axis"):
        read(VENDOR / "specio_xyxy.spc")


# --- Thermo OMNIC (spectrochempy-omnic) ---------------------------------------------------------


def test_omnic_group_reads_every_spectrum_with_its_title() -> None:
    _need("spectrochempy_omnic")
    s = _read(VENDOR / "wodger.spg")
    assert s.X.shape == (2, 5549) and s.axis_unit == "cm-1"
    assert s.ids.tolist() == ["vz0470.spa", "vz0468.spa"]
    np.testing.assert_allclose([s.axis[0], s.axis[-1]], [649.9036, 5999.5557], atol=1e-3)
    # SpectroChemPy 1.1.3 read_omnic(sortbydate=False), a second reader: file indices 0, 1000, 2774, 5548
    expected = {0: (1.9831526279449463, 2.0048975944519043), 1000: (1.9410005807876587, 1.9933665990829468),
                2774: (2.4519758224487305, 2.977356195449829), 5548: (1.7043344974517822, 1.8313528299331665)}
    for i, (a, b) in expected.items():
        np.testing.assert_allclose(s.X[:, -1 - i], [a, b], rtol=1e-6)


def test_omnic_single_spa_matches_open_specy() -> None:
    _need("spectrochempy_omnic")
    s = _read(VENDOR / "openspecy_polyethylene.spa")
    # OpenSpecy's tests (its own R reader, read_spa): 1738 points on 649.9..3999.8, values 61.51..102.88
    assert s.X.shape == (1, 1738) and s.axis_unit == "cm-1" and s.ids.tolist() == ["Parafilm Test"]
    assert [round(float(s.axis.min()), 1), round(float(s.axis.max()), 1)] == [649.9, 3999.8]
    assert [round(float(s.X.min()), 2), round(float(s.X.max()), 2)] == [61.51, 102.88]


def test_spc_raman_matches_open_specy() -> None:
    _need("spc_io")
    s = _read(VENDOR / "openspecy_atacamite.spc")
    # OpenSpecy's tests (its own R reader, read_spc): 559 points on 117.8..1050.0, values 0.08..585.51
    assert s.X.shape == (1, 559) and s.axis_unit == "cm-1"
    assert [round(float(s.axis.min()), 1), round(float(s.axis.max()), 1)] == [117.8, 1050.0]
    assert [round(float(s.X.min()), 2), round(float(s.X.max()), 2)] == [0.08, 585.51]


# --- Bruker OPUS (brukeropus) -------------------------------------------------------------------


def test_opus_raman_spectrum() -> None:
    _need("brukeropus")
    s = _read(VENDOR / "test_opus.0")
    # brukeropusreader 1.3.4, a second reader (ramanchada2's tests also expect 4096 points)
    assert s.X.shape == (1, 4096) and s.axis_unit == "cm-1"
    np.testing.assert_allclose([s.axis[-1], s.axis[0]], [4000.6609666878658, 51.892564645935636], rtol=1e-9)
    np.testing.assert_allclose(s.X[0, [-1, -2, 0]], [0.0023146735, 0.00197453, 0.02616027370095253], rtol=1e-5)
    assert s.ids[0].startswith("0_5J_RamII_FT-Raman1064nm")


def test_opus_reads_the_result_spectrum_not_the_raw_blocks() -> None:
    _need("brukeropus")
    s = _read(VENDOR / "brukeropus_file.0")
    # the file holds absorbance, single channels, interferograms and a phase; absorbance is read.
    # brukeropusreader 1.3.4's AB block: 9997.72..499.40 cm-1, first values 0.00876892, -0.01742323
    # (it keeps one padding point more: 4928)
    assert s.X.shape == (1, 4927) and s.axis_unit == "cm-1" and s.ids.tolist() == ["File Test"]
    np.testing.assert_allclose([s.axis[-1], s.axis[0]], [9997.720922928467, 499.4039959572754], rtol=1e-9)
    np.testing.assert_allclose(s.X[0, [-1, -2]], [0.00876892, -0.01742323], rtol=1e-5)


def test_opus_absorbance_is_the_files_own_sample_and_reference_channels() -> None:
    """The multi-block file checked against itself: the absorbance scai reads is -log10(sample /
    reference) of the file's two single-channel blocks (read straight through brukeropus; the
    reference block has 4 points more at the high end, 2 at the low end), on the same axis, wherever both channels hold
    signal (the noisy 9800 cm-1 end, where OPUS clips absorbance at 6, is left out)."""
    _need("brukeropus")
    from brukeropus import read_opus

    s = _read(VENDOR / "brukeropus_file.0")
    blocks = read_opus(str(VENDOR / "brukeropus_file.0"))
    assert {"a", "sm", "rf", "igsm", "igrf", "phsm"} <= set(blocks.data_keys)
    sm, rf = blocks.sm, blocks.rf
    assert sm.y.shape == (4927,) and rf.y.shape == (4933,)
    np.testing.assert_allclose(s.axis, sm.x[::-1], rtol=1e-12)
    np.testing.assert_allclose(rf.x[4:-2], sm.x, rtol=0, atol=1e-6)
    ref = rf.y[4:-2]
    signal = (sm.y > 1e-3) & (ref > 1e-3)
    assert signal.sum() > 3000
    absorbance = -np.log10(sm.y[signal] / ref[signal])
    np.testing.assert_allclose(s.X[0, ::-1][signal], absorbance, rtol=0, atol=1e-6)
    assert np.ptp(absorbance) > 0.7  # a real spectrum, not a flat line


@pytest.mark.parametrize("suffix", [".0", ".1", ".0042"])
def test_opus_number_suffixes_dispatch_to_opus(tmp_path: Path, suffix: str) -> None:
    p = tmp_path / f"sample{suffix}"
    p.write_bytes(b"not an opus file, just bytes" * 4)
    with pytest.raises(DataFormatError, match=rf"sample\{suffix}.*(OPUS|brukeropus)"):
        read(p)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "module"),
    [("Si-map.wdf", "wdf"), ("nCal_Qontor785_z005H12_100_1x3s.spc", "spc_io"), ("wodger.spg", "spectrochempy_omnic"),
     ("openspecy_polyethylene.spa", "spectrochempy_omnic"), ("test_opus.0", "brukeropus"), ("brukeropus_file.0", "brukeropus")],
)
def test_truncated_files_fail_naming_the_file(tmp_path: Path, name: str, module: str) -> None:
    _need(module)
    data = (VENDOR / name).read_bytes()
    p = tmp_path / f"cut-{name}"
    # cut inside the header or the first spectrum (an OMNIC .spa keeps its spectrum in the first
    # tenth and its interferograms after it: cut there, the spectrum still reads whole)
    p.write_bytes(data[: len(data) // 50])
    with pytest.raises(DataFormatError, match=rf"cut-{name}"):
        read(p)


@pytest.mark.parametrize(
    ("name", "module", "package"),
    [("Si-map.wdf", "wdf", "renishaw-wdf"), ("x.spc", "spc_io", "spc-io"), ("wodger.spg", "spectrochempy_omnic",
     "spectrochempy-omnic"), ("test_opus.0", "brukeropus", "brukeropus")],
)
def test_missing_reader_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, module: str, package: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    p = tmp_path / name
    p.write_bytes(b"\0" * 64)
    with pytest.raises(DataFormatError, match=rf"{name}: reading .* needs the '{package}' package: pip install {package}"):
        read(p)


def test_perkinelmer_sp_is_refused_with_how_to_convert(tmp_path: Path) -> None:
    p = tmp_path / "film.sp"
    p.write_bytes(b"PEPE" + b"\0" * 60)  # stand-in: the format is refused before any parsing
    with pytest.raises(DataFormatError, match=r"film.sp: PerkinElmer \.sp files are not read.*CSV or JCAMP-DX"):
        read(p)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.spc", "spc"), ("a.WDF", "wdf"), ("a.spa", "omnic"), ("a.spg", "omnic"), ("a.0", "opus"), ("a.0012", "opus"),
     ("a.sp", "perkinelmer"), ("a.jdx", "jcamp"), ("a.csv", "csv")],
)
def test_format_of_tells_which_reader_and_whether_rows_carry_ids(name: str, fmt: str) -> None:
    assert format_of(name) == fmt
    assert (fmt in FILE_ID_FORMATS) == (fmt not in ("csv", "perkinelmer"))
