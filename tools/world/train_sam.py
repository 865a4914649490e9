"""Train MobileSAM (the real vit_t architecture and state_dict) on the synthetic world.

Two regimes, one loss:
- `--train-encoder` (the GPU run): every weight trains, from random init, on point and box prompts.
- default (CPU): the TinyViT trunk stays at its seeded random init and its features are computed once per scene
  and cached; the neck, prompt encoder and mask decoder train on them. Random convolutional features keep local
  colour and texture, which is enough for the world's flat-coloured objects; it is the provisional regime for
  machines without a GPU and says so in the record it writes.

Targets follow SAM: the three multimask tokens learn part / object / group for a point, the single-mask token the
object, and the IoU head learns the IoU each mask actually reaches. Steps are bounded by `--minutes`, and the state
is checkpointed, so a long run continues across calls with `--resume`.

    python tools/world/train_sam.py --work build/world/sam --out weights/world --scenes 300 --minutes 25
    python tools/world/train_sam.py --smoke     # a few steps on tiny data, CPU, to check the script runs
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from mobile_sam.utils.transforms import ResizeLongestSide

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sam_targets import LOW_RES, sample_prompts, scene_targets  # noqa: E402
from store import resume, save_sam_fp16, save_state  # noqa: E402

from promptbox import stand_ins, weights  # noqa: E402
from promptbox.world.scene import generate_scene  # noqa: E402


def fp16_rounded_sam(seed: int):
    """A random-init vit_t whose weights are already what the fp16 file will hold, so cached features match it."""
    state = stand_ins.random_sam_state_dict(seed)
    state = {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}
    return weights.sam_from_state_dict(state, f"random init (seed {seed}), fp16-rounded")


def trunk_features(sam, pixels: torch.Tensor) -> torch.Tensor:
    """TinyViT up to (not including) the neck: (B, 320, 64, 64)."""
    encoder = sam.image_encoder
    x = encoder.patch_embed(pixels)
    for layer in encoder.layers:
        x = layer(x)
    b, _, c = x.shape
    return x.view(b, 64, 64, c).permute(0, 3, 1, 2)


def scene_pixels(sam, image: np.ndarray, transform: ResizeLongestSide, device: str) -> torch.Tensor:
    resized = transform.apply_image(image)
    pixels = torch.as_tensor(resized, device=device).permute(2, 0, 1).contiguous()[None]
    return sam.preprocess(pixels)


def decode_all(sam, embedding: torch.Tensor, kind: str, coords: torch.Tensor, cut: tuple | None = None):
    """All 4 mask tokens' low-res logits (K, 4, 4h, 4w) and IoU predictions (K, 4) for one prompt kind;
    `cut` is the token window `embedding` was cut from (None: the whole 64x64 grid)."""
    encoder = sam.prompt_encoder
    if kind == "point":
        labels = torch.ones(coords.shape[0], 1, dtype=torch.int, device=coords.device)
        sparse, dense = encoder(points=(coords[:, None, :], labels), boxes=None, masks=None)
    else:
        sparse, dense = encoder(points=None, boxes=coords, masks=None)
    pe = encoder.get_dense_pe()
    if cut is not None:
        pe, dense = pe[cut], dense[cut]
    return sam.mask_decoder.predict_masks(embedding, pe, sparse, dense)


def _window(rng: np.random.Generator, size_hw: tuple[int, int], tokens: int):
    """A random `tokens` x `tokens` window of the 64x64 grid inside the image: (ty, tx) and (x0, y0, x1, y1) px."""
    h, w = size_hw
    scale = 1024 / max(h, w)  # source px -> encoder px; one token is 16 encoder px
    grid_h, grid_w = min(64, int(np.ceil(h * scale / 16))), min(64, int(np.ceil(w * scale / 16)))
    ty = int(rng.integers(0, max(1, grid_h - tokens + 1)))
    tx = int(rng.integers(0, max(1, grid_w - tokens + 1)))
    return (ty, tx), (tx * 16 / scale, ty * 16 / scale, (tx + tokens) * 16 / scale, (ty + tokens) * 16 / scale)


def mask_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, dict]:
    prob = logits.sigmoid()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(2, 3))
    inter = (prob * target).sum(dim=(2, 3))
    dice = 1 - (2 * inter + 1) / (prob.sum(dim=(2, 3)) + target.sum(dim=(2, 3)) + 1)
    with torch.no_grad():
        hard = (logits > 0).float()
        hard_inter = (hard * target).sum(dim=(2, 3))
        union = hard.sum(dim=(2, 3)) + target.sum(dim=(2, 3)) - hard_inter
        iou = hard_inter / union.clamp(min=1)
    loss = (bce + dice).mean() + F.mse_loss(iou_pred, iou)
    return loss, {"iou": float(iou.mean()), "iou_object": float(iou[:, 0].mean())}


def scene_loss(sam, args, transform, rng, targets, embedding, loss_total, metrics):
    """Add one scene's prompt losses to loss_total; metrics per prompt kind."""
    # Most steps decode a window of the embedding (fewer tokens: more prompts per second); the positional
    # encodings are cut from the same place, so every token keeps its absolute position.
    full = rng.random() < args.full_frame_share or args.window >= 64
    (ty, tx), window = _window(rng, targets.size_hw, 64 if full else args.window)
    for prompts in sample_prompts(targets, rng, args.points, args.boxes, None if full else window):
        coords = (
            transform.apply_boxes(prompts.coords, targets.size_hw)
            if prompts.kind == "box"
            else (transform.apply_coords(prompts.coords, targets.size_hw))
        )
        coords = torch.as_tensor(coords, dtype=torch.float32, device=args.device)
        target = torch.from_numpy(prompts.targets).to(args.device)
        if full:
            logits, iou_pred = decode_all(sam, embedding, prompts.kind, coords)
        else:
            cut = (slice(None), slice(None), slice(ty, ty + args.window), slice(tx, tx + args.window))
            logits, iou_pred = decode_all(sam, embedding[cut], prompts.kind, coords, cut)
            scale = LOW_RES // 64
            target = target[:, :, ty * scale : (ty + args.window) * scale, tx * scale : (tx + args.window) * scale]
        loss, metrics[prompts.kind] = mask_loss(logits.float(), iou_pred.float(), target)
        loss_total = loss_total + loss
    return loss_total, metrics


