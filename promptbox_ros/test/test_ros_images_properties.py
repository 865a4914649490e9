"""Property-based tests (hypothesis) of the image conversions: any message converts to an (H, W, 3) uint8 frame or
raises ImageError (a ValueError) naming what is wrong, never anything else; and the round trips hold."""

from __future__ import annotations

import numpy as np
import pytest
from ros_workspace import require_workspace

require_workspace()

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is pinned in requirements.lock; run make setup")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from promptbox_ros.images import (  # noqa: E402
    ACCEPTED_ENCODINGS,
    ImageError,
    check_image,
    compressed_to_rgb,
    image_to_rgb,
    mask_to_image,
    rgb_to_image,
)

BYTES_PER_PIXEL = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "mono16": 2}
SOME_ENCODINGS = st.sampled_from([*ACCEPTED_ENCODINGS, "RGB8", " bgr8 ", "bayer_rggb8", "32FC1", "16UC1", "yuv422",
                                  "", "rgb8\x00", "émoji🙂"])
PROPERTIES = settings(max_examples=150, deadline=None)


@st.composite
def valid_images(draw) -> Image:
    encoding = draw(st.sampled_from(ACCEPTED_ENCODINGS))
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    step = width * BYTES_PER_PIXEL[encoding] + draw(st.integers(0, 7))
    data = draw(st.binary(min_size=step * height, max_size=step * height))
    return Image(height=height, width=width, encoding=encoding, step=step, is_bigendian=draw(st.integers(0, 1)),
                 data=data)


@st.composite
def any_images(draw) -> Image:
    """Headers that may lie: sizes, step and data length drawn apart from each other."""
    return Image(height=draw(st.integers(0, 40)), width=draw(st.integers(0, 40)), encoding=draw(SOME_ENCODINGS),
                 step=draw(st.integers(0, 200)), is_bigendian=draw(st.integers(0, 1)),
                 data=draw(st.binary(max_size=2000)))


@PROPERTIES
@given(valid_images())
def test_every_valid_image_converts_to_rgb_of_its_size(msg):
    rgb = image_to_rgb(msg)
    assert rgb.shape == (msg.height, msg.width, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous


@PROPERTIES
@given(any_images())
def test_any_image_converts_or_says_why(msg):
    try:
        rgb = image_to_rgb(msg)
    except ImageError as error:
        assert str(error).startswith("image") and "accepted" in str(error)
        return
    assert rgb.shape == (msg.height, msg.width, 3)
    check_image(msg)  # what converts also passes the arrival check


@PROPERTIES
@given(st.integers(1, 10), st.integers(1, 10), st.sampled_from(["rgb8", "bgr8"]), st.data())
def test_rgb_round_trips_through_an_image(height, width, encoding, data):
    rgb = np.frombuffer(data.draw(st.binary(min_size=height * width * 3, max_size=height * width * 3)),
                        np.uint8).reshape(height, width, 3)
    header = Header(frame_id="camera")
    msg = rgb_to_image(rgb, header, encoding)
    assert msg.header == header and msg.encoding == encoding
    assert np.array_equal(image_to_rgb(msg), rgb)


@PROPERTIES
@given(st.integers(1, 10), st.integers(1, 10), st.integers(0, 3), st.integers(0, 1), st.data())
def test_padded_rows_and_byte_order_do_not_change_the_pixels(height, width, padding, big_endian, data):
    gray8 = np.frombuffer(data.draw(st.binary(min_size=height * width, max_size=height * width)), np.uint8)
    gray8 = gray8.reshape(height, width)
    words = gray8.astype(">u2" if big_endian else "<u2") * 257  # v * 257 is v on 0..255
    rows = np.zeros((height, width * 2 + padding), np.uint8)
    rows[:, : width * 2] = words.view(np.uint8).reshape(height, width * 2)
    msg = Image(height=height, width=width, encoding="mono16", step=width * 2 + padding, is_bigendian=big_endian,
                data=rows.tobytes())
    assert np.array_equal(image_to_rgb(msg), np.repeat(gray8[..., None], 3, axis=2))


@PROPERTIES
@given(st.sampled_from(["jpeg", "png", "bgr8; jpeg compressed bgr8", "tiff", ""]), st.binary(max_size=300),
       st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"]))
def test_any_compressed_frame_decodes_or_says_why(fmt, body, magic):
    try:
        rgb = compressed_to_rgb(CompressedImage(format=fmt, data=magic + body))
    except ImageError as error:
        assert "accepted" in str(error)
        return
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8


@PROPERTIES
@given(st.integers(1, 12), st.integers(1, 12), st.data())
def test_mask_round_trips_as_mono8(height, width, data):
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=height * width, max_size=height * width)),
                    bool).reshape(height, width)
    msg = mask_to_image(mask, Header())
    assert np.array_equal(image_to_rgb(msg)[..., 0] == 255, mask)
