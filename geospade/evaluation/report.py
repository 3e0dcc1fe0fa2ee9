"""The evaluation report on disk: ``report.json``, a human-readable table, and a PNG panel.

The JSON holds every number (NaN, e.g. the IoU of a class absent from the chips, becomes
null); the table shows per class the IoU on real and synthetic chips and the mean colours;
the realism table gives per class the synthetic / real ratios of texture, spread and variety
and the mean-colour error; the panel shows the worst and best chips by synthetic pixel
accuracy, under column headings, as rows of label colours | real | synthetic | segmentation of the synthetic image |
gradient magnitude of the real | of the synthetic image (flat paint shows black).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from geospade.classes import ClassScheme
from geospade.evaluation.realism import gradient_magnitude
from geospade.font import heading_strip
from geospade.imagery import ImageryInfo
from geospade.preview import imagery_rgb, landcover_rgb, side_by_side, write_png

PANEL_MIN_SIZE = 128  # small chips are enlarged (nearest) to at least this many pixels
PANEL_HEADINGS = ("land cover", "real", "synthetic", "segmentation", "real texture",
                  "synth texture")
PANEL_GAP = 8  # pixels between pictures (side_by_side's default)


def write_report(folder: str | Path, report: dict, panel, scheme: ClassScheme,
                 imagery: ImageryInfo) -> dict[str, Path]:
    """Write report.json, report.txt and (when there are chips to show) panel.png.

    Args:
        folder: an existing folder (evaluate passes a temporary one, renamed when complete).
        report: the report dict.
        panel: a :class:`~geospade.evaluation.evaluate.PanelPicker`.
        scheme: class colours for the label and segmentation pictures.
        imagery: band names and type of the imagery pictures.

    Returns:
        The paths written, by kind ("json", "table", "panel").
    """
    folder = Path(folder)
    paths = {"json": folder / "report.json", "table": folder / "report.txt"}
    paths["json"].write_text(json.dumps(json_safe(report), indent=2) + "\n")
    paths["table"].write_text(format_table(report) + "\n")
    if panel.worst or panel.best:
        paths["panel"] = write_png(folder / "panel.png", panel_image(panel, scheme, imagery))
    return paths


def json_safe(value):
    """The value with NaN and infinities replaced by None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _num(value, digits: int = 3) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _colour(values) -> str:
    if values is None or any(v is None or not math.isfinite(v) for v in values):
        return "-"
    return "(" + ", ".join(f"{v:.0f}" for v in values) + ")"


def format_table(report: dict) -> str:
    """The report as text: a per-class table, then the summary scores.

    Columns: class | pixels | IoU real | IoU synth | mean colour real | mean colour synth.
    """
    header = ("class", "pixels", "IoU real", "IoU synth", "mean colour real",
              "mean colour synth")
    # A class without true pixels has no IoU worth showing (and is left out of the mIoU).
    rows = [(f"{c['value']} {c['name']}", str(c["pixels"]),
             _num(c["iou_real"] if c["pixels"] else None),
             _num(c["iou_synthetic"] if c["pixels"] else None),
             _colour(c["colour_real"]["mean"]),
             _colour(c["colour_synthetic"]["mean"])) for c in report["classes"]]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells) -> str:
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths, strict=True)))

    bands = "/".join(report.get("band_names", []))
    out = [f"{report['num_chips']} '{report['split']}' chips of {report['chip_size']} px; "
           f"colours are {bands} means in pixel units", "", line(header),
           line(["-" * w for w in widths]), *map(line, rows), ""]
    out += realism_table(report.get("realism"))
    real, syn = report["real"], report["synthetic"]
    out.append(f"mIoU            real {_num(real['miou'])}   synthetic {_num(syn['miou'])}")
    left_out = report.get("miou_left_out") or []
    if left_out:
        out.append(f"                (over classes with true pixels; left out: "
                   f"{', '.join(left_out)})")
    out.append(f"pixel accuracy  real {_num(real['pixel_accuracy'])}   "
               f"synthetic {_num(syn['pixel_accuracy'])}")
    frechet = report["frechet"]
    out.append(f"Frechet distance (segmenter features, {frechet['samples']} chips, "
               f"{frechet['dimensions']}-d): {_num(frechet['segmenter_features'], 4)}")
    if frechet.get("note"):
        out.append(f"                note: {frechet['note']}")
    if report.get("inception_fid") is not None:
        out.append(f"Inception FID: {_num(report['inception_fid'], 2)}")
    seams = report.get("seams")
    if seams:
        out.append(f"seam score of {seams['image']} (tiles of {seams['tile_size']} px): "
                   f"{_num(seams['score'], 4)}, {_num(seams.get('score_phase_matched'), 4)} "
                   f"against lines at the same phase of the generator's "
                   f"{seams.get('period', 1)} px grid (1.0 = seams invisible)")
    return "\n".join(out)


