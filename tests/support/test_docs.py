"""The documentation runs as written: every fenced block marked ```bash runnable or ```python runnable in
README.md and docs/*.md is executed (one test per block, id FILE:LINE), every relative link points to an
existing file (and heading), and the README's test command is the one CI runs. The convention is
described in docs/tests.md ("Runnable documentation blocks")."""

import glob
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import ROOT, run_python

DOCUMENTS = ["README.md"] + sorted(os.path.relpath(path, ROOT) for path in glob.glob(os.path.join(ROOT, "docs", "*.md")))
RUNNABLE = "runnable"
LANGUAGES = ("bash", "python")
BLOCK_TIMEOUT_S = 240  # a block should take seconds; this bounds a hung one on a loaded machine
TEST_COMMAND = "TRITON_INTERPRET=1 python -m pytest -q -rs"

_FENCE = re.compile(r"^( *)(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"(`+).*?\1")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _read(document: str) -> list[str]:
    with open(os.path.join(ROOT, document), encoding="utf-8") as handle:
        return handle.read().splitlines()


def fenced_blocks(lines: list[str]):
    """(line number of the opening fence, info string words, code) of each fenced block; a block indented
    under a list item loses its fence's indentation."""
    number = 0
    while number < len(lines):
        opening = _FENCE.match(lines[number])
        if opening is None or (opening.group(2)[0] == "`" and "`" in opening.group(3)):
            number += 1
            continue
        indent, fence, info = len(opening.group(1)), opening.group(2), opening.group(3).split()
        body = []
        end = number + 1
        while end < len(lines):
            closing = _FENCE.match(lines[end])
            if (closing and closing.group(2)[0] == fence[0] and len(closing.group(2)) >= len(fence)
                    and not closing.group(3).strip()):
                break
            line = lines[end]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))):])
            end += 1
        yield number + 1, info, "\n".join(body) + "\n"
        number = end + 1


def prose_lines(lines: list[str]):
    """(line number, line) of the lines outside fenced blocks."""
    inside = set()
    for start, _, code in fenced_blocks(lines):
        inside.update(range(start, start + code.count("\n") + 2))
    return [(number, line) for number, line in enumerate(lines, 1) if number not in inside]


def runnable_blocks():
    found = []
    for document in DOCUMENTS:
        for line, info, code in fenced_blocks(_read(document)):
            if RUNNABLE in info[1:]:
                found.append(pytest.param(document, line, info[0] if info else "", code, id=f"{document}:{line}"))
    return found


BLOCKS = runnable_blocks()


def test_there_are_runnable_blocks():
    assert len(BLOCKS) >= 3, [block.id for block in BLOCKS]
    assert any(block.values[0] == "README.md" for block in BLOCKS)


def _failure(document, line, code, result) -> str:
    return (f"the runnable block at {document}:{line} failed (exit status {result.returncode}):\n{code}"
            f"--- stdout (end)\n{result.stdout[-4000:]}\n--- stderr (end)\n{result.stderr[-4000:]}")


def _shims(folder) -> str:
    """A folder of commands that run this checkout with the test's interpreter: python, python3, swinir."""
    folder.mkdir()
    commands = {"python": "", "python3": "", "swinir": "-m swinir "}
    for name, arguments in commands.items():
        path = folder / name
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" {arguments}"$@"\n')
        path.chmod(0o755)
    return str(folder)


@pytest.mark.parametrize("document, line, language, code", BLOCKS)
def test_runnable_block(document, line, language, code, tmp_path):
    """Runs as a user would: a fresh interpreter or shell, TRITON_INTERPRET unset unless the block sets it
    (so not the tests' GPU-faithful interpreter mode). Python blocks run at the repository root and must not
    write files; bash blocks run in an empty temporary directory."""
    assert language in LANGUAGES, f"{document}:{line}: runnable blocks are {' or '.join(LANGUAGES)}, got {language!r}"
    if language == "python":
        result = run_python(code, timeout=BLOCK_TIMEOUT_S, TRITON_INTERPRET=None)
    else:
        environment = dict(os.environ, PYTHONPATH=ROOT)
        environment["PATH"] = _shims(tmp_path / "bin") + os.pathsep + environment.get("PATH", "")
        environment.pop("TRITON_INTERPRET", None)
        work = tmp_path / "work"
        work.mkdir()
        result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code], cwd=work, env=environment,
                                capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    assert result.returncode == 0, _failure(document, line, code, result)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: its text (code spans and links reduced to their text), lower
    case, punctuation other than '-' and '_' removed, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(document: str):
    seen: dict[str, int] = {}
    for _, line in prose_lines(_read(document)):
        heading = _HEADING.match(line)
        if heading:
            anchor = github_anchor(heading.group(2))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            yield anchor if count == 0 else f"{anchor}-{count}"


def relative_links():
    for document in DOCUMENTS:
        for number, line in prose_lines(_read(document)):
            for target in _LINK.findall(_INLINE_CODE.sub(lambda m: m.group(0).replace("]", " ").replace(")", " "), line)):
                if not _SCHEME.match(target):
                    yield document, number, target


def test_relative_links_point_to_existing_files_and_headings():
    problems = []
    links = list(relative_links())
    for document, number, target in links:
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(document), path)) if path else os.path.join(ROOT, document)
        where = f"{document}:{number}: {target}"
        if not os.path.exists(resolved):
            problems.append(f"{where}: no such file {os.path.relpath(resolved, ROOT)}")
        elif anchor and resolved.endswith(".md") and anchor not in set(anchors(os.path.relpath(resolved, ROOT))):
            problems.append(f"{where}: no heading with anchor #{anchor} in {os.path.relpath(resolved, ROOT)}")
    assert links, "no relative links found: the link parser is broken"
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {os.path.normpath(target.partition("#")[0]) for document, _, target in relative_links() if document == "README.md"}
    missing = [page for page in DOCUMENTS[1:] if page not in linked]
    assert not missing, f"README.md does not link {missing}"


def test_readme_test_command_is_what_ci_runs():
    """CI (.ci/run) runs the README's test command; the README shows it as a line of its own."""
    readme_commands = [line.strip() for _, info, code in fenced_blocks(_read("README.md")) if info[:1] == ["bash"]
                       for line in code.splitlines()]
    assert TEST_COMMAND in readme_commands
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as handle:
        ci = [line.strip().replace("python3 ", "python ") for line in handle]
    assert TEST_COMMAND in ci


def test_bench_table_markers_are_paired():
    """bench/results_from_json.py --readme writes tables between these markers, which must come in pairs."""
    marker = re.compile(r"^<!-- bench-tables:(\S+) (begin|end) -->$")
    found = []
    for document in DOCUMENTS:
        for _, line in prose_lines(_read(document)):
            match = marker.match(line)
            if match:
                found.append((document, match.group(1), match.group(2)))
    assert found, "no bench-tables markers in README.md or docs/ (bench/results_from_json.py --readme writes there)"
    for index in range(0, len(found), 2):
        begin, end = found[index], found[index + 1] if index + 1 < len(found) else None
        assert end and begin[2] == "begin" and end[2] == "end" and begin[:2] == end[:2], found
