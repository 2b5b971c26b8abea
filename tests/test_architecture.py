"""The layering of r1pipe, checked from the source: no import cycle (top-level imports and
the ones inside functions alike), no layer below the configuration imported by the config
(type-checking imports included), no private name imported across modules, and one table of
the recipe's stages. Plain `ast`, so the check costs well under a second and needs no tool."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.helpers import wide_functions

PACKAGE = Path(__file__).resolve().parents[1] / "r1pipe"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Line ranges of `if TYPE_CHECKING:` blocks: those imports never run."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(module: str, path: Path, modules: dict[str, Path], *,
             type_checking: bool = False) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) for every executed import in `path`;
    with `type_checking`, the imports under `if TYPE_CHECKING:` too (they never run, but a
    module that names a higher layer's types still depends on that layer)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = set() if type_checking else _type_checking_only(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if node.lineno in skip if hasattr(node, "lineno") else False:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name:
                    out.append((name, [], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in modules:
                    out.append((sub, [], node.lineno))
                elif target in modules:
                    out.append((target, [alias.name], node.lineno))
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: {t for t, _, _ in _imports(m, p, modules) if t != m} for m, p in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_the_checker_finds_a_cycle() -> None:
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_of_r1pipe_has_no_cycle() -> None:
    graph = _graph()
    assert len(graph) > 50  # the walk found the package
    cycles = find_cycles(graph)
    detail = [" <-> ".join(c) + ": " + "; ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c)
              for c in cycles]
    assert not cycles, "import cycles:\n" + "\n".join(detail)


def test_engine_does_not_import_what_it_runs() -> None:
    """The engine and the contract know nothing of evaluation, report or the CLI."""
    graph = _graph()
    for low in ("r1pipe.contract", "r1pipe.state", "r1pipe.graph", "r1pipe.pipeline",
                "r1pipe.launch", "r1pipe.registry"):
        reached, frontier = set(), {low}
        while frontier:
            reached |= frontier
            frontier = {t for m in frontier for t in graph.get(m, ())} - reached
        bad = {m for m in reached if m.startswith(("r1pipe.evaluation", "r1pipe.report",
                                                   "r1pipe.cli"))}
        assert not bad, f"{low} reaches {sorted(bad)}"


def _layer_modules(name: str) -> set[str]:
    """The modules docs/architecture.md's layer table lists in the row of layer `name`."""
    doc = (PACKAGE.parent / "docs/architecture.md").read_text(encoding="utf-8")
    row = next(line for line in doc.splitlines() if line.startswith(f"| {name} |"))
    return set(re.findall(r"`(r1pipe\.[A-Za-z0-9_.]+)`", row.split("|")[2]))


# Imports of the config package from a layer below it, each with the reason it stays: none
# at top level, and each one inside the function that needs it.
CONFIG_LATE_IMPORTS = {
    # A `rewards:` section is checked against each reward's dataclass fields at validate
    # time; the reward classes are building blocks, imported only when a section has rewards.
    ("r1pipe.config.stage", "r1pipe.rewards.registry"),
}


def test_config_imports_only_the_layers_above_it() -> None:
    """`r1pipe.config` imports only the foundations and the configuration layer: top-level
    imports, imports inside functions and `if TYPE_CHECKING:` ones alike (listed exceptions
    aside, each inside a function), so loading a pipeline needs no stage, engine or trainer."""
    modules = _modules()
    allowed = _layer_modules("foundations") | _layer_modules("configuration")
    assert {"r1pipe.config", "r1pipe.secrets", "r1pipe.registry"} <= allowed

    def fits(target: str) -> bool:
        return any(target == m or target.startswith(m + ".") and m == "r1pipe.config"
                   for m in allowed)

    found = []
    for module, path in modules.items():
        if module != "r1pipe.config" and not module.startswith("r1pipe.config."):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = {node.lineno for node in tree.body if isinstance(node, (ast.Import,
                                                                     ast.ImportFrom))}
        for target, _, line in _imports(module, path, modules, type_checking=True):
            if fits(target):
                continue
            if (module, target) in CONFIG_LATE_IMPORTS and line not in top:
                continue
            found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {target}")
    assert not found, "r1pipe.config imports a lower layer:\n" + "\n".join(found)


def test_config_modules_stay_small() -> None:
    """One job per module of `r1pipe.config`: none over 400 lines, no function with more than
    8 parameters (issue 31)."""
    for path in (PACKAGE / "config").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert text.count("\n") <= 400, f"{path.name}: {text.count(chr(10))} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                count = (len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
                         + bool(a.vararg) + bool(a.kwarg))
                assert count <= 8, f"{path.name}:{node.lineno}: {node.name} has {count}"


