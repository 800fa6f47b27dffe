"""Claims of the ProtoReasoning verifier in proto_verify.py, Prolog half: labels are correct by construction (the
engine's answers agree with SWI-Prolog and with independent Python oracles), rewards are sound (the reference scores
1, wrong or garbage answers score 0 with a reason, nothing raises), and every query stops within its budget.

The SWI-Prolog conformance of the engine itself (arithmetic, writeq, syntax errors, random differential programs)
is in tests/test_prolog_conformance.py. Oracles: the paper card shared/papers/proto_reasoning.md §3-§4.5.
"""
import contextlib
import json
import math
import random
import re
import signal
import subprocess
import sys

import pytest

from proto_verify import (PROLOG_TASK_KINDS, Prolog, PrologError, PrologSyntaxError, Task, generate_prolog_task,
                          generate_prolog_tasks, prolog_reward, query_values, solve)
from test_prolog_conformance import APPEND, FAMILY, NREV, QUEENS, err_term, needs_swipl, our_lines, swi_lines


# ── 1. labels are correct by construction: seeded generators, answers agree with SWI-Prolog ─────────────────────────
def test_generators_are_seeded_and_labels_come_from_the_engine():
    for kind in PROLOG_TASK_KINDS:
        a = generate_prolog_task(11, kind=kind, difficulty=3)
        b = generate_prolog_task(11, kind=kind, difficulty=3)
        assert a == b and isinstance(a, Task) and a.kind == kind
        sols, _ = query_values(a.program, a.query, a.answer_vars, max_solutions=10_000, max_inferences=2_000_000)
        if a.compare == "first":
            assert json.loads(a.answer) == sols[0]
        elif a.compare == "set":
            assert sorted(map(json.dumps, json.loads(a.answer))) == sorted(set(map(json.dumps, sols)))
        else:
            assert json.loads(a.answer) == sols
        assert a.program in a.prompt and a.query in a.prompt


@pytest.mark.parametrize("kind", PROLOG_TASK_KINDS)
def test_every_kind_and_difficulty_generates_a_task_whose_reference_scores_one(kind):
    for d in range(1, 6):
        t = generate_prolog_task(100 + d, kind=kind, difficulty=d)
        assert t.difficulty == d and t.compare in ("set", "sequence", "first") and 0 < t.inferences < 2_000_000
        assert prolog_reward(t, t.answer) == (1.0, "ok") and f"?- {t.query}." in t.prompt


def test_task_batches_are_deterministic_and_cover_the_requested_kinds():
    a = generate_prolog_tasks(12, seed=3, kinds=("list", "graph"), difficulties=(1, 4))
    assert a == generate_prolog_tasks(12, seed=3, kinds=("list", "graph"), difficulties=(1, 4))
    assert {t.kind for t in a} == {"list", "graph"} and {t.difficulty for t in a} <= {1, 4}
    assert a != generate_prolog_tasks(12, seed=4, kinds=("list", "graph"), difficulties=(1, 4))
    with pytest.raises(ValueError, match="kinds"):
        generate_prolog_tasks(2, kinds=("chess",))


def test_answer_lengths_vary_widely_and_grow_with_difficulty():
    lens = {d: [len(generate_prolog_task(s, difficulty=d).answer) for s in range(25)] for d in (1, 5)}
    allv = lens[1] + lens[5]
    assert min(allv) <= 3 and max(allv) >= 60
    assert sum(lens[5]) > 1.5 * sum(lens[1])


@pytest.mark.parametrize("kind", PROLOG_TASK_KINDS)
def test_generated_task_answers_agree_with_swi(kind):
    for seed in range(2):
        t = generate_prolog_task(seed, kind=kind, difficulty=2)
        assert our_lines(t.program, t.query, 2000) == swi_lines(t.program, t.query, 2000), t.prompt


