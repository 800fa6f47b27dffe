"""proto_verify.py — ProtoReasoning in miniature: task synthesis and rewards in prototype space (Prolog answers,
PDDL plans), verified by a pure-Python Prolog interpreter and a PDDL validator that ship in this file as appendices.

Paper: "ProtoReasoning: Reasoning Prototypes as the Foundation for Generalizable Reasoning in LLMs",
F. He, Z. Chen, X. Liang, T. Ma, Y. Qiu, S. Wu, J. Yan — arXiv 2506.15211 (June 2025). No code was released.

What the paper does (card §1): problems are rewritten as Prolog programs (relational / constraint reasoning) or PDDL
problems (planning); an interpreter, not an LLM, derives the reference answer ("correct by construction"), and the
same interpreter verifies model outputs. There are no numbered equations in the paper; the two "equations" this
file implements are the card's answer protocol (§3):

    reference(task)  = findall(AnswerVars, Query, Sols)   under an inference budget and a solution cap   (§3)
    reward(response) = 1[ canon(parse(response)) == canon(reference) ]   compared as a set or a sequence  (§3)

Answer protocol (what `parse(response)` reads; our definition, the paper does not fix one): the final answer is
the value after the LAST marker in the response — an `Answer:` line (also `answer is:`), a `\boxed{...}` or a
```fenced``` block, whichever comes last; after `Answer:` a bracketed term is read up to its closing bracket, so
`Answer: [ann, bob]. (2 solutions)` reads [ann, bob]. Only text after the last `</think>` counts. Without any
marker the whole text, else its last non-empty line, must be one value. A value is JSON or a Prolog term
(`[ann, bob]`, `ann`, `42`). A final marker whose value does not read gives `no_answer`: an earlier, abandoned answer
never counts, however long the reasoning before it. Each step is one scan, so reading is linear in the response
length (long step-by-step responses included; tested by counting the values parsed, section 3).

Prolog engine (card §4.4, SWI-Prolog 9.0.4 is the reference behaviour, §4.2):
  * reader: atoms (quoted/unquoted), variables, bignum integers, floats, strings (double_quotes=string as SWI-7),
    back-quoted code lists, lists [H|T], curly terms, comments, the standard SWI operator table;
    errors raise `PrologSyntaxError` with 1-based line and column (SWI prints the same place 0-based).
  * engine: depth-first, left-to-right SLD resolution run by ONE iterative loop over an explicit continuation
    (a linked list of (functor, args, cut_barrier, next) nodes) and a choicepoint stack — no Python recursion per
    inference, so a 100 000-step tail recursion runs and no program can raise RecursionError. Each clause is
    compiled to a small Python function that unifies its head (binding first occurrences without allocating, as
    the WAM does) and builds its body; code objects are cached by clause shape. First-argument indexing.
    ISO cut (local to call/N, \\+ and the condition of ->), if-then-else, soft-cut *->, negation, catch/throw with
    ISO error terms, findall/bagof/setof with ^, assert/retract (logical update view), format/2 into a buffer,
    DCG rules (-->) and phrase/2,3, library(yall) lambdas, ~190 builtin/control/library predicates.
  * unification without occurs check (as SWI) + unify_with_occurs_check/2; unify / copy / compare / write are
    iterative (a 100 000-element list is fine) and cyclic-safe (answers with cyclic terms raise PrologError).
  * budgets: every predicate call (builtins included) costs one inference; builtins that do O(n) work charge
    for it, and so does the work inside one call on big terms: unify / compare / occurs checks (16 steps = 1
    inference, metered every 64 steps) and every node built, compiled or written (2 nodes = 1 inference:
    copy_term, assertz, findall, throw, nb_setval, format ~w, term_string, the answers, each call of a clause
    of more than 256 nodes), list builtins (list_to_set in n log n) and length/2's enumeration. So `solve` with
    max_inferences = N does O(N) work whatever the term sizes, a DAG-shared term of 2^60 nodes included (tested
    by counting executed Python lines, not by timing). Exhausting the budget raises
    PrologError('resource_error(inferences)') which user catch/3 cannot swallow; the continuation depth is capped
    (resource_error(stack)); `solve` stops at `max_solutions`. Only PrologError (PrologSyntaxError is one) leaves
    `solve`: integers are read and written at any size up to ~315 000 digits (Python's 4 300-digit limit on
    int <-> text is worked around, metered by its cost), and an error whose culprit is too big to write is
    reported with the culprit elided, e.g. `type_error(text,...)`.

Task synthesis + reward: `generate_prolog_task(seed, kind, difficulty) -> Task` (family relations, graph
reachability/paths, list puzzles, generate-and-test ordering and digit puzzles, recursive big-integer arithmetic)
labelled by this engine, and `prolog_reward(task, response) -> (score, reason)` which never raises.

Deviations from the paper / from SWI-Prolog:
  * the paper uses SWI-Prolog itself; we re-implement the subset its data needs (no modules, no clpfd — its
    operators parse and the constraints raise existence_error —, no dif/2 or other attributed variables, no DCG
    pushback, no streams/files/OS access — deliberately, this is a sandboxed verifier).
  * unbound variables in answers are written `_A`, `_B`, ... (numbered by first occurrence across one answer)
    instead of SWI's `_123`; `solve` returns the first `max_solutions` answers instead of raising at the cap.
  * standard order of two distinct unbound variables is by address (as SWI; not stable across runs);
    `:- op/3` is not supported.
  * `write` of cyclic terms raises instead of printing SWI's `@/2` form; budget exhaustion is uncatchable.
  * writeq(-(-(1))) gives `- - 1` (reads back as written); SWI 9.0.4 prints `- -1`, which reads back differently.
  * no rational numbers: `X is A rdiv B` works when the quotient is an integer and otherwise raises
    representation_error(rational) (SWI gives 1r3).

PDDL validator, planner and plan tasks (the paper checks plans with VAL):
`validate_plan(domain, problem, plan) -> Verdict`, `find_plan` (BFS), `generate_pddl_task(seed, kind,
difficulty)` (blocksworld / gripper / logistics) and `pddl_reward(task, response)`.
Semantics implemented (the paper has no numbered equations for this part; these are the STRIPS/VAL rules):
    state            s = set of ground atoms, each keyed by a tuple (predicate, arg1, ..., argk)  (never a joined
                     string: VAL#27 accepted an invalid plan because (p o aob) and (p oa ob) collided)
    applicability    pre(a_i) holds in s_{i-1}    (positive atoms in s, negated atoms not in s, (= x y) on names)
    progression      s_i = (s_{i-1} \\ del(a_i)) | add(a_i)   (delete-then-add: deleting and adding p keeps p)
    conditional eff. (when c e) is evaluated against s_{i-1}; all effects of a step are applied simultaneously
    validity         every step applicable, and goal holds in s_n; an empty plan is valid iff goal holds in s_0
    verdict          Verdict(valid, failed_step (1-based or None), reason, unsatisfied ground literals, ...)
                     reason in {ok, parse_error, unsupported, unknown_action, arity, unknown_object, type,
                     precondition, goal_unmet}; for goal_unmet failed_step is None.
    find_plan        breadth-first search over states (optimal plan length) with a node budget

Supported PDDL: :strips, :typing (hierarchy rooted at `object`), :negative-preconditions, :equality,
:disjunctive-preconditions (or, imply), :existential-/:universal-preconditions (exists, forall), :conditional-effects
(when, forall in effects), :adl, :action-costs ((increase (total-cost) n) is summed into Verdict.cost and ignored
for validity). Everything else -- durative actions, numeric fluents, derived predicates, timed initial literals,
constraints, preferences, `either` types, PDDL+ -- raises PDDLUnsupported / gives reason `unsupported`, naming the
requirement.

PDDL deviations from the paper / from VAL:
  * Pure-Python validator, not VAL. Names are case-insensitive everywhere (plans from FF print upper case); pyval
    rejects upper-case action names, we do not.
  * Requirements are not enforced against the constructs used: a `not` in a precondition works without
    `:negative-preconditions` declared (the semantics are unambiguous). A negation is never read as positive.
  * Plans are read tolerantly: `(a b c)` or `a b c` per line, `;` comments, `k:` / `step k:` / `k.` prefixes and
    `[duration]` suffixes ignored, several `(...)` groups on one line allowed; linear time in the plan's length.
    In `pddl_reward` the plan is the block of lines from the first to the last line that starts with an action
    name of the domain: prose before and after it is skipped, prose inside it is an unknown action.
  * Quantifiers and forall-effects are evaluated by enumeration; an evaluation budget (200 000 per validation,
    each binding costing the size of the formula it evaluates) stops adversarial domains, reported as
    `unsupported`. Every PDDLError names its line and column.
  * The paper's PDDL task formats are not public; our tasks are plan generation from a compact natural prompt.

Run:  python proto_verify.py            (demo, a few seconds: Prolog answers, tasks, PDDL verdicts)
      python proto_verify.py --bench    (LIPS on nrev30 (SWI ratio when swipl exists), tasks/s, plans/s)
      pytest tests/test_proto_verify_prolog.py tests/test_proto_verify_pddl.py -q
"""
from __future__ import annotations

import argparse
import bisect
import collections
import contextlib
import dataclasses
import functools
import gc
import itertools
import json
import math
import random
import re
import sys
import time
from dataclasses import dataclass, field


# ==== Contents (grep -n '^# ====' proto_verify.py lists these banners) ================================================
#   The paper's idea (sections 1-5), then the infrastructure it runs on (appendices A: Prolog, B: PDDL).
#   1. Answer protocol: canonical JSON answers and the engine's reference answers (card §3)
#   2. Prolog task synthesis in prototype space (labels come from the engine, never from a model)
#   3. Prolog reward: read the final answer, compare with the reference (never raises)
#   4. PDDL tasks: blocksworld, gripper, tiny logistics (plans labelled by the BFS planner)
#   5. PDDL reward: validate the plan in the response (never raises)
#   A1. Appendix, Prolog: terms
#   A2. Appendix, Prolog: errors
#   A3. Appendix, Prolog: reader (tokenizer and operator-precedence parser)
#   A4. Appendix, Prolog: writer (writeq / write / write_canonical, iterative)
#   A5. Appendix, Prolog: term utilities (unify, compare, copy; iterative and cyclic-safe)
#   A6. Appendix, Prolog: arithmetic (is/2 with SWI-Prolog 9.0.4 results and error terms, card §4.2)
#   A7. Appendix, Prolog: clause compiler, predicate table, control constructs
#   A8. Appendix, Prolog: DCG translation (H --> B) and library(yall) lambdas
#   A9. Appendix, Prolog: the iterative solver (class Prolog) and solve()
#   A10. Appendix, Prolog: builtins
#   A11. Appendix, Prolog: library predicates written in Prolog, the base predicate table
#   B1. Appendix, PDDL: errors, parsed objects, verdict
#   B2. Appendix, PDDL: reader (text -> nested lists of lower-cased symbols that remember their position)
#   B3. Appendix, PDDL: formulas and effects (structural parse; names are checked later)
#   B4. Appendix, PDDL: domain and problem
#   B5. Appendix, PDDL: plans (parse_plan, format_plan)
#   B6. Appendix, PDDL: semantics (evaluation, progression, validate_plan)
#   B7. Appendix, PDDL: planner (breadth-first search, optimal plan length, node budget)
#   C. Demo and benchmark (python proto_verify.py [--bench])


# ==== 1. Answer protocol: canonical JSON answers and the engine's reference answers (card §3) =========================
def term_to_json(t, var_numbers=None):
    """Card §3 canonical value: ints stay ints (bignums too), floats stay floats, atoms and strings -> str (the
    distinction is deliberately lost, like SWI's json_write_dict), proper lists -> lists, compounds ->
    {"$f": name, "args": [...]}, unbound variables -> {"$var": k} numbered by first occurrence. Iterative;
    raises PrologError('cyclic_term') for cyclic input."""
    if var_numbers is None:
        var_numbers = {}
    t = deref(t)
    if type(t) is Struct and not is_acyclic(t):
        raise PrologError("cyclic_term", "cyclic terms have no JSON form")
    out, work = [], [t]
    nodes = 0
    while work:
        x = work.pop()
        nodes += 1
        if not nodes & 63:
            _meter(64 * _NODE_STEPS)         # answers of query_values are metered like copies
        if type(x) is tuple:                   # ("list", n) or ("cmp", name, n) markers
            n = x[-1]
            vals = out[len(out) - n:] if n else []
            del out[len(out) - n:]
            out.append(vals if x[0] == "list" else {"$f": x[1], "args": vals})
            continue
        x = deref(x)
        tx = type(x)
        if tx is int or tx is float:
            out.append(x)
        elif tx is Atom:
            out.append(x.name)
        elif tx is PString:
            out.append(x.val)
        elif tx is Nil:
            out.append([])
        elif tx is Var:
            k = var_numbers.get(x)
            if k is None:
                k = var_numbers[x] = len(var_numbers)
            out.append({"$var": k})
        elif x.fn is LIST:
            items = list_to_py(x)
            if items is not None:
                work.append(("list", len(items)))
                work.extend(reversed(items))
            else:
                work.append(("cmp", "[|]", 2))
                work.extend(reversed(x.args))
        else:
            work.append(("cmp", x.fn.name, x.fn.arity))
            work.extend(reversed(x.args))
    return out[0]


def canonical_json(value) -> str:
    """Sorted keys, no whitespace; the one text form every comparison uses."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def query_values(program: str, query: str, answer_vars, max_solutions: int = 1000,
                 max_inferences: int = 1_000_000, engine=None):
    """findall(AnswerVars, Query, Sols) as Python/JSON values: one entry per solution; each entry is the value
    of the single answer variable, or a list of values when several are asked for. Returns (values, engine).
    `engine`: an already consulted Prolog to reuse (then `program` is ignored)."""
    if engine is None:
        eng = Prolog(max_inferences=max_inferences)
        eng.consult(program)
    else:
        eng = engine
        eng.max_inferences = max_inferences
    eng.inferences = 0
    parser = _Parser(query.strip().rstrip(".") + " .", eng.flags)
    goal, varmap = parser.read_clause()
    missing = [v for v in answer_vars if v not in varmap]
    if missing:
        raise ValueError(f"answer_vars {missing} do not occur in the query {query!r}")
    sols = []
    for _ in eng._solve_goal(goal, max_solutions):
        vn = {}
        vals = [term_to_json(varmap[v], vn) for v in answer_vars]
        sols.append(vals[0] if len(vals) == 1 else vals)
    return sols, eng


# ==== 2. Prolog task synthesis in prototype space (labels come from the engine, never from a model) ===================
@dataclass
class Task:
    """One synthesized Prolog task.

    prompt  : what the policy sees (the program, the query, a one-line instruction)
    answer  : the reference answer as canonical JSON text (also the SFT target)
    compare : "set" (order and duplicates ignored), "sequence" (ordered list of solutions) or "first"
              (the value of the first solution only)
    """
    kind: str
    difficulty: int
    program: str
    query: str
    answer_vars: list
    compare: str
    answer: str
    prompt: str
    inferences: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def value(self):
        return json.loads(self.answer)


PROLOG_TASK_KINDS = ("family", "graph", "list", "puzzle", "arith")
_NAMES = ("ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ivy", "jon", "kim", "leo", "mia", "ned", "oli",
          "pam", "ray", "sue", "tom", "uma", "val", "wes", "xia", "yan", "zoe", "abe", "bea", "cal", "dot", "eli",
          "flo", "gil", "hana", "ian", "jo", "kai", "lu", "max", "nia", "otto")

_FAMILY_RULES = {
    "grandparent": "grandparent(X, Z) :- parent(X, Y), parent(Y, Z).",
    "ancestor": "ancestor(X, Y) :- parent(X, Y).\nancestor(X, Y) :- parent(X, Z), ancestor(Z, Y).",
    "sibling": "sibling(X, Y) :- parent(P, X), parent(P, Y), X \\= Y.",
    "cousin": "cousin(X, Y) :- parent(P, X), parent(Q, Y), sibling(P, Q).",
    "uncle": "uncle(U, X) :- parent(P, X), sibling(U, P), male(U).",
    "descendant_count": "descendant(X, Y) :- parent(Y, X).\ndescendant(X, Y) :- parent(Z, X), descendant(Z, Y).",
}


def _family(rng, d):
    # a proper family tree: couples per generation; some children marry newcomers and found the next generation
    n_gen = min(2 + d, 5)
    names = iter(rng.sample(_NAMES, len(_NAMES)))
    gender, facts = {}, []
    try:
        a, b = next(names), next(names)
        gender[a], gender[b] = "male", "female"
        couples = [(a, b)]
        for g in range(1, n_gen):
            nxt = []
            for (p, q) in couples:
                kids = [next(names) for _ in range(rng.randrange(1, 3 + min(d, 2)))]
                for i, c in enumerate(kids):
                    gender[c] = rng.choice(("male", "female"))
                    facts += [(p, c), (q, c)]
                    if g < n_gen - 1 and (i == 0 or rng.random() < 0.4) and len(nxt) < 2 + d:
                        sp = next(names)
                        gender[sp] = "female" if gender[c] == "male" else "male"
                        nxt.append((c, sp) if gender[c] == "male" else (sp, c))
            couples = nxt
    except StopIteration:
        pass
    people = sorted(gender)
    rng.shuffle(facts)
    rels = ["grandparent", "ancestor", "sibling"] + (["cousin", "uncle"] if d >= 2 else [])
    rel = rng.choice(rels)
    needs = {"cousin": ["sibling", "cousin"], "uncle": ["sibling", "uncle"]}.get(rel, [rel])
    lines = [f"parent({x}, {y})." for x, y in facts]
    if rel == "uncle":
        lines += [f"{gender[p]}({p})." for p in people]
    lines += [_FAMILY_RULES[r] for r in needs]
    program = "\n".join(lines)
    want_nonempty = rng.random() < 0.9          # mostly non-empty answers; empty sets are legitimate answers too
    eng = Prolog(program)
    for _ in range(8):
        who = rng.choice(people)
        query = f"{rel}({who}, X)" if rng.random() < 0.5 else f"{rel}(X, {who})"
        if not want_nonempty or query_values(program, query, ["X"], max_solutions=1, engine=eng)[0]:
            break
    return program, query, ["X"], "set", f"Family relations. Find every X with {query}."


def _graph(rng, d):
    n = 4 + 3 * d + rng.randrange(3)
    nodes = [f"n{i}" for i in range(n)]
    m = int(n * (0.8 + 0.4 * rng.random()))
    edges = set()
    while len(edges) < m:
        a, b = rng.sample(nodes, 2)
        edges.add((a, b))
    edges = sorted(sorted(edges), key=lambda e: rng.random())  # sort first: set order depends on PYTHONHASHSEED
    lines = [f"edge({a}, {b})." for a, b in edges]
    lines.append("reach(X, Y) :- walk(X, Y, [X]).")
    lines.append("walk(X, Y, Seen) :- edge(X, Z), \\+ member(Z, Seen), ( Y = Z ; walk(Z, Y, [Z|Seen]) ).")
    src = rng.choice(nodes)
    if rng.random() < 0.7:
        return "\n".join(lines), f"findall(Y, reach({src}, Y), L), sort(L, S)", ["S"], "first", \
            f"Directed graph. Which nodes can be reached from {src}? Sorted list S."
    dst = rng.choice([x for x in nodes if x != src])
    lines.append("path(X, X, _, [X]).")
    lines.append("path(X, Y, Seen, [X|P]) :- edge(X, Z), \\+ member(Z, Seen), path(Z, Y, [Z|Seen], P).")
    program, query = "\n".join(lines), f"path({src}, {dst}, [{src}], P)"
    if len(query_values(program, query, ["P"], max_solutions=31)[0]) > 30:   # keep answers a model can write
        return _graph(rng, d)
    return program, query, ["P"], "sequence", \
        f"Directed graph. List every simple path P from {src} to {dst}, in Prolog's order."


_LIST_OPS = {
    "evens": ("evens([], []).\nevens([H|T], [H|R]) :- 0 is H mod 2, !, evens(T, R).\n"
              "evens([_|T], R) :- evens(T, R).", "Keep the even numbers."),
    "double": ("double([], []).\ndouble([H|T], [D|R]) :- D is 2*H, double(T, R).", "Double every element."),
    "rev": ("rev(L, R) :- rev(L, [], R).\nrev([], A, A).\nrev([H|T], A, R) :- rev(T, [H|A], R).",
            "Reverse the list."),
    "sum": ("sum([], 0).\nsum([H|T], S) :- sum(T, S0), S is S0 + H.", "Sum the list."),
    "maxl": ("maxl([X], X).\nmaxl([H|T], M) :- maxl(T, M0), ( H > M0 -> M = H ; M = M0 ).", "Largest element."),
    "rle": ("rle([], []).\nrle([X|T], [[X,N]|R]) :- run(X, T, 1, N, Rest), rle(Rest, R).\n"
            "run(X, [X|T], N0, N, Rest) :- !, N1 is N0 + 1, run(X, T, N1, N, Rest).\n"
            "run(_, Rest, N, N, Rest).", "Run-length encode as [Value, Count] pairs."),
    "isort": ("isort([], []).\nisort([H|T], S) :- isort(T, S0), ins(H, S0, S).\n"
              "ins(X, [], [X]).\nins(X, [Y|T], [X,Y|T]) :- X =< Y, !.\nins(X, [Y|T], [Y|R]) :- ins(X, T, R).",
              "Insertion sort."),
    "prefix": ("prefix_sums(L, P) :- ps(L, 0, P).\nps([], _, []).\nps([H|T], A, [S|R]) :- S is A + H, ps(T, S, R).",
               "Running totals."),
    "dedup": ("dedup([], []).\ndedup([X], [X]) :- !.\ndedup([X,X|T], R) :- !, dedup([X|T], R).\n"
              "dedup([X|T], [X|R]) :- dedup(T, R).", "Drop consecutive duplicates."),
}


def _list_task(rng, d):
    n = rng.randrange(2, 4 + 8 * d)            # up to 43 elements at difficulty 5: long answers in the tail
    hi = 3 + 4 * d
    op = rng.choice(sorted(_LIST_OPS))
    xs = [rng.randrange(0, hi) for _ in range(max(n, 1))]
    if op == "rle":
        xs = sorted(xs) if rng.random() < 0.5 else xs
    prog, desc = _LIST_OPS[op]
    name = {"prefix": "prefix_sums"}.get(op, op)
    lst = "[" + ",".join(map(str, xs)) + "]"
    return prog, f"{name}({lst}, R)", ["R"], "first", f"List puzzle. {desc} What is R?"


_PUZZLE_HELPERS = ("left_of(A, B, P) :- nth1(I, P, A), nth1(J, P, B), I < J.\n"
                   "next_to(A, B, P) :- nth1(I, P, A), nth1(J, P, B), 1 =:= abs(I - J).\n"
                   "at(A, I, P) :- nth1(I, P, A).\n"
                   "not_at(A, I, P) :- \\+ nth1(I, P, A).")


def _puzzle(rng, d):
    if d >= 3 and rng.random() < 0.4:
        return _digits_puzzle(rng, d)
    k = min(3 + d // 2 + rng.randrange(2), 6)
    people = rng.sample(_NAMES[:20], k)
    hidden = rng.sample(people, k)
    pos = {p: i + 1 for i, p in enumerate(hidden)}
    # candidate constraints that are true of the hidden order, each with a Python test used only to choose a
    # small set that pins the order down; the label itself is computed by the engine below
    cands = []
    for a in people:
        for b in people:
            if a != b and pos[a] < pos[b]:
                cands.append((f"left_of({a}, {b}, P)", lambda o, a=a, b=b: o.index(a) < o.index(b)))
            if a < b and abs(pos[a] - pos[b]) == 1:
                cands.append((f"next_to({a}, {b}, P)", lambda o, a=a, b=b: abs(o.index(a) - o.index(b)) == 1))
        for i in range(1, k + 1):
            if pos[a] == i:
                cands.append((f"at({a}, {i}, P)", lambda o, a=a, i=i: o[i - 1] == a))
            else:
                cands.append((f"not_at({a}, {i}, P)", lambda o, a=a, i=i: o[i - 1] != a))
    rng.shuffle(cands)
    perms = list(itertools.permutations(people))

    def n_models(cs):
        return sum(all(t(o) for _, t in cs) for o in perms)
    chosen = []
    for c in cands:
        chosen.append(c)
        if n_models(chosen) == 1:
            break
    for c in list(chosen):                 # drop constraints that are not needed (shorter prompts)
        trial = [x for x in chosen if x is not c]
        if n_models(trial) == 1:
            chosen = trial
    base = f"solve(P) :- permutation([{', '.join(sorted(people))}], P)"
    prog = _PUZZLE_HELPERS + "\n" + base + "".join(", " + c for c, _ in chosen) + "."
    return prog, "solve(P)", ["P"], "first", "Ordering puzzle (generate and test). Who stands where? P, left to right."


def _digits_puzzle(rng, d):
    k = 3 + d
    a, b = rng.randrange(1, k), rng.randrange(1, k)
    rel = rng.choice(["A + B =:= C", "A * B =:= C", "A + B + C =:= %d" % (a + b + rng.randrange(1, k)),
                      "A - B =:= C"])
    prog = (f"digit(D) :- between(1, {k}, D).\n"
            f"sol([A, B, C]) :- digit(A), digit(B), digit(C), A < B, {rel}.")
    return prog, "sol(S)", ["S"], "set", f"Digit puzzle (generate and test). All S = [A,B,C] with digits 1..{k}."


def _arith(rng, d):
    op = rng.choice(["fact", "fib", "pow", "gcd", "collatz"])
    progs = {
        "fact": "fact(0, 1) :- !.\nfact(N, F) :- N1 is N - 1, fact(N1, F1), F is N * F1.",
        "fib": "fib(N, F) :- fib(N, 0, 1, F).\nfib(0, A, _, A) :- !.\nfib(N, A, B, F) :- N1 is N - 1, C is A + B, "
               "fib(N1, B, C, F).",
        "pow": "pow(_, 0, 1) :- !.\npow(X, N, P) :- N1 is N - 1, pow(X, N1, P1), P is X * P1.",
        "gcd": "gcd(A, 0, A) :- !.\ngcd(A, B, G) :- C is A mod B, gcd(B, C, G).",
        "collatz": "steps(1, 0) :- !.\nsteps(N, S) :- ( 0 is N mod 2 -> M is N // 2 ; M is 3 * N + 1 ), "
                   "steps(M, S0), S is S0 + 1.",
    }
    top = 6 + 20 * d                           # fact(105) has 168 digits: the longest answers
    if op == "fact":
        q = f"fact({rng.randrange(1, top)}, R)"
    elif op == "fib":
        q = f"fib({rng.randrange(1, 3 * top)}, R)"
    elif op == "pow":
        q = f"pow({rng.randrange(2, 10)}, {rng.randrange(1, 2 * top)}, R)"
    elif op == "gcd":
        q = f"gcd({rng.randrange(1, 10 ** (1 + d))}, {rng.randrange(1, 10 ** (1 + d))}, R)"
    else:
        q = f"steps({rng.randrange(1, 10 ** (1 + d))}, R)"
    return progs[op], q, ["R"], "first", "Arithmetic with recursion (exact big integers). What is R?"


_GENERATORS = {"family": _family, "graph": _graph, "list": _list_task, "puzzle": _puzzle, "arith": _arith}


def generate_prolog_task(rng_or_seed=0, kind: str | None = None, difficulty: int = 2,
                         max_inferences: int = 2_000_000) -> Task:
    """Synthesize one task whose reference answer is computed by this engine (correct by construction).

    Args:
        rng_or_seed: a `random.Random` or an int seed (same seed -> same task).
        kind: one of PROLOG_TASK_KINDS, or None to pick one at random.
        difficulty: 1 (tiny) .. 5 (large); sizes grow with it, so answer lengths range from one token to
            hundreds of characters.
    Returns: Task (see its docstring).
    """
    rng = rng_or_seed if isinstance(rng_or_seed, random.Random) else random.Random(rng_or_seed)
    if kind is None:
        kind = rng.choice(PROLOG_TASK_KINDS)
    if kind not in _GENERATORS:
        raise ValueError(f"kind must be one of {PROLOG_TASK_KINDS} or None, got {kind!r}")
    if not isinstance(difficulty, int) or not 1 <= difficulty <= 5:
        raise ValueError(f"difficulty must be an int in 1..5, got {difficulty!r}")
    program, query, avars, compare, instr = _GENERATORS[kind](rng, difficulty)
    sols, eng = query_values(program, query, avars, max_solutions=10_000, max_inferences=max_inferences)
    if compare == "first":
        value = sols[0] if sols else None
    elif compare == "set":
        value = sorted({canonical_json(s): s for s in sols}.values(), key=canonical_json)
    else:
        value = sols
    what = {"first": "Answer with the JSON value of " + avars[0],
            "set": "Answer with a JSON list of all " + avars[0] + " (any order)",
            "sequence": "Answer with a JSON list of all " + avars[0] + " in order"}[compare]
    prompt = f"{instr}\n{program}\n?- {query}.\n{what}."
    return Task(kind, difficulty, program, query, avars, compare, canonical_json(value), prompt,
                eng.inferences, {"n_solutions": len(sols)})


def generate_prolog_tasks(n: int, seed: int = 0, kinds=None, difficulties=(1, 2, 3)) -> list:
    """n tasks from one seeded stream, cycling kinds and drawing difficulties uniformly (for train.py).

    Args: kinds: subset of PROLOG_TASK_KINDS (default all); difficulties: iterable of ints in 1..5.
    Returns: list[Task], deterministic in (n, seed, kinds, difficulties).
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    kinds = tuple(kinds) if kinds is not None else PROLOG_TASK_KINDS
    difficulties = tuple(difficulties)
    if not kinds or any(k not in PROLOG_TASK_KINDS for k in kinds):
        raise ValueError(f"kinds must be a non-empty subset of {PROLOG_TASK_KINDS}, got {kinds!r}")
    if not difficulties:
        raise ValueError("difficulties must be a non-empty iterable of ints in 1..5")
    rng = random.Random(seed)
    return [generate_prolog_task(rng, kind=kinds[i % len(kinds)], difficulty=rng.choice(difficulties))
            for i in range(n)]


# ==== 3. Prolog reward: read the final answer, compare with the reference (never raises) ==============================
_MAX_RESPONSE_CHARS = 50_000
# The answer protocol (card §3, "reward"): which value in a response is the model's final answer. One rule, read
# in this order, each step one left-to-right or right-to-left scan (linear time, whatever the reasoning before):
#   0. only the text after the last `</think>` counts (when there is one), and only its last 50 000 characters;
#   1. the LAST of these markers decides: an `Answer:` line (also `answer is:`, any case), a `\boxed{...}`, a
#      ```fenced``` block. The value is what follows the marker: a bracketed term ([..], {..}, (..)) up to its
#      matching bracket — so `Answer: [ann, bob]. (2 solutions)` reads [ann, bob] —, else the rest of that line,
#      else its first token (a number, an atom, a quoted item). If that value does not read, there is no answer:
#      an earlier (abandoned) answer never counts;
#   2. without a marker: the whole text as one value, else its last non-empty line as one value.
# A value is JSON, else a Prolog term read by our reader (so `[ann, bob]` and `ann` are fine), in card §3's
# canonical form.
_ANSWER_MARK = re.compile(r"\banswer(?:[ \t]+is)?[ \t]*:", re.IGNORECASE)
_LEAD_TOKEN = re.compile(r"-?\d[\d_]*(?:\.\d+)?(?:[eE][+-]?\d+)?|[a-z][A-Za-z0-9_]*|'(?:[^'\\\n]|\\.)*'"
                         r"|\"(?:[^\"\\\n]|\\.)*\"")
_OPEN_CLOSE = {"[": "]", "{": "}", "(": ")"}


def _bracket_end(s, i):
    """Index just past the bracket that closes s[i] ('[', '{' or '('), skipping quoted text; -1 when unclosed."""
    stack, n = [], len(s)
    while i < n:
        c = s[i]
        if c == "'" or c == '"':
            i += 1
            while i < n and s[i] != c:
                i += 2 if s[i] == "\\" else 1
            if i >= n:
                return -1
        elif c in _OPEN_CLOSE:
            stack.append(_OPEN_CLOSE[c])
        elif c in ")]}":
            if stack.pop() != c:
                return -1
            if not stack:
                return i + 1
        i += 1
    return -1


