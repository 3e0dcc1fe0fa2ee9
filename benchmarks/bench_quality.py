"""Realism benchmark: the former quickstart recipe vs the default recipe at equal CPU wall time.

Both recipes train for the same wall-clock budget on the same chips (``--clock cpu``: the same
process CPU time instead, which stays fair when other jobs share the machine), then are scored
side by side on:

(a) the demo scene: its validation chips (``geospade evaluate``: realism ratios, judge mIoU,
    segmenter-feature Frechet distance) and the whole-scene synthesis (realism against the
    real scene imagery, judge mIoU and Frechet distance over 64 px tiles, and the 2**k grid
    statistic: seam score at a period of 2**k px, synthetic over real);
(b) the two FLAIR patches in ``../shared/data/flair`` (real 0.2 m aerial imagery, 19 classes):
    one model per recipe trained on the chips of both patches (laid side by side in one
    raster), scored per patch as in (a)'s whole-scene part.

Each recipe's training stops at the budget the way Ctrl-C stops ``geospade train``: after
the step in progress, with a checkpoint. The judge is a segmenter trained once per dataset
on the real chips and shared by both recipes. Writes ``OUT/results.json`` and the picture
``OUT/realism.png`` (land cover | real | former recipe | default recipe, one row per place).

Usage::

    python benchmarks/bench_quality.py -o /tmp/quality --budget 150
    python benchmarks/bench_quality.py -o /tmp/quality --budget 30 --scene-size 1024 --no-flair
    python benchmarks/bench_quality.py -o /tmp/quality --budget 450 --clock cpu --no-flair \
        --recipe 'tones={"preset": "cpu", "model": {"noise_dim": 0, "noise_field": 8,
                  "noise_field_spacing": 192, "noise_field_mode": "segments"}}' \
        --only default,tones      # an option against the default, without the former recipe
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLAIR = ROOT.parent / "shared" / "data" / "flair"
FLAIR_PATCHES = ("066278", "076201")
CHIP = 64

#: The quickstart's recipe before the realism work (SPADE objective, CLADE, L1 10, an 8-channel
#: style vector), pinned field by field so that changes of the defaults do not change it.
RECIPES: dict[str, dict] = {
    "former": dict(preset="cpu", objective="spade", lr_g=2e-4, lambda_l1=10.0,
                   lambda_moments=0.0, moments_per_chip=False, lambda_variety=0.0, batch_size=8,
                   model={"ngf": 16, "ndf": 32, "num_upsampling": 4, "spade_hidden": 32,
                          "d_layers": 3, "adaptive": "clade", "upsample": "nearest",
                          "noise_dim": 8, "noise_field": 0, "class_noise": False,
                          "noise_texture": 0, "field_pool": "cell"}),
    "default": dict(preset="cpu"),
}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def train_for(chips: Path, run: Path, options: dict, budget: float, seed: int,
              clock_name: str = "wall") -> dict:
    """Train ``options`` until ``budget`` seconds of training have passed on the clock
    ``clock_name`` ("wall" or "cpu": this process's CPU time); return the facts."""
    now = CLOCKS[clock_name]
    from geospade.training import TrainConfig, train

    config = TrainConfig(**{"device": "cpu", "seed": seed, "steps": 10**6,
                            "checkpoint_every": 10**6, "sample_every": 10**6,
                            "log_every": 50, **options}).resolved()
    clock: dict[str, float] = {}

    def stop_at_budget(step: int, info: dict) -> None:
        clock.setdefault("start", now())
        clock["steps"] = step
        if now() - clock["start"] >= budget and "stopped" not in clock:
            clock["stopped"] = now()
            os.kill(os.getpid(), signal.SIGINT)  # trainer: finish the step, checkpoint, stop

    with contextlib.suppress(KeyboardInterrupt):  # the budget's stop
        train(chips, run, config, overwrite=True, progress=False, callback=stop_at_budget)
    seconds = clock.get("stopped", now()) - clock["start"]
    return {"steps": int(clock["steps"]), "seconds": round(seconds, 1),
            "img_per_s": round(clock["steps"] * config.batch_size / seconds, 2),
            "checkpoint": str(run / "checkpoints" / "latest.pt")}


def ratio(value: float, reference: float) -> float:
    """value / reference, NaN where the reference is 0 or not finite."""
    ok = math.isfinite(reference) and reference != 0
    return value / reference if ok else float("nan")


def read(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read()


def region_scores(segmenter, scheme, labels: np.ndarray, real: np.ndarray,
                  synthetic: np.ndarray) -> dict:
    """Realism, judge mIoU (synthetic, real, ratio) and Frechet distance over 64 px tiles."""
    from geospade.evaluation.metrics import confusion_matrix, frechet_distance_of, mean_iou
    from geospade.evaluation.realism import realism_of

    n = scheme.num_classes
    encoded = scheme.encode(labels)
    height, width = encoded.shape
    confusion = {"real": np.zeros((n, n), np.int64), "synthetic": np.zeros((n, n), np.int64)}
    features: dict[str, list] = {"real": [], "synthetic": []}
    for row in range(0, height - CHIP + 1, CHIP):
        for col in range(0, width - CHIP + 1, CHIP):
            window = (slice(row, row + CHIP), slice(col, col + CHIP))
            for name, image in (("real", real), ("synthetic", synthetic)):
                tile = segmenter.imagery.to_model(image[(slice(None), *window)])
                pred, feat = segmenter.predict(tile[None])
                confusion[name] += confusion_matrix(pred[0], encoded[window], n,
                                                    scheme.ignore_index)
                features[name].append(feat[0])
    realism = realism_of(real, synthetic, encoded, n)
    miou = {name: mean_iou(m) for name, m in confusion.items()}
    return {"texture_ratio": realism["texture_ratio"], "spread_ratio": realism["spread_ratio"],
            "variety_ratio": realism["variety_ratio"], "colour_error": realism["colour_error"],
            "miou_real": miou["real"], "miou_synthetic": miou["synthetic"],
            "miou_ratio": ratio(miou["synthetic"], miou["real"]),
            "frechet": frechet_distance_of(np.stack(features["real"]),
                                           np.stack(features["synthetic"])),
            "classes": realism["classes"]}


def grid_statistic(synthetic: Path, real: Path, period: int) -> dict:
    """Seam score at every ``period``-th line (the generator's 2**k grid), synthetic vs real."""
    from geospade.synthesis import seam_score

    syn, ref = seam_score(synthetic, period), seam_score(real, period)
    return {"period": period, "synthetic": syn, "real": ref, "ratio": ratio(syn, ref)}


def synthesize_scene(checkpoint: str, landcover: Path, out: Path, seed: int) -> tuple[Path, int]:
    """Synthesise a whole land cover; returns the raster and the generator's 2**k."""
    from geospade.synthesis import load_model, synthesize

    model = load_model(checkpoint, "cpu")
    synthesize(landcover, model, out, tile_size=512, device="cpu", seed=seed, overwrite=True,
               progress=False)
    return out, model.downsampling_factor


def mosaic_flair(out: Path, flair: Path = FLAIR) -> tuple[Path, Path]:
    """The two FLAIR patches side by side as one land cover and one imagery raster.

    The chip exporter reads one scene; placing the patches next to each other (on the first
    patch's grid) lets one model train on the chips of both.
    """
    import rasterio

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in ("landcover", "imagery"):
        arrays = [read(flair / f"{kind}_{p}.tif") for p in FLAIR_PATCHES]
        with rasterio.open(flair / f"{kind}_{FLAIR_PATCHES[0]}.tif") as ds:
            profile = ds.profile
        data = np.concatenate(arrays, axis=2)
        profile.update(width=data.shape[2], height=data.shape[1], driver="GTiff")
        path = out / f"{kind}.tif"
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
        paths.append(path)
    return paths[0], paths[1]


def judge(chips: Path, out: Path, steps: int, seed: int) -> Path:
    from geospade.evaluation import train_segmenter

    return train_segmenter(chips, out, steps=steps, device="cpu", seed=seed, overwrite=True,
                           progress=False)


def demo_part(out: Path, args: argparse.Namespace) -> dict:
    """(a): the demo scene's validation chips and whole-scene synthesis."""
    from geospade.chips.export import export_chips
    from geospade.demo import make_demo_scene
    from geospade.evaluation import evaluate, load_segmenter

    scene = make_demo_scene(out / "scene", size=args.scene_size, seed=args.seed,
                            overwrite=True, progress=False)
    chips = export_chips(scene.landcover, scene.imagery, out / "chips", tile_size=CHIP,
                         val_fraction=0.1, seed=args.seed, overwrite=True,
                         progress=False).out_dir
    segmenter_path = judge(chips, out / "segmenter.pt", args.segmenter_steps, args.seed)
    segmenter = load_segmenter(segmenter_path, "cpu")
    results = {"judge_real_val_miou": segmenter.card.extra["validation"]["miou"]}
    labels, real = read(scene.landcover)[0], read(scene.imagery)
    for name, options in args.recipes.items():
        print(f"  demo: training '{name}' for {args.budget:.0f} s", flush=True)
        facts = train_for(chips, out / f"run_{name}", options, args.budget, args.seed,
                          args.clock)
        report = evaluate(facts["checkpoint"], chips, out / f"eval_{name}", segmenter=segmenter,
                          device="cpu", seed=args.seed, overwrite=True, progress=False)
        synthetic, period = synthesize_scene(facts["checkpoint"], scene.landcover,
                                             out / f"synthetic_{name}.tif", args.seed)
        realism = report["realism"]
        results[name] = {
            "training": facts,
            "val_chips": {"texture_ratio": realism["texture_ratio"],
                          "spread_ratio": realism["spread_ratio"],
                          "variety_ratio": realism["variety_ratio"],
                          "colour_error": realism["colour_error"],
                          "miou_real": report["real"]["miou"],
                          "miou_synthetic": report["synthetic"]["miou"],
                          "miou_ratio": ratio(report["synthetic"]["miou"],
                                              report["real"]["miou"]),
                          "frechet": report["frechet"]["segmenter_features"]},
            "scene": region_scores(segmenter, segmenter.class_scheme, labels, real,
                                   read(synthetic)),
            "grid": grid_statistic(synthetic, scene.imagery, period),
            "synthetic": str(synthetic),
        }
    results["paths"] = {"landcover": str(scene.landcover), "imagery": str(scene.imagery),
                        "chips": str(chips)}
    return results


def flair_part(out: Path, args: argparse.Namespace) -> dict:
    """(b): one model per recipe on the chips of both FLAIR patches, scored per patch."""
    from geospade.chips.export import export_chips
    from geospade.evaluation import load_segmenter

    landcover, imagery = mosaic_flair(out / "mosaic", args.flair)
    chips = export_chips(landcover, imagery, out / "chips", tile_size=CHIP, val_fraction=0.1,
                         classes=args.flair / "flair19.json", seed=args.seed, overwrite=True,
                         progress=False).out_dir
    segmenter = load_segmenter(judge(chips, out / "segmenter.pt", args.segmenter_steps,
                                     args.seed), "cpu")
    labels, real = read(landcover)[0], read(imagery)
    width = labels.shape[1] // len(FLAIR_PATCHES)
    results: dict = {"judge_real_val_miou": segmenter.card.extra["validation"]["miou"]}
    for name, options in args.recipes.items():
        print(f"  FLAIR: training '{name}' for {args.budget:.0f} s", flush=True)
        facts = train_for(chips, out / f"run_{name}", options, args.budget, args.seed,
                          args.clock)
        synthetic, period = synthesize_scene(facts["checkpoint"], landcover,
                                             out / f"synthetic_{name}.tif", args.seed)
        syn = read(synthetic)
        results[name] = {"training": facts, "grid": grid_statistic(synthetic, imagery, period),
                         "synthetic": str(synthetic)}
        for i, patch in enumerate(FLAIR_PATCHES):
            cols = slice(i * width, (i + 1) * width)
            results[name][patch] = region_scores(segmenter, segmenter.class_scheme,
                                                 labels[:, cols], real[:, :, cols],
                                                 syn[:, :, cols])
    results["paths"] = {"landcover": str(landcover), "imagery": str(imagery),
                        "chips": str(chips)}
    return results


# -- the picture -------------------------------------------------------------------------------


def cell(array: np.ndarray, size: int) -> np.ndarray:
    """A (3, H, W) uint8 crop shrunk (block mean) to at most ``size`` pixels a side."""
    factor = max(1, math.ceil(max(array.shape[1:]) / size))
    h, w = (array.shape[1] // factor) * factor, (array.shape[2] // factor) * factor
    blocks = array[:, :h, :w].reshape(3, h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(2, 4)).round().astype(np.uint8)


def picture_row(landcover: Path, imagery: Path, synthetics: list[Path], window, scheme,
                size: int) -> np.ndarray:
    from geospade.preview import imagery_rgb, landcover_rgb, side_by_side

    rows, cols = window
    lc = read(landcover)[0][rows, cols]
    panels = [landcover_rgb(lc, scheme)]
    panels += [imagery_rgb(read(p)[:, rows, cols]) for p in [imagery, *synthetics]]
    return side_by_side([cell(p, size) for p in panels], gap=4)


def write_picture(path: Path, rows: list[np.ndarray]) -> Path:
    from geospade.preview import write_png

    width = max(r.shape[2] for r in rows)
    parts = []
    for r in rows:
        if parts:
            parts.append(np.full((3, 4, width), 255, np.uint8))
        parts.append(np.pad(r, ((0, 0), (0, 0), (0, width - r.shape[2])), constant_values=255))
    return write_png(path, np.concatenate(parts, axis=1), overwrite=True)


# -- printing ------------------------------------------------------------------------------------


MEASURES = ("texture_ratio", "spread_ratio", "variety_ratio", "colour_error", "miou_ratio",
            "miou_synthetic", "miou_real", "frechet")


def print_table(title: str, rows: dict[str, dict]) -> None:
    names = list(rows)
    print(f"\n{title}")
    print("  " + "measure".ljust(16) + "".join(n.rjust(12) for n in names))
    for key in MEASURES:
        values = [rows[n].get(key) for n in names]
        if all(v is None for v in values):
            continue
        print("  " + key.ljust(16) + "".join(
            ("-" if v is None else f"{v:.3f}").rjust(12) for v in values))


def report(results: dict, names: list[str]) -> None:
    if "demo" in results:
        demo = results["demo"]
        print(f"\n(a) demo scene; judge mIoU on real validation chips "
              f"{demo['judge_real_val_miou']:.3f}")
        for n in names:
            t = demo[n]["training"]
            print(f"  {n}: {t['steps']} steps in {t['seconds']} s ({t['img_per_s']} img/s)")
        print_table("validation chips", {n: demo[n]["val_chips"] for n in names})
        print_table("whole scene", {n: demo[n]["scene"] for n in names})
        for n in names:
            g = demo[n]["grid"]
            print(f"  {n}: {g['period']} px grid statistic synthetic {g['synthetic']:.3f} / "
                  f"real {g['real']:.3f} = {g['ratio']:.3f}")
    if "flair" in results:
        flair = results["flair"]
        print(f"\n(b) FLAIR; judge mIoU on real validation chips "
              f"{flair['judge_real_val_miou']:.3f}")
        for n in names:
            t = flair[n]["training"]
            print(f"  {n}: {t['steps']} steps in {t['seconds']} s ({t['img_per_s']} img/s)")
        for patch in FLAIR_PATCHES:
            print_table(f"patch {patch}", {n: flair[n][patch] for n in names})
        for n in names:
            g = flair[n]["grid"]
            print(f"  {n}: {g['period']} px grid statistic ratio {g['ratio']:.3f}")
    print("\n(ratios are synthetic / real; 1.0 = as real. The machine may be shared: compare "
          "the recipes with each other, measured in this one run.)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--out", type=Path, required=True, help="working folder")
    parser.add_argument("--budget", type=float, default=150.0,
                        help="training seconds per recipe and dataset")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="budget clock: wall time, or this process's CPU time (fair on a "
                        "shared machine)")
    parser.add_argument("--scene-size", type=int, default=2048, help="demo scene side (px)")
    parser.add_argument("--segmenter-steps", type=int, default=None,
                        help="judge training steps (default: the quickstart's)")
    parser.add_argument("--flair", type=Path, default=FLAIR,
                        help="folder of the FLAIR patches (default: ../shared/data/flair)")
    parser.add_argument("--no-flair", action="store_true", help="skip part (b)")
    parser.add_argument("--no-demo", action="store_true", help="skip part (a)")
    parser.add_argument("--recipe", action="append", default=[], metavar="NAME=JSON",
                        help="an extra recipe: TrainConfig options as JSON")
    parser.add_argument("--only", metavar="NAME[,NAME...]",
                        help="run only these recipes (built-in or --recipe), in this order")
    parser.add_argument("--picture", type=Path, help="also copy the picture here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from geospade.chips.folder import read_chip_folder
    from geospade.quickstart import default_settings

    def scheme_of(part: dict):
        return read_chip_folder(part["paths"]["chips"], progress=False).class_scheme

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    args.segmenter_steps = args.segmenter_steps or default_settings("cpu").segmenter_steps
    args.recipes = dict(RECIPES)
    for item in args.recipe:
        name, _, options = item.partition("=")
        args.recipes[name] = json.loads(options)
    if args.only:
        chosen = args.only.split(",")
        unknown = [n for n in chosen if n not in args.recipes]
        if unknown:
            parser.error(f"--only names unknown recipe(s) {', '.join(unknown)}: choose from "
                         f"{', '.join(args.recipes)} or add one with --recipe NAME=JSON")
        if len(chosen) < 2:
            parser.error(f"--only {args.only} names one recipe: give two or more to compare")
        args.recipes = {n: args.recipes[n] for n in chosen}
    names = list(args.recipes)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"budget_s": args.budget, "clock": args.clock, "recipes": args.recipes}
    rows = []
    if not args.no_demo:
        print("(a) demo scene", flush=True)
        results["demo"] = demo = demo_part(args.out / "demo", args)
        size = min(512, args.scene_size)
        window = (slice(0, size), slice(0, size))
        rows.append(picture_row(Path(demo["paths"]["landcover"]), Path(demo["paths"]["imagery"]),
                                [Path(demo[n]["synthetic"]) for n in names[:2]], window,
                                scheme_of(demo), 192))
    if not args.no_flair and args.flair.is_dir():
        print("(b) FLAIR", flush=True)
        results["flair"] = flair = flair_part(args.out / "flair", args)
        scheme = scheme_of(flair)
        for i in range(len(FLAIR_PATCHES)):
            window = (slice(0, 512), slice(i * 512, (i + 1) * 512))
            rows.append(picture_row(Path(flair["paths"]["landcover"]),
                                    Path(flair["paths"]["imagery"]),
                                    [Path(flair[n]["synthetic"]) for n in names[:2]], window,
                                    scheme, 192))
    elif not args.no_flair:
        print(f"(b) skipped: no FLAIR data in {args.flair}")
    if rows:
        picture = write_picture(args.out / "realism.png", rows)
        if args.picture:
            args.picture.write_bytes(picture.read_bytes())
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    report(results, names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
