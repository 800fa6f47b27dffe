"""Claims for the PDDL half of proto_verify (paper card /work/shared/papers/proto_reasoning.md, section 5.4).

Oracles: the Sussman anomaly and the VAL/pyval behaviours the card records; differential runs against pyperplan
happen only when it is installed (it is never a dependency).
"""
import random

import pytest

import proto_verify as pv

BW = pv.BLOCKSWORLD_DOMAIN
GRIPPER = pv.GRIPPER_DOMAIN

SUSSMAN = """
(define (problem sussman) (:domain blocksworld)
  (:objects a b c)
  (:init (on c a) (ontable a) (ontable b) (clear c) (clear b) (handempty))
  (:goal (and (on a b) (on b c))))
"""
SUSSMAN_PLAN = """(unstack c a)
(put-down c)
(pick-up b)
(stack b c)
(pick-up a)
(stack a b)
"""


def _count_formula_evaluations(monkeypatch):
    """Count calls of the formula evaluator (work counted, not timed); past a generous cap the count aborts the
    run, so a budget that does not hold fails the test instead of hanging it."""
    calls, real = [0], pv._pddl_holds

    def counted(*a):
        calls[0] += 1
        if calls[0] > 50 * pv._PDDL_MAX_WORK:
            raise AssertionError("formula evaluation was not stopped by a budget")
        return real(*a)
    monkeypatch.setattr(pv, "_pddl_holds", counted)
    return calls


