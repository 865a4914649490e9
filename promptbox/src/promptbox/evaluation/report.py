"""The numbers of an EvalRun per mode and tag, as a terminal table (modes side by side) or a JSON-ready dict."""

from __future__ import annotations

from dataclasses import dataclass

from promptbox.detection import RANDOM_WEIGHTS_TAG
from promptbox.evaluation.metrics import Counted, Latency, Mean, Metrics, latency, stage_latency, summarize
from promptbox.evaluation.runner import EvalRun

ALL = "all"
# The stages a Locator times, in pipeline order; other keys (proposals.*) go to the JSON only.
MAIN_STAGES = ("text", "embedding", "proposing", "matching", "selecting", "total")
FALLBACK_STAGE = "fallback proposing"  # the Locator times it only when fast mode falls back to the grid
_RATES = (
    ("accuracy", "accuracy"),
    ("mean IoU", "mean_iou"),
    ("mean mask IoU", "mean_mask_iou"),
    ("false-box rate", "false_box_rate"),
    ("not-found precision", "not_found_precision"),
    ("not-found recall", "not_found_recall"),
    ("wrong-object rate", "wrong_object_rate"),
    ("part-of-object rate", "part_rate"),
)
# Shown only for datasets with depth, so the tables and JSON of others stay as they were.
_POSE_RATES = (
    ("found with a 3D pose", "pose_rate"),
    ("3D centroid error m", "centroid_error_m"),
    ("3D centroid within 1 cm", "centroid_close_rate"),
)
_LABEL_WIDTH, _CELL_WIDTH, _VALUE_WIDTH = 26, 22, 8  # 26 + 3 modes x 22 = 92 columns


@dataclass(frozen=True)
class TagReport:
    metrics: Metrics
    latency_ms: dict[str, Latency]


@dataclass(frozen=True)
class Report:
    dataset: str
    describe: str
    random_weights: bool
    weights_tag: str
    queries: int  # distinct queries; each is answered once per mode
    frames: int
    modes: tuple[str, ...]
    tags: tuple[str, ...]  # "all" first, then the dataset's tags sorted
    per_mode: dict[str, dict[str, TagReport]]
    frame_embedding_ms: Latency | None
    depth: bool = False  # some query has depth: the 3D rows are reported

    @property
    def marks(self) -> str:
        """The weight marks every header repeats: results of random or synthetic weights must not pass for real."""
        marks = [RANDOM_WEIGHTS_TAG] if self.random_weights else []
        if self.weights_tag and self.weights_tag not in marks:  # the Locator's tag may itself be the random one
            marks.append(self.weights_tag)
        return " ".join(marks)


def build_report(run: EvalRun) -> Report:
    """Metrics and latency per mode and tag; each query counts in every one of its tags and in "all"."""
    tags = (ALL, *sorted({tag for query in run.dataset.queries for tag in query.tags} - {ALL}))
    per_mode: dict[str, dict[str, TagReport]] = {}
    for mode in run.modes:
        results = [r for r in run.results if r.mode == mode]
        per_mode[mode] = {}
        for tag in tags:
            chosen = [r for r in results if tag == ALL or tag in r.query.tags]
            per_mode[mode][tag] = TagReport(
                summarize([r.outcome for r in chosen]), stage_latency(r.timings_ms for r in chosen)
            )
    return Report(
        dataset=str(run.dataset.root),
        describe=run.describe,
        random_weights=run.random_weights,
        weights_tag=run.weights_tag,
        queries=len(run.dataset.queries),
        frames=run.frames,
        modes=run.modes,
        tags=tags,
        per_mode=per_mode,
        frame_embedding_ms=latency(run.frame_embedding_ms),
        depth=any(query.depth is not None for query in run.dataset.queries),
    )


