"""core.validation (every problem, with where it is) and core.graph (order, cycles)."""
from __future__ import annotations

import pytest

from core import graph
from core.validation import KINDS, Problem, ValidationError, errors_only, validate
from core.workflow import Link, Node, Workflow
from tests.stubs import chain


# -- helpers -----------------------------------------------------------------------
def titled(workflow: Workflow, **titles: str) -> Workflow:
    for node_id, title in titles.items():
        workflow.node(node_id).title = title
    return workflow


def one(problems: list[Problem], kind: str) -> Problem:
    found = [p for p in problems if p.kind == kind]
    assert len(found) == 1, problems
    return found[0]


def check(problem: Problem, kind: str, node_id: str, title: str, field: str | None,
          severity: str = "error") -> None:
    """The problem's fields, and that its text names the node (id, title) and the field."""
    assert problem.kind in KINDS
    assert (problem.kind, problem.node_id, problem.node_title, problem.field, problem.severity) == (
        kind, node_id, title, field, severity
    )
    text = str(problem)
    assert repr(node_id) in text
    assert title in text
    if field is not None:
        assert repr(field) in text
    assert problem.message in text


def kinds(problems: list[Problem]) -> list[str]:
    return sorted(p.kind for p in problems)


def to_output(*nodes, links=()):
    """``chain`` plus an output node ``out`` fed by the last node's ``out``."""
    last = nodes[-1][0]
    return chain(*nodes, ("out", "test.output", {}), links=[*links, (last, "out", "out", "x")])


# -- a valid workflow ----------------------------------------------------------------
def test_valid_linear_workflow_has_no_problems(registry, linear_workflow):
    assert validate(linear_workflow, registry) == []


def test_valid_branching_workflow_has_no_problems(registry):
    wf = to_output(
        ("src", "test.source", {"value": -100}),       # int for FLOAT, at the minimum
        ("src2", "test.source", {}),                    # defaults
        ("loop", "test.loop", {"steps": 10000, "delay": 0}),
        ("choose", "test.choose", {"mode": "negate"}),
        ("add", "test.add", {}),
        links=[
            ("src", "out", "loop", "x"),
            ("loop", "out", "choose", "x"),
            ("choose", "out", "add", "a"),
            ("src2", "out", "add", "b"),
        ],
    )
    assert validate(wf, registry) == []


def test_optional_input_may_stay_unlinked(registry):
    wf = to_output(("src", "test.source", {}), ("add", "test.add", {}),
                   links=[("src", "out", "add", "a")])
    assert validate(wf, registry) == []


def test_a_linked_param_is_not_checked_as_a_value(registry):
    # 'factor' holds a bad value, but a link feeds it, so the value is not used.
    wf = to_output(("src", "test.source", {}), ("k", "test.source", {}),
                   ("sc", "test.scale", {"factor": "nonsense"}),
                   links=[("src", "out", "sc", "x")])
    wf.links.append(Link("k", "out", "sc", "factor"))
    assert kinds(validate(wf, registry)) == ["type_mismatch"]  # LATENT into FLOAT, not bad_value


# -- each kind of problem ---------------------------------------------------------------
def test_unknown_type_is_reported_and_the_node_is_kept(registry):
    wf = to_output(("src", "test.source", {}), ("plug", "plugin.missing", {"k": 1}),
                   links=[("src", "out", "plug", "in")])
    before = (dict(wf.nodes), list(wf.links))
    problems = validate(wf, registry)
    check(one(problems, "unknown_type"), "unknown_type", "plug", "plugin.missing", None)
    assert "plugin.missing" in one(problems, "unknown_type").message
    assert kinds(problems) == ["unknown_type"]
    assert (dict(wf.nodes), list(wf.links)) == before
    assert wf.node("plug").params == {"k": 1}


def test_unknown_type_uses_the_node_title_when_it_has_one(registry):
    wf = titled(to_output(("plug", "plugin.missing", {})), plug="My plugin node")
    check(one(validate(wf, registry), "unknown_type"), "unknown_type", "plug", "My plugin node", None)


def test_newer_node_version(registry):
    wf = to_output(("src", "test.source", {}), ("sc", "test.scale", {}),
                   links=[("src", "out", "sc", "x")])
    wf.node("sc").version = 2
    problems = validate(wf, registry)
    check(one(problems, "newer_version"), "newer_version", "sc", "Scale", None)
    assert "update" in one(problems, "newer_version").message
    assert kinds(problems) == ["newer_version"]


