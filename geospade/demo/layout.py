"""The demo scene's layout: fields, a river and ponds, woods, roads and a small town as
shapely geometry, rasterized to Chesapeake 7-class land cover plus the per-object rasters
(parcels, surfaces, roofs, paint) that :mod:`geospade.demo.render` paints imagery from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely
from rasterio.features import rasterize
from shapely.geometry import LineString, Point, Polygon, box
from shapely.ops import split, substring, unary_union

WATER, TREES, LOW_VEG, BARREN, IMPERVIOUS, ROADS = 1, 2, 3, 4, 5, 6

# Direction towards the sun in (col, row) image coordinates: south-east, as for a morning
# flight, so shadows fall to the north-west (up and to the left).
SUN = np.array([0.6, 0.8])

# Paint and roof-detail codes in the paint raster.
WHITE_PAINT, YELLOW_PAINT, RIDGE, ROOF_UNIT = 1, 2, 3, 4

# ---------------------------------------------------------------------------------------------
# Layout: the scene as shapely geometry in pixel coordinates (x = column, y = row, 1 m pixels).
# ---------------------------------------------------------------------------------------------


@dataclass
class _Road:
    line: LineString
    width: float
    kind: str  # "main", "secondary", "street"


@dataclass
class Layout:
    """Everything the rasterizer needs, drawn in this order (later shapes cover earlier)."""

    parcels: list[tuple[Polygon, str]] = field(default_factory=list)  # shrunk field parcels
    trees: list = field(default_factory=list)  # hedgerows, woods, riparian strips, yard trees
    verges: list = field(default_factory=list)  # grass cleared along roads
    water: list = field(default_factory=list)
    bare: list = field(default_factory=list)  # farm tracks, yards, construction sites
    roads: list[_Road] = field(default_factory=list)
    paved: list[tuple[Polygon, tuple]] = field(default_factory=list)  # lots, driveways + colour
    facets: list[tuple[Polygon, tuple]] = field(default_factory=list)  # roof facets + colour
    paint: list[tuple[object, int]] = field(default_factory=list)  # lines/shapes + paint code
    nodata: Polygon | None = None


def layout_scene(rng: np.random.Generator, size: int) -> Layout:
    """Lay out a rural scene with a river, woods, fields, roads and a small town."""
    s = float(size)
    out = Layout()
    frame = box(-60, -60, s + 60, s + 60)  # features run past the edges, as in a real map tile

    # River roughly north-south, main road roughly east-west, so the road bridges the river.
    river = _wavy_line(rng, s, angle=math.pi / 2 + rng.uniform(-0.4, 0.4),
                       amplitude=0.07 * s, wavelength=rng.uniform(0.45, 0.8) * s).intersection(frame)
    river_width = rng.uniform(16, 24)
    main = _wavy_line(rng, s, angle=rng.uniform(-0.35, 0.35), amplitude=0.025 * s,
                      wavelength=1.2 * s).intersection(frame)
    roads = [_Road(main, rng.uniform(10, 12), "main")]
    for _ in range(max(1, round(2.2 * s / 2048))):
        t = rng.uniform(0.15, 0.85) * main.length
        start = main.interpolate(t)
        angle = _direction(main, t) + rng.choice([-1, 1]) * rng.uniform(1.1, 2.0)
        line = _wavy_line(rng, s, angle=angle, amplitude=0.015 * s, wavelength=0.9 * s,
                          through=(start.x, start.y), half=True).intersection(frame)
        if line.length > 20:
            roads.append(_Road(_longest(line), rng.uniform(7, 8.5), "secondary"))

    # The town straddles the main road; its streets follow the road's local direction.
    town_t = rng.uniform(0.3, 0.7) * main.length
    centre = main.interpolate(town_t)
    town_angle = _direction(main, town_t)
    town_len, town_depth = min(0.45 * s, 700.0), min(0.38 * s, 520.0)
    town = _rotated_rect((centre.x, centre.y), town_len, town_depth, town_angle)
    block = rng.uniform(70, 95)
    streets = _street_grid(centre, town_len, town_depth, town_angle, block)
    roads += [_Road(line, rng.uniform(6, 7), "street") for line in streets]
    out.roads = roads
    road_area = unary_union([r.line.buffer(r.width / 2, cap_style="flat") for r in roads])
    river_area = river.buffer(river_width / 2, cap_style="flat")

    # Field parcels: the land split again and again across its long side (as farms divide).
    spacing = float(np.clip(s / 10, 70, 170))
    cells = _split_fields(rng, frame, spacing * spacing)
    kinds = rng.choice(["crop", "hay", "plowed", "woodlot"], size=len(cells),
                       p=[0.52, 0.22, 0.1, 0.16])
    town_clear = town.buffer(8)
    scene_box = box(0, 0, s, s)
    visible_area = []
    for cell, kind in zip(cells, kinds, strict=True):
        parcel = cell.difference(town_clear).buffer(-rng.uniform(1.5, 3.0), join_style="mitre")
        if parcel.is_empty:
            continue
        out.parcels.append((parcel, str(kind)))
        visible_area.append(parcel.intersection(scene_box).area)
        if kind != "woodlot" and rng.random() < 0.35:  # a hedgerow along the field's edge
            out.trees.append(cell.exterior.buffer(rng.uniform(2.0, 3.5)).difference(town_clear))
    _ensure_kind(out.parcels, visible_area, "plowed", min_area=0.02 * s * s)

    # Woods, a tree strip along the river, ponds ringed by trees, trees in yards.
    area_scale = (s / 2048) ** 2
    for _ in range(max(1, rng.poisson(6 * area_scale))):
        x, y = rng.uniform(0, s, 2)
        out.trees.append(_blob(rng, x, y, rng.uniform(50, 170)).difference(town_clear))
    riparian = [river.buffer(river_width / 2 + rng.uniform(10, 20))]
    for t in rng.uniform(0, river.length, max(2, round(8 * s / 2048))):
        p = river.interpolate(t)
        riparian.append(_blob(rng, p.x, p.y, rng.uniform(20, 55)))
    out.trees.append(unary_union(riparian).difference(town))
    water = [river_area]
    for _ in range(rng.poisson(2 * area_scale)):
        x, y = rng.uniform(0.1, 0.9, 2) * s
        pond = _blob(rng, x, y, rng.uniform(25, 70), roughness=0.18)
        if not pond.intersects(town_clear.union(road_area.buffer(15))):
            out.trees.append(pond.buffer(rng.uniform(6, 12)))
            water.append(pond)
    out.water = water
    yard_trees = rng.uniform(0, 1, (int(town.area / 350), 2))
    for u, v in yard_trees:
        p = _rect_point(centre, town_len, town_depth, town_angle, u, v)
        out.trees.append(Point(p).buffer(rng.uniform(3, 6.5), quad_segs=6))

    # Grass verges cleared along roads (also through woods), before water and bare ground.
    out.verges = [r.line.buffer(r.width / 2 + rng.uniform(2.5, 4.5), cap_style="flat")
                  for r in roads]

    # Bare ground: farm tracks into fields, and a construction site in town.
    blocked = [road_area.buffer(3), river_area.buffer(3)]
    country_roads = [r for r in roads if r.kind != "street"]
    for _ in range(max(1, round(2 * s / 2048))):
        r = country_roads[int(rng.integers(0, len(country_roads)))]
        t = rng.uniform(0.1, 0.9) * r.line.length
        start = r.line.interpolate(t)
        angle = _direction(r.line, t) + rng.choice([-1, 1]) * rng.uniform(1.2, 1.9)
        length = rng.uniform(80, 240)
        track = LineString([(start.x, start.y), (start.x + length * math.cos(angle),
                                                 start.y + length * math.sin(angle))])
        out.bare.append(track.buffer(rng.uniform(1.8, 2.5), cap_style="flat"))
    for _ in range(20):
        u, v = rng.uniform(0.15, 0.85, 2)
        site = _rotated_rect(_rect_point(centre, town_len, town_depth, town_angle, u, v),
                             rng.uniform(35, 60), rng.uniform(30, 50), town_angle)
        if not site.intersects(road_area.buffer(6)) and not site.intersects(river_area):
            out.bare.append(site)
            blocked.append(site.buffer(4))
            break

    # Buildings along the roads, facing them; shops with parking lots on the main road in town.
    placer = _Placer(unary_union(blocked), frame)
    for r in roads:
        _buildings_along(rng, r, town, placer, out)

    # Road paint: dashed yellow centre lines, white edge lines on the main road.
    for r in roads:
        if r.kind == "street":
            continue
        for dash in _dashes(r.line, 3.0, 9.0):
            out.paint.append((dash, YELLOW_PAINT))
        if r.kind == "main":
            for side in (-1, 1):
                edge = r.line.offset_curve(side * (r.width / 2 - 1.0))
                if not edge.is_empty:
                    out.paint.append((edge, WHITE_PAINT))
    out.nodata = _survey_gap(rng, s)
    return out


def _buildings_along(rng: np.random.Generator, road: _Road, town: Polygon, placer: _Placer,
                     out: Layout) -> None:
    """Place houses, shops or farmsteads on both sides of a road."""
    line = road.line
    for side in (-1.0, 1.0):
        t = rng.uniform(5, 20)
        while t < line.length:
            p = line.interpolate(t)
            in_town = town.contains(p)
            angle = _direction(line, t)
            tangent = np.array([math.cos(angle), math.sin(angle)])
            normal = side * np.array([-tangent[1], tangent[0]])
            edge = np.array([p.x, p.y]) + normal * road.width / 2
            if in_town and road.kind == "main" and rng.random() < 0.55:
                step = _place_shop(rng, edge, tangent, normal, angle, placer, out)
            elif in_town and rng.random() < 0.85:
                step = _place_house(rng, edge, tangent, normal, angle, placer, out, barn=False)
            elif not in_town and rng.random() < 0.1:
                step = _place_house(rng, edge, tangent, normal, angle, placer, out,
                                    barn=rng.random() < 0.5)
            else:
                step = rng.uniform(16, 26)
            t += step


def _place_house(rng, edge, tangent, normal, angle, placer, out, *, barn: bool) -> float:
    """A gabled house set back from the road with a driveway; maybe a barn and yard behind."""
    width, depth = rng.uniform(9, 16), rng.uniform(8, 12)
    setback = rng.uniform(7, 15)
    centre = edge + normal * (setback + depth / 2)
    house = _rotated_rect(centre, width, depth, angle)
    if not placer.free(house):
        return width
    drive_x = rng.choice([-1, 1]) * (width / 2 - 2)
    drive = LineString([edge + tangent * drive_x, edge + tangent * drive_x + normal * setback])
    drive = drive.buffer(1.6, cap_style="flat")
    placer.add(house.union(drive), margin=3)
    out.paved.append((drive, _jitter(rng, (150, 148, 140), 8) + (70,)))
    _add_roof(rng, house, angle, out, flat=False)
    if barn:
        bw, bd = rng.uniform(14, 24), rng.uniform(10, 14)
        bcentre = centre + normal * (depth / 2 + rng.uniform(14, 24) + bd / 2)
        bcentre = bcentre + tangent * rng.uniform(-10, 10)
        barn_rect = _rotated_rect(bcentre, bw, bd, angle + math.pi / 2 * rng.integers(0, 2))
        yard = _rotated_rect(bcentre, bw + 16, bd + 14, angle)
        if placer.free(yard):
            placer.add(yard, margin=2)
            out.bare.append(yard)
            _add_roof(rng, barn_rect, angle, out, flat=False, barn=True)
    return width + rng.uniform(6, 14)


def _place_shop(rng, edge, tangent, normal, angle, placer, out) -> float:
    """A flat-roofed shop with a striped parking lot between it and the road."""
    width, depth = rng.uniform(24, 45), rng.uniform(18, 32)
    lot_depth = rng.uniform(20, 32)
    centre = edge + normal * (3 + lot_depth + depth / 2)
    shop = _rotated_rect(centre, width, depth, angle)
    lot_centre = edge + normal * (3 + lot_depth / 2)
    lot = _rotated_rect(lot_centre, width + 10, lot_depth, angle)
    if not placer.free(shop.union(lot)):
        return 10.0
    placer.add(shop.union(lot), margin=4)
    out.paved.append((lot, _jitter(rng, (98, 98, 97), 6) + (55,)))
    # Parking stalls: short white lines every 2.7 m, from the lot's back half.
    for x in np.arange(-(width + 10) / 2 + 2, (width + 10) / 2 - 2, 2.7):
        a = lot_centre + tangent * x + normal * (lot_depth / 2 - 6)
        out.paint.append((LineString([a, a + normal * 5]), WHITE_PAINT))
    _add_roof(rng, shop, angle, out, flat=True)
    return width + 14


def _add_roof(rng, rect: Polygon, angle: float, out: Layout, *, flat: bool,
              barn: bool = False) -> None:
    """Roof facets (two for a gable along the long side, one when flat) and roof details."""
    if flat:
        colour = _jitter(rng, (182, 182, 178), 10) + (80,)
        out.facets.append((rect, colour))
        for _ in range(rng.integers(2, 6)):  # air-conditioning units
            c = np.array(rect.centroid.coords[0]) + rng.uniform(-6, 6, 2)
            unit = _rotated_rect(c, rng.uniform(2, 3.5), rng.uniform(2, 3.5), angle)
            out.paint.append((unit, ROOF_UNIT))
        return
    palettes = [(112, 112, 116), (70, 70, 76), (136, 78, 62), (118, 96, 80), (160, 160, 158),
                (92, 104, 118)]
    if barn:
        palettes = [(150, 60, 50), (175, 178, 180), (120, 120, 122)]
    base = _jitter(rng, palettes[int(rng.integers(0, len(palettes)))], 8)
    coords = np.array(rect.exterior.coords[:4])
    # The ridge runs along the rectangle's longer side, through its centre.
    e1, e2 = coords[1] - coords[0], coords[2] - coords[1]
    long_axis, short_axis = (e1, e2) if np.hypot(*e1) >= np.hypot(*e2) else (e2, e1)
    centre = coords.mean(axis=0)
    ridge = LineString([centre - long_axis / 2, centre + long_axis / 2])
    for sign in (-1, 1):
        half = _rotated_rect((centre + sign * short_axis / 4), np.hypot(*long_axis),
                             np.hypot(*short_axis) / 2, math.atan2(long_axis[1], long_axis[0]))
        facing = sign * short_axis / np.hypot(*short_axis)
        shade = 1.0 + 0.22 * float(facing @ SUN)  # the facet facing the sun is brighter
        out.facets.append((half, tuple(int(np.clip(c * shade, 0, 255)) for c in base)
                           + (int(60 + 25 * shade),)))
    out.paint.append((ridge, RIDGE))


class _Placer:
    """Keeps buildings off roads, water and each other (a coarse grid of occupied shapes)."""

    def __init__(self, blocked, frame: Polygon, cell: float = 64.0):
        self.blocked = blocked
        shapely.prepare(self.blocked)
        self.inside = frame
        self.cell = cell
        self.grid: dict[tuple[int, int], list] = {}

    def _keys(self, geom) -> Iterable[tuple[int, int]]:
        x0, y0, x1, y1 = geom.bounds
        for i in range(int(x0 // self.cell), int(x1 // self.cell) + 1):
            for j in range(int(y0 // self.cell), int(y1 // self.cell) + 1):
                yield i, j

    def free(self, geom) -> bool:
        if not self.inside.contains(geom) or self.blocked.intersects(geom):
            return False
        return not any(other.intersects(geom) for key in self._keys(geom)
                       for other in self.grid.get(key, ()))

    def add(self, geom, margin: float) -> None:
        grown = geom.buffer(margin)
        for key in self._keys(grown):
            self.grid.setdefault(key, []).append(grown)


def _wavy_line(rng, s: float, *, angle: float, amplitude: float, wavelength: float,
               through: tuple[float, float] | None = None, half: bool = False) -> LineString:
    """A line across the scene at ``angle`` with two sine meanders (a river, a country road)."""
    cx, cy = through if through is not None else rng.uniform(0.3, 0.7, 2) * s
    t = np.arange(0.0 if half else -1.5 * s, 1.5 * s, 4.0)
    phases = rng.uniform(0, 2 * math.pi, 2)
    # The wiggle is zero at t = 0 so a branch road starts exactly on its parent road.
    wiggle = (amplitude * (np.sin(2 * math.pi * t / wavelength + phases[0]) - math.sin(phases[0]))
              + 0.35 * amplitude * (np.sin(2 * math.pi * t / (0.37 * wavelength) + phases[1])
                                    - math.sin(phases[1])))
    d = np.array([math.cos(angle), math.sin(angle)])
    n = np.array([-d[1], d[0]])
    pts = np.array([cx, cy]) + t[:, None] * d + wiggle[:, None] * n
    return LineString(pts)


def _split_fields(rng, region: Polygon, field_area: float) -> list[Polygon]:
    """Cut ``region`` into fields of about ``field_area``: each cut crosses a piece's long side."""
    todo, fields = [region], []
    while todo:
        piece = todo.pop()
        if piece.area < field_area * rng.uniform(0.5, 1.6):
            fields.append(piece)
            continue
        corners = np.array(piece.minimum_rotated_rectangle.exterior.coords[:3])
        e1, e2 = corners[1] - corners[0], corners[2] - corners[1]
        long_axis = e1 if np.hypot(*e1) >= np.hypot(*e2) else e2
        angle = math.atan2(long_axis[1], long_axis[0]) + math.pi / 2 + rng.uniform(-0.12, 0.12)
        c = np.array(piece.centroid.coords[0]) + long_axis * rng.uniform(-0.15, 0.15)
        reach = 2 * np.hypot(*long_axis) + 2 * np.hypot(*(e1 + e2))
        d = np.array([math.cos(angle), math.sin(angle)]) * reach
        parts = [g for g in split(piece, LineString([c - d, c + d])).geoms
                 if g.geom_type == "Polygon"]
        if len(parts) < 2:
            fields.append(piece)
        else:
            todo.extend(parts)
    return fields


