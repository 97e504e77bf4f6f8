"""The shared cache is untrusted input: anyone who can write to it can write a manifest.  A
manifest naming files outside the task's output dir or undeclared, or output variables that are
shell code, is ignored (the task runs); `cache gc` deletes nothing a manifest names; a URL's
password is never shown or written."""
import hashlib
import json
from pathlib import Path

import pytest

from tests.helpers import drypipe, output_vars, write_module

PIPELINE = '''
def gen(dsl):
    a = dsl.task(key="a").outputs(x=int).calls("""
    echo a >> $__pipeline_instance_dir/runs.log
    export x=6
    """)()
    yield a
    yield dsl.task(key="b").inputs(a.outputs.x).outputs(f=dsl.file("f.txt"), parts=dsl.fileset("parts/*.txt")).calls("""
    echo b >> $__pipeline_instance_dir/runs.log
    echo "b saw $x" > $f
    mkdir -p $__task_output_dir/parts
    echo part > $__task_output_dir/parts/1.txt
    """)()
'''
NO_PYC = {"PYTHONDONTWRITEBYTECODE": "1"}


def run(code: Path, instance: Path, cache: str, check: bool = True):
    return drypipe("run", "-p", "u:gen", "-i", str(instance), "--cache", cache, cwd=code, env=NO_PYC, check=check)


def runs(instance: Path) -> list[str]:
    path = instance / "runs.log"
    return sorted(path.read_text().split()) if path.exists() else []


def entry_of(cache: Path, key: str) -> Path:
    """The cache entry directory of task `key`."""
    [entry] = [m.parent for m in cache.glob("*/*/manifest.json") if json.loads(m.read_text())["task_key"] == key]
    return entry


def rewrite_manifest(entry: Path, change) -> None:
    manifest = json.loads((entry / "manifest.json").read_text())
    change(manifest)
    (entry / "manifest.json").write_text(json.dumps(manifest))


def warnings_about(entry: Path, stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if entry.name in line]


@pytest.fixture
def populated(tmp_path):
    """A pipeline whose two tasks a first instance ran and published to a local cache."""
    code = tmp_path / "code"
    code.mkdir()
    write_module(code, "u", PIPELINE)
    cache = tmp_path / "cache"
    first = tmp_path / "first"
    run(code, first, str(cache))
    assert runs(first) == ["a", "b"]
    return code, cache


@pytest.mark.parametrize("name", ["../../../escaped.txt", "ABSOLUTE", "undeclared.txt"])
def test_a_manifest_naming_files_outside_the_outputs_is_ignored(populated, tmp_path, name):
    code, cache = populated
    second = tmp_path / "second"
    target = {"../../../escaped.txt": tmp_path / "escaped.txt", "ABSOLUTE": tmp_path / "absolute.txt",
              "undeclared.txt": second / "output/b/undeclared.txt"}[name]
    rel = str(target) if name == "ABSOLUTE" else name
    entry = entry_of(cache, "b")
    stored = Path(entry / "files" / rel.lstrip("/")).resolve()  # where the store reads `files/<rel>` from
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_text("evil\n")
    rewrite_manifest(entry, lambda m: m["files"].__setitem__(rel, hashlib.sha256(b"evil\n").hexdigest()))
    result = run(code, second, str(cache))
    assert not target.exists()
    assert runs(second) == ["b"]  # a was restored, b ran
    assert (second / "output/b/f.txt").read_text() == "b saw 6\n"
    [warning] = warnings_about(entry, result.stderr)
    assert "task b" in warning and repr(rel) in warning, warning


def test_a_manifest_output_variable_name_is_never_run_as_shell_code(populated, tmp_path):
    code, cache = populated
    pwned = tmp_path / "pwned"
    injected = f"y=1; touch {pwned}; export z"  # `export y=1; touch ...; export z='6'` once in output_vars.sh
    entry = entry_of(cache, "a")
    rewrite_manifest(entry, lambda m: m["output_vars"].__setitem__(injected, "6"))
    for other in cache.glob("*/*/manifest.json"):  # so that b runs, and sources a's output_vars.sh
        if other.parent != entry:
            other.unlink()
    second = tmp_path / "second"
    result = run(code, second, str(cache))
    assert not pwned.exists()
    assert runs(second) == ["a", "b"]  # the manifest was ignored: a ran too
    assert output_vars(second, "a") == {"x": "6"}
    [warning] = warnings_about(entry, result.stderr)
    assert "task a" in warning and repr(injected) in warning, warning