def _read_value(text):
    """(True, value) when `text` is exactly one JSON value or one Prolog term (a trailing '.' allowed)."""
    text = text.strip()
    if not text:
        return False, None
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        pass
    try:
        return True, term_to_json(read_term(text)[0])
    except (PrologError, RecursionError, ValueError):
        return False, None


def _value_after(s, i):
    """The value that follows a marker ending at s[i]: a bracketed term, else the rest of the line, else its first
    token."""
    n = len(s)
    while i < n and s[i] in " \t\r\n*":
        i += 1
    if i < n and s[i] in _OPEN_CLOSE:
        j = _bracket_end(s, i)
        if j > 0:
            found, val = _read_value(s[i:j])
            if found:
                return found, val
    eol = s.find("\n", i)
    line = s[i:] if eol < 0 else s[i:eol]
    found, val = _read_value(line)
    if found:
        return found, val
    m = _LEAD_TOKEN.match(s, i)
    return _read_value(m.group()) if m else (False, None)


def _extract_answer(response: str):
    """The model's final answer under the answer protocol above. Returns (found, value)."""
    s = response
    k = s.rfind("</think>")
    if k >= 0:
        s = s[k + len("</think>"):]
    s = s[-_MAX_RESPONSE_CHARS:]
    mark = None
    for mark in _ANSWER_MARK.finditer(s):
        pass
    at_answer = mark.end() if mark else -1
    at_boxed = s.rfind("\\boxed{")
    fence_end = s.rfind("```")
    fence_start = s.rfind("```", 0, fence_end) if fence_end > 0 else -1
    last = max(at_answer, at_boxed, fence_start)
    if last < 0:
        found, val = _read_value(s)
        if found:
            return found, val
        t = s.rstrip()
        return _read_value(t[t.rfind("\n") + 1:])                      # the last non-empty line
    if last == at_answer:
        return _value_after(s, at_answer)
    if last == at_boxed:
        j = _bracket_end(s, at_boxed + len("\\boxed"))
        return _read_value(s[at_boxed + len("\\boxed{"):j - 1]) if j > 0 else (False, None)
    body = s[fence_start + 3:fence_end]
    first, _, rest = body.partition("\n")
    return _read_value(rest if rest and re.fullmatch(r"[A-Za-z]*\s*", first) else body)   # ```json / ```prolog


def prolog_reward(task_or_answer, response, compare: str | None = None):
    """Score a response in [0, 1] with a reason. Never raises on model output.

    Args:
        task_or_answer: a Task, or the reference answer (canonical JSON text or a Python value).
        response: the model's text; its final answer is read by the answer protocol (card, and section 3).
        compare: "set" | "sequence" | "first" (taken from the Task when one is given).
    Returns: (score, reason) with reason in {"ok", "empty", "no_answer", "wrong_type", "wrong_answer",
        "bad_reference"}; the reason for wrong answers says how many items are missing/extra.
    """
    try:
        if isinstance(task_or_answer, Task):
            ref, mode = json.loads(task_or_answer.answer), task_or_answer.compare
        else:
            ref = json.loads(task_or_answer) if isinstance(task_or_answer, str) else task_or_answer
            mode = compare or "first"
        if mode not in ("set", "sequence", "first"):
            return 0.0, "bad_reference"
    except Exception:            # a broken reference is the caller's bug, but still no exception here
        return 0.0, "bad_reference"
    try:
        if not isinstance(response, str):
            return 0.0, "no_answer"
        if not response.strip():
            return 0.0, "empty"
        found, val = _extract_answer(response)
        if not found:
            return 0.0, "no_answer"
        if mode == "first":
            ok = canonical_json(val) == canonical_json(ref)
            return (1.0, "ok") if ok else (0.0, "wrong_answer")
        if not isinstance(val, list):
            return 0.0, "wrong_type"
        if mode == "sequence":
            got, want = [canonical_json(x) for x in val], [canonical_json(x) for x in ref]
            if got == want:
                return 1.0, "ok"
            return 0.0, f"wrong_answer (got {len(got)} items, want {len(want)})"
        got, want = {canonical_json(x) for x in val}, {canonical_json(x) for x in ref}
        if got == want:
            return 1.0, "ok"
        return 0.0, f"wrong_answer (missing {len(want - got)}, extra {len(got - want)})"
    except Exception:
        return 0.0, "no_answer"


# ==== 4. PDDL tasks: blocksworld, gripper, tiny logistics (plans labelled by the BFS planner) =========================
BLOCKSWORLD_DOMAIN = """\
(define (domain blocksworld)
  (:requirements :strips)
  (:predicates (on ?x ?y) (ontable ?x) (clear ?x) (handempty) (holding ?x))
  (:action pick-up :parameters (?x)
    :precondition (and (clear ?x) (ontable ?x) (handempty))
    :effect (and (not (ontable ?x)) (not (clear ?x)) (not (handempty)) (holding ?x)))
  (:action put-down :parameters (?x)
    :precondition (holding ?x)
    :effect (and (not (holding ?x)) (clear ?x) (handempty) (ontable ?x)))
  (:action stack :parameters (?x ?y)
    :precondition (and (holding ?x) (clear ?y))
    :effect (and (not (holding ?x)) (not (clear ?y)) (clear ?x) (handempty) (on ?x ?y)))
  (:action unstack :parameters (?x ?y)
    :precondition (and (on ?x ?y) (clear ?x) (handempty))
    :effect (and (holding ?x) (clear ?y) (not (clear ?x)) (not (handempty)) (not (on ?x ?y)))))
"""

GRIPPER_DOMAIN = """\
(define (domain gripper)
  (:requirements :strips :typing)
  (:types room ball gripper)
  (:predicates (at-robby ?r - room) (at ?b - ball ?r - room) (free ?g - gripper) (carry ?b - ball ?g - gripper))
  (:action move :parameters (?from ?to - room)
    :precondition (at-robby ?from)
    :effect (and (at-robby ?to) (not (at-robby ?from))))
  (:action pick :parameters (?b - ball ?r - room ?g - gripper)
    :precondition (and (at ?b ?r) (at-robby ?r) (free ?g))
    :effect (and (carry ?b ?g) (not (at ?b ?r)) (not (free ?g))))
  (:action drop :parameters (?b - ball ?r - room ?g - gripper)
    :precondition (and (carry ?b ?g) (at-robby ?r))
    :effect (and (at ?b ?r) (free ?g) (not (carry ?b ?g)))))
"""

LOGISTICS_DOMAIN = """\
(define (domain logistics)
  (:requirements :strips :typing :equality :negative-preconditions)
  (:types truck airplane - vehicle
          package vehicle - physobj
          airport location - place
          city place physobj - object)
  (:predicates (in-city ?l - place ?c - city) (at ?o - physobj ?l - place) (in ?p - package ?v - vehicle))
  (:action load-truck :parameters (?p - package ?t - truck ?l - place)
    :precondition (and (at ?t ?l) (at ?p ?l))
    :effect (and (not (at ?p ?l)) (in ?p ?t)))
  (:action unload-truck :parameters (?p - package ?t - truck ?l - place)
    :precondition (and (at ?t ?l) (in ?p ?t))
    :effect (and (not (in ?p ?t)) (at ?p ?l)))
  (:action drive-truck :parameters (?t - truck ?from - place ?to - place ?c - city)
    :precondition (and (at ?t ?from) (in-city ?from ?c) (in-city ?to ?c) (not (= ?from ?to)))
    :effect (and (not (at ?t ?from)) (at ?t ?to)))
  (:action load-airplane :parameters (?p - package ?a - airplane ?l - airport)
    :precondition (and (at ?p ?l) (at ?a ?l))
    :effect (and (not (at ?p ?l)) (in ?p ?a)))
  (:action unload-airplane :parameters (?p - package ?a - airplane ?l - airport)
    :precondition (and (in ?p ?a) (at ?a ?l))
    :effect (and (not (in ?p ?a)) (at ?p ?l)))
  (:action fly-airplane :parameters (?a - airplane ?from - airport ?to - airport)
    :precondition (and (at ?a ?from) (not (= ?from ?to)))
    :effect (and (not (at ?a ?from)) (at ?a ?to))))
"""

PDDL_KINDS = ("blocksworld", "gripper", "logistics")


@dataclasses.dataclass(frozen=True)
class PDDLTask:
    """One plan-generation task. `answer` is the reference plan, one action per line (parse_plan reads it)."""

    kind: str
    difficulty: int
    prompt: str
    answer: str
    plan: tuple  # reference plan as tuples, optimal length (find_plan)
    domain: str  # PDDL text
    problem: str  # PDDL text


def _pddl_problem_text(name, domain, objects, init, goal):
    """objects: [(name, type or None)], init/goal: lists of atom tuples."""
    objs = " ".join(o if t is None else f"{o} - {t}" for o, t in objects)
    atoms = lambda xs: " ".join("(" + " ".join(a) + ")" for a in xs)  # noqa: E731
    return (f"(define (problem {name}) (:domain {domain})\n  (:objects {objs})\n  (:init {atoms(init)})\n"
            f"  (:goal (and {atoms(goal)})))\n")


def _pddl_towers(rng, blocks):
    order = list(blocks)
    rng.shuffle(order)
    towers, cur = [], []
    for blk in order:
        cur.append(blk)
        if rng.random() < 0.4:
            towers.append(cur)
            cur = []
    if cur:
        towers.append(cur)
    return towers


def blocksworld_task(rng, n_blocks):
    """Random start and goal towers over n_blocks in 2..6; goal = the goal towers' `on` atoms (all `ontable`
    atoms when the goal has no stacks). Resamples until the goal does not already hold."""
    if not isinstance(n_blocks, int) or not 2 <= n_blocks <= 6:
        raise ValueError(f"n_blocks must be an int in [2, 6], got {n_blocks!r}")
    blocks = "abcdef"[:n_blocks]
    while True:
        start, target = _pddl_towers(rng, blocks), _pddl_towers(rng, blocks)
        init = [("handempty",)]
        for tw in start:
            init += [("ontable", tw[0]), ("clear", tw[-1])] + [("on", x, y) for y, x in zip(tw, tw[1:])]
        goal = [("on", x, y) for tw in target for y, x in zip(tw, tw[1:])]
        if not goal:
            goal = [("ontable", x) for x in blocks]
        if not set(goal) <= set(init):
            break
    problem = _pddl_problem_text(f"bw-{n_blocks}", "blocksworld", [(x, None) for x in blocks], init, goal)
    fmt = lambda tws: " | ".join(" ".join(tw) for tw in tws)  # noqa: E731
    goal_txt = ", ".join(f"{a[1]} on {a[2]}" if a[0] == "on" else f"{a[1]} on table" for a in goal)
    prompt = (f"Blocksworld. Towers, bottom first: {fmt(start)}. Hand empty. Goal: {goal_txt}.\n"
              "Actions: pick-up X, put-down X, stack X Y, unstack X Y. Plan, one action per line:")
    return BLOCKSWORLD_DOMAIN, problem, prompt


def gripper_task(rng, n_balls, n_rooms):
    """Robot with two grippers, balls in random rooms, random goal rooms (at least one ball must move)."""
    if not isinstance(n_balls, int) or not 1 <= n_balls <= 8:
        raise ValueError(f"n_balls must be an int in [1, 8], got {n_balls!r}")
    if not isinstance(n_rooms, int) or not 2 <= n_rooms <= 4:
        raise ValueError(f"n_rooms must be an int in [2, 4], got {n_rooms!r}")
    rooms = [f"r{i + 1}" for i in range(n_rooms)]
    balls = [f"b{i + 1}" for i in range(n_balls)]
    robby = rng.choice(rooms)
    while True:
        where = {b: rng.choice(rooms) for b in balls}
        target = {b: rng.choice(rooms) for b in balls}
        if where != target:
            break
    init = [("at-robby", robby), ("free", "left"), ("free", "right")] + [("at", b, where[b]) for b in balls]
    goal = [("at", b, target[b]) for b in balls]
    objects = [(r, "room") for r in rooms] + [(b, "ball") for b in balls] + [("left", "gripper"),
                                                                            ("right", "gripper")]
    problem = _pddl_problem_text(f"gripper-{n_balls}-{n_rooms}", "gripper", objects, init, goal)
    prompt = (f"Gripper. Rooms {' '.join(rooms)}. Robot in {robby}, grippers left and right free. "
              f"Balls: {', '.join(f'{b} in {where[b]}' for b in balls)}. "
              f"Goal: {', '.join(f'{b} in {target[b]}' for b in balls)}.\n"
              "Actions: move FROM TO, pick BALL ROOM GRIPPER, drop BALL ROOM GRIPPER. Plan, one action per line:")
    return GRIPPER_DOMAIN, problem, prompt


def logistics_task(rng, n_cities, locs_per_city, n_packages):
    """One truck per city, one airplane, packages at random places with random different goal places.
    City ci has airport cia and (with 2 locations) a second location cib."""
    for name, v, lo, hi in (("n_cities", n_cities, 2, 3), ("locs_per_city", locs_per_city, 1, 2),
                            ("n_packages", n_packages, 1, 3)):
        if not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {v!r}")
    cities = [f"c{i + 1}" for i in range(n_cities)]
    places = {c: [c + "a"] + ([c + "b"] if locs_per_city == 2 else []) for c in cities}
    all_places = [p for c in cities for p in places[c]]
    trucks = {c: f"t{i + 1}" for i, c in enumerate(cities)}
    truck_at = {c: rng.choice(places[c]) for c in cities}
    plane_at = rng.choice(cities) + "a"
    pkgs = [f"p{i + 1}" for i in range(n_packages)]
    where = {p: rng.choice(all_places) for p in pkgs}
    target = {p: rng.choice([q for q in all_places if q != where[p]]) for p in pkgs}
    objects = ([(c, "city") for c in cities] + [(c + "a", "airport") for c in cities]
               + [(c + "b", "location") for c in cities if locs_per_city == 2]
               + [(trucks[c], "truck") for c in cities] + [("a1", "airplane")] + [(p, "package") for p in pkgs])
    init = ([("in-city", q, c) for c in cities for q in places[c]] + [("at", trucks[c], truck_at[c]) for c in cities]
            + [("at", "a1", plane_at)] + [("at", p, where[p]) for p in pkgs])
    goal = [("at", p, target[p]) for p in pkgs]
    problem = _pddl_problem_text(f"logistics-{n_cities}-{locs_per_city}-{n_packages}", "logistics", objects,
                                 init, goal)
    city_txt = "; ".join(f"{c}: {' '.join(places[c])}" for c in cities)
    prompt = (f"Logistics. Cities and places (airport first): {city_txt}. "
              f"Trucks: {', '.join(f'{trucks[c]} at {truck_at[c]}' for c in cities)}. Plane a1 at {plane_at}. "
              f"Packages: {', '.join(f'{p} at {where[p]}' for p in pkgs)}. "
              f"Goal: {', '.join(f'{p} at {target[p]}' for p in pkgs)}.\n"
              "Actions: load-truck P T PLACE, unload-truck P T PLACE, drive-truck T FROM TO CITY, "
              "load-airplane P A AIRPORT, unload-airplane P A AIRPORT, fly-airplane A FROM TO. "
              "Plan, one action per line:")
    return LOGISTICS_DOMAIN, problem, prompt


# difficulty 1..5 -> generator arguments; plan lengths grow from 1-4 steps (level 1) to 10-20+ (level 5)
_PDDL_LEVELS = {
    "blocksworld": {1: (2,), 2: (3,), 3: (4,), 4: (5,), 5: (6,)},
    "gripper": {1: (1, 2), 2: (2, 2), 3: (3, 2), 4: (4, 3), 5: (6, 3)},
    "logistics": {1: (2, 1, 1), 2: (2, 2, 1), 3: (2, 2, 2), 4: (3, 2, 2), 5: (3, 2, 3)},
}
_PDDL_MAKERS = {"blocksworld": blocksworld_task, "gripper": gripper_task, "logistics": logistics_task}


def generate_pddl_task(seed_or_rng=0, kind=None, difficulty=None, max_nodes=200_000):
    """A seeded plan-generation task labelled by find_plan and checked by validate_plan.

    Args: seed_or_rng: int seed or random.Random; kind: 'blocksworld' | 'gripper' | 'logistics', or None / 'mixed'
    for a random one; difficulty: int 1..5 or None (uniform). Returns PDDLTask; the same seed gives the same task.
    """
    rng = seed_or_rng if isinstance(seed_or_rng, random.Random) else random.Random(seed_or_rng)
    if kind is None or kind == "mixed":
        kind = rng.choice(PDDL_KINDS)
    if kind not in _PDDL_MAKERS:
        raise ValueError(f"kind must be one of {PDDL_KINDS}, 'mixed' or None, got {kind!r}")
    if difficulty is None:
        difficulty = rng.randint(1, 5)
    if not isinstance(difficulty, int) or not 1 <= difficulty <= 5:
        raise ValueError(f"difficulty must be an int in [1, 5] or None, got {difficulty!r}")
    for _ in range(100):
        domain, problem, prompt = _PDDL_MAKERS[kind](rng, *_PDDL_LEVELS[kind][difficulty])
        plan = _label_plan(domain, problem, max_nodes)
        if plan:  # None: out of budget (resample); (): goal already true (generators avoid it)
            break
    else:
        raise RuntimeError(f"could not label a {kind} task within max_nodes={max_nodes}")
    return PDDLTask(kind, difficulty, prompt, format_plan(plan), plan, domain, problem)


_LABELS: dict = {}  # (domain, problem, max_nodes) → validated plan; small instance spaces repeat (see _label_plan)


def _label_plan(domain, problem, max_nodes):
    """find_plan's shortest plan, checked by validate_plan (correct by construction: the planner's answer must pass
    the validator), as a tuple (None when out of budget). Memoized: seeded draws from small instance spaces repeat
    (a train.py set of 4,000 tasks draws ~90,000 instances to find them), and BFS is deterministic, so a repeated
    instance gets the same plan without a second search; the random stream is untouched."""
    key = (domain, problem, max_nodes)
    if key not in _LABELS:
        plan = find_plan(domain, problem, max_nodes=max_nodes)
        if plan:
            verdict = validate_plan(domain, problem, plan)
            if not verdict.valid:
                raise AssertionError(f"find_plan returned an invalid plan: {verdict.message}")
        if len(_LABELS) >= 100_000:  # bounded: a long-running process drawing from huge spaces
            _LABELS.clear()
        _LABELS[key] = None if plan is None else tuple(plan)
    return _LABELS[key]


# ==== 5. PDDL reward: validate the plan in the response (never raises) ================================================
def _pddl_plan_text(response, action_names):
    """The plan in a response: the lines from the first to the last line whose first word (after a `k:` prefix
    and '(') is an action name of the domain. Prose before and after it (`Here is the plan:`, `This reaches the
    goal.`) is not read as actions; every line in between is. Without any such line the whole text is the plan
    (so prose alone is rejected as an unknown action, never read as the empty plan)."""
    lines = response.split("\n")
    at = []
    for i, raw in enumerate(lines):
        words = _plan_line_body(raw).lstrip("( \t").split(None, 1)
        if words and words[0].rstrip(")") in action_names:
            at.append(i)
    return "\n".join(lines[at[0]:at[-1] + 1]) if at else response


def pddl_reward(task, response, max_chars=100_000, max_steps=5_000):
    """Score a model's plan: (1.0, 'ok') if valid and the goal is reached, else (0.0, reason).

    task: PDDLTask, or any object/mapping with `domain` and `problem` PDDL text. response: the model's text
    (anything after the last `</think>` is read; prose lines before the first and after the last action line are
    skipped, see _pddl_plan_text). reason is a Verdict reason, or 'too_long' when the response
    exceeds max_chars characters or max_steps actions. Never raises on model output (TypeError only for a task
    without domain/problem); time is linear in min(len(response), max_chars).
    """
    get = task.get if isinstance(task, dict) else lambda k: getattr(task, k, None)
    domain, problem = get("domain"), get("problem")
    if not isinstance(domain, (str, PDDLDomain)) or not isinstance(problem, (str, PDDLProblem)):
        raise TypeError(f"task must carry PDDL `domain` and `problem` (a PDDLTask or a dict), got {type(task).__name__}")
    try:
        if not isinstance(response, str):
            return 0.0, "parse_error"
        if "</think>" in response:
            response = response.rsplit("</think>", 1)[1]
        if len(response) > max_chars:
            return 0.0, "too_long"
        try:
            names = _pddl_as_domain(domain).actions
        except PDDLError:
            names = {}                  # validate_plan reports the domain's parse_error below
        try:
            steps = parse_plan(_pddl_plan_text(response, names))
        except PDDLError:
            return 0.0, "parse_error"
        if len(steps) > max_steps:
            return 0.0, "too_long"
        verdict = validate_plan(domain, problem, steps)
        return (1.0 if verdict.valid else 0.0), verdict.reason
    except Exception as e:  # last resort: a reward must never take down training (tests assert it is unused)
        return 0.0, f"error:{type(e).__name__}"


# ==== A1. Appendix, Prolog: terms =====================================================================================
# Term representation (all Prolog data):
#   integer -> Python int (bignums for free), float -> Python float, atom -> interned `Atom`, the SWI-7 empty
#   list `[]` -> the singleton NIL (distinct from the atom '[]'), string -> `PString`, compound -> `Struct(fn, args)`
#   with an interned `Functor(name, arity)` and a tuple of arguments, variable -> `Var` (ref None while unbound).


class Functor:
    __slots__ = ("name", "arity")

    def __init__(self, name, arity):
        self.name = name
        self.arity = arity

    def __repr__(self):
        return f"{self.name}/{self.arity}"


_FUNCTORS: dict = {}


def functor_of(name: str, arity: int) -> Functor:
    f = _FUNCTORS.get((name, arity))
    if f is None:
        f = _FUNCTORS[(name, arity)] = Functor(name, arity)
    return f


class Atom:
    __slots__ = ("name", "fn")

    def __init__(self, name):
        self.name = name
        self.fn = functor_of(name, 0)

    def __repr__(self):
        return f"Atom({self.name!r})"


class Nil(Atom):
    """SWI-7's reserved empty list `[]`: atomic, but `atom([])` fails and `[] \\== '[]'`."""
    __slots__ = ()


_ATOMS: dict = {}


def mkatom(name: str) -> Atom:
    a = _ATOMS.get(name)
    if a is None:
        a = _ATOMS[name] = Atom(name)
    return a


NIL = Nil("[]")


class PString:
    __slots__ = ("val",)

    def __init__(self, val):
        self.val = val

    def __eq__(self, other):
        return type(other) is PString and other.val == self.val

    def __hash__(self):
        return hash(("$str", self.val))

    def __repr__(self):
        return f"PString({self.val!r})"


class Var:
    __slots__ = ("ref",)

    def __init__(self):
        self.ref = None


class Struct:
    __slots__ = ("fn", "args")

    def __init__(self, fn, args):
        self.fn = fn
        self.args = args

    def __repr__(self):
        return term_to_text(self)


def mkstruct(name: str, *args) -> Struct:
    return Struct(functor_of(name, len(args)), tuple(args))


LIST = functor_of("[|]", 2)
COMMA = functor_of(",", 2)
TRUE = mkatom("true")
EMPTY_ATOM = mkatom("")
CURLY = functor_of("{}", 1)
MINUS1 = functor_of("-", 1)
ERROR2 = functor_of("error", 2)


def deref(t):
    while type(t) is Var:
        r = t.ref
        if r is None:
            return t
        t = r
    return t


def list_from_py(items, tail=NIL):
    out = tail
    for x in reversed(items):
        out = Struct(LIST, (x, out))
    return out


def list_to_py(t):
    """Proper list -> Python list, or None if `t` is not a proper list (partial, cyclic-safe via length guard)."""
    out = []
    t0 = t = deref(t)
    while type(t) is Struct and t.fn is LIST:
        out.append(t.args[0])
        t = deref(t.args[1])
        if len(out) == _CYCLE_CHECK_AFTER and not is_acyclic(t0):
            return None                          # a cyclic list like L = [a|L]
    return out if t is NIL else None


# ==== A2. Appendix, Prolog: errors ====================================================================================
class PrologError(Exception):
    """An uncaught Prolog exception or a budget exhaustion. `.term` is the ISO error term written by writeq,
    e.g. 'existence_error(procedure,foo/0)' (the formal part of error(Formal, Context)), or the ball itself."""

    def __init__(self, term: str, message: str | None = None):
        self.term = term
        super().__init__(message or term)


class PrologSyntaxError(PrologError):
    """Reader error with 1-based `line` and `column` of the offending token."""

    def __init__(self, message: str, line: int, column: int, formal: str | None = None):
        self.line, self.column = line, column
        formal = formal or re.sub(r"[^a-z0-9]+", "_", message.lower()).strip("_") or "syntax"   # operator_expected
        super().__init__(f"syntax_error({formal})", f"syntax error at line {line}, column {column}: {message}")


class PrologThrow(Exception):
    """Internal: a Prolog-level exception (catchable by catch/3). `ball` is a term."""

    def __init__(self, ball):
        self.ball = ball


class _Budget(Exception):
    """Internal: budget exhaustion, deliberately NOT catchable by catch/3 (card §4.4)."""


def _err(formal):
    return PrologThrow(Struct(ERROR2, (formal, Var())))


def type_error(kind, culprit):
    return _err(mkstruct("type_error", mkatom(kind), culprit))


def domain_error(kind, culprit):
    return _err(mkstruct("domain_error", mkatom(kind), culprit))


def inst_error():
    return _err(mkatom("instantiation_error"))


def eval_error(what):
    return _err(mkstruct("evaluation_error", mkatom(what)))


def existence_error(kind, culprit):
    return _err(mkstruct("existence_error", mkatom(kind), culprit))


def permission_error(action, kind, culprit):
    return _err(mkstruct("permission_error", mkatom(action), mkatom(kind), culprit))


def representation_error(what):
    return _err(mkstruct("representation_error", mkatom(what)))


def indicator(fn):
    return mkstruct("/", mkatom(fn.name), fn.arity)


# ==== A3. Appendix, Prolog: reader (tokenizer and operator-precedence parser) =========================================
# SWI-Prolog's default operator table (subset that matters for data programs): priority, type.
PREFIX_OPS = {":-": (1200, "fx"), "?-": (1200, "fx"), "\\+": (900, "fy"), "-": (200, "fy"), "+": (200, "fy"),
              "\\": (200, "fy"), "dynamic": (1150, "fx"), "discontiguous": (1150, "fx"),
              "initialization": (1150, "fx"), "table": (1150, "fx"), "$": (1, "fx"),
              "multifile": (1150, "fx"), "module_transparent": (1150, "fx"), "meta_predicate": (1150, "fx"),
              "public": (1150, "fx"), "thread_local": (1150, "fx"), "volatile": (1150, "fx")}
INFIX_OPS = {":-": (1200, "xfx"), "-->": (1200, "xfx"), "=>": (1200, "xfx"), ";": (1100, "xfy"), "|": (1100, "xfy"),
             "->": (1050, "xfy"), "*->": (1050, "xfy"), ",": (1000, "xfy"), ":=": (800, "xfx"),
             "=": (700, "xfx"), "\\=": (700, "xfx"), "==": (700, "xfx"), "\\==": (700, "xfx"),
             "@<": (700, "xfx"), "@>": (700, "xfx"), "@=<": (700, "xfx"), "@>=": (700, "xfx"),
             "=..": (700, "xfx"), "=@=": (700, "xfx"), "\\=@=": (700, "xfx"), "is": (700, "xfx"),
             "=:=": (700, "xfx"), "=\\=": (700, "xfx"),
             "<": (700, "xfx"), ">": (700, "xfx"), "=<": (700, "xfx"), ">=": (700, "xfx"),
             ">:<": (700, "xfx"), ":<": (700, "xfx"), "as": (700, "xfx"), ":": (600, "xfy"),
             "+": (500, "yfx"), "-": (500, "yfx"), "/\\": (500, "yfx"), "\\/": (500, "yfx"), "xor": (400, "yfx"),
             "*": (400, "yfx"), "/": (400, "yfx"), "//": (400, "yfx"), "rdiv": (400, "yfx"), "<<": (400, "yfx"),
             ">>": (400, "yfx"), "mod": (400, "yfx"), "rem": (400, "yfx"), "div": (400, "yfx"),
             "**": (200, "xfx"), "^": (200, "xfy")}
# library(clpfd)'s operators, so that programs using it *parse*; the constraints themselves are not implemented
# and raise existence_error(procedure, (#=)/2) etc. at run time (card §4.4: "raise a clear existence_error").
INFIX_OPS.update({op: (700, "xfx") for op in ("#=", "#\\=", "#<", "#>", "#=<", "#>=", "in", "ins")})
INFIX_OPS[".."] = (500, "yfx")
SYMBOL_CHARS = set("+-*/\\^<>=~:.?@#&$")
_SOLO = {"!", ";", "[]", "{}", ","}

_TOKEN_RE = re.compile(r"""
   (?P<ws>\s+|%[^\n]*|/\*.*?\*/)
 | (?P<float>\d[\d_]*\.\d+(?:[eE][+-]?\d+)?(?:Inf|NaN)?|\d+[eE][+-]?\d+)
 | (?P<int>0x[0-9a-fA-F]+|0o[0-7]+|0b[01]+|0'(?:\\.|''|[^\\])|\d[\d_]*)
 | (?P<var>[_A-Z][A-Za-z0-9_]*)
 | (?P<name>[a-z][A-Za-z0-9_]*|[^\W\d_][\w]*)
 | (?P<sym>[+\-*/\\^<>=~:.?@#&$]+)
 | (?P<qatom>'(?:[^'\\]|''|\\.|\\\n)*')
 | (?P<str>"(?:[^"\\]|""|\\.|\\\n)*")
 | (?P<bq>`(?:[^`\\]|``|\\.|\\\n)*`)
 | (?P<punct>[()\[\]{},|!;])
""", re.VERBOSE | re.DOTALL)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "0": "\0", "\\": "\\",
            "'": "'", '"': '"', "`": "`", "e": "\x1b", "s": " ", "\n": ""}


def _unescape(body, quote, pos, text):
    out, i, n = [], 0, len(body)
    while i < n:
        c = body[i]
        if c == "\\":
            if i + 1 >= n:
                raise _syntax("bad escape", pos + i, text)
            d = body[i + 1]
            if d == "x":
                j = body.find("\\", i + 2)
                if j < 0:
                    raise _syntax("bad \\x escape", pos + i, text)
                out.append(chr(int(body[i + 2:j], 16)))
                i = j + 1
                continue
            if d.isdigit() and d != "0" or (d == "0" and i + 2 < n and body[i + 2].isdigit()):
                j = i + 1
                while j < n and body[j].isdigit():
                    j += 1
                out.append(chr(int(body[i + 1:j], 8)))
                i = j + 1 if j < n and body[j] == "\\" else j
                continue
            if d not in _ESCAPES:
                raise _syntax("undefined escape sequence", pos + i, text)
            out.append(_ESCAPES[d])
            i += 2
        elif c == quote:          # doubled quote
            out.append(quote)
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _linecol(text, pos):
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return line, col


def _syntax(msg, pos, text, formal=None):
    line, col = _linecol(text, pos)
    return PrologSyntaxError(msg, line, col, formal)


class _Tok:
    __slots__ = ("kind", "val", "pos", "layout")

    def __init__(self, kind, val, pos, layout):
        self.kind, self.val, self.pos, self.layout = kind, val, pos, layout


def tokenize(text):
    """Split Prolog text into tokens. kinds: atom, qatom, var, int, float, str, bq, punct, end, eof."""
    toks, pos, n, layout = [], 0, len(text), True
    _meter(n)                             # reading text inside a query (atom_to_term, atom_number) is metered
    match = _TOKEN_RE.match
    while pos < n:
        m = match(text, pos)
        if m is None:
            if text.startswith("/*", pos):
                raise _syntax("unterminated block comment", pos, text)
            if text[pos] in "'\"`":
                raise _syntax("unterminated quoted", pos, text)
            raise _syntax("illegal character", pos, text)
        kind = m.lastgroup
        s = m.group()
        if kind == "ws":
            layout = True
            pos = m.end()
            continue
        if kind == "sym" and s == "." and (m.end() == n or text[m.end()] in " \t\r\n%"):
            toks.append(_Tok("end", ".", pos, layout))
        elif kind == "int":
            if s.startswith("0'"):
                body = s[2:]
                v = ord(_unescape(body, "'", pos + 2, text)) if body != "''" else 39
            elif s[:2] in ("0x", "0o", "0b"):
                v = int(s[2:], {"x": 16, "o": 8, "b": 2}[s[1]])
            else:
                v = _text_int(s.replace("_", ""))
            toks.append(_Tok("int", v, pos, layout))
        elif kind == "float":
            if s.endswith("Inf"):
                v = math.inf
            elif s.endswith("NaN"):
                v = math.nan
            else:
                v = float(s.replace("_", ""))
                if v == math.inf:          # 1.0e400: SWI refuses to read it (syntax_error(float_overflow))
                    raise _syntax("float overflow", pos, text)
            toks.append(_Tok("float", v, pos, layout))
        elif kind in ("name", "sym"):
            toks.append(_Tok("atom", s, pos, layout))
        elif kind == "qatom":
            toks.append(_Tok("qatom", _unescape(s[1:-1], "'", pos + 1, text), pos, layout))
        elif kind == "str":
            toks.append(_Tok("str", _unescape(s[1:-1], '"', pos + 1, text), pos, layout))
        elif kind == "bq":
            toks.append(_Tok("bq", _unescape(s[1:-1], "`", pos + 1, text), pos, layout))
        elif kind == "var":
            toks.append(_Tok("var", s, pos, layout))
        else:  # punct; '!' and ';' are solo atoms
            toks.append(_Tok("atom" if s in "!;" else "punct", s, pos, layout))
        layout = False
        pos = m.end()
    toks.append(_Tok("eof", None, n, True))
    return toks


