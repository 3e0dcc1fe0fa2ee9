"""The ArcGIS Pro toolbox, loaded with a stand-in arcpy: its tools and parameters, validation
messages, progress reporting, the library calls it makes, and real runs on the demo scene."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.machinery
import importlib.util
import inspect
import sys

import fake_arcpy
import geopandas
import numpy as np
import pytest
import rasterio
import shapely
import yaml

from geospade.arcgis import TOOLBOX, tools
from geospade.cli import export_chips as cli_export
from geospade.cli import synthesize as cli_synthesize
from geospade.cli import train as cli_train
from geospade.errors import InputError
from geospade.models import PRESETS
from geospade.training.config import OBJECTIVES, TrainConfig

TOOL_NAMES = ["ExportSPADETrainingChips", "TrainSPADEModel", "SynthesizeImageryFromLandCover",
              "WhatIfImageryFromLandCoverChanges"]


def load_toolbox(arcpy):
    """The .pyt as ArcGIS loads it (its suffix is not a Python one), with ``arcpy`` faked."""
    sys.modules["arcpy"] = arcpy
    loader = importlib.machinery.SourceFileLoader("GeoSPADE", str(TOOLBOX))
    spec = importlib.util.spec_from_loader("GeoSPADE", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def arcpy(tmp_path_factory):
    module = fake_arcpy.make_module(str(tmp_path_factory.mktemp("scratch")))
    saved = sys.modules.get("arcpy")
    yield module
    if saved is None:
        sys.modules.pop("arcpy", None)
    else:
        sys.modules["arcpy"] = saved


@pytest.fixture(scope="module")
def pyt(arcpy):
    return load_toolbox(arcpy)


def parameters(tool, **values):
    """The tool's parameters with some values set, as a user fills the dialog."""
    params = tool.getParameterInfo()
    by_name = {p.name: p for p in params}
    for name, value in values.items():
        by_name[name].value = value
    return params


def by_name(params) -> dict:
    return {p.name: p for p in params}


def validate(tool, **values) -> dict:
    params = parameters(tool, **values)
    tool.updateMessages(params)
    return by_name(params)


def run(tool, arcpy, **values):
    """Validate then execute, as ArcGIS does; returns (parameters, messages)."""
    params = parameters(tool, **values)
    tool.updateMessages(params)
    errors = {p.name: p.message for p in params if p.hasError()}
    assert not errors, errors
    arcpy.calls.clear()
    messages = fake_arcpy.Messages()
    tool.execute(params, messages)
    return by_name(params), messages


@pytest.fixture(scope="module")
def scene(small_scene):
    return small_scene


# -- the toolbox and its parameters ------------------------------------------------------------


def test_toolbox_has_four_tools(pyt):
    box = pyt.Toolbox()
    assert (box.label, box.alias) == ("GeoSPADE", "geospade")
    assert [t.__name__ for t in box.tools] == TOOL_NAMES
    labels = [t().label for t in box.tools]
    assert labels == ["Export SPADE Training Chips", "Train SPADE Model",
                      "Synthesize Imagery From Land Cover",
                      "What-If Imagery From Land-Cover Changes"]
    for tool_class in box.tools:
        tool = tool_class()
        assert tool.description and tool.canRunInBackground is False
        assert tool.isLicensed() is True
        assert tool.updateParameters(tool.getParameterInfo()) is None


