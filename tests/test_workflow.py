"""The published book is tested first: the Pages workflow runs `make test` before it deploys."""

from __future__ import annotations

import yaml

from book_build import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_workflow_runs_on_pushes_and_pull_requests():
    triggers = _workflow()[True]  # YAML 1.1 reads the key `on` as a boolean
    assert "push" in triggers and "pull_request" in triggers


def test_build_job_runs_make_test_before_anything_is_published():
    steps = _workflow()["jobs"]["build"]["steps"]
    runs = [step.get("run", "") for step in steps]
    test_step = next(i for i, run in enumerate(runs) if run.strip() == "make test")
    publishing = [
        i
        for i, step in enumerate(steps)
        if "upload-pages-artifact" in step.get("uses", "") or "git push" in step.get("run", "")
    ]
    assert publishing and all(i > test_step for i in publishing)
    assert all("pull_request" in steps[i].get("if", "") for i in publishing)


def test_deploy_waits_for_the_tested_build_and_skips_pull_requests():
    deploy = _workflow()["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert "pull_request" in deploy["if"]


def test_both_editions_reader_notebooks_are_published_where_colab_looks():
    """Colab buttons of the Chinese edition open <branch>/zh/<page>.ipynb (zh/_config.yml)."""
    zh_prefix = yaml.safe_load((ROOT / "zh" / "_config.yml").read_text())["sphinx"]["config"][
        "reader_notebooks_prefix"
    ]
    steps = _workflow()["jobs"]["build"]["steps"]
    publish = next(s["run"] for s in steps if "git push" in s.get("run", ""))
    assert 'cp -r _build/html/_notebooks "$RUNNER_TEMP/reader-notebooks"' in publish
    target = f'"$RUNNER_TEMP/reader-notebooks/{zh_prefix.rstrip("/")}"'
    assert f"cp -r _build/html/zh/_notebooks {target}" in publish