_TERMINATORS = {")", "]", "}", ",", "|"}
_MAX_NEST = 3000


class _Parser:
    def __init__(self, text, flags=None):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.flags = flags if flags is not None else {}

    def error(self, msg, tok=None, formal=None):
        tok = tok or self.toks[self.i]
        return _syntax(msg, tok.pos, self.text, formal)

    def at_eof(self):
        return self.toks[self.i].kind == "eof"

    def read_clause(self):
        """Read one clause. Returns (term, varnames: dict name->Var) or None at end of file."""
        if self.at_eof():
            return None
        self.varmap = {}
        self.depth = 0
        old = sys.getrecursionlimit()
        if old < 4 * _MAX_NEST + 200:
            sys.setrecursionlimit(4 * _MAX_NEST + 200)   # 3.11 Python-to-Python calls use no C stack
        try:
            t, _ = self.parse(1200)
        finally:
            sys.setrecursionlimit(old)
        tok = self.toks[self.i]
        if tok.kind != "end":
            raise self.error("operator expected")
        self.i += 1
        return t, self.varmap

    def parse(self, maxp, argmode=False):
        self.depth += 1
        if self.depth > _MAX_NEST:
            raise self.error("term too deeply nested")
        left, lp = self.primary(maxp)
        toks = self.toks
        while True:
            tok = toks[self.i]
            name = None
            if tok.kind == "atom" and tok.val in INFIX_OPS:
                name = tok.val
            elif tok.kind == "punct" and tok.val in (",", "|") and not argmode:
                name = tok.val
            if name is None:
                break
            p, typ = INFIX_OPS[name]
            if p > maxp:
                break
            lmax = p - 1 if typ[0] == "x" else p
            rmax = p - 1 if typ[2] == "x" else p
            if lp > lmax:
                break
            self.i += 1
            right, _ = self.parse(rmax)
            left = Struct(functor_of(name, 2), (left, right))     # (a|b) reads as '|'(a,b), as SWI-7
            lp = p
        self.depth -= 1
        return left, lp

    def _starts_term(self, tok):
        if tok.kind in ("eof", "end"):
            return False
        if tok.kind == "punct":
            return tok.val in "([{"
        if tok.kind == "atom" and tok.val in INFIX_OPS and tok.val not in PREFIX_OPS:
            nxt = self.toks[self.i + 1]
            return nxt.kind == "punct" and nxt.val == "(" and not nxt.layout
        return True

    def primary(self, maxp):
        tok = self.toks[self.i]
        k = tok.kind
        self.i += 1
        if k == "int" or k == "float":
            return tok.val, 0
        if k == "var":
            if tok.val == "_":
                return Var(), 0
            v = self.varmap.get(tok.val)
            if v is None:
                v = self.varmap[tok.val] = Var()
            return v, 0
        if k == "str":
            dq = self.flags.get("double_quotes", "string")
            return self._text_as(tok.val, dq), 0
        if k == "bq":
            return list_from_py([ord(c) for c in tok.val]), 0
        if k == "punct":
            v = tok.val
            if v == "(":
                t, _ = self.parse(1200)
                self.expect(")")
                return t, 0
            if v == "[":
                if self.peek_punct("]"):
                    self.i += 1
                    return self.after_name("[]", NIL, maxp)
                items = [self.parse(1200, True)[0]]
                while self.peek_punct(","):
                    self.i += 1
                    items.append(self.parse(1200, True)[0])
                tail = NIL
                if self.peek_punct("|"):
                    self.i += 1
                    tail = self.parse(1200, True)[0]
                self.expect("]")
                return list_from_py(items, tail), 0
            if v == "{":
                if self.peek_punct("}"):
                    self.i += 1
                    return self.after_name("{}", mkatom("{}"), maxp)
                t, _ = self.parse(1200)
                self.expect("}")
                return Struct(CURLY, (t,)), 0
            self.i -= 1
            # SWI's names for these errors: a bare , or | is "quoted_punctuation", a ) ] } "cannot_start_term"
            raise self.error("quoted punctuation" if v in ",|" else "cannot start term")
        if k in ("atom", "qatom"):
            name = tok.val
            nxt = self.toks[self.i]
            if nxt.kind == "punct" and nxt.val == "(" and not nxt.layout:
                return self.compound(name), 0
            if k == "atom" and name == "-" and nxt.kind in ("int", "float") and not nxt.layout:
                self.i += 1
                return -nxt.val, 0
            if k == "atom" and name in PREFIX_OPS and self._starts_term(nxt):
                p, typ = PREFIX_OPS[name]
                if p > maxp:
                    p = maxp
                amax = p if typ == "fy" else p - 1
                arg, _ = self.parse(amax)
                return Struct(functor_of(name, 1), (arg,)), p
            return mkatom(name), 0
        if k == "end":
            self.i -= 1
            raise self.error("unexpected end of clause", formal="end_of_clause")     # SWI's name
        self.i -= 1
        raise self.error("unexpected end of file")

    def after_name(self, name, term, maxp):
        nxt = self.toks[self.i]
        if nxt.kind == "punct" and nxt.val == "(" and not nxt.layout:
            return self.compound(name), 0
        return term, 0

    def compound(self, name):
        self.i += 1  # '('
        args = [self.parse(1200, True)[0]]
        while self.peek_punct(","):
            self.i += 1
            args.append(self.parse(1200, True)[0])
        self.expect(")")
        return Struct(functor_of(name, len(args)), tuple(args))

    def peek_punct(self, v):
        t = self.toks[self.i]
        return t.kind == "punct" and t.val == v

    def expect(self, v):
        if not self.peek_punct(v):
            raise self.error(f"expected '{v}'")
        self.i += 1

    @staticmethod
    def _text_as(s, mode):
        if mode == "codes":
            return list_from_py([ord(c) for c in s])
        if mode == "chars":
            return list_from_py([mkatom(c) for c in s])
        if mode == "atom":
            return mkatom(s)
        return PString(s)


def read_term(text: str):
    """Parse a single term (a trailing '.' is optional). Returns (term, {name: Var})."""
    s = text.strip()
    if not s.endswith(".") or s.endswith("..") and not s.endswith(" .."):
        s = s + " ."
    p = _Parser(s)
    r = p.read_clause()
    if r is None:
        raise PrologSyntaxError("empty query", 1, 1)
    if not p.at_eof():
        raise p.error("end of clause expected")
    return r


# ==== A4. Appendix, Prolog: writer (writeq / write / write_canonical, iterative) ======================================
_ALNUM_RE = re.compile(r"[^\W\d_][\w]*\Z")


def format_float(x: float) -> str:
    """SWI-Prolog 9 float syntax: shortest round-trip digits, exponent form outside 1e-4 <= |x| < 1e15,
    always with a '.0' mantissa, e.g. 1.0e+15, 1.5e-7, 10000000000.0, 1.0Inf, 1.5NaN."""
    if x != x:
        return "1.5NaN"
    if x in (math.inf, -math.inf):
        return "1.0Inf" if x > 0 else "-1.0Inf"
    r = repr(x)
    sign = ""
    if r[0] == "-":
        sign, r = "-", r[1:]
    if "e" in r:
        mant, ex = r.split("e")
        ex = int(ex)
    else:
        mant, ex = r, 0
    if "." in mant:
        ip, fp = mant.split(".")
    else:
        ip, fp = mant, ""
    digits = (ip + fp).lstrip("0")
    # decimal exponent of the leading digit
    if ip.strip("0"):
        lead = len(ip.lstrip("0")) - 1 + ex
    else:
        lead = -(len(fp) - len(fp.lstrip("0"))) - 1 + ex
    digits = digits.rstrip("0") or "0"
    if x == 0:
        return sign + "0.0"
    if -4 <= lead < 15:
        if lead >= 0:
            ipart = digits[:lead + 1].ljust(lead + 1, "0")
            fpart = digits[lead + 1:] or "0"
        else:
            ipart = "0"
            fpart = "0" * (-lead - 1) + digits
        return f"{sign}{ipart}.{fpart}"
    m = digits[0] + "." + (digits[1:] or "0")
    return f"{sign}{m}e{'+' if lead >= 0 else '-'}{abs(lead)}"


def _atom_needs_quotes(s: str) -> bool:
    if s in _SOLO:
        return s in (",", "[]")
    if not s:
        return True
    if _ALNUM_RE.match(s) and s[0].islower():
        return False
    if all(c in SYMBOL_CHARS for c in s):
        return s == "." or s.startswith("/*")   # a lone '.' reads as an end token, '/*' opens a comment
    return True


def _quote(s: str, q: str) -> str:
    out = [q]
    for c in s:
        if c == q or c == "\\":
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 32 or ord(c) == 127:
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\v": "\\v", "\r": "\\r", "\0": "\\0\\"}.get(
                c, "\\x%x\\" % ord(c)))
        else:
            out.append(c)
    out.append(q)
    return "".join(out)


def atom_text(s: str, quoted: bool) -> str:
    return _quote(s, "'") if quoted and _atom_needs_quotes(s) else s


def _is_op_atom(name):
    return name in INFIX_OPS or name in PREFIX_OPS or name == "."     # '.' is op(100, yfx) in SWI-7 (dicts)


class _AlphaOp(str):
    """An alphanumeric infix operator token: SWI puts a space after it iff it needed one before (a mod b)."""


class _PrefixOp(str):
    """A prefix operator token: a following '(' or '{' must be separated by a space (- (a+b), - {x})."""


