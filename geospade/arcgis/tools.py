"""What the ArcGIS Pro toolbox does, importable and testable without arcpy.

``GeoSPADE.pyt`` declares the tools and forwards every call here. For each tool this module
holds its parameters (:class:`ParamSpec`, named after the CLI option they mirror), the
validation messages shown while the user fills the dialog, and the mapping of parameter
values onto the library functions the CLI calls (:func:`~geospade.chips.export.export_chips`,
:func:`~geospade.training.train`, :func:`~geospade.synthesis.synthesize`,
:func:`~geospade.whatif.what_if`). :class:`Reporter`
turns geospade's ``progress(done, total, message)`` callbacks into arcpy's step progressor and
tool messages, and geospade errors into ``arcpy.ExecuteError``.

Functions that must touch arcpy take the module as an argument (``arc``), so tests pass a
stand-in; nothing here imports arcpy, torch or rasterio at import time.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geospade.errors import GeospadeError, InputError
from geospade.training.config import DEVICE_PATTERN, TrainConfig, field_default, field_kind

#: Chip and tile sizes must be multiples of this: ArcGIS Pro's convention for training chips,
#: and the largest downsampling factor (2**5) of geospade's generators.
SIZE_MULTIPLE = 32
PRESETS = ("paper", "cpu", "tiny")  # geospade.models.PRESETS, without importing torch here
IMAGE_FORMATS = {"TIFF": "tif", "PNG": "png"}
GEOTIFF_SUFFIXES = (".tif", ".tiff")
#: AOI files geopandas reads directly; anything else (a geodatabase feature class, a map
#: layer) is copied to a shapefile first.
AOI_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb")
ADVANCED = "Advanced"
DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"


# ---------------------------------------------------------------------------------------------
# What the library declares, read without importing it
# ---------------------------------------------------------------------------------------------


def _library_source(module: str) -> ast.Module:
    """The parsed source of a geospade module (e.g. "geospade.chips.export")."""
    root = Path(__file__).resolve().parents[1]
    path = root.joinpath(*module.split(".")[1:]).with_suffix(".py")
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@functools.cache
def library_defaults(module: str, function: str) -> dict[str, Any]:
    """The keyword defaults of ``module.function``, e.g. ``{"tile_size": 256, ...}``.

    Read from the module's source, not by importing it: opening the toolbox must not load
    torch or rasterio, yet the dialog's defaults must be the function's own. Only literal
    defaults are returned (all of those the tools show are).
    """
    for node in _library_source(module).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            args = node.args
            positional = args.args[len(args.args) - len(args.defaults):]  # those with defaults
            pairs = [*zip(positional, args.defaults, strict=True),
                     *((a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                       if d is not None)]
            out = {}
            for arg, default in pairs:
                with contextlib.suppress(ValueError):
                    out[arg.arg] = ast.literal_eval(default)
            return out
    raise LookupError(f"{module} has no function {function}")


@functools.cache
def library_constant(module: str, name: str) -> Any:
    """A module-level literal constant of a geospade module, read from its source."""
    for node in _library_source(module).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name
                                                for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{module} has no constant {name}")


EXPORT_DEFAULTS = library_defaults("geospade.chips.export", "export_chips")
SYNTHESIZE_DEFAULTS = library_defaults("geospade.synthesis.synthesize", "synthesize")
WHAT_IF_DEFAULTS = library_defaults("geospade.whatif", "what_if")
#: Validation fractions are at least 0 and below this (export_chips' own limit).
MAX_VAL_FRACTION: float = library_constant("geospade.chips.export", "MAX_VAL_FRACTION")


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamSpec:
    """One tool parameter, as arcpy.Parameter needs it.

    Attributes:
        name: the parameter's name; the CLI option's ``dest`` (or TrainConfig field) it mirrors.
        label: the name shown in the tool dialog.
        datatype: arcpy datatype keyword(s), e.g. "DERasterDataset", "GPLong".
        kind: parameterType: "Required", "Optional" or "Derived".
        direction: "Input" or "Output".
        default: initial value (the library's default), or None.
        choices: a value-list filter.
        bounds: a range filter (low, high).
        extensions: a file filter (extensions without the dot).
        category: the dialog section the parameter is shown in (None: the main one).
        multi_value: the parameter takes a list of values (its value is a list of texts).
        help: what the parameter does (TrainConfig's help text for training options).
    """

    name: str
    label: str
    datatype: str | tuple[str, ...]
    kind: str = "Required"
    direction: str = "Input"
    default: Any = None
    choices: tuple[str, ...] | None = None
    bounds: tuple[float, float] | None = None
    extensions: tuple[str, ...] | None = None
    category: str | None = None
    multi_value: bool = False
    help: str = ""

    @property
    def base_type(self) -> str:
        """The first datatype: what the value is converted to."""
        return self.datatype if isinstance(self.datatype, str) else self.datatype[0]


def _opt(name: str, label: str, datatype: str | tuple[str, ...], default: Any = None,
         **kwargs: Any) -> ParamSpec:
    return ParamSpec(name, label, datatype, kind="Optional", default=default, **kwargs)


def _library_opt(defaults: Mapping[str, Any], name: str, label: str, datatype: str,
                 **kwargs: Any) -> ParamSpec:
    """An optional parameter whose default is the library function's (``defaults``)."""
    return _opt(name, label, datatype, defaults[name], **kwargs)


_ARC_TYPES = {int: "GPLong", float: "GPDouble", str: "GPString", bool: "GPBoolean"}


def _train_opt(name: str, label: str, datatype: str | None = None, **kwargs: Any) -> ParamSpec:
    """The parameter of TrainConfig option ``name``: its default, choices and help."""
    f = next(f for f in dataclasses.fields(TrainConfig) if f.name == name)
    kind, _ = field_kind(f)
    if "choices" in f.metadata:
        kwargs.setdefault("choices", tuple(f.metadata["choices"]))
    return _opt(name, label, datatype or _ARC_TYPES[kind], field_default(name),
                help=f.metadata["help"], **kwargs)


def _device_opt(defaults: Mapping[str, Any], **kwargs: Any) -> ParamSpec:
    # Free text checked against the training options' pattern, not a value list: a value
    # list cannot hold "cuda:N" for every N.
    return _library_opt(defaults, "device", "Device", "GPString", help=DEVICE_HELP, **kwargs)


EXPORT_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("landcover", "Input Land Cover Raster", "DERasterDataset"),
    ParamSpec("imagery", "Input Imagery", "DERasterDataset"),
    ParamSpec("out_dir", "Output Chip Folder", "DEFolder", direction="Output"),
    ParamSpec("tile_size", "Tile Size (pixels)", "GPLong", default=EXPORT_DEFAULTS["tile_size"]),
    _library_opt(EXPORT_DEFAULTS, "stride", "Stride (pixels)", "GPLong"),
    _opt("image_format", "Image Chip Format", "GPString",
         {v: k for k, v in IMAGE_FORMATS.items()}[EXPORT_DEFAULTS["image_format"]],
         choices=tuple(IMAGE_FORMATS)),
    _library_opt(EXPORT_DEFAULTS, "val_fraction", "Validation Fraction", "GPDouble",
                 bounds=(0.0, MAX_VAL_FRACTION)),
    _library_opt(EXPORT_DEFAULTS, "aoi", "Area Of Interest Polygons", "GPFeatureLayer"),
    _library_opt(EXPORT_DEFAULTS, "max_nodata", "Maximum NoData Fraction", "GPDouble",
                 bounds=(0.0, 1.0), category=ADVANCED),
    _library_opt(EXPORT_DEFAULTS, "classes", "Class Scheme (preset name or JSON file)",
                 "GPString", category=ADVANCED),
    _library_opt(EXPORT_DEFAULTS, "val_block", "Validation Block Size (pixels)", "GPLong",
                 category=ADVANCED),
    _library_opt(EXPORT_DEFAULTS, "seed", "Split Seed", "GPLong", category=ADVANCED),
    _library_opt(EXPORT_DEFAULTS, "workers", "Writer Threads", "GPLong", category=ADVANCED),
    _library_opt(EXPORT_DEFAULTS, "overwrite", "Overwrite Output Folder", "GPBoolean"),
)

TRAIN_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("chips_dir", "Input Chip Folders", "DEFolder", multi_value=True),
    ParamSpec("run_dir", "Output Run Folder", "DEFolder", direction="Output"),
    _train_opt("preset", "Model Preset", choices=PRESETS),
    _train_opt("objective", "Training Objective (empty: the preset's)"),
    _train_opt("steps", "Training Steps"),
    _train_opt("epochs", "Epochs (instead of steps)"),
    _train_opt("batch_size", "Batch Size (empty: the preset's)"),
    _train_opt("device", "Device"),
    _opt("resume", "Resume The Run", "GPBoolean", False),
    _opt("overwrite", "Overwrite The Run", "GPBoolean", False),
    _opt("config", "Training Options File (YAML)", "DEFile", extensions=("yaml", "yml")),
    _train_opt("seed", "Seed", category=ADVANCED),
    _train_opt("augment", "Augment Chips (flips, rotations)", category=ADVANCED),
    _train_opt("lr_g", "Generator Learning Rate", category=ADVANCED),
    _train_opt("lr_d", "Discriminator Learning Rate", category=ADVANCED),
    _train_opt("checkpoint_every", "Checkpoint Every N Steps", category=ADVANCED),
    _train_opt("sample_every", "Samples Every N Steps", category=ADVANCED),
    _train_opt("vgg_weights", "VGG19 Weights File", "DEFile", category=ADVANCED),
    _train_opt("classes", "Class Scheme (preset name or JSON file)", category=ADVANCED),
    _train_opt("map_unknown", "Class For Unknown Values", category=ADVANCED),
    _train_opt("workers", "Data Loading Workers", category=ADVANCED),
    ParamSpec("out_checkpoint", "Output Checkpoint", "DEFile", kind="Derived",
              direction="Output"),
)