def test_bad_link_from_a_nonexistent_node(registry):
    wf = titled(to_output(("sc", "test.scale", {})), sc="Resize")
    wf.links.append(Link("ghost", "out", "sc", "x"))
    problems = validate(wf, registry)
    check(one(problems, "bad_link"), "bad_link", "sc", "Resize", "x")
    assert "ghost" in one(problems, "bad_link").message
    assert kinds(problems) == ["bad_link"]


def test_bad_link_to_a_nonexistent_node(registry):
    wf = titled(to_output(("src", "test.source", {})), src="Start")
    wf.links.append(Link("src", "out", "ghost", "x"))
    problems = validate(wf, registry)
    check(one(problems, "bad_link"), "bad_link", "src", "Start", "out")
    assert "ghost" in one(problems, "bad_link").message
    assert kinds(problems) == ["bad_link"]


def test_bad_link_between_two_nonexistent_nodes_is_still_reported(registry):
    wf = to_output(("src", "test.source", {}))
    wf.links.append(Link("ghost", "out", "phantom", "x"))
    problems = validate(wf, registry)
    assert problems and set(kinds(problems)) == {"bad_link"}
    assert all(p.severity == "error" for p in problems)
    assert any("ghost" in str(p) and "phantom" in str(p) for p in problems)


def test_bad_link_into_a_nonexistent_input(registry):
    wf = to_output(("src", "test.source", {}), ("sc", "test.scale", {}),
                   links=[("src", "out", "sc", "x")])
    wf.links.append(Link("src", "out", "sc", "nope"))
    problems = validate(wf, registry)
    check(one(problems, "bad_link"), "bad_link", "sc", "Scale", "nope")
    assert kinds(problems) == ["bad_link"]


def test_bad_link_from_a_nonexistent_output(registry):
    wf = to_output(("src", "test.source", {}), ("sc", "test.scale", {}))
    wf.links.append(Link("src", "nope", "sc", "x"))
    problems = validate(wf, registry)
    problem = one(problems, "bad_link")
    check(problem, "bad_link", "sc", "Scale", "x")
    assert "'src'" in problem.message and "nope" in problem.message
    assert kinds(problems) == ["bad_link"]


def test_duplicate_link(registry):
    wf = chain(("a", "test.source", {}), ("b", "test.source", {}), ("out", "test.output", {}))
    wf.links.append(Link("a", "out", "out", "x"))
    wf.links.append(Link("b", "out", "out", "x"))
    problems = validate(wf, registry)
    check(one(problems, "duplicate_link"), "duplicate_link", "out", "Output", "x")
    assert kinds(problems) == ["duplicate_link"]


def test_missing_input(registry):
    wf = titled(to_output(("sc", "test.scale", {})), sc="Resize")
    problems = validate(wf, registry)
    check(one(problems, "missing_input"), "missing_input", "sc", "Resize", "x")
    assert "LATENT" in one(problems, "missing_input").message
    assert kinds(problems) == ["missing_input"]


def test_type_mismatch(registry):
    wf = to_output(("img", "test.image", {}), ("sc", "test.scale", {}),
                   links=[("img", "image", "sc", "x")])
    problems = validate(wf, registry)
    problem = one(problems, "type_mismatch")
    check(problem, "type_mismatch", "sc", "Scale", "x")
    assert "IMAGE" in problem.message and "LATENT" in problem.message
    assert kinds(problems) == ["type_mismatch"]


BAD_VALUES = [
    # (node type, params, field, words in the message)
    ("test.source", {"value": 1000.0}, "value", ["maximum"]),
    ("test.source", {"value": -100.5}, "value", ["minimum"]),
    ("test.choose", {"mode": "flip"}, "mode", ["'flip'", "'keep'", "'negate'"]),
    ("test.source", {"value": "1.0"}, "value", ["number"]),
    ("test.source", {"value": None}, "value", ["number"]),
    ("test.source", {"value": True}, "value", ["number"]),
    ("test.loop", {"steps": True}, "steps", ["integer"]),
    ("test.loop", {"steps": 5.0}, "steps", ["integer"]),
    ("test.loop", {"steps": 0}, "steps", ["minimum"]),
    ("test.fail", {"message": 3}, "message", ["text"]),
]


