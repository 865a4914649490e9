"""Fixtures of the ROS tests. Weights are never downloaded here: the offline flags are set before any Hub library
reads them."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402
import rclpy  # noqa: E402


@pytest.fixture(scope="module")
def ros_context():
    """A context of its own per test module, so modules never see each other's nodes or shutdowns."""
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()
