"""Synthesis: georeferencing, tiling independence, nodata, seeds, classes, outputs, the CLI."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from helpers import random_model
from rasterio.enums import ColorInterp

from geospade.classes import CHESAPEAKE_7
from geospade.cli import main as cli_main
from geospade.errors import ClassSchemeError, GridError, InputError, OutputExistsError
from geospade.imagery import ImageryInfo
from geospade.synthesis import (
    FeatherBlender,
    ResolutionWarning,
    cosine_ramp,
    plan_tiles,
    seam_score,
    synthesize,
    synthesize_array,
)
from geospade.synthesis.blend import tile_weights
from geospade.synthesis.model import save_model

NODATA = CHESAPEAKE_7.nodata  # 15
CRS = "EPSG:32618"
# A corner on a whole multiple of 512 world pixels: tile grids start at the raster's corner.
TRANSFORM = Affine(1.0, 0.0, 360448.0, 0.0, -1.0, 4310016.0)


def blocky_labels(height: int, width: int, seed: int = 0, cell: int = 24) -> np.ndarray:
    """Land cover of square patches of the 7 Chesapeake classes."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 8, (height // cell + 1, width // cell + 1))
    return coarse.repeat(cell, 0).repeat(cell, 1)[:height, :width].astype(np.uint8)


