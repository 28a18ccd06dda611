"""The paper benchmark (§4.4–4.7): every method on every dataset, same splits, one report.

``scai bench`` is this package: :func:`run_benchmark` trains and scores every (dataset, method,
seed) and writes ``results.json`` after each run; :func:`run_parallel` does the same as parallel
(dataset, seed) processes and merges them; :func:`summarize` turns the results into the table
and the paper's claims, and :func:`write_report` renders figures, ``report.md`` and
``report.html``. MACs are multiply-accumulates per spectrum; FLOPs = 2 x MACs.

Modules, each owning one part:

- :mod:`~scai.bench.methods` — the methods (:class:`MethodSpec`, families, depths);
- :mod:`~scai.bench.config` — a run's settings (:class:`BenchConfig`, ``--quick``);
- :mod:`~scai.bench.splits` — one split + preprocessing per (dataset, seed), ANOVA F profile;
- :mod:`~scai.bench.classical` — the classical anchors (SVM-RBF, PLS-DA, logistic, MiniRocket);
- :mod:`~scai.bench.runs` — training runs and the benchmark loop;
- :mod:`~scai.bench.results` — results.json: schema, load / save / merge, resume checks;
- :mod:`~scai.bench.curves` — accuracy-vs-MACs curves read at a budget and averaged over seeds;
- :mod:`~scai.bench.allocation` — where SCAI+ spends its units along the axis (claim d);
- :mod:`~scai.bench.claims` — the claims (a)–(d) per dataset;
- :mod:`~scai.bench.summary` — the table, claims and compute spent of a results.json;
- :mod:`~scai.bench.report` — figures, ``report.md`` / ``report.html`` / ``summary.json``;
- :mod:`~scai.bench.parallel` — ``--jobs N``: (dataset, seed) parts as processes, merged.

Importing the package loads neither torch nor matplotlib; they are imported where a network
trains or a figure is drawn.
"""

from __future__ import annotations

from scai.bench.allocation import (
    RHO_INFORMATIVE,
    allocation_bands,
    allocation_vs_discriminability,
    allocation_vs_intensity,
    top_bands,
)
from scai.bench.classical import run_classical
from scai.bench.config import BenchConfig, quick_config
from scai.bench.curves import curve_at, macs_to_reach, mean_curve
from scai.bench.methods import FAMILIES, MethodSpec, default_methods, select_methods
from scai.bench.parallel import Part, part_command, plan_parts, run_parallel
from scai.bench.report import build_blocks, write_figures, write_report
from scai.bench.results import MAC_CONVENTION, SCHEMA, fill_discriminability, load_results, merge_results, save_results
from scai.bench.runs import run_benchmark, run_method, run_network
from scai.bench.splits import SplitData, discriminability, prepare_split
from scai.bench.summary import compute_spent, summarize

__all__ = [
    "SCHEMA",
    "MAC_CONVENTION",
    "RHO_INFORMATIVE",
    "FAMILIES",
    "MethodSpec",
    "BenchConfig",
    "SplitData",
    "default_methods",
    "select_methods",
    "quick_config",
    "prepare_split",
    "run_network",
    "run_classical",
    "run_method",
    "run_benchmark",
    "run_parallel",
    "Part",
    "plan_parts",
    "part_command",
    "load_results",
    "save_results",
    "merge_results",
    "fill_discriminability",
    "summarize",
    "compute_spent",
    "mean_curve",
    "curve_at",
    "macs_to_reach",
    "allocation_bands",
    "allocation_vs_discriminability",
    "allocation_vs_intensity",
    "discriminability",
    "top_bands",
    "write_report",
    "write_figures",
    "build_blocks",
]
