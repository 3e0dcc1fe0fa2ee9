"""One class scheme from several: scenes of one export, or chip folders of one training run.

Schemes are reconciled by class value. A name that only stands in for a missing one
(``class_<value>``, from a raster without colour or attribute table) gives way to a real
name; two real names for one value are a conflict, reported with both sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from geospade.classes import ClassScheme, LandCoverClass
from geospade.errors import ClassSchemeError


def is_placeholder(entry: LandCoverClass) -> bool:
    """True for the stand-in name a class gets when nothing names it (``class_<value>``)."""
    return entry.name == f"class_{entry.value}"


def merge_schemes(sources: Sequence[tuple[str | Path, ClassScheme]], *,
                  hint: str = "Give one class scheme for all of them with --classes "
                              "scheme.json.") -> ClassScheme:
    """The union, by value, of the class schemes of several sources.

    Args:
        sources: (source path, scheme) pairs, e.g. one per land cover or chip folder.
        hint: what to do about a conflict, for the error.

    Returns:
        The first scheme when all are equal; else every class of every scheme, by value,
        with the first real name and colour given to it, and the first nodata value that is
        not a class.

    Raises:
        ClassSchemeError: two sources give one value different (real) names.
    """
    if not sources:
        raise ValueError("no class scheme to merge")
    first = sources[0][1]
    if all(scheme == first for _, scheme in sources[1:]):
        return first
    merged: dict[int, tuple[LandCoverClass, str | Path]] = {}
    for path, scheme in sources:
        for entry in scheme.classes:
            known = merged.get(entry.value)
            if known is None or (is_placeholder(known[0]) and not is_placeholder(entry)):
                merged[entry.value] = (entry, path)
            elif not is_placeholder(entry) and _key(entry.name) != _key(known[0].name):
                raise ClassSchemeError(
                    f"class value {entry.value} is '{entry.name}' in {path} but "
                    f"'{known[0].name}' in {known[1]}", path=path, hint=hint)
    classes = tuple(merged[v][0] for v in sorted(merged))
    values = set(merged)
    nodata = next((s.nodata for _, s in sources if s.nodata is not None
                   and s.nodata not in values), None)
    names = {s.name for _, s in sources}
    return ClassScheme(classes, nodata, names.pop() if len(names) == 1 else "merged")


def _key(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").split())
