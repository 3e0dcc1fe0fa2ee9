"""Synthesis: land cover -> seamless, georeferenced imagery, tile by tile.

The flow mirrors the modules: :mod:`~geospade.synthesis.plan` lays tiles and halos over the
raster, :mod:`~geospade.synthesis.pipeline` streams windows through the generator
(:mod:`~geospade.synthesis.model`), :mod:`~geospade.synthesis.blend` cross-fades neighbouring
tiles at their seams, and :mod:`~geospade.synthesis.seams` measures how visible seams remain.
"""

from geospade.synthesis.blend import FeatherBlender, cosine_ramp
from geospade.synthesis.model import LoadedModel, resolve_device
from geospade.synthesis.pipeline import RunStats, run_synthesis
from geospade.synthesis.plan import SynthesisPlan, plan_tiles
from geospade.synthesis.seams import seam_score, seam_stats
from geospade.synthesis.synthesize import (
    ResolutionWarning,
    SynthesisResult,
    SynthesizedArray,
    load_model,
    synthesize,
    synthesize_array,
)

__all__ = [
    "FeatherBlender",
    "LoadedModel",
    "ResolutionWarning",
    "RunStats",
    "SynthesisPlan",
    "SynthesisResult",
    "SynthesizedArray",
    "cosine_ramp",
    "load_model",
    "plan_tiles",
    "resolve_device",
    "run_synthesis",
    "seam_score",
    "seam_stats",
    "synthesize",
    "synthesize_array",
]
