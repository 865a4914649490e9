"""Trying to break locate_node over real rclpy and Fast DDS: odd commands, bad frames on the camera topic, 16-bit and
8K frames, a frame of another size arriving mid-inference, a cancel while it waits for a frame, while matching and
while selecting, 20 goals at once under each goal policy, a client that disappears mid-goal, and broken weights.
Every case must explain itself, and the node must answer a plain goal afterwards."""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import pytest
from ros_workspace import require_workspace

require_workspace()

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from action_msgs.msg import GoalStatus  # noqa: E402
from locate_rig import (  # noqa: E402
    HEIGHT,
    WIDTH,
    Rig,
    Spinning,
    overrides,
    remaps,
    result_of,
    spun,
    started,
    until,
)
from promptbox_interfaces.action import Locate  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.qos import QoSProfile  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

import promptbox.locator  # noqa: E402
from promptbox_ros.images import MAX_SIDE  # noqa: E402
from promptbox_ros.locate_node import ACTION_QUEUE_DEPTH, EXECUTOR_THREADS, LocateNode  # noqa: E402

NAMESPACE = "/pbrobust"
CAMERA = "/pbrobust_camera/image_raw"
ENDED = (GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_ABORTED, GoalStatus.STATUS_CANCELED)
WORLD_CLIP = Path(__file__).resolve().parents[2] / "weights" / "world" / "world-clip"


@pytest.fixture(scope="module")
def rig(ros_context):
    with spun(ros_context, Rig(ros_context, NAMESPACE, CAMERA)) as rig:
        yield rig


@pytest.fixture(scope="module")
def node(ros_context, rig):
    node = started(LocateNode(context=ros_context, namespace=NAMESPACE, cli_args=remaps(CAMERA),
                              parameter_overrides=overrides(warmup=False)))
    spinning = Spinning(ros_context, node, threads=EXECUTOR_THREADS)
    rig.wait_for_node()
    yield node
    node.close()
    spinning.stop()
    node.destroy_node()


def _extra(ros_context, rig, name: str, topic: str, locator, **params):
    node = started(LocateNode(locator=locator, context=ros_context, namespace=f"/{name}", cli_args=remaps(topic),
                              parameter_overrides=overrides(warmup=False, **params)))
    spinning = Spinning(ros_context, node, threads=EXECUTOR_THREADS)
    client = _deep_client(rig.node, f"/{name}/locate")
    until(lambda: client.wait_for_server(timeout_sec=0.1), 20, f"the {name} node's server appeared")
    return node, spinning, client


def _close(node, spinning, client) -> None:
    client.destroy()
    node.close()
    spinning.stop()
    node.destroy_node()


def _still_serves(rig) -> None:
    status, result, _ = rig.locate("the cup")
    assert status == GoalStatus.STATUS_SUCCEEDED, result.message
    assert result.target == "cup"


@pytest.mark.parametrize("command, why", [
    ("", "is empty"), ("   ", "is empty"), ("x" * 5000, "5000 characters long"),
    ("take\x07 the cup", "control character '\\x07'"),
    ("\x00take the cup", "is empty"),  # ROS strings end at a NUL in transit: the node gets ''
    ("take the scissors\x00 and burn it", None),  # ... here 'take the scissors', answered
    ("\x1b[2Jthe cup", "control character '\\x1b'"), ("take the 🙂", "names no object"), ("🙂🙂", "names no object"),
    ("nimm die Schere", "looks like German"), ("ножницы", "Cyrillic script"), ("请拿剪刀", "Chinese"),
    ("please do it", "names no object"), ("the", "names no object"), ("42", "asks for 42"),
    ("take 3 cups", "asks for 3"),
])
def test_an_odd_command_is_rejected_naming_why(node, rig, command, why):
    before = len(rig.logged("rejected a locate goal"))
    handle, _ = rig.send(command)
    if why is None:
        assert handle.accepted
        response = result_of(handle.get_result_async(), 60, "the goal ended")
        assert response.status == GoalStatus.STATUS_SUCCEEDED and response.result.target == "scissors"
        return
    assert not handle.accepted, f"{command[:40]!r} was accepted"
    reasons = until(lambda: rig.logged("rejected a locate goal")[before:], 5, "the rejection was logged")
    assert why in reasons[0] and "accepted:" in reasons[0], reasons[0]
    _still_serves(rig)


