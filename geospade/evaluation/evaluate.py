"""Score a generator on a chip folder: segmentation consistency, Fréchet distance, colours, seams.

For every chip of a split, the generator turns the chip's label into imagery; the segmenter
(:mod:`~geospade.evaluation.segmenter`) classifies both the real and the synthetic image.
Agreement with the label (per-class IoU, mIoU, pixel accuracy) on real chips is the ceiling,
on synthetic chips the score. The segmenter's pooled features give a domain Fréchet
distance; per-class band means and deviations compare colours in the imagery's own units.
Optionally, a synthesised raster's seam score (and its per-class colours) are added.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geospade import __version__
from geospade.checkpoint import checkpoint_input
from geospade.errors import ClassSchemeError, InputError
from geospade.evaluation.metrics import (
    ColourStats,
    classes_without_truth,
    confusion_matrix,
    frechet_distance_of,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
)
from geospade.evaluation.realism import RealismStats, compare
from geospade.progress import ProgressArg, progress_bar
from geospade.raster import atomic_dir, check_not_input, check_output

log = logging.getLogger(__name__)

# Fewer chips than this make a Frechet distance too noisy to rank models: warn.
MIN_FRECHET_CHIPS = 50


@dataclass
class PanelChip:
    """One chip kept for the panel: its score and the four pictures' data."""

    score: float
    index: int
    labels: np.ndarray  # (H, W) model indices
    real: np.ndarray  # (bands, H, W) pixels
    synthetic: np.ndarray  # (bands, H, W) pixels
    predicted: np.ndarray  # (H, W) segmenter's model indices on the synthetic image


@dataclass
class PanelPicker:
    """Keeps the ``size`` worst and ``size`` best chips seen, in bounded memory."""

    size: int
    worst: list[PanelChip] = field(default_factory=list)
    best: list[PanelChip] = field(default_factory=list)

    def offer(self, chip: PanelChip) -> None:
        """Consider a chip for both ends of the ranking."""
        if self.size <= 0 or not math.isfinite(chip.score):
            return
        self.worst = sorted([*self.worst, chip], key=lambda c: (c.score, c.index))[: self.size]
        self.best = sorted([*self.best, chip], key=lambda c: (-c.score, c.index))[: self.size]


