"""Claims of guru_rewards.py (Guru, arXiv 2506.14965; card ../shared/papers/guru.md §2, §3, §4, §8)."""
import math
import os
import random
import string
import time

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


def test_extract_boxed_is_linear_on_megabyte_adversarial_inputs():
    for text in ("\\boxed{" * 200_000, "{" * 1_000_000 + "\\boxed{1}", "\\boxed{" + "}" * 1_000_000):
        t0 = time.perf_counter()
        extract_boxed(text)
        assert time.perf_counter() - t0 < 2.0


# ------------------------------------------------------------------------------------------------- math ----

@pytest.mark.parametrize("pred,gt", [
    (r"\frac{1}{2}", r"\frac12"), ("1,000", "1000"), (r"5\text{ cm}", "5"), ("x+1", "1+x"),
    ("0.5", r"\frac{1}{2}"), ("2/4", "1/2"), ("1.5e3", "1500"), (r"3\times10^{5}", "300000"),
    (r"2\sqrt{2}", r"\sqrt{8}"), (r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt3"), (r"\dfrac{2\pi}{3}", "2pi/3"),
    (r"50\%", "50"), (r"50\%", "0.5"), ("-3", "- 3"), ("(x+1)^2", "x^2+2x+1"), ("x=5", "5"),
    (r"[0, \infty)", r"[0,\infty)"), ("(1, -2)", r"\left(1,-2\right)"), ("3, 1", "1, 3"),
    (r"\{1,2\}", r"\{2,1\}"), (r"\text{Monday}", "Monday"), (r"90^\circ", "90"), (r"\$5", "5"),
])
def test_math_equivalent_but_differently_written_answers_are_equal(pred, gt):
    assert math_equal(pred, gt)
    assert score("math", f"so \\boxed{{{pred}}}", gt) == Score(1.0, "correct")


@pytest.mark.parametrize("pred,gt", [
    ("(1,2)", "[1,2]"),                  # card §8.1: brackets must match
    ("50.00001", "50"),                  # exact: no 1e-4 tolerance (deviation)
    ("0.5", "50"), ("5000", "50"),       # the released percentage quirk is dropped (deviation)
    ("6.28", r"2\pi"), ("0.333", "1/3"), ("3", "4"), ("x+1", "x-1"), ("(0,1)", "[0,1]"), ("1,2", "1,2,3"),
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
        t0 = time.perf_counter()
        s = score("math", resp, "1")
        assert 0.0 <= s.value <= 1.0 and not s.reason.startswith("scorer_error"), (resp[:40], s)
        assert time.perf_counter() - t0 < 2.0, resp[:40]
    assert score("math", "}" * 1000 + r"\boxed{1}", "1").value == 1.0


def test_bad_arguments_raise_named_errors():
    with pytest.raises(ValueError, match="domain"):
        score("poetry", "x", "y")
    with pytest.raises(TypeError, match="response"):
        score("math", None, "1")
    with pytest.raises(ValueError, match="ground_truth"):
        score("math", r"\boxed{1}", ["1"])
