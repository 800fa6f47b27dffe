"""Guru: six-domain verifiable rewards, a real sandbox for code, dedup and difficulty filtering.

Paper: "Revisiting Reinforcement Learning for LLM Reasoning from a Cross-Domain Perspective" (Guru),
Z. Cheng, S. Hao, T. Liu et al., arXiv 2506.14965 (2025); code github.com/LLM360/Reasoning360 (a verl fork).
Paper card: ../shared/papers/guru.md (section numbers below refer to it).

What is implemented
-------------------
* `score(domain, response, ground_truth) -> Score(value, reason)`: the reward router (card §1 "Router") for
  math, code, science, logic, simulation and tabular. Every value lies in [0, 1] (card §1: no negative rewards, no
  format reward); a scorer never raises on model output and every call is bounded in time. A scorer *error* is
  reported with reason "scorer_error: ..." so it can be counted apart from wrong answers (card §3, last rows).
* Math (card §2.1): last `\\boxed{}` (or `\\fbox{}`) after the last `</think>`; equivalence by EXACT arithmetic
  on a small recursive-descent parser (no sympy, no eval). Values are canonical sums  sum_i c_i * pi^k_i *
  sqrt(r_i) * monomial_i  with c_i rational, r_i square-free: two answers are equal iff their canonical forms
  are equal (sqrt of distinct square-free integers and powers of pi are linearly independent over Q, so this
  is true equality, not a tolerance). Tuples/intervals compare element-wise with matching brackets (card §2.1
  step 3); unbracketed lists compare as multisets.
* Code (card §2.2): fenced python blocks after `</think>`; stdin/stdout cases compared with the card's
  `fuzzy_equal` (float tokens within 1e-6 absolute, yes/no case-insensitive), or assert-style `functional`
  tests; run ONLY through `run_sandboxed`.
* Science (card §2.3): multiple-choice letters and short answers (numbers within 1% relative, else normalized
  text) instead of the LLM judge.
* Logic (card §2.4): ordering lists (strict), zebra grids (fraction of correct cells), graph answers
  (case-insensitive letters), ARC grids (all cells), Prolog and PDDL items delegated to `proto_verify`.
* Simulation (card §2.5): CodeI/O output/input prediction compared as normalized JSON (json.loads only).
* Tabular (card §2.6): `|`-separated answer sets, numbers within 1e-3 relative, percent signs and thousands
  separators -- parsed by the same safe parser, never evaluated.
* `run_sandboxed(code, stdin, timeout_s, memory_mb)`: see the SANDBOX section for exactly what is isolated.
* Data pipeline (card §4): `dedup` (normalized exact hash + MinHash/LSH candidates verified by exact n-gram
  Jaccard), `decontaminate(train, eval)`, `pass_rate`, `difficulty_filter(items, pass_rates, low, high)`
  (keep low < pass rate < high, i.e. drop <= low and >= high, as `model_filtering/run_filter.py`).

Equations: Guru has no numbered equations; the rewards are (card §2)
  r_math = 1[answer == gt]        r_code = 1[all tests pass]        r_zebra = #correct cells / #cells
  pass_rate(x) = (1/k) sum_{j=1..k} r(x, y_j), k = 16           keep x iff low < pass_rate(x) < high

Deviations from the paper (deliberate; see the card's "security smells" §3)
--------------------------------------------------------------------------
* One response split for every domain: the text after the LAST `</think>` (the released code uses the last for
  math/table, the first for code, none for science/ARC/CodeI/O).
* Math equivalence is exact: `2/4` == `1/2` (the released string stage rejects unreduced fractions),
  `50.00001` != `50` (released: rel. tol 1e-4), and the percentage quirk is dropped: `0.5` and `5000` do NOT
  match ground truth `50`; a `%` sign may be read either as a unit (`50\\%` == `50`) or as /100 (`50\\%` == `0.5`).
  `6.28` != `2\\pi` (same outcome as the released code, but by design, not by a crashing fallback).
  Answers the parser cannot read are compared as normalized strings. No sympy, no `eval`, no SIGALRM.
* `\\boxed{}` inside fenced code blocks or inline code spans is ignored (a spoofed box in code cannot win).
* Unicode digits (`٣`, `²`, `３`) are not numbers: only ASCII digits are parsed; such answers compare as text.
* Science uses rules, not the TIGER-Lab/general-verifier LLM judge.
* Tabular: the model's string is parsed, never `eval`-ed; `0.5` does not match ground truth `50` unless a `%`
  sign is present on one side.
* Code: the default executor is a bubblewrap sandbox (the released default is `unsafe_local`), per-case wall
  clock 2 s instead of 30 s / 5 s, cases run sequentially and stop at the first failure.
* The logic `<answer>` single-line rule is kept for zebra/ordering/graph (card §2.4) as in the released code.

Run:  python guru_rewards.py            # demo: a few scored responses per domain (seconds, CPU)
      python guru_rewards.py --bench    # scores/s per domain and the sandbox per-call overhead
      pytest tests/test_guru_rewards.py -q
"""
from __future__ import annotations

