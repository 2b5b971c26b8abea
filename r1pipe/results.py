"""The result card of a run: `runs/<name>/RESULTS.md` and `RESULTS.json`, what a user posts
to show a reproduction: every stage's evaluation (pass@1 ± SE) and its change against the
stage's input, tokens sampled and trained, wall time, the machine it ran on, and the gate
and training-health verdicts. Written at the end of `r1pipe run` and by `r1pipe report`
(which links it); each stage's model card gets its own lines of it.

Everything is read from what the run already wrote (`stage.json`, `metrics.jsonl`,
`eval/<benchmark>/summary.json`, `health.json`, `gate.json`); nothing is re-measured.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from r1pipe.artifacts import RunLayout, atomic_write, atomic_write_json, read_json
from r1pipe.config import BASE
from r1pipe.state import RUN_MARKER, package_versions, read_metrics, read_state

if TYPE_CHECKING:
    from r1pipe.config import PipelineConfig

RESULTS_MD = "RESULTS.md"
RESULTS_JSON = "RESULTS.json"
CARD_BEGIN, CARD_END = "<!-- r1pipe:results -->", "<!-- /r1pipe:results -->"
"""Around the result lines in a model card's README.md (replaced on each write)."""


def hardware() -> dict[str, Any]:
    """The machine: CPU model and cores, memory, GPUs (names), OS, Python."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = round(int(line.split()[1]) / 1024 / 1024, 1)
    gpus: list[str] = []
    try:
        import torch

        if torch.cuda.is_available():
            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch or no driver: no GPUs to name
        gpus = []
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": cores, "memory_gib": memory, "gpus": gpus,
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version()}


def _score(eval_dir: Path, benchmark: str) -> dict[str, float] | None:
    summary = read_json(eval_dir / benchmark / "summary.json")
    if not isinstance(summary, dict) or not isinstance(summary.get("pass@1"), (int, float)):
        return None
    out = {"pass@1": float(summary["pass@1"])}
    if isinstance(summary.get("pass@1_stderr"), (int, float)):
        out["se"] = float(summary["pass@1_stderr"])
    return out


def _tokens(metrics_path: Path, summary: dict[str, Any]) -> tuple[float | None, float | None]:
    """(tokens sampled, tokens trained) of a stage, prompt and completion tokens counted:
    the trainer's `num_tokens` (TRL counts every rollout it scored, so for GRPO that is
    sampled; dynamic sampling's own counts say what was trained), SFT's `num_tokens`
    trained, and the generation jobs' completion tokens sampled."""
    lines = read_metrics(metrics_path) if metrics_path.is_file() else []
    num = [m["num_tokens"] for m in lines if isinstance(m.get("num_tokens"), (int, float))]
    generated = sum(float(m["tokens"]) for m in lines if "tokens_per_second" in m
                    and isinstance(m.get("tokens"), (int, float)))
    rl = any("reward" in m for m in lines)
    ds_sampled = summary.get("dynamic sampling tokens sampled")
    ds_trained = summary.get("dynamic sampling tokens trained")
    if isinstance(ds_sampled, (int, float)) and isinstance(ds_trained, (int, float)):
        return float(ds_sampled) + generated, float(ds_trained)
    last = float(num[-1]) if num else None
    if rl:
        return (last or 0.0) + generated or None, last
    return (generated or None), last


def _against(mine: dict[str, dict[str, float]], theirs: dict[str, dict[str, float]],
             input_label: str) -> dict[str, dict[str, Any]]:
    """Each benchmark's score, with its change against the input model's (in points and in
    standard errors of the difference) where the input was evaluated on it."""
    evals = {}
    for bench, score in mine.items():
        row: dict[str, Any] = dict(score)
        if bench in theirs:
            row["input"] = input_label
            row["delta"] = score["pass@1"] - theirs[bench]["pass@1"]
            if "se" in score and "se" in theirs[bench]:
                spread = math.hypot(score["se"], theirs[bench]["se"])
                row["delta_se"] = row["delta"] / spread if spread > 0 else None
        evals[bench] = row
    return evals


