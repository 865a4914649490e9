"""Locator: image + command -> Detection | NotFound. It composes the stages and owns the caches."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import partial

import numpy as np
import torch

from promptbox import (
    attributes,
    colour_blind,
    part_prompts,
    provenance,
    relations,
    vocabulary,
    weight_locations,
    weights,
)
from promptbox.command import Target, parse
from promptbox.config import LocatorConfig
from promptbox.detection import Detection, NotFound
from promptbox.grid_stages import GridStages
from promptbox.image import check_image
from promptbox.map_peaks import peak_cells, peak_points
from promptbox.masks import BoxMasks
from promptbox.matching import Matcher, PatchTokens
from promptbox.proposals import FrameEmbedding, MaskProposer, Proposals
from promptbox.regions import Regions
from promptbox.selection import BACKGROUND_PHRASES, PhraseScores, calibrate, select
from promptbox.shortlist import pooled_embeddings, shortlist
from promptbox.window_map import WindowEmbeddings, window_grid, window_heat

StageCallback = Callable[[str, float], None]

# Where each stage starts on a 0..1 progress scale, for feedback to a waiting planner.
STAGE_PROGRESS = {"embedding": 0.0, "proposing": 0.3, "matching": 0.7, "selecting": 0.9}
_FRAME_CACHE_SIZE = 2  # the newest frame and the one a running goal holds
_COMPETITORS_CACHE_SIZE = 256  # phrases; a list of at most a few hundred indices each


class Locator:
    """Loads the models once; `locate` runs one command on one frame, `prepare` embeds a frame ahead of time."""

    def __init__(self, config: LocatorConfig | None = None, *, proposer: MaskProposer | None = None) -> None:
        """Loads the models of `config`. `proposer` replaces MobileSAM (then not loaded): the evaluation harness
        passes a stand-in that answers from a synthetic scene's exact masks; it carries its own `tag`."""
        self.config = config or LocatorConfig()
        started = time.perf_counter()
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        allow_random = self.config.allow_random_weights
        kinds: set[str | None] = set()
        sam_random = False
        if proposer is None:  # MobileSAM first: a missing mobile_sam.pt is the commonest first-run problem
            sam, sam_random = weights.load_sam(self.config.sam_checkpoint, self.config.device, allow_random)
            kinds.add(weights.sam_kind(self.config.sam_checkpoint) if not sam_random else provenance.RANDOM)
        clip, tokenizer, clip_random = weights.load_clip(self.config.clip_model, self.config.device, allow_random)
        kinds.add(weights.clip_kind(self.config.clip_model) if not clip_random else provenance.RANDOM)
        if proposer is None:
            amg = self.config.amg
            proposer = MaskProposer(
                sam,
                amg,
                self.config.device,
                self.config.encoder_backend,
                # Fast mode's quality floor is never stricter than the AMG thresholds the user set.
                point_iou_floor=min(0.5, amg.pred_iou_thresh),
                point_stability_floor=min(0.5, amg.stability_score_thresh),
            )
        self.proposer = proposer
        self.random_weights = sam_random or clip_random
        # Leads every answer made with anything but released weights: "[RANDOM WEIGHTS]", "[SYNTHETIC-WORLD ...]".
        self.weights_tag = " ".join(t for t in (provenance.tag(kinds), getattr(proposer, "tag", "")) if t)
        self.matcher = Matcher(clip, tokenizer, self.config.device, backend=self.config.encoder_backend)
        self._background = self.matcher.encode_texts(BACKGROUND_PHRASES)
        # Competing object names, encoded once per model and kept on disk beside the weights cache.
        self._names = vocabulary.OBJECT_NAMES
        text_cache = weight_locations.weights_dir() / "text-cache"
        self._name_vectors = self.matcher.encode_texts_stored(self._names, text_cache)
        self._name_vectors_np = self._name_vectors.float().cpu().numpy()  # for competitors(), once, not per goal
        # A phrase's competing names depend on the phrase and the model alone: found once, for its later goals.
        self._competitors: OrderedDict[str, list[int]] = OrderedDict()
        self._frames: OrderedDict[str, FrameEmbedding] = OrderedDict()
        # One inference at a time: a background `prepare` and a goal would only fight over the same cores.
        self._lock = threading.RLock()
        self.load_seconds = time.perf_counter() - started

    def describe(self) -> str:
        """One line for logs: models, mode, device, load time, and whether the weights are random."""
        masks = getattr(self.proposer, "tag", "") or "MobileSAM vit_t"
        line = (
            f"{masks} + CLIP {self.config.clip_model}, mode {self.config.mode}"
            f"{f' ({self.config.resolved_fast_map} map)' if self.config.mode == 'fast' else ''}, "
            f"device {self.config.device}, loaded in {self.load_seconds:.1f} s"
        )
        if self.random_weights:
            return f"{line} [RANDOM WEIGHTS: results are meaningless]"
        if self.weights_tag:  # synthetic-world weights, or the world's oracle masks
            return f"{line} {self.weights_tag}: not the released models; says nothing of real frames"
        return line

    def with_mode(self, mode: str) -> Locator:
        """A Locator in another proposal mode that shares these loaded models, frame cache and lock (one load serves
        every mode an evaluation compares). The mode is checked by LocatorConfig."""
        twin = Locator.__new__(Locator)
        twin.__dict__.update(self.__dict__)
        twin.config = self.config.with_overrides(mode=mode)
        return twin

    def warm_up(self, frame_size: tuple[int, int] = (480, 640)) -> None:
        """Run every stage the configured mode uses once on a blank frame of `frame_size` (H, W), so the first goal
        doesn't pay for lazy initialisation: the encoder, the decoder and CLIP's image tower (on a GPU, their CUDA
        graphs), the text tower, the CLIP patch pass (fast mode's token map and the matching shortlist), the windows
        (its window map) and a crop. The encoder's grid follows the frame's shape (encoder_grid), and the ONNX
        backends export one graph per grid: the default is the common 4:3 camera."""
        height, width = frame_size
        frame = np.zeros((height, width, 3), np.uint8)
        with self._lock:
            embedding = self.proposer.embed(frame)
            self.proposer.propose_points(embedding, np.array([[width / 2, height / 2]]))
            self.proposer.warm_up_decoder(embedding)  # on a GPU, the decoder's CUDA graphs
            self.matcher.warm_up_image_graphs()  # and the image tower's
            text = self.matcher.encode_text("warm-up object")
            if self._uses_patch_tokens():
                self.matcher.similarity_map(frame, text, scenery=self._background)
            if self._uses_windows():
                self._windows(frame, None)
            self.matcher.encode_regions(frame, np.array([[0.0, 0.0, 63.0, 63.0]]), None)  # one crop's worth

    def prepare(self, image_rgb: np.ndarray) -> FrameEmbedding:
        """The image embedding of a frame (and the CLIP patch tokens and windows the mode uses), computed once per
        frame content and reused by later calls."""
        image = check_image(image_rgb)
        key = _frame_key(image)
        with self._lock:
            cached = self._frames.get(key)
            if cached is not None:
                self._frames.move_to_end(key)
                return cached
            embedding = self.proposer.embed(image)
            if self._uses_patch_tokens():
                # CLIP's share of the frame, so a prepared frame starts at the proposals in both modes.
                with _timed(embedding.timings_ms, "patch_tokens"):
                    embedding.patch_tokens = self.matcher.patch_tokens(image)
            if self._uses_windows():
                with _timed(embedding.timings_ms, "windows"):
                    self._windows(image, embedding)
            self._frames[key] = embedding
            while len(self._frames) > _FRAME_CACHE_SIZE:
                _release(self._frames.popitem(last=False)[1])
            return embedding

    def forget_frames(self) -> None:
        """Drop cached frame embeddings, so the next call embeds again (the bench times cold frames this way)."""
        with self._lock:
            for frame in self._frames.values():
                _release(frame)
            self._frames.clear()

    def locate(
        self,
        image_rgb: np.ndarray,
        command: str,
        *,
        min_score: float | None = None,
        frame: FrameEmbedding | None = None,
        on_stage: StageCallback | None = None,
    ) -> Detection | NotFound:
        """Find what `command` names in the RGB frame. `on_stage` may raise to abort between stages."""
        image = check_image(image_rgb)
        target = parse(command)
        threshold = self.config.min_score if min_score is None else _check_min_score(min_score)
        if frame is not None and tuple(frame.original_size) != image.shape[:2]:
            raise ValueError(
                f"frame: the prepared embedding is for a {frame.original_size} image, not {image.shape[:2]}; "
                "prepare the same frame you locate in"
            )
        timings: dict[str, float] = {}
        stage = on_stage or (lambda name, progress: None)

        with self._lock:
            with _timed(timings, "text"):
                text = self.matcher.encode_text(target.phrase)

            stage("embedding", STAGE_PROGRESS["embedding"])
            with _timed(timings, "embedding"):
                if frame is None and self.config.mode != "upstream":
                    frame = self.prepare(image)

            stage("proposing", STAGE_PROGRESS["proposing"])
            with _timed(timings, "proposing"):
                proposals = self._propose(image, frame, text, target)
            result, proposals = self._answer(image, frame, proposals, target, threshold, timings, stage)
            if (self.config.mode == "fast" and self.config.fast_fallback and isinstance(result, NotFound)
                    and not _compares(target)):  # that one had exact mode's masks already
                assert frame is not None
                result, exact = self._fall_back(image, frame, target, threshold, timings, stage)
                proposals = replace(proposals, timings_ms={
                    **proposals.timings_ms, **{f"fallback.{k}": v for k, v in exact.timings_ms.items()}})

        # What parsing set aside or corrected ("'scisors' read as 'scissors'") travels with the answer.
        parsed_notes = list(target.notes)
        if parsed_notes and isinstance(result, Detection):
            result.notes = parsed_notes + result.notes
        elif parsed_notes:
            result.reason = "; ".join([result.reason, *parsed_notes])
        timings["total"] = sum(timings.values())
        result.timings_ms = {**{f"proposals.{k}": v for k, v in proposals.timings_ms.items()}, **timings}
        result.random_weights = self.random_weights
        result.weights_tag = self.weights_tag
        return result

    def _fall_back(
        self, image: np.ndarray, frame: FrameEmbedding, target: Target, threshold: float, timings: dict[str, float],
        stage: StageCallback,
    ) -> tuple[Detection | NotFound, Proposals]:
        """Fast mode's prompts found nothing that passes: exact mode's grid on the same frame, stage by stage coarse
        to fine (MaskProposer.grid_stages), until a stage's masks give an answer. The last stage's masks are
        exact mode's, so a "not found" and a target only the finest points find get exact mode's answer. The
        decoded stages are kept for the frame's later goals (GridStages). Stages are named fallback_*, and progress
        does not go back (feedback consumers read it as rising). Commands that compare instances never come here
        (_compares)."""
        def fallback_stage(name: str, progress: float) -> None:
            stage(f"fallback_{name}", STAGE_PROGRESS["selecting"])

        spent: dict[str, float] = {}

        def add(name: str, ms: float) -> None:
            spent[name] = spent.get(name, 0.0) + ms

        stages = iter(self._grid_stages(frame))
        started = time.perf_counter()
        fallback_stage("proposing", 0.0)
        for exact in stages:  # each step decodes the next stage, unless a goal did before
            add("proposing", (time.perf_counter() - started) * 1000.0)
            stage_timings: dict[str, float] = {}
            result, matched = self._answer(image, frame, exact, target, threshold, stage_timings, fallback_stage)
            for name, ms in stage_timings.items():
                add(name, ms)
            if isinstance(result, Detection):
                break
            started = time.perf_counter()
            fallback_stage("proposing", 0.0)
        else:
            add("proposing", (time.perf_counter() - started) * 1000.0)  # the finest stage's empty check
        timings.update({f"fallback {k}": v for k, v in spent.items()})
        return result, matched

    def _answer(
        self,
        image: np.ndarray,
        frame: FrameEmbedding | None,
        proposals: Proposals,
        target: Target,
        threshold: float,
        timings: dict[str, float],
        stage: StageCallback,
        *,
        part_pass: bool = False,
    ) -> tuple[Detection | NotFound, Proposals]:
        """Match `proposals` to the command and choose among them: (the answer, the proposals that were matched).
        For a part request whose whole is confidently named, points on the whole are decoded and the masks inside
        it join the candidates (part_prompts); `part_pass` is that second pass (every region cropped)."""
        stage("matching", STAGE_PROGRESS["matching"])
        with _timed(timings, "matching"):
            part = vocabulary.part_request(target.phrase)
            anchor_phrase = target.anchor if target.relation in relations.RESOLVED and target.anchor else None
            phrases = [target.phrase, *([part[1]] if part is not None else []), *filter(None, [anchor_phrase])]
            if not part_pass:
                proposals = self._shortlisted(image, frame, proposals, phrases)
            regions = self.matcher.encode_regions(image, proposals.boxes_xyxy, proposals.masks)
            blind = colour_blind.ColourBlindRegions(self.matcher, image, proposals.boxes_xyxy, proposals.masks,
                                                    regions)
            # "the screwdriver, not the scissors": the excluded object competes with the target.
            scores = self._score(regions, target.phrase, target.negatives, blind)
            whole = self._score(regions, part[1], blind=blind) if part is not None else None
            anchor = self._score(regions, anchor_phrase, blind=blind) if anchor_phrase else None

        stage("selecting", STAGE_PROGRESS["selecting"])
        with _timed(timings, "selecting"):
            # Proposals keep upstream's inclusive max; answers are in pixel edges, so a full-width box is W wide.
            edges = proposals.boxes_xyxy + np.array([0, 0, 1, 1], np.float32)
            result = select(
                proposals.masks,
                edges,
                scores.similarity,
                scores.confidence,
                target,
                min_score=threshold,
                part_margin=self.config.part_margin,
                top_k=self.config.top_k,
                is_target=scores.top1,
                rival=scores.rival,
                anchor=anchor,
                whole=whole,
                is_group=partial(self._adds_another_object, image, proposals, target.phrase, threshold),
            )
        if part is not None and whole is not None and frame is not None and not part_pass:
            with _timed(timings, "part prompts"):
                extra = self._part_candidates(frame, proposals, whole, part, threshold)
            if extra is not None:
                first = {name: timings[name] for name in ("matching", "selecting")}

                def part_stage(name: str, progress: float) -> None:  # progress does not go back
                    stage(f"part_{name}", STAGE_PROGRESS["selecting"])

                result, proposals = self._answer(image, frame, proposals.plus(extra), target, threshold, timings,
                                                 part_stage, part_pass=True)
                for name, ms in first.items():
                    timings[name] += ms
        return result, proposals

    def _part_candidates(
        self, frame: FrameEmbedding, proposals: Proposals, whole: PhraseScores, part: tuple[str, str],
        threshold: float,
    ) -> Proposals | None:
        """The masks inside the most confident whole that points spread over it give (part_prompts), or None: no
        whole passes `threshold`, the part is the whole's body (the whole answers it), or nothing new is inside."""
        best = int(np.argmax(whole.confidence))
        if whole.confidence[best] < threshold or part[0].split()[-1] in vocabulary.BODY_PARTS:
            return None
        points = part_prompts.spread_points(proposals.masks, best)
        found = self.proposer.propose_points(frame, points)
        if len(found) == 0:
            return None
        regions = Regions(BoxMasks.concatenate([proposals.masks[[best]], found.masks]))
        inside = [i - 1 for i in range(1, len(found) + 1) if regions.containers(i, among=[0])]
        return found.subset(np.array(inside, np.int64)) if inside else None

    def _adds_another_object(self, image: np.ndarray, proposals: Proposals, phrase: str, threshold: float,
                             container: int, inner: int) -> bool:
        """Whether what region `container` adds to region `inner` reads as another object: its masked crop's top
        label, against `phrase`, the phrase's competing names and scenery, is a competing name with a share of at
        least `threshold`. Then `container` is `inner` and its neighbours (selection's is_group), not its whole; what
        a whole adds to its part reads as the phrase itself or as nothing in particular."""
        masks = proposals.masks
        left, top, right, bottom = (int(v) for v in masks.boxes[container])  # it holds all the container adds
        rest = (masks.window(container, top, bottom, left, right)
                & ~masks.window(inner, top, bottom, left, right))
        if not rest.any():
            return False
        added = BoxMasks.from_windows([(rest, top, left)], masks.frame_size)
        region = self.matcher.encode_regions(image, added.inclusive_boxes().astype(np.float32), added)
        vector, names = self._competing(phrase)
        labels = torch.cat([vector[None], self._name_vectors[names], self._background]).to(region)
        share = torch.softmax(self.matcher.logit_scale * (region @ labels.T)[0].float(), dim=0)
        label = int(share.argmax())  # 0 the phrase, then its competing names, then scenery
        return 1 <= label <= len(names) and float(share[label]) >= threshold

    def _competing(self, phrase: str) -> tuple[torch.Tensor, list[int]]:
        """The phrase's text vector and the indices of the vocabulary names that compete with it."""
        vector = self.matcher.encode_text(phrase).vector
        names = self._competitors.get(phrase)
        if names is None:
            names = vocabulary.competitors(phrase, vector.cpu().numpy(), self._names, self._name_vectors_np)
            self._competitors[phrase] = names
            while len(self._competitors) > _COMPETITORS_CACHE_SIZE:
                self._competitors.popitem(last=False)
        self._competitors.move_to_end(phrase)
        return vector, names

    def _score(self, regions: torch.Tensor, phrase: str, negatives: tuple[str, ...] = (),
               blind: colour_blind.ColourBlindRegions | None = None) -> PhraseScores:
        """`phrase` scored on every region. A colour phrase ("green mug") is the thing ("mug") against its competitors
        times the colour against the thing's other colours ("white mug"; attributes.py says why). With `blind` (the
        regions are masked crops), the class is also asked colour-blind, and each region keeps its more confident
        reading (colour_blind.py): a colour phrase's thing averaged over three hues, on the regions whose colour the
        colour question names; a phrase without a colour in each turned hue, on coloured regions where the plain
        reading ranks it among colour_blind.RANKED best names."""
        colour = attributes.colour_phrase(phrase)
        if colour is None or colour.thing == attributes.GENERIC_THING:
            # No colour, nothing but one ("red"), or no class ("the red one" is "red object": "object" against the
            # names would refuse everything): one question, the phrase against names, its other colours, scenery.
            rivals = (*vocabulary.colour_variants(phrase), *negatives)
            plain = self._score_names(regions, phrase, rivals)
            if blind is None or colour is not None:  # a colour alone is not a class to ask colour-blind
                return plain
            rows = blind.chromatic(np.flatnonzero(plain.rank < colour_blind.RANKED))
            if not rows.size:
                return plain
            turned = [self._score_names(view.to(regions), phrase, rivals) for view in blind.turned(rows)]
            return colour_blind.either(plain, colour_blind.in_each_hue(turned), rows)
        colour_rivals, thing_rivals = attributes.split_negatives(colour, negatives)
        thing = self._score_names(regions, colour.thing, thing_rivals)
        rivals, similarity = self._colour_similarity(regions, colour, colour_rivals)
        if blind is not None:
            # Only where the colour is right: elsewhere the colour question refuses whatever the class reads as.
            rows = np.flatnonzero(attributes.colour_wins(similarity[:, 0], similarity[:, 1:]))
            if rows.size:
                turned = self._score_names(blind.embeddings(rows).to(regions), colour.thing, thing_rivals)
                thing = colour_blind.either(thing, turned, rows)
        return attributes.with_colour(thing, colour, similarity[:, 0], similarity[:, 1:], rivals,
                                      self.matcher.logit_scale)

    def _colour_similarity(self, regions: torch.Tensor, colour: attributes.ColourPhrase,
                           colour_rivals: tuple[str, ...] = ()) -> tuple[tuple[str, ...], np.ndarray]:
        """The colour question's rivals (the phrase in the thing's other colours, and excluded ones) and the raw
        cosines of every region with the phrase (column 0) and with each rival."""
        rivals = tuple(dict.fromkeys([*colour.variants, *colour_rivals]))
        texts = self.matcher.encode_texts([colour.phrase, *rivals]).to(regions)
        return rivals, (regions @ texts.T).float().cpu().numpy()

    def _score_names(self, regions: torch.Tensor, phrase: str, negatives: tuple[str, ...] = ()) -> PhraseScores:
        """`phrase` scored on every region against its competitors: other object names (not its own head noun or
        near-synonyms), `negatives` (excluded objects, other colours), scenery."""
        vector, competing = self._competing(phrase)
        rivals = [self._name_vectors[competing], self._background]
        if negatives:
            rivals.append(self.matcher.encode_texts(list(negatives)))
        rivals_t = torch.cat([r.to(regions) for r in rivals])
        similarity = (regions @ vector.to(regions)).float().cpu().numpy()
        rival_sim = (regions @ rivals_t.T).float().cpu().numpy()
        # The model's own temperature: the one its contrastive training calibrated its logits with.
        confidence = calibrate(similarity, rival_sim, logit_scale=self.matcher.logit_scale)
        rank = (rival_sim > similarity[:, None]).sum(axis=1)  # how many names beat the phrase (none: no rivals)
        top1 = rank == 0
        # What each region reads as, for a not-found answer's reason ("it reads as 'apple'").
        rival_names = [*(self._names[i] for i in competing), *BACKGROUND_PHRASES, *negatives]
        rival = tuple(rival_names[j] for j in rival_sim.argmax(axis=1)) if rival_sim.size else ()
        return PhraseScores(phrase, similarity, confidence, top1, rival, rank)

    def _tokens(self, image: np.ndarray, frame: FrameEmbedding | None) -> PatchTokens:
        """The frame's CLIP patch tokens, computed once per prepared frame."""
        if frame is None:
            return self.matcher.patch_tokens(image)
        if frame.patch_tokens is None:
            frame.patch_tokens = self.matcher.patch_tokens(image)
        return frame.patch_tokens

    def _shortlisted(
        self, image: np.ndarray, frame: FrameEmbedding | None, proposals: Proposals, phrases: list[str]
    ) -> Proposals:
        """The proposals worth a crop each (config.matching "shortlist"), or all of them ("crops", or few)."""
        size = self.config.shortlist_size
        if self.config.matching == "crops" or len(proposals) <= size:
            return proposals
        pooled = pooled_embeddings(self._tokens(image, frame), proposals.masks)
        # Ranked by the score that gates the answer (against competing names), not raw cosine, which favours
        # large regions of anything.
        ranking = [self._score(pooled, phrase).confidence for phrase in phrases]
        for colour in filter(None, map(attributes.colour_phrase, phrases)):
            if colour.thing != attributes.GENERIC_THING:
                # Pooled tokens read the class with the colour; its colour-blind reading needs a crop, so the
                # regions that best have the colour get crops too, whatever class they read as here.
                _, similarity = self._colour_similarity(pooled, colour)
                ranking.append(calibrate(similarity[:, 0], similarity[:, 1:], self.matcher.logit_scale))
        keep = shortlist(ranking, size, Regions(proposals.masks).containers)
        return proposals.subset(keep)

    def _grid_stages(self, frame: FrameEmbedding) -> GridStages:
        """Exact mode's masks of a frame, stage by stage, decoded once per frame and settings."""
        settings = self.proposer.settings
        if settings not in frame.exact_proposals:
            frame.exact_proposals[settings] = GridStages(self.proposer.grid_stages(frame))
        return frame.exact_proposals[settings]

    def _exact_proposals(self, frame: FrameEmbedding) -> Proposals:
        """Exact mode's masks of a frame: the grid's last stage (timings {"cached": 0.0} when a goal post-processed
        it before)."""
        return self._grid_stages(frame).final()

    def _propose(self, image: np.ndarray, frame: FrameEmbedding | None, text, target: Target) -> Proposals:
        mode = self.config.mode
        if mode == "upstream":
            return self.proposer.propose_upstream(image)
        assert frame is not None
        if mode == "exact":
            return self._exact_proposals(frame)
        if _compares_instances(target):
            # Every instance for the comparison, and what the phrase's own prompts find: the map looks for the
            # phrase where the grid looks everywhere, and the grid can miss an instance the map's peak lands on.
            return _with_new(self._exact_proposals(frame), self._map_proposals(image, frame, text),
                             self.config.amg.box_nms_thresh)
        if _compares(target):
            return self._exact_proposals(frame)
        return self._map_proposals(image, frame, text)

    def _map_proposals(self, image: np.ndarray, frame: FrameEmbedding, text) -> Proposals:
        """Fast mode's prompts: only where CLIP sees the phrase more than it sees scenery, not over a whole grid.
        Raw cosine peaks on the table as often as on the object (CLIP puts every patch near every phrase)."""
        maps, k = self.config.fast_maps, self.config.fast_points
        points = []
        if "tokens" in maps:
            heat = self.matcher.similarity_map(image, text, self._tokens(image, frame), scenery=self._background)
            points.append(peak_points(heat, image.shape[:2], k))
        if "windows" in maps:
            windows = self._windows(image, frame)
            points.append(windows.grid.points(peak_cells(window_heat(windows, text.vector, self._background), k)))
        return self.proposer.propose_points(frame, np.concatenate(points))

    def _uses_patch_tokens(self) -> bool:
        """Fast mode's token map and the matching shortlist read the frame's CLIP patch tokens."""
        token_map = self.config.mode == "fast" and "tokens" in self.config.fast_maps
        return token_map or self.config.matching == "shortlist"

    def _uses_windows(self) -> bool:
        """Fast mode's window map reads the frame's CLIP windows."""
        return self.config.mode == "fast" and "windows" in self.config.fast_maps

    def _windows(self, image: np.ndarray, frame: FrameEmbedding | None) -> WindowEmbeddings:
        """The frame's CLIP window embeddings (window_map), computed once per prepared frame."""
        if frame is not None and frame.windows is not None:
            return frame.windows
        grid = window_grid(image.shape[:2], self.config.map_window, self.matcher.context_pad)
        windows = WindowEmbeddings(grid, self.matcher.encode_regions(image, grid.boxes))
        if frame is not None:
            frame.windows = windows
        return windows