@pytest.mark.parametrize("mode", [["--failed"], ["--older-than", "1"]])
def test_cache_gc_never_deletes_a_directory_a_manifest_names(tmp_path, mode):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me\n")
    cache = tmp_path / "shared" / "cache"
    entry = cache / "ab" / ("ab" + "0" * 62)
    entry.mkdir(parents=True)
    # `<root>/<signature[:2]>/<signature>` with this signature is tmp_path/victim.
    (entry / "manifest.json").write_text(json.dumps({
        "signature": "../victim", "task_key": "t", "status": "failed", "output_vars": {}, "files": {}, "created": 0}))
    result = drypipe("cache", "gc", str(cache), *mode, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (victim / "precious.txt").read_text() == "keep me\n"
    assert "victim" not in result.stdout


PASSWORD = "s3cr3t-Pw"
PASSWORD_FS = f'''
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import infer_storage_options, stringify_path


class PasswordDirFileSystem(LocalFileSystem):
    """`pwdir://USER:PASSWORD@HOST/ABSOLUTE/DIR`: a local directory that wants a password, as a server does."""

    protocol = "pwdir"

    def __init__(self, username=None, password=None, **kwargs):
        if password != {PASSWORD!r}:
            raise PermissionError("wrong password")
        super().__init__(**kwargs)

    @classmethod
    def _strip_protocol(cls, path):
        path = stringify_path(path)
        if path.startswith("pwdir://"):
            path = "/" + path[len("pwdir://"):].partition("/")[2]
        return super()._strip_protocol(path)

    @staticmethod
    def _get_kwargs_from_urls(path):
        options = infer_storage_options(path)
        return {{k: options[k] for k in ("username", "password") if k in options}}
'''


def test_a_cache_url_password_is_never_shown_or_written(populated, tmp_path):
    code, cache = populated
    (code / "pwdir_fs.py").write_text(PASSWORD_FS)  # an fsspec protocol, registered as installed ones are
    dist = code / "pwdir_fs-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pwdir-fs\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[fsspec.specs]\npwdir = pwdir_fs:PasswordDirFileSystem\n")
    url = f"pwdir://alice:{PASSWORD}@localhost{cache}"
    for stored in cache.glob("*/*/files/f.txt"):
        stored.write_text("tampered\n")  # so that the run also logs a warning naming the cache
    second = tmp_path / "second"
    result = run(code, second, url)
    assert runs(second) == ["b"]  # a restored through the password-protected store, b ran
    cached = (second / ".drypipe/a/cached").read_text()
    assert "alice:***@localhost" in cached
    shown = {
        "cached": cached,
        "drypipe.log": (second / ".drypipe/a/drypipe.log").read_text(),
        "run stderr": result.stderr,
        "why": drypipe("why", "-p", "u:gen", "-i", str(second), "a", cwd=code, env=NO_PYC, check=True).stdout,
    }
    for args in (["ls"], ["info", entry_of(cache, "a").name[:12]], ["gc", "--dry-run"]):
        out = drypipe("cache", args[0], url, *args[1:], cwd=code, check=True)
        shown[f"cache {args[0]}"] = out.stdout + out.stderr
    wrong = drypipe("cache", "ls", url.replace(PASSWORD, "wrong-Pw"), cwd=code)
    assert wrong.returncode != 0 and "wrong password" in wrong.stderr
    shown["wrong password"] = wrong.stdout + wrong.stderr
    for where, text in shown.items():
        assert PASSWORD not in text and "wrong-Pw" not in text, f"{where}: {text}"
    assert "alice:***@localhost" in shown["why"]
