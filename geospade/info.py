"""What a geospade file is: a checkpoint's model card, a chip folder's summary, a raster's grid.

:func:`describe` tells the three apart and returns a plain dict (JSON-ready);
:func:`format_info` turns it into the aligned text ``geospade info`` prints. Checkpoints are
read through :func:`geospade.checkpoint.load_checkpoint`, the loader every command uses, so
inspecting a model file is no riskier than synthesising with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from geospade.errors import InputError

MAX_SCAN_PIXELS = 256 * 2**20  # class values of larger rasters are not counted (a full read)
CHIP_FOLDER_MARKERS = ("images", "labels", "map.txt", "esri_model_definition.emd")


def describe(path: str | Path) -> dict[str, Any]:
    """Summarise a checkpoint (.pt or run folder), a chip folder or a raster.

    Args:
        path: the file or folder.

    Raises:
        InputError: the path does not exist or is none of the three.
        CheckpointError: a .pt file that is not a geospade checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("not found", path=path, hint="Check the path.")
    if path.is_dir():
        if (path / "checkpoints" / "latest.pt").exists() or (path / "latest.pt").exists():
            return checkpoint_info(path)
        if any((path / marker).exists() for marker in CHIP_FOLDER_MARKERS):
            return chips_info(path)
        raise InputError("folder is neither a training run nor a chip folder", path=path,
                         hint="Give a checkpoint .pt, a run folder, a chip folder or a raster.")
    if path.suffix.lower() in (".pt", ".pth", ".ckpt"):
        return checkpoint_info(path)
    return raster_info(path)


def checkpoint_info(path: str | Path) -> dict[str, Any]:
    """A checkpoint's model card: classes, bands, normalisation, chip size, grid, step, preset."""
    from geospade.checkpoint import load_checkpoint, read_card, resolve_checkpoint_path

    file = resolve_checkpoint_path(path)
    payload = load_checkpoint(file, "cpu")
    card = read_card(payload)
    config = card.model_config
    is_segmenter = "segmenter" in payload
    weights = payload.get("segmenter" if is_segmenter else "generator_ema") \
        or payload.get("generator") or {}
    info: dict[str, Any] = {
        "kind": "segmenter" if is_segmenter else "generator checkpoint",
        "path": str(file),
        "file_mb": round(file.stat().st_size / 2**20, 1),
        "geospade_version": payload.get("geospade_version"),
        "step": card.step or payload.get("step", 0),
        "preset": config.get("preset"),
        "parameters": _parameter_count(weights),
        "chip_size": card.chip_size,
        "resolution": None if card.resolution is None else list(card.resolution),
        "crs": _crs_name(card.crs_wkt),
        "crs_units": card.crs_units,
        "bands": _bands(card.imagery),
        "classes": _classes(card.class_scheme),
        "nodata": card.class_scheme.nodata,
        "contents": sorted(k for k in payload if k not in ("card", "format", "version")),
    }
    if not is_segmenter:
        keys = ("ngf", "num_upsampling", "adaptive", "class_noise", "upsample", "noise_dim",
                "noise_spatial", "noise_field", "noise_field_spacing", "noise_field_mode",
                "field_pool", "noise_texture", "texture_gain", "field_gain", "discriminator")
        info["model"] = {k: config[k] for k in keys if k in config}
    extra = {k: v for k, v in card.extra.items() if k in ("device", "precision", "world_size",
                                                          "chips_dir", "validation")}
    if extra:
        info["training"] = extra
    return info


def chips_info(path: str | Path) -> dict[str, Any]:
    """A chip folder's summary: chip count per split, chip size, classes, bands, grid."""
    from geospade.chips.folder import read_chip_folder

    folder = read_chip_folder(path, progress=False)
    return {
        "kind": "chip folder",
        "path": str(folder.root),
        "layout": folder.source,
        "chips": len(folder.records),
        "splits": folder.split_counts(),
        "split_method": folder.split_method,
        "chip_size": folder.tile_size,
        "resolution": None if folder.resolution is None else list(folder.resolution),
        "crs": _crs_name(folder.crs_wkt),
        "crs_units": folder.crs_units,
        "bands": _bands(folder.imagery),
        "classes": _classes(folder.class_scheme),
        "nodata": folder.class_scheme.nodata,
    }


