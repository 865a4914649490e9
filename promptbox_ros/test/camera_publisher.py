"""A camera for the user-path tests, run as its own process: the coffee photo as 640x480 bgr8 frames at 5 Hz on the
topic given (`python camera_publisher.py /cam/image_raw`), stamped with the wall clock, until SIGINT or SIGTERM."""

from __future__ import annotations

import signal
import sys
import threading

import rclpy
from locate_rig import bgr8, camera_frame
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header


def main(topic: str) -> int:
    stop = threading.Event()
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    node = rclpy.create_node("pbtest_camera")
    publisher = node.create_publisher(Image, topic, qos_profile_sensor_data)
    frame = camera_frame()
    while not stop.wait(0.2):
        header = Header(stamp=node.get_clock().now().to_msg(), frame_id="camera_optical")
        publisher.publish(bgr8(frame, header))
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
