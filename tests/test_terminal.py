"""User text on the terminal comes out as it was written (`r1pipe.terminal`).

Each row below is an input someone hit: rich read YAML keys, values and paths as markup and
emoji codes (`:100:` printed as 💯 and the line number was lost; a key `"[/red]"` ended
`validate` with an IndexError), and two overrides were misreported or silently rewritten.
The scan at the end keeps every module printing through the one funnel.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from r1pipe.cli import main
from tests.helpers import MINIMAL_PIPELINE

PACKAGE = Path(__file__).resolve().parents[1] / "r1pipe"

GOOD = MINIMAL_PIPELINE


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = main(args)
    captured = capsys.readouterr()
    return code, [line for line in (captured.out + captured.err).splitlines() if line.strip()]


# (case, text added to GOOD, the one line exactly as it must read; {file} is the YAML's path)
BAD_KEYS: list[tuple[str, str, str]] = [
    ("emoji code in the line number", "#\n" * 93 + "seedz: 1\n",
     "error: {file}:100: seedz: unknown key 'seedz'; did you mean 'seed'?"),
    ("closing markup tag as a key", '"[/red]": 1\n',
     "error: {file}:7: [/red]: unknown key '[/red]'; valid keys: "),
    ("empty brackets as a key", '"[]": 1\n', "error: {file}:7: []: unknown key '[]'; valid keys: "),
    ("markup tag in a key", '"[bold]x": 1\n',
     "error: {file}:7: [bold]x: unknown key '[bold]x'; valid keys: "),
    ("emoji code in a key", "a:thumbs_up:b: 1\n",
     "error: {file}:7: a:thumbs_up:b: unknown key 'a:thumbs_up:b'; valid keys: "),
    ("capitalised key", "Seed: 1\n", "error: {file}:7: Seed: unknown key 'Seed'; did you mean "
     "'seed'?"),
    ("markup tag in a stage's key", "", "error: {file}:6: stages.r1_zero.[bold]x: unknown key "
     "'[bold]x'; valid keys: "),
]


@pytest.mark.parametrize(("case", "extra", "expected"), BAD_KEYS, ids=[c[0] for c in BAD_KEYS])
def test_odd_keys_get_the_ordinary_unknown_key_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, extra: str,
        expected: str) -> None:
    path = tmp_path / "p.yaml"
    text = GOOD + extra
    if case == "markup tag in a stage's key":
        text = GOOD.replace("r1_zero: {}", 'r1_zero: {"[bold]x": 1}')
    path.write_text(text)
    code, lines = _cli(["validate", str(path)], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(expected.format(file=path)), lines[0]
    assert "💯" not in lines[0] and "👍" not in lines[0]


def test_the_same_lines_on_a_colour_terminal(tmp_path: Path) -> None:
    """The table above through the installed command, with rich forced to style its output
    as on a terminal: once the colour codes are taken out, every line reads the same."""
    import os
    import re
    import subprocess
    import sys

    env = {**os.environ, "FORCE_COLOR": "1", "TERM": "xterm-256color", "COLUMNS": "300",
           "PYTHONPATH": str(PACKAGE.parent)}
    for case, extra, expected in BAD_KEYS:
        path = tmp_path / "p.yaml"
        path.write_text(GOOD.replace("r1_zero: {}", 'r1_zero: {"[bold]x": 1}')
                        if case == "markup tag in a stage's key" else GOOD + extra)
        proc = subprocess.run([sys.executable, "-m", "r1pipe.cli", "validate", str(path)],
                              env=env, capture_output=True, text=True, timeout=300)
        assert "\x1b[" in proc.stderr, case  # rich did style it
        lines = re.sub(r"\x1b\[[0-9;]*m", "", proc.stderr).splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (case, proc.stderr)
        assert lines[0].startswith(expected.format(file=path)), (case, lines[0])


# (override, words the one line must hold, in order)
BAD_OVERRIDES: list[tuple[str, list[str]]] = [
    ("name=[bold]x[/bold]", ["<command line>", "override 'name=[bold]x[/bold]'",
                             "invalid YAML", "quote it", "name='[bold]x[/bold]'"]),
    ("stages..r1_zero.trainer.max_steps=3",
     ["<command line>", "override 'stages..r1_zero.trainer.max_steps=3'", "empty part",
      "write stages.r1_zero.trainer.max_steps=3"]),
    ("stages.r1_zero.=3", ["override 'stages.r1_zero.=3'", "empty part"]),
    (".seed=3", ["override '.seed=3'", "empty part", "write seed=3"]),
    ("seed=[[[[", ["<command line>", "override 'seed=[[[['", "invalid YAML"]),
]


@pytest.mark.parametrize(("override", "words"), BAD_OVERRIDES, ids=[o[0] for o in BAD_OVERRIDES])
def test_a_bad_override_is_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              override: str, words: list[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    code, lines = _cli(["validate", str(path), override], capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines[0]
    at = 0
    for word in words:
        at = lines[0].find(word, at)
        assert at >= 0, (word, lines[0])


def test_an_override_with_an_odd_key_names_it_verbatim(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    code, lines = _cli(["validate", str(path), 'stages.r1_zero.trainer={"[bold]y:100:": 1}'],
                       capsys)
    assert code == 2 and lines == [
        "error: <command line override>: stages.r1_zero.trainer.[bold]y:100:: '[bold]y:100:' is "
        "not a field of TRL's GRPOConfig"], lines


def test_tables_print_paths_and_names_verbatim(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`plan` and `status` show the run dir and the data source as written."""
    monkeypatch.setenv("COLUMNS", "300")
    run_dir = tmp_path / "[bold]run:100:"
    path = tmp_path / "p.yaml"
    path.write_text(GOOD.replace("name: t\n", f"name: t\nrun_dir: '{run_dir}'\n")
                    .replace("reasoning:", '"[red]x[/red]":')
                    .replace("r1_zero: {}", 'r1_zero: {data: "[red]x[/red]"}'))
    for command in ("plan", "status"):
        code, lines = _cli([command, str(path)], capsys)
        assert code == 0, lines
        # a table's title wraps at the table's width: join the lines to read it whole
        assert str(run_dir) in "".join(line.strip() for line in lines), lines
    code, lines = _cli(["validate", str(path), "stages.r1_zero.data=nosuch"], capsys)
    assert code == 2 and "[red]x[/red]" in lines[0], lines