def build(config: PipelineConfig) -> dict[str, Any]:
    """RESULTS.json's content (see the module)."""
    from r1pipe import gates, health
    from r1pipe.graph import stage_order

    layout = RunLayout(config.resolved_run_dir())
    benchmarks = list(config.eval.benchmarks)
    base = {b: s for b in benchmarks if (s := _score(layout.root / "base" / "eval", b))}
    scores: dict[str, dict[str, dict[str, float]]] = {"base": base}
    stages = []
    for name in stage_order(config):
        section = config.stages[name]
        state = read_state(layout, name) or {}
        stage_dir = layout.stage_dir(name)
        mine = {b: s for b in benchmarks if (s := _score(stage_dir / "eval", b))}
        scores[name] = mine
        source = getattr(section, "from_", None)
        # a stage without `from:` (distillation) trains models of its own: its parts
        # (`<stage>/<part>/eval`, one per student) are compared with the base model
        input_label = "base" if source in (None, BASE) else str(source)
        evals = _against(mine, scores.get(input_label, {}), input_label)
        parts = {}
        for part in sorted(p for p in stage_dir.iterdir() if (p / "eval").is_dir()) \
                if stage_dir.is_dir() else []:
            own = {b: s for b in benchmarks if (s := _score(part / "eval", b))}
            if own:
                parts[part.name] = _against(own, scores.get(input_label, {}), input_label)
        summary = state.get("summary") or {}
        sampled, trained = _tokens(stage_dir / "metrics.jsonl", summary)
        started, ended = state.get("started"), state.get("ended")
        gate = gates.read(layout, name)
        stages.append({
            "stage": name, "enabled": section.enabled,
            "status": ("gate failed" if gate and gate.get("status") == "failed"
                       else state.get("status", "not started")),
            "attempts": state.get("attempts"), "input": input_label,
            "wall_time_s": (float(ended) - float(started))
            if isinstance(started, (int, float)) and isinstance(ended, (int, float)) else None,
            "steps": summary.get("steps"), "tokens_sampled": sampled, "tokens_trained": trained,
            "eval": evals, "parts": parts,
            "dynamic_sampling": {k[len("dynamic sampling "):]: v for k, v in summary.items()
                                 if k.startswith("dynamic sampling ")},
            "health": {rule: health.verdict_line(entry)
                       for rule, entry in health.read(stage_dir).items()},
            "gate": gate,
        })
    return {"pipeline": config.name, "written": time.time(), "base_model":
            config.base_model.describe(), "benchmarks": benchmarks, "base": base,
            "stages": stages, "hardware": hardware(),
            "versions": package_versions()}


def _fmt(value: Any, spec: str = ".1f") -> str:
    return "—" if value is None else format(value, spec)


def _pct(score: dict[str, Any] | None) -> str:
    if not score:
        return "—"
    text = f"{100 * score['pass@1']:.1f}"
    if "se" in score:
        text += f" ± {100 * score['se']:.1f}"
    if "delta" in score:
        text += f" ({100 * score['delta']:+.1f}"
        text += f", {score['delta_se']:+.1f} SE)" if score.get("delta_se") is not None else ")"
    return text


def _cell(text: str) -> str:
    """Text from the run (messages, names) safe inside a markdown table cell."""
    return re.sub(r"[\r\n]+", " ", str(text)).replace("|", "\\|")


def markdown(data: dict[str, Any]) -> str:
    """RESULTS.md: the tables of RESULTS.json."""
    bench = data["benchmarks"]
    hw = data["hardware"]
    lines = [f"# {data['pipeline']}: results", "",
             f"Base model: {_cell(data['base_model'])}. Written "
             f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(data['written']))} by r1pipe "
             f"{data['versions'].get('r1pipe', '?')}; numbers in RESULTS.json.", "",
             f"Hardware: {_cell(hw['cpu'])}, {hw['cores']} cores, {_fmt(hw['memory_gib'])} GiB"
             + (f", GPUs: {_cell(', '.join(hw['gpus']))}" if hw["gpus"] else ", no GPU")
             + f"; {_cell(hw['os'])}, Python {hw['python']}.", "",
             "## Evaluation", "",
             "pass@1 in % ± SE; in brackets the change against the stage's input model (its "
             "`from:`), and that change in standard errors of the difference.", "",
             "| model | input | " + " | ".join(_cell(b) for b in bench) + " |",
             "|---|---|" + "---|" * len(bench),
             "| base | — | " + " | ".join(_pct(data["base"].get(b)) for b in bench) + " |"]
    for st in data["stages"]:
        if not st["enabled"]:
            continue
        if st["eval"] or not st.get("parts"):
            lines.append(f"| {_cell(st['stage'])} | {_cell(st['input'])} | "
                         + " | ".join(_pct(st["eval"].get(b)) for b in bench) + " |")
        for part, evals in st.get("parts", {}).items():
            lines.append(f"| {_cell(st['stage'] + '/' + part)} | {_cell(st['input'])} | "
                         + " | ".join(_pct(evals.get(b)) for b in bench) + " |")
    lines += ["", "## Stages", "",
              "| stage | status | wall time (min) | steps | tokens sampled | tokens trained | "
              "gate | health |", "|---|---|---|---|---|---|---|---|"]
    for st in data["stages"]:
        if not st["enabled"]:
            continue
        from r1pipe.gates import describe

        gate = describe(st["gate"]) if st["gate"] else "—"
        fired = [f"{rule}: {line}" for rule, line in st["health"].items() if line != "ok"]
        health = "; ".join(fired) if fired else ("ok" if st["health"] else "—")
        minutes = st["wall_time_s"] / 60 if st["wall_time_s"] is not None else None
        lines.append(f"| {st['stage']} | {st['status']} | {_fmt(minutes)} | "
                     f"{_fmt(st['steps'], 'd') if isinstance(st['steps'], int) else '—'} | "
                     f"{_fmt(st['tokens_sampled'], ',.0f')} | {_fmt(st['tokens_trained'], ',.0f')}"
                     f" | {_cell(gate)} | {_cell(health)} |")
    sampled = [st for st in data["stages"] if st["dynamic_sampling"]]
    if sampled:
        lines += ["", "## Dynamic sampling", "",
                  "| stage | steps | rounds | groups sampled | dropped (no spread) | trained | "
                  "short |", "|---|---|---|---|---|---|---|"]
        for st in sampled:
            ds = st["dynamic_sampling"]
            lines.append(f"| {st['stage']} | " + " | ".join(
                _fmt(ds.get(k), ",.0f") for k in ("steps", "rounds", "groups sampled",
                                                  "groups dropped", "groups trained",
                                                  "groups short")) + " |")
    total = sum(st["wall_time_s"] or 0 for st in data["stages"])
    lines += ["", f"Total stage wall time: {total / 60:.1f} min.", ""]
    return "\n".join(lines)


