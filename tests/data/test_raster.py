"""RasterWindows: a GeoTIFF read window by window as 8-bit RGB, as the localizer sees the decoded image;
bands, 16-bit scaling, nodata, map polygons, and reads bounded by the window, never the whole raster."""

import sys
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import Affine  # noqa: E402
from rasterio.windows import Window  # noqa: E402

from multibox.data.raster import PERCENTILES, RasterWindows, map_polygons, need_rasterio  # noqa: E402
from multibox.data.transforms import crop_resize  # noqa: E402
from multibox.errors import UserError  # noqa: E402
from multibox.inference.windows import tile_windows  # noqa: E402

TRANSFORM = Affine(0.5, 0.0, 500_000.0, 0.0, -0.5, 4_000_000.0)  # UTM 33N, 0.5 m pixels, north up


def write_tif(path, bands: np.ndarray, crs="EPSG:32633", transform=TRANSFORM, **options):
    """bands [C, H, W] as a tiled GeoTIFF."""
    count, height, width = bands.shape
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype=bands.dtype,
                       crs=crs, transform=transform, tiled=True, blockxsize=16, blockysize=16, **options) as out:
        out.write(bands)
    return path


def noise_rgb(height=50, width=70, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (3, height, width), dtype=np.uint8)


def test_windows_resize_as_the_decoded_image_does(tmp_path):
    bands = noise_rgb()
    path = write_tif(tmp_path / "rgb.tif", bands)
    decoded = Image.fromarray(bands.transpose(1, 2, 0))
    with RasterWindows(path) as raster:
        assert (raster.width, raster.height, raster.bands) == (70, 50, [1, 2, 3])
        assert raster.crs.to_epsg() == 32633 and raster.transform == TRANSFORM
        assert raster.scaling == "8-bit bands, as they are"
        for window in [*tile_windows(70, 50, 32, 0.25), torch.tensor([0.0, 0.0, 80.0, 80.0]),
                       torch.tensor([10.3, 7.7, 30.6, 28.0])]:  # tiles, one past the raster, fractional
            assert torch.equal(raster.crop_input(window, 16), crop_resize(decoded, window, 16)), window


def test_reads_are_bounded_by_the_window_not_the_raster(tmp_path):
    path = write_tif(tmp_path / "wide.tif", noise_rgb(300, 400))
    tile, size = 64, 32
    with RasterWindows(path) as raster:
        windows = tile_windows(raster.width, raster.height, tile, 0.2)
        for window in windows:
            raster.crop_input(window, size)
    margin = tile // size + 1 + 1  # the resampling's reach, and one for rounding
    assert len(raster.reads) == len(windows) == 8 * 6
    assert max(w for w, _ in raster.reads) <= tile + 2 * margin and max(h for _, h in raster.reads) <= tile + 2 * margin
    assert sum(w * h for w, h in raster.reads) < 2 * 400 * 300  # each pixel read about (1 / 0.8)^2 times, not more


