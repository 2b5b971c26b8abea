"""`r1pipe data ...`: look at a pipeline's data sources before spending compute on them.

`preview` loads a source exactly as a stage would (same seed, same column mapping) and
shows the first records rendered with each prompt template, so a wrong column, a template
that mangles the question or an answer in the wrong form is seen in seconds.

Everything heavy (datasets, transformers) is imported inside the command, so mounting
this sub-app keeps `r1pipe --help` instant.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from r1pipe.data.sources import DataSourceConfig

app = typer.Typer(
    help="Look at the pipeline's data sources.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)

EXIT_CONFIG = 2


@app.callback()
def _group() -> None:
    """Look at the pipeline's data sources."""
    # A callback keeps `preview` a subcommand even while it is the only one.


def _show_prompt(rendered: Any) -> str:
    """A rendered prompt as text: strings as they are, a messages list as JSON lines."""
    if isinstance(rendered, str):
        return rendered
    return "\n".join(json.dumps(m, ensure_ascii=False) for m in rendered)


def preview_tables(
    sources: Mapping[str, DataSourceConfig],
    name: str,
    *,
    seed: int = 0,
    n: int = 5,
    templates: Sequence[str] = ("r1_zero", "chat", "plain"),
    tokenizer: Any = None,
    system_prompt: str | None = None,
) -> list[Any]:
    """Rich tables (one per template) of the first `n` records of source `name`.

    Takes the already-validated `data:` mapping rather than a config file so it can be
    used from the CLI, a notebook, or a test without a full pipeline file. Titles and cells
    are `verbatim` text: records hold `[...]` and `:word:` that any console would otherwise
    read as markup and emoji codes.
    """
    from rich.table import Table

    from r1pipe.data.loading import iter_records, load_source
    from r1pipe.data.templates import render_prompt
    from r1pipe.terminal import verbatim

    source = sources[name]
    data = load_source(name, sources, seed=seed)
    records = list(iter_records(data, n))
    extra_columns = [c for c in ("task", "category", "difficulty") if records and c in records[0]]
    tables = []
    for template in templates:
        if template == "chat" and tokenizer is None:
            title = f"{name}: chat (no tokenizer: the messages TRL will template)"
        else:
            title = f"{name}: {template}"
        table = Table(title=verbatim(title), show_lines=True, expand=True)
        id_width = max((len(str(r.get("id"))) for r in records), default=8)
        table.add_column("record", no_wrap=True, overflow="ellipsis", min_width=min(32, id_width))
        table.add_column("prompt", overflow="fold", ratio=4)
        table.add_column("answer", overflow="fold", ratio=1, min_width=8)
        for record in records:
            rendered = render_prompt(record, template, tokenizer, system_prompt)
            answer = record.get("answer")
            if answer is None and record.get("reference") is not None:
                answer = f"(reference) {record['reference']}"
            about = " · ".join(
                f"{c} {record[c]}" for c in extra_columns if record.get(c) is not None
            )
            table.add_row(
                verbatim(f"{record.get('id')}\n{about}" if about else record.get("id")),
                verbatim(_show_prompt(rendered)),
                verbatim("—" if answer is None else answer),
            )
        tables.append(table)
    caption = f"{source.describe()} · seed {source.seed if source.seed is not None else seed}"
    if hasattr(data, "__len__"):
        caption += f" · {len(data):,} records"  # type: ignore[arg-type]
    else:
        caption += " · streamed"
    for table in tables:
        table.caption = verbatim(caption)
    return tables


def _fail(message: str) -> None:
    from r1pipe.terminal import error

    error(message)
    raise typer.Exit(EXIT_CONFIG)


@app.command()
def preview(
    config: str = typer.Argument(..., help="pipeline YAML", show_default=False),
    overrides: list[str] = typer.Argument(None, help="key.path=value overrides",
                                          show_default=False),
    source: str = typer.Option(None, "--source", "-s",
                               help="name of a source under `data:` (default: the first)"),
    n: int = typer.Option(5, "-n", "--num", min=1, help="records to show"),
    template: list[str] = typer.Option(
        None, "--template", "-t",
        help="r1_zero, chat or plain; repeat for several (default: all three)",
    ),
    tokenizer: str = typer.Option(
        None, "--tokenizer",
        help="render `chat` with this tokenizer (a Hub id or folder; 'base' = the pipeline's "
        "base model); without it the chat column shows the messages list",
    ),
    system_prompt: str = typer.Option(None, "--system-prompt", help="system prompt to add"),
) -> None:
    """Show the first records of a data source rendered with each prompt template."""
    from r1pipe.config import ConfigError, load
    from r1pipe.data.loading import DataSourceError
    from r1pipe.data.templates import TEMPLATES

    try:
        cfg = load(config, overrides or [])
    except ConfigError as exc:
        _fail(exc.one_line())
    sources = dict(cfg.data)
    if not sources:
        _fail(f"{config} defines no sources under `data:`")
    name = source or next(iter(sources))
    if name not in sources:
        _fail(f"no data source {name!r} in {config}; defined: {', '.join(sources)}")
    templates = list(template or TEMPLATES)
    unknown = [t for t in templates if t not in TEMPLATES]
    if unknown:
        _fail(f"unknown template(s) {', '.join(unknown)}; choose from {', '.join(TEMPLATES)}")
    tok = None
    if tokenizer:
        from r1pipe.models import load_tokenizer

        try:
            tok = load_tokenizer(cfg.base_model if tokenizer == "base" else tokenizer)
        except Exception as exc:  # any loading failure: say so, show messages instead
            from r1pipe.terminal import say

            say((f"could not load tokenizer {tokenizer!r}: {exc}", "yellow"), stdout=True)
    import datasets

    datasets.disable_progress_bars()
    try:
        tables = preview_tables(
            sources, name, seed=cfg.seed, n=n, templates=templates, tokenizer=tok,
            system_prompt=system_prompt,
        )
    except DataSourceError as exc:
        _fail(str(exc))
    from r1pipe.terminal import show

    for table in tables:
        show(table, stdout=True)
