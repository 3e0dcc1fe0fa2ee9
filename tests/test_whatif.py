"""What-if imagery: real pixels kept bit for bit, the change synthesised and matched to its
surroundings, grids and CRSs, every bad input, the CLI and the ArcGIS tool."""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

import fake_arcpy
import geopandas
import numpy as np
import pytest
import rasterio
import shapely
import torch
from affine import Affine
from helpers import random_model
from rasterio.windows import Window

from geospade.arcgis import TOOLBOX, tools
from geospade.checkpoint import ModelCard
from geospade.classes import CHESAPEAKE_7
from geospade.cli import main as cli_main
from geospade.cli import what_if as cli_what_if
from geospade.errors import ClassSchemeError, InputError, OutputExistsError
from geospade.imagery import ImageryInfo
from geospade.synthesis.model import LoadedModel, save_model
from geospade.whatif import (
    distance_from,
    landcover_output_path,
    merge_windows,
    split_layer,
    what_if,
)

ROOT = Path(__file__).resolve().parents[1]
CRS = "EPSG:32618"
LEFT, TOP = 360000.0, 4310000.0
TRANSFORM = Affine(1.0, 0.0, LEFT, 0.0, -1.0, TOP)
NODATA = CHESAPEAKE_7.nodata
SIZE = 192
# How the "model" renders each class (value -> RGB) and how the real sensor differs from it.
MODEL_COLOURS = {1: (30, 60, 120), 2: (40, 100, 40), 3: (120, 170, 80), 4: (190, 160, 120),
                 5: (150, 150, 150), 6: (60, 60, 60), 7: (200, 80, 200)}
SENSOR_GAIN, SENSOR_OFFSET = 0.9, 15.0
FIELD, HOUSES = 3, 5  # the plan turns low vegetation into impervious surfaces
BLEND_M = 6.0


class ColourGenerator(torch.nn.Module):
    """A stand-in for a trained generator: each class gets its own colour (a 1 x 1 convolution
    over the one-hot labels), so "the new class's look" is known exactly."""

    downsampling_factor = 1
    receptive_field = 1
    field_reach = 0

    def __init__(self, scheme):
        super().__init__()
        self.conv = torch.nn.Conv2d(scheme.num_classes + 1, 3, 1, bias=False)
        weights = torch.zeros(3, scheme.num_classes + 1, 1, 1)
        for index, cls in enumerate(scheme.classes):
            weights[:, index, 0, 0] = torch.tensor(MODEL_COLOURS[cls.value]) / 127.5 - 1.0
        self.conv.weight.data = weights

    def make_noise(self, batch, height, width, seed, **_):
        return None

    def forward(self, onehot, noise=None):
        return self.conv(onehot.float())


@pytest.fixture(scope="module")
def colour_model():
    card = ModelCard({"preset": "test-colours"}, CHESAPEAKE_7, ImageryInfo(3, "uint8"), 64,
                     resolution=(1.0, 1.0), crs_units="metre")
    return LoadedModel(ColourGenerator(CHESAPEAKE_7).eval(), card)