def evaluate(
    checkpoint,
    chips_dir: str | Path,
    out_dir: str | Path,
    *,
    segmenter,
    split: str = "val",
    synthetic: str | Path | None = None,
    tile_size: int | None = None,
    landcover: str | Path | None = None,
    seed: int = 0,
    batch_size: int = 8,
    device: str = "auto",
    inception_weights: str | Path | None = None,
    panel_chips: int = 4,
    overwrite: bool = False,
    progress: ProgressArg = True,
) -> dict:
    """Evaluate a generator checkpoint on a chip folder and write a report folder.

    Writes ``report.json`` (every number, per class, with the settings; NaN written as
    null), ``report.txt`` (the table :func:`~geospade.evaluation.report.format_table` prints)
    and ``panel.png`` (worst then best chips by synthetic pixel accuracy: label colours |
    real | synthetic | segmentation of the synthetic image) into ``out_dir``, atomically.

    Args:
        checkpoint: generator checkpoint, run folder or a loaded
            :class:`~geospade.synthesis.LoadedModel`.
        chips_dir: chip folder of the same classes and bands as the model.
        out_dir: report folder to create.
        segmenter: segmenter file from :func:`~geospade.evaluation.train_segmenter`, or a
            loaded :class:`~geospade.evaluation.segmenter.Segmenter`.
        split: chips to score: "val" (falls back to "all", with a warning, when the folder
            has no validation chips), "train" or "all".
        synthetic: a raster written by ``geospade synthesize``, for its seam score.
        tile_size: the tile size that raster was synthesised with (required with it).
        landcover: the land cover it was synthesised from (same grid), for its per-class
            colours.
        seed: noise seed of the generated chips.
        batch_size: chips per generator and segmenter pass.
        device: "auto", "cpu", "cuda" or "cuda:N".
        inception_weights: torchvision inception_v3 weights for an Inception FID (needs
            torchvision; see :mod:`geospade.evaluation.inception`); never downloaded.
        panel_chips: worst and best chips shown in the panel (0: no panel).
        overwrite: replace an existing ``out_dir``.
        progress: progress bar (True), silent (False) or a callback(done, total, message).

    Returns:
        The report: the content of ``report.json``, with NaN where the file has null.

    Raises:
        OutputExistsError: ``out_dir`` exists and ``overwrite`` is False.
        CheckpointError: the checkpoint is not a generator or the segmenter not a segmenter.
        ClassSchemeError: model, segmenter and chips do not share one class scheme.
        InputError: unusable chips, options or rasters.
    """
    from geospade.chips.folder import read_chip_folder
    from geospade.evaluation.report import write_report
    from geospade.evaluation.segmenter import Segmenter, load_segmenter

    check_output(out_dir, overwrite)
    check_not_input([out_dir], {
        "checkpoint": checkpoint_input(checkpoint), "chip folder": chips_dir,
        "segmenter": checkpoint_input(segmenter), "synthetic raster": synthetic,
        "land cover": landcover, "Inception weights": inception_weights})
    if landcover is not None and synthetic is None:
        raise InputError("a land cover for raster colours was given without the raster",
                         path=landcover, hint="Pass --synthetic OUT.tif too, or drop --landcover.")
    if synthetic is not None and not tile_size:
        raise InputError("the seam score needs the tile size the raster was synthesised with",
                         path=synthetic, hint="Pass --tile-size (the value given to synthesize).")
    model = load_generator(checkpoint, device)
    inception = None
    if inception_weights is not None:
        from geospade.evaluation.inception import InceptionFeatures

        inception = InceptionFeatures(inception_weights, model.device)
    seg = segmenter if isinstance(segmenter, Segmenter) else load_segmenter(segmenter, device)
    folder = read_chip_folder(chips_dir, progress=False)
    check_compatible(model, seg, folder, chips_dir)
    dataset = chip_dataset(folder, split)
    factor = model.downsampling_factor
    if folder.tile_size % factor:
        raise InputError(f"chips of {folder.tile_size} px are not a multiple of the "
                         f"generator's {factor} px", path=chips_dir,
                         hint=f"Export chips whose size is a multiple of {factor}.")

    scores = score_chips(model, seg, dataset, seed=seed, batch_size=batch_size,
                         panel_chips=panel_chips, progress=progress, inception=inception)
    report = build_report(scores, model, dataset, split=split, seed=seed,
                          checkpoint=checkpoint, segmenter=segmenter, chips_dir=chips_dir)
    report["segmenter_validation"] = seg.card.extra.get("validation")
    log.info("evaluated %d chips: synthetic mIoU %.3f (real %.3f), Frechet distance %.3f",
             len(dataset), report["synthetic"]["miou"], report["real"]["miou"],
             report["frechet"]["segmenter_features"])
    if synthetic is not None and tile_size is not None:  # given together (checked above)
        report["seams"] = raster_scores(synthetic, int(tile_size), landcover, model.scheme,
                                        progress=progress, period=model.downsampling_factor)
    with atomic_dir(out_dir, overwrite) as tmp:
        write_report(tmp, report, scores.panel, model.scheme, model.imagery)
    return report


# -- inputs ------------------------------------------------------------------------------------


def load_generator(checkpoint, device: str):
    """The generator of a checkpoint (a LoadedModel); a segmenter file is refused by name."""
    from geospade.synthesis import LoadedModel, load_model

    return checkpoint if isinstance(checkpoint, LoadedModel) else load_model(checkpoint, device)


def check_compatible(model, segmenter, folder, chips_dir) -> None:
    """Model, segmenter and chips must share class values (in order) and band count."""
    checks = [("generator", model.scheme.values, model.imagery.count),
              ("segmenter", segmenter.class_scheme.values, segmenter.imagery.count)]
    chips_values, chips_bands = folder.class_scheme.values, folder.imagery.count
    for what, values, bands in checks:
        if values != chips_values:
            raise ClassSchemeError(
                f"the {what} knows classes {values} but the chips have {chips_values}",
                path=chips_dir, hint=f"Evaluate on chips exported with the {what}'s classes.")
        if bands != chips_bands:
            raise InputError(f"the {what} works on {bands} bands but the chips have "
                             f"{chips_bands}", path=chips_dir,
                             hint=f"Evaluate on chips of the imagery the {what} was trained on.")


