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
  tests; run ONLY through `run_sandboxed`. The expected values never enter the sandbox: for stdin/stdout cases
  the parent compares the output; for functional tests the sandbox only evaluates the calls (`f(2)` of
  `assert f(2) == 4`) and prints each result with repr() after a random nonce, and the parent reads them back as
  plain data (ast.literal_eval) and checks the asserts itself. Faking success (stripping asserts with -O,
  skipping lines with a trace function, an always-true __eq__, reading main.py) means knowing the answers.
* Science (card §2.3): multiple-choice letters and short answers (numbers within 1% relative, else normalized
  text) instead of the LLM judge.
* Logic (card §2.4): ordering lists (strict), zebra grids (fraction of correct cells), graph answers
  (case-insensitive letters), ARC grids (all cells), Prolog and PDDL items delegated to `proto_verify`.
* Simulation (card §2.5): CodeI/O output/input prediction compared as normalized JSON (json.loads only).
* Tabular (card §2.6): `|`-separated answer sets, numbers within 1e-3 relative, percent signs and thousands
  separators -- parsed by the same safe parser, never evaluated.
* `run_sandboxed(code, stdin, timeout_s, memory_mb)`: a separate Python process in its own session, rlimits
  (CPU, address space, file size, process count, open files), a wall-clock kill of the whole group, a fresh
  temp cwd, a scrubbed env, capped stdout/stderr; bubblewrap when present (an empty root holding only the
  interpreter's prefix and the system programs/libraries read-only, the work dir, a private /tmp; no network,
  pid namespace), else resource limits only, with a one-time warning (no filesystem/network/pid isolation).
  As root the child also runs under a fresh unprivileged uid. Appendix A has the table of exactly what is and
  is not isolated in each mode.
* Data pipeline (card §4): `dedup` (normalized exact hash + MinHash/LSH candidates verified by exact n-gram
  Jaccard), `decontaminate(train, eval)`, `pass_rate`, `difficulty_filter(items, pass_rates, low, high)`
  (keep low < pass rate < high, i.e. drop <= low and >= high, as `model_filtering/run_filter.py`).

Ground truths: math/science/tabular a string (or number); code {"inputs": [...], "outputs": [...]} or
{"functional": "assert ..."}; logic {"type": "ordering"|"zebra"|"graph"|"arc", "answer": ...} (or the bare
answer), {"type": "pddl", "domain": str, "problem": str}, {"type": "prolog", "task": proto_verify Task} or
{"type": "prolog", "answer": JSON, "compare": "set"|"sequence"|"first"};
simulation '"output": <json>'. A malformed ground truth raises GroundTruthError (a ValueError): it is a data
bug, not a wrong answer. Scorer bugs give Score(0, "scorer_error: ...") and are counted in SCORER_ERRORS.

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
  Mixed numbers `1\\frac{1}{2}` and `1 1/2` mean 3/2 (as the released normalizer's "1 1/2" -> "1+1/2"), and
  whitespace between two digits is never dropped (`1 1/2` != `11/2`, `12/3` != `1 2/3`).
  Answers the parser cannot read are compared as normalized strings. No sympy, no `eval`, no SIGALRM.
* `\\boxed{}` inside fenced code blocks or inline code spans is ignored (a spoofed box in code cannot win).
* Unicode digits (`٣`, `²`, `３`) are not numbers: only ASCII digits are parsed; such answers compare as text.
* Science uses rules, not the TIGER-Lab/general-verifier LLM judge. Its 1 % tolerance is relative only (no
  absolute floor: 9.1e-31 != 1.67e-27); a number that overflows or underflows a float (1e999, 1e-999) is compared
  exactly or as text, never as inf == inf or 0 == 0; `2 1/3` is not the number 2 with the unit "1/3".
* Tabular: the model's string is parsed, never `eval`-ed; `0.5` does not match ground truth `50` unless a `%`
  sign is present on one side. Cells are compared exactly first, then as finite floats within 1e-3 relative (no
  absolute floor; a value beyond the float range, e.g. 1e309, is never a float).
* Code: the default executor is a bubblewrap sandbox (the released default is `unsafe_local`), per-case wall
  clock 2 s instead of 30 s / 5 s, cases run sequentially and stop at the first failure. Functional tests are
  not appended to the solution and run in its process (as released): they must be top-level asserts whose
  expected values are literals (or pure builtins of literals); other forms (asserts inside a `check` function,
  comprehensions, lambdas) raise GroundTruthError instead of sending the answers into the sandbox. Results that
  are not plain data (custom objects, nested inf/nan) fail.
* The logic `<answer>` single-line rule is kept for zebra/ordering/graph (card §2.4) as in the released code;
  the ordering puzzle has no `eval` fallback for unbracketed answers (they score 0); no per-scorer timeouts are
  needed because every parser is linear or size-capped (the released code uses SIGALRM/setitimer). Tested by
  counting work (Python lines + characters given to the regex engine, never a clock) on 25 adversarial shapes
  of 200k characters per domain; the regexes that see unbounded text are listed there with why each is
  linear (two fence patterns were not: a header of n blanks backtracked O(n^2), 0.41 s CPU at n = 20k).
* Tabular `|` answers are matched as multisets of equivalent items instead of sorting both sides as strings
  (`1,000|5` matches `5|1000`).
* Dedup/decontamination thresholds and method are not given by the paper (card §4 [NR]); ours are an exact
  normalized hash plus character-5-gram Jaccard >= 0.8.

Contents (`grep -n '^# ====' guru_rewards.py` prints it with line numbers): 1 the router `score`; 2 the data
pipeline; 3 response extraction; 4-10 the per-domain scorers (math with its exact-arithmetic parser, code,
science, logic, simulation, tabular); Appendix A the sandbox (infrastructure); Appendix B demo and bench.

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
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, NamedTuple, Sequence

# ==== 1. Router: score(domain, response, ground_truth) -> Score (card §1) ===========================================

MAX_ANSWER_CHARS = 2_000        # longer extracted answers are compared as strings only (parser stays O(small))
MAX_JSON_CHARS = 200_000        # simulation / logic answers longer than this are rejected before json parsing


class Score(NamedTuple):
    """A reward in [0, 1] and a short machine-readable reason ("correct", "wrong", "no_boxed", ...)."""
    value: float
    reason: str


class GroundTruthError(ValueError):
    """The ground truth (data, not model output) is malformed: this is raised, never scored as 0."""


SCORERS: dict[str, Callable[[str, object], Score]] = {}   # domain -> scorer; filled in at the end of section 10
SCORER_ERRORS: Counter = Counter()      # domain -> number of scorer bugs caught (NOT wrong answers; card §3)


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
        value = float(s.value)
        if math.isnan(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"value {value!r} outside [0, 1]")
    except GroundTruthError:
        raise
    except Exception as e:                                # counted apart from wrong answers (card §3)
        SCORER_ERRORS[domain] += 1
        return Score(0.0, f"scorer_error: {type(e).__name__}: {str(e)[:200]}")
    return Score(value, str(s.reason))


# ==== 2. Data pipeline (card §4): dedup, decontaminate, pass_rate, difficulty_filter ================================

# Card §4: sourcing -> dedup -> reward design -> heuristic filtering -> difficulty filtering. The paper does not
# say how it deduplicated ([NR]); we use an exact hash of the normalized text plus MinHash-LSH candidates that are
# then VERIFIED by exact n-gram Jaccard, so a reported near-duplicate is always a true one at the threshold.

_MH_PRIME = 4_294_967_311                                # a prime > 2^32: a*x + b stays below 2^64 in uint64


def normalize_text(s: str) -> str:
    """NFKC, lowercase, whitespace collapsed: what "the same problem" means for the exact-duplicate hash."""
    return " ".join(unicodedata.normalize("NFKC", s).lower().split())


def _shingles(s: str, n: int) -> set[str]:
    return {s[i:i + n] for i in range(len(s) - n + 1)} if len(s) >= n else {s}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class _MinHashLSH:
    """MinHash signatures (num_perm universal hashes h(x) = (a x + b) mod p over 32-bit shingle hashes), split
    into `bands` bands: two texts become candidates if any band agrees, P = 1 - (1 - J^rows)^bands."""

    def __init__(self, num_perm: int, bands: int, seed: int):
        import numpy as np
        if num_perm % bands:
            raise ValueError(f"num_perm ({num_perm}) must be a multiple of bands ({bands})")
        rng = np.random.default_rng(seed)
        self.np, self.bands, self.rows = np, bands, num_perm // bands
        self.a = rng.integers(1, 2 ** 32 - 1, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 2 ** 32 - 1, size=num_perm, dtype=np.uint64)
        self.buckets: list[dict] = [dict() for _ in range(bands)]

    def signature(self, norm: str, n: int):
        """MinHash signature (num_perm,) of the character n-gram set of `norm`. Shingles are hashed by a
        vectorized polynomial rolling hash mod 2^32 (a rare collision only costs LSH recall: candidates are
        verified exactly)."""
        np = self.np
        c = np.frombuffer(norm.encode("utf-32-le", "replace"), dtype=np.uint32).astype(np.uint64)   # (L,)
        m = max(1, len(c) - n + 1)
        x = np.zeros(m, dtype=np.uint64)                                                        # (L-n+1,)
        for j in range(min(n, len(c))):
            x = (x * np.uint64(1_000_003) + c[j:j + m]) & np.uint64(0xFFFFFFFF)
        x = np.unique(x)
        h = (self.a[:, None] * x[None, :] + self.b[:, None]) % np.uint64(_MH_PRIME)  # (num_perm, n_shingles)
        return h.min(axis=1)                                                        # (num_perm,)

    def _keys(self, sig):
        return [sig[i * self.rows:(i + 1) * self.rows].tobytes() for i in range(self.bands)]

    def candidates(self, sig) -> set[int]:
        out: set[int] = set()
        for band, key in zip(self.buckets, self._keys(sig)):
            out.update(band.get(key, ()))
        return out

    def insert(self, idx: int, sig) -> None:
        for band, key in zip(self.buckets, self._keys(sig)):
            band.setdefault(key, []).append(idx)


def _check_texts(texts, name):
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a sequence of str")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(t).__name__}")


