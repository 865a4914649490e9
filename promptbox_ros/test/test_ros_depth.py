"""locate_node's 3D target over real rclpy and Fast DDS: a camera publishes a synthetic-world scene's colour frames,
their aligned depth (the world's depth camera: the table at 0.8 m, each object a flat-topped slab) and camera_info;
an ActionClient sends goals; the pose, the result fields, `target_pose`, `detection_3d` and `target_marker` are
checked against the geometry's truth.

So that the pose is checkable, the mask must really be the object's: the Locator runs the world's oracle masks
(`WorldMaskProposer`) with the committed world CLIP, and the test first picks an object it answers with that
object's own mask (and checks the mask again over ROS). Every depth frame lies `offset_m(tick)` farther than the
scene, and a newer depth frame between two colour frames lies farther still, so the pose also tells which depth
frame was used: the one stamped (within the slop) like the colour frame the goal used.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from ros_workspace import require_workspace

require_workspace()

from action_msgs.msg import GoalStatus  # noqa: E402
from geometry_msgs.msg import PoseStamped  # noqa: E402
from locate_rig import Inbox, Rig, Spinning, overrides, spun, started, until  # noqa: E402
from promptbox_interfaces.action import Locate  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from vision_msgs.msg import Detection3D  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from promptbox.config import AmgSettings, LocatorConfig  # noqa: E402
from promptbox.evaluation.world_masks import WorldMaskProposer  # noqa: E402
from promptbox.locator import Locator  # noqa: E402
from promptbox.world import generate_scene  # noqa: E402
from promptbox.world.depth import scene_depth_mm, surface_centroid, world_intrinsics  # noqa: E402
from promptbox_ros.locate_node import EXECUTOR_THREADS, LocateNode  # noqa: E402

WORLD = Path(__file__).resolve().parents[2] / "weights" / "world"
SEED, INDEX, SIZE = 3, 1, (320, 240)  # a scene of the world's val stream; (width, height)
NAMESPACE = "/pbdepth"
CAMERA = "/pbdepth_cam/color/image_raw"
DEPTH = "/pbdepth_cam/aligned_depth_to_color/image_raw"
INFO = "/pbdepth_cam/color/camera_info"
FRAME_ID = "camera_optical"
TOLERANCE_M = 0.005  # exact slabs and exact intrinsics: only the holes' sampling and float32 rounding remain
DEPTH_LAG_S = 0.003  # depth and camera_info stamps trail the colour's, as separate sensors' do (within depth.slop_s)
DECOY_OFFSET_M = 0.05
LATE_S = 0.1  # mode "late": a depth image reaches the node this long after its colour frame (within depth.wait_s)


def offset_m(tick: int) -> float:
    """How much farther tick `tick`'s depth lies than the scene: neighbouring depth frames differ by 1 to 4 cm."""
    return 0.01 * (tick % 5)


def remaps(namespace_depth: str = DEPTH) -> list[str]:
    return ["--ros-args", "-r", f"image:={CAMERA}", "-r", f"depth/image:={namespace_depth}", "-r",
            f"camera_info:={INFO}"]


