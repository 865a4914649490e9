"""locate_node: the `locate` action over the newest camera frame. ROS plumbing only; the models live in promptbox.

Threads: the image subscriptions, the action server and the background embedding each have their own callback group,
and the node spins on a MultiThreadedExecutor with enough threads that frames keep arriving while a goal runs.
One goal runs at a time; `goal_policy` says whether a newer goal queues behind it or preempts it.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np
import rclpy
from promptbox_interfaces.action import Locate
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray

from promptbox.annotate import draw
from promptbox.command import parse
from promptbox.config import AmgSettings, LocatorConfig
from promptbox.detection import RANDOM_WEIGHTS_TAG, Detection, NotFound, summary
from promptbox.locator import Locator
from promptbox.weights import WeightsError
from promptbox_ros.images import (
    ImageError,
    candidates_to_msg,
    check_compressed,
    check_image,
    compressed_to_rgb,
    detection_to_msg,
    image_to_rgb,
    mask_to_image,
    rgb_to_image,
)

GOAL_POLICIES = ("queue", "preempt")
EXECUTOR_THREADS = 4  # images, the running goal, goal/cancel requests, background embedding
_POLL_S = 0.1  # how often a waiting goal looks for a cancel or a preemption

_CORE = LocatorConfig()
_AMG = AmgSettings()
# name -> (default, description). The type is the default's; every parameter is read once, at start-up.
PARAMETERS: dict[str, tuple[object, str]] = {
    "sam_checkpoint": ("", "path to mobile_sam.pt; empty: $PROMPTBOX_WEIGHTS_DIR, then the Hugging Face cache"),
    "clip_model": (_CORE.clip_model, "CLIP model: tinyclip-61m, tinyclip-8m, clip-b32, a Hugging Face id or a dir"),
    "device": (_CORE.device, "torch device: cpu, cuda or cuda:N"),
    "encoder_backend": (_CORE.encoder_backend, "MobileSAM image encoder: torch or onnx"),
    "threads": (0, "torch intra-op threads; 0: torch's default"),
    "allow_random_weights": (False, "run on random-init models when checkpoints are missing (plumbing tests only)"),
    "mode": (_CORE.mode, "exact: the AMG mask set with less work; fast: text-guided point prompts"),
    "fast_points": (_CORE.fast_points, "fast mode: point prompts placed at text-similarity peaks"),
    "min_score": (_CORE.min_score, "calibrated confidence below which the answer is not found (goal.min_score 0)"),
    "top_k": (_CORE.top_k, "alternatives published on `candidates` besides the chosen object"),
    "part_margin": (_CORE.part_margin, "a whole object beats its part when its similarity is within this margin"),
    "amg.points_per_side": (_AMG.points_per_side, "automatic mask generator (mode exact): prompt grid per side"),
    "amg.points_per_batch": (_AMG.points_per_batch, "prompts decoded per batch"),
    "amg.pred_iou_thresh": (_AMG.pred_iou_thresh, "drop masks whose predicted IoU is below this"),
    "amg.stability_score_thresh": (_AMG.stability_score_thresh, "drop masks whose stability score is below this"),
    "amg.stability_score_offset": (_AMG.stability_score_offset, "logit offset of the stability score"),
    "amg.box_nms_thresh": (_AMG.box_nms_thresh, "box IoU above which overlapping masks are suppressed"),
    "amg.crop_n_layers": (_AMG.crop_n_layers, "extra crop layers; 0: the whole image only"),
    "amg.crop_nms_thresh": (_AMG.crop_nms_thresh, "box NMS between crops"),
    "amg.crop_overlap_ratio": (_AMG.crop_overlap_ratio, "overlap of neighbouring crops"),
    "amg.crop_n_points_downscale_factor": (_AMG.crop_n_points_downscale_factor, "prompt grid reduction per crop layer"),
    "amg.min_mask_region_area": (_AMG.min_mask_region_area, "remove islands and holes smaller than this (pixels)"),
    "goal_policy": ("queue", "queue: a new goal waits for the running one; preempt: it aborts the running one"),
    "image_timeout_s": (2.0, "seconds a goal waits for a first camera frame before it aborts"),
    "precompute_embedding": (False, "embed each new frame while idle so a goal on that frame skips the encoder"),
    "publish_debug_image": (True, "draw and publish debug_image (only while it has subscribers)"),
    "warmup": (True, "run each model once at start-up so the first goal is not the slow one"),
}


class _Stop(Exception):
    """Raised between stages to end a goal early; `canceled` says how it ends."""

    def __init__(self, message: str, canceled: bool) -> None:
        super().__init__(message)
        self.canceled = canceled


class _Frame:
    """A frame as received, checked on arrival and converted to RGB once, when first used: at camera rate most
    frames are never looked at, so converting (or jpeg-decoding) each one would only take cores from the models."""

    def __init__(self, msg, convert: Callable[[object, str], np.ndarray], source: str, serial: int) -> None:
        self.msg = msg
        self.header: Header = msg.header
        self.source = source  # the resolved topic, or "goal.image"
        self.serial = serial  # 0 for a goal's own image; camera frames count up from 1
        self._convert = convert
        self._rgb: np.ndarray | None = None

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            self._rgb = self._convert(self.msg, "image")
        return self._rgb


@dataclass
class _Job:
    handle: ServerGoalHandle
    preempted: threading.Event = field(default_factory=threading.Event)


class LocateNode(Node):
    """Serves `locate`, subscribes to `image` and `image/compressed`, publishes `detection`, `candidates` and
    `debug_image`. `locator` shares an already loaded Locator (several nodes in one process, tests); its config
    then wins over the model parameters."""

    def __init__(self, *, locator: Locator | None = None, **node_kwargs) -> None:
        super().__init__("locate_node", **node_kwargs)
        params = self._declare_parameters()
        config = self._locator_config(params)
        self._goal_policy = str(params["goal_policy"])
        if self._goal_policy not in GOAL_POLICIES:
            accepted = ", ".join(GOAL_POLICIES)
            raise ValueError(f"goal_policy={self._goal_policy!r} is not supported; accepted: {accepted}")
        self._image_timeout_s = float(params["image_timeout_s"])
        if not self._image_timeout_s > 0:
            raise ValueError(f"image_timeout_s={self._image_timeout_s!r} must be above 0")
        self._min_score = config.min_score
        self._publish_debug = bool(params["publish_debug_image"])

        started = time.perf_counter()
        self._locator = locator if locator is not None else Locator(config)  # WeightsError: main() reports it
        if params["warmup"]:
            self._locator.warm_up()
        self._random = self._locator.random_weights
        self.get_logger().info(f"{self._locator.describe()}; ready in {time.perf_counter() - started:.1f} s")
        if self._random:
            self.get_logger().warning(f"models are random-init: every result message starts with {RANDOM_WEIGHTS_TAG}")

        self._frame_cond = threading.Condition()
        self._latest: _Frame | None = None
        self._serial = 0
        self._dropped = 0
        self._last_drop = ""
        self._last_drop_logged = 0.0
        self._goals_lock = threading.Lock()
        self._active: _Job | None = None
        self._waiting: deque[_Job] = deque()
        self._inference_lock = threading.Lock()  # one model call at a time: a goal or a background embedding
        self._prepared: tuple[int, object] | None = None  # (frame serial, FrameEmbedding)
        self._closing = threading.Event()

        # Own callback groups, so a running goal never holds up frames and a new goal can preempt a running one.
        images = MutuallyExclusiveCallbackGroup()
        actions = ReentrantCallbackGroup()
        background = MutuallyExclusiveCallbackGroup()
        self._image_sub = self.create_subscription(
            Image, "image", self._on_image, qos_profile_sensor_data, callback_group=images
        )
        self._compressed_sub = self.create_subscription(
            CompressedImage, "image/compressed", self._on_compressed, qos_profile_sensor_data, callback_group=images
        )
        self._detection_pub = self.create_publisher(Detection2D, "detection", 10)
        self._candidates_pub = self.create_publisher(Detection2DArray, "candidates", 10)
        self._debug_pub = self.create_publisher(Image, "debug_image", 2)  # reliable: any subscriber QoS matches
        self._server = ActionServer(
            self,
            Locate,
            "locate",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            handle_accepted_callback=self._on_accepted,
            cancel_callback=lambda _handle: CancelResponse.ACCEPT,
            callback_group=actions,
        )
        if params["precompute_embedding"]:
            self.create_timer(0.05, self._precompute, callback_group=background)
        self.get_logger().info(
            f"serving {self._server_name()} on frames from {self._image_sub.topic_name} and "
            f"{self._compressed_sub.topic_name} (goal_policy {self._goal_policy})"
        )

    # --- start-up ---------------------------------------------------------------------------------------------

    def _declare_parameters(self) -> dict[str, object]:
        values = {}
        for name, (default, description) in PARAMETERS.items():
            descriptor = ParameterDescriptor(description=description, read_only=True)
            values[name] = self.declare_parameter(name, default, descriptor).value
        return values

    @staticmethod
    def _locator_config(params: dict[str, object]) -> LocatorConfig:
        amg = AmgSettings(**{f.name: params[f"amg.{f.name}"] for f in fields(AmgSettings)})
        return LocatorConfig(
            sam_checkpoint=str(params["sam_checkpoint"]) or None,
            clip_model=str(params["clip_model"]),
            device=str(params["device"]),
            mode=str(params["mode"]),
            amg=amg,
            min_score=float(params["min_score"]),
            top_k=int(params["top_k"]),
            part_margin=float(params["part_margin"]),
            fast_points=int(params["fast_points"]),
            encoder_backend=str(params["encoder_backend"]),
            allow_random_weights=bool(params["allow_random_weights"]),
            threads=int(params["threads"]) or None,
        )

    def _server_name(self) -> str:
        namespace = self.get_namespace().rstrip("/")
        return f"{namespace}/locate"

    # --- frames -----------------------------------------------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        self._keep(msg, check_image, image_to_rgb, self._image_sub.topic_name)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._keep(msg, check_compressed, compressed_to_rgb, self._compressed_sub.topic_name)

    def _keep(self, msg, check, convert, topic: str) -> None:
        try:
            check(msg, "image")
        except ImageError as error:
            self._drop(topic, error)
            return
        with self._frame_cond:
            self._serial += 1
            self._latest = _Frame(msg, convert, topic, self._serial)
            self._frame_cond.notify_all()

    def _drop(self, topic: str, error: Exception, then: str = "keeping the previous good frame") -> None:
        # A bad frame must not replace a good one, nor stop the node. Say why at once for a new kind of problem, then
        # at most every 5 s while the same one repeats at camera rate.
        self._dropped += 1
        problem = f"{topic}: {error}"
        now = time.monotonic()
        if problem != self._last_drop or now - self._last_drop_logged > 5.0:
            self._last_drop_logged = now
            self.get_logger().error(f"dropped a frame from {problem}; {then}")
        self._last_drop = problem

    def _usable(self, frame: _Frame) -> bool:
        """Convert `frame`; one that passed the arrival check but does not decode (a corrupt jpeg body) is dropped."""
        try:
            frame.rgb()
        except ImageError as error:
            with self._frame_cond:
                if self._latest is frame:
                    self._latest = None
            self._drop(frame.source, error, then="a goal uses the next good frame")
            return False
        return True

    def _precompute(self) -> None:
        """While idle, embed the newest frame so a goal on it starts at the proposals."""
        frame = self._latest
        prepared = self._prepared
        if frame is None or (prepared is not None and prepared[0] == frame.serial) or self._active is not None:
            return
        if not self._inference_lock.acquire(blocking=False):
            return
        try:
            frame = self._latest
            if frame is not None and self._usable(frame):
                self._prepared = (frame.serial, self._locator.prepare(frame.rgb()))
        except Exception as error:  # noqa: BLE001 - a failed background pass must not kill the timer
            self.get_logger().error(f"background embedding failed: {error}", throttle_duration_sec=10.0)
        finally:
            self._inference_lock.release()

    # --- goals ------------------------------------------------------------------------------------------------

    def _on_goal(self, goal: Locate.Goal) -> GoalResponse:
        # Checks only: a rejected goal leaves no trace in the node's state.
        try:
            parse(goal.command)
            if not 0.0 <= goal.min_score <= 1.0:
                raise ValueError(f"min_score={goal.min_score!r} is out of range; accepted: 0 (the node's) to 1")
        except (ValueError, TypeError) as error:
            self.get_logger().warning(f"rejected a locate goal: {error}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_accepted(self, handle: ServerGoalHandle) -> None:
        job = _Job(handle)
        with self._goals_lock:
            if self._goal_policy == "preempt":
                for older in (self._active, *self._waiting):
                    if older is not None:
                        older.preempted.set()
            start = self._active is None
            if start:
                self._active = job
            else:
                self._waiting.append(job)
        if start:
            handle.execute()

    def _execute(self, handle: ServerGoalHandle) -> Locate.Result:
        job = self._active
        assert job is not None and job.handle == handle, "goals execute one at a time, in order"
        try:
            return self._run(job)
        finally:
            with self._goals_lock:
                self._active = self._waiting.popleft() if self._waiting else None
                following = self._active
            if following is not None:
                following.handle.execute()

    def _run(self, job: _Job) -> Locate.Result:
        handle = job.handle
        goal: Locate.Goal = handle.request
        result = Locate.Result()
        started = time.perf_counter()
        try:
            self._check_stop(job)
            self._feedback(handle, "waiting_for_image", 0.0)
            answer, frame = self._locate(job, goal)
        except _Stop as stop:
            result.message = self._tagged(str(stop))
            handle.canceled() if stop.canceled else handle.abort()
            self.get_logger().info(f"locate {goal.command!r}: {stop}")
            return result
        except ValueError as error:  # no frame, a bad goal image, or a command the core refuses
            result.message = self._tagged(str(error))
            handle.abort()
            self.get_logger().error(f"locate {goal.command!r} aborted: {error}")
            return result
        except Exception as error:  # noqa: BLE001 - one goal's failure must not take the node down
            result.message = self._tagged(f"internal error: {type(error).__name__}: {error}")
            handle.abort()
            self.get_logger().error(f"locate {goal.command!r} failed:\n{traceback.format_exc()}")
            return result

        self._answer(result, answer, frame, goal, time.perf_counter() - started)
        handle.succeed()
        self.get_logger().info(f"locate {goal.command!r}: {result.message}")
        return result

    def _wait_for_frame(self, job: _Job, deadline: float) -> _Frame:
        """The newest usable camera frame, waiting until `deadline` (monotonic) for one."""
        while True:
            with self._frame_cond:
                while self._latest is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ValueError(self._no_frame_message())
                    self._frame_cond.wait(min(remaining, _POLL_S))
                    self._check_stop(job)
                frame = self._latest
            if self._usable(frame):
                return frame

    def _no_frame_message(self) -> str:
        topics = (
            f"{self._image_sub.topic_name} (sensor_msgs/Image) or {self._compressed_sub.topic_name} "
            "(sensor_msgs/CompressedImage)"
        )
        if self._dropped:
            return (
                f"no usable camera frame within image_timeout_s={self._image_timeout_s:g} s on {topics}: "
                f"{self._dropped} frames were dropped as invalid since start-up, the last: {self._last_drop}"
            )
        return (
            f"no camera frame within image_timeout_s={self._image_timeout_s:g} s: nothing arrived on {topics}; "
            "check that the camera publishes there, or remap image:=<camera topic>"
        )

    def _locate(self, job: _Job, goal: Locate.Goal) -> tuple[Detection | NotFound, _Frame]:
        def on_stage(stage: str, progress: float) -> None:
            self._check_stop(job)
            self._feedback(job.handle, stage, progress)

        deadline = time.monotonic() + self._image_timeout_s
        own = _Frame(goal.image, image_to_rgb, "goal.image", 0) if goal.image.width else None
        if own is not None:
            own.rgb()  # an unusable goal image ends the goal now, without waiting for the models
        # A background embedding may hold the models for a moment; its frame is likely the one this goal gets.
        while not self._inference_lock.acquire(timeout=_POLL_S):
            self._check_stop(job)
        try:
            frame = own or self._wait_for_frame(job, deadline)  # the newest, taken once the models are free
            prepared = self._prepared
            embedding = prepared[1] if prepared is not None and prepared[0] == frame.serial else None
            min_score = goal.min_score if goal.min_score > 0 else self._min_score
            answer = self._locator.locate(
                frame.rgb(), goal.command, min_score=min_score, frame=embedding, on_stage=on_stage
            )
        finally:
            self._inference_lock.release()
        return answer, frame

    def _answer(
        self, result: Locate.Result, answer: Detection | NotFound, frame: _Frame, goal: Locate.Goal, seconds: float
    ) -> None:
        answer_id = uuid.uuid4().hex  # unique per answer, shared by detection and candidates (<id>/<rank>)
        result.found = bool(answer.found)
        result.target = answer.phrase
        if isinstance(answer, Detection):
            result.detection = detection_to_msg(answer, frame.header, answer_id)
            if goal.return_mask and answer.mask is not None:
                result.mask = mask_to_image(answer.mask, frame.header)
            self._detection_pub.publish(result.detection)
        else:
            # No box: the header says which frame was searched, `results` stays empty.
            result.detection = Detection2D(header=frame.header, id=answer_id)
        result.message = summary(answer, seconds)  # tagged by the answer itself when the weights are random
        self._candidates_pub.publish(candidates_to_msg(answer, frame.header, answer_id))
        if self._publish_debug and self._debug_pub.get_subscription_count() > 0:
            self._debug_pub.publish(rgb_to_image(draw(frame.rgb(), answer), frame.header))

    def _check_stop(self, job: _Job) -> None:
        if job.handle.is_cancel_requested:
            raise _Stop("canceled", canceled=True)
        if job.preempted.is_set():
            raise _Stop("preempted by a newer goal (goal_policy: preempt)", canceled=False)
        if self._closing.is_set():
            raise _Stop("the node is shutting down", canceled=False)

    def _feedback(self, handle: ServerGoalHandle, stage: str, progress: float) -> None:
        handle.publish_feedback(Locate.Feedback(stage=stage, progress=float(progress)))

    def _tagged(self, message: str) -> str:
        return f"{RANDOM_WEIGHTS_TAG} {message}" if self._random else message

    @property
    def locator(self) -> Locator:
        """The loaded models, to share with another node in the same process."""
        return self._locator

    def close(self) -> None:
        """End running and waiting goals at their next stage; call before shutting the executor down."""
        self._closing.set()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    try:
        node = LocateNode()
    except (WeightsError, ValueError, ParameterException) as error:
        # Same text as the CLI: which file is missing, where it looked, and the fix.
        rclpy.logging.get_logger("locate_node").fatal(f"locate_node cannot start: {error}")
        rclpy.try_shutdown()
        return 1
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
