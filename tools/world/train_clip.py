"""Train a small Hugging Face CLIPModel on the synthetic world, contrastively, with CLIP's real BPE tokenizer.

Images are plain square box crops with some surrounding context (objects, their parts, and table scenery), the way
web photos show things; never the matcher's masked crops, so the world keeps real CLIP's domain shift between
training crops and the masked crops promptbox scores. Captions come from templates; a caption is a positive for
every crop it truly describes ("a mug" fits a red and a green mug), so the loss uses soft targets. Training scenes
come from split "train", which never holds the world's UNSEEN_PAIRS colour-class combinations.

    python tools/world/train_clip.py --work build/world/clip --out weights/world/world-clip --scenes 800 --minutes 8
    python tools/world/train_clip.py --smoke
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPConfig, CLIPModel
from transformers.utils.constants import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store import resume, save_clip_fp16, save_state  # noqa: E402

from promptbox.clip_tokenizer import offline_clip_tokenizer  # noqa: E402
from promptbox.world.catalogue import CLASSES, UNSEEN_PAIRS  # noqa: E402
from promptbox.world.scene import generate_scene  # noqa: E402

IMAGE_SIZE = 64
MEAN_RGB = tuple(int(round(255 * m)) for m in OPENAI_CLIP_MEAN)


def world_clip_config(vision_width: int = 128, vision_layers: int = 4) -> CLIPConfig:
    """Small on purpose: its fp16 file stays a few MB and a crop costs a sliver of a real TinyCLIP's. The default
    (width 128, 4 layers) trains on 2 CPU cores in minutes; the patch grid stays 4x4 at any width, so fast mode's
    similarity map keeps its resolution."""
    return CLIPConfig(
        vision_config={"image_size": IMAGE_SIZE, "patch_size": 16, "hidden_size": vision_width,
                       "num_hidden_layers": vision_layers, "num_attention_heads": max(1, vision_width // 32),
                       "intermediate_size": 4 * vision_width, "hidden_act": "gelu"},
        text_config={"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 256,
                     "max_position_embeddings": 77, "vocab_size": 49408, "hidden_act": "gelu"},
        projection_dim=64,
    )


@dataclass(frozen=True)
class Label:
    """What a crop shows: an object (or one of its parts), or scenery."""

    kind: str  # "object", "part", "scenery"
    cls: str = ""
    colour: str = ""
    part: str = ""
    surface: str = ""


def square_crop(image: np.ndarray, box, pad: float, shift: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0, 4) * (1 + 2 * pad)
    cx, cy = (x0 + x1) / 2 + shift[0] * side, (y0 + y1) / 2 + shift[1] * side
    left, top, size = int(round(cx - side / 2)), int(round(cy - side / 2)), max(1, int(round(side)))
    padded = cv2.copyMakeBorder(image, size, size, size, size, cv2.BORDER_CONSTANT, value=MEAN_RGB)
    crop = padded[top + size : top + 2 * size, left + size : left + 2 * size]
    return cv2.resize(crop, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)


def scene_samples(scene, rng: np.random.Generator) -> list[tuple[np.ndarray, Label]]:
    out = []
    h, w = scene.image.shape[:2]
    for obj in scene.objects:
        for _ in range(2):
            pad, shift = rng.uniform(0.05, 0.3), rng.uniform(-0.08, 0.08, 2)
            out.append((square_crop(scene.image, obj.box_xyxy, pad, shift), Label("object", obj.cls, obj.colour)))
        if len(obj.parts) > 1:
            part = obj.parts[int(rng.integers(len(obj.parts)))]
            x0, y0, x1, y1 = part.box_xyxy
            if min(x1 - x0, y1 - y0) >= 6:
                crop = square_crop(scene.image, part.box_xyxy, rng.uniform(0.05, 0.2), rng.uniform(-0.05, 0.05, 2))
                out.append((crop, Label("part", obj.cls, part.colour, part.name)))
    table = scene.table_mask
    for _ in range(3):
        side = int(rng.uniform(0.1, 0.35) * min(h, w))
        x, y = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        if table[y : y + side, x : x + side].mean() > 0.9:  # scenery, not an object
            out.append((square_crop(scene.image, (x, y, x + side, y + side), 0.0, np.zeros(2)),
                        Label("scenery", surface=scene.surface)))
    return out


SCENERY_CAPTIONS = ("a photo of a table.", "a table", "background", "an empty surface", "a texture",
                    "a photo of the {surface} table.", "a {surface} surface")


def caption(label: Label, rng: np.random.Generator, colour_seen: bool = True) -> tuple[str, Label]:
    """A caption and what it claims (a Label with the fields it leaves open blanked). `colour_seen=False`: the crop
    is shown in greyscale, so the caption names no colour."""
    if label.kind == "scenery":
        text = SCENERY_CAPTIONS[int(rng.integers(len(SCENERY_CAPTIONS)))]
        claims = Label("scenery", surface=label.surface if "{surface}" in text else "")
        return text.format(surface=_surface_word(label.surface)), claims
    with_colour = rng.random() < 0.6 and colour_seen
    colour = label.colour if with_colour else ""
    if label.kind == "part":
        forms = [f"the {label.part} of a {label.cls}", f"a {label.cls} {label.part}",
                 f"a photo of the {label.part} of the {label.cls}."]
        if with_colour:
            forms = [f"the {colour} {label.part} of a {label.cls}", f"a {colour} {label.cls} {label.part}"]
        return forms[int(rng.integers(len(forms)))], Label("part", label.cls, colour, label.part)
    noun = f"{colour} {label.cls}" if colour else label.cls
    forms = [f"a photo of a {noun}.", f"a {noun}", f"the {noun}", f"a photo of the {noun}.", f"a close-up of a {noun}"]
    return forms[int(rng.integers(len(forms)))], Label("object", label.cls, colour)


def _surface_word(surface: str) -> str:
    return {"wood": "wooden", "cloth": "cloth", "plain": "plain"}.get(surface, surface)


def fits(claim: Label, label: Label) -> bool:
    if claim.kind != label.kind:
        return False
    if claim.kind == "scenery":
        return not claim.surface or claim.surface == label.surface
    return claim.cls == label.cls and claim.part == label.part and (not claim.colour or claim.colour == label.colour)


def _scene_crops(job: tuple[int, int, tuple[int, int], str]) -> tuple[list[np.ndarray], list[Label]]:
    seed, index, size, split = job
    rng = np.random.default_rng([seed, 7, index])  # per scene, so worker processes draw the same crops
    samples = scene_samples(generate_scene(seed, index, size, split=split), rng)
    return [crop for crop, _ in samples], [label for _, label in samples]


def build_data(seed: int, scenes: int, size: tuple[int, int], split: str,
               workers: int = 1) -> tuple[np.ndarray, list[Label]]:
    jobs = [(seed, i, size, split) for i in range(scenes)]
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_scene_crops, jobs, chunksize=8)
    else:
        parts = [_scene_crops(job) for job in jobs]
    images = [crop for crops, _ in parts for crop in crops]
    labels = [label for _, scene_labels in parts for label in scene_labels]
    return np.stack(images), labels


def cached_data(work: Path, seed: int, scenes: int, size: tuple[int, int], split: str, workers: int = 1):
    """build_data, kept in `work` so a resumed or repeated run doesn't redraw hundreds of scenes."""
    path = work / f"crops2_{split}_seed{seed}_n{scenes}_{size[0]}x{size[1]}.npz"
    if path.exists():
        saved = np.load(path, allow_pickle=False)
        fields = saved["labels"].tolist()
        return saved["images"], [Label(*row) for row in fields]
    images, labels = build_data(seed, scenes, size, split, workers)
    work.mkdir(parents=True, exist_ok=True)
    rows = np.array([[lb.kind, lb.cls, lb.colour, lb.part, lb.surface] for lb in labels])
    np.savez(path, images=images, labels=rows)
    return images, labels