class DepthRig(Rig):
    """The Rig's 5 Hz colour camera, plus aligned depth and camera_info for each frame, and listeners on the 3D
    outputs. `mode` says what the depth camera sends: 16UC1 (mm, 10% zero holes), 32FC1 (m, NaN holes), small
    (half size), sparse (no reading on any object), far (everything beyond max_range_m), mono8 (not depth), none,
    late (16UC1 sent LATE_S after its colour frame, no decoy)."""

    def __init__(self, context, scene) -> None:
        super().__init__(context, NAMESPACE, CAMERA)
        self.frame = scene.image
        self.scene_mm = scene_depth_mm(scene)
        self.objects = np.zeros(self.scene_mm.shape, bool)
        for obj in scene.objects:
            self.objects |= obj.mask
        self.holes = np.random.default_rng(0).random(self.scene_mm.shape) < 0.1
        self.intrinsics = world_intrinsics(*SIZE)
        self.mode = "16UC1"
        self.depth_pub = self.node.create_publisher(Image, DEPTH, qos_profile_sensor_data)
        self.info_pub = self.node.create_publisher(CameraInfo, INFO, qos_profile_sensor_data)
        self.poses = Inbox(self.node, PoseStamped, f"{NAMESPACE}/target_pose", 10)
        self.detections_3d = Inbox(self.node, Detection3D, f"{NAMESPACE}/detection_3d", 10)
        self.markers = Inbox(self.node, Marker, f"{NAMESPACE}/target_marker", 10)

    def _tick(self) -> None:
        tick = self._ticks + 1  # the tick of the colour frame that super() publishes next
        if self.mode == "late":
            super()._tick()
            late = threading.Timer(LATE_S, self._late_depth, (tick,))
            late.daemon = True
            late.start()
            return
        depth = self.streaming.is_set() and self.mode != "none"
        if depth:
            self._publish_depth(tick, DEPTH_LAG_S, offset_m(tick))
        super()._tick()
        if depth:
            # The depth camera runs faster than the colour one: a frame between two colour frames, newer than the
            # goal's, and DECOY_OFFSET_M away from every matching one, so using it would show.
            self._publish_depth(tick, 0.5, DECOY_OFFSET_M)

    def _late_depth(self, tick: int) -> None:
        if self.streaming.is_set() and self.mode == "late":
            self._publish_depth(tick, DEPTH_LAG_S, offset_m(tick))

    def _publish_depth(self, tick: int, after_s: float, offset: float) -> None:
        header = self.header(FRAME_ID, tick)
        header.stamp.nanosec += int(after_s * 1e9)
        self.depth_pub.publish(self.depth_msg(offset, header))
        self.info_pub.publish(self.info_msg(header))

    def depth_msg(self, offset: float, header: Header) -> Image:
        mm = self.scene_mm + np.uint16(round(offset * 1000))
        if self.mode == "sparse":
            mm = np.where(self.objects, np.uint16(0), mm)
        elif self.mode == "far":
            mm = np.full_like(mm, 15_000)
        if self.mode == "32FC1":
            metres = np.where(self.holes, np.float32("nan"), mm.astype(np.float32) / np.float32(1000.0))
            return _image(header, metres.astype(np.float32), "32FC1")
        mm = np.where(self.holes, np.uint16(0), mm)
        if self.mode == "small":
            mm = np.ascontiguousarray(mm[::2, ::2])
        if self.mode == "mono8":
            return _image(header, (mm // 10).astype(np.uint8), "mono8")
        return _image(header, mm.astype(np.uint16), "16UC1")

    def info_msg(self, header: Header) -> CameraInfo:
        info = self.intrinsics.to_camera_info()
        p = list(info["p"])
        p[0], p[5] = 2 * p[0], 2 * p[5]  # P's focal lengths twice K's: a rectified=True node must come out halved
        width, height = info["width"], info["height"]
        if self.mode == "small":
            width, height = width // 2, height // 2
        return CameraInfo(header=header, width=width, height=height, distortion_model=info["distortion_model"],
                          d=info["d"], k=info["k"], r=info["r"], p=p)

    def truth(self, obj, tick: int) -> np.ndarray:
        """The visible top's centre for the depth frame of `tick` (the scene's truth, moved away by its offset)."""
        x, y, z = surface_centroid(obj.mask, obj.cls, self.intrinsics)
        scale = (z + offset_m(tick)) / z
        return np.array([x * scale, y * scale, z * scale])


def _image(header: Header, pixels: np.ndarray, encoding: str) -> Image:
    height, width = pixels.shape
    return Image(header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
                 step=width * pixels.itemsize, data=pixels.tobytes())


def _tick_of(header: Header) -> int:
    return header.stamp.sec - 1000  # Rig.header: sec = 1000 + tick


def _xyz(pose) -> np.ndarray:
    p = pose.position
    return np.array([p.x, p.y, p.z])


@pytest.fixture(scope="module")
def scene():
    return generate_scene(SEED, INDEX, SIZE)


@pytest.fixture(scope="module")
def locator():
    if not (WORLD / "world-clip").is_dir():
        pytest.skip(f"no world CLIP at {WORLD / 'world-clip'}: the committed synthetic-world weights are needed")
    amg = AmgSettings(points_per_side=8)
    config = LocatorConfig(clip_model=str(WORLD / "world-clip"), mode="exact", amg=amg, min_score=0.0)
    return Locator(config, proposer=WorldMaskProposer(SEED, INDEX + 1, SIZE, "val", amg))


@pytest.fixture(scope="module")
def target(scene, locator):
    """(object, command): the first object, largest first, whose class is unique in the scene and that the Locator
    answers with that object's own mask, so the 3D truth is the truth of what the node measures."""
    classes = [o.cls for o in scene.objects]
    for obj in sorted(scene.objects, key=lambda o: -o.area):
        if classes.count(obj.cls) != 1:
            continue
        command = f"take the {obj.cls}"
        answer = locator.locate(scene.image, command)
        if answer.found and _iou(answer.mask, obj.mask) >= 0.95:
            return obj, command
    pytest.fail(f"the world scene ({SEED}, {INDEX}) has no object answered with its own mask: the 3D check would "
                "mean nothing")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def rig(ros_context, scene):
    with spun(ros_context, DepthRig(ros_context, scene)) as rig:
        yield rig


def _node(ros_context, locator, namespace: str, depth_topic: str = DEPTH, **params) -> tuple[LocateNode, Spinning]:
    node = started(LocateNode(locator=locator, context=ros_context, namespace=namespace,
                              cli_args=remaps(depth_topic), parameter_overrides=overrides(warmup=False, **params)))
    return node, Spinning(ros_context, node, threads=EXECUTOR_THREADS)


def _stop(node, spinning) -> None:
    node.close()
    spinning.stop()
    node.destroy_node()


@pytest.fixture(scope="module")
def node(ros_context, rig, locator, target):
    node, spinning = _node(ros_context, locator, NAMESPACE)
    rig.wait_for_node()
    until(lambda: rig.depth_pub.get_subscription_count() > 0 and rig.info_pub.get_subscription_count() > 0, 20,
          "the node subscribed to depth and camera_info")
    for topic in ("target_pose", "detection_3d", "target_marker"):
        until(lambda topic=topic: node.count_subscribers(f"{NAMESPACE}/{topic}") > 0, 10, f"the rig heard {topic}")
    yield node
    _stop(node, spinning)


@pytest.fixture
def mode(rig):
    """Set what the depth camera sends for one test; back to 16UC1 after it."""

    def switch(name: str) -> None:
        rig.mode = name
        time.sleep(0.5)  # a few ticks in the new mode before the goal, which then waits for a newer frame

    yield switch
    rig.mode = "16UC1"


def _published(inbox: Inbox, header: Header, what: str) -> list:
    # The node publishes before it returns the result, so this only waits for delivery. 15 s, not 5: a fresh-clone
    # CI once took 8.2 s for a goal that takes 0.1 s here, and the deletion had not arrived 5 s after the result.
    return until(lambda: [m for m in inbox.snapshot() if m.header == header], 15, f"{what} published")


def _check_pose(rig, obj, result) -> np.ndarray:
    """The pose is in the colour frame's optical frame and lands on the truth of the depth frame of its tick."""
    header = result.detection.header
    assert result.has_pose, result.message
    assert result.pose.header == header and header.frame_id == FRAME_ID
    error = np.linalg.norm(_xyz(result.pose.pose) - rig.truth(obj, _tick_of(header)))
    assert error < TOLERANCE_M, f"{error * 1000:.1f} mm from the truth of tick {_tick_of(header)}: {result.message}"
    return error


def test_pose_result_fields_and_topics_match_the_truth(node, rig, target):
    obj, command = target
    status, result, _ = rig.locate(command, return_mask=True, wait_for_new_frame=True)

    assert status == GoalStatus.STATUS_SUCCEEDED, result.message
    assert result.found, result.message
    mask = np.frombuffer(result.mask.data, np.uint8).reshape(SIZE[1], SIZE[0]) > 0
    assert _iou(mask, obj.mask) >= 0.95, "the case under test: the mask is the object's own"
    _check_pose(rig, obj, result)
    assert "3D: centroid" in result.message and "camera optical frame, K" in result.message

    # The size: the spread of the top's points (2nd-98th percentile across), its z the relief seen (a flat top: 0).
    tick = _tick_of(result.detection.header)
    vs, us = np.nonzero(obj.mask)
    points = rig.intrinsics.back_project(us, vs, np.full(len(us), rig.truth(obj, tick)[2]))
    spread = np.subtract(*np.percentile(points, [98, 2], axis=0))
    size = np.array([result.size.x, result.size.y, result.size.z])
    assert np.allclose(size[:2], spread[:2], atol=TOLERANCE_M), (size, spread)
    assert 0.0 <= size[2] < TOLERANCE_M

    header = result.detection.header
    assert _published(rig.poses, header, "target_pose")[-1] == result.pose
    detection = _published(rig.detections_3d, header, "detection_3d")[-1]
    assert detection.id == result.detection.id
    assert detection.bbox.center == result.pose.pose and detection.bbox.size == result.size
    assert detection.results[0].hypothesis.class_id == result.target == obj.cls
    assert detection.results[0].hypothesis.score == result.detection.results[0].hypothesis.score
    marker = _published(rig.markers, header, "target_marker")[-1]
    assert (marker.type, marker.action, marker.ns) == (Marker.CUBE, Marker.ADD, "promptbox_target")
    assert marker.pose == result.pose.pose
    assert marker.scale.x == pytest.approx(size[0]) and marker.scale.y == pytest.approx(size[1])
    assert marker.scale.z == pytest.approx(0.005), "a flat top still shows: the marker is at least 5 mm thick"
    assert marker.color.a > 0


def test_metres_with_nan_holes_give_the_same_truth(node, rig, target, mode):
    mode("32FC1")
    obj, command = target
    status, result, _ = rig.locate(command, wait_for_new_frame=True)
    assert status == GoalStatus.STATUS_SUCCEEDED, result.message
    _check_pose(rig, obj, result)


def test_a_depth_image_that_arrives_after_its_colour_frame_is_waited_for(node, rig, target, mode):
    """The goal takes each new colour frame at once and answers in a few hundredths of a second on the world's
    masks; its depth comes LATE_S later. Without the wait the nearest depth is the previous tick's, a second of
    stamps away, and there is no pose."""
    mode("late")
    obj, command = target
    status, result, _ = rig.locate(command, wait_for_new_frame=True)
    assert status == GoalStatus.STATUS_SUCCEEDED, result.message
    _check_pose(rig, obj, result)


@pytest.mark.parametrize("sent, why", [
    ("none", "3D: no pose: no depth image within depth.slop_s=0.05 s of the colour frame"),
    ("small", "3D: no pose: depth is 160x120 but the mask (the colour frame) is 320x240"),
    ("sparse", "3D: no pose: depth missing under the mask: 0 of"),
    ("far", "3D: no pose: depth out of range under the mask: 0 of"),
    ("mono8", "3D: no pose: no depth image within depth.slop_s=0.05 s of the colour frame"),
])
def test_unusable_depth_gives_no_pose_and_says_why_the_2d_answer_stands(node, rig, target, mode, sent, why):
    obj, command = target
    mode(sent)
    status, result, _ = rig.locate(command, wait_for_new_frame=True)

    assert status == GoalStatus.STATUS_SUCCEEDED, result.message
    assert result.found and result.detection.results[0].hypothesis.class_id == obj.cls
    assert result.detection.bbox.size_x > 0, "the 2D answer is unaffected"
    assert not result.has_pose and result.pose == PoseStamped()
    assert why in result.message, result.message
    header = result.detection.header
    marker = _published(rig.markers, header, "the marker's deletion")[-1]
    assert marker.action == Marker.DELETE, "RViz must not keep showing the previous target"
    assert not [p for p in rig.poses.snapshot() if p.header == header]
    if sent == "mono8":
        logged = until(lambda: rig.logged("depth.encoding='mono8'"), 5, "the bad depth frame's error was logged")
        assert DEPTH in logged[0] and "accepted: 16UC1 (uint16 millimetres) or 32FC1" in logged[0]
    if sent == "sparse":
        assert "below min_valid_fraction 0.3" in result.message


def test_no_depth_topic_says_which_topic_and_rectified_uses_p(ros_context, node, rig, locator, target):
    obj, command = target
    silent = "/pbdepth_cam/silent/depth"
    nodepth, spinning = _node(ros_context, locator, "/pbdepth_silent", depth_topic=silent)
    rectified, spinning_rectified = _node(ros_context, locator, "/pbdepth_rect", **{"depth.rectified": True})
    try:
        for namespace, check in (("/pbdepth_silent", "silent"), ("/pbdepth_rect", "rectified")):
            client = ActionClient(rig.node, Locate, f"{namespace}/locate")
            try:
                until(lambda client=client: client.wait_for_server(timeout_sec=0.1), 20, f"{namespace}/locate")
                until(lambda: rig.camera.get_subscription_count() >= 2, 20, "the extra node took the camera")
                future = client.send_goal_async(Locate.Goal(command=command, wait_for_new_frame=True))
                handle = until(lambda future=future: future.done() and future.result(), 10, "goal accepted")
                done = handle.get_result_async()
                until(done.done, 60, f"the goal on {namespace} ended")
                response = done.result()
                assert response.status == GoalStatus.STATUS_SUCCEEDED, response.result.message
                result = response.result
                assert result.found
                if check == "silent":
                    assert not result.has_pose
                    assert f"no depth image has arrived on {silent} (sensor_msgs/Image, 16UC1" in result.message
                else:
                    # P's focal lengths are twice K's: x and y halve, z (the depth) stays.
                    truth = rig.truth(obj, _tick_of(result.detection.header)) * np.array([0.5, 0.5, 1.0])
                    assert result.has_pose, result.message
                    assert np.linalg.norm(_xyz(result.pose.pose) - truth) < TOLERANCE_M
                    assert "camera optical frame, P" in result.message
            finally:
                client.destroy()
    finally:
        _stop(nodepth, spinning)
        _stop(rectified, spinning_rectified)


@pytest.mark.parametrize("name, value, accepted", [
    ("depth.max_range_m", 0.05, "parameter depth.max_range_m = 0.05; accepted: a finite number above min_range_m"),
    ("depth.slop_s", -1.0, "parameter depth.slop_s=-1.0 is out of range; accepted: a number from 0 to 10"),
    ("depth.extent_percentiles", [98.0, 2.0], "parameter depth.extent_percentiles = (98.0, 2.0); accepted: (low, "
                                              "high) with 0 <= low < high <= 100"),
])
def test_bad_depth_parameters_are_refused_at_configure(ros_context, locator, name, value, accepted):
    bad = LocateNode(locator=locator, context=ros_context, namespace="/pbdepth_bad",
                     parameter_overrides=overrides(warmup=False, **{name: value}))
    try:
        assert not bad.start()
        assert accepted in bad.start_error, bad.start_error
    finally:
        bad.destroy_node()