def _longest(geom) -> LineString:
    """The longest line of a (multi)line geometry."""
    if geom.geom_type == "LineString":
        return geom
    return max(getattr(geom, "geoms", []), key=lambda g: g.length)


def _direction(line: LineString, t: float) -> float:
    """Angle (radians) of a line's tangent at distance ``t`` along it."""
    a = line.interpolate(max(t - 3, 0))
    b = line.interpolate(min(t + 3, line.length))
    return math.atan2(b.y - a.y, b.x - a.x)


def _rotated_rect(centre: Sequence[float] | np.ndarray, length: float, depth: float,
                  angle: float) -> Polygon:
    """A rectangle centred on ``centre`` (x, y), ``length`` along ``angle`` and ``depth``
    across."""
    d = np.array([math.cos(angle), math.sin(angle)]) * length / 2
    n = np.array([-math.sin(angle), math.cos(angle)]) * depth / 2
    c = np.array([centre[0], centre[1]])
    return Polygon([c - d - n, c + d - n, c + d + n, c - d + n])


def _rect_point(centre: Point, length: float, depth: float, angle: float,
                u: float, v: float) -> tuple[float, float]:
    """The point at fractions (u, v) across a rotated rectangle."""
    d = np.array([math.cos(angle), math.sin(angle)])
    n = np.array([-d[1], d[0]])
    p = np.array([centre.x, centre.y]) + (u - 0.5) * length * d + (v - 0.5) * depth * n
    return float(p[0]), float(p[1])


