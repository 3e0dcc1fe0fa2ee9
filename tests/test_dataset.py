"""The chip dataset: label indices, imagery scaling, augmentation, batches, errors."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import rasterio
import torch
from test_folder import (
    BRIGHTNESS,
    CLASSES,
    image_of,
    label_pattern,
    make_geospade_folder,
    make_pro_folder,
    write_chip,
)
from torch.utils.data import DataLoader

from geospade.chips import dataset as dataset_mod
from geospade.chips.dataset import ChipDataset, DecodedChipDataset, decoded_in_memory, dihedral
from geospade.chips.folder import read_chip_folder
from geospade.classes import ClassScheme
from geospade.errors import ClassSchemeError, InputError
from geospade.imagery import ImageryInfo

# Model index of each label value in the Pro folders: classes 1, 2, 255; 0 is nodata.
INDEX_OF = {0: 3, 1: 0, 2: 1, 255: 2}


def expected_indices(labels: np.ndarray) -> np.ndarray:
    out = np.empty(labels.shape, dtype=np.int64)
    for value, index in INDEX_OF.items():
        out[labels == value] = index
    return out


@pytest.fixture(scope="module")
def pro_folder(tmp_path_factory):
    return make_pro_folder(tmp_path_factory.mktemp("pro") / "chips")


def test_lengths_per_split(pro_folder):
    folder = read_chip_folder(pro_folder, progress=False)
    train, val = ChipDataset(folder, "train"), ChipDataset(folder, "val")
    assert len(train) + len(val) == len(ChipDataset(folder, "all")) == 12
    assert len(val) > 0
    assert train.class_scheme.num_classes == 3 and train.imagery.count == 3
    assert train.tile_size == 8


def test_labels_become_model_indices(pro_folder):
    ds = ChipDataset(pro_folder, split="all")
    for i in (0, 5, len(ds) - 1):
        item = ds[i]
        record = ds.records[item["index"]]
        assert item["index"] == i
        assert item["label"].dtype == torch.int64 and item["label"].shape == (8, 8)
        np.testing.assert_array_equal(item["label"].numpy(),
                                      expected_indices(label_pattern(record.index, 8)))
    assert ds.class_scheme.ignore_index == 3


def test_image_scaled_to_minus_one_one(pro_folder):
    ds = ChipDataset(pro_folder, split="all")
    item = ds[0]
    image, labels = item["image"], item["label"]
    assert image.dtype == torch.float32 and image.shape == (3, 8, 8)
    assert image.min() >= -1 and image.max() <= 1
    band0 = image[0].numpy()
    assert np.all(band0[labels.numpy() == INDEX_OF[0]] == -1.0)  # pixel 0 -> -1
    assert np.all(band0[labels.numpy() == INDEX_OF[255]] == 1.0)  # pixel 255 -> 1
    np.testing.assert_allclose(band0[labels.numpy() == INDEX_OF[1]], 100 / 127.5 - 1, atol=1e-6)


def test_dihedral_gives_eight_distinct_transforms():
    array = np.arange(9).reshape(3, 3)
    results = {dihedral(array, k).tobytes() for k in range(8)}
    assert len(results) == 8
    np.testing.assert_array_equal(dihedral(array, 0), array)
    stacked = np.stack([array, array * 10])
    for k in range(8):
        np.testing.assert_array_equal(dihedral(stacked, k)[1], dihedral(array, k) * 10)


def test_augmentation_transforms_label_and_image_alike(pro_folder):
    plain = ChipDataset(pro_folder, split="all")
    augmented = ChipDataset(pro_folder, split="all", augment=True, seed=7)
    # Model value of band 0 for each model index: image = f(label) must survive augmentation.
    scaled = {INDEX_OF[v]: b / 127.5 - 1 for v, b in BRIGHTNESS.items()}
    changed = 0
    for epoch in range(3):
        augmented.set_epoch(epoch)
        for i in range(len(augmented)):
            item = augmented[i]
            expected = np.vectorize(scaled.get)(item["label"].numpy()).astype(np.float32)
            np.testing.assert_allclose(item["image"][0].numpy(), expected, atol=1e-6)
            changed += not torch.equal(item["label"], plain[i]["label"])
    assert changed > 0


def test_augmentation_is_deterministic(pro_folder):
    a = ChipDataset(pro_folder, split="all", augment=True, seed=1)
    b = ChipDataset(pro_folder, split="all", augment=True, seed=1)
    a.set_epoch(4)
    b.set_epoch(4)
    assert [a.transform_of(i) for i in range(len(a))] == [b.transform_of(i) for i in range(len(b))]
    assert torch.equal(a[3]["label"], b[3]["label"])
    per_epoch = []
    for epoch in range(4):
        a.set_epoch(epoch)
        per_epoch.append([a.transform_of(i) for i in range(len(a))])
    assert len({tuple(p) for p in per_epoch}) > 1
    assert ChipDataset(pro_folder, split="all").transform_of(3) == 0  # augment off


def test_decoded_dataset_reads_each_chip_once_and_gives_the_same_items(pro_folder, monkeypatch):
    opened = []
    open_raster = dataset_mod.open_raster
    monkeypatch.setattr(dataset_mod, "open_raster",
                        lambda path, what: opened.append(path) or open_raster(path, what))
    plain = ChipDataset(pro_folder, split="all", augment=True, seed=2)
    decoded = DecodedChipDataset(pro_folder, split="all", augment=True, seed=2)
    for epoch in range(3):  # new augmentations of the kept chips
        plain.set_epoch(epoch)
        decoded.set_epoch(epoch)
        opened.clear()
        for i in range(len(decoded)):
            a, b = plain[i], decoded[i]
            assert torch.equal(a["label"], b["label"]) and torch.equal(a["image"], b["image"])
        assert len(opened) == 2 * len(plain) * (2 if epoch == 0 else 1)  # label + image each


def test_chips_within_the_limit_are_kept_decoded_and_larger_sets_are_read_from_disk(pro_folder):
    plain = ChipDataset(pro_folder, split="train", augment=True, seed=3)
    assert plain.decoded_bytes == len(plain) * plain.tile_size**2 * (plain.imagery.count * 4 + 8)
    kept = decoded_in_memory(plain, limit=plain.decoded_bytes)
    assert isinstance(kept, DecodedChipDataset)
    assert (kept.split, kept.augment, kept.seed, kept.records) == ("train", True, 3, plain.records)
    kept.set_epoch(1)
    plain.set_epoch(1)
    assert all(torch.equal(kept[i]["image"], plain[i]["image"]) for i in range(len(plain)))
    assert decoded_in_memory(plain, limit=plain.decoded_bytes - 1) is plain
    assert decoded_in_memory(kept) is kept


def test_unknown_label_value_names_value_and_chip(tmp_path):
    root = make_pro_folder(tmp_path / "chips", n_rows=1, n_cols=2)
    labels = label_pattern(9601, 8)
    labels[5, 5] = 7
    write_chip(root / "labels" / "000000009601.tif", labels, transform=None, tags=False)
    ds = ChipDataset(root, split="all")
    ds[0]
    with pytest.raises(ClassSchemeError, match=r"\[7\]") as exc:
        ds[1]
    assert "000000009601.tif" in str(exc.value)
    # Mapping unknown values to a class is the way out.
    item = ChipDataset(root, split="all", map_unknown=2)[1]
    assert item["label"][5, 5] == INDEX_OF[2]


def test_label_nodata_tag_is_honoured(tmp_path):
    root = make_pro_folder(tmp_path / "chips", n_rows=1, n_cols=2, label_nodata=0)
    scheme = ClassScheme.from_dict({"classes": CLASSES})  # no nodata in the scheme
    item = ChipDataset(root, split="all", class_scheme=scheme)[0]
    labels = label_pattern(9600, 8)
    assert scheme.ignore_index == 3
    np.testing.assert_array_equal(item["label"].numpy(), expected_indices(labels))


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_png_and_jpeg_chips(tmp_path, fmt):
    root = make_pro_folder(tmp_path / "chips", image_format=fmt, n_rows=2, n_cols=2)
    ds = ChipDataset(root, split="all")
    item = ds[0]
    assert item["image"].shape == (3, 8, 8)
    np.testing.assert_array_equal(item["label"].numpy(), expected_indices(label_pattern(9600, 8)))
    expected = ImageryInfo(3).to_model(image_of(label_pattern(9600, 8), 3))
    tolerance = 1e-6 if fmt == "png" else 0.3  # JPEG is lossy
    np.testing.assert_allclose(item["image"].numpy(), expected, atol=tolerance)


def test_dataloader_batches(pro_folder):
    ds = ChipDataset(pro_folder, split="all", augment=True)
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=True, num_workers=0)))
    assert batch["label"].shape == (4, 8, 8) and batch["label"].dtype == torch.int64
    assert batch["image"].shape == (4, 3, 8, 8) and batch["image"].dtype == torch.float32
    assert batch["index"].shape == (4,)
    # Nothing unpicklable is held, so DataLoader workers can receive it.
    assert len(pickle.loads(pickle.dumps(ds))) == len(ds)


def test_size_mismatch_is_an_error(tmp_path):
    root = make_pro_folder(tmp_path / "chips", n_rows=1, n_cols=2)
    write_chip(root / "images" / "000000009601.tif", np.zeros((3, 6, 6), np.uint8),
               transform=None, tags=False)
    with pytest.raises(InputError, match="6 x 6 pixels but its label chip"):
        ChipDataset(root, split="all")[1]
    labels = label_pattern(9601, 6)
    write_chip(root / "labels" / "000000009601.tif", labels, transform=None, tags=False)
    with pytest.raises(InputError, match="6 pixels wide; the folder's chips are 8"):
        ChipDataset(root, split="all")[1]


def test_band_count_mismatch_is_an_error(pro_folder):
    ds = ChipDataset(pro_folder, split="all", imagery=ImageryInfo(2))
    with pytest.raises(InputError, match="image chip has 3 bands; the imagery has 2"):
        ds[0]


def test_multiband_label_is_an_error(tmp_path):
    root = make_pro_folder(tmp_path / "chips", n_rows=1, n_cols=1)
    with rasterio.open(root / "labels" / "000000009600.tif", "w", driver="GTiff", width=8,
                       height=8, count=2, dtype="uint8") as dst:
        dst.write(np.ones((2, 8, 8), np.uint8))
    with pytest.raises(InputError, match="label chip has 2 bands"):
        ChipDataset(root, split="all")[0]


def test_empty_split_is_a_clear_error(tmp_path):
    root = make_pro_folder(tmp_path / "chips", n_rows=1, n_cols=1)
    with pytest.raises(InputError, match="no 'val' chips"):
        ChipDataset(root, split="val")


def test_geospade_folder_split_and_overrides(tmp_path):
    root = make_geospade_folder(tmp_path / "chips")
    val = ChipDataset(root, split="val")
    assert [r.index for r in val.records] == [9604, 9605]
    assert val.imagery.band_names == ("red", "green", "blue")
    scheme_file = tmp_path / "scheme.json"
    ClassScheme.from_dict({"classes": CLASSES, "nodata": 0, "name": "file"}).to_json(scheme_file)
    assert ChipDataset(root, split="val", class_scheme=scheme_file).class_scheme.name == "file"