def _check_dedup_args(threshold, ngram):
    if not (isinstance(threshold, (int, float)) and 0.0 < threshold <= 1.0):
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    if not (isinstance(ngram, int) and ngram >= 1):
        raise ValueError(f"ngram must be an int >= 1, got {ngram!r}")


def dedup(texts: Sequence[str], threshold: float = 0.8, ngram: int = 5, num_perm: int = 128, bands: int = 32,
          seed: int = 0) -> list[int]:
    """Indices of the items to keep (first occurrence wins), in order.

    An item is dropped if its normalized text equals a kept item's (exact hash), or if the Jaccard similarity of
    its character `ngram`-shingle set with some kept item's is >= `threshold` (MinHash-LSH proposes candidates;
    each is verified exactly, so no false positives; with 32 bands x 4 rows a pair at J = 0.8 is missed with
    probability (1 - 0.8^4)^32 ~ 5e-8).
    """
    _check_texts(texts, "texts")
    _check_dedup_args(threshold, ngram)
    lsh = _MinHashLSH(num_perm, bands, seed)
    seen: set[str] = set()
    kept_shingles: dict[int, set] = {}
    keep = []
    for i, t in enumerate(texts):
        norm = normalize_text(t)
        h = hashlib.sha256(norm.encode("utf-8", "surrogatepass")).hexdigest()
        if h in seen:
            continue
        sh = _shingles(norm, ngram)
        sig = lsh.signature(norm, ngram)
        if any(_jaccard(sh, kept_shingles[j]) >= threshold for j in lsh.candidates(sig)):
            continue
        seen.add(h)
        kept_shingles[i] = sh
        lsh.insert(i, sig)
        keep.append(i)
    return keep


def decontaminate(train: Sequence[str], eval: Sequence[str], threshold: float = 0.8, ngram: int = 5,
                  num_perm: int = 128, bands: int = 32, seed: int = 0) -> list[int]:
    """Indices of `train` items to keep: those that are neither an exact (normalized) nor a near duplicate
    (verified n-gram Jaccard >= threshold) of any `eval` item. (Guru v1 did not decontaminate, card §4 [NR].)"""
    _check_texts(train, "train")
    _check_texts(eval, "eval")
    _check_dedup_args(threshold, ngram)
    lsh = _MinHashLSH(num_perm, bands, seed)
    hashes, ev_shingles = set(), []
    for j, t in enumerate(eval):
        norm = normalize_text(t)
        hashes.add(hashlib.sha256(norm.encode("utf-8", "surrogatepass")).hexdigest())
        ev_shingles.append(_shingles(norm, ngram))
        lsh.insert(j, lsh.signature(norm, ngram))
    keep = []
    for i, t in enumerate(train):
        norm = normalize_text(t)
        if hashlib.sha256(norm.encode("utf-8", "surrogatepass")).hexdigest() in hashes:
            continue
        sh = _shingles(norm, ngram)
        cands = lsh.candidates(lsh.signature(norm, ngram))
        if any(_jaccard(sh, ev_shingles[j]) >= threshold for j in cands):
            continue
        keep.append(i)
    return keep


def pass_rate(rewards: Sequence[float]) -> float:
    """Card §4: pass rate of one prompt = mean reward over its k sampled responses (k = 16 in Guru)."""
    rewards = list(rewards)
    if not rewards:
        raise ValueError("rewards must be a non-empty sequence of values in [0, 1]")
    for r in rewards:
        if not (isinstance(r, (int, float)) and 0.0 <= r <= 1.0):
            raise ValueError(f"rewards must lie in [0, 1], got {r!r}")
    return sum(rewards) / len(rewards)


def difficulty_filter(items: Sequence, pass_rates: Sequence, low: float = 0.1, high: float = 0.9) -> list:
    """Keep exactly the items whose pass rate p satisfies low < p < high (Guru's run_filter.py drops p <= low and
    p >= high; the README example uses 0.1 / 0.9). pass_rates[i] is a float in [0, 1] or the list of item i's k
    sample rewards (then p = pass_rate(...)). Returns the kept items, in order."""
    if len(items) != len(pass_rates):
        raise ValueError(f"items and pass_rates must have the same length, got {len(items)} and {len(pass_rates)}")
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and 0.0 <= low < high <= 1.0):
        raise ValueError(f"need 0 <= low < high <= 1, got low={low!r}, high={high!r}")
    kept = []
    for item, p in zip(items, pass_rates):
        p = pass_rate(p) if isinstance(p, (list, tuple)) else p
        if not (isinstance(p, (int, float)) and 0.0 <= p <= 1.0):
            raise ValueError(f"pass_rates must lie in [0, 1], got {p!r}")
        if low < p < high:
            kept.append(item)
    return kept


# ==== 3. Response extraction shared by the scorers: </think>, \boxed{}, code spans ==================================

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


# ==== 4. Math scorer (card §2.1): score_math, math_equal, normalization =============================================

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
    s = re.sub(r"\s+(?:and|or)\s+", ",", s)              # "2 and 3" -> "2,3" (card §2.1 step 2)
    s = re.sub(r"^\s*[A-Za-z]\s*\\in\s*", "", s)         # "x \in [2, 5)" -> "[2, 5)"
    while re.search(r"\d,\d{3}(?!\d)", s):                # thousands separators: 1,000,000 -> 1000000
        s = re.sub(r"(\d),(\d{3})(?!\d)", r"\1\2", s)
    s = re.sub(r"\\frac\s*([0-9A-Za-z])\s*([0-9A-Za-z])", r"\\frac{\1}{\2}", s)   # \frac12 -> \frac{1}{2}
    s = re.sub(r"\\frac\s*([0-9A-Za-z])\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*(\{[^{}]*\})\s*([0-9A-Za-z])", r"\\frac\1{\2}", s)
    s = re.sub(r"\\sqrt\s*([0-9A-Za-z])", r"\\sqrt{\1}", s)
    s = s.strip().rstrip(".").strip()
    return s


def _norm_text(s: str) -> str:
    """Last-resort string form: no whitespace, no braces around the whole, lowercase. Whitespace between two
    digits stays (as one space): deleting it would make the mixed number `1 1/2` the same text as `11/2`."""
    s = re.sub(r"\s+", lambda m: " " if _between_digits(m) else "", _normalize_math(s)).lower()
    while len(s) >= 2 and s[0] == "{" and s[-1] == "}":
        s = s[1:-1]
    return s


def _between_digits(m: re.Match) -> bool:
    s, i, j = m.string, m.start(), m.end()
    return i > 0 and j < len(s) and s[i - 1] in "0123456789" and s[j] in "0123456789"


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


_MIXED_RE = re.compile(r"([+-]?)\s*([0-9]{1,9})"
                       r"(?:\s*\\frac\{([0-9]{1,9})\}\{([0-9]{1,9})\}|\s+([0-9]{1,9})/([0-9]{1,9}))")


def _value(s: str):
    """Canonical exact value of one element, or ('inf', sign), or None when the parser does not read it."""
    t = s.replace(" ", "")
    if t in _INF:
        return ("inf", _INF[t])
    m = _MIXED_RE.fullmatch(s.strip())                   # mixed number: 1\frac{1}{2} or 1 1/2 means 1 + 1/2
    if m:
        sign, whole, num, den = m.group(1), m.group(2), m.group(3) or m.group(5), m.group(4) or m.group(6)
        if int(den) == 0:
            return None
        return _const((-1 if sign == "-" else 1) * (int(whole) + Fraction(int(num), int(den))))
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


def _multiset_equal(xs: list[str], ys: list[str], equal=None) -> bool:
    """Order-free match of two lists under `equal` (default: math element equality), each y used once."""
    equal = equal or _element_equal
    if len(xs) != len(ys):
        return False
    left = list(ys)
    for x in xs:
        for j, y in enumerate(left):
            if equal(x, y):
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


# ==== 5. Math: exact arithmetic on a safe recursive-descent parser (no eval, no sympy) ==============================

_MAX_TERMS = 64                 # exact-arithmetic caps: terms per value, bits per coefficient, |exponent|
_MAX_BITS = 4_096
_MAX_EXP = 64
_MAX_DEPTH = 60                 # parser nesting depth


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


def _mono_mul(m1: tuple, m2: tuple) -> tuple:
    d = dict(m1)
    for var, e in m2:
        d[var] = d.get(var, 0) + e
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


# ==== 6. Code scorer (card §2.2): score_code; the sandbox (Appendix A) computes, the parent compares ================

