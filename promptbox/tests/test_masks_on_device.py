"""On a GPU, decoded masks stay there at full size and are filtered and post-processed there (MaskProposer.
masks_on_device: the grid's cover, NMS's restored wholes): the same proposals as the host's path, which filters
before upscaling and keeps masks bit-packed. Run on the CPU, both paths must agree exactly; on a GPU, the GPU's
masks post-processed both ways must."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from promptbox.config import AmgSettings
from promptbox.proposals import MaskProposer, _cover_finest, _Decoded, packbits_rows

WORLD_SAM = Path(__file__).resolve().parents[2] / "weights" / "world" / "mobile_sam.pt"

NO_CUDA = "the GPU's masks need a CUDA device; this machine has none (run it on the device)"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)
SCENES = (4, 6, 7)  # world scenes where NMS removes a whole that comes back (on CPU)


@pytest.fixture(scope="module")
def proposer():
    if not torch.cuda.is_available():
        pytest.skip(NO_CUDA)
    from promptbox import weights

    sam, random = weights.load_sam(str(WORLD_SAM), "cuda", False)
    assert not random
    return MaskProposer(sam, AmgSettings(), "cuda")


@pytest.fixture(scope="module")
def cpu_frames():
    from promptbox import weights
    from promptbox.world.scene import generate_scene

    sam, random = weights.load_sam(str(WORLD_SAM), "cpu", False)
    assert not random
    host = MaskProposer(sam, AmgSettings(), "cpu")
    return host, [host.embed(generate_scene(20261124, scene).image) for scene in SCENES]


def _both_ways(host: MaskProposer, propose):
    """propose(host) with masks on the host, and with the device path run on the CPU."""
    assert not host.masks_on_device
    on_host = propose(host)
    host.masks_on_device = True
    try:
        return on_host, propose(host)
    finally:
        host.masks_on_device = False


def _assert_same(a, b) -> None:
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.boxes_xyxy, b.boxes_xyxy)
    np.testing.assert_array_equal(a.predicted_iou, b.predicted_iou)
    np.testing.assert_array_equal(a.stability, b.stability)
    np.testing.assert_array_equal(a.masks.to_dense(), b.masks.to_dense())


def test_the_device_path_gives_the_hosts_grid_proposals(cpu_frames):
    host, frames = cpu_frames
    restored = 0
    for frame in frames:
        on_host, on_device = _both_ways(host, lambda p, f=frame: p.propose(f))
        assert len(on_host) >= 3  # real masks of world objects
        _assert_same(on_host, on_device)
        host.keep_nested_wholes = False
        try:
            restored += len(on_host) - len(host.propose(frame))
        finally:
            host.keep_nested_wholes = True
    assert restored > 0  # the case occurs: NMS removed wholes that came back


@pytest.mark.parametrize("logits", [None, 5 * 640 * 480])  # 5: a batch's 12 masks upscaled 5 at a time
def test_the_device_path_gives_the_hosts_point_proposals(cpu_frames, monkeypatch, logits):
    if logits:
        monkeypatch.setattr("promptbox.proposals._DEVICE_LOGITS", logits)
    host, frames = cpu_frames
    points = np.array([[100.0, 100.0], [320.0, 240.0], [500.0, 400.0], [600.0, 50.0]])
    on_host, on_device = _both_ways(host, lambda p: p.propose_points(frames[0], points))
    assert len(on_host) >= 2
    _assert_same(on_host, on_device)


def test_the_device_path_computes_a_frames_decoder_side_once(cpu_frames, monkeypatch):
    """On a GPU a frame's decoder image side is computed when it is embedded and kept for its goals; the host path (a
    CPU) recomputes it per call, holding no 11 MB per cached frame. Either way the masks are the same."""
    from promptbox import proposals

    host, frames = cpu_frames
    frame = replace(frames[1], decoder_side=None)
    computed = []
    real = proposals.shared_image_side
    monkeypatch.setattr(proposals, "shared_image_side", lambda sam, features: computed.append(1) or real(sam, features))
    points = np.array([[100.0, 100.0], [320.0, 240.0], [500.0, 400.0]])
    on_host = [host.propose_points(frame, points) for _ in range(2)]
    assert len(computed) == 2 and frame.decoder_side is None
    host.masks_on_device = True
    try:
        on_device = [host.propose_points(frame, points) for _ in range(2)]
        assert len(computed) == 3 and frame.decoder_side is not None
        other = MaskProposer(copy.deepcopy(host.sam), AmgSettings(), "cpu")  # another model: not its side
        other.masks_on_device = True
        other.propose_points(frame, points)
        assert len(computed) == 4
        # A frame embedded on the device path has its side already: a goal on it computes none.
        from promptbox.world.scene import generate_scene

        embedded = host.embed(generate_scene(20261124, SCENES[1]).image)
        assert len(computed) == 5 and "decoder_side" in embedded.timings_ms
        on_device.append(host.propose_points(embedded, points))
        assert len(computed) == 5
    finally:
        host.masks_on_device = False
    assert len(on_host[0]) >= 2
    for got in (on_host[1], *on_device):
        _assert_same(on_host[0], got)


def _on_the_host(decoded: _Decoded) -> _Decoded:
    """The same masks, bit-packed on the host, as the CPU path keeps them."""
    packed = _Decoded(**{**decoded.__dict__, "dense": []})
    packed.packed = [packbits_rows(masks.flatten(1)) for masks in decoded.dense]
    return packed


@needs_cuda
def test_the_gpus_masks_post_process_as_on_the_host(proposer):
    from promptbox.world.scene import generate_scene

    restored = 0
    for scene in SCENES:
        frame = proposer.embed(generate_scene(20261124, scene).image)
        *_, decoded = proposer._decode_coarse_to_fine(frame, _grid(frame), 16, _rule(proposer), {})
        assert decoded.dense and not decoded.packed  # the GPU path ran
        on_gpu, on_host = (_finish(proposer, frame, masks) for masks in (decoded, _on_the_host(decoded)))
        assert len(on_gpu) >= 3  # real masks of world objects
        _assert_same(on_gpu, on_host)
        proposer.keep_nested_wholes = False
        try:
            restored += len(on_gpu) - len(_finish(proposer, frame, decoded))
        finally:
            proposer.keep_nested_wholes = True
    assert restored > 0  # the case occurs: NMS removed wholes that came back


@needs_cuda
def test_the_grid_cover_equals_the_hosts(proposer):
    from promptbox.world.scene import generate_scene

    frame = proposer.embed(generate_scene(20261124, 1).image)
    *_, decoded = proposer._decode_coarse_to_fine(frame, _grid(frame), 16, _rule(proposer), {})
    height, width = frame.original_size
    rows, cols = (a.ravel() for a in np.mgrid[:height:4, :width:4])
    covers = []
    for masks in (decoded, _on_the_host(decoded)):
        covered = np.zeros(len(rows), bool)
        _cover_finest(covered, rows, cols, (height, width), masks, 0, 15)
        covers.append(covered)
    assert 0 < covers[0].sum() < len(rows)  # some points covered, not all
    np.testing.assert_array_equal(*covers)


def _finish(proposer, frame, decoded):
    settings = proposer.settings
    return proposer._finish(frame, decoded, settings.box_nms_thresh, settings.min_mask_region_area, {})


def _grid(frame) -> np.ndarray:
    from mobile_sam.utils.amg import build_all_layer_point_grids

    height, width = frame.original_size
    return build_all_layer_point_grids(16, 0, 1)[0] * np.array([[width, height]])


def _rule(proposer):
    from promptbox.proposals import _Filter

    s = proposer.settings
    return _Filter(s.pred_iou_thresh, s.stability_score_thresh, iou_strict=True)