def realism_table(realism: dict | None) -> list[str]:
    """Lines of the per-class realism table (synthetic / real ratios; 1.0 = like real)."""
    if not realism:
        return []
    header = ("class", "texture", "spread", "variety", "segments", "colour error")
    rows = [(f"{c.get('value', i)} {c.get('name', '')}".strip(), _num(c["texture_ratio"], 2),
             _num(c["spread_ratio"], 2), _num(c["variety_ratio"], 2),
             f"{c['segments_synthetic']}", _num(c["colour_error"], 1))
            for i, c in enumerate(realism["classes"])]
    rows.append(("mean", _num(realism["texture_ratio"], 2), _num(realism["spread_ratio"], 2),
                 _num(realism["variety_ratio"], 2), "", _num(realism["colour_error"], 1)))
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells) -> str:
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths, strict=True)))

    return ["realism, synthetic / real (1.0 = as real; a flat per-class paint scores 0): "
            "texture = gradient inside the class, spread = std in the class, variety = std "
            "of segment mean colours; colour error in pixel units", "", line(header),
            line(["-" * w for w in widths]), *map(line, rows), ""]


def texture_pictures(real: np.ndarray, synthetic: np.ndarray) -> list[np.ndarray]:
    """Gradient magnitude of a real and a synthetic chip as grey (3, H, W) uint8, one scale."""
    grads = [gradient_magnitude(real), gradient_magnitude(synthetic)]
    scale = max(float(np.percentile(grads[0], 99)), 1e-6)
    return [np.repeat(np.clip(g / scale * 255, 0, 255).astype(np.uint8)[None], 3, axis=0)
            for g in grads]


def _index_to_values(indices: np.ndarray, scheme: ClassScheme) -> np.ndarray:
    """Model indices -> raster values for drawing (don't-care drawn as nodata: black)."""
    nodata = -1 if scheme.nodata is None else scheme.nodata
    lut = np.array([*scheme.values, nodata], dtype=np.int64)
    return lut[np.clip(indices, 0, scheme.num_classes)]


def _enlarge(rgb: np.ndarray) -> np.ndarray:
    factor = max(1, PANEL_MIN_SIZE // max(rgb.shape[-2:]))
    return rgb.repeat(factor, axis=-2).repeat(factor, axis=-1) if factor > 1 else rgb


def panel_row(chip, scheme: ClassScheme, imagery: ImageryInfo) -> np.ndarray:
    """label colours | real | synthetic | segmentation of the synthetic image | gradient
    magnitude of the real | of the synthetic image, one chip."""
    pictures = [landcover_rgb(_index_to_values(chip.labels, scheme), scheme),
                imagery_rgb(chip.real, imagery), imagery_rgb(chip.synthetic, imagery),
                landcover_rgb(_index_to_values(chip.predicted, scheme), scheme),
                *texture_pictures(chip.real, chip.synthetic)]
    return side_by_side([_enlarge(p) for p in pictures])


def panel_image(panel, scheme: ClassScheme, imagery: ImageryInfo, gap: int = 8) -> np.ndarray:
    """(3, H, W) uint8: a heading naming the columns, rows of the worst chips, a thicker
    gap, then rows of the best chips."""
    groups = [[panel_row(c, scheme, imagery) for c in chips]
              for chips in (panel.worst, panel.best) if chips]
    parts: list[np.ndarray] = []
    for g, rows in enumerate(groups):
        for r, row in enumerate(rows):
            if parts:
                parts.append(np.full((3, gap * (3 if r == 0 and g else 1), row.shape[2]), 255,
                                     np.uint8))
            parts.append(row)
    first = (panel.worst or panel.best)[0]
    picture = _enlarge(landcover_rgb(_index_to_values(first.labels, scheme), scheme)).shape[2]
    parts.insert(0, heading_strip(PANEL_HEADINGS, [picture] * len(PANEL_HEADINGS), PANEL_GAP))
    width = max(p.shape[2] for p in parts)
    parts = [np.pad(p, ((0, 0), (0, 0), (0, width - p.shape[2])), constant_values=255)
             for p in parts]
    return np.concatenate(parts, axis=1)
