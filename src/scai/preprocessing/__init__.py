"""Spectral preprocessing: scikit-learn transformers and a JSON-serialisable pipeline.

Pure NumPy/SciPy/pybaselines (never torch), so the edge runtime can run it as is.
"""

from scai.preprocessing.axis import MIN_AXIS_OVERLAP, align_to_axis
from scai.preprocessing.base import Step, get_step, list_steps, register_step
from scai.preprocessing.baseline import BASELINE_METHODS, BaselineCorrection
from scai.preprocessing.cost import PreprocessingCost, StepCost, pipeline_cost
from scai.preprocessing.pipeline import (
    AUTO_CANDIDATES,
    PIPELINE_KINDS,
    RAMAN_COARSEN,
    Pipeline,
    default_pipeline,
    pipeline_from_spec,
    pipeline_to_spec,
    preprocessing_from_json,
    preprocessing_to_json,
)
from scai.preprocessing.steps import (
    SNV,
    WATER_OH_WINDOW,
    AreaNorm,
    Crop,
    Despike,
    LaserCalibration,
    MinMax,
    Resample,
    SavitzkyGolay,
    Standardize,
    VectorNorm,
)

__all__ = [
    "align_to_axis",
    "MIN_AXIS_OVERLAP",
    "Step",
    "register_step",
    "get_step",
    "list_steps",
    "Pipeline",
    "PreprocessingCost",
    "StepCost",
    "pipeline_cost",
    "default_pipeline",
    "pipeline_to_spec",
    "pipeline_from_spec",
    "preprocessing_to_json",
    "preprocessing_from_json",
    "PIPELINE_KINDS",
    "RAMAN_COARSEN",
    "AUTO_CANDIDATES",
    "Crop",
    "Resample",
    "SavitzkyGolay",
    "BaselineCorrection",
    "BASELINE_METHODS",
    "Despike",
    "SNV",
    "MinMax",
    "VectorNorm",
    "AreaNorm",
    "Standardize",
    "LaserCalibration",
    "WATER_OH_WINDOW",
]
