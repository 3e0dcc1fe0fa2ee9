"""GeoSPADE: ArcGIS Pro tools for synthetic aerial imagery from land cover.

Four tools, each calling the same library function as the matching ``geospade`` command:
export training chips, train a SPADE model, synthesise imagery from a land-cover raster, and
what-if imagery (the real imagery with a plan's land-cover changes synthesised in).
This file only declares the tools; their parameters, validation and library calls live in
geospade.arcgis.tools. geospade (with torch and rasterio) must be installed in the ArcGIS
Pro Python environment that runs the toolbox.
"""

import sys
from pathlib import Path

import arcpy

try:
    from geospade.arcgis import tools
except ImportError:
    # The toolbox opened from a source checkout that is not installed: use that checkout.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from geospade.arcgis import tools


class Toolbox:
    """The GeoSPADE toolbox."""

    def __init__(self):
        self.label = "GeoSPADE"
        self.alias = "geospade"
        self.tools = [ExportSPADETrainingChips, TrainSPADEModel, SynthesizeImageryFromLandCover,
                      WhatIfImageryFromLandCoverChanges]


class ExportSPADETrainingChips:
    """geospade export-chips."""

    def __init__(self):
        self.label = "Export SPADE Training Chips"
        self.description = (
            "Tiles a classified land-cover raster and its imagery into training chips in "
            "ArcGIS Pro's Classified_Tiles layout (images, labels, map.txt, statistics and "
            ".emd), plus geospade's tile index and metadata. Imagery on another grid is "
            "resampled bilinearly onto the land cover's grid; labels are never resampled.")
        self.canRunInBackground = False
        self.spec = tools.EXPORT

    def getParameterInfo(self):
        return tools.get_parameter_info(self.spec, arcpy)

    def isLicensed(self):
        return True

    def updateParameters(self, parameters):
        return

    def updateMessages(self, parameters):
        tools.update_messages(self.spec, parameters, arcpy)

    def execute(self, parameters, messages):
        tools.execute(self.spec, parameters, messages, arcpy)


class TrainSPADEModel:
    """geospade train."""

    def __init__(self):
        self.label = "Train SPADE Model"
        self.description = (
            "Trains a SPADE generator that turns land cover into imagery, on a chip folder "
            "written by Export SPADE Training Chips or by Export Training Data For Deep "
            "Learning (Classified_Tiles). The run folder receives checkpoints, sample images "
            "and metrics; Resume continues a run where it stopped.")
        self.canRunInBackground = False
        self.spec = tools.TRAIN

    def getParameterInfo(self):
        return tools.get_parameter_info(self.spec, arcpy)

    def isLicensed(self):
        return True

    def updateParameters(self, parameters):
        return

    def updateMessages(self, parameters):
        tools.update_messages(self.spec, parameters, arcpy)

    def execute(self, parameters, messages):
        tools.execute(self.spec, parameters, messages, arcpy)


class SynthesizeImageryFromLandCover:
    """geospade synthesize."""

    def __init__(self):
        self.label = "Synthesize Imagery From Land Cover"
        self.description = (
            "Generates one seamless GeoTIFF of imagery for a land-cover raster with a trained "
            "geospade model: same CRS, extent and cell size as the land cover, the training "
            "imagery's bands, and a mask over NoData. The same seed gives the same imagery.")
        self.canRunInBackground = False
        self.spec = tools.SYNTHESIZE

    def getParameterInfo(self):
        return tools.get_parameter_info(self.spec, arcpy)

    def isLicensed(self):
        return True

    def updateParameters(self, parameters):
        return

    def updateMessages(self, parameters):
        tools.update_messages(self.spec, parameters, arcpy)

    def execute(self, parameters, messages):
        tools.execute(self.spec, parameters, messages, arcpy)


class WhatIfImageryFromLandCoverChanges:
    """geospade what-if."""

    def __init__(self):
        self.label = "What-If Imagery From Land-Cover Changes"
        self.description = (
            "Shows what the real imagery would look like after a plan: polygons carrying new "
            "land-cover classes (or an edited land cover raster). Only the changed area is "
            "synthesised, matched to the imagery around it and blended in over a transition "
            "band; everywhere else the output is the real imagery, pixel for pixel, on its "
            "own grid, bands and mask. The edited land cover is written beside the output.")
        self.canRunInBackground = False
        self.spec = tools.WHAT_IF

    def getParameterInfo(self):
        return tools.get_parameter_info(self.spec, arcpy)

    def isLicensed(self):
        return True

    def updateParameters(self, parameters):
        return

    def updateMessages(self, parameters):
        tools.update_messages(self.spec, parameters, arcpy)

    def execute(self, parameters, messages):
        tools.execute(self.spec, parameters, messages, arcpy)
