"""sensor_msgs images <-> numpy, and core detections -> vision_msgs, with numpy only (no cv_bridge).

The model wants RGB uint8 (H, W, 3). Camera drivers send raw Images in a handful of encodings, with rows that may be
padded (step > width * bytes per pixel) and, for 16-bit data, either byte order; or CompressedImage jpeg/png.
Anything else is refused with an ImageError that names the value and lists what is accepted, so a user who wired the
wrong topic (a depth image, a bayer stream) reads the fix in the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import BoundingBox2D, Detection2D, Detection2DArray, ObjectHypothesisWithPose

from promptbox.detection import Candidate, Detection, NotFound

# encoding -> (channels, numpy dtype of one channel)
_LAYOUTS: dict[str, tuple[int, str]] = {
    "rgb8": (3, "u1"),
    "bgr8": (3, "u1"),
    "rgba8": (4, "u1"),
    "bgra8": (4, "u1"),
    "mono8": (1, "u1"),
    "mono16": (1, "u2"),
}
ACCEPTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS)
ACCEPTED_COMPRESSED_FORMATS: tuple[str, ...] = ("jpeg", "png")
# Frames whose longer side exceeds this are shrunk before the models see them (an 8K frame would otherwise cost
# hundreds of MB per full-size mask); answers are scaled back to source pixels. MobileSAM encodes at 1024 anyway.
MAX_SIDE = 2048


class ImageError(ValueError):
    """A message that cannot be turned into an RGB frame; the text names the field, the value and what is accepted."""


def check_image(msg: Image, field: str = "image") -> None:
    """Raise ImageError unless `msg` converts: a supported encoding, sizes that agree. Cheap: no pixel is touched,
    so a subscriber can check every frame on arrival and convert only the ones it uses."""
    encoding = msg.encoding.strip().lower()
    if encoding not in _LAYOUTS:
        raise ImageError(
            f"{field}.encoding={msg.encoding!r} is not supported; accepted: {', '.join(ACCEPTED_ENCODINGS)}"
        )
    channels, dtype = _LAYOUTS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * np.dtype(dtype).itemsize
    if height <= 0 or width <= 0:
        raise ImageError(f"{field} is {width}x{height}; accepted: width and height of at least 1")
    if step < row_bytes:
        raise ImageError(
            f"{field}.step={step} is less than width*bytes per pixel={width}*{row_bytes // width}={row_bytes} "
            f"for {encoding}; accepted: step >= {row_bytes}"
        )
    if len(msg.data) != step * height:
        raise ImageError(
            f"{field}.data has {len(msg.data)} bytes but step*height={step}*{height}={step * height}; "
            "accepted: exactly step*height bytes"
        )


def image_to_rgb(msg: Image, field: str = "image") -> np.ndarray:
    """A sensor_msgs/Image as a contiguous (H, W, 3) uint8 RGB array. `field` prefixes the names in error messages."""
    check_image(msg, field)
    encoding = msg.encoding.strip().lower()
    channels, dtype = _LAYOUTS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * np.dtype(dtype).itemsize
    # Drop the row padding first, then read the pixels in the declared byte order.
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)[:, :row_bytes]
    byte_order = ">" if msg.is_bigendian else "<"
    pixels = np.ascontiguousarray(rows).view(np.dtype(byte_order + dtype)).reshape(height, width, channels)

    if encoding == "mono16":
        # Full 16-bit range onto 0..255, as cv_bridge does for mono16 -> mono8 (65535 -> 255, 257*v -> v).
        gray = ((pixels[..., 0].astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if encoding in ("bgr8", "bgra8"):
        return np.ascontiguousarray(pixels[..., 2::-1])
    return np.ascontiguousarray(pixels[..., :3])


_MAGIC = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}


def check_compressed(msg: CompressedImage, field: str = "image") -> None:
    """Raise ImageError unless `msg` says jpeg or png and its data starts like one; decoding is left for later."""
    # image_transport writes e.g. "jpeg", "png" or "bgr8; jpeg compressed bgr8"; the codec word is what matters.
    fmt = msg.format.lower()
    if not any(name in fmt for name in (*ACCEPTED_COMPRESSED_FORMATS, "jpg")):
        raise ImageError(
            f"{field}.format={msg.format!r} is not supported; accepted: {', '.join(ACCEPTED_COMPRESSED_FORMATS)}"
            " (e.g. 'jpeg' or 'bgr8; jpeg compressed bgr8')"
        )
    head = bytes(msg.data[:8])
    if not any(head.startswith(magic) for magic in _MAGIC.values()):
        raise ImageError(
            f"{field}.data ({len(msg.data)} bytes, starting {head.hex()}) is neither jpeg nor png; "
            "accepted: jpeg, png"
        )


def compressed_to_rgb(msg: CompressedImage, field: str = "image") -> np.ndarray:
    """A sensor_msgs/CompressedImage (jpeg or png, as image_transport's compressed plugin sends) as RGB uint8."""
    check_compressed(msg, field)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    # The compressed plugin encodes colour in bgr order, which imdecode returns; a grey png comes back as 3 x grey.
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"{field}.data ({data.size} bytes) does not decode as {msg.format!r}; accepted: jpeg, png")
    return np.ascontiguousarray(bgr[..., ::-1])