@pytest.mark.parametrize("type_id, params, field, words", BAD_VALUES)
def test_bad_value(registry, type_id, params, field, words):
    if type_id == "test.source":
        wf = to_output(("n", type_id, params))
    else:
        wf = to_output(("src", "test.source", {}), ("n", type_id, params),
                       links=[("src", "out", "n", "x")])
    wf.node("n").title = "The node"
    problems = validate(wf, registry)
    problem = one(problems, "bad_value")
    check(problem, "bad_value", "n", "The node", field)
    for word in words:
        assert word in problem.message
    assert kinds(problems) == ["bad_value"]


def test_unknown_param_is_a_warning_even_in_a_needed_node(registry):
    wf = to_output(("src", "test.source", {"value": 1.0, "colour": "red"}))
    problems = validate(wf, registry)
    check(one(problems, "unknown_param"), "unknown_param", "src", "Source", "colour", "warning")
    assert kinds(problems) == ["unknown_param"]
    assert errors_only(problems) == []


def test_unknown_param_in_an_unused_node_is_a_warning_too(registry):
    wf = to_output(("src", "test.source", {}))
    wf.add_node(Node("spare", "test.source", params={"colour": "red"}))
    problems = validate(wf, registry)
    check(one(problems, "unknown_param"), "unknown_param", "spare", "Source", "colour", "warning")


def test_cycle_of_two_names_both_nodes(registry):
    wf = chain(
        ("a", "test.add", {}), ("b", "test.scale", {}), ("out", "test.output", {}),
        links=[("a", "out", "b", "x"), ("b", "out", "a", "a"), ("a", "out", "out", "x")],
    )
    titled(wf, a="Alpha node")
    problem = one(validate(wf, registry), "cycle")
    assert problem.severity == "error"
    for part in ["'a'", "Alpha node", "'b'", "Scale"]:
        assert part in problem.message and part in str(problem)
    assert "'out'" not in problem.message


def test_cycle_of_three_names_every_node(registry):
    wf = chain(
        ("p", "test.scale", {}), ("q", "test.scale", {}), ("r", "test.add", {}),
        ("src", "test.source", {}), ("out", "test.output", {}),
        links=[("p", "out", "q", "x"), ("q", "out", "r", "a"), ("r", "out", "p", "x"),
               ("src", "out", "r", "b"), ("q", "out", "out", "x")],
    )
    titled(wf, p="First", q="Second", r="Third")
    problems = validate(wf, registry)
    problem = one(problems, "cycle")
    assert problem.severity == "error"
    for part in ["'p'", "First", "'q'", "Second", "'r'", "Third"]:
        assert part in problem.message
    assert "'src'" not in problem.message


def test_cycle_in_an_unused_branch_is_still_an_error(registry):
    wf = to_output(("src", "test.source", {}))
    for node_id in ("a", "b"):
        wf.add_node(Node(node_id, "test.scale"))
    wf.connect("a", "out", "b", "x")
    wf.connect("b", "out", "a", "x")
    assert one(validate(wf, registry), "cycle").severity == "error"


def test_self_loop_is_a_cycle(registry):
    wf = to_output(("sc", "test.scale", {}))
    wf.connect("sc", "out", "sc", "x")
    problem = one(validate(wf, registry), "cycle")
    assert "'sc'" in problem.message and "Scale" in problem.message


@pytest.mark.parametrize("nodes", [[], [("src", "test.source", {})]])
def test_no_output(registry, nodes):
    problems = validate(chain(*nodes), registry)
    problem = one(problems, "no_output")
    assert problem.severity == "error"
    assert "output" in str(problem)


# -- everything at once -----------------------------------------------------------------
def test_all_problems_are_reported_in_one_call(registry):
    wf = chain(
        ("src", "test.source", {"value": 500.0}),               # bad_value
        ("img", "test.image", {}),
        ("plug", "plugin.missing", {}),                          # unknown_type
        ("sc", "test.scale", {"factor": 1.0, "typo": 1}),        # unknown_param (warning)
        ("mix", "test.add", {}),                                 # type_mismatch on 'a'
        ("sc2", "test.scale", {}),                               # missing_input 'x'
        ("out", "test.output", {}),
        links=[("src", "out", "sc", "x"), ("img", "image", "mix", "a"), ("sc", "out", "mix", "b"),
               ("mix", "out", "plug", "in"), ("plug", "out", "sc2", "factor"),
               ("sc2", "out", "out", "x")],
    )
    wf.links.append(Link("ghost", "out", "mix", "b"))            # bad_link + duplicate_link
    problems = validate(wf, registry)
    assert set(kinds(problems)) == {
        "bad_value", "unknown_type", "unknown_param", "type_mismatch", "missing_input",
        "bad_link", "duplicate_link",
    }
    located = {(p.kind, p.node_id, p.field) for p in problems}
    assert {("bad_value", "src", "value"), ("unknown_type", "plug", None),
            ("unknown_param", "sc", "typo"), ("type_mismatch", "mix", "a"),
            ("missing_input", "sc2", "x"), ("duplicate_link", "mix", "b")} <= located

    errors = errors_only(problems)
    assert len(errors) == len(problems) - 1  # only the unknown param is a warning
    error = ValidationError(errors)
    assert error.problems == errors
    text = str(error)
    for problem in errors:
        assert str(problem) in text
    assert len(text.splitlines()) == len(errors) + 1


