"""Copy the English chapters' code cells into the Chinese edition (zh/chapters/).

The two editions share one code: a Chinese page is its English page with the prose translated.
After changing a chapter's code, run

    .venv/bin/python scripts/zh_sync.py chapters/03_channel_growth.md   # or no argument: all

It replaces every code cell of zh/<page>.md by the English one at the same position, then
updates the paired notebook (jupytext --sync). Prose is never touched: when the English page
gained or lost cells, the cells no longer line up and the script stops and says where, so
that the translation can be brought up to date by hand first (tests/test_zh.py checks both).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parent.parent


def sync_page(english: Path) -> bool:
    """Copy code cells of `english` (chapters/NAME.md) into zh/; True when something changed."""
    chinese = ROOT / "zh" / english.relative_to(ROOT)
    if not chinese.exists():
        raise SystemExit(f"{chinese.relative_to(ROOT)} does not exist: translate the page first")
    en_nb, zh_nb = jupytext.read(english), jupytext.read(chinese)
    en_types = [c.cell_type for c in en_nb.cells]
    zh_types = [c.cell_type for c in zh_nb.cells]
    if en_types != zh_types:
        first = next(
            (i for i, (e, z) in enumerate(zip(en_types, zh_types, strict=False)) if e != z),
            min(len(en_types), len(zh_types)),
        )
        raise SystemExit(
            f"{chinese.relative_to(ROOT)}: cells no longer line up with the English page from "
            f"cell {first} on ({len(zh_types)} vs {len(en_types)} cells); add or remove the "
            "matching Chinese cells by hand, then run this again"
        )
    changed = False
    for e, z in zip(en_nb.cells, zh_nb.cells, strict=True):
        if e.cell_type == "code" and (z.source, z.metadata) != (e.source, e.metadata):
            z.source, z.metadata = e.source, e.metadata
            changed = True
    if changed:
        jupytext.write(zh_nb, chinese, fmt="md:myst")
        subprocess.run([sys.executable, "-m", "jupytext", "--sync", str(chinese)], check=True)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", type=Path, help="English text sources (default: all)")
    args = parser.parse_args(argv)
    pages = [p.resolve() for p in args.pages] or sorted((ROOT / "chapters").glob("*.md"))
    for page in pages:
        if page.name == "references.md":
            continue
        if sync_page(page):
            print(f"updated zh/{page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