# ── 1b. ... and with independent Python oracles (correct by construction needs a correct engine) ────────────────────
def _py_list_op(name, xs):
    if name == "evens":
        return [x for x in xs if x % 2 == 0]
    if name == "double":
        return [2 * x for x in xs]
    if name == "rev":
        return xs[::-1]
    if name == "sum":
        return sum(xs)
    if name == "maxl":
        return max(xs)
    if name == "rle":
        out = []
        for x in xs:
            if out and out[-1][0] == x:
                out[-1][1] += 1
            else:
                out.append([x, 1])
        return out
    if name == "isort":
        return sorted(xs)
    if name == "prefix_sums":
        acc, out = 0, []
        for x in xs:
            acc += x
            out.append(acc)
        return out
    if name == "dedup":
        return [x for i, x in enumerate(xs) if i == 0 or xs[i - 1] != x]
    raise AssertionError(name)


def _py_arith(name, args):
    import math as m
    if name == "fact":
        return m.factorial(args[0])
    if name == "fib":
        a, b = 0, 1
        for _ in range(args[0]):
            a, b = b, a + b
        return a
    if name == "pow":
        return args[0] ** args[1]
    if name == "gcd":
        return m.gcd(*args)
    n, s = args[0], 0
    while n != 1:
        n, s = (n // 2 if n % 2 == 0 else 3 * n + 1), s + 1
    return s


def _py_graph(t):
    edges = re.findall(r"edge\((\w+), (\w+)\)\.", t.program)
    succ = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
    m = re.match(r"findall\(Y, reach\((\w+), Y\), L\), sort\(L, S\)", t.query)
    if m:
        src, seen, stack = m.group(1), set(), [m.group(1)]
        while stack:
            for y in succ.get(stack.pop(), []):
                if y not in seen and y != src:
                    seen.add(y)
                    stack.append(y)
        return sorted(seen)
    src, dst = re.match(r"path\((\w+), (\w+),", t.query).groups()
    out = []

    def dfs(x, path):                     # Prolog order: clause 1 (x == dst) first, then edges in order
        if x == dst:
            out.append(path)
        for y in succ.get(x, []):
            if y not in path:
                dfs(y, path + [y])
    dfs(src, [src])
    return out


def _py_family(t):
    par = re.findall(r"parent\((\w+), (\w+)\)\.", t.program)
    male = set(re.findall(r"male\((\w+)\)\.", t.program)) - set(re.findall(r"female\((\w+)\)\.", t.program))
    P = set(par)
    people = {x for p in P for x in p}
    kids = lambda x: {c for p, c in P if p == x}          # noqa: E731
    parents = lambda x: {p for p, c in P if c == x}       # noqa: E731
    sib = {(x, y) for x in people for y in people if x != y and parents(x) & parents(y)}
    anc = set(P)
    while True:
        new = {(a, c) for a, b in anc for b2, c in P if b == b2} - anc
        if not new:
            break
        anc |= new
    rel = {"grandparent": {(x, z) for x in people for y in kids(x) for z in kids(y)}, "ancestor": anc,
           "sibling": sib,
           "cousin": {(x, y) for x in people for y in people for p in parents(x) for q in parents(y) if (p, q) in sib},
           "uncle": {(u, x) for x in people for p in parents(x) for u in people if (u, p) in sib and u in male}}
    name, a, b = re.match(r"(\w+)\((\w+), (\w+)\)", t.query).groups()
    pairs = rel[name]
    return sorted({y for x, y in pairs if x == a} if b == "X" else {x for x, y in pairs if y == b})


@pytest.mark.parametrize("kind", ["list", "arith", "graph", "family"])
def test_generated_labels_match_independent_python_oracles(kind):
    for seed in range(30):
        t = generate_prolog_task(seed, kind=kind, difficulty=1 + seed % 5)
        got = json.loads(t.answer)
        if kind == "list":
            name, lst = re.match(r"(\w+)\(\[(.*)\], R\)", t.query).groups()
            want = _py_list_op(name, [int(x) for x in lst.split(",")])
        elif kind == "arith":
            name, args = re.match(r"(\w+)\((.*), R\)", t.query).groups()
            want = _py_arith(name, [int(x) for x in args.split(",")])
        elif kind == "graph":
            want = _py_graph(t)
        else:
            want, got = _py_family(t), sorted(got)
        assert got == want, (t.prompt, got, want)


def test_task_generators_are_reproducible_across_processes():
    """Same seed -> same task in every process: nothing may depend on set/dict order under hash randomization
    (regression: the graph generator iterated a set of edges, so PYTHONHASHSEED changed the program)."""
    import hashlib
    import os
    import subprocess
    import sys

    code = (
        "import proto_verify as pv\n"
        "out = []\n"
        "for k in range(12):\n"
        "    for d in (1, 3, 5):\n"
        "        for kind in pv.PROLOG_TASK_KINDS:\n"
        "            t = pv.generate_prolog_task(k, kind=kind, difficulty=d)\n"
        "            out.append((t.prompt, t.program, t.answer))\n"
        "        for kind in ('blocksworld', 'gripper', 'logistics'):\n"
        "            t = pv.generate_pddl_task(k, kind=kind, difficulty=min(d, 3))\n"
        "            out.append((t.prompt, t.answer))\n"
        "print(repr(out))\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        r = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        digests.add(hashlib.sha256(r.stdout.encode()).hexdigest())
    assert len(digests) == 1


# ── 2. rewards are sound: the reference scores 1, wrong answers 0 with a reason, nothing raises ─────────────────────
def test_reward_is_one_for_the_reference_and_zero_for_wrong_answers():
    for kind in PROLOG_TASK_KINDS:
        for seed in range(3):
            t = generate_prolog_task(seed, kind=kind, difficulty=2)
            assert prolog_reward(t, t.answer) == (1.0, "ok")
            assert prolog_reward(t, "Reasoning... so the answer is:\n" + t.answer)[0] == 1.0
            v = json.loads(t.answer)
            if t.compare == "set" and len(v) >= 2:
                assert prolog_reward(t, json.dumps(list(reversed(v))))[0] == 1.0      # order ignored
                assert prolog_reward(t, json.dumps(v[1:]))[0] == 0.0                  # one missing
            if t.compare == "sequence" and len(v) >= 2 and v != list(reversed(v)):
                assert prolog_reward(t, json.dumps(list(reversed(v))))[0] == 0.0      # order matters
            wrong = json.dumps(v + ["zz"]) if isinstance(v, list) else json.dumps([v])
            assert prolog_reward(t, wrong)[0] == 0.0
    assert prolog_reward('["ann","bob"]', "[ann, bob]", compare="set") == (1.0, "ok")   # Prolog syntax accepted


def test_reward_never_raises_on_garbage():
    t = generate_prolog_task(1, kind="list", difficulty=2)
    rng = random.Random(3)
    junk = ["", "   ", "[[[[", "]]]", "{\"a\":", "null", "NaN", "[1,2", "\x00\x01", "9" * 5000, "[" * 10000,
            "-" * 100, "'unterminated", "[a|b|c]", "[1,,2]", "😀 [1,2]", None, 42]
    for _ in range(200):
        junk.append("".join(rng.choice("[]{}\",:0123456789abc -.'|\\n") for _ in range(rng.randrange(0, 80))))
    for r in junk:
        score, reason = prolog_reward(t, r)
        assert 0.0 <= score <= 1.0 and isinstance(reason, str)
    assert prolog_reward("not json", "1")[1] == "bad_reference"


def _long_reasoning(n_chars, rng):
    """Step-by-step prose full of words that start with t / n / f, JSON-looking fragments and a first guess."""
    words = ["then", "the", "next", "fact", "true", "false", "null", "not", "for", "from", "[1, 2]", "{\"a\": 3}",
             "7", "-2", "tom", "now", "find", "\"quoted\"", "nrev(T, R)", "[ann|T]"]
    out = ["Let me think step by step. First guess: Answer: 41. Hmm, that ignores the second clause."]
    while sum(map(len, out)) < n_chars:
        out.append(" ".join(rng.choice(words) for _ in range(12)) + ".")
    return "\n".join(out)


def test_answer_protocol_takes_the_last_answer_line_after_long_adversarial_reasoning():
    rng = random.Random(0)
    for n_chars in (500, 5_000, 40_000):
        reasoning = _long_reasoning(n_chars, rng)
        assert prolog_reward("42", reasoning + "\nSo the final value is computed.\nAnswer: 42") == (1.0, "ok")
        # the abandoned first guess (41) never counts, however much reasoning follows it
        assert prolog_reward("41", reasoning + "\nAnswer: 42")[0] == 0.0
        assert prolog_reward('["ann","bob"]', reasoning + "\nAnswer: [ann, bob]", compare="set") == (1.0, "ok")


def test_answer_followed_by_a_remark_reads_the_bracketed_value():
    assert prolog_reward('["ann","bob"]', "Answer: [ann, bob]. (2 solutions)", compare="set") == (1.0, "ok")
    assert prolog_reward('["ann","bob"]', "answer: [\"ann\", \"bob\"] (both found)", compare="set") == (1.0, "ok")
    assert prolog_reward("42", "Answer: 42 (after 7 steps)") == (1.0, "ok")
    assert prolog_reward('"ann"', "**Answer:** ann.") == (1.0, "ok")


def test_answer_protocol_markers_boxed_fenced_whole_text_and_last_line():
    assert prolog_reward("[1,2]", r"... so \boxed{[1, 2]}", compare="sequence") == (1.0, "ok")
    assert prolog_reward("[1,2]", "Here:\n```json\n[1, 2]\n```\n", compare="sequence") == (1.0, "ok")
    assert prolog_reward("[1,2]", "Answer: [3]\nOn reflection:\n```\n[1, 2]\n```", compare="sequence")[0] == 1.0
    assert prolog_reward("[1,2]", "```\n[1, 2]\n```\nAnswer: [2, 1]", compare="sequence")[0] == 0.0  # last wins
    assert prolog_reward("[1,2]", "Reasoning\n\n[1, 2]\n\n", compare="sequence") == (1.0, "ok")      # last line
    assert prolog_reward("[1,2]", "<think>Answer: [2, 1]</think>\n[1, 2]", compare="sequence") == (1.0, "ok")
    # a final marker whose value does not read is no answer, even if an earlier line held the right one
    assert prolog_reward("[1,2]", "Answer: [1, 2]\nAnswer: I am not sure", compare="sequence") == (0.0, "no_answer")
    assert prolog_reward("[1,2]", "It is [1, 2] or maybe [2, 1], hard to say", compare="set") == (0.0, "no_answer")


def test_answer_protocol_reads_a_bounded_number_of_values_on_adversarial_responses(monkeypatch):
    """Linear time, counted not timed: whatever the response, the protocol parses at most two candidate texts,
    each a slice of the response, and scans for brackets at most once."""
    import proto_verify as pv
    reads, scans = [], []
    real_read, real_end = pv._read_value, pv._bracket_end
    monkeypatch.setattr(pv, "_read_value", lambda text: reads.append(len(text)) or real_read(text))
    monkeypatch.setattr(pv, "_bracket_end", lambda s, i: scans.append(i) or real_end(s, i))
    n = 200_000
    for response in ["[" * n, "Answer:" * (n // 7), "\\boxed{" * (n // 7), "```" * (n // 3), "t" * n,
                     "Answer: [" * (n // 9), "1, " * (n // 3), "\"" * n, ("true " * 99 + "\n") * (n // 500),
                     _long_reasoning(n, random.Random(1)) + "\nAnswer: [a, b]"]:
        reads.clear()
        scans.clear()
        score, reason = prolog_reward('["a","b"]', response, compare="set")
        assert 0.0 <= score <= 1.0 and isinstance(reason, str)
        assert len(reads) <= 3 and sum(reads) <= 3 * len(response) and len(scans) <= 1, (response[:30], reads)


def test_bad_arguments_raise_value_or_type_errors_naming_them():
    with pytest.raises(ValueError, match="difficulty"):
        generate_prolog_task(0, difficulty=9)
    with pytest.raises(ValueError, match="kind"):
        generate_prolog_task(0, kind="chess")
    with pytest.raises(TypeError, match="program"):
        solve(None, "true")
    with pytest.raises(ValueError, match="max_inferences"):
        solve("", "true", max_inferences=0)


@needs_swipl


# ── 3. the verifier always stops: inference budgets, solution caps, no Python recursion ─────────────────────────────
def test_loop_stops_at_inference_budget_with_resource_error():
    for program, goal in (("loop :- loop.", "loop"), ("loop(X) :- loop(X).", "loop(a)")):
        term, lines = _python_lines(lambda: _error_of(program, goal, 20_000), limit=3000 * 20_000)
        assert term == "resource_error(inferences)" and lines <= 1000 * 20_000


def test_all_solutions_over_infinite_generators_meet_the_budget():
    for q in ("findall(X, between(1, inf, X), L)", "findall(X, repeat, L)", "aggregate_all(count, repeat, N)",
              "forall(repeat, true)", "\\+ (repeat, fail)", "findall(X, length(X, _), L)"):
        assert err_term("", q, max_inferences=50_000) == "resource_error(inferences)", q


def test_budget_exhaustion_cannot_be_caught_by_catch():
    term = err_term("loop :- loop.", "catch(loop, _, true)", max_inferences=10_000)
    assert term == "resource_error(inferences)"


def test_non_tail_recursion_gives_a_resource_error_not_a_python_recursion_error():
    eng = Prolog("grow(X) :- grow(X), true.", max_depth=50_000)
    with pytest.raises(PrologError) as ei:
        eng.query("grow(a)", max_inferences=200_000)
    assert ei.value.term.startswith("resource_error")


def test_tail_recursion_of_100000_steps_succeeds():
    assert solve("count(0) :- !. count(N) :- N1 is N-1, count(N1).", "count(100000)") == [{}]
    assert solve("", "between(1, 100000, X), X >= 100000") == [{"X": "100000"}]


def test_work_inside_single_calls_on_big_terms_is_metered():
    # each `L == L2` is one inference but O(n) work; without metering this loop would run n times longer than
    # its budget allows (counted in executed Python lines, not timed)
    for q in ("numlist(1, 2000, L), copy_term(L, L2), between(1, 1000000, _), L == L2, fail",
              "numlist(1, 2000, L), copy_term(L, L2), between(1, 1000000, _), p(L, L2), fail"):
        term, lines = _python_lines(lambda: _error_of("p(X, X).", q, 2000), limit=3000 * 2000)
        assert term == "resource_error(inferences)" and lines <= 1000 * 2000, (term, lines)


def test_infinite_length_is_stopped_by_the_solution_cap():
    r = Prolog().run("length(L, N)", max_solutions=50)
    assert len(r.solutions) == 50 and r.truncated


def test_100000_element_lists_and_deep_terms_need_no_python_recursion():
    prog = "mk(0, T, T) :- !. mk(N, T, R) :- N1 is N-1, mk(N1, f(T), R)."
    q = ("numlist(1, 100000, L), length(L, N), msort(L, _M), last(_M, X), copy_term(L, _C), _C == L, "
         "mk(100000, z, D), copy_term(D, _D2), _D2 == D")
    s = solve(prog, q, max_inferences=3_000_000)[0]
    assert s["N"] == "100000" and s["X"] == "100000" and s["D"].startswith("f(f(f(") and s["D"].count("f(") == 100000
    assert len(s["L"]) > 500_000
    big = "[" + ",".join(map(str, range(100_000))) + "]"
    assert solve(f"big({big}).", "big(L), length(L, N)", max_inferences=10**6)[0]["N"] == "100000"
    assert solve("", "X = " + "[" * 2000 + "]" * 2000, max_inferences=10**5)[0]["X"].count("[") == 2000


# A term with 2^60 nodes built in ~180 inferences: every subterm is shared (f(X, X) doubles the tree each step).
DBL = "dbl(0, X, X) :- !.\ndbl(N, X, Y) :- N1 is N - 1, dbl(N1, f(X, X), Y).\n"
BIG_TERM_GOALS = ["copy_term(T, C)", "assertz(p(T))", "assertz(q(X, T)), q(Y, Z)", "findall(T, true, L)",
                  "nb_setval(k, T)", "catch(throw(T), _, true)", "term_string(T, S)", "term_to_atom(T, A)",
                  "format(atom(A), '~w', [T])", "with_output_to(string(S), print(T))", "atom_length(T, L)",
                  "atomic_list_concat([T], A)", "dbl(60, a, T2), unify_with_occurs_check(T, T2)",
                  "dbl(60, a, T2), T = T2", "dbl(60, a, T2), T == T2", "dbl(60, a, T2), compare(O, T, T2)",
                  "setof(T, member(T, [T]), L)"]


class _TooMuchWork(BaseException):
    pass


def _python_lines(fn, limit):
    """Run fn() and count the Python lines it executes (sys.settrace): work counted, not timed. Past `limit`
    lines the run is aborted with _TooMuchWork, so an unmetered loop fails the test instead of hanging it."""
    count = [0]

    def tracer(frame, event, arg):
        if event == "line":
            count[0] += 1
            if count[0] > limit:
                raise _TooMuchWork(f"more than {limit} Python lines")
        return tracer
    sys.settrace(tracer)
    try:
        return fn(), count[0]
    finally:
        sys.settrace(None)


@contextlib.contextmanager
def _hang_guard(seconds):
    """Turn a hang into a failure (SIGALRM). Not a timing assertion: the guarded code is bounded by budgets and
    normally takes a small fraction of `seconds`."""
    def hang(signum, frame):
        raise _TooMuchWork(f"still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _error_of(program, query, max_inferences):
    try:
        solve(program, query, max_inferences=max_inferences)
    except PrologError as e:
        return e.term
    return None


@pytest.mark.parametrize("goal", BIG_TERM_GOALS + ["length(L, N), fail"])
def test_every_builtin_meets_the_budget_on_a_2_pow_60_node_term_in_work_linear_in_the_budget(goal):
    """With max_inferences = N the whole query executes at most ~1000 N Python lines whatever the term size:
    copies, clause compilation, writing, occurs checks and length/2 enumeration are metered."""
    n = 20_000 if goal.startswith("length") else 2000      # length/2 was quadratic: visible at a larger N
    query = goal if goal.startswith("length") else f"dbl(60, a, T), {goal}"
    term, lines = _python_lines(lambda: _error_of(DBL, query, n), limit=3000 * n)
    assert term in ("resource_error(inferences)", "type_error(text,...)"), term
    assert lines <= 1000 * n, lines


LIST_GOALS = ["list_to_set(L, S)", "is_list(L)", "term_variables(V, Vs)", "numbervars(V, 0, E)",
              "string_codes(S, L)", "nb_setval(k, L)", "T =.. [f|L]", "V =@= L", "acyclic_term(L)", "cyclic_term(L)",
              "atom_to_term(A, T, B)", "atom_number(A, N)", "split_string(A, \",\", \"\", P)",
              "atomic_list_concat(P, ',', A)", "format(atom(X), '~s', [L])", "string_codes(A, X)",
              "string_chars(A, X)", "catch(dynamic(A), _, true)", "with_output_to(string(S), writeq(A))"]


@pytest.mark.parametrize("goal", LIST_GOALS)
def test_builtins_on_a_1000_element_list_are_charged_for_their_work(goal):
    # each call is one inference but O(1000) work (list_to_set was O(1000^2)); repeated in a loop, the budget must
    # still bound the total: at most ~400 executed Python lines per inference of budget. A is the text '[1,...,1000]'.
    n = 4000
    query = ("numlist(1, 1000, L), length(V, 1000), atomic_list_concat(L, ',', A0), "
             f"atomic_list_concat(['[', A0, ']'], A), between(1, inf, _), {goal}, fail")
    term, lines = _python_lines(lambda: _error_of("", query, n), limit=3000 * n)
    assert term == "resource_error(inferences)" and lines <= 400 * n, (term, lines)


def test_list_to_set_keeps_first_occurrences_in_order():
    assert solve("", "list_to_set([a, b, a, c, b, X, Y, X, 1, 1.0, f(Z), f(Z), f(W)], S)")[0]["S"] == \
        "[a,b,c,_A,_B,1,1.0,f(_C),f(_D)]"


@pytest.mark.parametrize("query", ["length(V, 1000), assertz(p(V)), between(1, inf, _), p(X), fail",
                                   "length(V, 1000), assertz((q :- X = f(V))), between(1, inf, _), q, fail"])
def test_calling_a_clause_that_builds_a_big_term_is_metered_per_call(query):
    # each call of p/1 builds a 1000-element list of fresh variables: one inference, but 1000 nodes of work
    n = 4000
    term, lines = _python_lines(lambda: _error_of("", query, n), limit=3000 * n)
    assert term == "resource_error(inferences)" and lines <= 1000 * n, (term, lines)


@pytest.mark.parametrize("query", ["length(L, N), fail", "dbl(60, a, T), copy_term(T, C)",
                                   "dbl(60, a, T), assertz(p(T))", "dbl(60, a, T), term_string(T, S)",
                                   "dbl(60, a, T), dbl(60, a, T2), unify_with_occurs_check(T, T2)"])
def test_issue_programs_raise_resource_error_at_a_budget_of_100k_inferences(query):
    # the counted-work test above bounds the work; this runs the issue's programs at the issue's budget
    with _hang_guard(120):
        assert _error_of(DBL, query, 10**5) == "resource_error(inferences)"


def test_only_prolog_errors_leave_solve_on_huge_terms_and_integers():
    for query in ("dbl(60, a, T), atom_length(T, L)", "dbl(60, a, T), atomic_list_concat([T], A)"):
        assert _error_of(DBL, query, 10**4) == "type_error(text,...)"        # the 2^60-node culprit elided
    digits = "9" * 100_000                                               # past Python's 4300-digit int limit
    assert solve(f"p({digits}).", "p(X), Y is X mod 1000, Z is X + 1") == \
        [{"X": digits, "Y": "999", "Z": "1" + "0" * 100_000}]
    (s,) = solve("", "X is 7 ** 9000, number_codes(X, C), number_codes(Y, C), Y =:= X, atom_length(X, L)")
    assert s["L"] == str(int(9000 * math.log10(7)) + 1)                 # 7606 digits, written and read back
    with pytest.raises(PrologError, match="integer"):
        solve("p(" + "9" * 400_000 + ").", "p(X)")                      # above the integer size bound


# ── 3b. fuzzed programs and random builtin calls raise only documented errors and terminate ─────────────────────────
_FUZZ_ATOMS = ["X", "Y", "_", "a", "[]", "[X|Y]", "f(X)", "1", "-1", "2.5", "\"s\"", "'q q'", "(", ")", ",", ";",
               "->", "!", ":-", ".", "\\+", "is", "+", "=", "==", "[", "]", "{", "}", "|", "foo(", "0'a", "%c\n"]
_FUZZ_PROGRAMS = [NREV, FAMILY, QUEENS, APPEND, "p(X) :- p(X).", "q :- q, q.", ":- dynamic d/1.\nd(1)."]
_FUZZ_QUERIES = ["nrev([1,2,3], R)", "ancestor(X, Y)", "queens(4, Q)", "app(X, Y, Z)", "p(1)", "q",
                 "d(X), assertz(d(2))", "X is 1 + a", "atom_length(X, 3)", "length(L, N)", "between(1, inf, X)",
                 "catch(throw(x), Y, true)", "retract(d(X))", "findall(X, member(X, [1,2]), L)",
                 # cyclic terms and huge requests must end in an error, not a hang or a memory blow-up
                 "X = f(X), write(X)", "L = [a|L], length(L, N)", "X = X + 1, Y is X", "X = f(X), copy_term(X, Y)",
                 "L = [a|L], msort(L, M)", "X = f(X), Y = f(Y), X =@= Y", "L = [0'a|L], atom_codes(A, L)",
                 "L = [a|L], flatten(L, F)", "X = f(X), findall(X, true, R)", "X = f(X), assertz(p(X))",
                 "length(L, 1000000000)", "numlist(1, 100000000, L)", "functor(T, f, 100000000)",
                 "tab(100000000)", "format('~*c', [100000000, 0'x])", "X is 2 ** 100000000",
                 "atom_length(A, 3)", "X = f(X), X == X, X @< f(X)", "L = [a|L], last(L, E)",
                 "G = (G, true), call(G)", "G = (G ; true), call(G)", "G = \\+ G, call(G)", "G = call(G), G",
                 "G = (G, true), assertz((p :- G))", "G = X^G, bagof(X, G, L)", "G = catch(G, _, true), call(G)",
                 "G = (a --> G), dcg_translate_rule(G, R)", "findall(X, between(1, inf, X), L)",
                 "format('~e', [10**400])", "char_code(C, -5)", "X is 10**400 + 0.5", "format('~1r', [100])",
                 "sort(5, @<, [f(a)], X)", "X =.. [f|a]", "atom_codes(A, [-1])", "with_output_to(foo, true)"]


def _fuzz_case(rng, n):
    prog = rng.choice(_FUZZ_PROGRAMS)
    query = rng.choice(_FUZZ_QUERIES)
    if rng.random() < 0.5:         # mutate: insert, delete or replace a token-ish chunk
        s = list(prog if rng.random() < 0.5 else query)
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(s) + 1)
            op = rng.randrange(3)
            if op == 0:
                s.insert(i, rng.choice(_FUZZ_ATOMS))
            elif op == 1 and s:
                del s[min(i, len(s) - 1)]
            elif s:
                s[min(i, len(s) - 1)] = rng.choice(_FUZZ_ATOMS)
        if rng.random() < 0.5:
            prog = "".join(s)
        else:
            query = "".join(s)
    if rng.random() < 0.3:
        query = " , ".join(rng.choice(_FUZZ_ATOMS) for _ in range(rng.randrange(1, 6)))
    if n < 2 * len(_FUZZ_QUERIES):  # every listed query once, unmutated, against a random program
        query = _FUZZ_QUERIES[n % len(_FUZZ_QUERIES)]
    return prog, query


def test_fuzzed_programs_and_queries_raise_only_documented_exceptions_and_terminate():
    rng = random.Random(0)
    with _hang_guard(600):         # every query has a 20 000-inference budget; the guard only names a hang
        for n in range(300):
            prog, query = _fuzz_case(rng, n)
            try:
                solve(prog, query, max_solutions=20, max_inferences=20_000)
            except (PrologError, PrologSyntaxError):
                pass


def test_every_builtin_with_random_arguments_raises_only_prolog_errors():
    import proto_verify as pv
    rng = random.Random(11)
    pool = ["_", "X", "a", "'A b'", "[]", "'[]'", "0", "1", "-1", "3", "1.5", "-0.0", "\"s\"", "\"\"", "[a,b]",
            "[1,2,3]", "[X|Y]", "f(x)", "f(X, Y)", "10**30", "[0'a, 0'b]", "[a|b]", "{x}", "(a, b)", "(a :- b)",
            "user_output", "atom(A)", "[f(1)-a, b-2]", "1.0e308", "inf", "true", "X^true", "[X]>>true", "succ"]
    fns = [f for f in pv._BASE_TABLE if not f.name.startswith("$") and f.name not in ("halt", "repeat")]
    with _hang_guard(600):         # each call has a 5 000-inference budget; the guard only names a hang
        for n in range(2 * len(fns)):
            _random_builtin_call(pv, rng, pool, fns[n % len(fns)])


def _random_builtin_call(pv, rng, pool, f):
    q = pv.atom_text(f.name, True)
    if f.arity:
        q += "(" + ", ".join(rng.choice(pool) for _ in range(f.arity)) + ")"
    try:
        solve("", q, max_inferences=5000, max_solutions=5)
    except PrologError as e:
        assert not e.term.startswith("system_error"), (q, str(e))