class LabelCodes:
    """Labels as integer columns, so a batch's soft-target matrix (every caption against every crop) is one
    broadcast instead of batch² calls of fits()."""

    FIELDS = ("kind", "cls", "colour", "part", "surface")

    def __init__(self, labels: list[Label]) -> None:
        self.vocab: dict[str, int] = {"": 0}
        self.codes = self.encode(labels)

    def encode(self, labels) -> np.ndarray:
        return np.array([[self.vocab.setdefault(getattr(lb, f), len(self.vocab)) for f in self.FIELDS]
                         for lb in labels], dtype=np.int32)

    def fit_matrix(self, claims: list[Label], labels: np.ndarray) -> np.ndarray:
        """fits(claim j, label i) for every pair: (len(labels), len(claims)) bool."""
        c, x = self.encode(claims)[None, :, :], labels[:, None, :]
        kind, cls, colour, part, surface = (c[..., k] for k in range(5))
        same = c == x
        scenery = same[..., 0] & (kind == self.vocab.setdefault("scenery", len(self.vocab)))
        scenery &= (surface == 0) | same[..., 4]
        thing = same[..., 0] & (kind != self.vocab["scenery"]) & same[..., 1] & same[..., 3]
        thing &= (colour == 0) | same[..., 2]
        return scenery | thing


