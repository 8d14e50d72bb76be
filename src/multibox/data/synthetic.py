"""The embedded default dataset: procedurally generated scenes, deterministic from a seed, no files.

Each image holds 0 to ``max_objects`` objects of five shape classes, each filled with one of several
textures, of sizes from a few percent of the image to most of it and aspect ratios 1:3 to 3:1, drawn
in sequence over a cluttered background so that later objects occlude earlier ones. Boxes are the
extent of each object's *visible* pixels (as VOC annotators draw them); an object less than
``MIN_VISIBLE`` visible keeps its box with ``ignore=True`` (like VOC ``difficult``), and one fully
hidden is not annotated. Splits use disjoint seeds, so train / val / test never share an image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from multibox.data.dataset import DetectionDataset, ImageRecord

CLASS_NAMES = ["rectangle", "ellipse", "triangle", "diamond", "cross"]
SPLIT_OFFSETS = {"train": 0, "val": 1, "test": 2}
DEFAULT_SIZES = {"train": 4000, "val": 300, "test": 300}
MIN_VISIBLE = 0.35  # visible share under which an object is marked ignore (too occluded to demand)
N_TEXTURES = 4


def _shape_mask(shape: int, box: np.ndarray, size: int) -> np.ndarray:
    """Bool[size, size] mask of shape class ``shape`` inscribed in pixel xyxy ``box``."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    x1, y1, x2, y2 = box.tolist()
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    if shape == 0:
        draw.rectangle([x1, y1, x2 - 1, y2 - 1], fill=1)
    elif shape == 1:
        draw.ellipse([x1, y1, x2 - 1, y2 - 1], fill=1)
    elif shape == 2:
        draw.polygon([(cx, y1), (x2 - 1, y2 - 1), (x1, y2 - 1)], fill=1)
    elif shape == 3:
        draw.polygon([(cx, y1), (x2 - 1, cy), (cx, y2 - 1), (x1, cy)], fill=1)
    else:  # cross: two bars a third of the box thick
        draw.rectangle([x1, cy - h / 6, x2 - 1, cy + h / 6], fill=1)
        draw.rectangle([cx - w / 6, y1, cx + w / 6, y2 - 1], fill=1)
    return np.asarray(canvas, dtype=bool)


def _texture(rng: np.random.Generator, kind: int, size: int) -> np.ndarray:
    """uint8[size, size, 3] fill pattern: solid, stripes, checker or speckle, in random colours."""
    c1, c2 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:size, 0:size]
    period = int(rng.integers(4, 12))
    if kind == 0:
        pick = np.zeros((size, size), bool)
    elif kind == 1:
        angle = rng.uniform(0, np.pi)
        pick = ((xx * np.cos(angle) + yy * np.sin(angle)) // period) % 2 == 0
    elif kind == 2:
        pick = ((xx // period) + (yy // period)) % 2 == 0
    else:
        pick = rng.random((size, size)) < 0.5
    return np.where(pick[..., None], c1, c2).astype(np.uint8)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """uint8[size, size, 3]: a colour gradient, noise, and thin clutter strokes that are not objects."""
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, size)[:, None, None]
    img = c1 * (1 - t) + c2 * t
    img = np.transpose(img, (1, 0, 2)) if rng.random() < 0.5 else img
    img = np.broadcast_to(img, (size, size, 3)) + rng.normal(0, 12, (size, size, 3))
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(3, 12))):
        pts = rng.uniform(0, size, 4).tolist()
        draw.line(pts, fill=tuple(int(v) for v in rng.integers(0, 256, 3)), width=1)
    return np.array(canvas)  # writable: objects are painted onto it