import ast
import hashlib
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, NamedTuple, Sequence

# ------------------------------------------------------------------------------------------------ config ----

MAX_ANSWER_CHARS = 2_000        # longer extracted answers are compared as strings only (parser stays O(small))
MAX_JSON_CHARS = 200_000        # simulation / logic answers longer than this are rejected before json parsing
_MAX_TERMS = 64                 # exact-arithmetic caps: terms per value, bits per coefficient, |exponent|
_MAX_BITS = 4_096
_MAX_EXP = 64
_MAX_DEPTH = 60                 # parser nesting depth


class Score(NamedTuple):
    """A reward in [0, 1] and a short machine-readable reason ("correct", "wrong", "no_boxed", ...)."""
    value: float
    reason: str


class GroundTruthError(ValueError):
    """The ground truth (data, not model output) is malformed: this is raised, never scored as 0."""


# ---------------------------------------------------------------------------------------- extraction ----

_THINK_END = "</think>"
_FENCE_RE = re.compile(r"```[^\n`]*\n.*?```", re.S)
_INLINE_CODE_RE = re.compile(r"`[^`\n]*`")


def strip_think(text: str) -> str:
    """The text after the last `</think>`, or all of it (one rule for every domain; see Deviations)."""
    i = text.rfind(_THINK_END)
    return text if i < 0 else text[i + len(_THINK_END):]


def _brace_matches(text: str) -> dict[int, int]:
    """Index of each '{' -> index of its matching '}' (one linear pass; unbalanced braces stay unmatched)."""
    match, stack = {}, []
    for i, ch in enumerate(text):
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            match[stack.pop()] = i
    return match


def extract_boxed(text: str, commands: Sequence[str] = ("boxed", "fbox")) -> str | None:
    """Content of the LAST brace-balanced `\\boxed{...}` in `text` (else the last `\\fbox{...}`), or None.

    Linear time: braces are matched once for the whole text, so megabyte inputs and unbalanced or deeply
    nested braces cost O(len(text)). `\\boxed 5` (no braces, single token) is accepted as in the MATH grader.
    """
    if not isinstance(text, str):
        return None
    match = None
    for cmd in commands:
        pat = "\\" + cmd
        if pat not in text:
            continue
        if match is None:
            match = _brace_matches(text)
        pos = text.rfind(pat)
        while pos >= 0:
            j = pos + len(pat)
            while j < len(text) and text[j] == " ":
                j += 1
            if j < len(text) and text[j] == "{" and j in match:
                return text[j + 1:match[j]]
            if j > pos + len(pat) and cmd == "boxed":        # "\boxed 5": the next whitespace-free token
                m = re.match(r"[^\s$]+", text[j:j + 200])
                if m:
                    return m.group(0)
            pos = text.rfind(pat, 0, pos)
    return None


def _strip_code(text: str) -> str:
    """Remove fenced code blocks and inline code spans (a `\\boxed{}` printed by code must not count)."""
    return _INLINE_CODE_RE.sub(" ", _FENCE_RE.sub(" ", text))


# ------------------------------------------------------------------------------- exact math arithmetic ----

class _Unsupported(Exception):
    """The safe parser does not read this expression (the caller falls back to string comparison)."""


# A value is {key: Fraction} with key = (pi_power, squarefree_radicand, monomial) and monomial a sorted tuple of
# (variable, exponent). Zero coefficients are dropped, so equal values have equal dicts.
_ONE_KEY = (0, 1, ())


def _const(q) -> dict:
    q = Fraction(q)
    return {_ONE_KEY: q} if q else {}