#: TrainConfig options the Train tool shows; the rest come from a YAML config file.
TRAIN_OPTIONS = tuple(p.name for p in TRAIN_PARAMS
                      if p.name in {f.name for f in dataclasses.fields(TrainConfig)})

SYNTHESIZE_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("landcover", "Input Land Cover Raster", "DERasterDataset"),
    ParamSpec("checkpoint", "Checkpoint (.pt file or run folder)", ("DEFile", "DEFolder")),
    ParamSpec("output", "Output Imagery (GeoTIFF)", "DERasterDataset", direction="Output"),
    _library_opt(SYNTHESIZE_DEFAULTS, "seed", "Noise Seed", "GPLong"),
    _device_opt(SYNTHESIZE_DEFAULTS),
    _library_opt(SYNTHESIZE_DEFAULTS, "tile_size", "Tile Size (pixels)", "GPLong"),
    _library_opt(SYNTHESIZE_DEFAULTS, "batch_size", "Batch Size", "GPLong"),
    _library_opt(SYNTHESIZE_DEFAULTS, "halo", "Halo (pixels)", "GPLong", category=ADVANCED),
    _library_opt(SYNTHESIZE_DEFAULTS, "feather", "Seam Feather Width (pixels)", "GPLong",
                 category=ADVANCED),
    _library_opt(SYNTHESIZE_DEFAULTS, "map_unknown", "Class For Unknown Values", "GPLong",
                 category=ADVANCED),
    _library_opt(SYNTHESIZE_DEFAULTS, "resample", "Resample To Training Resolution",
                 "GPBoolean", category=ADVANCED),
    _library_opt(SYNTHESIZE_DEFAULTS, "cog", "Cloud Optimized GeoTIFF", "GPBoolean",
                 category=ADVANCED),
    _opt("preview", "Write PNG Preview", "GPBoolean", False, category=ADVANCED),
    _opt("seam_score", "Report Seam Score", "GPBoolean", False, category=ADVANCED),
    _library_opt(SYNTHESIZE_DEFAULTS, "overwrite", "Overwrite Output", "GPBoolean"),
)


