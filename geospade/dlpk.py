"""Esri deep learning packages (.dlpk): a geospade model, ready for ArcGIS Pro.

A .dlpk is a zip that Pro's deep-learning tools open directly. :func:`export_model` writes
one holding ``<name>.emd`` (the Esri model definition: what Pro reads to set up the tool),
``<name>.pt`` (the checkpoint slimmed to the generator's EMA weights and the model card) and
``GeoSPADERasterFunction.py`` (the Python raster function the .emd names as its
``InferenceFunction``; a copy of :mod:`geospade.arcgis.raster_function`). Pro finds the
function's class by the file's name, so file and class are both ``GeoSPADERasterFunction``,
as in Esri's own templates. Use it with
"Translate Pixels Using Deep Learning" on a land-cover raster.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from geospade import __version__
from geospade.checkpoint import ModelCard, checkpoint_input, save_generator
from geospade.errors import InputError
from geospade.raster import atomic_file, check_not_input, check_output_file

RASTER_FUNCTION = "GeoSPADERasterFunction.py"
#: Pro lists translation models by type; geospade's is its own, run by the raster function.
MODEL_TYPE = "ImageTranslation"
DEFAULT_BATCH_SIZE = 4


def export_model(
    run_dir_or_checkpoint: str | Path,
    out_path: str | Path,
    overwrite: bool = False,
    *,
    tile_size: int | None = None,
    padding: int | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    half: bool = False,
) -> Path:
    """Write a trained model as an Esri model package for ArcGIS Pro.

    Args:
        run_dir_or_checkpoint: a checkpoint file or a training run folder (its latest
            checkpoint).
        out_path: the .dlpk to write; the files inside are named after its stem.
        overwrite: replace an existing ``out_path``.
        tile_size: default tile side for Pro's blocks (default: the training chip size).
        padding: default context pixels around each block (default: the generator's
            receptive field, as synthesis uses for its halo).
        seed: default noise seed.
        batch_size: default tiles per block.
        half: store the weights as float16 (half the package size; they run in float32).

    Returns:
        ``out_path``.

    Raises:
        InputError: ``out_path`` does not end in .dlpk, or a default is not usable.
        OutputExistsError: ``out_path`` exists and ``overwrite`` is False.
        CheckpointError: the checkpoint cannot be read or holds no generator.
    """
    from geospade.synthesis import load_model
    from geospade.synthesis.plan import round_up

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".dlpk":
        raise InputError("a model package must end in .dlpk", path=out_path,
                         hint=f"Use {out_path.with_suffix('.dlpk').name}.")
    check_output_file(out_path, overwrite)
    check_not_input([out_path], {"checkpoint": checkpoint_input(run_dir_or_checkpoint)})
    model = load_model(run_dir_or_checkpoint, "cpu")
    card = model.card
    factor = model.downsampling_factor
    tile_size = card.chip_size if tile_size is None else int(tile_size)
    if tile_size <= 0 or tile_size % factor:
        raise InputError(f"tile size {tile_size} is not a positive multiple of {factor}, the "
                         "generator's downsampling factor",
                         hint=f"Use {round_up(max(tile_size, factor), factor)}.")
    if padding is None:
        padding = model.default_halo
    elif padding < 0:
        raise InputError(f"padding must not be negative, got {padding}", hint="Use 0 or more.")
    padding = round_up(int(padding), factor)
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}", hint="Use 4.")

    name = out_path.stem
    emd = model_definition(card, name, tile_size=tile_size, padding=padding, seed=int(seed),
                           batch_size=int(batch_size))
    state = {k: v.detach().cpu() for k, v in model.generator.state_dict().items()}
    with atomic_file(out_path, overwrite) as tmp:
        weights = tmp.with_name(tmp.name + ".pt")
        try:
            # Only what synthesis needs: no discriminator, optimisers or RNG state.
            save_generator(weights, card, state, half=half)
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(f"{name}.emd", json.dumps(emd, indent=2))
                zf.write(weights, f"{name}.pt")
                zf.write(raster_function_source(), RASTER_FUNCTION)
        finally:
            weights.unlink(missing_ok=True)
    return out_path


def raster_function_source() -> Path:
    """The raster function file shipped in every package."""
    return Path(__file__).parent / "arcgis" / "raster_function.py"


def model_definition(card: ModelCard, name: str, *, tile_size: int, padding: int, seed: int,
                     batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, Any]:
    """The .emd of a package: Esri's keys, then geospade's own (``GeoSPADE``).

    Args:
        card: the checkpoint's model card.
        name: the package's file stem (the weights are ``<name>.pt``).
        tile_size, padding, seed, batch_size: the raster function's default arguments.
    """
    scheme, imagery = card.class_scheme, card.imagery
    emd: dict[str, Any] = {
        "Framework": "PyTorch",
        "ModelConfiguration": "Custom",
        "ModelType": MODEL_TYPE,
        "InferenceFunction": RASTER_FUNCTION,
        "ModelFile": f"{name}.pt",
        "ModelFormat": "NCHW",
        "ModelName": "GeoSPADE",
        "Description": "SPADE generator: land cover in, synthetic imagery out (geospade "
                       f"{__version__}). Needs geospade installed in ArcGIS Pro's Python.",
        "ImageHeight": card.chip_size,
        "ImageWidth": card.chip_size,
        # Band indexes are 0-based in Esri's model definitions: the land cover's only band.
        "ExtractBands": [0],
        "SupportsVariableTileSize": True,
        "ImageSpaceUsed": "MAP_SPACE",
        "IsMultispectral": imagery.count > 3,
        "ModelParameters": {"tile_size": tile_size, "padding": padding, "seed": seed,
                            "batch_size": batch_size},
        "Classes": [{"Value": c.value, "Name": c.name, "Color": list(c.color)}
                    for c in scheme.classes],
        "n_channel": imagery.count,
    }
    cell = cell_size(card)
    if cell is not None:
        emd["MinCellSize"] = emd["MaxCellSize"] = cell
    emd["GeoSPADE"] = {
        "geospade_version": __version__,
        "step": card.step,
        "nodata": scheme.nodata,
        "output_bands": list(imagery.band_names),
        "output_dtype": imagery.dtype,
        "crs_units": card.crs_units,
        "model_config": dict(card.model_config),
    }
    return emd


def cell_size(card: ModelCard) -> dict[str, Any] | None:
    """Esri's ``{x, y, spatialReference}`` for the training resolution, when it is known."""
    if card.resolution is None:
        return None
    cell: dict[str, Any] = {"x": abs(card.resolution[0]), "y": abs(card.resolution[1])}
    wkid = _epsg(card.crs_wkt)
    if wkid is not None:
        cell["spatialReference"] = {"wkid": wkid, "latestWkid": wkid}
    return cell


def _epsg(crs_wkt: str | None) -> int | None:
    if not crs_wkt:
        return None
    from rasterio.crs import CRS

    try:
        return CRS.from_wkt(crs_wkt).to_epsg()
    except Exception:  # an unparseable or custom CRS simply gets no wkid
        return None
