"""Named datasets and the synthetic liquor generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scai import datasets
from scai.data import validate_training
from scai.errors import DataFormatError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def test_embedded_milk() -> None:
    s = datasets.load("milk_adulteration")
    assert s.X.shape == (500, 1738) and s.n_classes == 10 and s.axis_unit == "cm-1"
    assert s.class_names[0] == "goat 0% cow" and s.source == "milk_adulteration"
    assert "milk_adulteration" in datasets.list(data_dir=Path("/nonexistent"))
    validate_training(s)


def test_data_dir_and_unknown_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    np.savez(tmp_path / "tiny.npz", X=np.ones((4, 3)), y=np.array([0, 1, 0, 1]), class_names=np.array(["a", "b"]))
    assert datasets.list(tmp_path) == ["milk_adulteration", "tiny"]
    assert datasets.load("tiny", data_dir=tmp_path).class_names == ("a", "b")
    monkeypatch.setenv("SCAI_DATA_DIR", str(tmp_path))
    assert datasets.default_data_dir() == tmp_path
    assert datasets.load("tiny").n_samples == 4
    with pytest.raises(DataFormatError, match=r"unknown dataset 'nope'.*available: milk_adulteration, tiny.*SCAI_DATA_DIR"):
        datasets.load("nope")


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared datasets folder {SHARED} is absent")
def test_shared_folder() -> None:
    s = datasets.load("ucr_meat", data_dir=SHARED)
    assert s.axis_unit == "index" and s.train_idx.size == 60
    assert set(datasets.list(SHARED)) >= {"cheese_brands", "ucr_strawberry", "liquor_vintage"}


def test_synthetic_deterministic_and_chunked() -> None:
    a = datasets.synthetic_liquor(5000, 4, 256, seed=3)
    b = datasets.synthetic_liquor(5000, 4, 256, seed=3, n_jobs=1)
    np.testing.assert_array_equal(a.X, b.X)
    chunks = list(datasets.synthetic_liquor(5000, 4, 256, seed=3, chunk_size=1500))
    assert [c.n_samples for c in chunks] == [1500, 1500, 1500, 500]
    np.testing.assert_array_equal(np.concatenate([c.X for c in chunks]), a.X)
    np.testing.assert_array_equal(np.concatenate([c.y for c in chunks]), a.y)
    c = datasets.synthetic_liquor(5000, 4, 256, seed=4)
    assert not np.array_equal(a.X, c.X)
    assert a.X.dtype == np.float32 and a.axis_unit == "cm-1" and a.class_names[0] == "brand_01"
    assert np.bincount(a.y).tolist() == [1250] * 4


def test_synthetic_band_positions() -> None:
    s = datasets.synthetic_liquor(400, 3, 1024, seed=0)
    mean = s.X.mean(axis=0)
    ax = s.axis
    region = (ax > 800) & (ax < 950)
    assert abs(ax[region][np.argmax(mean[region])] - 883) < 8  # ethanol C–C–O stretch
    ch = (ax > 2900) & (ax < 3000)
    assert abs(ax[ch][np.argmax(mean[ch])] - 2930) < 10  # ethanol C–H stretch
    oh = mean[(ax > 3200) & (ax < 3450)].mean()
    assert oh > 1.5 * mean[(ax > 3650) & (ax < 3800)].mean()  # broad water O–H band
    assert np.all(np.isfinite(s.X))


def test_synthetic_classes_differ() -> None:
    from sklearn.linear_model import LogisticRegression

    from scai.preprocessing import SNV

    s = datasets.synthetic_liquor(600, 3, 256, seed=0)
    Z = SNV().fit_transform(s.X)
    acc = LogisticRegression(max_iter=200).fit(Z[:400], s.y[:400]).score(Z[400:], s.y[400:])
    assert acc > 0.9


def test_synthetic_small_and_errors() -> None:
    s = datasets.synthetic_liquor(3, 5, 16, seed=1)
    assert s.X.shape == (3, 16) and s.n_classes == 5
    with pytest.raises(ValueError, match="n_samples=0 must be a positive integer"):
        datasets.synthetic_liquor(0)