WHAT_IF_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("landcover", "Input Land Cover Raster", "DERasterDataset"),
    ParamSpec("imagery", "Input Real Imagery", "DERasterDataset"),
    _library_opt(WHAT_IF_DEFAULTS, "changes", "Planned Changes (polygons)", "GPFeatureLayer"),
    _library_opt(WHAT_IF_DEFAULTS, "class_field", "New Class Field", "GPString"),
    _library_opt(WHAT_IF_DEFAULTS, "edited_landcover",
                 "Edited Land Cover Raster (instead of polygons)", "DERasterDataset"),
    ParamSpec("checkpoint", "Checkpoint (.pt file or run folder)", ("DEFile", "DEFolder")),
    ParamSpec("output", "Output What-If Imagery (GeoTIFF)", "DERasterDataset",
              direction="Output"),
    _library_opt(WHAT_IF_DEFAULTS, "blend", "Transition Band Width (metres)", "GPDouble"),
    _library_opt(WHAT_IF_DEFAULTS, "seed", "Noise Seed", "GPLong"),
    _device_opt(WHAT_IF_DEFAULTS),
    _library_opt(WHAT_IF_DEFAULTS, "batch_size", "Batch Size", "GPLong", category=ADVANCED),
    _opt("preview", "Write PNG Preview", "GPBoolean", False),
    _library_opt(WHAT_IF_DEFAULTS, "overwrite", "Overwrite Output", "GPBoolean"),
)


def build_parameters(specs: Sequence[ParamSpec], arc) -> list:
    """arcpy.Parameter objects for ``specs`` (``arc`` is the arcpy module)."""
    params = []
    for spec in specs:
        extra = {"multiValue": True} if spec.multi_value else {}
        param = arc.Parameter(displayName=spec.label, name=spec.name,
                              datatype=list(spec.datatype) if isinstance(spec.datatype, tuple)
                              else spec.datatype,
                              parameterType=spec.kind, direction=spec.direction, **extra)
        if spec.choices is not None:
            param.filter.type = "ValueList"
            param.filter.list = list(spec.choices)
        elif spec.bounds is not None:
            param.filter.type = "Range"
            param.filter.list = list(spec.bounds)
        elif spec.extensions is not None:
            param.filter.list = list(spec.extensions)
        if spec.category:
            param.category = spec.category
        if spec.default is not None:
            param.value = spec.default
        params.append(param)
    return params


def read_values(specs: Sequence[ParamSpec], parameters: Sequence) -> dict[str, Any]:
    """The tool's parameter values as Python values, by name (None where empty)."""
    return {spec.name: parameter_value(spec, param) for spec, param in zip(specs, parameters,
                                                                            strict=True)}