def test_parameters_are_arcpy_parameters(pyt, arcpy):
    params = by_name(pyt.ExportSPADETrainingChips().getParameterInfo())
    assert all(isinstance(p, arcpy.Parameter) for p in params.values())
    lc, out, tile = params["landcover"], params["out_dir"], params["tile_size"]
    assert (lc.datatype, lc.parameterType, lc.direction) == ("DERasterDataset", "Required", "Input")
    assert (out.datatype, out.direction) == ("DEFolder", "Output")
    assert (tile.datatype, tile.value) == ("GPLong", 256)
    assert params["aoi"].datatype == "GPFeatureLayer"
    assert params["aoi"].parameterType == "Optional"
    assert params["image_format"].filter.list == ["TIFF", "PNG"]
    assert params["image_format"].value == "TIFF"
    assert params["overwrite"].datatype == "GPBoolean" and params["overwrite"].value is False
    assert params["val_fraction"].filter.type == "Range"

    train = by_name(pyt.TrainSPADEModel().getParameterInfo())
    assert train["device"].value == "auto" and train["device"].filter.list == []  # free text
    assert train["preset"].filter.list == list(PRESETS)
    assert train["config"].filter.list == ["yaml", "yml"]
    derived = train["out_checkpoint"]
    assert (derived.parameterType, derived.direction) == ("Derived", "Output")

    synth = by_name(pyt.SynthesizeImageryFromLandCover().getParameterInfo())
    assert synth["checkpoint"].datatype == ["DEFile", "DEFolder"]
    assert (synth["output"].datatype, synth["output"].direction) == ("DERasterDataset", "Output")
    assert synth["device"].value == "auto"


def cli_defaults(module) -> dict:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return {a.dest: a.default for a in parser._actions if a.dest != "help"}


# Tool parameters that are not CLI options, and CLI options the tools leave out (with why).
TOOL_ONLY = {"out_checkpoint"}
CLI_ONLY = {
    "progress", "quiet",  # the progressor replaces the terminal's progress bar
    "val_scenes", "resolution", "skip_unpaired",  # multi-scene export: the tool does one scene
}
# Dask cluster runs are a command-line and Python feature; Pro runs synthesis in-process.
SYNTHESIZE_CLI_ONLY = {"workers", "scheduler", "scheduler_file", "threads", "block_size",
                       "output_format", "resume", "connect_timeout"}


@pytest.mark.parametrize("spec, cli", [(tools.EXPORT, cli_export),
                                       (tools.SYNTHESIZE, cli_synthesize)])
def test_parameters_mirror_the_cli(spec, cli):
    defaults = cli_defaults(cli)
    names = {p.name for p in spec.params}
    cli_only = CLI_ONLY | (SYNTHESIZE_CLI_ONLY if cli is cli_synthesize else set())
    assert set(defaults) - cli_only == names - TOOL_ONLY
    for param in spec.params:
        expected = defaults[param.name]
        if param.name == "image_format":
            assert tools.IMAGE_FORMATS[param.default] == expected
        elif param.name == "preview":  # a path on the CLI, a check box here
            assert expected is None and param.default is False
        elif param.datatype == "GPBoolean":
            assert param.default is False and expected in (False, None)
        else:
            assert param.default == expected, param.name
        if param.default is None:
            assert param.kind == "Optional" or param.name in {"landcover", "imagery", "out_dir",
                                                              "checkpoint", "output"}


def test_train_parameters_mirror_the_cli_and_train_config():
    defaults = cli_defaults(cli_train)
    config = TrainConfig()
    for param in tools.TRAIN.params:
        if param.name in TOOL_ONLY:
            continue
        assert param.name in defaults, param.name  # a flag of geospade train
        if param.name in tools.TRAIN_OPTIONS:
            assert param.default == getattr(config, param.name), param.name
    for name in ("chips_dir", "run_dir", "config", "resume", "overwrite"):
        assert tools.TRAIN.param(name)


@pytest.mark.parametrize("spec, function", [(tools.EXPORT, "geospade.chips.export:export_chips"),
                                            (tools.SYNTHESIZE, "geospade.synthesis:synthesize"),
                                            (tools.WHAT_IF, "geospade.whatif:what_if")])