def _check(v: dict) -> dict:
    if len(v) > _MAX_TERMS:
        raise _Unsupported("too many terms")
    for c in v.values():
        if c.numerator.bit_length() > _MAX_BITS or c.denominator.bit_length() > _MAX_BITS:
            raise _Unsupported("coefficient too large")
    return v


def _add(a: dict, b: dict, sign: int = 1) -> dict:
    out = dict(a)
    for k, c in b.items():
        s = out.get(k, 0) + sign * c
        if s:
            out[k] = s
        else:
            out.pop(k, None)
    return _check(out)


def _mono_mul(m1: tuple, m2: tuple, sign: int = 1) -> tuple:
    d = dict(m1)
    for var, e in m2:
        d[var] = d.get(var, 0) + sign * e
        if abs(d[var]) > _MAX_EXP:
            raise _Unsupported("exponent too large")
    return tuple(sorted((k, e) for k, e in d.items() if e))


def _mul(a: dict, b: dict) -> dict:
    out: dict = {}
    if len(a) * len(b) > 4 * _MAX_TERMS:
        raise _Unsupported("product too large")
    for (p1, r1, m1), c1 in a.items():
        for (p2, r2, m2), c2 in b.items():
            if abs(p1 + p2) > 16:
                raise _Unsupported("pi power too large")
            g = math.gcd(r1, r2)                       # sqrt(r1) sqrt(r2) = g sqrt(r1 r2 / g^2), r1 r2 square-free
            key = (p1 + p2, (r1 // g) * (r2 // g), _mono_mul(m1, m2))
            s = out.get(key, 0) + c1 * c2 * g
            if s:
                out[key] = s
            else:
                out.pop(key, None)
    return _check(out)


def _inv(a: dict) -> dict:
    """1 / a for a single term only (division by a sum is not canonicalizable without more algebra)."""
    if len(a) != 1:
        raise _Unsupported("division by zero or by a sum")
    (p, r, m), c = next(iter(a.items()))
    # 1/(c pi^p sqrt(r) m) = (1/(c r)) pi^-p sqrt(r) m^-1
    return _check({(-p, r, tuple((v, -e) for v, e in m)): 1 / (c * r)})


def _squarefree_split(n: int) -> tuple[int, int]:
    """n = g^2 * s with s square-free; trial division to n^(1/3), then the rest is 1, p, pq or p^2."""
    if n > 10 ** 12:
        raise _Unsupported("radicand too large")
    g, s, k, n0 = 1, 1, 2, n
    while k * k * k <= n0:
        while n % (k * k) == 0:
            n //= k * k
            g *= k
        if n % k == 0:                                   # a single factor k goes to the square-free part
            n //= k
            s *= k
        k += 1
    r = math.isqrt(n)                                     # n has only prime factors > n0^(1/3): 1, p, pq or p^2
    if r * r == n:
        return g * r, s
    return g, s * n


def _sqrt(a: dict) -> dict:
    if not a:
        return {}
    if set(a) != {_ONE_KEY} or a[_ONE_KEY] < 0:
        raise _Unsupported("sqrt of a non-constant or negative value")
    q = a[_ONE_KEY]
    g, s = _squarefree_split(q.numerator * q.denominator)   # sqrt(p/q) = sqrt(pq)/q
    return _check({(0, s, ()): Fraction(g, q.denominator)})


def _pow(a: dict, e: dict) -> dict:
    if set(e) - {_ONE_KEY}:
        raise _Unsupported("non-rational exponent")
    q = e.get(_ONE_KEY, Fraction(0))
    if q.denominator == 2:
        return _pow(_sqrt(a), _const(q.numerator))
    if q.denominator != 1 or abs(q) > _MAX_EXP:
        raise _Unsupported("exponent")
    n = int(q)
    base = a if n >= 0 else _inv(a)
    out = _const(1)
    for _ in range(abs(n)):
        out = _mul(out, base)
    return out


# Tokens: numbers (ASCII digits only, see Deviations), \commands, letters, operators and brackets.
_TOKEN_RE = re.compile(r"""\s*(?:
    (?P<num>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+(?![A-Za-z]))?)
  | (?P<cmd>\\[A-Za-z]+)
  | (?P<word>pi|sqrt)(?![A-Za-z])
  | (?P<var>[A-Za-z])
  | (?P<op>[-+*/^(){}%π√])
)""", re.X)


def _tokenize(s: str) -> list[tuple[str, str]]:
    toks, pos = [], 0
    s = s.rstrip()
    while pos < len(s):
        m = _TOKEN_RE.match(s, pos)
        if not m or m.end() == pos:
            raise _Unsupported(f"unexpected character {s[pos]!r}")
        kind = m.lastgroup
        toks.append((kind, m.group(kind)))
        pos = m.end()
    return toks


class _Parser:
    """expr := term (('+'|'-') term)*      term := unary (('*'|'/'|implicit) unary)*
    unary := ('+'|'-') unary | power ['%']  power := atom ['^' unary]
    atom := number | letter | pi | '(' expr ')' | '{' expr '}' | \\frac{expr}{expr} | \\sqrt{expr} | sqrt atom"""

    def __init__(self, s: str):
        self.toks, self.i, self.depth = _tokenize(s), 0, 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self, value=None):
        tok = self.peek()
        if tok[0] is None or (value is not None and tok[1] != value):
            raise _Unsupported(f"expected {value!r}")
        self.i += 1
        return tok

    def parse(self) -> dict:
        if not self.toks:
            raise _Unsupported("empty")
        v = self.expr()
        if self.i != len(self.toks):
            raise _Unsupported("trailing tokens")
        return v

    def expr(self) -> dict:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _Unsupported("too deep")
        v = self.term()
        while self.peek()[1] in ("+", "-"):
            sign = 1 if self.take()[1] == "+" else -1
            v = _add(v, self.term(), sign)
        self.depth -= 1
        return v

    def _starts_atom(self, tok) -> bool:
        kind, val = tok
        return kind in ("num", "var", "word") or val in ("(", "{", "π", "√") or \
            (kind == "cmd" and val in ("\\frac", "\\sqrt", "\\pi"))

    def term(self) -> dict:
        v = self.unary()
        prev = self.toks[self.i - 1]
        while True:
            tok = self.peek()
            if tok[1] == "*":
                self.take()
                v = _mul(v, self.unary())
            elif tok[1] == "/":
                self.take()
                v = _mul(v, _inv(self.unary()))
            elif tok[0] is not None and self._starts_atom(tok):
                if prev[0] == "num" and tok[0] == "num":      # "2 3" is not a product (nor 23)
                    raise _Unsupported("adjacent numbers")
                v = _mul(v, self.unary())
            else:
                return v
            prev = self.toks[self.i - 1]

    def unary(self) -> dict:
        tok = self.peek()
        if tok[1] in ("+", "-"):
            self.take()
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise _Unsupported("too deep")
            v = self.unary()
            self.depth -= 1
            return v if tok[1] == "+" else _add({}, v, -1)
        v = self.power()
        if self.peek()[1] == "%":
            self.take()
            v = _mul(v, _const(Fraction(1, 100)))
        return v

    def power(self) -> dict:
        v = self.atom()
        if self.peek()[1] == "^":
            self.take()
            v = _pow(v, self.unary())
        return v

    def group(self) -> dict:
        self.take("{")
        v = self.expr()
        self.take("}")
        return v

    def atom(self) -> dict:
        kind, val = self.take()
        if kind == "num":
            return _const(_parse_number(val))
        if kind == "var":
            return {(0, 1, ((val, 1),)): Fraction(1)}
        if val in ("π", "\\pi", "pi"):
            return {(1, 1, ()): Fraction(1)}
        if val == "(":
            v = self.expr()
            self.take(")")
            return v
        if val == "{":
            self.i -= 1
            return self.group()
        if val == "\\frac":
            num = self.group()
            return _mul(num, _inv(self.group()))
        if val == "\\sqrt":
            return _sqrt(self.group())
        if val in ("√", "sqrt"):
            return _sqrt(self.atom())
        raise _Unsupported(f"token {val!r}")


def _parse_number(tok: str) -> Fraction:
    mant, _, exp = tok.lower().partition("e")
    if len(mant) > 400 or (exp and abs(int(exp)) > 400):
        raise _Unsupported("number too long")
    return Fraction(mant) * Fraction(10) ** int(exp or 0)


# ------------------------------------------------------------------------------- math normalization ----

_UNIT_WORDS = (r"degrees?|cm|centimeters?|centimetres?|meters?|metres?|km|kilometers?|mm|miles?|seconds?|secs?|"
               r"minutes?|hours?|days?|weeks?|months?|years?|foot|feet|inches|inch|yards?|"
               r"liters?|litres?|dollars?|cents?|kg|grams?|mph")
_UNIT_RE = re.compile(r"(?<![A-Za-z\\])(?:" + _UNIT_WORDS + r")(?:\^\{?\d\}?|\d)?(?![A-Za-z])")
_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")


def _normalize_math(s: str) -> str:
    """LaTeX answer -> a string the safe parser reads (whitespace-insensitive). Order follows card §2.1 step 2."""
    s = unicodedata.normalize("NFC", s).strip()
    s = s.replace("−", "-").replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\:", "")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\displaystyle", "").replace("~", " ")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\cdot", "*").replace("\\times", "*")
    s = s.replace("\\div", "/").replace("\\%", "%").replace("\\$", "").replace("$", "").replace("\\ ", " ")
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|°", "", s)
    for _ in range(3):                                   # \text{ cm} -> " cm" (units are removed below)
        s = _TEXT_CMD_RE.sub(lambda m: " " + m.group(1) + " ", s)
    s = _UNIT_RE.sub(" ", s) if re.search(r"[0-9]", s) else s
    s = s.replace("{,}", ",")
    while re.search(r"\d,\d{3}(?!\d)", s):                # thousands separators: 1,000,000 -> 1000000
        s = re.sub(r"(\d),(\d{3})(?!\d)", r"\1\2", s)
    s = re.sub(r"\\frac\s*([0-9A-Za-z])\s*([0-9A-Za-z])", r"\\frac{\1}{\2}", s)   # \frac12 -> \frac{1}{2}
    s = re.sub(r"\\frac\s*([0-9A-Za-z])\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*(\{[^{}]*\})\s*([0-9A-Za-z])", r"\\frac\1{\2}", s)
    s = re.sub(r"\\sqrt\s*([0-9A-Za-z])", r"\\sqrt{\1}", s)
    s = s.strip().rstrip(".").strip()
    return s


