"""PDDL half of proto_verify: a plan validator, a BFS planner, PDDL task synthesis and the plan reward.

Paper: ProtoReasoning -- Reasoning Prototypes as the Foundation for Generalizable Reasoning in LLMs
(He, Chen, Liang, Ma, Qiu, Wu, Yan; arXiv 2506.15211, June 2025). The paper checks planning problems written in PDDL
with the VAL validator, so the labels of synthesized PDDL data are correct by construction. This is our validator
(pure Python, stdlib only), a breadth-first planner that produces the reference plans, seeded task generators
(blocksworld, gripper, tiny logistics) and the reward used by train.py.

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

Deviations from the paper / from VAL:
  * Pure-Python validator, not VAL. Names are case-insensitive everywhere (plans from FF print upper case); pyval
    rejects upper-case action names, we do not.
  * Requirements are not enforced against the constructs used: a `not` in a precondition works without
    `:negative-preconditions` declared (the semantics are unambiguous). A negation is never read as positive.
  * Plans are read tolerantly: `(a b c)` or `a b c` per line, `;` comments, `k:` / `step k:` / `k.` prefixes and
    `[duration]` suffixes ignored, several `(...)` groups on one line allowed.
  * Quantifiers and forall-effects are evaluated by enumeration; an evaluation budget stops adversarial domains,
    reported as `unsupported`.
  * The paper's PDDL task formats are not public; our tasks are plan generation from a compact natural prompt.

Run:  python -c "import pddl_part; pddl_part.pddl_demo()"         (demo; part of `python proto_verify.py` after merge)
      python -c "import pddl_part; pddl_part.pddl_bench()"        (benchmark; `proto_verify.py --bench` after merge)
      pytest tests/test_proto_verify_pddl.py -q
"""
# ----------------------------------------------------------------------------------------------------------------
# imports
# ----------------------------------------------------------------------------------------------------------------
import bisect
import collections
import dataclasses
import functools
import itertools
import random
import re
import time

# ----------------------------------------------------------------------------------------------------------------
# errors, parsed objects, verdict
# ----------------------------------------------------------------------------------------------------------------


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
_PDDL_MAX_WORK = 200_000  # quantifier bindings enumerated per validation / per expanded state in find_plan


# ----------------------------------------------------------------------------------------------------------------
# reader: text -> nested lists of lower-cased symbols that remember their position
# ----------------------------------------------------------------------------------------------------------------


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
    if len(top) != 1 or not isinstance(top[0], list):
        node = top[1] if len(top) > 1 else None
        raise PDDLError(f"{what}: expected exactly one '(define ...)'", *_pddl_pos(node))
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


# ----------------------------------------------------------------------------------------------------------------
# formulas and effects (structural parse; names are checked later against the domain/problem)
# ----------------------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------------------
# domain and problem
# ----------------------------------------------------------------------------------------------------------------


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
        if act.name in actions:
            raise _pddl_err(act.name, f"action {act.name!r} declared twice")
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

    def bindings(self, params, b):
        """All extensions of binding b to the typed variables `params` (enumeration, counted against the budget)."""
        domains = [self.by_type.get(t, ()) for _, t in params]
        names = [v for v, _ in params]
        for combo in itertools.product(*domains):
            self.work += 1
            if self.work > _PDDL_MAX_WORK:
                raise PDDLUnsupported("quantifier enumeration", f"more than {_PDDL_MAX_WORK} "
                                                                "quantifier bindings")
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
        for t in atom[1:]:
            if t not in names:
                raise _pddl_err(t, f"unknown object {t!r} in :init")
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


# ----------------------------------------------------------------------------------------------------------------
# plans
# ----------------------------------------------------------------------------------------------------------------

_PDDL_PLAN_PREFIX = re.compile(r"^\s*(?:step\s*)?\d+(?:\.\d+)?\s*[:.)]\s*", re.IGNORECASE)
_PDDL_PLAN_SUFFIX = re.compile(r"\[[^\]]*\]\s*$")
_PDDL_PLAN_GROUP = re.compile(r"\(([^()]*)\)")
_PDDL_PLAN_FAST = re.compile(r"\s*\(([^();:\[\],]*)\)\s*|\s*([A-Za-z_][^();:\[\],]*)")  # `(a b c)` or `a b c`


def parse_plan(text):
    """Read a plan tolerantly: one `(name arg ...)` or `name arg ...` per line, `;` comments, `k:` prefixes,
    `[duration]` suffixes, any case. Returns a list of tuples (name, arg, ...). Raises PDDLError with the line."""
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
        line = raw.split(";", 1)[0]
        m = _PDDL_PLAN_PREFIX.match(line)
        if m:
            line = line[m.end():]
        line = _PDDL_PLAN_SUFFIX.sub("", line).strip().lower()
        if not line:
            continue
        if "(" in line or ")" in line:
            rest, last = [], 0
            for g in _PDDL_PLAN_GROUP.finditer(line):
                rest.append(line[last:g.start()])
                toks = g.group(1).replace(",", " ").split()
                if not toks:
                    raise PDDLError("plan: empty action '()'", lineno, g.start() + 1)
                steps.append(tuple(toks))
                last = g.end()
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


# ----------------------------------------------------------------------------------------------------------------
# semantics: evaluation, progression, validation
# ----------------------------------------------------------------------------------------------------------------


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
        return any(_pddl_holds(f[2], state, nb, world) for nb in world.bindings(f[1], b))
    return all(_pddl_holds(f[2], state, nb, world) for nb in world.bindings(f[1], b))  # forall


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
            for nb in world.bindings(e[1], b):
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


# ----------------------------------------------------------------------------------------------------------------
# planner: breadth-first search (optimal plan length) with a node budget
# ----------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------
# task synthesis: blocksworld, gripper, tiny logistics
# ----------------------------------------------------------------------------------------------------------------

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
        plan = find_plan(domain, problem, max_nodes=max_nodes)
        if plan:  # None: out of budget (resample); []: goal already true (generators avoid it)
            break
    else:
        raise RuntimeError(f"could not label a {kind} task within max_nodes={max_nodes}")
    verdict = validate_plan(domain, problem, plan)
    if not verdict.valid:  # correct by construction: the planner's answer must pass the validator
        raise AssertionError(f"find_plan returned an invalid plan: {verdict.message}")
    return PDDLTask(kind, difficulty, prompt, format_plan(plan), tuple(plan), domain, problem)


# ----------------------------------------------------------------------------------------------------------------
# reward
# ----------------------------------------------------------------------------------------------------------------


def pddl_reward(task, response, max_chars=100_000, max_steps=5_000):
    """Score a model's plan: (1.0, 'ok') if valid and the goal is reached, else (0.0, reason).

    task: PDDLTask, or any object/mapping with `domain` and `problem` PDDL text. response: the model's text
    (anything after the last `</think>` is read). reason is a Verdict reason, or 'too_long' when the response
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
            steps = parse_plan(response)
        except PDDLError:
            return 0.0, "parse_error"
        if len(steps) > max_steps:
            return 0.0, "too_long"
        verdict = validate_plan(domain, problem, steps)
        return (1.0 if verdict.valid else 0.0), verdict.reason
    except Exception as e:  # last resort: a reward must never take down training (tests assert it is unused)
        return 0.0, f"error:{type(e).__name__}"


# ----------------------------------------------------------------------------------------------------------------
# demo and benchmark (called from proto_verify.py's __main__ / --bench after the merge)
# ----------------------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------------------
# benchmark (called by proto_verify.py --bench after the merge)
# ----------------------------------------------------------------------------------------------------------------


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