def _var_letter(n):
    return chr(ord("A") + n % 26) + (str(n // 26) if n >= 26 else "")


class _Writer:
    """Iterative term writer. A work stack holds either strings to emit or (term, max_priority, ctx) items, where
    ctx is 'arg' (argument of a compound / list element) or 'op' (operand of an operator)."""

    def __init__(self, quoted=True, ignore_ops=False, numbervars=True, varnames=None, max_chars=10_000_000):
        self.quoted, self.ignore_ops, self.numbervars = quoted, ignore_ops, numbervars
        self.varnames = varnames if varnames is not None else {}
        self.max_chars = max_chars

    def var_name(self, v):
        n = self.varnames.get(id(v))
        if n is None:
            n = self.varnames[id(v)] = "_G%d" % len(self.varnames)
        return n

    def write(self, term) -> str:
        out = []
        last = " "
        size = tokens = 0
        stack = [(term, 1200, "arg")]
        q = self.quoted
        steps = 0
        force_space = after_prefix = False
        while stack:
            steps += 1
            if steps == _CYCLE_CHECK_AFTER and not is_acyclic(term):
                raise type_error("acyclic_term", _CYCLIC)
            item = stack.pop()
            if isinstance(item, str):
                s = item
            else:
                t, maxp, ctx = item
                t = deref(t)
                tt = type(t)
                if tt is Var:
                    s = self.var_name(t)
                elif tt is int:
                    s = _int_text(t)
                elif tt is float:
                    s = format_float(t)
                elif tt is Atom or tt is Nil:
                    s = atom_text(t.name, q) if tt is Atom else "[]"
                    if ctx != "arg" and tt is Atom and _is_op_atom(t.name):
                        s = "(" + s + ")"
                elif tt is PString:
                    s = _quote(t.val, '"') if q else t.val
                elif tt is Struct:
                    self.push_struct(t, maxp, stack, ctx)
                    continue
                else:
                    s = str(t)
            if not s:
                continue
            # glue avoidance: two symbol-char tokens or two alphanumeric tokens must be separated by a space
            c0 = s[0]
            space = (last in SYMBOL_CHARS and c0 in SYMBOL_CHARS) or \
                ((last.isalnum() or last == "_") and (c0.isalnum() or c0 == "_"))
            if force_space or (after_prefix and c0 in "({"):
                space = True
            force_space = type(s) is _AlphaOp and space and last != " "
            after_prefix = type(s) is _PrefixOp
            if space and last != " " and c0 != " ":
                out.append(" ")
            out.append(s)
            last = s[-1]
            size += len(s)
            if len(s) > 64:
                _meter(len(s))                   # a long (quoted) atom or string is written char by char
            if size > self.max_chars:
                raise _Budget("resource_error(term_too_large)")
            tokens += 1
            if not tokens & 63:
                _meter(64 * _NODE_STEPS)        # writing is metered like copying (format ~w, print, answers)
        return "".join(out)

    def push_struct(self, t, maxp, stack, ctx="arg"):
        fn, args = t.fn, t.args
        name, n = fn.name, fn.arity
        q = self.quoted
        if fn is LIST:
            items = []
            x = t
            while type(x) is Struct and x.fn is LIST:
                items.append(x.args[0])
                x = deref(x.args[1])
                if len(items) == _CYCLE_CHECK_AFTER and not is_acyclic(t):
                    raise type_error("acyclic_term", _CYCLIC)
                if len(items) > self.max_chars:
                    raise _Budget("resource_error(term_too_large)")
            stack.append("]")
            if x is not NIL:
                stack.append((x, 999, "arg"))
                stack.append("|")
            for k in range(len(items) - 1, -1, -1):
                stack.append((items[k], 999, "arg"))
                if k:
                    stack.append(",")
            stack.append("[")
            return
        if fn is CURLY and not self.ignore_ops:
            stack += ["}", (args[0], 1200, "arg"), "{"]
            return
        if name == "$VAR" and n == 1 and self.numbervars:
            a = deref(args[0])
            if type(a) is int and a >= 0:
                stack.append(_var_letter(a))
                return
        if not self.ignore_ops:
            if n == 2 and name in INFIX_OPS:
                p, typ = INFIX_OPS[name]
                lmax = p - 1 if typ[0] == "x" else p
                rmax = p - 1 if typ[2] == "x" else p
                open_ = p > maxp or (name == "|" and ctx == "op;")   # SWI brackets a bar term under ;
                if open_:
                    stack.append(")")
                octx = "op;" if name == ";" else "op"
                stack.append((args[1], rmax, octx))
                if name == "," or name == "|":
                    stack.append(name)
                elif name[0].isalpha():
                    stack.append(_AlphaOp(atom_text(name, q)))
                else:
                    stack.append(atom_text(name, q))     # spaces only where tokens would glue
                stack.append((args[0], lmax, octx))
                if open_:
                    stack.append("(")
                return
            if n == 1 and name in PREFIX_OPS and name != "$":
                p, typ = PREFIX_OPS[name]
                amax = p if typ == "fy" else p - 1
                a = deref(args[0])
                open_ = p > maxp
                if open_:
                    stack.append(")")
                # the operand is bracketed when its priority is too high or it is itself an operator atom
                ta = type(a)
                needs_paren = (ta is Struct and self._priority(a) > amax) or (ta is Atom and _is_op_atom(a.name))
                if needs_paren:
                    stack += [")", (a, 1200, "arg"), "(", " "]
                else:
                    stack.append((a, amax, "op"))
                    if name == "-" and _leftmost_is_unsigned_number(a):
                        stack.append(" ")      # -(1) is written "- 1", not the number -1 (SWI-7 reads +1 as +(1))
                stack.append(_PrefixOp(atom_text(name, q)))
                if open_:
                    stack.append("(")
                return
        stack.append(")")
        for k in range(n - 1, -1, -1):
            stack.append((args[k], 999, "arg"))
            if k:
                stack.append(",")
        stack.append("(")
        stack.append(atom_text(name, q) if name != "[]" else "[]")

    def _priority(self, t):
        fn = t.fn
        if fn.arity == 2 and fn.name in INFIX_OPS and fn is not LIST:
            return INFIX_OPS[fn.name][0]
        if fn.arity == 1 and fn.name in PREFIX_OPS and fn.name != "$":
            return PREFIX_OPS[fn.name][0]
        return 0


def _leftmost_is_unsigned_number(a):
    # "-(1^2)" is written "- 1^2": the operand's first token is a digit, which would read back as -1
    while type(a) is Struct and a.fn.arity == 2 and a.fn.name in INFIX_OPS and a.fn is not LIST:
        a = deref(a.args[0])
    return (type(a) is int or type(a) is float) and a >= 0


def term_to_text(t, quoted=True, ignore_ops=False, varnames=None, max_chars=10_000_000) -> str:
    """writeq/1 (quoted=True), write/1 (quoted=False) or write_canonical/1 (ignore_ops=True) as a string."""
    return _Writer(quoted, ignore_ops, not ignore_ops, varnames, max_chars).write(t)


# ==== A5. Appendix, Prolog: term utilities (unify, compare, copy; iterative and cyclic-safe) ==========================
_CYCLE_CHECK_AFTER = 100_000   # after this many steps an operation switches to cycle-aware bookkeeping
# Work done inside ONE builtin step on big terms (unifying or comparing two long lists, occurs checks) is metered
# too, so a loop over `L1 == L2` with million-element lists cannot run for hours on one inference each:
# [steps so far, steps allowed] for the running query; 16 steps count as one inference.
_WORK = [0, 1 << 62]


_NODE_STEPS = 8                # building one node of a copied / compiled / written term costs 8 unify steps


def _meter(n):
    _WORK[0] += n
    if _WORK[0] > _WORK[1]:
        raise _Budget("resource_error(inferences)")


def unify(a, b, trail) -> bool:
    """Unify without occurs check (SWI default). Bindings are pushed on `trail`."""
    stack = []
    steps = 0
    seen = None
    while True:
        while type(a) is Var:
            r = a.ref
            if r is None:
                break
            a = r
        while type(b) is Var:
            r = b.ref
            if r is None:
                break
            b = r
        if a is not b:
            ta = type(a)
            if ta is Var:
                a.ref = b
                trail.append(a)
            elif type(b) is Var:
                b.ref = a
                trail.append(b)
            elif ta is Struct:
                if type(b) is not Struct or a.fn is not b.fn:
                    return False
                steps += 1
                if not steps & 63:
                    _meter(64)
                if steps > _CYCLE_CHECK_AFTER:
                    # rational trees: a pair already being unified is assumed equal (coinduction, as SWI)
                    if seen is None:
                        seen = set()
                    key = (id(a), id(b))
                    if key in seen:
                        a = None
                    else:
                        seen.add(key)
                if a is not None:
                    aa, ba = a.args, b.args
                    n = len(aa)
                    for k in range(n - 1, 0, -1):
                        stack.append((aa[k], ba[k]))
                    a, b = aa[0], ba[0]
                    continue
            elif ta is not type(b) or a != b:
                return False
        if not stack:
            return True
        a, b = stack.pop()


def undo(trail, mark):
    while len(trail) > mark:
        trail.pop().ref = None


def occurs_in(v, t) -> bool:
    stack = [t]
    seen = set()
    steps = 0
    while stack:
        steps += 1
        if not steps & 63:
            _meter(64)
        x = deref(stack.pop())
        if x is v:
            return True
        if type(x) is Struct:
            if id(x) in seen:
                continue
            seen.add(id(x))
            stack.extend(x.args)
    return False


def unify_occurs_check(a, b, trail) -> bool:
    stack = [(a, b)]
    steps = 0
    while stack:
        a, b = stack.pop()
        a, b = deref(a), deref(b)
        if a is b:
            continue
        steps += 1
        if not steps & 63:
            _meter(256)                  # two big (e.g. DAG-shared) terms: a step here costs ~4 unify steps
        if type(a) is Var:
            if occurs_in(a, b):
                return False
            a.ref = b
            trail.append(a)
        elif type(b) is Var:
            if occurs_in(b, a):
                return False
            b.ref = a
            trail.append(b)
        elif type(a) is Struct:
            if type(b) is not Struct or a.fn is not b.fn:
                return False
            stack.extend(zip(a.args, b.args))
        elif type(a) is not type(b) or a != b:
            return False
    return True


def is_acyclic(t) -> bool:
    """Iterative DFS over compound nodes (cycles can only pass through them): False iff a node is reached
    again while it is still on the current path (state 1); finished nodes (state 2) are not revisited."""
    t = deref(t)
    if type(t) is not Struct:
        return True
    state = {id(t): 1}
    nodes, idxs = [t], [0]
    while nodes:
        x = nodes[-1]
        i = idxs[-1]
        args = x.args
        n = len(args)
        while i < n:
            a = args[i]
            i += 1
            while type(a) is Var:
                r = a.ref
                if r is None:
                    break
                a = r
            if type(a) is Struct:
                ia = id(a)
                st = state.get(ia)
                if st is None:
                    idxs[-1] = i
                    state[ia] = 1
                    if not len(state) & 63:
                        _meter(64 * _NODE_STEPS)     # cyclic_term/1 on a long list: metered per node
                    nodes.append(a)
                    idxs.append(0)
                    break
                if st == 1:
                    return False
        else:
            nodes.pop()
            idxs.pop()
            state[id(x)] = 2
    return True


_CYCLIC = mkatom("$cyclic_term")


def _rebuild(t, on_var, charge=None):
    """Rebuild `t` bottom-up without recursion; unbound variables are replaced by on_var(v). Raises a Prolog
    type_error(acyclic_term) for cyclic input. `charge(n)` is called with the number of nodes built."""
    t = deref(t)
    if type(t) is not Struct:
        return on_var(t) if type(t) is Var else t
    out = []
    work = [t]
    nodes = 0
    while work:
        x = work.pop()
        if type(x) is Functor:
            n = x.arity
            args = tuple(out[-n:])
            del out[-n:]
            out.append(Struct(x, args))
            continue
        while type(x) is Var:
            r = x.ref
            if r is None:
                break
            x = r
        tx = type(x)
        if tx is Struct:
            nodes += 1
            if not nodes & 63:
                _meter(64 * _NODE_STEPS)
            if nodes == _CYCLE_CHECK_AFTER and not is_acyclic(t):
                raise type_error("acyclic_term", _CYCLIC)
            work.append(x.fn)
            args = x.args
            for k in range(len(args) - 1, -1, -1):
                work.append(args[k])
        elif tx is Var:
            out.append(on_var(x))
        else:
            out.append(x)
    if charge is not None:
        charge(nodes)
    return out[0]


def copy_term(t, charge=None):
    mapping = {}

    def fresh(v):
        nv = mapping.get(v)
        if nv is None:
            nv = mapping[v] = Var()
        return nv
    return _rebuild(t, fresh, charge)


def term_vars(t) -> list:
    """Unbound variables of t in depth-first left-to-right order (term_variables/2)."""
    out, seen, done = [], set(), set()
    stack = [t]
    steps = 0
    while stack:
        steps += 1
        if not steps & 63:
            _meter(64)
        x = deref(stack.pop())
        if type(x) is Var:
            if x not in seen:
                seen.add(x)
                out.append(x)
        elif type(x) is Struct:
            if id(x) in done:
                continue
            done.add(id(x))
            stack.extend(reversed(x.args))
    return out


def is_ground(t) -> bool:
    stack = [t]
    done = set()
    steps = 0
    while stack:
        steps += 1
        if not steps & 63:
            _meter(64)
        x = deref(stack.pop())
        if type(x) is Var:
            return False
        if type(x) is Struct:
            if id(x) in done:
                continue
            done.add(id(x))
            stack.extend(x.args)
    return True


def _type_rank(x):
    # SWI-Prolog 9.0.4 standard order (card §4.2, checked against swipl): Var < Number < String < [] < Atom <
    # Compound — the reserved [] sorts before every atom, '[]' included
    tx = type(x)
    if tx is Var:
        return 0
    if tx is int or tx is float:
        return 1
    if tx is PString:
        return 2
    if tx is Nil:
        return 3
    if tx is Atom:
        return 4
    return 5


def compare_terms(a, b) -> int:
    """Standard order of terms: -1, 0, 1."""
    stack = [(a, b)]
    steps = 0
    seen = None
    while stack:
        a, b = stack.pop()
        a, b = deref(a), deref(b)
        if a is b:
            continue
        ra, rb = _type_rank(a), _type_rank(b)
        if ra != rb:
            return -1 if ra < rb else 1
        if ra == 1:
            x, y = (a, b) if type(a) is type(b) else _mixed(a, b)
            if x != y:
                return -1 if x < y else 1
            ta, tb = type(a), type(b)
            if ta is not tb:            # 1.0 @< 1
                return -1 if ta is float else 1
            continue
        if ra == 0:                     # distinct variables: by address (consistent while both live)
            return -1 if id(a) < id(b) else 1
        if ra == 2:
            if a.val != b.val:
                return -1 if a.val < b.val else 1
            continue
        if ra == 4:
            if a.name != b.name:
                return -1 if a.name < b.name else 1
            continue
        if ra == 3:
            continue
        fa, fb = a.fn, b.fn
        if fa is not fb:
            if fa.arity != fb.arity:
                return -1 if fa.arity < fb.arity else 1
            return -1 if fa.name < fb.name else 1
        steps += 1
        if not steps & 63:
            _meter(64)
        if steps > _CYCLE_CHECK_AFTER:
            if seen is None:
                seen = set()
            key = (id(a), id(b))
            if key in seen:
                continue
            seen.add(key)
        stack.extend(zip(reversed(a.args), reversed(b.args)))
    return 0


def variant(a, b) -> bool:
    """=@= : structurally equal up to a consistent renaming of variables."""
    m1, m2 = {}, {}
    stack = [(a, b)]
    seen = set()
    steps = 0
    while stack:
        x, y = stack.pop()
        steps += 1
        if not steps & 63:
            _meter(64)
        x, y = deref(x), deref(y)
        if type(x) is Var and type(y) is Var:
            if m1.setdefault(x, y) is not y or m2.setdefault(y, x) is not x:
                return False
        elif type(x) is Struct and type(y) is Struct:
            if x.fn is not y.fn:
                return False
            key = (id(x), id(y))
            if key in seen:                      # cyclic terms: a pair under comparison is assumed equal
                continue
            seen.add(key)
            stack.extend(zip(x.args, y.args))
        elif type(x) is Var or type(y) is Var:
            return False
        elif not (x is y or (type(x) is type(y) and x == y)):
            return False
    return True


# ==== A6. Appendix, Prolog: arithmetic (is/2 with SWI-Prolog 9.0.4 results and error terms, card §4.2) ================
_MAX_INT_BITS = 1 << 20          # refuse to build integers above ~1 Mbit (a deliberate resource bound)


# Python refuses int <-> decimal text beyond 4300 digits (a guard against quadratic conversions); integers here go
# up to _MAX_INT_BITS, so longer ones are converted in halves, each conversion metered by its (quadratic) cost.
_INT_TEXT_BITS = 14_000               # str()/int() work directly below ~4200 digits


def _int_text(i: int) -> str:
    """str(i) for any size of integer."""
    if i.bit_length() <= _INT_TEXT_BITS:
        return str(i)
    digits = int(i.bit_length() * 0.30103) + 1
    _meter(digits * (digits >> 12))
    if i < 0:
        return "-" + _int_text(-i)
    k = digits // 2
    q, r = divmod(i, 10 ** k)
    return _int_text(q) + _int_text(r).rjust(k, "0")


def _text_int(s: str) -> int:
    """int(s) of a decimal digit string of any length."""
    if len(s) <= 4000:
        return int(s)
    _meter(len(s) * (len(s) >> 12))
    if len(s) > _MAX_INT_BITS // 3:
        raise PrologError("resource_error(integer_size)", f"an integer of {len(s)} digits (limit ~315 000)")
    k = len(s) // 2
    return _text_int(s[:-k]) * 10 ** k + _text_int(s[-k:])


def _need_int(x):
    if type(x) is not int:
        raise type_error("integer", x)
    return x


def _check_float(r):
    if r != r:
        raise eval_error("undefined")
    if r in (math.inf, -math.inf):
        raise eval_error("float_overflow")
    return r


def _to_float(x):
    try:
        return float(x)
    except OverflowError:
        raise eval_error("float_overflow") from None


def _big_guard(bits):
    if bits > _MAX_INT_BITS:
        raise _err(mkstruct("resource_error", mkatom("integer_size")))


def _add(a, b):
    if type(a) is not type(b):                 # int + float: a bignum beyond float range overflows (as SWI)
        return _check_float(_to_float(a) + _to_float(b))
    r = a + b
    return _check_float(r) if type(r) is float else r


def _sub(a, b):
    if type(a) is not type(b):
        return _check_float(_to_float(a) - _to_float(b))
    r = a - b
    return _check_float(r) if type(r) is float else r


def _mul(a, b):
    if type(a) is int and type(b) is int:
        if a.bit_length() + b.bit_length() > 4096:
            _big_guard(a.bit_length() + b.bit_length())
        return a * b
    return _check_float(_to_float(a) * _to_float(b))


def _div(a, b):
    if type(a) is int and type(b) is int:
        if b == 0:
            raise eval_error("zero_divisor")
        if a % b == 0:          # iso=false: exact integer division stays an integer (4/2 = 2)
            return a // b
        try:
            return _check_float(a / b)
        except OverflowError:
            raise eval_error("float_overflow") from None
    fa, fb = _to_float(a), _to_float(b)
    if fb == 0.0:
        raise eval_error("undefined" if fa == 0.0 or fa != fa else "zero_divisor")
    return _check_float(fa / fb)


def _intdiv(a, b):
    _need_int(a), _need_int(b)
    if b == 0:
        raise eval_error("zero_divisor")
    q = abs(a) // abs(b)           # // truncates toward zero
    return q if (a >= 0) == (b >= 0) else -q


def _rdiv(a, b):
    # SWI: rational division of integers (floats are a type_error(rational)). We have no rational numbers, so a
    # quotient that is not an integer is a representation_error(rational) instead of SWI's 1r3 (card deviation).
    for x in (a, b):
        if type(x) is not int:
            raise type_error("rational", x)
    if b == 0:
        raise eval_error("zero_divisor")
    q, r = divmod(a, b)
    if r:
        raise representation_error("rational")
    return q


def _copysign(a, b):
    # SWI 9.0.4: |a| with the sign (bit) of b, keeping a's type: copysign(2, -0.0) = -2, copysign(2.5, -1) = -2.5
    neg = math.copysign(1.0, b) < 0 if type(b) is float else b < 0
    if type(a) is int:
        return -abs(a) if neg else abs(a)
    return math.copysign(a, -1.0 if neg else 1.0)


def _floordiv(a, b):
    _need_int(a), _need_int(b)
    if b == 0:
        raise eval_error("zero_divisor")
    return a // b


def _mod(a, b):
    _need_int(a), _need_int(b)
    if b == 0:
        raise eval_error("zero_divisor")
    return a % b                   # sign of divisor, like Python


def _rem(a, b):
    _need_int(a), _need_int(b)
    if b == 0:
        raise eval_error("zero_divisor")
    r = a % b
    if r and (a < 0) != (b < 0):
        r -= b                     # sign of dividend
    return r


def _pow(a, b):
    # SWI (prefer_rationals=false): int**int and int^int are exact for b >= 0; a negative exponent gives
    # 1, -1 exactly, zero_divisor for 0, and a float otherwise (2^(-1) = 0.5). Any X ** 0 is the integer 1.
    if b == 0 or (a == 1 and type(a) is int):
        return 1
    if type(a) is int and a == 0 and type(b) is float and b > 0:
        return 0                       # SWI keeps an integer 0 or 1 base exact: 0 ** 0.5 = 0
    if type(a) is int and type(b) is int:
        if b >= 0:
            if abs(a) > 1:
                _big_guard(b * a.bit_length())
            return a ** b
        if a == 0:
            raise eval_error("zero_divisor")
        if a in (1, -1):
            return a ** (-b) if a == -1 else 1
        return _check_float(float(a) ** b)
    fa, fb = _to_float(a), _to_float(b)
    if fa == 0.0 and fb < 0:
        raise eval_error("zero_divisor")
    try:
        r = fa ** fb
    except OverflowError:
        raise eval_error("float_overflow") from None
    except ZeroDivisionError:
        raise eval_error("zero_divisor") from None
    if type(r) is complex:
        raise eval_error("undefined")
    return _check_float(r)


def _shift(a, b, left):
    _need_int(a), _need_int(b)
    if left:
        _big_guard(a.bit_length() + b)
        return a << b if b >= 0 else a >> -b
    return a >> b if b >= 0 else a << -b


def _round(x):
    if type(x) is int:
        return x
    if x != x or x in (math.inf, -math.inf):
        raise eval_error("undefined")
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)   # half away from zero


def _fint(f):
    def g(x):
        if type(x) is int:
            return x
        if x != x or x in (math.inf, -math.inf):
            raise eval_error("undefined")
        return f(x)
    return g


def _ffun(f, domain=None):
    def g(*xs):
        fs = [_to_float(x) for x in xs]
        if domain is not None and not domain(*fs):
            raise eval_error("undefined")
        try:
            return _check_float(f(*fs))
        except OverflowError:
            raise eval_error("float_overflow") from None
        except ValueError:
            raise eval_error("undefined") from None
    return g


def _sign(x):
    if type(x) is int:
        return (x > 0) - (x < 0)
    return math.copysign(1.0, x) if x != 0 else 0.0


def _minmax(pick_first):
    def g(a, b):
        # SWI compares by value (mixed as floats); on an int/float tie it returns the float: max(1, 1.0) = 1.0
        x, y = _mixed(a, b)
        if x == y:
            return b if type(b) is float else a
        return a if (x < y) == pick_first else b
    return g


def _bitop(f):
    def g(*xs):
        for x in xs:
            _need_int(x)
        return f(*xs)
    return g


def _msb(x):
    _need_int(x)
    if x <= 0:
        raise _err(mkstruct("domain_error", mkatom("not_less_than_one"), x))
    return x.bit_length() - 1


_ARITH = {
    ("+", 2): _add, ("-", 2): _sub, ("*", 2): _mul, ("/", 2): _div, ("//", 2): _intdiv, ("div", 2): _floordiv,
    ("mod", 2): _mod, ("rem", 2): _rem, ("**", 2): _pow, ("^", 2): _pow, ("rdiv", 2): _rdiv,
    ("copysign", 2): _copysign,
    ("min", 2): _minmax(True), ("max", 2): _minmax(False),
    ("-", 1): lambda x: -x, ("+", 1): lambda x: x, ("abs", 1): abs, ("sign", 1): _sign,
    ("sqrt", 1): _ffun(math.sqrt, lambda x: x >= 0), ("sin", 1): _ffun(math.sin), ("cos", 1): _ffun(math.cos),
    ("tan", 1): _ffun(math.tan), ("asin", 1): _ffun(math.asin, lambda x: -1 <= x <= 1),
    ("acos", 1): _ffun(math.acos, lambda x: -1 <= x <= 1), ("atan", 1): _ffun(math.atan),
    ("atan", 2): _ffun(math.atan2), ("atan2", 2): _ffun(math.atan2), ("exp", 1): _ffun(math.exp),
    ("log", 1): _ffun(math.log, lambda x: x > 0), ("log2", 1): _ffun(math.log2, lambda x: x > 0),
    ("log", 2): _ffun(lambda b, x: math.log(x) / math.log(b), lambda b, x: b > 0 and x > 0 and b != 1),
    ("float", 1): lambda x: _to_float(x), ("integer", 1): _round, ("round", 1): _round,
    ("truncate", 1): _fint(math.trunc), ("floor", 1): _fint(math.floor), ("ceiling", 1): _fint(math.ceil),
    ("float_integer_part", 1): _ffun(lambda x: float(math.trunc(x))),
    ("float_fractional_part", 1): _ffun(lambda x: x - math.trunc(x)),
    (">>", 2): lambda a, b: _shift(a, b, False), ("<<", 2): lambda a, b: _shift(a, b, True),
    ("/\\", 2): _bitop(lambda a, b: a & b), ("\\/", 2): _bitop(lambda a, b: a | b),
    ("xor", 2): _bitop(lambda a, b: a ^ b), ("\\", 1): _bitop(lambda a: ~a), ("msb", 1): _msb,
    ("gcd", 2): _bitop(math.gcd), ("succ", 1): lambda x: _need_int(x) + 1,
}
_ARITH_CONST = {"pi": math.pi, "e": math.e, "inf": math.inf, "infinite": math.inf, "nan": math.nan,
                "epsilon": sys.float_info.epsilon, "max_tagged_integer": (1 << 60) - 1}
_ARITH_FN = {functor_of(n, a): f for (n, a), f in _ARITH.items()}


def eval_arith(t):
    """Evaluate an arithmetic expression iteratively (deep left-nested sums are fine)."""
    t = deref(t)
    tt = type(t)
    if tt is int or tt is float:
        return t
    if tt is Struct and t.fn.arity == 2:      # fast path: a binary operation on two numbers (N - 1, X + Y)
        x, y = t.args
        while type(x) is Var and x.ref is not None:
            x = x.ref
        while type(y) is Var and y.ref is not None:
            y = y.ref
        tx, ty = type(x), type(y)
        if (tx is int or tx is float) and (ty is int or ty is float):
            f = _ARITH_FN.get(t.fn)
            if f is not None:
                return f(x, y)
    work = [t]
    vals = []
    steps = 0
    while work:
        x = work.pop()
        steps += 1
        if steps == _CYCLE_CHECK_AFTER and not is_acyclic(t):
            raise type_error("acyclic_term", _CYCLIC)
        if type(x) is Functor:
            n = x.arity
            args = vals[-n:]
            del vals[-n:]
            args.reverse()           # arguments were evaluated right to left, as SWI does (error order)
            vals.append(_ARITH_FN[x](*args))
            continue
        while type(x) is Var:
            r = x.ref
            if r is None:
                raise inst_error()
            x = r
        tx = type(x)
        if tx is int or tx is float:
            vals.append(x)
        elif tx is Struct:
            fn = x.fn
            if fn not in _ARITH_FN:
                if fn is LIST and deref(x.args[1]) is NIL:     # [X] evaluates X ("a" style one-char lists)
                    work.append(x.args[0])
                    continue
                raise type_error("evaluable", indicator(fn))
            work.append(fn)
            work.extend(x.args)
        elif tx is Atom:
            c = _ARITH_CONST.get(x.name)
            if c is None:
                raise type_error("evaluable", indicator(x.fn))
            vals.append(c)
        elif tx is PString and len(x.val) == 1:
            vals.append(ord(x.val))
        else:
            raise type_error("evaluable", x if tx is not Nil else indicator(x.fn))
    return vals[0]


def _mixed(x, y):
    """SWI-Prolog 9.0.4 compares an int with a float as floats (the int rounded to nearest, overflow -> +-inf):
    2**53+1 =:= 2.0**53 holds, and the standard order sees them equal in value (then Float < Int)."""
    if type(x) is type(y):
        return x, y
    return _int_as_float(x), _int_as_float(y)


def _int_as_float(x):
    if type(x) is not int:
        return x
    try:
        return float(x)
    except OverflowError:
        return math.inf if x > 0 else -math.inf


def num_compare(a, b) -> int:
    x, y = _mixed(eval_arith(a), eval_arith(b))
    return -1 if x < y else (1 if x > y else 0)


# ==== A7. Appendix, Prolog: clause compiler, predicate table, control constructs ======================================
class Slot(int):
    """A clause variable inside a template: its index in the clause's frame (a list of fresh bindings)."""
    __slots__ = ()


class TStruct:
    """A compound template containing clause variables; `depth` bounds the (shallow) recursive builder."""
    __slots__ = ("fn", "args", "depth")

    def __init__(self, fn, args, depth):
        self.fn, self.args, self.depth = fn, args, depth


_SHALLOW = 60


def _template(t, varmap):
    """Term -> template: unbound variables become Slots (numbered by first occurrence, via `varmap`), ground
    subterms are shared as-is, other compounds become TStructs. Iterative."""
    def slot(v):
        s = varmap.get(v)
        if s is None:
            s = varmap[v] = Slot(len(varmap))
        return s
    t = deref(t)
    if type(t) is Var:
        return slot(t)
    if type(t) is not Struct:
        return t
    out, work = [], [t]
    nodes = 0
    while work:
        x = work.pop()
        if type(x) is Functor:
            n = x.arity
            args = tuple(out[-n:])
            del out[-n:]
            depth = 0
            for a in args:
                ta = type(a)
                if ta is TStruct:
                    depth = max(depth, a.depth)
                elif ta is Slot:
                    depth = max(depth, 0)
                    continue
                else:
                    continue
            if any(type(a) is Slot or type(a) is TStruct for a in args):
                out.append(TStruct(x, args, depth + 1))
            else:
                out.append(Struct(x, args))
            continue
        x = deref(x)
        if type(x) is Struct:
            nodes += 1
            if not nodes & 63:
                _meter(64 * _NODE_STEPS)       # assertz of a huge (e.g. DAG-shared) term meets the budget
            if nodes == _CYCLE_CHECK_AFTER and not is_acyclic(t):
                raise type_error("acyclic_term", _CYCLIC)
            work.append(x.fn)
            work.extend(reversed(x.args))
        elif type(x) is Var:
            out.append(slot(x))
        else:
            out.append(x)
    return out[0]


def _build(tm, frame):
    """Instantiate a template with a frame (fresh Vars for slots not yet bound)."""
    if tm.depth > _SHALLOW:
        return _build_deep(tm, frame)
    args = []
    for x in tm.args:
        tx = type(x)
        if tx is Slot:
            v = frame[x]
            if v is None:
                v = frame[x] = Var()
            args.append(v)
        elif tx is TStruct:
            args.append(_build(x, frame))
        else:
            args.append(x)
    return Struct(tm.fn, tuple(args))


def _build_deep(tm, frame):
    out, work = [], [tm]
    while work:
        x = work.pop()
        tx = type(x)
        if tx is Functor:
            n = x.arity
            args = tuple(out[-n:])
            del out[-n:]
            out.append(Struct(x, args))
        elif tx is TStruct:
            work.append(x.fn)
            work.extend(reversed(x.args))
        elif tx is Slot:
            v = frame[x]
            if v is None:
                v = frame[x] = Var()
            out.append(v)
        else:
            out.append(x)
    return out[0]


def _unify_head(hs, args, frame, trail):
    """Unify a clause head's argument templates with the call's arguments, binding frame slots on first
    occurrence without allocating variables (the WAM's get_variable)."""
    for i in range(len(hs)):
        h = hs[i]
        a = args[i]
        th = type(h)
        if th is Slot:
            v = frame[h]
            if v is None:
                frame[h] = a
            elif not unify(v, a, trail):
                return False
            continue
        while type(a) is Var:
            r = a.ref
            if r is None:
                break
            a = r
        ta = type(a)
        if ta is Var:
            a.ref = _build(h, frame) if th is TStruct else h
            trail.append(a)
        elif th is TStruct:
            if ta is not Struct or a.fn is not h.fn:
                return False
            if h.depth > _SHALLOW:
                if not unify(_build_deep(h, frame), a, trail):
                    return False
            elif not _unify_head(h.args, a.args, frame, trail):
                return False
        elif th is Struct:
            if not unify(h, a, trail):
                return False
        elif h is not a and (th is not ta or h != a):
            return False
    return True


def _index_key(a):
    ta = type(a)
    if ta is Struct:
        return a.fn
    if ta is float:
        return (a,)
    if ta is PString:
        return ("$s", a.val)
    return a            # int, Atom, Nil (atoms hash by identity)


class Clause:
    """A compiled clause. `code(args, trail)` unifies the head with the call's arguments and returns the body
    goals (reversed, ready to push on the continuation) or None when the head does not match."""
    __slots__ = ("head", "body", "nvars", "key", "source", "erased", "code")

    def __init__(self, head, body, nvars, key, source):
        self.head, self.body, self.nvars, self.key, self.source = head, body, nvars, key, source
        self.erased = False
        if not body and all(type(h) in _ATOMIC_TYPES for h in head):
            self.code = _atomic_fact_code(head)      # fact tables: no code generation needed
        else:
            self.code = _codegen(head, body) or _generic_code(head, body, nvars)
            nodes = sum(_tmpl_stats(x)[0] for x in head) + sum(_tmpl_stats(g)[0] for g in body)
            if nodes > _BIG_CLAUSE_NODES:            # each call may build all its nodes: meter them (budgets)
                self.code = functools.partial(_metered_code, self.code, nodes * _NODE_STEPS)


_BIG_CLAUSE_NODES = 256                          # smaller clauses cost one inference per call, as in SWI


def _metered_code(code, steps, args, trail):
    _meter(steps)
    return code(args, trail)


_ATOMIC_TYPES = (Atom, Nil, int, float, PString)


def _atomic_fact_code(consts):
    """Head unification for a fact whose arguments are all atomic, e.g. parent(tom, bob)."""
    pairs = tuple(enumerate(consts))

    def run(args, trail):
        for i, c in pairs:
            a = args[i]
            while type(a) is Var:
                r = a.ref
                if r is None:
                    a.ref = c
                    trail.append(a)
                    break
                a = r
            else:
                if a is not c and (type(a) is not type(c) or a != c):
                    return None
        return ()
    return run


def _generic_code(head, body, nvars):
    """Template interpreter: the fallback for clauses too big or too deep for code generation."""
    def run(args, trail):
        frame = [None] * nvars
        if not _unify_head(head, args, frame, trail):
            return None
        out = []
        for g in body:
            if type(g) is TStruct:
                g = _build(g, frame)
            out.append((g.fn, g.args if type(g) is Struct else ()))
        return tuple(out)
    return run


# Code generation: each clause becomes a small Python function specialised to its head and body (the WAM idea of
# compiling unification, done with Python source + exec). Constants are passed as globals K0, K1, ...; the
# source text only depends on the clause's *shape*, so compiled code objects are cached and shared.
_CODE_CACHE: dict = {}
_CODEGEN_MAX_NODES = 200
_CODEGEN_MAX_DEPTH = 12


def _tmpl_stats(t):
    nodes, depth, stack = 0, 0, [(t, 1)]
    while stack:
        x, d = stack.pop()
        nodes += 1
        depth = max(depth, d)
        if type(x) is TStruct:
            stack.extend((y, d + 1) for y in x.args)
    return nodes, depth


def _codegen(hargs, body_rev):
    total = 0
    for t in list(hargs) + list(body_rev):
        n, d = _tmpl_stats(t)
        total += n
        if d > _CODEGEN_MAX_DEPTH or total > _CODEGEN_MAX_NODES:
            return None
    g = {"Var": Var, "Struct": Struct, "unify": unify}
    consts = {}
    lines = ["def f(a, trail):"]
    known = set()

    def K(obj):
        key = (type(obj), obj) if type(obj) in (int, float) else id(obj)
        name = consts.get(key)
        if name is None:
            name = consts[key] = "K%d" % len(consts)
            g[name] = obj
        return name

    def emit(s, ind=1):
        lines.append("    " * ind + s)

    def goal_expr(t):
        if type(t) is TStruct:
            return "(%s, (%s,))" % (K(t.fn), ", ".join(expr(x) for x in t.args))
        return K((t.fn, t.args if type(t) is Struct else ()))

    def expr(t):
        tt = type(t)
        if tt is Slot:
            return "x%d" % t
        if tt is TStruct:
            return "Struct(%s, (%s,))" % (K(t.fn), ", ".join(expr(x) for x in t.args))
        return K(t)

    def ensure_known(t, ind):
        stack = [t]
        while stack:
            x = stack.pop()
            if type(x) is Slot:
                if x not in known:
                    known.add(x)
                    emit("x%d = Var()" % x, ind)
            elif type(x) is TStruct:
                stack.extend(reversed(x.args))

    def deref_v(ind):
        emit("while type(v) is Var:", ind)
        emit("r = v.ref", ind + 1)
        emit("if r is None: break", ind + 1)
        emit("v = r", ind + 1)

    for i, h in enumerate(hargs):
        th = type(h)
        if th is Slot:
            if h in known:
                emit("v = a[%d]" % i)
                emit("if v is not x%d and not unify(x%d, v, trail): return None" % (h, h))
            else:
                emit("x%d = a[%d]" % (h, i))
                known.add(h)
            continue
        emit("v = a[%d]" % i)
        deref_v(1)
        if th is TStruct:
            saved = set(known)
            emit("if type(v) is Var:")
            ensure_known(h, 2)
            emit("v.ref = %s" % expr(h), 2)
            emit("trail.append(v)", 2)
            known.clear()
            known.update(saved)
            emit("elif type(v) is Struct and v.fn is %s:" % K(h.fn))
            emit("va = v.args", 2)
            for j, s in enumerate(h.args):
                ts = type(s)
                if ts is Slot:
                    if s in known:
                        emit("if va[%d] is not x%d and not unify(x%d, va[%d], trail): return None" % (j, s, s, j), 2)
                    else:
                        emit("x%d = va[%d]" % (s, j), 2)
                        known.add(s)
                elif ts is TStruct:
                    ensure_known(s, 2)
                    emit("if not unify(%s, va[%d], trail): return None" % (expr(s), j), 2)
                else:
                    emit("if not unify(%s, va[%d], trail): return None" % (K(s), j), 2)
            emit("else: return None")
        elif th is Struct:
            emit("if not unify(%s, v, trail): return None" % K(h))
        else:
            emit("if type(v) is Var:")
            emit("v.ref = %s" % K(h), 2)
            emit("trail.append(v)", 2)
            if th is Atom or th is Nil:
                emit("elif v is not %s: return None" % K(h))
            else:
                emit("elif v is not %s and (type(v) is not %s or v != %s): return None" % (K(h), K(th), K(h)))
    for b in body_rev:
        ensure_known(b, 1)
    if body_rev:
        emit("return (%s,)" % ", ".join(goal_expr(b) for b in body_rev))
    else:
        emit("return ()")
    src = "\n".join(lines)
    code = _CODE_CACHE.get(src)
    if code is None:
        if len(_CODE_CACHE) > 50_000:       # bound memory when many differently shaped programs stream through
            _CODE_CACHE.clear()
        code = _CODE_CACHE[src] = compile(src, "<clause>", "exec")
    exec(code, g)
    return g["f"]


class Pred:
    """A user or library predicate: its clauses in order plus a lazily built first-argument index
    (`index`: key -> candidate clauses; `index1`: key -> the code of the only candidate, the common fast case)."""
    __slots__ = ("fn", "clauses", "index", "index1", "varclauses", "dynamic", "library")

    def __init__(self, fn, dynamic=False, library=False):
        self.fn, self.clauses, self.dynamic, self.library = fn, [], dynamic, library
        self.index = None
        self.index1 = None
        self.varclauses = None

    def build_index(self):
        """First-argument index: key -> clauses that may match (in order), plus the var-first-arg clauses."""
        idx = {}
        varcl = []
        for c in self.clauses:
            if c.key is None:
                varcl.append(c)
                for lst in idx.values():
                    lst.append(c)
            else:
                lst = idx.get(c.key)
                if lst is None:
                    lst = idx[c.key] = list(varcl)
                lst.append(c)
        self.index, self.varclauses = idx, varcl
        self.index1 = {k: v[0].code for k, v in idx.items() if len(v) == 1}

    def add(self, c, front=False):
        if front:
            self.clauses = [c] + self.clauses
            self.index = None
        else:
            self.clauses.append(c)
            if self.index is not None:      # incremental update keeps assertz O(1)
                if c.key is None:
                    self.varclauses.append(c)
                    for lst in self.index.values():
                        lst.append(c)
                else:
                    lst = self.index.get(c.key)
                    if lst is None:
                        lst = self.index[c.key] = list(self.varclauses)
                    lst.append(c)
                self.index1 = {k: v[0].code for k, v in self.index.items() if len(v) == 1} \
                    if len(self.index) < 64 else {}


def _check_callable_body(g):
    """Raise type_error(callable, G) if a control structure contains a non-callable leaf (as SWI does)."""
    stack = [g]
    seen = set()
    while stack:
        x = deref(stack.pop())
        tx = type(x)
        if tx is Struct:
            if x.fn in _CONTROL_FNS and id(x) not in seen:    # seen: a cyclic goal must not loop here
                seen.add(id(x))
                stack.extend(x.args)
        elif tx is not Atom and tx is not Var:
            raise type_error("callable", g)


def compile_clause(term, library=False):
    """Clause term -> (Functor, Clause)."""
    term = deref(term)
    if not is_acyclic(term):
        raise type_error("acyclic_term", _CYCLIC)
    if type(term) is Struct and term.fn is NECK:
        head, body = deref(term.args[0]), deref(term.args[1])
    else:
        head, body = term, TRUE
    if type(head) is Var:
        raise inst_error()
    if type(head) is not Struct and type(head) is not Atom:
        raise type_error("callable", head)
    # flatten the body conjunction; variable goals become call/1
    goals, stack = [], [body]
    while stack:
        g = deref(stack.pop())
        if type(g) is Struct and g.fn is COMMA:
            stack.append(g.args[1])
            stack.append(g.args[0])
        elif type(g) is Var:
            goals.append(Struct(CALL1, (g,)))
        elif type(g) is Atom and g is TRUE and len(goals) + len(stack) > 0:
            continue
        elif type(g) is Struct or type(g) is Atom:
            if type(g) is Struct and g.fn in _CONTROL_FNS:
                _check_callable_body(g)
            goals.append(g)
        else:
            raise type_error("callable", body)
    if goals == [TRUE]:
        goals = []
    varmap = {}
    hargs = tuple(_template(a, varmap) for a in head.args) if type(head) is Struct else ()
    body_t = tuple(_template(g, varmap) for g in reversed(goals))
    key = None
    if hargs:
        h0 = hargs[0]
        th = type(h0)
        if th is TStruct:
            key = h0.fn
        elif th is not Slot:
            key = _index_key(h0)
    return head.fn, Clause(hargs, body_t, len(varmap), key, term)


class _Special:
    __slots__ = ("kind", "a", "b")

    def __init__(self, kind, a=None, b=None):
        self.kind, self.a, self.b = kind, a, b


_S_SOLUTION, _S_CUTTO, _S_SOFTCUT, _S_COLLECT, _S_EXITCATCH, _S_CALL = range(6)
_SOLUTION = _Special(_S_SOLUTION)
_CP_CLAUSES, _CP_ALT, _CP_ITER, _CP_CATCH, _CP_FINDALL, _CP_DEAD = range(6)
_FAIL_NODE = (functor_of("fail", 0), (), 0, None)

NECK = functor_of(":-", 2)
CALL1 = functor_of("call", 1)
FAIL = mkatom("fail")
(C_TRUE, C_FAIL, C_CONJ, C_CUT, C_DISJ, C_IFTHEN, C_SOFTCUT, C_NOT, C_CALL, C_FINDALL, C_FINDALL4,
 C_CATCH, C_THROW, C_ONCE, C_FORALL, C_LAMBDA) = range(16)
IFTHEN = functor_of("->", 2)
SOFTCUT = functor_of("*->", 2)
_CONTROL = {("true", 0): C_TRUE, ("otherwise", 0): C_TRUE, ("fail", 0): C_FAIL, ("false", 0): C_FAIL,
            (",", 2): C_CONJ, ("!", 0): C_CUT, (";", 2): C_DISJ, ("|", 2): C_DISJ, ("->", 2): C_IFTHEN,
            ("*->", 2): C_SOFTCUT,
            ("\\+", 1): C_NOT, ("not", 1): C_NOT, ("findall", 3): C_FINDALL, ("findall", 4): C_FINDALL4,
            ("catch", 3): C_CATCH, ("throw", 1): C_THROW, ("once", 1): C_ONCE, ("forall", 2): C_FORALL}
for _n in range(1, 9):
    _CONTROL[("call", _n)] = C_CALL
    _CONTROL[(">>", _n + 1)] = C_LAMBDA          # library(yall): [X1,...]>>Goal called with extra arguments
_CONTROL_FNS = {functor_of(",", 2), functor_of(";", 2), functor_of("->", 2), functor_of("*->", 2),
                functor_of("|", 2)}


def _goal_node(t, cb, nxt, strict=False):
    """Continuation node for a goal term. A variable (or other non-callable) goal is deferred: it is
    dereferenced when it is reached, so `(X = true, X)` works; `strict` raises type errors at once."""
    t = deref(t)
    tt = type(t)
    if tt is Struct:
        return (t.fn, t.args, cb, nxt)
    if tt is Atom:
        return (t.fn, (), cb, nxt)
    if tt is Var:
        if strict:
            raise inst_error()
        return (_Special(_S_CALL, t), None, cb, nxt)
    if strict:
        raise type_error("callable", t)
    return (_Special(_S_CALL, t), None, cb, nxt)


class _Det:
    __slots__ = ("f",)

    def __init__(self, f):
        self.f = f


class _NonDet:
    __slots__ = ("f",)

    def __init__(self, f):
        self.f = f


BUILTINS: dict = {}      # Functor -> _Det | _NonDet, filled in the Builtins section


def det(name, arity):
    def deco(f):
        BUILTINS[functor_of(name, arity)] = _Det(f)
        return f
    return deco


def nondet(name, arity):
    def deco(f):
        BUILTINS[functor_of(name, arity)] = _NonDet(f)
        return f
    return deco


def _add_args(g, extra):
    g = deref(g)
    if type(g) is Var:
        raise inst_error()
    if not extra:
        return g
    if type(g) is Atom:
        return Struct(functor_of(g.name, len(extra)), tuple(extra))
    if type(g) is Struct:
        return Struct(functor_of(g.fn.name, g.fn.arity + len(extra)), g.args + tuple(extra))
    raise type_error("callable", g)


@contextlib.contextmanager
def _gc_paused():
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# ==== A8. Appendix, Prolog: DCG translation (H --> B) and library(yall) lambdas =======================================
DCG_ARROW = functor_of("-->", 2)
_EQ2 = functor_of("=", 2)


def _dcg_body(b, s0, s):
    """Translate a DCG body into a goal threading the difference list S0 -> S (SWI's translation, without
    pushback). Iterative over the control structure via an explicit stack of pending translations."""
    b = deref(b)
    tb = type(b)
    if tb is Var:
        return mkstruct("phrase", b, s0, s)
    if b is NIL:
        return Struct(_EQ2, (s0, s))
    if tb is PString:
        return Struct(_EQ2, (s0, list_from_py([ord(c) for c in b.val], s)))
    if tb is Struct and b.fn is LIST:
        items = list_to_py(b)
        if items is None:
            raise type_error("list", b)
        return Struct(_EQ2, (s0, list_from_py(items, s)))
    if tb is Atom and b.name == "!":
        return Struct(COMMA, (b, Struct(_EQ2, (s0, s))))
    if tb is Atom and b.name == "{}":
        return Struct(_EQ2, (s0, s))
    if tb is Struct:
        name, n = b.fn.name, b.fn.arity
        if b.fn is COMMA:
            mid = Var()
            return Struct(COMMA, (_dcg_body(b.args[0], s0, mid), _dcg_body(b.args[1], mid, s)))
        if name in (";", "|") and n == 2:
            return mkstruct(";", _dcg_body(b.args[0], s0, s), _dcg_body(b.args[1], s0, s))
        if name == "->" and n == 2:
            mid = Var()
            return mkstruct("->", _dcg_body(b.args[0], s0, mid), _dcg_body(b.args[1], mid, s))
        if name == "\\+" and n == 1:
            return Struct(COMMA, (mkstruct("\\+", _dcg_body(b.args[0], s0, Var())), Struct(_EQ2, (s0, s))))
        if b.fn is CURLY:
            return Struct(COMMA, (b.args[0], Struct(_EQ2, (s0, s))))
        if name == "call":
            return Struct(functor_of("call", n + 2), b.args + (s0, s))
        return Struct(functor_of(name, n + 2), b.args + (s0, s))
    if tb is Atom:
        return Struct(functor_of(b.name, 2), (s0, s))
    raise type_error("callable", b)


def dcg_translate(rule):
    """(H --> B) -> (H' :- B') with two extra arguments (SWI's DCG translation; pushback is not supported)."""
    h, b = deref(rule.args[0]), rule.args[1]
    s0, s = Var(), Var()
    if type(h) is Struct and h.fn is COMMA:
        raise PrologError("permission_error(dcg,pushback,(-->)/2)", "DCG pushback is not supported")
    if type(h) is Atom:
        head = Struct(functor_of(h.name, 2), (s0, s))
    elif type(h) is Struct:
        head = Struct(functor_of(h.fn.name, h.fn.arity + 2), h.args + (s0, s))
    elif type(h) is Var:
        raise inst_error()
    else:
        raise type_error("callable", h)
    return Struct(NECK, (head, _dcg_body(b, s0, s)))


def _yall_goal(args):
    """library(yall): `Free/[X1,..]>>Body` applied to actual arguments. The lambda is copied before the call
    except for the variables of Free (yall's semantics: other outside variables are renamed unless bound)."""
    params, body = deref(args[0]), args[1]
    actual = list(args[2:])
    free = NIL
    if type(params) is Struct and params.fn.name == "/" and params.fn.arity == 2:
        free, params = params.args
    keep = {v: v for v in term_vars(free)}

    def fresh(v):
        nv = keep.get(v)
        if nv is None:
            nv = keep[v] = Var()
        return nv
    lam = _rebuild(mkstruct("l", params, body), fresh)
    params, body = deref(lam.args[0]), lam.args[1]
    plist = list_to_py(params) if params is not NIL else []
    if plist is None:
        raise type_error("lambda_parameters", params)
    trail = []                                    # the copy is private: its bindings never need undoing
    k = min(len(plist), len(actual))
    for p_, a_ in zip(plist[:k], actual[:k]):
        if not unify(p_, a_, trail):
            return FAIL
    rest = actual[k:]
    return _add_args(body, tuple(rest)) if rest else deref(body)


@dataclass


# ==== A9. Appendix, Prolog: the iterative solver (class Prolog) and solve() ===========================================
class QueryResult:
    """Everything one query produced: answers (SWI writeq text), whether the solution cap cut them off,
    inferences used, and the captured output of write/format."""
    solutions: list
    truncated: bool
    inferences: int
    output: str


class Prolog:
    """A Prolog database plus the iterative solver.

    >>> Prolog("app([],L,L). app([H|T],L,[H|R]) :- app(T,L,R).").query("app(X, Y, [1,2])")
    [{'X': '[]', 'Y': '[1,2]'}, {'X': '[1]', 'Y': '[2]'}, {'X': '[1,2]', 'Y': '[]'}]
    """

    def __init__(self, program: str = "", max_inferences: int = 1_000_000, max_depth: int = 1_000_000,
                 max_choicepoints: int = 1_000_000):
        self.table = dict(_BASE_TABLE)           # Functor -> Pred | control code | _Det | _NonDet
        self.flags = {"double_quotes": "string", "unknown": "error"}
        self.out = []
        self.trail = []
        self.cps = []
        self.extra = 0
        self.inferences = 0
        self.max_inferences = max_inferences
        self.max_depth = max_depth
        self.max_choicepoints = max_choicepoints
        self.globals = {}
        if program:
            self.consult(program)

    # ---- database -------------------------------------------------------------------------------------------
    def _pred_for_update(self, fn, dynamic=False, from_consult=False, seen=None):
        e = self.table.get(fn)
        if e is None:
            e = self.table[fn] = Pred(fn, dynamic=dynamic)
            return e
        if type(e) is Pred:
            if e.library:
                if from_consult or dynamic or e.dynamic:
                    # a user definition replaces the library one (as SWI's autoload is overridden by user code)
                    e = self.table[fn] = Pred(fn, dynamic=dynamic or e.dynamic)
                    return e
                raise permission_error("modify", "static_procedure", indicator(fn))
            if not from_consult and not e.dynamic and e.clauses:
                raise permission_error("modify", "static_procedure", indicator(fn))
            return e
        raise permission_error("modify", "static_procedure", indicator(fn))

    def consult(self, text: str):
        """Load clauses and run directives. Raises PrologSyntaxError / PrologError."""
        with _gc_paused():
            self._consult(text)

    def _consult(self, text):
        parser = _Parser(text, self.flags)
        while True:
            r = parser.read_clause()
            if r is None:
                break
            term, _ = r
            term = deref(term)
            if type(term) is Struct and term.fn.name == ":-" and term.fn.arity == 1:
                self._directive(term.args[0])
                continue
            try:
                if type(term) is Struct and term.fn is DCG_ARROW:
                    term = dcg_translate(term)
                fn, c = compile_clause(term)
                self._pred_for_update(fn, from_consult=True).add(c)
            except PrologThrow as e:
                raise PrologError(self._ball_text(e.ball)) from None
            except RecursionError:                    # a pathologically nested DCG body
                raise PrologError("resource_error(python_recursion)") from None

    def _directive(self, d):
        d = deref(d)
        if type(d) is Struct and d.fn.name in ("dynamic", "discontiguous", "table") and d.fn.arity == 1:
            if d.fn.name == "dynamic":
                self._declare_dynamic(d.args[0])
            return
        if type(d) is Struct and d.fn.name in ("use_module", "ensure_loaded", "initialization", "module",
                                               "style_check", "set_prolog_flag"):
            if d.fn.name == "set_prolog_flag":
                f, v = deref(d.args[0]), deref(d.args[1])
                if type(f) is Atom and type(v) is Atom:
                    self.flags[f.name] = v.name
            return
        list(self._solve_goal(d, 1))

    def _declare_dynamic(self, spec):
        if not is_acyclic(spec):
            raise PrologError("type_error(acyclic_term,'$cyclic_term')")
        stack = [spec]
        while stack:
            s = deref(stack.pop())
            if type(s) is Struct and s.fn.name in (",", "/") and s.fn.arity == 2 and s.fn.name == ",":
                stack.extend(s.args)
            elif type(s) is Struct and s.fn is LIST:
                stack.extend(list_to_py(s) or [])
            elif type(s) is Struct and s.fn.name == "//" and s.fn.arity == 2:
                stack.append(mkstruct("/", s.args[0], _int(s.args[1]) + 2))
            elif type(s) is Struct and s.fn.name == "/" and s.fn.arity == 2:
                n, a = deref(s.args[0]), deref(s.args[1])
                if type(n) is not Atom or type(a) is not int:
                    raise PrologError("type_error(predicate_indicator," + term_to_text(s) + ")")
                fn = functor_of(n.name, a)
                p = self._pred_for_update(fn, dynamic=True, from_consult=True)
                p.dynamic = True
            elif s is not NIL:
                raise PrologError("type_error(predicate_indicator," + term_to_text(s) + ")")

    # ---- queries --------------------------------------------------------------------------------------------
    def query(self, query: str, max_solutions: int = 1000, max_inferences: int | None = None) -> list:
        """All answers (up to max_solutions) as dicts {var name: writeq text}, in SWI-Prolog order."""
        return self.run(query, max_solutions, max_inferences).solutions

    def run(self, query: str, max_solutions: int = 1000, max_inferences: int | None = None) -> QueryResult:
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        if not isinstance(max_solutions, int) or max_solutions < 0:
            raise ValueError(f"max_solutions must be an int >= 0, got {max_solutions!r}")
        parser = _Parser(query.strip() if query.strip().endswith(".") else query + " .", self.flags)
        r = parser.read_clause()
        if r is None:
            raise PrologSyntaxError("empty query", 1, 1)
        if not parser.at_eof():
            raise parser.error("end of clause expected")
        goal, varmap = r
        names = [(n, v) for n, v in varmap.items() if not n.startswith("_")]
        if max_inferences is not None:
            self.max_inferences = max_inferences
        self.out = []
        sols = []
        truncated = False
        self.inferences = 0
        for _ in self._solve_goal(goal, max_solutions + 1):
            if len(sols) == max_solutions:
                truncated = True
                break
            sols.append(self._answer(names))
        return QueryResult(sols, truncated, self.inferences, "".join(self.out))

    def _answer(self, names):
        letters = {}

        class _W(_Writer):
            def var_name(self, v):
                n = letters.get(id(v))
                if n is None:
                    n = letters[id(v)] = "_" + _var_letter(len(letters))
                return n
        w = _W(True, False, True, None, 10_000_000)
        ans = {}
        for n, v in names:
            try:
                ans[n] = w.write(v)      # the writer checks for cycles once a term gets large
            except _Budget as e:
                raise PrologError(str(e)) from None
            except PrologThrow:
                raise PrologError("cyclic_term", f"the answer for {n} is a cyclic (rational) term") from None
        return ans

    def _ball_text(self, ball):
        ball = deref(ball)
        if type(ball) is Struct and ball.fn is ERROR2:
            ball = ball.args[0]
        if not is_acyclic(ball):
            return "cyclic_term"
        limit, _WORK[1] = _WORK[1], 1 << 62      # the error text is bounded by max_chars, not by the budget
        try:
            return term_to_text(ball, max_chars=10_000)
        except _Budget:                  # type_error(atom, <a 2^60-node term>): name the error, elide the culprit
            if type(ball) is not Struct:
                return "resource_error(term_too_large)"
            args = []
            for x in ball.args:
                try:
                    args.append(term_to_text(x, max_chars=1000))
                except _Budget:
                    args.append("...")
            return f"{atom_text(ball.fn.name, True)}({','.join(args)})"
        finally:
            _WORK[1] = limit

    def _solve_goal(self, goal, max_solutions):
        """Generator over solutions of `goal` (bindings are live while the generator is suspended)."""
        trail, cps = self.trail, self.cps
        base, base_trail = len(cps), len(trail)
        gen = self._run(goal, base)
        n = 0
        # Prolog terms are millions of small GC-tracked objects: a cyclic-GC pass over a big heap (e.g. with
        # torch loaded) per allocation burst made deep-term queries ~5x slower. Reference counting frees them.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        saved_work = _WORK[:]
        _WORK[0], _WORK[1] = 0, 16 * self.max_inferences
        try:
            for _ in gen:
                n += 1
                yield True
                if n >= max_solutions:
                    break
        except _Budget as e:
            raise PrologError(str(e)) from None
        except PrologThrow as e:
            raise PrologError(self._ball_text(e.ball)) from None
        except RecursionError:
            raise PrologError("resource_error(python_recursion)") from None
        except MemoryError:
            raise PrologError("resource_error(memory)") from None
        except (ValueError, OverflowError, TypeError, IndexError, KeyError, AttributeError, UnicodeError,
                ZeroDivisionError) as e:
            # a builtin met an input it does not handle: still only the documented exception type escapes
            raise PrologError(f"system_error(python_{type(e).__name__})", f"internal error: {e!r}") from None
        finally:
            gen.close()
            del cps[base:]
            undo(trail, base_trail)
            _WORK[:] = saved_work
            if gc_was_enabled:
                gc.enable()

    def charge(self, n):
        self.extra += n

    def _run(self, goal, base):
        # The continuation is a linked list of nodes (functor, args, cut_barrier, next); choicepoints are lists
        # [kind, trail_mark, ...] on self.cps. Cut to barrier b = drop choicepoints above index b.
        trail, cps, table = self.trail, self.cps, self.table
        cont = _goal_node(goal, base, (_SOLUTION, None, base, None))
        ninf = self.inferences
        limit = self.max_inferences
        next_check = min(ninf + 65536, limit + 1)
        ok = True
        while True:
            try:
                while True:
                    if not ok:
                        # ---------------- backtrack to the newest choicepoint ----------------
                        while True:
                            if len(cps) <= base:
                                self.inferences = ninf
                                return
                            cp = cps[-1]
                            m = cp[1]
                            while len(trail) > m:
                                trail.pop().ref = None
                            k = cp[0]
                            if k == _CP_CLAUSES:
                                args, cands, i, n = cp[3], cp[4], cp[5], cp[6]
                                cutb = len(cps) - 1
                                while i < n:
                                    body = cands[i].code(args, trail)
                                    i += 1
                                    if body is not None:
                                        break
                                    while len(trail) > m:
                                        trail.pop().ref = None
                                else:
                                    cps.pop()
                                    continue
                                if i < n:
                                    cp[5] = i
                                else:
                                    cps.pop()
                                cont = cp[2]
                                for fn, args in body:
                                    cont = (fn, args, cutb, cont)
                                break
                            if k == _CP_ALT:
                                cps.pop()
                                cont = cp[2]
                                break
                            if k == _CP_ITER:
                                # each retry of a non-deterministic builtin is one more inference (otherwise
                                # findall(X, between(1, inf, X), L) would never meet the budget)
                                ninf += 1 + self.extra
                                self.extra = 0
                                if ninf > limit:
                                    raise _Budget("resource_error(inferences)")
                                try:
                                    next(cp[3])
                                except StopIteration:
                                    cps.pop()
                                    continue
                                cont = cp[2]
                                break
                            if k == _CP_FINDALL:
                                cps.pop()
                                res = list_from_py(cp[3], cp[5])
                                if unify(cp[4], res, trail):
                                    cont = cp[2]
                                    break
                                continue
                            cps.pop()       # catch frames and dead alternatives just disappear
                        ok = True
                    # ---------------- call the next goal ----------------
                    fn, args, cb, cont = cont
                    entry = table.get(fn)
                    ninf += 1
                    if type(entry) is Pred:
                        if ninf >= next_check:
                            next_check = min(ninf + 65536, limit + 1)
                            if ninf > limit:
                                raise _Budget("resource_error(inferences)")
                            self._check_stacks(cont)
                        cands = entry.clauses
                        n = len(cands)
                        if n > 1 and args:
                            a0 = args[0]
                            while type(a0) is Var:
                                r = a0.ref
                                if r is None:
                                    break
                                a0 = r
                            if type(a0) is not Var:
                                idx = entry.index
                                if idx is None:
                                    entry.build_index()
                                    idx = entry.index
                                ta = type(a0)
                                key = a0.fn if ta is Struct else (a0 if ta is not float and ta is not PString
                                                                  else _index_key(a0))
                                code = entry.index1.get(key)
                                if code is not None:      # exactly one candidate clause: no choicepoint
                                    body = code(args, trail)
                                    if body is None:
                                        ok = False
                                        continue
                                    cutb = len(cps)
                                    for fn, args in body:
                                        cont = (fn, args, cutb, cont)
                                    continue
                                cands = idx.get(key, entry.varclauses)
                                n = len(cands)
                        if n == 1:
                            body = cands[0].code(args, trail)
                            if body is None:
                                ok = False
                                continue
                            cutb = len(cps)
                            for fn, args in body:
                                cont = (fn, args, cutb, cont)
                            continue
                        m = len(trail)
                        i = 0
                        while i < n:
                            body = cands[i].code(args, trail)
                            i += 1
                            if body is not None:
                                break
                            while len(trail) > m:
                                trail.pop().ref = None
                        else:
                            ok = False
                            continue
                        cutb = len(cps)
                        if i < n:
                            cps.append([_CP_CLAUSES, m, cont, args, cands, i, n])
                        for fn, args in body:
                            cont = (fn, args, cutb, cont)
                        continue
                    if entry is None:
                        if type(fn) is _Special:
                            ninf -= 1
                            sk = fn.kind
                            if sk == _S_CUTTO:
                                del cps[fn.a:]
                            elif sk == _S_COLLECT:
                                fn.a.append(copy_term(fn.b, self.charge))
                                ok = False
                            elif sk == _S_EXITCATCH:
                                cp = fn.a
                                if cps and cps[-1] is cp:
                                    cps.pop()
                                else:
                                    cp[6].ref = TRUE
                                    trail.append(cp[6])
                            elif sk == _S_SOFTCUT:
                                fn.a[0] = _CP_DEAD
                            elif sk == _S_CALL:
                                # a goal that was a variable when pushed: call/1 semantics, so cut is local
                                cont = _goal_node(fn.a, len(cps), cont, strict=True)
                            else:  # solution
                                self.inferences = ninf
                                yield True
                                ninf = self.inferences
                                ok = False
                            continue
                        if self.flags.get("unknown") == "fail":
                            ok = False
                            continue
                        raise existence_error("procedure", indicator(fn))
                    if ninf > limit:
                        raise _Budget("resource_error(inferences)")
                    te = type(entry)
                    if te is _Det:
                        if not entry.f(self, args):
                            ok = False
                        if self.extra:
                            ninf += self.extra
                            self.extra = 0
                            if ninf > limit:
                                raise _Budget("resource_error(inferences)")
                        continue
                    if te is _NonDet:
                        it = entry.f(self, args)
                        cps.append([_CP_ITER, len(trail), cont, it])
                        try:
                            next(it)
                        except StopIteration:
                            cps.pop()
                            ok = False
                        if self.extra:
                            ninf += self.extra
                            self.extra = 0
                            if ninf > limit:
                                raise _Budget("resource_error(inferences)")
                        continue
                    # ---------------- control constructs ----------------
                    if entry == C_CONJ:
                        # counted (SWI does not count ','/2): a cyclic goal G = (G, true) must meet the budget
                        cont = _goal_node(args[0], cb, _goal_node(args[1], cb, cont))
                    elif entry == C_TRUE:
                        pass
                    elif entry == C_CUT:
                        del cps[cb:]
                    elif entry == C_FAIL:
                        ok = False
                    elif entry == C_DISJ:
                        lhs = deref(args[0])
                        k = len(cps)
                        cps.append([_CP_ALT, len(trail), _goal_node(args[1], cb, cont)])
                        if type(lhs) is Struct and lhs.fn is IFTHEN:
                            cont = _goal_node(lhs.args[0], k + 1, (_Special(_S_CUTTO, k), None, cb,
                                                                   _goal_node(lhs.args[1], cb, cont)))
                        elif type(lhs) is Struct and lhs.fn is SOFTCUT:
                            cont = _goal_node(lhs.args[0], k + 1, (_Special(_S_SOFTCUT, cps[k]), None, cb,
                                                                   _goal_node(lhs.args[1], cb, cont)))
                        else:
                            cont = _goal_node(lhs, cb, cont)
                    elif entry == C_IFTHEN:
                        k = len(cps)
                        cont = _goal_node(args[0], k, (_Special(_S_CUTTO, k), None, cb,
                                                       _goal_node(args[1], cb, cont)))
                    elif entry == C_SOFTCUT:
                        cont = _goal_node(args[0], len(cps), _goal_node(args[1], cb, cont))
                    elif entry == C_CALL:
                        g = _add_args(args[0], args[1:])
                        if type(g) is Struct and g.fn in _CONTROL_FNS:
                            _check_callable_body(g)
                        cont = _goal_node(g, len(cps), cont, strict=True)
                    elif entry == C_NOT:
                        k = len(cps)
                        g = _add_args(args[0], ())
                        cps.append([_CP_ALT, len(trail), cont])
                        cont = _goal_node(g, k + 1, (_Special(_S_CUTTO, k), None, cb, _FAIL_NODE), strict=True)
                    elif entry == C_ONCE:
                        k = len(cps)
                        cont = _goal_node(_add_args(args[0], ()), k, (_Special(_S_CUTTO, k), None, cb, cont),
                                          strict=True)
                    elif entry == C_FINDALL or entry == C_FINDALL4:
                        acc = []
                        k = len(cps)
                        tail = args[3] if entry == C_FINDALL4 else NIL
                        cps.append([_CP_FINDALL, len(trail), cont, acc, args[2], tail])
                        cont = _goal_node(_add_args(args[1], ()), k + 1,
                                          (_Special(_S_COLLECT, acc, args[0]), None, cb, None), strict=True)
                    elif entry == C_FORALL:
                        # forall(C, A) :- \\+ (C, \\+ A)
                        k = len(cps)
                        cps.append([_CP_ALT, len(trail), cont])
                        inner = Struct(functor_of("\\+", 1), (args[1],))
                        cont = _goal_node(Struct(COMMA, (args[0], inner)), k + 1,
                                          (_Special(_S_CUTTO, k), None, cb, _FAIL_NODE))
                    elif entry == C_CATCH:
                        k = len(cps)
                        cp = [_CP_CATCH, len(trail), cont, args[1], args[2], cb, Var()]
                        cps.append(cp)
                        cont = _goal_node(_add_args(args[0], ()), k + 1,
                                          (_Special(_S_EXITCATCH, cp), None, cb, cont), strict=True)
                    elif entry == C_LAMBDA:
                        cont = _goal_node(_yall_goal(args), len(cps), cont, strict=True)
                    elif entry == C_THROW:
                        ball = deref(args[0])
                        if type(ball) is Var:
                            raise inst_error()
                        raise PrologThrow(copy_term(ball))
            except PrologThrow as e:
                ball = e.ball
                ok = False
                while len(cps) > base:
                    cp = cps.pop()
                    if cp[0] == _CP_CATCH and cp[6].ref is None:
                        undo(trail, cp[1])
                        m = len(trail)
                        if unify(cp[3], ball, trail):
                            cont = _goal_node(cp[4], len(cps), cp[2])
                            ok = True
                            break
                        undo(trail, m)
                if not ok:
                    self.inferences = ninf
                    raise

    def _check_stacks(self, cont):
        cps, trail = self.cps, self.trail
        if len(cps) > self.max_choicepoints:
            raise _Budget("resource_error(choicepoints)")
        if not cps:
            trail.clear()       # nothing can backtrack: bindings never need undoing
        d, lim = 0, self.max_depth
        while cont is not None:
            d += 1
            if d > lim:
                raise _Budget("resource_error(stack)")
            cont = cont[3]


_BASE_TABLE: dict = {}


def solve(program: str, query: str, max_solutions: int = 1000, max_inferences: int = 1_000_000) -> list:
    """Run `query` against `program`; answers in SWI order as {var: writeq text} (card §4.4, DESIGN.md).

    Raises PrologSyntaxError (line, column), PrologError (uncaught exception or budget: 'resource_error(...)').
    """
    if not isinstance(program, str):
        raise TypeError(f"program must be a str, got {type(program).__name__}")
    if not isinstance(max_inferences, int) or max_inferences <= 0:
        raise ValueError(f"max_inferences must be a positive int, got {max_inferences!r}")
    eng = Prolog(max_inferences=max_inferences)
    eng.consult(program)
    eng.inferences = 0
    return eng.query(query, max_solutions=max_solutions, max_inferences=max_inferences)


# ==== A10. Appendix, Prolog: builtins =================================================================================
# Each deterministic builtin is f(engine, args) -> bool; each non-deterministic one is a generator that performs
# its bindings and yields once per solution (the solver undoes the trail between solutions).


def _int(t, allow_var=False):
    t = deref(t)
    if type(t) is int:
        return t
    if type(t) is Var:
        if allow_var:
            return None
        raise inst_error()
    raise type_error("integer", t)


def _callable_name(t):
    t = deref(t)
    if type(t) is Var:
        raise inst_error()
    if type(t) is not Atom:
        raise type_error("atom", t)
    return t.name


def _reserve(eng, n):
    """Charge n inferences up front for a builtin about to do O(n) work, so huge requests (length(L, 10**9))
    fail fast with the budget error instead of allocating."""
    if n > eng.max_inferences:
        raise _Budget("resource_error(inferences)")
    eng.extra += n


def _py_list(t, eng=None):
    """Proper list -> Python list; partial list -> instantiation_error; otherwise type_error(list)."""
    out = []
    x = deref(t)
    while type(x) is Struct and x.fn is LIST:
        out.append(x.args[0])
        x = deref(x.args[1])
        if len(out) == _CYCLE_CHECK_AFTER and not is_acyclic(t):
            raise type_error("list", _CYCLIC)
    if x is NIL:
        if eng is not None:
            eng.extra += len(out) >> 4
        return out
    if type(x) is Var:
        raise inst_error()
    raise type_error("list", t)


def text_of(t, what="text"):
    """Text of an atom, string, number, code list or char list (SWI's permissive text conversion)."""
    t = deref(t)
    tt = type(t)
    if tt is Atom or tt is PString or tt is int or tt is float or tt is Var:
        return atomic_text(t, what)
    if t is NIL:
        return "[]" if what != "list" else ""
    if tt is Struct and t.fn is LIST:
        items = list_to_py(t)
        if items is None:
            if what == "list":
                _py_list(t)               # a partial list [a|_] is an instantiation error (SWI)
            raise type_error(what, t)
        _meter(2 * len(items))            # a code / char list is walked once per call
        chars = []
        for x in items:
            x = deref(x)
            if type(x) is int and 0 <= x <= 0x10FFFF:
                chars.append(chr(x))
            elif type(x) is Atom and len(x.name) == 1:
                chars.append(x.name)
            elif type(x) is Var:
                raise inst_error()
            else:
                raise type_error(what, t)
        return "".join(chars)
    raise type_error(what, t)


def list_text(t):
    """Text of a code list, char list or string, as the list argument of atom_codes/2 & co. (SWI: an atom there
    is a type_error(list, ...))."""
    t = deref(t)
    if type(t) is Var:
        raise inst_error()
    if type(t) is PString:
        return t.val
    if t is NIL or (type(t) is Struct and t.fn is LIST):
        _py_list(t)                       # a partial list [a|_] is an instantiation error (SWI), [a|b] a type error
        return text_of(t, "list")
    raise type_error("list", t)


def atomic_text(t, kind="atomic"):
    """Text of an atom, string or number only (atomic_list_concat elements, upcase_atom, ...)."""
    t = deref(t)
    tt = type(t)
    if tt is Atom:
        return t.name
    if tt is PString:
        return t.val
    if tt is int:
        return _int_text(t)
    if tt is float:
        return format_float(t)
    if tt is Var:
        raise inst_error()
    raise type_error(kind, t)


def parse_number(s, strict=False):
    """Prolog number syntax -> int/float, or None. `strict`: no surrounding layout (atom_number/2)."""
    if strict and s != s.strip():
        return None
    s = s.strip()
    if not s:
        return None
    try:
        toks = tokenize(s)
    except PrologSyntaxError:
        return None
    neg = False
    if len(toks) == 3 and toks[0].kind == "atom" and toks[0].val in ("-", "+"):
        neg = toks[0].val == "-"
        toks = toks[1:]
    if len(toks) == 2 and toks[0].kind in ("int", "float"):
        v = toks[0].val
        return -v if neg else v
    return None


def _char_list(s):
    _meter(len(s))                        # text -> list: metered by its length
    return list_from_py([mkatom(c) for c in s])


def _code_list(s):
    _meter(len(s))
    return list_from_py([ord(c) for c in s])


# -- unification and comparison
@det("=", 2)
def _b_unify(eng, a):
    return unify(a[0], a[1], eng.trail)


@det("\\=", 2)
def _b_not_unify(eng, a):
    m = len(eng.trail)
    r = unify(a[0], a[1], eng.trail)
    undo(eng.trail, m)
    return not r


@det("unify_with_occurs_check", 2)
def _b_unify_oc(eng, a):
    return unify_occurs_check(a[0], a[1], eng.trail)


@det("==", 2)
def _b_eq(eng, a):
    return compare_terms(a[0], a[1]) == 0


@det("\\==", 2)
def _b_neq(eng, a):
    return compare_terms(a[0], a[1]) != 0


@det("@<", 2)
def _b_lt(eng, a):
    return compare_terms(a[0], a[1]) < 0


@det("@>", 2)
def _b_gt(eng, a):
    return compare_terms(a[0], a[1]) > 0


@det("@=<", 2)
def _b_le(eng, a):
    return compare_terms(a[0], a[1]) <= 0


@det("@>=", 2)
def _b_ge(eng, a):
    return compare_terms(a[0], a[1]) >= 0


@det("=@=", 2)
def _b_variant(eng, a):
    return variant(a[0], a[1])


@det("\\=@=", 2)
def _b_not_variant(eng, a):
    return not variant(a[0], a[1])


@det("compare", 3)
def _b_compare(eng, a):
    o = deref(a[0])
    if type(o) is not Var:
        if type(o) is not Atom:
            raise type_error("atom", o)
        if o.name not in ("<", ">", "="):
            raise domain_error("order", o)
    c = compare_terms(a[1], a[2])
    return unify(a[0], mkatom("<" if c < 0 else (">" if c > 0 else "=")), eng.trail)


# -- type checks
def _typecheck(name, pred):
    BUILTINS[functor_of(name, 1)] = _Det(lambda eng, a: pred(deref(a[0])))


_typecheck("var", lambda t: type(t) is Var)
_typecheck("nonvar", lambda t: type(t) is not Var)
_typecheck("atom", lambda t: type(t) is Atom)
_typecheck("number", lambda t: type(t) is int or type(t) is float)
_typecheck("integer", lambda t: type(t) is int)
_typecheck("float", lambda t: type(t) is float)
_typecheck("atomic", lambda t: type(t) is not Var and type(t) is not Struct)
_typecheck("compound", lambda t: type(t) is Struct)
_typecheck("callable", lambda t: type(t) is Struct or type(t) is Atom)
@det("is_list", 1)
def _b_is_list(eng, a):
    items = list_to_py(a[0])
    eng.extra += len(items) >> 4 if items is not None else 0
    return items is not None
_typecheck("string", lambda t: type(t) is PString)
_typecheck("ground", is_ground)
_typecheck("is_dict", lambda t: False)
_typecheck("is_assoc", lambda t: False)
_typecheck("cyclic_term", lambda t: not is_acyclic(t))
_typecheck("acyclic_term", is_acyclic)


# -- arithmetic
@det("is", 2)
def _b_is(eng, a):
    return unify(a[0], eval_arith(a[1]), eng.trail)


for _name, _test in (("=:=", lambda c: c == 0), ("=\\=", lambda c: c != 0), ("<", lambda c: c < 0),
                     (">", lambda c: c > 0), ("=<", lambda c: c <= 0), (">=", lambda c: c >= 0)):
    BUILTINS[functor_of(_name, 2)] = _Det(lambda eng, a, _t=_test: _t(num_compare(a[0], a[1])))


@det("succ", 2)
def _b_succ(eng, a):
    x, y = _int(a[0], True), _int(a[1], True)
    if x is not None:
        if x < 0:
            raise domain_error("not_less_than_zero", x)     # SWI 9.0.4: a domain error, not a type error
        return unify(a[1], x + 1, eng.trail)
    if y is None:
        raise inst_error()
    if y < 0:
        raise domain_error("not_less_than_zero", y)
    return y > 0 and unify(a[0], y - 1, eng.trail)


@det("plus", 3)
def _b_plus(eng, a):
    x, y, z = _int(a[0], True), _int(a[1], True), _int(a[2], True)
    if x is not None and y is not None:
        return unify(a[2], x + y, eng.trail)
    if x is not None and z is not None:
        return unify(a[1], z - x, eng.trail)
    if y is not None and z is not None:
        return unify(a[0], z - y, eng.trail)
    raise inst_error()


@nondet("between", 3)
def _b_between(eng, a):
    lo = _int(a[0])
    hi = deref(a[1])
    if type(hi) is Atom and hi.name in ("inf", "infinite"):
        hi = None
    else:
        hi = _int(hi)
    x = deref(a[2])
    if type(x) is not Var:
        if type(x) is not int:
            raise type_error("integer", x)
        if lo <= x and (hi is None or x <= hi):
            yield True
        return
    i = lo
    while hi is None or i <= hi:
        eng.extra += 1 if i > lo else 0
        if unify(x, i, eng.trail):
            yield True
        i += 1


# -- term construction and inspection
@nondet("repeat", 0)
def _b_repeat(eng, a):
    while True:
        eng.extra += 1
        yield True


@det("functor", 3)
def _b_functor(eng, a):
    t = deref(a[0])
    if type(t) is Var:
        name, n = deref(a[1]), deref(a[2])
        if type(name) is Var or type(n) is Var:
            raise inst_error()
        if type(n) is not int:
            raise type_error("integer", n)
        if n == 0:
            return unify(t, name, eng.trail)
        if type(name) is Struct:
            raise type_error("atomic", name)
        if type(name) is not Atom:
            raise type_error("atom", name)
        if n < 0:
            raise domain_error("not_less_than_zero", n)
        _reserve(eng, n)
        return unify(t, Struct(functor_of(name.name, n), tuple(Var() for _ in range(n))), eng.trail)
    if type(t) is Struct:
        return unify(a[1], mkatom(t.fn.name) if t.fn is not LIST else mkatom("[|]"), eng.trail) and \
            unify(a[2], t.fn.arity, eng.trail)
    return unify(a[1], t, eng.trail) and unify(a[2], 0, eng.trail)


@det("arg", 3)
def _b_arg(eng, a):
    n, t = deref(a[0]), deref(a[1])
    if type(t) is Var:
        raise inst_error()
    if type(t) is not Struct:
        raise type_error("compound", t)
    if type(n) is int:
        return 1 <= n <= len(t.args) and unify(a[2], t.args[n - 1], eng.trail)
    if type(n) is Var:
        raise inst_error()      # (SWI enumerates; the deterministic subset is enough for data programs)
    raise type_error("integer", n)


@det("=..", 2)
def _b_univ(eng, a):
    t = deref(a[0])
    if type(t) is Struct:
        name = mkatom(t.fn.name)
        eng.extra += len(t.args) >> 4
        return unify(a[1], list_from_py([name] + list(t.args)), eng.trail)
    if type(t) is not Var:
        return unify(a[1], list_from_py([t]), eng.trail)
    items = _py_list(a[1], eng)
    if not items:
        raise domain_error("non_empty_list", NIL)
    h = deref(items[0])
    if len(items) == 1:
        if type(h) is Var:
            raise inst_error()
        return unify(t, h, eng.trail)
    if type(h) is Var:
        raise inst_error()
    if type(h) is not Atom:
        raise type_error("atom" if type(h) is not Struct else "atomic", h)
    return unify(t, Struct(functor_of(h.name, len(items) - 1), tuple(items[1:])), eng.trail)


@det("copy_term", 2)
def _b_copy_term(eng, a):
    return unify(a[1], copy_term(a[0], eng.charge), eng.trail)


@det("term_variables", 2)
def _b_term_variables(eng, a):
    vs = term_vars(a[0])
    eng.extra += len(vs) >> 3
    return unify(a[1], list_from_py(vs), eng.trail)


@det("setarg", 3)
def _b_setarg(eng, a):
    raise permission_error("modify", "destructive_assignment", mkatom("setarg"))


# -- atoms, strings, numbers
@det("atom_codes", 2)
def _b_atom_codes(eng, a):
    t = deref(a[0])
    if type(t) is not Var:
        s = atomic_text(t, "atom")
        eng.extra += len(s) >> 4
        return unify(a[1], _code_list(s), eng.trail)
    return unify(t, mkatom(list_text(a[1])), eng.trail)


@det("atom_chars", 2)
def _b_atom_chars(eng, a):
    t = deref(a[0])
    if type(t) is not Var:
        s = atomic_text(t, "atom")
        eng.extra += len(s) >> 4
        return unify(a[1], _char_list(s), eng.trail)
    return unify(t, mkatom(list_text(a[1])), eng.trail)


@det("char_code", 2)
def _b_char_code(eng, a):
    c = deref(a[0])
    if type(c) is Atom:
        if len(c.name) != 1:
            raise type_error("character", c)
        return unify(a[1], ord(c.name), eng.trail)
    n = _int(a[1])
    if not 0 <= n <= 0x10FFFF:
        raise representation_error("character_code")
    return unify(c, mkatom(chr(n)), eng.trail)


@det("atom_length", 2)
def _b_atom_length(eng, a):
    t = deref(a[0])
    if type(t) is Struct and t.fn is not LIST:
        raise type_error("text", t)       # SWI: atom_length(f(x), L) is a type error, atom_length(123, L) is 3
    if type(t) is Struct:
        _py_list(t)                       # atom_length([a|_], L): instantiation error (SWI)
    s = text_of(t)
    n = deref(a[1])
    if type(n) is not Var and type(n) is not int:
        raise type_error("integer", n)
    return unify(n, len(s), eng.trail)


BUILTINS[functor_of("string_length", 2)] = BUILTINS[functor_of("atom_length", 2)]


@det("atom_number", 2)
def _b_atom_number(eng, a):
    t = deref(a[0])
    if type(t) is Var:
        n = deref(a[1])
        if type(n) is Var:
            raise inst_error()
        return unify(t, mkatom(text_of(n)), eng.trail)
    if type(t) is not Atom and type(t) is not PString:
        raise type_error("atom", t)
    v = parse_number(text_of(t), strict=True)
    return v is not None and unify(a[1], v, eng.trail)


def _number_from_text(t, name):
    s = list_text(t)
    v = parse_number(s)
    if v is None:
        try:
            tokenize(s)
            what = "illegal_number"
        except PrologSyntaxError as e:   # SWI names the reader's error when there is one: float_overflow
            what = "float_overflow" if e.term == "syntax_error(float_overflow)" else "illegal_number"
        raise _err(mkstruct("syntax_error", mkatom(what)))
    return v


@det("number_codes", 2)
def _b_number_codes(eng, a):
    t = deref(a[0])
    if type(t) is not Var:
        return unify(a[1], _code_list(text_of(t)), eng.trail)
    return unify(t, _number_from_text(a[1], "number_codes"), eng.trail)


@det("number_chars", 2)
def _b_number_chars(eng, a):
    t = deref(a[0])
    if type(t) is not Var:
        return unify(a[1], _char_list(text_of(t)), eng.trail)
    return unify(t, _number_from_text(a[1], "number_chars"), eng.trail)


@det("number_string", 2)
def _b_number_string(eng, a):
    t = deref(a[1])
    if type(t) is not Var:
        v = parse_number(list_text(t))
        return v is not None and unify(a[0], v, eng.trail)      # SWI fails (no syntax error) here
    return unify(t, PString(text_of(a[0])), eng.trail)


@det("atom_string", 2)
def _b_atom_string(eng, a):
    t = deref(a[0])
    if type(t) is not Var:
        return unify(a[1], PString(atomic_text(t, "atom")), eng.trail)
    return unify(t, mkatom(text_of(a[1])), eng.trail)


@det("string_chars", 2)
def _b_string_chars(eng, a):
    t = deref(a[0])
    if type(t) is not Var:
        return unify(a[1], _char_list(text_of(t)), eng.trail)
    s = text_of(a[1], "list")
    eng.extra += len(s) >> 3
    return unify(t, PString(s), eng.trail)


@det("string_codes", 2)
def _b_string_codes(eng, a):
    t = deref(a[0])
    if type(t) is not Var:
        return unify(a[1], _code_list(text_of(t)), eng.trail)
    s = text_of(a[1], "list")
    eng.extra += len(s) >> 3
    return unify(t, PString(s), eng.trail)


@det("string_to_atom", 2)
def _b_string_to_atom(eng, a):
    t = deref(a[0])
    if type(t) is not Var:
        return unify(a[1], mkatom(text_of(t)), eng.trail)
    return unify(t, PString(text_of(a[1])), eng.trail)


@det("numbervars", 3)
def _b_numbervars(eng, a):
    n = _int(a[1])
    vs = term_vars(a[0])
    eng.extra += len(vs) >> 2
    for v in vs:
        unify(v, mkstruct("$VAR", n), eng.trail)
        n += 1
    return unify(a[2], n, eng.trail)


@det("string", 1)
def _b_string(eng, a):
    return type(deref(a[0])) is PString


@det("term_to_atom", 2)
def _b_term_to_atom(eng, a):
    t = deref(a[0])
    if type(t) is Var:
        term, _ = _read_in_engine(text_of(a[1]))
        return unify(t, term, eng.trail)
    return unify(a[1], mkatom(term_to_text(t, max_chars=1_000_000)), eng.trail)


def _read_in_engine(text):
    """read_term for builtins: a syntax error becomes a catchable error(syntax_error(What), _)."""
    try:
        return read_term(text)
    except PrologSyntaxError as e:
        raise _err(mkstruct("syntax_error", mkatom(e.term[len("syntax_error("):-1]))) from None


@det("atom_to_term", 3)
def _b_atom_to_term(eng, a):
    text = text_of(a[0])
    if not text.strip():
        return unify(a[1], mkatom("end_of_file"), eng.trail) and unify(a[2], NIL, eng.trail)
    term, names = _read_in_engine(text)
    bindings = list_from_py([mkstruct("=", mkatom(n), v) for n, v in names.items() if n != "_"])
    return unify(a[1], term, eng.trail) and unify(a[2], bindings, eng.trail)


@det("term_string", 2)
def _b_term_string(eng, a):
    t = deref(a[0])
    if type(t) is Var:
        term, _ = _read_in_engine(text_of(a[1]))
        return unify(t, term, eng.trail)
    return unify(a[1], PString(term_to_text(t, max_chars=1_000_000)), eng.trail)


@det("upcase_atom", 2)
def _b_upcase_atom(eng, a):
    return unify(a[1], mkatom(atomic_text(a[0], "atom").upper()), eng.trail)


@det("downcase_atom", 2)
def _b_downcase_atom(eng, a):
    return unify(a[1], mkatom(atomic_text(a[0], "atom").lower()), eng.trail)


@det("string_upper", 2)
def _b_string_upper(eng, a):
    return unify(a[1], PString(atomic_text(a[0], "atom").upper()), eng.trail)


@det("string_lower", 2)
def _b_string_lower(eng, a):
    return unify(a[1], PString(atomic_text(a[0], "atom").lower()), eng.trail)


@nondet("string_concat", 3)
def _b_string_concat(eng, a):
    """SWI modes: (+, +, ?) concatenates; with the third argument known, a known prefix or suffix is stripped
    textually (string_concat(X, b, "ab") gives X = "a") and two unbound arguments enumerate the splits."""
    x, y = deref(a[0]), deref(a[1])
    if type(x) is not Var and type(y) is not Var:
        s = atomic_text(x) + atomic_text(y)
        eng.extra += len(s) >> 4
        if unify(a[2], PString(s), eng.trail):
            yield True
        return
    whole = atomic_text(a[2])
    eng.extra += len(whole) >> 4
    if type(x) is not Var or type(y) is not Var:
        if type(x) is not Var:
            p = atomic_text(x)
            ok, rest, target = whole.startswith(p), whole[len(p):], y
        else:
            q = atomic_text(y)
            ok, rest, target = whole.endswith(q), whole[:len(whole) - len(q)], x
        if ok and unify(target, PString(rest), eng.trail):
            yield True
        return
    for i in range(len(whole) + 1):
        eng.extra += 1 + (len(whole) >> 6)
        m = len(eng.trail)
        if unify(x, PString(whole[:i]), eng.trail) and unify(y, PString(whole[i:]), eng.trail):
            yield True
        undo(eng.trail, m)


@nondet("string_code", 3)
def _b_string_code(eng, a):
    """string_code(?Index, +String, ?Code): the 1-based Index-th character code; an unbound Index enumerates."""
    s = deref(a[1])
    if type(s) is Var:
        raise inst_error()
    if type(s) is not Atom and type(s) is not PString:
        raise type_error("text", s)
    text = text_of(s)
    i = _int(a[0], True)
    if i is not None:
        if i < 0:
            raise domain_error("not_less_than_zero", i)
        if 1 <= i <= len(text) and unify(a[2], ord(text[i - 1]), eng.trail):
            yield True
        return
    for k, ch in enumerate(text, 1):
        eng.extra += 1
        m = len(eng.trail)
        if unify(a[0], k, eng.trail) and unify(a[2], ord(ch), eng.trail):
            yield True
        undo(eng.trail, m)


@nondet("atom_concat", 3)
def _b_atom_concat(eng, a):
    x, y = deref(a[0]), deref(a[1])
    if type(x) is not Var and type(y) is not Var:
        s = atomic_text(x) + atomic_text(y)
        eng.extra += len(s) >> 4
        if unify(a[2], mkatom(s), eng.trail):
            yield True
        return
    whole = atomic_text(a[2])
    for i in range(len(whole) + 1):
        eng.extra += 1 + (len(whole) >> 6)
        m = len(eng.trail)
        if unify(x, mkatom(whole[:i]), eng.trail) and unify(y, mkatom(whole[i:]), eng.trail):
            yield True
        undo(eng.trail, m)


def _sub_text(eng, a, mk):
    s = atomic_text(a[0], "atom")
    B, L, A = _int(a[1], True), _int(a[2], True), _int(a[3], True)
    sub = deref(a[4])
    n = len(s)
    if type(sub) is not Var:
        t = text_of(sub)
        start = 0
        while True:
            i = s.find(t, start)
            if i < 0:
                return
            m = len(eng.trail)
            if unify(a[1], i, eng.trail) and unify(a[2], len(t), eng.trail) and \
                    unify(a[3], n - i - len(t), eng.trail):
                yield True
            undo(eng.trail, m)
            start = i + 1
    if B is not None and L is not None:
        ranges = [(B, L)]
    elif B is not None and A is not None:
        ranges = [(B, n - B - A)]
    elif L is not None and A is not None:
        ranges = [(n - L - A, L)]
    elif B is not None:
        ranges = ((B, l) for l in range(0, n - B + 1))
    elif L is not None:
        ranges = ((b, L) for b in range(0, n - L + 1))
    elif A is not None:
        ranges = ((b, n - A - b) for b in range(0, n - A + 1))
    else:
        ranges = ((b, l) for b in range(n + 1) for l in range(n - b + 1))
    for b, l in ranges:
        if b < 0 or l < 0 or b + l > n:
            continue
        eng.extra += 1
        m = len(eng.trail)
        if unify(a[1], b, eng.trail) and unify(a[2], l, eng.trail) and unify(a[3], n - b - l, eng.trail) and \
                unify(a[4], mk(s[b:b + l]), eng.trail):
            yield True
        undo(eng.trail, m)


@nondet("sub_atom", 5)
def _b_sub_atom(eng, a):
    return _sub_text(eng, a, mkatom)


@nondet("sub_string", 5)
def _b_sub_string(eng, a):
    return _sub_text(eng, a, PString)


@det("atomic_list_concat", 2)
def _b_atomic_list_concat2(eng, a):
    items = _py_list(a[0], eng)
    s = "".join(atomic_text(x, "text") for x in items)
    eng.extra += len(s) >> 4
    return unify(a[1], mkatom(s), eng.trail)


@det("atomic_list_concat", 3)
def _b_atomic_list_concat3(eng, a):
    sep = text_of(a[1])
    lst = deref(a[0])
    try:
        items = _py_list(lst, eng)
        if any(type(deref(x)) is Var for x in items):
            raise inst_error()
        s = sep.join(atomic_text(x, "text") for x in items)
        eng.extra += len(s) >> 4
        return unify(a[2], mkatom(s), eng.trail)
    except PrologThrow:
        if not sep:
            raise
        whole = deref(a[2])
        if type(whole) is Var or type(deref(lst)) is not Var and list_to_py(lst) is not None and \
                not any(type(deref(x)) is Var for x in list_to_py(lst)):
            raise
        parts = atomic_text(whole, "atom").split(sep)     # split mode
        eng.extra += len(parts) >> 2
        return unify(lst, list_from_py([mkatom(p) for p in parts]), eng.trail)


@det("split_string", 4)
def _b_split_string(eng, a):
    if type(deref(a[0])) in (int, float):
        raise type_error("text", deref(a[0]))          # SWI: split_string(123, ...) is a type error
    s, seps, pad = text_of(a[0]), text_of(a[1]), text_of(a[2])
    eng.extra += len(s) >> 2
    parts = []
    if seps:
        cur = []
        for c in s:
            if c in seps:
                parts.append("".join(cur))
                cur = []
            else:
                cur.append(c)
        parts.append("".join(cur))
    else:
        parts = [s]
    return unify(a[3], list_from_py([PString(p.strip(pad) if pad else p) for p in parts]), eng.trail)


@det("char_type", 2)
def _b_char_type(eng, a):
    c = deref(a[0])
    t = deref(a[1])
    if type(c) is int and 0 <= c <= 0x10FFFF:        # code_type/2
        c = mkatom(chr(c))
    if type(c) is Var or type(t) is Var:
        raise inst_error()
    if type(c) is not Atom or len(c.name) != 1:
        raise type_error("character", c)
    if type(t) is not Atom and type(t) is not Struct:
        raise domain_error("char_type", t)
    ch = c.name
    name = t.name if type(t) is Atom else t.fn.name
    tests = {"alpha": lambda: ch.isalpha() or ch.isdigit() or ch == "_", "alnum": ch.isalnum,
             "digit": ch.isdigit, "space": ch.isspace, "white": lambda: ch in " \t", "upper": ch.isupper,
             "lower": ch.islower, "punct": lambda: not ch.isalnum() and ch.isprintable() and not ch.isspace(),
             "csym": lambda: ch.isalnum() or ch == "_", "csymf": lambda: ch.isalpha() or ch == "_"}
    if type(t) is Struct and name == "digit" and t.fn.arity == 1:
        return ch.isdigit() and unify(t.args[0], int(ch), eng.trail)
    if type(t) is Struct and name in ("upper", "lower") and t.fn.arity == 1:
        other = ch.lower() if name == "upper" else ch.upper()
        return (ch.isupper() if name == "upper" else ch.islower()) and unify(t.args[0], mkatom(other), eng.trail)
    f = tests.get(name)
    return bool(f and f())


BUILTINS[functor_of("code_type", 2)] = BUILTINS[functor_of("char_type", 2)]


# -- lists (deterministic ones in Python for speed; relational ones are in the Prolog library below)
@nondet("length", 2)
def _b_length(eng, a):
    n = deref(a[1])
    if type(n) is not Var and type(n) is not int:
        raise type_error("integer", n)
    if type(n) is int and n < 0:
        raise domain_error("not_less_than_zero", n)
    k = 0
    x = deref(a[0])
    while type(x) is Struct and x.fn is LIST:
        k += 1
        x = deref(x.args[1])
        if k == _CYCLE_CHECK_AFTER and not is_acyclic(a[0]):
            raise type_error("list", _CYCLIC)
    eng.extra += k >> 4
    if x is NIL:
        if unify(n, k, eng.trail):
            yield True
        return
    if type(x) is not Var:
        raise type_error("list", a[0])
    if type(n) is int:
        if n >= k:
            _reserve(eng, n - k)
            if unify(x, list_from_py([Var() for _ in range(n - k)]), eng.trail):
                yield True
        return
    if x is n:
        return
    extra = 0
    while True:                     # partial list + unbound length: enumerate lengths (infinitely)
        eng.extra += 1 + (extra * _NODE_STEPS >> 4)      # building the list costs; each retry is charged
        m = len(eng.trail)
        if unify(x, list_from_py([Var() for _ in range(extra)]), eng.trail) and unify(n, k + extra, eng.trail):
            yield True
        undo(eng.trail, m)
        extra += 1


def _sort_key_list(eng, t):
    items = _py_list(t, eng)
    n = len(items)
    eng.extra += n * max(1, n.bit_length()) >> 3
    return items


class _Key:
    __slots__ = ("t",)

    def __init__(self, t):
        self.t = t

    def __lt__(self, other):
        return compare_terms(self.t, other.t) < 0


@det("msort", 2)
def _b_msort(eng, a):
    items = _sort_key_list(eng, a[0])
    return unify(a[1], list_from_py(sorted(items, key=_Key)), eng.trail)


def _dedup(sorted_items):
    out = []
    for x in sorted_items:
        if not out or compare_terms(out[-1], x) != 0:
            out.append(x)
    return out


@det("sort", 2)
def _b_sort(eng, a):
    items = _sort_key_list(eng, a[0])
    return unify(a[1], list_from_py(_dedup(sorted(items, key=_Key))), eng.trail)


@det("sort", 4)
def _b_sort4(eng, a):
    k = _int(a[0])
    o = deref(a[1])
    if type(o) is Var:
        raise inst_error()
    if type(o) is not Atom or o.name not in ("@<", "@>", "@=<", "@>="):
        raise domain_error("order", o)
    items = _sort_key_list(eng, a[2])

    def key(t):
        if k == 0:
            return t
        t2 = deref(t)
        if type(t2) is not Struct:
            raise type_error("compound", t2)
        if k > len(t2.args):
            raise type_error("compound", t2)
        return t2.args[k - 1]
    keyed = [(key(t), t) for t in items]
    desc = o.name in ("@>", "@>=")
    keyed.sort(key=lambda p: _Key(p[0]), reverse=desc)   # stable; reverse keeps equal keys in order
    if o.name in ("@<", "@>"):
        out = []
        for kk, t in keyed:
            if not out or compare_terms(out[-1][0], kk) != 0:
                out.append((kk, t))
        keyed = out
    return unify(a[3], list_from_py([t for _, t in keyed]), eng.trail)


@det("keysort", 2)
def _b_keysort(eng, a):
    items = _sort_key_list(eng, a[0])
    pairs = []
    for p in items:
        p2 = deref(p)
        if type(p2) is Var:
            raise inst_error()
        if type(p2) is not Struct or p2.fn.name != "-" or p2.fn.arity != 2:
            raise type_error("pair", p2)
        pairs.append(p2)
    pairs.sort(key=lambda p: _Key(p.args[0]))
    return unify(a[1], list_from_py(pairs), eng.trail)




def _num_list(eng, t):
    return [eval_arith(x) for x in _py_list(t, eng)]


@det("sum_list", 2)
def _b_sum_list(eng, a):
    s = 0
    for x in _num_list(eng, a[0]):
        s = _add(s, x)
    return unify(a[1], s, eng.trail)


BUILTINS[functor_of("sumlist", 2)] = BUILTINS[functor_of("sum_list", 2)]


@det("max_list", 2)
def _b_max_list(eng, a):
    xs = _num_list(eng, a[0])
    if not xs:
        return False
    m = xs[0]
    for x in xs[1:]:
        m = _minmax(False)(m, x)
    return unify(a[1], m, eng.trail)


@det("min_list", 2)
def _b_min_list(eng, a):
    xs = _num_list(eng, a[0])
    if not xs:
        return False
    m = xs[0]
    for x in xs[1:]:
        m = _minmax(True)(m, x)
    return unify(a[1], m, eng.trail)


@det("max_member", 2)
def _b_max_member(eng, a):
    xs = _py_list(a[1], eng)
    if not xs:
        return False
    m = xs[0]
    for x in xs[1:]:
        if compare_terms(x, m) > 0:
            m = x
    return unify(a[0], m, eng.trail)


@det("min_member", 2)
def _b_min_member(eng, a):
    xs = _py_list(a[1], eng)
    if not xs:
        return False
    m = xs[0]
    for x in xs[1:]:
        if compare_terms(x, m) < 0:
            m = x
    return unify(a[0], m, eng.trail)


@det("numlist", 3)
def _b_numlist(eng, a):
    lo, hi = _int(a[0]), _int(a[1])
    _reserve(eng, max(0, hi - lo + 1) >> 2)
    if hi - lo > 20_000_000:
        raise _err(mkstruct("resource_error", mkatom("memory")))
    return lo <= hi and unify(a[2], list_from_py(list(range(lo, hi + 1))), eng.trail)


@det("list_to_set", 2)
def _b_list_to_set(eng, a):
    # first occurrences of ==-distinct elements, in list order: sort the positions by element (n log n, as SWI;
    # the pairwise scan was quadratic inside one inference)
    xs = _py_list(a[0], eng)
    eng.extra += len(xs) * max(1, len(xs).bit_length()) >> 4
    order = sorted(range(len(xs)), key=lambda i: _Key(xs[i]))      # stable: equal elements keep list order
    keep = [i for k, i in enumerate(order) if k == 0 or compare_terms(xs[order[k - 1]], xs[i]) != 0]
    return unify(a[1], list_from_py([xs[i] for i in sorted(keep)]), eng.trail)


@det("flatten", 2)
def _b_flatten(eng, a):
    out, stack = [], [a[0]]
    steps = 0
    while stack:
        x = deref(stack.pop())
        steps += 1
        if steps == _CYCLE_CHECK_AFTER and not is_acyclic(a[0]):
            raise type_error("acyclic_term", _CYCLIC)
        if type(x) is Struct and x.fn is LIST:
            stack.append(x.args[1])
            stack.append(x.args[0])
        elif x is NIL:
            continue
        else:
            out.append(x)
    eng.extra += len(out) >> 4
    return unify(a[1], list_from_py(out), eng.trail)


@det("tab", 1)
def _b_tab(eng, a):
    n = eval_arith(a[0])
    if type(n) is not int:
        raise type_error("integer", n)
    _reserve(eng, n >> 4)
    return _emit(eng, " " * min(max(0, n), _MAX_REPEAT))


# -- all-solutions helpers (bagof/setof are in the library, on top of findall/3)
@det("$dcg_body", 4)
def _b_dcg_body(eng, a):
    return unify(a[3], _dcg_body(a[0], a[1], a[2]), eng.trail)


@det("dcg_translate_rule", 2)
def _b_dcg_translate_rule(eng, a):
    r = deref(a[0])
    if type(r) is not Struct or r.fn is not DCG_ARROW:
        raise type_error("dcg_rule", r)
    return unify(a[1], dcg_translate(r), eng.trail)


@det("$free_variable_set", 3)
def _b_free_variable_set(eng, a):
    """'$free_variable_set'(Template^Goal, StrippedGoal, Witness): strips V^ prefixes and returns the variables
    of Goal that occur neither in Template nor in the ^-quantified terms, as a witness term '$w'(V1,...)."""
    t = deref(a[0])
    templ, goal = t.args
    goal = deref(goal)
    bound = set(term_vars(templ))
    if not is_acyclic(goal):
        raise type_error("acyclic_term", _CYCLIC)
    while type(goal) is Struct and goal.fn.name == "^" and goal.fn.arity == 2:
        bound.update(term_vars(goal.args[0]))
        goal = deref(goal.args[1])
    free = [v for v in term_vars(goal) if v not in bound]
    return unify(a[1], goal, eng.trail) and unify(a[2], Struct(functor_of("$w", len(free)), tuple(free))
                                                 if free else mkatom("$w"), eng.trail)


@det("$bagof_groups", 2)
def _b_bagof_groups(eng, a):
    """Pairs W-T in solution order -> W-[T...] groups, as SWI's bagof: witnesses that are variants form one group
    (each is unified with the group's first witness, so a group's solutions stay in solution order), the groups'
    variables are then shared in first-occurrence order (SWI's bind_bagof_keys) and the groups sorted by witness."""
    pairs = _py_list(a[0], eng)
    groups, buckets, trail = [], {}, eng.trail
    for p in pairs:
        w, t = deref(p).args
        key = canonical_json(term_to_json(w))          # equal for variants; `variant` settles atom/string ties
        bucket = buckets.setdefault(key, [])
        eng.extra += len(bucket)
        for g in bucket:
            if variant(g[0], w):
                unify(g[0], w, trail)
                g[1].append(t)
                break
        else:
            bucket.append((w, [t]))
            groups.append(bucket[-1])
    wvars = [term_vars(w) for w, _ in groups]
    shared = sorted((Var() for _ in range(max(map(len, wvars), default=0))), key=id)   # V1 < V2 < ... by address
    for vs in wvars:
        for v, sv in zip(vs, shared):
            unify(v, sv, trail)
    groups.sort(key=lambda g: _Key(g[0]))
    return unify(a[1], list_from_py([mkstruct("-", w, list_from_py(ts)) for w, ts in groups]), trail)


# -- database
def _clause_parts(t):
    t = deref(t)
    if type(t) is Var:
        raise inst_error()
    if type(t) is Struct and t.fn is NECK:
        h, b = deref(t.args[0]), t.args[1]
    else:
        h, b = t, TRUE
    if type(h) is Var:
        raise inst_error()
    if type(h) is not Struct and type(h) is not Atom:
        raise type_error("callable", h)
    return h, b


def _assert(eng, a, front):
    h, _ = _clause_parts(a[0])
    fn, c = compile_clause(a[0])
    if fn in _BASE_TABLE and type(_BASE_TABLE[fn]) is not Pred:
        raise permission_error("modify", "static_procedure", indicator(fn))
    p = eng.table.get(fn)
    if p is None or (type(p) is Pred and p.library):
        p = eng.table[fn] = Pred(fn, dynamic=True)
    elif type(p) is Pred and not p.dynamic and p.clauses:
        raise permission_error("modify", "static_procedure", indicator(fn))
    p.dynamic = True
    c.source = copy_term(a[0], eng.charge)
    p.add(c, front)
    return True


BUILTINS[functor_of("assertz", 1)] = _Det(lambda eng, a: _assert(eng, a, False))
BUILTINS[functor_of("assert", 1)] = _Det(lambda eng, a: _assert(eng, a, False))
BUILTINS[functor_of("asserta", 1)] = _Det(lambda eng, a: _assert(eng, a, True))


def _dyn_pred(eng, h):
    p = eng.table.get(h.fn)
    if p is None:
        return None
    if type(p) is not Pred or (not p.dynamic and p.clauses):
        raise permission_error("access", "private_procedure", indicator(h.fn))
    return p


@nondet("retract", 1)
def _b_retract(eng, a):
    h, b = _clause_parts(a[0])
    p = _dyn_pred(eng, h)
    if p is None:
        return
    for c in list(p.clauses):
        if c.erased:
            continue
        m = len(eng.trail)
        src = copy_term(c.source if c.source is not None else TRUE)
        sh, sb = _clause_parts(src)
        if unify(h, sh, eng.trail) and unify(b, sb, eng.trail):
            c.erased = True
            p.clauses = [x for x in p.clauses if x is not c]
            p.index = None
            yield True
        undo(eng.trail, m)


@det("retractall", 1)
def _b_retractall(eng, a):
    h = deref(a[0])
    if type(h) is Var:
        raise inst_error()
    if type(h) is not Struct and type(h) is not Atom:
        raise type_error("callable", h)
    p = eng.table.get(h.fn)
    if p is None:
        eng.table[h.fn] = Pred(h.fn, dynamic=True)
        return True
    p = _dyn_pred(eng, h)
    keep = []
    for c in p.clauses:
        m = len(eng.trail)
        sh, _ = _clause_parts(copy_term(c.source))
        if unify(h, sh, eng.trail):
            c.erased = True
        else:
            keep.append(c)
        undo(eng.trail, m)
    p.clauses = keep
    p.index = None
    return True


@nondet("clause", 2)
def _b_clause(eng, a):
    h = deref(a[0])
    if type(h) is Var:
        raise inst_error()
    if type(h) is not Struct and type(h) is not Atom:
        raise type_error("callable", h)
    p = eng.table.get(h.fn)
    if p is None or type(p) is not Pred:
        return
    for c in list(p.clauses):
        if c.source is None:
            raise permission_error("access", "private_procedure", indicator(h.fn))
        m = len(eng.trail)
        sh, sb = _clause_parts(copy_term(c.source))
        if unify(h, sh, eng.trail) and unify(a[1], sb, eng.trail):
            yield True
        undo(eng.trail, m)


@det("dynamic", 1)
def _b_dynamic(eng, a):
    try:
        eng._declare_dynamic(a[0])
    except PrologError:
        raise type_error("predicate_indicator", a[0]) from None
    return True


@det("nb_setval", 2)
def _b_nb_setval(eng, a):
    eng.globals[_callable_name(a[0])] = copy_term(a[1], eng.charge)
    return True


BUILTINS[functor_of("b_setval", 2)] = BUILTINS[functor_of("nb_setval", 2)]


@det("nb_getval", 2)
def _b_nb_getval(eng, a):
    k = _callable_name(a[0])
    if k not in eng.globals:
        raise existence_error("variable", mkatom(k))
    return unify(a[1], eng.globals[k], eng.trail)


BUILTINS[functor_of("b_getval", 2)] = BUILTINS[functor_of("nb_getval", 2)]


# -- output (captured in engine.out; nothing reaches the real stdout)
def _emit(eng, s):
    eng.out.append(s)
    eng.extra += len(s) >> 6
    if sum(len(x) for x in eng.out[-4:]) > 0 and len(eng.out) > 200_000:
        raise _Budget("resource_error(output)")
    return True


BUILTINS[functor_of("write", 1)] = _Det(lambda eng, a: _emit(eng, term_to_text(a[0], quoted=False)))
BUILTINS[functor_of("print", 1)] = _Det(lambda eng, a: _emit(eng, term_to_text(a[0])))
BUILTINS[functor_of("writeq", 1)] = _Det(lambda eng, a: _emit(eng, term_to_text(a[0])))
BUILTINS[functor_of("write_canonical", 1)] = _Det(
    lambda eng, a: _emit(eng, _Writer(True, True, False).write(a[0])))
BUILTINS[functor_of("writeln", 1)] = _Det(lambda eng, a: _emit(eng, term_to_text(a[0], quoted=False) + "\n"))
BUILTINS[functor_of("nl", 0)] = _Det(lambda eng, a: _emit(eng, "\n"))
BUILTINS[functor_of("put_char", 1)] = _Det(lambda eng, a: _emit(eng, _callable_name(a[0])))
BUILTINS[functor_of("write_term", 2)] = _Det(lambda eng, a: _emit(eng, term_to_text(
    a[0], quoted=any(term_to_text(o) == "quoted(true)" for o in _py_list(a[1])))))


_MAX_REPEAT = 1_000_000


def _count(num, default=1):
    n = int(num) if num else default
    if n > _MAX_REPEAT:
        raise _err(mkstruct("resource_error", mkatom("memory")))
    return n


def format_text(fmt: str, args: list) -> str:
    """format/2 subset: ~w ~p ~q ~a ~d ~D ~s ~e ~f ~g ~n ~c ~r ~8| ~t ~+ ~i ~*c ~~ (column stops are ignored)."""
    out, i, n = [], 0, len(fmt)
    args = list(args)

    def nxt():
        if not args:
            raise _err(mkstruct("format", PString("not enough arguments")))
        return args.pop(0)
    while i < n:
        c = fmt[i]
        if c != "~":
            out.append(c)
            i += 1
            continue
        i += 1
        num = ""
        while i < n and (fmt[i].isdigit() or fmt[i] == "*"):
            if fmt[i] == "*":
                num = str(_int(nxt()))
            else:
                num += fmt[i]
            i += 1
        if i >= n:
            raise _err(mkstruct("format", PString("truncated format directive")))
        d = fmt[i]
        i += 1
        if d == "w":
            out.append(term_to_text(nxt(), quoted=False))
        elif d in "pq":
            out.append(term_to_text(nxt()))
        elif d == "a":
            x = deref(nxt())
            if type(x) is Var:
                raise inst_error()
            out.append(text_of(x))
        elif d in "dD":
            x = deref(nxt())
            if type(x) is not int:
                raise _err(mkstruct("format", PString("~d expects an integer argument")))
            s = _int_text(abs(x))
            k = _count(num, 0)
            if k > 0:
                s = s.rjust(k + 1, "0")
                s = s[:-k] + "." + s[-k:]
            if d == "D":
                ip, _, fp = s.partition(".")
                ip = f"{int(ip):,}"
                s = ip + ("." + fp if fp else "")
            out.append(("-" if x < 0 else "") + s)
        elif d in "efg":
            x = _to_float(eval_arith(nxt()))
            k = min(_count(num, 6), 300)
            out.append(("%." + str(k) + d) % x)
        elif d == "s":
            out.append(text_of(nxt(), "list"))
        elif d == "n":
            out.append("\n" * _count(num))
        elif d == "c":
            c = _int(nxt())
            if not 0 <= c <= 0x10FFFF:
                raise representation_error("character_code")
            out.append(chr(c) * _count(num))
        elif d == "r":
            x = _int(nxt())
            base = _count(num, 8)
            if not 2 <= base <= 36:
                raise _err(mkstruct("format", PString("radix must be 2..36")))
            digits, v = [], abs(x)
            while True:
                digits.append("0123456789abcdefghijklmnopqrstuvwxyz"[v % base])
                v //= base
                if not v:
                    break
            out.append(("-" if x < 0 else "") + "".join(reversed(digits)))
        elif d == "~":
            out.append("~")
        elif d == "i":
            nxt()
        elif d in "t|+":
            pass
        else:
            raise _err(mkstruct("format", PString("unknown directive ~" + d)))
    if args:
        raise _err(mkstruct("format", PString("too many arguments")))
    return "".join(out)


def _format_args(t):
    t = deref(t)
    lst = list_to_py(t)
    return lst if lst is not None else [t]


BUILTINS[functor_of("format", 1)] = _Det(lambda eng, a: _emit(eng, format_text(text_of(a[0]), [])))
BUILTINS[functor_of("format", 2)] = _Det(lambda eng, a: _emit(eng, format_text(text_of(a[0]),
                                                                               _format_args(a[1]))))


def _stream_ok(eng, t):
    """user_output / user_error are the only streams: the first goes to the buffer, the second nowhere."""
    t = deref(t)
    if type(t) is Var:
        raise inst_error()
    if type(t) is Atom and t.name in ("user_output", "user_error"):
        return t.name == "user_output"
    raise existence_error("stream", t)


BUILTINS[functor_of("write", 2)] = _Det(
    lambda eng, a: _emit(eng, term_to_text(a[1], quoted=False)) if _stream_ok(eng, a[0]) else True)
BUILTINS[functor_of("writeln", 2)] = _Det(
    lambda eng, a: _emit(eng, term_to_text(a[1], quoted=False) + "\n") if _stream_ok(eng, a[0]) else True)
BUILTINS[functor_of("writeq", 2)] = _Det(
    lambda eng, a: _emit(eng, term_to_text(a[1])) if _stream_ok(eng, a[0]) else True)
BUILTINS[functor_of("nl", 1)] = _Det(lambda eng, a: _emit(eng, "\n") if _stream_ok(eng, a[0]) else True)


@det("portray_clause", 1)
def _b_portray_clause(eng, a):
    t = copy_term(a[0], eng.charge)
    for i, v in enumerate(term_vars(t)):
        v.ref = mkstruct("$VAR", i)
    return _emit(eng, term_to_text(t) + ".\n")


@det("format", 3)
def _b_format3(eng, a):
    sink = deref(a[0])
    s = format_text(text_of(a[1]), _format_args(a[2]))
    if type(sink) is Atom:
        return _emit(eng, s) if _stream_ok(eng, sink) else True
    if type(sink) is Struct and sink.fn.arity == 1:
        kind = sink.fn.name
        conv = {"atom": mkatom, "string": PString, "codes": _code_list, "chars": _char_list}.get(kind)
        if conv is None:
            raise domain_error("output_sink", sink)
        return unify(sink.args[0], conv(s), eng.trail)
    if type(sink) is Var:
        raise inst_error()
    raise domain_error("output_sink", sink)


@det("$out_mark", 1)
def _b_out_mark(eng, a):
    return unify(a[0], len(eng.out), eng.trail)


@det("$out_collect", 2)
def _b_out_collect(eng, a):
    m = _int(a[0])
    text = "".join(eng.out[m:])
    del eng.out[m:]
    sink = deref(a[1])
    if type(sink) is Var:
        raise inst_error()
    conv = {"atom": mkatom, "string": PString, "codes": _code_list, "chars": _char_list}.get(
        sink.fn.name if type(sink) is Struct and sink.fn.arity == 1 else "")
    if conv is None:
        raise domain_error("output_sink", sink)
    return unify(sink.args[0], conv(text), eng.trail)


@det("$out_drop", 1)
def _b_out_drop(eng, a):
    del eng.out[_int(a[0]):]
    return True


@det("print_message", 2)
def _b_print_message(eng, a):
    return True                 # SWI prints to stderr; a verifier has no terminal


@det("halt", 0)
def _b_halt(eng, a):
    raise permission_error("halt", "sandbox", mkatom("halt"))


BUILTINS[functor_of("halt", 1)] = BUILTINS[functor_of("halt", 0)]


# ==== A11. Appendix, Prolog: library predicates written in Prolog, the base predicate table ===========================
_LIBRARY = r"""
append([], L, L).
append([H|T], L, [H|R]) :- append(T, L, R).
append([], []).
append([L|Ls], As) :- append(L, Ws, As), append(Ls, Ws).
member(X, [Y|Ys]) :- '$member'(Ys, X, Y).
'$member'(_, X, X).
'$member'([Y|Ys], X, _) :- '$member'(Ys, X, Y).
memberchk(X, L) :- member(X, L), !.
select(X, [Head|Tail], Rest) :- '$select3'(Tail, Head, X, Rest).
'$select3'(Tail, Head, Head, Tail).
'$select3'([Head2|Tail], Head, X, [Head|Rest]) :- '$select3'(Tail, Head2, X, Rest).
selectchk(X, L, R) :- select(X, L, R), !.
select(X, Xs, Y, Ys) :- '$select4'(Xs, X, Y, Ys).
'$select4'([X|T], X, Y, [Y|T]).
'$select4'([H|T], X, Y, [H|T2]) :- '$select4'(T, X, Y, T2).
exclude(_, [], []).
exclude(P, [H|T], R) :- ( call(P, H) -> R = R1 ; R = [H|R1] ), exclude(P, T, R1).
include(_, [], []).
include(P, [H|T], R) :- ( call(P, H) -> R = [H|R1] ; R = R1 ), include(P, T, R1).
partition(_, [], [], []).
partition(P, [H|T], I, E) :- ( call(P, H) -> I = [H|I1], E = E1 ; I = I1, E = [H|E1] ), partition(P, T, I1, E1).
maplist(_, []).
maplist(G, [A|As]) :- call(G, A), maplist(G, As).
maplist(_, [], []).
maplist(G, [A|As], [B|Bs]) :- call(G, A, B), maplist(G, As, Bs).
maplist(_, [], [], []).
maplist(G, [A|As], [B|Bs], [C|Cs]) :- call(G, A, B, C), maplist(G, As, Bs, Cs).
maplist(_, [], [], [], []).
maplist(G, [A|As], [B|Bs], [C|Cs], [D|Ds]) :- call(G, A, B, C, D), maplist(G, As, Bs, Cs, Ds).
foldl(G, L, V0, V) :- '$foldl'(L, G, V0, V).
'$foldl'([], _, V, V).
'$foldl'([X|Xs], G, V0, V) :- call(G, X, V0, V1), '$foldl'(Xs, G, V1, V).
foldl(G, L1, L2, V0, V) :- '$foldl'(L1, L2, G, V0, V).
'$foldl'([], [], _, V, V).
'$foldl'([X|Xs], [Y|Ys], G, V0, V) :- call(G, X, Y, V0, V1), '$foldl'(Xs, Ys, G, V1, V).
nth0(I, L, E) :- integer(I), !, I >= 0, '$nth_det'(I, L, E).
nth0(I, L, E) :- var(I), !, '$nth_gen'(L, E, 0, I).
nth0(I, _, _) :- throw(error(type_error(integer, I), context(nth0/3, _))).
nth1(I, L, E) :- integer(I), !, I >= 1, I0 is I-1, '$nth_det'(I0, L, E).
nth1(I, L, E) :- var(I), !, '$nth_gen'(L, E, 1, I).
nth1(I, _, _) :- throw(error(type_error(integer, I), context(nth1/3, _))).
'$nth_det'(0, [E|_], E) :- !.
'$nth_det'(I, [_|T], E) :- I1 is I-1, '$nth_det'(I1, T, E).
'$nth_gen'([E|_], E, B, B).
'$nth_gen'([_|T], E, B0, B) :- B1 is B0+1, '$nth_gen'(T, E, B1, B).
last([X|Xs], Last) :- '$last'(Xs, X, Last).
'$last'([], Last, Last).
'$last'([X|Xs], _, Last) :- '$last'(Xs, X, Last).
reverse(Xs, Ys) :- '$reverse'(Xs, [], Ys, Ys).
'$reverse'([], Ys, Ys, []).
'$reverse'([X|Xs], Rs, Ys, [_|Bound]) :- '$reverse'(Xs, [X|Rs], Ys, Bound).
permutation(Xs, Ys) :-
    (   is_list(Xs) -> length(Xs, N), length(Ys, N)
    ;   is_list(Ys) -> length(Ys, N), length(Xs, N)
    ;   length(Xs, N), length(Ys, N)
    ),
    '$perm'(Xs, Ys).
'$perm'([], []).
'$perm'(List, [First|Perm]) :- select(First, List, Rest), '$perm'(Rest, Perm).
nextto(X, Y, [X,Y|_]).
nextto(X, Y, [_|Zs]) :- nextto(X, Y, Zs).
delete([], _, []).
delete([H|T], X, R) :- ( H \= X -> R = [H|R1] ; R = R1 ), delete(T, X, R1).
subtract([], _, []).
subtract([H|T], L, R) :- ( memberchk(H, L) -> R = R1 ; R = [H|R1] ), subtract(T, L, R1).
intersection([], _, []).
intersection([H|T], L, R) :- ( memberchk(H, L) -> R = [H|R1] ; R = R1 ), intersection(T, L, R1).
union([], L, L).
union([H|T], L, R) :- ( memberchk(H, L) -> R = R1 ; R = [H|R1] ), union(T, L, R1).
ignore(G) :- ( call(G) -> true ; true ).
_ ^ G :- call(G).
bagof(T, G, L) :-
    '$free_variable_set'(T^G, G1, W),
    (   W == '$w'
    ->  findall(T, G1, L), L \== []
    ;   findall(W-T, G1, Pairs), Pairs \== [],
        '$bagof_groups'(Pairs, Groups),
        member(W-L, Groups)
    ).
setof(T, G, S) :- bagof(T, G, L), sort(L, S).
aggregate_all(count, G, C) :- !, findall(x, G, L), length(L, C).
aggregate_all(count(T), G, C) :- !, findall(T, G, L), length(L, C).
aggregate_all(sum(E), G, S) :- !, findall(E, G, L), sum_list(L, S).
aggregate_all(max(E), G, M) :- !, findall(E, G, L), L \== [], max_list(L, M).
aggregate_all(min(E), G, M) :- !, findall(E, G, L), L \== [], min_list(L, M).
aggregate_all(bag(E), G, L) :- !, findall(E, G, L).
aggregate_all(set(E), G, S) :- !, findall(E, G, L), sort(L, S).
aggregate_all(max(E, W), G, max(M, Wm)) :- !, findall(E-W, G, L), L \== [], '$max_pair'(L, M-Wm).
aggregate_all(min(E, W), G, min(M, Wm)) :- !, findall(E-W, G, L), L \== [], '$min_pair'(L, M-Wm).
'$max_pair'([P|Ps], M) :- foldl('$maxp', Ps, P, M).
'$maxp'(E-W, E0-W0, R) :- ( E > E0 -> R = E-W ; R = E0-W0 ).
'$min_pair'([P|Ps], M) :- foldl('$minp', Ps, P, M).
'$minp'(E-W, E0-W0, R) :- ( E < E0 -> R = E-W ; R = E0-W0 ).
predsort(P, L, Sorted) :-
    length(L, N),
    ( N < 2 -> '$predsort_small'(P, L, Sorted) ; '$predsort'(P, N, L, _, Sorted1), Sorted = Sorted1 ).
'$predsort_small'(_, [], []).
'$predsort_small'(_, [X], [X]).
'$predsort'(P, 2, [X1,X2|L], L, R) :- !, call(P, Delta, X1, X2), '$sort2'(Delta, X1, X2, R).
'$predsort'(_, 1, [X|L], L, [X]) :- !.
'$predsort'(_, 0, L, L, []) :- !.
'$predsort'(P, N, L1, L3, R) :-
    N1 is N // 2, plus(N1, N2, N),
    '$predsort'(P, N1, L1, L2, R1), '$predsort'(P, N2, L2, L3, R2), '$predmerge'(P, R1, R2, R).
'$sort2'(<, X1, X2, [X1,X2]).
'$sort2'(=, X1, _, [X1]).
'$sort2'(>, X1, X2, [X2,X1]).
'$predmerge'(_, [], R, R) :- !.
'$predmerge'(_, R, [], R) :- !.
'$predmerge'(P, [H1|T1], [H2|T2], Result) :- call(P, Delta, H1, H2), !, '$predmerge_'(Delta, P, H1, H2, T1, T2, Result).
'$predmerge_'(<, P, H1, H2, T1, T2, [H1|R]) :- '$predmerge'(P, T1, [H2|T2], R).
'$predmerge_'(=, P, H1, _, T1, T2, [H1|R]) :- '$predmerge'(P, T1, T2, R).
'$predmerge_'(>, P, H1, H2, T1, T2, [H2|R]) :- '$predmerge'(P, [H1|T1], T2, R).
pairs_keys_values([], [], []).
pairs_keys_values([K-V|T], [K|Ks], [V|Vs]) :- pairs_keys_values(T, Ks, Vs).
pairs_keys([], []).
pairs_keys([K-_|T], [K|Ks]) :- pairs_keys(T, Ks).
pairs_values([], []).
pairs_values([_-V|T], [V|Vs]) :- pairs_values(T, Vs).
foldl(G, L1, L2, L3, V0, V) :- '$foldl'(L1, L2, L3, G, V0, V).
'$foldl'([], [], [], _, V, V).
'$foldl'([X|Xs], [Y|Ys], [Z|Zs], G, V0, V) :- call(G, X, Y, Z, V0, V1), '$foldl'(Xs, Ys, Zs, G, V1, V).
list_to_ord_set(L, S) :- sort(L, S).
ord_union(A, B, C) :- append(A, B, L), sort(L, C).
ord_subtract(A, B, C) :- subtract(A, B, C).
ord_intersection(A, B, C) :- intersection(A, B, C).
ord_memberchk(X, L) :- memberchk(X, L).
ord_subset(A, B) :- subtract(A, B, []).
ord_insert(S, E, S2) :- ord_union(S, [E], S2).
with_output_to(Sink, Goal) :-
    '$out_mark'(M),
    ( catch(once(Goal), E, ('$out_drop'(M), throw(E))) -> '$out_collect'(M, Sink) ; '$out_drop'(M), fail ).
phrase(G, L) :- phrase(G, L, []).
phrase(G, L, R) :- '$dcg_body'(G, S0, S, Goal), S0 = L, S = R, call(Goal).
concat_atom(L, R) :- atomic_list_concat(L, R).
concat_atom(L, S, R) :- atomic_list_concat(L, S, R).
"""


def _init_base_table():
    for (name, arity), code in _CONTROL.items():
        _BASE_TABLE[functor_of(name, arity)] = code
    _BASE_TABLE.update(BUILTINS)
    lib = Prolog.__new__(Prolog)
    lib.table = dict(_BASE_TABLE)
    lib.flags = {"double_quotes": "codes"}
    parser = _Parser(_LIBRARY, lib.flags)
    while True:
        r = parser.read_clause()
        if r is None:
            break
        fn, c = compile_clause(r[0], library=True)
        p = lib.table.get(fn)
        if p is None:
            p = lib.table[fn] = Pred(fn, library=True)
        p.add(c)
    for fn, p in lib.table.items():
        if type(p) is Pred:
            p.build_index()
            _BASE_TABLE[fn] = p


_init_base_table()


# ==== B1. Appendix, PDDL: errors, parsed objects, verdict =============================================================
class PDDLError(ValueError):
    """PDDL text that cannot be read. `line`, `col` are 1-based (None when the position is unknown)."""

    reason = "parse_error"

    def __init__(self, message, line=None, col=None):
        self.message, self.line, self.col = message, line, col
        where = f" (line {line}, column {col})" if line is not None else ""
        super().__init__(message + where)


class PDDLUnsupported(PDDLError):
    """PDDL that is well formed but uses a feature outside the supported subset; `requirement` names it."""

    reason = "unsupported"

    def __init__(self, requirement, message=None, line=None, col=None):
        self.requirement = requirement
        super().__init__(f"unsupported requirement {requirement}" + (f": {message}" if message else ""), line, col)


@dataclasses.dataclass(frozen=True)
class PDDLAction:
    name: str
    params: tuple  # ((var, type), ...), vars start with '?'
    pre: tuple  # formula, see _pddl_formula
    eff: tuple  # effects, see _pddl_effects
    simple: bool  # precondition a conjunction of literals/equalities and effects plain add/del/cost
    lits: tuple = None  # the precondition as ((positive, atom-or-equality), ...) when it is a conjunction
    var_names: tuple = ()  # parameter variables in order


@dataclasses.dataclass(frozen=True)
class PDDLDomain:
    name: str
    requirements: frozenset
    types: dict  # type -> parent type ('object' -> None)
    constants: dict  # name -> type
    predicates: dict  # name -> tuple of parameter types
    actions: dict  # name -> PDDLAction, in declaration order
    ancestors: dict  # type -> frozenset of the type and all its ancestors


@dataclasses.dataclass(frozen=True)
class PDDLProblem:
    name: str
    domain_name: str
    requirements: frozenset
    objects: dict  # name -> type
    init: frozenset  # ground atoms as tuples
    goal: tuple  # formula


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Outcome of validate_plan. `unsatisfied` holds the failing ground literals written as PDDL text."""

    valid: bool
    failed_step: int = None
    reason: str = "ok"
    unsatisfied: tuple = ()
    message: str = ""
    final_state: frozenset = None
    cost: float = 0.0


VERDICT_REASONS = ("ok", "parse_error", "unsupported", "unknown_action", "arity", "unknown_object", "type",
                   "precondition", "goal_unmet")

_PDDL_SUPPORTED = frozenset({":strips", ":typing", ":negative-preconditions", ":disjunctive-preconditions",
                             ":equality", ":existential-preconditions", ":universal-preconditions",
                             ":quantified-preconditions", ":conditional-effects", ":adl", ":action-costs"})
_PDDL_MAX_DEPTH = 64  # s-expression nesting; keeps every recursive walk far from Python's recursion limit
_PDDL_MAX_WORK = 200_000  # quantifier work (bindings x formula size) per validation / per expanded state


# ==== B2. Appendix, PDDL: reader (text -> nested lists of lower-cased symbols that remember their position) ===========
class _PddlSym(str):
    """A lower-cased symbol that remembers its 1-based line and column (hash/eq are those of str)."""


class _PddlList(list):
    """A parenthesised list that remembers the position of its '('."""


_PDDL_TOKEN = re.compile(r"\(|\)|;[^\n]*|[^\s();]+")


def _pddl_read(text, what):
    if not isinstance(text, str):
        raise TypeError(f"{what} must be PDDL text (str), got {type(text).__name__}")
    newlines = [m.start() for m in re.finditer("\n", text)]

    def pos(i):
        k = bisect.bisect_left(newlines, i)
        return k + 1, i - (newlines[k - 1] if k else -1)

    stack, top = [], []
    for m in _PDDL_TOKEN.finditer(text):
        tok = m.group()
        if tok[0] == ";":
            continue
        if tok == "(":
            node = _PddlList()
            node.line, node.col = pos(m.start())
            (stack[-1] if stack else top).append(node)
            stack.append(node)
            if len(stack) > _PDDL_MAX_DEPTH:
                raise PDDLError(f"{what}: nesting deeper than {_PDDL_MAX_DEPTH}", node.line, node.col)
        elif tok == ")":
            if not stack:
                raise PDDLError(f"{what}: unexpected ')'", *pos(m.start()))
            stack.pop()
        else:
            sym = _PddlSym(tok.lower())
            sym.line, sym.col = pos(m.start())
            (stack[-1] if stack else top).append(sym)
    if stack:
        raise PDDLError(f"{what}: missing ')' for this '('", stack[0].line, stack[0].col)
    if not top:
        raise PDDLError(f"{what}: no '(define ...)' in the text", *pos(len(text)))
    if len(top) != 1 or not isinstance(top[0], list):
        node = next((x for x in top if not isinstance(x, list)), top[-1])   # the stray symbol or second list
        raise PDDLError(f"{what}: expected exactly one '(define ...)', found {str(node)[:20]!r}" if
                        not isinstance(node, list) else f"{what}: expected exactly one '(define ...)'",
                        *_pddl_pos(node))
    return top[0]


def _pddl_pos(node):
    return getattr(node, "line", None), getattr(node, "col", None)


def _pddl_err(node, message):
    return PDDLError(message, *_pddl_pos(node))


def _pddl_unsup(node, requirement, message=None):
    return PDDLUnsupported(requirement, message, *_pddl_pos(node))


def _pddl_sym(node, what):
    if not isinstance(node, str):
        raise _pddl_err(node, f"expected a name for {what}, got a list")
    return node


def _pddl_typed_list(items, want_var, what):
    """`a b - t c` -> [(a, t), (b, t), (c, 'object')]; names must (not) start with '?'."""
    out, pending, i = [], [], 0
    while i < len(items):
        tok = items[i]
        if isinstance(tok, list):
            raise _pddl_err(tok, f"unexpected '(' in {what}")
        if tok == "-":
            if not pending or i + 1 >= len(items):
                raise _pddl_err(tok, f"'-' must follow names and precede a type in {what}")
            ty = items[i + 1]
            if isinstance(ty, list):
                if ty and ty[0] == "either":
                    raise _pddl_unsup(ty, ":typing (either)", "`either` types")
                raise _pddl_err(ty, f"expected a type name in {what}")
            out += [(n, ty) for n in pending]
            pending, i = [], i + 2
            continue
        if (tok[0] == "?") != want_var:
            raise _pddl_err(tok, f"{'variables' if want_var else 'names'} expected in {what}, got {tok!r}")
        if want_var and len(tok) == 1:
            raise _pddl_err(tok, f"empty variable name in {what}")
        pending.append(tok)
        i += 1
    out += [(n, _PddlSym("object")) for n in pending]
    seen = set()
    for n, _ in out:
        if n in seen:
            raise _pddl_err(n, f"{n!r} declared twice in {what}")
        seen.add(n)
    return out


# ==== B3. Appendix, PDDL: formulas and effects (structural parse; names are checked later) ============================
# formula := ('atom', pred, terms) | ('=', t1, t2) | ('not', f) | ('and', fs) | ('or', fs) | ('imply', f, g)
#          | ('exists', ((var, type), ...), f) | ('forall', ((var, type), ...), f)
# effect  := ('add', pred, terms) | ('del', pred, terms) | ('when', formula, effects) | ('forall', params, effects)
#          | ('cost', number)

_PDDL_NUMERIC_OPS = frozenset({"<", ">", "<=", ">=", "+", "*", "/"})
_PDDL_ASSIGN_OPS = frozenset({"increase", "decrease", "assign", "scale-up", "scale-down"})


def _pddl_terms(items):
    for t in items:
        if isinstance(t, list):  # (f ?x) as a term is a numeric/object fluent
            raise _pddl_unsup(t, ":numeric-fluents", "function terms need :numeric-fluents")
    return tuple(items)


def _pddl_formula(x):
    if not isinstance(x, list):
        raise _pddl_err(x, f"expected a formula '(...)', got {x!r}")
    if not x:
        return ("and", ())  # `:precondition ()` is legal (VAL#29 rejected such actions)
    head = x[0]
    if isinstance(head, list):
        raise _pddl_err(head, "a formula must start with a name")
    n = len(x)
    if head == "and" or head == "or":
        return (str(head), tuple(_pddl_formula(y) for y in x[1:]))
    if head == "not":
        if n != 2:
            raise _pddl_err(x, "(not F) takes exactly one formula")
        return ("not", _pddl_formula(x[1]))
    if head == "imply":
        if n != 3:
            raise _pddl_err(x, "(imply F G) takes exactly two formulas")
        return ("imply", _pddl_formula(x[1]), _pddl_formula(x[2]))
    if head == "exists" or head == "forall":
        if n != 3 or not isinstance(x[1], list):
            raise _pddl_err(x, f"({head} (?vars) F) expected")
        return (str(head), tuple(_pddl_typed_list(x[1], True, head)), _pddl_formula(x[2]))
    if head == "=":
        if n != 3:
            raise _pddl_err(x, "(= a b) takes exactly two terms")
        a, b = _pddl_terms(x[1:])
        return ("=", a, b)
    if head in _PDDL_NUMERIC_OPS:
        raise _pddl_unsup(x, ":numeric-fluents", f"numeric comparison ({head} ...)")
    if head in ("at", "over") and n == 3 and x[1] in ("start", "end", "all") and isinstance(x[2], list):
        raise _pddl_unsup(x, ":durative-actions", f"timed condition ({head} {x[1]} ...)")
    if head == "preference":
        raise _pddl_unsup(x, ":preferences")
    if head in _PDDL_ASSIGN_OPS or head == "when":
        raise _pddl_err(x, f"({head} ...) is an effect, not a formula")
    return ("atom", head, _pddl_terms(x[1:]))


def _pddl_effects(x):
    if not isinstance(x, list):
        raise _pddl_err(x, f"expected an effect '(...)', got {x!r}")
    if not x:
        return ()
    head = x[0]
    if isinstance(head, list):
        raise _pddl_err(head, "an effect must start with a name")
    if head == "and":
        return tuple(e for y in x[1:] for e in _pddl_effects(y))
    if head == "not":
        if len(x) != 2:
            raise _pddl_err(x, "(not atom) takes exactly one atom")
        f = _pddl_formula(x[1])
        if f[0] != "atom":
            raise _pddl_err(x[1], "only an atom can be negated in an effect")
        return (("del", f[1], f[2]),)
    if head == "when":
        if len(x) != 3:
            raise _pddl_err(x, "(when condition effect) expected")
        return (("when", _pddl_formula(x[1]), _pddl_effects(x[2])),)
    if head == "forall":
        if len(x) != 3 or not isinstance(x[1], list):
            raise _pddl_err(x, "(forall (?vars) effect) expected")
        return (("forall", tuple(_pddl_typed_list(x[1], True, "forall")), _pddl_effects(x[2])),)
    if head == "increase" and len(x) == 3 and isinstance(x[1], list) and list(x[1]) == ["total-cost"]:
        amount = x[2]
        try:
            value = float(amount) if isinstance(amount, str) else None
        except ValueError:
            value = None
        if value is None:
            raise _pddl_unsup(x, ":numeric-fluents", "total-cost increased by a non-constant")
        return (("cost", value),)
    if head in _PDDL_ASSIGN_OPS:
        raise _pddl_unsup(x, ":numeric-fluents", f"numeric effect ({head} ...)")
    if head in ("=", "or", "imply", "exists") or head in _PDDL_NUMERIC_OPS:
        raise _pddl_err(x, f"({head} ...) is not an effect")
    f = _pddl_formula(x)
    return (("add", f[1], f[2]),)


def _pddl_walk_atoms(f, scope, out):
    """Collect (node, scope) for every atom, equality and quantifier of a formula; scope = variables in force."""
    op = f[0]
    if op in ("atom", "="):
        out.append((f, scope))
    elif op == "not":
        _pddl_walk_atoms(f[1], scope, out)
    elif op in ("and", "or"):
        for g in f[1]:
            _pddl_walk_atoms(g, scope, out)
    elif op == "imply":
        _pddl_walk_atoms(f[1], scope, out)
        _pddl_walk_atoms(f[2], scope, out)
    else:  # exists / forall
        out.append((f, scope))
        _pddl_walk_atoms(f[2], scope | {v for v, _ in f[1]}, out)
    return out


def _pddl_walk_effects(effs, scope, out):
    for e in effs:
        if e[0] in ("add", "del"):
            out.append((("atom", e[1], e[2]), scope))
        elif e[0] == "when":
            _pddl_walk_atoms(e[1], scope, out)
            _pddl_walk_effects(e[2], scope, out)
        elif e[0] == "forall":
            out.append((e, scope))
            _pddl_walk_effects(e[2], scope | {v for v, _ in e[1]}, out)
    return out


def _pddl_check_nodes(nodes, domain_types, predicates, names, where):
    """Every predicate declared with the right arity, every term a variable in scope or a known name, every
    quantified variable of a declared type."""
    for f, scope in nodes:
        if f[0] in ("exists", "forall"):
            _pddl_check_types(f[1], domain_types, where)
            continue
        terms = f[1:] if f[0] == "=" else f[2]
        if f[0] == "atom":
            if f[1] not in predicates:
                raise _pddl_err(f[1], f"unknown predicate {f[1]!r} in {where}")
            if len(terms) != len(predicates[f[1]]):
                raise _pddl_err(f[1], f"predicate {f[1]!r} takes {len(predicates[f[1]])} arguments, "
                                      f"got {len(terms)} in {where}")
        for t in terms:
            if t[0] == "?":
                if t not in scope:
                    raise _pddl_err(t, f"unbound variable {t!r} in {where}")
            elif t not in names:
                raise _pddl_err(t, f"unknown object or constant {t!r} in {where}")


def _pddl_check_types(pairs, types, where):
    for _, ty in pairs:
        if ty not in types:
            raise _pddl_err(ty, f"unknown type {ty!r} in {where}")


def _pddl_is_simple(pre, eff):
    lits = _pddl_literals(pre)
    return lits is not None and all(e[0] in ("add", "del", "cost") for e in eff)


def _pddl_literals(f):
    """A conjunction of literals as [(positive, atom-or-equality)], or None if f is anything richer."""
    if f[0] == "and":
        out = []
        for g in f[1]:
            sub = _pddl_literals(g)
            if sub is None:
                return None
            out += sub
        return out
    if f[0] in ("atom", "="):
        return [(True, f)]
    if f[0] == "not" and f[1][0] in ("atom", "="):
        return [(False, f[1])]
    return None


# ==== B4. Appendix, PDDL: domain and problem ==========================================================================
def _pddl_requirements(items, node):
    reqs = set()
    for r in items:
        r = _pddl_sym(r, ":requirements")
        if r not in _PDDL_SUPPORTED:
            raise _pddl_unsup(r, str(r))
        reqs.add(str(r))
    return frozenset(reqs)


def _pddl_header(tree, kind, what):
    if len(tree) < 2 or tree[0] != "define":
        raise _pddl_err(tree, f"{what} must start with '(define ({kind} NAME) ...'")
    head = tree[1]
    if not isinstance(head, list) or len(head) != 2 or head[0] != kind or isinstance(head[1], list):
        raise _pddl_err(head, f"expected ({kind} NAME)")
    sections = []
    for sec in tree[2:]:
        if not isinstance(sec, list) or not sec or isinstance(sec[0], list) or not sec[0].startswith(":"):
            raise _pddl_err(sec, f"expected a section '(:keyword ...)' in {what}")
        sections.append(sec)
    return head[1], sections


def parse_domain(text):
    """Parse a PDDL domain. Raises PDDLError (with line/column) or PDDLUnsupported. Returns PDDLDomain."""
    tree = _pddl_read(text, "domain")
    name, sections = _pddl_header(tree, "domain", "domain")
    reqs, types, constants, predicates, actions = frozenset(), {"object": None}, {}, {}, {}
    declared = set()  # types given a parent explicitly (a type used only as a parent hangs under object)
    raw_actions = []
    for sec in sections:
        key = sec[0]
        if key == ":requirements":
            reqs = reqs | _pddl_requirements(sec[1:], sec)
        elif key == ":types":
            for child, parent in _pddl_typed_list(sec[1:], False, ":types"):
                if child == "object":
                    if parent != "object":
                        raise _pddl_err(child, "type 'object' is the root and has no parent")
                    continue
                if child in declared and types[child] != parent:
                    raise _pddl_unsup(child, ":typing (multiple parents)",
                                      f"type {child!r} declared with two parents")
                types[child] = parent
                declared.add(child)
            for parent in list(types.values()):
                if parent is not None and parent not in types:
                    types[parent] = "object"  # a parent that is never declared itself hangs under object
        elif key == ":constants":
            for c, ty in _pddl_typed_list(sec[1:], False, ":constants"):
                constants[c] = ty
        elif key == ":predicates":
            for decl in sec[1:]:
                if not isinstance(decl, list) or not decl or isinstance(decl[0], list):
                    raise _pddl_err(decl, "expected a predicate declaration '(name ?x ...)'")
                p = decl[0]
                if p in predicates or p in ("and", "or", "not", "=", "imply", "exists", "forall", "when"):
                    raise _pddl_err(p, f"predicate {p!r} declared twice or reserved")
                predicates[p] = tuple(ty for _, ty in _pddl_typed_list(decl[1:], True, f"predicate {p}"))
        elif key == ":functions":
            body = [t for t in sec[1:] if not (isinstance(t, str) and t in ("-", "number"))]
            if any(not isinstance(f, list) or list(f) != ["total-cost"] for f in body):
                raise _pddl_unsup(sec, ":numeric-fluents", "functions other than (total-cost)")
        elif key == ":action":
            raw_actions.append(sec)
        elif key == ":durative-action":
            raise _pddl_unsup(sec, ":durative-actions")
        elif key == ":derived":
            raise _pddl_unsup(sec, ":derived-predicates")
        elif key in (":process", ":event"):
            raise _pddl_unsup(sec, ":time (PDDL+)")
        elif key == ":constraints":
            raise _pddl_unsup(sec, ":constraints")
        else:
            raise _pddl_err(key, f"unknown domain section {key!r}")
    ancestors = _pddl_ancestors(types)
    _pddl_check_types(constants.items(), types, ":constants")
    for p, tys in predicates.items():
        _pddl_check_types([(p, t) for t in tys], types, f"predicate {p}")
    for sec in raw_actions:
        act = _pddl_action(sec, predicates, constants, types)
        if act.name in actions:           # point at the second declaration's name
            raise _pddl_err(sec[1], f"action {act.name!r} declared twice")
        actions[act.name] = act
    return PDDLDomain(str(name), reqs, types, constants, predicates, actions, ancestors)


def _pddl_ancestors(types):
    out = {}
    for t in types:
        chain, cur = [], t
        while cur is not None:
            if cur in chain:
                raise _pddl_err(t, f"type hierarchy has a cycle through {t!r}")
            chain.append(cur)
            cur = types.get(cur, "object") if cur != "object" else None
        out[t] = frozenset(chain)
    return out


def _pddl_action(sec, predicates, constants, types):
    if len(sec) < 2 or isinstance(sec[1], list):
        raise _pddl_err(sec, "expected (:action NAME ...)")
    name, fields, i = sec[1], {}, 2
    while i < len(sec):
        key = sec[i]
        if isinstance(key, list) or key not in (":parameters", ":precondition", ":effect"):
            raise _pddl_err(key, f"unexpected {key!r} in action {name!r} (want :parameters/:precondition/:effect)")
        if key in fields or i + 1 >= len(sec):
            raise _pddl_err(key, f"{key} given twice or without a value in action {name!r}")
        fields[str(key)] = sec[i + 1]
        i += 2
    params = fields.get(":parameters", _PddlList())
    if not isinstance(params, list):
        raise _pddl_err(params, f":parameters of {name!r} must be a list")
    params = tuple(_pddl_typed_list(params, True, f"parameters of {name}"))
    pre = _pddl_formula(fields.get(":precondition", _PddlList()))
    eff = _pddl_effects(fields.get(":effect", _PddlList()))
    where = f"action {name}"
    _pddl_check_types(params, types, where)
    scope = frozenset(v for v, _ in params)
    nodes = _pddl_walk_atoms(pre, scope, []) + _pddl_walk_effects(eff, scope, [])
    _pddl_check_nodes(nodes, types, predicates, constants, where)
    lits = _pddl_literals(pre)
    return PDDLAction(str(name), params, pre, eff, _pddl_is_simple(pre, eff),
                      None if lits is None else tuple(lits), tuple(v for v, _ in params))


@functools.lru_cache(maxsize=64)
def _pddl_parse_problem_text(text):
    tree = _pddl_read(text, "problem")
    name, sections = _pddl_header(tree, "problem", "problem")
    dom_name, reqs, objects, init, goal = None, frozenset(), {}, set(), None
    for sec in sections:
        key = sec[0]
        if key == ":domain":
            if len(sec) != 2 or isinstance(sec[1], list):
                raise _pddl_err(sec, "expected (:domain NAME)")
            dom_name = sec[1]
        elif key == ":requirements":
            reqs = reqs | _pddl_requirements(sec[1:], sec)
        elif key == ":objects":
            for o, ty in _pddl_typed_list(sec[1:], False, ":objects"):
                objects[o] = ty
        elif key == ":init":
            for x in sec[1:]:
                init.update(_pddl_init_atom(x))
        elif key == ":goal":
            if len(sec) != 2:
                raise _pddl_err(sec, "(:goal F) takes exactly one formula")
            goal = _pddl_formula(sec[1])
        elif key in (":metric", ":length"):
            pass  # plan quality is not validity
        elif key == ":constraints":
            raise _pddl_unsup(sec, ":constraints")
        else:
            raise _pddl_err(key, f"unknown problem section {key!r}")
    if dom_name is None:
        raise _pddl_err(tree, "problem has no (:domain NAME)")
    if goal is None:
        raise _pddl_err(tree, "problem has no (:goal ...)")
    return PDDLProblem(str(name), dom_name, reqs, objects, frozenset(init), goal)


def _pddl_init_atom(x):
    if not isinstance(x, list) or not x or isinstance(x[0], list):
        raise _pddl_err(x, "expected a ground atom '(pred obj ...)' in :init")
    head = x[0]
    if head == "=" and len(x) == 3 and isinstance(x[1], list):
        if list(x[1]) == ["total-cost"]:
            return ()  # (= (total-cost) 0): cost bookkeeping, irrelevant to validity (VAL#23 crashed on it)
        raise _pddl_unsup(x, ":numeric-fluents", "numeric fluent in :init")
    if head == "at" and len(x) == 3 and isinstance(x[2], list) and isinstance(x[1], str) \
            and re.fullmatch(r"[0-9.]+", x[1]):
        raise _pddl_unsup(x, ":timed-initial-literals")
    if head in ("and", "not", "or", "=", "forall", "exists", "when"):
        raise _pddl_err(x, f"({head} ...) is not allowed in :init (list ground atoms only)")
    for t in x[1:]:
        if isinstance(t, list) or t[0] == "?":
            raise _pddl_err(t, "arguments of :init atoms must be object names")
    return ((tuple(x),))


def parse_problem(text, domain=None):
    """Parse a PDDL problem; with `domain` (text or PDDLDomain) also check it against the domain.

    Raises PDDLError (with line/column) or PDDLUnsupported. Returns PDDLProblem.
    """
    prob = _pddl_parse_problem_text(text) if isinstance(text, str) else None
    if prob is None:
        raise TypeError(f"problem must be PDDL text (str), got {type(text).__name__}")
    if domain is not None:
        _pddl_world(_pddl_as_domain(domain), prob)
    return prob


class _PddlWorld:
    """A problem bound to its domain: every object's type, objects by type, the per-validation work budget."""

    def __init__(self, domain, problem):
        self.domain, self.problem = domain, problem
        self.objects = dict(domain.constants)
        self.objects.update(problem.objects)
        self.by_type = collections.defaultdict(list)
        for o in sorted(self.objects):
            for t in domain.ancestors[self.objects[o]]:
                self.by_type[t].append(o)
        self.work = 0

    def bindings(self, params, b, weight=1):
        """All extensions of binding b to the typed variables `params` (enumeration, counted against the budget:
        `weight` per binding, the size of the formula or effect evaluated for each, so a 400-way `or` under a
        `forall` costs 400 per object, not 1)."""
        domains = [self.by_type.get(t, ()) for _, t in params]
        names = [v for v, _ in params]
        for combo in itertools.product(*domains):
            self.work += weight
            if self.work > _PDDL_MAX_WORK:
                raise PDDLUnsupported("quantifier enumeration", f"more than {_PDDL_MAX_WORK} "
                                                                "steps of quantifier evaluation")
            nb = dict(b)
            nb.update(zip(names, combo))
            yield nb


def _pddl_world(domain, problem):
    if problem.domain_name != domain.name:
        raise _pddl_err(problem.domain_name, f"problem is for domain {problem.domain_name!r}, "
                                             f"not {domain.name!r}")
    for o, ty in problem.objects.items():
        if ty not in domain.types:
            raise _pddl_err(ty, f"unknown type {ty!r} for object {o!r}")
        if o in domain.constants and domain.constants[o] != ty:
            raise _pddl_err(o, f"object {o!r} redeclares constant of type {domain.constants[o]!r}")
    world = _PddlWorld(domain, problem)
    names = world.objects
    for atom in problem.init:
        p = atom[0]
        if p not in domain.predicates:
            raise _pddl_err(p, f"unknown predicate {p!r} in :init")
        if len(atom) - 1 != len(domain.predicates[p]):
            raise _pddl_err(p, f"predicate {p!r} takes {len(domain.predicates[p])} arguments in :init")
        for t, want in zip(atom[1:], domain.predicates[p]):
            if t not in names:
                raise _pddl_err(t, f"unknown object {t!r} in :init")
            if want not in domain.ancestors[names[t]]:     # as VAL/pyval: (at-robby ball1) is not a typed atom
                raise _pddl_err(t, f"object {t!r} of type {names[t]!r} is not a {want!r} "
                                   f"(argument of {p!r}) in :init")
    _pddl_check_nodes(_pddl_walk_atoms(problem.goal, frozenset(), []), domain.types, domain.predicates, names,
                      ":goal")
    return world


@functools.lru_cache(maxsize=64)
def _pddl_parse_domain_cached(text):
    return parse_domain(text)


def _pddl_as_domain(domain):
    if isinstance(domain, PDDLDomain):
        return domain
    if isinstance(domain, str):
        return _pddl_parse_domain_cached(domain)  # parsed objects are never mutated, so sharing is safe
    raise TypeError(f"domain must be PDDL text or a PDDLDomain, got {type(domain).__name__}")


def _pddl_as_problem(problem):
    if isinstance(problem, PDDLProblem):
        return problem
    if isinstance(problem, str):
        return _pddl_parse_problem_text(problem)
    raise TypeError(f"problem must be PDDL text or a PDDLProblem, got {type(problem).__name__}")


# ==== B5. Appendix, PDDL: plans (parse_plan, format_plan) =============================================================
_PDDL_PLAN_PREFIX = re.compile(r"\s*(?:step\s*)?\d+(?:\.\d+)?\s*[:.)]\s*", re.IGNORECASE)
_PDDL_PLAN_FAST = re.compile(r"\s*\(([^();:\[\],]*)\)\s*|\s*([A-Za-z_][^();:\[\],]*)")  # `(a b c)` or `a b c`
# Linear time: the two patterns are only ever matched anchored (match / fullmatch, once per line, no nested
# quantifiers); the `[duration]` suffix and the `(...)` groups are found with str.find, never with an unanchored
# regex search (a `\[[^\]]*\]\s*$` search restarts at every '[' and made "[" * 150000 quadratic).


def _plan_line_body(raw):
    """A plan line without its `;` comment, `k:` / `step k:` prefix and `[duration]` suffix, lower-cased."""
    line = raw.split(";", 1)[0]
    m = _PDDL_PLAN_PREFIX.match(line)
    if m:
        line = line[m.end():]
    line = line.rstrip()
    if line.endswith("]"):              # `[...]` at the end: from the first '[' after the previous ']'
        k = line.find("[", line.rfind("]", 0, len(line) - 1) + 1, len(line) - 1)
        if k >= 0:
            line = line[:k]
    return line.strip().lower()


def _plan_groups(line):
    """The `(...)` groups of a line that contain no parentheses, as (start, end) spans, left to right."""
    spans, i, close = [], 0, -1
    while True:
        a = line.find("(", i)
        if a < 0:
            return spans
        if close < a:
            close = line.find(")", a + 1)
            if close < 0:
                return spans
        inner = line.find("(", a + 1, close)
        if inner >= 0:                  # '(' ... '(' ... ')': the group starts at the inner '('
            i = inner
            continue
        spans.append((a, close + 1))
        i = close + 1


def parse_plan(text):
    """Read a plan tolerantly: one `(name arg ...)` or `name arg ...` per line, `;` comments, `k:` prefixes,
    `[duration]` suffixes, any case. Returns a list of tuples (name, arg, ...). Raises PDDLError with the line.
    Linear time in len(text)."""
    if not isinstance(text, str):
        raise TypeError(f"plan must be text (str), got {type(text).__name__}")
    steps = []
    for lineno, raw in enumerate(text.split("\n"), 1):
        fast = _PDDL_PLAN_FAST.fullmatch(raw)  # the common clean line: no comment, prefix, suffix or comma
        if fast:
            toks = (fast.group(1) if fast.group(2) is None else fast.group(2)).lower().split()
            if toks:
                steps.append(tuple(toks))
                continue
        line = _plan_line_body(raw)
        if not line:
            continue
        if "(" in line or ")" in line:
            rest, last = [], 0
            for a, b in _plan_groups(line):
                rest.append(line[last:a])
                toks = line[a + 1:b - 1].replace(",", " ").split()
                if not toks:
                    raise PDDLError("plan: empty action '()'", lineno, a + 1)
                steps.append(tuple(toks))
                last = b
            rest.append(line[last:])
            junk = "".join(rest).strip()
            if junk:
                col = raw.lower().find(junk[:1]) + 1 if junk[:1] else None
                raise PDDLError(f"plan: unexpected text {junk[:40]!r} outside '(...)'", lineno, col or None)
        else:
            toks = line.replace(",", " ").split()
            if toks:  # a line of only commas is as empty as a blank line
                steps.append(tuple(toks))
    return steps


def format_plan(plan, parens=False):
    """Plan (list of tuples) -> text with one action per line: `pick-up a` or, with parens, `(pick-up a)`."""
    return "\n".join(("(%s)" if parens else "%s") % " ".join(step) for step in plan)


def _pddl_as_plan(plan):
    if isinstance(plan, str):
        return parse_plan(plan)
    if isinstance(plan, (list, tuple)):
        steps = []
        for step in plan:
            if isinstance(step, str):
                sub = parse_plan(step)
                if len(sub) != 1:
                    raise PDDLError(f"plan: {step[:40]!r} is not one action")
                steps.append(sub[0])
            else:
                try:  # a tuple/list of names; str.lower raises TypeError on anything that is not a str
                    low = tuple(map(str.lower, step)) if isinstance(step, (list, tuple)) else ()
                except TypeError:
                    low = ()
                if not low:
                    raise PDDLError(f"plan: step {len(steps) + 1} is not an action")
                steps.append(low)
        return steps
    raise TypeError(f"plan must be text or a list of actions, got {type(plan).__name__}")


# ==== B6. Appendix, PDDL: semantics (evaluation, progression, validate_plan) ==========================================
def _pddl_ground(pred, terms, b):
    return (pred, *map(b.get, terms, terms))  # variables replaced by their binding, constants kept


def _pddl_holds(f, state, b, world):
    op = f[0]
    if op == "atom":
        return _pddl_ground(f[1], f[2], b) in state
    if op == "and":
        return all(_pddl_holds(g, state, b, world) for g in f[1])
    if op == "not":
        return not _pddl_holds(f[1], state, b, world)
    if op == "=":
        return b.get(f[1], f[1]) == b.get(f[2], f[2])
    if op == "or":
        return any(_pddl_holds(g, state, b, world) for g in f[1])
    if op == "imply":
        return not _pddl_holds(f[1], state, b, world) or _pddl_holds(f[2], state, b, world)
    if op == "exists":
        return any(_pddl_holds(f[2], state, nb, world) for nb in world.bindings(f[1], b, _pddl_size(f[2])))
    return all(_pddl_holds(f[2], state, nb, world) for nb in world.bindings(f[1], b, _pddl_size(f[2])))  # forall


def _pddl_size(x):
    """Nodes of a formula or effect: the work one evaluation of it may do."""
    n, stack = 0, [x]
    while stack:
        y = stack.pop()
        n += 1
        stack.extend(z for z in y if type(z) is tuple or type(z) is list)
    return n


def _pddl_show(f, b):
    """A formula with binding b applied, as PDDL text (used for `unsatisfied`)."""
    op = f[0]
    if op == "atom":
        return "(" + " ".join(_pddl_ground(f[1], f[2], b)) + ")"
    if op == "=":
        return f"(= {b.get(f[1], f[1])} {b.get(f[2], f[2])})"
    if op == "not":
        return f"(not {_pddl_show(f[1], b)})"
    if op in ("and", "or"):
        return "(" + " ".join([op] + [_pddl_show(g, b) for g in f[1]]) + ")"
    if op == "imply":
        return f"(imply {_pddl_show(f[1], b)} {_pddl_show(f[2], b)})"
    inner = {v: v for v, _ in f[1]}
    params = " ".join(f"{v} - {t}" for v, t in f[1])
    return f"({op} ({params}) {_pddl_show(f[2], {**b, **inner})})"


def _pddl_unsatisfied(f, state, b, world):
    """The conjuncts of f (flattening `and`) that do not hold, as ground PDDL text."""
    if f[0] == "and":
        return [u for g in f[1] for u in _pddl_unsatisfied(g, state, b, world)]
    return [] if _pddl_holds(f, state, b, world) else [_pddl_show(f, b)]


def _pddl_collect(effs, state, b, world, adds, dels):
    """Effects evaluated against the pre-state; returns the action cost."""
    cost = 0.0
    for e in effs:
        k = e[0]
        if k == "add":
            adds.append(_pddl_ground(e[1], e[2], b))
        elif k == "del":
            dels.append(_pddl_ground(e[1], e[2], b))
        elif k == "when":
            if _pddl_holds(e[1], state, b, world):
                cost += _pddl_collect(e[2], state, b, world, adds, dels)
        elif k == "forall":
            for nb in world.bindings(e[1], b, _pddl_size(e[2])):
                cost += _pddl_collect(e[2], state, nb, world, adds, dels)
        else:  # cost
            cost += e[1]
    return cost


def _pddl_apply(act, b, state, world):
    """Progression s' = (s \\ del) | add on a frozenset; returns (s', cost)."""
    adds, dels = [], []
    cost = _pddl_collect(act.eff, state, b, world, adds, dels)
    return (state.difference(dels)).union(adds), cost


def validate_plan(domain, problem, plan):
    """Check a plan. domain/problem: PDDL text or parsed objects; plan: text or a list of actions.

    Never raises on a malformed domain, problem or plan: those give reason parse_error or unsupported.
    Raises TypeError only when an argument has the wrong Python type. Returns Verdict.
    """
    try:
        dom = _pddl_as_domain(domain)
        prob = _pddl_as_problem(problem)
        world = _pddl_world(dom, prob)
        steps = _pddl_as_plan(plan)
        return _pddl_simulate(dom, prob, world, steps)
    except PDDLError as e:
        return Verdict(False, None, e.reason, (), str(e))


def _pddl_simulate(dom, prob, world, steps):
    state, cost = set(prob.init), 0.0
    objects, ancestors = world.objects, dom.ancestors
    for i, step in enumerate(steps, 1):
        name, args = step[0], step[1:]
        act = dom.actions.get(name)
        if act is None:
            return Verdict(False, i, "unknown_action", (), f"step {i}: unknown action {name!r}")
        if len(args) != len(act.params):
            return Verdict(False, i, "arity", (), f"step {i}: {name} takes {len(act.params)} arguments, "
                                                  f"got {len(args)}")
        for a, (_, ty) in zip(args, act.params):
            if a not in objects:
                return Verdict(False, i, "unknown_object", (), f"step {i}: unknown object {a!r}")
            if ty not in ancestors[objects[a]]:
                return Verdict(False, i, "type", (), f"step {i}: {a!r} is a {objects[a]}, {name} wants a {ty}")
        b = dict(zip(act.var_names, args))
        if act.lits is not None:  # fast path for conjunctions of literals: no recursion
            ok = True
            for positive, f in act.lits:
                if f[0] == "=":
                    holds = b.get(f[1], f[1]) == b.get(f[2], f[2])
                else:
                    holds = (f[1], *map(b.get, f[2], f[2])) in state
                if holds is not positive:
                    ok = False
                    break
        else:
            ok = _pddl_holds(act.pre, state, b, world)
        if not ok:
            unsat = tuple(_pddl_unsatisfied(act.pre, state, b, world))
            return Verdict(False, i, "precondition", unsat,
                           f"step {i}: ({' '.join(step)}) precondition fails: {' '.join(unsat)}",
                           frozenset(state), cost)
        adds, dels = [], []
        cost += _pddl_collect(act.eff, state, b, world, adds, dels)
        state.difference_update(dels)  # delete ...
        state.update(adds)  # ... then add (STRIPS/VAL convention)
    if not _pddl_holds(prob.goal, state, {}, world):
        unsat = tuple(_pddl_unsatisfied(prob.goal, state, {}, world))
        return Verdict(False, None, "goal_unmet", unsat, f"goal not reached after {len(steps)} steps: "
                                                         f"{' '.join(unsat)}", frozenset(state), cost)
    return Verdict(True, None, "ok", (), f"valid plan of {len(steps)} steps", frozenset(state), cost)


# ==== B7. Appendix, PDDL: planner (breadth-first search, optimal plan length, node budget) ============================
def _pddl_groundings(dom, world, max_ground):
    total = 0
    for act in dom.actions.values():
        n = 1
        for _, t in act.params:
            n *= len(world.by_type.get(t, ()))
        total += n
    if total > max_ground:
        raise ValueError(f"max_ground: the problem has {total} ground actions, more than max_ground={max_ground}")
    for act in dom.actions.values():
        names = [v for v, _ in act.params]
        for args in itertools.product(*(world.by_type.get(t, ()) for _, t in act.params)):
            yield act, args, dict(zip(names, args))


def _pddl_bfs(start, expand, is_goal, max_nodes):
    """Breadth-first search; goal test on generation (still length-optimal with unit costs)."""
    if is_goal(start):
        return []
    parent = {start: None}
    frontier = collections.deque([start])
    expanded = 0
    while frontier:
        s = frontier.popleft()
        expanded += 1
        if expanded > max_nodes:
            return None
        for label, t in expand(s):
            if t in parent:
                continue
            parent[t] = (s, label)
            if is_goal(t):
                plan = []
                while parent[t] is not None:
                    t, label = parent[t]
                    plan.append(label)
                return plan[::-1]
            frontier.append(t)
    return None


def find_plan(domain, problem, max_nodes=200_000, max_ground=200_000):
    """Shortest plan by breadth-first search, or None when none exists or the budget runs out.

    Args: domain/problem as PDDL text or parsed; max_nodes: states expanded at most; max_ground: ground actions
    at most (ValueError beyond). STRIPS-like domains (conjunctive literal preconditions and goals, plain effects)
    run on bit-mask states with static predicates compiled away; richer domains use the validator's evaluator.
    Returns a list of tuples (name, arg, ...). Raises PDDLError/PDDLUnsupported on malformed input.
    """
    if not isinstance(max_nodes, int) or max_nodes < 0:
        raise ValueError(f"max_nodes must be an int >= 0, got {max_nodes!r}")
    dom, prob = _pddl_as_domain(domain), _pddl_as_problem(problem)
    world = _pddl_world(dom, prob)
    goal_lits = _pddl_literals(prob.goal)
    if all(a.simple for a in dom.actions.values()) and goal_lits is not None:
        return _pddl_find_plan_bits(dom, prob, world, goal_lits, max_nodes, max_ground)
    ground = list(_pddl_groundings(dom, world, max_ground))

    def expand(s):
        world.work, out = 0, []
        for act, args, b in ground:
            if _pddl_holds(act.pre, s, b, world):
                out.append(((act.name,) + args, _pddl_apply(act, b, s, world)[0]))
        return out

    return _pddl_bfs(frozenset(prob.init), expand, lambda s: _pddl_holds(prob.goal, s, {}, world), max_nodes)


def _pddl_find_plan_bits(dom, prob, world, goal_lits, max_nodes, max_ground):
    fluent = {e[1] for a in dom.actions.values() for e in a.eff if e[0] in ("add", "del")}
    init, bits = prob.init, {}

    def bit(atom):
        if atom not in bits:
            bits[atom] = len(bits)
        return 1 << bits[atom]

    def compile_lits(lits, b):
        """(pos mask, neg mask) or None when a static literal or an equality is false."""
        pos = neg = 0
        for positive, f in lits:
            if f[0] == "=":
                ok = b.get(f[1], f[1]) == b.get(f[2], f[2])
            else:
                atom = _pddl_ground(f[1], f[2], b)
                if atom[0] in fluent:
                    if positive:
                        pos |= bit(atom)
                    else:
                        neg |= bit(atom)
                    continue
                ok = atom in init  # static predicate: its truth never changes
            if ok != positive:
                return None
        return pos, neg

    ops = []
    for act, args, b in _pddl_groundings(dom, world, max_ground):
        masks = compile_lits(_pddl_literals(act.pre), b)
        if masks is None:
            continue
        add = dele = 0
        for e in act.eff:
            if e[0] == "add":
                add |= bit(_pddl_ground(e[1], e[2], b))
            elif e[0] == "del":
                dele |= bit(_pddl_ground(e[1], e[2], b))
        ops.append(((act.name,) + args, masks[0], masks[1], ~dele, add))
    goal = compile_lits(goal_lits, {})
    if goal is None:
        return None
    gpos, gneg = goal
    start = 0
    for atom in init:
        if atom[0] in fluent:
            start |= bit(atom)

    # successor generator: each op is filed under one of its positive precondition bits (its trigger), so a state
    # only looks at ops whose trigger atom is true in it; ops without positive preconditions are always checked
    table, always = [[] for _ in range(len(bits))], []
    for op in ops:
        (table[(op[1] & -op[1]).bit_length() - 1] if op[1] else always).append(op)

    def expand(s):
        out, x = [], s
        for label, pos, neg, keep, add in always:
            if not (s & neg):
                out.append((label, (s & keep) | add))
        while x:
            low = x & -x
            for label, pos, neg, keep, add in table[low.bit_length() - 1]:
                if (s & pos) == pos and not (s & neg):
                    out.append((label, (s & keep) | add))  # s' = (s & ~del) | add: delete-then-add on bit masks
            x ^= low
        return out

    return _pddl_bfs(start, expand, lambda s: (s & gpos) == gpos and not (s & gneg), max_nodes)


# ==== C. Demo and benchmark (python proto_verify.py [--bench]) ========================================================
_PDDL_SUSSMAN = """(define (problem sussman) (:domain blocksworld) (:objects a b c)
  (:init (on c a) (ontable a) (ontable b) (clear c) (clear b) (handempty)) (:goal (and (on a b) (on b c))))"""


def pddl_demo(seed=0):
    """Print what the validator says about the Sussman anomaly and its broken variants, then one task per kind."""
    plan = find_plan(BLOCKSWORLD_DOMAIN, _PDDL_SUSSMAN)
    print("Sussman anomaly, BFS plan:", "; ".join(" ".join(a) for a in plan))
    for label, variant in (("as found", plan), ("put-down dropped", plan[:1] + plan[2:]),
                           ("last step dropped", plan[:-1]), ("upper case, k: prefixes",
                           "\n".join(f"{i}: ({' '.join(a).upper()})" for i, a in enumerate(plan)))):
        v = validate_plan(BLOCKSWORLD_DOMAIN, _PDDL_SUSSMAN, variant)
        print(f"  {label:<24} valid={v.valid!s:<5} reason={v.reason:<12} step={v.failed_step} {' '.join(v.unsatisfied)}")
    rng = random.Random(seed)
    for kind in PDDL_KINDS:
        tk = generate_pddl_task(rng, kind, difficulty=3)
        print(f"\n[{kind}, difficulty 3] {tk.prompt}\n{tk.answer}\nreward: {pddl_reward(tk, tk.answer)}")


def pddl_bench(seconds=2.0, seed=0):
    """Print and return throughput: validated plans/s and labelled+verified tasks/s per generator, and the
    steps/s of one 10 000-step blocksworld plan."""
    rows = {}
    for kind in PDDL_KINDS:
        rng, n, tasks, t0 = random.Random(seed), 0, [], time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 3:
            tasks.append(generate_pddl_task(rng, kind))
            n += 1
        gen_rate = n / (time.perf_counter() - t0)
        m, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2:
            for tk in tasks:
                assert pddl_reward(tk, tk.answer)[0] == 1.0
                m += 1
        val_rate = m / (time.perf_counter() - t0)
        lens = [len(tk.plan) for tk in tasks]
        rows[kind] = {"tasks_per_s": gen_rate, "plans_per_s": val_rate, "plan_len_min": min(lens),
                      "plan_len_mean": sum(lens) / len(lens), "plan_len_max": max(lens)}
    blocks = [f"b{i}" for i in range(50)]
    problem = _pddl_problem_text("bw50", "blocksworld", [(x, None) for x in blocks],
                                 [("handempty",)] + [(p, x) for x in blocks for p in ("ontable", "clear")],
                                 [("ontable", "b0")])
    plan = [(op, blocks[i % 50]) for i in range(5000) for op in ("pick-up", "put-down")]
    t0 = time.perf_counter()
    ok = validate_plan(BLOCKSWORLD_DOMAIN, problem, plan).valid
    rows["10k_step_plan"] = {"steps_per_s": len(plan) / (time.perf_counter() - t0), "valid": ok}
    print(f"{'generator':<12} {'tasks/s':>9} {'plans/s':>9} {'len min/mean/max':>18}")
    for kind in PDDL_KINDS:
        r = rows[kind]
        print(f"{kind:<12} {r['tasks_per_s']:>9.1f} {r['plans_per_s']:>9.0f} "
              f"{r['plan_len_min']:>6}/{r['plan_len_mean']:>5.1f}/{r['plan_len_max']:<5}")
    print(f"10 000-step blocksworld plan: {rows['10k_step_plan']['steps_per_s']:,.0f} steps/s (valid={ok})")
    return rows


_NREV_BENCH = """
app([], L, L).
app([H|T], L, [H|R]) :- app(T, L, R).
nrev([], []).
nrev([H|T], R) :- nrev(T, RT), app(RT, [H], R).
range(N, N, [N]) :- !.
range(I, N, [I|T]) :- I < N, I1 is I+1, range(I1, N, T).
bench(0, _) :- !.
bench(N, L) :- nrev(L, _), N1 is N-1, bench(N1, L).
"""


def bench_lips(repeats: int = 2000) -> dict:
    """Logical inferences per second of this engine on naive reverse of 30 elements (496 inferences per nrev30),
    measured in CPU time (process_time) like SWI's statistics(cputime), plus wall time."""
    eng = Prolog(_NREV_BENCH, max_inferences=10**9)
    eng.run("range(1, 30, L), bench(10, L)")                  # warm-up (code generation, caches)
    w0, c0 = time.perf_counter(), time.process_time()
    r = eng.run(f"range(1, 30, L), bench({repeats}, L)", max_inferences=10**9)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"inferences": r.inferences, "cpu_s": cpu, "wall_s": wall, "lips_cpu": r.inferences / cpu,
            "lips_wall": r.inferences / wall}


