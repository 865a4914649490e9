"""Start locate_node on a camera topic: `ros2 launch promptbox_ros locate.launch.py image:=/camera/color/image_raw`.
With an RGB-D camera, also `depth_image:=<depth aligned to colour> camera_info:=<its camera_info>` for 3D poses.

The params file is authoritative: a parameter argument below overrides it only when given on the command line.
The node configures and activates itself (its `autostart` parameter, true by default); `autostart:=false` leaves
it unconfigured for a lifecycle manager. When the node ends, the launch ends, and exits non-zero if the node did.
"""

import signal

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

FROM_FILE = ""  # an empty argument leaves the params file's value
# Parameters users commonly change: launch argument -> (type, description).
OVERRIDES = {
    "mode": (str, "search mode: exact | fast | upstream"),
    "min_score": (float, "calibrated score below which the answer is 'not found', 0..1"),
    "device": (str, "torch device: cpu | cuda | cuda:N"),
    "allow_random_weights": (bool, "true: random-init models when checkpoints are missing (plumbing checks only)"),
    "clip_model": (str, "tinyclip-61m | tinyclip-8m | clip-b32 | a Hugging Face id | a local directory"),
    "sam_checkpoint": (str, "path to mobile_sam.pt"),
    "image_transport": (str, "raw: subscribe to <image> | compressed: to <image>/compressed"),
    "autostart": (bool, "true: configure and activate at start-up | false: wait for a lifecycle manager"),
    "rectified": (bool, "true: rectified images, 3D from camera_info's P | false: raw images, K and D"),
}
# A launch argument whose parameter has another name (the depth parameters are grouped under `depth.`).
PARAMETER_OF = {"rectified": "depth.rectified"}


class LocateNodeFailed(RuntimeError):
    """Raised when locate_node exits non-zero: launch then shuts down with this reason and exits 1."""


def _typed(name: str, text: str, kind: type) -> object:
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(f"launch argument {name}:={text!r} is not a boolean; accepted: true, false")
        return text.lower() == "true"
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"launch argument {name}:={text!r} is not a number; accepted: e.g. 0.3") from None
    return text


def overrides(context) -> dict[str, object]:
    """The parameter arguments given on the command line, typed as the node declares them."""
    given = {}
    for name, (kind, _) in OVERRIDES.items():
        text = LaunchConfiguration(name).perform(context)
        if text != FROM_FILE:
            given[PARAMETER_OF.get(name, name)] = _typed(name, text, kind)
    return given


def _ended(event, context):
    code = event.returncode
    if code < 0:
        raise LocateNodeFailed(f"locate_node was killed by {signal.Signals(-code).name}")
    if code != 0:
        raise LocateNodeFailed(f"locate_node exited with code {code}; its message is above")
    return [Shutdown(reason="locate_node exited")]


def _node(context):
    parameters = [LaunchConfiguration("params_file")]
    given = overrides(context)
    if given:
        parameters.append(given)
    node = Node(
        package="promptbox_ros",
        executable="locate_node",
        name="locate_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=parameters,
        # The node derives <image>/compressed from the resolved `image` when image_transport is compressed.
        remappings=[("image", LaunchConfiguration("image")),
                    ("depth/image", LaunchConfiguration("depth_image")),
                    ("camera_info", LaunchConfiguration("camera_info"))],
    )
    return [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_ended))]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument(
            "image", default_value="/camera/image_raw",
            description="camera topic (sensor_msgs/Image); with image_transport compressed, <image>/compressed"),
        DeclareLaunchArgument(
            "depth_image", default_value="/camera/depth/image_raw",
            description="depth aligned to the camera topic (16UC1 mm or 32FC1 m), for 3D poses"),
        DeclareLaunchArgument(
            "camera_info", default_value="/camera/camera_info",
            description="sensor_msgs/CameraInfo of the aligned depth (the colour camera's)"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("promptbox_ros"), "config", "locate.yaml"]),
            description="YAML file with the node's parameters"),
        DeclareLaunchArgument(
            "namespace", default_value="", description="namespace for the node, its action and its topics"),
        *[
            DeclareLaunchArgument(name, default_value=FROM_FILE,
                                  description=f"{description}; empty: the params file's value")
            for name, (_, description) in OVERRIDES.items()
        ],
        OpaqueFunction(function=_node),
    ])
