"""Every relative link in the README, docs/ and bench/README.md resolves inside a clone.

A link to a file outside the repository (the README once pointed at ../shared/DESIGN.md, a file
of the team's machine) is dead for everyone who clones it; so is a link to a renamed file or
heading. Links with a scheme (https:, mailto:) are left to the reader.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "bench" / "README.md",
         *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[(?:[^\]\n]|`[^`\n]*`)*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def links(text: str) -> list[str]:
    """The targets of the page's inline links, outside code blocks and code spans."""
    # A code span keeps its backticks (so [`Trainer`](x) stays a link); its text goes, so code
    # that merely looks like a link (`a[0](x)`) is not read as one.
    text = CODE_SPAN.sub("`code`", FENCE.sub("", text))
    return [m.group(1) for m in LINK.finditer(text)]


def anchors(page: Path) -> set[str]:
    """GitHub's ids for the page's headings: lower case, punctuation dropped, spaces to dashes."""
    ids: set[str] = set()
    for title in HEADING.findall(FENCE.sub("", page.read_text())):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        base, n = slug, 1
        while slug in ids:
            slug, n = f"{base}-{n}", n + 1
        ids.add(slug)
    return ids


def broken(page: Path, root: Path = ROOT) -> list[str]:
    """The page's relative links that do not resolve inside ``root``, each with why."""
    bad = []
    for target in links(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto: ...
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(root):
            bad.append(f"{target}: outside the repository")
        elif not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.relative_to(root)}")
    return bad


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(page: Path) -> None:
    assert page.exists(), f"{page.relative_to(ROOT)} is gone: update PAGES"
    assert broken(page) == [], f"dead links in {page.relative_to(ROOT)}"


def test_the_checker_catches_links_out_of_the_repository_missing_files_and_headings(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("# tether\n\n## Two commands\n")
    (root / "docs" / "layout.md").write_text("# The layout\n")
    page = root / "docs" / "page.md"
    page.write_text("[ok](layout.md) [out](../../shared/DESIGN.md) [gone](nope.md)\n"
                    "[head](../README.md#no-such-heading) [good](../README.md#two-commands)\n"
                    "[web](https://example.com) `a[0](../../code.md)` [`Code`](layout.md#the-layout)\n"
                    "```\n[in a block](../../block.md)\n```\n")
    assert broken(page, root) == [
        "../../shared/DESIGN.md: outside the repository",
        "nope.md: no such file",
        "../README.md#no-such-heading: no heading #no-such-heading in README.md",
    ]