def trainable_parameters(sam, train_encoder: bool) -> list[torch.nn.Parameter]:
    sam.requires_grad_(False)
    modules = [sam.image_encoder] if train_encoder else [sam.image_encoder.neck]
    modules += [sam.prompt_encoder, sam.mask_decoder]
    for module in modules:
        module.requires_grad_(True)
    return [p for m in modules for p in m.parameters()]


def cache_trunk(sam, args, transform) -> torch.Tensor:
    path = Path(args.work) / f"trunk_seed{args.seed}_n{args.scenes}_{args.size}.pt"
    if path.exists():
        return torch.load(path)
    features = []
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(args.scenes):
            scene = generate_scene(args.seed, i, _size(args.size), split="train")
            features.append(trunk_features(sam, scene_pixels(sam, scene.image, transform, args.device)).half().cpu())
            if i % 10 == 0:
                print(f"[cache] {i + 1}/{args.scenes} scenes, {time.perf_counter() - started:.0f} s", flush=True)
    stacked = torch.cat(features)
    torch.save(stacked, path)
    return stacked


def _prepare_one(job: tuple[int, int, str, bool]):
    """One training scene: its prompt targets and, for the encoder regime, its resized uint8 image (H', W', 3)."""
    seed, index, size, with_image = job
    scene = generate_scene(seed, index, _size(size), split="train")
    targets = scene_targets(scene, np.random.default_rng([seed, index]))
    image = ResizeLongestSide(1024).apply_image(scene.image) if with_image else None
    return targets, image


def prepare_scenes(args) -> tuple[list, list]:
    """Every training scene once, in worker processes: a step then costs the network only."""
    jobs = [(args.seed, i, args.size, args.train_encoder) for i in range(args.scenes)]
    if args.workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            done = pool.map(_prepare_one, jobs, chunksize=8)
    else:
        done = [_prepare_one(job) for job in jobs]
    return [t for t, _ in done], [i for _, i in done]


