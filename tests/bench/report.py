"""reports/bench.json, reports/bench.md and the charts, from the figures of one run."""

from pathlib import Path
from typing import Any

import orjson

GOALS = {
    "ratio_to_limit": (">=", 0.9),
    "ratio_to_peer": (">=", 1.7),
    "retrieval_ratio": ("<=", 1.2),
    "freshness_p50_s": ("<", 0.5),
}


def met(name: str, value: float | None) -> str:
    if name not in GOALS or value is None:
        return ""
    sign, goal = GOALS[name]
    ok = {">=": value >= goal, "<=": value <= goal, "<": value < goal}[sign]
    return f"{'met' if ok else 'missed'} (goal {sign} {goal})"


def write(reports: Path, figures: dict[str, Any]) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "bench.json").write_bytes(
        orjson.dumps(figures, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
    (reports / "bench.md").write_text(markdown(figures))
    charts(reports, figures)


def markdown(f: dict[str, Any]) -> str:
    rows = [
        ("embedder alone (limit), chunks/s", f["embedder_limit_cps"], ""),
        ("pipeline, k8s docs, chunks/s", f["pipeline_cps"], ""),
        ("pipeline / limit", f["ratio_to_limit"], met("ratio_to_limit", f["ratio_to_limit"])),
        ("pipeline, large corpus, chunks/s", f.get("pipeline_large_cps"), ""),
        ("peer (LlamaIndex), k8s docs, chunks/s", f.get("peer_cps"), ""),
        ("ragbus / peer", f.get("ratio_to_peer"), met("ratio_to_peer", f.get("ratio_to_peer"))),
        (
            "upload→queryable p50, s",
            f["freshness_p50_s"],
            met("freshness_p50_s", f["freshness_p50_s"]),
        ),
        ("upload→queryable p95, s", f["freshness_p95_s"], ""),
        ("retrieval p50 (concurrency 1), ms", f["retrieval_p50_ms"], ""),
        ("in-process baseline p50, ms", f["baseline_p50_ms"], ""),
        (
            "retrieval / baseline",
            f["retrieval_ratio"],
            met("retrieval_ratio", f["retrieval_ratio"]),
        ),
        ("SSE first-token overhead over the bare model, ms", f["ttft_overhead_ms"], ""),
    ]
    lines = [
        "# ragbus benchmark",
        "",
        f"{f['machine']}; {f['started']}; embedding backend `{f['embedder']}`.",
        "",
        "| figure | value | |",
        "| --- | --- | --- |",
        *(f"| {name} | {'—' if value is None else value} | {note} |" for name, value, note in rows),
        "",
        "## Retrieval latency (ms), through the service and in process",
        "",
        "| concurrency | service p50 | p95 | p99 | baseline p50 | p95 | p99 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for level, service in f["query"]["service"].items():
        base = f["query"]["baseline"][level]
        lines.append(
            f"| {level} | {service['p50']} | {service['p95']} | {service['p99']} | "
            f"{base['p50']} | {base['p95']} | {base['p99']} |"
        )
    lines += ["", "## Peak memory (RSS, MB)", "", "| process | MB |", "| --- | --- |"]
    lines += [f"| {name} | {mb} |" for name, mb in f["peak_rss_mb"].items()]
    lines += [
        "",
        "## Runs",
        "",
        "```json",
        orjson.dumps(f["runs"], option=orjson.OPT_INDENT_2).decode(),
        "```",
        "",
    ]
    return "\n".join(lines)


def charts(reports: Path, f: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["embedder alone", "pipeline k8s", "pipeline large", "peer k8s"]
    values = [
        f["embedder_limit_cps"],
        f["pipeline_cps"],
        f.get("pipeline_large_cps"),
        f.get("peer_cps"),
    ]
    shown = [(n, v) for n, v in zip(names, values, strict=True) if v is not None]
    figure, axis = plt.subplots(figsize=(8, 4))
    bars = axis.bar(
        [n for n, _ in shown], [v for _, v in shown], color=["C0", "C1", "C1", "C2"][: len(shown)]
    )
    axis.bar_label(bars, fmt="%.1f")
    axis.set_ylabel("chunks / s")
    axis.set_title("Ingestion throughput (2 cores, same chunks and model threads)")
    figure.tight_layout()
    figure.savefig(reports / "bench-throughput.png", dpi=110)
    plt.close(figure)

    levels = list(f["query"]["service"])
    figure, axis = plt.subplots(figsize=(8, 4))
    width = 0.2
    for offset, (source, quantile) in enumerate(
        [("service", "p50"), ("service", "p95"), ("baseline", "p50"), ("baseline", "p95")]
    ):
        axis.bar(
            [i + (offset - 1.5) * width for i in range(len(levels))],
            [f["query"][source][level][quantile] for level in levels],
            width,
            label=f"{source} {quantile}",
        )
    axis.set_xticks(range(len(levels)), [f"concurrency {level}" for level in levels])
    axis.set_ylabel("ms")
    axis.set_yscale("log")
    axis.legend()
    axis.set_title("Retrieval latency: through the query service vs in process")
    figure.tight_layout()
    figure.savefig(reports / "bench-query.png", dpi=110)
    plt.close(figure)
