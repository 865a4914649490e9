"""A stand-in for MobileSAM's network on world frames, so the world measures matching and selection while trained
world MobileSAM weights don't exist yet (they need a GPU; see tools/world/README.md).

Only the network is replaced. `WorldMaskProposer` is a MaskProposer: the exact mode's point grid, fast mode's peak
points, box NMS and the small-region clean-up are promptbox's own code. Where MobileSAM would decode a point
prompt, it answers what a perfectly trained SAM answers at its three levels: the part under the point, the whole
object, and the group of touching objects (or the table for a point on the table), from the scene's exact masks.
Every result made with it is tagged ORACLE_TAG, and nothing in the product imports this module.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from mobile_sam.utils.amg import batched_mask_to_box

from promptbox.config import AmgSettings
from promptbox.proposals import FrameEmbedding, MaskProposer, _Decoded, _Filter
from promptbox.world.generate import WORLD_FILE
from promptbox.world.groups import touching_groups
from promptbox.world.scene import Scene, generate_scene

ORACLE_TAG = "[WORLD ORACLE MASKS]"


def _key(image: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).hexdigest()


class _Levels:
    """Per pixel, the masks SAM's three multimask outputs stand for: (part, object, group), or the table."""

    def __init__(self, scene: Scene) -> None:
        h, w = scene.image.shape[:2]
        self.masks: list[np.ndarray] = [scene.table_mask]
        self.part = np.zeros((h, w), np.int32)  # index into masks; 0 = the table
        self.object = np.zeros((h, w), np.int32)
        self.group = np.zeros((h, w), np.int32)
        group_of = touching_groups(scene)
        group_index: dict[int, int] = {}
        for obj, group in zip(scene.objects, group_of, strict=True):
            o = self._add(obj.mask)
            g = group_index.setdefault(id(group), self._add(group))
            self.object[obj.mask], self.group[obj.mask], self.part[obj.mask] = o, g, o
            if len(obj.parts) > 1:
                for part in obj.parts:
                    self.part[part.mask] = self._add(part.mask)

    def _add(self, mask: np.ndarray) -> int:
        self.masks.append(mask)
        return len(self.masks) - 1

    def at(self, x: float, y: float) -> list[int]:
        h, w = self.part.shape
        c, r = min(max(int(x), 0), w - 1), min(max(int(y), 0), h - 1)
        return [int(self.part[r, c]), int(self.object[r, c]), int(self.group[r, c])]


class WorldMaskProposer(MaskProposer):
    """MaskProposer whose decoder is the world's truth, for the scenes of one world stream (seed, size, split).
    Pass it to Locator(config, proposer=...); MobileSAM is then not loaded."""

    tag = ORACLE_TAG

    def __init__(self, seed: int, scenes: int, size: tuple[int, int], split: str = "val",
                 settings: AmgSettings | None = None) -> None:
        # MaskProposer's own __init__ needs a network; the oracle keeps only what the shared code paths read.
        self.settings = settings or AmgSettings()
        self.device = "cpu"
        self.point_iou_floor = min(0.5, self.settings.pred_iou_thresh)
        self.point_stability_floor = min(0.5, self.settings.stability_score_thresh)
        self.keep_nested_wholes = True  # as the product's proposer: NMS-removed wholes of kept parts come back
        self.masks_on_device = False  # its masks are drawn on the host
        self._levels: dict[str, _Levels] = {}
        self._frames: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # frame features -> scene key
        for index in range(scenes):
            scene = generate_scene(seed, index, size, split=split)
            self._levels[_key(scene.image)] = _Levels(scene)

    @classmethod
    def for_dataset(cls, root: Path, settings: AmgSettings | None = None) -> WorldMaskProposer:
        """The oracle for a folder written by `promptbox world generate` (it reads the folder's world.json)."""
        path = Path(root) / WORLD_FILE
        try:
            stream = json.loads(path.read_text())
            return cls(int(stream["seed"]), int(stream["scenes"]), tuple(stream["size"]), stream["split"], settings)
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"--world-masks: {path} could not be read ({type(error).__name__}: {error}); accepted: a folder "
                "written by `promptbox world generate`, which records how its scenes were drawn"
            ) from error

    def embed(self, image_rgb: np.ndarray) -> FrameEmbedding:
        key = _key(image_rgb)
        if key not in self._levels:
            raise ValueError("frame: not a scene of this world stream; the oracle knows only the scenes it drew")
        h, w = image_rgb.shape[:2]
        # No embedding: the oracle decodes from the scene that drew this frame.
        frame = FrameEmbedding(torch.zeros(1), (h, w), (h, w), {"encoder": 0.0})
        self._frames[frame.features] = key
        return frame

    def _decode_coarse_to_fine(self, frame: FrameEmbedding, points: np.ndarray, side: int, rule: _Filter,
                               timings: dict[str, float]) -> Iterator[_Decoded]:
        # The oracle decodes for free: every grid point in one stage, so its mask set measures matching and
        # selection alone.
        out = _Decoded()
        self._decode(frame, points, rule, True, timings, out=out)
        yield out

    def _decode(self, frame: FrameEmbedding, points: np.ndarray, rule: _Filter, multimask: bool,
                timings: dict[str, float], *, out: _Decoded, point_ids: np.ndarray | None = None,
                shared: object = None) -> object:
        """MaskProposer._decode's contract: add each point's masks (part, object, group) to `out`."""
        levels = self._levels[self._frames[frame.features]]
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        ids = np.arange(len(points)) if point_ids is None else np.asarray(point_ids)
        chosen: list[int] = []
        prompts: list[int] = []
        tokens: list[int] = []  # each mask's level at its point: 0 the finest, as MaskProposer's mask tokens
        for (x, y), prompt in zip(points, ids, strict=True):
            at = levels.at(x, y)
            at = at if multimask else at[1:2]
            chosen.extend(at)
            prompts.extend([int(prompt)] * len(at))
            tokens.extend(range(len(at)))
        timings["decoder"] = timings["upscale"] = 0.0
        out.prompts_decoded += len(points)
        if chosen:
            masks = torch.from_numpy(np.stack([levels.masks[i] for i in chosen]))
            ones = torch.ones(len(chosen))
            out.boxes.append(batched_mask_to_box(masks))
            out.iou.append(ones)
            out.stability.append(ones.clone())
            out.packed.append(np.packbits(masks.flatten(1).numpy(), axis=1))
            out.prompts.append(np.array(prompts))
            out.levels.append(np.array(tokens))
        return shared