def test_tool_defaults_are_the_library_functions(spec, function):
    module, name = function.split(":")
    signature = inspect.signature(getattr(importlib.import_module(module), name))
    mirrored = [p for p in spec.params if p.name in signature.parameters
                and signature.parameters[p.name].default is not inspect.Parameter.empty
                and p.name != "image_format"]  # TIFF/PNG in the dialog, tif/png in the library
    assert len(mirrored) >= 8
    for param in mirrored:
        expected = signature.parameters[param.name].default
        if param.datatype == "GPBoolean":
            # a check box: off, where the library's default is off (False, or no preview path)
            assert param.default is False and expected in (False, None), param.name
        else:
            assert param.default == expected, param.name
    if spec is tools.EXPORT:
        assert tools.IMAGE_FORMATS[spec.param("image_format").default] == \
            signature.parameters["image_format"].default


def test_train_parameters_carry_train_config_help_and_choices():
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for name in tools.TRAIN_OPTIONS:
        param = tools.TRAIN.param(name)
        assert param.help == fields[name].metadata["help"]
    assert tools.TRAIN.param("objective").choices == OBJECTIVES
    assert tools.TRAIN.param("preset").choices == tuple(PRESETS)


@pytest.mark.parametrize("fraction", [-0.1, 0.0, 0.3, 0.5, 0.7, 0.99, 1.0])
def test_validation_fraction_limits_are_the_library_s(pyt, tmp_path, capsys, fraction):
    """The dialog, geospade export-chips and export_chips accept the same fractions."""
    from geospade.chips.export import export_chips
    from geospade.cli.main import main

    missing = str(tmp_path / "missing.tif")
    with pytest.raises(InputError) as library:
        export_chips(missing, missing, tmp_path / "out", val_fraction=fraction, progress=False)
    library_refuses = "validation fraction" in str(library.value)
    assert library_refuses == (not 0.0 <= fraction < 1.0)
    dialog = validate(pyt.ExportSPADETrainingChips(), val_fraction=fraction)["val_fraction"]
    assert dialog.hasError() == library_refuses
    code = main(["export-chips", missing, "--imagery", missing, "-o", str(tmp_path / "cli"),
                 "--val-fraction", str(fraction), "-q"])
    assert code != 0  # the inputs do not exist either way: which error comes first tells
    assert ("validation fraction" in capsys.readouterr().err) == library_refuses


@pytest.mark.parametrize("device, valid", [("auto", True), ("cpu", True), ("cuda", True),
                                           ("cuda:1", True), ("mps", True), ("gpu", False),
                                           ("cuda:x", False)])
def test_device_names_are_train_config_s(pyt, device, valid):
    """Every tool accepts exactly the device names training accepts (cuda:N and mps too)."""
    try:
        TrainConfig(device=device).validate()
        accepted = True
    except InputError:
        accepted = False
    assert accepted == valid
    for tool in (pyt.TrainSPADEModel(), pyt.SynthesizeImageryFromLandCover(),
                 pyt.WhatIfImageryFromLandCoverChanges()):
        param = validate(tool, device=device)["device"]
        assert param.hasError() == (not valid), (tool.label, device)
        assert param.filter.type != "ValueList"  # a value list could not hold cuda:N


# -- validation messages ---------------------------------------------------------------------------


def test_tile_size_not_a_multiple_of_32_is_an_error(pyt):
    params = validate(pyt.ExportSPADETrainingChips(), tile_size=100)
    assert params["tile_size"].hasError()
    assert "32" in params["tile_size"].message and "96 or 128" in params["tile_size"].message
    assert not validate(pyt.ExportSPADETrainingChips(), tile_size=128)["tile_size"].hasError()
    synth = validate(pyt.SynthesizeImageryFromLandCover(), tile_size=100)
    assert synth["tile_size"].hasError() and "32" in synth["tile_size"].message


