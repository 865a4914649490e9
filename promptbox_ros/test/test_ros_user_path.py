"""The ROS side as a user runs it: `ros2 launch`, a camera in its own process, `ros2 action send_goal --feedback`,
`ros2 topic echo`, `ros2 param get`, lifecycle transitions with `ros2 service call`, and Ctrl-C. Every command is a
separate process typed as in the README; they inherit this run's ROS_DOMAIN_ID (tools/run_tests.sh picks one).

The node runs random-init models (allow_random_weights:=true) with plumbing thresholds in a params file of the test's
own, so a 2x2 prompt grid keeps a goal near a second and every goal on the camera frame has a mask.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ros_workspace import require_ros2_cli

require_ros2_cli()

import rclpy  # noqa: E402
from locate_rig import Inbox, Spinning  # noqa: E402
from promptbox_interfaces.action import Locate  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "config" / "locate.yaml"
CAMERA = "/cam/image_raw"
LAUNCH = ["ros2", "launch", "promptbox_ros", "locate.launch.py"]
STAGES = ["waiting_for_image", "embedding", "proposing", "matching", "selecting"]
PLUMBING = {"min_score": 0.0, "warmup": False, "image_timeout_s": 3.0, "max_image_age_s": 1.0}
PLUMBING_AMG = {"points_per_side": 2, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "min_mask_region_area": 0}


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


def _run(command: list[str], timeout: float = 60.0, **kwargs) -> subprocess.CompletedProcess:
    """A command run to its end; its output is printed so a failing assertion shows what the user would see."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=kwargs.pop("env", _env()),
                          **kwargs)
    print(f"$ {' '.join(command)}  (exit {done.returncode})\n{done.stdout}{done.stderr}")
    return done


def _until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"within {timeout:.0f} s: {what}")
        time.sleep(0.1)
    return value


class Camera:
    """camera_publisher.py in its own process, which a test can kill (SIGTERM, as `kill` sends) and start again.
    Not SIGKILL: a Fast DDS process killed so leaves shared-memory state behind, after which 640x480 frames stop
    arriving on the domain (seen here), and the restart must test the node, not that. Not UDP-only either: 640x480
    frames over UDP lose fragments whenever the receiver lags, which a busy CI runner makes it do."""

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, str(HERE / "camera_publisher.py"), CAMERA], env=_env(),
                                        start_new_session=True)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # the camera stops publishing at once and leaves DDS cleanly
            self.process.wait(timeout=10)


def _plumbing_params(folder: Path, **overrides: float) -> Path:
    document = yaml.safe_load(CONFIG.read_text())
    params = document["/**"]["ros__parameters"]
    params.update({**PLUMBING, **overrides})
    params["amg"].update(PLUMBING_AMG)
    params_file = folder / "plumbing.yaml"
    params_file.write_text(yaml.safe_dump(document))
    return params_file


def _active(launch: Launched) -> None:
    _until(lambda: "active: serving /locate" in launch.text() or launch.process.poll() is not None, 180,
           "the launched node became active")
    assert launch.process.poll() is None, launch.text()