def write_landcover(path, labels: np.ndarray, transform: Affine = TRANSFORM,
                    nodata: int | None = NODATA) -> str:
    profile = dict(driver="GTiff", width=labels.shape[1], height=labels.shape[0], count=1,
                   dtype=labels.dtype.name, crs=CRS, transform=transform, nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(labels, 1)
    return str(path)


def small_model(bands: int = 3):
    """An untrained, narrow CLADE generator (receptive field 54 px): fast on a CPU."""
    return random_model(CHESAPEAKE_7, ImageryInfo(bands, "uint8"), preset="tiny", ngf=4,
                        adaptive="clade")


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    return str(save_model(model, tmp_path_factory.mktemp("ckpt") / "tiny.pt"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 256 x 320 land cover with a nodata corner covering a whole 128 px tile."""
    labels = blocky_labels(256, 320, cell=20)
    labels[:128, :160] = NODATA  # tile (0, 0) entirely nodata: never generated at 128 px
    labels[200:, 250:] = NODATA
    path = write_landcover(tmp_path_factory.mktemp("lc") / "landcover.tif", labels)
    return path, labels


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.dataset_mask()


def test_output_grid_equals_input_grid(scene, checkpoint, tmp_path):
    path, labels = scene
    out = tmp_path / "out.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResolutionWarning)  # same resolution as the training
        result = synthesize(path, checkpoint, out, tile_size=128, halo=32, progress=False)
    with rasterio.open(path) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs
        assert dst.transform == src.transform
        assert (dst.width, dst.height) == (src.width, src.height)
        assert dst.count == 3 and dst.dtypes == ("uint8",) * 3
        assert dst.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        assert dst.nodata is None  # masked by an internal mask, not a colour
        assert dst.read().std() > 1  # an image, not a constant
    assert (result.width, result.height) == (320, 256)
    assert result.stats.generated + result.stats.skipped == result.stats.tiles == 6


def test_output_does_not_depend_on_tiling(scene, model):
    _, labels = scene
    # A halo at least the receptive field (54 px): tiles see all the context that matters.
    a = synthesize_array(labels, TRANSFORM, model, nodata=NODATA, tile_size=128, halo=56)
    b = synthesize_array(labels, TRANSFORM, model, nodata=NODATA, tile_size=256, halo=56)
    inner = (slice(None), slice(32, -32), slice(32, -32))  # away from the raster's border
    both = a.mask & b.mask
    diff = np.abs(a.image.astype(int) - b.image.astype(int))[inner][:, both[inner[1:]]]
    assert diff.mean() < 0.5
    assert diff.max() <= 3
    assert (a.mask == b.mask).all()


def test_nodata_masked_and_all_nodata_tiles_not_generated(scene, checkpoint, tmp_path):
    path, labels = scene
    result = synthesize(path, checkpoint, tmp_path / "out.tif", tile_size=128, halo=32,
                        progress=False)
    image, mask = read(result.path)
    assert ((mask == 0) == (labels == NODATA)).all()
    assert (image[:, labels == NODATA] == 0).all()
    assert result.stats.skipped == 1  # tile (0, 0)
    assert result.stats.generated == 5
    assert result.stats.forward_calls == 2  # batches of 4


def test_generator_calls_counted_on_the_model(scene, model):
    _, labels = scene
    before = model.tiles_generated
    synthesize_array(labels, TRANSFORM, model, nodata=NODATA, tile_size=128, halo=32)
    assert model.tiles_generated - before == 5
    everything_nodata = np.full_like(labels, NODATA)
    out = synthesize_array(everything_nodata, TRANSFORM, model, nodata=NODATA, tile_size=128,
                           halo=32)
    assert model.tiles_generated - before == 5  # nothing generated for an all-nodata raster
    assert not out.mask.any()


def test_same_seed_same_output_other_seed_differs(scene, checkpoint, tmp_path):
    labels = scene[1][128:, :192]
    path = write_landcover(tmp_path / "lc.tif", labels)
    kwargs = dict(tile_size=64, halo=32, progress=False)
    a = read(synthesize(path, checkpoint, tmp_path / "a.tif", seed=3, **kwargs).path)[0]
    b = read(synthesize(path, checkpoint, tmp_path / "b.tif", seed=3, **kwargs).path)[0]
    c = read(synthesize(path, checkpoint, tmp_path / "c.tif", seed=4, **kwargs).path)[0]
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1


def test_unknown_values_are_listed_or_mapped(checkpoint, model, tmp_path):
    labels = blocky_labels(64, 64)
    labels[:8, :8] = 42
    labels[-8:, -8:] = 99
    path = write_landcover(tmp_path / "lc.tif", labels)
    with pytest.raises(ClassSchemeError, match=r"\[42, 99\]"):
        synthesize(path, checkpoint, tmp_path / "out.tif", progress=False)
    assert not (tmp_path / "out.tif").exists()
    result = synthesize(path, checkpoint, tmp_path / "out.tif", map_unknown=3, progress=False)
    mapped = labels.copy()
    mapped[(labels == 42) | (labels == 99)] = 3
    expected = synthesize_array(mapped, TRANSFORM, model, nodata=NODATA)
    assert np.array_equal(read(result.path)[0], expected.image)
    with pytest.raises(ClassSchemeError, match="map-unknown 77"):
        synthesize(path, checkpoint, tmp_path / "o2.tif", map_unknown=77, progress=False)


def test_existing_output_needs_overwrite(scene, checkpoint, tmp_path):
    path, _ = scene
    out = tmp_path / "out.tif"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError):
        synthesize(path, checkpoint, out, progress=False)
    assert out.read_bytes() == b"keep me"
    synthesize(path, checkpoint, out, tile_size=128, halo=32, overwrite=True, progress=False)
    assert read(out)[0].shape == (3, 256, 320)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]  # no temporary left


def test_interrupted_run_leaves_no_output(scene, checkpoint, tmp_path, monkeypatch):
    from geospade.synthesis.model import LoadedModel

    path, _ = scene
    model = LoadedModel.from_checkpoint(checkpoint, "cpu")
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = model.generate
    monkeypatch.setattr(model, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synthesize(path, model, tmp_path / "out.tif", tile_size=128, halo=32, batch_size=1,
                   progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cog_with_overviews(checkpoint, tmp_path):
    labels = np.full((1024, 1024), NODATA, np.uint8)  # nodata tiles cost nothing
    labels[100:300, 100:300] = blocky_labels(200, 200)
    path = write_landcover(tmp_path / "lc.tif", labels)
    out = tmp_path / "out.tif"
    synthesize(path, checkpoint, out, tile_size=512, halo=32, cog=True, progress=False)
    with rasterio.open(out) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.overviews(1)
        assert ds.profile["tiled"]
        assert ((ds.dataset_mask() == 0) == (labels == NODATA)).all()
        assert ds.colorinterp[:3] == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lc.tif", "out.tif"]


def test_array_api_equals_file_output(scene, checkpoint, model, tmp_path):
    path, labels = scene
    result = synthesize(path, checkpoint, tmp_path / "out.tif", tile_size=128, halo=32,
                        progress=False)
    image, mask = read(result.path)
    arr = synthesize_array(labels, TRANSFORM, model, nodata=NODATA, tile_size=128, halo=32)
    assert np.array_equal(arr.image, image)
    assert np.array_equal(arr.mask, mask > 0)


def test_four_band_output(tmp_path):
    rgbn = small_model(bands=4)
    path = write_landcover(tmp_path / "lc.tif", blocky_labels(64, 64))
    synthesize(path, rgbn, tmp_path / "out.tif", progress=False)
    with rasterio.open(tmp_path / "out.tif") as ds:
        assert ds.count == 4
        assert ds.colorinterp[:3] == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        assert ds.descriptions == ("red", "green", "blue", "nir")


def test_resolution_mismatch_warns_and_resamples(checkpoint, tmp_path):
    coarse = Affine(2.0, 0.0, 360000.0, 0.0, -2.0, 4310000.0)
    path = write_landcover(tmp_path / "lc.tif", blocky_labels(64, 80, cell=12), coarse)
    with pytest.warns(ResolutionWarning, match="--resample"):
        kept = synthesize(path, checkpoint, tmp_path / "kept.tif", progress=False)
    assert (kept.width, kept.height) == (80, 64) and not kept.resampled
    with pytest.warns(ResolutionWarning, match="resampling"):
        result = synthesize(path, checkpoint, tmp_path / "res.tif", resample=True,
                            progress=False)
    with rasterio.open(tmp_path / "res.tif") as ds:
        assert ds.res == (1.0, 1.0)
        assert (ds.width, ds.height) == (160, 128)
        assert ds.bounds == rasterio.open(path).bounds
    assert result.resampled


def test_bad_sizes_are_clear_errors(scene, checkpoint, tmp_path):
    path, _ = scene
    with pytest.raises(GridError, match="multiple of 8"):
        synthesize(path, checkpoint, tmp_path / "o.tif", tile_size=100, progress=False)
    with pytest.raises(GridError, match="halo"):
        synthesize(path, checkpoint, tmp_path / "o.tif", halo=12, progress=False)
    assert not (tmp_path / "o.tif").exists()


def test_preview_png(scene, checkpoint, tmp_path):
    path, _ = scene
    result = synthesize(path, checkpoint, tmp_path / "out.tif", tile_size=128, halo=32,
                        preview=tmp_path / "quick.png", progress=False)
    with rasterio.open(result.preview) as png:
        assert png.driver == "PNG" and png.count == 3
        assert png.width > 2 * 320 and png.height == 256  # input beside output


def test_halo_and_feather_hide_seams(scene, model):
    """Without a halo, tiles disagree at their borders; with one, the seam score is ~1."""
    labels = scene[1][-192:, -192:]
    hard = synthesize_array(labels, TRANSFORM, model, nodata=NODATA, tile_size=64, halo=0,
                            feather=0)
    soft = synthesize_array(labels, TRANSFORM, model, nodata=NODATA, tile_size=64, halo=56)
    assert seam_score(hard.image, 64, mask=hard.mask) > 1.2
    assert seam_score(soft.image, 64, mask=soft.mask) < 1.1


def test_cli_synthesize_and_seam_score(scene, checkpoint, tmp_path, capsys):
    path, _ = scene
    out = tmp_path / "out.tif"
    argv = ["synthesize", path, "--checkpoint", checkpoint, "-o", str(out), "--tile-size",
            "128", "--halo", "32", "--seed", "1", "--quiet", "--preview", "--seam-score"]
    assert cli_main.main(argv) == 0
    printed = capsys.readouterr().out
    assert "1 all-nodata tiles skipped" in printed and "seam score" in printed
    assert (tmp_path / "out.preview.png").exists()
    assert cli_main.main(argv) == OutputExistsError.exit_code  # no --overwrite
    assert "output exists" in capsys.readouterr().err
    assert cli_main.main(["seam-score", str(out), "--tile-size", "128"]) == 0
    assert 0 < float(capsys.readouterr().out) < 1.2


# -- planning and blending ------------------------------------------------------------------


def test_cosine_weights_sum_to_one_across_seams():
    ramp = cosine_ramp(16)
    assert np.allclose(ramp + ramp[::-1], 1.0)
    plan = plan_tiles(300, 200, tile_size=64, halo=16, feather=16, multiple_of=8)
    total = np.zeros((200, 300))
    for tile in plan.grid:
        window = plan.kept_window(tile)
        rows = slice(max(window.row_off, 0), min(window.row_off + window.height, 200))
        cols = slice(max(window.col_off, 0), min(window.col_off + window.width, 300))
        w = tile_weights(plan, tile)
        total[rows, cols] += w[rows.start - window.row_off: rows.stop - window.row_off,
                               cols.start - window.col_off: cols.stop - window.col_off]
    assert np.allclose(total, 1.0)


def test_blender_memory_is_bounded_by_the_seams():
    plan = plan_tiles(2048, 2048, tile_size=128, halo=16, feather=16, multiple_of=8)
    blender = FeatherBlender(plan, 1)
    written = np.zeros((2048, 2048), int)
    most = 0
    for tile in plan.grid:
        window = plan.kept_window(tile)
        values = np.full((1, window.height, window.width), 0.5, np.float32)
        for block in blender.add(tile, values, np.ones((window.height, window.width), bool)):
            rows, cols = block.window.toslices()
            written[rows, cols] += 1
            assert np.allclose(block.values, 0.5)
        most = max(most, blender.pending_pixels)
    assert blender.done
    assert (written == 1).all()  # every pixel written exactly once
    assert most <= (2048 + 2 * 128) * 16  # about one band of seams, not a strip of tiles


def test_plan_checks_halo_and_feather():
    with pytest.raises(GridError, match="multiple of 16"):
        plan_tiles(100, 100, tile_size=64, halo=24, multiple_of=16)
    with pytest.raises(GridError, match="needs a halo"):
        plan_tiles(100, 100, tile_size=64, halo=8, feather=32, multiple_of=8)


def test_refuses_a_non_geotiff_output_name(scene, checkpoint, tmp_path):
    path, _ = scene
    with pytest.raises(InputError, match="writes a GeoTIFF") as exc:
        synthesize(path, checkpoint, tmp_path / "x.png", progress=False)
    assert "x.tif" in str(exc.value)
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("kind", ["rgb", "float"])
def test_refuses_rgb_or_continuous_land_cover(checkpoint, tmp_path, kind):
    data = (np.ones((3, 64, 64), np.uint8) if kind == "rgb"
            else np.full((1, 64, 64), 0.5, np.float32))
    path = tmp_path / f"{kind}.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=data.shape[0],
                       dtype=data.dtype.name, crs=CRS, transform=TRANSFORM) as dst:
        dst.write(data)
    hint = "3 bands" if kind == "rgb" else "continuous values"
    with pytest.raises(InputError, match=hint):
        synthesize(path, checkpoint, tmp_path / "out.tif", progress=False)
