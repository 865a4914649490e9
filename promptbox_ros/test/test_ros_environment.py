"""The environment itself: our interfaces build, import, and carry a Locate goal over Fast DDS on loopback.

This needs no model, so it fails on exactly one thing: the ROS set-up (tools/setup.sh).
"""

from __future__ import annotations

import threading
import time

# A missing rclpy is a broken set-up, so it fails here rather than skipping.
import rclpy
from rclpy.action import ActionClient, ActionServer
from rclpy.executors import MultiThreadedExecutor
from ros_workspace import require_workspace

require_workspace()


def test_interfaces_have_the_contract_fields():
    from promptbox_interfaces.action import Locate
    from vision_msgs.msg import Detection2D

    goal, result, feedback = Locate.Goal(), Locate.Result(), Locate.Feedback()
    assert goal.get_fields_and_field_types() == {
        "command": "string",
        "image": "sensor_msgs/Image",
        "min_score": "float",
        "return_mask": "boolean",
        "wait_for_new_frame": "boolean",
    }
    assert result.get_fields_and_field_types() == {
        "found": "boolean",
        "target": "string",
        "detection": "vision_msgs/Detection2D",
        "mask": "sensor_msgs/Image",
        "message": "string",
        "has_pose": "boolean",
        "pose": "geometry_msgs/PoseStamped",
        "size": "geometry_msgs/Vector3",
    }
    assert feedback.get_fields_and_field_types() == {"stage": "string", "progress": "float"}
    detection = Detection2D()
    # vision_msgs 4.x names, which users' code reads.
    detection.bbox.center.position.x = 1.5
    detection.bbox.size_x = 2.0
    assert Detection2D.get_fields_and_field_types() == {
        "header": "std_msgs/Header",
        "results": "sequence<vision_msgs/ObjectHypothesisWithPose>",
        "bbox": "vision_msgs/BoundingBox2D",
        "id": "string",
    }


def test_the_real_vision_msgs_and_our_packages_from_colcon():
    from ament_index_python.packages import get_package_prefix
    from composition_interfaces.srv import LoadNode  # launch_ros imports it at load time
    from vision_msgs.msg import BoundingBox3D, Detection3DArray, VisionInfo  # absent from a hand-written 2D subset

    assert {LoadNode, BoundingBox3D, Detection3DArray, VisionInfo}
    for package in ("promptbox_interfaces", "promptbox_ros"):
        assert get_package_prefix(package).endswith(f"install/{package}"), package


def test_locate_goal_round_trip_over_dds():
    from promptbox_interfaces.action import Locate

    context = rclpy.Context()
    rclpy.init(context=context)
    server_node = rclpy.create_node("env_locate_server", context=context)
    client_node = rclpy.create_node("env_locate_client", context=context)

    def execute(goal_handle):
        goal_handle.publish_feedback(Locate.Feedback(stage="selecting", progress=0.5))
        goal_handle.succeed()
        result = Locate.Result(found=True, target=goal_handle.request.command.upper(), message="echo")
        result.detection.bbox.size_x = 7.0
        return result

    server = ActionServer(server_node, Locate, "locate", execute)
    client = ActionClient(client_node, Locate, "locate")
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(server_node)
    executor.add_node(client_node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        assert client.wait_for_server(timeout_sec=20.0), "the action server never appeared over DDS"
        feedback: list[str] = []
        send = client.send_goal_async(Locate.Goal(command="scissors"), feedback_callback=lambda m: feedback.append(
            m.feedback.stage))
        handle = _wait(send, 20.0)
        assert handle.accepted
        result = _wait(handle.get_result_async(), 20.0).result
        assert (result.found, result.target, result.message) == (True, "SCISSORS", "echo")
        assert result.detection.bbox.size_x == 7.0
        deadline = time.monotonic() + 5.0
        while not feedback and time.monotonic() < deadline:
            time.sleep(0.05)
        assert feedback == ["selecting"]
    finally:
        executor.shutdown()
        server.destroy()
        client.destroy()
        server_node.destroy_node()
        client_node.destroy_node()
        rclpy.shutdown(context=context)
        spinner.join(timeout=5.0)


def _wait(future, timeout: float):
    deadline = time.monotonic() + timeout
    while not future.done():
        if time.monotonic() > deadline:
            raise TimeoutError("no answer over DDS")
        time.sleep(0.02)
    return future.result()
