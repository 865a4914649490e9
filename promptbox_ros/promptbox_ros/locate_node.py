"""locate_node: the `locate` action over the newest camera frame. ROS plumbing only; the models live in promptbox.

A managed (lifecycle) node: configure reads and checks the parameters and loads the models, activate starts the
camera subscription and the action server, deactivate ends the goals and stops both, cleanup frees the models.
Threads: the image subscription, the action server and the background embedding each have their own callback group,
so frames keep arriving while a goal runs. One goal runs at a time; `goal_policy` says whether a newer goal queues
behind it or preempts it.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from geometry_msgs.msg import PoseStamped
from promptbox_interfaces.action import Locate
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.action.server import ServerGoalHandle
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, qos_profile_sensor_data, qos_profile_services_default
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray, Detection3D
from visualization_msgs.msg import Marker

from promptbox.annotate import draw
from promptbox.command import parse
from promptbox.depth import NoPose
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
    fit,
    image_to_rgb,
    mask_to_image,
    rescale,
    rgb_to_image,
)
from promptbox_ros.parameters import PARAMETERS, check, depth_settings, locator_config
from promptbox_ros.target3d import (
    DepthSync,
    check_depth,
    detection3d_msg,
    locate_3d,
    marker_msg,
    pose_msg,
    size_msg,
)

__all__ = ["ACTION_QUEUE_DEPTH", "EXECUTOR_THREADS", "LocateNode", "RANDOM_WEIGHTS_TAG"]

EXECUTOR_THREADS = 4  # images, the running goal, goal/cancel requests and lifecycle services, background embedding
_POLL_S = 0.1  # how often a waiting goal looks for a cancel or a preemption
# The action's services keep this many requests: the default 10 drops goals when a planner sends 20 at once.
ACTION_QUEUE_DEPTH = 100
_ACTION_SERVICE_QOS = QoSProfile(
    history=qos_profile_services_default.history,
    depth=ACTION_QUEUE_DEPTH,
    reliability=qos_profile_services_default.reliability,
    durability=qos_profile_services_default.durability,
)
_STOP_WAIT_S = 10.0  # deactivate waits this long for the running goal to end at its next check
_CORE_RANDOM_HINT = "or use --random-weights / allow_random_weights=True for plumbing checks only"
_ROS_RANDOM_HINT = (
    "or, for plumbing checks only, allow random-init models: "
    "`ros2 launch promptbox_ros locate.launch.py allow_random_weights:=true`, "
    "`ros2 run promptbox_ros locate_node --ros-args -p allow_random_weights:=true`, "
    "or `allow_random_weights: true` in the params file"
)


class _Stop(Exception):
    """Raised at a check point to end a goal early; `canceled` says how it ends."""

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
        self.arrived = time.monotonic()
        self._convert = convert
        self._rgb: np.ndarray | None = None
        self.shape: tuple[int, int] = (0, 0)  # (H, W) as published, known once converted

    def age(self) -> float:
        return time.monotonic() - self.arrived

    def rgb(self) -> np.ndarray:
        """The frame the models see: RGB, shrunk to images.MAX_SIDE when larger (an 8K frame)."""
        if self._rgb is None:
            source = self._convert(self.msg, "image")
            self.shape = source.shape[:2]
            self._rgb = fit(source)
        return self._rgb

    def to_source(self, answer: Detection | NotFound) -> Detection | NotFound:
        """An answer on rgb() in source pixels (the contract), its mask at source size."""
        return rescale(answer, self.rgb().shape[:2], self.shape)


@dataclass
class _Job:
    handle: ServerGoalHandle
    target: str  # the parsed phrase, reported however the goal ends
    accepted_serial: int  # the newest camera frame's serial when the goal was accepted
    preempted: threading.Event = field(default_factory=threading.Event)
    ends_early: str = ""  # set for a goal dropped from the queue: it ends at once with this message
    depth: object = None  # target3d.Held: the depth buffered when the goal took its frame


def _goal_key(handle: ServerGoalHandle) -> bytes:
    return bytes(handle.goal_id.uuid)


def _ros_weights_message(message: str) -> str:
    """The core's missing-weights message with the ROS ways to allow random weights instead of the Python one."""
    if _CORE_RANDOM_HINT in message:
        return message.replace(_CORE_RANDOM_HINT, _ROS_RANDOM_HINT)
    return f"{message}\n{_ROS_RANDOM_HINT[0].upper()}{_ROS_RANDOM_HINT[1:]}."