def chip_dataset(folder, split: str):
    """The chips of ``split``; "val" falls back to all chips (with a warning) when empty."""
    from geospade.chips.dataset import ChipDataset

    if split == "val" and not folder.split_counts().get("val"):
        warnings.warn(f"{folder.root}: no validation chips; evaluating on all chips, which the "
                      "generator and segmenter may have been trained on", stacklevel=3)
        split = "all"
    return ChipDataset(folder, split=split)


def chip_offsets(records, folder) -> tuple[list[int], list[int]]:
    """Row and column of every chip's top-left pixel in the mosaic of the folder's chips.

    The generator's noise is a function of global pixel coordinates; chips are placed by
    their georeference relative to the top-left-most chip. Without georeference all are 0.
    """
    from geospade.chips.folder import chip_transform

    transforms = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for record in records:
            transform = chip_transform(record.label)
            if transform is None:
                return [0] * len(records), [0] * len(records)
            transforms.append(transform)
    xs = np.array([t.c for t in transforms])
    ys = np.array([t.f for t in transforms])
    cols = np.rint((xs - xs.min()) / abs(transforms[0].a)).astype(int)
    rows = np.rint((ys.max() - ys) / abs(transforms[0].e)).astype(int)
    return rows.tolist(), cols.tolist()


# -- scoring chips -----------------------------------------------------------------------------


@dataclass
class ChipScores:
    """What :func:`score_chips` accumulated over a split."""

    confusion_real: np.ndarray
    confusion_synthetic: np.ndarray
    features_real: np.ndarray
    features_synthetic: np.ndarray
    colours_real: ColourStats
    colours_synthetic: ColourStats
    chip_accuracy: list[tuple[int, float]]
    panel: PanelPicker
    inception_real: list[np.ndarray] = field(default_factory=list)
    inception_synthetic: list[np.ndarray] = field(default_factory=list)
    realism_real: RealismStats | None = None
    realism_synthetic: RealismStats | None = None


def score_chips(model, segmenter, dataset, *, seed: int, batch_size: int, panel_chips: int,
                progress: ProgressArg, inception=None) -> ChipScores:
    """Generate every chip, segment real and synthetic images, accumulate the statistics
    (and Inception features when ``inception``, an InceptionFeatures, is given)."""
    import torch

    scheme, imagery = dataset.class_scheme, model.imagery
    n = scheme.num_classes
    rows, cols = chip_offsets(dataset.records, dataset.folder)
    realism_real, realism_synthetic = RealismStats(n, imagery.count), RealismStats(n, imagery.count)
    no_features = np.zeros((0, 0), np.float32)  # until the loop's features are joined below
    scores = ChipScores(np.zeros((n, n), np.int64), np.zeros((n, n), np.int64), no_features,
                        no_features, ColourStats(n, imagery.count), ColourStats(n, imagery.count),
                        [], PanelPicker(panel_chips), realism_real=realism_real,
                        realism_synthetic=realism_synthetic)
    loader = torch.utils.data.DataLoader(dataset, batch_size=max(1, batch_size))
    features_real, features_syn = [], []
    with progress_bar(progress, total=len(dataset), desc="evaluate", unit="chip") as bar:
        for batch in loader:
            labels = batch["label"].numpy()
            index = batch["index"].tolist()
            generated = model.generate(labels, [rows[i] for i in index],
                                       [cols[i] for i in index], seed)
            # Both images as pixels of their files (synthetic ones as synthesis would write
            # them), each scaled back by its own ImageryInfo: the chips', the model's, and the
            # segmenter's may differ in range (e.g. 16-bit statistics of another export).
            real_px = np.stack([dataset.imagery.from_model(x) for x in batch["image"].numpy()])
            syn_px = np.stack([imagery.from_model(x) for x in generated])
            pred_real, feat_real = segmenter.predict(_segmenter_input(segmenter, real_px))
            pred_syn, feat_syn = segmenter.predict(_segmenter_input(segmenter, syn_px))
            features_real.append(feat_real)
            features_syn.append(feat_syn)
            if inception is not None:
                scores.inception_real.append(inception(batch["image"].numpy()))
                scores.inception_synthetic.append(inception(generated))
            scores.colours_real.add(real_px, labels)
            scores.colours_synthetic.add(syn_px, labels)
            realism_real.add(real_px, labels)
            realism_synthetic.add(syn_px, labels)
            for j, i in enumerate(index):
                scores.confusion_real += confusion_matrix(pred_real[j], labels[j], n,
                                                          scheme.ignore_index)
                chip = confusion_matrix(pred_syn[j], labels[j], n, scheme.ignore_index)
                scores.confusion_synthetic += chip
                accuracy = pixel_accuracy(chip)
                scores.chip_accuracy.append((int(i), accuracy))
                scores.panel.offer(PanelChip(accuracy, int(i), labels[j], real_px[j], syn_px[j],
                                             pred_syn[j]))
            bar.update(len(index))
    scores.features_real = np.concatenate(features_real)
    scores.features_synthetic = np.concatenate(features_syn)
    return scores


