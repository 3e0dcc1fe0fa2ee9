"""The metrics log of a training run: one line per logged step (JSONL or CSV), optional TensorBoard.

A resumed run first drops the lines written after the checkpoint it resumes from (the run
crashed or was stopped after logging them), so the log reads as one uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from geospade.errors import InputError


class MetricsLog:
    """Append-only metrics file in RUN_DIR (``metrics.jsonl`` or ``metrics.csv``).

    Args:
        run_dir: the run folder.
        fmt: "jsonl" or "csv".
        resume_step: when resuming, lines with a step after this one are removed first.
        tensorboard: also write TensorBoard scalars to ``run_dir/tensorboard``.
    """

    def __init__(self, run_dir: str | Path, fmt: str = "jsonl", resume_step: int | None = None,
                 tensorboard: bool = False):
        self.path = Path(run_dir) / f"metrics.{fmt}"
        self.fmt = fmt
        self._fields: list[str] | None = None
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        elif self.path.exists():
            self.path.unlink()
        self._writer = _tensorboard_writer(Path(run_dir) / "tensorboard") if tensorboard else None

    def write(self, step: int, values: dict[str, float]) -> None:
        """Log ``values`` for ``step`` (the column set of a CSV is fixed by its first line)."""
        row = {"step": step, **{k: _plain(v) for k, v in values.items()}}
        with self.path.open("a", newline="") as fh:
            if self.fmt == "jsonl":
                fh.write(json.dumps(row) + "\n")
            else:
                if self._fields is None:
                    self._fields = list(row)
                    if self.path.stat().st_size == 0:
                        csv.DictWriter(fh, self._fields).writeheader()
                csv.DictWriter(fh, self._fields, extrasaction="ignore").writerow(row)
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, int | float):
                    self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def read(self) -> list[dict]:
        """All logged rows (numbers as floats)."""
        if not self.path.exists():
            return []
        text = self.path.read_text()
        if self.fmt == "jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]

    def _truncate_after(self, step: int) -> None:
        lines = self.path.read_text().splitlines(keepends=True)
        if self.fmt == "jsonl":
            kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
        else:
            kept = lines[:1] + [line for line in lines[1:]
                                if line.strip() and float(line.split(",", 1)[0]) <= step]
            if kept:
                self._fields = next(csv.reader(kept[:1]))
        self.path.write_text("".join(kept))


def _plain(value):
    """A JSON-friendly number (tensors and numpy scalars become floats)."""
    if hasattr(value, "item"):
        value = value.item()
    return value


def require_tensorboard() -> None:
    """InputError unless TensorBoard logging is possible here."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise InputError("TensorBoard logging needs the tensorboard package",
                         hint="Install it (pip install tensorboard) or leave out --tensorboard."
                         ) from None


def _tensorboard_writer(path: Path):
    require_tensorboard()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(path))
