"""`drypipe graph`: the DAG in Mermaid, as the manual draws it, and in Graphviz dot."""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import textwrap

import pytest

from tests.helpers import REPO, drypipe, write_module
from drypipe.graph import build_graph, to_dot, to_mermaid

# The manual's flowchart of examples/chunked_fasta.py, with the fan-out of chunk tasks drawn once.
CHUNKED_FASTA = textwrap.dedent('''\
    flowchart LR
    prepare_chunks(["prepare-chunks"])
    task_for_chunk_N(["task-for-chunk.* (3 tasks)"])
    analyze_all_work_pieces(["analyze-all-work-pieces"])
    prepare_chunks-->|"work-chunk.*.fasta"|task_for_chunk_N
    task_for_chunk_N-->|"results.json"|analyze_all_work_pieces
    ''')

# The manual's first flowchart ("The DAG"), line for line.
MANUAL_T1_T2_T3 = '''flowchart LR
t1(["t1"])
t2(["t2"])
t3(["t3"])
t1-->|"x: int"|t2
t2-->|"f.tsv"|t3
t1-->|"z.json"|t3'''


def _chunked_instance(tmp_path):
    instance = tmp_path / "chimp"
    instance.mkdir()
    shutil.copy(REPO / "examples/data/chimp.fasta", instance)
    return instance


def test_chunked_fasta_mermaid(tmp_path):
    instance = _chunked_instance(tmp_path)
    spec = "examples.chunked_fasta:pipeline"
    before = drypipe("graph", "-p", spec, "-i", str(instance), cwd=REPO, check=True).stdout
    assert before == textwrap.dedent('''\
        flowchart LR
        prepare_chunks(["prepare-chunks"])
        %% the generator still waits: wait_for_tasks(prepare-chunks) (more tasks may appear)
        %% the generator still waits: wait_for_matching_tasks('task-for-chunk.*'): no task matches yet (more tasks may appear)
        ''')
    drypipe("run", "-p", spec, "-i", str(instance), cwd=REPO, check=True)
    assert drypipe("graph", "-p", spec, "-i", str(instance), cwd=REPO, check=True).stdout == CHUNKED_FASTA
    every = drypipe("graph", "-p", spec, "-i", str(instance), "--collapse", "0", cwd=REPO, check=True).stdout
    assert 'prepare_chunks-->|"work-chunk.1.fasta"|task_for_chunk_1' in every.splitlines()
    assert 'task_for_chunk_2-->|"results.json"|analyze_all_work_pieces' in every.splitlines()
    assert len(every.splitlines()) == 1 + 5 + 6
    dot = drypipe("graph", "-p", spec, "-i", str(instance), "--format", "dot", cwd=REPO, check=True).stdout
    assert dot.startswith("digraph drypipe {\n  rankdir=LR;")
    assert '  "task_for_chunk_N" [label="task-for-chunk.* (3 tasks)", shape=box3d];' in dot
    assert '  "prepare_chunks" -> "task_for_chunk_N" [label="work-chunk.*.fasta"];' in dot
    assert dot.endswith("}\n")


def test_manual_dag(tmp_path):
    result = drypipe("graph", "-p", "examples.dag_t1_t2_t3:pipeline", "-i", str(tmp_path / "none"), cwd=REPO,
                     check=True)
    # same nodes and edges as the manual (edges come in the order the tasks consume them)
    assert sorted(result.stdout.splitlines()) == sorted(MANUAL_T1_T2_T3.splitlines())
    assert not (tmp_path / "none").exists()  # graph changes nothing