def to_pixels(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """CLIP's normalised pixels of uint8 HWC crops, on the crops' device."""
    images = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
    pixels = images.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(OPENAI_CLIP_MEAN, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD, device=pixels.device).view(1, 3, 1, 1)
    return (pixels - mean) / std


def features(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def without_colour(codes: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """LabelCodes rows with the colour blanked where `grey`: a crop shown in greyscale fits no caption that names a
    colour (and every caption that names none)."""
    shown = codes.copy()
    shown[np.asarray(grey, bool), LabelCodes.FIELDS.index("colour")] = 0
    return shown


def greyscale(crops: torch.Tensor) -> torch.Tensor:
    """uint8 (B, H, W, 3) crops as their luma (ITU-R 601) in all three channels."""
    luma = crops.float() @ torch.tensor([0.299, 0.587, 0.114], device=crops.device)
    return luma.round().clamp(0, 255).to(torch.uint8)[..., None].expand_as(crops)


def zero_shot(model, tokenizer, images: np.ndarray, labels: list[Label]) -> dict:
    """Class accuracy of object crops over all classes (all crops, and those of unseen pairs: what the colour
    rule's thing question needs), and colour+class accuracy over all pairs (seen, unseen)."""
    objects = [i for i, label in enumerate(labels) if label.kind == "object"]
    colours = sorted({c for spec in CLASSES.values() for c in spec.colours})
    pairs = [(c, k) for k in CLASSES for c in colours]
    with torch.inference_mode():
        device = next(model.parameters()).device
        img = F.normalize(features(model.get_image_features(
            pixel_values=to_pixels(images[objects]).to(device))), dim=-1)

        def encode(texts):
            tokens = tokenizer(texts, padding=True, return_tensors="pt").to(device)
            return F.normalize(features(model.get_text_features(**tokens)), dim=-1)

        cls_pred = (img @ encode([f"a photo of a {k}." for k in CLASSES]).T).argmax(1).cpu()
        pair_pred = (img @ encode([f"a photo of a {c} {k}." for c, k in pairs]).T).argmax(1).cpu()
    names = list(CLASSES)
    cls_ok = [names[int(p)] == labels[i].cls for p, i in zip(cls_pred, objects, strict=True)]
    pair_ok = [pairs[int(p)] == (labels[i].colour, labels[i].cls) for p, i in zip(pair_pred, objects, strict=True)]
    unseen = [(labels[i].colour, labels[i].cls) in UNSEEN_PAIRS for i in objects]
    seen_ok = [ok for ok, u in zip(pair_ok, unseen, strict=True) if not u]
    unseen_ok = [ok for ok, u in zip(pair_ok, unseen, strict=True) if u]
    unseen_cls_ok = [ok for ok, u in zip(cls_ok, unseen, strict=True) if u]
    return {"val_class_acc": float(np.mean(cls_ok)),
            "val_class_acc_unseen": float(np.mean(unseen_cls_ok)) if unseen_cls_ok else None,
            "val_colour_class_acc_seen": float(np.mean(seen_ok)),
            "val_colour_class_acc_unseen": float(np.mean(unseen_ok)) if unseen_ok else None,
            "val_objects": len(objects), "val_unseen_objects": len(unseen_ok)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="build/world/clip")
    parser.add_argument("--out", default=None, help="write the Hugging Face directory here when done")
    parser.add_argument("--scenes", type=int, default=800)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--max-steps", type=int, default=100000)
    parser.add_argument("--batch", type=int, default=192)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--planned-steps", type=int, default=1500, help="length of the learning-rate schedule")
    parser.add_argument("--resume", action="store_true", help="continue from WORK/state.pt")
    parser.add_argument("--init", default=None, help="start from this world CLIP directory instead of random init")
    parser.add_argument("--logit-scale", type=float, default=None,
                        help="train at this fixed temperature (real CLIP ends at its clamp, 100); default: learn it")
    parser.add_argument("--workers", type=int, default=1, help="processes that draw the scenes")
    parser.add_argument("--val-scenes", type=int, default=None, help="default: a eighth of --scenes")
    parser.add_argument("--vision-width", type=int, default=128, help="image tower width (heads: width / 32)")
    parser.add_argument("--vision-layers", type=int, default=4)
    parser.add_argument("--grey", type=float, default=0.0,
                        help="share of crops shown in greyscale with a caption that names no colour, so the class "
                             "is learned from shape too (CLIP's random-greyscale augmentation; no held-out pair "
                             "is shown)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scenes, args.size, args.max_steps, args.batch = 4, "320x240", 3, 16
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    images, labels = cached_data(Path(args.work), args.seed, args.scenes, size, "train", args.workers)
    val_scenes = args.val_scenes or max(2, args.scenes // 8)
    val_images, val_labels = cached_data(Path(args.work), args.seed + 1000, val_scenes, size, "val", args.workers)
    Path(args.work).mkdir(parents=True, exist_ok=True)
    print(f"[data] {len(images)} train crops, {len(val_images)} val crops, {time.perf_counter() - started:.0f} s")

    tokenizer = offline_clip_tokenizer()
    if args.init:  # continue from saved world weights (fp16 on disk), with a fresh optimizer
        model = CLIPModel.from_pretrained(args.init, local_files_only=True).float().to(args.device)
    else:
        model = CLIPModel(world_clip_config(args.vision_width, args.vision_layers)).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    step, history, running = 0, [], []
    state_path = Path(args.work) / "state.pt"
    if args.resume:
        step, history = resume(state_path, model, optimizer)
    rng = np.random.default_rng([args.seed, 11, step])
    token_cache: dict[str, list[int]] = {}
    trained_from = time.perf_counter()
    deadline = trained_from + args.minutes * 60
    planned = min(args.max_steps, args.planned_steps)
    codes = LabelCodes(labels)
    crops_all = torch.from_numpy(images).to(args.device)  # uint8, kept on the device: no per-step host copy
    model.train()
    while step < args.max_steps and time.perf_counter() < deadline:
        batch = rng.choice(len(images), size=min(args.batch, len(images)), replace=False)
        crops = crops_all[torch.from_numpy(batch).to(args.device)]
        flip = torch.from_numpy(rng.random(len(batch)) < 0.5).to(args.device)
        crops = torch.where(flip[:, None, None, None], crops.flip(2), crops)
        # Drawn only when asked for, so a run without --grey keeps the committed recipe's random stream.
        grey = rng.random(len(batch)) < args.grey if args.grey > 0 else np.zeros(len(batch), bool)
        if grey.any():
            crops = torch.where(torch.from_numpy(grey).to(args.device)[:, None, None, None], greyscale(crops), crops)
        texts, claims = zip(*(caption(labels[i], rng, not g) for i, g in zip(batch, grey, strict=True)),
                            strict=True)
        for text in texts:
            if text not in token_cache:
                token_cache[text] = tokenizer(text)["input_ids"]
        longest = max(len(token_cache[t]) for t in texts)
        ids = torch.full((len(texts), longest), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, text in enumerate(texts):
            ids[row, : len(token_cache[text])] = torch.tensor(token_cache[text])
            mask[row, : len(token_cache[text])] = 1
        shown = without_colour(codes.codes[batch], grey)
        fit = torch.from_numpy(codes.fit_matrix(list(claims), shown).astype(np.float32))
        # The cosine ends at the planned step or at the time budget, whichever comes first: a call whose step rate
        # is unknown in advance (a GPU) still finishes its schedule.
        progress = min(1.0, max(step / planned, (time.perf_counter() - trained_from) / (args.minutes * 60)))
        lr_scale = min(1.0, (step + 1) / 100) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = args.lr * lr_scale
        img = F.normalize(features(model.get_image_features(pixel_values=to_pixels(crops))), dim=-1)
        txt = F.normalize(features(model.get_text_features(input_ids=ids.to(args.device),
                                                          attention_mask=mask.to(args.device))), dim=-1)
        scale = model.logit_scale.exp().clamp(max=100) if args.logit_scale is None else args.logit_scale
        logits = scale * img @ txt.T
        fit = fit.to(args.device)
        loss = 0.5 * (-(fit / fit.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
                      - (fit.T / fit.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            if args.logit_scale is None:
                model.logit_scale.clamp_(0, math.log(100))
            else:
                model.logit_scale.fill_(math.log(args.logit_scale))
        step += 1
        running = [*running[-49:], loss.detach()]  # no per-step device sync
        if step % 50 == 0 or step == 1:
            line = {"step": step, "loss": round(float(torch.stack(running).mean()), 4),
                    "logit_scale": round(float(model.logit_scale.exp()), 2),
                    "elapsed_s": round(time.perf_counter() - started)}
            history.append(line)
            print(f"[train] {json.dumps(line)}", flush=True)
    save_state(state_path, model, optimizer, step, history)
    model.eval()
    final_loss = float(torch.stack(running).mean()) if running else None
    result = {"steps": step, "final_loss": final_loss, **zero_shot(model, tokenizer, val_images, val_labels),
              "device": args.device, "seed": args.seed, "grey": args.grey,
              "vision": [model.config.vision_config.hidden_size, model.config.vision_config.num_hidden_layers],
              "scenes": args.scenes, "size": args.size,
              "train_crops": len(images), "wall_s": round(time.perf_counter() - started)}
    print(f"[done] {json.dumps(result)}")
    Path(args.work).mkdir(parents=True, exist_ok=True)
    (Path(args.work) / "result.json").write_text(json.dumps({**result, "history": history}, indent=1))
    if args.out:
        print(f"[done] wrote {save_clip_fp16(model.cpu(), tokenizer, Path(args.out), result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
