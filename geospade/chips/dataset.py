"""The chip dataset: a torch Dataset of (label indices, imagery in [-1, 1]) pairs for training.

Reads any folder :func:`~geospade.chips.folder.read_chip_folder` understands (geospade's own
export or an ArcGIS Pro Classified_Tiles export). Labels go through the class scheme (nodata
-> the don't-care index); imagery through :class:`~geospade.imagery.ImageryInfo`. Training
augmentation applies one of the eight flips/90-degree rotations to label and image alike,
chosen from (seed, epoch, index) so a resumed run sees exactly the same chips.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from geospade.chips.folder import ChipFolder, ChipRecord, read_chip_folders
from geospade.classes import ClassScheme, resolve_scheme
from geospade.errors import InputError
from geospade.imagery import ImageryInfo
from geospade.raster import open_raster, read_pixels

#: Decoded chips up to this many bytes are kept in memory by :func:`decoded_in_memory`.
DECODE_LIMIT = 1 << 30

# The dihedral group of the square: k % 4 quarter turns, then a left-right flip when k >= 4.
NUM_TRANSFORMS = 8


def dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """Apply the k-th of the eight flips/rotations to the last two axes of ``array``.

    Args:
        array: (..., H, W) array.
        k: 0..7; 0 is the identity, 1..3 quarter turns, 4..7 the same followed by a flip.
    """
    out = np.rot90(array, k % 4, axes=(-2, -1))
    if k >= 4:
        out = np.flip(out, axis=-1)
    return np.ascontiguousarray(out)


class ChipDataset(Dataset):
    """Label and image chips of one split of a chip folder (or of several, merged).

    Items are dicts: ``"label"`` LongTensor (H, W) of model indices (nodata and pixels masked by
    the label chip's nodata tag -> ``class_scheme.ignore_index``), ``"image"`` FloatTensor
    (bands, H, W) in [-1, 1], ``"index"`` the item's position in this dataset (its files are
    ``dataset.records[index]``).

    No file handle is kept between items, so the dataset can be sent to DataLoader workers.
    ``set_epoch`` changes the augmentation of every item; with ``persistent_workers`` call it
    before the workers start (each worker holds its own copy of the dataset).

    Args:
        source: a chip folder path, several (merged by
            :func:`~geospade.chips.folder.read_chip_folders`), or an already read
            :class:`ChipFolder`.
        split: ``"train"``, ``"val"`` or ``"all"`` (see :func:`read_chip_folder` for how
            folders without a split are split).
        augment: apply a random flip/90-degree rotation, the same to label and image.
        class_scheme: overrides the folder's scheme (a ClassScheme, preset name or JSON path).
        imagery: overrides the folder's band count, dtype and value range.
        seed: seeds the augmentation.
        map_unknown: class value given to label values outside the scheme; by default such
            values raise ClassSchemeError naming them and the chip.

    Raises:
        InputError: unknown or empty split.
    """

    def __init__(
        self,
        source: ChipFolder | str | Path | Sequence[str | Path],
        split: str = "train",
        augment: bool = False,
        class_scheme: ClassScheme | str | Path | None = None,
        imagery: ImageryInfo | None = None,
        seed: int = 0,
        map_unknown: int | None = None,
    ):
        self.folder = (source if isinstance(source, ChipFolder)
                       else read_chip_folders(source, classes=class_scheme))
        self.split = split
        self.records: list[ChipRecord] = self.folder.select(split)
        self.class_scheme = (self.folder.class_scheme if class_scheme is None
                             else resolve_scheme(class_scheme))
        self.imagery = imagery if imagery is not None else self.folder.imagery
        self.augment = augment
        self.seed = int(seed)
        self.map_unknown = map_unknown
        self.epoch = 0

    @property
    def tile_size(self) -> int:
        """Chip side in pixels."""
        return self.folder.tile_size

    @property
    def decoded_bytes(self) -> int:
        """Memory all of this split's chip pairs take decoded (float32 bands, int64 labels)."""
        return len(self) * self.tile_size**2 * (self.imagery.count * 4 + 8)

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation of every item for this epoch (deterministic per epoch)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def transform_of(self, index: int, square: bool = True) -> int:
        """Which :func:`dihedral` transform item ``index`` gets this epoch (0 without augment)."""
        if not self.augment:
            return 0
        rng = np.random.default_rng([self.seed, self.epoch, index])
        # Quarter turns would swap height and width of a non-square chip and break batching.
        choices = range(NUM_TRANSFORMS) if square else (0, 2, 4, 6)
        return int(rng.choice(list(choices)))

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"chip {index} out of range for {len(self)} chips")
        labels, image = self.read(self.records[index])
        k = self.transform_of(index, square=labels.shape[0] == labels.shape[1])
        return {"label": torch.from_numpy(dihedral(labels, k)),
                "image": torch.from_numpy(dihedral(image, k)),
                "index": index}

    def read(self, record: ChipRecord) -> tuple[np.ndarray, np.ndarray]:
        """Model indices (H, W) int64 and scaled imagery (bands, H, W) float32 of one chip pair.

        Raises:
            InputError: a chip that cannot be read (truncated or damaged), image and label
                sizes differ, or the image's band count is not the imagery's.
            ClassSchemeError: label values that are neither classes nor nodata.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PNG/JPEG chips may lack georeferencing
            with open_raster(record.label, "label chip") as ds:
                if ds.count != 1:
                    raise InputError(f"label chip has {ds.count} bands; labels have one",
                                     path=record.label,
                                     hint="Export single-band class labels (Classified_Tiles).")
                raw = read_pixels(ds, "label chip", indexes=1)
                nodata = ds.nodata
            with open_raster(record.image, "image chip") as ds:
                pixels = read_pixels(ds, "image chip")
        if pixels.shape[0] != self.imagery.count:
            raise InputError(
                f"image chip has {pixels.shape[0]} bands; the imagery has {self.imagery.count}",
                path=record.image,
                hint="Export all chips from the same imagery, or pass imagery information "
                     "that matches the chips.")
        if pixels.shape[1:] != raw.shape:
            raise InputError(
                f"image chip is {pixels.shape[2]} x {pixels.shape[1]} pixels but its label "
                f"chip {record.label.name} is {raw.shape[1]} x {raw.shape[0]}",
                path=record.image, hint="Export image and label chips with the same tile size.")
        if raw.shape[1] != self.tile_size:
            # Caught here: a batch of mixed sizes would fail later with an obscure collate error.
            raise InputError(
                f"label chip is {raw.shape[1]} pixels wide; the folder's chips are "
                f"{self.tile_size}", path=record.label,
                hint="Export all chips of a folder with the same tile size.")
        valid = None
        scheme = self.class_scheme
        # Don't-care: the chip's nodata tag, and the exporter's "no class" value (0 as ArcGIS
        # writes it) when neither is a class.
        for value in (nodata, record.nodata):
            if (value is not None and np.isfinite(value) and value == int(value)
                    and int(value) not in scheme.values):
                valid = raw != int(value) if valid is None else valid & (raw != int(value))
        labels = scheme.encode(raw, valid=valid, map_unknown=self.map_unknown,
                               source=record.label)
        return labels, self.imagery.to_model(pixels).astype(np.float32, copy=False)



class DecodedChipDataset(ChipDataset):
    """A :class:`ChipDataset` that decodes each chip pair once and keeps it in memory.

    For many epochs over few chips, read in one process (each DataLoader worker would keep a
    copy of its own); augmentation still applies after reading. Takes ChipDataset's arguments.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._decoded: dict[ChipRecord, tuple[np.ndarray, np.ndarray]] = {}

    def read(self, record: ChipRecord) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`ChipDataset.read`, from memory after the first time."""
        if record not in self._decoded:
            self._decoded[record] = super().read(record)
        return self._decoded[record]


def decoded_in_memory(dataset: ChipDataset, limit: int = DECODE_LIMIT) -> ChipDataset:
    """The same chips as a :class:`DecodedChipDataset` (each file decoded once, then read from
    memory) when they take at most ``limit`` bytes decoded, else ``dataset`` itself.

    For training over many epochs in one process: with DataLoader workers each worker would
    decode and keep a copy of its own, so keep ``dataset`` there.
    """
    if type(dataset) is not ChipDataset or dataset.decoded_bytes > limit:
        return dataset
    return DecodedChipDataset(dataset.folder, split=dataset.split, augment=dataset.augment,
                              class_scheme=dataset.class_scheme, imagery=dataset.imagery,
                              seed=dataset.seed, map_unknown=dataset.map_unknown)
