"""Evaluation output: per-exit metrics and curves (:mod:`~scai.report.evaluation`) and figures
(:mod:`~scai.report.plots`). The paper benchmark and its report are :mod:`scai.bench`."""