# The language tag is optional as a whole, so the two [ \t]* runs never compete for the same blanks (with both
# runs and an empty tag between them, a header of n blanks cost O(n^2) backtracking: 0.41 s at n = 20k).
_CODE_BLOCK_RE = re.compile(r"```[ \t]*(?:([A-Za-z0-9_+-]+)[ \t]*)?\n(.*?)\n?```", re.S)
MAX_CODE_CHARS = 100_000
CODE_CASE_TIMEOUT_S = 2.0        # per test case (card: 30 s unsafe_local, 5 s bwrap)
CODE_TOTAL_TIMEOUT_S = 12.0      # per score() call, all cases together


def extract_code(text: str) -> str | None:
    """All fenced python (or untagged) blocks after `</think>`, joined by newlines (card §2.2), or None."""
    blocks = [m.group(2) for m in _CODE_BLOCK_RE.finditer(strip_think(text))
              if (m.group(1) or "").lower() in ("", "python", "py", "python3")]
    return "\n".join(blocks) if blocks else None


def fuzzy_equal(out: str, expected: str, atol: float = 1e-6) -> bool:
    """Card §2.2 `fuzzy_equal`: exact after strip/CRLF, else same line count and, per line, equal tokens or
    yes/no case-insensitively or floats within `atol`."""
    a = out.replace("\r\n", "\n").strip()
    b = expected.replace("\r\n", "\n").strip()
    if a == b:
        return True
    la, lb = a.split("\n"), b.split("\n")
    if len(la) != len(lb):
        return False
    for x, y in zip(la, lb):
        if x.strip() == y.strip():
            continue
        tx, ty = x.split(), y.split()
        if len(tx) != len(ty):
            return False
        for u, v in zip(tx, ty):
            if u == v or (u.lower() in ("yes", "no") and u.lower() == v.lower()):
                continue
            if not (u.isascii() and v.isascii()):           # float() would read unicode digits
                return False
            try:
                fu, fv = float(u), float(v)
            except ValueError:
                return False
            if not (math.isfinite(fu) and math.isfinite(fv) and abs(fu - fv) <= atol):
                return False
    return True


def _load_json_gt(ground_truth, name="ground_truth"):
    if isinstance(ground_truth, (dict, list)):
        return ground_truth
    if isinstance(ground_truth, str):
        try:
            return json.loads(ground_truth)
        except ValueError as e:
            raise GroundTruthError(f"{name} must be JSON: {e}") from None
    raise GroundTruthError(f"{name} must be a dict or a JSON string, got {type(ground_truth).__name__}")


# Functional (assert-style) tests, card §2.2. The expected values never enter the sandbox: each top-level
# `assert` of the ground truth is split into "holes" -- every call of a function that is not a known pure builtin,
# every attribute and every name the assert does not define, i.e. whatever needs the solution -- and the rest.
# The sandbox runs the solution, then evaluates only the holes and prints each result as repr() after a fresh
# random nonce; the parent reads the results back with ast.literal_eval (plain data: numbers, strings, bools,
# None, lists, tuples, dicts, sets) and evaluates every assert itself on that data. So stripping asserts (-O),
# a trace function that jumps over lines, an object whose __eq__ is always true, or reading main.py (it holds
# the calls, never the answers) cannot fake success: faking it means knowing the answers.
_PURE_FUNCS: dict[str, Callable] = {
    f.__name__: f for f in (abs, all, any, bool, dict, float, frozenset, int, len, list, max, min, round, set,
                            sorted, str, sum, tuple)}
_PURE_FUNCS.update({"isclose": math.isclose, "math.isclose": math.isclose, "math.sqrt": math.sqrt,
                    "math.floor": math.floor, "math.ceil": math.ceil, "math.fabs": math.fabs})
_CONVERTERS = {"list", "tuple", "set", "frozenset", "sorted", "dict", "len", "sum", "min", "max", "any", "all"}
_PLAIN_NODES = (ast.Expression, ast.Constant, ast.Name, ast.Load, ast.List, ast.Tuple, ast.Set, ast.Dict,
                ast.UnaryOp, ast.unaryop, ast.BinOp, ast.operator, ast.BoolOp, ast.boolop, ast.Compare, ast.cmpop,
                ast.Call, ast.keyword, ast.Subscript, ast.Slice, ast.IfExp)
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: _bounded_mul(a, b),
        ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
        ast.Pow: lambda a, b: _bounded_pow(a, b), ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
        ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b, ast.Gt: lambda a, b: a > b,
        ast.GtE: lambda a, b: a >= b, ast.Is: lambda a, b: _is(a, b), ast.IsNot: lambda a, b: not _is(a, b),
        ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
        ast.USub: lambda a: -a, ast.UAdd: lambda a: +a, ast.Not: lambda a: not a, ast.Invert: lambda a: ~a}


def _is(a, b) -> bool:
    """`is` on plain data: identity for the singletons None/True/False (1 is not True), else equality."""
    singletons = (None, True, False)
    if any(a is x for x in singletons) or any(b is x for x in singletons):
        return a is b
    return a == b


def _bounded_mul(a, b):
    if isinstance(a, int) and isinstance(b, (str, bytes, list, tuple)):
        a, b = b, a
    if isinstance(a, (str, bytes, list, tuple)) and isinstance(b, int) and len(a) * b > 1 << 24:
        raise OverflowError("repetition too large")
    return a * b


def _bounded_pow(a, b):
    if isinstance(b, int) and abs(b) > 4096 or isinstance(a, int) and a.bit_length() * abs(int(b)) > 1 << 16:
        raise OverflowError("power too large")
    return a ** b


def _callee_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return f"{node.value.id}.{node.attr}"
    return None


class _Holes(ast.NodeTransformer):
    """Replace every sub-expression that needs the solution by a name `_hole<k>`; remember its source."""

    def __init__(self, holes: list[str]):
        self.holes = holes

    def _hole(self, node: ast.expr) -> ast.Name:
        if not any(isinstance(n, (ast.Name, ast.Attribute)) for n in ast.walk(node)):
            raise GroundTruthError(f"functional test: {ast.unparse(node)[:80]} would compute an expected value in "
                                   "the sandbox; write it as a literal")
        self.holes.append(ast.unparse(node))
        return ast.Name(f"_hole{len(self.holes) - 1}", ast.Load())

    def visit_Call(self, node: ast.Call):
        name = _callee_name(node.func)
        if name not in _PURE_FUNCS:
            return self._hole(node)
        whole, first = ast.unparse(node), len(self.holes)
        node.args = [self.visit(a) for a in node.args]
        node.keywords = [self.visit(k) for k in node.keywords]
        node.func = ast.Name(name, ast.Load())
        if (name in _CONVERTERS and node.args and not node.keywords
                and all(isinstance(a, ast.Name) and a.id.startswith("_hole") for a in node.args)):
            # list(f(x)) of a generator: the conversion holds no expected value, so it runs in the sandbox too
            del self.holes[first:]
            self.holes.append(whole)
            return ast.Name(f"_hole{len(self.holes) - 1}", ast.Load())
        return node

    def visit_Name(self, node: ast.Name):
        return node if node.id in _PURE_FUNCS else self._hole(node)

    def visit_Attribute(self, node: ast.Attribute):
        return self._hole(node)

    def visit_Subscript(self, node: ast.Subscript):
        node.value, node.slice = self.visit(node.value), self.visit(node.slice)
        return node


def _split_functional(src: str) -> tuple[str, list[ast.Expression], list[str]]:
    """Functional test source -> (setup statements run in the sandbox, assert expressions with holes, hole
    sources). Raises GroundTruthError for a form that would put expected values into the sandbox."""
    try:
        tree = ast.parse(src)
    except SyntaxError as e:
        raise GroundTruthError(f"ground_truth['functional'] is not Python: {e}") from None
    setup, asserts, holes = [], [], []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assert):
            expr = ast.fix_missing_locations(ast.Expression(_Holes(holes).visit(stmt.test)))
            bad = next((n for n in ast.walk(expr) if not isinstance(n, _PLAIN_NODES)), None)
            if bad is not None:
                raise GroundTruthError(f"functional test line {stmt.lineno}: {type(bad).__name__} is not supported; "
                                       "write `assert <call> == <literal>` (or !=, <, in, not, abs(...), ...)")
            asserts.append(expr)
        elif any(isinstance(n, ast.Assert) for n in ast.walk(stmt)):
            raise GroundTruthError(f"functional test line {stmt.lineno}: asserts must be top-level statements "
                                   "(nested ones would run inside the sandbox)")
        else:
            setup.append(ast.unparse(stmt))
    if not asserts:
        raise GroundTruthError("ground_truth['functional'] has no assert statement")
    return "\n".join(setup), asserts, holes


