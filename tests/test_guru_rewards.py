"""Claims of guru_rewards.py (Guru, arXiv 2506.14965; card ../shared/papers/guru.md §2, §3, §4, §8)."""
import math
import os
import random
import re
import string
import sys
import time
import types
from fractions import Fraction

import pytest

import guru_rewards as gr
from guru_rewards import Score, extract_boxed, math_equal, score


# ------------------------------------------------------------------------------------------- extraction ----

def test_extract_boxed_takes_the_last_brace_balanced_box():
    assert extract_boxed(r"\boxed{1} then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert extract_boxed(r"\boxed{a{b{c}}d}") == "a{b{c}}d"                 # nested braces
    assert extract_boxed(r"\boxed{1} and \boxed{2") == "1"                    # unbalanced last box is skipped
    assert extract_boxed(r"no box here") is None
    assert extract_boxed(r"\fbox{7}") == "7"
    assert extract_boxed(r"\boxed 5.") == "5."


class Work:
    """Deterministic work count, never a clock: Python lines executed in guru_rewards (sys.settrace) plus the
    characters guru_rewards hands to the regex engine (while installed, each compiled pattern of the module and
    each `re` function it calls is wrapped). `longest[pattern]` is the longest string a pattern was given.
    Backtracking inside one regex call is not visible here: REVIEWED_LINEAR below lists the patterns allowed to
    see long strings, each with the reason it runs in linear time."""

    _STRING_ARG = {"match": 0, "search": 0, "fullmatch": 0, "findall": 0, "finditer": 0, "split": 0, "sub": 1,
                   "subn": 1}

    def __init__(self, monkeypatch):
        self.lines = self.chars = 0
        self.longest: dict[str, int] = {}
        work = self

        class CountedPattern:
            def __init__(self, p):
                self._p = p

            def __getattr__(self, name):
                attr = getattr(self._p, name)
                if name not in Work._STRING_ARG:
                    return attr
                return lambda *a, **kw: (work._saw(self._p.pattern, a[Work._STRING_ARG[name]]), attr(*a, **kw))[1]

        def counted_fn(name):
            def fn(pattern, *a, **kw):
                work._saw(getattr(pattern, "pattern", pattern), a[Work._STRING_ARG[name]])
                return getattr(re, name)(pattern, *a, **kw)
            return fn

        fake_re = types.SimpleNamespace(**{k: getattr(re, k) for k in dir(re) if not k.startswith("__")})
        for name in Work._STRING_ARG:
            setattr(fake_re, name, counted_fn(name))
        monkeypatch.setattr(gr, "re", fake_re)
        for name, value in list(vars(gr).items()):
            if isinstance(value, re.Pattern):
                monkeypatch.setattr(gr, name, CountedPattern(value))

    def _saw(self, pattern, string):
        n = len(string) if isinstance(string, (str, bytes)) else 0
        self.chars += n
        self.longest[pattern] = max(self.longest.get(pattern, 0), n)

    def count(self, fn, *args, **kwargs) -> int:
        """Lines + regex characters of one call fn(*args, **kwargs)."""
        self.lines = self.chars = 0
        target = gr.__file__

        def tracer(frame, event, arg):
            if frame.f_code.co_filename != target:
                return None
            if event == "line":
                self.lines += 1
            return tracer

        old = sys.gettrace()
        sys.settrace(tracer)
        try:
            self.result = fn(*args, **kwargs)
        finally:
            sys.settrace(old)
        return self.lines + self.chars


def test_extract_boxed_is_linear_on_megabyte_adversarial_inputs(monkeypatch):
    shapes = [lambda n: "\\boxed{" * (n // 7), lambda n: "{" * n + "\\boxed{1}", lambda n: "\\boxed{" + "}" * n]
    for shape in shapes:                                 # results on megabyte inputs (untraced: no clock involved)
        assert extract_boxed(shape(1_000_000)) in (None, "1", "")
    work = Work(monkeypatch)
    for shape in shapes:                                 # work: a fixed number of steps per character, and it
        small, big = work.count(extract_boxed, shape(50_000)), work.count(extract_boxed, shape(200_000))  # scales
        assert big <= 10 * 200_000 and big <= 4.2 * small + 100, (shape(20), small, big)           # linearly


# ------------------------------------------------------------------------------------------------- math ----

@pytest.mark.parametrize("pred,gt", [
    (r"\frac{1}{2}", r"\frac12"), ("1,000", "1000"), (r"5\text{ cm}", "5"), ("x+1", "1+x"),
    ("0.5", r"\frac{1}{2}"), ("2/4", "1/2"), ("1.5e3", "1500"), (r"3\times10^{5}", "300000"),
    (r"2\sqrt{2}", r"\sqrt{8}"), (r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt3"), (r"\dfrac{2\pi}{3}", "2pi/3"),
    (r"50\%", "50"), (r"50\%", "0.5"), ("-3", "- 3"), ("(x+1)^2", "x^2+2x+1"), ("x=5", "5"),
    (r"[0, \infty)", r"[0,\infty)"), ("(1, -2)", r"\left(1,-2\right)"), ("3, 1", "1, 3"),
    (r"\{1,2\}", r"\{2,1\}"), (r"\text{Monday}", "Monday"), (r"90^\circ", "90"), (r"\$5", "5"),
    (r"1\frac{1}{2}", "3/2"), ("-2 1/4", "-9/4"), ("2^{10}", "1024"), (r"\frac{\pi}{2}", r"\pi/2"), ("3.0", "3"),
    (r"-\frac{1}{2}", "-0.5"), (r"\sqrt{2}^2", "2"), ("2^{1/2}", r"\sqrt{2}"),
    (r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt2}{2}"),
    (r"x \in [2, 5)", "[2,5)"), (r"2 \text{ and } 3", "3, 2"), (r"(-\infty, 0]", r"(-\infty,0]"),
])
def test_math_equivalent_but_differently_written_answers_are_equal(pred, gt):
    assert math_equal(pred, gt)
    assert score("math", f"so \\boxed{{{pred}}}", gt) == Score(1.0, "correct")


@pytest.mark.parametrize("pred,gt", [
    ("(1,2)", "[1,2]"),                  # card §8.1: brackets must match
    ("50.00001", "50"),                  # exact: no 1e-4 tolerance (deviation)
    ("0.5", "50"), ("5000", "50"),       # the released percentage quirk is dropped (deviation)
    ("6.28", r"2\pi"), ("0.333", "1/3"), ("3", "4"), ("x+1", "x-1"), ("(0,1)", "[0,1]"), ("1,2", "1,2,3"),
    (r"(-\infty, 0]", r"(-\infty, 0)"),
    ("\u0663", "3"), ("\u00b2", "2"), ("\uff13", "3"),   # unicode digits are not numbers
])
def test_math_wrong_answers_score_zero(pred, gt):
    assert not math_equal(pred, gt)
    assert score("math", f"\\boxed{{{pred}}}", gt).value == 0.0


def test_math_card_oracles_last_box_and_think_split():
    assert score("math", r"\boxed{1} ... \boxed{2}", "2").value == 1.0            # the last box wins
    assert score("math", r"<think>\boxed{2}</think> \boxed{3}", "2").value == 0.0  # only after </think>
    assert score("math", "the answer is 2", "2") == Score(0.0, "no_boxed")


def test_math_spoofed_box_inside_code_does_not_count():
    resp = "The answer is \\boxed{3}.\n```python\nprint('\\\\boxed{5}')\n```\nand `\\boxed{5}`"
    assert score("math", resp, "3").value == 1.0
    assert score("math", resp, "5").value == 0.0


def test_math_adversarial_inputs_are_bounded_and_never_raise():
    cases = [r"\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}", r"\boxed{10^{10^{10^{10}}}}",
             r"\boxed{1e99999999}", r"\boxed{" + "9" * 100_000 + "}", r"\boxed{(x+1)^{64}}",
             r"\boxed{\frac{1}{0}}", r"\boxed{\sqrt{-1}}", "\\boxed{" * 300_000, "}" * 1_000_000 + r"\boxed{1}",
             r"\boxed{" + "x" * 1_000_000 + "}", r"\boxed{2^{64}^{64}^{64}}", r"\boxed{\sqrt{999999999999999}}"]
    for resp in cases:
        s = score("math", resp, "1")
        assert 0.0 <= s.value <= 1.0 and not s.reason.startswith("scorer_error"), (resp[:40], s)
    assert score("math", "}" * 1000 + r"\boxed{1}", "1").value == 1.0


def test_bad_arguments_raise_named_errors():
    with pytest.raises(ValueError, match="domain"):
        score("poetry", "x", "y")
    with pytest.raises(TypeError, match="response"):
        score("math", None, "1")
    with pytest.raises(ValueError, match="ground_truth"):
        score("math", r"\boxed{1}", ["1"])


# ------------------------------------------------------------------------------------------------- code ----

FENCE = "```"
ADD_GT = {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]}


def code(src: str, lang: str = "python") -> str:
    return f"Let me write it.\n{FENCE}{lang}\n{src}\n{FENCE}\nDone."


def test_fuzzy_equal_matches_the_card_rules():
    assert gr.fuzzy_equal("1.0000001\n", "1")                     # card §8.2: within 1e-6
    assert not gr.fuzzy_equal("1.001\n", "1")
    assert gr.fuzzy_equal("YES", "yes") and gr.fuzzy_equal("a b\r\n", "a b")
    assert not gr.fuzzy_equal("3\n4\n", "3")                       # an extra line
    assert not gr.fuzzy_equal("nan", "0") and not gr.fuzzy_equal("inf", "1e309")   # non-finite never match


def test_code_stdin_stdout_cases_correct_equivalent_wrong_malformed():
    assert score("code", code("a, b = map(int, input().split())\nprint(a + b)"), ADD_GT) == Score(1.0, "passed")
    # differently written, prints floats within 1e-6 and reads stdin another way
    alt = "import sys\nx = [int(t) for t in sys.stdin.read().split()]\nprint(sum(x) + 1e-7)"
    assert score("code", code(alt, lang=""), ADD_GT).value == 1.0
    assert score("code", code("a, b = map(int, input().split())\nprint(a * b)"), ADD_GT).value == 0.0
    # one failing case out of N gives 0 (card §8.2)
    one_off = "a, b = map(int, input().split())\nprint(a + b if a == 1 else 0)"
    assert score("code", code(one_off), ADD_GT).reason == "case 1: wrong_output"
    assert score("code", "no code at all", ADD_GT) == Score(0.0, "no_code")
    assert score("code", code("def broken(:\n  pass"), ADD_GT).value == 0.0
    assert score("code", code("print(3)", lang="cpp"), ADD_GT) == Score(0.0, "no_code")


def test_code_functional_tests_and_think_split():
    gt = {"functional": "assert f(2) == 4\nassert f(-1) == -2"}
    assert score("code", code("def f(x):\n    return 2 * x"), gt).value == 1.0
    assert score("code", code("def f(x):\n    return x + 2"), gt).value == 0.0
    # only code after </think> counts
    resp = f"<think>{FENCE}python\ndef f(x):\n    return 2 * x\n{FENCE}</think>no code"
    assert score("code", resp, gt) == Score(0.0, "no_code")


def test_code_spoofed_box_or_fence_in_strings_does_not_help():
    # a fenced block inside a python string is still only code; the answer printed is wrong
    src = 's = "```python\\nprint(3)\\n```"\nprint(0)'
    assert score("code", code(src), {"inputs": ["1 2\n"], "outputs": ["3\n"]}).value == 0.0


# ---------------------------------------------------------------------------------------------- sandbox ----

needs_bwrap = pytest.mark.skipif(gr._bwrap_path() is None, reason="bubblewrap (bwrap) is not installed/usable")
ROOT = os.geteuid() == 0
MODES = [pytest.param("bwrap", marks=needs_bwrap), "limits"]
TIMEOUT = 1.0


def _run_attack(src, mode, monkeypatch, gt=None):
    monkeypatch.setattr(gr, "SANDBOX_MODE", mode)
    monkeypatch.setattr(gr, "CODE_CASE_TIMEOUT_S", TIMEOUT)
    s = score("code", code(src), gt or {"inputs": ["\n"], "outputs": ["42\n"]})
    assert s.value == 0.0, s
    return s


def _sandbox_processes():
    """Live processes running under a sandbox uid (not zombies, Z, nor already dead ones being reaped, X)."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                st = open(f"/proc/{pid}/status").read()
            except OSError:
                continue
            uid = int(st.split("Uid:")[1].split()[0])
            state = st.split("State:")[1].split()[0]
            if gr._SANDBOX_UID_BASE <= uid < gr._SANDBOX_UID_BASE + gr._SANDBOX_UID_COUNT and state not in "ZX":
                out.append(pid)
    return out


def test_sandbox_runs_code_with_stdin_and_reports_mode():
    r = gr.run_sandboxed("print(input()[::-1])", stdin="abc\n", timeout_s=2)
    assert r.ok and r.stdout == "cba\n" and r.mode in ("bwrap", "limits")
    with pytest.raises(ValueError, match="timeout_s"):
        gr.run_sandboxed("print(1)", timeout_s=0)
    with pytest.raises(ValueError, match="memory_mb"):
        gr.run_sandboxed("print(1)", memory_mb=1)
    with pytest.raises(TypeError, match="code"):
        gr.run_sandboxed(b"print(1)")


@pytest.mark.parametrize("mode", MODES)
def test_sandbox_infinite_loop_is_killed_within_timeout(mode, monkeypatch):
    assert _run_attack("while True:\n    pass", mode, monkeypatch).reason == "case 0: timeout"


@pytest.mark.parametrize("mode", MODES)
def test_sandbox_memory_bomb_is_contained(mode, monkeypatch):
    _run_attack("x = []\nwhile True:\n    x.append(bytearray(50 << 20))", mode, monkeypatch)


@pytest.mark.parametrize("mode", MODES)
def test_sandbox_fork_bomb_is_contained_and_leaves_nothing(mode, monkeypatch):
    if mode == "limits" and not ROOT:
        pytest.skip("limits mode as a non-root user shares the user's process count; fork bomb unsafe to run")
    _run_attack("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
                mode, monkeypatch)
    if ROOT:
        assert _sandbox_processes() == []


@pytest.mark.parametrize("mode", MODES)
def test_sandbox_100mb_output_is_capped(mode, monkeypatch):
    s = _run_attack("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20))", mode, monkeypatch)
    assert s.reason == "case 0: output_limit"
    r = gr.run_sandboxed("import sys\nsys.stdout.write('y' * (100 << 20))", timeout_s=5, mode=mode)
    assert r.output_limited and len(r.stdout) == 1 << 20


@pytest.mark.parametrize("mode", [pytest.param("bwrap", marks=needs_bwrap),
                                  pytest.param("limits", marks=pytest.mark.skipif(
                                      not ROOT, reason="limits mode blocks writes only via the dropped uid (root)"))])
def test_sandbox_cannot_write_outside_its_working_directory(mode, monkeypatch):
    target = os.path.join(os.getcwd(), f"guru_sandbox_escape_{os.getpid()}.txt")
    _run_attack(f"open({target!r}, 'w').write('pwned')\nprint(42)", mode, monkeypatch)
    assert not os.path.exists(target)
    # writing inside the working directory works and is gone afterwards
    r = gr.run_sandboxed("import os\nopen('f.txt', 'w').write('ok')\nprint(os.getcwd())", mode=mode)
    assert r.ok and not os.path.exists(os.path.join(r.stdout.strip(), "f.txt"))


@pytest.mark.parametrize("mode", [pytest.param("bwrap", marks=needs_bwrap),
                                  pytest.param("limits", marks=pytest.mark.skipif(
                                      not ROOT, reason="limits mode hides /proc/<ppid>/environ only via the uid"))])
def test_sandbox_cannot_read_the_parents_environment(mode, monkeypatch):
    monkeypatch.setenv("GURU_TEST_SECRET", "s3cr3t-token")
    src = ("import os\nfound = os.environ.get('GURU_TEST_SECRET', '')\n"
           f"for pid in ({os.getpid()}, os.getppid()):\n"
           "    try:\n        found += open(f'/proc/{pid}/environ').read()\n    except OSError:\n        pass\n"
           "print('s3cr3t-token' if 's3cr3t-token' in found else 'nothing')")
    _run_attack(src, mode, monkeypatch, gt={"inputs": [""], "outputs": ["s3cr3t-token"]})
    r = gr.run_sandboxed("import os\nprint(sorted(os.environ))", mode=mode)
    assert "GURU_TEST_SECRET" not in r.stdout and r.ok


@pytest.mark.parametrize("mode", [pytest.param("bwrap", marks=needs_bwrap),
                                  pytest.param("limits", marks=pytest.mark.skipif(
                                      not ROOT, reason="limits mode blocks signals to the parent only via the uid"))])
def test_sandbox_cannot_kill_the_parent(mode, monkeypatch):
    me = os.getpid()
    _run_attack(f"import os, signal\nos.kill({me}, signal.SIGKILL)\nos.kill(os.getppid(), signal.SIGKILL)\n"
                "print(42)", mode, monkeypatch)
    assert os.getpid() == me                              # still alive (otherwise this line never runs)


@pytest.mark.parametrize("mode", MODES)
def test_sandbox_leaves_no_subprocess_running(mode, monkeypatch):
    if not ROOT:
        pytest.skip("checked through the sandbox uid, which exists only when the tests run as root")
    marker = f"guru_leftover_{os.getpid()}"
    src = ("import subprocess, sys\n"
           f"subprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); time.sleep(30)', '{marker}'],\n"
           "                 start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
           "print('bye')")
    _run_attack(src, mode, monkeypatch)
    time.sleep(0.1)
    left = [p for p in os.listdir("/proc") if p.isdigit() and _cmdline_has(p, marker)]
    assert left == [] and _sandbox_processes() == []


def _cmdline_has(pid, marker):
    try:
        return marker in open(f"/proc/{pid}/cmdline").read() and \
            open(f"/proc/{pid}/status").read().split("State:")[1].split()[0] != "Z"
    except OSError:
        return False


@needs_bwrap
def test_sandbox_has_no_network_in_bwrap_mode():
    r = gr.run_sandboxed("import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n"
                         "    print('net')\nexcept OSError as e:\n    print('no-net')", mode="bwrap", timeout_s=3)
    assert r.stdout.strip() == "no-net"


# -------------------------------------------------------------------------------------------- science ----

@pytest.mark.parametrize("resp,gt,want", [
    (r"so \boxed{B}", "B", 1), (r"\boxed{(b)}", "B", 1), (r"\boxed{\text{C. Paris}}", "(C)", 1),
    ("Thus the answer is (D).", "D", 1), (r"\boxed{A}", "B", 0), ("no letter", "B", 0),
    (r"\boxed{9.81\ \text{m/s}^2}", "9.8 m/s^2", 1), (r"\boxed{3 \times 10^{8}\,\mathrm{m/s}}", "3e8 m/s", 1),
    (r"\boxed{9.8 km}", "9.8 m", 0), (r"\boxed{12}", "9.8", 0), (r"\boxed{The Mitochondria.}", "mitochondria", 1),
    (r"\boxed{ribosome}", "mitochondria", 0), (r"\boxed{\frac{1}{2}}", "0.5", 1), ("0.5", "0.5", 0),
    (r"\boxed{A and B}", "A", 0), (r"\boxed{A, B}", "B", 0), (r"\boxed{Apple}", "A", 0), (r"\boxed{(B) 42}", "B", 1),
])
def test_science_choices_and_short_answers(resp, gt, want):
    assert score("science", resp, gt).value == want


# ---------------------------------------------------------------------------------------------- logic ----

ZEBRA = {"header": ["House", "Name", "Pet", "Drink"],
         "rows": [["1", "Ann", "cat", "tea"], ["2", "Bob", "dog", "milk"], ["3", "Cy", "fish", "water"]]}


def _zebra_answer(rows):
    import json
    return "<answer>" + json.dumps({"header": ZEBRA["header"], "rows": rows}) + "</answer>"


def test_zebra_fraction_of_cells_and_single_line_rule():
    rows = [r[:] for r in ZEBRA["rows"]]
    assert score("logic", _zebra_answer(rows), ZEBRA) == Score(1.0, "correct")
    rows[2][1:] = ["x", "y", "z"]                          # 9/12 cells right (card §8.3)
    assert score("logic", _zebra_answer(rows), ZEBRA).value == 0.75
    assert score("logic", _zebra_answer(rows).replace("<answer>", "<answer>\n"), ZEBRA).value == 0.0
    assert score("logic", "<answer>[1, 2, 3]</answer>", ZEBRA).value == 0.0          # not a dict
    assert score("logic", _zebra_answer(ZEBRA["rows"][:2]), ZEBRA).reason == "missing_cells"
    # python-literal form is read with ast.literal_eval (literals only)
    assert score("logic", "<answer>" + repr(ZEBRA) + "</answer>", {"type": "zebra", "answer": ZEBRA}).value == 1


def test_ordering_graph_and_arc():
    order = {"type": "ordering", "answer": ["robin", "owl", "crow"]}
    assert score("logic", "<answer>['Robin', 'owl', 'crow ']</answer>", order).value == 1.0
    assert score("logic", "<answer>[robin, crow, owl]</answer>", order).value == 0.0
    assert score("logic", "<answer>__import__('os').system('echo hi')</answer>", order).value == 0.0
    assert score("logic", "<answer>AbD</answer>", "abd").value == 1.0
    assert score("logic", "<answer>ABE</answer>", "abd").value == 0.0
    assert score("logic", "<answer>A B</answer>", "ab").reason == "unparsable"
    grid = [[1, 2], [3, 4]]
    assert score("logic", "<answer>\n[[1, 2],\n [3, 4]]\n</answer>", grid).value == 1.0
    assert score("logic", "<answer>[[1, 2], [3, 5]]</answer>", grid).value == 0.0
    assert score("logic", "<answer>[[1, 2], [3, 4], [5, 6]]</answer>", grid).value == 0.0
    assert score("logic", "<answer>no grid</answer>", grid).value == 0.0
    with pytest.raises(ValueError, match="ground_truth"):
        score("logic", "<answer>a</answer>", {"type": "sudoku"})


# ----------------------------------------------------------------------------------------- simulation ----

@pytest.mark.parametrize("resp,gt,want", [
    ('```json\n{"output": "true"}\n```', '"output": true', 1),                    # card §8.6
    ('```json\n{"output": "[1, 2]"}\n```', '"output": [1, 2]', 1),
    ('{"output": {"a": [1, 2.0]}}', '"output": {"a": [1, 2]}', 1),
    ('blah {"input": {"n": 3}} and more text', '"input": {"n": 3}', 1),
    ('```json\n{"output": 1}\n```', '"output": true', 0),                          # True == 1 must not score
    ('```json\n{"output": [2, 1]}\n```', '"output": [1, 2]', 0),
    ('```json\n{"output": \n```', '"output": 1', 0), ("[" * 100_000, '"output": 1', 0),
])
def test_simulation_normalized_json(resp, gt, want):
    assert score("simulation", resp, gt).value == want


# ---------------------------------------------------------------------------------------------- tabular ----

@pytest.mark.parametrize("resp,gt,want", [
    (r"\boxed{b|a}", "a|b", 1), (r"\boxed{50\%}", "0.5", 1), (r"\boxed{50%}", "50", 1),
    (r"\boxed{1,234.5}", "1234.5004", 1), (r"\boxed{\$1,000}", "1000", 1), (r"\boxed{12.5 | 7}", "7|12.5", 1),
    (r"\boxed{0.5}", "50", 0), (r"\boxed{1234}", "1240", 0), (r"\boxed{a}", "a|b", 0),
    (r"\boxed{print('hi')}", "hi", 0), (r"\boxed{__import__('os').getpid()}", "1", 0),
    (r"\boxed{\text{United States}}", "united states", 1), ("42", "42", 1),
])
def test_tabular_sets_tolerance_percent_and_no_eval(resp, gt, want):
    assert score("tabular", resp, gt).value == want


# ---------------------------------------------------------------------------------------- data pipeline ----

def _texts(n, seed=0, words=30):
    rng = random.Random(seed)
    vocab = ["".join(rng.choice(string.ascii_lowercase) for _ in range(6)) for _ in range(400)]
    return [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(n)]


def test_dedup_catches_exact_and_near_duplicates_and_keeps_distinct_items():
    base = _texts(200)
    exact = ["  " + base[3].upper() + " ", base[7].replace(" ", "\n")]          # same after normalization
    near = [base[10].replace(base[10].split()[5], "zzzzzz", 1), base[20] + " extra"]
    keep = gr.dedup(base + exact + near)
    assert keep == list(range(200))
    assert gr.dedup(["What is 2+2?", "What is 2+3?", "Compute the integral of x."], threshold=0.95) == [0, 1, 2]
    assert gr.dedup([]) == []
    with pytest.raises(ValueError, match="threshold"):
        gr.dedup(base, threshold=0)


def test_decontaminate_drops_train_items_that_match_eval():
    train = _texts(50, seed=1)
    ev = [train[4].upper(), train[9] + "!"] + _texts(10, seed=2)
    assert gr.decontaminate(train, ev) == [i for i in range(50) if i not in (4, 9)]


def test_difficulty_filter_keeps_exactly_the_items_strictly_inside():
    items = list("abcdefg")
    rates = [0.0, 0.1, 0.1000001, 0.5, 0.8999999, 0.9, 1.0]
    assert gr.difficulty_filter(items, rates, low=0.1, high=0.9) == ["c", "d", "e"]
    k16 = [[1] * 15 + [0], [1] + [0] * 15, [0] * 16, [1] * 8 + [0] * 8]      # pass rates 15/16, 1/16, 0, 1/2
    assert gr.difficulty_filter(["easy", "hard", "impossible", "medium"], k16, 0.0, 0.9) == ["hard", "medium"]
    with pytest.raises(ValueError, match="same length"):
        gr.difficulty_filter(items, rates[:3])
    with pytest.raises(ValueError, match="low"):
        gr.difficulty_filter(items, rates, 0.9, 0.1)
    with pytest.raises(ValueError, match="pass_rates"):
        gr.difficulty_filter(["a"], [1.5])


# -------------------------------------------------------------------------------------------------- fuzz ----

ALPHABET = string.printable + "\\{}<>[]|`" * 5 + "٣²３π√∞−…" + "\\boxed{" + "</think>" + "<answer>"


def _fuzz_strings(n, seed):
    rng = random.Random(seed)
    pieces = [r"\boxed{", "}", "{", "</think>", "<answer>", "</answer>", "```json\n", "```", r"\frac", "^", "%",
              "|", "[[", "]]", '{"output": ', "1e999", "0/0", r"\sqrt{", "(", ")", ",", "=", "π", "٣"]
    out = []
    for _ in range(n):
        parts = [rng.choice(pieces) if rng.random() < 0.4 else "".join(rng.choices(ALPHABET, k=rng.randint(0, 8)))
                 for _ in range(rng.randint(0, 12))]
        out.append("".join(parts))
    return out


def _delegated_fuzz_cases():
    """Prolog / PDDL ground truths for the fuzz test, when proto_verify is in the checkout."""
    cases = []
    try:
        import proto_verify
        if hasattr(proto_verify, "prolog_reward"):
            cases.append(("logic", {"type": "prolog", "answer": ["a", "b"], "compare": "set"}))
    except ImportError:
        pass
    try:
        import proto_verify as pv
        gen = pv.generate_pddl_task
    except (ImportError, AttributeError):
        gen = None
    if gen is not None:
        t = gen(0, kind="blocksworld", difficulty=1)
        cases.append(("logic", {"type": "pddl", "domain": t.domain, "problem": t.problem}))
    return cases


@pytest.mark.parametrize("domain,gt", [
    ("math", r"\frac{1}{2}"), ("science", "B"), ("science", "9.8 m/s^2"), ("tabular", "12|0.5"),
    ("simulation", '"output": [1, true]'), ("logic", ZEBRA), ("logic", ["a", "b"]), ("logic", "abd"),
    ("logic", [[1, 2]]), ("code", ADD_GT),
] + _delegated_fuzz_cases())
def test_fuzz_10000_random_strings_never_raise_and_stay_in_unit_interval(domain, gt, monkeypatch):
    calls = []

    def fake_sandbox(code, stdin="", timeout_s=2.0, **kw):      # keep the fuzz fast: count, don't spawn
        calls.append(code)
        return gr.SandboxResult(1, "", "", False, False, 0.0, "fake")

    monkeypatch.setattr(gr, "run_sandboxed", fake_sandbox)
    strings = _fuzz_strings(10_000, seed=hash(domain) % 1000)
    n_fenced = sum(gr.extract_code(s) is not None for s in strings)
    delegated = isinstance(gt, dict) and gt.get("type") in ("prolog", "pddl")
    for s in strings:
        v = score(domain, s, gt)
        assert 0.0 <= v.value <= 1.0, (s, v)
        # our own scorers have no bugs the fuzz finds; a delegated verifier's bug is caught and labelled
        assert delegated or not v.reason.startswith("scorer_error"), (s, v)
    if domain == "code":
        assert len(calls) == n_fenced < 10_000          # only strings with a fenced block reach the sandbox


# ---------------------------------------------------------------------------------- bounds and robustness ----

def test_last_answer_tag_matches_the_released_regex_semantics():
    import re
    one_line, dotall = re.compile(r"<answer>(.*?)</answer>"), re.compile(r"<answer>(.*?)</answer>", re.S)

    def last(rx, t):
        ms = list(rx.finditer(t))
        return ms[-1].group(1) if ms else None

    rng = random.Random(0)
    for _ in range(5000):
        t = "".join(rng.choice(["<answer>", "</answer>", "\n", "a", " "]) for _ in range(rng.randint(0, 12)))
        assert gr._last_answer(t, True) == last(one_line, t), t
        assert gr._last_answer(t, False) == last(dotall, t), t


# Patterns that may be given a long (unbounded) string, and why each is linear: a new or changed pattern that
# sees long input fails test_rewards_do_linear_work_... until it is reviewed and listed here.
REVIEWED_LINEAR = {
    gr._FENCE_RE.pattern: "tries only at ```; the header stops at the first newline or backtick, the body at the "
                          "next ```, which is also the only place a later try could start",
    gr._INLINE_CODE_RE.pattern: "tries only at a backtick; stops at the next backtick or newline",
    gr._CODE_BLOCK_RE.pattern: "as _FENCE_RE; the tag is optional as a whole, so the two blank runs never compete",
    gr._JSON_BLOCK_RE.pattern: "as _CODE_BLOCK_RE",
    gr._TEXT_CMD_RE.pattern: "tries only at a backslash; its blank run and [^{}]* stop at the next brace",
    gr._TAG_RE.pattern: "literal tags", "\n": "literal",
    r"[^\w\s/^.+-]|(?<!\d)\.|\.(?!\d)": "one character per try", r"\b(a|an|the)\b": "a bounded word per try",
    r"\[([^\[\]]*)\]": "tries only at [, stops at the next bracket", r"[\w ]+": "one run per match",
    r"[A-Za-z]+": "a single run", r"[0-9]": "one character",
}

N = 200_000
ADVERSARIAL = {
    "open_answer_tags": "<answer>" * (N // 8), "closing_tags": "<answer>\n" + "</answer>" * (N // 9),
    "open_boxes": "\\boxed{" * (N // 7), "braces": "{" * N, "json_fences": "```json\n" * (N // 8),
    "backticks": "`" * N, "text_commands": "\\text{" * (N // 6), "digits": "9" * N, "brackets": "[" * N,
    "pipes": "|" * N + "\\boxed{7|8}", "boxed_pipes": "\\boxed{" + "1|" * (N // 2) + "}",
    "unicode_digits": "\u0663" * N, "bracket_answer": "<answer>" + "[" * N + "</answer>",
    "answer_is": "answer is " * (N // 10), "python_fences": "```python\n" * (N // 10),
    "blank_fence_header": "```" + " " * N + "x", "blank_json_header": "```json" + " \t" * (N // 2) + "x",
    "blank_text_command": "\\text" + " " * N, "boxed_blanks": "\\boxed{" + "1 " * (N // 2) + "}",
    "boxed_fractions": "\\boxed{" + "\\frac{1}{2}" * (N // 11) + "}", "think_tags": "</think>" * (N // 8),
    "boxed_thousands": "\\boxed{" + "1,000" * (N // 5) + "}", "json_nesting": "```json\n" + "[" * N + "\n```",
    "answer_blanks": "<answer>" + " " * N + "</answer>", "code_fence_unclosed": "```python\n" + "x" * N,
}


@pytest.mark.parametrize("domain,gt", [
    ("math", "1"), ("science", "1.5 m"), ("science", "B"), ("tabular", "1|2"), ("simulation", '"output": 1'),
    ("logic", ZEBRA), ("logic", [[1]]), ("logic", {"type": "ordering", "answer": ["a"]}),
    ("logic", {"type": "graph", "answer": "A"}), ("code", ADD_GT), ("code", {"functional": "assert f(1) == 2"})])
def test_rewards_do_linear_work_on_200k_char_adversarial_inputs(domain, gt, monkeypatch):
    """Work (Python lines + characters given to the regex engine) stays below 20 per input character on every
    adversarial shape of 200k characters, and every regex that sees a long string is a reviewed linear one.
    (Prolog/PDDL items are verified by proto_verify, whose parsers are tested in its own files.)"""
    monkeypatch.setattr(gr, "run_sandboxed", lambda *a, **kw: gr.SandboxResult(1, "", "", False, False, 0.0, "fake"))
    work = Work(monkeypatch)
    for name, resp in ADVERSARIAL.items():
        w = work.count(score, domain, resp, gt)
        s = work.result
        assert s.value == 0.0 and not s.reason.startswith("scorer_error"), (name, s)
        assert w <= 20 * len(resp), (name, w / len(resp))
    long_ones = {p for p, n in work.longest.items() if n > 10_000}
    assert long_ones <= set(REVIEWED_LINEAR), long_ones - set(REVIEWED_LINEAR)


def test_fence_headers_with_long_blank_runs_match_like_before_without_competing_blank_runs():
    """The fence patterns had two [ \\t]* runs around an optional tag (O(n^2) backtracking on a header of n
    blanks: 0.41 s CPU at 20k, ~40 s at 200k); now the tag is optional as a whole. Same matches as before."""
    old_code = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)\n?```", re.S)
    old_json = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n(.*?)```", re.S)
    for pattern in (gr._CODE_BLOCK_RE.pattern, gr._JSON_BLOCK_RE.pattern):
        assert not re.search(r"\[ \\t\]\*(\(\?:json\|JSON\)\?|\([^()]*\)\*)\[ \\t\]\*", pattern), pattern
    rng = random.Random(7)
    toks = ["```", "`", "\n", " ", "\t", "json", "JSON", "python", "py", "x", "!", "```json\n", "```python\n"]
    for _ in range(20_000):
        t = "".join(rng.choice(toks) for _ in range(rng.randint(0, 14)))
        assert [((m.group(1) or ""), m.group(2), m.span()) for m in gr._CODE_BLOCK_RE.finditer(t)] == \
            [(m.group(1), m.group(2), m.span()) for m in old_code.finditer(t)], t
        a, b = gr._JSON_BLOCK_RE.search(t), old_json.search(t)
        assert (a and (a.group(1), a.span())) == (b and (b.group(1), b.span())), t


@pytest.mark.parametrize("domain,resp,gt", [
    ("tabular", "\\boxed{\u0663}", "3"), ("tabular", "\\boxed{\uff13}", "3"), ("science", "\\boxed{\u0663 m}", "3 m"),
    ("math", "\\boxed{\uff11/2}", "1/2"), ("science", "\\boxed{\u00b3}", "3"), ("math", "\\boxed{x\u00b2}", "x^2"),
])
def test_unicode_digits_are_not_numbers(domain, resp, gt):
    assert score(domain, resp, gt).value == 0.0


def test_scores_are_correct_from_worker_threads_and_processes():
    """Card §3/§8.8: SIGALRM-based timeouts break in threads; ours use none, so threads and processes agree."""
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
    cases = [("math", r"\boxed{\frac12}", "0.5"), ("logic", _zebra_answer(ZEBRA["rows"]), ZEBRA),
             ("tabular", r"\boxed{b|a}", "a|b"), ("simulation", '{"output": 1}', '"output": 1'),
             ("code", code("print(int(input()) * 2)"), {"inputs": ["21\n"], "outputs": ["42\n"]})]
    with ThreadPoolExecutor(4) as ex:
        thread_vals = list(ex.map(lambda c: score(*c).value, cases))
    with ProcessPoolExecutor(2) as ex:
        proc_vals = list(ex.map(_score_tuple, cases))
    assert thread_vals == proc_vals == [1.0] * len(cases)


def _score_tuple(c):
    return score(*c).value


@pytest.mark.skipif(not ROOT, reason="the uid drop exists only when the parent runs as root")
@pytest.mark.parametrize("mode,setpriv", [pytest.param("bwrap", True, marks=needs_bwrap),
                                          pytest.param("bwrap", False, marks=needs_bwrap), ("limits", True)])
def test_sandbox_child_runs_as_an_unprivileged_uid(mode, setpriv, monkeypatch):
    if not setpriv:                                       # force the python bootstrap used when setpriv is missing
        monkeypatch.setitem(gr._probe_cache, "setpriv", None)
    src = ("import os\nst = open('/proc/self/status').read()\n"
           "print(os.getuid(), st.split('NoNewPrivs:')[1].split()[0], st.split('CapEff:')[1].split()[0])")
    r = gr.run_sandboxed(src, mode=mode)
    uid, nnp, cap_eff = r.stdout.split()
    assert gr._SANDBOX_UID_BASE <= int(uid) < gr._SANDBOX_UID_BASE + gr._SANDBOX_UID_COUNT
    assert nnp == "1" and int(cap_eff, 16) == 0
    bomb = gr.run_sandboxed("import os\nwhile True:\n    os.fork()", mode=mode, timeout_s=TIMEOUT)
    assert not bomb.ok and "Resource temporarily unavailable" in bomb.stderr


# ------------------------------------------------------------------------------ logic: delegated verifiers ----

def _pddl_module():
    """proto_verify, which holds the PDDL validator (None only in a checkout without it)."""
    try:
        import proto_verify
        return proto_verify if hasattr(proto_verify, "generate_pddl_task") else None
    except ImportError:
        return None


@pytest.mark.skipif(_pddl_module() is None, reason="proto_verify.py (PDDL half) is not present")
def test_pddl_items_are_delegated_to_validate_plan():
    task = _pddl_module().generate_pddl_task(3, kind="blocksworld", difficulty=2)
    gt = {"type": "pddl", "domain": task.domain, "problem": task.problem}
    assert score("logic", f"<think>hmm</think><answer>\n{task.answer}\n</answer>", gt) == Score(1.0, "correct")
    assert score("logic", task.answer, gt).value == 1.0                            # bare plan, no tags
    assert score("logic", "\n".join(task.answer.split("\n")[:-1]), gt).value == 0.0  # last step missing
    assert score("logic", "<answer>(fly-to the-moon)</answer>", gt).reason == "invalid_plan: unknown_action"
    assert score("logic", "<answer>((((</answer>", gt).value == 0.0


# ----------------------------------------------------------------------------------------------- router ----

def test_scorer_errors_are_reported_apart_from_wrong_answers_and_a_domain_is_one_function(monkeypatch):
    def buggy(response, ground_truth):
        return {}["missing"]

    monkeypatch.setitem(gr.SCORERS, "buggy", buggy)
    monkeypatch.setitem(gr.SCORERS, "nan", lambda r, g: Score(float("nan"), "oops"))
    monkeypatch.setitem(gr.SCORERS, "echo", lambda r, g: Score(float(r == g), "echo"))   # a new domain
    before = gr.SCORER_ERRORS["buggy"]
    s = score("buggy", "anything", "gt")
    assert s.value == 0.0 and s.reason.startswith("scorer_error: KeyError")
    assert gr.SCORER_ERRORS["buggy"] == before + 1
    assert score("nan", "x", "y").reason.startswith("scorer_error")
    assert score("echo", "hi", "hi") == Score(1.0, "echo")
    assert score("math", r"\boxed{2}", "3").reason == "wrong"                   # a wrong answer is not an error


def test_concurrent_sandboxes_from_threads_are_independent():
    from concurrent.futures import ThreadPoolExecutor
    src = "import os, sys\nprint(sys.stdin.read().strip(), os.getuid())"
    with ThreadPoolExecutor(6) as ex:
        rs = list(ex.map(lambda i: gr.run_sandboxed(src, stdin=str(i), timeout_s=5), range(6)))
    assert all(r.ok for r in rs), [r.stderr for r in rs]
    assert [r.stdout.split()[0] for r in rs] == [str(i) for i in range(6)]
    if ROOT:
        assert len({r.stdout.split()[1] for r in rs}) == 6            # a distinct uid per concurrent run


def _rand_expr(rng, depth):
    """(latex, plain, float) of a random expression over ints, pi, sqrt and + - * /."""
    r = rng.random()
    if depth == 0 or r < 0.3:
        k = rng.random()
        if k < 0.6:
            n = rng.randint(-20, 20)
            return str(n), str(n), float(n)
        if k < 0.8:
            return r"\pi", "pi", math.pi
        n = rng.randint(0, 50)
        return rf"\sqrt{{{n}}}", f"sqrt({n})", math.sqrt(n)
    (la, pa, fa), (lb, pb, fb) = _rand_expr(rng, depth - 1), _rand_expr(rng, depth - 1)
    op = rng.choice("+-*/")
    if op == "/":
        return rf"\frac{{{la}}}{{{lb}}}", f"({pa})/({pb})", fa / fb if fb else float("nan")
    f = {"+": fa + fb, "-": fa - fb, "*": fa * fb}[op]
    lop = {"+": "+", "-": "-", "*": r"\cdot"}[op]
    return f"({la}){lop}({lb})", f"({pa}){op}({pb})", f


def test_exact_parser_agrees_with_float_evaluation_on_random_expressions():
    rng = random.Random(0)
    parsed = 0
    for _ in range(800):
        latex, plain, f = _rand_expr(rng, 3)
        v = gr._value(gr._normalize_math(latex))
        if v is None or math.isnan(f):
            continue
        parsed += 1
        assert v == gr._value(gr._normalize_math(plain)), (latex, plain)          # two spellings, one value
        assert math.isclose(gr._const_float(v), f, rel_tol=1e-9, abs_tol=1e-9), (latex, f)
        assert math_equal(latex, plain)
        other = f"({plain})+1"
        assert not math_equal(latex, other)
    assert parsed > 600                                  # most random expressions are read exactly


def _prolog_available():
    try:
        import proto_verify
        return hasattr(proto_verify, "prolog_reward") and hasattr(proto_verify, "generate_prolog_task")
    except ImportError:
        return False


@pytest.mark.skipif(not _prolog_available(), reason="proto_verify (Prolog half with prolog_reward) not present")
def test_prolog_items_are_delegated_to_proto_verify():
    import json
    import proto_verify
    task = proto_verify.generate_prolog_task(1, kind="family", difficulty=2)
    gt = {"type": "prolog", "task": task}
    ref = json.loads(task.answer)
    assert score("logic", f"<think>[\"nobody\"]</think> {task.answer}", gt) == Score(1.0, "correct")
    assert score("logic", "<think>" + task.answer + "</think> no idea", gt).value == 0.0   # only after </think>
    assert score("logic", json.dumps(["zzz"]), gt).value == 0.0
    if task.compare == "set" and len(ref) > 1:
        assert score("logic", json.dumps(ref[::-1]), gt).value == 1.0                      # set: order-free
    by_answer = {"type": "prolog", "answer": ["a", "b"], "compare": "sequence"}
    assert score("logic", "[a, b]", by_answer).value == 1.0
    assert score("logic", "[b, a]", by_answer).value == 0.0
    with pytest.raises(ValueError, match="ground_truth"):
        score("logic", "[a]", {"type": "prolog"})


def test_no_scorer_evaluates_model_output(monkeypatch, tmp_path):
    """Card §3/§8.7: the released table scorer and ordering fallback eval() the model's string; ours parse."""
    import builtins
    canary = tmp_path / "evaluated"
    payload = f"__import__('pathlib').Path({str(canary)!r}).touch()"

    def forbidden(*a, **k):
        raise AssertionError("eval/exec called on model output")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    cases = [("math", rf"\boxed{{{payload}}}", "1"), ("tabular", rf"\boxed{{{payload}}}", "1"),
             ("science", rf"\boxed{{{payload}}}", "1 m"), ("simulation", payload, '"output": 1'),
             ("logic", f"<answer>{payload}</answer>", ["a"]), ("logic", f"<answer>{payload}</answer>", ZEBRA),
             ("logic", f"<answer>[{payload}]</answer>", ["a"]), ("logic", f"<answer>[[{payload}]]</answer>", [[1]])]
    for domain, resp, gt in cases:
        s = score(domain, resp, gt)
        assert s.value == 0.0 and not s.reason.startswith("scorer_error"), (domain, s)
    assert not canary.exists()


def test_code_score_is_bounded_by_the_total_budget(monkeypatch):
    monkeypatch.setattr(gr, "CODE_TOTAL_TIMEOUT_S", 1.5)
    gt = {"inputs": ["x\n"] * 20, "outputs": ["x\n"] * 20}
    runs = []
    real = gr.run_sandboxed
    monkeypatch.setattr(gr, "run_sandboxed", lambda *a, **kw: runs.append(kw["timeout_s"]) or real(*a, **kw))
    s = score("code", code("import time\ntime.sleep(0.3)\nprint(input())"), gt)
    assert s.value == 0.0 and "timeout" in s.reason
    assert len(runs) < 20 and max(runs) <= 1.5                   # stopped early; no run outlives the budget


def test_fuzzy_equal_does_not_read_unicode_digits_as_numbers():
    assert not gr.fuzzy_equal("\u0663", "3") and not gr.fuzzy_equal("\uff13.0", "3")


@pytest.mark.parametrize("exit_call", ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit"])
def test_functional_tests_cannot_be_skipped_by_exiting_early(exit_call):
    gt = {"functional": "assert f(2) == 4"}
    s = score("code", code("def f(x):\n    return 0\n" + exit_call), gt)
    assert s == Score(0.0, "tests_did_not_finish")
    assert score("code", code("def f(x):\n    return 4\nprint('chatty', end='')"), gt).value == 1.0


@needs_bwrap
def test_sandbox_cannot_read_the_project_directory_in_bwrap_mode():
    secret = os.path.join(os.getcwd(), "pytest.ini")          # any file of the repo the tests run in
    assert os.path.exists(secret)
    # The project directory is either covered by an empty tmpfs or, when it lives under /tmp (a CI clone), absent
    # altogether behind the sandbox's private /tmp: both ways its files cannot be read.
    cwd = os.getcwd()
    code = f"import os\nprint(os.path.exists({secret!r}), os.listdir({cwd!r}) if os.path.isdir({cwd!r}) else [])"
    r = gr.run_sandboxed(code, mode="bwrap")
    assert r.ok and r.stdout.split()[0] == "False" and "pytest.ini" not in r.stdout, r


def test_missing_bwrap_falls_back_to_limits_with_a_one_time_warning(monkeypatch):
    import warnings
    # a private probe cache without the bwrap entry; the real one is restored after the test
    monkeypatch.setattr(gr, "_probe_cache", {k: v for k, v in gr._probe_cache.items() if k != "bwrap"})
    monkeypatch.setattr(gr.shutil, "which", lambda name: None)
    monkeypatch.setattr(gr, "SANDBOX_MODE", None)
    with pytest.warns(RuntimeWarning, match="bubblewrap"):
        r1 = gr.run_sandboxed("print(1)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # a second warning would raise here
        r2 = gr.run_sandboxed("print(2)")
    assert (r1.mode, r1.stdout, r2.mode, r2.stdout) == ("limits", "1\n", "limits", "2\n")
    with pytest.raises(RuntimeError, match="bubblewrap"):
        gr.run_sandboxed("print(3)", mode="bwrap")


# ---------------------------------------------------------------------------- equivalence never lies (#18) ----

@pytest.mark.parametrize("domain", ["math", "science", "tabular"])
@pytest.mark.parametrize("pred,gt", [("1 1/2", "11/2"), ("2 1/3", "21/3"), ("-1 1/2", "-11/2"), ("12/3", "1 2/3"),
                                     (r"1\frac{1}{2}", "11/2")])
def test_mixed_numbers_are_not_merged_with_the_digits_after_them(domain, pred, gt):
    assert score(domain, f"\\boxed{{{pred}}}", gt).value == 0.0
    assert score(domain, f"\\boxed{{{gt}}}", pred).value == 0.0
    assert score(domain, f"\\boxed{{{pred}}}", pred).value == 1.0


@pytest.mark.parametrize("domain", ["math", "science", "tabular"])
@pytest.mark.parametrize("pred,gt", [("1e999", "1e500"), ("1e309", "5"), ("-1e999", "1e999"), ("1e400", "1e401"),
                                     (r"2\times10^{999}", r"3\times10^{999}"), ("1e-999", "0")])
def test_overflowing_numbers_are_not_equal_and_not_scorer_errors(domain, pred, gt):
    for a, b in ((pred, gt), (gt, pred)):
        s = score(domain, f"\\boxed{{{a}}}", b)
        assert s.value == 0.0 and not s.reason.startswith("scorer_error"), (domain, a, b, s)


@pytest.mark.parametrize("domain", ["science", "tabular"])
def test_tiny_unequal_numbers_are_not_equal_by_an_absolute_tolerance(domain):
    assert score(domain, r"\boxed{9.1e-31}", "1.67e-27").value == 0.0        # electron vs proton mass
    assert score(domain, r"\boxed{1.6e-19}", "1.6e-19").value == 1.0


def test_science_mixed_number_is_not_its_whole_part_with_a_unit():
    assert score("science", r"\boxed{2 1/3}", "2").value == 0.0                # was: 2 with the "unit" 1/3
    assert score("science", r"\boxed{2}", "2 1/3").value == 0.0
    assert score("science", r"\boxed{9.8 m/s^2}", "9.81").value == 1.0       # a real unit still may be omitted


def _rational_forms(q: Fraction, rng: random.Random, domain: str) -> list[str]:
    """Ways to write the exact rational q that `domain` promises to read (math/science: all of them)."""
    sign = "-" if q < 0 else ""
    a = abs(q)
    k = rng.randint(1, 4)                                   # unreduced fractions too
    forms = [f"{sign}{a.numerator * k}/{a.denominator * k}"]
    if domain != "tabular":
        forms.append(f"{sign}\\frac{{{a.numerator * k}}}{{{a.denominator * k}}}")
    if a.denominator == 1:
        forms.append(f"{sign}{a.numerator}")
    elif a > 1:                                             # mixed number w n/d
        w, r = divmod(a.numerator, a.denominator)
        forms.append(f"{sign}{w} {r}/{a.denominator}")
        if domain != "tabular":
            forms.append(f"{sign}{w}\\frac{{{r}}}{{{a.denominator}}}")
    d = a.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d == 1:                                              # a terminating decimal: plain and scientific
        e = 0
        while (a * 10 ** e).denominator != 1:
            e += 1
        digits = str(a.numerator * 10 ** e // a.denominator)
        if e:
            forms.append(f"{sign}{digits[:-e] or '0'}.{digits[-e:].rjust(e, '0')}")
        forms.append(f"{sign}{digits}e-{e}" if e else f"{sign}{digits}e0")
        if domain != "tabular":
            forms.append(f"{sign}{digits}\\times10^{{{-e}}}")
    return forms


def _random_rational(rng: random.Random) -> Fraction:
    kind = rng.random()
    if kind < 0.35:                                         # small fractions / mixed numbers
        q = Fraction(rng.randint(1, 60), rng.randint(1, 12))
    elif kind < 0.6:                                        # decimals
        q = Fraction(rng.randint(1, 10 ** 6), 10 ** rng.randint(0, 6))
    elif kind < 0.8:                                        # scientific, incl. far beyond float range (overflow)
        q = Fraction(rng.randint(1, 99)) * Fraction(10) ** rng.choice([rng.randint(-30, 30), rng.randint(300, 999),
                                                                          -rng.randint(300, 999)])
    else:                                                   # mixed-number vs digit-merge traps: w n/d vs wn/d
        q = Fraction(rng.randint(1, 9)) + Fraction(rng.randint(1, 9), rng.randint(2, 9))
    return -q if rng.random() < 0.2 else q


def _near(q: Fraction, rng: random.Random) -> Fraction:
    """A value unequal to q that a careless comparison could confuse with it."""
    a = abs(q)
    choices = [q * 10 ** rng.randint(1, 3), -q, q + 1, q * Fraction(rng.randint(2, 9), rng.randint(2, 9)) or q + 1]
    if a > 1 and a.denominator > 1:                         # w n/d -> the number "wn/d" written without the space
        w, r = divmod(a.numerator, a.denominator)
        choices.append(Fraction(int(f"{w}{r}"), a.denominator) * (1 if q > 0 else -1))
    return rng.choice([c for c in choices if c != q] or [q + 1])


TOLERANCE = {"math": Fraction(0), "science": Fraction(1, 100), "tabular": Fraction(1, 1000)}


def test_equivalence_never_accepts_unequal_exact_rationals_in_any_form():
    """1,000 random pairs of exact rationals (mixed numbers, fractions, decimals, scientific, incl. overflow):
    unequal values never score 1 (beyond the domain's documented relative tolerance: 0 for math, 1 % science,
    0.1 % tabular), and equal values in different forms score 1 where the exponent is within the parser's range."""
    rng = random.Random(18)
    wrong_ones, missed = [], []
    for _ in range(1000):
        q = _random_rational(rng)
        r = q if rng.random() < 0.4 else _near(q, rng)
        for domain in ("math", "science", "tabular"):
            a = rng.choice(_rational_forms(q, rng, domain))
            b = rng.choice(_rational_forms(r, rng, domain))
            s = score(domain, f"\\boxed{{{a}}}", b)
            assert not s.reason.startswith("scorer_error"), (domain, a, b, s)
            if q == r:
                if max(abs(q), 1 / abs(q)) < Fraction(10) ** 250 and s.value != 1.0:
                    missed.append((domain, a, b))
            elif abs(q - r) > TOLERANCE[domain] * max(abs(q), abs(r)) and s.value != 0.0:
                wrong_ones.append((domain, a, b))
    assert not wrong_ones, wrong_ones[:10]
    assert not missed, missed[:10]


# ------------------------------------------------------------------ functional tests cannot be faked (#18) ----

WRONG_F = "def f(x):\n    return 0\n"                       # f(2) should be 4
ATTACKS = {
    # re-exec the file with -O: asserts stripped
    "dash_O": WRONG_F + "import os, sys\nif not sys.flags.optimize:\n"
                        "    os.execv(sys.executable, [sys.executable, '-O'] + sys.argv)\n",
    # a trace function that jumps over every line after the solution (the tests) to the last line of the file
    "trace_jump": WRONG_F + "import sys\n_lines = open(__file__).read().split('\\n')\n"
                            "def _t(frame, event, arg):\n"
                            "    if frame.f_code.co_filename == __file__ and event == 'line' and \\\n"
                            "            _lines[frame.f_lineno - 1].lstrip().startswith('assert'):\n"
                            "        n = frame.f_lineno\n"
                            "        while _lines[n - 1].lstrip().startswith('assert'):\n            n += 1\n"
                            "        try:\n            frame.f_lineno = n\n"
                            "        except ValueError:\n            pass\n    return _t\n"
                            "sys.settrace(_t)\nsys._getframe().f_trace = _t\n",
    # an object that equals everything
    "always_equal": "class _Any:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"
                    "def f(x):\n    return _Any()\n",
    # read main.py, find every token that looks like a completion marker and print it
    "read_main_py": WRONG_F + "import re, sys, atexit\nsrc = open(__file__).read()\n"
                              "toks = set(re.findall(r'[0-9a-zA-Z_-]*[0-9a-f]{16,}[0-9a-zA-Z_-]*', src))\n"
                              "def _fake():\n    for t in toks:\n"
                              "        print(t)\n        print(t, 0, 'ok', 4)\n        print(t, 0, 'ok', True)\n"
                              "    sys.stdout.flush()\n    import os\n    os._exit(0)\n"
                              "for t in toks:\n    print(t)\n    print(t, 0, 'ok', 4)\n    print(t, 0, 'ok', True)\n"
                              "atexit.register(_fake)\n",
    # replace the builtins an assert-based harness would use
    "patched_builtins": WRONG_F + "import builtins\nbuiltins.AssertionError = type('X', (Exception,), {})\n"
                                  "builtins.repr = lambda x: '4'\n",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_wrong_code_never_passes_functional_tests_by_faking_success(attack):
    gt = {"functional": "assert f(2) == 4\nassert f(3) == 6"}
    s = score("code", code(ATTACKS[attack]), gt)
    assert s.value == 0.0, (attack, s)
    assert score("code", code("def f(x):\n    return 2 * x\n"), gt) == Score(1.0, "passed")


def test_functional_expected_values_never_enter_the_sandbox(monkeypatch):
    seen = []
    real = gr.run_sandboxed
    monkeypatch.setattr(gr, "run_sandboxed", lambda program, **kw: seen.append(program) or real(program, **kw))
    gt = {"functional": "assert f(2) == 'secret-answer-7f3a'\nassert f(3) != 'other-answer-91c2'"}
    assert score("code", code("def f(x):\n    return 'secret-answer-' + '7f3a' if x == 2 else 0"), gt).value == 1.0
    assert len(seen) == 1 and "f(2)" in seen[0] and "secret-answer-7f3a" not in seen[0] and "other" not in seen[0]


@pytest.mark.parametrize("tests,want", [
    ("assert abs(f(0.1) - 0.2) < 1e-9", 1.0), ("assert sorted(g([3, 1])) == [1, 3]", 1.0),
    ("assert not h(0)\nassert h(1)", 1.0), ("s = S()\nassert s.m(1) == 2", 1.0),
    ("import math\nassert math.isclose(f(1), 2.0)", 1.0), ("assert g([2]) in ([2], [3])", 1.0),
    ("assert f(2) == 5", 0.0), ("assert h(0)", 0.0), ("assert f(1) == 2\nassert 1 / 0", 0.0),
    ("assert g('ab') == 'ab' and f(0) == 1", 0.0), ("assert f(2) + 1 == 5 and len(g([1, 2])) == 2", 1.0),
    ("assert list(r(3)) == [0, 1, 2]\nassert sorted(set(r(2))) == [0, 1]", 1.0),   # generators are converted
    ("assert tuple(r(2)) == (0, 1, 2)", 0.0), ("assert r(2) == [0, 1]", 0.0),      # in the sandbox
])
def test_functional_assert_forms_are_checked_on_plain_data(tests, want):
    src = ("def f(x):\n    return 2 * x\ndef g(xs):\n    return sorted(xs)\ndef h(x):\n    return x\n"
           "class S:\n    def m(self, x):\n        return x + 1\ndef r(n):\n    return (i for i in range(n))\n")
    assert score("code", code(src), {"functional": tests}).value == want, tests


def test_functional_test_that_raises_in_the_solution_fails_with_the_exception_name():
    s = score("code", code("def f(x):\n    return 1 // x"), {"functional": "assert f(0) == 0"})
    assert s == Score(0.0, "test 0: ZeroDivisionError")


@pytest.mark.parametrize("tests", ["def check(c):\n    assert c(2) == 4\ncheck(f)", "x = 1", "assert f(2) ==",
                                   "assert [f(i) for i in (1, 2)] == [2, 4]", "assert f(2) == (lambda: 4)()"])
def test_functional_tests_that_would_leak_expected_values_are_rejected(tests):
    with pytest.raises(gr.GroundTruthError, match="functional"):
        score("code", code("def f(x):\n    return 2 * x"), {"functional": tests})


# --------------------------------------------------------------- the sandbox binds only what it needs (#18) ----

@needs_bwrap
def test_sandbox_cannot_read_host_files_outside_the_interpreter_and_system_libraries():
    import tempfile
    probes = [p for p in ("/etc/passwd", "/etc/hostname", "/etc/hosts", "/work/shared/DESIGN.md") if os.path.isfile(p)]
    fd, mine = tempfile.mkstemp(prefix="guru_probe_", dir="/var/tmp" if os.path.isdir("/var/tmp") else None)
    os.close(fd)
    os.chmod(mine, 0o644)                                   # world-readable, outside every bound prefix
    probes.append(mine)
    try:
        src = ("import os\nfor p in %r:\n    try:\n        open(p).read()\n        print('READ', p)\n"
               "    except OSError:\n        print('no', p)\nprint('ROOT', *sorted(os.listdir('/')))\n" % probes)
        r = gr.run_sandboxed(src, mode="bwrap")
    finally:
        os.unlink(mine)
    assert r.ok and "READ" not in r.stdout, r
    top = {d.strip("/").split("/")[0] for d in gr._interpreter_dirs([gr._sandbox_python(ROOT) or sys.executable])}
    root = set(r.stdout.split("ROOT")[1].split())
    assert root <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "tmp", "proc", "dev"} | top, root
    assert gr.run_sandboxed("import json, fractions, ctypes; print(json.dumps([1]))", mode="bwrap").stdout == "[1]\n"
