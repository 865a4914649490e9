"""ament_python package: `ros2 run promptbox_ros locate_node` finds the console script in lib/promptbox_ros."""

from glob import glob

from setuptools import find_packages, setup

package_name = "promptbox_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    # The core library `promptbox` (torch, transformers, mobile_sam) is pip-installed: `pip install ./promptbox`.
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="promptbox maintainers",
    maintainer_email="maintainers@promptbox.dev",
    description="ROS 2 locate action: find the object a command names in the newest camera frame.",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "locate_node = promptbox_ros.main:main",
        ],
    },
)
