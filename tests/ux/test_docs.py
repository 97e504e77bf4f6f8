"""The user guide: every page exists, the CLI reference covers every command, the messages the
troubleshooting page quotes are the ones users see, and (where mkdocs is installed, as by
`make docs`) the site builds with --strict."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import click
import yaml


class _ConfigLoader(yaml.SafeLoader):
    """Reads mkdocs.yml without importing what its `!!python/name:` tags name."""


_ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/name:", lambda loader, suffix, node: suffix)

from tests.helpers import REPO, drypipe, write_module

DOCS = REPO / "docs"


def _hook():
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "hooks/cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nav_pages(items) -> list[str]:
    pages = []
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += _nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_every_page_exists_and_readme_links_resolve():
    config = yaml.load((REPO / "mkdocs.yml").read_text(), Loader=_ConfigLoader)
    owned_elsewhere = set(_hook().OWNED_ELSEWHERE)
    for page in _nav_pages(config["nav"]):
        assert (DOCS / page).exists() or page in owned_elsewhere, page
    for link in re.findall(r"\]\((docs/[^)]+)\)", (REPO / "README.md").read_text()):
        assert (REPO / link).exists(), link
    assert (DOCS / "guide.md").read_text().startswith("# Overview")


def test_cli_reference_covers_every_command():
    from drypipe.cli import cli

    text = _hook().render()
    ctx = click.Context(cli, info_name="drypipe")
    for name in cli.list_commands(ctx):
        command = cli.get_command(ctx, name)
        if command is not None and not command.hidden:
            assert f"\n## drypipe {name}\n" in text, name
    assert "## drypipe config show" in text and "## drypipe cache gc" in text
    assert "`--json-log`" in text and "&lt;module&gt;:&lt;function&gt;" in text


def test_troubleshooting_quotes_real_messages(tmp_path):
    page = (DOCS / "troubleshooting.md").read_text()
    write_module(tmp_path, "cases", '''
        def dup(dsl):
            yield dsl.task(key="a").calls("true\\n")()
            yield dsl.task(key="a").calls("true\\n")()

        def not_yielded(dsl):
            t = dsl.task(key="a").outputs(n=int).calls("export n=1\\n")()
            yield dsl.task(key="b").inputs(t.outputs.n).calls("true\\n")()

        def missing(dsl):
            yield dsl.task(key="count").outputs(table=dsl.file("counts.tsv")).calls("echo counting\\n")()
        ''')
    dup = drypipe("run", "-p", "cases:dup", "-i", str(tmp_path / "i1"), cwd=tmp_path).stderr
    assert dup.startswith("drypipe: error: duplicate task key 'a' (") and "duplicate task key 'a' (" in page
    not_yielded = drypipe("run", "-p", "cases:not_yielded", "-i", str(tmp_path / "i2"), cwd=tmp_path).stderr
    assert re.sub(r"\(\S+:\d+\) ", "", not_yielded).strip() == \
        "drypipe: error: task 'b' consumes outputs of task 'a', which was never yielded"
    assert "consumes outputs of task 'a', which was never yielded" in page
    missing = drypipe("run", "-p", "cases:missing", "-i", str(tmp_path / "i3"), cwd=tmp_path).stderr
    line = missing.splitlines()[0].replace(str(tmp_path / "i3"), "/data/run1")
    assert line in page, line
    nope = drypipe("run", "-p", "cases", "-i", str(tmp_path / "i4"), cwd=tmp_path).stderr.strip()
    assert f"`{nope}`" in page


def test_mkdocs_build_strict(tmp_path):
    # mkdocs and mkdocs-material come with the `test` extra (make test installs them)
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    cli_page = (tmp_path / "site/cli/index.html").read_text()
    assert 'id="drypipe-report-execution-times"' in cli_page
