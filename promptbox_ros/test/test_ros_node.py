"""locate_node end to end: real rclpy, Fast DDS on loopback, a real ActionClient, real publishers and subscribers, and
the real Locator on random-init MobileSAM vit_t + TinyCLIP-61M (allow_random_weights; no weights exist here).

The main node is built from parameters, as `ros2 run` builds it, and its Locator is then shared with the few extra
nodes some tests need (another goal policy, no camera, background embedding), so the models load once per module.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest
from ros_workspace import require_workspace

require_workspace()

from action_msgs.msg import GoalStatus  # noqa: E402
from locate_rig import (  # noqa: E402
    HEIGHT,
    STAGES,
    TEST_PARAMETERS,
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
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from promptbox_ros.locate_node import EXECUTOR_THREADS, RANDOM_WEIGHTS_TAG, LocateNode  # noqa: E402

NAMESPACE = "/pbtest"
CAMERA = "/pbtest_camera/image_raw"
@pytest.fixture(scope="module")
def rig(ros_context):
    with spun(ros_context, Rig(ros_context, NAMESPACE, CAMERA)) as rig:
        yield rig


@pytest.fixture(scope="module")
def node(ros_context, rig):
    began = time.perf_counter()
    node = started(LocateNode(context=ros_context, namespace=NAMESPACE, cli_args=remaps(CAMERA),
                               parameter_overrides=overrides()))
    print(f"\nlocate_node ready in {time.perf_counter() - began:.1f} s: {node.locator.describe()}")
    spinning = Spinning(ros_context, node, threads=EXECUTOR_THREADS)
    rig.wait_for_node()
    until(lambda: node.count_subscribers(f"{NAMESPACE}/debug_image") > 0, 10, "the rig subscribed to debug_image")
    yield node
    node.close()
    spinning.stop()
    node.destroy_node()


def _extra_node(ros_context, namespace: str, topic: str, locator, **params):
    node = started(LocateNode(locator=locator, context=ros_context, namespace=namespace, cli_args=remaps(topic),
                               parameter_overrides=overrides(warmup=False, **params)))
    return node, Spinning(ros_context, node, threads=EXECUTOR_THREADS)


def _numbered_camera(rig, topic: str, label: str):
    """A camera publisher of the test's own, and its publish(): the rig's frame stamped with the next number."""
    camera = rig.node.create_publisher(Image, topic, qos_profile_sensor_data)
    headers = (rig.header(label, i) for i in itertools.count())

    def publish() -> Header:
        header = next(headers)
        camera.publish(Image(header=header, height=HEIGHT, width=WIDTH, encoding="rgb8", step=WIDTH * 3,
                             data=rig.frame.tobytes()))
        return header

    return camera, publish


def _serving_frames(camera, publish, client, name: str) -> None:
    """The extra node subscribed and serves goals, and has been sent three frames (best effort: one may be lost)."""
    until(lambda: camera.get_subscription_count() > 0, 20, f"the {name} node subscribed")
    until(lambda: client.wait_for_server(timeout_sec=0.1), 20, f"the {name} node's server appeared")
    for _ in range(3):
        publish()
        time.sleep(0.2)


def _stop(node, spinning) -> None:
    node.close()
    spinning.stop()
    node.destroy_node()


def _stages(feedback) -> list[str]:
    return [f.stage for f in feedback]


def _box_inside(detection, width: int, height: int) -> bool:
    x, y = detection.bbox.center.position.x, detection.bbox.center.position.y
    w, h = detection.bbox.size_x, detection.bbox.size_y
    return w > 0 and h > 0 and x - w / 2 >= 0 and y - h / 2 >= 0 and x + w / 2 <= width and y + h / 2 <= height


def test_locate_on_the_newest_camera_frame(node, rig):
    status, result, feedback = rig.locate("take the scissors", return_mask=True)

    assert status == GoalStatus.STATUS_SUCCEEDED, result.message
    assert _stages(feedback) == STAGES
    assert all(0.0 <= f.progress <= 1.0 for f in feedback)
    assert result.message.startswith(RANDOM_WEIGHTS_TAG) and "scissors" in result.message
    assert f"frame from {CAMERA}, " in result.message and " s old" in result.message
    assert result.target == "scissors"
    assert result.found, result.message  # min_score 0: any proposal is an answer

    detection = result.detection
    assert detection.header in rig.sent, "the header must be the source frame's, untouched"
    assert _box_inside(detection, WIDTH, HEIGHT), detection.bbox
    assert detection.results[0].hypothesis.class_id == "scissors"
    assert 0.0 <= detection.results[0].hypothesis.score <= 1.0
    assert detection.id

    mask = result.mask
    assert (mask.encoding, mask.width, mask.height, mask.header) == ("mono8", WIDTH, HEIGHT, detection.header)
    assert set(np.unique(np.frombuffer(mask.data, np.uint8))) <= {0, 255}

    published = until(lambda: [d for d in rig.detections.snapshot() if d.id == detection.id], 5, "detection published")
    assert published[0] == detection
    candidates = until(lambda: [c for c in rig.candidates.snapshot() if c.header == detection.header], 5,
                       "candidates published")[-1]
    assert candidates.detections[0].id == f"{detection.id}/0"
    assert candidates.detections[0].bbox == detection.bbox
    assert 1 <= len(candidates.detections) <= 1 + TEST_PARAMETERS["top_k"]
    debug = until(lambda: [m for m in rig.debug_images.snapshot() if m.header == detection.header], 5,
                  "debug_image published")[-1]
    assert (debug.width, debug.height, debug.encoding) == (WIDTH, HEIGHT, "rgb8")
    drawn = np.frombuffer(debug.data, np.uint8).reshape(HEIGHT, WIDTH, 3)
    assert not np.array_equal(drawn, rig.frame), "the box and label are drawn on the frame"

    # One start-up line names the models, the device and the load time, and says RANDOM WEIGHTS.
    startup = until(lambda: rig.logged("loaded in"), 5, "the start-up line reached /rosout")
    assert "MobileSAM" in startup[0] and "device cpu" in startup[0] and "RANDOM WEIGHTS" in startup[0]


def test_bad_goals_are_rejected_and_the_node_still_answers(node, rig):
    for command, reason in [("", "is empty"), ("   ", "is empty"), ("x" * 5000, "over the limit")]:
        handle, _ = rig.send(command)
        assert not handle.accepted, f"{command[:10]!r} was accepted"
        until(lambda reason=reason: rig.logged(reason), 5, f"the rejection reason {reason!r} was logged")
    handle, _ = rig.send("find the cup", min_score=1.5)
    assert not handle.accepted

    status, result, _ = rig.locate("grab the cup")
    assert status == GoalStatus.STATUS_SUCCEEDED, result.message
    assert result.target == "cup"


@pytest.fixture
def new_frames(rig):
    """Every camera frame new to the Locator's cache, so a goal spends its first second in the encoder."""
    rig.vary_frames.set()
    time.sleep(0.5)
    yield
    rig.vary_frames.clear()


