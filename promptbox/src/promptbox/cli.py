"""`promptbox` command line: locate, weights, bench, eval, world.

Exit codes of `locate`: 0 found, 3 not found, 2 usage, input or missing-weights error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from promptbox.camera import Intrinsics
    from promptbox.depth import NoPose, Target3D
    from promptbox.detection import Detection, NotFound

EXIT_FOUND, EXIT_ERROR, EXIT_NOT_FOUND = 0, 2, 3


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        # argparse's REMAINDER drops leading options, so the bench's own parser takes every argument after "bench".
        return _run_bench(argv[1:])
    if argv[:1] == ["eval"]:
        from promptbox.evaluation.cli import main as eval_main

        return eval_main(argv[1:])
    if argv[:1] == ["world"]:
        from promptbox.world.cli import main as world_main

        return world_main(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    return args.run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promptbox", description="Find the object a command names in an image.")
    sub = parser.add_subparsers(dest="command")

    locate = sub.add_parser("locate", help="find the object a command names in one image")
    locate.add_argument("image", help="image file (png, jpg, ...)")
    locate.add_argument("text", metavar="COMMAND", help='what to find, e.g. "take the scissors"')
    locate.add_argument("--json", action="store_true", help="print the result as JSON")
    locate.add_argument("--out", type=Path, help="write the annotated image here (png)")
    locate.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    locate.add_argument("--model", default="tinyclip-61m", help="CLIP: tinyclip-61m, tinyclip-8m, clip-b32, or a path")
    locate.add_argument("--sam-checkpoint", help="path to mobile_sam.pt (default: resolve, see README)")
    locate.add_argument("--mode", default="exact", choices=("exact", "fast", "upstream"), help="proposal mode")
    locate.add_argument("--min-score", type=float, default=None, help="calibrated score below which: not found")
    add_matching_arguments(locate)
    add_backend_argument(locate)
    add_fast_fallback_argument(locate)
    add_fast_map_arguments(locate)
    locate.add_argument(
        "--amg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an AMG setting, e.g. --amg points_per_side=8 --amg pred_iou_thresh=0.7 (repeatable)",
    )
    locate.add_argument(
        "--random-weights",
        action="store_true",
        help="use random-init models where checkpoints are missing (plumbing checks only; results are marked)",
    )
    locate.add_argument(
        "--world-masks",
        type=Path,
        metavar="WORLD_FOLDER",
        help="IMAGE is a scene of this `promptbox world generate` folder: its exact masks stand in for MobileSAM's "
        "network (world demos while world MobileSAM weights don't exist; marked)",
    )
    locate.add_argument("--depth", type=Path, metavar="DEPTH",
                        help="depth aligned to IMAGE (16-bit PNG/TIFF in mm, or 32-bit float TIFF in m): adds the "
                        "object's 3D centroid and extent in the camera optical frame; needs --camera-info")
    locate.add_argument("--camera-info", type=Path, metavar="INFO_JSON",
                        help="the camera's sensor_msgs/CameraInfo as JSON (width, height, k, optional p, d, "
                        "distortion_model); K (and D) is used unless --rectified")
    locate.add_argument("--rectified", action="store_true",
                        help="IMAGE and DEPTH are rectified (image_rect): use CameraInfo's P instead of K and D")
    locate.set_defaults(run=_run_locate)

    weights_cmd = sub.add_parser("weights", help="check or fetch the model checkpoints")
    weights_cmd.add_argument("action", choices=("check", "fetch"))
    weights_cmd.add_argument(
        "--model",
        action="append",
        help="CLIP model to fetch/check, repeatable, or 'all' (default: tinyclip-61m); mobile_sam.pt always",
    )
    weights_cmd.set_defaults(run=_run_weights)

    # Listed for --help only: main() hands "bench" to the bench's own parser, so `locate` never imports it.
    sub.add_parser("bench", help="time the seed configuration against exact and fast modes (see bench --help)")
    sub.add_parser("eval", help="measure accuracy on a labelled folder of frames (see eval --help)")
    sub.add_parser("world", help="generate synthetic tabletop scenes with their truth (see world --help)")
    return parser


def _run_bench(argv: list[str]) -> int:
    from promptbox import bench

    parser = argparse.ArgumentParser(prog="promptbox bench", description="time the seed configuration side by side")
    bench.add_arguments(parser)
    return bench.run_from_args(parser.parse_args(argv))


def _run_locate(args: argparse.Namespace) -> int:
    import cv2

    from promptbox.annotate import draw
    from promptbox.command import parse
    from promptbox.config import LocatorConfig
    from promptbox.detection import summary
    from promptbox.locator import Locator
    from promptbox.weights import WeightsError

    image_bgr = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if image_bgr is None:
        print(f"promptbox: image {args.image!r} could not be read; accepted: an existing png/jpg/bmp/tiff file",
              file=sys.stderr)
        return EXIT_ERROR
    image = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    try:
        parse(args.text)  # refuse a bad command before spending seconds on loading models
        depth = _depth_inputs(args, image.shape[:2])  # and bad depth input too
        overrides = _amg_overrides(args.amg)
        config = LocatorConfig(
            sam_checkpoint=args.sam_checkpoint,
            clip_model=args.model,
            device=args.device,
            mode=args.mode,
            allow_random_weights=args.random_weights,
            matching=args.matching,
            shortlist_size=args.shortlist_size,
            encoder_backend=args.encoder_backend,
            fast_fallback=args.fast_fallback,
            fast_map=args.fast_map,
            map_window=args.map_window,
        ).with_overrides(**overrides)
        if args.min_score is not None:
            config = config.with_overrides(min_score=args.min_score)
        proposer = None
        if args.world_masks is not None:
            from promptbox.evaluation.world_masks import WorldMaskProposer

            proposer = WorldMaskProposer.for_dataset(args.world_masks, config.amg)
        locator = Locator(config, proposer=proposer)
        result = locator.locate(image, args.text)
    except WeightsError as error:
        print(f"promptbox: {error}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as error:
        print(f"promptbox: {error}", file=sys.stderr)
        return EXIT_ERROR

    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.out), cv2.cvtColor(draw(image, result), cv2.COLOR_RGB2BGR))
    target = None if depth is None else _target_3d(result, depth)
    if args.json:
        payload = result.to_dict()
        payload["image"] = {"path": args.image, "width": image.shape[1], "height": image.shape[0]}
        payload["command"] = args.text
        if target is not None:
            payload["target_3d"] = target.to_dict()
        print(json.dumps(payload, indent=2))
    else:
        print(summary(result))
        if target is not None:
            print(target.summary())
    return EXIT_FOUND if result.found else EXIT_NOT_FOUND


def _depth_inputs(args: argparse.Namespace, shape: tuple[int, int]) -> tuple[np.ndarray, str, Intrinsics] | None:
    """(depth, encoding, intrinsics) from --depth and --camera-info, checked against the image; None without them."""
    from promptbox.camera import from_camera_info, read_camera_info
    from promptbox.depth import read_depth

    if args.depth is None and args.camera_info is None:
        if args.rectified:
            raise ValueError("--rectified applies to --depth and --camera-info; accepted: all three, or neither")
        return None
    if args.depth is None or args.camera_info is None:
        given, missing = ("--depth", "--camera-info") if args.depth is not None else ("--camera-info", "--depth")
        raise ValueError(f"{given} without {missing}; accepted: --depth DEPTH --camera-info INFO_JSON together")
    depth, encoding = read_depth(args.depth)
    if depth.shape != tuple(shape):
        raise ValueError(f"--depth {str(args.depth)!r} is {depth.shape[1]}x{depth.shape[0]} but the image is "
                         f"{shape[1]}x{shape[0]}; accepted: depth aligned to the image, of its size")
    intrinsics = from_camera_info(read_camera_info(args.camera_info), rectified=args.rectified)
    if (intrinsics.width, intrinsics.height) != (shape[1], shape[0]):
        raise ValueError(f"--camera-info {str(args.camera_info)!r} is for {intrinsics.width}x{intrinsics.height} "
                         f"but the image is {shape[1]}x{shape[0]}; accepted: the camera_info of this image's camera")
    return depth, encoding, intrinsics


def _target_3d(result: Detection | NotFound, depth: tuple[np.ndarray, str, Intrinsics]) -> Target3D | NoPose:
    from promptbox.depth import NoPose, target_from_depth

    if not result.found:
        return NoPose("nothing was found in the image")
    if result.mask is None:
        return NoPose("the answer has no mask")
    return target_from_depth(result.mask, *depth)


def add_matching_arguments(parser: argparse.ArgumentParser) -> None:
    """--matching and --shortlist-size, for locate and eval."""
    from promptbox.config import LocatorConfig

    defaults = LocatorConfig()
    parser.add_argument("--matching", default=defaults.matching, choices=("shortlist", "crops"),
                        help="shortlist: pooled CLIP tokens rank the masks, the best get crops; crops: crop every mask")
    parser.add_argument("--shortlist-size", type=int, default=defaults.shortlist_size,
                        help=f"regions re-scored with crops per phrase (default {defaults.shortlist_size})")


def add_backend_argument(parser: argparse.ArgumentParser) -> None:
    """--encoder-backend, for locate and eval; LocatorConfig checks the value and names what it accepts."""
    parser.add_argument("--encoder-backend", default="torch",
                        help="torch (default), onnx or onnx-int8: ONNX Runtime for MobileSAM's encoder and decoder "
                             "and CLIP's towers")


def add_fast_fallback_argument(parser: argparse.ArgumentParser) -> None:
    """--no-fast-fallback, for locate and eval."""
    parser.add_argument("--no-fast-fallback", dest="fast_fallback", action="store_false",
                        help="fast mode: answer from the similarity map's prompts alone, even 'not found' (default: "
                             "when nothing they propose passes --min-score, go on with exact mode's grid); a spatial "
                             "qualifier or a relation is matched on exact mode's masks either way")


def add_fast_map_arguments(parser: argparse.ArgumentParser) -> None:
    """--fast-map and --map-window, for locate and eval."""
    from promptbox.config import FAST_MAPS, LocatorConfig

    defaults = LocatorConfig()
    parser.add_argument("--fast-map", default=defaults.fast_map, choices=FAST_MAPS,
                        help="fast mode's similarity map: tokens (CLIP's patch tokens), windows (square CLIP crops "
                             "over the frame: on a CPU a real CLIP's windows cost seconds), both, or auto (default: "
                             "both on a GPU, tokens on a CPU)")
    parser.add_argument("--map-window", type=float, default=defaults.map_window,
                        help=f"fast mode's windows: their side as a share of the frame's longest side "
                             f"(default {defaults.map_window})")


def _amg_overrides(pairs: list[str]) -> dict[str, float | int | bool]:
    from dataclasses import fields

    from promptbox.config import AmgSettings

    types = {f.name: f.type for f in fields(AmgSettings)}
    overrides: dict[str, float | int | bool] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in types or not value:
            raise ValueError(f"--amg {pair!r}: expected NAME=VALUE with NAME one of {', '.join(types)}")
        if types[name] in ("bool", bool):
            if value.lower() not in ("true", "false"):
                raise ValueError(f"--amg {pair!r}: {value!r} is not a bool; accepted: true, false")
            overrides[f"amg_{name}"] = value.lower() == "true"
            continue
        try:
            overrides[f"amg_{name}"] = int(value) if types[name] in ("int", int) else float(value)
        except ValueError:
            raise ValueError(f"--amg {pair!r}: {value!r} is not a {types[name]}") from None
    return overrides


def _run_weights(args: argparse.Namespace) -> int:
    from promptbox import downloads, weights

    if args.action == "check":
        records = weights.check(args.model)
        for record in records:
            where = record.where or "missing"
            print(f"{'ok     ' if record.found else 'MISSING'} {record.name:<14} {where}  {record.detail}".rstrip())
        return 0 if all(r.found for r in records) else 1
    try:
        for line in downloads.fetch(args.model):
            print(line)
    except weights.WeightsError as error:
        print(f"promptbox: {error}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
