"""A bash step runs the user's commands as on the command line: the task runtime's own speed-ups
(bash's loadable mkdir, rmdir, ln and unlink of the bash-builtins package) never replace the
user's coreutils."""
from tests.helpers import drypipe, require_bash_loadables, state_of, write_module

STRICT = '''
from dry_pipe import TaskConf

def gen(dsl):
    yield dsl.task(key="coreutils", task_conf=TaskConf(bash_strict=True)).calls("""
        mkdir -pv made/deeper
        rmdir -v made/deeper
        mkdir -- -dash
        touch target
        ln -sv target link-to-target
        ln -sr -- target relative-link
        unlink -- link-to-target
    """)()
'''


def test_coreutils_options_work_in_a_step(tmp_path):
    require_bash_loadables("mkdir", "rmdir", "ln", "unlink", without="nothing can shadow coreutils")
    write_module(tmp_path, "coreutils_steps", STRICT)
    instance = tmp_path / "i"
    drypipe("run", "-p", "coreutils_steps:gen", "-i", str(instance), cwd=tmp_path, check=True)
    assert state_of(instance, "coreutils") == "completed"
    out = (instance / ".drypipe/coreutils/out.log").read_text()
    assert "invalid option" not in out, out
    assert "created directory 'made/deeper'" in out and "removing directory, 'made/deeper'" in out, out
    assert (instance / "output/coreutils/-dash").is_dir()
    assert "'link-to-target' -> 'target'" in out, out
    assert (instance / "output/coreutils/relative-link").is_symlink()
    assert not (instance / "output/coreutils/link-to-target").exists()
