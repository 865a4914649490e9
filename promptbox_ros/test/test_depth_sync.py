"""DepthSync pairs a goal's colour frame with its depth image and camera_info, and waits a little for one that is
late: real message types, a thread in the role of the depth callback. The node over DDS is test_ros_depth.py."""

from __future__ import annotations

import threading
import time

import pytest
from ros_workspace import require_workspace

require_workspace()

from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from promptbox_ros.target3d import DepthSync  # noqa: E402

STAMP = 1006.0  # the colour frame's


def _header(stamp: float) -> Header:
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = int(stamp), int(round((stamp % 1) * 1e9))
    return header


def _depth(stamp: float) -> Image:
    return Image(header=_header(stamp), height=1, width=1, encoding="16UC1", step=2, data=b"\x00\x01")


def _info(stamp: float) -> CameraInfo:
    return CameraInfo(header=_header(stamp), width=1, height=1)


def _match_while(sync: DepthSync, seconds: float, *calls) -> tuple[object, float]:
    """(sync.match's answer, seconds it took) for a goal that took the colour frame at STAMP just now, while the
    depth callback runs `calls` `seconds` later."""
    held = sync.hold(_header(STAMP))  # the goal takes its frame before the messages arrive

    def callback() -> None:
        time.sleep(seconds)
        for call in calls:
            call()

    thread = threading.Thread(target=callback, daemon=True)
    started = time.monotonic()
    thread.start()
    answer = sync.match(held)
    waited = time.monotonic() - started
    thread.join()
    return answer, waited


def _sync(wait_s: float) -> DepthSync:
    sync = DepthSync(0.05, "/cam/depth", "/cam/info", wait_s)
    sync.add_depth(_depth(STAMP - 0.5))  # the previous tick's: the stream is running
    sync.add_info(_info(STAMP - 0.5))
    return sync


@pytest.mark.parametrize("late", ["depth", "camera_info"])
def test_a_late_depth_or_camera_info_of_the_frame_is_waited_for(late):
    sync = _sync(wait_s=5.0)
    if late == "camera_info":
        sync.add_depth(_depth(STAMP + 0.003))
    calls = [lambda: sync.add_info(_info(STAMP + 0.003))]
    if late == "depth":
        calls.insert(0, lambda: sync.add_depth(_depth(STAMP + 0.003)))
    pair, waited = _match_while(sync, 0.3, *calls)
    assert not isinstance(pair, str), pair
    depth, info = pair
    assert depth.header.stamp.nanosec == info.header.stamp.nanosec == 3_000_000
    assert 0.25 < waited < 4.0  # it waited for the message, and no longer than until it came


def test_without_a_wait_the_late_depth_is_missed_and_the_reason_says_so():
    sync = _sync(wait_s=0.0)
    answer, _ = _match_while(sync, 0.2, lambda: sync.add_depth(_depth(STAMP + 0.003)))
    assert answer == ("no depth image within depth.slop_s=0.05 s of the colour frame (stamp 1006.000); the nearest "
                      "on /cam/depth is 0.500 s away")


def test_no_wait_once_the_camera_has_moved_past_the_frame():
    """A depth image stamped after the frame's window has arrived: the frame's own is lost, not late."""
    sync = _sync(wait_s=5.0)
    sync.add_depth(_depth(STAMP + 0.2))
    started = time.monotonic()
    answer = sync.match(sync.hold(_header(STAMP)))
    assert isinstance(answer, str) and "no depth image within depth.slop_s=0.05 s" in answer
    assert time.monotonic() - started < 2.5


def test_a_lost_depth_ends_the_wait_when_the_next_one_arrives():
    """The frame's depth was lost: the next depth image (stamped after the frame's window) ends the wait, long
    before wait_s."""
    sync = _sync(wait_s=5.0)
    answer, waited = _match_while(sync, 0.2, lambda: sync.add_depth(_depth(STAMP + 0.2)))  # a 5 Hz camera's next
    assert answer == ("no depth image within depth.slop_s=0.05 s of the colour frame (stamp 1006.000); the nearest "
                      "on /cam/depth is 0.200 s away")
    assert 0.15 < waited < 2.5


def test_an_invalid_depth_image_stamped_later_ends_the_wait():
    """A camera that sends unusable depth (mono8, say) has still moved past the frame: no goal waits for it."""
    sync = _sync(wait_s=5.0)
    answer, waited = _match_while(sync, 0.2,
                                  lambda: sync.drop("depth: encoding mono8 is not supported", _header(STAMP + 0.2)))
    assert answer == ("no depth image within depth.slop_s=0.05 s of the colour frame (stamp 1006.000); the nearest "
                      "on /cam/depth is 0.500 s away")
    assert 0.15 < waited < 2.5
    assert sync.dropped == 1 and sync.last_drop == "depth: encoding mono8 is not supported"


def test_no_wait_on_a_topic_where_nothing_has_arrived():
    """No depth camera, or a wrong remap: every goal would pay the wait for a message that never comes."""
    sync = DepthSync(0.05, "/cam/depth", "/cam/info", 5.0)
    started = time.monotonic()
    answer = sync.match(sync.hold(_header(STAMP)))
    assert isinstance(answer, str) and answer.startswith("no depth image has arrived on /cam/depth")
    sync.add_depth(_depth(STAMP))
    answer = sync.match(sync.hold(_header(STAMP)))
    assert isinstance(answer, str) and answer.startswith("no camera_info has arrived on /cam/info")
    assert time.monotonic() - started < 2.5


def test_the_wait_ends_at_wait_s_when_the_depth_never_comes():
    sync = _sync(wait_s=0.3)
    started = time.monotonic()
    answer = sync.match(sync.hold(_header(STAMP)))
    waited = time.monotonic() - started
    assert isinstance(answer, str) and "the nearest on /cam/depth is 0.500 s away" in answer
    assert 0.25 < waited < 2.5
