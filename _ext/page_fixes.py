"""Small fixes to the generated pages, so that a browser console stays free of errors.

- sphinx-thebe's inline configuration script can be registered twice on a page, and the
  second copy throws "Identifier 'THEBE_JS_URL' has already been declared". Identical
  inline scripts are dropped here, keeping the first.
"""

from __future__ import annotations

from typing import Any

from sphinx.application import Sphinx


def _drop_duplicate_scripts(
    app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        # An inline script's filename is None or "" depending on who registered it.
        key = (str(getattr(script, "filename", script) or ""), str(attributes.get("body", "")))
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    context["script_files"] = unique


def setup(app: Sphinx) -> dict:
    # Run after the extensions that add scripts during html-page-context.
    app.connect("html-page-context", _drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