def _compares(target: Target) -> bool:
    """A qualifier or a relation compares the target's instances ("the bottle on the left", "the cup next to the
    laptop"), and a part request compares the regions inside its whole ("the cap of the marker"): fast mode's few
    prompts, or an early grid stage, may hold only some of them (one of two bottles; the marker's neighbours with
    it, or no marker at all) and so answer with the wrong one. Such a command gets exact mode's complete mask set in
    either mode; in fast mode a spatial word or a relation adds its map prompts' masks that repeat none of them
    (_propose)."""
    return _compares_instances(target) or vocabulary.part_request(target.phrase) is not None


def _compares_instances(target: Target) -> bool:
    """A spatial word or a relation: the command ranks the target's instances against each other."""
    return target.spatial is not None or target.relation is not None


def _with_new(proposals: Proposals, extra: Proposals, duplicate_iou: float) -> Proposals:
    """`proposals` followed by the masks of `extra` that repeat none of them (mask IoU at most `duplicate_iou`, the
    bound NMS applies to boxes): a duplicate would count as a second instance in a comparison. Timings: both."""
    new = [j for j in range(len(extra))
           if len(proposals) == 0 or extra.masks.iou(j, other=proposals.masks).max() <= duplicate_iou]
    merged = proposals.plus(extra.subset(np.array(new, np.int64)))
    merged.timings_ms = {**proposals.timings_ms, **{f"prompts {k}": v for k, v in extra.timings_ms.items()}}
    return merged


def _release(frame: FrameEmbedding) -> None:
    """A frame leaves the cache: its partly decoded grid stages hold it in a cycle (GridStages.close); they go, so
    the frame's memory is freed now, and a caller still holding the frame decodes its grid afresh."""
    for stages in frame.exact_proposals.values():
        stages.close()
    frame.exact_proposals.clear()


def _check_min_score(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"min_score={value!r} is out of range; accepted: 0.0 to 1.0")
    return float(value)


def _frame_key(image: np.ndarray) -> str:
    # Content, not identity: ROS hands us a new array for every message, even of the same frame.
    digest = hashlib.blake2b(image.data, digest_size=16)
    digest.update(repr(image.shape).encode())
    return digest.hexdigest()


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = (time.perf_counter() - started) * 1000.0