def test_the_funnel_prints_text_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    from r1pipe import terminal

    text = "a:100:b [bold]x[/bold] [/red] [] :thumbs_up: \\[x]"
    terminal.say(text, ("[dim]", "bold"))
    terminal.error(f"one {text}\ntwo")
    terminal.warning(text)
    terminal.say(text, stdout=True)
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [text + "[dim]", f"error: one {text}", "error: two",
                                         f"warning: {text}"]
    assert captured.out == text + "\n"


# ---------------------------------------------------------------------------------------
# Every module prints through `r1pipe.terminal`
# ---------------------------------------------------------------------------------------

FUNNEL = "r1pipe/terminal.py"
PRINTING = {"print", "rule", "print_exception", "log", "out"}
MARKUP = {"from_markup", "render_markup", "escape"}


def _receiver_is_a_console(node: ast.expr) -> bool:
    """`console.print`, `self.console.rule`, `console().print`, `_console().print`."""
    if isinstance(node, ast.Call):
        node = node.func
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    return "console" in name.lower()


def bypasses(source: str, where: str) -> list[str]:
    """Each place in `source` that prints past the funnel: a rich console made here, the
    builtin `print`, a call printing on a console, markup parsed from text (`from_markup`,
    `rich.markup.escape`, `markup=True`) or `rich.print`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module in ("rich", "rich.markup"):
            names = {a.name for a in node.names}
            if names & ({"print"} | MARKUP):
                found.append(f"{where}:{node.lineno}: imports {sorted(names)} from {node.module}")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        line = f"{where}:{node.lineno}: {ast.unparse(node)[:100]}"
        if name == "Console":
            found.append(line + " (make consoles with r1pipe.terminal.console)")
        elif isinstance(func, ast.Name) and name == "print":
            found.append(line + " (print through r1pipe.terminal.say)")
        elif isinstance(func, ast.Attribute) and name in PRINTING and \
                _receiver_is_a_console(func.value):
            found.append(line + " (print through r1pipe.terminal: say, error, rule, show)")
        elif isinstance(func, ast.Attribute) and name in MARKUP | {"print"} and \
                ast.unparse(func.value).split(".")[0] in ("rich", "Text", "markup"):
            found.append(line + " (text is never parsed as markup: use terminal.line)")
        elif any(k.arg == "markup" and not (isinstance(k.value, ast.Constant)
                                            and k.value.value is False) for k in node.keywords):
            found.append(line + " (markup=True reads user text as markup)")
    return found


@pytest.mark.parametrize("snippet", [
    'console.print(f"[red]error:[/red] {message}")',
    "self.console.rule(f'[bold]{st.name}[/]')",
    "console().print(table)",
    "_console().print(message, highlight=False)",
    "print(f'{key}: {value}')",
    "Console(stderr=True).print(x)",
    "from rich.console import Console\nc = Console()",
    "from rich.markup import escape\nx = escape(key)",
    "from rich import print\n",
    "Text.from_markup(f'[bold]{name}')",
    "TextColumn('{task.description}', markup=True)",
    "rich.print(value)",
])
def test_the_scan_finds_a_print_past_the_funnel(snippet: str) -> None:
    assert bypasses(snippet, "x.py"), snippet


@pytest.mark.parametrize("snippet", [
    'say(("error:", "red"), " ", message)',
    "rule((st.name, 'bold'), f' · {st.action}', stdout=True)",
    "show(table, stdout=True)",
    "typer.echo(f'{config}: OK')",
    "summary.print('cold start: samples')",  # a FilterSummary's own table, not a console
    "ctx.metrics.log({'a': 1})",
    "TextColumn('{task.description}', style='bold', markup=False)",
])
def test_the_scan_lets_the_funnel_through(snippet: str) -> None:
    assert not bypasses(snippet, "x.py"), snippet


def test_every_module_prints_through_the_funnel() -> None:
    found: list[str] = []
    users = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE.parent))
        if where == FUNNEL:
            continue
        source = path.read_text(encoding="utf-8")
        found += bypasses(source, where)
        if "r1pipe.terminal import" in source:
            users.add(where)
    assert not found, "printing past r1pipe.terminal:\n" + "\n".join(found)
    # the scan walked the modules that print: the CLI, the progress tables, eval, data preview
    assert {"r1pipe/cli.py", "r1pipe/progress.py", "r1pipe/data/cli.py",
            "r1pipe/evaluation/table.py", "r1pipe/tracking.py"} <= users, users
