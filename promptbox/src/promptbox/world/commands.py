"""Commands about a scene with their truth: which boxes answer "take the red mug", and which would be wrong.

A query is generated only when the scene makes its answer unambiguous (the left mug is clearly left of the other,
exactly one pen is next to the book), so a wrong answer is the pipeline's fault, not the world's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from promptbox.world.catalogue import CLASSES, UNSEEN_PAIRS
from promptbox.world.scene import FAR_GAP, NEAR_GAP, Box, Scene, WorldObject, box_gap, size_scale

TAGS = ("class", "whole", "attribute", "spatial", "relation", "absent", "part", "unseen")
VERBS = ("take", "pick", "grab", "hand me", "get", "pick up", "could you get", "please take")

# Thresholds in pixels at 640x480, scaled with the frame like the objects are (as are scene.NEAR_GAP and FAR_GAP).
SIDE_GAP = 40.0  # centres at least this far apart in x for "on the left" / "on the right"
SIZE_RATIO = 1.5  # visible areas at least this far apart for "biggest" / "smallest"
MAX_QUERIES = 10


@dataclass
class WorldQuery:
    command: str
    boxes: list[Box]  # every acceptable answer; [] = the object is absent
    tags: list[str]
    objects: list[Box]  # boxes of the other labelled objects in the frame: wrong answers
    truth_mask: np.ndarray | None = None  # HxW bool, when exactly one answer is acceptable


def queries_for(scene: Scene, rng: np.random.Generator) -> list[WorldQuery]:
    """Up to MAX_QUERIES queries the scene answers unambiguously, a few of each kind it allows."""
    maker = _Maker(scene, rng)
    picked: list[WorldQuery] = []
    # A few of each kind: a scene offers many class queries but few spatial ones, and a flat draw would drown them.
    for kind, limit in ((maker.whole_or_class, 2), (maker.part, 2), (maker.absent, 2), (maker.spatial, 1),
                        (maker.relation, 1)):
        picked += _sample(rng, kind(), limit)
    # Held-out pairs are the point of a validation split: always keep one when the scene has one.
    attribute = maker.attribute()
    unseen = [q for q in attribute if "unseen" in q.tags]
    seen = [q for q in attribute if "unseen" not in q.tags]
    picked += _sample(rng, unseen, 1) + _sample(rng, seen, 2 - min(1, len(unseen)))
    return picked[:MAX_QUERIES]


def _sample(rng: np.random.Generator, items: list[WorldQuery], limit: int) -> list[WorldQuery]:
    order = rng.permutation(len(items))[:limit]
    return [items[i] for i in sorted(order)]


class _Maker:
    def __init__(self, scene: Scene, rng: np.random.Generator) -> None:
        self.scene = scene
        self.rng = rng
        self.scale = size_scale(scene.image.shape[1], scene.image.shape[0])
        self.by_class: dict[str, list[WorldObject]] = {}
        for obj in scene.objects:
            self.by_class.setdefault(obj.cls, []).append(obj)

    # --- helpers ---------------------------------------------------------------------------------------------------

    def _say(self, target: str) -> str:
        return f"{VERBS[int(self.rng.integers(len(VERBS)))]} the {target}"

    def _query(self, command: str, answers: list[WorldObject], tags: list[str],
               masks: list[np.ndarray] | None = None, boxes: list[Box] | None = None) -> WorldQuery:
        """`answers` are the acceptable objects (or the parents of the acceptable parts, given `boxes`/`masks`)."""
        taken = {o.index for o in answers}
        others = [o.box_xyxy for o in self.scene.objects if o.index not in taken]
        boxes = [o.box_xyxy for o in answers] if boxes is None else boxes
        masks = [o.mask for o in answers] if masks is None else masks
        truth = masks[0].copy() if len(masks) == 1 else None
        return WorldQuery(command=command, boxes=list(boxes), tags=tags, objects=others, truth_mask=truth)

    # --- kinds -----------------------------------------------------------------------------------------------------

    def whole_or_class(self) -> list[WorldQuery]:
        """"take the scissors": every instance answers. Multi-part classes ask for the whole object."""
        out = []
        for cls, objs in self.by_class.items():
            tags = ["class", "whole"] if len(CLASSES[cls].parts) > 1 else ["class"]
            out.append(self._query(self._say(cls), objs, tags))
        return out

    def attribute(self) -> list[WorldQuery]:
        """"pick the red mug" beside a mug of another colour, and every held-out (colour, class) pair present."""
        out = []
        for cls, objs in self.by_class.items():
            colours = sorted({o.colour for o in objs})
            for colour in colours:
                unseen = (colour, cls) in UNSEEN_PAIRS
                if len(colours) < 2 and not unseen:
                    continue
                answers = [o for o in objs if o.colour == colour]
                tags = ["attribute", "unseen"] if unseen else ["attribute"]
                out.append(self._query(self._say(f"{colour} {cls}"), answers, tags))
        return out

    def spatial(self) -> list[WorldQuery]:
        """"the mug on the left", "the biggest box": only when the order is clear."""
        out = []
        for cls, objs in self.by_class.items():
            if len(objs) < 2:
                continue
            by_x = sorted(objs, key=lambda o: _centre(o.box_xyxy)[0])
            if _centre(by_x[1].box_xyxy)[0] - _centre(by_x[0].box_xyxy)[0] >= SIDE_GAP * self.scale:
                out.append(self._query(self._say(f"{cls} on the left"), [by_x[0]], ["spatial"]))
            if _centre(by_x[-1].box_xyxy)[0] - _centre(by_x[-2].box_xyxy)[0] >= SIDE_GAP * self.scale:
                out.append(self._query(self._say(f"{cls} on the right"), [by_x[-1]], ["spatial"]))
            by_area = sorted(objs, key=lambda o: o.area)
            if by_area[-1].area >= SIZE_RATIO * by_area[-2].area:
                out.append(self._query(self._say(f"biggest {cls}"), [by_area[-1]], ["spatial"]))
            if by_area[1].area >= SIZE_RATIO * by_area[0].area:
                out.append(self._query(self._say(f"smallest {cls}"), [by_area[0]], ["spatial"]))
        return out

    def relation(self) -> list[WorldQuery]:
        """"the pen next to the book" (one pen near the only book, the others far), and "left of" / "right of"."""
        out = []
        for cls, objs in self.by_class.items():
            if len(objs) < 2:
                continue
            for anchor_cls, anchors in self.by_class.items():
                if anchor_cls == cls or len(anchors) != 1:
                    continue
                anchor = anchors[0]
                gaps = [box_gap(o.box_xyxy, anchor.box_xyxy) for o in objs]
                near = [o for o, g in zip(objs, gaps, strict=True) if g < NEAR_GAP * self.scale]
                far = [o for o, g in zip(objs, gaps, strict=True) if g > FAR_GAP * self.scale]
                if len(near) == 1 and len(near) + len(far) == len(objs):
                    out.append(self._query(self._say(f"{cls} next to the {anchor_cls}"), near, ["relation"]))
                # "left of": exactly one instance left of the anchor's box, every other one right of it.
                a0, a1 = anchor.box_xyxy[0], anchor.box_xyxy[2]
                xs = [_centre(o.box_xyxy)[0] for o in objs]
                left = [o for o, x in zip(objs, xs, strict=True) if x < a0]
                right = [o for o, x in zip(objs, xs, strict=True) if x > a1]
                if len(left) + len(right) == len(objs):
                    if len(left) == 1:
                        out.append(self._query(self._say(f"{cls} to the left of the {anchor_cls}"), left,
                                               ["relation"]))
                    if len(right) == 1:
                        out.append(self._query(self._say(f"{cls} to the right of the {anchor_cls}"), right,
                                               ["relation"]))
        return out

    def absent(self) -> list[WorldQuery]:
        """A class not on the table, and a colour no instance of a present class has."""
        out = []
        missing = sorted(set(CLASSES) - set(self.by_class))
        if missing:
            cls = missing[int(self.rng.integers(len(missing)))]
            out.append(self._query(self._say(cls), [], ["absent"]))
        options = []
        for cls, objs in sorted(self.by_class.items()):
            present = {o.colour for o in objs}
            for colour in CLASSES[cls].colours:
                if colour in present or (self.scene.split == "train" and (colour, cls) in UNSEEN_PAIRS):
                    continue
                options.append((colour, cls))
        if options:
            colour, cls = options[int(self.rng.integers(len(options)))]
            out.append(self._query(self._say(f"{colour} {cls}"), [], ["absent", "attribute"]))
        return out

    def part(self) -> list[WorldQuery]:
        """"the cap of the marker": the part's box answers; with two markers of different colours the colour
        says which, and with two of the same colour both caps answer."""
        out = []
        for cls, objs in self.by_class.items():
            names = CLASSES[cls].parts
            if len(names) < 2:
                continue
            p = int(self.rng.integers(len(names)))
            colours = [o.colour for o in objs]
            if len(objs) > 1 and len(set(colours)) == len(colours):
                obj = objs[int(self.rng.integers(len(objs)))]
                holders = [obj]
                noun = f"{names[p]} of the {obj.colour} {cls}"
            else:
                holders = objs
                noun = f"{names[p]} of the {cls}"
            parts = [o.parts[p] for o in holders]
            out.append(self._query(self._say(noun), holders, ["part"], masks=[q.mask for q in parts],
                                   boxes=[q.box_xyxy for q in parts]))
        return out


def _centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