def _street_grid(centre: Point, length: float, depth: float, angle: float,
                 block: float) -> list[LineString]:
    """Town streets: lines parallel and across the main road, ``block`` metres apart."""
    d = np.array([math.cos(angle), math.sin(angle)])
    n = np.array([-d[1], d[0]])
    c = np.array([centre.x, centre.y])
    lines = []
    for k in range(1, int(depth / 2 // block) + 1):
        for sign in (-1, 1):
            o = c + sign * k * block * n
            lines.append(LineString([o - d * length / 2, o + d * length / 2]))
    for k in range(-int(length / 2 // block), int(length / 2 // block) + 1):
        o = c + (k + 0.5) * block * d
        lines.append(LineString([o - n * depth / 2, o + n * depth / 2]))
    return lines


def _blob(rng, x: float, y: float, radius: float, roughness: float = 0.3) -> Polygon:
    """An irregular star-shaped patch (wood, pond): radius modulated by a few harmonics."""
    theta = np.linspace(0, 2 * math.pi, 72, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 7):
        r += roughness / k * rng.uniform(0.3, 1.0) * np.cos(k * theta + rng.uniform(0, 6.3))
    r *= radius
    return Polygon(np.c_[x + r * np.cos(theta), y + r * np.sin(theta)]).buffer(0)


def _dashes(line: LineString, dash: float, gap: float) -> list[LineString]:
    """Dash segments along a line (lane markings)."""
    return [substring(line, t, t + dash) for t in np.arange(2.0, line.length - dash, dash + gap)]


def _survey_gap(rng, s: float) -> Polygon:
    """A corner outside the survey boundary (nodata): 2.5-5 % of the scene, wavy edge."""
    fraction = rng.uniform(0.025, 0.05)
    ratio = rng.uniform(0.6, 1.6)
    a = math.sqrt(2 * fraction * ratio) * s
    b = 2 * fraction * s * s / a
    t = np.linspace(0, 1, 60)
    edge = np.c_[a * (1 - t), b * t]
    normal = np.array([b, a]) / math.hypot(a, b)
    wobble = 0.06 * min(a, b) * (np.sin(2 * math.pi * 2.5 * t + rng.uniform(0, 6.3))
                                 + 0.5 * np.sin(2 * math.pi * 7 * t + rng.uniform(0, 6.3)))
    edge = edge + (wobble * np.sin(math.pi * t))[:, None] * normal
    local = np.vstack([[[-5.0, -5.0]], [[a, -5.0]], edge, [[-5.0, b]]])
    corner = int(rng.integers(0, 4))
    x = local[:, 0] if corner in (0, 2) else s - local[:, 0]
    y = local[:, 1] if corner in (0, 1) else s - local[:, 1]
    return Polygon(np.c_[x, y]).buffer(0)


def _ensure_kind(parcels: list[tuple[Polygon, str]], visible: list[float], kind: str,
                 min_area: float) -> None:
    """Make sure a parcel of ``kind`` shows (small scenes must still show every class)."""
    seen = [i for i, (p, k) in enumerate(parcels) if k == kind and visible[i] > min_area]
    if seen:
        return
    candidates = [i for i, (_, k) in enumerate(parcels) if k in ("crop", "hay")]
    if not candidates:
        candidates = list(range(len(parcels)))
    if candidates:
        i = max(candidates, key=lambda j: visible[j])
        parcels[i] = (parcels[i][0], kind)


def _jitter(rng, colour: tuple, amount: float) -> tuple:
    return tuple(int(np.clip(c + rng.uniform(-amount, amount), 0, 255)) for c in colour)


# ---------------------------------------------------------------------------------------------
# Rasterizing the layout
# ---------------------------------------------------------------------------------------------


@dataclass
class SceneMaps:
    """Rasters the renderer reads: true labels plus per-object ids for per-object looks."""

    labels: np.ndarray  # uint8 class values everywhere (also under the survey gap)
    nodata: np.ndarray  # bool, outside the survey boundary
    parcel: np.ndarray  # int32, parcel number + 1 (0: verge, lawn, or not a field)
    parcel_kind: np.ndarray  # per parcel number + 1: 0 other, 1 crop, 2 hay, 3 plowed
    surface: np.ndarray  # int32, surface number + 1 for roofs, lots, roads
    surface_colour: np.ndarray  # (n + 1, 4) float32 RGBN per surface number + 1
    roof: np.ndarray  # bool, building roofs (cast shadows)
    paint: np.ndarray  # uint8 paint / roof detail codes


def rasterize_layout(layout: Layout, size: int) -> SceneMaps:
    """The layout burnt into ``size`` x ``size`` rasters (later shapes cover earlier ones)."""
    shape = (size, size)

    def burn(shapes, fill=0, dtype="uint8"):
        shapes = [(g, v) for g, v in shapes if not g.is_empty]
        if not shapes:
            return np.full(shape, fill, dtype=dtype)
        return rasterize(shapes, out_shape=shape, fill=fill, dtype=dtype)

    kind_value = {"crop": LOW_VEG, "hay": LOW_VEG, "plowed": BARREN, "woodlot": TREES}
    roads = [(r.line.buffer(r.width / 2, cap_style="flat"), ROADS) for r in layout.roads]
    labels = burn(
        [(p, kind_value[k]) for p, k in layout.parcels]
        + [(g, TREES) for g in layout.trees]
        + [(g, LOW_VEG) for g in layout.verges]
        + [(g, WATER) for g in layout.water]
        + [(g, BARREN) for g in layout.bare]
        + roads
        + [(g, IMPERVIOUS) for g, _ in layout.paved]
        + [(g, IMPERVIOUS) for g, _ in layout.facets],
        fill=LOW_VEG,
    )
    parcel = burn([(p, i + 1) for i, (p, _) in enumerate(layout.parcels)]
                  + [(g, 0) for g in layout.verges], dtype="int32")
    kind_code = {"crop": 1, "hay": 2, "plowed": 3, "woodlot": 0}
    parcel_kind = np.array([0] + [kind_code[k] for _, k in layout.parcels], dtype=np.int8)

    # Surfaces: each road, lot and roof facet gets its own colour (RGB + NIR).
    road_colours = [(60 + d, 61 + d, 65 + d, 45) for d in
                    np.linspace(-6, 10, max(len(layout.roads), 1)).round()]
    surfaces = ([(g, c) for (g, _), c in zip(roads, road_colours, strict=False)]
                + list(layout.paved) + list(layout.facets))
    surface = burn([(g, i + 1) for i, (g, _) in enumerate(surfaces)], dtype="int32")
    surface_colour = np.array([(0, 0, 0, 0)] + [c for _, c in surfaces], dtype=np.float32)
    first_facet = len(surfaces) - len(layout.facets) + 1
    roof = surface >= first_facet if layout.facets else np.zeros(shape, bool)
    paint = burn(layout.paint)
    nodata = burn([(layout.nodata, 1)]).astype(bool)
    return SceneMaps(labels, nodata, parcel, parcel_kind, surface, surface_colour, roof, paint)
