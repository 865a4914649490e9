"""Soak: 200 sequential goals against locate_node started by `ros2 launch`, with the committed synthetic-world weights
(MobileSAM vit_t and world CLIP) in fast mode, over real rclpy and Fast DDS. This process plays the camera (world
scenes, every frame new, so the encoder runs for every goal and the frame cache keeps turning over) and the planner.

Every tenth goal is canceled once it reaches the mask decoder, and every 25th searches its own, smaller goal image.
Each goal must end succeeded, aborted or canceled within GOAL_TIMEOUT_S, and nine in ten of those not canceled must
succeed (an abort must say why); the node's resident memory (its own process, from /proc) after the last goal must
stay within 10% of what it was after goal 20. Per-goal timings and the RSS numbers are printed (run with -s).
Both sides talk UDP only, as a networked camera does: a Fast DDS shared-memory writer elsewhere on the host that
dies or stalls must not decide a 40-minute run. Marked slow: `make soak` runs it, `make test` leaves it out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from ros_workspace import require_ros2_cli

require_ros2_cli()

import cv2  # noqa: E402
import rclpy  # noqa: E402
from action_msgs.msg import GoalStatus  # noqa: E402
from locate_rig import Rig, Spinning, result_of, until  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from promptbox.world import write_dataset  # noqa: E402
from promptbox_ros.images import rgb_to_image  # noqa: E402

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
WORLD = HERE.parents[1] / "weights" / "world"
CONFIG = HERE.parent / "config" / "locate.yaml"
CAMERA = "/soak_cam/image_raw"
GOALS = 200
RSS_AT = 20  # the reference: models loaded, caches and allocator pools warm
RSS_GROWTH = 0.10
GOAL_TIMEOUT_S = 60.0
SCENES = 10
SUCCEEDED_SHARE = 0.9  # of the goals not canceled
UDP = {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}
ENDED = {GoalStatus.STATUS_SUCCEEDED: "succeeded", GoalStatus.STATUS_ABORTED: "aborted",
         GoalStatus.STATUS_CANCELED: "canceled"}


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no VmRSS")


def _params(folder: Path) -> Path:
    document = yaml.safe_load(CONFIG.read_text())
    params = document["/**"]["ros__parameters"]
    params.update({"sam_checkpoint": str(WORLD / "mobile_sam.pt"), "clip_model": str(WORLD / "world-clip"),
                   "mode": "fast", "allow_random_weights": False, "image_timeout_s": 10.0, "max_image_age_s": 5.0})
    path = folder / "soak.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(RGB frame, its commands) per scene: the world's own commands, with their truth's variety of tags."""
    folder = write_dataset(tmp_path_factory.mktemp("soak-world"), SCENES, 7, (640, 480))
    commands: dict[str, list[str]] = {}
    for line in (folder / "labels.jsonl").read_text().splitlines():
        query = json.loads(line)
        commands.setdefault(query["image"], []).append(query["command"])
    scenes = []
    for image, texts in sorted(commands.items()):
        bgr = cv2.imread(str(folder / image), cv2.IMREAD_COLOR)
        assert bgr is not None, image
        scenes.append((bgr[..., ::-1].copy(), texts))
    assert len(scenes) == SCENES
    return scenes


