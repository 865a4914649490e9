"""Run a Locator over a dataset: each frame is embedded once and reused by all its commands in all modes. Where the
dataset has depth, each found answer's mask also goes through depth.target_from_depth, and the 3D side is judged."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from promptbox.camera import Intrinsics
from promptbox.config import MODES
from promptbox.depth import NoPose, Target3D, target_from_depth
from promptbox.detection import Detection, NotFound
from promptbox.evaluation.dataset import Box, Dataset, Query
from promptbox.evaluation.metrics import Outcome, PoseJudgement, centroid_error, judge, mask_iou

Progress = Callable[[int, int, str], None]  # (frames done, frames in all, image name)


class EvalLocator(Protocol):
    """What the runner needs of a Locator; tests pass an oracle with the same methods. `with_mode` is optional:
    without it the same object answers for every mode."""

    random_weights: bool

    def describe(self) -> str: ...

    def prepare(self, image_rgb: np.ndarray) -> Any: ...

    def locate(self, image_rgb: np.ndarray, command: str, *, min_score: float | None = None,
               frame: Any = None) -> Detection | NotFound: ...


@dataclass(frozen=True)
class QueryResult:
    """One query answered in one mode: the answer as plain data and its judgement."""

    query: Query
    mode: str
    answer: Box | None  # None: not found
    score: float  # the answer's score, or the best candidate's when not found (0 when there was none)
    outcome: Outcome
    timings_ms: dict[str, float] = field(default_factory=dict)
    target_3d: Target3D | NoPose | None = None  # None: no depth for the query, or no box answered


@dataclass(frozen=True)
class EvalRun:
    dataset: Dataset
    modes: tuple[str, ...]
    results: tuple[QueryResult, ...]
    frame_embedding_ms: tuple[float, ...]  # one per frame: the `prepare` call shared by every mode
    describe: str
    random_weights: bool
    weights_tag: str = ""

    @property
    def frames(self) -> int:
        return len(self.dataset.frames())


def check_modes(modes: Sequence[str]) -> tuple[str, ...]:
    """Modes without repeats, each one of config.MODES; a ValueError otherwise."""
    if not modes:
        raise ValueError(f"modes: none given; accepted: a comma-separated list of {', '.join(MODES)}")
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not supported; accepted: {', '.join(MODES)}")
    return tuple(dict.fromkeys(modes))


def run_eval(
    locator: EvalLocator,
    dataset: Dataset,
    modes: Sequence[str] = ("exact",),
    *,
    min_score: float | None = None,
    on_frame: Progress | None = None,
) -> EvalRun:
    """Answer every query of `dataset` in every mode and judge the answers."""
    modes = check_modes(modes)
    with_mode = getattr(locator, "with_mode", None)
    # One load of the models for every mode: the views share the proposer, matcher and caches.
    per_mode = {mode: with_mode(mode) if with_mode is not None else locator for mode in modes}
    needs_frame = any(mode != "upstream" for mode in modes)  # upstream runs its own AMG on the raw image

    results: list[QueryResult] = []
    embedding_ms: list[float] = []
    frames = dataset.frames()
    for done, (name, queries) in enumerate(frames.items(), start=1):
        image = dataset.load_image(name)
        truth_masks = [dataset.load_mask(query, image.shape[:2]) for query in queries]
        depths = [_depth(dataset, query, image.shape[:2]) for query in queries]
        frame = None
        if needs_frame:
            started = time.perf_counter()
            frame = locator.prepare(image)
            embedding_ms.append((time.perf_counter() - started) * 1000.0)
        for mode in modes:
            mode_locator = per_mode[mode]
            for query, truth_mask, depth in zip(queries, truth_masks, depths, strict=True):
                result = mode_locator.locate(
                    image, query.command, min_score=min_score, frame=None if mode == "upstream" else frame
                )
                results.append(_judged(query, mode, result, truth_mask, depth))
        if on_frame is not None:
            on_frame(done, len(frames), name)
    return EvalRun(
        dataset=dataset,
        modes=modes,
        results=tuple(results),
        frame_embedding_ms=tuple(embedding_ms),
        describe=locator.describe(),
        random_weights=bool(getattr(locator, "random_weights", False)),
        weights_tag=str(getattr(locator, "weights_tag", "") or ""),
    )


Depth = tuple[np.ndarray, str, Intrinsics]  # the depth image, its encoding, the camera


def _depth(dataset: Dataset, query: Query, shape: tuple[int, int]) -> Depth | None:
    loaded = dataset.load_depth(query, shape)
    intrinsics = dataset.load_intrinsics(query)
    if loaded is None or intrinsics is None:
        return None
    return loaded[0], loaded[1], intrinsics


def _judged(query: Query, mode: str, result: Detection | NotFound, truth_mask: np.ndarray | None,
            depth: Depth | None = None) -> QueryResult:
    target: Target3D | NoPose | None = None
    pose = None
    if isinstance(result, Detection):
        answer: Box | None = tuple(float(v) for v in result.box_xyxy)
        score = float(result.score)
        overlap = None
        if truth_mask is not None and result.mask is not None and not query.absent:
            overlap = mask_iou(np.asarray(result.mask, bool), truth_mask)
        if depth is not None and not query.absent:
            target, pose = _pose(query, answer, result.mask, depth)
    else:
        answer, overlap = None, None
        score = float(result.best.score) if result.best is not None else 0.0
    outcome = judge(query.boxes, answer, query.objects, overlap, pose)
    return QueryResult(query, mode, answer, score, outcome, dict(result.timings_ms), target)


def _pose(query: Query, answer: Box, mask: np.ndarray | None, depth: Depth
          ) -> tuple[Target3D | NoPose, PoseJudgement]:
    if mask is None:
        return NoPose("the answer has no mask"), PoseJudgement(False)
    target = target_from_depth(np.asarray(mask, bool), *depth)
    if not isinstance(target, Target3D) or not query.centroids_3d:
        return target, PoseJudgement(target.has_pose)
    # judge() drops the error again when the answer is not correct: only the right object's 3D error is meaningful.
    return target, PoseJudgement(True, centroid_error(answer, target.centroid_m, query.boxes, query.centroids_3d))
