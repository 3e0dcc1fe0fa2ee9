"""The Python raster function that ArcGIS Pro runs for a geospade model package (.dlpk).

"Translate Pixels Using Deep Learning" loads this file (the .emd's ``InferenceFunction``; a
copy ships in every package as ``GeoSPADERasterFunction.py``: Pro looks the class up by the
file's name), asks it how to read the land
cover (:meth:`~GeoSPADERasterFunction.getConfiguration`), then hands it one block at a time:
``tx`` x ``ty`` pixels plus ``padding`` pixels of context on every side. It expects imagery
for the block without the padding, as Esri's own translation functions return it.

Generation is geospade's: each padded block goes through
:func:`geospade.synthesis.synthesize_array` as a single tile, with the noise drawn for the
block's place in the whole raster, so blocks join without seams when the padding covers the
generator's receptive field (the default). geospade, with torch and rasterio, must be
installed in the ArcGIS Pro Python environment that runs the tool.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from geospade.errors import CheckpointError, InputError
from geospade.synthesis import LoadedModel, load_model, synthesize_array
from geospade.synthesis.plan import round_up

#: What Pro's "device" argument may hold besides auto/cpu/cuda/cuda:N: a GPU id, -1 for the
#: CPU, -2 for "pick one".
PRO_CPU, PRO_ANY = -1, -2


class GeoSPADERasterFunction:
    """Land cover in, generated imagery out, block by block, for ArcGIS Pro.

    Pro calls, in order: :meth:`initialize` (the .emd), :meth:`getParameterInfo`,
    :meth:`getConfiguration` (the tool's model arguments), :meth:`updateRasterInfo` and
    :meth:`updatePixels` for every block.
    """

    def __init__(self):
        self.name = "GeoSPADE"
        self.description = ("Generates aerial imagery from a land-cover raster with a "
                            "geospade SPADE model.")
        self.emd: dict[str, Any] = {}
        self.checkpoint: Path | None = None
        self.model: LoadedModel | None = None
        self.device = "auto"
        self.tile_size = 256
        self.padding = 0
        self.batch_size = 4
        self.seed = 0

    # -- set-up --------------------------------------------------------------------------

    def initialize(self, **kwargs) -> None:
        """Read the .emd (a path or its JSON text) and load the checkpoint it names."""
        if "model" not in kwargs:
            return
        self.emd, base = read_model_definition(kwargs["model"])
        self.checkpoint = model_file(self.emd, base)
        self.device = pro_device(kwargs.get("device", "auto"))
        self.model = load_model(self.checkpoint, self.device)
        params = self.emd.get("ModelParameters", {})
        self.tile_size = int(params.get("tile_size", self.emd.get("ImageHeight", 256)))
        self.padding = int(params.get("padding", self._default_padding()))
        self.batch_size = int(params.get("batch_size", 4))
        self.seed = int(params.get("seed", 0))

    def getParameterInfo(self) -> list[dict[str, Any]]:
        """The raster and the .emd (as every deep-learning function), then the model arguments."""
        return [
            {"name": "raster", "dataType": "raster", "required": True,
             "displayName": "Raster", "description": "Land-cover raster (single band, integer)"},
            {"name": "model", "dataType": "string", "required": True,
             "displayName": "Input Model Definition (EMD) File",
             "description": "Model definition (.emd) of a geospade model package"},
            {"name": "padding", "dataType": "numeric", "required": False,
             "value": self.padding, "displayName": "Padding",
             "description": "Context pixels read on every side of a block; at least the "
                            "generator's receptive field for seamless blocks"},
            {"name": "batch_size", "dataType": "numeric", "required": False,
             "value": self.batch_size, "displayName": "Batch Size",
             "description": "Tiles per block: blocks are rows x columns of tiles"},
            {"name": "seed", "dataType": "numeric", "required": False, "value": self.seed,
             "displayName": "Seed",
             "description": "Noise seed: one look for the whole raster"},
            {"name": "device", "dataType": "string", "required": False,
             "value": str(self.device), "displayName": "Device",
             "description": "auto, cpu, cuda, cuda:N or a GPU id"},
            {"name": "tile_size", "dataType": "numeric", "required": False,
             "value": self.tile_size, "displayName": "Tile Size",
             "description": "Side of a tile in pixels, without padding"},
        ]

    def getConfiguration(self, **scalars) -> dict[str, Any]:
        """How Pro should read the land cover: band 1, blocks of whole tiles, padding."""
        model = self._loaded()
        factor = model.downsampling_factor
        self.tile_size = _int(scalars.get("tile_size"), self.tile_size)
        if self.tile_size <= 0 or self.tile_size % factor:
            raise InputError(f"tile_size {self.tile_size} is not a positive multiple of "
                             f"{factor}, the generator's downsampling factor",
                             hint=f"Use {round_up(max(self.tile_size, factor), factor)}.")
        # Rounded up so every padded block starts on the generator's coarsest grid.
        self.padding = round_up(max(0, _int(scalars.get("padding"), self.padding)), factor)
        self.batch_size = max(1, _int(scalars.get("batch_size"), self.batch_size))
        self.seed = _int(scalars.get("seed"), self.seed)
        device = pro_device(scalars.get("device", self.device))
        if str(device) != str(self.device):
            self.device = device
            self.model = load_model(self._checkpoint(), device)
        rows, cols = tile_rectangle(self.batch_size)
        return {
            "extractBands": (0,),
            "padding": self.padding,
            "tx": cols * self.tile_size,
            "ty": rows * self.tile_size,
            "fixedTileSize": 1,
            "inputMask": True,
            # Keep the land cover's extent, cell size and CRS (4) and resampling (8); not its
            # pixel type or NoData value, which are a class value in imagery terms.
            "inheritProperties": 4 | 8,
            "invalidateProperties": 2 | 4 | 8,
        }

    def updateRasterInfo(self, **kwargs) -> dict[str, Any]:
        """The output: the training imagery's band count and pixel type, and its value range."""
        model = self._loaded()
        raster_info = kwargs.get("raster_info") or {}
        pixel_type = str(raster_info.get("pixelType", "u1"))
        if pixel_type.startswith("f"):
            raise InputError(f"the land cover has pixel type {pixel_type}; geospade needs an "
                             "integer (classified) raster",
                             hint="Give the classified land cover, not a continuous raster.")
        imagery = model.imagery
        output = kwargs.setdefault("output_info", {})
        output["bandCount"] = imagery.count
        output["pixelType"] = numpy_pixel_type(imagery.dtype)
        output["statistics"] = tuple({"minimum": float(lo), "maximum": float(hi)}
                                     for lo, hi in zip(imagery.low, imagery.high, strict=True))
        output["histogram"] = ()
        return kwargs

    # -- pixels --------------------------------------------------------------------------

    def updatePixels(self, tlc, shape, props, **pixelBlocks) -> dict[str, Any]:
        """Imagery for one block: ``raster_pixels`` (bands x H x W, padding included) in,
        ``output_pixels`` (bands x h x w, padding removed) and ``output_mask`` out."""
        model = self._loaded()
        pixels = np.asarray(pixelBlocks["raster_pixels"])
        labels = pixels[0] if pixels.ndim == 3 else pixels
        mask = pixelBlocks.get("raster_mask")
        valid = None
        if mask is not None:
            mask = np.asarray(mask)
            valid = (mask[0] if mask.ndim == 3 else mask) > 0
        height, width = labels.shape
        rows, cols = (tuple(shape[-2:]) if shape is not None
                      else (height - 2 * self.padding, width - 2 * self.padding))
        pad_y, pad_x = (height - rows) // 2, (width - cols) // 2
        row_off, col_off = block_origin(tlc, props, pad_y, pad_x)
        result = translate_block(model, labels, valid, row_off, col_off, self.seed)
        core = (slice(pad_y, pad_y + rows), slice(pad_x, pad_x + cols))
        image = result.image[:, core[0], core[1]]
        out_type = (props or {}).get("pixelType") or numpy_pixel_type(model.imagery.dtype)
        pixelBlocks["output_pixels"] = image.astype(out_type, copy=False)
        pixelBlocks["output_mask"] = np.broadcast_to(result.mask[core], image.shape).astype("u1")
        return pixelBlocks

    # -- helpers -------------------------------------------------------------------------

    def _loaded(self) -> LoadedModel:
        """The model; CheckpointError before :meth:`initialize` has loaded one."""
        if self.model is None:
            raise CheckpointError("the raster function has no model",
                                  hint="initialize() needs model=<the package's .emd file>.")
        return self.model

    def _checkpoint(self) -> Path:
        if self.checkpoint is None:
            raise CheckpointError("the raster function has no model",
                                  hint="initialize() needs model=<the package's .emd file>.")
        return self.checkpoint

    def _default_padding(self) -> int:
        model = self._loaded()
        return model.default_halo


def translate_block(model: LoadedModel, labels: np.ndarray, valid: np.ndarray | None,
                    row_off: int, col_off: int, seed: int):
    """Imagery for a whole padded block, generated as one tile.

    Args:
        model: the loaded generator.
        labels: (H, W) land-cover values of the block, padding included.
        valid: (H, W) False where Pro marks NoData (outside the raster included), or None.
        row_off, col_off: the block's top-left pixel in the whole raster, for the noise.
        seed: noise seed of the whole raster.

    Returns:
        :class:`geospade.synthesis.SynthesizedArray` over the block: (bands, H, W) pixels and
        an (H, W) validity mask.
    """
    factor = model.downsampling_factor
    source = labels if valid is None else np.ma.masked_array(labels, mask=~valid)
    # One tile over the block, no halo, no feather: Pro's padding is the halo.
    return synthesize_array(source, None, AtOffset(model, row_off, col_off),
                            tile_size=round_up(max(labels.shape), factor), halo=0, feather=0,
                            batch_size=1, seed=seed, progress=False)


class AtOffset(LoadedModel):
    """A loaded model seen from a window of a larger raster: window (0, 0) is raster pixel
    (row_off, col_off), so the noise is that of the whole raster there."""

    def __init__(self, model: LoadedModel, row_off: int, col_off: int):
        super().__init__(model.generator, model.card, model.device)
        self.row_off, self.col_off = int(row_off), int(col_off)

    def generate(self, indices, row_offs, col_offs, seed):
        return super().generate(indices, [r + self.row_off for r in row_offs],
                                [c + self.col_off for c in col_offs], seed)


def block_origin(tlc, props, pad_y: int, pad_x: int) -> tuple[int, int]:
    """The padded block's top-left pixel in the whole raster, from Pro's block arguments.

    ``tlc`` is the map position of the block's top-left corner (padding excluded); ``props``
    holds the raster's ``extent`` (xmin, ymin, xmax, ymax) and ``cellSize`` (x, y). Without
    them the block is placed at (0, 0): still valid imagery, but the noise then repeats from
    block to block.
    """
    try:
        x, y = float(tlc[0]), float(tlc[1])
        xmin, _, _, ymax = (float(v) for v in _extent(props["extent"]))
        cell_x, cell_y = (abs(float(v)) for v in props["cellSize"][:2])
        row = round((ymax - y) / cell_y)
        col = round((x - xmin) / cell_x)
    except (TypeError, KeyError, IndexError, ValueError, ZeroDivisionError):
        return 0, 0
    return row - pad_y, col - pad_x


def _extent(extent) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) from a tuple or an object with XMin/YMin/XMax/YMax."""
    if hasattr(extent, "XMin"):
        return extent.XMin, extent.YMin, extent.XMax, extent.YMax
    return tuple(extent[:4])


def tile_rectangle(batch_size: int) -> tuple[int, int]:
    """(rows, cols) of tiles per block: the squarest rectangle of ``batch_size`` tiles,
    wider than tall."""
    rows = int(math.sqrt(batch_size))
    while batch_size % rows:
        rows -= 1
    return rows, batch_size // rows


def pro_device(value: Any) -> str:
    """A torch device name for Pro's "device" argument (GPU id, -1 CPU, -2 any, or a name)."""
    if value is None or str(value).strip() == "":
        return "auto"
    text = str(value).strip()
    try:
        number = int(float(text))
    except ValueError:
        return text
    if number == PRO_ANY:
        return "auto"
    return "cpu" if number < 0 else f"cuda:{number}"