def parameter_value(spec: ParamSpec, param) -> Any:
    """One parameter's value: int, float, bool or text (paths as text), None where empty."""
    text = param.valueAsText
    value = param.value
    if spec.base_type == "GPBoolean":
        if isinstance(value, bool):
            return value
        return text is not None and text.strip().lower() == "true"
    if text is None or text.strip() == "":
        return None
    if spec.multi_value:
        return split_multi_value(text)
    try:
        if spec.base_type == "GPLong":
            return value if isinstance(value, int) and not isinstance(value, bool) else int(text)
        if spec.base_type == "GPDouble":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            return float(text.replace(",", "."))  # decimal commas in some locales
    except ValueError:
        raise InputError(f"{spec.label}: '{text}' is not a number",
                         hint="Enter a number.") from None
    return text


def split_multi_value(text: str) -> list[str]:
    """The items of a multivalue parameter's text: ``a;'b c';d`` (ArcGIS quotes items with
    spaces) -> ``["a", "b c", "d"]``."""
    items = [item.strip() for item in text.split(";")]
    return [item[1:-1] if len(item) > 1 and item[0] == item[-1] == "'" else item
            for item in items if item]


# ---------------------------------------------------------------------------------------------
# Validation messages
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A validation outcome for one parameter.

    ``level`` is "error", "warning", or "clear" (drop what ArcGIS's own validation said,
    e.g. "already exists" for an output folder geospade may fill or replace).
    """

    name: str
    level: str
    text: str = ""


def round_to_multiple(value: int, multiple: int = SIZE_MULTIPLE) -> tuple[int, int]:
    """The multiples of ``multiple`` just below (at least ``multiple``) and above ``value``."""
    below = max(multiple, value // multiple * multiple)
    above = max(multiple, -(-value // multiple) * multiple)
    return below, above


def check_tile_size(value: int | None, name: str = "tile_size", why: str = "") -> list[Message]:
    """Tile sizes: positive multiples of :data:`SIZE_MULTIPLE`."""
    if value is None:
        return []
    if value <= 0:
        return [Message(name, "error", f"Tile size must be a positive number of pixels, got "
                                       f"{value}. Use {SIZE_MULTIPLE * 8}, for example.")]
    if value % SIZE_MULTIPLE:
        below, above = round_to_multiple(value)
        return [Message(name, "error", f"Tile size {value} is not a multiple of {SIZE_MULTIPLE}"
                                       f"{why}. Use {below} or {above}.")]
    return []


def check_positive(values: Mapping[str, Any], names: Sequence[str]) -> list[Message]:
    """Each given value among ``names`` must be at least 1."""
    return [Message(name, "error", f"Must be at least 1, got {values[name]}.")
            for name in names if values.get(name) is not None and values[name] < 1]


def check_device(value: str | None) -> list[Message]:
    """A device name training, synthesis and what-if all accept (TrainConfig's rule)."""
    if value is None or DEVICE_PATTERN.match(value):
        return []
    return [Message("device", "error", f"Unknown device '{value}'. Use {DEVICE_HELP}.")]


def check_output_folder(path: str | None, overwrite: bool, name: str = "out_dir") -> list[Message]:
    """A new or empty folder; a non-empty one only with overwrite (then a warning)."""
    if not path:
        return []
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        return [Message(name, "error", f"{folder} is a file. Choose a folder.")]
    from geospade.raster import output_exists

    if not output_exists(folder):
        return [Message(name, "clear")]
    if overwrite:
        return [Message(name, "warning", f"{folder} is not empty: its contents will be replaced.")]
    return [Message(name, "error", f"{folder} exists and is not empty. Choose a new or empty "
                                   f"folder, or check Overwrite to replace it.")]


def validate_export(values: Mapping[str, Any], overwrite_env: bool = False) -> list[Message]:
    """Messages for the Export SPADE Training Chips dialog."""
    messages = check_tile_size(values.get("tile_size"), why=": ArcGIS Pro exports chips in "
                               "multiples of 32 and the generator halves them up to 5 times")
    tile, stride = values.get("tile_size"), values.get("stride")
    if stride is not None:
        if stride < 1:
            messages.append(Message("stride", "error", f"Stride must be at least 1, got {stride}."))
        elif tile and stride > tile:
            messages.append(Message("stride", "error", f"Stride {stride} is larger than the tile "
                                    f"size {tile}: chips would skip pixels. Use at most {tile}."))
    fraction = values.get("val_fraction")
    if fraction is not None and not 0.0 <= fraction < MAX_VAL_FRACTION:
        messages.append(Message("val_fraction", "error", f"Validation fraction {fraction:g} must "
                                f"be at least 0 and below {MAX_VAL_FRACTION:g}."))
    nodata = values.get("max_nodata")
    if nodata is not None and not 0.0 <= nodata <= 1.0:
        messages.append(Message("max_nodata", "error", f"Maximum NoData fraction {nodata:g} must "
                                "be between 0 and 1."))
    messages += check_positive(values, ("val_block", "workers"))
    if values.get("image_format") not in (None, *IMAGE_FORMATS):
        messages.append(Message("image_format", "error", f"Unknown chip format "
                                f"{values['image_format']}: use TIFF or PNG."))
    overwrite = bool(values.get("overwrite")) or overwrite_env
    messages += check_output_folder(values.get("out_dir"), overwrite)
    return messages


def validate_train(values: Mapping[str, Any], overwrite_env: bool = False) -> list[Message]:
    """Messages for the Train SPADE Model dialog."""
    messages: list[Message] = []
    for chips in _as_list(values.get("chips_dir")):
        if Path(chips).is_dir() and not (Path(chips) / "images").is_dir():
            messages.append(Message("chips_dir", "error", f"{chips} is not a chip folder: it "
                                    "has no images subfolder. Export chips first."))
            break
    messages += _check_train_options(values)
    resume, overwrite = bool(values.get("resume")), bool(values.get("overwrite"))
    if resume and overwrite:
        messages.append(Message("overwrite", "error", "Resume continues the run and Overwrite "
                                "starts it again: check only one."))
    run_dir = values.get("run_dir")
    if run_dir:
        folder = Path(run_dir)
        from geospade.raster import output_exists

        has_run = output_exists(folder)
        latest = folder / "checkpoints" / "latest.pt"
        if resume and not latest.exists():
            messages.append(Message("resume", "error", f"Nothing to resume: {latest} does not "
                                    "exist. Uncheck Resume to start a new run."))
        elif resume:
            messages.append(Message("run_dir", "clear"))
        elif has_run and not (overwrite or overwrite_env):
            messages.append(Message("run_dir", "error", f"{folder} already holds a run. Check "
                                    "Resume to continue it, Overwrite to start it again, or "
                                    "choose another folder."))
        elif has_run:
            messages.append(Message("run_dir", "warning", f"The run in {folder} will be "
                                    "replaced."))
        else:
            messages.append(Message("run_dir", "clear"))
    config = values.get("config")
    if config and not Path(config).is_file():
        messages.append(Message("config", "error", f"{config} does not exist."))
    return messages


def _check_train_options(values: Mapping[str, Any]) -> list[Message]:
    """Each option through TrainConfig's own checks, so the rules live in one place."""
    from geospade.training.config import TrainConfig

    messages = []
    base = TrainConfig()
    for name in TRAIN_OPTIONS:
        value = values.get(name)
        if value is None:
            continue
        try:
            base.replace(**{name: value})
        except InputError as exc:
            messages.append(Message(name, "error", exc.message[:1].upper() + exc.message[1:]
                                    + (f". {exc.hint}" if exc.hint else "")))
    if values.get("steps") is not None and values.get("epochs") is not None:
        messages.append(Message("epochs", "error", "Give either training steps or epochs, "
                                "not both."))
    return messages


def validate_synthesize(values: Mapping[str, Any], overwrite_env: bool = False) -> list[Message]:
    """Messages for the Synthesize Imagery From Land Cover dialog."""

    messages = check_tile_size(values.get("tile_size"), why=": tiles must be multiples of the "
                               "generator's downsampling factor (up to 32)")
    messages += check_positive(values, ("batch_size",))
    messages += check_device(values.get("device"))
    halo, feather = values.get("halo"), values.get("feather")
    if halo is not None and halo < 0:
        messages.append(Message("halo", "error", f"Halo must not be negative, got {halo}."))
    if feather is not None and (feather < 0 or feather % 2):
        messages.append(Message("feather", "error", f"Feather width must be an even number of "
                                f"pixels (0 or more), got {feather}."))
    messages += _check_checkpoint(values.get("checkpoint"))
    output = values.get("output")
    if output:
        messages += _check_output_raster(Path(output), bool(values.get("overwrite"))
                                         or overwrite_env, values.get("landcover"))
    return messages


def _check_checkpoint(checkpoint: str | None) -> list[Message]:
    """An error message when the dialog's checkpoint (file or run folder) cannot be used."""
    from geospade.checkpoint import resolve_checkpoint_path

    if not checkpoint:
        return []
    try:
        resolve_checkpoint_path(checkpoint)
    except GeospadeError as exc:
        return [Message("checkpoint", "error", str(exc))]
    return []


def validate_what_if(values: Mapping[str, Any], overwrite_env: bool = False) -> list[Message]:
    """Messages for the What-If Imagery From Land-Cover Changes dialog."""

    messages = check_positive(values, ("batch_size",))
    messages += check_device(values.get("device"))
    changes, edited = values.get("changes"), values.get("edited_landcover")
    if not changes and not edited:
        messages.append(Message("changes", "error", "Give the planned changes as polygons, or "
                                "an edited land cover raster."))
    elif changes and edited:
        messages.append(Message("edited_landcover", "error", "Give either polygons or an "
                                "edited land cover, not both."))
    elif changes and not values.get("class_field"):
        messages.append(Message("class_field", "error", "Name the field of the polygons that "
                                "holds each one's new class (a class value or name)."))
    blend = values.get("blend")
    if blend is not None and blend < 0:
        messages.append(Message("blend", "error", f"The band width must not be negative, got "
                                f"{blend:g}."))
    messages += _check_checkpoint(values.get("checkpoint"))
    output = values.get("output")
    if output:
        overwrite = bool(values.get("overwrite")) or overwrite_env
        for given in (values.get("imagery"), edited):
            if given and Path(output).resolve() == Path(given).resolve():
                return [*messages, Message("output", "error", "The output would replace an "
                                                              "input. Choose another output.")]
        messages += _check_output_raster(Path(output), overwrite, values.get("landcover"))
    return messages


def _check_output_raster(out: Path, overwrite: bool, landcover: str | None) -> list[Message]:
    if out.suffix.lower() not in GEOTIFF_SUFFIXES:
        return [Message("output", "error", f"{out.name}: geospade writes GeoTIFF; give a .tif "
                                           "file in a folder (not in a geodatabase).")]
    if any(part.lower().endswith(".gdb") for part in out.parts):
        return [Message("output", "error", "geospade writes GeoTIFF files, not geodatabase "
                                           "rasters: give a .tif file in a folder.")]
    if landcover and out.resolve() == Path(landcover).resolve():
        return [Message("output", "error", "The output would replace the land cover. Choose "
                                           "another output.")]
    if out.exists() and not overwrite:
        return [Message("output", "error", f"{out} exists. Choose another name, or check "
                                           "Overwrite to replace it.")]
    return [Message("output", "clear")]


def apply_messages(parameters: Sequence, specs: Sequence[ParamSpec],
                   messages: Sequence[Message]) -> None:
    """Set each message on its parameter; an error of ours wins over a warning or a clear.

    A warning or a clear replaces what ArcGIS's own validation said: e.g. its "already
    exists" error for an output geospade is allowed to replace.
    """
    by_name = {spec.name: param for spec, param in zip(specs, parameters, strict=True)}
    errors = {m.name for m in messages if m.level == "error"}
    for message in messages:
        param = by_name[message.name]
        if message.level == "error":
            param.setErrorMessage(message.text)
        elif message.name in errors:
            continue
        elif message.level == "warning":
            param.setWarningMessage(message.text)
        else:
            param.clearMessage()


# ---------------------------------------------------------------------------------------------
# Running the tools
# ---------------------------------------------------------------------------------------------


class Reporter:
    """Where a running tool reports: arcpy's progressor and the tool's messages.

    Pass :meth:`progress` as a library function's ``progress`` callback. Each new stage
    (message) starts a step progressor over its total; its first and last steps also become
    tool messages, so the geoprocessing history shows what ran.

    Args:
        arc: the arcpy module (SetProgressor, SetProgressorLabel, SetProgressorPosition,
            ResetProgressor, ExecuteError, env, management.CopyFeatures).
        messages: the ``messages`` object ArcGIS passes to ``execute``.
    """

    def __init__(self, arc, messages):
        self.arc = arc
        self.messages = messages
        self._stage: tuple[str, int] | None = None

    def progress(self, done: int, total: int, message: str) -> None:
        """geospade's progress callback: ``done`` of ``total`` units of stage ``message``."""
        label = message or "geospade"
        if self._stage != (label, total):
            self._stage = (label, total)
            if total > 0:
                self.arc.SetProgressor("step", f"{label}...", 0, total, 1)
            else:
                self.arc.SetProgressor("default", f"{label}...")
            self.message(f"{label}: started" + (f" ({total} to do)" if total else ""))
        if total > 0:
            self.arc.SetProgressorPosition(min(done, total))
            self.arc.SetProgressorLabel(f"{label}: {done} of {total}")
            if done >= total:
                self.message(f"{label}: {done} of {total} done")
        else:
            self.arc.SetProgressorLabel(f"{label}: {done}")

    def message(self, text: str) -> None:
        self.messages.addMessage(text)

    def warning(self, text: str) -> None:
        self.messages.addWarningMessage(text)

    def overwrite(self, values: Mapping[str, Any]) -> bool:
        """The tool's Overwrite box, or the "overwrite outputs" geoprocessing option."""
        return bool(values.get("overwrite")) or bool(getattr(self.arc.env, "overwriteOutput",
                                                              False))

    def feature_file(self, value: str | None) -> str | None:
        """A polygon file geopandas can read, for a feature layer parameter's value.

        A GeoPackage, shapefile or GeoJSON file is used as it is. Anything else (a map layer,
        a geodatabase feature class) is copied, with a layer's selection, to a shapefile in
        the scratch folder.
        """
        if not value:
            return None
        path = Path(value)
        if path.suffix.lower() in AOI_SUFFIXES and path.is_file():
            return str(path)
        scratch = getattr(self.arc.env, "scratchFolder", None) or tempfile.gettempdir()
        out = Path(tempfile.mkdtemp(prefix="geospade_aoi_", dir=scratch)) / "aoi.shp"
        self.arc.management.CopyFeatures(value, str(out))
        return str(out)

    @contextlib.contextmanager
    def reporting(self) -> Iterator[None]:
        """Library warnings become warning messages; a geospade error becomes an error
        message and arcpy.ExecuteError (the tool fails with that one clear line)."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            except GeospadeError as exc:
                self._forward(caught)
                self.messages.addErrorMessage(str(exc))
                raise self.arc.ExecuteError(str(exc)) from exc
            finally:
                self.arc.ResetProgressor()
            self._forward(caught)

    def _forward(self, caught: list) -> None:
        for warning in caught:
            self.warning(str(warning.message))
        caught.clear()


def export_arguments(values: Mapping[str, Any], *, aoi: str | None,
                     overwrite: bool) -> dict[str, Any]:
    """Keyword arguments of :func:`geospade.chips.export.export_chips` for the tool's values."""
    return dict(
        landcover=values["landcover"], imagery=values["imagery"], out_dir=values["out_dir"],
        tile_size=values["tile_size"], stride=values.get("stride"),
        max_nodata=_or(values.get("max_nodata"), EXPORT_DEFAULTS["max_nodata"]), aoi=aoi,
        classes=values.get("classes"), val_block=values.get("val_block"),
        val_fraction=_or(values.get("val_fraction"), EXPORT_DEFAULTS["val_fraction"]),
        seed=_or(values.get("seed"), EXPORT_DEFAULTS["seed"]),
        image_format=IMAGE_FORMATS[values["image_format"]] if values.get("image_format")
        else EXPORT_DEFAULTS["image_format"],
        workers=values.get("workers"), overwrite=overwrite,
    )


def run_export(values: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Export chips as ``geospade export-chips`` does; reports a one-line summary."""
    from geospade.chips.export import export_chips
    from geospade.raster import check_not_input

    kwargs = export_arguments(values, aoi=reporter.feature_file(values.get("aoi")),
                              overwrite=reporter.overwrite(values))
    check_not_input([kwargs["out_dir"]], {"land cover": kwargs["landcover"],
                                          "imagery": kwargs["imagery"], "AOI": kwargs["aoi"]})
    result = export_chips(**kwargs, progress=reporter.progress)
    skipped = ", ".join(f"{n} {r.replace('_', ' ')}" for r, n in result.skipped.items() if n)
    reporter.message(f"{result.num_chips} chips ({result.num_train} train, {result.num_val} "
                     f"val) of {result.num_tiles} tiles written to {result.out_dir} in "
                     f"{result.seconds:.1f} s" + (f"; skipped: {skipped}" if skipped else ""))
    return {}


def train_config(values: Mapping[str, Any]) -> TrainConfig:
    """The TrainConfig for the tool's values, resolved as ``geospade train`` resolves flags.

    Defaults, then the YAML options file (or, when resuming, the run's own config.yaml), then
    the tool's values. With such a file, a value left at TrainConfig's default keeps the
    file's value: the dialog cannot tell "left alone" from "set to the default".
    """
    from geospade.training.config import resolve_config

    run_dir = Path(values["run_dir"])
    config = values.get("config")
    resume = bool(values.get("resume"))
    has_file = bool(config) or (resume and (run_dir / "config.yaml").exists())
    given = {}
    for name in TRAIN_OPTIONS:
        value = values.get(name)
        if value is None or (has_file and value == field_default(name)):
            continue
        given[name] = value
    return resolve_config(given, config or None, run_dir=run_dir, resume=resume)


def run_train(values: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Train as ``geospade train`` does; returns the latest checkpoint as ``out_checkpoint``."""
    from geospade.training import train

    config = train_config(values)
    folders = _as_list(values["chips_dir"])
    if len(folders) > 1:
        reporter.message(f"training on {len(folders)} chip folders: {'; '.join(folders)}")
    latest = train(folders[0] if len(folders) == 1 else folders, values["run_dir"], config,
                   resume=bool(values.get("resume")), overwrite=reporter.overwrite(values),
                   progress=reporter.progress)
    reporter.message(f"checkpoint: {latest}")
    return {"out_checkpoint": str(latest)}


def _as_list(value) -> list[str]:
    """A multivalue parameter's items (a single text counts as one item)."""
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def preview_path(output: str | Path) -> Path:
    """Where the PNG quick-look goes: beside the output, as ``geospade synthesize --preview``."""
    out = Path(output)
    return out.with_name(out.stem + ".preview.png")


def synthesize_arguments(values: Mapping[str, Any], *, overwrite: bool) -> dict[str, Any]:
    """Keyword arguments of :func:`geospade.synthesis.synthesize` for the tool's values."""
    return dict(
        landcover=values["landcover"], checkpoint=values["checkpoint"], out=values["output"],
        tile_size=values.get("tile_size"), halo=values.get("halo"),
        feather=values.get("feather"),
        batch_size=_or(values.get("batch_size"), SYNTHESIZE_DEFAULTS["batch_size"]),
        device=values.get("device") or SYNTHESIZE_DEFAULTS["device"],
        seed=_or(values.get("seed"), SYNTHESIZE_DEFAULTS["seed"]),
        map_unknown=values.get("map_unknown"), resample=bool(values.get("resample")),
        cog=bool(values.get("cog")),
        preview=preview_path(values["output"]) if values.get("preview") else None,
        overwrite=overwrite,
    )


def run_synthesize(values: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Synthesise as ``geospade synthesize`` does; reports what was written."""
    from geospade.synthesis import seam_score, synthesize

    result = synthesize(**synthesize_arguments(values, overwrite=reporter.overwrite(values)),
                        progress=reporter.progress)
    s = result.stats
    reporter.message(
        f"wrote {result.path} ({result.width} x {result.height} px, tiles {result.tile_size} "
        f"+ halo {result.halo}, feather {result.feather}, seed {result.seed}): {s.generated} "
        f"tiles generated, {s.skipped} all-nodata tiles skipped, {s.seconds:.1f} s"
        + (" [resampled to the training resolution]" if result.resampled else ""))
    if result.preview is not None:
        reporter.message(f"preview: {result.preview}")
    if values.get("seam_score"):
        reporter.message(f"seam score: {seam_score(result.path, result.tile_size):.3f} "
                         "(1.0 = seams indistinguishable)")
    return {}


def what_if_arguments(values: Mapping[str, Any], *, changes: str | None,
                      overwrite: bool) -> dict[str, Any]:
    """Keyword arguments of :func:`geospade.whatif.what_if` for the tool's values."""
    from geospade.whatif import preview_output_path

    return dict(
        landcover=values["landcover"], imagery=values["imagery"],
        checkpoint=values["checkpoint"], out=values["output"], changes=changes,
        class_field=values.get("class_field"), edited_landcover=values.get("edited_landcover"),
        blend=values.get("blend"), seed=_or(values.get("seed"), WHAT_IF_DEFAULTS["seed"]),
        device=values.get("device") or WHAT_IF_DEFAULTS["device"],
        batch_size=_or(values.get("batch_size"), WHAT_IF_DEFAULTS["batch_size"]),
        preview=preview_output_path(values["output"]) if values.get("preview") else None,
        overwrite=overwrite,
    )


def run_what_if(values: Mapping[str, Any], reporter: Reporter) -> dict[str, Any]:
    """Run ``geospade what-if``; reports what was written."""
    from geospade.whatif import what_if

    changes = reporter.feature_file(values.get("changes"))
    result = what_if(**what_if_arguments(values, changes=changes,
                                         overwrite=reporter.overwrite(values)),
                     progress=reporter.progress)
    for line in result.summary().splitlines():
        reporter.message(line)
    if result.preview is not None:
        reporter.message(f"preview: {result.preview}")
    return {}


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


# ---------------------------------------------------------------------------------------------
# The tools, as the .pyt uses them
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSpec:
    """A tool's parameters, its dialog validation and what it runs."""

    params: tuple[ParamSpec, ...]
    validate: Callable[[Mapping[str, Any], bool], list[Message]]
    run: Callable[[Mapping[str, Any], Reporter], dict[str, Any]]

    def param(self, name: str) -> ParamSpec:
        return next(p for p in self.params if p.name == name)


EXPORT = ToolSpec(EXPORT_PARAMS, validate_export, run_export)
TRAIN = ToolSpec(TRAIN_PARAMS, validate_train, run_train)
SYNTHESIZE = ToolSpec(SYNTHESIZE_PARAMS, validate_synthesize, run_synthesize)
WHAT_IF = ToolSpec(WHAT_IF_PARAMS, validate_what_if, run_what_if)


def get_parameter_info(tool: ToolSpec, arc) -> list:
    """The tool's arcpy.Parameter list (getParameterInfo)."""
    return build_parameters(tool.params, arc)


def update_messages(tool: ToolSpec, parameters: Sequence, arc) -> None:
    """Validate the dialog's values and set the messages (updateMessages)."""
    try:
        values = read_values(tool.params, parameters)
    except InputError:
        return  # ArcGIS's own validation already flags values of the wrong type
    overwrite_env = bool(getattr(arc.env, "overwriteOutput", False))
    apply_messages(parameters, tool.params, tool.validate(values, overwrite_env))


def execute(tool: ToolSpec, parameters: Sequence, messages, arc) -> None:
    """Run the tool (execute): values -> library call, progress and errors through arcpy."""
    reporter = Reporter(arc, messages)
    with reporter.reporting():
        values = read_values(tool.params, parameters)
        errors = [m for m in tool.validate(values, reporter.overwrite(values))
                  if m.level == "error"]
        if errors:  # scripts calling the tool skip the dialog's validation
            raise InputError(f"{tool.param(errors[0].name).label}: {errors[0].text}")
        outputs = tool.run(values, reporter)
    for spec, param in zip(tool.params, parameters, strict=True):
        if spec.name in outputs:
            param.value = outputs[spec.name]


__all__ = [
    "EXPORT",
    "SYNTHESIZE",
    "TRAIN",
    "WHAT_IF",
    "Message",
    "ParamSpec",
    "Reporter",
    "ToolSpec",
    "execute",
    "get_parameter_info",
    "update_messages",
]