@pytest.fixture(scope="module")
def udp_context():
    """A context of this module's own whose participant talks UDP only (the variable is read when it is made)."""
    saved = os.environ.get("FASTDDS_BUILTIN_TRANSPORTS")
    os.environ.update(UDP)
    context = rclpy.Context()
    try:
        rclpy.init(context=context)
    finally:
        if saved is None:
            del os.environ["FASTDDS_BUILTIN_TRANSPORTS"]
        else:
            os.environ["FASTDDS_BUILTIN_TRANSPORTS"] = saved
    yield context
    context.try_shutdown()


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """`ros2 launch` of the node with the world weights; yields the node's pid. Ended with Ctrl-C (SIGINT to its
    process group), as a terminal does: a SIGKILLed shared-memory participant would stall frames on the domain."""
    folder = tmp_path_factory.mktemp("soak")
    log = folder / "launch.log"
    out = log.open("w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **UDP}
    process = subprocess.Popen(["ros2", "launch", "promptbox_ros", "locate.launch.py", f"image:={CAMERA}",
                                f"params_file:={_params(folder)}"],
                               stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        until(lambda: "active: serving /locate" in log.read_text() or process.poll() is not None, 240,
              "the launched node became active")
        text = log.read_text()
        assert process.poll() is None, text
        assert "SYNTHETIC-WORLD" in text, "the node must say that it runs the synthetic-world weights"
        yield int(text.split("[locate_node-1]: process started with pid [", 1)[1].split("]", 1)[0])
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
        out.close()
        print(log.read_text()[-3000:])


def _goal_fields(index: int, world) -> dict:
    frame, _ = world[index % SCENES]
    if index % 25 == 24:  # a goal image of another size than the camera's
        small = cv2.resize(frame, (320, 240), interpolation=cv2.INTER_AREA)
        return {"image": rgb_to_image(small, Header(frame_id="soak_goal_image"))}
    return {"wait_for_new_frame": index % 5 == 0}


def test_two_hundred_goals_end_and_memory_stays_flat(udp_context, launched, world):
    pid = launched
    rig = Rig(udp_context, "", CAMERA)
    rig.vary_frames.set()  # every frame is new content: the encoder runs for every goal
    spinning = Spinning(udp_context, rig.node, threads=2)
    outcomes: dict[str, int] = {}
    seconds: list[float] = []
    rss: dict[int, int] = {}
    aborted: list[str] = []
    answerable = 0  # goals not canceled
    started = time.monotonic()
    try:
        rig.wait_for_node(timeout=60)
        for index in range(GOALS):
            frame, commands = world[index % SCENES]
            rig.frame = frame
            command = commands[(index // SCENES) % len(commands)]
            began = time.monotonic()
            handle, feedback = rig.send(command, **_goal_fields(index, world))
            assert handle.accepted, f"goal {index + 1} {command!r} was rejected"
            if index % 10 == 9:  # cancel once the goal is in the mask decoder
                until(lambda f=feedback: any(m.stage in ("proposing", "matching", "selecting") for m in f),
                      GOAL_TIMEOUT_S, f"goal {index + 1} reached the proposals")
                handle.cancel_goal_async()
            response = result_of(handle.get_result_async(), GOAL_TIMEOUT_S,
                                 f"goal {index + 1} {command!r} ended (it hangs)")
            took = time.monotonic() - began
            status = ENDED.get(response.status)
            assert status is not None, f"goal {index + 1} {command!r} ended with status {response.status}"
            assert response.result.message, f"goal {index + 1} ended without a message"
            if status == "aborted":
                aborted.append(f"goal {index + 1} {command!r}: {response.result.message}")
            if index % 10 != 9:
                answerable += 1
            outcomes[status] = outcomes.get(status, 0) + 1
            seconds.append(took)
            for messages in (rig.detections.messages, rig.candidates.messages, rig.debug_images.messages,
                             rig.log.messages):
                messages.clear()  # this process's memory is not under test; the node's is
            rig.sent.clear()
            if index + 1 in (RSS_AT, GOALS) or (index + 1) % 20 == 0:
                rss[index + 1] = _rss_kib(pid)
            print(f"soak goal {index + 1:3d} {status:9s} {took:5.2f} s  {command[:48]!r}"
                  + (f"  node RSS {rss[index + 1] / 1024:.0f} MiB" if index + 1 in rss else ""))
    finally:
        spinning.stop()
        rig.node.destroy_node()
    total = time.monotonic() - started
    ordered = sorted(seconds)
    growth = (rss[GOALS] - rss[RSS_AT]) / rss[RSS_AT]
    print(f"soak: {GOALS} goals in {total:.0f} s; per goal p50 {ordered[len(ordered) // 2]:.2f} s, "
          f"p95 {ordered[int(len(ordered) * 0.95)]:.2f} s, max {ordered[-1]:.2f} s; outcomes {outcomes}; "
          f"node RSS after goal {RSS_AT} {rss[RSS_AT] / 1024:.0f} MiB, after goal {GOALS} {rss[GOALS] / 1024:.0f} MiB "
          f"({growth:+.1%})")
    for line in aborted:
        print(f"soak: aborted {line}")
    assert sum(outcomes.values()) == GOALS
    assert outcomes.get("succeeded", 0) >= SUCCEEDED_SHARE * answerable, "\n".join(aborted)
    assert abs(growth) <= RSS_GROWTH, f"node RSS went from {rss[RSS_AT]} KiB to {rss[GOALS]} KiB ({growth:+.1%})"