def test_cancel_mid_run_ends_canceled(node, rig, new_frames):
    handle, feedback = rig.send("pick up the mug")
    assert handle.accepted
    until(lambda: "embedding" in _stages(feedback), 30, "the goal reached the embedding stage")
    cancel = handle.cancel_goal_async()
    response = until(lambda: cancel.done() and cancel.result(), 10, "the cancel request was answered")
    assert len(response.goals_canceling) == 1
    result = until(lambda: handle.get_result_async(), 1, "result future")
    response = until(lambda: result.done() and result.result(), 30, "the canceled goal ended")
    assert response.status == GoalStatus.STATUS_CANCELED, response.result.message
    assert "selecting" not in _stages(feedback)


@pytest.fixture
def slow_proposals(node, monkeypatch):
    """A 16x16 prompt grid: 64 decode batches of 4 points, many seconds of proposing on a CPU."""
    proposer = node.locator.proposer
    monkeypatch.setattr(proposer, "settings", replace(proposer.settings, points_per_side=16))


def test_cancel_while_proposing_ends_within_a_decode_batch(node, rig, new_frames, slow_proposals, monkeypatch):
    """Counted in decode batches, not seconds: the node is in this process, so the batches it starts after the
    server accepted the cancel are read on the same clock. (A wall-clock bound on the result's arrival failed once
    in a loaded fresh-clone CI, 1.8 s against 1.5, with the next frame's embedding starting as the goal let go.)"""
    proposer = node.locator.proposer
    started: list[float] = []
    decode = proposer._prompt_side
    monkeypatch.setattr(proposer, "_prompt_side", lambda *args: started.append(time.monotonic()) or decode(*args))
    handle, feedback = rig.send("pick up the mug")
    assert handle.accepted
    until(lambda: "proposing" in _stages(feedback), 60, "the goal reached the proposing stage")
    time.sleep(0.3)  # inside the decode loop
    # The cancel response leaves the server after the goal is marked as canceling: the node's next check sees it.
    accepted = result_of(handle.cancel_goal_async(), 30, "the cancel request was answered")
    accepted_at = time.monotonic()
    assert len(accepted.goals_canceling) == 1
    response = result_of(handle.get_result_async(), 60, "the canceled goal ended")
    assert response.status == GoalStatus.STATUS_CANCELED, response.result.message
    assert "matching" not in _stages(feedback)
    before = [t for t in started if t <= accepted_at]
    assert len(before) >= 1  # the case under test: the cancel came inside the decode loop
    assert len(started) - len(before) <= 1, f"{len(started) - len(before)} decode batches began after the cancel"
    assert response.result.target == "mug"


