"""The docs stay honest: links and images exist, and every command line shown is a real one.

README.md and docs/*.md are read as a user reads them: every relative link or image must point
at a file (and a `#heading` of a page at a heading of it), and every ``adhunt COMMAND --option``
of a code block or an inline code span must name a command and options of the typer app, so a
renamed option or command fails here instead of in a user's shell.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

from adhunt.jobs.cli import app

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Root options that take a value (skipped when looking for the subcommand of a line).
ROOT_OPTIONS_WITH_VALUE = {"--analysis"}

FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.M)
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
SEPARATORS = {"|", "||", "&&", ";", "\\"}


def _without_code(text: str) -> str:
    return INLINE.sub("", FENCE.sub("", text))


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(h) for h in HEADING.findall(FENCE.sub("", page.read_text()))}


def _links(page: Path) -> list[str]:
    return LINK.findall(_without_code(page.read_text()))


def _command_lines(page: Path) -> list[tuple[int, str]]:
    """(line number, text) of every shell line in a code block or inline span naming adhunt."""
    text = page.read_text()
    out = []
    for block in FENCE.finditer(text):
        if block.group(1) not in SHELL_LANGUAGES:
            continue
        first = text.count("\n", 0, block.start(2)) + 1
        joined, start = "", first
        for k, line in enumerate(block.group(2).splitlines()):
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            if not joined:
                start = first + k
            joined += " " + line.lstrip("#").strip() if joined else line.lstrip("#").strip()
            if joined.endswith("\\"):
                joined = joined[:-1]
                continue
            out.append((start, joined))
            joined = ""
    for k, line in enumerate(text.splitlines(), start=1):
        for span in INLINE.findall(line):
            if span.startswith("adhunt "):
                out.append((k, span))
    return [(k, line) for k, line in out if re.search(r"(^|[\s/])adhunt\s", line)]


def _invocations(line: str) -> list[list[str]]:
    """The argument lists after each ``adhunt`` of a shell line, up to a pipe or separator."""
    try:
        tokens = shlex.split(line, comments=False)
    except ValueError:  # prose in a comment (an apostrophe): plain words are enough here
        tokens = line.split()
    calls, current = [], None
    for token in tokens:
        if token == "adhunt" or token.endswith("/adhunt"):
            current = []
            calls.append(current)
        elif current is not None:
            if token in SEPARATORS or token.startswith((">", "#")):
                current = None
            else:
                current.append(token)
    return calls


def _is_group(command: Any) -> bool:
    return hasattr(command, "commands")  # typer vendors click: no isinstance against click's


def _option_names(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if param.param_type_name == "option":
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def _check_invocation(root: Any, args: list[str]) -> str | None:
    """None when ``adhunt ARGS`` names a real command and options, else what is wrong."""
    command = root
    path = ["adhunt"]
    args = list(args)
    while _is_group(command):
        while args and args[0].startswith("-"):  # options of the group itself
            token = args.pop(0)
            option = token.split("=", 1)[0]
            if option not in _option_names(command):
                return f"{' '.join(path)} has no option {option}"
            if option in ROOT_OPTIONS_WITH_VALUE and "=" not in token and args:
                args.pop(0)
        if not args:
            return None
        name = args.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            return f"{' '.join(path)} has no command {name!r}"
        command, path = sub, [*path, name]
    known = _option_names(command)
    for token in args:
        if re.fullmatch(r"--?[A-Za-z][\w-]*(=.*)?", token):
            option = token.split("=", 1)[0]
            if option not in known:
                return f"{' '.join(path)} has no option {option}"
    return None


def test_pages_exist():
    names = {p.name for p in PAGES}
    for page in ("index.md", "generate.md", "features.md", "train.md", "infer.md", "scan.md"):
        assert page in names, f"docs/{page} is missing"
    assert "cluster.md" in names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_and_images_exist(page):
    missing = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            missing.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            missing.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not missing, f"{page.name}: " + "; ".join(missing)


def test_every_page_is_reachable_from_the_readme():
    reachable, todo = set(), [ROOT / "README.md"]
    while todo:
        page = todo.pop()
        if page in reachable:
            continue
        reachable.add(page)
        for target in _links(page):
            path = target.partition("#")[0]
            if path.endswith(".md") and not re.match(r"^[a-z]+:", path):
                todo.append((page.parent / path).resolve())
    unreachable = [p.name for p in PAGES if p.resolve() not in reachable]
    assert not unreachable, f"pages not linked from README.md (directly or not): {unreachable}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_command_lines_name_real_commands_and_options(page):
    root = typer.main.get_command(app)
    lines = _command_lines(page)
    wrong = []
    for number, line in lines:
        for args in _invocations(line):
            problem = _check_invocation(root, args)
            if problem is not None:
                wrong.append(f"{page.name}:{number}: {problem}: {line}")
    assert not wrong, "\n".join(wrong)


def _command_name(args: list[str]) -> str | None:
    """The subcommand of ``adhunt ARGS``, past the root options (and their values)."""
    args = list(args)
    while args and args[0].startswith("-"):
        option = args.pop(0)
        if option in ROOT_OPTIONS_WITH_VALUE and "=" not in option and args:
            args.pop(0)
    return args[0] if args else None


def test_every_command_is_documented():
    root = typer.main.get_command(app)
    shown = set()
    for page in PAGES:
        for _, line in _command_lines(page):
            shown.update(_command_name(args) for args in _invocations(line))
    undocumented = sorted(set(root.commands) - shown)
    assert not undocumented, f"commands shown in no README/docs code: {undocumented}"


def test_the_checker_catches_wrong_commands_and_options():
    """The checks above can fail: a typo in a command or an option is reported."""
    root = typer.main.get_command(app)
    assert (
        _check_invocation(root, ["features", "f.json", "--output", "x", "--workers", "2"]) is None
    )
    assert _check_invocation(root, ["-v", "train", "cwola", "--window=3300:3700"]) is None
    assert "no option --wokers" in _check_invocation(root, ["features", "f.json", "--wokers", "2"])
    assert "no command 'feature'" in _check_invocation(root, ["feature", "f.json"])
    assert "no option --verbos" in _check_invocation(root, ["--verbos", "scan"])
    calls = _invocations("adhunt features a.json -o out | tee log && .venv/bin/adhunt demo  # x")
    assert calls == [["features", "a.json", "-o", "out"], ["demo"]]
    assert _command_name(["-q", "--analysis", "a.yaml", "scan", "--seed", "1"]) == "scan"
    assert _slug("Running on CMS NanoAOD / PFNanoAOD") == "running-on-cms-nanoaod--pfnanoaod"