def format_table(report: Report) -> str:
    """A plain-text table: rows tag x metric, one column per mode; then latency per stage."""
    marks = f"{report.marks} " if report.marks else ""
    lines = [
        f"{marks}promptbox eval: {report.queries} queries on {report.frames} frames, modes {', '.join(report.modes)}",
        f"dataset: {report.dataset}",
        f"weights: {report.describe}",
    ]
    emb = report.frame_embedding_ms
    if emb is not None:
        lines.append(f"embedding per frame: p50 {emb.p50:.1f} ms, p95 {emb.p95:.1f} ms, {emb.count} frames "
                     "(once per frame, shared by every command and mode but upstream)")
    rule = "-" * (_LABEL_WIDTH + _CELL_WIDTH * len(report.modes))
    lines += ["", f"{marks}results per tag (rows) and mode (columns)", _header("tag / metric", report.modes), rule]
    for tag in report.tags:
        first = report.per_mode[report.modes[0]][tag].metrics
        lines.append(f"{tag}: {_plural(first.queries, 'query', 'queries')}, {first.present} present, "
                     f"{first.absent} absent")
        for label, name in _rates(report):
            cells = [_cell(getattr(report.per_mode[mode][tag].metrics, name)) for mode in report.modes]
            lines.append(_row(f"  {label}", cells))
        cells = [_latency_cell(report.per_mode[mode][tag].latency_ms.get("total")) for mode in report.modes]
        lines.append(_row("  total ms p50 / p95", cells))
    lines += ["", f"{marks}latency per stage over {ALL} queries, ms p50 / p95", _header("stage", report.modes), rule]
    # The frame embedding is paid once per frame, outside the locate calls whose "embedding" it makes ~0.
    cells = [_latency_cell(emb if mode != "upstream" else None) for mode in report.modes]
    lines.append(_row("  embedding per frame", cells))
    for stage in MAIN_STAGES:
        cells = [_latency_cell(report.per_mode[mode][ALL].latency_ms.get(stage)) for mode in report.modes]
        lines.append(_row(f"  {stage}", cells))
    if "fast" in report.modes:
        # Fast mode's cost depends on how often its prompts found nothing and exact mode's grid had to answer.
        cells = [(str(fallbacks(report.per_mode[mode][ALL])), f"of {report.per_mode[mode][ALL].metrics.queries}")
                 if mode == "fast" else ("-", "") for mode in report.modes]
        lines.append(_row("  fell back to the grid", cells))
    return "\n".join(lines)


def fallbacks(tag_report: TagReport) -> int:
    """How many of the tag's queries fast mode answered only after falling back to exact mode's grid."""
    timed = tag_report.latency_ms.get(FALLBACK_STAGE)
    return 0 if timed is None else timed.count


def report_dict(report: Report) -> dict:
    """The same numbers for machines: modes -> tag -> metrics and latency_ms (every stage the locator timed)."""
    return {
        "dataset": report.dataset,
        "describe": report.describe,
        "random_weights": report.random_weights,
        "weights_tag": report.weights_tag,
        "queries": report.queries,
        "frames": report.frames,
        "modes": {
            mode: {tag: _tag_dict(tag_report, _rates(report)) for tag, tag_report in report.per_mode[mode].items()}
            for mode in report.modes
        },
        "frame_embedding_ms": _latency_dict(report.frame_embedding_ms),
    }


def _rates(report: Report) -> tuple[tuple[str, str], ...]:
    return _RATES + _POSE_RATES if report.depth else _RATES


def _tag_dict(tag_report: TagReport, rates: tuple[tuple[str, str], ...] = _RATES) -> dict:
    metrics = tag_report.metrics
    payload: dict = {"queries": metrics.queries, "present": metrics.present, "absent": metrics.absent}
    for _, name in rates:
        value = getattr(metrics, name)
        if isinstance(value, Counted):
            payload[name] = {"value": value.value, "hits": value.hits, "total": value.total}
        else:
            payload[name] = {"value": value.value, "count": value.count}
    payload["fallbacks"] = fallbacks(tag_report)
    payload["latency_ms"] = {stage: _latency_dict(lat) for stage, lat in tag_report.latency_ms.items()}
    return payload


def _latency_dict(lat: Latency | None) -> dict | None:
    return None if lat is None else {"p50": round(lat.p50, 3), "p95": round(lat.p95, 3), "count": lat.count}


def _row(label: str, cells: list[tuple[str, str]]) -> str:
    # A cell is (value, detail): values right-aligned, details left-aligned after them, so columns line up.
    body = "".join(f"  {value:>{_VALUE_WIDTH}}  {detail:<{_CELL_WIDTH - _VALUE_WIDTH - 4}}" for value, detail in cells)
    return f"{label:<{_LABEL_WIDTH}}{body}".rstrip()


def _header(label: str, modes: tuple[str, ...]) -> str:
    # Mode names right-aligned over the values.
    pad = _CELL_WIDTH - _VALUE_WIDTH - 2
    return f"{label:<{_LABEL_WIDTH}}" + "".join(f"  {mode:>{_VALUE_WIDTH}}{'':<{pad}}" for mode in modes).rstrip()


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _cell(value: Counted | Mean) -> tuple[str, str]:
    if value.value is None:
        return "-", ""
    if isinstance(value, Counted):
        return f"{value.value:.3f}", f"{value.hits}/{value.total}"
    return f"{value.value:.3f}", f"n={value.count}"


def _latency_cell(lat: Latency | None) -> tuple[str, str]:
    return ("-", "") if lat is None else (f"{lat.p50:.1f}", f"/ {lat.p95:.1f}")