def _eval_plain(node: ast.expr, env: dict):
    """Evaluate an assert on plain data (the holes' values in env): a tiny interpreter, never eval()."""
    ev = lambda n: _eval_plain(n, env)                          # noqa: E731
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id] if node.id in env else _PURE_FUNCS[node.id]
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items = [ev(e) for e in node.elts]
        return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict):
        return {ev(k): ev(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp):
        return _OPS[type(node.op)](ev(node.operand))
    if isinstance(node, ast.BinOp):
        return _OPS[type(node.op)](ev(node.left), ev(node.right))
    if isinstance(node, ast.BoolOp):
        v = None
        for e in node.values:
            v = ev(e)
            if bool(v) == isinstance(node.op, ast.Or):
                return v
        return v
    if isinstance(node, ast.Compare):
        left = ev(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right = ev(comp)
            if not _OPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        return ev(node.func)(*[ev(a) for a in node.args], **{k.arg: ev(k.value) for k in node.keywords})
    if isinstance(node, ast.Subscript):
        return ev(node.value)[ev(node.slice)]
    if isinstance(node, ast.Slice):
        return slice(*(None if x is None else ev(x) for x in (node.lower, node.upper, node.step)))
    if isinstance(node, ast.IfExp):
        return ev(node.body) if ev(node.test) else ev(node.orelse)
    raise GroundTruthError(f"unsupported node {type(node).__name__}")


_SPECIAL_FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _read_results(stdout: str, nonce: str, n: int) -> tuple[dict, str | None]:
    """The child's result lines `<nonce> <k> ok <repr>` / `<nonce> <k> err <Exception>` -> {k: value or an
    exception name}; (results, error) with error set when a line is missing, repeated or unreadable."""
    results: dict = {}
    for line in stdout.split("\n"):
        if not line.startswith(nonce + " "):
            continue
        parts = line[len(nonce) + 1:].split(" ", 2)
        if len(parts) != 3 or not parts[0].isdigit() or int(parts[0]) >= n or int(parts[0]) in results:
            return results, "bad_test_output"
        k, status, payload = int(parts[0]), parts[1], parts[2]
        if status == "err":
            results[k] = _ChildError(payload[:80])
            continue
        try:
            results[k] = _SPECIAL_FLOATS[payload] if payload in _SPECIAL_FLOATS else (
                set() if payload == "set()" else ast.literal_eval(payload))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            results[k] = _ChildError("not plain data")                 # e.g. an object with a custom __eq__
    return results, (None if len(results) == n else "tests_did_not_finish")


class _ChildError(str):
    """A hole whose evaluation raised in the sandbox (or whose result is not plain data)."""


def _functional_program(code: str, setup: str, holes: list[str], nonce: str) -> str:
    """main.py: the solution, the test's setup, then the holes, each printed after the nonce (no expected value)."""
    return (code + "\n\n" + setup + "\n\n"
            "import os as _g_os, sys as _g_sys\n"
            f"for _g_k, _g_src in enumerate({holes!r}):\n"
            "    try:\n"
            "        _g_out = 'ok ' + repr(eval(_g_src))\n"
            "    except BaseException as _g_e:\n"
            "        _g_out = 'err ' + type(_g_e).__name__\n"
            "    _g_sys.stdout.flush()\n"
            f"    _g_os.write(1, ('\\n{nonce} %d %s\\n' % (_g_k, _g_out.replace('\\n', ' ')))"
            ".encode('utf-8', 'backslashreplace'))\n")


def _score_functional(code: str, tests: str, timeout_s: float) -> Score:
    setup, asserts, holes = _split_functional(tests)
    nonce = f"guru-result-{random.SystemRandom().getrandbits(128):032x}"
    r = run_sandboxed(_functional_program(code, setup, holes, nonce), timeout_s=timeout_s)
    if not r.ok:
        return Score(0.0, _fail_reason(r))
    results, err = _read_results(r.stdout, nonce, len(holes))
    if err:
        return Score(0.0, err)
    env = {f"_hole{k}": v for k, v in results.items()}
    for i, expr in enumerate(asserts):
        names = {n.id for n in ast.walk(expr) if isinstance(n, ast.Name)}
        failed = [env[x] for x in names if isinstance(env.get(x), _ChildError)]
        if failed:
            return Score(0.0, f"test {i}: {failed[0]}")
        try:
            ok = bool(_eval_plain(expr.body, env))
        except GroundTruthError:
            raise
        except Exception as e:                             # e.g. comparing a str with an int: the test fails
            return Score(0.0, f"test {i}: {type(e).__name__}")
        if not ok:
            return Score(0.0, f"test {i}: wrong")
    return Score(1.0, "passed")


def score_code(response: str, ground_truth) -> Score:
    """Card §2.2. ground_truth: {"inputs": [str], "outputs": [str]} (stdin/stdout cases, all must pass) or
    {"functional": "assert f(2) == 4\\nassert g(1) in (2, 3)"} (top-level asserts whose expected values are
    literals: the sandbox only computes f(2) and g(1), the parent checks them; see the comment above);
    optional "prefix" (code prepended, e.g. imports) and "timeout_s" (per case). Code runs only through
    run_sandboxed."""
    gt = _load_json_gt(ground_truth)
    if not isinstance(gt, dict) or not ({"inputs", "outputs"} <= set(gt) or "functional" in gt):
        raise GroundTruthError("ground_truth must have 'inputs'+'outputs' or 'functional'")
    code = extract_code(response)
    if code is None:
        return Score(0.0, "no_code")
    if len(code) > MAX_CODE_CHARS:
        return Score(0.0, "code_too_long")
    code = str(gt.get("prefix", "")) + "\n" + code
    per_case = gt.get("timeout_s", CODE_CASE_TIMEOUT_S)
    if not (isinstance(per_case, (int, float)) and 0 < per_case <= 60):
        raise GroundTruthError(f"ground_truth['timeout_s'] must be in (0, 60] seconds, got {per_case!r}")
    deadline = time.monotonic() + CODE_TOTAL_TIMEOUT_S
    if "functional" in gt:                                # the expected values never enter the sandbox
        return _score_functional(code, str(gt["functional"]), per_case)
    inputs, outputs = gt["inputs"], gt["outputs"]
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs) or not inputs:
        raise GroundTruthError("ground_truth 'inputs' and 'outputs' must be non-empty lists of equal length")
    for i, (x, y) in enumerate(zip(inputs, outputs)):
        left = deadline - time.monotonic()
        if left <= 0.05:
            return Score(0.0, "total_timeout")
        r = run_sandboxed(code, stdin=str(x), timeout_s=min(per_case, left))
        if not r.ok:
            return Score(0.0, f"case {i}: {_fail_reason(r)}")
        if not fuzzy_equal(r.stdout, str(y)):
            return Score(0.0, f"case {i}: wrong_output")
    return Score(1.0, "passed")


def _fail_reason(r: SandboxResult) -> str:
    if r.timed_out:
        return "timeout"
    if r.output_limited:
        return "output_limit"
    last = r.stderr.strip().splitlines()[-1:] or [""]
    return f"runtime_error (rc={r.returncode}): {last[0][:120]}"


# ==== 7. Science scorer (card §2.3) =================================================================================

# A boxed choice: "B", "(B)", "(B) 42", "B. Paris", "B: ..." -- but not "A and B" or "A, B" (hedging scores 0).
_CHOICE_RE = re.compile(r"\s*(?:\(\s*([A-Ja-j])\s*\).*|([A-Ja-j])\s*(?:[.:)].*)?)", re.S)
_CHOICE_TEXT_RE = re.compile(r"answer\s*(?:is|:)?\s*(?:option\s*)?\(?\s*([A-J])\s*\)?(?![A-Za-z])", re.I)
_SCI_NUM_RE = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
                         r"(?:\s*(?:\\times|\*|x|×|\\cdot)\s*10\s*\^\s*\{?\s*([-+]?\d+)\s*\}?)?\s*(.*)$",
                         re.S | re.A)                     # re.A: only ASCII digits are numbers


def _clean_text(s: str) -> str:
    """Short-answer normalization: unwrap \\text{}, lowercase, drop punctuation, articles and extra spaces."""
    for _ in range(3):
        s = _TEXT_CMD_RE.sub(lambda m: " " + m.group(1) + " ", s)
    s = unicodedata.normalize("NFC", s).lower().replace("$", " ").replace("~", " ")
    s = re.sub(r"[^\w\s/^.+-]|(?<!\d)\.|\.(?!\d)", " ", s)
    t = " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())
    return t or " ".join(s.split())                       # the answer "a" stays "a"


def _sci_number(s: str):
    """'9.8 m/s^2' -> (9.8, 'm/s^2'); '3\\times10^{8} m/s' -> (3e8, 'm/s'); None if no leading number."""
    m = _SCI_NUM_RE.match(s[:300])
    if not m or len(m.group(1)) > 100:                    # a long digit string may be cut at 300 characters
        return None
    try:
        mant, exp = float(m.group(1)), int(m.group(2) or 0)
        if abs(exp) > 300:
            return None
        value = mant * 10.0 ** exp
    except (ValueError, OverflowError):
        return None
    unit = re.sub(r"[\s{}\\]|text|mathrm|,", "", m.group(3).lower()).rstrip(".")
    zero = re.search(r"[1-9]", re.split("[eE]", m.group(1))[0]) is None
    if not math.isfinite(value) or (value == 0) != zero or 0 < abs(value) < sys.float_info.min:
        return None                                       # 1e999 overflows, 1e-999 underflows (or is subnormal)
    if unit and not (unit[0].isalpha() or unit[0] in "%°"):
        return None                                       # "2 1/3" is not 2 with the unit "1/3"
    return value, unit


