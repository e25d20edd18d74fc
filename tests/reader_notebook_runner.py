"""Run reader's notebooks top to bottom the way Colab would, in the Python that runs this file.

Used by tests/test_reader_notebooks.py with the interpreter of a fresh virtual environment that
holds only what a chapter's set-up cell installs (``densenet-edu[book]``) plus a kernel
(``ipykernel``) and ``nbclient``; it imports nothing from the repository.

    python reader_notebook_runner.py WORKDIR NOTEBOOK.ipynb ...

Each notebook is copied into WORKDIR/<its folder>/ and executed there (the kernel's working
directory is the notebook's folder, as in Jupyter), with the kernel of this interpreter. Cells
tagged ``skip-execution`` are not run: they are the practice pages' skeletons that the learner
fills in (they raise NotImplementedError until then), and the built book skips them too.
Prints one JSON line per notebook: {"notebook", "ok", "seconds", "error", "figure_languages"}.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

SKIP_TAG = "skip-execution"
#: Output-metadata key of the language a figure was drawn in (densenet_edu.figure_text).
LANGUAGE_KEY = "densenet_edu_language"


def kernel_prefix() -> str:
    """sys.prefix of the kernel nbclient starts: must be this environment, not another one."""
    probe = nbformat.v4.new_code_cell("import sys; print(sys.prefix)")
    nb = nbformat.v4.new_notebook(cells=[probe])
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    return nb.cells[0].outputs[0]["text"].strip()


def run(notebook: Path, workdir: Path) -> dict:
    target = workdir / notebook.parent.name / notebook.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(notebook, target)
    nb = nbformat.read(target, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=600,
        skip_cells_with_tag=SKIP_TAG,
        resources={"metadata": {"path": str(target.parent)}},
    )
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except CellExecutionError as err:
        error = str(err)[-4000:]
    except Exception as err:  # a dead kernel or a timeout: report it, run the next notebook
        error = f"{type(err).__name__}: {err}"[-4000:]
    return {
        "notebook": str(notebook),
        "ok": error is None,
        "seconds": round(time.perf_counter() - start, 1),
        "error": error,
        # The language each figure was drawn in (densenet_edu.figure_text records it).
        "figure_languages": [
            output.get("metadata", {}).get("image/png", {}).get(LANGUAGE_KEY, "en")
            for cell in nb.cells
            for output in cell.get("outputs", [])
            if "image/png" in output.get("data", {})
        ],
    }


def main() -> None:
    workdir = Path(sys.argv[1])
    # Nothing from the book build leaks into the kernel (Colab sets none of these).
    for name in (
        "DENSENET_EDU_STATIC_PROGRESS",
        "DENSENET_EDU_EDITIONS",
        "DENSENET_EDU_LANGUAGE",
        "PYTHONPATH",
        "JUPYTER_PATH",
    ):
        os.environ.pop(name, None)
    prefix = kernel_prefix()
    if Path(prefix).resolve() != Path(sys.prefix).resolve():
        raise SystemExit(f"the python3 kernel runs in {prefix}, not in {sys.prefix}")
    for notebook in sys.argv[2:]:
        print(json.dumps(run(Path(notebook), workdir)), flush=True)


if __name__ == "__main__":
    main()
