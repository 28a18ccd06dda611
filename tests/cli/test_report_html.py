"""The self-contained HTML evaluation report, band importance and CJK class names in figures."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_SCAI, make_peaks

#: Chinese class names (milk types): the figures must draw them, not boxes.
CHINESE = {"class_0": "牛奶", "class_1": "山羊奶", "class_2": "混合奶"}
#: Void elements of HTML (no closing tag).
VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}
#: The elements the report may use: standard HTML that needs nothing loaded or run.
STANDARD = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "p", "b", "i", "em", "strong",
            "code", "div", "span", "table", "thead", "tbody", "tr", "th", "td", "figure", "figcaption", "img", "ul", "ol",
            "li", "br", "pre", "small", "sup", "sub"}


class _Checker(HTMLParser):
    """Collects tags, attributes and text; checks that every opened element is closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.tags: list[str] = []
        self.text: list[str] = []
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self.tables:
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A SCAI+ network (PA blocks, three exits kept, no exit 0) trained on Chinese class names."""
    from scai.estimators import SCAIClassifier
    from scai.report.evaluation import evaluate
    from scai.report.html import write_evaluation_report

    tmp = tmp_path_factory.mktemp("report")
    X, y, axis = make_peaks(n_per_class=12)
    y = np.asarray([CHINESE[c] for c in y], dtype=object)
    est = SCAIClassifier(model="scai_plus", model_config=TINY_SCAI, preprocessing="snv", exit0="none", skip_exits=False,
                         cross_fit=0, train_config={"max_epochs": 3, "batch_size": 16, "lr": 3e-3}, random_state=0)
    est.fit(X, y, axis=axis, axis_unit="cm-1")
    Xt, yt, _ = make_peaks(n_per_class=5, seed=1)
    yt = np.asarray([CHINESE[c] for c in yt], dtype=object)
    metrics = evaluate(est, Xt, yt, axis, detail=True)
    notes = ["evaluation on training spectra: 3 of the 15 spectra in DATA were used to fit the model"]
    path = write_evaluation_report(est, Xt, yt, axis, metrics, tmp / "report.html", source="test.csv", model_dir="m", notes=notes)
    return path, est, metrics, Xt, yt


def _parse(path: Path) -> _Checker:
    checker = _Checker()
    checker.feed(path.read_text(encoding="utf-8"))
    checker.close()
    return checker


def test_report_is_well_formed_and_self_contained(report):
    from PIL import Image

    path, _est, _metrics, *_ = report
    doc = _parse(path)
    assert not doc.errors and not doc.stack, (doc.errors, doc.stack)
    assert doc.tags[0] == "html" and "script" not in doc.tags and "link" not in doc.tags
    refs = [(t, k, v) for t, k, v in doc.attrs if k in ("src", "href", "srcset", "data", "action")]
    assert refs and all(t == "img" and k == "src" and v.startswith("data:image/png;base64,") for t, k, v in refs), refs
    assert "url(" not in path.read_text(encoding="utf-8")  # no CSS loads either
    for _, _, v in refs:  # every image decodes as a PNG, to its last pixel
        png = base64.b64decode(v.split(",", 1)[1], validate=True)
        Image.open(io.BytesIO(png)).verify()
        with Image.open(io.BytesIO(png)) as im:
            im.load()
            assert im.format == "PNG" and im.width > 50 and im.height > 50


def test_report_leaves_a_browser_nothing_to_load_run_or_guess(report):
    """What a browser could complain about, checked without one: no script of any kind (element,
    event-handler attribute, javascript: URL), nothing to fetch (no element that loads, no CSS
    import or url()), the charset declared in the first 1024 bytes, standard elements only,
    every image with alt text, no duplicate id."""
    path, *_ = report
    raw = path.read_bytes()
    raw.decode("utf-8", errors="strict")
    assert raw.lower().startswith(b"<!doctype html>")
    assert b'<meta charset="utf-8">' in raw[:1024]
    doc = _parse(path)
    assert set(doc.tags) <= STANDARD, set(doc.tags) - STANDARD
    loaders = {"script", "iframe", "object", "embed", "link", "base", "form", "audio", "video", "source"}
    assert not set(doc.tags) & loaders
    assert not [(t, k) for t, k, _ in doc.attrs if k.startswith("on")]  # no inline event handlers
    assert not [v for _, _, v in doc.attrs if "javascript:" in v.lower().replace(" ", "")]
    assert [v for t, k, v in doc.attrs if t == "html" and k == "lang"] == ["en"]
    assert doc.tags.count("title") == 1 and doc.tags.count("body") == 1 and doc.tags.count("head") == 1
    css = path.read_text(encoding="utf-8").split("<style>", 1)[1].split("</style>", 1)[0].lower()
    assert "@import" not in css and "url(" not in css and "expression(" not in css and "@font-face" not in css
    n_img = doc.tags.count("img")
    alts = [v for t, k, v in doc.attrs if t == "img" and k == "alt" and v.strip()]
    assert n_img > 0 and len(alts) == n_img
    ids = [v for _, k, v in doc.attrs if k == "id"]
    assert len(ids) == len(set(ids))


def test_report_parses_without_one_error_under_the_whatwg_algorithm(report):
    """html5lib implements the HTML Standard's parsing algorithm (the one browsers run); in strict
    mode it raises on the first parse error a browser would silently repair."""
    html5lib = pytest.importorskip("html5lib", reason="the strict-parser check needs html5lib (in the dev extra)")
    path, *_ = report
    tree = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(path.read_bytes())
    assert tree.find("head/title").text.startswith("scai evaluation")
    assert len(tree.findall(".//img")) == _parse(path).tags.count("img")


def test_markup_in_class_names_is_escaped_not_run():
    """Class names, captions and table cells go into the page as text: a name that is markup
    (a script, an attribute break-out, an entity) comes back out as the same text."""
    from scai.report.html import render_html

    evil = '<script>alert("x")</script>&amp; "quoted" \'single\' <img src=x onerror=alert(1)>'
    blocks = [("h", 2, evil), ("p", evil), ("warn", evil), ("meta", evil), ("table", ["class", evil], [[evil, 1]])]
    page = render_html(blocks, title=evil)
    doc = _Checker()
    doc.feed(page)
    doc.close()
    assert not doc.errors and not doc.stack
    assert "script" not in doc.tags and "img" not in doc.tags and not [k for _, k, _ in doc.attrs if k.startswith("on")]
    text = "".join(doc.text)
    assert text.count(evil) == 7  # title, heading, paragraph, warning, meta line, header cell, body cell
    html5lib = pytest.importorskip("html5lib")
    html5lib.HTMLParser(strict=True).parse(page)


def test_report_holds_every_section(report):
    path, est, _metrics, *_ = report
    doc = _parse(path)
    text = " ".join(doc.text)
    for heading in ("Warnings", "Per-exit accuracy and cost", "Per-class precision and recall", "Accuracy against compute",
                    "Confusion matrices per exit", "Computation allocation (SCAI+)", "Band importance", "Training curves"):
        assert heading in text, heading
    assert "3 of the 15 spectra" in text  # the warning that applied
    n_exits = len(est.exit_macs_)
    alts = [v for t, k, v in doc.attrs if t == "img" and k == "alt"]
    assert len([a for a in alts if a.startswith("exit ")]) == n_exits  # one confusion matrix per exit
    assert any("kept" in a for a in alts) and any("allocation" in a for a in alts)
    exit_table = doc.tables[0]
    assert [row[0] for row in exit_table[1:]] == [str(k) for k in range(n_exits)]
    assert [row[1] for row in exit_table[1:]] == [f"{m:,}" for m in est.exit_macs_]


def test_per_class_precision_recall_match_sklearn(report):
    from sklearn.metrics import precision_recall_fscore_support

    _path, est, metrics, Xt, yt = report
    pred = est.predict(Xt, np.linspace(400.0, 1800.0, Xt.shape[1]))
    p, r, _, support = precision_recall_fscore_support(yt, pred, labels=est.classes_, zero_division=np.nan)
    rows = {row["class"]: row for row in metrics["per_class"]}
    for k, name in enumerate(est.classes_):
        got = rows[str(name)]
        assert got["support"] == support[k]
        assert (got["precision"] is None) == bool(np.isnan(p[k]))
        if got["precision"] is not None:
            assert got["precision"] == pytest.approx(p[k])
        assert got["recall"] == pytest.approx(r[k])
    cm = np.asarray(metrics["confusion_per_exit"][-1])
    assert cm.sum() == len(yt) and np.array_equal(cm, np.asarray(metrics["confusion"]))


def test_report_from_python_computes_its_metrics(report, tmp_path):
    from scai.report.html import write_evaluation_report

    _, est, metrics, Xt, yt = report
    path = write_evaluation_report(est, Xt, yt, np.linspace(400.0, 1800.0, Xt.shape[1]), None, tmp_path / "r.html")
    doc = _parse(path)
    exit_table = doc.tables[0]
    assert [row[3] for row in exit_table[1:]] == [f"{r['accuracy']:.4f}" for r in metrics["exits"]]
    assert "None applied to these numbers." in " ".join(doc.text)


def test_band_importance_is_the_input_gradient():
    """Autograd saliency against central finite differences of the answering exit's logit."""
    import torch

    from scai.estimators import SCAIClassifier
    from scai.report.saliency import band_importance

    X, y, axis = make_peaks(n_per_class=6)
    est = SCAIClassifier(model="scai", model_config=TINY_SCAI, preprocessing="snv", exit0="none", skip_exits=False,
                         cross_fit=0, train_config={"max_epochs": 1}, random_state=0).fit(X, y, axis=axis)
    Z = est.transform_input(X[:4], axis).astype(np.float64)
    y_idx = est._encode(np.asarray(y[:4]), "y")
    _, importance = band_importance(est, Z.astype(np.float32), y_idx)
    net = est.network_.double()
    try:
        def logit(z: np.ndarray, i: int) -> float:
            with torch.no_grad():
                out = net.forward_exits(torch.from_numpy(z[None, None, :]))[-1]
            return float(out[0, y_idx[i]])

        eps = 1e-5
        numeric = np.zeros(Z.shape[1])
        for i in range(len(Z)):
            for j in range(Z.shape[1]):
                up, down = Z[i].copy(), Z[i].copy()
                up[j] += eps
                down[j] -= eps
                numeric[j] += abs(logit(up, i) - logit(down, i)) / (2 * eps)
    finally:
        net.float()
    numeric /= numeric.max()
    np.testing.assert_allclose(importance, numeric, atol=2e-3)


