"""The `locate_node` process: checks that the core library is installed, builds the node, configures and activates it
when `autostart` is set, spins, and ends cleanly on SIGINT or SIGTERM however many arrive.

`ros2 launch` forwards a terminal's Ctrl-C to the node, which then gets two SIGINTs about 50 ms apart. rclpy's own
handler turns the second into a KeyboardInterrupt inside the clean-up, so this process installs its own: every
signal only asks the spin loop to stop.
"""

from __future__ import annotations

import signal
import sys
import threading

_CORE_MISSING = (
    "locate_node cannot start: the core library `promptbox` is not installed for {python}.\n"
    "Install it with the Python that runs ROS: `{python} -m pip install <promptbox repository>/promptbox` "
    "(in a venv, create it with --system-site-packages so rclpy stays visible), then start the node again."
)
_SPIN_S = 0.1  # how often the spin loop looks at the stop flag


def core_missing() -> str | None:
    """The message for a missing core library, or None when `promptbox` imports."""
    try:
        import promptbox  # noqa: F401 - a pip package, not a ROS dependency: rosdep cannot install it
    except ModuleNotFoundError as error:
        if error.name != "promptbox":
            raise
        return _CORE_MISSING.format(python=sys.executable)
    return None


def main(args: list[str] | None = None) -> int:
    missing = core_missing()
    if missing:
        print(missing, file=sys.stderr)
        return 1

    import rclpy
    from rclpy.exceptions import ParameterException
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    from promptbox_ros.locate_node import EXECUTOR_THREADS, LocateNode

    stop = threading.Event()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    logger = rclpy.logging.get_logger("locate_node")
    try:
        node = LocateNode()
    except (ParameterException, ValueError) as error:  # e.g. `min_score: 1` in a file: an int for a double
        logger.fatal(f"locate_node cannot start: {error}")
        rclpy.try_shutdown()
        return 1
    if node.autostart and not node.start():
        # Same text as the CLI: which file is missing, where it looked, and the fix (with the ROS syntax).
        logger.fatal(f"locate_node cannot start: {node.start_error}")
        node.destroy_node()
        rclpy.try_shutdown()
        return 1
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    try:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=_SPIN_S)
    finally:
        node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
