"""sensor_msgs <-> numpy conversions: every accepted encoding, padded rows, byte order, compressed, and the errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from ros_workspace import require_workspace

require_workspace()  # vision_msgs comes from the workspace

from builtin_interfaces.msg import Time  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from promptbox.detection import Candidate, Detection, NotFound  # noqa: E402
from promptbox_ros.images import (  # noqa: E402
    ACCEPTED_ENCODINGS,
    MAX_SIDE,
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

HEADER = Header(stamp=Time(sec=12, nanosec=345), frame_id="camera_optical")


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(30, 41, 3), dtype=np.uint8)  # odd width: padding and step matter


def _message(pixels: np.ndarray, encoding: str, *, pad: int = 0, bigendian: bool = False) -> Image:
    """Pack (H, W, C) pixels the way a camera driver would, with `pad` extra bytes at the end of each row."""
    height, width = pixels.shape[:2]
    dtype = pixels.dtype.newbyteorder(">" if bigendian else "<") if pixels.dtype.itemsize > 1 else pixels.dtype
    rows = pixels.astype(dtype).reshape(height, -1).view(np.uint8)
    rows = np.concatenate([rows, np.full((height, pad), 0xAB, np.uint8)], axis=1)
    return Image(
        header=HEADER, height=height, width=width, encoding=encoding, is_bigendian=int(bigendian),
        step=rows.shape[1], data=rows.tobytes(),
    )


def _gray(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 1]  # any one channel is a fine grey test pattern


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize(
    "encoding, pack",
    [
        ("rgb8", lambda rgb: rgb),
        ("bgr8", lambda rgb: rgb[..., ::-1]),
        ("rgba8", lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])),
        ("bgra8", lambda rgb: np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 7, np.uint8)])),
    ],
)
def test_colour_encodings_round_trip(rgb, encoding, pack, pad):
    out = image_to_rgb(_message(pack(rgb), encoding, pad=pad))
    assert out.dtype == np.uint8 and out.shape == rgb.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("pad", [0, 5])
def test_mono8_becomes_three_equal_channels(rgb, pad):
    gray = _gray(rgb)
    out = image_to_rgb(_message(gray[..., None], "mono8", pad=pad))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, 2])
def test_mono16_is_scaled_to_8_bit_in_either_byte_order(bigendian, pad):
    wide = np.random.default_rng(1).integers(0, 65536, size=(30, 41), dtype=np.uint16)
    wide[0, :3] = (0, 257 * 100, 65535)  # exact points of the full-range scale: 0 -> 0, 257*v -> v, 65535 -> 255
    expected = np.round(wide / 257.0).astype(np.uint8)
    msg = _message(wide[..., None], "mono16", pad=pad, bigendian=bigendian)
    out = image_to_rgb(msg)
    np.testing.assert_array_equal(out, np.repeat(expected[..., None], 3, axis=2))
    assert tuple(out[0, :3, 0]) == (0, 100, 255)
    # Read in the other byte order the values change: the flag is honoured, not ignored.
    msg.is_bigendian = int(not bigendian)
    assert not np.array_equal(image_to_rgb(msg), out)


def test_rgb_to_image_round_trips_through_both_output_encodings(rgb):
    for encoding in ("rgb8", "bgr8"):
        msg = rgb_to_image(rgb, HEADER, encoding)
        assert (msg.encoding, msg.width, msg.height, msg.step) == (encoding, 41, 30, 41 * 3)
        assert msg.header == HEADER
        np.testing.assert_array_equal(image_to_rgb(msg), rgb)


@pytest.mark.parametrize("fmt, ext", [("jpeg", ".jpg"), ("png", ".png"), ("bgr8; jpeg compressed bgr8", ".jpg")])
def test_compressed_jpeg_and_png(fmt, ext):
    # A smooth pattern, so jpeg's loss stays small and channel order mistakes stay large.
    yy, xx = np.mgrid[0:48, 0:64]
    rgb = np.dstack([xx * 4, yy * 5, np.full_like(xx, 200)]).astype(np.uint8)
    ok, buf = cv2.imencode(ext, rgb[..., ::-1])  # the compressed plugin encodes bgr
    assert ok
    out = compressed_to_rgb(CompressedImage(header=HEADER, format=fmt, data=buf.tobytes()))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    error = np.abs(out.astype(int) - rgb.astype(int)).mean()
    assert error == 0 if ext == ".png" else error < 3


def test_compressed_grey_png_becomes_rgb():
    gray = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    ok, buf = cv2.imencode(".png", gray)
    out = compressed_to_rgb(CompressedImage(format="png", data=buf.tobytes()))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


@pytest.mark.parametrize("encoding", ["yuv422", "16UC1", "bayer_rggb8", "32FC1", ""])
def test_unsupported_encoding_names_it_and_lists_the_accepted_ones(encoding):
    msg = Image(height=2, width=2, encoding=encoding, step=4, data=bytes(8))
    with pytest.raises(ImageError) as caught:
        check_image(msg, "image")
    with pytest.raises(ImageError):
        image_to_rgb(msg, "image")
    text = str(caught.value)
    assert f"image.encoding={encoding!r}" in text
    assert all(name in text for name in ACCEPTED_ENCODINGS)


def test_unsupported_compressed_format_and_undecodable_data():
    with pytest.raises(ImageError, match=r"format='tiff'.*accepted: jpeg, png"):
        compressed_to_rgb(CompressedImage(format="tiff", data=bytes(10)))
    with pytest.raises(ImageError, match="neither jpeg nor png"):
        check_compressed(CompressedImage(format="jpeg", data=b"not a jpeg"))
    corrupt = CompressedImage(format="jpeg", data=b"\xff\xd8\xff" + bytes(40))
    check_compressed(corrupt)  # looks like a jpeg on arrival ...
    with pytest.raises(ImageError, match="does not decode"):
        compressed_to_rgb(corrupt)  # ... but only decoding can tell


def test_wrong_step_and_size_are_refused(rgb):
    short_step = _message(rgb, "rgb8")
    short_step.step = 41 * 3 - 1
    with pytest.raises(ImageError, match=r"step=122 is less than"):
        image_to_rgb(short_step)
    truncated = _message(rgb, "rgb8")
    truncated.data = bytes(truncated.data)[:-1]
    with pytest.raises(ImageError, match=r"has 3689 bytes but step\*height"):
        image_to_rgb(truncated)
    with pytest.raises(ImageError, match="0x0"):
        image_to_rgb(Image(encoding="rgb8"))


def test_mask_to_mono8():
    mask = np.zeros((5, 7), bool)
    mask[1:3, 2:6] = True
    msg = mask_to_image(mask, HEADER)
    assert (msg.encoding, msg.width, msg.height, msg.step, msg.header) == ("mono8", 7, 5, 7, HEADER)
    values = np.frombuffer(msg.data, np.uint8).reshape(5, 7)
    np.testing.assert_array_equal(values, np.where(mask, 255, 0))


def test_detection_to_vision_msgs():
    detection = Detection(
        phrase="scissors", box_xyxy=(10.0, 20.0, 50.0, 100.0), score=0.8, mask=None,
        alternatives=[Candidate((0.0, 0.0, 5.0, 5.0), 0.3), Candidate((1.0, 2.0, 3.0, 4.0), 0.2)],
    )
    msg = detection_to_msg(detection, HEADER, "abc")
    assert msg.header == HEADER and msg.id == "abc"
    assert (msg.bbox.center.position.x, msg.bbox.center.position.y) == (30.0, 60.0)
    assert (msg.bbox.size_x, msg.bbox.size_y) == (40.0, 80.0)
    assert msg.results[0].hypothesis.class_id == "scissors"
    assert msg.results[0].hypothesis.score == pytest.approx(0.8)

    array = candidates_to_msg(detection, HEADER, "abc")
    assert array.header == HEADER
    assert [d.id for d in array.detections] == ["abc/0", "abc/1", "abc/2"]
    assert [round(d.results[0].hypothesis.score, 3) for d in array.detections] == [0.8, 0.3, 0.2]
    assert all(d.header == HEADER and d.results[0].hypothesis.class_id == "scissors" for d in array.detections)


def test_not_found_candidates_start_with_the_best_below_threshold():
    best = Candidate((0.0, 0.0, 4.0, 4.0), 0.2)
    answer = NotFound(phrase="mug", reason="too low", best=best, alternatives=[Candidate((1.0, 1.0, 2.0, 2.0), 0.1)])
    array = candidates_to_msg(answer, HEADER, "x")
    assert [d.results[0].hypothesis.score for d in array.detections] == pytest.approx([0.2, 0.1])
    assert candidates_to_msg(NotFound(phrase="mug", reason="no masks"), HEADER, "y").detections == []


def test_fit_shrinks_only_frames_over_max_side():
    small = np.zeros((MAX_SIDE, MAX_SIDE // 2, 3), np.uint8)
    assert fit(small) is small
    eight_k = np.full((4320, 7680, 3), 7, np.uint8)
    shrunk = fit(eight_k)
    assert shrunk.shape == (1152, MAX_SIDE, 3) and shrunk.dtype == np.uint8 and (shrunk == 7).all()
    assert fit(np.zeros((5000, 10, 3), np.uint8)).shape == (MAX_SIDE, 4, 3)


def test_rescale_moves_boxes_and_masks_to_source_pixels():
    mask = np.zeros((10, 20), bool)
    mask[2:4, 5:10] = True
    alternative = Candidate((0.0, 0.0, 20.0, 10.0), 0.2)
    found = Detection("cup", (5.0, 2.0, 10.0, 4.0), 0.9, mask, alternatives=[alternative])
    big = rescale(found, (10, 20), (40, 60))
    assert big.box_xyxy == (15.0, 8.0, 30.0, 16.0) and big.score == 0.9 and big.phrase == "cup"
    assert big.alternatives[0].box_xyxy == (0.0, 0.0, 60.0, 40.0)
    assert big.mask.shape == (40, 60) and big.mask.dtype == bool
    rows, cols = np.nonzero(big.mask)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (8, 16, 15, 30), "the mask fills its box"
    assert found.box_xyxy == (5.0, 2.0, 10.0, 4.0), "the answer given is not changed"
    missing = NotFound("cup", "below min_score", best=Candidate((1.0, 1.0, 2.0, 2.0), 0.1), alternatives=[alternative])
    moved = rescale(missing, (10, 20), (20, 40))
    assert moved.best.box_xyxy == (2.0, 2.0, 4.0, 4.0) and moved.reason == "below min_score"
    assert moved.alternatives[0].box_xyxy == (0.0, 0.0, 40.0, 20.0)
    assert rescale(found, (10, 20), (10, 20)) is found
