"""`multibox detect --tile` on a GeoTIFF / TIFF: the localizer run tile by tile over an orthomosaic read
window by window (:class:`multibox.data.raster.RasterWindows`), never the whole raster in memory.

The tiles are those of :func:`multibox.inference.windows.tile_windows`; each batch of tiles is read,
resized and run through the network, and only the network's outputs (K boxes and scores per tile,
20 bytes per box) are kept; one :func:`multibox.inference.postprocess.merge_windows` over all tiles
then prunes them exactly as :class:`multibox.inference.localizer.Localizer` does with ``windows="tiles"``
on the decoded image. Memory: one tile's pixels at a time (tile x tile x 3 bytes and a copy, until it is
resized), one batch of resized inputs, GDAL's block cache (:func:`cache_mb`), and the outputs of all
tiles (e.g. 2,500 tiles x 784 boxes = 39 MB). Measured: a 20000 x 20000 RGB GeoTIFF in 169 tiles of
2000 px with the demo's model peaked at 1.14 GB of resident memory, against 0.96 GB for one 64 x 64 image.

Writes, for a raster NAME.tif:

* ``OUT/NAME.geojson``: a FeatureCollection, each box a Polygon feature in map coordinates with its
  ``score`` (and its pixel box x1, y1, x2, y2); the CRS named in the ``crs`` member (GDAL/QGIS read it).
  A raster without a CRS gives pixel coordinates (x right, y down), said in one line on stderr.
* ``OUT/NAME.json``: a detections.json list of one entry (pixels; :mod:`multibox.inference.entries`)
  plus the raster's ``crs``, ``transform`` (GDAL's six coefficients), tile, overlap, bands and scaling.
* ``OUT/NAME.gpkg`` / ``OUT/NAME.shp`` when asked (``vector_formats``), through pyogrio or fiona.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from multibox.atomic import write_text_atomic
from multibox.data.raster import RasterWindows, map_polygons
from multibox.data.vector_files import VECTOR_FORMATS, check_vector_formats, write_vector
from multibox.errors import UserError
from multibox.inference.entries import detection_entry, significant
from multibox.inference.loading import load_localizer
from multibox.inference.localizer import Localizer
from multibox.inference.postprocess import check_options, fewest, merge_windows
from multibox.inference.windows import tile_windows

__all__ = ["RASTER_SUFFIXES", "VECTOR_FORMATS", "crs_name", "detect_raster", "detect_tiles", "is_raster"]

RASTER_SUFFIXES = {".tif", ".tiff"}


def is_raster(path: str | Path) -> bool:
    """A GeoTIFF / TIFF file, read window by window with --tile."""
    return Path(path).suffix.lower() in RASTER_SUFFIXES and Path(path).is_file()


def window_outputs(localizer: Localizer, inputs: Tensor) -> dict[str, Tensor]:
    """The network's outputs for inputs Tensor[T, 3, S, S] uint8 (:meth:`Localizer.forward_windows`, with its
    tta; a checkpoint's model or an .onnx session): {"pred_boxes": Tensor[T, K, 4], "pred_logits": Tensor[T, K]}
    float32 on the CPU, all that is kept of a batch of tiles."""
    outputs = localizer.forward_windows(inputs)
    return {k: outputs[k].float().cpu() for k in ("pred_boxes", "pred_logits")}


def detect_tiles(localizer: Localizer, crop: Callable[[Tensor, int], Tensor], width: int, height: int, tile: float,
                 overlap: float = 0.2, top_k: int | None = 10, min_score: float = 0.0, iou: float | None = None,
                 batch_size: int = 16, label: str = "tiles") -> dict[str, Tensor]:
    """Detections {"boxes": Tensor[N, 4] pixel xyxy, "scores": Tensor[N]} of a width x height image whose
    windows ``crop(window Tensor[4], S)`` gives as Tensor[3, S, S] uint8, ``batch_size`` tiles at a time,
    merged as :meth:`Localizer.run` merges tiles; a progress bar over the tiles on stderr."""
    windows = tile_windows(width, height, tile, overlap)  # [T, 4]
    parts = []
    with tqdm(total=len(windows), desc=label, unit="tile", file=sys.stderr, disable=None) as bar:
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size]
            parts.append(window_outputs(localizer, torch.stack([crop(w, localizer.image_size) for w in chunk])))
            bar.update(len(chunk))
    outputs = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    sizes = torch.tensor([[width, height]], dtype=torch.float32)
    return merge_windows(outputs, windows, sizes, iou or localizer.nms_iou, top_k,
                         counts=torch.tensor([len(windows)]), drop_cut=True, min_score=min_score)[0]


def cache_mb(tile: float) -> int:
    """GDAL's block cache for tiles of ``tile`` pixels: two tiles of 4 bytes per pixel (neighbours in a row
    share their overlap's blocks), between 64 and 1024 MB."""
    return int(min(1024, max(64, 2 * 4 * tile * tile / 2**20)))


