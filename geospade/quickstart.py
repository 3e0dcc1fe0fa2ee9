"""The whole pipeline on the built-in demo scene: the quickstart a newcomer runs first.

demo scene -> chips -> SPADE training -> synthesis of the whole demo land cover -> evaluation
-> a side-by-side picture (land cover | real imagery | synthetic imagery) and a short report.
``geospade demo`` and ``pipelines/quickstart.py`` both call :func:`run_quickstart`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from geospade.errors import InputError
from geospade.progress import ProgressArg
from geospade.raster import check_output

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuickstartSettings:
    """Sizes of one quickstart run; :func:`default_settings` picks them for the hardware.

    The generator trains with exactly ``geospade train CHIPS -o RUN --preset PRESET``: its
    recipe (:data:`geospade.training.config.RECIPES`) sets objective, batch size and length;
    ``steps`` and ``batch_size`` override them only when given (tests, ``--steps``).
    """

    scene_size: int = 2048
    tile_size: int = 64
    preset: str = "cpu"
    steps: int | None = None
    batch_size: int | None = None
    segmenter_steps: int = 400
    synth_tile_size: int = 512
    device: str = "cpu"


def default_settings(device: str = "auto") -> QuickstartSettings:
    """CPU: the ``cpu`` preset's recipe on 64 px chips, which fits the quickstart's minutes
    on two cores. GPU: the paper-size generator on 256 px chips for 3000 steps.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        return QuickstartSettings(tile_size=256, preset="paper", steps=3000, batch_size=8,
                                  segmenter_steps=500, synth_tile_size=512, device=device)
    return QuickstartSettings(device=device)


@dataclass
class QuickstartResult:
    """Where the quickstart put things, and what it measured."""

    out_dir: Path
    landcover: Path
    imagery: Path
    chips: Path
    checkpoint: Path
    synthetic: Path
    evaluation: Path
    picture: Path
    report: Path
    figures: dict = field(default_factory=dict)


def run_quickstart(out_dir: str | Path, settings: QuickstartSettings | None = None, *,
                   seed: int = 0, overwrite: bool = False,
                   progress: ProgressArg = True) -> QuickstartResult:
    """Run every stage on the demo scene into ``out_dir`` and return what was written.

    Args:
        out_dir: a new (or empty) folder; an existing non-empty one needs ``overwrite``.
        settings: stage sizes (default: :func:`default_settings` for this machine).
        seed: seed of the scene, the split, the training and the synthesis.
        overwrite: replace the outputs of an earlier run in ``out_dir``.
        progress: progress bars (True), silence (False) or a callback.
    """
    from geospade.chips.export import export_chips
    from geospade.demo import make_demo_scene
    from geospade.evaluation import evaluate, train_segmenter
    from geospade.synthesis import synthesize
    from geospade.training import TrainConfig, train

    settings = settings or default_settings()
    out = check_output(out_dir, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str):
        timings[name] = time.perf_counter()
        log.info("quickstart: %s", name)
        if progress is True:
            print(f"== {name}", flush=True)

    def done(name: str) -> None:
        timings[name] = round(time.perf_counter() - timings[name], 1)

    stage("demo scene")
    scene = make_demo_scene(out / "scene", size=settings.scene_size, seed=seed,
                            overwrite=overwrite, progress=progress)
    done("demo scene")

    stage("export chips")
    exported = export_chips(scene.landcover, scene.imagery, out / "chips",
                            tile_size=settings.tile_size, val_fraction=0.1, seed=seed,
                            overwrite=overwrite, progress=progress)
    done("export chips")

    stage("train")
    config = TrainConfig(preset=settings.preset, steps=settings.steps,
                         batch_size=settings.batch_size, device=settings.device,
                         seed=seed).resolved()
    checkpoint = train(out / "chips", out / "run", config, overwrite=overwrite,
                       progress=progress)
    done("train")

    stage("synthesize")
    synthetic = synthesize(scene.landcover, checkpoint, out / "synthetic.tif",
                           tile_size=settings.synth_tile_size, device=settings.device,
                           seed=seed, preview=out / "synthetic.png", overwrite=overwrite,
                           progress=progress)
    done("synthesize")

    stage("evaluate")
    segmenter = train_segmenter(out / "chips", out / "segmenter.pt",
                                steps=settings.segmenter_steps, device=settings.device,
                                seed=seed, overwrite=overwrite, progress=progress)
    report = evaluate(checkpoint, out / "chips", out / "evaluation", segmenter=segmenter,
                      synthetic=synthetic.path, tile_size=synthetic.tile_size,
                      landcover=scene.landcover, seed=seed, device=settings.device,
                      overwrite=overwrite, progress=progress)
    done("evaluate")

    picture = write_picture(scene.landcover, scene.imagery, synthetic.path,
                            out / "quickstart.png", overwrite=overwrite)
    realism = report.get("realism") or {}
    figures = {
        "settings": settings.__dict__,
        "recipe": {k: getattr(config, k) for k in ("preset", "objective", "batch_size", "steps",
                                                   "lambda_l1")},
        "chips": {"train": exported.num_train, "val": exported.num_val},
        "synthesis_megapixels_per_second": round(synthetic.megapixels_per_second, 3),
        "seam_score": (report.get("seams") or {}).get("score"),
        "seam_score_phase_matched": (report.get("seams") or {}).get("score_phase_matched"),
        "miou_real": report["real"]["miou"],
        "miou_synthetic": report["synthetic"]["miou"],
        "pixel_accuracy_real": report["real"]["pixel_accuracy"],
        "pixel_accuracy_synthetic": report["synthetic"]["pixel_accuracy"],
        "frechet": report["frechet"]["segmenter_features"],
        "realism": {k: realism.get(k) for k in ("texture_ratio", "spread_ratio",
                                                "variety_ratio", "colour_error")},
        "seconds": timings,
    }
    report_path = write_summary(out / "report.md", figures, overwrite=overwrite)
    (out / "figures.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return QuickstartResult(out, scene.landcover, scene.imagery, out / "chips", checkpoint,
                            synthetic.path, out / "evaluation", picture, report_path, figures)


