"""The 3D target over ROS: aligned depth and camera_info messages in, matched to the colour frame a goal used, and the
answer out as PoseStamped, Detection3D and an RViz Marker. The geometry is the core's (promptbox.depth, camera).

Matching follows message_filters' approximate-time idea, kept small: the node buffers the newest depth images and
camera_infos; a goal takes the depth frame whose stamp is nearest the colour frame's, and the camera_info nearest
that depth frame, each within `slop_s`. What was buffered when the goal took its frame is held for it, so a goal
that runs for seconds on a CPU still finds its depth after the camera has moved on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import Pose, PoseStamped, Vector3
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import ColorRGBA, Header
from vision_msgs.msg import BoundingBox3D, Detection3D, ObjectHypothesisWithPose
from visualization_msgs.msg import Marker

from promptbox.camera import CameraInfo as CoreCameraInfo
from promptbox.camera import Intrinsics, from_camera_info
from promptbox.depth import DEPTH_ENCODINGS, DepthSettings, NoPose, Target3D, target_from_depth
from promptbox_ros.images import ImageError

# encoding -> numpy dtype of one pixel (little-endian; a big-endian message is swapped on reading)
_DEPTH_DTYPES = {"16UC1": "u2", "32FC1": "f4"}
ACCEPTED_DEPTH = "16UC1 (uint16 millimetres) or 32FC1 (float32 metres)"
BUFFER = 30  # depth frames (and camera_infos) kept: 1 s at 30 Hz, as message_filters' usual queue size
MARKER_NS = "promptbox_target"
MIN_MARKER_SIZE_M = 0.005  # RViz hides a zero-thickness cube; a flat top's z extent is 0


def check_depth(msg: Image, field: str = "depth") -> None:
    """Raise ImageError unless `msg` reads as depth: 16UC1 or 32FC1, sizes that agree. No pixel is touched."""
    if msg.encoding not in _DEPTH_DTYPES:
        raise ImageError(f"{field}.encoding={msg.encoding!r} is not supported; accepted: {ACCEPTED_DEPTH}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * np.dtype(_DEPTH_DTYPES[msg.encoding]).itemsize
    if height <= 0 or width <= 0:
        raise ImageError(f"{field} is {width}x{height}; accepted: width and height of at least 1")
    if step < row_bytes:
        raise ImageError(f"{field}.step={step} is less than width*bytes per pixel={row_bytes} for {msg.encoding}; "
                         f"accepted: step >= {row_bytes}")
    if len(msg.data) != step * height:
        raise ImageError(f"{field}.data has {len(msg.data)} bytes but step*height={step * height}; accepted: "
                         "exactly step*height bytes")


def depth_to_array(msg: Image, field: str = "depth") -> tuple[np.ndarray, str]:
    """A depth Image as an HxW native-order array in its encoding's dtype, and the encoding (for target_from_depth)."""
    check_depth(msg, field)
    dtype = _DEPTH_DTYPES[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * np.dtype(dtype).itemsize
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(np.dtype((">" if msg.is_bigendian else "<") + dtype)).reshape(height,
                                                                                                          width)
    wanted = DEPTH_ENCODINGS[msg.encoding][0]
    return pixels.astype(wanted, copy=False), msg.encoding


def intrinsics_of(msg: CameraInfo, rectified: bool) -> Intrinsics:
    """The camera of a CameraInfo: P when the images are rectified, else K and D (see promptbox.camera)."""
    info = CoreCameraInfo(width=int(msg.width), height=int(msg.height), k=tuple(float(v) for v in msg.k),
                          p=tuple(float(v) for v in msg.p), d=tuple(float(v) for v in msg.d),
                          distortion_model=str(msg.distortion_model))
    try:
        return from_camera_info(info, rectified=rectified)
    except ValueError as error:
        raise ValueError(f"camera_info: {error}") from None


def seconds(stamp) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


@dataclass
class Held:
    """What a goal holds from the moment it took its colour frame: that frame's stamp and the buffered messages."""

    stamp: float
    depths: tuple
    infos: tuple


class DepthSync:
    """The newest depth images and camera_infos (thread-safe), and the pair that matches a colour frame's stamp."""

    def __init__(self, slop_s: float, depth_topic: str, info_topic: str, wait_s: float = 0.0) -> None:
        self.slop_s = slop_s
        self.wait_s = wait_s
        self.depth_topic = depth_topic
        self.info_topic = info_topic
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._depths: deque[Image] = deque(maxlen=BUFFER)
        self._infos: deque[CameraInfo] = deque(maxlen=BUFFER)
        self.dropped = 0
        self.last_drop = ""
        self._dropped_stamp = float("-inf")  # the latest stamp of a depth image dropped as invalid

    def add_depth(self, msg: Image) -> None:
        with self._arrived:
            self._depths.append(msg)
            self._arrived.notify_all()

    def add_info(self, msg: CameraInfo) -> None:
        with self._arrived:
            self._infos.append(msg)
            self._arrived.notify_all()

    def drop(self, problem: str, header: Header | None = None) -> None:
        """A depth image was invalid. Its stamp still says the camera has moved past that time, so a goal waiting
        for an earlier one stops waiting."""
        with self._arrived:
            self.dropped += 1
            self.last_drop = problem
            if header is not None:
                self._dropped_stamp = max(self._dropped_stamp, seconds(header.stamp))
            self._arrived.notify_all()

    def hold(self, header: Header) -> Held:
        with self._lock:
            return Held(seconds(header.stamp), tuple(self._depths), tuple(self._infos))

    def match(self, held: Held) -> tuple[Image, CameraInfo] | str:
        """The depth frame and camera_info for the held colour frame, or why there is none.

        A depth image sent with the colour frame can reach the node after it (another topic, another callback, a
        busy executor), so while none within slop has arrived and none stamped after that window either, it waits
        up to `wait_s` for it; the same for the camera_info of the chosen depth image. A topic on which nothing has
        arrived yet is absent, not late: no wait."""
        deadline = time.monotonic() + self.wait_s
        with self._arrived:
            while True:
                found, may_come = self._match(held)
                remaining = deadline - time.monotonic()
                if not isinstance(found, str) or not may_come or remaining <= 0:
                    return found
                self._arrived.wait(remaining)

    def _match(self, held: Held) -> tuple[tuple[Image, CameraInfo] | str, bool]:
        """(the pair or why there is none, whether a message still to come could give the pair); under the lock."""
        depths = held.depths + tuple(self._depths)  # an overlap does not matter to the nearest
        infos = held.infos + tuple(self._infos)
        slop = f"depth.slop_s={self.slop_s:g} s"
        if not depths:
            if self.dropped:
                return (f"no usable depth image on {self.depth_topic}: {self.dropped} dropped as invalid, the last: "
                        f"{self.last_drop}"), False
            # Not late but absent (no depth camera, a wrong remap): no goal waits for it.
            return (f"no depth image has arrived on {self.depth_topic} (sensor_msgs/Image, {ACCEPTED_DEPTH}, "
                    "aligned to the colour frame); remap depth/image:=<aligned depth topic>"), False
        depth, gap = _nearest(depths, held.stamp)
        if gap > self.slop_s:
            return (f"no depth image within {slop} of the colour frame (stamp {held.stamp:.3f}); the nearest on "
                    f"{self.depth_topic} is {gap:.3f} s away"), not (_any_after(depths, held.stamp + self.slop_s)
                                                                    or self._dropped_stamp > held.stamp + self.slop_s)
        if not infos:
            return (f"no camera_info has arrived on {self.info_topic} (sensor_msgs/CameraInfo of the aligned depth); "
                    "remap camera_info:=<its topic>"), False
        depth_stamp = seconds(depth.header.stamp)
        info, gap = _nearest(infos, depth_stamp)
        if gap > self.slop_s:
            return (f"no camera_info within {slop} of the depth image (stamp {depth_stamp:.3f}); the nearest on "
                    f"{self.info_topic} is {gap:.3f} s away"), not _any_after(infos, depth_stamp + self.slop_s)
        return (depth, info), False


def _any_after(messages: tuple, stamp: float) -> bool:
    """Whether a message stamped after `stamp` has arrived: the camera has moved past that time."""
    return any(seconds(m.header.stamp) > stamp for m in messages)


def _nearest(messages: tuple, stamp: float) -> tuple:
    best = min(messages, key=lambda m: abs(seconds(m.header.stamp) - stamp))
    return best, abs(seconds(best.header.stamp) - stamp)


def locate_3d(mask: np.ndarray | None, pair: tuple[Image, CameraInfo] | str, rectified: bool,
              settings: DepthSettings) -> Target3D | NoPose:
    """The 3D target of a detection's mask over a matched (depth, camera_info) pair; NoPose says why there is none,
    including a depth or camera_info that does not fit the frame (the core's message, naming both sizes)."""
    if isinstance(pair, str):
        return NoPose(pair)
    if mask is None:
        return NoPose("the detection has no mask")
    depth_msg, info_msg = pair
    try:
        depth, encoding = depth_to_array(depth_msg)
        return target_from_depth(mask, depth, encoding, intrinsics_of(info_msg, rectified), settings)
    except ValueError as error:
        return NoPose(str(error))


def pose_msg(target: Target3D, header: Header) -> PoseStamped:
    """The visible surface's centre in the colour frame's optical frame, orientation that frame's own."""
    x, y, z = target.centroid_m
    msg = PoseStamped(header=header)
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = x, y, z
    return msg


def size_msg(target: Target3D) -> Vector3:
    dx, dy, dz = target.extent_m
    return Vector3(x=dx, y=dy, z=dz)


def detection3d_msg(target: Target3D, header: Header, phrase: str, score: float, detection_id: str) -> Detection3D:
    """Detection3D with the pose as its box centre and the mask's 3D spread as its size; id = the 2D answer's."""
    pose: Pose = pose_msg(target, header).pose
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id = phrase
    hypothesis.hypothesis.score = float(score)
    hypothesis.pose.pose = pose
    return Detection3D(header=header, results=[hypothesis], bbox=BoundingBox3D(center=pose, size=size_msg(target)),
                       id=detection_id)


def marker_msg(target: Target3D | None, header: Header) -> Marker:
    """A translucent green box at the pose (the same marker id each time, so RViz shows the newest target), or a
    DELETE of it when the newest answer has no pose."""
    marker = Marker(header=header, ns=MARKER_NS, id=0, type=Marker.CUBE)
    if target is None:
        marker.action = Marker.DELETE
        return marker
    marker.action = Marker.ADD
    marker.pose = pose_msg(target, header).pose
    dx, dy, dz = (max(v, MIN_MARKER_SIZE_M) for v in target.extent_m)
    marker.scale = Vector3(x=dx, y=dy, z=dz)
    marker.color = ColorRGBA(r=0.1, g=0.9, b=0.2, a=0.6)
    return marker