def blocky(size: int, cell: int = 16, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.choice([1, 2, 3, 4, 6], (size // cell + 1, size // cell + 1))
    labels = coarse.repeat(cell, 0).repeat(cell, 1)[:size, :size].astype(np.uint8)
    labels[64:128, 64:128] = FIELD  # the field the plan builds on
    return labels


def real_pixels(labels: np.ndarray) -> np.ndarray:
    """The real imagery: the model's colours through another sensor (gain and offset)."""
    rgb = np.zeros((3, *labels.shape), np.float64)
    for value, colour in MODEL_COLOURS.items():
        rgb[:, labels == value] = np.array(colour, float)[:, None]
    return np.rint(rgb * SENSOR_GAIN + SENSOR_OFFSET).astype(np.uint8)


def write_raster(path, data: np.ndarray, transform=TRANSFORM, crs=CRS, nodata=None,
                 mask: np.ndarray | None = None) -> str:
    data = data[None] if data.ndim == 2 else data
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype.name, crs=crs, transform=transform, nodata=nodata,
                   tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if data.shape[0] == 1:
            dst.write_colormap(1, CHESAPEAKE_7.colormap())
        if mask is not None:
            dst.write_mask(np.where(mask, 255, 0).astype(np.uint8))
    return str(path)


def write_plan(path, geoms, classes, crs=CRS, field="new_class") -> str:
    geopandas.GeoDataFrame({field: classes}, geometry=geoms, crs=crs).to_file(path)
    return str(path)


def field_box():
    """The field (rows/cols 64..128) in map coordinates, a little inside its edges."""
    return shapely.box(LEFT + 72, TOP - 120, LEFT + 120, TOP - 72)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene")
    labels = blocky(SIZE)
    mask = np.ones(labels.shape, bool)
    mask[:8, :] = False  # the imagery's own mask (a strip without data)
    lc = write_raster(root / "landcover.tif", labels, nodata=NODATA)
    img = write_raster(root / "imagery.tif", real_pixels(labels), mask=mask)
    plan = write_plan(root / "plan.gpkg", [field_box()], [HOUSES])
    return {"root": root, "labels": labels, "landcover": lc, "imagery": img, "plan": plan,
            "mask": mask}


@pytest.fixture(scope="module")
def result(scene, colour_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "whatif.tif"
    res = what_if(scene["landcover"], scene["imagery"], colour_model, out,
                  changes=scene["plan"], class_field="new_class", blend=BLEND_M,
                  preview=out.with_suffix(".png"), progress=False)
    return res


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.dataset_mask() > 0


def changed_of(scene, res):
    edited, _ = read(res.landcover)
    return edited[0] != scene["labels"]


def test_outside_change_and_band_is_bit_for_bit(scene, result):
    before, _ = read(scene["imagery"])
    after, _ = read(result.path)
    changed = changed_of(scene, result)
    assert changed.sum() == result.changed_pixels == 48 * 48
    dist = distance_from(changed, result.blend_pixels + 1)
    outside = dist > result.blend_pixels
    assert np.array_equal(after[:, outside], before[:, outside])
    assert (after[:, changed] != before[:, changed]).any(axis=0).all()
    assert result.blend_pixels == 6


def test_inside_carries_the_new_class_in_the_real_radiometry(scene, result):
    before, _ = read(scene["imagery"])
    after, _ = read(result.path)
    changed = changed_of(scene, result)
    houses_real = np.array(MODEL_COLOURS[HOUSES]) * SENSOR_GAIN + SENSOR_OFFSET
    inside = after[:, changed].mean(axis=1)
    assert np.abs(inside - houses_real).max() < 3  # houses, as the real sensor sees them
    assert np.abs(inside - before[:, changed].mean(axis=1)).max() > 20  # not the field
    assert np.allclose(result.gains[0], SENSOR_GAIN, atol=0.02)
    assert np.allclose(result.offsets[0], SENSOR_OFFSET, atol=3)


def test_without_matching_inside_is_the_models_rendering(scene, colour_model, tmp_path):
    res = what_if(scene["landcover"], scene["imagery"], colour_model, tmp_path / "raw.tif",
                  changes=scene["plan"], class_field="new_class", blend=0, match=False,
                  progress=False)
    after, _ = read(res.path)
    before, _ = read(scene["imagery"])
    changed = changed_of(scene, res)
    assert (after[:, changed] == np.array(MODEL_COLOURS[HOUSES])[:, None]).all()
    assert np.array_equal(after[:, ~changed], before[:, ~changed])  # no band at blend 0


def test_grid_crs_bands_and_mask_are_the_imagery_s(scene, result):
    with rasterio.open(scene["imagery"]) as src, rasterio.open(result.path) as dst:
        assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
        assert (dst.count, dst.dtypes, dst.colorinterp) == (src.count, src.dtypes, src.colorinterp)
        assert np.array_equal(dst.dataset_mask(), src.dataset_mask())
    with rasterio.open(result.landcover) as lc, rasterio.open(scene["landcover"]) as orig:
        assert (lc.crs, lc.transform, lc.nodata) == (orig.crs, orig.transform, orig.nodata)
        assert lc.colormap(1)[HOUSES][:3] == CHESAPEAKE_7.colormap()[HOUSES][:3]


def test_only_the_change_region_is_synthesised(scene, result):
    assert len(result.regions) == 1
    window = result.regions[0]
    margin = result.blend_pixels + 16 + 1  # band + matching ring + context of this model
    assert window.width <= 48 + 2 * (margin + 1) and window.height <= 48 + 2 * (margin + 1)
    assert result.synthesized_pixels == window.width * window.height < 0.3 * SIZE * SIZE


def test_seam_at_the_change_boundary(scene, colour_model, tmp_path, result):
    hard = what_if(scene["landcover"], scene["imagery"], colour_model, tmp_path / "hard.tif",
                   changes=scene["plan"], class_field="new_class", blend=0, match=False,
                   progress=False)
    # Matched and feathered, the edge of the pasted area is no rougher than the real imagery
    # around it; pasted as generated, it stands out.
    assert result.seam_score < 1.5
    assert hard.seam_score > 2 * result.seam_score


def test_preview_shows_before_after_and_outline(result):
    with rasterio.open(result.preview) as png:
        rgb = png.read()
    assert png.width > 3 * png.height  # three panels side by side
    outline = (rgb[0] == 255) & (rgb[1] == 0) & (rgb[2] == 255)
    assert outline.sum() > 50


def test_land_cover_and_plan_on_other_grids_and_crs(scene, colour_model, tmp_path):
    # Land cover at 2 m in UTM, plan in lon/lat with class names: read onto the imagery grid.
    coarse = scene["labels"][::2, ::2]
    lc = write_raster(tmp_path / "lc2m.tif", coarse, transform=Affine(2, 0, LEFT, 0, -2, TOP),
                      nodata=NODATA)
    lonlat = geopandas.GeoSeries([field_box()], crs=CRS).to_crs("EPSG:4326")
    plan = write_plan(tmp_path / "plan4326.gpkg", list(lonlat), ["impervious surfaces"],
                      crs="EPSG:4326")
    res = what_if(lc, scene["imagery"], colour_model, tmp_path / "grid.tif", changes=plan,
                  class_field="new_class", blend=BLEND_M, progress=False)
    with rasterio.open(res.landcover) as ds:
        assert (ds.transform, ds.shape) == (TRANSFORM, (SIZE, SIZE))
        edited = ds.read(1)
    upsampled = coarse.repeat(2, 0).repeat(2, 1)
    changed = edited != upsampled
    assert set(np.unique(edited[changed])) == {HOUSES}
    assert abs(int(changed.sum()) - 48 * 48) < 0.05 * 48 * 48  # reprojection rounds edges
    after, _ = read(res.path)
    before, _ = read(scene["imagery"])
    far = distance_from(changed, res.blend_pixels + 1) > res.blend_pixels
    assert np.array_equal(after[:, far], before[:, far])


def test_edited_landcover_on_another_grid(scene, colour_model, tmp_path):
    edited = scene["labels"][::2, ::2].copy()
    edited[60:80, 20:40] = HOUSES  # rows/cols 120..160, 40..80 on the imagery grid
    path = write_raster(tmp_path / "edited.tif", edited, transform=Affine(2, 0, LEFT, 0, -2, TOP),
                        nodata=NODATA)
    res = what_if(scene["landcover"], scene["imagery"], colour_model, tmp_path / "ed.tif",
                  edited_landcover=path, blend=BLEND_M, progress=False)
    out_lc, _ = read(res.landcover)
    changed = out_lc[0] != scene["labels"]
    rows, cols = np.nonzero(changed)
    assert rows.min() >= 120 and rows.max() < 160 and cols.min() >= 40 and cols.max() < 80
    assert (out_lc[0, 120:160, 40:80] == HOUSES).all()
    after, _ = read(res.path)
    before, _ = read(scene["imagery"])
    far = distance_from(changed, res.blend_pixels + 1) > res.blend_pixels
    assert np.array_equal(after[:, far], before[:, far])
    assert (after[:, changed] != before[:, changed]).any()


# -- bad input: one clear error each, nothing written ------------------------------------------


def run_bad(scene, model, tmp_path, **kwargs):
    out = tmp_path / "bad.tif"
    args = dict(changes=scene["plan"], class_field="new_class", progress=False)
    args.update(kwargs)
    imagery = args.pop("imagery", scene["imagery"])
    landcover = args.pop("landcover", scene["landcover"])
    try:
        what_if(landcover, imagery, model, out, **args)
    finally:
        assert not out.exists() and not landcover_output_path(out).exists()
        assert not list(tmp_path.glob(".bad*"))  # no partial files left behind


def test_changes_outside_the_raster(scene, colour_model, tmp_path):
    plan = write_plan(tmp_path / "far.gpkg", [shapely.box(LEFT + 5000, TOP - 100, LEFT + 5100, TOP)],
                      [HOUSES])
    with pytest.raises(InputError, match="entirely outside the imagery"):
        run_bad(scene, colour_model, tmp_path, changes=plan)


def test_unknown_class_name_and_value(scene, colour_model, tmp_path):
    names = write_plan(tmp_path / "names.gpkg", [field_box()], ["skyscrapers"])
    with pytest.raises(ClassSchemeError, match="skyscrapers.*not classes.*Impervious Surfaces"):
        run_bad(scene, colour_model, tmp_path, changes=names)
    values = write_plan(tmp_path / "values.gpkg", [field_box()], [42])
    with pytest.raises(ClassSchemeError, match=r"\['42'\]"):
        run_bad(scene, colour_model, tmp_path, changes=values)


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_polygons_without_crs(scene, colour_model, tmp_path):
    shp = tmp_path / "nocrs.shp"  # a shapefile without its .prj
    geopandas.GeoDataFrame({"new_class": [HOUSES]}, geometry=[field_box()]).to_file(shp)
    with pytest.raises(InputError, match="no coordinate reference system"):
        run_bad(scene, colour_model, tmp_path, changes=str(shp))


def test_a_plan_that_changes_nothing_writes_nothing(scene, colour_model, tmp_path):
    same = write_plan(tmp_path / "same.gpkg", [field_box()], [FIELD])
    with pytest.raises(InputError, match="changes nothing.*Nothing was written"):
        run_bad(scene, colour_model, tmp_path, changes=same)


def test_imagery_bands_the_model_was_not_trained_on(scene, colour_model, tmp_path):
    four = write_raster(tmp_path / "rgbn.tif", np.zeros((4, SIZE, SIZE), np.uint16))
    with pytest.raises(InputError, match="4 band.*uint16.*trained on 3 band"):
        run_bad(scene, colour_model, tmp_path, imagery=four)


def test_other_bad_arguments(scene, colour_model, tmp_path):
    with pytest.raises(InputError, match="either polygon changes or an edited land cover"):
        run_bad(scene, colour_model, tmp_path, edited_landcover=scene["landcover"])
    with pytest.raises(InputError, match="applies to polygon changes"):
        run_bad(scene, colour_model, tmp_path, changes=None, edited_landcover=scene["landcover"])
    with pytest.raises(InputError, match="no field 'kind'"):
        run_bad(scene, colour_model, tmp_path, class_field="kind")
    with pytest.raises(InputError, match="would replace the imagery"):
        what_if(scene["landcover"], scene["imagery"], colour_model, scene["imagery"],
                changes=scene["plan"], class_field="new_class", overwrite=True, progress=False)


def test_existing_output_needs_overwrite(scene, colour_model, result):
    with pytest.raises(OutputExistsError):
        what_if(scene["landcover"], scene["imagery"], colour_model, result.path,
                changes=scene["plan"], class_field="new_class", progress=False)


def test_helpers():
    assert split_layer("plan.gpkg:roads") == (split_layer("plan.gpkg")[0], "roads")
    assert split_layer("C:\\data\\plan.gpkg")[1] is None
    merged = merge_windows([Window(0, 0, 10, 10), Window(50, 50, 5, 5), Window(8, 8, 10, 10)])
    assert merged == [Window(0, 0, 18, 18), Window(50, 50, 5, 5)]
    mask = np.zeros((21, 21), bool)
    mask[10, 10] = True
    dist = distance_from(mask, 5)
    assert dist[10, 10] == 0 and dist[10, 15] == 5 and dist[10, 16] == 6 and dist[0, 0] == 6


# -- the command line and the ArcGIS tool ------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = random_model(CHESAPEAKE_7, ImageryInfo(3, "uint8"), preset="tiny", ngf=4,
                         adaptive="clade")
    return str(save_model(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt"))


def test_cli_what_if(scene, checkpoint, tmp_path, capsys):
    out = tmp_path / "cli.tif"
    code = cli_main.main(["what-if", scene["landcover"], "--imagery", scene["imagery"],
                          "--changes", scene["plan"] + ":plan", "--class-field", "new_class",
                          "--checkpoint", checkpoint, "-o", str(out), "--preview", "-q"])
    assert code == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "seam score" in text
    assert out.exists() and landcover_output_path(out).exists()
    assert (tmp_path / "cli.preview.png").exists()
    code = cli_main.main(["what-if", scene["landcover"], "--imagery", scene["imagery"],
                          "--changes", scene["plan"], "--class-field", "nope",
                          "--checkpoint", checkpoint, "-o", str(tmp_path / "x.tif"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no field 'nope'" in err


@pytest.fixture()
def pyt(tmp_path):
    arcpy = fake_arcpy.make_module(str(tmp_path))
    saved = sys.modules.get("arcpy")
    sys.modules["arcpy"] = arcpy
    loader = importlib.machinery.SourceFileLoader("GeoSPADE", str(TOOLBOX))
    spec = importlib.util.spec_from_loader("GeoSPADE", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    yield module, arcpy
    if saved is None:
        sys.modules.pop("arcpy", None)
    else:
        sys.modules["arcpy"] = saved


def tool_params(tool, **values):
    params = tool.getParameterInfo()
    by_name = {p.name: p for p in params}
    for name, value in values.items():
        by_name[name].value = value
    return params, by_name


def test_arcgis_tool_validates_and_runs(pyt, scene, checkpoint, tmp_path):
    module, arcpy = pyt
    tool = module.WhatIfImageryFromLandCoverChanges()
    assert tool.label == "What-If Imagery From Land-Cover Changes"
    params, by_name = tool_params(tool, landcover=scene["landcover"], imagery=scene["imagery"],
                                  checkpoint=checkpoint, output=str(tmp_path / "arc.tif"))
    tool.updateMessages(params)
    assert by_name["changes"].hasError() and "edited land cover" in by_name["changes"].message
    params, by_name = tool_params(tool, landcover=scene["landcover"], imagery=scene["imagery"],
                                  checkpoint=checkpoint, output=str(tmp_path / "arc.tif"),
                                  changes=scene["plan"])
    tool.updateMessages(params)
    assert by_name["class_field"].hasError()
    params, by_name = tool_params(tool, landcover=scene["landcover"], imagery=scene["imagery"],
                                  checkpoint=checkpoint, output=str(tmp_path / "arc.tif"),
                                  changes=scene["plan"], class_field="new_class", preview=True,
                                  blend=4.0)
    tool.updateMessages(params)
    assert not any(p.hasError() for p in params), [p.message for p in params]
    messages = fake_arcpy.Messages()
    tool.execute(params, messages)
    out = tmp_path / "arc.tif"
    assert out.exists() and landcover_output_path(out).exists()
    assert (tmp_path / "arc.preview.png").exists()
    assert any(m.startswith("wrote ") for m in messages.of("message"))
    assert any(c[0] == "SetProgressor" and c[2] == "what-if..." for c in arcpy.calls)
    with rasterio.open(out) as ds, rasterio.open(scene["imagery"]) as src:
        assert (ds.crs, ds.transform) == (src.crs, src.transform)


def test_arcgis_tool_reports_bad_input_as_one_error(pyt, scene, checkpoint, tmp_path):
    module, arcpy = pyt
    tool = module.WhatIfImageryFromLandCoverChanges()
    same = write_plan(tmp_path / "same.gpkg", [field_box()], [FIELD])
    params, _ = tool_params(tool, landcover=scene["landcover"], imagery=scene["imagery"],
                            checkpoint=checkpoint, output=str(tmp_path / "arc.tif"),
                            changes=same, class_field="new_class")
    messages = fake_arcpy.Messages()
    with pytest.raises(arcpy.ExecuteError):
        tool.execute(params, messages)
    assert len(messages.of("error")) == 1 and "changes nothing" in messages.of("error")[0]
    assert not (tmp_path / "arc.tif").exists()


def test_arcgis_tool_arguments_mirror_the_cli():
    parser = argparse.ArgumentParser()
    cli_what_if.add_arguments(parser)
    cli = {a.dest for a in parser._actions if a.dest != "help"} - {"progress"}
    assert {p.name for p in tools.WHAT_IF.params} == cli


def test_demo_pipeline_builds_a_suburb_and_clears_the_wood(checkpoint, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "whatif_pipeline", ROOT / "pipelines" / "whatif.py")
    pipeline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pipeline)
    # A stand-in for the 2048 px demo scene: fields everywhere, the wood where the demo has it.
    labels = np.full((2048, 2048), FIELD, np.uint8)
    c0, r0, c1, r1 = pipeline.WOOD
    labels[r0:r1, c0:c1] = 2
    scene = tmp_path / "scene"
    scene.mkdir()
    write_raster(scene / "landcover.tif", labels, nodata=NODATA)
    write_raster(scene / "imagery.tif", real_pixels(labels))
    out = tmp_path / "run"
    assert pipeline.main([str(out), "--checkpoint", checkpoint, "--scene", str(scene),
                          "--device", "cpu", "--picture", str(tmp_path / "pic.png")]) == 0
    assert "seam score" in capsys.readouterr().out
    edited, _ = read(out / "whatif.landcover.tif")
    changed = edited[0] != labels
    assert (edited[0, r0 + 1:r1 - 1, c0 + 1:c1 - 1] == 4).all()  # the wood, cleared to bare soil
    assert {5, 6} <= set(np.unique(edited[0][changed]).tolist())  # houses and roads
    plan = geopandas.read_file(out / "plan.gpkg")
    assert plan.crs.to_epsg() == 4326 and set(plan["what"]) == {"wood cleared", "road", "house"}
    for name in ("whatif.tif", "whatif.preview.png", "before_after.png"):
        assert (out / name).exists()
    assert (tmp_path / "pic.png").stat().st_size < 1_000_000


def test_lossy_imagery_is_copied_losslessly(scene, colour_model, tmp_path):
    # JPEG blocks would be re-encoded where the change is written: the output is deflate, and
    # every pixel away from the change is the decoded input pixel.
    jpeg = tmp_path / "jpeg.tif"
    with rasterio.open(scene["imagery"]) as src:
        profile = src.profile | {"compress": "jpeg", "photometric": "ycbcr"}
        with rasterio.open(jpeg, "w", **profile) as dst:
            dst.write(src.read())
    res = what_if(scene["landcover"], jpeg, colour_model, tmp_path / "fromjpeg.tif",
                  changes=scene["plan"], class_field="new_class", blend=BLEND_M, progress=False)
    with rasterio.open(res.path) as out, rasterio.open(jpeg) as src:
        assert out.compression.value.lower() == "deflate"
        before, after = src.read(), out.read()
    changed = changed_of(scene, res)
    far = distance_from(changed, res.blend_pixels + 1) > res.blend_pixels
    assert np.array_equal(after[:, far], before[:, far])
