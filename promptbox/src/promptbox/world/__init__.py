"""A synthetic tabletop world: scenes with exact masks, boxes and parts, and commands with their truth.

It measures the pipeline's logic (proposals, choosing the named object, refusals, parts, spatial words, relations),
not real-world accuracy. Pure numpy and OpenCV: no torch, so a data loader or a CI job can use it cheaply.
"""

from __future__ import annotations

from promptbox.world.catalogue import CLASSES, COLOURS, UNSEEN_PAIRS, ObjectClass
from promptbox.world.commands import TAGS, WorldQuery, queries_for
from promptbox.world.generate import write_dataset
from promptbox.world.scene import Scene, WorldObject, WorldPart, generate_scene

__all__ = [
    "CLASSES", "COLOURS", "UNSEEN_PAIRS", "ObjectClass",
    "Scene", "WorldObject", "WorldPart", "generate_scene",
    "TAGS", "WorldQuery", "queries_for", "write_dataset",
]