def test_cycle_and_no_output_are_reported_with_the_rest(registry):
    wf = chain(("a", "test.scale", {"factor": "x"}), ("b", "test.scale", {}),
               links=[("a", "out", "b", "x"), ("b", "out", "a", "x")])
    problems = validate(wf, registry)
    assert {"no_output", "cycle", "bad_value"} <= set(kinds(problems))


def test_make_plan_raises_a_validation_error_listing_every_error(registry):
    from core.executor.plan import make_plan

    wf = to_output(("src", "test.source", {"value": "high"}), ("sc", "test.scale", {}),
                   ("img", "test.image", {}), ("mix", "test.add", {}), ("mix2", "test.add", {}),
                   links=[("img", "image", "mix", "a"), ("src", "out", "mix", "b"),
                          ("mix", "out", "mix2", "a"), ("sc", "out", "mix2", "b")])
    with pytest.raises(ValidationError) as info:
        make_plan(wf, registry)
    assert {(p.kind, p.node_id) for p in info.value.problems} == {
        ("bad_value", "src"), ("missing_input", "sc"), ("type_mismatch", "mix"),
    }
    for problem in info.value.problems:
        assert str(problem) in str(info.value)


# -- severity -------------------------------------------------------------------------------
def _with_unused_branch(params: dict) -> Workflow:
    """src -> out, plus a second source with ``params`` that feeds nothing."""
    wf = to_output(("src", "test.source", {}))
    wf.add_node(Node("spare", "test.source", params=params))
    wf.add_node(Node("spare_sc", "test.scale"))
    wf.connect("spare", "out", "spare_sc", "x")
    return wf


def test_problem_in_a_node_that_feeds_no_output_is_a_warning(registry):
    problems = validate(_with_unused_branch({"value": 1000.0}), registry)
    check(one(problems, "bad_value"), "bad_value", "spare", "Source", "value", "warning")
    assert errors_only(problems) == []


def test_same_problem_in_a_node_that_feeds_an_output_is_an_error(registry):
    wf = _with_unused_branch({"value": 1000.0})
    wf.connect("spare_sc", "out", "out", "x")  # now the branch is pulled by the output
    problems = validate(wf, registry)
    check(one(problems, "bad_value"), "bad_value", "spare", "Source", "value", "error")
    assert errors_only(problems) == problems


@pytest.mark.parametrize("make", [
    lambda wf: wf.add_node(Node("lost", "test.scale")),                    # missing_input
    lambda wf: wf.add_node(Node("lost", "plugin.missing")),                # unknown_type
    lambda wf: (wf.add_node(Node("lost", "test.scale")),
                wf.links.append(Link("ghost", "out", "lost", "x"))),       # bad_link
    lambda wf: (wf.add_node(Node("img", "test.image")), wf.add_node(Node("lost", "test.scale")),
                wf.connect("img", "image", "lost", "x")),                  # type_mismatch
    lambda wf: (wf.add_node(Node("lost", "test.scale", version=9)),
                wf.connect("src", "out", "lost", "x")),                    # newer_version
])
def test_every_node_problem_in_an_unused_node_is_a_warning(registry, make):
    wf = to_output(("src", "test.source", {}))
    make(wf)
    problems = validate(wf, registry)
    assert problems and all(p.severity == "warning" for p in problems), problems
    assert {p.node_id for p in problems} == {"lost"}


def test_bad_link_feeding_an_output_is_an_error(registry):
    wf = to_output(("sc", "test.scale", {}))
    wf.links.append(Link("ghost", "out", "sc", "x"))
    assert one(validate(wf, registry), "bad_link").severity == "error"


