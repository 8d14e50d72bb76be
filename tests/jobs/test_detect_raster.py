"""detect_raster: a GeoTIFF run tile by tile; boxes at known pixels land at known map coordinates, the same
detections as the localizer on the decoded image, no CRS -> pixels said in one line, GeoPackage/Shapefile,
a 20000 x 20000 raster with bounded memory, and `multibox detect --tile` sending .tif files here."""

import json
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image

rasterio = pytest.importorskip("rasterio")
from rasterio.transform import Affine  # noqa: E402
from rasterio.windows import Window  # noqa: E402

from multibox.cli import main  # noqa: E402
from multibox.config import Config  # noqa: E402
from multibox.engine.checkpoint import save_checkpoint  # noqa: E402
from multibox.errors import UserError  # noqa: E402
from multibox.inference.localizer import Localizer  # noqa: E402
from multibox.jobs.detect_raster import detect_raster, detect_tiles  # noqa: E402
from multibox.modeling.localizer import build_model  # noqa: E402

TRANSFORM = Affine(0.5, 0.0, 500_000.0, 0.0, -0.5, 4_000_000.0)  # UTM 33N, 0.5 m pixels, north up


class OneBox(torch.nn.Module):
    """Stands in for MultiBox: one box, xyxy (0.25, 0.25, 0.5, 0.5) of every window, logit 2."""

    def forward(self, x):
        boxes = torch.tensor([[[0.25, 0.25, 0.5, 0.5]]]).expand(len(x), -1, -1)
        return {"pred_boxes": boxes, "pred_logits": torch.full((len(x), 1), 2.0)}


def write_tif(path, bands: np.ndarray, georeferenced: bool = True):
    count, height, width = bands.shape
    where = {"crs": "EPSG:32633", "transform": TRANSFORM} if georeferenced else {}
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=count, dtype=bands.dtype,
                       tiled=True, blockxsize=16, blockysize=16, **where) as out:
        out.write(bands)
    return path


def noise(height, width, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (3, height, width), dtype=np.uint8)