def test_export_validation_messages(pyt, tmp_path):
    tool = pyt.ExportSPADETrainingChips()
    params = validate(tool, tile_size=128, stride=200, val_fraction=1.0, max_nodata=1.5)
    assert "larger than the tile size 128" in params["stride"].message
    assert params["val_fraction"].hasError() and "below 1" in params["val_fraction"].message
    assert params["max_nodata"].hasError()
    assert not validate(tool, val_fraction=0.2)["val_fraction"].hasError()

    full = tmp_path / "full"
    full.mkdir()
    (full / "x.txt").write_text("x")
    out = validate(tool, out_dir=str(full))["out_dir"]
    assert out.hasError() and "not empty" in out.message and "Overwrite" in out.message
    params = parameters(tool, out_dir=str(full), overwrite=True)
    by_name(params)["out_dir"].setErrorMessage("000725: Dataset already exists.")  # ArcGIS's
    tool.updateMessages(params)
    out = by_name(params)["out_dir"]
    assert out.hasWarning() and not out.hasError() and "replaced" in out.message

    # An existing empty folder is fine: geospade clears ArcGIS's own "already exists".
    empty = tmp_path / "empty"
    empty.mkdir()
    params = parameters(tool, out_dir=str(empty))
    by_name(params)["out_dir"].setErrorMessage("000725: Dataset already exists.")
    tool.updateMessages(params)
    assert not by_name(params)["out_dir"].hasError()


def test_overwrite_output_environment_counts_as_overwrite(pyt, arcpy, tmp_path):
    (tmp_path / "x.txt").write_text("x")
    arcpy.env.overwriteOutput = True
    try:
        out = validate(pyt.ExportSPADETrainingChips(), out_dir=str(tmp_path))["out_dir"]
    finally:
        arcpy.env.overwriteOutput = False
    assert out.hasWarning()


def test_train_validation_messages(pyt, tmp_path):
    tool = pyt.TrainSPADEModel()
    params = validate(tool, batch_size=0, steps=10, epochs=2, lr_g=-1.0, resume=True,
                      overwrite=True, chips_dir=str(tmp_path), run_dir=str(tmp_path / "run"))
    assert "batch_size" in params["batch_size"].message
    assert "not both" in params["epochs"].message
    assert params["lr_g"].hasError()
    assert "only one" in params["overwrite"].message
    assert "Nothing to resume" in params["resume"].message
    assert "not a chip folder" in params["chips_dir"].message
    run_dir = tmp_path / "old_run"
    (run_dir / "checkpoints").mkdir(parents=True)
    params = validate(tool, run_dir=str(run_dir))
    assert params["run_dir"].hasError() and "Resume" in params["run_dir"].message


def test_synthesize_validation_messages(pyt, tmp_path, scene):
    tool = pyt.SynthesizeImageryFromLandCover()
    params = validate(tool, checkpoint=str(tmp_path / "missing.pt"),
                      output=str(tmp_path / "out.img"), feather=3, batch_size=0)
    assert "not found" in params["checkpoint"].message
    assert "GeoTIFF" in params["output"].message
    assert params["feather"].hasError() and params["batch_size"].hasError()
    params = validate(tool, output=str(tmp_path / "db.gdb" / "out.tif"))
    assert "geodatabase" in params["output"].message
    params = validate(tool, landcover=str(scene.landcover), output=str(scene.landcover),
                      overwrite=True)
    assert "replace the land cover" in params["output"].message


# -- progress and errors -----------------------------------------------------------------------------


def test_progress_drives_the_step_progressor(arcpy):
    messages = fake_arcpy.Messages()
    reporter = tools.Reporter(arcpy, messages)
    arcpy.calls.clear()
    for done in (1, 2, 3):
        reporter.progress(done, 3, "export")
    reporter.progress(5, 0, "scan")
    assert arcpy.calls[0] == ("SetProgressor", "step", "export...", 0, 3, 1)
    positions = [c[1] for c in arcpy.calls if c[0] == "SetProgressorPosition"]
    assert positions == [1, 2, 3]
    assert ("SetProgressorLabel", "export: 2 of 3") in arcpy.calls
    assert ("SetProgressor", "default", "scan...") in arcpy.calls
    assert sum(c[0] == "SetProgressor" for c in arcpy.calls) == 2  # once per stage
    assert messages.of("message") == ["export: started (3 to do)", "export: 3 of 3 done",
                                      "scan: started"]