def _phrase(command: str) -> str:
    try:
        return parse(command).phrase
    except (ValueError, TypeError):
        return ""


class LocateNode(LifecycleNode):
    """Serves `locate`, subscribes to `image` (or `<image>/compressed`), publishes `detection`, `candidates` and
    `debug_image`. `locator` shares an already loaded Locator (several nodes in one process, tests); its config
    then wins over the model parameters."""

    def __init__(self, *, locator: Locator | None = None, **node_kwargs) -> None:
        super().__init__("locate_node", **node_kwargs)
        self._shared_locator = locator
        for name, spec in PARAMETERS.items():
            self.declare_parameter(name, spec.default, ParameterDescriptor(description=spec.description))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.autostart = bool(self.get_parameter("autostart").value)
        self.start_error = ""  # why the last configure or activate failed

        self._locator: Locator | None = None
        self._values: dict[str, object] = {}
        self._frame_cond = threading.Condition()
        self._latest: _Frame | None = None
        self._serial = 0
        self._dropped = 0
        self._last_drop = ""
        self._last_drop_logged = 0.0
        self._goals_lock = threading.Lock()
        self._active: _Job | None = None
        self._waiting: deque[_Job] = deque()
        self._jobs: dict[bytes, _Job] = {}
        self._inference_lock = threading.Lock()  # one model call at a time: a goal or a background embedding
        self._prepared: tuple[int, object] | None = None  # (frame serial, FrameEmbedding)
        self._stop_reason = ""  # set while deactivating or closing: running goals end at their next check
        self._image_sub = None
        self._depth_subs: list = []
        self._depth: DepthSync | None = None  # while active with depth.enabled
        self._depth_settings = None
        self._server: ActionServer | None = None
        self._timer = None
        self._publishers: list = []

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self) -> bool:
        """Configure and activate (what `autostart` does); False with `start_error` set when either fails."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            return False
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            self.start_error = self.start_error or "activate failed"
            return False
        return True

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.start_error = ""
        started = time.perf_counter()
        try:
            values = {name: self.get_parameter(name).value for name in PARAMETERS}
            check(values)
            config = locator_config(values)
            settings = depth_settings(values)
            locator = self._shared_locator if self._shared_locator is not None else Locator(config)
            if values["warmup"]:
                locator.warm_up()
        except WeightsError as error:
            return self._failed(_ros_weights_message(str(error)))
        except ValueError as error:
            return self._failed(str(error))
        self._values, self._locator, self._depth_settings = values, locator, settings
        self.get_logger().info(f"{locator.describe()}; ready in {time.perf_counter() - started:.1f} s")
        if locator.random_weights:
            self.get_logger().warning(f"models are random-init: every result message starts with {RANDOM_WEIGHTS_TAG}")
        self._detection_pub = self.create_publisher(Detection2D, "detection", 10)
        self._candidates_pub = self.create_publisher(Detection2DArray, "candidates", 10)
        self._debug_pub = self.create_publisher(Image, "debug_image", 2)  # reliable: any subscriber QoS matches
        self._pose_pub = self.create_publisher(PoseStamped, "target_pose", 10)
        self._detection3d_pub = self.create_publisher(Detection3D, "detection_3d", 10)
        self._marker_pub = self.create_publisher(Marker, "target_marker", 10)
        self._publishers = [self._detection_pub, self._candidates_pub, self._debug_pub, self._pose_pub,
                            self._detection3d_pub, self._marker_pub]
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_reason = ""
        # Own callback groups, so a running goal never holds up frames and a new goal can preempt a running one.
        images = MutuallyExclusiveCallbackGroup()
        if self._values["image_transport"] == "compressed":
            # image_transport's convention: the compressed stream of `image` is `<resolved image>/compressed`.
            topic = self.resolve_topic_name("image") + "/compressed"
            self._image_sub = self.create_subscription(
                CompressedImage, topic, self._on_compressed, qos_profile_sensor_data, callback_group=images
            )
        else:
            self._image_sub = self.create_subscription(
                Image, "image", self._on_image, qos_profile_sensor_data, callback_group=images
            )
        if self._values["depth.enabled"]:
            self._start_depth()
        self._server = ActionServer(
            self,
            Locate,
            "locate",
            execute_callback=self._execute,
            goal_callback=self._on_goal,
            handle_accepted_callback=self._on_accepted,
            cancel_callback=self._on_cancel,
            callback_group=ReentrantCallbackGroup(),
            goal_service_qos_profile=_ACTION_SERVICE_QOS,
            result_service_qos_profile=_ACTION_SERVICE_QOS,
            cancel_service_qos_profile=_ACTION_SERVICE_QOS,
        )
        if self._values["precompute_embedding"]:
            self._timer = self.create_timer(0.05, self._precompute, callback_group=MutuallyExclusiveCallbackGroup())
        self.get_logger().info(
            f"active: serving {self._server_name()} on frames from {self._image_sub.topic_name} "
            f"({self._values['image_transport']}; goal_policy {self._values['goal_policy']})"
        )
        return TransitionCallbackReturn.SUCCESS

    def _start_depth(self) -> None:
        # Depth at camera rate is big: its own callback group, so it never holds up colour frames or goals.
        group = MutuallyExclusiveCallbackGroup()
        depth = self.create_subscription(Image, "depth/image", self._on_depth, qos_profile_sensor_data,
                                         callback_group=group)
        info = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data,
                                        callback_group=group)
        self._depth_subs = [depth, info]
        self._depth = DepthSync(float(self._values["depth.slop_s"]), depth.topic_name, info.topic_name,
                                float(self._values["depth.wait_s"]))

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_goals("the node is deactivating")
        self._stop_serving()
        self.get_logger().info("inactive: the action server and the camera subscription are stopped")
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._free()
        self.get_logger().info("unconfigured: models freed")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def _failed(self, message: str) -> TransitionCallbackReturn:
        self.start_error = message
        self.get_logger().error(f"configure failed: {message}")
        return TransitionCallbackReturn.FAILURE

    def _on_set_parameters(self, params) -> SetParametersResult:
        # Parameters are read at configure; a change on a configured node would silently do nothing.
        if self._locator is not None:
            names = ", ".join(p.name for p in params)
            return SetParametersResult(
                successful=False,
                reason=f"{names}: locate_node reads its parameters at configure; deactivate and clean up first",
            )
        return SetParametersResult(successful=True)

    def _stop_goals(self, reason: str) -> None:
        """End the running goal at its next check and every queued goal at once; wait for the running one."""
        self._stop_reason = reason
        with self._goals_lock:
            dropped = list(self._waiting)
            self._waiting.clear()
            for job in dropped:
                job.ends_early = reason
        for job in dropped:
            job.handle.execute()
        deadline = time.monotonic() + _STOP_WAIT_S
        while self._active is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        if self._active is not None:
            self.get_logger().warning(f"the running goal did not end within {_STOP_WAIT_S:g} s of: {reason}")

    def _stop_serving(self) -> None:
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self._server is not None:
            self._server.destroy()
            self._server = None
        if self._image_sub is not None:
            self.destroy_subscription(self._image_sub)
            self._image_sub = None
        for subscription in self._depth_subs:
            self.destroy_subscription(subscription)
        self._depth_subs = []
        self._depth = None
        with self._frame_cond:
            self._latest = None  # a frame from before the pause is not "the newest" after it
        self._prepared = None

    def _free(self) -> None:
        for publisher in self._publishers:
            self.destroy_publisher(publisher)
        self._publishers = []
        self._locator = None  # the shared one stays with its owner
        self._values = {}

    def close(self) -> None:
        """End running and waiting goals and stop serving; call before shutting the executor down."""
        self._stop_goals("the node is shutting down")
        self._stop_serving()
        self._free()

    # --- frames -----------------------------------------------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        self._keep(msg, check_image, image_to_rgb)

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._keep(msg, check_compressed, compressed_to_rgb)

    def _keep(self, msg, check_msg, convert) -> None:
        subscription = self._image_sub
        if subscription is None:
            return
        topic = subscription.topic_name
        try:
            check_msg(msg, "image")
        except ImageError as error:
            self._drop(topic, error)
            return
        with self._frame_cond:
            self._serial += 1
            self._latest = _Frame(msg, convert, topic, self._serial)
            self._frame_cond.notify_all()

    def _on_depth(self, msg: Image) -> None:
        sync = self._depth
        if sync is None:
            return
        try:
            check_depth(msg, "depth")
        except ImageError as error:
            sync.drop(str(error), msg.header)
            self._drop(sync.depth_topic, error, then="a goal on its colour frame has no pose")
            return
        sync.add_depth(msg)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        sync = self._depth
        if sync is not None:
            sync.add_info(msg)  # checked when a goal uses it: most are never used

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
        frame, prepared, locator = self._latest, self._prepared, self._locator
        if frame is None or locator is None or self._active is not None:
            return
        if prepared is not None and prepared[0] == frame.serial:
            return
        if not self._inference_lock.acquire(blocking=False):
            return
        try:
            frame = self._latest
            if frame is not None and self._usable(frame):
                self._prepared = (frame.serial, locator.prepare(frame.rgb()))
        except Exception as error:  # noqa: BLE001 - a failed background pass must not kill the timer
            self.get_logger().error(f"background embedding failed: {error}", throttle_duration_sec=10.0)
        finally:
            self._inference_lock.release()

    # --- goals ------------------------------------------------------------------------------------------------

    def _on_goal(self, goal: Locate.Goal) -> GoalResponse:
        # Checks only: a rejected goal leaves no trace in the node's state.
        if self._stop_reason:
            self.get_logger().warning(f"rejected a locate goal: {self._stop_reason}")
            return GoalResponse.REJECT
        try:
            parse(goal.command)
            if not 0.0 <= goal.min_score <= 1.0:
                raise ValueError(f"min_score={goal.min_score!r} is out of range; accepted: 0 (the node's) to 1")
        except (ValueError, TypeError) as error:
            self.get_logger().warning(f"rejected a locate goal: {error}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_accepted(self, handle: ServerGoalHandle) -> None:
        job = _Job(handle, _phrase(handle.request.command), self._serial)
        dropped: list[_Job] = []
        with self._goals_lock:
            self._jobs[_goal_key(handle)] = job
            if self._values.get("goal_policy") == "preempt":
                if self._active is not None:
                    self._active.preempted.set()
                dropped = list(self._waiting)
                self._waiting.clear()
                for older in dropped:
                    older.ends_early = "preempted by a newer goal (goal_policy: preempt)"
            start = self._active is None
            if start:
                self._active = job
            else:
                self._waiting.append(job)
        for older in dropped:
            older.handle.execute()
        if start:
            handle.execute()

    def _on_cancel(self, handle: ServerGoalHandle) -> CancelResponse:
        # A queued goal ends now; the running one stops at its next check (between decode batches at the latest).
        with self._goals_lock:
            job = self._jobs.get(_goal_key(handle))
            queued = job is not None and job in self._waiting
            if queued:
                self._waiting.remove(job)
                job.ends_early = "canceled while queued"
        if queued:
            handle.execute()
        return CancelResponse.ACCEPT

    def _execute(self, handle: ServerGoalHandle) -> Locate.Result:
        with self._goals_lock:
            job = self._jobs.pop(_goal_key(handle))
        if job.ends_early:
            return self._end_early(job)
        try:
            return self._run(job)
        finally:
            with self._goals_lock:
                self._active = self._waiting.popleft() if self._waiting else None
                following = self._active
            if following is not None:
                following.handle.execute()

    def _end_early(self, job: _Job) -> Locate.Result:
        result = Locate.Result(target=job.target, message=self._tagged(job.ends_early))
        handle = job.handle
        if job.ends_early.startswith("canceled"):
            # The server marks the goal canceling only after the cancel callback returns.
            deadline = time.monotonic() + 2.0
            while not handle.is_cancel_requested and time.monotonic() < deadline:
                time.sleep(0.005)
        if handle.is_cancel_requested:
            handle.canceled()
        else:
            handle.abort()
        self.get_logger().info(f"locate {handle.request.command!r}: {job.ends_early}")
        return result

    def _run(self, job: _Job) -> Locate.Result:
        handle = job.handle
        goal: Locate.Goal = handle.request
        result = Locate.Result(target=job.target)
        started = time.perf_counter()
        try:
            self._check_stop(job)
            self._feedback(handle, "waiting_for_image", 0.0)
            answer, frame, age = self._locate(job, goal)
        except _Stop as stop:
            result.message = self._tagged(str(stop))
            handle.canceled() if stop.canceled else handle.abort()
            self.get_logger().info(f"locate {goal.command!r}: {stop}")
            return result
        except ValueError as error:  # no usable frame, a bad goal image, or a command the core refuses
            result.message = self._tagged(str(error))
            handle.abort()
            self.get_logger().error(f"locate {goal.command!r} aborted: {error}")
            return result
        except Exception as error:  # noqa: BLE001 - one goal's failure must not take the node down
            result.message = self._tagged(f"internal error: {type(error).__name__}: {error}")
            handle.abort()
            self.get_logger().error(f"locate {goal.command!r} failed:\n{traceback.format_exc()}")
            return result

        self._answer(result, answer, frame, goal, time.perf_counter() - started, age)
        self._answer_3d(result, answer, frame, job)
        handle.succeed()
        self.get_logger().info(f"locate {goal.command!r}: {result.message}")
        return result

    def _wait_for_frame(self, job: _Job, deadline: float) -> _Frame:
        """The newest usable camera frame that is recent enough, waiting until `deadline` (monotonic) for one."""
        while True:
            with self._frame_cond:
                while (problem := self._unfit(self._latest, job)) is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise ValueError(problem)
                    self._frame_cond.wait(min(remaining, _POLL_S))
                    self._check_stop(job)
                frame = self._latest
            if self._usable(frame):
                return frame

    def _unfit(self, frame: _Frame | None, job: _Job) -> str | None:
        """Why `frame` cannot answer `job` (the message if no better frame comes in time), or None."""
        timeout = f"image_timeout_s={self._values['image_timeout_s']:g} s"
        if frame is None:
            return self._no_frame_message(timeout)
        if job.handle.request.wait_for_new_frame and frame.serial <= job.accepted_serial:
            return (
                f"no frame arrived on {frame.source} after the goal was accepted (wait_for_new_frame) within "
                f"{timeout}; the newest is {frame.age():.1f} s old"
            )
        max_age = float(self._values["max_image_age_s"])
        if max_age > 0 and frame.age() > max_age:
            return (
                f"the newest frame on {frame.source} is {frame.age():.1f} s old, over max_image_age_s={max_age:g}, "
                f"and no newer one arrived within {timeout}; is the camera still publishing?"
            )
        return None

    def _no_frame_message(self, timeout: str) -> str:
        topic = self._image_sub.topic_name if self._image_sub is not None else "image"
        kind = "sensor_msgs/CompressedImage" if self._values["image_transport"] == "compressed" else "sensor_msgs/Image"
        if self._dropped:
            return (
                f"no usable camera frame within {timeout} on {topic} ({kind}): {self._dropped} frames were dropped "
                f"as invalid since start-up, the last: {self._last_drop}"
            )
        return (
            f"no camera frame within {timeout}: nothing arrived on {topic} ({kind}); check that the camera "
            "publishes there, or remap image:=<camera topic> (image_transport: raw or compressed)"
        )

    def _locate(self, job: _Job, goal: Locate.Goal) -> tuple[Detection | NotFound, _Frame, float | None]:
        def on_stage(stage: str, progress: float) -> None:
            self._check_stop(job)
            self._feedback(job.handle, stage, progress)

        locator = self._locator
        own = _Frame(goal.image, image_to_rgb, "goal.image", 0) if goal.image.width else None
        if own is not None:
            own.rgb()  # an unusable goal image ends the goal now, without waiting for the models
        # A background embedding may hold the models for a moment; its frame is likely the one this goal gets.
        while not self._inference_lock.acquire(timeout=_POLL_S):
            self._check_stop(job)
        try:
            # image_timeout_s counts from here: time spent waiting for the models (an embedding of 1-2 s on a small
            # CPU) is not time spent waiting for the camera, and the abort message says the frame did not come.
            deadline = time.monotonic() + float(self._values["image_timeout_s"])
            frame = own or self._wait_for_frame(job, deadline)  # the newest, taken once the models are free
            age = None if own is not None else frame.age()
            if self._depth is not None:
                job.depth = self._depth.hold(frame.header)  # the depth the camera sent with this frame, so far
            prepared = self._prepared
            embedding = prepared[1] if prepared is not None and prepared[0] == frame.serial else None
            min_score = goal.min_score if goal.min_score > 0 else float(self._values["min_score"])
            locator.proposer.on_batch = lambda: self._check_stop(job)  # a cancel lands between decode batches
            try:
                answer = frame.to_source(locator.locate(
                    frame.rgb(), goal.command, min_score=min_score, frame=embedding, on_stage=on_stage
                ))
            finally:
                locator.proposer.on_batch = None
        finally:
            self._inference_lock.release()
        return answer, frame, age

    def _answer(
        self,
        result: Locate.Result,
        answer: Detection | NotFound,
        frame: _Frame,
        goal: Locate.Goal,
        seconds: float,
        age: float | None,
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
        # summary() is tagged by the answer itself when the weights are random.
        used = f"frame from {frame.source}, {age:.2f} s old" if age is not None else "frame from goal.image"
        result.message = f"{summary(answer, seconds)}; {used}"
        self._candidates_pub.publish(candidates_to_msg(answer, frame.header, answer_id))
        if self._values["publish_debug_image"] and self._debug_pub.get_subscription_count() > 0:
            shown = rescale(answer, frame.shape, frame.rgb().shape[:2])  # drawn on the frame the models saw
            self._debug_pub.publish(rgb_to_image(draw(frame.rgb(), shown), frame.header))

    def _answer_3d(self, result: Locate.Result, answer: Detection | NotFound, frame: _Frame, job: _Job) -> None:
        """The 3D target of a found answer, from the depth matching its frame; the 2D answer stands either way."""
        sync = self._depth
        if sync is None or not isinstance(answer, Detection):
            if sync is not None:
                self._marker_pub.publish(marker_msg(None, frame.header))  # RViz drops the previous target
            return
        try:
            pair = sync.match(job.depth) if job.depth is not None else "no depth was held for this frame"
            target = locate_3d(answer.mask, pair, bool(self._values["depth.rectified"]), self._depth_settings)
        except Exception as error:  # noqa: BLE001 - a 3D failure must not cost the 2D answer
            self.get_logger().error(f"3D target failed:\n{traceback.format_exc()}")
            target = NoPose(f"internal error: {type(error).__name__}: {error}")
        result.message = f"{result.message}; {target.summary()}"
        if isinstance(target, NoPose):
            self._marker_pub.publish(marker_msg(None, frame.header))
            return
        result.has_pose = True
        result.pose = pose_msg(target, frame.header)
        result.size = size_msg(target)
        detection_id = result.detection.id
        self._pose_pub.publish(result.pose)
        self._detection3d_pub.publish(detection3d_msg(target, frame.header, answer.phrase, answer.score, detection_id))
        self._marker_pub.publish(marker_msg(target, frame.header))

    def _check_stop(self, job: _Job) -> None:
        if job.handle.is_cancel_requested:
            raise _Stop("canceled", canceled=True)
        if job.preempted.is_set():
            raise _Stop("preempted by a newer goal (goal_policy: preempt)", canceled=False)
        if self._stop_reason:
            raise _Stop(self._stop_reason, canceled=False)

    def _feedback(self, handle: ServerGoalHandle, stage: str, progress: float) -> None:
        handle.publish_feedback(Locate.Feedback(stage=stage, progress=float(progress)))

    def _tagged(self, message: str) -> str:
        random = self._locator is not None and self._locator.random_weights
        return f"{RANDOM_WEIGHTS_TAG} {message}" if random else message

    def _server_name(self) -> str:
        namespace = self.get_namespace().rstrip("/")
        return f"{namespace}/locate"

    @property
    def locator(self) -> Locator | None:
        """The loaded models (None until configured), to share with another node in the same process."""
        return self._locator
