"""benchmarks/bench_quality.py's former recipe stays the recipe it names when the presets change."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from geospade.models.config import model_config

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_quality.py"


def _bench_recipes() -> dict:
    spec = importlib.util.spec_from_file_location("bench_quality", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RECIPES


def test_former_recipe_is_the_pre_realism_quickstart_model_whatever_the_cpu_preset():
    former = _bench_recipes()["former"]
    cfg = model_config(former["preset"], 7, 3, **former["model"])
    expected = dict(ngf=16, ndf=32, num_upsampling=4, spade_hidden=32, d_layers=3,
                    adaptive="clade", upsample="nearest", noise_dim=8, noise_spatial=0,
                    noise_field=0, noise_texture=0, class_noise=False, norm="batch",
                    discriminator="multiscale", num_d=2)
    assert {k: getattr(cfg, k) for k in expected} == expected
    assert (former["objective"], former["lambda_l1"], former["lambda_moments"],
            former["moments_per_chip"], former["lambda_variety"]) == ("spade", 10.0, 0.0, False, 0.0)
    # every option a recipe can set is pinned (the bench gives the run's length itself)
    from geospade.training.config import RECIPE_FALLBACK, RECIPES

    assert (set(RECIPE_FALLBACK) | set(RECIPES["cpu"])) - {"steps"} <= set(former)