def test_a_canceled_queued_goal_ends_at_once(node, rig, new_frames, slow_proposals):
    running, running_feedback = rig.send("the cup")
    until(lambda: "embedding" in _stages(running_feedback), 60, "the first goal started")
    queued, queued_feedback = rig.send("the saucer")
    assert running.accepted and queued.accepted
    asked = time.monotonic()
    queued.cancel_goal_async()
    response = result_of(queued.get_result_async(), 10, "the canceled queued goal ended")
    assert time.monotonic() - asked < 2.0
    assert response.status == GoalStatus.STATUS_CANCELED
    assert "canceled while queued" in response.result.message and response.result.target == "saucer"
    assert queued_feedback == []
    first = running.get_result_async()
    assert not first.done(), "the running goal goes on"
    running.cancel_goal_async()
    assert result_of(first, 30, "the running goal ended").status == GoalStatus.STATUS_CANCELED


def test_stale_frames_are_refused_and_a_goal_can_wait_for_a_new_one(ros_context, node, rig):
    topic = "/pbtest_stale/image_raw"
    extra, spinning = _extra_node(ros_context, "/pbtest_stale", topic, node.locator, max_image_age_s=0.5,
                                  image_timeout_s=1.5)
    camera, publish = _numbered_camera(rig, topic, "stale_camera")
    client = ActionClient(rig.node, Locate, "/pbtest_stale/locate")

    def locate(**goal_fields):
        future = client.send_goal_async(Locate.Goal(command="the cup", **goal_fields))
        handle = until(lambda: future.done() and future.result(), 10, "goal accepted")
        return handle, handle.get_result_async()

    try:
        _serving_frames(camera, publish, client, "stale")
        # The camera stops: its last frame grows old (well past 0.5 s, as a loaded CPU can deliver frames late).
        time.sleep(3.0)
        _, done = locate()
        until(done.done, 20, "the goal on a stale frame ended")
        result = done.result().result
        assert done.result().status == GoalStatus.STATUS_ABORTED, result.message
        assert f"the newest frame on {topic} is " in result.message and "max_image_age_s=0.5" in result.message
        assert result.target == "cup"

        publish()  # from before the goal (given time to be taken in: a loaded CPU can run the callback late)
        time.sleep(1.0)
        _, done = locate(wait_for_new_frame=True)
        until(done.done, 20, "the goal waiting for a new frame ended")
        assert done.result().status == GoalStatus.STATUS_ABORTED
        assert "after the goal was accepted (wait_for_new_frame)" in done.result().result.message

        handle, done = locate(wait_for_new_frame=True)
        time.sleep(0.3)
        after = []  # the arm has moved: these frames arrive after the goal

        def publish_after() -> bool:
            after.append(publish())
            time.sleep(0.1)
            return done.done()

        until(publish_after, 60, "the goal on a new frame ended")
        assert done.result().status == GoalStatus.STATUS_SUCCEEDED, done.result().result.message
        assert done.result().result.detection.header in after
    finally:
        client.destroy()
        rig.node.destroy_publisher(camera)
        _stop(extra, spinning)


