"""The test rig of the node tests: executors on threads, and a rig that plays the camera and the planner over real
Fast DDS (loopback; tools/run_tests.sh picks a ROS_DOMAIN_ID of its own)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from promptbox_interfaces.action import Locate
from rcl_interfaces.msg import Log
from rclpy.action import ActionClient
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray

STAGES = ["waiting_for_image", "embedding", "proposing", "matching", "selecting"]
SAMPLE = Path(__file__).resolve().parents[2] / "promptbox" / "src" / "promptbox" / "data" / "coffee.png"
WIDTH, HEIGHT = 640, 480


def until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll `condition` until it is truthy; fail the test saying `what` never happened."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"within {timeout:.0f} s: {what}")
        time.sleep(0.02)


def result_of(future, timeout: float, what: str):
    until(future.done, timeout, what)
    return future.result()


class Spinning:
    """Nodes spun by their own MultiThreadedExecutor on a daemon thread; stop() shuts it down before the context."""

    def __init__(self, context: rclpy.Context, *nodes, threads: int) -> None:
        self.executor = MultiThreadedExecutor(num_threads=threads, context=context)
        for node in nodes:
            self.executor.add_node(node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.executor.shutdown(timeout_sec=10.0)
        self._thread.join(timeout=10.0)


@contextmanager
def spun(context: rclpy.Context, rig, threads: int = 2) -> Iterator:
    """`rig` (anything with a `.node`) spun on its own executor for the block, then stopped and its node destroyed:
    the module fixture of every node test."""
    spinning = Spinning(context, rig.node, threads=threads)
    try:
        yield rig
    finally:
        spinning.stop()
        rig.node.destroy_node()


class Inbox:
    """Every message of one topic, in arrival order."""

    def __init__(self, node, msg_type, topic: str, qos) -> None:
        self.messages: list = []
        self._lock = threading.Lock()
        self.subscription = node.create_subscription(msg_type, topic, self._on_message, qos)

    def _on_message(self, msg) -> None:
        with self._lock:
            self.messages.append(msg)

    def snapshot(self) -> list:
        with self._lock:
            return list(self.messages)


def camera_frame() -> np.ndarray:
    """A real photo (scikit-image's coffee sample) at 640x480, RGB."""
    bgr = cv2.imread(str(SAMPLE), cv2.IMREAD_COLOR)
    if bgr is None:  # the sample ships with the core package; a plain pattern keeps the tests alive without it
        yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
        return np.dstack([xx % 256, yy % 256, (xx + yy) % 256]).astype(np.uint8)
    return np.ascontiguousarray(cv2.resize(bgr, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)[..., ::-1])


class Rig:
    """The world around a locate node: a 5 Hz bgr8 camera, an ActionClient, and listeners on every output."""

    def __init__(self, context: rclpy.Context, namespace: str, camera_topic: str) -> None:
        self.node = rclpy.create_node("pbtest_rig", context=context)
        self.camera_topic = camera_topic
        self.camera = self.node.create_publisher(Image, camera_topic, qos_profile_sensor_data)
        self.compressed = self.node.create_publisher(CompressedImage, camera_topic + "/compressed",
                                                     qos_profile_sensor_data)
        self.client = ActionClient(self.node, Locate, f"{namespace}/locate")
        self.detections = Inbox(self.node, Detection2D, f"{namespace}/detection", 10)
        self.candidates = Inbox(self.node, Detection2DArray, f"{namespace}/candidates", 10)
        self.debug_images = Inbox(self.node, Image, f"{namespace}/debug_image", qos_profile_sensor_data)
        self.log = Inbox(self.node, Log, "/rosout", QoSProfile(depth=200))
        self.frame = camera_frame()
        self.sent: list[Header] = []  # headers of the good frames published
        self.streaming = threading.Event()
        self.streaming.set()
        self._publishing = threading.Lock()  # a tick checks `streaming` and publishes as one step
        # A still scene by default: the Locator's per-content cache then embeds it once for many goals. Tests that
        # need a goal to spend time in the encoder (cancel, preempt) make every frame new.
        self.vary_frames = threading.Event()
        self._ticks = 0
        self.node.create_timer(0.2, self._tick)

    def _tick(self) -> None:
        with self._publishing:
            if not self.streaming.is_set():
                return
            self._ticks += 1
            frame = self.frame
            if self.vary_frames.is_set():
                frame = frame.copy()
                frame[:8, :8] = self._ticks % 256
            header = self.header("camera_optical", self._ticks)
            self.camera.publish(bgr8(frame, header))
            self.sent.append(header)

    def pause_streaming(self, settle_s: float = 0.5) -> None:
        """Stop the rig's frames, so that the next frame the node receives is one a test publishes: no tick
        publishes after this returns, and the last one has `settle_s` to land (a goal that waits for a new frame
        took a late rig frame once on a loaded CI runner)."""
        with self._publishing:
            self.streaming.clear()
        time.sleep(settle_s)

    def header(self, frame_id: str, tick: int) -> Header:
        return Header(stamp=Time(sec=1_000 + tick, nanosec=tick * 1000), frame_id=frame_id)

    def wait_for_node(self, timeout: float = 20.0) -> None:
        until(lambda: self.client.wait_for_server(timeout_sec=0.1), timeout, "the locate action server appeared")
        until(lambda: self.camera.get_subscription_count() > 0, timeout, "the node subscribed to the camera")

    def send(self, command: str, **goal_fields) -> tuple[object, list]:
        """Send a goal; returns (goal handle, feedback list that fills as it arrives)."""
        feedback: list = []
        goal = Locate.Goal(command=command, **goal_fields)
        future = self.client.send_goal_async(goal, feedback_callback=lambda m: feedback.append(m.feedback))
        return result_of(future, 10.0, f"the goal {command[:40]!r} was answered accept/reject"), feedback

    def locate(self, command: str, timeout: float = 90.0, **goal_fields):
        """Send a goal and wait for its end; returns (status, result, feedback)."""
        handle, feedback = self.send(command, **goal_fields)
        assert handle.accepted, f"goal {command!r} was rejected"
        response = result_of(handle.get_result_async(), timeout, f"the goal {command!r} ended")
        return response.status, response.result, feedback

    def logged(self, text: str) -> list[str]:
        return [m.msg for m in self.log.snapshot() if text in m.msg]


def bgr8(rgb: np.ndarray, header: Header) -> Image:
    height, width = rgb.shape[:2]
    return Image(header=header, height=height, width=width, encoding="bgr8", is_bigendian=0, step=width * 3,
                 data=np.ascontiguousarray(rgb[..., ::-1]).tobytes())


# Small and permissive: a 2x2 prompt grid keeps a goal near a second; thresholds at 0 keep random-init masks alive,
# and min_score 0 makes every goal on a frame with proposals a "found", so the detection path always runs.
TEST_PARAMETERS = {
    "allow_random_weights": True,
    "mode": "exact",
    "amg.points_per_side": 2,
    "amg.pred_iou_thresh": 0.0,
    "amg.stability_score_thresh": 0.0,
    "amg.min_mask_region_area": 0,
    "min_score": 0.0,
    "top_k": 3,
    "image_timeout_s": 5.0,
    "max_image_age_s": 60.0,  # the tests that pause the camera still answer on its last frame
}


def overrides(**extra) -> list[Parameter]:
    return [Parameter(name, value=value) for name, value in {**TEST_PARAMETERS, **extra}.items()]


def remaps(topic: str) -> list[str]:
    return ["--ros-args", "-r", f"image:={topic}"]


def started(node):
    """configure + activate, as autostart does in the process."""
    assert node.start(), node.start_error
    return node