def test_bad_frames_are_dropped_naming_the_problem_and_the_stream_goes_on(node, rig):
    def frame(encoding: str, height: int, width: int, step: int, size: int) -> Image:
        return Image(header=Header(frame_id="bad"), height=height, width=width, encoding=encoding, step=step,
                     data=bytes(size))

    bad = [
        (frame("bayer_rggb8", HEIGHT, WIDTH, WIDTH, WIDTH * HEIGHT), "encoding='bayer_rggb8' is not supported"),
        (frame("32FC1", HEIGHT, WIDTH, WIDTH * 4, WIDTH * HEIGHT * 4), "encoding='32FC1' is not supported"),
        (frame("rgb8", 0, WIDTH, WIDTH * 3, 0), f"image is {WIDTH}x0"),
        (frame("rgb8", HEIGHT, WIDTH, WIDTH * 3, 100), "accepted: exactly step*height bytes"),
    ]
    rig.streaming.clear()
    try:
        for msg, problem in bad:
            def publish(msg=msg, problem=problem):
                rig.camera.publish(msg)
                time.sleep(0.05)
                return rig.logged(problem)

            logged = until(publish, 10, f"the frame with {problem!r} was logged")
            assert CAMERA in logged[0] and "dropped a frame" in logged[0]
    finally:
        rig.streaming.set()
    _still_serves(rig)


@pytest.fixture
def seen(node, monkeypatch):
    """(image, answer) per goal, as the models were given and answered them, before the node maps them back."""
    calls: list = []
    locate = node.locator.locate

    def spy(image, command, **kwargs):
        answer = locate(image, command, **kwargs)
        calls.append((image, answer))
        return answer

    monkeypatch.setattr(node.locator, "locate", spy)
    return calls


def _box_inside(detection, width: int, height: int) -> bool:
    x, y = detection.bbox.center.position.x, detection.bbox.center.position.y
    w, h = detection.bbox.size_x, detection.bbox.size_y
    return w > 0 and h > 0 and x - w / 2 >= 0 and y - h / 2 >= 0 and x + w / 2 <= width and y + h / 2 <= height


def _on_camera(rig, msg: Image, command: str = "the cup", every: float = 0.2):
    """A goal on `msg`, published on the camera topic instead of the rig's frames until the goal ends."""
    rig.pause_streaming()
    timer = rig.node.create_timer(every, lambda: rig.camera.publish(msg))
    try:
        return rig.locate(command, timeout=180, wait_for_new_frame=True, return_mask=True)
    finally:
        rig.node.destroy_timer(timer)
        rig.streaming.set()


@pytest.mark.parametrize("bigendian", [0, 1])
def test_a_16_bit_frame_is_scaled_to_8_bit_and_answered(node, rig, seen, bigendian):
    gray = cv2.cvtColor(rig.frame, cv2.COLOR_RGB2GRAY)
    data = (gray.astype(np.uint16) * 257).astype(">u2" if bigendian else "<u2").tobytes()  # the full 16-bit range
    header = Header(frame_id=f"mono16_bigendian_{bigendian}")
    msg = Image(header=header, height=HEIGHT, width=WIDTH, encoding="mono16", is_bigendian=bigendian,
                step=WIDTH * 2, data=data)
    status, result, _ = _on_camera(rig, msg)
    assert status == GoalStatus.STATUS_SUCCEEDED, result.message
    assert result.detection.header == header and result.found
    assert (result.mask.width, result.mask.height) == (WIDTH, HEIGHT)
    image, _ = seen[-1]
    assert np.array_equal(image, np.repeat(gray[..., None], 3, axis=2)), "65535 maps to 255, 257*v to v"
    _still_serves(rig)