def score_science(response: str, ground_truth) -> Score:
    """Card §2.3 without the LLM judge. ground_truth: a choice letter ("B", "(B)") or a short answer.
    Letters: the boxed choice, else the last "answer is X". Short answers: math_equal, else the leading numbers
    within 1% relative (units must agree when both sides give one), else normalized text equality."""
    gt = _gt_str(ground_truth).strip()
    text = strip_think(response)
    boxed = extract_boxed(_strip_code(text))
    gt_choice = re.fullmatch(r"\(?\s*([A-Ja-j])\s*\)?\.?", gt)
    if gt_choice:
        letter = None
        if boxed is not None:
            for _ in range(3):
                boxed = _TEXT_CMD_RE.sub(lambda m: m.group(1), boxed)
            m = _CHOICE_RE.fullmatch(boxed.strip()[:1000])
            letter = (m.group(1) or m.group(2)) if m else None
        else:
            ms = _CHOICE_TEXT_RE.findall(text[-2000:])
            letter = ms[-1] if ms else None
        if letter is None:
            return Score(0.0, "no_choice")
        return Score(1.0, "correct") if letter.upper() == gt_choice.group(1).upper() else Score(0.0, "wrong")
    if boxed is None:
        return Score(0.0, "no_boxed")
    if math_equal(boxed, gt):
        return Score(1.0, "correct")
    a, b = _sci_number(boxed), _sci_number(gt)
    if a is not None and b is not None:
        (va, ua), (vb, ub) = a, b
        ok = math.isclose(va, vb, rel_tol=1e-2, abs_tol=0.0) and (not ua or not ub or ua == ub)
        return Score(1.0, "correct") if ok else Score(0.0, "wrong")
    ok = _clean_text(boxed) == _clean_text(gt) and _clean_text(gt) != ""
    return Score(1.0, "correct") if ok else Score(0.0, "wrong")


# ==== 8. Logic scorer (card §2.4): ordering, zebra, graph, ARC; Prolog/PDDL via proto_verify ========================

LOGIC_KINDS = ("ordering", "zebra", "graph", "arc", "prolog", "pddl")
_TAG_RE = re.compile(r"<(/?)answer>")


def _last_answer(text: str, single_line: bool) -> str | None:
    """Content of the last match of `<answer>(.*?)</answer>` (with re.DOTALL iff not single_line), found in
    O(n log n): a regex finditer is quadratic on one long line of unclosed `<answer>` tags."""
    import bisect
    opens, closes = [], []
    for m in _TAG_RE.finditer(text):
        (closes if m.group(1) else opens).append((m.start(), m.end()))
    newlines = [m.start() for m in re.finditer("\n", text)] if single_line else []
    close_starts = [c[0] for c in closes]
    last, pos = None, 0
    for o_start, o_end in opens:                          # leftmost, non-overlapping, lazy: as re.finditer
        if o_start < pos:
            continue
        k = bisect.bisect_left(close_starts, o_end)
        if k == len(closes):
            break
        c_start, c_end = closes[k]
        if single_line and bisect.bisect_left(newlines, o_end) != bisect.bisect_left(newlines, c_start):
            continue                                      # a newline inside: no match from this <answer>
        last, pos = text[o_end:c_start], c_end
    return last


def _safe_literal(s: str):
    """json.loads, else ast.literal_eval (literals only, never code); None on failure or if too large."""
    if len(s) > MAX_JSON_CHARS:
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(s)
        except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError, OverflowError):
            continue
    return None


def _list_items(s: str) -> list[str] | None:
    """Ordering answers: the first [...] list, items = runs of word characters and spaces, lowercased."""
    m = re.search(r"\[([^\[\]]*)\]", s)
    if not m:
        return None
    return [x.strip().lower() for x in re.findall(r"[\w ]+", m.group(1)) if x.strip()]


def _logic_gt(ground_truth) -> tuple[str, dict]:
    gt = ground_truth
    if isinstance(gt, str) and gt.strip()[:1] in "[{":
        gt = _load_json_gt(gt)
    if isinstance(gt, dict) and "type" in gt:
        kind = gt["type"]
        if kind not in LOGIC_KINDS:
            raise GroundTruthError(f"ground_truth['type'] must be one of {LOGIC_KINDS}, got {kind!r}")
        return kind, gt
    if isinstance(gt, dict) and "rows" in gt:
        return "zebra", {"answer": gt}
    if isinstance(gt, list) and gt and all(isinstance(r, list) for r in gt):
        return "arc", {"answer": gt}
    if isinstance(gt, list) and all(isinstance(x, str) for x in gt):
        return "ordering", {"answer": gt}
    if isinstance(gt, str):
        return "graph", {"answer": gt}
    raise GroundTruthError("ground_truth for logic must be {'type': kind, ...} or a zebra dict / ARC grid / "
                           f"ordering list / graph string, got {type(gt).__name__}")


def score_logic(response: str, ground_truth) -> Score:
    """Card §2.4. ground_truth: {"type": kind, "answer": ...} with kind in LOGIC_KINDS (or the bare answer):
    ordering (list of str: strict), zebra ({"header", "rows"}: fraction of cells), graph (letters,
    case-insensitive), arc (list of lists: every cell), prolog / pddl (delegated to proto_verify)."""
    kind, gt = _logic_gt(ground_truth)
    if kind in ("prolog", "pddl"):
        return _score_delegated(kind, response, gt)
    text = strip_think(response)
    if kind == "arc":
        ans = _last_answer(text, single_line=False)
        if ans is None:
            return Score(0.0, "no_answer")
        ans = ans.replace("\n", "").replace("...", "-1")
        start = ans.find("[[")
        end = _bracket_end(ans, start) if start >= 0 else -1
        grid = _safe_literal(ans[start:end + 1]) if end > 0 else None
        if not (isinstance(grid, list) and all(isinstance(r, list) for r in grid)):
            return Score(0.0, "unparsable")
        return Score(1.0, "correct") if grid == gt["answer"] else Score(0.0, "wrong")
    ans = _last_answer(text, single_line=True)
    if ans is None:
        return Score(0.0, "no_answer")
    if kind == "ordering":
        items = _list_items(ans)
        if items is None:
            return Score(0.0, "unparsable")
        want = [str(x).strip().lower() for x in gt["answer"]]
        return Score(1.0, "correct") if items == want else Score(0.0, "wrong")
    if kind == "graph":
        a = ans.strip()
        if not re.fullmatch(r"[A-Za-z]+", a):
            return Score(0.0, "unparsable")
        return Score(1.0, "correct") if a.lower() == str(gt["answer"]).strip().lower() else Score(0.0, "wrong")
    # zebra: fraction of cells equal (exact, case-sensitive); missing rows or cells give 0 as in Guru
    want = gt["answer"]
    got = _safe_literal(ans.strip())
    if not (isinstance(got, dict) and isinstance(got.get("rows"), list)):
        return Score(0.0, "unparsable")
    rows, n_cols = want["rows"], len(want.get("header", want["rows"][0] if want["rows"] else []))
    if n_cols == 0 or not rows:
        raise GroundTruthError("zebra ground_truth needs non-empty 'rows' and 'header'")
    correct = 0
    for i, row in enumerate(rows):
        if i >= len(got["rows"]) or not isinstance(got["rows"][i], list) or len(got["rows"][i]) < n_cols:
            return Score(0.0, "missing_cells")
        correct += sum(got["rows"][i][j] == row[j] for j in range(n_cols))
    frac = correct / (len(rows) * n_cols)
    return Score(frac, "correct" if frac == 1.0 else f"partial {correct}/{len(rows) * n_cols}")


def _bracket_end(s: str, start: int) -> int:
    depth = 0
    for i in range(start, len(s)):
        depth += s[i] == "["
        depth -= s[i] == "]"
        if depth == 0:
            return i
    return -1


def _score_delegated(kind: str, response: str, gt: dict) -> Score:
    """Prolog and PDDL items are verified by proto_verify (imported lazily: guru_rewards works without it)."""
    try:
        import proto_verify                                # the only allowed import between concept files
    except ImportError:
        proto_verify = None
    if kind == "pddl":
        validate = getattr(proto_verify, "validate_plan", None)
        if validate is None:
            return Score(0.0, "verifier_unavailable: proto_verify.validate_plan")
        if not (isinstance(gt.get("domain"), str) and isinstance(gt.get("problem"), str)):
            raise GroundTruthError("pddl ground_truth needs 'domain' and 'problem' PDDL text")
        text = strip_think(response)
        plan = _last_answer(text, single_line=False)
        plan = text if plan is None else plan
        if len(plan) > MAX_JSON_CHARS:
            return Score(0.0, "too_long")
        verdict = validate(gt["domain"], gt["problem"], plan)
        return Score(1.0, "correct") if verdict.valid else Score(0.0, f"invalid_plan: {verdict.reason}")
    return _score_prolog(proto_verify, response, gt)


