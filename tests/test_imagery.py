"""Imagery scaling to the model's [-1, 1] range and back."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.enums import ColorInterp

from geospade.errors import InputError
from geospade.imagery import ImageryInfo, default_range, range_from_stats


def test_uint8_round_trip_is_exact():
    info = ImageryInfo(3)
    pixels = np.broadcast_to(np.arange(256, dtype=np.uint8), (3, 4, 256)).copy()
    values = info.to_model(pixels)
    assert values.dtype == np.float32
    assert values.min() == -1.0 and values.max() == 1.0
    assert values[0, 0, 0] == -1.0 and values[0, 0, 255] == 1.0
    back = info.from_model(values)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, pixels)


def test_uint16_range():
    assert default_range("uint16") == (0.0, 65535.0)
    info = range_from_stats(2, "uint16", [100, 0], [4100, 1000])
    assert info.low == (100.0, 0.0) and info.high == (4100.0, 1000.0)
    pixels = np.array([[[100, 2100, 4100, 9000]], [[0, 500, 1000, 0]]], dtype=np.uint16)
    values = info.to_model(pixels)
    np.testing.assert_allclose(values, [[[-1, 0, 1, 1]], [[-1, 0, 1, -1]]], atol=1e-6)
    back = info.from_model(values)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, [[[100, 2100, 4100, 4100]], [[0, 500, 1000, 0]]])
    # Out-of-range model values are clipped, never wrapped around.
    assert info.from_model(np.full((2, 1, 1), 3.0, np.float32)).ravel().tolist() == [4100, 1000]


def test_uint8_ignores_statistics():
    info = range_from_stats(3, "uint8", [10, 10, 10], [20, 20, 20])
    assert info.low == (0.0,) * 3 and info.high == (255.0,) * 3


def test_float_imagery_keeps_floats():
    info = ImageryInfo(1, "float32")
    assert (info.low, info.high) == ((0.0,), (1.0,))
    back = info.from_model(np.array([[[0.0, 0.5]]], np.float32))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, [[[0.5, 0.75]]])


def test_colorinterp():
    assert ImageryInfo(1).colorinterp() == [ColorInterp.gray]
    assert ImageryInfo(3).colorinterp() == [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    assert ImageryInfo(4).colorinterp()[3] == ColorInterp.undefined


def test_band_names_and_dict_round_trip():
    info = ImageryInfo(5, "uint16", tuple(range(5)), tuple(range(10, 15)))
    assert info.band_names == ("red", "green", "blue", "nir", "band_5")
    assert ImageryInfo.from_dict(info.to_dict()) == info


def test_range_length_must_match_bands():
    with pytest.raises(InputError, match="3 bands"):
        ImageryInfo(3, "uint16", (0.0, 0.0), (1.0, 1.0))
