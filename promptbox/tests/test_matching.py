"""matching.py on a random TinyCLIP-61M: shapes and normalisation, the phrase cache, batching that changes nothing,
masked crops that ignore everything outside the mask, and the similarity map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from promptbox import region_crops
from promptbox.masks import BoxMasks
from promptbox.matching import PROMPT_TEMPLATES, Matcher, TextEmbedding

D = 512  # TinyCLIP-61M's joint embedding size


def frame(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def unit_norm(x: torch.Tensor) -> bool:
    return torch.allclose(x.norm(dim=-1), torch.ones(x.shape[:-1]), atol=1e-5)


# --- text -------------------------------------------------------------------------------------------------------


def test_encode_text_is_a_normalised_vector(matcher: Matcher) -> None:
    embedding = matcher.encode_text("red mug")
    assert isinstance(embedding, TextEmbedding) and embedding.phrase == "red mug"
    assert embedding.vector.shape == (D,) and unit_norm(embedding.vector)


def test_text_is_the_renormalised_mean_of_the_prompt_ensemble(matcher: Matcher, clip_bundle) -> None:
    model, tokenizer = clip_bundle
    prompts = [t.format("screwdriver") for t in PROMPT_TEMPLATES]
    with torch.inference_mode():
        one_by_one = [model.get_text_features(**tokenizer([p], return_tensors="pt")).pooler_output for p in prompts]
    expected = F.normalize(F.normalize(torch.cat(one_by_one), dim=-1).mean(0), dim=0)
    assert torch.allclose(matcher.encode_text("screwdriver").vector, expected, atol=1e-5)


def test_a_phrase_is_encoded_once(matcher: Matcher, clip_bundle, monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = clip_bundle
    calls = []
    original = model.get_text_features

    def counted(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return original(*args, **kwargs)

    monkeypatch.setattr(model, "get_text_features", counted)
    first = matcher.encode_text("blue cup on a shelf")
    second = matcher.encode_text("blue cup on a shelf")
    assert calls == [len(PROMPT_TEMPLATES)]
    assert torch.equal(first.vector, second.vector)
    both = matcher.encode_texts(["blue cup on a shelf", "green plate"])  # only the new phrase is encoded
    assert calls == [len(PROMPT_TEMPLATES)] * 2
    assert torch.equal(both[0], first.vector)


def test_encode_texts_shapes(matcher: Matcher) -> None:
    phrases = ["table", "wall", "floor", "table"]
    vectors = matcher.encode_texts(phrases)
    assert vectors.shape == (4, D) and unit_norm(vectors)
    assert torch.equal(vectors[0], vectors[3])
    assert torch.equal(vectors[1], matcher.encode_text("wall").vector)
    assert matcher.encode_texts([]).shape == (0, D)
    with pytest.raises(ValueError, match="non-empty"):
        matcher.encode_texts(["  "])


def test_a_long_phrase_is_truncated_not_an_error(matcher: Matcher) -> None:
    assert matcher.encode_text("very " * 200 + "long mug").vector.shape == (D,)


# --- regions ----------------------------------------------------------------------------------------------------


BOXES = np.array(
    [
        [10, 20, 60, 90],  # inside
        [0, 0, 159, 119],  # the whole frame
        [150, 110, 200, 160],  # mostly outside the frame
        [40, 40, 40, 70],  # zero width
        [70, 30, 70, 30],  # a point
    ],
    dtype=np.float32,
)


def test_encode_regions_shapes_and_normalisation(matcher: Matcher) -> None:
    image = frame()
    vectors = matcher.encode_regions(image, BOXES, None)
    assert vectors.shape == (len(BOXES), D) and unit_norm(vectors)
    assert torch.isfinite(vectors).all()
    assert matcher.encode_regions(image, np.zeros((0, 4)), None).shape == (0, D)
    vectors[0, 0] = 0.0  # callers own the result (not an inference-mode tensor)


def test_batching_changes_nothing(matcher: Matcher, clip_bundle) -> None:
    image, boxes = frame(seed=1), BOXES[:3]
    masks = np.zeros((len(boxes), *image.shape[:2]), dtype=bool)
    masks[:2, 25:85, 15:55] = True
    one_at_a_time = Matcher(*clip_bundle, "cpu", batch_size=1)
    batched = matcher.encode_regions(image, boxes, masks)
    assert matcher.batch_size >= len(boxes)
    assert torch.allclose(batched, one_at_a_time.encode_regions(image, boxes, masks), atol=1e-5)


def test_pixels_outside_the_mask_do_not_matter(matcher: Matcher) -> None:
    image = frame(seed=2)
    box = np.array([[30, 20, 110, 100]], dtype=np.float32)
    mask = np.zeros((1, *image.shape[:2]), dtype=bool)
    mask[0, 30:90, 40:100] = True  # the object: inside the box, the box's context pad around it
    repainted = frame(seed=3)
    repainted[mask[0]] = image[mask[0]]  # same object, everything else (in the crop window too) changed

    masked = matcher.encode_regions(image, box, mask)
    assert torch.allclose(masked, matcher.encode_regions(repainted, box, mask), atol=1e-6)
    # without the mask the surroundings are part of the crop, so the same change does show
    assert not torch.allclose(matcher.encode_regions(image, box, None), matcher.encode_regions(repainted, box, None))


def test_crop_is_clip_normalised_and_grey_outside_the_mask(matcher: Matcher) -> None:
    image = np.full((64, 64, 3), (200, 100, 50), dtype=np.uint8)
    crop = region_crops.crops(matcher._normalised(image), np.array([[16.0, 16.0, 48.0, 48.0]]), None, 0,
                              matcher.context_pad, matcher.image_size)[0]
    mean, std = np.array([0.48145466, 0.4578275, 0.40821073]), np.array([0.26862954, 0.2613026, 0.2757771])
    expected = torch.tensor((np.array([200, 100, 50]) / 255 - mean) / std, dtype=torch.float32)
    assert crop.shape == (3, matcher.image_size, matcher.image_size)
    assert torch.allclose(crop, expected.view(3, 1, 1).expand_as(crop), atol=1e-5)
    nothing = BoxMasks.from_dense(np.zeros((1, 64, 64), dtype=bool))
    masked = region_crops.crops(matcher._normalised(image), np.array([[16, 16, 48, 48]]), nothing, 0,
                                matcher.context_pad, matcher.image_size)
    assert torch.count_nonzero(masked) == 0


def test_crops_of_one_size_gathered_are_the_crops_one_by_one(matcher: Matcher) -> None:
    """Unmasked crops of one size (fast mode's windows) are cut in one batch; the pixels, the frame's edges (CLIP's
    mean colour outside) and the resize are those of the crop-by-crop path."""
    normalised = matcher._normalised(frame(seed=4))
    centres = np.array([[4.0, 6.0], [60.0, 40.0], [150.0, 110.0], [30.5, 50.25]])
    boxes = np.concatenate([centres - 20, centres + 20], axis=1)  # 40 px each, two reach outside the frame
    squares = [region_crops.square_around(box, matcher.context_pad) for box in boxes]
    assert len({side for _, _, side in squares}) == 1
    assert any(left < 0 or top < 0 or left + side > 160 or top + side > 120 for left, top, side in squares)
    size = matcher.image_size
    one_by_one = torch.cat([region_crops.crop(normalised, square, None, i, size) for i, square in enumerate(squares)])
    gathered = region_crops.crops(normalised, boxes, None, 0, matcher.context_pad, size)
    assert gathered.shape == one_by_one.shape == (4, 3, matcher.image_size, matcher.image_size)
    assert torch.allclose(gathered, one_by_one, atol=1e-6)
    assert torch.count_nonzero(gathered[0, :, :4, :4]) == 0  # the first window's corner lies outside the frame


def test_bad_region_inputs_are_value_errors(matcher: Matcher) -> None:
    image = frame()
    with pytest.raises(ValueError, match="uint8"):
        matcher.encode_regions(image.astype(np.float32), BOXES, None)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        matcher.encode_regions(image, BOXES[:, :3], None)
    with pytest.raises(ValueError, match="masks"):
        matcher.encode_regions(image, BOXES, np.zeros((len(BOXES), 10, 10), dtype=bool))


# --- similarity map ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("height", "width", "grid"), [(480, 640, (9, 12)), (120, 160, (9, 12)), (200, 100, (12, 6))])
def test_similarity_map_shape_and_values(matcher: Matcher, height: int, width: int, grid: tuple[int, int]) -> None:
    heat = matcher.similarity_map(frame(height, width), matcher.encode_text("mug"))
    assert heat.shape == grid and heat.dtype == np.float32
    assert np.isfinite(heat).all() and np.abs(heat).max() <= 1.0 + 1e-5  # cosine similarities
    assert heat.std() > 0  # it varies over the frame


def test_similarity_map_follows_the_image(matcher: Matcher) -> None:
    text = matcher.encode_text("mug")
    assert not np.allclose(matcher.similarity_map(frame(seed=4), text), matcher.similarity_map(frame(seed=5), text))


def test_a_scenery_relative_map_is_the_cosine_less_each_patchs_best_scenery_cosine(matcher: Matcher) -> None:
    image = frame(seed=6)
    tokens = matcher.patch_tokens(image)
    text = matcher.encode_text("mug")
    scenery = matcher.encode_texts(["table", "wall"])
    raw = matcher.similarity_map(image, text, tokens)
    relative = matcher.similarity_map(image, text, tokens, scenery=scenery)
    best_scenery = (tokens.tokens @ scenery.T).amax(dim=-1).numpy()
    assert best_scenery.std() > 0  # the case under test: the subtracted level differs between patches
    np.testing.assert_allclose(relative, raw - best_scenery, atol=1e-6)
    assert not np.allclose(np.argsort(relative.ravel()), np.argsort(raw.ravel()))  # so the peaks can move


@pytest.mark.parametrize("shape", [(0, D), (2, D - 1), (D,)])
def test_bad_scenery_is_a_value_error_naming_the_shape(matcher: Matcher, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"scenery: shape .*accepted: \(B, 512\)"):
        matcher.similarity_map(frame(), matcher.encode_text("mug"), scenery=torch.zeros(shape))


def test_logit_scale_is_clip_temperature(matcher: Matcher) -> None:
    assert matcher.logit_scale == pytest.approx(np.exp(2.6592), rel=1e-4)  # CLIPConfig's initial value