def _score_prolog(proto_verify, response: str, gt: dict) -> Score:
    """ground_truth {"type": "prolog", "task": proto_verify.Task} or {"type": "prolog", "answer": reference
    (canonical JSON text or value), "compare": "set" | "sequence" | "first"}: proto_verify.prolog_reward compares
    the answer after `</think>` with the engine-computed reference."""
    reward = getattr(proto_verify, "prolog_reward", None)
    if reward is None:
        return Score(0.0, "verifier_unavailable: proto_verify.prolog_reward")
    text = strip_think(response)
    if "task" in gt:
        value, reason = reward(gt["task"], text)
    elif "answer" in gt:
        compare = gt.get("compare", "first")
        if compare not in ("set", "sequence", "first"):
            raise GroundTruthError(f"prolog ground_truth['compare'] must be set/sequence/first, got {compare!r}")
        value, reason = reward(gt["answer"], text, compare=compare)
    else:
        raise GroundTruthError("prolog ground_truth needs 'task' (a proto_verify Task) or 'answer' (+ 'compare')")
    if reason == "bad_reference":
        raise GroundTruthError(f"prolog ground_truth has a bad reference answer: {gt!r:.200}")
    return Score(min(1.0, max(0.0, float(value))), "correct" if value == 1.0 else str(reason))


# ==== 9. Simulation scorer (card §2.5): CodeI/O =====================================================================

_JSON_BLOCK_RE = re.compile(r"```[ \t]*(?:(?:json|JSON)[ \t]*)?\n(.*?)```", re.S)   # one blank run per choice


def _top_level_objects(text: str) -> list[str]:
    """Balanced top-level {...} spans, left to right (linear)."""
    spans, depth, start = [], 0, -1
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start:i + 1])
    return spans


def _codeio_value(obj):
    if isinstance(obj, dict):
        for key in ("output", "input"):
            if key in obj:
                return obj[key]
    return obj


def _normalize_json(x, depth: int = 0):
    """Card §2.5: JSON-looking strings are parsed, "true"/"false" (any case) become booleans, recursively."""
    if depth > 50:
        raise RecursionError("json nesting")
    if isinstance(x, dict):
        return {str(k): _normalize_json(v, depth + 1) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_normalize_json(v, depth + 1) for v in x]
    if isinstance(x, str):
        t = x.strip()
        if t.lower() in ("true", "false"):
            return t.lower() == "true"
        if t[:1] in "[{" and len(t) <= MAX_JSON_CHARS:
            try:
                return _normalize_json(json.loads(t), depth + 1)
            except (ValueError, RecursionError):
                return x
    return x


