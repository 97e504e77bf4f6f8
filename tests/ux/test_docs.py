"""The user guide: every page exists, the CLI reference covers every command, the messages the
troubleshooting page quotes are the ones users see, the site builds with --strict, every
environment variable the code reads is on docs/environment.md, and the pipelines and commands
the pages show run as written."""
from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys

import click
import pytest
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
    # run from elsewhere, as the page does: paths inside the current directory are shown relative
    run1 = tmp_path.parent / f"{tmp_path.name}-run1"
    missing = drypipe("run", "-p", "cases:missing", "-i", str(run1), cwd=tmp_path).stderr
    line = missing.splitlines()[0].replace(str(run1), "/data/run1")
    assert line in page, line
    nope = drypipe("run", "-p", "cases", "-i", str(tmp_path / "i4"), cwd=tmp_path).stderr.strip()
    assert f"`{nope}`" in page


def test_mkdocs_build_strict(tmp_path):
    # mkdocs and mkdocs-material come with the `test` extra (make test installs them)
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    cli_page = (tmp_path / "site/cli.html").read_text()
    assert 'id="drypipe-report-execution-times"' in cli_page


# -- docs/environment.md lists every environment variable drypipe reads ----------------------

SOURCES = ["drypipe", "dry_pipe", "executors", "dendro_bridge"]
ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+")
SHELL_REF = re.compile(r"\$\{?([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)")
# bash's own variables and those of every process: not settings of drypipe
NOT_SETTINGS = {"BASH_REMATCH", "BASH_SOURCE", "BASHPID", "EPOCHREALTIME", "HOSTNAME", "HOME", "PATH", "PWD", "REPLY"}


def _python_env_reads(path) -> set[str]:
    """Variables a module reads: os.environ[...] / .get / getenv, click `envvar=`, a
    "DRYPIPE_*" string anywhere (settings tables name them so), `$NAME` in generated bash, and
    the `DENDRO_<name>` / `PAIRIO_<name>` pair behind dendro_bridge's env_setting(name)."""
    tree = ast.parse(path.read_text())
    constants = {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
                 and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
                 for target in node.targets if isinstance(target, ast.Name)}

    def text(node) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        return constants.get(node.id) if isinstance(node, ast.Name) else None

    names: list[str | None] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names += [node.value] if re.fullmatch(r"DRYPIPE_[A-Z0-9_]+", node.value) else []
            names += SHELL_REF.findall(node.value)
        elif isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func in ("os.environ.get", "os.getenv", "os.environ.pop") and node.args:
                names.append(text(node.args[0]))
            elif func.endswith("env_setting") and node.args and text(node.args[0]):
                names += [f"DENDRO_{text(node.args[0])}", f"PAIRIO_{text(node.args[0])}"]
            for keyword in node.keywords:
                if keyword.arg == "envvar":
                    value = keyword.value
                    names += [text(v) for v in (value.elts if isinstance(value, (ast.List, ast.Tuple)) else [value])]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            names.append(text(node.slice))
        elif isinstance(node, ast.Compare) and any(ast.unparse(c) == "os.environ" for c in node.comparators):
            names.append(text(node.left))
    return {n for n in names if n and ENV_NAME.fullmatch(n)}


def environment_variables_read() -> dict[str, str]:
    """Every environment variable the code reads, with one file that reads it."""
    found: dict[str, str] = {}
    for package in SOURCES:
        for path in sorted((REPO / package).rglob("*.py")):
            found.update({n: str(path.relative_to(REPO)) for n in _python_env_reads(path) if n not in found})
        for path in sorted((REPO / package).rglob("*.sh")):
            found.update({n: str(path.relative_to(REPO)) for n in SHELL_REF.findall(path.read_text())
                          if n not in found})
    return {n: where for n, where in found.items() if n not in NOT_SETTINGS}


def test_environment_page_documents_every_variable_the_code_reads():
    variables = environment_variables_read()
    assert {"DRYPIPE_CACHE_DIR", "DRYPIPE_LOGGING_CONF", "DRYPIPE_PIPELINE_INSTANCE_DIR",
            "SLURM_TMPDIR", "DENDRO_API_KEY"} <= set(variables)  # the scan finds each kind of read
    page = (DOCS / "environment.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)`", page, re.M))
    missing = {n: where for n, where in variables.items() if n not in documented}
    assert missing == {}, f"add these to docs/environment.md (variable: a file that reads it): {missing}"
    assert "environment.md" in (DOCS / "index.md").read_text()