def test_cjk_class_names_render_without_missing_glyphs(tmp_path):
    from scai.report.plots import cjk_font, plot_confusion

    if cjk_font() is None:
        assert not _report_extra_installed(), "the report extra's font (noto-cjk-sans-otc) is installed, not found"
        pytest.skip("no font with CJK glyphs installed (pip install 'scai[report]', or apt-get install fonts-noto-cjk)")
    names = list(CHINESE.values())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_confusion(np.eye(3, dtype=int) * 4, names, tmp_path / "cm.png", title="混淆矩阵")
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message) or "Glyph" in str(w.message)]
    assert not missing, missing
    assert (tmp_path / "cm.png").stat().st_size > 1000


def _report_extra_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("noto_cjk_sans_otc") is not None


def _raster(plt, text: str, family: list[str]) -> np.ndarray:
    fig = plt.figure(figsize=(1.2, 1.2), dpi=40)
    fig.text(0.05, 0.3, text, fontsize=36, family=family)
    fig.canvas.draw()
    out = np.asarray(fig.canvas.buffer_rgba())[..., 0].copy()
    plt.close(fig)
    return out


def test_cjk_characters_draw_as_distinct_glyphs_not_boxes():
    """Missing glyphs all draw as one box (.notdef): with the font, Chinese, Japanese and Korean
    characters each draw their own shape, and the same shape under the plain DejaVu Sans figure
    font (the fallback list the figures use)."""
    from scai.report.plots import _plt, cjk_font

    family = cjk_font()
    if family is None:
        assert not _report_extra_installed()
        pytest.skip("no font with CJK glyphs installed (pip install 'scai[report]')")
    plt = _plt(["牛奶"])
    chars = ["牛", "奶", "混", "の", "한"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rasters = [_raster(plt, c, ["DejaVu Sans", family]) for c in chars]
    assert not [str(w.message) for w in caught if "missing from font" in str(w.message)]
    for r in rasters:
        assert (r < 128).sum() > 30  # ink
    for i in range(len(chars)):
        for j in range(i + 1, len(chars)):
            assert (rasters[i] != rasters[j]).sum() > 30, (chars[i], chars[j])
    with warnings.catch_warnings():  # and without the font they are the same box: the check can fail
        warnings.simplefilter("ignore")
        boxes = [_raster(plt, c, ["DejaVu Sans"]) for c in chars[:2]]
    assert np.array_equal(boxes[0], boxes[1])


def test_the_report_extras_font_is_registered_from_the_wheel_without_importing_it(monkeypatch):
    import sys

    from matplotlib import font_manager

    from scai.report import plots

    if not _report_extra_installed():
        pytest.skip("the report extra is not installed (pip install 'scai[report]')")
    monkeypatch.setattr(plots, "_CJK", {})
    monkeypatch.delitem(sys.modules, "noto_cjk_sans_otc", raising=False)
    files = plots._packaged_cjk_fonts()
    assert files and files[0].name == "NotoSansCJK-Regular.ttc" and files[0].stat().st_size > 10_000_000
    assert "noto_cjk_sans_otc" not in sys.modules
    assert plots.cjk_font() == "Noto Sans CJK SC"  # the Simplified Chinese face of the collection
    entries = [f for f in font_manager.fontManager.ttflist if f.name == "Noto Sans CJK SC"]
    assert any(Path(e.fname) == files[0] for e in entries)


def test_without_a_cjk_font_the_missing_glyphs_are_named(tmp_path, monkeypatch):
    from scai.report import plots

    monkeypatch.setattr(plots, "_CJK", {"family": None})
    with pytest.warns(UserWarning, match=r"牛奶.*pip install 'scai\[report\]'") as record:
        plots.plot_confusion(np.eye(2, dtype=int), ["牛奶", "b"], tmp_path / "cm.png")
    assert "\n" not in str(record[0].message)  # one line
    with warnings.catch_warnings(record=True) as again:  # once per process, not once per figure or glyph
        plots.plot_confusion(np.eye(2, dtype=int), ["牛奶", "b"], tmp_path / "cm2.png")
    again = [str(w.message) for w in again]
    assert not [m for m in again if "scai[report]" in m or "missing from font" in m]
    assert (tmp_path / "cm2.png").stat().st_size > 1000  # and the figure is still written


def test_without_any_packaged_font_a_system_one_is_looked_for(monkeypatch):
    from scai.report import plots

    monkeypatch.setattr(plots, "_CJK", {})
    monkeypatch.setattr(plots, "CJK_FONT_PACKAGES", (("scai_no_such_font_package", ("*.ttc",)),))
    assert plots._packaged_cjk_fonts() == []
    found = plots.cjk_font()
    assert found is None or found in plots.CJK_FAMILIES


#: .ci/run sets this: in CI a missing playwright or Chromium fails the browser tests instead of skipping them.
REQUIRE_BROWSER = os.environ.get("SCAI_REQUIRE_BROWSER") == "1"
BROWSER_HINT = ("Debian: apt-get install --no-install-recommends chromium-headless-shell; "
                "pip install playwright, which the dev extra has; `playwright install` is never needed")
#: Headless, and no connection of Chromium's own (updates, sync, safe browsing): only the page loads.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _chromium() -> str | None:
    for name in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLoad:
    """What a page did while it loaded in headless Chromium."""

    console: list[str]  # every console message, "type: text"
    errors: list[str]  # uncaught exceptions
    failed: list[str]  # requests that failed
    requests: list[str]  # every URL the page asked for
    images: tuple[int, int]  # images in the document, images decoded and drawn
    title: str


def _load_in_chromium(url: str) -> PageLoad:
    """Loads url in the system Chromium through playwright (its driver, never a downloaded browser)."""
    try:
        from playwright import sync_api
    except ImportError:
        sync_api = None
    browser_path = _chromium()
    if sync_api is None or browser_path is None:
        missing = "playwright" if sync_api is None else "a Chromium executable on PATH"
        reason = f"the headless-Chromium check needs {missing} ({BROWSER_HINT})"
        if REQUIRE_BROWSER:
            pytest.fail(f"{reason}; SCAI_REQUIRE_BROWSER=1 (set by .ci/run) makes this a failure", pytrace=False)
        pytest.skip(reason)
    console: list[str] = []
    errors: list[str] = []
    failed: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url, wait_until="load")
            images = page.evaluate("[document.images.length, "
                                   "Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length]")
            title = page.title()
            page.close()  # delivers any event still on its way
        finally:
            browser.close()
    return PageLoad(console, errors, failed, requests, (images[0], images[1]), title)