def _segmenter_input(segmenter, pixels: np.ndarray) -> np.ndarray:
    """Pixels (B, bands, H, W) scaled the way the segmenter's training chips were."""
    return np.stack([segmenter.imagery.to_model(p) for p in pixels])


# -- the report --------------------------------------------------------------------------------


def build_report(scores: ChipScores, model, dataset, *, split: str, seed: int, checkpoint,
                 segmenter, chips_dir) -> dict:
    """The report dict (JSON-ready apart from NaN, which the report writer turns to null).

    Args:
        scores: what :func:`score_chips` accumulated.
        model: the LoadedModel scored.
        dataset: the ChipDataset scored.
        split, seed: the settings, recorded.
        checkpoint, segmenter, chips_dir: where model, segmenter and chips came from.
    """
    scheme = dataset.class_scheme
    iou_real = iou_per_class(scores.confusion_real)
    iou_syn = iou_per_class(scores.confusion_synthetic)
    truth_pixels = scores.confusion_real.sum(axis=1)
    classes = []
    for c, cls in enumerate(scheme.classes):
        classes.append({
            "value": cls.value, "name": cls.name, "color": list(cls.color),
            "pixels": int(truth_pixels[c]),
            "iou_real": float(iou_real[c]), "iou_synthetic": float(iou_syn[c]),
            "colour_real": {"mean": scores.colours_real.mean[c].tolist(),
                            "std": scores.colours_real.std[c].tolist()},
            "colour_synthetic": {"mean": scores.colours_synthetic.mean[c].tolist(),
                                 "std": scores.colours_synthetic.std[c].tolist()},
        })
    samples, dims = scores.features_real.shape
    frechet = frechet_distance_of(scores.features_real, scores.features_synthetic)
    note = None
    if samples <= dims:
        note = (f"{samples} chips for {dims} feature dimensions: the covariance is rank-"
                "deficient, so compare this distance only between models scored on the same "
                "chips")
    if samples < MIN_FRECHET_CHIPS:
        few = (f"Frechet distance over only {samples} chips (fewer than {MIN_FRECHET_CHIPS}): "
               "it is noisy and biased upwards; score more chips (--split all) or compare it "
               "only between models scored on the same chips")
        warnings.warn(few, stacklevel=2)
        note = few if note is None else f"{few}; {note}"
    left_out = [scheme.classes[c].name for c in classes_without_truth(scores.confusion_real)]
    ranked = sorted((a, i) for i, a in scores.chip_accuracy if math.isfinite(a))
    return {
        "geospade_version": __version__,
        "checkpoint": _describe(checkpoint),
        "checkpoint_step": model.card.step,
        "segmenter": _describe(segmenter),
        "chips": None if chips_dir is None else str(chips_dir),
        "split": dataset.split,
        "split_requested": split,
        "num_chips": len(dataset),
        "chip_size": dataset.tile_size,
        "seed": seed,
        "class_scheme": scheme.to_dict(),
        "band_names": list(model.imagery.band_names),
        "pixel_units": {"dtype": model.imagery.dtype, "low": list(model.imagery.low),
                        "high": list(model.imagery.high)},
        "miou_left_out": left_out,
        "real": {"miou": mean_iou(scores.confusion_real),
                 "pixel_accuracy": pixel_accuracy(scores.confusion_real)},
        "synthetic": {"miou": mean_iou(scores.confusion_synthetic),
                      "pixel_accuracy": pixel_accuracy(scores.confusion_synthetic)},
        "classes": classes,
        "frechet": {"segmenter_features": frechet, "samples": int(samples),
                    "dimensions": int(dims), "note": note},
        "inception_fid": (frechet_distance_of(np.concatenate(scores.inception_real),
                                              np.concatenate(scores.inception_synthetic))
                          if scores.inception_real else None),
        "realism": realism_report(scores, scheme),
        "seams": None,
        "confusion_real": scores.confusion_real.tolist(),
        "confusion_synthetic": scores.confusion_synthetic.tolist(),
        "chips_by_synthetic_accuracy": [{"index": i, "pixel_accuracy": a} for a, i in ranked],
    }