class Launched:
    """`ros2 launch` in a process group of its own, as a terminal runs it; its output goes to a file."""

    def __init__(self, arguments: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self._out = log.open("w")
        self.process = subprocess.Popen(LAUNCH + arguments, stdout=self._out, stderr=subprocess.STDOUT,
                                        env=env or _env(), start_new_session=True)

    def text(self) -> str:
        return self.log.read_text()

    def ctrl_c(self) -> None:
        """What a terminal's Ctrl-C does: SIGINT to every process of the foreground group."""
        os.killpg(self.process.pid, signal.SIGINT)

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._out.close()


@pytest.fixture(scope="module")
def graph(ros_context):
    """A plain rclpy node of the test's own, only to look at the graph (who subscribes to what)."""
    node = rclpy.create_node("pbtest_user_path_graph", context=ros_context)
    yield node
    node.destroy_node()


@pytest.fixture(scope="module")
def camera():
    camera = Camera()
    yield camera
    camera.kill()
    _run(["ros2", "daemon", "stop"])  # the CLI's daemon outlives the commands; it belongs to this test


@pytest.fixture(scope="module")
def launched(tmp_path_factory, camera):
    folder = tmp_path_factory.mktemp("user_path")
    launch = Launched(["allow_random_weights:=true", f"image:={CAMERA}", f"params_file:={_plumbing_params(folder)}"],
                      folder / "launch.log")
    try:
        _active(launch)
        yield launch
    finally:
        print(launch.text())
        launch.kill()


def test_show_args_lists_every_argument():
    done = _run(LAUNCH + ["--show-args"])
    assert done.returncode == 0
    for name in ("image", "depth_image", "camera_info", "params_file", "namespace", "mode", "min_score", "device",
                 "allow_random_weights", "clip_model", "sam_checkpoint", "image_transport", "autostart", "rectified"):
        assert f"'{name}':" in done.stdout, name
    assert done.stdout.count("empty: the params file's value") == 9


def test_send_goal_with_feedback_and_topic_echo(launched, graph):
    # The type given, as users do for a topic whose publisher may not be discovered yet.
    echo = subprocess.Popen(["ros2", "topic", "echo", "/detection", "vision_msgs/msg/Detection2D", "--once"],
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=_env())
    try:
        _until(lambda: graph.count_subscribers("/detection") > 0 or echo.poll() is not None, 60,
               "`ros2 topic echo /detection` subscribed")
        assert echo.poll() is None, echo.communicate()[0]
        goal = ["ros2", "action", "send_goal", "/locate", "promptbox_interfaces/action/Locate",
                "{command: 'take the scissors'}", "--feedback"]
        done = _succeeds_within(goal, 60)
        # The graph seeing the echo's subscription does not mean the node's publisher has matched it yet (a
        # volatile topic drops what it published before; seen on this VM): another goal publishes again, sent as
        # the first was (a fresh-clone CI saw that goal meet the stale-frame message, 2026-11-25).
        for again in range(3):
            try:
                echoed, _ = echo.communicate(timeout=30)
                break
            except subprocess.TimeoutExpired:
                assert again < 2, "`ros2 topic echo /detection` printed nothing after 3 goals"
                _succeeds_within(goal, 60)
    finally:
        echo.kill()
    print(f"$ ros2 topic echo /detection vision_msgs/msg/Detection2D --once\n{echoed}")

    assert done.returncode == 0
    out = done.stdout
    assert "Goal accepted" in out
    printed = [line.split(":", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("stage:")]
    # What the CLI printed is what it received, and it does not receive everything the node sent. Its first
    # feedback message can be published before the CLI's feedback subscription has matched the node's publisher:
    # `send_goal` waits for the action's services, not for that topic (seen once in a fresh-clone CI: every stage but
    # "waiting_for_image"). At its end, rclpy's action client takes one feedback message per wake-up and the CLI
    # stops at the wake-up that brings the result, so the quick last stages can still be queued behind it (seen on
    # this VM: every stage but "selecting"; in a loaded fresh-clone CI: every stage but "matching" and "selecting").
    # The node's full, ordered stage list is asserted over rclpy in test_ros_node.py. Here: the stages printed come
    # in order, none skipped between the first and the last, and "embedding" is there (the image encoder runs
    # after it, long enough for the CLI to take it before the result exists).
    first = STAGES.index(printed[0]) if printed and printed[0] in STAGES else -1
    assert first in (0, 1) and printed == STAGES[first:first + len(printed)], printed
    assert "embedding" in printed, printed
    assert "Goal finished with status: SUCCEEDED" in out
    assert "found: true" in out and "target: scissors" in out
    assert "[RANDOM WEIGHTS]" in out and "s old" in out  # the age of the frame used

    assert echo.returncode == 0
    assert "class_id: scissors" in echoed and "frame_id: camera_optical" in echoed


def _param_get(name: str) -> subprocess.CompletedProcess:
    """`ros2 param get /locate_node NAME`, run again (at most 3 times) while the CLI says only that the node's
    parameter services were not matched within its fixed 5 s: Fast DDS on this VM sometimes matches them late
    ("Inconsistent TypeObject"), and a user would run the command again. Any other outcome is returned as it is."""
    for _ in range(3):
        done = _run(["ros2", "param", "get", "/locate_node", name])
        if "Wait for service timed out waiting for parameter services" not in done.stderr:
            break
    return done


def test_param_get_reads_the_params_file(launched):
    done = _param_get("mode")
    assert done.returncode == 0 and "String value is: exact" in done.stdout
    # min_score was not given on the command line: the file's 0.0 stands (the default file says 0.5).
    done = _param_get("min_score")
    assert "Double value is: 0.0" in done.stdout


def test_a_camera_that_dies_gives_the_stale_frame_message_and_a_restart_recovers(launched, camera, graph):
    goal = ["ros2", "action", "send_goal", "/locate", "promptbox_interfaces/action/Locate", "{command: 'the cup'}"]
    inbox = Inbox(graph, Image, CAMERA, qos_profile_sensor_data)
    spinning = Spinning(graph.context, graph, threads=2)

    def streaming(since: float, frames: int = 5) -> bool:
        """`frames` camera frames stamped after `since` have been delivered: discovery is done, the stream steady."""
        return sum(m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 > since for m in inbox.snapshot()) >= frames

    try:
        _until(lambda: streaming(0.0), 60, "the camera's frames arrive")
        _succeeds_within(goal, 60)  # the node has a frame

        camera.kill()
        time.sleep(1.5)  # longer than max_image_age_s=1 in the plumbing file
        done = _run(goal, timeout=120)
        assert "Goal finished with status: ABORTED" in done.stdout
        assert f"the newest frame on {CAMERA} is " in done.stdout and "is the camera still publishing?" in done.stdout
        assert "target: cup" in done.stdout

        # The next goal goes once the new camera streams: a python process starting under a loaded CI takes longer
        # than the node's image_timeout_s, and that would test the runner's load, not the node's recovery.
        restarted = time.time()
        camera.start()
        _until(lambda: streaming(restarted), 60, "the restarted camera's frames arrive")
    finally:
        spinning.stop()
        graph.destroy_subscription(inbox.subscription)
    _succeeds_within(goal, 60)


def _succeeds_within(goal: list[str], seconds: float) -> subprocess.CompletedProcess:
    """`goal` sent until it succeeds, each miss being exactly the stale-frame message. The test's own subscription
    receiving the camera does not mean the node's does at that moment: on this VM the node's newest frame was
    sometimes seconds old while the test's were fresh (in 5 of 12 runs of this file, in this test and in the
    feedback test; alone, once in 6 runs, on a domain not checked for leftovers), with this session's code and the
    previous stop's alike. What
    is tested is that the node serves from the camera (and recovers after its restart), so a goal is sent again, 2 s
    apart."""
    deadline = time.monotonic() + seconds
    while "Goal finished with status: SUCCEEDED" not in (done := _run(goal, timeout=120)).stdout:
        assert "is the camera still publishing?" in done.stdout, done.stdout
        assert time.monotonic() < deadline, f"within {seconds:.0f} s: a goal succeeded"
        time.sleep(2)
    return done


def _transition(transition_id: int) -> str:
    done = _run(["ros2", "service", "call", "/locate_node/change_state", "lifecycle_msgs/srv/ChangeState",
                 f"{{transition: {{id: {transition_id}}}}}"], timeout=120)
    assert done.returncode == 0
    return done.stdout


def _state() -> str:
    return _run(["ros2", "service", "call", "/locate_node/get_state", "lifecycle_msgs/srv/GetState"]).stdout


def test_lifecycle_deactivate_cleanup_configure_activate(launched, graph):
    assert "label='active'" in _state()

    assert "success=True" in _transition(4)  # deactivate
    assert "label='inactive'" in _state()
    _until(lambda: graph.count_subscribers(CAMERA) == 0, 10, "the camera subscription was removed")
    assert "/locate" not in _run(["ros2", "action", "list"]).stdout.split()
    done = _run(["ros2", "param", "set", "/locate_node", "mode", "fast"])
    assert "locate_node reads its parameters at configure" in done.stdout + done.stderr

    assert "success=True" in _transition(2)  # cleanup
    assert "label='unconfigured'" in _state()
    _until(lambda: "unconfigured: models freed" in launched.text(), 10, "cleanup logged")
    # A value set while unconfigured is the one configure reads. 30 s for a frame: right after reloading the models,
    # a loaded 2-core runner once delivered no camera frame for 4 s (CI), and this test is about the transitions.
    done = _run(["ros2", "param", "set", "/locate_node", "image_timeout_s", "30.0"])
    assert "Set parameter successful" in done.stdout

    assert "success=True" in _transition(1)  # configure: loads the models again
    assert "Double value is: 30.0" in _run(["ros2", "param", "get", "/locate_node", "image_timeout_s"]).stdout
    assert "success=True" in _transition(3)  # activate
    _until(lambda: graph.count_subscribers(CAMERA) > 0, 10, "the camera subscription is back")
    done = _run(["ros2", "action", "send_goal", "/locate", "promptbox_interfaces/action/Locate",
                 "{command: 'the cup'}"], timeout=120)
    assert "Goal finished with status: SUCCEEDED" in done.stdout


def test_ctrl_c_ends_the_launch_and_the_node_cleanly(launched):
    launched.ctrl_c()  # the node gets this SIGINT and, 50 ms later, the one launch forwards
    assert launched.wait(timeout=60) == 0
    text = launched.text()
    assert "process has finished cleanly" in text
    for sign in ("Traceback", "KeyboardInterrupt", "process has died", "exit code -2"):
        assert sign not in text, sign


def test_launch_ends_with_the_reason_when_the_node_cannot_start(tmp_path):
    empty = tmp_path / "weights"
    empty.mkdir()
    hub = tmp_path / "hf" / "hub"
    env = _env(PROMPTBOX_WEIGHTS_DIR=str(empty), HF_HOME=str(hub.parent), HF_HUB_CACHE=str(hub))
    launch = Launched([f"image:={CAMERA}"], tmp_path / "launch.log", env=env)
    try:
        code = launch.wait(timeout=120)
    finally:
        launch.kill()
        print(launch.text())
    text = launch.text()
    assert code != 0
    assert "locate_node cannot start" in text and "mobile_sam" in text
    assert "allow_random_weights:=true" in text and "allow_random_weights=True" not in text
    assert "locate_node exited with code 1" in text


def test_a_node_killed_mid_goal_is_reported_by_launch_and_seen_by_the_client(tmp_path, camera, ros_context):
    # The goal must reach its embedding stage: a freshly activated node on a busy runner can take longer than the
    # plumbing file's 3 s to receive its first frame (seen in CI), and this test is not about that timeout.
    params = _plumbing_params(tmp_path, image_timeout_s=30.0)
    launch = Launched(["allow_random_weights:=true", f"image:={CAMERA}", f"params_file:={params}"],
                      tmp_path / "launch.log")
    planner = rclpy.create_node("pbtest_user_path_planner", context=ros_context)
    spinning = Spinning(ros_context, planner, threads=2)
    client = ActionClient(planner, Locate, "/locate")
    try:
        if camera.process.poll() is not None:
            camera.start()
        _active(launch)
        pid = int(launch.text().split("[locate_node-1]: process started with pid [", 1)[1].split("]", 1)[0])
        _until(lambda: client.wait_for_server(timeout_sec=0.1), 30, "the planner found the server")
        feedback: list = []
        future = client.send_goal_async(Locate.Goal(command="the cup"),
                                        feedback_callback=lambda m: feedback.append(m.feedback.stage))
        handle = _until(lambda: future.done() and future.result(), 30, "goal accepted")
        result = handle.get_result_async()
        _until(lambda: "embedding" in feedback, 60, "the goal started")
        os.kill(pid, signal.SIGKILL)

        # The result never comes; a client with a timeout sees the server go away instead, once DDS notices the
        # dead participant (Fast DDS: a lease of about 20 s).
        _until(lambda: not client.server_is_ready(), 45, "the client saw the server disappear")
        assert not result.done()
        assert launch.wait(timeout=30) == 1
        text = launch.text()
        assert f"process has died [pid {pid}, exit code -9" in text
        assert "locate_node was killed by SIGKILL" in text
    finally:
        print(launch.text())
        launch.kill()
        client.destroy()
        spinning.stop()
        planner.destroy_node()