def test_report_loads_in_headless_chromium_without_console_errors(report):
    path, _est, *_ = report
    url = path.resolve().as_uri()
    load = _load_in_chromium(url)
    assert not load.console and not load.errors and not load.failed, (load.console, load.errors, load.failed)
    assert load.requests and {u for u in load.requests if not u.startswith("data:")} == {url}  # nothing else fetched
    assert load.images[0] > 0 and load.images[0] == load.images[1]  # every image decoded and drawn
    assert load.title.startswith("scai evaluation")


def test_the_chromium_check_catches_console_and_page_errors(tmp_path):
    """The same check on a page that logs a console error, throws, and points at an image that is not
    there: each is caught, so a clean report above means a clean load."""
    page = tmp_path / "broken.html"
    page.write_text('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>broken</title></head><body>'
                    '<img src="missing.png" alt="missing"><script>console.error("deliberate console error");'
                    "notDefinedAnywhere();</script></body></html>", encoding="utf-8")
    load = _load_in_chromium(page.resolve().as_uri())
    assert "error: deliberate console error" in load.console, load.console
    assert len(load.errors) == 1 and "notDefinedAnywhere" in load.errors[0], load.errors
    assert load.failed == [(tmp_path / "missing.png").resolve().as_uri()]
    assert load.images == (1, 0)
    assert load.title == "broken"


def test_cli_evaluate_writes_the_report(tmp_path, capsys):
    import csv

    from scai.cli.main import main

    X, y, axis = make_peaks(n_per_class=10)
    data = tmp_path / "d.csv"
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["label", *(f"{a:.4f}" for a in axis)])
        w.writerows([[CHINESE[c], *(f"{v:.6f}" for v in row)] for c, row in zip(y, X)])
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"model": "scai", "model_config": TINY_SCAI, "preprocessing": "snv"}))
    assert main(["train", str(data), "--config", str(cfg), "--epochs", "2", "--single-split", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "m"), str(data), "--out", str(tmp_path / "ev"), "--report", str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "evaluation on training spectra" in text and "牛奶" in text
    assert main(["evaluate", str(tmp_path / "m"), str(data), "--out", str(tmp_path / "ev"), "--report", str(tmp_path / "r.pdf")]) == 2
    assert ".html" in capsys.readouterr().err