def steps(text):
    return [line for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------------------------------
# card 5.4 (1): blocksworld / Sussman anomaly
# ---------------------------------------------------------------------------------------------------------------


def test_sussman_anomaly_plan_is_valid():
    v = pv.validate_plan(BW, SUSSMAN, SUSSMAN_PLAN)
    assert v.valid and v.reason == "ok" and v.failed_step is None
    assert {("on", "a", "b"), ("on", "b", "c"), ("handempty",)} <= v.final_state


def test_dropping_put_down_fails_at_step_2_on_handempty():
    plan = [s for s in steps(SUSSMAN_PLAN) if s != "(put-down c)"]
    v = pv.validate_plan(BW, SUSSMAN, "\n".join(plan))
    assert (v.valid, v.failed_step, v.reason, v.unsatisfied) == (False, 2, "precondition", ("(handempty)",))


def test_truncated_plan_is_goal_unmet_naming_the_missing_atom():
    v = pv.validate_plan(BW, SUSSMAN, "\n".join(steps(SUSSMAN_PLAN)[:-1]))
    assert (v.valid, v.failed_step, v.reason, v.unsatisfied) == (False, None, "goal_unmet", ("(on a b)",))


def test_duplicated_step_fails_its_precondition():
    plan = steps(SUSSMAN_PLAN)
    v = pv.validate_plan(BW, SUSSMAN, "\n".join(plan[:1] + plan))
    assert (v.failed_step, v.reason) == (2, "precondition")
    assert set(v.unsatisfied) == {"(on c a)", "(clear c)", "(handempty)"}


def test_empty_plan_is_valid_iff_goal_holds_initially():
    v = pv.validate_plan(BW, SUSSMAN, "")
    assert (v.reason, set(v.unsatisfied)) == ("goal_unmet", {"(on a b)", "(on b c)"})
    trivial = SUSSMAN.replace("(:goal (and (on a b) (on b c)))", "(:goal (and (on c a) (clear b)))")
    assert pv.validate_plan(BW, trivial, "; nothing to do\n").valid


def test_find_plan_solves_sussman_optimally_in_six_steps():
    plan = pv.find_plan(BW, SUSSMAN)
    assert len(plan) == 6 and pv.validate_plan(BW, SUSSMAN, plan).valid


# ---------------------------------------------------------------------------------------------------------------
# card 5.4 (2, 4): structure errors and typed gripper
# ---------------------------------------------------------------------------------------------------------------

GRIPPER4 = """
(define (problem gripper-4) (:domain gripper)
  (:objects rooma roomb - room b1 b2 b3 b4 - ball left right - gripper)
  (:init (at-robby rooma) (free left) (free right) (at b1 rooma) (at b2 rooma) (at b3 rooma) (at b4 rooma))
  (:goal (and (at b1 roomb) (at b2 roomb) (at b3 roomb) (at b4 roomb))))
"""
GRIPPER4_PLAN = """pick b1 rooma left
pick b2 rooma right
move rooma roomb
drop b1 roomb left
drop b2 roomb right
move roomb rooma
pick b3 rooma left
pick b4 rooma right
move rooma roomb
drop b3 roomb left
drop b4 roomb right"""


def test_typed_gripper_four_ball_plan_is_valid_and_optimal():
    assert pv.validate_plan(GRIPPER, GRIPPER4, GRIPPER4_PLAN).valid
    assert len(pv.find_plan(GRIPPER, GRIPPER4)) == 11


def test_picking_with_a_busy_gripper_fails_its_precondition():
    v = pv.validate_plan(GRIPPER, GRIPPER4, "pick b1 rooma left\npick b2 rooma left")
    assert (v.failed_step, v.reason, v.unsatisfied) == (2, "precondition", ("(free left)",))


@pytest.mark.parametrize("bad, reason", [
    ("fly rooma roomb", "unknown_action"),
    ("pick b2 rooma", "arity"),
    ("pick b2 rooma right extra", "arity"),
    ("pick b9 rooma right", "unknown_object"),
    ("pick right rooma b2", "type"),  # a gripper where a ball is wanted
    ("move b1 roomb", "type"),
])
def test_structure_errors_get_distinct_reasons_at_the_right_step(bad, reason):
    v = pv.validate_plan(GRIPPER, GRIPPER4, "pick b1 rooma left\n" + bad)
    assert (v.valid, v.failed_step, v.reason) == (False, 2, reason)


def test_type_hierarchy_accepts_subtypes_and_rejects_siblings():
    dom = pv.parse_domain(pv.LOGISTICS_DOMAIN)
    assert dom.ancestors["airport"] == {"airport", "place", "object"}
    assert dom.ancestors["truck"] == {"truck", "vehicle", "physobj", "object"}
    tk = pv.generate_pddl_task(5, "logistics", 2)
    # load-truck wants a place: an airport (subtype) is fine, a city (not a place) is a type error
    ok = pv.validate_plan(tk.domain, tk.problem, tk.answer)
    assert ok.valid
    v = pv.validate_plan(tk.domain, tk.problem, "load-truck p1 t1 c1")
    assert (v.failed_step, v.reason) == (1, "type")


# ---------------------------------------------------------------------------------------------------------------
# card 5.4 (5, 6, 7): negative preconditions, equality, delete-then-add, format tolerance, key collision
# ---------------------------------------------------------------------------------------------------------------

MINI = """
(define (domain mini)
  (:requirements :strips :negative-preconditions :equality)
  (:predicates (p ?x) (q ?x ?y))
  (:action flip :parameters (?x) :precondition () :effect (and (not (p ?x)) (p ?x)))
  (:action make :parameters (?x) :precondition (not (p ?x)) :effect (p ?x))
  (:action neq :parameters (?x ?y) :precondition (not (= ?x ?y)) :effect (q ?x ?y)))
"""
MINI_PROB = "(define (problem m) (:domain mini) (:objects a b) (:init) (:goal (and)))"


def test_delete_then_add_keeps_the_atom_true():
    v = pv.validate_plan(MINI, MINI_PROB, "(flip a)")
    assert v.valid and ("p", "a") in v.final_state
    goal = MINI_PROB.replace("(:goal (and))", "(:goal (p b))")
    assert pv.find_plan(MINI, goal) in ([("flip", "b")], [("make", "b")])


def test_negative_precondition_is_not_read_as_positive():
    assert pv.validate_plan(MINI, MINI_PROB, "(make a)").valid
    v = pv.validate_plan(MINI, MINI_PROB, "(make a)\n(make a)")
    assert (v.failed_step, v.reason, v.unsatisfied) == (2, "precondition", ("(not (p a))",))


def test_equality_in_preconditions():
    v = pv.validate_plan(MINI, MINI_PROB, "(neq a a)")
    assert (v.failed_step, v.reason, v.unsatisfied) == (1, "precondition", ("(not (= a a))",))
    assert pv.validate_plan(MINI, MINI_PROB, "(neq b a)").valid


@pytest.mark.parametrize("variant", [
    SUSSMAN_PLAN.upper(),
    "\n".join(f"{i}: {s}" for i, s in enumerate(steps(SUSSMAN_PLAN))) + "\n; cost = 6 (unit cost)",
    "\n".join(f"step {i + 1}: {s.upper()} [1.0]" for i, s in enumerate(steps(SUSSMAN_PLAN))),
    "\n".join(s.strip("()") for s in steps(SUSSMAN_PLAN)),
    "; Plan:\n" + "\n".join(f"{i + 1}. {s.strip('()')}" for i, s in enumerate(steps(SUSSMAN_PLAN))),
    " ".join(steps(SUSSMAN_PLAN)),
])
def test_upper_case_and_prefixed_plans_get_the_same_verdict(variant):
    assert pv.validate_plan(BW, SUSSMAN, variant) == pv.validate_plan(BW, SUSSMAN, SUSSMAN_PLAN)
    broken = variant.replace("PUT-DOWN C", "NOOP").replace("put-down c", "noop")
    v = pv.validate_plan(BW, SUSSMAN, broken)
    assert (v.failed_step, v.reason) == (2, "unknown_action")


@pytest.mark.parametrize("junk", [",", " , ,", ",\n,,"])
def test_plan_of_only_separators_is_an_empty_plan_not_a_crash(junk):
    # Regression (found by guru_rewards' fuzz test): a line of only commas parsed to an empty step and the
    # simulator indexed it. It is as empty as a blank line: the verdict is goal_unmet, never an exception.
    assert pv.parse_plan(junk) == []
    v = pv.validate_plan(BW, SUSSMAN, junk)
    assert (v.valid, v.reason) == (False, "goal_unmet")


def test_atom_keys_are_tuples_so_p_o_aob_differs_from_p_oa_ob():
    dom = """(define (domain k) (:predicates (p ?x ?y) (done))
               (:action go :parameters (?x ?y) :precondition (p ?x ?y) :effect (done)))"""
    prob = "(define (problem k1) (:domain k) (:objects o aob oa ob) (:init (P O AOB)) (:goal (done)))"
    v = pv.validate_plan(dom, prob, "(go oa ob)")
    assert (v.failed_step, v.reason, v.unsatisfied) == (1, "precondition", ("(p oa ob)",))
    assert pv.validate_plan(dom, prob, "(GO O AOB)").valid
    assert pv.find_plan(dom, prob) == [("go", "o", "aob")]


def test_ten_thousand_step_plan_validates_with_work_linear_in_its_length(monkeypatch):
    blocks = [f"b{i}" for i in range(50)]
    init = " ".join(f"(ontable {x}) (clear {x})" for x in blocks)
    prob = (f"(define (problem bw50) (:domain blocksworld) (:objects {' '.join(blocks)}) "
            f"(:init (handempty) {init}) (:goal (and (on b1 b0) (ontable b0))))")
    plan = [("pick-up", blocks[i % 50]) if k == 0 else ("put-down", blocks[i % 50])
            for i in range(4999) for k in (0, 1)] + [("pick-up", "b1"), ("stack", "b1", "b0")]
    assert len(plan) == 10_000
    text = pv.format_plan(plan, parens=True)
    calls = _count_formula_evaluations(monkeypatch)
    v = pv.validate_plan(BW, prob, text)
    assert v.valid and calls[0] <= 10 * len(plan), (v, calls)     # a few literals per precondition


# ---------------------------------------------------------------------------------------------------------------
# parser: positions, unsupported features, richer PDDL
# ---------------------------------------------------------------------------------------------------------------


def test_parse_errors_carry_line_and_column():
    with pytest.raises(pv.PDDLError) as e:
        pv.parse_domain("(define (domain d)\n  (:predicates (p ?x)\n")
    assert (e.value.line, e.value.col) == (1, 1)  # the '(' that is never closed
    with pytest.raises(pv.PDDLError) as e:
        pv.parse_domain("(define (domain d))\n   )")
    assert (e.value.line, e.value.col) == (2, 4)
    with pytest.raises(pv.PDDLError) as e:
        pv.parse_domain("(define (domain d) (:predicates (p ?x))\n (:action a :parameters (?x)\n"
                        "   :precondition (and (p ?x) (r ?x)) :effect (p ?x)))")
    assert (e.value.line, e.value.col, "unknown predicate" in e.value.message) == (3, 31, True)  # the name `r`
    with pytest.raises(pv.PDDLError) as e:
        pv.parse_plan("(a b)\n\n  (c d) junk")
    assert e.value.line == 3
    v = pv.validate_plan(BW, SUSSMAN.replace("(clear b)", "(clear b"), SUSSMAN_PLAN)
    assert v.reason == "parse_error" and "line" in v.message


@pytest.mark.parametrize("snippet, requirement", [
    ("(:requirements :durative-actions)", ":durative-actions"),
    ("(:requirements :strips :numeric-fluents)", ":numeric-fluents"),
    ("(:functions (fuel ?x))", ":numeric-fluents"),
    ("(:derived (p ?x) (p ?x))", ":derived-predicates"),
    ("(:types a - (either b c))", "either"),
    ("(:durative-action m :parameters () :duration (= ?duration 1) :condition () :effect ())",
     ":durative-actions"),
])
def test_unsupported_features_name_the_requirement(snippet, requirement):
    dom = f"(define (domain blocksworld) {snippet} (:predicates (p ?x)))"
    with pytest.raises(pv.PDDLUnsupported) as e:
        pv.parse_domain(dom)
    assert requirement in str(e.value)
    v = pv.validate_plan(dom, SUSSMAN, "")
    assert v.reason == "unsupported" and requirement in v.message


def test_action_costs_are_summed_but_do_not_affect_validity():
    dom = BW.replace("(:requirements :strips)", "(:requirements :strips :action-costs) (:functions (total-cost))")
    dom = dom.replace("(holding ?x)))\n  (:action put-down", "(holding ?x) (increase (total-cost) 2)))\n"
                                                           "  (:action put-down")
    prob = SUSSMAN.replace("(handempty))", "(handempty) (= (total-cost) 0))").replace(
        "(on b c)))", "(on b c)))\n  (:metric minimize (total-cost))")
    v = pv.validate_plan(dom, prob, SUSSMAN_PLAN)
    assert v.valid and v.cost == 4.0  # two pick-ups


ADL = """
(define (domain adl)
  (:requirements :adl)
  (:types room thing)
  (:constants r1 - room)
  (:predicates (lit ?r - room) (in ?t - thing ?r - room) (seen ?t - thing) (done))
  (:action light :parameters (?r - room) :precondition (not (lit ?r))
    :effect (and (lit ?r) (forall (?t - thing) (when (in ?t ?r) (seen ?t)))))
  (:action finish :parameters ()
    :precondition (and (forall (?t - thing) (seen ?t)) (or (lit r1) (exists (?r - room) (lit ?r))))
    :effect (done)))
"""
ADL_PROB = """(define (problem adl1) (:domain adl) (:objects r2 r3 - room x y - thing)
  (:init (in x r2) (in y r3)) (:goal (and (done) (imply (lit r1) (seen x)))))"""


def test_conditional_effects_and_quantifiers():
    v = pv.validate_plan(ADL, ADL_PROB, "(light r2)\n(finish)")
    assert (v.failed_step, v.reason, v.unsatisfied) == (2, "precondition", ("(forall (?t - thing) (seen ?t))",))
    v = pv.validate_plan(ADL, ADL_PROB, "(light r2)\n(light r3)\n(finish)")
    assert v.valid and ("seen", "x") in v.final_state and ("seen", "y") in v.final_state
    plan = pv.find_plan(ADL, ADL_PROB)  # the evaluator-based search path (not STRIPS)
    assert len(plan) == 3 and pv.validate_plan(ADL, ADL_PROB, plan).valid


def test_problem_checked_against_its_domain():
    v = pv.validate_plan(BW, SUSSMAN.replace("(:domain blocksworld)", "(:domain other)"), SUSSMAN_PLAN)
    assert v.reason == "parse_error" and "other" in v.message
    v = pv.validate_plan(BW, SUSSMAN.replace("(clear b)", "(clear z)"), SUSSMAN_PLAN)
    assert v.reason == "parse_error" and "'z'" in v.message
    with pytest.raises(pv.PDDLError):
        pv.parse_problem(SUSSMAN.replace("(clear b)", "(clear b c)"), BW)


def test_parsed_objects_and_text_give_the_same_verdicts():
    dom, prob = pv.parse_domain(BW), pv.parse_problem(SUSSMAN, BW)
    for plan in (SUSSMAN_PLAN, "(unstack c a)\n(pick-up b)", ""):
        assert pv.validate_plan(dom, prob, pv.parse_plan(plan)) == pv.validate_plan(BW, SUSSMAN, plan)
    assert pv.find_plan(dom, prob) == pv.find_plan(BW, SUSSMAN)


def test_validation_is_stateless_across_calls():
    # VAL#10: after one failure every later plan of the run was reported invalid
    good = pv.validate_plan(BW, SUSSMAN, SUSSMAN_PLAN)
    for bad in ("(stack a a)", "(((", "(unstack c a)\n(unstack c a)"):
        pv.validate_plan(BW, SUSSMAN, bad)
        pv.validate_plan(BW + "(", SUSSMAN, bad)
    assert pv.validate_plan(BW, SUSSMAN, SUSSMAN_PLAN) == good and good.valid


def test_bad_argument_types_raise_type_error():
    with pytest.raises(TypeError, match="domain"):
        pv.validate_plan(42, SUSSMAN, "")
    with pytest.raises(TypeError, match="plan"):
        pv.validate_plan(BW, SUSSMAN, 3.5)
    with pytest.raises(ValueError, match="difficulty"):
        pv.generate_pddl_task(0, "gripper", difficulty=9)
    with pytest.raises(ValueError, match="kind"):
        pv.generate_pddl_task(0, "sokoban")



def test_init_atoms_are_type_checked_against_the_predicate(tmp_path):
    good = pv.generate_pddl_task(3, "gripper", 1)
    bad = good.problem.replace("(:init", "(:init (at-robby b1)", 1)   # a ball where a room is declared
    assert " b1 - ball" in good.problem and bad != good.problem
    with pytest.raises(pv.PDDLError, match="b1.*not a .room."):
        pv.parse_problem(bad, pv.GRIPPER_DOMAIN)
    v = pv.validate_plan(pv.GRIPPER_DOMAIN, bad, good.answer)
    assert (v.valid, v.reason) == (False, "parse_error") and "line" in v.message
    assert pv.validate_plan(pv.GRIPPER_DOMAIN, good.problem, good.answer).valid
    validator = pytest.importorskip("pyval.validator", reason="pddl-pyvalidator not installed (optional oracle)")
    for name, body in (("d", good.domain), ("p", bad), ("s", good.answer)):
        (tmp_path / f"{name}.pddl").write_text(body)
    try:
        theirs = validator.PDDLValidator().validate(domain_path=str(tmp_path / "d.pddl"),
                                                    problem_path=str(tmp_path / "p.pddl"),
                                                    plan_path=str(tmp_path / "s.pddl")).is_valid
    except Exception:                      # pyval rejects the problem by raising
        theirs = False
    assert theirs is False


# ---------------------------------------------------------------------------------------------------------------
# planner and synthesis
# ---------------------------------------------------------------------------------------------------------------


def test_find_plan_returns_none_when_unsolvable_or_out_of_budget():
    impossible = SUSSMAN.replace("(on b c)))", "(on b c) (on c b)))")
    assert pv.find_plan(BW, impossible) is None
    assert pv.find_plan(BW, SUSSMAN, max_nodes=3) is None


def test_every_find_plan_answer_validates_and_no_single_step_can_be_dropped():
    # BFS is length-optimal, so deleting any one step of its plan must never give a valid plan.
    rng = random.Random(1)
    for kind in pv.PDDL_KINDS:
        for difficulty in (1, 2, 3, 4, 5):
            for _ in range(3 if difficulty < 5 else 1):
                tk = pv.generate_pddl_task(rng, kind, difficulty)
                assert pv.validate_plan(tk.domain, tk.problem, tk.answer).valid
                assert pv.parse_plan(tk.answer) == list(tk.plan)
                for i in range(len(tk.plan)):
                    shorter = tk.plan[:i] + tk.plan[i + 1:]
                    assert not pv.validate_plan(tk.domain, tk.problem, list(shorter)).valid


def test_generators_are_seeded_and_plan_lengths_vary_widely():
    assert pv.generate_pddl_task(123, "mixed") == pv.generate_pddl_task(123, "mixed") == pv.generate_pddl_task(123)
    assert pv.generate_pddl_task(123, "gripper", 3) != pv.generate_pddl_task(124, "gripper", 3)
    lengths = {kind: [len(pv.generate_pddl_task(s, kind, 1 + s % 5).plan) for s in range(15)]
               for kind in pv.PDDL_KINDS}
    everything = sum(lengths.values(), [])
    assert min(everything) <= 2 and max(everything) >= 14
    assert all(max(v) >= 3 * min(v) for v in lengths.values()), lengths


def test_memoized_plan_labels_give_the_same_tasks_as_a_fresh_search():
    """Repeated instances reuse their validated BFS plan (_label_plan): 60 seeded draws from a small space give the
    same tasks with a cold memo as with a warm one, and repeated instances do not add entries."""
    draw = lambda: [pv.generate_pddl_task(random.Random(i), "gripper", 1) for i in range(60)]  # noqa: E731
    pv._LABELS.clear()
    cold = draw()
    n = len(pv._LABELS)
    assert cold == draw() and len(pv._LABELS) == n < 60  # the space of 1-ball gripper tasks is small
    pv._LABELS.clear()


def test_prompt_states_the_problem_and_answer_is_compact():
    tk = pv.generate_pddl_task(7, "blocksworld", 3)
    assert "Goal:" in tk.prompt and tk.prompt.startswith("Blocksworld")
    assert "(" not in tk.answer and len(tk.answer.splitlines()) == len(tk.plan)
    assert all(b in tk.prompt for b in "abcd")


# ---------------------------------------------------------------------------------------------------------------
# reward: never raises, bounded time
# ---------------------------------------------------------------------------------------------------------------


def test_reward_is_one_for_the_reference_and_zero_with_a_reason_otherwise():
    tk = pv.generate_pddl_task(11, "gripper", 3)
    assert pv.pddl_reward(tk, tk.answer) == (1.0, "ok")
    assert pv.pddl_reward(tk, "<think>hmm</think>\n" + tk.answer) == (1.0, "ok")
    assert pv.pddl_reward({"domain": tk.domain, "problem": tk.problem}, tk.answer) == (1.0, "ok")
    assert pv.pddl_reward(tk, "\n".join(tk.answer.splitlines()[:-1])) == (0.0, "goal_unmet")
    assert pv.pddl_reward(tk, "I think we should move the ball") == (0.0, "unknown_action")
    assert pv.pddl_reward(tk, "(pick b1") == (0.0, "parse_error")
    with pytest.raises(TypeError, match="task"):
        pv.pddl_reward({"domain": tk.domain}, tk.answer)  # a caller bug, not model output


@pytest.mark.parametrize("response", [
    "", None, b"bytes", "\x00\x01\x02", "(((((((", ")))", "🤖 move r1 r2 ✓", "ÉTAPE 1: (MOVE R1 R2)",
    "(move r1 r2)" * 200_000, "move r1 r2\n" * 20_000, "x" * 3_000_000, "(" * 100_000 + ")" * 100_000,
    "\n" * 500_000, "; only a comment", "[1.0]", "0:", "step 1:", "(move\tr1,r2)", "move r1 r2 [2",
], ids=lambda r: repr(r)[:24])
def test_reward_never_raises_on_garbage(response):
    # (its work is linear in the response: test_plan_parsing_does_linear_work_on_150k_character_adversarial_plans)
    tk = pv.generate_pddl_task(2, "gripper", 2)
    score, reason = pv.pddl_reward(tk, response)
    assert score in (0.0, 1.0) and (reason in pv.VERDICT_REASONS or reason == "too_long"), reason



def test_prose_around_the_plan_after_think_is_not_read_as_an_action():
    tk = pv.generate_pddl_task(11, "gripper", 3)
    for response in [f"<think>hmm</think>\nHere is the plan:\n{tk.answer}\nThis reaches the goal.",
                     f"Plan:\n```\n{tk.answer}\n```\nAll balls are delivered.",
                     f"</think>\n\n{pv.format_plan(tk.plan, parens=True).upper()}\n\nDone."]:
        assert pv.pddl_reward(tk, response) == (1.0, "ok"), response
    lines = tk.answer.splitlines()
    middle = "\n".join(lines[:1] + ["now the second ball"] + lines[1:])   # prose inside the plan is an action
    assert pv.pddl_reward(tk, middle) == (0.0, "unknown_action")
    assert pv.pddl_reward(tk, "Here is the plan:\nI could not find one.") == (0.0, "unknown_action")


class _CountingPattern:
    """Stands in for a compiled regex and counts the characters it is offered. Anchored calls (match, fullmatch)
    examine at most the rest of the string once (the plan patterns have no nested quantifiers); an unanchored
    search may restart at every position, so it is charged (characters offered)^2."""

    def __init__(self, pattern, work):
        self.pattern, self.work = pattern, work

    def _anchored(self, name):
        def call(string, pos=0, *a):
            self.work[0] += len(string) - pos
            return getattr(self.pattern, name)(string, pos, *a)
        return call

    def __getattr__(self, name):
        if name in ("match", "fullmatch"):
            return self._anchored(name)
        if name in ("search", "sub", "subn", "finditer", "findall", "split"):
            def call(*a, **k):
                string = a[0] if name in ("search", "finditer", "findall", "split") else a[1]
                self.work[0] += len(string) ** 2
                return getattr(self.pattern, name)(*a, **k)
            return call
        return getattr(self.pattern, name)


def test_plan_parsing_does_linear_work_on_150k_character_adversarial_plans(monkeypatch):
    """Counted, not timed: the regex work of parse_plan / validate_plan / pddl_reward stays within a few
    characters per input character (a backtracking suffix search made "[" * 150000 quadratic)."""
    work = [0]
    for name in dir(pv):
        obj = getattr(pv, name)
        if name.startswith("_PDDL_PLAN") and hasattr(obj, "fullmatch"):
            monkeypatch.setattr(pv, name, _CountingPattern(obj, work))
    tk = pv.generate_pddl_task(2, "gripper", 2)
    n = 150_000
    for text in ["[" * n, "(" * n, "(a" * (n // 2), "1: " * (n // 3), "[" * n + "]", "a [" * (n // 3) + "]",
                 " " * n + "x", "step " * (n // 5), "pick " + "[1]" * (n // 3), "(pick)" * (n // 6)]:
        work[0] = 0
        v = pv.validate_plan(pv.GRIPPER_DOMAIN, tk.problem, text)
        score, reason = pv.pddl_reward(tk, text, max_chars=10 * n)
        assert not v.valid and score == 0.0 and reason in pv.VERDICT_REASONS + ("too_long",)
        assert work[0] <= 20 * len(text), (text[:12], work[0])


# ---------------------------------------------------------------------------------------------------------------
# fuzz: random and mutated domains, problems and plans -> documented outcomes only, never a hang
# ---------------------------------------------------------------------------------------------------------------

_VOCAB = ["(", ")", "(", ")", "-", "?x", "?y", "and", "not", "=", "or", "forall", "exists", "when", "either",
          "imply", ":typing", ":action", ":parameters", ":effect", ":precondition", "object", "a", "b", "c",
          "on", "0", "1.5", "é", "\x00", "🤖", ";", "\n", "increase", "(total-cost)", ":derived", "at", "start"]


def _mutate(text, rng):
    toks = text.replace("(", " ( ").replace(")", " ) ").split()
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        i = rng.randrange(len(toks) + 1)
        if op == 0 and toks:
            del toks[min(i, len(toks) - 1)]
        elif op == 1:
            toks.insert(i, rng.choice(_VOCAB))
        elif op == 2 and toks:
            j = rng.randrange(len(toks))
            toks.insert(i, toks[j])
        elif toks:
            j, k = rng.randrange(len(toks)), rng.randrange(len(toks))
            toks[j], toks[k] = toks[k], toks[j]
    return " ".join(toks)


def _mutate_chars(text, rng):
    chars = list(text)
    for _ in range(rng.randint(1, 5)):
        i, op = rng.randrange(len(chars) + 1), rng.randrange(3)
        if op == 0 and chars:
            del chars[min(i, len(chars) - 1)]
        elif op == 1:
            chars.insert(i, rng.choice("()?-;: \n\t=aé0."))
        elif chars:
            chars.insert(i, chars[rng.randrange(len(chars))])
    return "".join(chars)


def test_fuzz_regression_keyword_used_as_an_argument():
    # found by fuzzing: a quantifier keyword in argument position once crashed the domain checker (IndexError)
    dom = BW.replace("(handempty) (ontable ?x)))", "(handempty exists) (ontable ?x)))")
    v = pv.validate_plan(dom, SUSSMAN, SUSSMAN_PLAN)
    assert v.reason == "parse_error" and "handempty" in v.message


def test_fuzz_only_documented_outcomes_and_no_hang(monkeypatch):
    rng = random.Random(0)
    bases = [(BW, SUSSMAN, SUSSMAN_PLAN), (GRIPPER, GRIPPER4, GRIPPER4_PLAN), (MINI, MINI_PROB, "(flip a)"),
             (ADL, ADL_PROB, "(light r2)\n(light r3)\n(finish)")]
    calls = _count_formula_evaluations(monkeypatch)
    for trial in range(600):
        dom, prob, plan = rng.choice(bases)
        which, mutate = rng.randrange(3), rng.choice([_mutate, _mutate_chars])
        dom = mutate(dom, rng) if which == 0 else dom
        prob = mutate(prob, rng) if which == 1 else prob
        plan = mutate(plan, rng) if which == 2 else plan
        calls[0] = 0
        v = pv.validate_plan(dom, prob, plan)
        assert isinstance(v, pv.Verdict) and v.reason in pv.VERDICT_REASONS
        assert v.valid == (v.reason == "ok")
        for parse, arg in ((pv.parse_domain, dom), (pv.parse_plan, plan)):
            try:
                parse(arg)
            except pv.PDDLError:
                pass
        try:
            pv.find_plan(dom, prob, max_nodes=2000, max_ground=5000)
        except pv.PDDLError:
            pass
        except ValueError as e:
            assert "max_ground" in str(e)
        assert calls[0] <= 4 * pv._PDDL_MAX_WORK + 10 * 2000, (dom, prob, plan)   # budgets bound the work
    # random byte soup as well
    for _ in range(100):
        junk = "".join(rng.choice(_VOCAB + [" "]) for _ in range(rng.randint(0, 60)))
        v = pv.validate_plan(junk, junk, junk)
        assert v.reason in ("parse_error", "unsupported")


def test_deep_nesting_is_a_parse_error_not_a_recursion_error():
    deep = "(define (domain d) (:predicates (p)) (:action a :parameters () :precondition " + \
           "(and " * 5000 + "(p)" + ")" * 5000 + " :effect (p)))"
    v = pv.validate_plan(deep, SUSSMAN, "")
    assert v.reason == "parse_error" and "nesting" in v.message


def test_quantifier_bomb_stops_at_the_evaluation_budget(monkeypatch):
    objs = " ".join(f"o{i}" for i in range(60))
    dom = """(define (domain bomb) (:requirements :adl) (:predicates (p ?x) (done))
      (:action go :parameters () :precondition (forall (?a ?b ?c ?d) (not (p ?a))) :effect (done)))"""
    prob = f"(define (problem b) (:domain bomb) (:objects {objs}) (:init) (:goal (done)))"
    calls = _count_formula_evaluations(monkeypatch)
    v = pv.validate_plan(dom, prob, "(go)")
    assert v.reason == "unsupported" and calls[0] <= 2 * pv._PDDL_MAX_WORK



def test_quantifier_budget_counts_the_work_of_each_binding_not_the_bindings(monkeypatch):
    """A forall over 1 000 objects whose body is a 400-way `or`, checked at each of 202 steps, stops at the budget
    after O(_PDDL_MAX_WORK) formula evaluations (counted: each call of _pddl_holds), not 80 million."""
    ors = " ".join(f"(q{k} ?a)" for k in range(399)) + " (not (p ?a))"
    preds = " ".join(f"(q{k} ?x)" for k in range(399))
    dom = f"""(define (domain orbomb) (:requirements :adl) (:predicates (p ?x) {preds} (done))
      (:action go :parameters () :precondition (forall (?a) (or {ors})) :effect (done)))"""
    objs = " ".join(f"o{i}" for i in range(1000))
    prob = f"(define (problem b) (:domain orbomb) (:objects {objs}) (:init) (:goal (done)))"
    calls = _count_formula_evaluations(monkeypatch)
    v = pv.validate_plan(dom, prob, "(go)\n" * 202)
    assert v.reason == "unsupported" and "quantifier" in v.message
    assert calls[0] <= 2 * pv._PDDL_MAX_WORK
    small = prob.replace(objs, "o1 o2 o3")                   # the same domain on 3 objects: fine for 50 steps
    assert pv.validate_plan(dom, small, "(go)\n" * 50).valid


def test_pddl_parse_errors_carry_a_position():
    for text in ["\x00", "", "  \n ", "(define (domain d)) x", "(define (domain d)) (define (domain e))"]:
        with pytest.raises(pv.PDDLError) as ei:
            pv.parse_domain(text)
        assert ei.value.line is not None and ei.value.col is not None, (text, str(ei.value))
    twice = ("(define (domain d) (:predicates (p))\n (:action a :parameters () :precondition (p) :effect (p))\n"
             "  (:action a :parameters () :precondition (p) :effect (not (p))))")
    with pytest.raises(pv.PDDLError, match="declared twice") as ei:
        pv.parse_domain(twice)
    assert (ei.value.line, ei.value.col) == (3, 12)                     # the second declaration's name
    assert "line 1, column 1" in pv.validate_plan("\x00", SUSSMAN, "").message


# ---------------------------------------------------------------------------------------------------------------
# optional differential tests against pyperplan and pyval (dev-only oracles, never dependencies)
# ---------------------------------------------------------------------------------------------------------------


def test_plan_lengths_match_pyperplan_bfs(tmp_path):
    planner = pytest.importorskip("pyperplan.planner", reason="pyperplan not installed (optional oracle)")
    rng = random.Random(3)
    for kind in ("blocksworld", "gripper"):  # pyperplan reads STRIPS + typing only (our logistics uses equality)
        for difficulty in (1, 2, 3, 4):
            tk = pv.generate_pddl_task(rng, kind, difficulty)
            (tmp_path / "d.pddl").write_text(tk.domain)
            (tmp_path / "p.pddl").write_text(tk.problem)
            theirs = planner.search_plan(str(tmp_path / "d.pddl"), str(tmp_path / "p.pddl"),
                                         planner.SEARCHES["bfs"], None)
            assert len(theirs) == len(tk.plan)
            assert pv.validate_plan(tk.domain, tk.problem, "\n".join(op.name for op in theirs)).valid


def test_verdicts_and_failing_steps_match_pyval_on_mutated_plans(tmp_path):
    validator = pytest.importorskip("pyval.validator", reason="pddl-pyvalidator not installed (optional oracle)")
    rng = random.Random(4)
    for trial in range(12):  # every (kind, mutation) pair once: lcm(3, 4) = 12
        tk = pv.generate_pddl_task(rng, pv.PDDL_KINDS[trial % 3])
        plan = list(tk.plan)
        i = rng.randrange(len(plan))
        op = trial % 4  # deletion, transposition, duplication, replacement: card 5.4 (8)
        if op == 0:
            del plan[i]
        elif op == 1 and i + 1 < len(plan):
            plan[i], plan[i + 1] = plan[i + 1], plan[i]
        elif op == 2:
            plan.insert(i, plan[i])
        else:
            plan[i] = plan[rng.randrange(len(plan))]
        text = pv.format_plan(plan, parens=True)
        for name, body in (("d", tk.domain), ("p", tk.problem), ("s", text)):
            (tmp_path / f"{name}.pddl").write_text(body)
        theirs = validator.PDDLValidator().validate(domain_path=str(tmp_path / "d.pddl"),
                                                    problem_path=str(tmp_path / "p.pddl"),
                                                    plan_path=str(tmp_path / "s.pddl"))
        ours = pv.validate_plan(tk.domain, tk.problem, text)
        assert (ours.valid, ours.failed_step) == (theirs.is_valid, theirs.failed_step), (text, tk.problem)
        if ours.reason == "precondition":
            assert len(ours.unsatisfied) == sum(len(s.unsatisfied) for s in theirs.steps)


# ---------------------------------------------------------------------------------------------------------------
# demo and bench entry points used by proto_verify.py
# ---------------------------------------------------------------------------------------------------------------


def test_demo_prints_the_sussman_verdicts(capsys):
    pv.pddl_demo()
    out = capsys.readouterr().out
    assert "reason=precondition step=2 (handempty)" in out and "reason=goal_unmet" in out
    assert out.count("reward: (1.0, 'ok')") == 3


def test_bench_reports_throughput_for_every_generator(capsys):
    rows = pv.pddl_bench(seconds=0.05)
    assert set(rows) == set(pv.PDDL_KINDS) | {"10k_step_plan"}
    assert all(rows[k]["tasks_per_s"] > 0 and rows[k]["plans_per_s"] > 0 for k in pv.PDDL_KINDS)
    assert rows["10k_step_plan"]["valid"]
    assert "tasks/s" in capsys.readouterr().out
