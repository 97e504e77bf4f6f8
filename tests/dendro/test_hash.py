"""The job-definition hash must equal the hosted service's (its Node code, restated)."""
import pytest

from dendro_bridge import (DendroJobDefinition, DendroJobInputFile, DendroJobOutputFile, DendroJobParameter,
                           job_definition_hash)
from dendro_bridge.hash import canonical_definition, locale_compare_key
from dendro_bridge.jsjson import js_number, stringify_sorted


def definition(processor: str, outputs=(), parameters=(), inputs=(), **extra) -> DendroJobDefinition:
    return DendroJobDefinition(
        appName="hello_world", processorName=processor,
        inputFiles=[DendroJobInputFile(name=n, fileBaseName=b, url=u) for n, b, u in inputs],
        outputFiles=[DendroJobOutputFile(name=n, fileBaseName=b) for n, b in outputs],
        parameters=[DendroJobParameter(name=n, value=v) for n, v in parameters], **extra)


def test_known_vectors():
    assert job_definition_hash(definition("hello_world_1", parameters=[("name", "world")])) == \
        "bdcb6312bd8cc42bb71ad90fbebad2b2f5d305e2"
    assert job_definition_hash(definition("hello_world_2", outputs=[("output", "output.txt")],
                                          parameters=[("name", "world")])) == \
        "493fe0e2fd8a856a6aa82844cac5153e9ee27686"


def test_hash_accepts_the_wire_dict():
    d = definition("hello_world_1", parameters=[("name", "world")])
    assert job_definition_hash(d.to_wire()) == job_definition_hash(d)


def test_locale_compare_order_from_node():
    # The order Node's localeCompare gives; Python's sorted() differs.
    node_order = ["a_b", "a.b", "alpha", "param_x", "param1", "Zeta"]
    assert sorted(reversed(node_order), key=locale_compare_key) == node_order
    assert sorted(node_order) != node_order


@pytest.mark.parametrize("before, after", [
    ("apple", "Banana"),     # mixed case: letters first, case second
    ("a", "A"),              # lower before upper for the same letter
    ("x_1", "x1"),           # '_' before digits
    ("x_y", "x.y"),          # '_' before '.'
    ("item10", "item2"),     # no numeric collation
])
def test_ordering_cases(before, after):
    assert locale_compare_key(before) < locale_compare_key(after)


def test_list_order_does_not_change_the_hash_but_values_do():
    a = definition("p", parameters=[("Zeta", 1), ("param1", 2), ("param_x", 3), ("a.b", 4), ("a_b", 5)])
    b = definition("p", parameters=[("a_b", 5), ("a.b", 4), ("param_x", 3), ("param1", 2), ("Zeta", 1)])
    assert job_definition_hash(a) == job_definition_hash(b)
    assert [p["name"] for p in canonical_definition(a)["parameters"]] == ["a_b", "a.b", "param_x", "param1", "Zeta"]
    assert job_definition_hash(definition("p", parameters=[("x", "1")])) != \
        job_definition_hash(definition("p", parameters=[("x", 1)]))


def test_int_and_integral_float_hash_the_same():
    one = definition("p", parameters=[("x", 1)])
    assert job_definition_hash(one) == job_definition_hash(definition("p", parameters=[("x", 1.0)]))
    assert job_definition_hash(one) != job_definition_hash(definition("p", parameters=[("x", 1.5)]))


@pytest.mark.parametrize("value, text", [
    (1e-7, "1e-7"), (1.25e-7, "1.25e-7"), (1e-6, "0.000001"), (1e21, "1e+21"), (1e20, "100000000000000000000"),
    (123456789012345680000.0, "123456789012345680000"), (2 ** 64, "18446744073709552000"), (-0.0, "0"),
    (0.1, "0.1"), (-3.5, "-3.5"), (1.5e300, "1.5e+300"), (5e-324, "5e-324"), (12500.0, "12500"),
])
def test_js_number_formatting(value, text):
    assert js_number(value) == text


def test_deterministic_json_like_json_stringify():
    value = {"b": [1.0, True, None, "é\n\"x\""], "a": {"z": 1e-7, "B": "\ud800"}}
    assert stringify_sorted(value) == '{"a":{"B":"\\ud800","z":1e-7},"b":[1,true,null,"é\\n\\"x\\""]}'


def test_optional_keys_enter_the_hash_only_when_set():
    plain = definition("p")
    assert "cacheBust" not in plain.to_wire()
    assert job_definition_hash(plain) != job_definition_hash(definition("p", cacheBust="x"))
    runtime = DendroJobDefinition(appName="a", processorName="p", inputFiles=[], parameters=[],
                                  outputFiles=[DendroJobOutputFile(name="o", fileBaseName="o.txt",
                                                                   urlDeterminedAtRuntime=True)])
    assert runtime.to_wire()["outputFiles"][0]["urlDeterminedAtRuntime"] is True