def test_numbered_keys_with_different_wiring_are_not_merged(tmp_path):
    write_module(tmp_path, "fan", '''
        def gen(dsl):
            src = dsl.task(key="split").outputs(n=int).calls("export n=1\\n")()
            yield src
            steps = [dsl.task(key=f"sample-{i}").inputs(src.outputs.n).outputs(r=dsl.file("r.txt"))
                     .calls("touch $r\\n")() for i in range(4)]
            yield from steps
            yield dsl.task(key="end").inputs(a=steps[0].outputs.r).calls("true\\n")()
        ''')
    out = drypipe("graph", "-p", "fan:gen", "-i", str(tmp_path / "i"), cwd=tmp_path, check=True).stdout
    lines = out.splitlines()
    # sample-0 feeds "end" and stays apart; the 3 others are alike and drawn once
    assert 'sample_0(["sample-0"])' in lines
    assert 'sample_N(["sample-* (3 tasks)"])' in lines
    assert 'split-->|"n: int"|sample_N' in lines and 'split-->|"n: int"|sample_0' in lines
    assert 'sample_0-->|"r.txt"|end_' in lines  # "end" would close a Mermaid flowchart: renamed
    assert 'end_(["end"])' in lines


def test_mermaid_escapes_quotes():
    class T:
        def __init__(self, key, inputs=(), ups=()):
            self.key, self.inputs, self.upstream_keys = key, list(inputs), set(ups)

    tasks = {"a": T("a"), "b": T("b", [{"name": "x", "kind": "file", "path": 'output/a/say "hi".txt',
                                        "upstream": "a"}], {"a"})}
    assert to_mermaid(build_graph(tasks)).splitlines()[-1] == 'a-->|"say #quot;hi#quot;.txt"|b'


def _dot_json(dot_text: str) -> dict:
    """The graph as Graphviz itself parses it (`dot -Tjson`)."""
    if not shutil.which("dot"):
        if os.environ.get("CI"):
            pytest.fail("graphviz `dot` is not installed (tests/services/install.sh installs it)")
        pytest.skip("graphviz `dot` is not installed")
    result = subprocess.run(["dot", "-Tjson"], input=dot_text, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_dot_ids_are_quoted_so_any_key_draws_the_right_graph(tmp_path):
    write_module(tmp_path, "digits", '''
        def gen(dsl):
            fetch = dsl.task(key="01-fetch").outputs(f=dsl.file("raw.txt")).calls("echo > $f\\n")()
            yield fetch
            yield dsl.task(key="02-clean").inputs(raw=fetch.outputs.f).outputs(n=int).calls("export n=1\\n")()
            yield dsl.task(key='3=a,b@x:y').inputs(raw=fetch.outputs.f).calls("true\\n")()
        ''')
    dot = drypipe("graph", "-p", "digits:gen", "-i", str(tmp_path / "i"), "--format", "dot",
                  cwd=tmp_path, check=True).stdout
    parsed = _dot_json(dot)
    names = {o["_gvid"]: o["name"] for o in parsed["objects"]}
    labels = {o["name"]: o["label"] for o in parsed["objects"]}
    assert sorted(labels.values()) == ['01-fetch', '02-clean', '3=a,b@x:y']  # three nodes, nothing else
    edges = sorted((labels[names[e["tail"]]], labels[names[e["head"]]], e["label"]) for e in parsed["edges"])
    assert edges == [("01-fetch", "02-clean", "raw.txt"), ("01-fetch", '3=a,b@x:y', "raw.txt")]


def test_dot_escapes_quotes_and_backslashes():
    class T:
        def __init__(self, key, inputs=(), ups=()):
            self.key, self.inputs, self.upstream_keys = key, list(inputs), set(ups)

    name = 'say "hi" \\ bye.txt'
    tasks = {"1a": T("1a"), "1b": T("1b", [{"name": "x", "kind": "file", "path": f"output/1a/{name}",
                                            "upstream": "1a"}], {"1a"})}
    dot = to_dot(build_graph(tasks))
    parsed = _dot_json(dot)
    assert [o["label"] for o in parsed["objects"]] == ["1a", "1b"]
    assert [(e["tail"], e["head"]) for e in parsed["edges"]] == [(0, 1)]
    # what Graphviz draws: the file name as it is (labels are escString: `\\\\` draws one backslash)
    svg = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, timeout=60, check=True).stdout
    drawn = [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]
    assert drawn == ["1a", "1b", name]
