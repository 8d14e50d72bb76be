"""GeoPackage and Shapefile copies of a GeoJSON FeatureCollection, through pyogrio (or fiona when only it is
installed), for GIS tools that prefer them; both are optional (``pip install "multibox[geo]"``).

Each file is written under a temporary name in its folder and renamed into place (a Shapefile's
.shp/.shx/.dbf/.prj/.cpg one by one), so an interrupted write leaves no half file under the final name.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np

from multibox.errors import UserError

__all__ = ["VECTOR_FORMATS", "check_vector_formats", "vector_backend", "write_vector"]

#: format -> (GDAL/OGR driver, file suffix)
VECTOR_FORMATS = {"gpkg": ("GPKG", ".gpkg"), "shp": ("ESRI Shapefile", ".shp")}
_SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
_FIELDS = ("score", "x1", "y1", "x2", "y2")  # the properties detect_raster writes


def vector_backend() -> str | None:
    """"pyogrio" or "fiona", whichever is installed (pyogrio first); None when neither is."""
    for module in ("pyogrio", "fiona"):
        try:
            __import__(module)
        except ImportError:
            continue
        return module
    return None


def check_vector_formats(formats: list[str] | tuple) -> None:
    """A one-line UserError for an unknown format, or for gpkg/shp without pyogrio or fiona."""
    unknown = [f for f in formats if f not in VECTOR_FORMATS]
    if unknown:
        raise UserError(f"format {','.join(unknown)}: map formats are {', '.join(VECTOR_FORMATS)} "
                        "(and geojson, always written)")
    if formats and vector_backend() is None:
        raise UserError(f"format {','.join(formats)}: GeoPackage/Shapefile output needs pyogrio or fiona: "
                        'pip install "multibox[geo]"')


def write_vector(geojson: Path, target: Path, kind: str) -> Path:
    """``geojson`` copied to ``target`` in format ``kind`` ("gpkg" or "shp"), atomically; ``target``."""
    driver, suffix = VECTOR_FORMATS[kind]
    fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    os.unlink(name)  # GDAL creates the file itself; only the unique name is wanted
    temp = Path(name)
    parts = _SHAPEFILE_PARTS if kind == "shp" else (suffix,)
    try:
        layer = re.sub(r"\W", "_", target.stem) if kind == "gpkg" else None  # a Shapefile's layer is its file name
        (_write_pyogrio if vector_backend() == "pyogrio" else _write_fiona)(geojson, temp, driver, layer)
        for part in parts:
            if temp.with_suffix(part).exists():
                os.replace(temp.with_suffix(part), target.with_suffix(part))
    finally:
        for part in parts:
            temp.with_suffix(part).unlink(missing_ok=True)
    return target


def _write_pyogrio(geojson: Path, target: Path, driver: str, layer: str | None) -> None:
    from pyogrio import raw

    meta, _, geometry, field_data = raw.read(geojson)
    fields = meta["fields"]
    if len(geometry) == 0:  # an empty collection tells no fields: write the ones detect_raster gives
        fields, field_data = np.array(_FIELDS, dtype=object), [np.zeros(0) for _ in _FIELDS]
    raw.write(target, geometry, field_data, fields=fields, crs=meta["crs"], geometry_type="Polygon", driver=driver,
              layer=layer)


def _write_fiona(geojson: Path, target: Path, driver: str, layer: str | None) -> None:
    import fiona

    with fiona.open(geojson) as source:
        schema = {"geometry": "Polygon", "properties": {f: "float" for f in _FIELDS}}
        with fiona.open(target, "w", driver=driver, schema=schema, crs=source.crs, layer=layer) as sink:
            sink.writerecords(source)