def test_library_error_becomes_execute_error(pyt, arcpy, scene, tmp_path):
    tool = pyt.ExportSPADETrainingChips()
    params = parameters(tool, landcover=str(scene.landcover), imagery=str(scene.imagery),
                        out_dir=str(tmp_path / "chips"), tile_size=512)  # larger than 256 px
    messages = fake_arcpy.Messages()
    with pytest.raises(arcpy.ExecuteError):
        tool.execute(params, messages)
    assert len(messages.of("error")) == 1 and "512" in messages.of("error")[0]
    assert ("ResetProgressor",) in arcpy.calls
    assert not (tmp_path / "chips").exists()


def test_execute_checks_values_as_the_dialog_does(pyt, arcpy, scene, tmp_path):
    tool = pyt.ExportSPADETrainingChips()
    params = parameters(tool, landcover=str(scene.landcover), imagery=str(scene.imagery),
                        out_dir=str(tmp_path / "chips"), tile_size=100)
    messages = fake_arcpy.Messages()
    with pytest.raises(arcpy.ExecuteError):
        tool.execute(params, messages)
    assert "Tile Size" in messages.of("error")[0] and "32" in messages.of("error")[0]


def test_aoi_layer_is_copied_to_a_shapefile(arcpy, tmp_path):
    reporter = tools.Reporter(arcpy, fake_arcpy.Messages())
    gpkg = tmp_path / "aoi.gpkg"
    geopandas.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:32618").to_file(gpkg)
    assert reporter.feature_file(str(gpkg)) == str(gpkg)
    arcpy.calls.clear()
    out = reporter.feature_file("AOI layer")
    assert out.endswith("aoi.shp")
    assert arcpy.calls == [("CopyFeatures", "AOI layer", out)]
    assert reporter.feature_file(None) is None


# -- what execute() calls ----------------------------------------------------------------------------


def test_export_calls_export_chips_with_the_cli_arguments(pyt, arcpy, monkeypatch, tmp_path):
    import geospade.chips.export as export_module

    seen = {}

    def fake_export(**kwargs):
        seen.update(kwargs)
        raise InputError("stop here")

    monkeypatch.setattr(export_module, "export_chips", fake_export)
    tool = pyt.ExportSPADETrainingChips()
    params = parameters(tool, landcover="lc.tif", imagery="img.tif", out_dir=str(tmp_path / "c"),
                        tile_size=128, stride=64, image_format="PNG", val_fraction=0.25,
                        seed=3, workers=2, classes="chesapeake-7")
    with pytest.raises(arcpy.ExecuteError):
        tool.execute(params, fake_arcpy.Messages())
    progress = seen.pop("progress")
    assert seen == dict(landcover="lc.tif", imagery="img.tif", out_dir=str(tmp_path / "c"),
                        tile_size=128, stride=64, max_nodata=0.0, aoi=None,
                        classes="chesapeake-7", val_fraction=0.25, val_block=None, seed=3,
                        image_format="png", workers=2, overwrite=False)
    assert progress.__self__.__class__ is tools.Reporter


