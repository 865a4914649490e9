"""The package files: the launch file executed by `launch` itself (its arguments and what each one overrides),
setup.py's console script, package.xml's dependencies against what the code imports, and the params file against
the node's declarations."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest
import yaml
from catkin_pkg.package import parse_package
from ros_workspace import require_workspace

require_workspace()

PACKAGE = Path(__file__).resolve().parents[1]
INTERFACES = PACKAGE.parent / "promptbox_interfaces"
LAUNCH_FILE = PACKAGE / "launch" / "locate.launch.py"


def _launch_module():
    spec = importlib.util.spec_from_file_location("locate_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((PACKAGE / "setup.py").read_text())
    setup_call = next(
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "setup"
    )
    entry_points = next(k.value for k in setup_call.keywords if k.arg == "entry_points")
    scripts = ast.literal_eval(entry_points)["console_scripts"]
    return dict((part.strip() for part in line.split("=", 1)) for line in scripts)


def _context(**given: str):
    """A launch context holding every declared argument: its default, or the value given as on the command line."""
    from launch import LaunchContext

    module = _launch_module()
    context = LaunchContext()
    for argument in module.generate_launch_description().get_launch_arguments():
        default = given.get(argument.name)
        if default is None:
            default = "".join(s.perform(context) for s in argument.default_value or [])
        context.launch_configurations[argument.name] = default
    return module, context


def test_launch_file_declares_its_arguments_with_descriptions():
    arguments = _launch_module().generate_launch_description().get_launch_arguments()
    names = [a.name for a in arguments]
    assert names == ["image", "depth_image", "camera_info", "params_file", "namespace", "mode", "min_score", "device",
                     "allow_random_weights", "clip_model", "sam_checkpoint", "image_transport", "autostart",
                     "rectified"]
    assert all(a.description for a in arguments)


def test_parameter_arguments_override_the_file_only_when_given():
    module, context = _context()
    assert module.overrides(context) == {}, "no argument given: the params file decides every parameter"

    module, context = _context(device="cuda", min_score="0.3", allow_random_weights="true", mode="fast",
                               clip_model="tinyclip-8m", sam_checkpoint="/w/mobile_sam.pt", autostart="False",
                               rectified="true")
    assert module.overrides(context) == {
        "device": "cuda", "min_score": 0.3, "allow_random_weights": True, "mode": "fast",
        "clip_model": "tinyclip-8m", "sam_checkpoint": "/w/mobile_sam.pt", "autostart": False,
        "depth.rectified": True,
    }
    for name, value, accepted in [("allow_random_weights", "yes", "accepted: true, false"),
                                  ("min_score", "high", "not a number")]:
        module, context = _context(**{name: value})
        with pytest.raises(ValueError, match=f"{name}:='{value}'.*{accepted}"):
            module.overrides(context)


def test_launch_starts_locate_node_remapping_the_camera_topics():
    module, context = _context(image="/cam/image_raw", device="cuda", depth_image="/cam/aligned_depth/image_raw",
                               camera_info="/cam/color/camera_info")
    node, on_exit = module._node(context)
    assert (node.node_package, node.node_executable) == ("promptbox_ros", "locate_node")
    assert "locate_node" in _console_scripts(), "the launch file's executable must be a console script"
    from launch.utilities import perform_substitutions

    remaps = [tuple(perform_substitutions(context, part) for part in rule) for rule in node._Node__remappings]
    # image/compressed follows the resolved image in the node
    assert remaps == [("image", "/cam/image_raw"), ("depth/image", "/cam/aligned_depth/image_raw"),
                      ("camera_info", "/cam/color/camera_info")]
    assert type(on_exit).__name__ == "RegisterEventHandler"


def test_console_script_resolves_to_main():
    target = _console_scripts()["locate_node"]
    module_name, function = target.split(":")
    assert module_name == "promptbox_ros.main"
    assert callable(getattr(importlib.import_module(module_name), function))


def test_setup_installs_launch_config_and_resource_marker():
    source = (PACKAGE / "setup.py").read_text()
    for needle in ('"share/" + package_name + "/launch"', '"share/" + package_name + "/config"', 'config/*.rviz',
                   "share/ament_index/resource_index/packages", '"resource/" + package_name'):
        assert needle in source
    assert (PACKAGE / "resource" / "promptbox_ros").is_file()
    assert "install_scripts=$base/lib/promptbox_ros" in (PACKAGE / "setup.cfg").read_text()


def _imported_top_modules() -> set[str]:
    names = set()
    for path in [*(PACKAGE / "promptbox_ros").glob("*.py"), LAUNCH_FILE]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
    return names


def test_package_xml_declares_every_ros_package_the_code_imports():
    from ament_index_python.packages import get_packages_with_prefixes

    ros_packages = set(get_packages_with_prefixes()) | {"launch", "launch_ros"}
    imported = (_imported_top_modules() & ros_packages) - {"promptbox_ros"}
    package = parse_package(str(PACKAGE / "package.xml"))
    declared = {d.name for d in package.exec_depends}
    assert imported <= declared, f"imported but not in package.xml: {sorted(imported - declared)}"
    assert {"ros2launch", "lifecycle_msgs", "rcl_interfaces"} <= declared


def test_package_xml_format_3_with_its_dependencies():
    package = parse_package(str(PACKAGE / "package.xml"))
    package.validate()
    assert package.package_format == 3 and package.name == "promptbox_ros"
    assert package.get_build_type() == "ament_python"
    assert all("@" in m.email for m in package.maintainers)
    run = {d.name for d in package.exec_depends}
    build = {d.name for d in package.build_depends}
    for name in ("rclpy", "sensor_msgs", "vision_msgs", "action_msgs", "promptbox_interfaces", "std_msgs",
                 "geometry_msgs", "visualization_msgs"):
        assert name in run and name in build, name
    assert {"python3-numpy", "python3-opencv"} <= run
    assert "python3-pytest" in {d.name for d in package.test_depends}


def test_interfaces_package_xml():
    package = parse_package(str(INTERFACES / "package.xml"))
    package.validate()
    assert package.package_format == 3 and package.name == "promptbox_interfaces"
    assert {"geometry_msgs", "sensor_msgs", "vision_msgs", "action_msgs"} <= {d.name for d in package.build_depends}
    assert "rosidl_interface_packages" in {g.name for g in package.member_of_groups}


def test_config_declares_known_parameters_only():
    from promptbox_ros.locate_node import PARAMETERS

    document = yaml.safe_load((PACKAGE / "config" / "locate.yaml").read_text())
    params = document["/**"]["ros__parameters"]
    flat = {k: v for k, v in params.items() if not isinstance(v, dict)}
    for group in ("amg", "depth"):
        flat.update({f"{group}.{k}": v for k, v in params[group].items()})
    assert set(flat) == set(PARAMETERS), "config/locate.yaml and the node's declarations must name the same parameters"
    for name, value in flat.items():
        default = PARAMETERS[name].default
        # rclpy does not turn 2 into 2.0: a number in the file must have the declared type.
        assert type(value) is type(default), f"{name}: {value!r} in the file, {default!r} declared"


def test_every_core_setting_is_a_parameter_with_a_description():
    from dataclasses import fields

    from promptbox.config import AmgSettings, LocatorConfig
    from promptbox_ros.locate_node import PARAMETERS

    core = {f.name for f in fields(LocatorConfig) if f.name != "amg"} | {f"amg.{f.name}" for f in fields(AmgSettings)}
    assert core <= set(PARAMETERS), f"not exposed to ROS: {sorted(core - set(PARAMETERS))}"
    assert all(spec.description for spec in PARAMETERS.values())


def test_the_fast_map_parameters_reach_the_core_config():
    from promptbox_ros.locate_node import PARAMETERS
    from promptbox_ros.parameters import locator_config

    values = {name: spec.default for name, spec in PARAMETERS.items()}
    assert (locator_config(values).fast_map, locator_config(values).map_window) == ("auto", 0.2)
    config = locator_config({**values, "fast_map": "windows", "map_window": 0.3})
    assert (config.fast_map, config.map_window) == ("windows", 0.3)


def test_every_depth_setting_is_a_parameter_and_bad_ones_name_it():
    from dataclasses import fields

    from promptbox.depth import DepthSettings
    from promptbox_ros.locate_node import PARAMETERS
    from promptbox_ros.parameters import depth_settings

    assert {f"depth.{f.name}" for f in fields(DepthSettings)} <= set(PARAMETERS)
    values = {name: spec.default for name, spec in PARAMETERS.items()}
    assert depth_settings(values) == DepthSettings()
    for name, value, accepted in [("depth.max_range_m", 0.05, "above min_range_m"),
                                  ("depth.extent_percentiles", [98.0, 2.0], "0 <= low < high <= 100"),
                                  ("depth.extent_percentiles", [1.0, 2.0, 3.0], r"\[low, high\]"),
                                  ("depth.min_valid_fraction", 0.0, r"\(0, 1\]")]:
        with pytest.raises(ValueError, match=f"parameter {name}.*{accepted}"):
            depth_settings({**values, name: value})


def test_rviz_config_shows_the_image_debug_image_marker_and_pose():
    document = yaml.safe_load((PACKAGE / "config" / "promptbox.rviz").read_text())
    displays = document["Visualization Manager"]["Displays"]
    shown = {(d["Class"], d["Topic"]["Value"]) for d in displays if "Topic" in d}
    assert shown == {("rviz_default_plugins/Image", "/camera/image_raw"),
                     ("rviz_default_plugins/Image", "/debug_image"),
                     ("rviz_default_plugins/Marker", "/target_marker"),
                     ("rviz_default_plugins/Pose", "/target_pose")}
    assert all(d["Enabled"] for d in displays)