def test_an_8k_frame_is_resized_for_the_models_and_answered_in_source_pixels(node, rig, seen):
    width, height = 7680, 4320
    gray = cv2.resize(cv2.cvtColor(rig.frame, cv2.COLOR_RGB2GRAY), (width, height), interpolation=cv2.INTER_LINEAR)
    header = Header(frame_id="eight_k")
    msg = Image(header=header, height=height, width=width, encoding="mono8", step=width, data=gray.tobytes())
    status, result, _ = _on_camera(rig, msg, every=1.0)
    assert status == GoalStatus.STATUS_SUCCEEDED, result.message
    assert result.detection.header == header and result.found
    image, answer = seen[-1]
    assert image.shape == (MAX_SIDE * height // width, MAX_SIDE, 3), "the models see the frame shrunk to MAX_SIDE"
    # The box and the mask come back in the frame's own pixels: the models' box times the scale.
    scale = width / MAX_SIDE
    x0, y0, x1, y1 = answer.box_xyxy
    box = result.detection.bbox
    assert box.center.position.x == pytest.approx((x0 + x1) / 2 * scale, abs=0.01)
    assert box.center.position.y == pytest.approx((y0 + y1) / 2 * scale, abs=0.01)
    assert box.size_x == pytest.approx((x1 - x0) * scale, abs=0.01)
    assert _box_inside(result.detection, width, height)
    assert (result.mask.width, result.mask.height) == (width, height)
    mask = np.frombuffer(bytes(result.mask.data), np.uint8).reshape(height, width)
    small = cv2.resize(mask, (answer.mask.shape[1], answer.mask.shape[0]), interpolation=cv2.INTER_NEAREST_EXACT)
    assert np.mean((small > 0) == answer.mask) > 0.999, "the source-size mask is the models' mask, scaled"
    _still_serves(rig)


def test_a_frame_of_another_size_arriving_mid_inference(node, rig, monkeypatch):
    proposer = node.locator.proposer
    monkeypatch.setattr(proposer, "settings", replace(proposer.settings, points_per_side=6))
    full = rig.frame
    half = np.ascontiguousarray(cv2.resize(full, (WIDTH // 2, HEIGHT // 2), interpolation=cv2.INTER_AREA))
    rig.vary_frames.set()  # a new frame: the goal spends time in the encoder and the decoder
    try:
        handle, feedback = rig.send("the cup", return_mask=True)
        assert handle.accepted
        until(lambda: any(f.stage == "proposing" for f in feedback), 60, "the goal reached the proposals")
        rig.frame = half  # the camera changes resolution while the goal runs
        switched = len(rig.sent)
        response = result_of(handle.get_result_async(), 60, "the goal ended")
        assert len(rig.sent) > switched + 1, "a half-size frame was published while the goal ran"
        status, result, _ = rig.locate("the cup", wait_for_new_frame=True, return_mask=True)
    finally:
        rig.frame = full
        rig.vary_frames.clear()
    first = response.result
    assert response.status == GoalStatus.STATUS_SUCCEEDED, first.message
    assert first.detection.header in rig.sent[:switched + 1], "the running goal keeps the frame it started on"
    assert _box_inside(first.detection, WIDTH, HEIGHT)
    assert (first.mask.width, first.mask.height) == (WIDTH, HEIGHT)
    assert status == GoalStatus.STATUS_SUCCEEDED, result.message
    assert result.detection.header in rig.sent[switched:]
    assert _box_inside(result.detection, WIDTH // 2, HEIGHT // 2)
    assert (result.mask.width, result.mask.height) == (WIDTH // 2, HEIGHT // 2)


def _slowed(function, seconds: float):
    def slow(*args, **kwargs):
        time.sleep(seconds)
        return function(*args, **kwargs)

    return slow


@pytest.mark.parametrize("stage", ["matching", "selecting"])
def test_cancel_while_matching_or_selecting(node, rig, monkeypatch, stage):
    # Each stage made to last a second or so, so that the cancel surely lands inside it.
    if stage == "matching":
        matcher = node.locator.matcher
        monkeypatch.setattr(matcher, "encode_regions", _slowed(matcher.encode_regions, 1.5))
    else:
        monkeypatch.setattr(promptbox.locator, "select", _slowed(promptbox.locator.select, 1.5))
    handle, feedback = rig.send("the cup")
    assert handle.accepted
    until(lambda: any(f.stage == stage for f in feedback), 60, f"the goal reached {stage}")
    handle.cancel_goal_async()
    response = result_of(handle.get_result_async(), 30, "the goal ended")
    stages = [f.stage for f in feedback]
    if stage == "matching":  # it stops at the next check, before selecting
        assert response.status == GoalStatus.STATUS_CANCELED, response.result.message
        assert "selecting" not in stages and response.result.message.endswith("canceled")
    else:  # selecting is the last stage: the cancel comes after the last check, and the answer stands
        assert response.status == GoalStatus.STATUS_SUCCEEDED, response.result.message
        assert response.result.found
    assert response.result.target == "cup"
    monkeypatch.undo()
    _still_serves(rig)


def test_cancel_while_waiting_for_a_frame(ros_context, node, rig):
    extra, spinning, client = _extra(ros_context, rig, "pbrobust_nocamera", "/pbrobust_nocamera/image",
                                     node.locator, image_timeout_s=30.0)
    try:
        feedback: list = []
        future = client.send_goal_async(Locate.Goal(command="the cup"),
                                        feedback_callback=lambda m: feedback.append(m.feedback.stage))
        handle = until(lambda: future.done() and future.result(), 10, "goal accepted")
        until(lambda: feedback == ["waiting_for_image"], 10, "the goal waits for a frame")
        asked = time.monotonic()
        handle.cancel_goal_async()
        response = result_of(handle.get_result_async(), 10, "the canceled goal ended")
        assert response.status == GoalStatus.STATUS_CANCELED and response.result.target == "cup"
        assert time.monotonic() - asked < 2.0
    finally:
        _close(extra, spinning, client)


def _twenty(client) -> list:
    futures = [client.send_goal_async(Locate.Goal(command=f"the cup number {i}" if i % 2 else "the cup"))
               for i in range(20)]
    handles = [until(lambda f=f: f.done() and f.result(), 20, "goal accepted") for f in futures]
    assert all(h.accepted for h in handles)
    return [h.get_result_async() for h in handles]


def _deep_client(node, name: str) -> ActionClient:
    """A client that can have 20 goal requests in flight: the services' default depth of 10 drops replies."""
    qos = QoSProfile(depth=ACTION_QUEUE_DEPTH)
    return ActionClient(node, Locate, name, goal_service_qos_profile=qos, result_service_qos_profile=qos,
                        cancel_service_qos_profile=qos)


def test_twenty_goals_at_once_queue_and_all_end(node, rig):
    client = _deep_client(rig.node, f"{NAMESPACE}/locate")
    try:
        done = _twenty(client)
        until(lambda: all(d.done() for d in done), 240, "all 20 queued goals ended")
        statuses = [d.result().status for d in done]
        assert all(s in ENDED for s in statuses), statuses
        assert statuses.count(GoalStatus.STATUS_SUCCEEDED) + statuses.count(GoalStatus.STATUS_ABORTED) == 20
        assert statuses[0] == statuses[-1] == GoalStatus.STATUS_SUCCEEDED
    finally:
        client.destroy()
    _still_serves(rig)


def test_twenty_goals_at_once_preempt_keeps_the_last(ros_context, node, rig):
    extra, spinning, client = _extra(ros_context, rig, "pbrobust_preempt", CAMERA, node.locator,
                                     goal_policy="preempt")
    try:
        done = _twenty(client)
        until(lambda: all(d.done() for d in done), 120, "all 20 goals ended")
        statuses = [d.result().status for d in done]
        assert statuses[-1] == GoalStatus.STATUS_SUCCEEDED, done[-1].result().result.message
        assert statuses[:-1] == [GoalStatus.STATUS_ABORTED] * 19
        assert all("preempted" in d.result().result.message for d in done[:-1])
    finally:
        _close(extra, spinning, client)


def test_a_client_that_disappears_mid_goal(ros_context, node, rig, monkeypatch):
    proposer = node.locator.proposer
    monkeypatch.setattr(proposer, "settings", replace(proposer.settings, points_per_side=6))
    rig.vary_frames.set()  # a goal on a new frame spends time in the encoder and the decoder
    planner = rclpy.create_node("pbrobust_vanishing_planner", context=ros_context)
    spinning = Spinning(ros_context, planner, threads=2)
    client = ActionClient(planner, Locate, f"{NAMESPACE}/locate")
    try:
        until(lambda: client.wait_for_server(timeout_sec=0.1), 20, "the planner found the server")
        feedback: list = []
        future = client.send_goal_async(Locate.Goal(command="the cup"),
                                        feedback_callback=lambda m: feedback.append(m.feedback.stage))
        until(lambda: future.done() and future.result(), 10, "goal accepted")
        until(lambda: "embedding" in feedback, 30, "the goal started")
    finally:
        client.destroy()
        spinning.stop()
        planner.destroy_node()  # gone mid-goal, without a cancel
        rig.vary_frames.clear()
    before = len(rig.logged("failed"))
    _still_serves(rig)
    assert rig.logged("failed")[before:] == [], "no goal may fail because its client left"


def _bad_weights(kind: str, folder) -> dict[str, object]:
    """Parameters naming one broken weights file (or folder) of `kind`."""
    import torch

    sam = folder / "mobile_sam.pt"
    if kind == "truncated":
        buffer = folder / "whole.pt"
        torch.save({"image_encoder.weight": torch.zeros(64, 64)}, buffer)
        sam.write_bytes(buffer.read_bytes()[:200])
    elif kind == "not a checkpoint":
        sam.write_text("this is not a checkpoint\n")
    elif kind == "wrong architecture":
        torch.save({"backbone.weight": torch.zeros(3)}, sam)
    elif kind == "missing":
        pass  # named, never written
    elif kind.startswith("clip folder without "):  # the world CLIP, one file left out
        clip = folder / "world-clip"
        shutil.copytree(WORLD_CLIP, clip, ignore=shutil.ignore_patterns(kind.rsplit(" ", 1)[1]))
        return {"clip_model": str(clip), "allow_random_weights": True}
    else:  # a CLIP folder without its weights file
        clip = folder / "my-clip"
        clip.mkdir()
        (clip / "config.json").write_text("{}")
        return {"clip_model": str(clip), "allow_random_weights": True}
    return {"sam_checkpoint": str(sam), "allow_random_weights": False}


@pytest.mark.parametrize("kind", ["missing", "truncated", "not a checkpoint", "wrong architecture", "clip folder",
                                  "clip folder without model.safetensors", "clip folder without vocab.json",
                                  "clip folder without merges.txt"])
def test_broken_weights_fail_configure_naming_the_file(ros_context, tmp_path, kind):
    params = _bad_weights(kind, tmp_path)
    bad = LocateNode(context=ros_context, namespace="/pbrobust_weights", parameter_overrides=overrides(**params))
    try:
        assert not bad.start()
        named = params.get("sam_checkpoint") or params["clip_model"]
        assert str(named) in bad.start_error, bad.start_error
        if kind.startswith("clip folder without "):
            assert kind.rsplit(" ", 1)[1] in bad.start_error, bad.start_error
        assert "Traceback" not in bad.start_error
    finally:
        bad.destroy_node()
