"""GeoTIFF / TIFF rasters read window by window as 8-bit RGB (rasterio), never the whole raster in memory.

An orthomosaic is often larger than memory (a 50,000 x 50,000 RGB mosaic is 7.5 GB decoded), so
:class:`RasterWindows` reads only the pixels of the window asked for (rasterio/GDAL reads the TIFF's
blocks or strips under it), plus a margin that lets the resampling of a window match what the
localizer does on a decoded image (:func:`multibox.data.transforms.crop_resize`).

* **Bands.** ``bands`` names three raster bands (counted from 1, as GDAL does) read as red, green and
  blue, or one band read as grey. Default: 1, 2, 3 when the raster has three or more (a 4-band RGBA or
  RGB-NIR raster drops its fourth), else band 1 as grey.
* **Scaling to 8 bit.** 8-bit bands are taken as they are. Any other type (16-bit, 32-bit, float) is
  scaled per band linearly from its 2nd percentile (-> 0) to its 98th (-> 255), clipped. The
  percentiles come from one decimated read of the whole raster, at most :data:`OVERVIEW_SIDE` pixels
  on its long side (GDAL uses the file's overviews when it has them), before any window is read,
  so every window of the raster is scaled alike. Nodata pixels are left out of the percentiles.
* **Nodata and masks.** Pixels the raster marks as nodata (its nodata value, internal mask or alpha
  band) are black, as transparent pixels are in :mod:`multibox.data.images`.
* **Memory.** A window read holds its pixels (tile x tile x bands) and GDAL's block cache is capped at
  ``cache_mb`` (default :data:`CACHE_MB`) while the raster is open, instead of GDAL's 5 % of the RAM.
* **Georeferencing.** ``crs`` (a rasterio CRS, None when the raster has none) and ``transform``
  (pixel -> map Affine) are kept; :func:`map_polygons` turns pixel boxes into map polygons.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
import torch
from torch import Tensor

from multibox.data.transforms import crop_resize
from multibox.errors import UserError

__all__ = ["CACHE_MB", "OVERVIEW_SIDE", "PERCENTILES", "RasterWindows", "map_polygons", "need_rasterio"]

OVERVIEW_SIDE = 1024  # long side of the decimated read the 8-bit scaling is taken from
PERCENTILES = (2.0, 98.0)  # per band: these map to 0 and 255
CACHE_MB = 256  # GDAL's block cache while a raster is read: neighbouring tiles share decoded blocks


def need_rasterio():
    """The rasterio module, or a one-line UserError saying what to install."""
    try:
        import rasterio
    except ImportError:
        message = 'reading GeoTIFF/TIFF rasters window by window needs rasterio: pip install "multibox[geo]"'
        raise UserError(message) from None
    return rasterio


def default_bands(count: int) -> list[int]:
    """Bands read as red, green, blue: 1, 2, 3 when there are three or more, else band 1 as grey."""
    return [1, 2, 3] if count >= 3 else [1, 1, 1]


def parse_bands(text: str) -> list[int]:
    """"1,2,3" -> [1, 2, 3]; a one-line UserError for what is not a list of band numbers."""
    try:
        return [int(b) for b in text.split(",")]
    except ValueError:
        raise UserError(f"bands: expected band numbers from 1 as red,green,blue (1,2,3) or one, got {text!r}") from None


def check_bands(bands: list[int] | str | None, count: int, path: Path) -> list[int]:
    """``bands`` (three, or one read as grey; a list or "1,2,3") as three band numbers within the raster's ``count``."""
    if bands is None:
        return default_bands(count)
    bands = parse_bands(bands) if isinstance(bands, str) else [int(b) for b in bands]
    if len(bands) not in (1, 3) or min(bands) < 1 or max(bands) > count:
        raise UserError(f"bands: {path} has {count} band(s), asked for {','.join(map(str, bands))}; give three "
                        f"band numbers from 1 to {count} (red,green,blue) or one (grey)")
    return bands * 3 if len(bands) == 1 else bands