def bench_swipl_lips(repeats: int = 100_000):
    """SWI-Prolog's LIPS on the same program (cputime), or None when swipl is not on the PATH."""
    import shutil
    import subprocess
    import tempfile
    exe = shutil.which("swipl")
    if exe is None:
        return None
    prog = _NREV_BENCH + f"""
main :- range(1, 30, L), statistics(inferences, I0), statistics(cputime, T0), bench({repeats}, L),
        statistics(cputime, T1), statistics(inferences, I1), I is I1 - I0, T is T1 - T0,
        format("~w ~w~n", [I, T]).
"""
    with tempfile.NamedTemporaryFile("w", suffix=".pl", delete=False) as f:
        f.write(prog)
    out = subprocess.run([exe, "-q", "-g", "main", "-t", "halt", f.name], capture_output=True, text=True,
                         timeout=120).stdout.split()
    inf, cpu = int(out[0]), float(out[1])
    return {"inferences": inf, "cpu_s": cpu, "lips_cpu": inf / cpu, "version": subprocess.run(
        [exe, "--version"], capture_output=True, text=True).stdout.strip()}


def bench_tasks(seconds_per_kind: float = 1.0) -> dict:
    """Verified tasks per second per generator: synthesize (engine labels it) and check that the reference
    answer gets reward 1.0, for difficulties cycling 1..5."""
    out = {}
    for kind in PROLOG_TASK_KINDS:
        n, t0 = 0, time.process_time()
        while time.process_time() - t0 < seconds_per_kind:
            task = generate_prolog_task(n, kind=kind, difficulty=1 + n % 5)
            assert prolog_reward(task, task.answer)[0] == 1.0
            n += 1
        out[kind] = n / (time.process_time() - t0)
    return out


