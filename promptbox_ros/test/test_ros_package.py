"""Static checks of the package files. The `launch` packages cannot be installed here, so the launch file is read
with `ast` instead of executed: its arguments, the node it starts, its remaps and its parameters."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import yaml
from catkin_pkg.package import parse_package

PACKAGE = Path(__file__).resolve().parents[1]
INTERFACES = PACKAGE.parent / "promptbox_interfaces"
LAUNCH_FILE = PACKAGE / "launch" / "locate.launch.py"


def _symbolic(node: ast.AST, names: dict[str, ast.AST]) -> object:
    """A launch expression as plain data: literals as themselves, calls as (callee, args, kwargs)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_symbolic(item, names) for item in node.elts]
    if isinstance(node, ast.Dict):
        return {_symbolic(k, names): _symbolic(v, names) for k, v in zip(node.keys, node.values, strict=True)}
    if isinstance(node, ast.Name) and node.id in names:
        return _symbolic(names[node.id], names)
    if isinstance(node, ast.Call):
        callee = ast.unparse(node.func)
        args = [_symbolic(a, names) for a in node.args]
        kwargs = {k.arg: _symbolic(k.value, names) for k in node.keywords}
        return (callee, args, kwargs)
    return ast.unparse(node)


def _launch_calls() -> list[tuple[str, list, dict]]:
    tree = ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))
    names = {
        target.id: node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    return [_symbolic(node, names) for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((PACKAGE / "setup.py").read_text())
    setup_call = next(
        n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "setup"
    )
    entry_points = next(k.value for k in setup_call.keywords if k.arg == "entry_points")
    scripts = ast.literal_eval(entry_points)["console_scripts"]
    return dict((part.strip() for part in line.split("=", 1)) for line in scripts)


def test_launch_file_declares_its_arguments_and_starts_locate_node():
    calls = _launch_calls()
    assert any(c[0] == "generate_launch_description" or c[0] == "LaunchDescription" for c in calls)
    declared = {c[1][0]: c[2] for c in calls if c[0] == "DeclareLaunchArgument"}
    assert set(declared) == {"image", "params_file", "device", "namespace"}
    assert all(kw.get("description") for kw in declared.values())
    default_params = declared["params_file"]["default_value"]
    assert default_params[0] == "PathJoinSubstitution"
    assert default_params[1][0] == [("FindPackageShare", ["promptbox_ros"], {}), "config", "locate.yaml"]

    nodes = [c for c in calls if c[0] == "Node"]
    assert len(nodes) == 1
    node = nodes[0][2]
    assert node["package"] == "promptbox_ros"
    assert node["executable"] == "locate_node"
    assert "locate_node" in _console_scripts(), "the launch file's executable must be a console script"
    assert node["namespace"] == ("LaunchConfiguration", ["namespace"], {})

    image = ("LaunchConfiguration", ["image"], {})
    assert node["remappings"] == [["image", image], ["image/compressed", [image, "/compressed"]]]
    # The file first, then the device argument, so `device:=cuda` wins over the file.
    assert node["parameters"] == [
        ("LaunchConfiguration", ["params_file"], {}),
        {"device": ("LaunchConfiguration", ["device"], {})},
    ]


def test_launch_file_compiles_and_names_only_launch_modules():
    source = LAUNCH_FILE.read_text()
    compile(source, str(LAUNCH_FILE), "exec")
    imported = {
        node.module.split(".")[0] for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)
    }
    assert imported == {"launch", "launch_ros"}


def test_console_script_resolves_to_main():
    target = _console_scripts()["locate_node"]
    module_name, function = target.split(":")
    assert module_name == "promptbox_ros.locate_node"
    assert callable(getattr(importlib.import_module(module_name), function))


def test_setup_installs_launch_config_and_resource_marker():
    source = (PACKAGE / "setup.py").read_text()
    for needle in ('"share/" + package_name + "/launch"', '"share/" + package_name + "/config"',
                   "share/ament_index/resource_index/packages", '"resource/" + package_name'):
        assert needle in source
    assert (PACKAGE / "resource" / "promptbox_ros").is_file()
    assert "install_scripts=$base/lib/promptbox_ros" in (PACKAGE / "setup.cfg").read_text()


def test_package_xml_format_3_with_its_dependencies():
    package = parse_package(str(PACKAGE / "package.xml"))
    package.validate()
    assert package.package_format == 3 and package.name == "promptbox_ros"
    assert package.get_build_type() == "ament_python"
    assert all("@" in m.email for m in package.maintainers)
    run = {d.name for d in package.exec_depends}
    build = {d.name for d in package.build_depends}
    for name in ("rclpy", "sensor_msgs", "vision_msgs", "action_msgs", "promptbox_interfaces", "std_msgs"):
        assert name in run and name in build, name
    assert {"python3-numpy", "python3-opencv"} <= run
    assert "python3-pytest" in {d.name for d in package.test_depends}


def test_interfaces_package_xml():
    package = parse_package(str(INTERFACES / "package.xml"))
    package.validate()
    assert package.package_format == 3 and package.name == "promptbox_interfaces"
    assert {"sensor_msgs", "vision_msgs", "action_msgs"} <= {d.name for d in package.build_depends}
    assert "rosidl_interface_packages" in {g.name for g in package.member_of_groups}


def test_config_declares_known_parameters_only():
    from promptbox_ros.locate_node import PARAMETERS

    document = yaml.safe_load((PACKAGE / "config" / "locate.yaml").read_text())
    params = document["/**"]["ros__parameters"]
    flat = {k: v for k, v in params.items() if k != "amg"}
    flat.update({f"amg.{k}": v for k, v in params["amg"].items()})
    assert set(flat) == set(PARAMETERS), "config/locate.yaml and the node's declarations must name the same parameters"
    for name, value in flat.items():
        default = PARAMETERS[name][0]
        # rclpy does not turn 2 into 2.0: a number in the file must have the declared type.
        assert type(value) is type(default), f"{name}: {value!r} in the file, {default!r} declared"


def test_every_core_setting_is_a_parameter_with_a_description():
    from dataclasses import fields

    from promptbox.config import AmgSettings, LocatorConfig
    from promptbox_ros.locate_node import PARAMETERS

    core = {f.name for f in fields(LocatorConfig) if f.name != "amg"} | {f"amg.{f.name}" for f in fields(AmgSettings)}
    assert core <= set(PARAMETERS), f"not exposed to ROS: {sorted(core - set(PARAMETERS))}"
    assert all(description for _, description in PARAMETERS.values())
