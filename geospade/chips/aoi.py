"""Chip footprints and the area of interest (AOI) that limits which chips are exported.

Footprints are the chips' polygons in the land cover's CRS (they also go into
``chips.gpkg``). An AOI is any polygon file geopandas reads (GeoPackage, shapefile, GeoJSON),
in any CRS; it is reprojected to the land cover's CRS and a chip is kept only when the AOI
covers it entirely, as ArcGIS Pro's ``in_mask_polygons`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS

from geospade.errors import InputError
from geospade.raster import RasterReader
from geospade.tiling import Tile


def footprints(tiles: Sequence[Tile], transform: Affine) -> np.ndarray:
    """Polygons (shapely array) of the tiles' outlines in map coordinates."""
    if not tiles:
        return np.empty(0, dtype=object)
    offs = np.array([(t.col_off, t.row_off, t.size) for t in tiles], dtype=np.float64)
    col, row, size = offs[:, 0], offs[:, 1], offs[:, 2]
    corners = [(col, row), (col + size, row), (col + size, row + size), (col, row + size)]
    rings = np.stack([np.stack(_apply(transform, c, r), axis=-1) for c, r in corners], axis=1)
    return shapely.polygons(rings)


def _apply(transform: Affine, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b, c, d, e, f = transform[:6]
    return a * col + b * row + c, d * col + e * row + f


def read_aoi(path: str | Path, crs: CRS) -> shapely.Geometry:
    """The union of the polygons in an AOI file, reprojected to ``crs``.

    Raises:
        InputError: the file is missing or unreadable, has no CRS, or holds no polygons.
    """
    import geopandas

    path = Path(path)
    if not path.exists():
        raise InputError("area-of-interest file not found", path=path, hint="Check the --aoi path.")
    try:
        frame = geopandas.read_file(path)
    except Exception as exc:  # pyogrio/fiona raise several types for unreadable files
        raise InputError(f"cannot read the area of interest ({exc})", path=path,
                         hint="Give polygons in a GeoPackage, shapefile or GeoJSON.") from None
    if frame.crs is None:
        raise InputError("area of interest has no coordinate reference system", path=path,
                         hint="Save it with a CRS (e.g. in QGIS: Export > Save Features As).")
    geometry = frame.geometry[frame.geometry.notna() & ~frame.geometry.is_empty]
    polygons = geometry[geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if polygons.empty:
        kinds = sorted(set(geometry.geom_type)) or ["nothing"]
        raise InputError(f"area of interest holds no polygons (found {', '.join(kinds)})",
                         path=path, hint="Give a polygon layer.")
    projected = polygons.to_crs(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)
    return shapely.union_all(shapely.make_valid(projected.values))


def inside(aoi: shapely.Geometry, shapes: np.ndarray, tolerance: float = 0.0) -> np.ndarray:
    """Boolean array: which of ``shapes`` the AOI covers entirely.

    Args:
        aoi: the area of interest.
        shapes: the chips' footprints.
        tolerance: how far (map units) a footprint may reach past the AOI and still count as
            inside: an AOI drawn along chip borders in another CRS comes back from the
            reprojection a hair inside them.
    """
    shapely.prepare(aoi)
    if tolerance > 0:
        # Shrinking the (square) footprints is exact and cheaper than growing the AOI.
        shapes = shapely.buffer(shapes, -tolerance, join_style="mitre")
    return shapely.covers(aoi, shapes)


def raster_outline(dataset: RasterReader, crs: CRS, densify: int = 32) -> shapely.Geometry:
    """A raster's extent as a polygon in ``crs`` (edges densified, so curved when warped)."""
    from rasterio.warp import transform as warp_points

    left, bottom, right, top = dataset.bounds
    ring = shapely.segmentize(shapely.box(left, bottom, right, top),
                              max(right - left, top - bottom) / densify)
    xs, ys = np.asarray(ring.exterior.coords).T
    if dataset.crs != crs:
        xs, ys = warp_points(dataset.crs, crs, xs, ys)
    return shapely.Polygon(np.column_stack([xs, ys]))
