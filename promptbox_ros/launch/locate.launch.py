"""Start locate_node on a camera topic: `ros2 launch promptbox_ros locate.launch.py image:=/camera/color/image_raw`."""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    image = LaunchConfiguration("image")
    return LaunchDescription([
        DeclareLaunchArgument(
            "image", default_value="/camera/image_raw",
            description="sensor_msgs/Image topic to locate objects in; <image>/compressed is subscribed as well"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("promptbox_ros"), "config", "locate.yaml"]),
            description="YAML file with the node's parameters"),
        DeclareLaunchArgument(
            "device", default_value="cpu", description="torch device (cpu, cuda, cuda:N); overrides params_file"),
        DeclareLaunchArgument(
            "namespace", default_value="", description="namespace for the node, its action and its topics"),
        Node(
            package="promptbox_ros",
            executable="locate_node",
            name="locate_node",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            parameters=[LaunchConfiguration("params_file"), {"device": LaunchConfiguration("device")}],
            remappings=[
                ("image", image),
                ("image/compressed", [image, "/compressed"]),
            ],
        ),
    ])
