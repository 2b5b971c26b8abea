"""Distillation: small models fine-tuned on the big model's reasoning, with SFT only.

"To equip more efficient smaller models with reasoning capabilities like DeepSeek-R1, we
directly fine-tuned open-source models like Qwen and Llama using the 800k samples curated
with DeepSeek-R1." No RL: distilling a strong model beats RL on a small one. Each student
listed under `students:` is fine-tuned on the rejection-sampling data (or a `where:`
filter of it) and gets its own checkpoint under `distill/<student>/model/`.

A student is any model r1pipe loads: a Hub id, a folder, a GGUF file, or a smaller model
derived from one by keeping a subset of its decoder layers (`layers: [...]`). Each may
override the stage's `trainer:` settings and LoRA. `method: on_policy` instead lets each
student write its own answers and matches the teacher's next-token distribution on them
(TRL's DistillationTrainer); that needs a teacher with the same tokenizer.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

from pydantic import Field, model_validator

from r1pipe.config import DataRef, LoraSection, ModelRef, Section, SFTStageConfig
from r1pipe.contract import StageContext, StageResult
from r1pipe.models import ModelSpec

NAME = "distill"

RESULT_FILE = "result.json"
_RESERVED = {"data", "checkpoints", "model", "adapter", "eval"}
_OWN_KEYS = ("trainer", "lora", "push_to_hub")


class Student(Section):
    """One student: a model (as `base_model:` accepts it) and its own training settings.

    YAML can say `small: org/name`, `small: {gguf: ..., layers: [0, 1], trainer: {...}}`,
    or `small: {model: {...}, trainer: {...}}`.
    """

    model: ModelSpec
    trainer: dict[str, Any] = Field(default_factory=dict, description="over the stage's")
    lora: LoraSection | None = None
    push_to_hub: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, (str, os.PathLike)):
            return {"model": os.fspath(value)}
        if isinstance(value, dict) and "model" not in value:
            own = {k: value[k] for k in _OWN_KEYS if k in value}
            return {**own, "model": {k: v for k, v in value.items() if k not in _OWN_KEYS}}
        return value


class Config(SFTStageConfig):
    from_: ModelRef | None = Field(None, alias="from", description="unused: see `students`")
    data: DataRef = "reject_sample:mix"
    where: dict[str, Any] = Field(
        default_factory=dict, description="train on the records whose fields have these "
        "values (a value, or a list of them), e.g. {source: reasoning}")
    students: dict[str, Student] = Field(min_length=1)
    method: Literal["sft", "on_policy"] = "sft"
    teacher: ModelRef | None = Field(
        None, description="on_policy: the model whose distribution students match "
        "(default: reasoning_rl, the model rejection sampling sampled)")

    def trainer_config_class(self) -> str | None:
        return "DistillationConfig" if self.method == "on_policy" else "SFTConfig"

    @model_validator(mode="after")
    def _check(self) -> Config:
        if self.from_ is not None:
            raise ValueError("`from` is not used by distill: each student under `students:` "
                             "names its own model")
        if self.push_to_hub is not None:
            raise ValueError("push_to_hub: give it per student (students.<name>.push_to_hub)")
        from r1pipe.config import trainer_problem

        for name, student in self.students.items():
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name) or name in _RESERVED:
                raise ValueError(f"student name {name!r} becomes a folder name: use letters, "
                                 f"digits, '.', '_' and '-', and none of {sorted(_RESERVED)}")
            problem = trainer_problem(self.trainer_config_class() or "SFTConfig",
                                      student.trainer)
            if problem is not None:
                raise ValueError(f"students.{name}.trainer.{problem[0]}: {problem[1]}")
        if self.method == "sft":
            self.teacher = None  # no input unless a teacher is used
        elif self.teacher is None:
            self.teacher = "reasoning_rl"
        return self


def describe(spec: ModelSpec) -> str:
    """The student's source, layer subset included (`describe` omits it for built-ins)."""
    text = spec.describe()
    if spec.layers is not None and "layers" not in text:
        text += f" (layers {','.join(map(str, spec.layers))})"
    return text


def run(ctx: StageContext[Config]) -> StageResult:
    cfg: Config = ctx.config
    results = {name: train_student(ctx, name, student)
               for name, student in cfg.students.items()}
    summary: dict[str, Any] = {"students": ", ".join(results)}
    for name, result in results.items():
        summary[f"{name}: model"] = result["model"]
        summary[f"{name}: steps"] = result["steps"]
        summary.update({f"{name}: {k}": v for k, v in result["metrics"].items()})
    summary["data records"] = next(iter(results.values()))["records"]
    return StageResult(summary=summary,
                       artifacts={name: f"{name}/model" for name in cfg.students})


def train_student(ctx: StageContext, name: str, student: Student) -> dict[str, Any]:
    """Fine-tune one student into `distill/<name>/model/`; a student finished by an earlier
    attempt of this run is not trained again, one interrupted resumes from its checkpoint."""
    from r1pipe.artifacts import atomic_write_json, read_json
    from r1pipe.models import materialize
    from r1pipe.train import CardText, on_policy_distill, sft, sft_data

    cfg: Config = ctx.config
    part = ctx.for_part(name, cfg.model_copy(update={
        "trainer": {**cfg.trainer, **student.trainer}, "lora": student.lora or cfg.lora,
        "push_to_hub": student.push_to_hub}))
    done = read_json(part.stage_dir / RESULT_FILE)
    if done is not None and (part.model_dir / "config.json").is_file():
        return done
    model = materialize(student.model, ctx.layout.imports)
    data = sft_data(part, ctx.input("data"), model=model, where=cfg.where)
    label = cfg.data + "".join(f" {k}={v}" for k, v in cfg.where.items())
    if cfg.method == "on_policy":
        card = CardText({label: data.num_rows}, f"Distillation (on-policy) of `{cfg.teacher}` "
                        f"into student `{name}` ({describe(student.model)}).",
                        tags=("distill", name), base_model=student.model)
        out = on_policy_distill(part, model=model, teacher=ctx.input("teacher"),
                                train_dataset=data, card=card, lora=part.config.lora)
    else:
        card = CardText({label: data.num_rows}, f"Distilled student `{name}` "
                        f"({describe(student.model)}): SFT on the rejection-sampling data of "
                        f"the R1 recipe ({label}), no RL.",
                        tags=("distill", name), base_model=student.model)
        out = sft(part, model=model, train_dataset=data, card=card, lora=part.config.lora)
    result = {"model": describe(student.model), "steps": out.steps, "records": data.num_rows,
              "metrics": {k: round(v, 4) for k, v in out.metrics.items()}}
    if ctx.is_main_process:
        atomic_write_json(part.stage_dir / RESULT_FILE, result)
    return result