# -- the pipelines and commands of the docs run as written -------------------------------------
#
# A code block right after `<!-- doc-test -->` is run by the test below:
# - a python block is saved under the name of its first line (`# my_dag.py`), beside the
#   others, before any command runs (so one page's module may import another's);
# - a bash block runs as one script (`set -e`); in a console block each `$ command` runs, and
#   the output the page shows after a `$ cat ...` must be what cat prints.
# `<!-- doc-test: COMMAND -->` runs COMMAND instead (a block showing a command that does not
# end, like `drypipe service`, is run with --once), and after saving a python block.
# Commands run in a directory of their page's own, where /tmp/ and /data/ are moved to.

DOC_TEST_PAGES = sorted(str(p.relative_to(REPO)) for p in [REPO / "README.md", *DOCS.glob("*.md")]
                        if "<!-- doc-test" in p.read_text())
DOC_BLOCK = re.compile(r"^<!-- doc-test(?::\s*(.*?))?\s*-->\n```(\w+)\n(.*?)^```$", re.M | re.S)


def _doc_blocks(text: str) -> list[tuple[str | None, str, str]]:
    """(command of the marker or None, language, code) of the doc-test blocks of a page's text."""
    return [(m.group(1), m.group(2), m.group(3)) for m in DOC_BLOCK.finditer(text)]


def _console(code: str) -> list[tuple[str, str]]:
    """The `$ command` lines of a console block, each with the output the page shows."""
    runs: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            runs.append((line[2:], []))
        elif runs:
            runs[-1][1].append(line)
    return [(command, "\n".join(output)) for command, output in runs]


def _moved(text: str, work) -> str:
    """The docs' absolute /tmp/... and /data/... paths, under `work`."""
    return re.sub(r"(?<![\w.-])/(tmp|data)/", lambda m: f"{work}/{m.group(1)}/", text)


def _save_doc_code(code, work) -> None:
    """Every python block marked doc-test, saved as the module its first line names."""
    code.mkdir()
    for page in DOC_TEST_PAGES:
        for _, language, text in _doc_blocks((REPO / page).read_text()):
            if language == "python":
                name = re.fullmatch(r"# (\w+\.py)", text.splitlines()[0])
                assert name, f"{page}: a doc-test python block starts with `# NAME.py`: {text[:80]!r}"
                assert not (code / name.group(1)).exists(), f"{page}: a second {name.group(1)}"
                (code / name.group(1)).write_text(_moved(text, work))


def _run_doc(command: str, work, code) -> subprocess.CompletedProcess:
    script = f'set -e\ndrypipe() {{ "{sys.executable}" -m drypipe "$@"; }}\n{_moved(command, work)}'
    env = dict(os.environ, PYTHONPATH=f"{code}{os.pathsep}{REPO}")
    return subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=120)


def test_the_pages_that_show_pipelines_run_them():
    assert {"README.md", "docs/guide.md", "docs/tutorial.md", "docs/running.md", "docs/dsl.md"} <= set(DOC_TEST_PAGES)


@pytest.mark.parametrize("page", DOC_TEST_PAGES)
def test_doc_pipelines_and_commands_run_as_written(page, tmp_path):
    work, code = tmp_path / "work", tmp_path / "code"
    (work / "tmp").mkdir(parents=True)
    (work / "examples").symlink_to(REPO / "examples")  # the tutorial runs them from the repo root
    _save_doc_code(code, work)
    blocks = _doc_blocks((REPO / page).read_text())
    assert blocks, f"{page} has no doc-test block"
    for command, language, text in blocks:
        if command is not None:
            runs = [(command, None)]
        elif language == "console":
            runs = [(c, shown if c.startswith("cat ") else None) for c, shown in _console(text)]
        else:
            runs = [(text, None)] if language in ("bash", "sh") else []
        for run, shown in runs:
            result = _run_doc(run, work, code)
            assert result.returncode == 0, f"{page}: {run}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
            if shown is not None:
                assert result.stdout.strip() == shown.strip(), f"{page}: {run}"


def test_every_tutorial_example_shows_how_to_run_it():
    """A section that shows the code of an example also runs it (in a doc-test block)."""
    for section in re.split(r"^## ", (DOCS / "tutorial.md").read_text(), flags=re.M)[1:]:
        if "```python" in section and re.search(r"`examples/\w+\.py`", section):
            blocks = [command or text for command, _, text in _doc_blocks(section)]
            assert any("drypipe run -p examples." in b for b in blocks), section.splitlines()[0]