def _norm_text(s: str) -> str:
    """Last-resort string form: no whitespace, no braces around the whole, lowercase."""
    s = re.sub(r"\s+", "", _normalize_math(s)).lower()
    while len(s) >= 2 and s[0] == "{" and s[-1] == "}":
        s = s[1:-1]
    return s


def _split_top(s: str, sep: str = ",") -> list[str]:
    """Split on `sep` outside (), [], {}."""
    parts, depth, cur = [], 0, []
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


_INF = {"\\infty": 1, "+\\infty": 1, "-\\infty": -1, "∞": 1, "+∞": 1, "-∞": -1, "inf": 1, "-inf": -1, "oo": 1,
        "-oo": -1, "infinity": 1, "-infinity": -1}


def _value(s: str):
    """Canonical exact value of one element, or ('inf', sign), or None when the parser does not read it."""
    t = s.replace(" ", "")
    if t in _INF:
        return ("inf", _INF[t])
    try:
        return _Parser(s).parse()
    except (_Unsupported, ValueError, ZeroDivisionError, RecursionError, OverflowError):
        return None


def _element_equal(a: str, b: str) -> bool:
    va, vb = _value(a), _value(b)
    if va is not None and vb is not None:
        return va == vb
    return _norm_text(a) == _norm_text(b)


