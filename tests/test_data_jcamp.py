"""JCAMP-DX files that the ``jcamp`` package alone fails on, read through ``scai.data._jcamp``.

Real files come from R. J. Lancashire's JCAMP-DX test suite as kept in the jcamp package's
repository (tests/data/vendor/README.md); where no shareable real file exists, the test builds a
minimal file to the JCAMP-DX 4.24 specification and says so. Expected values are decoded here
independently: AFFN lines by a plain number split, compressed lines only at their first value.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from scai.data import iter_chunks, read
from scai.data._jcamp import expand_dup
from scai.errors import AxisError, DataFormatError

JCAMP = Path(__file__).parent / "data" / "vendor" / "jcamp"
pytestmark = pytest.mark.filterwarnings("ignore:.*axis is decreasing.*:UserWarning")


@pytest.fixture(autouse=True)
def _jcamp_installed() -> None:
    pytest.importorskip("jcamp", reason="optional reader 'jcamp' is not installed (pip install scai[io])")


def _header(text: str, label: str) -> list[float]:
    return [float(v) for v in re.findall(rf"^##{label}=\s*([-+.\deE]+)", text, flags=re.MULTILINE)]


def _affn_blocks(text: str) -> list[list[float]]:
    """Y values of each ##XYDATA block of a plain-number (AFFN) file, in file order."""
    blocks: list[list[float]] = []
    inside = False
    for line in text.splitlines():
        if line.startswith("##"):
            inside = line.upper().startswith("##XYDATA")
            if inside:
                blocks.append([])
            continue
        line = line.split("$$", 1)[0]
        if inside and line.strip():
            blocks[-1].extend(float(v) for v in re.findall(r"[-+]?\d+\.?\d*", line)[1:])
    return blocks


def test_trailing_ctrl_z_after_end_is_ignored() -> None:
    path = JCAMP / "fixinc2.jdx"
    raw = path.read_bytes()
    assert raw.rstrip(b"\r\n").endswith(b"##END=\r\n\x1a")  # the real file: DOS Ctrl-Z after ##END=
    text = raw.decode("latin-1")
    s = read(path)
    (ys,) = _affn_blocks(text)
    (yfactor,) = _header(text, "YFACTOR")
    assert s.X.shape == (1, 3601) == (1, len(ys)) and s.axis_unit == "cm-1"
    assert s.axis[0] == 400.0 and s.axis[-1] == 4000.0
    np.testing.assert_allclose(s.X[0], np.array(ys) * yfactor, rtol=1e-6)
    assert s.X[0, 0] == pytest.approx(_header(text, "FIRSTY")[0], rel=1e-6)


def test_ctrl_z_inside_the_data_is_still_an_error(tmp_path: Path) -> None:
    # built to the JCAMP-DX spec: Ctrl-Z in a data line is corruption, not an end-of-file mark
    p = tmp_path / "bad.jdx"
    p.write_bytes(b"##TITLE=t\r\n##JCAMP-DX=4.24\r\n##XUNITS=1/CM\r\n##FIRSTX=1\r\n##LASTX=4\r\n##NPOINTS=4\r\n"
                  b"##XYDATA=(X++(Y..Y))\r\n1 10 11\x1a 12 13\r\n##END=\r\n")
    with pytest.raises(DataFormatError, match=r"bad.jdx: not a readable JCAMP-DX file"):
        read(p)


def test_sqz_dup_file_that_jcamp_raises_indexerror_on() -> None:
    path = JCAMP / "sqzdupd1.jdx"
    text = path.read_text()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the jcamp parser's own X checks must all pass
        warnings.filterwarnings("ignore", message=".*axis is decreasing.*")
        s = read(path)
    (n,) = _header(text, "NPOINTS")
    (first_x,) = _header(text, "FIRSTX")
    (delta_x,) = _header(text, "DELTAX")
    (yfactor,) = _header(text, "YFACTOR")
    assert s.X.shape == (1, int(n)) == (1, 18669) and s.axis_unit == "cm-1" and s.ids.tolist() == ["sqzdupd1.jdx"]
    y = s.X[0, ::-1].astype(np.float64)  # file order (the axis decreases from 5000 cm-1)
    # first line by hand: 5000.03 B1399 T B1410 B1416 ...: SQZ 'B' is +2, DUP 'T' repeats once more
    np.testing.assert_allclose(y[:4], np.array([21399, 21399, 21410, 21416]) * yfactor, rtol=1e-6)
    # every data line starts with its abscissa and an SQZ value: the value at that abscissa's index
    # must be it, which fails on any miscounted DUP before that line
    lines = text.split("##XYDATA=(X++(Y..Y))", 1)[1].split("##END=", 1)[0].split()
    checked = 0
    for line in lines:
        m = re.match(r"([\d.]+)([@A-Ia-i])(\d*)", line)
        assert m, line
        i = round((float(m.group(1)) - first_x) / delta_x)
        sign = 1 if m.group(2).isupper() or m.group(2) == "@" else -1
        first = sign * int(str("@ABCDEFGHI".index(m.group(2).upper()) if m.group(2) != "@" else 0) + m.group(3))
        assert y[i] == pytest.approx(first * yfactor, rel=1e-6), (line[:20], i)
        checked += 1
    assert checked == 1226