@pytest.mark.parametrize("name, value, accepted", [
    ("part_margin", -1.0, "part_margin=-1.0 is out of range; accepted: a number from 0 to 1"),
    ("fast_points", 0, "fast_points=0 is out of range; accepted: an integer from 1 to 256"),
    ("fast_map", "grid", "fast_map='grid' is not supported; accepted: auto, tokens, windows, both"),
    ("map_window", 0.0, "map_window=0.0 is out of range; accepted: a number from 0.01 to 1"),
    ("threads", -3, "threads=-3 is out of range; accepted: an integer from 0 to 1024"),
    ("top_k", 10**6, "top_k=1000000 is out of range; accepted: an integer from 1 to 100"),
    ("image_transport", "theora", "image_transport='theora' is not supported; accepted: raw, compressed"),
])
def test_bad_parameters_are_refused_at_configure(ros_context, node, name, value, accepted):
    bad = LocateNode(locator=node.locator, context=ros_context, namespace="/pbtest_bad",
                     parameter_overrides=overrides(warmup=False, **{name: value}))
    try:
        assert not bad.start()
        assert accepted in bad.start_error
    finally:
        bad.destroy_node()


def test_missing_core_library_says_how_to_install_it():
    hide_core = "import sys; sys.modules['promptbox'] = None; from promptbox_ros.main import main; sys.exit(main())"
    done = subprocess.run([sys.executable, "-c", hide_core], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "the core library `promptbox` is not installed" in done.stderr and "-m pip install" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr


def test_explicit_goal_image_is_used_and_a_bad_one_aborts(node, rig):
    small = cv2.resize(rig.frame, (320, 240))
    header = Header(frame_id="handheld")
    header.stamp.sec = 7
    image = Image(header=header, height=240, width=320, encoding="rgb8", step=960, data=small.tobytes())
    status, result, _ = rig.locate("the cup", image=image)
    assert status == GoalStatus.STATUS_SUCCEEDED, result.message
    assert result.detection.header == header
    assert _box_inside(result.detection, 320, 240)

    bad = Image(height=2, width=2, encoding="yuv422", step=4, data=bytes(8))
    status, result, _ = rig.locate("the cup", image=bad)
    assert status == GoalStatus.STATUS_ABORTED
    assert "image.encoding='yuv422'" in result.message and "rgb8, bgr8, rgba8, bgra8, mono8, mono16" in result.message


def test_bad_frame_is_dropped_and_the_previous_one_kept(node, rig):
    rig.streaming.clear()
    try:
        time.sleep(0.5)  # let the last good frames land
        bad = Image(header=Header(frame_id="bad_frame"), height=HEIGHT, width=WIDTH, encoding="16UC1",
                    step=WIDTH * 2, data=bytes(WIDTH * HEIGHT * 2))

        def publish_bad():
            rig.camera.publish(bad)
            return rig.logged("encoding='16UC1'")

        logged = until(publish_bad, 10, "the bad frame's error was logged")
        assert CAMERA in logged[0] and "accepted: rgb8" in logged[0]
        status, result, _ = rig.locate("the cup")
        assert status == GoalStatus.STATUS_SUCCEEDED, result.message
        assert result.detection.header in rig.sent  # a good camera frame, not the bad one
    finally:
        rig.streaming.set()


def test_compressed_transport_follows_the_remapped_image_topic(ros_context, node, rig):
    # The raw node subscribes to the raw topic only: a camera publishing both is not received twice.
    assert node.count_publishers(f"{CAMERA}/compressed") == 1
    assert node.count_subscribers(f"{CAMERA}/compressed") == 0
    extra, spinning = _extra_node(ros_context, "/pbtest_compressed", CAMERA, node.locator,
                                  image_transport="compressed")
    client = ActionClient(rig.node, Locate, "/pbtest_compressed/locate")
    rig.streaming.clear()
    try:
        # Only `-r image:=<camera>` was given: the compressed topic is derived from the resolved image topic.
        until(lambda: rig.compressed.get_subscription_count() > 0, 20, "the compressed node subscribed")
        until(lambda: client.wait_for_server(timeout_sec=0.1), 20, "the compressed node's server appeared")
        ok, jpeg = cv2.imencode(".jpg", rig.frame[..., ::-1])
        assert ok
        headers = [rig.header("compressed_camera", 10_000 + i) for i in range(100)]
        sent = iter(headers)

        def publish_compressed():
            rig.compressed.publish(CompressedImage(header=next(sent), format="jpeg", data=jpeg.tobytes()))
            return False

        # Keep the jpeg stream going while the goal runs, so "the newest frame" is a compressed one.
        timer = rig.node.create_timer(0.2, publish_compressed)
        try:
            time.sleep(1.0)
            future = client.send_goal_async(Locate.Goal(command="the cup"))
            handle = until(lambda: future.done() and future.result(), 10, "goal accepted")
            response = result_of(handle.get_result_async(), 60, "the compressed goal ended")
        finally:
            rig.node.destroy_timer(timer)
        assert response.status == GoalStatus.STATUS_SUCCEEDED, response.result.message
        assert response.result.detection.header in headers
        assert f"frame from {CAMERA}/compressed" in response.result.message

        # Looks like a jpeg on arrival but does not decode: the goal that meets it drops it, says why in the log,
        # and goes on with the next good frame.
        corrupt = CompressedImage(header=rig.header("corrupt", 1), format="jpeg", data=b"\xff\xd8\xff" + bytes(64))
        timer = rig.node.create_timer(0.1, lambda: rig.compressed.publish(corrupt))
        time.sleep(0.8)
        rig.node.destroy_timer(timer)
        time.sleep(0.3)
        future = client.send_goal_async(Locate.Goal(command="the cup"))
        handle = until(lambda: future.done() and future.result(), 10, "goal accepted")
        logged = until(lambda: rig.logged("does not decode"), 20, "the undecodable frame was logged")
        assert f"{CAMERA}/compressed" in logged[-1]
        timer = rig.node.create_timer(0.2, publish_compressed)
        try:
            response = result_of(handle.get_result_async(), 60, "the goal after the corrupt frame ended")
        finally:
            rig.node.destroy_timer(timer)
        assert response.status == GoalStatus.STATUS_SUCCEEDED, response.result.message
        assert response.result.detection.header in headers
    finally:
        rig.streaming.set()
        client.destroy()
        _stop(extra, spinning)


def test_goals_queue_one_at_a_time(node, rig):
    first, first_feedback = rig.send("the cup")
    second, second_feedback = rig.send("the saucer")
    assert first.accepted and second.accepted
    first_done = first.get_result_async()
    second_done = second.get_result_async()
    until(lambda: first_done.done() and second_done.done(), 90, "both queued goals ended")
    assert first_done.result().status == second_done.result().status == GoalStatus.STATUS_SUCCEEDED
    assert (first_done.result().result.target, second_done.result().result.target) == ("cup", "saucer")
    assert _stages(first_feedback) == _stages(second_feedback) == STAGES


def test_preempt_policy_aborts_the_running_goal(ros_context, node, rig, new_frames):
    extra, spinning = _extra_node(ros_context, "/pbtest_preempt", CAMERA, node.locator, goal_policy="preempt")
    client = ActionClient(rig.node, Locate, "/pbtest_preempt/locate")
    try:
        until(lambda: client.wait_for_server(timeout_sec=0.1), 20, "the preempt node's server appeared")
        first_feedback: list = []
        future = client.send_goal_async(Locate.Goal(command="the cup"),
                                        feedback_callback=lambda m: first_feedback.append(m.feedback))
        first = until(lambda: future.done() and future.result(), 10, "first goal accepted")
        until(lambda: "embedding" in _stages(first_feedback), 30, "the first goal started")
        future = client.send_goal_async(Locate.Goal(command="the saucer"))
        second = until(lambda: future.done() and future.result(), 10, "second goal accepted")
        first_done, second_done = first.get_result_async(), second.get_result_async()
        until(lambda: first_done.done() and second_done.done(), 90, "both goals ended")
        assert first_done.result().status == GoalStatus.STATUS_ABORTED
        assert "preempted" in first_done.result().result.message
        assert second_done.result().status == GoalStatus.STATUS_SUCCEEDED, second_done.result().result.message
        assert second_done.result().result.target == "saucer"
    finally:
        client.destroy()
        _stop(extra, spinning)


def test_the_frame_wait_starts_once_the_models_are_free(ros_context, node, rig):
    """A goal that waited for the models (here held by the test, as a long background embedding holds them) still
    waits image_timeout_s for a new frame: the camera's 2 s start when the models are free, not at the goal."""
    topic = "/pbtest_busy/image_raw"
    extra, spinning = _extra_node(ros_context, "/pbtest_busy", topic, node.locator, max_image_age_s=0.5,
                                  image_timeout_s=2.0, precompute_embedding=False)
    camera, publish = _numbered_camera(rig, topic, "busy_camera")
    client = ActionClient(rig.node, Locate, "/pbtest_busy/locate")

    held = False
    try:
        _serving_frames(camera, publish, client, "busy")
        time.sleep(1.0)  # the last frame is now older than max_image_age_s
        held = extra._inference_lock.acquire(timeout=10)
        assert held
        future = client.send_goal_async(Locate.Goal(command="the cup"))
        handle = until(lambda: future.done() and future.result(), 10, "goal accepted")
        done = handle.get_result_async()
        time.sleep(3.0)  # longer than image_timeout_s with the models busy
        extra._inference_lock.release()
        held = False
        time.sleep(0.5)  # the goal now waits for a frame; before the fix it had already given up
        for _ in range(3):
            publish()
            time.sleep(0.2)
        until(done.done, 20, "the goal ended")
        assert done.result().status == GoalStatus.STATUS_SUCCEEDED, done.result().result.message
    finally:
        if held:
            extra._inference_lock.release()
        client.destroy()
        rig.node.destroy_publisher(camera)
        _stop(extra, spinning)


def test_goal_before_any_image_aborts_naming_the_topic(ros_context, node, rig):
    topic = "/pbtest_nocamera/image_raw"
    extra, spinning = _extra_node(ros_context, "/pbtest_nocamera", topic, node.locator, image_timeout_s=1.0)
    client = ActionClient(rig.node, Locate, "/pbtest_nocamera/locate")
    try:
        until(lambda: client.wait_for_server(timeout_sec=0.1), 20, "the no-camera node's server appeared")
        feedback: list = []
        sent_at = time.monotonic()
        future = client.send_goal_async(Locate.Goal(command="take the scissors"),
                                        feedback_callback=lambda m: feedback.append(m.feedback))
        handle = until(lambda: future.done() and future.result(), 10, "goal accepted")
        done = handle.get_result_async()
        until(done.done, 20, "the goal ended")
        waited = time.monotonic() - sent_at
        assert done.result().status == GoalStatus.STATUS_ABORTED
        message = done.result().result.message
        assert f"nothing arrived on {topic} (sensor_msgs/Image)" in message and "image_timeout_s=1" in message
        assert 0.9 <= waited < 10
        assert _stages(feedback) == ["waiting_for_image"]
        assert done.result().result.target == "scissors", "an aborted goal still reports what it looked for"
    finally:
        client.destroy()
        _stop(extra, spinning)


def test_precompute_embeds_while_idle_and_the_goal_reuses_it(ros_context, node, rig, monkeypatch):
    topic = "/pbtest_precompute/image_raw"
    locator = node.locator
    prepared, located = [], []
    real_prepare, real_locate = locator.prepare, locator.locate

    def spy_prepare(image):
        prepared.append(image)
        return real_prepare(image)

    def spy_locate(image, command, **kwargs):
        located.append(kwargs.get("frame"))
        return real_locate(image, command, **kwargs)

    monkeypatch.setattr(locator, "prepare", spy_prepare)
    monkeypatch.setattr(locator, "locate", spy_locate)
    extra, spinning = _extra_node(ros_context, "/pbtest_precompute", topic, locator, precompute_embedding=True)
    camera = rig.node.create_publisher(Image, topic, qos_profile_sensor_data)
    client = ActionClient(rig.node, Locate, "/pbtest_precompute/locate")
    try:
        until(lambda: camera.get_subscription_count() > 0, 20, "the precompute node subscribed")
        frame = Image(header=rig.header("still_camera", 1), height=HEIGHT, width=WIDTH, encoding="rgb8",
                      step=WIDTH * 3, data=rig.frame.tobytes())

        def publish():
            camera.publish(frame)
            time.sleep(0.2)
            return prepared

        until(publish, 20, "the idle node embedded the frame in the background")
        time.sleep(0.5)  # no frame after this one: the goal finds its embedding done or in progress
        until(lambda: client.wait_for_server(timeout_sec=0.1), 20, "server appeared")
        future = client.send_goal_async(Locate.Goal(command="the cup"))
        handle = until(lambda: future.done() and future.result(), 10, "goal accepted")
        done = handle.get_result_async()
        until(done.done, 60, "the goal ended")
        assert done.result().status == GoalStatus.STATUS_SUCCEEDED, done.result().result.message
        assert done.result().result.detection.header.frame_id == "still_camera"
        assert located and located[-1] is not None, "the goal must reuse the background embedding"
    finally:
        client.destroy()
        rig.node.destroy_publisher(camera)
        _stop(extra, spinning)


def test_missing_weights_fail_at_start_up_with_the_weights_message(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from promptbox import weights

    empty_weights, empty_hub = tmp_path / "weights", tmp_path / "hf" / "hub"
    empty_weights.mkdir()
    env = {
        **os.environ,
        "PROMPTBOX_WEIGHTS_DIR": str(empty_weights),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_CACHE": str(empty_hub),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    node = subprocess.Popen(
        [sys.executable, "-m", "promptbox_ros.main", "--ros-args", "-p", "allow_random_weights:=false",
         "-r", "__node:=pbtest_noweights"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # Meanwhile, the message the CLI prints for the same places (the library reads them when it is called).
    monkeypatch.setenv("PROMPTBOX_WEIGHTS_DIR", str(empty_weights))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(empty_hub))
    with pytest.raises(weights.WeightsError) as caught:
        weights.load_sam(None, "cpu", False)
    _, stderr = node.communicate(timeout=120)
    assert node.returncode != 0
    where_it_looked = str(caught.value).split("Fix:")[0]
    assert where_it_looked in stderr, stderr
    assert "locate_node cannot start" in stderr
    assert "allow_random_weights:=true" in stderr and "allow_random_weights=True" not in stderr