def test_train_calls_train_with_resolved_config(pyt, arcpy, monkeypatch, tmp_path):
    import geospade.training as training

    seen = {}

    def fake_train(chips_dir, run_dir, config, **kwargs):
        seen.update(chips_dir=chips_dir, run_dir=run_dir, config=config, **kwargs)
        return tmp_path / "run" / "checkpoints" / "latest.pt"

    monkeypatch.setattr(training, "train", fake_train)
    options = tmp_path / "options.yaml"
    options.write_text(yaml.safe_dump({"batch_size": 2, "preset": "tiny", "lr_d": 1e-3}))
    chips = tmp_path / "chips"
    (chips / "images").mkdir(parents=True)
    params, messages = run(pyt.TrainSPADEModel(), arcpy, chips_dir=str(chips),
                           run_dir=str(tmp_path / "run"), config=str(options), steps=7,
                           device="cpu")
    config = seen.pop("config")
    assert (config.steps, config.device) == (7, "cpu")  # given in the dialog
    assert (config.batch_size, config.preset, config.lr_d) == (2, "tiny", 1e-3)  # from the file
    assert seen["resume"] is False and seen["overwrite"] is False
    assert str(seen["chips_dir"]) == str(chips)
    assert params["out_checkpoint"].value == str(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert any("checkpoint:" in m for m in messages.of("message"))


def test_train_tool_takes_several_chip_folders(pyt, arcpy, monkeypatch, tmp_path):
    import geospade.training as training

    seen = {}

    def fake_train(chips_dir, run_dir, config, **kwargs):
        seen.update(chips_dir=chips_dir)
        return tmp_path / "run" / "checkpoints" / "latest.pt"

    monkeypatch.setattr(training, "train", fake_train)
    folders = [tmp_path / "chips a", tmp_path / "chips_b"]  # ArcGIS quotes the one with a space
    for folder in folders:
        (folder / "images").mkdir(parents=True)
    assert pyt.TrainSPADEModel().getParameterInfo()[0].kwargs == {"multiValue": True}
    params, messages = run(pyt.TrainSPADEModel(), arcpy, chips_dir=[str(f) for f in folders],
                           run_dir=str(tmp_path / "run"), steps=1, device="cpu")
    assert [str(p) for p in seen["chips_dir"]] == [str(f) for f in folders]
    assert any("2 chip folders" in m for m in messages.of("message"))
    (tmp_path / "plain").mkdir()
    params = validate(pyt.TrainSPADEModel(), chips_dir=[str(folders[0]), str(tmp_path / "plain")],
                      run_dir=str(tmp_path / "run2"))
    assert params["chips_dir"].hasError() and "plain" in params["chips_dir"].message


def test_synthesize_calls_synthesize_with_the_cli_arguments(pyt, arcpy, monkeypatch, tmp_path):
    import geospade.synthesis as synthesis

    seen = {}

    def fake_synthesize(**kwargs):
        seen.update(kwargs)
        raise InputError("stop here")

    monkeypatch.setattr(synthesis, "synthesize", fake_synthesize)
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    tool = pyt.SynthesizeImageryFromLandCover()
    out = tmp_path / "out.tif"
    params = parameters(tool, landcover="lc.tif", checkpoint=str(ckpt), output=str(out),
                        seed=5, tile_size=256, halo=32, device="cpu", preview=True, cog=True)
    with pytest.raises(arcpy.ExecuteError):
        tool.execute(params, fake_arcpy.Messages())
    seen.pop("progress")
    assert seen == dict(landcover="lc.tif", checkpoint=str(ckpt), out=str(out), tile_size=256,
                        halo=32, feather=None, batch_size=4, device="cpu", seed=5,
                        map_unknown=None, resample=False, cog=True,
                        preview=tmp_path / "out.preview.png", overwrite=False)


# -- real runs on the demo scene: export -> train -> synthesize --------------------------------------


@pytest.fixture(scope="module")
def chips(pyt, arcpy, scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "chips"
    aoi = out.parent / "aoi.gpkg"
    with rasterio.open(scene.landcover) as ds:
        left, bottom, right, top = ds.bounds
    # The AOI covers the top 3 of 4 tile rows (64 px tiles, 1 m pixels).
    geopandas.GeoDataFrame(geometry=[shapely.box(left, bottom + 64, right, top)],
                           crs="EPSG:32618").to_file(aoi)
    params, messages = run(pyt.ExportSPADETrainingChips(), arcpy, landcover=str(scene.landcover),
                           imagery=str(scene.imagery), out_dir=str(out), tile_size=64,
                           aoi=str(aoi), workers=1)
    return out, messages, list(arcpy.calls)


def test_export_tool_writes_a_chip_folder(chips):
    out, messages, calls = chips
    images = sorted((out / "images").glob("*.tif"))
    labels = sorted((out / "labels").glob("*.tif"))
    assert 0 < len(images) == len(labels) <= 12  # only the AOI's 12 tiles can be chips
    assert (out / "map.txt").exists() and (out / "esri_model_definition.emd").exists()
    summary = [m for m in messages.of("message") if "chips (" in m]
    assert summary and f"{len(images)} chips" in summary[0]
    assert any(c[0] == "SetProgressor" and c[1] == "step" for c in calls)
    assert any(c[0] == "SetProgressorPosition" for c in calls)
    assert calls[-1] == ("ResetProgressor",)


@pytest.fixture(scope="module")
def trained(pyt, arcpy, chips, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("train") / "run"
    params, messages = run(pyt.TrainSPADEModel(), arcpy, chips_dir=str(chips[0]),
                           run_dir=str(run_dir), preset="tiny", steps=2, batch_size=2,
                           device="cpu", checkpoint_every=1000, sample_every=1000)
    return params, messages, list(arcpy.calls)


def test_train_tool_writes_a_checkpoint(trained):
    params, messages, calls = trained
    checkpoint = params["out_checkpoint"].value
    assert checkpoint.endswith("latest.pt")
    from geospade.checkpoint import load_checkpoint, read_card

    card = read_card(load_checkpoint(checkpoint))
    assert card.step == 2 and card.model_config["preset"] == "tiny"
    assert ("SetProgressor", "step", "train...", 0, 2, 1) in calls
    assert ("SetProgressorPosition", 2) in calls


def test_synthesize_tool_writes_a_georeferenced_geotiff(pyt, arcpy, scene, trained, tmp_path):
    out = tmp_path / "synthetic.tif"
    params, messages = run(pyt.SynthesizeImageryFromLandCover(), arcpy,
                           landcover=str(scene.landcover),
                           checkpoint=trained[0]["out_checkpoint"].value, output=str(out),
                           tile_size=128, device="cpu", preview=True)
    with rasterio.open(out) as ds, rasterio.open(scene.landcover) as lc:
        assert (ds.crs, ds.transform, ds.shape) == (lc.crs, lc.transform, lc.shape)
        assert ds.count == 3 and ds.dtypes[0] == "uint8"
        pixels, mask = ds.read(), ds.dataset_mask()
        nodata = lc.read(1) == lc.nodata
    assert np.all(mask[nodata] == 0) and np.all(mask[~nodata] == 255)
    assert pixels[:, ~nodata].std() > 0
    assert (tmp_path / "synthetic.preview.png").exists()
    assert any(m.startswith("wrote ") for m in messages.of("message"))
    assert any(c[0] == "SetProgressor" and c[2] == "synthesize..." for c in arcpy.calls)


def test_values_are_read_as_python_values(arcpy):
    def param(value):
        p = arcpy.Parameter()
        p.value = value
        return p

    read = tools.parameter_value
    spec = tools.EXPORT.param
    assert read(spec("tile_size"), param("128")) == 128
    assert read(spec("val_fraction"), param("0,25")) == 0.25  # a decimal comma
    assert read(spec("overwrite"), param("true")) is True
    assert read(spec("overwrite"), param(None)) is False
    assert read(spec("stride"), param("")) is None
    assert read(spec("landcover"), param("C:/data/lc.tif")) == "C:/data/lc.tif"
    with pytest.raises(InputError, match="not a number"):
        read(spec("tile_size"), param("big"))