def test_no_private_name_is_imported_across_modules() -> None:
    modules = _modules()
    found = []
    for module, path in modules.items():
        for target, names, line in _imports(module, path, modules):
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {target}.{name}")
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_one_table_of_recipe_stages() -> None:
    """`r1pipe.stages.RECIPE` names each stage once; its module says the same NAME, and the
    CLI has one command per row with the row's help."""
    import importlib

    from typer.testing import CliRunner

    from r1pipe.cli import app
    from r1pipe.registry import key
    from r1pipe.stages import RECIPE

    assert list(RECIPE) == ["r1_zero", "cold_start", "reasoning_rl", "reject_sample",
                            "all_scenario_rl", "distill"]
    for name, entry in RECIPE.items():
        module = importlib.import_module(entry.module)
        assert key(module.NAME) == name
        assert module.__name__.startswith("r1pipe.stages.")
    out = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    for name, entry in RECIPE.items():
        assert name.replace("_", "-") in out
        assert entry.help.split(":")[0][:40] in " ".join(out.split())


@pytest.mark.parametrize("doc", ["docs/architecture.md"])
def test_docs_point_inside_the_project(doc: str) -> None:
    """The architecture document exists and names modules that exist; nothing in the repo
    points at design documents the repository does not hold."""
    root = PACKAGE.parent
    text = (root / doc).read_text(encoding="utf-8")
    modules = _modules()
    named = {m.strip("`") for m in text.split() if m.strip("`,.():").startswith("r1pipe.")}
    missing = [m for m in (n.strip("`,.():") for n in named)
               if m not in modules and m.rpartition(".")[0] not in modules]
    assert not missing, f"{doc} names modules that do not exist: {missing}"
    for path in [*PACKAGE.rglob("*.py"), *(root / "configs").glob("*.yaml"), root / "README.md"]:
        assert "DESIGN.md" not in path.read_text(encoding="utf-8"), path


def _doc_block(doc: str, heading: str, language: str) -> str:
    """The first fenced `language` block after `heading` in a markdown document."""
    import textwrap

    section = doc[doc.index(heading):]
    start = section.index(f"```{language}\n") + len(f"```{language}\n")
    block = section[start:section.index("```", start)]
    return textwrap.dedent(block)


def test_a_seventh_stage_added_as_the_document_says(tmp_path: Path) -> None:
    """The stage of docs/architecture.md, "Adding a stage", copied from the document as it is:
    validate accepts it, `run` orders it after its input, runs it, and skips it next time."""
    import json
    import os
    import subprocess
    import sys

    root = PACKAGE.parent
    doc = (root / "docs/architecture.md").read_text(encoding="utf-8")
    package = tmp_path / "my_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "summarize.py").write_text(_doc_block(doc, "## Adding a stage", "python"))
    yaml_block = _doc_block(doc, "## Adding a stage", "yaml")
    assert "stage_modules: [my_pkg.summarize]" in yaml_block
    config = tmp_path / "p.yaml"
    config.write_text(
        f"name: seventh\nrun_dir: {tmp_path / 'run'}\nbase_model: my-org/tiny\n"
        "stage_modules: [tests.stage_squares, my_pkg.summarize]\n"
        "stages:\n  squares: {count: 30}\n"
        # the document's section, pointed at the artifact the squares stage writes
        "  summarize: {data: \"squares:squares\", min_words: 1}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(tmp_path)])}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "r1pipe.cli", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)

    assert cli("validate", str(config)).returncode == 0
    out = cli("run", str(config))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    state = json.loads((tmp_path / "run/summarize/stage.json").read_text())
    assert state["status"] == "finished" and state["summary"] == {"records": 30}
    lines = (tmp_path / "run/summarize/data/counts/train-00000.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"id": "sq-00000", "words": 1}
    again = cli("run", str(config), "--dry-run")
    assert again.returncode == 0
    assert "summarize" in again.stdout and "skip" in again.stdout
    bad = cli("run", str(config), "stages.summarize.min_wordz=2")
    assert bad.returncode == 2 and "min_words" in bad.stdout + bad.stderr


def test_no_production_module_imports_the_test_helpers() -> None:
    """`r1pipe.testing` is for tests and notebooks; the built-in tiny model that production
    code builds comes from `r1pipe.builtin_models`."""
    graph = _graph()
    assert "r1pipe.testing" in graph and "r1pipe.builtin_models" in graph["r1pipe.testing"]
    users = sorted(m for m, targets in graph.items() if "r1pipe.testing" in targets)
    assert not users, f"production modules import r1pipe.testing: {users}"


# Functions whose width is another library's: (module, name) -> why.
WIDE_BY_SIGNATURE = {
    ("cli.py", "run"): "a Typer command: each command-line option is one parameter",
    ("trl_cpu.py", "apply"): "stands in for TRL's autograd Function, called by position",
}


def test_no_module_over_600_lines_and_no_function_over_8_parameters() -> None:
    """Issue 31: modules small enough to read, and a function's inputs grouped into values
    (`GenerationJob`, `CardText`, `RunRequest`, ...) rather than handed down as keywords."""
    long, wide = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        name = str(path.relative_to(PACKAGE))
        if text.count("\n") > 600:
            long.append(f"{name}: {text.count(chr(10))} lines")
        wide += [f"{name}:{line}: {fn} has {count}" for line, fn, count in wide_functions(text)
                 if (name, fn) not in WIDE_BY_SIGNATURE]
    assert not long and not wide, "\n".join(long + wide)
