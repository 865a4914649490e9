"""One tabletop scene: objects placed on a table, later ones occluding earlier ones, with exact visible masks.

`generate_scene(seed, index)` is a pure function of its arguments. Each object is drawn in its own canvas
(`shapes.py`), shaded (`paint.py`), rotated, scaled and moved into the frame by one affine warp: nearest-neighbour for
the labels, so masks are exact, and premultiplied bilinear for the colour, so edges are smooth.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from promptbox.world.catalogue import CLASSES, UNSEEN_PAIRS
from promptbox.world.paint import shade
from promptbox.world.shapes import Canvas, draw
from promptbox.world.surface import SURFACES, camera, table

SPLITS = {"train": 1, "val": 2, "test": 3}
_MAX_PARTS = 8  # the id map stores object * _MAX_PARTS + part

# Object lengths in pixels at 640x480; other sizes scale them by min(width / 640, height / 480).
LENGTHS: dict[str, tuple[float, float]] = {
    "screwdriver": (120, 210), "marker": (80, 135), "scissors": (100, 170), "mug": (75, 120),
    "bottle": (110, 200), "pen": (85, 150), "spoon": (90, 160), "banana": (100, 170), "apple": (55, 90),
    "box": (100, 200), "ball": (50, 90), "book": (130, 220), "phone": (90, 150),
}
MIN_VISIBLE = 0.6  # share of an object's own area that must stay visible under later objects
MIN_PART_VISIBLE = 0.4  # the same for each of its parts, so a part query always has something to find
MIN_PART_PIXELS = 6
NEAR_GAP = 25.0  # pixels at 640x480 between boxes: "next to"
FAR_GAP = 80.0  # pixels at 640x480 between boxes: clearly not next to
_TRIES = 40


Box = tuple[int, int, int, int]


@dataclass
class _Pose:
    """An object drawn at one pose: its labels in the frame region starting at (x0, y0), and the warp that put
    them there from the canvas."""

    x0: int
    y0: int
    labels: np.ndarray
    canvas: Canvas
    matrix: np.ndarray


@dataclass
class WorldPart:
    name: str
    colour: str
    mask: np.ndarray  # HxW bool, visible pixels
    box_xyxy: Box


@dataclass
class WorldObject:
    index: int
    cls: str
    colour: str  # the main part's colour
    mask: np.ndarray  # HxW bool, the visible union of its parts
    box_xyxy: Box
    parts: list[WorldPart]
    area: int  # visible pixels


@dataclass
class Scene:
    image: np.ndarray  # HxWx3 uint8 RGB
    objects: list[WorldObject]
    surface: str  # "wood" | "cloth" | "plain"
    seed: int
    index: int
    split: str = "val"

    @property
    def table_mask(self) -> np.ndarray:
        """HxW bool: pixels that belong to no object."""
        covered = np.zeros(self.image.shape[:2], bool)
        for obj in self.objects:
            covered |= obj.mask
        return ~covered


def box_of(mask: np.ndarray) -> Box:
    """Pixel edges (x0, y0, x1, y1) of a non-empty mask; x1 and y1 are exclusive."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if len(xs) == 0:
        raise ValueError("box_of: the mask is empty; accepted: a mask with at least one pixel")
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def box_gap(a: Box, b: Box) -> float:
    """Euclidean distance between two boxes' edges; 0 when they touch or overlap."""
    dx = max(0, max(a[0], b[0]) - min(a[2], b[2]))
    dy = max(0, max(a[1], b[1]) - min(a[3], b[3]))
    return float(np.hypot(dx, dy))


def size_scale(width: int, height: int) -> float:
    """How much pixel lengths and gaps shrink or grow against 640x480."""
    return min(width / 640, height / 480)


