"""Whether this machine has the built ROS workspace and the ros2 tools; tests that need them skip, saying why."""

from __future__ import annotations

import os
import shutil

import pytest


def require_workspace() -> None:
    """Skip the calling module when tools/setup.sh could not build the colcon workspace."""
    reason = os.environ.get("PROMPTBOX_ROS_SKIP")
    if reason:
        pytest.skip(f"the ROS workspace is not built: {reason}", allow_module_level=True)


def require_ros2_cli() -> None:
    """Skip the calling module when the `ros2` command (ros2cli, ros2launch) is not installed."""
    require_workspace()
    if shutil.which("ros2") is None:
        pytest.skip("no `ros2` command: install ROS 2 or put ../shared/ros-tools beside the repository and run "
                    "make setup", allow_module_level=True)