def batch_pixels(sam, images: list, device: str) -> torch.Tensor:
    """(B, 3, 1024, 1024) normalised and padded, from resized uint8 images."""
    return torch.cat(
        [sam.preprocess(torch.as_tensor(im, device=device).permute(2, 0, 1).contiguous()[None]) for im in images]
    )


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def evaluate(sam, args, transform, scenes: int = 12) -> dict:
    """Mean IoU on validation scenes (never trained on): the object token, and the best of the 3 multimask tokens."""
    rng = np.random.default_rng(12345)
    object_iou, best_iou = [], []
    with torch.inference_mode():
        for i in range(scenes):
            scene = generate_scene(args.seed + 1000, i, _size(args.size), split="val")
            embedding = sam.image_encoder(scene_pixels(sam, scene.image, transform, args.device))
            for prompts in sample_prompts(scene_targets(scene, rng), rng, points=8, boxes=0):
                coords = torch.as_tensor(
                    transform.apply_coords(prompts.coords, scene.image.shape[:2]),
                    dtype=torch.float32,
                    device=args.device,
                )
                logits, _ = decode_all(sam, embedding, prompts.kind, coords)
                target = torch.from_numpy(prompts.targets).to(args.device)
                hard = (logits > 0).float()
                inter = (hard * target).sum(dim=(2, 3))
                iou = inter / (hard.sum(dim=(2, 3)) + target.sum(dim=(2, 3)) - inter).clamp(min=1)
                object_iou += iou[:, 0].tolist()
                best_iou += iou[:, 1:].max(dim=1).values.tolist()
    return {"val_object_miou": float(np.mean(object_iou)), "val_best_of_3_miou": float(np.mean(best_iou))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="build/world/sam", help="cache and checkpoint folder")
    parser.add_argument("--out", default=None, help="write the fp16 mobile_sam.pt here when done")
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--seed", type=int, default=0, help="world seed of the training scenes and the init")
    parser.add_argument("--minutes", type=float, default=20.0, help="training time budget of this call")
    parser.add_argument("--max-steps", type=int, default=100000)
    parser.add_argument("--planned-steps", type=int, default=3000, help="length of the learning-rate schedule")
    parser.add_argument("--points", type=int, default=8, help="point prompts per scene per step")
    parser.add_argument("--boxes", type=int, default=2, help="box prompts per scene per step")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--window", type=int, default=24, help="token window decoded in most steps (64 = all)")
    parser.add_argument("--full-frame-share", type=float, default=0.1, help="share of steps on the whole grid")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--train-encoder", action="store_true", help="train every weight (the GPU run)")
    parser.add_argument("--resume", action="store_true", help="continue from WORK/state.pt")
    parser.add_argument("--smoke", action="store_true", help="a few steps on 3 small scenes, to check the script")
    parser.add_argument("--batch", type=int, default=1, help="scenes per step (encoder regime)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--workers", type=int, default=1, help="processes that prepare the scenes")
    parser.add_argument("--init", default=None, help="start from this mobile_sam.pt when WORK has no state")
    args = parser.parse_args(argv)
    if args.smoke:
        args.scenes, args.size, args.max_steps, args.minutes = 3, "160x120", 3, 5.0
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    started = time.perf_counter()

    sam = fp16_rounded_sam(args.seed).to(args.device)
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    params = trainable_parameters(sam, args.train_encoder)
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    step, history = 0, []
    state_path = work / "state.pt"
    if args.resume:
        step, history = resume(state_path, sam, optimizer)
    if step == 0 and args.init:
        # A machine that was given back keeps no state: continue from the last weights that came back.
        init = torch.load(args.init, map_location=args.device)
        sam.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in init.items()})
        print(f"[train] weights from {args.init} (fresh optimizer)")
    trunk = None if args.train_encoder else cache_trunk(sam, args, transform)
    rng = np.random.default_rng([args.seed, step])
    sam.train()
    running: list[float] = []
    prepared, images = prepare_scenes(args)
    print(f"[train] {len(prepared)} scenes prepared, {time.perf_counter() - started:.0f} s", flush=True)
    deadline = time.perf_counter() + args.minutes * 60
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=args.bf16 and args.device.startswith("cuda"))
    while step < args.max_steps and time.perf_counter() < deadline:
        chosen = [int(j) for j in rng.integers(args.scenes, size=args.batch if args.train_encoder else 1)]
        with amp:
            if args.train_encoder:
                embeddings = sam.image_encoder(batch_pixels(sam, [images[j] for j in chosen], args.device))
            else:
                embeddings = sam.image_encoder.neck(trunk[chosen[0] : chosen[0] + 1].to(args.device).float())
        loss_total, metrics = 0.0, {}
        for b, i in enumerate(chosen):
            targets, embedding = prepared[i], embeddings[b : b + 1]
            with amp:
                loss_total, metrics = scene_loss(sam, args, transform, rng, targets, embedding, loss_total, metrics)
        loss_total = loss_total / len(chosen)
        # Warm-up then cosine over the planned steps (the run may stop earlier on its time budget).
        planned = min(args.max_steps, args.planned_steps)
        lr_scale = min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step / planned, 1.0))))
        for group in optimizer.param_groups:
            group["lr"] = args.lr * lr_scale
        optimizer.zero_grad(set_to_none=True)
        loss_total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        running.append(float(loss_total.detach()))
        if step % 100 == 0 or step == 1:
            point = metrics.get("point", {})
            line = {
                "step": step,
                "loss": round(float(np.mean(running[-100:])), 4),
                "point_object_iou": round(point.get("iou_object", 0.0), 3),
                "elapsed_s": round(time.perf_counter() - started),
            }
            history.append(line)
            print(f"[train] {json.dumps(line)}", flush=True)
        if step % 200 == 0:
            save_state(state_path, sam, optimizer, step, history)
    save_state(state_path, sam, optimizer, step, history)
    sam.eval()
    result = {
        "steps": step,
        "final_loss": float(np.mean(running[-50:])) if running else None,
        **evaluate(sam, args, transform, scenes=2 if args.smoke else 12),
        "regime": "all weights" if args.train_encoder else "frozen random TinyViT trunk (CPU regime)",
        "device": args.device,
        "seed": args.seed,
        "scenes": args.scenes,
        "size": args.size,
        "wall_s_this_call": round(time.perf_counter() - started),
    }
    print(f"[done] {json.dumps(result)}")
    (work / "result.json").write_text(json.dumps({**result, "history": history}, indent=1))
    if args.out:
        path = save_sam_fp16(sam, Path(args.out), result)
        print(f"[done] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