def numpy_pixel_type(dtype: str) -> str:
    """Pro's pixel type code (numpy's short form) for a numpy dtype name: uint8 -> 'u1'."""
    return np.dtype(dtype).str.lstrip("<>|=")


def read_model_definition(model: str | Path) -> tuple[dict[str, Any], Path]:
    """The .emd as a dict, and the folder its relative paths start from.

    ``model`` is the .emd path or its JSON text (Pro passes either); for JSON text, paths are
    relative to this file's folder, where the package puts both.
    """
    text = str(model)
    path = Path(text) if len(text) < 4096 and not text.lstrip().startswith("{") else None
    if path is not None and path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8")), path.parent
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"not a model definition (invalid JSON: {exc})",
                                  path=path) from None
    try:
        return json.loads(text), Path(__file__).resolve().parent
    except json.JSONDecodeError:
        raise CheckpointError("model definition not found, and not JSON text", path=text[:200],
                              hint="Give the .emd file of a geospade model package.") from None


def model_file(emd: dict[str, Any], base: Path) -> Path:
    """The checkpoint an .emd names (``ModelFile``, relative to ``base``)."""
    name = emd.get("ModelFile")
    if not name:
        raise CheckpointError("the model definition names no ModelFile",
                              hint="Export the package again with geospade export-model.")
    path = Path(name)
    return path if path.is_absolute() else base / path


def _int(value: Any, default: int) -> int:
    """Pro passes model arguments as numbers or text; empty means the default."""
    if value is None or str(value).strip() == "":
        return int(default)
    return int(float(value))
