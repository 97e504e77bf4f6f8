"""The DAG of a pipeline as text: Mermaid (the manual's `flowchart LR`) or Graphviz dot.

One node per task, one edge per file or variable a task consumes from another, labelled with
the file name or `name: type`.  A fan-out of tasks whose keys differ only by numbers
(`task-for-chunk.0`, `task-for-chunk.1`, ...) and that are wired the same way is drawn once,
as `task-for-chunk.*` with a count.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from drypipe.task import Task

_Edges = frozenset[tuple[str, str]]  # (pattern of the task at the other end, pattern of the label)
DEFAULT_COLLAPSE = 3  # fan-outs of at least this many tasks are drawn as one node

_NUMBER = re.compile(r"\d+")
# Words that end or break a Mermaid flowchart when used as node ids.
_MERMAID_RESERVED = {"end", "graph", "subgraph", "flowchart", "style", "class", "classdef", "click",
                     "linkstyle", "default", "direction"}


def numbered_pattern(text: str) -> str:
    """`task-for-chunk.12` -> `task-for-chunk.*`: the glob that groups keys differing only by numbers."""
    return _NUMBER.sub("*", text)


@dataclass
class Node:
    id: str
    keys: list[str]
    pattern: str | None = None  # set when the node stands for several tasks

    @property
    def label(self) -> str:
        if self.pattern is None:
            return self.keys[0]
        return f"{self.pattern} ({len(self.keys)} tasks)"


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (source id, target id, label)
    waits: list[str] = field(default_factory=list)  # what the generator still waits for


def task_edges(tasks: dict[str, Task]) -> list[tuple[str, str, str]]:
    """(upstream key, task key, label) for every input a task takes from another task, in yield order."""
    edges: list[tuple[str, str, str]] = []
    for task in tasks.values():
        seen: set[str] = set()
        for spec in task.inputs:
            kind = spec["kind"]
            if kind == "var":
                ups, label = [spec.get("upstream")], f"{spec['name']}: {spec['type']}"
            elif kind == "file":
                ups, label = [spec.get("upstream")], os.path.basename(spec["path"])
            elif kind == "glob":
                ups, label = spec.get("upstreams") or [], os.path.basename(spec["pattern"])
            else:
                continue
            for upstream in ups:
                if upstream in tasks and upstream != task.key:
                    edges.append((upstream, task.key, label))
                    seen.add(upstream)
        for upstream in sorted(task.upstream_keys - seen):  # a dependency without data: no label
            if upstream in tasks:
                edges.append((upstream, task.key, ""))
    return edges


def build_graph(tasks: dict[str, Task], collapse: int = DEFAULT_COLLAPSE, waits: Iterable[str] = ()) -> Graph:
    """Nodes and edges of the DAG; `collapse` = 0 draws every task."""
    keys = list(tasks)
    edges = task_edges(tasks)
    node_of = {k: k for k in keys}  # task key -> representative key of its node
    members: dict[str, list[str]] = {k: [k] for k in keys}
    patterns: dict[str, str] = {}
    if collapse:
        incoming: dict[str, set[tuple[str, str]]] = defaultdict(set)
        outgoing: dict[str, set[tuple[str, str]]] = defaultdict(set)
        for up, down, label in edges:
            incoming[down].add((numbered_pattern(up), numbered_pattern(label)))
            outgoing[up].add((numbered_pattern(down), numbered_pattern(label)))
        groups: dict[tuple[str, _Edges, _Edges], list[str]] = defaultdict(list)
        for key in keys:
            pattern = numbered_pattern(key)
            if pattern != key:
                groups[(pattern, frozenset(incoming[key]), frozenset(outgoing[key]))].append(key)
        for (pattern, _, _), group in groups.items():
            inside = set(group)
            if len(group) < collapse or any(u in inside and d in inside for u, d, _ in edges):
                continue
            head = group[0]
            patterns[head] = pattern
            members[head] = group
            for key in group:
                node_of[key] = head
            for key in group[1:]:
                del members[key]
    graph = Graph(waits=list(waits))
    ids: dict[str, str] = {}
    used: set[str] = set()
    for head, group in members.items():
        node_id = _unique_id(patterns.get(head, head), used)
        ids[head] = node_id
        graph.nodes.append(Node(node_id, group, patterns.get(head)))
    merged: dict[tuple[str, str, str], set[str]] = {}
    for up, down, label in edges:
        source, target = node_of[up], node_of[down]
        collapsed = source in patterns or target in patterns
        group_key = (ids[source], ids[target], numbered_pattern(label) if collapsed else label)
        merged.setdefault(group_key, set()).add(label)
    for (source, target, pattern), labels in merged.items():
        graph.edges.append((source, target, labels.pop() if len(labels) == 1 else pattern))
    return graph


def _unique_id(name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", name.replace("*", "N")) or "task"
    if base.lower() in _MERMAID_RESERVED:
        base += "_"
    node_id, n = base, 2
    while node_id in used:
        node_id, n = f"{base}_{n}", n + 1
    used.add(node_id)
    return node_id


def to_mermaid(graph: Graph) -> str:
    def quoted(text: str) -> str:
        return '"' + text.replace('"', "#quot;") + '"'

    lines = ["flowchart LR"]
    lines += [f"{node.id}([{quoted(node.label)}])" for node in graph.nodes]
    for source, target, label in graph.edges:
        lines.append(f"{source}-->|{quoted(label)}|{target}" if label else f"{source}-->{target}")
    lines += [f"%% the generator still waits: {wait} (more tasks may appear)" for wait in graph.waits]
    return "\n".join(lines) + "\n"


def dot_quoted(text: str) -> str:
    """A DOT double-quoted string: any text is one ID (an unquoted `01-fetch` is the numeral
    01 followed by another ID)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Graph) -> str:
    lines = ["digraph drypipe {", "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="sans-serif"];']
    for node in graph.nodes:
        extra = ", shape=box3d" if node.pattern else ""
        lines.append(f"  {dot_quoted(node.id)} [label={dot_quoted(node.label)}{extra}];")
    for source, target, label in graph.edges:
        edge = f"  {dot_quoted(source)} -> {dot_quoted(target)}"
        lines.append(edge + (f" [label={dot_quoted(label)}];" if label else ";"))
    lines += [f"  // the generator still waits: {wait} (more tasks may appear)" for wait in graph.waits]
    lines.append("}")
    return "\n".join(lines) + "\n"