def crs_name(crs) -> str | None:
    """The name GeoJSON's ``crs`` member gives a rasterio CRS: an OGC URN for EPSG codes (CRS84 for
    EPSG:4326, whose GeoJSON coordinates are longitude, latitude), else its WKT; None without a CRS."""
    if crs is None:
        return None
    code = crs.to_epsg()
    if code == 4326:
        return "urn:ogc:def:crs:OGC:1.3:CRS84"
    return f"urn:ogc:def:crs:EPSG::{code}" if code else crs.to_wkt()


def feature_collection(det: dict[str, Tensor], raster: RasterWindows, name: str) -> dict:
    """The boxes as a GeoJSON FeatureCollection: Polygons in map coordinates (pixels without a CRS)."""
    georeferenced = raster.crs is not None
    rings = map_polygons(det["boxes"], raster.transform if georeferenced else _identity())
    scores = significant(det["scores"])
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                 "properties": {"score": score, **dict(zip(("x1", "y1", "x2", "y2"), (round(v, 2) for v in box)))}}
                for ring, score, box in zip(rings, scores, det["boxes"].double().tolist())]
    collection: dict = {"type": "FeatureCollection", "name": name}
    if georeferenced:
        collection["crs"] = {"type": "name", "properties": {"name": crs_name(raster.crs)}}
    return collection | {"features": features}


def _identity():
    from affine import Affine  # rasterio's own dependency

    return Affine.identity()


def pixel_entry(det: dict[str, Tensor], raster: RasterWindows, tile: float, overlap: float) -> dict:
    """The detections.json entry of the raster, in pixels, with its georeferencing and how it was read."""
    entry = detection_entry(det, raster.width, raster.height, None, str(raster.path))
    return entry | {"crs": crs_name(raster.crs), "transform": list(raster.transform)[:6], "tile": tile,
                    "overlap": overlap, "bands": raster.bands, "scaling": raster.scaling}


def detect_raster(model: str | Path | Localizer, raster_path: str | Path, out_dir: str | Path, tile: float,
                  overlap: float = 0.2, bands: list[int] | str | None = None, top_k: int = 10, min_score: float = 0.0,
                  iou: float | None = None, max_det: int | None = None, device: str = "auto", tta: str | None = None,
                  batch_size: int = 16, vector_formats: list[str] | tuple = (),
                  name: str | None = None, runtime: str = "onnxruntime") -> dict[str, Path]:
    """Detect over the GeoTIFF/TIFF ``raster_path`` tile by tile; the files written (module docstring),
    by kind: {"geojson", "json", and each of ``vector_formats`` ("gpkg", "shp")}.

    model: a checkpoint, run folder or .onnx file, or a :class:`Localizer`; tile (pixels) / overlap
    (fraction of a tile): the tiles; bands: three band numbers (red, green, blue) or one (grey), a list or
    "1,2,3" (default 1,2,3);
    top_k / max_det / min_score / iou: as :func:`multibox.jobs.detect.detect`; name: the output stem
    (default the raster's); runtime: what runs an .onnx model, "onnxruntime" or "openvino".
    """
    check_options(min_score, iou, top_k, max_det)
    if not tile or tile <= 0:
        raise UserError(f"tile {tile}: expected a tile side in pixels > 0")
    check_vector_formats(vector_formats)  # a missing pyogrio/fiona fails before the raster is read
    if not isinstance(model, Localizer):
        model = load_localizer(model, device, windows="tiles", tile=tile, overlap=overlap, tta=tta,
                               runtime=runtime)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with RasterWindows(raster_path, bands, cache_mb=cache_mb(tile)) as raster:
        name = name or raster.path.stem
        if raster.crs is None:
            print(f"{raster.path}: no CRS; boxes in pixel coordinates (x right, y down) in {name}.geojson",
                  file=sys.stderr)
        det = detect_tiles(model, raster.crop_input, raster.width, raster.height, tile, overlap,
                           fewest(top_k, max_det), min_score, iou, batch_size, label=f"detect {raster.path.name}")
        written = {"geojson": out / f"{name}.geojson", "json": out / f"{name}.json"}
        write_text_atomic(written["geojson"], json.dumps(feature_collection(det, raster, name)))
        write_text_atomic(written["json"], json.dumps([pixel_entry(det, raster, tile, overlap)], indent=1))
    for kind in vector_formats:
        written[kind] = write_vector(written["geojson"], out / f"{name}{VECTOR_FORMATS[kind][1]}", kind)
    return written
