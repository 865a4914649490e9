"""Masks of one frame, each kept as the bit-packed crop of its own bounding box.

A 640x480 mask as bool is 300 kB, and exact mode keeps tens to hundreds of masks a frame, which the Locator caches
for several frames. Most masks cover a small part of the frame: cropped to its tight box and packed 8 pixels a byte
(row by row, so any band of rows unpacks alone), a mask costs a few kB. Areas, intersections, containment and IoU
are computed on the overlap of two masks' boxes, so no consumer needs an (N, H, W) stack; `full(i)` and
`to_dense()` build full frames for the few places that truly need them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

_EMPTY_ROWS = np.zeros((0, 0), np.uint8)
_EMPTY_ROWS.flags.writeable = False


class BoxMasks:
    """N boolean masks of one (H, W) frame. Mask i is True only inside `boxes[i]` = (x0, y0, x1, y1), its tight box
    in pixel edges (x1, y1 one past the last pixel; an empty mask has (0, 0, 0, 0)), and is stored as that crop's
    rows bit-packed. Immutable: subsets share the stored crops."""

    __slots__ = ("_frame", "_boxes", "_rows", "_areas")

    def __init__(self, frame_size: tuple[int, int], boxes: np.ndarray, rows: Sequence[np.ndarray],
                 areas: np.ndarray) -> None:
        """Use the constructors (from_dense, from_masks, from_packed); this one trusts its arguments."""
        self._frame = (int(frame_size[0]), int(frame_size[1]))
        self._boxes = _read_only(np.array(boxes, np.int64).reshape(-1, 4))
        self._rows = tuple(rows)
        self._areas = _read_only(np.array(areas, np.int64).reshape(-1))
        if not len(self._boxes) == len(self._rows) == len(self._areas):
            raise ValueError(f"{len(self._boxes)} boxes, {len(self._rows)} crops and {len(self._areas)} areas; "
                             "accepted: one of each per mask")

    # --- construction -------------------------------------------------------------------------------------------

    @classmethod
    def empty(cls, frame_size: tuple[int, int]) -> BoxMasks:
        return cls(frame_size, np.zeros((0, 4), np.int64), (), np.zeros(0, np.int64))

    @classmethod
    def from_masks(cls, masks: Iterable[np.ndarray], frame_size: tuple[int, int]) -> BoxMasks:
        """From (H, W) bool masks, taken one at a time (a generator never needs the whole stack in memory)."""
        frame = (int(frame_size[0]), int(frame_size[1]))
        boxes, rows, areas = [], [], []
        for mask in masks:
            mask = np.asarray(mask)
            if mask.shape != frame:
                raise ValueError(f"mask: shape {mask.shape}; accepted: {frame}, the frame's (H, W)")
            box, packed, area = _pack(mask.astype(bool, copy=False))
            boxes.append(box)
            rows.append(packed)
            areas.append(area)
        return cls(frame, np.array(boxes, np.int64).reshape(-1, 4), rows, np.array(areas, np.int64))

    @classmethod
    def from_windows(cls, windows: Iterable[tuple[np.ndarray, int, int]], frame_size: tuple[int, int]) -> BoxMasks:
        """From (window, top, left) triples: each mask given only over a window of the frame (a bool array whose
        top-left pixel is frame pixel (top, left)), False everywhere else."""
        frame = (int(frame_size[0]), int(frame_size[1]))
        boxes, rows, areas = [], [], []
        for window, top, left in windows:
            window = np.asarray(window)
            if window.ndim != 2 or top < 0 or left < 0 or top + window.shape[0] > frame[0] \
                    or left + window.shape[1] > frame[1]:
                raise ValueError(f"window: shape {window.shape} at ({top}, {left}); accepted: a 2-D window inside "
                                 f"the {frame} frame")
            box, packed, area = _pack(window.astype(bool, copy=False), int(top), int(left))
            boxes.append(box)
            rows.append(packed)
            areas.append(area)
        return cls(frame, np.array(boxes, np.int64).reshape(-1, 4), rows, np.array(areas, np.int64))

    @classmethod
    def from_dense(cls, masks: np.ndarray) -> BoxMasks:
        """From an (N, H, W) stack."""
        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"masks: shape {masks.shape}; accepted: (N, H, W)")
        return cls.from_masks(masks, masks.shape[1:])

    @classmethod
    def from_packed(cls, packed: np.ndarray, frame_size: tuple[int, int],
                    boxes: np.ndarray | None = None) -> BoxMasks:
        """From full-frame masks bit-packed one per row ((N, ceil(H*W/8)) uint8, np.packbits of each flat mask), as
        the decoder keeps them. Each is unpacked alone, so only one full frame exists at a time; with `boxes`
        ((N, 4) inclusive x0, y0, x1, y1 that contain each mask, as batched_mask_to_box gives them), only the rows
        of its box are unpacked."""
        height, width = frame_size
        packed = np.asarray(packed, np.uint8)
        if boxes is None:
            return cls.from_masks((np.unpackbits(row, count=height * width).reshape(height, width).view(bool)
                                   for row in packed), frame_size)
        return cls.from_windows((_packed_rows(row, int(box[1]), int(box[3]) + 1, width)
                                 for row, box in zip(packed, np.asarray(boxes).reshape(-1, 4), strict=True)),
                                frame_size)

    @classmethod
    def concatenate(cls, parts: Sequence[BoxMasks]) -> BoxMasks:
        """The masks of `parts` in order (all of one frame)."""
        if not parts:
            raise ValueError("concatenate: no parts; accepted: at least one BoxMasks")
        frame = parts[0].frame_size
        if any(p.frame_size != frame for p in parts):
            raise ValueError(f"concatenate: frames {[p.frame_size for p in parts]}; accepted: masks of one frame")
        return cls(frame, np.concatenate([p._boxes for p in parts]), [r for p in parts for r in p._rows],
                   np.concatenate([p._areas for p in parts]))

    # --- what they are ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._boxes)

    def __repr__(self) -> str:
        return f"BoxMasks({len(self)} masks of a {self._frame[0]}x{self._frame[1]} frame, {self.nbytes} bytes)"

    # Iterating would build every full frame behind the caller's back: full(i) or to_dense() say what they cost.
    __iter__ = None

    @property
    def frame_size(self) -> tuple[int, int]:
        """(H, W) of the frame."""
        return self._frame

    @property
    def shape(self) -> tuple[int, int, int]:
        """(N, H, W): the shape of the dense stack these masks stand for."""
        return (len(self), *self._frame)

    @property
    def boxes(self) -> np.ndarray:
        """(N, 4) int64 tight boxes (x0, y0, x1, y1), x1/y1 one past the last pixel; (0, 0, 0, 0) when empty."""
        return self._boxes

    @property
    def areas(self) -> np.ndarray:
        """(N,) int64 pixel counts."""
        return self._areas

    @property
    def nbytes(self) -> int:
        """Bytes held: the packed crops, boxes and areas."""
        return sum(r.nbytes for r in self._rows) + self._boxes.nbytes + self._areas.nbytes

    def inclusive_boxes(self) -> np.ndarray:
        """(N, 4) int64 boxes with the last pixel's coordinates as max, (0, 0, 0, 0) for an empty mask: upstream's
        batched_mask_to_box convention, which proposal boxes keep."""
        out = self._boxes - np.array([0, 0, 1, 1], np.int64)
        out[self._areas == 0] = 0
        return out

    # --- subsets and pixels -------------------------------------------------------------------------------------

    def __getitem__(self, index: slice | Sequence[int] | np.ndarray) -> BoxMasks:
        """The masks at `index` (a slice, integer indices or a boolean mask over N), as a BoxMasks."""
        if isinstance(index, (int, np.integer)):
            raise TypeError("BoxMasks[i] with one integer: use full(i) for the (H, W) mask or crop(i) for its box")
        picked = np.arange(len(self))[index]
        return BoxMasks(self._frame, self._boxes[picked], [self._rows[i] for i in picked], self._areas[picked])

    def crop(self, i: int) -> np.ndarray:
        """Mask i inside its box: (y1 - y0, x1 - x0) bool, (0, 0) for an empty mask."""
        x0, _, x1, _ = self._boxes[i]
        return np.unpackbits(self._rows[i], axis=1, count=int(x1 - x0)).view(bool)

    def window(self, i: int, top: int, bottom: int, left: int, right: int) -> np.ndarray:
        """Mask i over the frame rows top:bottom and columns left:right: (bottom - top, right - left) bool."""
        height, width = self._frame
        if not (0 <= top <= bottom <= height and 0 <= left <= right <= width):
            raise ValueError(f"window rows {top}:{bottom}, columns {left}:{right}; accepted: inside the "
                             f"{height}x{width} frame")
        out = np.zeros((bottom - top, right - left), bool)
        box = (max(left, self._boxes[i, 0]), max(top, self._boxes[i, 1]),
               min(right, self._boxes[i, 2]), min(bottom, self._boxes[i, 3]))
        if box[2] > box[0] and box[3] > box[1]:
            out[box[1] - top : box[3] - top, box[0] - left : box[2] - left] = self._part(i, box)
        return out

    def full(self, i: int) -> np.ndarray:
        """Mask i as a full (H, W) bool frame (a new array)."""
        return self.window(i, 0, self._frame[0], 0, self._frame[1])

    def to_dense(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """(n, H, W) bool stack of the masks at `indices` (default all): for the places that need whole frames."""
        picked = np.arange(len(self)) if indices is None else np.asarray(indices, np.int64).reshape(-1)
        out = np.zeros((len(picked), *self._frame), bool)
        for k, i in enumerate(picked):
            x0, y0, x1, y1 = self._boxes[i]
            if x1 > x0:
                out[k, y0:y1, x0:x1] = self.crop(int(i))
        return out

    # --- pairs --------------------------------------------------------------------------------------------------

    def intersection(self, i: int, js: Sequence[int] | np.ndarray | None = None,
                     other: BoxMasks | None = None) -> np.ndarray:
        """(len(js),) int64 |i ∩ j| of mask i with the masks `js` of `other` (default: these masks; js default:
        all of them), counted on the overlap of the two boxes only."""
        other = self if other is None else other
        if other.frame_size != self._frame:
            raise ValueError(f"other: masks of a {other.frame_size} frame; accepted: {self._frame}, this one's")
        js = np.arange(len(other)) if js is None else np.asarray(js, np.int64).reshape(-1)
        out = np.zeros(len(js), np.int64)
        if self._areas[i] == 0 or len(js) == 0:
            return out
        a = self._boxes[i]
        b = other._boxes[js]
        over = np.stack([np.maximum(a[0], b[:, 0]), np.maximum(a[1], b[:, 1]),
                         np.minimum(a[2], b[:, 2]), np.minimum(a[3], b[:, 3])], axis=1)
        touching = np.flatnonzero((over[:, 2] > over[:, 0]) & (over[:, 3] > over[:, 1]) & (other._areas[js] > 0))
        if len(touching) == 0:
            return out
        mine = self.crop(i)  # unpacked once; each j unpacks only the rows and bytes of its overlap
        for k in touching:
            x0, y0, x1, y1 = over[k]
            ours = mine[y0 - a[1] : y1 - a[1], x0 - a[0] : x1 - a[0]]
            out[k] = np.count_nonzero(ours & other._part(int(js[k]), over[k]))
        return out

    def iou(self, i: int, js: Sequence[int] | np.ndarray | None = None, other: BoxMasks | None = None) -> np.ndarray:
        """(len(js),) float64 mask IoU of mask i with the masks `js` of `other` (as intersection); 0 when both
        are empty."""
        other = self if other is None else other
        js = np.arange(len(other)) if js is None else np.asarray(js, np.int64).reshape(-1)
        inter = self.intersection(i, js, other)
        union = self._areas[i] + other._areas[js] - inter
        return np.where(union > 0, inter / np.maximum(union, 1), 0.0)

    def containment(self, i: int, js: Sequence[int] | np.ndarray | None = None,
                    other: BoxMasks | None = None) -> np.ndarray:
        """(len(js),) float64 share of mask i's pixels that lie inside each mask j of `other` (as intersection);
        0 for an empty mask i."""
        inter = self.intersection(i, js, other)
        return inter / self._areas[i] if self._areas[i] > 0 else np.zeros(len(inter))

    def _part(self, i: int, box: np.ndarray | Sequence[int]) -> np.ndarray:
        """Mask i over `box` (x0, y0, x1, y1 frame edges, inside mask i's own box): only the rows, and the bytes
        of each row, that the box covers are unpacked."""
        mx0, my0 = int(self._boxes[i, 0]), int(self._boxes[i, 1])
        x0, y0, x1, y1 = (int(v) for v in box)
        first, last = (x0 - mx0) // 8, -(-(x1 - mx0) // 8)
        bits = np.unpackbits(self._rows[i][y0 - my0 : y1 - my0, first:last], axis=1).view(bool)
        skip = x0 - mx0 - 8 * first
        return bits[:, skip : skip + (x1 - x0)]


def _pack(mask: np.ndarray, top: int = 0, left: int = 0) -> tuple[tuple[int, int, int, int], np.ndarray, int]:
    """(tight box in frame pixel edges, the crop's rows bit-packed, area) of one bool mask given over the frame,
    or over a window of it whose top-left pixel is frame pixel (top, left)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return (0, 0, 0, 0), _EMPTY_ROWS, 0
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    crop = mask[y0:y1, x0:x1]
    box = (x0 + left, y0 + top, x1 + left, y1 + top)
    return box, _read_only(np.packbits(crop, axis=1)), int(np.count_nonzero(crop))


def _packed_rows(row: np.ndarray, top: int, bottom: int, width: int) -> tuple[np.ndarray, int, int]:
    """Frame rows top:bottom of a full-frame mask bit-packed as one flat row: (window, top, 0) for from_windows."""
    first, last = top * width // 8, -(-bottom * width // 8)
    bits = np.unpackbits(row[first:last])
    skip = top * width - 8 * first
    return bits[skip : skip + (bottom - top) * width].reshape(bottom - top, width).view(bool), top, 0


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