def model_card_lines(data: dict[str, Any], stage: str) -> str:
    """The block a stage's model card gets: its results and verdicts, and where the rest is."""
    st = next(s for s in data["stages"] if s["stage"] == stage)
    lines = [CARD_BEGIN, "## Results", ""]
    for bench, score in st["eval"].items():
        lines.append(f"- {bench}: pass@1 {_pct(score)} vs {st['input']}")
    if st["gate"]:
        from r1pipe.gates import describe

        lines.append(f"- gate: {_cell(describe(st['gate']))}")
    fired = [f"{rule} {line}" for rule, line in st["health"].items() if line != "ok"]
    if st["health"]:
        lines.append("- training health: " + (_cell("; ".join(fired)) if fired else "ok"))
    if st["dynamic_sampling"]:
        ds = st["dynamic_sampling"]
        lines.append(f"- dynamic sampling: {_fmt(ds.get('groups sampled'), ',.0f')} groups "
                     f"sampled, {_fmt(ds.get('groups dropped'), ',.0f')} dropped for no reward "
                     f"spread, {_fmt(ds.get('groups trained'), ',.0f')} trained")
    if st["wall_time_s"] is not None:
        lines.append(f"- wall time: {st['wall_time_s'] / 60:.1f} min on {_cell(data['hardware']['cpu'])}"
                     + (f" + {_cell(', '.join(data['hardware']['gpus']))}"
                        if data["hardware"]["gpus"] else ""))
    lines += [f"- the whole run: {RESULTS_MD} of pipeline `{data['pipeline']}`", CARD_END]
    return "\n".join(lines)


def _card(model_dir: Path, block: str) -> None:
    readme = model_dir / "README.md"
    if not readme.is_file():
        return
    text = readme.read_text(encoding="utf-8")
    if CARD_BEGIN in text and CARD_END in text:
        head, rest = text.split(CARD_BEGIN, 1)
        text = head + block + rest.split(CARD_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write(readme, text)


def read_checks(layout: RunLayout) -> list[tuple[str, str, str]]:
    """(stage, "gate" or "health <rule>", verdict) from the last RESULTS.json, for the
    report: every gate, and the health rules that warned or stopped."""
    data = read_json(layout.root / RESULTS_JSON)
    if not isinstance(data, dict):
        return []
    from r1pipe.gates import describe

    out = []
    for st in data.get("stages", []):
        if st.get("gate"):
            out.append((st["stage"], "gate", describe(st["gate"])))
        for rule, line in (st.get("health") or {}).items():
            if line != "ok":
                out.append((st["stage"], f"health {rule}", line))
    return out


def write(config: PipelineConfig) -> Path:
    """Write RESULTS.md and RESULTS.json in the run dir and the result lines into the model
    card of every finished stage; return the path of RESULTS.md."""
    layout = RunLayout(config.resolved_run_dir())
    data = build(config)
    atomic_write_json(layout.root / RESULTS_JSON, data)
    path = layout.root / RESULTS_MD
    atomic_write(path, markdown(data))
    for st in data["stages"]:
        model_dir = layout.stage_dir(st["stage"]) / "model"
        if st["status"] in ("finished", "gate failed") and model_dir.is_dir():
            _card(model_dir, model_card_lines(data, st["stage"]))
    return path


def write_quietly(config: PipelineConfig) -> Path | None:
    """`write`, for the end of `r1pipe run`: a card it cannot write is a warning, never the
    run's failure, and a folder r1pipe has not claimed as its run dir (a run refused before
    it started, `run_dir` pointed at a user's folder) gets nothing."""
    if not (Path(config.resolved_run_dir()) / RUN_MARKER).is_file():
        return None
    try:
        return write(config)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        import logging

        logging.getLogger("r1pipe.results").warning("could not write %s: %s", RESULTS_MD, exc)
        return None