def sparse_tif(path, side: int, painted: tuple[int, int] = (1024, 1024)):
    """A side x side one-band tiled GeoTIFF, 0 but for one 512 x 512 block of 200 at ``painted``: a few KB."""
    with rasterio.open(path, "w", driver="GTiff", width=side, height=side, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=TRANSFORM, tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate", sparse_ok=True) as out:
        out.write(np.full((1, 512, 512), 200, np.uint8), window=Window(*painted, 512, 512))
    return path


def test_a_raster_larger_than_the_tile_budget_is_read_with_memory_of_a_tile(tmp_path):
    """6000 x 6000 (108 MB as RGB) in tiles of 1500: the peak is a tile's few arrays, not the raster."""
    path = sparse_tif(tmp_path / "big.tif", 6000, painted=(2048, 2048))
    tracemalloc.start()
    try:
        with RasterWindows(path) as raster:
            inputs = [raster.crop_input(w, 32) for w in tile_windows(raster.width, raster.height, 1500, 0.0)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(inputs) == 16 and raster.bands == [1, 1, 1]  # one band, read as grey
    assert inputs[5].float().mean() > inputs[0].float().mean() == 0  # the painted block lies in tile (1, 1)
    side = 1500 + 2 * (1500 // 32 + 2)  # a tile and the resampling's margin (an input pixel's span, and 1)
    assert max(w * h for w, h in raster.reads) <= side * side
    assert peak < 5 * side * side, f"peak {peak / 1e6:.1f} MB"  # a tile read, its RGB copy and the image
    assert peak < 6000 * 6000 * 3 / 8


def test_16_bit_bands_scaled_by_their_percentiles(tmp_path):
    rng = np.random.default_rng(1)
    bands = np.stack([rng.integers(1000, 3000, (40, 40)), rng.integers(0, 65535, (40, 40)),
                      np.full((40, 40), 7)]).astype(np.uint16)  # the third band constant
    path = write_tif(tmp_path / "u16.tif", bands)
    with RasterWindows(path) as raster:
        low, high = raster.scale
        assert np.allclose(low[:2], np.percentile(bands[:2].reshape(2, -1), PERCENTILES[0], axis=1))
        assert np.allclose(high[:2], np.percentile(bands[:2].reshape(2, -1), PERCENTILES[1], axis=1))
        pixels = np.asarray(raster.read_region(0, 0, 40, 40))  # [40, 40, 3] uint8
        assert "uint16 scaled to 8 bit by the 2-98 percentiles" in raster.scaling
    expected = np.clip(np.rint((bands[0].astype(np.float32) - low[0]) * (255 / (high[0] - low[0]))), 0, 255)
    assert np.array_equal(pixels[..., 0], expected.astype(np.uint8))
    assert (pixels[..., 0] == 0).mean() == pytest.approx(0.02, abs=0.01)  # 2 % under the low percentile
    assert (pixels[..., 2] == 0).all()  # a constant band is black, not a division by zero


def test_band_choice_grey_and_bad_bands(tmp_path):
    bands = noise_rgb(20, 20)
    four = np.concatenate([bands, np.full((1, 20, 20), 9, np.uint8)])
    path = write_tif(tmp_path / "rgbn.tif", four)
    with RasterWindows(path, bands=[4, 1, 2]) as raster:
        pixels = np.asarray(raster.read_region(0, 0, 20, 20))
    assert (pixels[..., 0] == 9).all() and np.array_equal(pixels[..., 1], bands[0])
    with RasterWindows(path, bands="2") as raster:
        grey = np.asarray(raster.read_region(0, 0, 20, 20))
    assert all(np.array_equal(grey[..., i], bands[1]) for i in range(3))
    with pytest.raises(UserError, match=r"^bands: .*rgbn\.tif has 4 band\(s\), asked for 5; give three band numbers"):
        RasterWindows(path, bands=[5])
    with pytest.raises(UserError, match=r"^bands: expected band numbers from 1 .* got 'red'$"):
        RasterWindows(path, bands="red")


def test_nodata_is_black(tmp_path):
    bands = np.full((3, 10, 10), 100, np.uint8)
    bands[:, :5] = 42
    path = write_tif(tmp_path / "nodata.tif", bands, nodata=42)
    with RasterWindows(path) as raster:
        pixels = np.asarray(raster.read_region(0, 0, 10, 10))
    assert (pixels[:5] == 0).all() and (pixels[5:] == 100).all()


def test_unreadable_or_missing_raster_is_one_line(tmp_path):
    with pytest.raises(UserError, match=r"nothing\.tif: no such raster file"):
        RasterWindows(tmp_path / "nothing.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\0not a tiff at all")
    with pytest.raises(UserError, match=r"bad\.tif: not a readable raster") as caught:
        RasterWindows(bad)
    assert "\n" not in str(caught.value)


def test_without_rasterio_the_message_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "rasterio", None)
    with pytest.raises(UserError, match=r'pip install "multibox\[geo\]"'):
        need_rasterio()


def test_map_polygons_through_the_transform_counter_clockwise():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    (ring,) = map_polygons(boxes, TRANSFORM)
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    assert ring[0] == ring[-1] and len(ring) == 5
    assert (min(xs), max(xs)) == (500_005.0, 500_015.0) and (min(ys), max(ys)) == (3_999_970.0, 3_999_990.0)
    area = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(ring, ring[1:]))
    assert area == pytest.approx(2 * 10.0 * 20.0)  # positive: counter-clockwise (RFC 7946)
    cos, sin = np.cos(np.pi / 6), np.sin(np.pi / 6)
    (rotated,) = map_polygons(boxes, Affine(2 * cos, -2 * sin, 0, 2 * sin, 2 * cos, 0))  # turned 30 degrees, 2 m
    assert np.allclose(rotated[0], [10 * 2 * cos - 20 * 2 * sin, 10 * 2 * sin + 20 * 2 * cos])


def test_gdal_block_cache_is_capped_while_the_raster_is_open(tmp_path):
    """GDAL's default cache (5 % of the RAM) would hold most of a mosaic read tile by tile."""
    path = write_tif(tmp_path / "rgb.tif", noise_rgb(20, 20))
    with RasterWindows(path, cache_mb=32):
        assert rasterio.env.getenv()["GDAL_CACHEMAX"] == 32 * 2**20
    assert not rasterio.env.hasenv() or "GDAL_CACHEMAX" not in rasterio.env.getenv()
    with pytest.raises(UserError):
        RasterWindows(path, bands="9")  # refused after opening: the cap is lifted again
    assert not rasterio.env.hasenv() or "GDAL_CACHEMAX" not in rasterio.env.getenv()
