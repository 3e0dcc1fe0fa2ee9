"""The built-in demo scene: a synthetic 1 m land cover in Maryland and paired aerial imagery.

:func:`make_demo_scene` lays out fields, a river and ponds, woods, roads, a small town with
houses, shops and parking lots as shapely geometry (:mod:`~geospade.demo.layout`), rasterizes
it to Chesapeake 7-class land cover, and renders imagery whose look is a learnable function of
that land cover (:mod:`~geospade.demo.render`: per-class colour and texture, shadows, paint on
roads). Everything comes from one seeded generator, so a seed always gives the same rasters.
"""

from geospade.demo.scene import (
    DEMO_CRS,
    DEMO_ORIGIN,
    NODATA,
    DemoScene,
    demo_arrays,
    demo_transform,
    make_demo_scene,
)

__all__ = ["DEMO_CRS", "DEMO_ORIGIN", "NODATA", "DemoScene", "demo_arrays", "demo_transform",
           "make_demo_scene"]