class SyntheticDataset(DetectionDataset):
    """A deterministic split of generated scenes; see the module docstring.

    split: "train", "val" or "test" (disjoint seeds). size: number of images (default per split).
    image_size: side of the square images in pixels. seed: base seed of the whole dataset.
    preload: render all images up front (N x S x S x 3 bytes of memory) instead of on every load.
    shapes: the class ids drawn (indices into CLASS_NAMES; labels keep them); None: all five. Two
    datasets with disjoint shapes are two "datasets" for §4.4.2's cross-dataset test.
    """

    class_names = CLASS_NAMES

    def __init__(self, split: str = "train", size: int | None = None, image_size: int = 160,
                 seed: int = 0, max_objects: int = 6, preload: bool = False, shapes: list[int] | None = None) -> None:
        if split not in SPLIT_OFFSETS:
            from multibox.errors import UserError

            raise UserError(f"synthetic data has splits {sorted(SPLIT_OFFSETS)}, not {split!r}")
        self.split, self.image_size, self.seed, self.max_objects = split, image_size, seed, max_objects
        self.shapes = None if shapes is None else np.asarray(shapes, np.int64)
        kinds = "" if shapes is None else " (" + ",".join(CLASS_NAMES[i] for i in self.shapes) + ")"
        self.name = f"synthetic:{split}{kinds}"
        n = DEFAULT_SIZES[split] if size is None else size
        self.records = [self._render(i, pixels=False)[1] for i in range(n)]
        # preload: render every image once into one array; DataLoader workers forked afterwards share
        # its pages, so an epoch costs no rendering (the demo's many epochs over 4,000 images).
        self.pixels = np.stack([self._render(i, pixels=True)[0] for i in range(n)]) if preload else None

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, SPLIT_OFFSETS[self.split], index])

    def _layout(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Object boxes float[M, 4] (pixel xyxy, may reach past the border), classes [M], textures [M]."""
        s = self.image_size
        m = int(rng.choice(self.max_objects + 1, p=self._count_probs()))
        side = np.exp(rng.uniform(np.log(0.08), np.log(0.9), m))  # log-uniform: small and large alike
        aspect = np.exp(rng.uniform(np.log(1 / 3), np.log(3), m))
        w = np.minimum(side * np.sqrt(aspect), 0.98) * s
        h = np.minimum(side / np.sqrt(aspect), 0.98) * s
        x1 = rng.uniform(-0.1 * w, s - 0.9 * w)  # up to 10 % may leave the image, to be truncated
        y1 = rng.uniform(-0.1 * h, s - 0.9 * h)
        boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=1).round()
        if self.shapes is None:
            classes = rng.integers(0, len(CLASS_NAMES), m)
        else:  # the same draws as above, so the layouts (positions, sizes, textures) match the full dataset's
            classes = self.shapes[rng.integers(0, len(self.shapes), m)]
        return boxes, classes, rng.integers(0, N_TEXTURES, m)

    def _count_probs(self) -> np.ndarray:
        """Object-count distribution: about 8 % empty images, most with 1-3 objects."""
        p = np.array([1.0 / (1 + abs(k - 2)) for k in range(self.max_objects + 1)])
        return p / p.sum()

    def _render(self, index: int, pixels: bool) -> tuple[np.ndarray | None, ImageRecord]:
        """Draw image ``index``; returns (uint8[S, S, 3] or None, its record)."""
        rng = self._rng(index)
        s = self.image_size
        boxes, classes, textures = self._layout(rng)
        image = _background(rng, s) if pixels else None
        owner = np.full((s, s), -1, np.int64)  # which object each pixel shows; later ones on top
        full_area = np.zeros(len(boxes))
        for j, (box, cls, tex) in enumerate(zip(boxes, classes, textures)):
            mask = _shape_mask(int(cls), box, s)
            full_area[j] = mask.sum()
            owner[mask] = j
            if image is not None:  # textures have their own rng, so records need not draw them
                fill = _texture(np.random.default_rng([self.seed, SPLIT_OFFSETS[self.split], index, j + 1]), int(tex), s)
                image[mask] = fill[mask]
        return image, self._record(index, owner, full_area, classes)

    def _record(self, index: int, owner: np.ndarray, full_area: np.ndarray, classes: np.ndarray) -> ImageRecord:
        """Boxes of the visible extent of each object from the ownership map."""
        boxes, labels, ignore = [], [], []
        for j in range(len(full_area)):  # M <= max_objects: a handful of masks, not a loop over boxes
            ys, xs = np.nonzero(owner == j)
            if len(xs) == 0:
                continue  # fully hidden: nobody could annotate it
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            labels.append(int(classes[j]))
            ignore.append(len(xs) < MIN_VISIBLE * max(full_area[j], 1))
        s = self.image_size
        return ImageRecord(f"{self.split}-{index:06d}", None, s, s, np.array(boxes, np.float32).reshape(-1, 4),
                           np.array(labels, np.int64), np.array(ignore, bool))

    def load_image(self, index: int, target_size: tuple[int, int] | None = None) -> Image.Image:
        if self.pixels is not None:
            return Image.fromarray(self.pixels[index])
        image, _ = self._render(index, pixels=True)
        return Image.fromarray(image)
