"""geospade: synthetic aerial imagery from land-cover maps.

Chip export in ArcGIS Pro's Classified_Tiles layout, SPADE GAN training, and seamless,
georeferenced synthesis of imagery for land-cover rasters of any size.
"""

__version__ = "0.1.0"