def _demo():
    print("solve(nrev):", solve(_NREV_BENCH, "range(1, 8, L), nrev(L, R)"))
    print("SWI-style answers:", solve("", "X = f('A', \"s\", [1,2|T], - 1, 1 - -1), Y is 2**100"))
    try:
        solve("loop :- loop.", "loop", max_inferences=50_000)
    except PrologError as e:
        print("loop :- loop. ->", e.term)
    for kind in PROLOG_TASK_KINDS:
        t = generate_prolog_task(7, kind=kind, difficulty=2)
        print(f"\n=== task kind={kind} compare={t.compare} inferences={t.inferences} ===")
        print(t.prompt)
        print("reference answer:", t.answer)
        print("reward(reference) =", prolog_reward(t, t.answer), " reward('[]') =", prolog_reward(t, "[]"))
    print("\n=== PDDL ===")
    pddl_demo()


def _bench():
    print("machine: shared CPU; LIPS in CPU seconds (process_time), as SWI's statistics(cputime)")
    ours = bench_lips()
    print(f"proto_verify nrev30: {ours['inferences']:,} inferences in {ours['cpu_s']:.2f} s CPU "
          f"({ours['wall_s']:.2f} s wall) -> {ours['lips_cpu'] / 1e6:.3f} M LIPS "
          f"(wall {ours['lips_wall'] / 1e6:.3f} M)")
    swi = bench_swipl_lips()
    if swi is None:
        print("swipl not on PATH: no SWI-Prolog comparison")
    else:
        print(f"{swi['version']} nrev30: {swi['lips_cpu'] / 1e6:.1f} M LIPS -> ratio SWI/ours = "
              f"{swi['lips_cpu'] / ours['lips_cpu']:.0f}x (target <= 100x)")
    print("\nverified tasks/s per generator (synthesize + engine label + reward check, difficulty 1..5):")
    for kind, rate in bench_tasks().items():
        print(f"  {kind:8s} {rate:8.1f} tasks/s")
    print("\nPDDL: validated plans/s and verified tasks/s per generator:")
    pddl_bench()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Prolog + PDDL verifier demo / benchmark (ProtoReasoning, arXiv 2506.15211)")
    ap.add_argument("--bench", action="store_true", help="LIPS on nrev30 (vs swipl when present), tasks/s and plans/s")
    args = ap.parse_args()
    _bench() if args.bench else _demo()