def _json_equal(a, b) -> bool:
    """Plain equality, except that a bool only equals a bool (Python's True == 1 must not score)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _parse_codeio(text: str):
    m = _JSON_BLOCK_RE.search(text)
    body = m.group(1) if m else text
    if len(body) > MAX_JSON_CHARS:
        return None, False
    try:
        return json.loads(body), True
    except (ValueError, RecursionError):
        pass
    spans = _top_level_objects(body)
    for span in reversed(spans[-1:]):
        try:
            return json.loads(span), True
        except (ValueError, RecursionError):
            pass
    return None, False


def score_simulation(response: str, ground_truth) -> Score:
    """Card §2.5 (CodeI/O): the first fenced json block after `</think>` (else the whole text, else its last
    {...}), parsed with json.loads; its "output" (else "input", else itself) must equal the ground truth's after
    normalization. ground_truth: '"output": <json>' as in the dataset, a JSON object string, or a dict."""
    gt = ground_truth
    if isinstance(gt, str):
        t = gt.strip()
        try:
            gt = json.loads(t if t.startswith("{") else "{" + t + "}")
        except ValueError as e:
            raise GroundTruthError(f"ground_truth must be '\"output\": <json>' or a JSON object: {e}") from None
    want = _normalize_json(_codeio_value(gt))
    obj, ok = _parse_codeio(strip_think(response))
    if not ok:
        return Score(0.0, "unparsable")
    try:
        got = _normalize_json(_codeio_value(obj))
    except RecursionError:
        return Score(0.0, "unparsable")
    return Score(1.0, "correct") if _json_equal(got, want) else Score(0.0, "wrong")


# ==== 10. Tabular scorer (card §2.6) ================================================================================

def _const_float(v) -> float | None:
    """A parsed value without variables as a finite float (pi and square roots allowed), else None (also when it
    overflows a float: 1e309 is not a float, and two overflowing values must not compare equal as inf == inf)."""
    if v is None or isinstance(v, tuple):
        return None
    total = 0.0
    try:
        for (p, r, mono), c in v.items():
            if mono:
                return None
            total += float(c) * math.pi ** p * math.sqrt(r)
    except OverflowError:
        return None
    return total if math.isfinite(total) else None


def _table_value(s: str):
    """Exact value of a table cell (as _value), or None."""
    s = s.replace(",", "").replace("$", "").replace("\\%", "%").replace("\\", "").replace(":", "/").strip()
    if not s or len(s) > 200 or not re.search(r"[0-9]", s):
        return None
    v = _value(s)
    return v if isinstance(v, dict) else None


def _table_single_equal(a: str, b: str) -> bool:
    if a == b or (_clean_text(a) == _clean_text(b) and _clean_text(a)):
        return True
    cands_a = {a.replace("%", "").replace("\\", ""), a} if "%" in a else {a}
    cands_b = {b.replace("%", "").replace("\\", ""), b} if "%" in b else {b}
    for x in cands_a:                                    # '%' read as /100 or as a unit (never x100 without '%')
        for y in cands_b:
            ex, ey = _table_value(x), _table_value(y)
            if ex is not None and ex == ey:              # exactly equal (also beyond the float range)
                return True
            vx, vy = _const_float(ex), _const_float(ey)
            if vx is not None and vy is not None and math.isclose(vx, vy, rel_tol=1e-3, abs_tol=0.0):
                return True
    return False


def score_tabular(response: str, ground_truth) -> Score:
    """Card §2.6: the last \\boxed{} after `</think>` (lowercased; a short unboxed answer is read whole);
    answers joined by '|' compare as multisets; numbers within 1e-3 relative; parsed, never evaluated."""
    gt = _gt_str(ground_truth).lower().strip()
    text = strip_think(response).lower()
    ans = extract_boxed(_strip_code(text))
    if ans is None:
        ans = text.strip()
        if len(ans) > 200:
            return Score(0.0, "no_boxed")
    for _ in range(3):
        ans = _TEXT_CMD_RE.sub(lambda m: m.group(1), ans)
        gt = _TEXT_CMD_RE.sub(lambda m: m.group(1), gt)
    if len(ans) > MAX_ANSWER_CHARS:
        return Score(0.0, "too_long")
    xs = [x.strip() for x in ans.split("|")]
    ys = [y.strip() for y in gt.split("|")]
    return Score(1.0, "correct") if _multiset_equal(xs, ys, _table_single_equal) else Score(0.0, "wrong")


# The router's table (section 1). Adding a domain = one function `f(response, ground_truth) -> Score` here.
SCORERS.update({
    "math": score_math, "code": score_code, "science": score_science, "logic": score_logic,
    "simulation": score_simulation, "tabular": score_tabular})


# ==== Appendix A. Infrastructure: the code sandbox, run_sandboxed ===================================================

#
# What `run_sandboxed` isolates (verified by tests/test_guru_rewards.py, "sandbox attacks"):
#
#                              mode "bwrap" (default when /usr/bin/bwrap works)   mode "limits" (fallback)
#  separate process            yes, own session + process group                   yes, same
#  CPU / address space /       RLIMIT_CPU = ceil(timeout)+1 s, RLIMIT_AS =         same
#  file size / open files      memory_mb, RLIMIT_FSIZE = 16 MB, RLIMIT_NOFILE = 64
#  wall-clock timeout          SIGKILL to the process group at timeout_s           same
#  process count (fork bomb)   RLIMIT_NPROC = 32 under a fresh uid (*)             same (*)
#  leftover processes          pid namespace: all die with bwrap; plus (*)         killed by uid scan (*) or group
#  environment                 cleared (PATH, HOME, LANG only)                     same
#  stdout / stderr             capped (1 MB each by default); the run is killed    same
#                              as soon as the cap is exceeded
#  working directory           fresh temp dir, removed afterwards                  same
#  filesystem writes           only the work dir and a private size-capped /tmp;   NOT isolated: any path writable
#                              everything else is read-only or absent              by the sandbox uid (e.g. /tmp)
#  filesystem reads            an empty root with only /usr, /bin, /sbin, /lib*    NOT isolated: world-readable
#                              (read-only binds or the host's symlinks), the       host files are readable
#                              interpreter's prefix (e.g. a pyenv/conda/venv dir),
#                              /etc/ld.so.cache, /proc, /dev; the project, /etc,
#                              /home, /root, /var, /opt, /work... do not exist
#  network                     none (new network namespace, loopback only)         NOT isolated
#  other processes             invisible (pid namespace, fresh /proc); ipc, uts    visible; signals/ptrace/environ
#                              namespaces are private                              blocked only by the uid (*)
#
# (*) When the parent runs as root, the child runs as a fresh unprivileged uid from 61000..61999 with no
# capabilities and no_new_privs (setuid binaries cannot regain root). RLIMIT_NPROC then counts only the
# sandbox's own processes (the kernel never enforces NPROC for uid 0), the child cannot signal or ptrace the
# parent nor read /proc/<ppid>/environ, and every process of that uid is SIGKILLed after the run. The drop is
# done by `setpriv` inside bwrap (or by the 5-line _DROP_BOOTSTRAP when setpriv is missing), by preexec_fn in
# "limits" mode. bwrap then runs WITHOUT a user namespace (a user namespace would map the child back to host
# uid 0). The interpreter must be reachable by that uid: ours if every directory above it is world-executable,
# else /usr/bin/python3 (e.g. a pyenv python under /root). With no reachable interpreter there is no uid drop.
# As a non-root user the child keeps the parent's uid: bwrap makes an unprivileged user namespace
# (--unshare-all), NPROC counts all of that user's processes (we add the current count as headroom), and, in
# "limits" mode only, the child CAN signal the parent and read /proc/<ppid>/environ.
# Known leaks: in "limits" mode processes that escaped the group are killed but stay zombies until the host's
# init reaps them; the private /tmp (64 MiB tmpfs) and the work dir count against host RAM/disk; CPU time of
# a fork bomb before NPROC stops it is not capped beyond RLIMIT_CPU per process. No seccomp filter.

SANDBOX_MODE: str | None = None          # None = auto ("bwrap" when it works, else "limits"); tests force either
_SANDBOX_UID_BASE, _SANDBOX_UID_COUNT = 61_000, 1_000
_SANDBOX_TMP_MB = 64                     # size of the private /tmp (tmpfs) in bwrap mode
_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()
_uid_next = [0]
_probe_cache: dict[str, object] = {}


@dataclass
class SandboxResult:
    """Outcome of one sandboxed run. `ok` = exit status 0, no timeout, output within the cap."""
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    output_limited: bool
    wall_s: float
    mode: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.output_limited


def _world_executable(path: str) -> bool:
    """Can an unprivileged uid reach and run `path` (o+x on every directory, o+rx on the file)?"""
    path = os.path.realpath(path)
    try:
        if os.stat(path).st_mode & 0o005 != 0o005:
            return False
        d = os.path.dirname(path)
        while True:
            if not os.stat(d).st_mode & 0o001:
                return False
            if d == "/":
                return True
            d = os.path.dirname(d)
    except OSError:
        return False


def _sandbox_python(drop_uid: bool) -> str:
    """The interpreter the child runs: ours, or (when ours sits in e.g. /root/.pyenv, unreachable by an
    unprivileged uid) the system python3."""
    key = f"python{drop_uid}"
    if key not in _probe_cache:
        cands = [sys.executable] + ([p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if p] if drop_uid
                                    else [])
        ok = [c for c in cands if c and os.path.exists(c) and (not drop_uid or _world_executable(c))]
        _probe_cache[key] = ok[0] if ok else None
    return _probe_cache[key]


def _bwrap_path() -> str | None:
    """Path of a working bwrap (probed once with a trivial command), else None with a one-time warning."""
    if "bwrap" not in _probe_cache:
        path = shutil.which("bwrap")
        if path:
            probe_dir = tempfile.mkdtemp(prefix="guru_sbx_probe_")
            try:
                cmd = _bwrap_argv(path, probe_dir, "/tmp/sandbox", 1, os.geteuid() == 0) + ["/bin/true"]
                ok = subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
            except (OSError, subprocess.SubprocessError):
                ok = False
            finally:
                shutil.rmtree(probe_dir, ignore_errors=True)
            path = path if ok else None
        if path is None:
            warnings.warn("guru_rewards: bubblewrap (bwrap) is missing or unusable; run_sandboxed falls back to "
                          "resource limits only (no filesystem/network/pid isolation). Install the Debian "
                          "package `bubblewrap`.", RuntimeWarning, stacklevel=3)
        _probe_cache["bwrap"] = path
    return _probe_cache["bwrap"]


_LIB_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")   # the system's programs and libraries
_ETC_FILES = ("/etc/ld.so.cache",)                                             # what the dynamic loader reads


def _interpreter_dirs(paths: Sequence[str]) -> list[str]:
    """Prefixes to bind read-only for executables `paths` (the interpreter, setpriv): <prefix>/bin/python's
    <prefix>, both as called (a venv) and with symlinks resolved (its base installation). Prefixes inside the
    system dirs, and "/" itself, add nothing."""
    out: list[str] = []
    for p in paths:
        for exe in (os.path.abspath(p), os.path.realpath(p)):
            d = os.path.dirname(os.path.dirname(exe))
            if (d in ("/", "") or d in out or not os.path.isdir(d)
                    or any(d == s or d.startswith(s + "/") for s in _LIB_DIRS)):
                continue
            out.append(d)
    return sorted(out, key=len)


def _bwrap_argv(bwrap: str, workdir: str, inner_cwd: str, tmp_mb: int, as_root: bool,
                binds: Sequence[str] = ()) -> list[str]:
    # As root, no user namespace (it would map the child to host uid 0, where RLIMIT_NPROC is not enforced);
    # setpriv (below) then drops to a fresh uid. As a normal user, --unshare-all makes an unprivileged userns.
    ns = (["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"] if as_root
          else ["--unshare-all"])
    fs = []                                              # an empty root with only what the interpreter needs
    for d in _LIB_DIRS:
        if os.path.islink(d):                            # merged /usr: /lib -> usr/lib
            fs += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            fs += ["--ro-bind", d, d]
    for f in _ETC_FILES:
        fs += ["--ro-bind-try", f, f]
    for d in binds:                                      # the interpreter's own prefix (pyenv, conda, a venv)
        fs += ["--ro-bind", d, d]
    return [bwrap, *ns, "--die-with-parent", "--new-session", *fs,
            "--perms", "1777", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp",   # private, size-capped /tmp
            "--bind", workdir, inner_cwd,                                  # the only writable place
            "--proc", "/proc", "--dev", "/dev", "--chdir", inner_cwd,
            "--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "HOME", inner_cwd,
            "--setenv", "LANG", "C.UTF-8", "--"]


# Runs as root inside bwrap when setpriv is missing: no_new_privs (setuid binaries cannot regain root), then
# drop to the sandbox uid (which clears every capability) and exec the real command.
_DROP_BOOTSTRAP = ("import ctypes, os, sys\n"
                   "if ctypes.CDLL(None, use_errno=True).prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS\n"
                   "    sys.exit('no_new_privs failed')\n"
                   "uid = int(sys.argv[1]); os.setgroups([]); os.setgid(uid); os.setuid(uid)\n"
                   "os.execv(sys.argv[2], sys.argv[2:])\n")


def _libc():
    """libc via ctypes, loaded in the parent: preexec_fn must not import (fork + import lock = deadlock)."""
    if "libc" not in _probe_cache:
        import ctypes
        _probe_cache["libc"] = ctypes.CDLL(None, use_errno=True)
    return _probe_cache["libc"]


def _drop_privileges(uid: int, libc) -> None:
    if libc.prctl(38, 1, 0, 0, 0) != 0:                  # PR_SET_NO_NEW_PRIVS
        raise OSError("prctl(PR_SET_NO_NEW_PRIVS) failed")
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _setpriv_path() -> str | None:
    if "setpriv" not in _probe_cache:
        _probe_cache["setpriv"] = shutil.which("setpriv") or next(
            (p for p in ("/usr/bin/setpriv", "/bin/setpriv") if os.path.exists(p)), None)
    return _probe_cache["setpriv"]


def _count_user_processes(uid: int) -> int:
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    n += 1
            except OSError:
                pass
    return n


def _claim_uid() -> int:
    with _uid_lock:
        for _ in range(_SANDBOX_UID_COUNT):
            uid = _SANDBOX_UID_BASE + _uid_next[0] % _SANDBOX_UID_COUNT
            _uid_next[0] += 1
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid
    raise RuntimeError("run_sandboxed: all sandbox uids are in use")


def _kill_uid(uid: int, wait_s: float = 2.0) -> None:
    """SIGKILL every process whose real uid is `uid` (processes that escaped the group with setsid), until none is
    left alive (zombies excluded: their parent reaps them) or `wait_s` passes."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = False
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/status") as f:
                    status = f.read()
                state = status.split("State:", 1)[1].split()[0]
                if int(status.split("Uid:", 1)[1].split()[0]) == uid and state not in ("Z", "X"):
                    os.kill(int(pid), signal.SIGKILL)
                    alive = True
            except (OSError, ValueError, IndexError):
                pass
        if not alive or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def run_sandboxed(code: str, stdin: str = "", timeout_s: float = 2.0, memory_mb: int = 512,
                  max_output_bytes: int = 1 << 20, max_procs: int = 32, file_size_mb: int = 16,
                  mode: str | None = None) -> SandboxResult:
    """Run Python `code` in an isolated child process (see the table above for what is isolated).

    Args:
        code: Python source, run as `python -I main.py` in a fresh temporary working directory.
        stdin: text fed to the child's stdin.
        timeout_s: wall-clock limit in seconds (> 0); the whole process group is SIGKILLed when it passes.
        memory_mb: address-space limit (RLIMIT_AS) in MiB, >= 64.
        max_output_bytes: cap on each of stdout and stderr; exceeding it kills the run (output_limited=True).
        max_procs: RLIMIT_NPROC (effective under a dropped uid or as a normal user, see the notes above).
        file_size_mb: RLIMIT_FSIZE in MiB (largest file the child may write).
        mode: "bwrap", "limits" or None (module default SANDBOX_MODE, else auto-detect).
    Returns:
        SandboxResult(returncode, stdout, stderr, timed_out, output_limited, wall_s, mode). Never raises on
        anything the code does.
    """
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, got {type(code).__name__}")
    if not isinstance(stdin, str):
        raise TypeError(f"stdin must be a str, got {type(stdin).__name__}")
    if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s <= 3600):
        raise ValueError(f"timeout_s must be in (0, 3600], got {timeout_s!r}")
    if not (isinstance(memory_mb, int) and memory_mb >= 64):
        raise ValueError(f"memory_mb must be an int >= 64, got {memory_mb!r}")
    mode = mode or SANDBOX_MODE
    if mode not in (None, "bwrap", "limits"):
        raise ValueError(f"mode must be None, 'bwrap' or 'limits', got {mode!r}")
    bwrap = _bwrap_path() if mode in (None, "bwrap") else None
    if mode == "bwrap" and bwrap is None:
        raise RuntimeError("run_sandboxed(mode='bwrap'): bubblewrap is not available")
    mode = "bwrap" if bwrap else "limits"
    as_root = os.geteuid() == 0
    python = _sandbox_python(drop_uid=as_root)
    drop_uid = as_root and python is not None
    python = python or sys.executable
    uid = _claim_uid() if drop_uid else None

    workdir = tempfile.mkdtemp(prefix="guru_sbx_")
    t0 = time.monotonic()
    try:
        with open(os.path.join(workdir, "main.py"), "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(code)
        if uid is not None:
            os.chown(workdir, uid, uid)
            os.chown(os.path.join(workdir, "main.py"), uid, uid)
        py_argv = [python, "-I", "-B", "-X", "utf8", "main.py"]
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "LANG": "C.UTF-8"}
        cpu = int(math.ceil(timeout_s)) + 1
        # Under a fresh uid NPROC counts only the sandbox; as a normal user it counts all of the user's processes.
        nproc = max_procs if uid is not None else _count_user_processes(os.getuid()) + max_procs

        if mode == "bwrap":
            argv = _bwrap_argv(bwrap, workdir, "/tmp/sandbox", _SANDBOX_TMP_MB, as_root,
                               binds=_interpreter_dirs([python, _setpriv_path() or python]))
            if uid is not None and _setpriv_path():
                argv += [_setpriv_path(), f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
                         "--inh-caps=-all", "--bounding-set=-all", "--"]
            elif uid is not None:                         # no setpriv: the same drop done by a tiny bootstrap
                argv += [python, "-I", "-S", "-c", _DROP_BOOTSTRAP, str(uid)]
            argv += py_argv
            cwd = None
        else:
            argv, cwd = py_argv, workdir

        libc = _libc() if uid is not None and mode == "limits" else None

        def preexec():                                    # runs in the child between fork and exec (no imports)
            lim = [(resource.RLIMIT_CPU, cpu), (resource.RLIMIT_AS, memory_mb << 20),
                   (resource.RLIMIT_FSIZE, file_size_mb << 20), (resource.RLIMIT_NOFILE, 64),
                   (resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, nproc)]
            for r, v in lim:
                resource.setrlimit(r, (v, v))
            if uid is not None and mode == "limits":
                _drop_privileges(uid, libc)

        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, preexec_fn=preexec, start_new_session=True,
                                close_fds=True)
        over = threading.Event()
        bufs: list[list[bytes]] = [[], []]

        def pump(stream, buf):
            n = 0
            while True:
                chunk = stream.read1(65536)
                if not chunk:
                    return
                if n < max_output_bytes:
                    buf.append(chunk[:max_output_bytes - n])
                n += len(chunk)
                if n > max_output_bytes:
                    over.set()
                    _killpg(proc.pid)
                    return

        def feed():
            try:
                proc.stdin.write(stdin.encode("utf-8", "surrogatepass"))
            except (BrokenPipeError, OSError):
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass

        threads = [threading.Thread(target=pump, args=(proc.stdout, bufs[0]), daemon=True),
                   threading.Thread(target=pump, args=(proc.stderr, bufs[1]), daemon=True),
                   threading.Thread(target=feed, daemon=True)]
        for t in threads:
            t.start()
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
        _killpg(proc.pid)                                 # leftovers in the group die with the run
        if uid is not None:
            _kill_uid(uid)
        proc.wait()
        for t in threads:
            t.join(timeout=0.5)
        for s in (proc.stdout, proc.stderr):
            try:
                s.close()
            except OSError:
                pass
        out, err = (b"".join(b).decode("utf-8", "replace") for b in bufs)
        rc = None if timed_out else proc.returncode
        return SandboxResult(rc, out, err, timed_out, over.is_set(), time.monotonic() - t0, mode)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if uid is not None:
            with _uid_lock:
                _uids_in_use.discard(uid)


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ==== Appendix B. Demo and benchmark: python guru_rewards.py [--bench] ==============================================