# -- core.graph ------------------------------------------------------------------------------
def _edges(pairs, nodes=()) -> dict[str, list[str]]:
    """Upstream edges from (source, target) pairs."""
    links = [Link(src, "out", dst, "in") for src, dst in pairs]
    ids = set(nodes) | {n for pair in pairs for n in pair}
    return graph.upstream_edges(sorted(ids), links)


def test_upstream_edges_ignore_links_to_missing_nodes():
    links = [Link("a", "out", "b", "x"), Link("ghost", "out", "b", "y"), Link("a", "o2", "b", "z")]
    assert graph.upstream_edges(["a", "b"], links) == {"a": [], "b": ["a"]}


def test_execution_order_puts_every_node_after_its_inputs():
    pairs = [("src", "s1"), ("src", "s2"), ("s1", "add"), ("s2", "add"), ("add", "out"),
             ("zeta", "out"), ("src", "dangling"), ("dangling", "nowhere"), ("orphan", "nowhere")]
    upstream = _edges(pairs)
    order = graph.execution_order(["out"], upstream)
    assert sorted(order) == ["add", "out", "s1", "s2", "src", "zeta"]  # skips what feeds no output
    assert len(order) == len(set(order))
    position = {node_id: i for i, node_id in enumerate(order)}
    for node_id in order:
        for source in upstream[node_id]:
            assert position[source] < position[node_id]
    assert order == ["src", "s1", "s2", "add", "zeta", "out"]  # deterministic: ties by id


def test_execution_order_with_several_outputs_runs_shared_nodes_once():
    upstream = _edges([("src", "o1"), ("src", "mid"), ("mid", "o2")])
    order = graph.execution_order(["o2", "o1"], upstream)
    assert order == ["src", "o1", "mid", "o2"]


def test_execution_order_of_a_real_workflow(linear_workflow):
    linear_workflow.add_node(Node("unused", "test.source"))
    upstream = graph.upstream_edges(linear_workflow.nodes, linear_workflow.links)
    assert graph.execution_order(["out"], upstream) == ["src", "scale", "out"]
    assert graph.pulled_from(["out"], upstream) == {"src", "scale", "out"}


N = 5000


def test_long_chain_does_not_hit_the_recursion_limit():
    ids = [f"n{i:05d}" for i in range(N)]
    upstream = {ids[0]: []}
    upstream.update({ids[i]: [ids[i - 1]] for i in range(1, N)})
    assert graph.execution_order([ids[-1]], upstream) == ids
    assert graph.cycles(upstream) == []
    assert graph.pulled_from([ids[-1]], upstream) == set(ids)
    ring = dict(upstream)
    ring[ids[0]] = [ids[-1]]
    assert graph.cycles(ring) == [ids]


def test_validate_a_long_chain(registry):
    wf = Workflow()
    wf.add_node(Node("n0", "test.source"))
    for i in range(1, N):
        wf.add_node(Node(f"n{i}", "test.scale"))
        wf.links.append(Link(f"n{i - 1}", "out", f"n{i}", "x"))
    wf.add_node(Node("out", "test.output"))
    wf.links.append(Link(f"n{N - 1}", "out", "out", "x"))
    assert validate(wf, registry) == []
    wf.links.append(Link(f"n{N - 1}", "out", "n1", "x"))  # close a loop over the whole chain
    problems = validate(wf, registry)
    assert "cycle" in kinds(problems)


def test_cycles_finds_separate_loops_separately_and_self_loops():
    pairs = [("a", "b"), ("b", "a"),                     # loop 1
             ("c", "d"), ("d", "e"), ("e", "c"),         # loop 2
             ("b", "c"),                                 # joins them one way only: no merge
             ("e", "f"), ("f", "out"),                   # not in a loop
             ("g", "g"),                                 # self-loop
             ("h", "i")]
    assert graph.cycles(_edges(pairs)) == [["a", "b"], ["c", "d", "e"], ["g"]]


def test_cycles_merges_loops_that_share_nodes():
    pairs = [("a", "b"), ("b", "a"), ("b", "c"), ("c", "b")]
    assert graph.cycles(_edges(pairs)) == [["a", "b", "c"]]


def test_no_cycles_in_a_diamond():
    assert graph.cycles(_edges([("s", "l"), ("s", "r"), ("l", "j"), ("r", "j")])) == []


def test_execution_order_terminates_on_a_cycle():
    from core import graph

    order = graph.execution_order(["c"], {"a": ["b"], "b": ["a"], "c": ["a"]})
    assert sorted(order) == ["a", "b", "c"] and order[-1] == "c"