def test_compound_file_blocks_on_one_axis_are_all_read_with_titles_as_ids() -> None:
    path = JCAMP / "blckpac1.jdx"
    text = path.read_text()
    s = read(path)
    titles = [t.strip() for t in re.findall(r"^##TITLE=(.*)$", text, flags=re.MULTILINE)][1:]  # the first is the link block's
    assert s.X.shape == (5, 176) and s.axis_unit == "nm" and s.ids.tolist() == titles
    assert titles[0] == "Aquation of trans-[Co(en)2Cl2]+ (t1)"
    assert s.axis[0] == 350.0 and s.axis[-1] == 700.0
    factors = _header(text, "YFACTOR")
    for row, ys, f in zip(s.X, _affn_blocks(text), factors):
        np.testing.assert_allclose(row[::-1], np.array(ys) * f, rtol=1e-6)


def test_compound_file_blocks_on_different_axes_are_refused() -> None:
    with pytest.raises(AxisError) as e:
        read(JCAMP / "compound.jdx")
    msg = str(e.value)
    assert "compound.jdx: the compound file's blocks do not share one axis" in msg
    assert "'block 1': 1976 points on 450..4400 cm-1" in msg and "'block 3': 3951 points on 450..4400 cm-1" in msg


def test_compound_files_in_a_class_folder(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        shutil.copy(JCAMP / "blckpac1.jdx", tmp_path / cls / "run.jdx")
    s = read(tmp_path)
    assert s.X.shape == (10, 176) and s.class_names == ("a", "b") and s.y.tolist() == [0] * 5 + [1] * 5
    assert s.ids[0] == "a/run.jdx: Aquation of trans-[Co(en)2Cl2]+ (t1)" and s.ids[-1].startswith("b/run.jdx: ")
    np.testing.assert_array_equal(s.X[:5], s.X[5:])
    assert [c.n_samples for c in iter_chunks(tmp_path, 4)] == [4, 4, 2]


def test_compound_block_without_xy_data_is_named(tmp_path: Path) -> None:
    # built to the JCAMP-DX spec (LINK block holding a structure block and a spectrum block)
    p = tmp_path / "link.jdx"
    p.write_text(
        "##TITLE=link\n##JCAMP-DX=5.01\n##DATA TYPE=LINK\n##BLOCKS=2\n"
        "##TITLE=the structure\n##JCAMP-DX=5.01\n##BLOCK_ID=1\n##END=\n"
        "##TITLE=the spectrum\n##JCAMP-DX=5.01\n##BLOCK_ID=2\n##DATA TYPE=INFRARED SPECTRUM\n##XUNITS=1/CM\n"
        "##FIRSTX=100\n##LASTX=103\n##NPOINTS=4\n##XFACTOR=1\n##YFACTOR=1\n##XYDATA=(X++(Y..Y))\n100 1 2 3 4\n##END=\n"
        "##END=\n"
    )
    with pytest.warns(UserWarning, match=r"link.jdx: skipped 1 compound-file block\(s\) without XY data: the structure"):
        s = read(p)
    assert s.ids.tolist() == ["the spectrum"] and s.X.tolist() == [[1, 2, 3, 4]]


def test_repeated_x_values_are_merged_by_averaging(tmp_path: Path) -> None:
    # built to the JCAMP-DX spec: an (XY..XY) table, as digitised UV/VIS files are written, with an
    # exact repeat at 272 nm and a disagreeing repeat at 271 nm (no shareable real file found)
    p = tmp_path / "uv.jdx"
    p.write_text(
        "##TITLE=uv\n##JCAMP-DX=4.24\n##DATA TYPE=UV/VIS SPECTRUM\n##XUNITS=NANOMETERS\n##YUNITS=ABSORBANCE\n"
        "##XFACTOR=1\n##YFACTOR=1\n##NPOINTS=6\n##XYPOINTS=(XY..XY)\n"
        "273.0,1.0\n272.0,2.0\n272.0,2.0\n271.0,3.0\n271.0,3.5\n270.0,4.0\n##END=\n"
    )
    with pytest.warns(UserWarning, match=r"uv.jdx: 2 repeated x value\(s\) merged by averaging .*2 x value\(s\) affected, "
                                         r"largest deviation from the mean 0.25"):
        s = read(p)
    assert s.axis.tolist() == [270.0, 271.0, 272.0, 273.0] and s.axis_unit == "nm"
    np.testing.assert_allclose(s.X[0], [4.0, 3.25, 2.0, 1.0])


def test_expand_dup() -> None:
    # JCAMP-DX 4.24, section 5.9: a DUP digit counts the occurrences of the value before it
    assert expand_dup("5000B1399TB1410") == "5000B1399B1399B1410"
    assert expand_dup("100@JT") == "100@JJ"  # a DIF value is repeated as a difference
    assert expand_dup("100@JS2") == "100@" + "J" * 12  # multi-digit count: S2 = 12
    assert expand_dup("100 10 20U") == "100 10 20 20 20"
    assert expand_dup("100 10 20") == "100 10 20"
    with pytest.raises(ValueError, match="DUP count 'T' with no value before it"):
        expand_dup("100T")