def _demo_cases() -> list[tuple[str, str, object]]:
    fence = "```"
    zebra = {"header": ["House", "Name", "Pet"], "rows": [["1", "Ann", "cat"], ["2", "Bob", "dog"]]}
    return [
        ("math", r"<think>maybe \boxed{3}</think> The answer is \boxed{\dfrac{2}{4}}.", "1/2"),
        ("math", r"\boxed{(1, \sqrt{8})}", r"(1, 2\sqrt{2})"),
        ("math", r"\boxed{0.5}", "50"),
        ("code", f"{fence}python\na, b = map(int, input().split())\nprint(a + b)\n{fence}",
         {"inputs": ["1 2\n", "5 7\n"], "outputs": ["3\n", "12\n"]}),
        ("code", f"{fence}python\nwhile True: pass\n{fence}", {"functional": "assert True", "timeout_s": 1}),
        ("science", r"The answer is \boxed{(C)}", "C"),
        ("science", r"\boxed{2.99\times10^{8}\ \text{m/s}}", "3e8 m/s"),
        ("logic", '<answer>{"rows": [["1", "Ann", "cat"], ["2", "Bob", "fish"]]}</answer>', zebra),
        ("logic", "<answer>[owl, robin]</answer>", {"type": "ordering", "answer": ["owl", "robin"]}),
        ("simulation", '```json\n{"output": "[1, true]"}\n```', '"output": [1, true]'),
        ("tabular", r"\boxed{12.5\% | 1,000}", "1000|0.125"),
        ("tabular", r"\boxed{print('pwned')}", "pwned"),
    ]


def _bench(seconds: float = 0.5) -> None:
    import statistics
    print(f"{'domain':<11} {'scores/s':>10}  example")
    for domain, resp, gt in _demo_cases():
        if domain == "code":
            continue
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            score(domain, resp, gt)
            n += 1
        print(f"{domain:<11} {n / (time.perf_counter() - t0):>10.0f}  {resp[:50]!r}")
    resp, gt = _demo_cases()[3][1:]
    t0 = time.perf_counter()
    for _ in range(5):
        score("code", resp, gt)
    print(f"{'code':<11} {5 / (time.perf_counter() - t0):>10.1f}  (2 stdin/stdout cases = 2 sandboxed runs per score)")

    def wall(fn, k=15):
        ts = []
        for _ in range(k):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return statistics.median(ts)

    py = _sandbox_python(drop_uid=os.geteuid() == 0) or sys.executable     # the interpreter the sandbox runs
    plain = wall(lambda: subprocess.run([py, "-I", "-B", "-X", "utf8", "-c", "pass"], capture_output=True))
    print(f"\nsandbox per-call wall time for `pass` with {py} (median of 15; overhead = minus a plain "
          f"subprocess run of the same interpreter)")
    print(f"{'executor':<34} {'median ms':>10} {'overhead ms':>12}")
    print(f"{'plain subprocess (no isolation)':<34} {plain * 1e3:>10.1f} {0.0:>12.1f}")
    for mode in ("limits", "bwrap"):
        if mode == "bwrap" and _bwrap_path() is None:
            print(f"{'run_sandboxed(mode=bwrap)':<34} {'n/a (bwrap missing)':>23}")
            continue
        t = wall(lambda: run_sandboxed("pass", mode=mode))
        print(f"{'run_sandboxed(mode=' + mode + ')':<34} {t * 1e3:>10.1f} {(t - plain) * 1e3:>12.1f}")


def _main() -> None:
    import argparse
    ap = argparse.ArgumentParser(description="Guru six-domain rewards: demo (default) or --bench.")
    ap.add_argument("--bench", action="store_true", help="scores/s per domain and sandbox per-call overhead")
    ap.add_argument("--seconds", type=float, default=0.5, help="time per domain in --bench")
    args = ap.parse_args()
    if args.bench:
        _bench(args.seconds)
        return
    print(f"sandbox mode: {'bwrap' if _bwrap_path() else 'limits (bwrap missing)'}; sandbox interpreter: "
          f"{_sandbox_python(drop_uid=os.geteuid() == 0) or sys.executable}")
    for domain, resp, gt in _demo_cases():
        t0 = time.perf_counter()
        s = score(domain, resp, gt)
        print(f"{domain:<10} {s.value:4.2f}  {s.reason:<34} {1e3 * (time.perf_counter() - t0):7.1f} ms  "
              f"{resp[:60]!r}")
    items = ["What is 2+2?", "what is  2+2?", "What is 2 + 2 ?", "Find x if 3x = 9.", "Sum the digits of 2025."]
    print("\ndedup keeps", [items[i] for i in dedup(items, threshold=0.6)])
    rates = [0.0, 1 / 16, 0.5, 15 / 16, 1.0]
    print("difficulty_filter(low=0.1, high=0.9) keeps pass rates",
          difficulty_filter(rates, rates, low=0.1, high=0.9))


if __name__ == "__main__":
    _main()
