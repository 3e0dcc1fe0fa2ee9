"""geospade inside ArcGIS Pro: a Python toolbox and an Esri deep learning package (.dlpk).

- ``GeoSPADE.pyt``: the toolbox (Export SPADE Training Chips, Train SPADE Model, Synthesize
  Imagery From Land Cover). It only declares the tools; :mod:`geospade.arcgis.tools` holds
  their parameters, validation and calls into the library, and is testable without arcpy.
- :mod:`geospade.arcgis.raster_function`: what Pro's "Translate Pixels Using Deep Learning"
  runs for a ``.dlpk`` that :func:`geospade.dlpk.export_model` packages (re-exported here as
  ``export_model``).

Nothing here imports arcpy: the toolbox hands its arcpy module to the functions that need it.
"""

from pathlib import Path

#: The Python toolbox file, for "Add Toolbox" in ArcGIS Pro.
TOOLBOX = Path(__file__).with_name("GeoSPADE.pyt")

__all__ = ["TOOLBOX", "export_model"]


def __getattr__(name: str):
    # Lazy, so that the toolbox's import of geospade.arcgis.tools does not load torch.
    if name == "export_model":
        from geospade.dlpk import export_model

        return export_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
