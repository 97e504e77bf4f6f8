"""The original DryPipe's DSL beyond its manual: outputs(f=pathlib.Path(...)), dsl.file_set(glob,
exclude=...), TaskConf.default(), task.out.<name>, matcher.all.<name>.fetch()."""
import textwrap

import pytest

from tests.helpers import drypipe, output_vars, state_of, write_module


def test_original_dsl_spellings(tmp_path):
    write_module(tmp_path, "spellings", '''
        import pathlib
        from dry_pipe import DryPipe, TaskConf

        @DryPipe.python_call()
        def count_lines(table, __task_output_dir):
            with open(table) as f:
                return {"n": len(f.read().splitlines())}

        def gen(dsl):
            chunker = dsl.task(key="chunker", task_conf=TaskConf.default()).produces(
                table=pathlib.Path("x.tsv"),
                chunks=dsl.file_set("chunk.*.txt", exclude="chunk.*.tmp.txt"),
            ).calls("""
                #!/usr/bin/env bash
                printf 'a\\\\tb\\\\nc\\\\td\\\\n' > $table
                for i in 1 2 3; do echo $i > chunk.$i.txt; done
                echo scratch > chunk.9.tmp.txt
            """)()
            yield chunker
            yield dsl.task(key="count").consumes(chunker.out.table).produces(n=int).calls(count_lines)()
            for _ in dsl.wait_for_tasks(chunker):
                for chunk in chunker.out.chunks.fetch():
                    yield dsl.task(key=f"square-{chunk.basename()}").consumes(f=chunk).produces(sq=int).calls("""
                        #!/usr/bin/env bash
                        export sq=$(( $(cat $f) * $(cat $f) ))
                    """)()
            for m in dsl.wait_for_matching_tasks("square-*"):
                squares = sorted(m.all.sq.fetch())
                yield dsl.task(key="total").consumes(squares=",".join(map(str, squares))).produces(s=str).calls("""
                    #!/usr/bin/env bash
                    export s=$squares
                """)()

        def pipeline():
            return DryPipe.create_pipeline(gen)
        ''')
    instance = tmp_path / "i"
    drypipe("run", "-p", "spellings:pipeline", "-i", str(instance), cwd=tmp_path, check=True)
    assert (instance / "output/chunker/x.tsv").read_text() == "a\tb\nc\td\n"
    assert output_vars(instance, "count") == {"n": "2"}
    squares = sorted(p.name for p in (instance / ".drypipe").glob("square-*"))
    assert squares == ["square-chunk.1.txt", "square-chunk.2.txt", "square-chunk.3.txt"]  # no .tmp
    assert state_of(instance, "total") == "completed"
    assert output_vars(instance, "total") == {"s": "1,4,9"}


# One spelling per pipeline: each fails without its own support.
SINGLE = {
    "path_output": ('''
        t = dsl.task(key="t").produces(f=pathlib.Path("x.tsv")).calls("echo x > $f\\n")()
        yield t
        yield dsl.task(key="u").consumes(t.outputs.f).produces(v=str).calls("export v=$(cat $f)\\n")()
        ''', "x"),
    "file_set_exclude": ('''
        t = dsl.task(key="t").produces(s=dsl.file_set("*.txt", exclude=["skip*"])).calls("touch a.txt b.txt skip.txt\\n")()
        yield t
        for _ in dsl.wait_for_tasks(t):
            names = ",".join(h.basename() for h in t.outputs.s.fetch())
            yield dsl.task(key="u").consumes(names=names).produces(v=str).calls("export v=$names\\n")()
        ''', "a.txt,b.txt"),
    "task_conf_default": ('''
        yield dsl.task(key="u", task_conf=TaskConf.default()).produces(v=str).calls("export v=$__task_key\\n")()
        ''', "u"),
    "task_out": ('''
        t = dsl.task(key="t").produces(x=int).calls("export x=5\\n")()
        yield t
        yield dsl.task(key="u").consumes(t.out.x).produces(v=str).calls("export v=$x\\n")()
        ''', "5"),
    "matcher_all_fetch": ('''
        for i in (1, 2):
            yield dsl.task(key=f"t-{i}").produces(x=int).calls(f"export x={i * 10}\\n")()
        for m in dsl.wait_for_matching_tasks("t-*"):
            got = ",".join(map(str, sorted(m.all.x.fetch())))
            yield dsl.task(key="u").consumes(got=got).produces(v=str).calls("export v=$got\\n")()
        ''', "10,20"),
}


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_one_spelling(tmp_path, name):
    body, expected = SINGLE[name]
    body = textwrap.indent(textwrap.dedent(body).strip("\n"), "    ")
    write_module(tmp_path, name, "import pathlib\nfrom dry_pipe import DryPipe, TaskConf\n\ndef gen(dsl):\n" + body + "\n")
    instance = tmp_path / "i"
    drypipe("run", "-p", f"{name}:gen", "-i", str(instance), cwd=tmp_path, check=True)
    assert output_vars(instance, "u") == {"v": expected}
