"""Code blocks of the Markdown docs, for tests that run or check what the docs tell users to do."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.M | re.S)


@dataclass(frozen=True)
class Block:
    file: Path
    line: int  # of the opening fence
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    return [Block(path, text.count("\n", 0, m.start()) + 1, m.group(1), m.group(2)) for m in _FENCE.finditer(text)]


def block_after(path: Path, marker: str, lang: str) -> Block:
    """The first `lang` block after the text `marker` in `path`."""
    at = path.read_text().index(marker)
    line = path.read_text().count("\n", 0, at) + 1
    return next(b for b in blocks(path) if b.line > line and b.lang == lang)
