"""Training chips: export from land cover + imagery, and the ArcGIS metadata around them.

:func:`export_chips` writes an ArcGIS Pro Classified_Tiles folder; :mod:`geospade.chips.esri`
reads and writes its metadata files; the chip dataset for training reads such folders.
"""

from geospade.chips.export import ExportResult, export_chips

__all__ = ["ExportResult", "export_chips"]
