"""The one way r1pipe writes to the terminal, so that user text comes out as it was written.

Messages, tables and errors quote YAML keys and values, paths, stage and model names and model
output. Rich reads `[...]` in a string as markup and `:name:` as an emoji code: an error at
line 100 printed as `file.yaml💯 key` (the line was lost), and a key spelled `"[/red]"` made
rich raise instead of printing the error. So every console made here has markup, emoji codes
and highlighting off, and style is given beside the text (`line(("error:", "red"), " ", text)`),
never parsed out of it. `tests/test_terminal.py` checks that no other module makes a console,
calls `print` or prints on a console past these functions.

Plain result lines on stdout (`validate`'s OK, `wrote ...`) go through `typer.echo`, which
writes its text as it is; everything styled (errors, warnings, rules, tables) goes through here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.text import Text

Part: TypeAlias = "str | tuple[str, str] | Text"
"""A piece of a line: text as it is, or (text, rich style) such as `("error:", "red")`."""


def console(*, stdout: bool = False, soft_wrap: bool = False, width: int | None = None
            ) -> Console:
    """A console that prints every string literally: no markup, no emoji codes, no
    highlighting. stderr unless `stdout` (results such as `status` and `plan` tables);
    `width` fixes the width (None: the terminal's, or 80 columns in a pipe)."""
    from rich.console import Console

    return Console(stderr=not stdout, markup=False, emoji=False, highlight=False,
                   soft_wrap=soft_wrap, width=width)


def verbatim(value: object, style: str = "") -> Text:
    """`value` as text in `style`, with nothing in it read as markup (a table cell, a title)."""
    from rich.text import Text

    return Text(str(value), style=style)


def line(*parts: Part) -> Text:
    """One line of text from plain strings and (text, style) pairs, each taken as it is."""
    from rich.text import Text

    return Text.assemble(*(part if isinstance(part, (tuple, Text)) else str(part)
                           for part in parts))


def say(*parts: Part, stdout: bool = False) -> None:
    """Print one line (long lines are not cut: a path or a key stays whole for copying)."""
    console(stdout=stdout, soft_wrap=True).print(line(*parts))


def error(message: str) -> None:
    """`error: ...` on stderr once per line of `message`: a config with several problems
    (`ConfigErrors`) gives one `file:line: key.path: message` line each."""
    out = console(soft_wrap=True)
    for text in message.splitlines() or [""]:
        out.print(line(("error:", "red"), " ", text))


def warning(message: str) -> None:
    """`warning: ...` on stderr: something went wrong that does not stop the run."""
    console(soft_wrap=True).print(line(("warning:", "yellow"), " ", message))


def rule(*parts: Part, stdout: bool = False) -> None:
    """A horizontal rule titled with `parts` (a stage or an evaluation starting)."""
    console(stdout=stdout).rule(line(*parts))


def show(renderable: RenderableType, *, stdout: bool = False, width: int | None = None) -> None:
    """Print a table (or any rich renderable); its string cells are printed literally."""
    console(stdout=stdout, width=width).print(renderable)


def traceback() -> None:
    """The traceback of the exception being handled (`-v`), on stderr."""
    console(soft_wrap=True).print_exception()