def realism_report(scores: ChipScores, scheme) -> dict | None:
    """Texture, spread and variety ratios (synthetic / real) and colour errors, per class."""
    if scores.realism_real is None or scores.realism_synthetic is None:
        return None
    realism = compare(scores.realism_real, scores.realism_synthetic)
    for row, cls in zip(realism["classes"], scheme.classes, strict=True):
        row.update({"value": cls.value, "name": cls.name})
    return realism


def _describe(source) -> str | None:
    """A path as text; a loaded object by its type (it has no file)."""
    if source is None:
        return None
    if isinstance(source, (str, Path)):
        return str(source)
    return f"<{type(source).__name__} in memory>"


# -- a synthesised raster --------------------------------------------------------------------


def raster_scores(image: str | Path, tile_size: int, landcover: str | Path | None, scheme,
                  progress: ProgressArg = False, period: int = 1) -> dict:
    """Seam score of a synthesised raster, and its per-class colours when the land cover is given.

    Args:
        image: the synthesised GeoTIFF.
        tile_size: tile size it was synthesised with.
        landcover: the land cover it was made from (same grid), or None.
        scheme: the model's class scheme (to map land-cover values to classes).
        progress: progress while reading the raster for colours.
        period: the generator's downsampling factor, for the phase-matched seam score.
    """
    from geospade.synthesis.seams import seam_stats

    # Sums, not seam_score: a raster of one tile has no seams, which the report shows as null
    # rather than failing the whole evaluation.
    result = {"image": str(image), "tile_size": tile_size,
              "score": seam_stats(image, tile_size).score, "period": period,
              "score_phase_matched": seam_stats(image, tile_size, period=period).score,
              "landcover": None, "classes": None}
    if landcover is not None:
        stats = raster_colours(image, landcover, scheme, progress)
        result["landcover"] = str(landcover)
        result["classes"] = [
            {"value": cls.value, "name": cls.name, "pixels": int(stats.count[c]),
             "mean": stats.mean[c].tolist(), "std": stats.std[c].tolist()}
            for c, cls in enumerate(scheme.classes)]
    return result


def raster_colours(image: str | Path, landcover: str | Path, scheme,
                   progress: ProgressArg = False) -> ColourStats:
    """Per-class colour statistics of a raster under a land cover of the same grid, by blocks."""
    from geospade.raster import open_raster, same_grid

    with open_raster(image, "synthesised raster") as img, \
            open_raster(landcover, "land cover") as lc:
        if not same_grid(img, lc):
            raise InputError("the land cover is not on the synthesised raster's grid "
                             f"({lc.width} x {lc.height} vs {img.width} x {img.height}, or "
                             "another transform or CRS)", path=landcover,
                             hint="Give the land cover the raster was synthesised from.")
        stats = ColourStats(scheme.num_classes, img.count)
        windows = [w for _, w in img.block_windows(1)]
        with progress_bar(progress, total=len(windows), desc="raster colours",
                          unit="block") as bar:
            for window in windows:
                raw = lc.read(1, window=window, masked=True)
                valid = ~np.ma.getmaskarray(raw) & (img.dataset_mask(window=window) > 0)
                labels = scheme.encode(np.ma.getdata(raw), valid=valid, source=landcover)
                stats.add(img.read(window=window), labels, valid)
                bar.update(1)
    return stats