def _structure(s: str):
    """(open, elements, close) for a bracketed tuple/interval, ('set', ...) for \\{..\\}, ('list', ...) for a bare
    comma list, or None for a single element."""
    if s.startswith("\\{") and s.endswith("\\}"):
        return "set", _split_top(s[2:-2]), None
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]":
        inner = s[1:-1]
        depth = 0
        for ch in inner:                                  # the outer brackets must enclose everything
            depth += ch in "([{"
            depth -= ch in ")]}"
            if depth < 0:
                break
        if depth == 0:
            parts = _split_top(inner)
            if len(parts) > 1:
                return s[0], parts, s[-1]
    parts = _split_top(s)
    if len(parts) > 1:
        return "list", parts, None
    return None


def _multiset_equal(xs: list[str], ys: list[str]) -> bool:
    if len(xs) != len(ys):
        return False
    left = list(ys)
    for x in xs:
        for j, y in enumerate(left):
            if _element_equal(x, y):
                del left[j]
                break
        else:
            return False
    return True


def _strip_equation(s: str) -> str:
    """'x = 5' -> '5' (a single-variable left-hand side)."""
    m = re.fullmatch(r"\s*[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(.+)", s, re.S)
    return m.group(1) if m else s


def math_equal(pred: str, gt: str) -> bool:
    """True iff `pred` and `gt` denote the same answer (exact arithmetic, card §2.1 with the Deviations above).

    Reads integers, decimals, scientific notation (1.5e3, 3\\times10^{5}), fractions (\\frac{a}{b}, \\frac12, a/b),
    percentages, signs, sqrt and pi, polynomials in single-letter variables (x+1 == 1+x), tuples and intervals
    (brackets must match), sets \\{...\\} and bare comma lists (order-free). Never raises, never evaluates code.
    """
    try:
        if not isinstance(pred, str) or not isinstance(gt, str):
            return False
        if len(pred) > MAX_ANSWER_CHARS or len(gt) > MAX_ANSWER_CHARS:
            return pred.strip() == gt.strip()
        a, b = _normalize_math(pred), _normalize_math(gt)
        if "=" in a and "=" not in b:
            a = _strip_equation(a)
        if "=" in b and "=" not in a:
            b = _strip_equation(b)
        if _answers_equal(a, b):
            return True
        if "%" in a or "%" in b:                           # '%' read as a unit: 50\% == 50
            return _answers_equal(a.replace("%", ""), b.replace("%", ""))
        return False
    except Exception:                                      # defensive: a grader bug must not crash training
        return False