def tiny_localizer(tile: float, overlap: float = 0.25) -> Localizer:
    torch.manual_seed(0)
    priors = torch.rand(16, 2).repeat(1, 2) * torch.tensor([0.5, 0.5, 1.0, 1.0])
    return Localizer(build_model("tiny", priors.sort(dim=1).values, None, 64, 4), 32, "cpu", windows="tiles",
                     tile=tile, overlap=overlap)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained tiny localizer saved as a checkpoint (the CLI loads it)."""
    cfg = Config.preset("paper")
    cfg.model.backbone, cfg.model.image_size, cfg.model.num_boxes, cfg.model.hidden_dim = "tiny", 32, 16, 64
    model = tiny_localizer(32).model
    path = tmp_path_factory.mktemp("model") / "best.pt"
    save_checkpoint(path, {"task": "localizer", "model": model.state_dict(), "config": cfg.to_dict(), "step": 0,
                           "class_names": ["tree"], "prior_match_counts": torch.zeros(16, dtype=torch.int64)})
    return path


def test_a_box_at_known_pixels_lands_at_known_map_coordinates(tmp_path):
    path = write_tif(tmp_path / "ortho.tif", noise(48, 64))  # one tile of 64: the box is pixels (16, 16, 32, 32)
    written = detect_raster(Localizer(OneBox(), 32, "cpu"), path, tmp_path / "out", tile=64)
    assert written == {"geojson": tmp_path / "out" / "ortho.geojson", "json": tmp_path / "out" / "ortho.json"}
    collection = json.loads(written["geojson"].read_text())
    assert collection["crs"] == {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}
    (feature,) = collection["features"]
    ring = feature["geometry"]["coordinates"][0]
    xs, ys = sorted({x for x, _ in ring}), sorted({y for _, y in ring})
    assert xs == [500_008.0, 500_016.0] and ys == [3_999_984.0, 3_999_992.0]  # 0.5 m pixels from the corner
    assert feature["properties"] == {"score": pytest.approx(float(torch.sigmoid(torch.tensor(2.0))), abs=1e-4),
                                     "x1": 16.0, "y1": 16.0, "x2": 32.0, "y2": 32.0}
    (entry,) = json.loads(written["json"].read_text())
    assert entry["boxes"] == [[16.0, 16.0, 32.0, 32.0]] and (entry["width"], entry["height"]) == (64, 48)
    assert entry["transform"] == [0.5, 0.0, 500_000.0, 0.0, -0.5, 4_000_000.0] and entry["path"] == str(path)
    assert entry["crs"] == "urn:ogc:def:crs:EPSG::32633" and entry["bands"] == [1, 2, 3]


def test_tile_by_tile_equals_the_localizer_on_the_decoded_image(tmp_path):
    bands = noise(100, 150, seed=3)
    path = write_tif(tmp_path / "ortho.tif", bands)
    localizer = tiny_localizer(tile=48)
    written = detect_raster(localizer, path, tmp_path / "out", tile=48, overlap=0.25, top_k=20, batch_size=5)
    (entry,) = json.loads(written["json"].read_text())
    boxes, scores = localizer.predict(Image.fromarray(bands.transpose(1, 2, 0)), top_k=20)
    assert len(entry["boxes"]) == len(boxes) == 20
    assert torch.allclose(torch.tensor(entry["boxes"]), boxes, atol=0.01)
    assert torch.allclose(torch.tensor(entry["scores"]), scores, rtol=1e-3)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # writing the test's raster
def test_without_a_crs_boxes_are_pixels_and_it_is_said(tmp_path, capsys):
    path = write_tif(tmp_path / "plain.tif", noise(48, 64), georeferenced=False)
    written = detect_raster(Localizer(OneBox(), 32, "cpu"), path, tmp_path / "out", tile=64)
    err = capsys.readouterr().err
    assert f"{path}: no CRS; boxes in pixel coordinates (x right, y down) in plain.geojson" in err
    collection = json.loads(written["geojson"].read_text())
    assert "crs" not in collection
    ring = collection["features"][0]["geometry"]["coordinates"][0]
    assert sorted({x for x, _ in ring}) == [16.0, 32.0] and sorted({y for _, y in ring}) == [16.0, 32.0]


def test_geopackage_and_shapefile(tmp_path):
    pyogrio = pytest.importorskip("pyogrio")
    path = write_tif(tmp_path / "ortho.tif", noise(48, 64))
    written = detect_raster(Localizer(OneBox(), 32, "cpu"), path, tmp_path / "out", tile=64,
                            vector_formats=["gpkg", "shp"])
    for kind in ("gpkg", "shp"):
        info = pyogrio.read_info(written[kind])
        assert info["features"] == 1 and info["crs"] == "EPSG:32633" and "score" in list(info["fields"])
        assert np.allclose(info["total_bounds"], (500_008.0, 3_999_984.0, 500_016.0, 3_999_992.0))
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")) == []  # no temp files


def test_gpkg_without_pyogrio_or_fiona_says_what_to_install_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr("multibox.data.vector_files.vector_backend", lambda: None)
    path = write_tif(tmp_path / "ortho.tif", noise(48, 64))
    with pytest.raises(UserError, match=r'^format gpkg: GeoPackage/Shapefile output needs pyogrio or fiona: '
                                        r'pip install "multibox\[geo\]"$'):
        detect_raster(Localizer(OneBox(), 32, "cpu"), path, tmp_path / "out", tile=64, vector_formats=["gpkg"])
    assert not (tmp_path / "out").exists()


def test_a_20000_pixel_square_raster_runs_with_bounded_memory(tmp_path):
    """1.2 GB as RGB; in tiles of 5000 the run's peak is a few tile-sized arrays."""
    path = tmp_path / "big.tif"
    with rasterio.open(path, "w", driver="GTiff", width=20_000, height=20_000, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=TRANSFORM, tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate", sparse_ok=True) as out:  # mostly uniform: 0 but one painted block
        out.write(np.full((1, 512, 512), 200, np.uint8), window=Window(7168, 7168, 512, 512))
    tracemalloc.start()
    try:
        written = detect_raster(tiny_localizer(5000), path, tmp_path / "out", tile=5000, overlap=0.0, top_k=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    side = 5000 + 2 * (5000 // 32 + 2)  # a tile and the resampling margin
    assert peak < 5 * side * side, f"peak {peak / 1e6:.0f} MB"  # vs 1,200 MB for the raster as RGB
    (entry,) = json.loads(written["json"].read_text())
    assert (entry["width"], entry["height"]) == (20_000, 20_000) and len(entry["boxes"]) == 5


def test_detect_cli_sends_tif_with_tile_to_the_raster_path(tmp_path, checkpoint, capsys):
    path = write_tif(tmp_path / "ortho.tif", noise(80, 120))
    out = tmp_path / "out"
    code = main(["detect", "--model", str(checkpoint), "--tile", "64", "--bands", "3,2,1", "--out", str(out),
                 "--format", "gpkg", "--top-k", "3", str(path)])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert f"geojson: {out / 'ortho.geojson'}" in printed and f"gpkg: {out / 'ortho.gpkg'}" in printed
    (entry,) = json.loads((out / "ortho.json").read_text())
    assert entry["bands"] == [3, 2, 1] and entry["tile"] == 64 and len(entry["boxes"]) == 3
    assert not (out / "detections.json").exists()  # nothing went through the image path


@pytest.mark.parametrize("extra, fragment", [
    (["--classifier", "c.pt"], "--classifier, --save-txt and the other --format kinds are for images"),
    (["--format", "voc"], "--classifier, --save-txt and the other --format kinds are for images"),
    (["--bands", "5"], "--bands: "),
])
def test_detect_cli_raster_mistakes_are_one_line(tmp_path, checkpoint, capsys, extra, fragment):
    path = write_tif(tmp_path / "ortho.tif", noise(40, 40))
    code = main(["detect", "--model", str(checkpoint), "--tile", "64", "--out", str(tmp_path / "o"), *extra, str(path)])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1, err


def test_bands_and_map_formats_need_a_raster_with_tile(tmp_path, checkpoint, capsys):
    image = tmp_path / "photo.png"
    Image.new("RGB", (40, 40)).save(image)
    for extra in (["--bands", "1,2,3"], ["--format", "gpkg"], ["--tile", "64", "--bands", "1"]):
        code = main(["detect", "--model", str(checkpoint), "--out", str(tmp_path / "o"), *extra, str(image)])
        err = capsys.readouterr().err
        assert code == 2 and "only for GeoTIFF/TIFF files with --tile" in err, err


@pytest.mark.parametrize("backend", ["pyogrio", "fiona"])
def test_each_vector_backend_writes_the_same_layer(tmp_path, monkeypatch, backend):
    pytest.importorskip(backend)
    pyogrio = pytest.importorskip("pyogrio")  # reads what either wrote
    monkeypatch.setattr("multibox.data.vector_files.vector_backend", lambda: backend)
    path = write_tif(tmp_path / "ortho.tif", noise(48, 64))
    written = detect_raster(Localizer(OneBox(), 32, "cpu"), path, tmp_path / "out", tile=64, vector_formats=["gpkg"])
    info = pyogrio.read_info(written["gpkg"])
    assert info["features"] == 1 and info["crs"] == "EPSG:32633"
    assert np.allclose(info["total_bounds"], (500_008.0, 3_999_984.0, 500_016.0, 3_999_992.0))
    empty = detect_raster(Localizer(OneBox(), 32, "cpu"), path, tmp_path / "none", tile=64, min_score=0.99,
                          vector_formats=["gpkg", "shp"])  # no box above --conf: empty layers, still readable
    for kind in ("gpkg", "shp"):
        info = pyogrio.read_info(empty[kind])
        assert info["features"] == 0 and "score" in list(info["fields"])
    assert json.loads(empty["geojson"].read_text())["features"] == []


def test_detect_cli_mixed_inputs_rasters_windowed_images_as_before(tmp_path, checkpoint, capsys):
    path = write_tif(tmp_path / "ortho.tif", noise(80, 120))
    image = tmp_path / "photo.png"
    Image.fromarray(noise(60, 90).transpose(1, 2, 0)).save(image)
    out = tmp_path / "out"
    code = main(["detect", "--model", str(checkpoint), "--tile", "64", "--out", str(out), "--no-save", str(path),
                 str(image)])
    assert code == 0, capsys.readouterr().err
    (raster_entry,) = json.loads((out / "ortho.json").read_text())
    (image_entry,) = json.loads((out / "detections.json").read_text())
    assert raster_entry["path"] == str(path) and image_entry["path"] == str(image)
    assert (out / "ortho.geojson").exists()


def test_a_progress_bar_counts_the_tiles(tmp_path, monkeypatch):
    bars = []

    class Bar:
        def __init__(self, total, desc, unit, **_):
            self.total, self.desc, self.unit, self.n = total, desc, unit, 0
            bars.append(self)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            self.n += n

    monkeypatch.setattr("multibox.jobs.detect_raster.tqdm", Bar)
    path = write_tif(tmp_path / "ortho.tif", noise(100, 150))
    detect_raster(Localizer(OneBox(), 32, "cpu"), path, tmp_path / "out", tile=48, overlap=0.25, batch_size=4)
    (bar,) = bars
    assert (bar.total, bar.n, bar.unit, bar.desc) == (4 * 3, 4 * 3, "tile", "detect ortho.tif")  # 4 x 3 tiles