def write_picture(landcover: Path, imagery: Path, synthetic: Path, out_png: Path,
                  max_size: int = 768, overwrite: bool = False) -> Path:
    """Land cover | real imagery | synthetic imagery, side by side, as one PNG."""
    from geospade.preview import preview_array, side_by_side, write_png

    panels = [preview_array(path, max_size) for path in (landcover, imagery, synthetic)]
    return write_png(out_png, side_by_side(panels), overwrite=overwrite)


def write_summary(path: Path, figures: dict, overwrite: bool = False) -> Path:
    """A short human-readable report of the run (Markdown)."""
    if path.exists() and not overwrite:
        raise InputError("report exists", path=path, hint="Pass --overwrite.")

    def num(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        "# geospade quickstart",
        "",
        "![land cover | real | synthetic](quickstart.png)",
        "",
        f"- chips: {figures['chips']['train']} train, {figures['chips']['val']} validation",
        f"- model: `geospade train --preset {figures['recipe']['preset']}` "
        f"({figures['recipe']['objective'].upper()} objective), "
        f"{figures['recipe']['steps']} steps of {figures['recipe']['batch_size']} chips on "
        f"{figures['settings']['device']}",
        f"- segmentation consistency (validation chips): mIoU {num(figures['miou_synthetic'])} "
        f"on synthetic imagery vs {num(figures['miou_real'])} on real imagery (the ceiling); "
        f"pixel accuracy {num(figures['pixel_accuracy_synthetic'])} vs "
        f"{num(figures['pixel_accuracy_real'])}; segmenter-feature Frechet distance "
        f"{num(figures['frechet'])}",
        "- realism, synthetic / real (1.0 = as real, flat paint 0): texture "
        f"{num(figures['realism']['texture_ratio'])}, spread "
        f"{num(figures['realism']['spread_ratio'])}, variety "
        f"{num(figures['realism']['variety_ratio'])}; mean-colour error "
        f"{num(figures['realism']['colour_error'])} (pixel units)",
        f"- seam score of the synthesised raster: {num(figures['seam_score_phase_matched'])} "
        f"against interior lines at the same phase of the generator's grid, "
        f"{num(figures['seam_score'])} against every interior line (1.0 = invisible)",
        f"- synthesis speed: {figures['synthesis_megapixels_per_second']} Mpx/s",
        "- seconds per stage: "
        + ", ".join(f"{k} {v}" for k, v in figures["seconds"].items()),
        "",
        "Files: `scene/` (demo land cover and imagery), `chips/` (ArcGIS Classified_Tiles), "
        "`run/` (checkpoints, samples, metrics), `synthetic.tif` (+ `synthetic.png`), "
        "`evaluation/` (report.json, report.txt, panel.png).",
        "",
    ]
    path.write_text("\n".join(lines))
    return path