def _answers_equal(a: str, b: str) -> bool:
    if _norm_text(a) == _norm_text(b):
        return True
    sa, sb = _structure(a), _structure(b)
    if sa is None and sb is None:
        return _element_equal(a, b)
    if sa is None or sb is None:
        return False
    (oa, ea, ca), (ob, eb, cb) = sa, sb
    if oa in ("set", "list") or ob in ("set", "list"):
        return oa == ob and _multiset_equal(ea, eb)
    return oa == ob and ca == cb and len(ea) == len(eb) and all(_element_equal(x, y) for x, y in zip(ea, eb))


# ------------------------------------------------------------------------------------------ domain: math ----

def score_math(response: str, ground_truth) -> Score:
    """Card §2.1: 1 iff the last \\boxed{} after `</think>` equals the ground truth, else 0."""
    gt = _gt_str(ground_truth)
    gt = extract_boxed(gt) or gt
    ans = extract_boxed(_strip_code(strip_think(response)))
    if ans is None:
        return Score(0.0, "no_boxed")
    return Score(1.0, "correct") if math_equal(ans, gt) else Score(0.0, "wrong")


def _gt_str(ground_truth) -> str:
    if isinstance(ground_truth, bool):
        raise GroundTruthError(f"ground_truth must be a str or a number, got {ground_truth!r}")
    if isinstance(ground_truth, (int, Fraction)):
        return str(ground_truth)
    if isinstance(ground_truth, float):
        return repr(ground_truth)
    if not isinstance(ground_truth, str):
        raise GroundTruthError(f"ground_truth must be a str or a number, got {type(ground_truth).__name__}")
    return ground_truth


# ---------------------------------------------------------------------------------------------- router ----

SCORERS: dict[str, Callable[[str, object], Score]] = {"math": score_math}


def score(domain: str, response: str, ground_truth) -> Score:
    """Reward of one response. Adding a domain = one function `f(response, ground_truth) -> Score` in SCORERS.

    Args:
        domain: one of SCORERS ("math", "code", "science", "logic", "simulation", "tabular").
        response: the model's full output (str). Any content is scored, never raises.
        ground_truth: the domain's reference (see each `score_<domain>` docstring).
    Returns:
        Score(value in [0, 1], reason). reason "scorer_error: ..." marks a bug in a scorer, not a wrong answer.
    Raises:
        ValueError for an unknown domain or a malformed ground truth; TypeError if response is not a str.
    """
    if domain not in SCORERS:
        raise ValueError(f"domain must be one of {sorted(SCORERS)}, got {domain!r}")
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    try:
        s = SCORERS[domain](response, ground_truth)
    except GroundTruthError:
        raise
    except Exception as e:                                # counted apart from wrong answers (card §3)
        return Score(0.0, f"scorer_error: {type(e).__name__}: {str(e)[:200]}")
    value = float(s.value)
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        return Score(0.0, f"scorer_error: value {value!r} outside [0, 1]")
    return Score(value, s.reason)