class RasterWindows:
    """One GeoTIFF/TIFF raster, read window by window as 8-bit RGB (module docstring for bands and scaling).

    >>> with RasterWindows("ortho.tif", bands=[1, 2, 3]) as raster:
    ...     pixels = raster.crop_input([0, 0, 1000, 1000], 224)   # Tensor[3, 224, 224] uint8
    """

    def __init__(self, path: str | Path, bands: list[int] | str | None = None, cache_mb: int = CACHE_MB) -> None:
        rasterio = need_rasterio()
        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such raster file")
        # GDAL keeps decoded blocks up to 5 % of the RAM by default: most of a mosaic read tile by tile.
        self._env = rasterio.Env(GDAL_CACHEMAX=max(1, int(cache_mb)) * 2**20)
        self._env.__enter__()
        try:
            with warnings.catch_warnings():  # a raster without georeferencing is told about in one line by the caller
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                self.dataset = rasterio.open(self.path)
        except rasterio.errors.RasterioIOError as error:
            self._env.__exit__(None, None, None)
            raise UserError(f"{self.path}: not a readable raster ({error})") from None
        self.width, self.height = self.dataset.width, self.dataset.height
        self.crs, self.transform = self.dataset.crs, self.dataset.transform
        self.reads: list[tuple[int, int]] = []  # (width, height) of every window read: bounded memory is checkable
        try:
            self.bands = check_bands(bands, self.dataset.count, self.path)
            self.scale = self._scaling()  # None (8 bit) or per band (low, high) arrays [3]
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> RasterWindows:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.dataset.close()
        self._env.__exit__(None, None, None)  # GDAL's block cache back to its previous limit

    @property
    def scaling(self) -> str:
        """How the bands become 8 bit, in words (for the log and the output files)."""
        if self.scale is None:
            return "8-bit bands, as they are"
        low, high = self.scale
        spans = ", ".join(f"band {b}: {lo:g}-{hi:g}" for b, lo, hi in zip(self.bands, low, high))
        low, high = PERCENTILES
        return f"{self.dataset.dtypes[0]} scaled to 8 bit by the {low:g}-{high:g} percentiles ({spans})"

    def _scaling(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Per band (2nd, 98th) percentile of a decimated read; None when every band read is 8-bit."""
        if all(self.dataset.dtypes[b - 1] == "uint8" for b in self.bands):
            return None
        factor = max(1.0, max(self.width, self.height) / OVERVIEW_SIDE)
        shape = (3, max(1, round(self.height / factor)), max(1, round(self.width / factor)))
        sample = self.dataset.read(self.bands, out_shape=shape, masked=True)  # [3, h, w], a few MB at most
        low, high = np.zeros(3), np.ones(3)
        for i, band in enumerate(sample):  # a loop over the three bands
            values = band.compressed().astype(np.float64)
            if values.size:
                low[i], high[i] = np.percentile(values, PERCENTILES)
            high[i] = max(high[i], low[i] + 1e-6)  # a constant band: all 0 rather than a division by zero
        return low, high

    def to_8bit(self, pixels: np.ndarray) -> list[np.ndarray]:
        """Bands [u, h, w] (a masked array where the raster has nodata) -> u uint8 [h, w]: scaled (module
        docstring), nodata black. ``pixels`` holds each band of ``self.bands`` once, in sorted order."""
        if self.scale is not None:
            unique = sorted(set(self.bands))
            low, high = (np.array([v[self.bands.index(b)] for b in unique]) for v in self.scale)
            pixels = np.clip(np.rint((pixels.astype(np.float32) - low[:, None, None])
                                     * (255.0 / (high - low))[:, None, None]), 0, 255)
        if np.ma.isMaskedArray(pixels):
            pixels = pixels.filled(0)
        return list(pixels.astype(np.uint8, copy=False))

    def read_region(self, x0: int, y0: int, x1: int, y1: int) -> Image.Image:
        """The pixels [x0, x1) x [y0, y1) (inside the raster) as an RGB PIL image; only they are read."""
        from rasterio.enums import MaskFlags
        from rasterio.windows import Window

        self.reads.append((x1 - x0, y1 - y0))
        unique = sorted(set(self.bands))  # a grey raster's band is read once, not three times
        masked = any(self.dataset.mask_flag_enums[b - 1] != [MaskFlags.all_valid] for b in unique)
        pixels = self.dataset.read(unique, window=Window(x0, y0, x1 - x0, y1 - y0), masked=masked)  # [u, h, w]
        bands = self.to_8bit(pixels)
        return Image.fromarray(np.stack([bands[unique.index(b)] for b in self.bands], axis=-1))  # [h, w, 3]: RGB

    def crop_input(self, window: Tensor | list[float], size: int) -> Tensor:
        """The pixel xyxy ``window`` resized to size x size: Tensor[3, S, S] uint8, black past the raster,
        as :func:`multibox.data.transforms.crop_resize` gives on the decoded image.

        Only the window's part inside the raster is read, with a margin of the resampling filter's
        reach (one output pixel's span, plus one), so the filter sees the same neighbours it would see
        in the whole image.
        """
        box = [float(v) for v in (window.tolist() if hasattr(window, "tolist") else window)]
        margin = math.ceil(max(box[2] - box[0], box[3] - box[1]) / size) + 1
        x0, y0 = max(0, math.floor(box[0]) - margin), max(0, math.floor(box[1]) - margin)
        x1, y1 = min(self.width, math.ceil(box[2]) + margin), min(self.height, math.ceil(box[3]) + margin)
        if x1 <= x0 or y1 <= y0:  # wholly outside the raster (tile_windows never cuts one): black
            return torch.zeros(3, size, size, dtype=torch.uint8)
        region = self.read_region(x0, y0, x1, y1)
        return crop_resize(region, [box[0] - x0, box[1] - y0, box[2] - x0, box[3] - y0], size)


def map_polygons(boxes: Tensor, transform) -> list[list[list[float]]]:
    """Pixel xyxy boxes Tensor[N, 4] -> N closed rings [[x, y] * 5] in map coordinates through the
    Affine ``transform`` (rotation and shear included), counter-clockwise as GeoJSON (RFC 7946) wants."""
    a, b, c, d, e, f = tuple(transform)[:6]  # x' = a x + b y + c, y' = d x + e y + f (GDAL's, any affine version)
    rings = []
    for x1, y1, x2, y2 in boxes.double().tolist():  # a loop over the boxes to write, not the raster
        corners = [(a * x + b * y + c, d * x + e * y + f) for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))]
        area = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(corners, corners[1:] + corners[:1]))
        if area < 0:  # a north-up raster's y axis points down: the pixel order turns clockwise on the map
            corners.reverse()
        rings.append([[float(x), float(y)] for x, y in corners + corners[:1]])
    return rings