def generate_scene(seed: int, index: int, size: tuple[int, int] = (640, 480), *, split: str = "val") -> Scene:
    """Scene `index` of the stream `seed`; `size` is (width, height). split="train" never shows an UNSEEN_PAIRS
    combination, split="val" (and "test") often does."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not supported; accepted: {', '.join(SPLITS)}")
    width, height = int(size[0]), int(size[1])
    if width < 64 or height < 48:
        raise ValueError(f"size={size!r} is too small; accepted: (width, height) of at least (64, 48)")
    rng = np.random.default_rng([seed, index, SPLITS[split]])
    surface = SURFACES[rng.integers(len(SURFACES))]
    image = table(surface, width, height, rng)
    placer = _Placer(image, rng, size_scale(width, height))
    for cls, colours, role in _plan(rng, split):
        placer.place(cls, colours, role)
    image = camera(placer.image, rng)
    return Scene(image=image, objects=placer.objects(), surface=surface, seed=seed, index=index, split=split)


# --- what goes in a scene -----------------------------------------------------------------------------------------


def _plan(rng: np.random.Generator, split: str) -> list[tuple[str, list[str], str | None]]:
    """(class, part colours, role) per object in drawing order. Roles lay out a relation: an anchor, one instance of
    the target class near it and one far from it. About half of the scenes hold two instances of one class."""
    names = sorted(CLASSES)
    count = int(rng.integers(3, 9))
    layout = rng.random()
    order = [str(c) for c in rng.permutation(names)]
    entries: list[tuple[str, str | None]] = []
    if layout < 0.3:
        target, anchor = order[0], order[1]
        entries = [(anchor, "anchor"), (target, "near"), (target, "far")]
        entries += [(c, None) for c in order[2:2 + max(0, count - 3)]]
    elif layout < 0.6:
        entries = [(order[0], None), (order[0], None)] + [(c, None) for c in order[1:1 + max(0, count - 2)]]
        # Shuffle the rest around the pair, so a pair is not always under everything else.
        entries = [entries[i] for i in rng.permutation(len(entries))]
    else:
        entries = [(c, None) for c in order[:count]]

    forced: tuple[str, str] | None = None
    if split != "train" and rng.random() < 0.4:
        pairs = sorted(UNSEEN_PAIRS)
        colour, cls = pairs[rng.integers(len(pairs))]
        forced = (colour, cls)
        if cls not in {c for c, _ in entries}:
            # Replace a single, role-less object, so pairs and relation layouts survive.
            names_used = [c for c, _ in entries]
            free = [i for i, (c, r) in enumerate(entries) if r is None and names_used.count(c) == 1]
            if free:
                entries[free[int(rng.integers(len(free)))]] = (cls, None)
            else:
                entries.append((cls, None))
    out: list[tuple[str, list[str], str | None]] = []
    used: dict[str, str] = {}  # class -> main colour of its first instance
    for cls, role in entries:
        if forced is not None and cls == forced[1] and cls not in used:
            main = forced[0]
        else:
            main = _main_colour(rng, cls, split, avoid=used.get(cls) if rng.random() < 0.6 else None)
        used.setdefault(cls, main)
        out.append((cls, _part_colours(rng, cls, main), role))
    return out


def _main_colour(rng: np.random.Generator, cls: str, split: str, avoid: str | None) -> str:
    allowed = [c for c in CLASSES[cls].colours if c != avoid]
    if split == "train":
        allowed = [c for c in allowed if (c, cls) not in UNSEEN_PAIRS]
    return allowed[int(rng.integers(len(allowed)))]


def _part_colours(rng: np.random.Generator, cls: str, main: str) -> list[str]:
    colours = [main]
    for palette in CLASSES[cls].part_colours:
        allowed = [c for c in palette if c not in colours]
        colours.append(allowed[int(rng.integers(len(allowed)))])
    return colours


# --- placing objects ----------------------------------------------------------------------------------------------


class _Placer:
    """Adds objects one by one, retrying a placement that would hide too much of an earlier object."""

    def __init__(self, image: np.ndarray, rng: np.random.Generator, scale: float) -> None:
        self.image = image
        self.rng = rng
        self.scale = scale
        self.height, self.width = image.shape[:2]
        self.ids = np.full((self.height, self.width), -1, np.int32)  # object * _MAX_PARTS + part, -1 = table
        self.placed: list[tuple[str, list[str]]] = []
        self.full_area: list[np.ndarray] = []  # per object: full pixel count of each part
        self.anchor_box: Box | None = None

    def place(self, cls: str, colours: list[str], role: str | None) -> bool:
        for _ in range(_TRIES):
            pose = self._draw(cls, colours, role)
            if pose is not None and self._fits(pose):
                self._commit(cls, colours, role, pose)
                return True
        return False

    def _draw(self, cls: str, colours: list[str], role: str | None) -> _Pose | None:
        """One random pose of the object, or None when it does not fit the frame or the role."""
        low, high = LENGTHS[cls]
        length = self.rng.uniform(low, high) * self.scale
        angle = self.rng.uniform(0, 360)
        # Drawn at 1.5x the final size (rounded, so canvases repeat and cache), then shrunk by the warp.
        res = max(0.5, round(1.5 * length / 200, 1))
        canvas = draw(cls, res)
        bx, by, bw, bh = cv2.boundingRect(canvas.labels)
        c = canvas.centre
        zoom = length / (200 * res)
        matrix = cv2.getRotationMatrix2D((c, c), angle, zoom)
        corners = np.array([[bx, by], [bx + bw, by], [bx + bw, by + bh], [bx, by + bh]], np.float64)
        # Where the drawn extent lands relative to the object's centre, so the whole object stays in the frame.
        spread = corners @ matrix[:, :2].T + matrix[:, 2] - np.array([c, c])
        lo, hi = spread.min(axis=0), spread.max(axis=0)
        centre = self._centre(role, lo, hi, length)
        if centre is None:
            return None
        x0, y0 = int(np.floor(centre[0] + lo[0])) - 1, int(np.floor(centre[1] + lo[1])) - 1
        x1, y1 = int(np.ceil(centre[0] + hi[0])) + 2, int(np.ceil(centre[1] + hi[1])) + 2
        if x0 < 0 or y0 < 0 or x1 > self.width or y1 > self.height:
            return None
        matrix[:, 2] += np.array([centre[0] - c - x0, centre[1] - c - y0])
        labels = cv2.warpAffine(canvas.labels, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_NEAREST, borderValue=0)
        counts = np.bincount(labels.ravel(), minlength=len(colours) + 1)[1:len(colours) + 1]
        if counts.min() < MIN_PART_PIXELS:
            return None
        return _Pose(x0, y0, labels, canvas, matrix)

    def _centre(self, role: str | None, lo: np.ndarray, hi: np.ndarray, length: float) -> np.ndarray | None:
        """Where the object's centre goes: anywhere it fits, or next to / far from the anchor for a relation."""
        low = -lo + 1
        high = np.array([self.width, self.height]) - hi - 2
        if (high <= low).any():
            return None
        if role == "near" and self.anchor_box is not None:
            a = self.anchor_box
            ax, ay = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2
            theta = self.rng.uniform(0, 2 * np.pi)
            reach = (max(a[2] - a[0], a[3] - a[1]) + length) / 2 * self.rng.uniform(0.6, 1.0)
            centre = np.array([ax + reach * np.cos(theta), ay + reach * np.sin(theta)])
            if (centre < low).any() or (centre > high).any():
                return None
            box = (centre[0] + lo[0], centre[1] + lo[1], centre[0] + hi[0], centre[1] + hi[1])
            return centre if box_gap(a, box) < 0.6 * NEAR_GAP * self.scale else None
        centre = self.rng.uniform(low, high)
        if role == "far" and self.anchor_box is not None:
            box = (centre[0] + lo[0], centre[1] + lo[1], centre[0] + hi[0], centre[1] + hi[1])
            if box_gap(self.anchor_box, box) < 1.5 * FAR_GAP * self.scale:
                return None
        return centre

    def _fits(self, pose: _Pose) -> bool:
        """True if every earlier object keeps MIN_VISIBLE of its area and every part MIN_PART_VISIBLE of its own."""
        labels = pose.labels
        region = self.ids[pose.y0:pose.y0 + labels.shape[0], pose.x0:pose.x0 + labels.shape[1]]
        hidden = region[(labels > 0) & (region >= 0)]
        if len(hidden) == 0:
            return True
        visible = np.bincount(self.ids[self.ids >= 0], minlength=len(self.placed) * _MAX_PARTS)
        lost = np.bincount(hidden, minlength=len(visible))
        after = (visible - lost).reshape(-1, _MAX_PARTS)
        for i, full in enumerate(self.full_area):
            parts = after[i, :len(full)]
            if parts.sum() < MIN_VISIBLE * full.sum() or (parts < MIN_PART_VISIBLE * full).any():
                return False
            if (parts < MIN_PART_PIXELS).any():
                return False
        return True

    def _commit(self, cls: str, colours: list[str], role: str | None, pose: _Pose) -> None:
        x0, y0, labels = pose.x0, pose.y0, pose.labels
        h, w = labels.shape
        # Shaded only now, once the pose is kept: shading is the costly step and most tries are thrown away.
        inside = (pose.canvas.labels > 0).astype(np.float32)
        coverage = cv2.warpAffine(inside, pose.matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        colour = cv2.warpAffine(shade(pose.canvas, colours) * inside[..., None], pose.matrix, (w, h),
                                flags=cv2.INTER_LINEAR, borderValue=0)
        colour /= np.maximum(coverage, 1e-3)[..., None]
        self._shadow(x0, y0, coverage)
        view = self.image[y0:y0 + h, x0:x0 + w]
        alpha = np.where(labels > 0, 1.0, 0.0).astype(np.float32)[..., None]
        # Antialiased rim: outside the label mask, blend in a little of the coverage so edges are not jagged.
        alpha = np.maximum(alpha, 0.5 * coverage[..., None] * (labels[..., None] == 0))
        view[:] = view * (1 - alpha) + colour * alpha
        index = len(self.placed)
        region = self.ids[y0:y0 + h, x0:x0 + w]
        region[labels > 0] = index * _MAX_PARTS + labels[labels > 0].astype(np.int32) - 1
        self.placed.append((cls, colours))
        self.full_area.append(np.bincount(labels.ravel(), minlength=len(colours) + 1)[1:len(colours) + 1])
        if role == "anchor":
            ys, xs = np.nonzero(labels)
            self.anchor_box = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)

    def _shadow(self, x0: int, y0: int, coverage: np.ndarray) -> None:
        """A soft shadow down and to the right of the object, on whatever is under it."""
        h, w = coverage.shape
        offset = max(1, round(4 * self.scale))
        pad = 3 * offset
        canvas = np.zeros((h + 2 * pad, w + 2 * pad), np.float32)
        canvas[pad + offset:pad + offset + h, pad + offset:pad + offset + w] = coverage
        canvas = cv2.GaussianBlur(canvas, (0, 0), 1.5 * offset)
        gx0, gy0 = x0 - pad, y0 - pad
        cx0, cy0 = max(0, -gx0), max(0, -gy0)
        cx1 = canvas.shape[1] - max(0, gx0 + canvas.shape[1] - self.width)
        cy1 = canvas.shape[0] - max(0, gy0 + canvas.shape[0] - self.height)
        view = self.image[gy0 + cy0:gy0 + cy1, gx0 + cx0:gx0 + cx1]
        view *= (1 - 0.35 * canvas[cy0:cy1, cx0:cx1])[..., None]

    def objects(self) -> list[WorldObject]:
        out: list[WorldObject] = []
        owner = np.where(self.ids >= 0, self.ids // _MAX_PARTS, -1)
        part_of = np.where(self.ids >= 0, self.ids % _MAX_PARTS, -1)
        for i, (cls, colours) in enumerate(self.placed):
            mask = owner == i
            parts = []
            for p, name in enumerate(CLASSES[cls].parts):
                pmask = mask & (part_of == p)
                parts.append(WorldPart(name=name, colour=colours[p], mask=pmask, box_xyxy=box_of(pmask)))
            out.append(WorldObject(index=i, cls=cls, colour=colours[0], mask=mask, box_xyxy=box_of(mask),
                                   parts=parts, area=int(mask.sum())))
        return out