def fit(rgb: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """`rgb` shrunk (area interpolation) so that its longer side is at most `max_side`; itself when it fits."""
    height, width = rgb.shape[:2]
    if max(height, width) <= max_side:
        return rgb
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))


def rescale(answer: Detection | NotFound, shape: tuple[int, int], to: tuple[int, int]) -> Detection | NotFound:
    """`answer`, found on an image of `shape` (H, W), with its boxes and mask moved onto one of `to` (H, W)."""
    if tuple(shape[:2]) == tuple(to[:2]):
        return answer
    sy, sx = to[0] / shape[0], to[1] / shape[1]

    def box(xyxy: Sequence[float]) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = (float(v) for v in xyxy)
        return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)

    alternatives = [replace(c, box_xyxy=box(c.box_xyxy)) for c in answer.alternatives]
    if isinstance(answer, Detection):
        mask = answer.mask
        if mask is not None:
            # Pixel centres onto pixel centres, as the boxes' edges scale: the mask and its box stay in register.
            mask = cv2.resize(mask.astype(np.uint8), (to[1], to[0]), interpolation=cv2.INTER_NEAREST_EXACT)
            mask = mask.astype(bool)
        return replace(answer, box_xyxy=box(answer.box_xyxy), mask=mask, alternatives=alternatives)
    best = replace(answer.best, box_xyxy=box(answer.best.box_xyxy)) if answer.best is not None else None
    return replace(answer, best=best, alternatives=alternatives)


def rgb_to_image(rgb: np.ndarray, header: Header, encoding: str = "rgb8") -> Image:
    """An (H, W, 3) uint8 RGB array as a sensor_msgs/Image in rgb8 or bgr8."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f"array of shape {rgb.shape} and dtype {rgb.dtype}; accepted: (H, W, 3) uint8")
    if encoding not in ("rgb8", "bgr8"):
        raise ImageError(f"encoding={encoding!r} is not supported for output; accepted: rgb8, bgr8")
    pixels = rgb if encoding == "rgb8" else rgb[..., ::-1]
    height, width = rgb.shape[:2]
    return Image(
        header=header,
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * 3,
        data=np.ascontiguousarray(pixels).tobytes(),
    )


def mask_to_image(mask: np.ndarray, header: Header) -> Image:
    """An (H, W) bool mask as a mono8 Image, 255 on the object and 0 elsewhere."""
    if mask.ndim != 2:
        raise ImageError(f"mask of shape {mask.shape}; accepted: (H, W)")
    height, width = mask.shape
    values = np.where(mask.astype(bool), np.uint8(255), np.uint8(0))
    return Image(
        header=header, height=height, width=width, encoding="mono8", is_bigendian=0, step=width, data=values.tobytes()
    )


def box_to_msg(
    phrase: str, box_xyxy: Sequence[float], score: float, header: Header, detection_id: str
) -> Detection2D:
    """One box in source-pixel xyxy as a Detection2D: centre and size in pixels, the phrase as class_id."""
    x0, y0, x1, y1 = (float(v) for v in box_xyxy)
    msg = Detection2D(header=header, id=detection_id)
    msg.bbox = BoundingBox2D()
    msg.bbox.center.position.x = (x0 + x1) / 2.0
    msg.bbox.center.position.y = (y0 + y1) / 2.0
    msg.bbox.size_x = x1 - x0
    msg.bbox.size_y = y1 - y0
    hypothesis = ObjectHypothesisWithPose()
    hypothesis.hypothesis.class_id = phrase
    hypothesis.hypothesis.score = float(score)
    msg.results = [hypothesis]
    return msg


def detection_to_msg(detection: Detection, header: Header, detection_id: str) -> Detection2D:
    """The chosen object as a Detection2D (header = the source frame's)."""
    return box_to_msg(detection.phrase, detection.box_xyxy, detection.score, header, detection_id)


def candidates_to_msg(answer: Detection | NotFound, header: Header, answer_id: str) -> Detection2DArray:
    """The ranked candidates of one answer: the chosen object first (or, when not found, the best one below the
    threshold), then the alternatives. Ids are `<answer_id>/<rank>`; rank 0 of a found answer is `detection`."""
    if isinstance(answer, Detection):
        ranked: list[Candidate] = [Candidate(answer.box_xyxy, answer.score)]
    else:
        ranked = [answer.best] if answer.best is not None else []
    ranked += answer.alternatives  # the core lists the others, best first, without the chosen one
    return Detection2DArray(
        header=header,
        detections=[
            box_to_msg(answer.phrase, c.box_xyxy, c.score, header, f"{answer_id}/{rank}")
            for rank, c in enumerate(ranked)
        ],
    )