def raster_info(path: str | Path) -> dict[str, Any]:
    """A raster's grid (size, CRS, transform), bands and nodata; for a single integer band
    (a land cover), the class values present with their pixel counts and names."""
    import numpy as np

    from geospade.raster import open_raster

    with open_raster(path) as ds:
        info: dict[str, Any] = {
            "kind": "raster",
            "path": str(path),
            "driver": ds.driver,
            "width": ds.width,
            "height": ds.height,
            "bands": ds.count,
            "dtype": ds.dtypes[0],
            "crs": None if ds.crs is None else ds.crs.to_string(),
            "crs_units": None if ds.crs is None else ds.crs.linear_units,
            "resolution": [abs(ds.res[0]), abs(ds.res[1])],
            "transform": list(ds.transform)[:6],
            "bounds": list(ds.bounds),
            "nodata": ds.nodata,
        }
        integer = np.issubdtype(np.dtype(ds.dtypes[0]), np.integer)
        if ds.count == 1 and integer:
            if ds.width * ds.height > MAX_SCAN_PIXELS:
                info["classes"] = "not counted (more than 256 Mpx)"
            else:
                info["classes"] = _raster_classes(ds)
        else:
            info["land_cover"] = ("no: " + (f"{ds.count} bands" if ds.count > 1
                                            else f"{ds.dtypes[0]} values") +
                                  " (a land cover is one band of integer classes)")
    return info


def _raster_classes(ds) -> list[dict[str, Any]]:
    from geospade.classes import raster_values, scheme_from_raster
    from geospade.errors import ClassSchemeError

    counts = raster_values(ds)
    try:
        scheme = scheme_from_raster(ds, counts=counts)
    except ClassSchemeError:
        return []
    names = {c.value: c.name for c in scheme.classes}
    return [{"value": v, "name": names.get(v, f"class_{v}"), "pixels": n}
            for v, n in sorted(counts.items())]


def _parameter_count(state: Mapping) -> int | None:
    try:
        return int(sum(t.numel() for t in state.values() if hasattr(t, "numel")))
    except (AttributeError, TypeError):
        return None


def _crs_name(wkt: str | None) -> str | None:
    if not wkt:
        return None
    try:
        from rasterio.crs import CRS

        crs = CRS.from_wkt(wkt)
        epsg = crs.to_epsg()
        return f"EPSG:{epsg}" if epsg else crs.to_string()
    except Exception:  # an unparsable WKT is shown as stored
        return wkt


def _bands(imagery) -> dict[str, Any]:
    return {"count": imagery.count, "dtype": imagery.dtype, "names": list(imagery.band_names),
            "low": list(imagery.low), "high": list(imagery.high)}


def _classes(scheme) -> list[dict[str, Any]]:
    return [{"value": c.value, "name": c.name, "color": list(c.color)} for c in scheme.classes]


def format_info(info: Mapping[str, Any]) -> str:
    """The aligned, human-readable text of a :func:`describe` result."""
    lines = []
    for key, value in info.items():
        label = key.replace("_", " ")
        if key == "classes" and isinstance(value, list):
            lines.append(f"{label + ':':<18}{len(value)}")
            for c in value:
                extra = f"  {c['pixels']} px" if "pixels" in c else ""
                lines.append(f"{'':<18}{c['value']:>5}  {c['name']}{extra}")
        elif key == "bands" and isinstance(value, Mapping):
            lines.append(f"{label + ':':<18}{value['count']} x {value['dtype']} "
                         f"({', '.join(value['names'])})")
            ranges = ", ".join(f"{lo:g}..{hi:g}" for lo, hi in zip(value["low"], value["high"],
                                                                   strict=True))
            lines.append(f"{'normalisation:':<18}{ranges} -> -1..1")
        elif isinstance(value, Mapping):
            text = ", ".join(f"{k}={v}" for k, v in value.items())
            lines.append(f"{label + ':':<18}{text}")
        elif isinstance(value, list):
            text = ", ".join(f"{v:.10g}" if isinstance(v, float) else str(v) for v in value)
            lines.append(f"{label + ':':<18}{text}")
        else:
            lines.append(f"{label + ':':<18}{'-' if value is None else value}")
    return "\n".join(lines)
