"""Docs, docstrings and scripts refer only to the repository: no outside files, no machine paths.

A reader who has only the repository must be able to follow every reference, so a path outside
it (a design brief, a home or workspace directory, a fixed venv) or a `docs/` file that does not
exist fails here.
"""
import os
import pathlib
import re

from conftest import REPO

SKIPPED = {".git", ".venv", "venv", "workdirs", "__pycache__", ".pytest_cache"}
TEXT_SUFFIXES = {".py", ".md", ".sh", ".txt", ".ini", ".cfg", ".toml", ""}
OUTSIDE = re.compile(r"DESIGN\.md|\.\./shared|/work/|/home/|/root/|/opt/|(?<!\.)\bvenv/bin/")


def repository_text_files():
  for root, dirs, files in os.walk(REPO):
    dirs[:] = sorted(d for d in dirs if d not in SKIPPED and not d.endswith(".egg-info"))
    for name in sorted(f for f in files if f not in SKIPPED):
      path = pathlib.Path(root) / name
      if path.suffix in TEXT_SUFFIXES:
        yield path


def test_no_reference_outside_the_repository():
  this = REPO / "tests" / "test_docs.py"  # Names the patterns it looks for.
  hits = [f"{path.relative_to(REPO)}:{n}: {line.strip()}"
          for path in repository_text_files() if path != this
          for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
          if OUTSIDE.search(line)]
  assert not hits, "references outside the repository:\n" + "\n".join(hits)


DOC_REFERENCE = re.compile(r"\bdocs/[\w.-]+\.(?:md|png)")


def test_referenced_docs_exist():
  referenced = {m for path in repository_text_files()
                for m in DOC_REFERENCE.findall(path.read_text(encoding="utf-8"))}
  assert "docs/design.md" in referenced
  missing = sorted(r for r in referenced if not (REPO / r).exists())
  assert not missing, f"referenced but not in the repository: {missing}"
