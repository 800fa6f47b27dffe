"""Claims about proto_verify.py's Prolog engine (card: shared/papers/proto_reasoning.md §4.2–4.5)."""
import pytest

from proto_verify import PrologError, PrologSyntaxError, solve

APPEND = "app([],L,L). app([H|T],L,[H|R]) :- app(T,L,R)."


def test_append_enumerates_all_splits_in_swi_order():
    sols = solve(APPEND, "app(X, Y, [1,2,3])")
    assert [(s["X"], s["Y"]) for s in sols] == [("[]", "[1,2,3]"), ("[1]", "[2,3]"), ("[1,2]", "[3]"),
                                                ("[1,2,3]", "[]")]


def test_loop_stops_at_inference_budget_with_resource_error():
    with pytest.raises(PrologError) as ei:
        solve("loop :- loop.", "loop", max_inferences=10_000)
    assert ei.value.term.startswith("resource_error")


def test_tail_recursion_of_100000_steps_succeeds():
    assert solve("count(0) :- !. count(N) :- N1 is N-1, count(N1).", "count(100000)") == [{}]
