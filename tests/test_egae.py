"""Tests for egae.py: claims of T-PPO's EGAE (paper card `tppo_egae.md` §13, oracles 1–8) and fast-path parity.

Tier 1: properties of the estimator (run on the reference and on the vectorized path).
Tier 2: vectorized path and Triton launcher (TRITON_INTERPRET=1 on CPU) vs the literal reference, awkward sizes.
"""

import pytest
import torch

import egae

PATHS = ["reference", "torch"]


def run(impl, *args, **kwargs):
    fn = {"reference": egae.egae_reference, "torch": egae.egae_torch, "triton": egae.egae_triton}[impl]
    return fn(*args, **kwargs)


def textbook_gae(rewards, values, gamma, lam, last_value=0.0):
    """CleanRL/Sutton-Barto GAE on one segment (python floats): δ_t = r_t + γ V_{t+1} − V_t, V_T = last_value."""
    T = len(rewards)
    adv = [0.0] * T
    gae = 0.0
    for t in reversed(range(T)):
        v_next = values[t + 1] if t + 1 < T else last_value
        delta = rewards[t] + gamma * v_next - values[t]
        gae = delta + gamma * lam * gae
        adv[t] = gae
    return adv


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp(min=1e-30)).item()


def random_batch(B, T, gen, dtype=torch.float32, garbage=True):
    r = torch.randn(B, T, generator=gen, dtype=dtype)
    V = torch.randn(B, T, generator=gen, dtype=dtype)
    lengths = torch.randint(0, T + 1, (B,), generator=gen)
    lengths[0] = T                                           # always one full row
    if B > 1:
        lengths[1] = min(T, 1)                               # and a length-1 (or empty) row
    finished = torch.rand(B, generator=gen) < 0.5
    lam = torch.rand(B, generator=gen, dtype=dtype)
    lam[0] = 1.0
    next_values = torch.randn(B, generator=gen, dtype=dtype)
    if garbage:                                              # padding must never leak (ROLL #447)
        pad = torch.arange(T)[None, :] >= lengths[:, None]
        r[pad] = float("nan")
        V[pad] = 1e30
    return r, V, lengths, finished, lam, next_values


# ----------------------------------------------------------------------------------------------------------------------
# Tier 1: claims of the estimator
# ----------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", PATHS)
def test_finished_window_equals_standard_gae(impl):
    """Oracle 1: a window that ends with EOS is ordinary GAE with V_T := 0, row by row, whatever the padding holds."""
    gen = torch.Generator().manual_seed(1)
    B, T = 6, 40
    r, V, lengths, _, lam, _ = random_batch(B, T, gen, torch.float64)
    finished = torch.ones(B, dtype=torch.bool)
    for gamma in (1.0, 0.9):
        adv, ret = run(impl, r, V, lengths, finished, gamma=gamma, lam=lam)
        for b in range(B):
            l = int(lengths[b])
            want = textbook_gae(r[b, :l].tolist(), V[b, :l].tolist(), gamma, float(lam[b]))
            assert torch.allclose(adv[b, :l], torch.tensor(want, dtype=torch.float64), rtol=1e-12, atol=1e-12)
            assert torch.allclose(ret[b, :l], adv[b, :l] + V[b, :l], rtol=0, atol=1e-12)


@pytest.mark.parametrize("impl", PATHS)
def test_cut_residual_makes_last_advantage_zero_for_every_lambda(impl):
    """Oracle 2: unfinished, γ = 1, V(s_l) ≈ V(s_{l−1}) → δ_{l−1} = 0 → Â_{l−1} = 0 for every λ."""
    gen = torch.Generator().manual_seed(2)
    B, T = 5, 17
    V = torch.randn(B, T, generator=gen)
    r = torch.zeros(B, T)                                    # unfinished windows carry no reward
    lengths = torch.tensor([17, 9, 1, 3, 16])
    finished = torch.zeros(B, dtype=torch.bool)
    for lam in (0.0, 0.3, 0.95, 1.0):
        adv, _ = run(impl, r, V, lengths, finished, gamma=1.0, lam=lam)
        last = adv[torch.arange(B), lengths - 1]
        assert torch.equal(last, torch.zeros(B)), (lam, last)
        assert adv[0, :-1].abs().max() > 1e-3               # the rest is not trivially zero
    # γ < 1: the cut residual is (γ − 1) V_{l−1}, not zero.
    adv, _ = run(impl, r, V, lengths, finished, gamma=0.9, lam=0.95)
    want = (0.9 - 1.0) * V[torch.arange(B), lengths - 1]
    assert torch.allclose(adv[torch.arange(B), lengths - 1], want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("impl", PATHS)
def test_lambda_gamma_one_advantage_is_last_value_or_reward_minus_value(impl):
    """Oracle 3: λ = γ = 1. Unfinished: Â_t = V_{l−1} − V_t. Finished with terminal reward R: Â_t = R − V_t."""
    gen = torch.Generator().manual_seed(3)
    B, T = 4, 12
    V = torch.randn(B, T, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([12, 7, 12, 5])
    finished = torch.tensor([False, False, True, True])
    R = torch.tensor([0.0, 0.0, 1.0, -1.0], dtype=torch.float64)
    r = torch.zeros(B, T, dtype=torch.float64)
    r[torch.arange(B), lengths - 1] = R
    adv, ret = run(impl, r, V, lengths, finished, gamma=1.0, lam=1.0)
    for b in range(B):
        l = int(lengths[b])
        target = V[b, l - 1] if not finished[b] else R[b]
        assert torch.allclose(adv[b, :l], target - V[b, :l], atol=1e-12)
        assert torch.allclose(ret[b, :l], target.expand(l), atol=1e-12)   # ret = Â + V = the constant target


@pytest.mark.parametrize("impl", PATHS)
def test_unfinished_advantage_is_convex_combination_of_in_window_values(impl):
    """Oracle 4: γ = 1, unfinished, t ≤ l−2: Â_t + V_t = Σ_{j=1}^{n−1} (1−λ)λ^{j−1} V_{t+j} + λ^{n−1} V_{l−1}."""
    gen = torch.Generator().manual_seed(4)
    for _ in range(20):
        l = int(torch.randint(2, 30, (1,), generator=gen))
        lam = float(torch.rand(1, generator=gen))
        V = torch.randn(1, l, generator=gen, dtype=torch.float64)
        adv, _ = run(impl, torch.zeros_like(V), V, torch.tensor([l]), torch.tensor([False]), gamma=1.0, lam=lam)
        for t in range(l - 1):
            n = l - 1 - t
            w = [(1 - lam) * lam ** (j - 1) for j in range(1, n)] + [lam ** (n - 1)]
            assert abs(sum(w) - 1.0) < 1e-12                  # convex weights
            want = sum(wj * V[0, t + j].item() for j, wj in zip(range(1, n + 1), w))
            assert abs(adv[0, t].item() + V[0, t].item() - want) < 1e-10
    # Consequences: a constant V gives Â ≡ 0; a rising V gives Â > 0 before the cut; a falling V gives Â < 0.
    l = 10
    idx = torch.arange(l, dtype=torch.float64)[None]
    for V, sign in ((torch.full((1, l), 3.0, dtype=torch.float64), 0), (0.1 * idx, 1), (-0.1 * idx, -1)):
        adv, _ = run(impl, torch.zeros_like(V), V, torch.tensor([l]), torch.tensor([False]), gamma=1.0, lam=0.9)
        if sign == 0:
            assert adv.abs().max() < 1e-12
        else:
            assert bool((torch.sign(adv[0, :-1]) == sign).all())


@pytest.mark.parametrize("impl", PATHS)
def test_exact_decomposition_against_full_response_gae(impl):
    """Oracle 5: Â^full_t = Â^EGAE_t + (γλ)^{l−1−t} γ (V_l − V_{l−1}) + (γλ)^{l−t} Â^full_l, any γ, λ, V (float64)."""
    gen = torch.Generator().manual_seed(5)
    for case in range(60):
        gamma = (1.0, 0.99, 0.9)[case % 3]
        lam = float(torch.rand(1, generator=gen))
        T = int(torch.randint(3, 40, (1,), generator=gen))
        l = int(torch.randint(1, T, (1,), generator=gen))                  # cut strictly inside: T > l
        V = torch.randn(T, generator=gen, dtype=torch.float64)
        R = float(torch.randn(1, generator=gen))
        r_full = [0.0] * (T - 1) + [R]
        full = textbook_gae(r_full, V.tolist(), gamma, lam, last_value=0.0)   # V_T = 0
        adv, _ = run(impl, torch.zeros(1, l, dtype=torch.float64), V[None, :l], torch.tensor([l]),
                     torch.tensor([False]), gamma=gamma, lam=lam)
        gl = gamma * lam
        for t in range(l):
            rhs = adv[0, t].item() + gl ** (l - 1 - t) * gamma * (V[l] - V[l - 1]).item() + gl ** (l - t) * full[l]
            assert abs(full[t] - rhs) < 1e-10, (case, t, full[t], rhs)
        # With the exact bootstrap V(s_l) the middle term vanishes.
        adv_v, _ = run(impl, torch.zeros(1, l, dtype=torch.float64), V[None, :l], torch.tensor([l]),
                       torch.tensor([False]), gamma=gamma, lam=lam, bootstrap="value", next_values=V[l:l + 1])
        for t in range(l):
            assert abs(full[t] - adv_v[0, t].item() - gl ** (l - t) * full[l]) < 1e-10


@pytest.mark.parametrize("impl", PATHS)
def test_exact_bootstrap_equals_truncated_segment_gae(impl):
    """bootstrap="value": the CleanRL truncated-segment GAE with next value V(s_l) = next_values[b]."""
    gen = torch.Generator().manual_seed(6)
    r, V, lengths, finished, lam, nv = random_batch(7, 23, gen, torch.float64)
    adv, _ = run(impl, r, V, lengths, finished, gamma=0.95, lam=lam, bootstrap="value", next_values=nv)
    for b in range(7):
        l = int(lengths[b])
        last = 0.0 if finished[b] else float(nv[b])
        want = textbook_gae(r[b, :l].tolist(), V[b, :l].tolist(), 0.95, float(lam[b]), last_value=last)
        assert torch.allclose(adv[b, :l], torch.tensor(want, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("impl", PATHS)
def test_final_reward_does_not_change_earlier_windows(impl):
    """Oracle 6: a response of 3 windows; its final reward R changes only the last window's advantages
    (and every Monte-Carlo critic target G_t = R)."""
    gen = torch.Generator().manual_seed(7)
    W, total = 8, 21                                          # windows [0, 8), [8, 16), [16, 21)
    V = torch.randn(total, generator=gen, dtype=torch.float64)

    def window_advantages(R):
        r = torch.zeros(total, dtype=torch.float64)
        r[-1] = R
        out = []
        for k in range(3):                                    # window-local indexing (card §3)
            s, e = k * W, min(total, (k + 1) * W)
            rw = torch.zeros(1, W, dtype=torch.float64)
            vw = torch.zeros(1, W, dtype=torch.float64)
            rw[0, :e - s], vw[0, :e - s] = r[s:e], V[s:e]
            adv, _ = run(impl, rw, vw, torch.tensor([e - s]), torch.tensor([k == 2]), gamma=1.0, lam=0.95)
            out.append(adv[0, :e - s])
        G = egae.monte_carlo_returns(r[None], torch.tensor([total]))[0]
        return out, G

    a1, G1 = window_advantages(1.0)
    a2, G2 = window_advantages(-1.0)
    assert torch.equal(a1[0], a2[0]) and torch.equal(a1[1], a2[1])
    assert (a1[2] - a2[2]).abs().min() > 1e-3                # every last-window advantage moves
    assert torch.equal(G1, torch.ones(total, dtype=torch.float64))
    assert torch.equal(G2, -torch.ones(total, dtype=torch.float64))


@pytest.mark.parametrize("impl", PATHS)
def test_outputs_are_exactly_zero_past_length_and_padding_never_leaks(impl):
    gen = torch.Generator().manual_seed(8)
    r, V, lengths, finished, lam, nv = random_batch(9, 31, gen)
    clean_r, clean_V = r.clone(), V.clone()
    pad = torch.arange(31)[None, :] >= lengths[:, None]
    clean_r[pad], clean_V[pad] = 0.0, 0.0
    for bootstrap in ("paper", "value"):
        adv, ret = run(impl, r, V, lengths, finished, gamma=0.99, lam=lam, bootstrap=bootstrap, next_values=nv)
        assert torch.equal(adv[pad], torch.zeros(int(pad.sum()))) and torch.equal(ret[pad], adv[pad])
        assert torch.isfinite(adv).all() and torch.isfinite(ret).all()
        adv_c, ret_c = run(impl, clean_r, clean_V, lengths, finished, 0.99, lam, bootstrap, nv)
        assert torch.equal(adv, adv_c) and torch.equal(ret, ret_c)


@pytest.mark.parametrize("impl", PATHS)
def test_per_row_lambda_equals_running_rows_one_by_one(impl):
    gen = torch.Generator().manual_seed(9)
    r, V, lengths, finished, lam, nv = random_batch(6, 50, gen, torch.float64)
    adv, ret = run(impl, r, V, lengths, finished, gamma=0.97, lam=lam, bootstrap="value", next_values=nv)
    for b in range(6):
        a1, r1 = run(impl, r[b:b + 1], V[b:b + 1], lengths[b:b + 1], finished[b:b + 1], 0.97, float(lam[b]),
                     "value", nv[b:b + 1])
        assert torch.allclose(adv[b], a1[0], rtol=1e-12, atol=1e-12)
        assert torch.allclose(ret[b], r1[0], rtol=1e-12, atol=1e-12)


def test_monte_carlo_returns_are_reward_to_go():
    """Oracle 7 and the γ < 1 reward-to-go; 0 past the length."""
    gen = torch.Generator().manual_seed(10)
    B, T = 5, 33
    r = torch.randn(B, T, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([33, 0, 1, 20, 32])
    for gamma in (1.0, 0.9, 0.0):
        G = egae.monte_carlo_returns(r, lengths, gamma=gamma)
        for b in range(B):
            l = int(lengths[b])
            for t in range(T):
                want = sum(gamma ** (u - t) * r[b, u].item() for u in range(t, l)) if t < l else 0.0
                assert abs(G[b, t].item() - want) < 1e-10
    terminal = torch.zeros(2, 6)
    terminal[0, 5], terminal[1, 3] = 1.0, -1.0
    G = egae.monte_carlo_returns(terminal, torch.tensor([6, 4]))
    assert torch.equal(G, torch.tensor([[1.0] * 6, [-1.0] * 4 + [0.0] * 2]))


def test_length_adaptive_lambda_follows_vapo_rule():
    """Oracle 8: λ = max(0.95, 1 − 1/(0.05 L)); 0.95 up to L = 400; horizon 1/(1−λ) = 0.05 L above; unfinished + W/2."""
    L = torch.tensor([0, 1, 100, 400, 401, 1000, 8192, 24576], dtype=torch.float64)
    lam = egae.length_adaptive_lambda(L)
    assert torch.equal(lam[:4], torch.full((4,), 0.95, dtype=torch.float64))
    assert bool((lam[4:] > 0.95).all())
    assert torch.allclose(1.0 / (1.0 - lam[4:]), 0.05 * L[4:], rtol=1e-9)
    lam_u = egae.length_adaptive_lambda(torch.tensor([8192, 8192]), finished=torch.tensor([False, True]),
                                        window=8192)
    assert abs(lam_u[0].item() - 0.998372) < 1e-6            # 8192 + 4096 = 12288 (card example)
    assert abs(lam_u[1].item() - (1 - 1 / (0.05 * 8192))) < 1e-6


@pytest.mark.parametrize("bad, match", [
    (dict(values=torch.zeros(3, 5)), "values"),
    (dict(rewards=torch.zeros(4)), "rewards"),
    (dict(lengths=torch.tensor([1, 2, 3])), "lengths"),
    (dict(lengths=torch.tensor([1, 2, 3, 7])), "lengths"),
    (dict(lengths=torch.tensor([1, 2, 3, -1])), "lengths"),
    (dict(finished=torch.ones(3, dtype=torch.bool)), "finished"),
    (dict(gamma=1.5), "gamma"),
    (dict(gamma=-0.1), "gamma"),
    (dict(lam=1.01), "lam"),
    (dict(lam=torch.tensor([0.5, 0.5, 0.5, float("nan")])), "lam"),
    (dict(lam=torch.full((3,), 0.9)), "lam"),
    (dict(bootstrap="value"), "next_values"),
    (dict(bootstrap="value", next_values=torch.zeros(3)), "next_values"),
    (dict(bootstrap="zero"), "bootstrap"),
])
@pytest.mark.parametrize("impl", PATHS + ["triton"])
def test_bad_arguments_raise_value_error_naming_the_argument(impl, bad, match):
    args = dict(rewards=torch.zeros(4, 6), values=torch.zeros(4, 6), lengths=torch.tensor([6, 0, 3, 1]),
                finished=torch.tensor([True, False, True, False]), gamma=1.0, lam=0.95, bootstrap="paper",
                next_values=None)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        run(impl, **args)


def test_bad_argument_types_raise_type_error():
    r, V = torch.zeros(2, 3), torch.zeros(2, 3)
    with pytest.raises(TypeError, match="lengths"):
        egae.egae(r, V, torch.tensor([1.0, 2.0]), torch.tensor([True, False]))
    with pytest.raises(TypeError, match="rewards"):
        egae.egae([[0.0] * 3] * 2, V, torch.tensor([1, 2]), torch.tensor([True, False]))
    with pytest.raises(ValueError, match="lengths"):
        egae.monte_carlo_returns(r, torch.tensor([4, 0]))
    with pytest.raises(ValueError, match="alpha"):
        egae.length_adaptive_lambda(torch.tensor([10]), alpha=0.0)


def test_low_precision_inputs_give_fp32_outputs():
    gen = torch.Generator().manual_seed(15)
    r, V, lengths, finished, lam, _ = random_batch(3, 40, gen, garbage=False)
    for impl in PATHS + ["triton"]:
        adv, ret = run(impl, r.bfloat16(), V.bfloat16(), lengths, finished, 1.0, lam)
        ref, _ = egae.egae_reference(r.bfloat16().float(), V.bfloat16().float(), lengths, finished, 1.0, lam)
        assert adv.dtype == torch.float32 and ret.dtype == torch.float32
        assert rel_err(adv, ref) < 1e-5


def test_dispatcher_override_selects_each_path(monkeypatch):
    gen = torch.Generator().manual_seed(11)
    r, V, lengths, finished, lam, _ = random_batch(3, 9, gen)
    outs = {}
    for impl in ("reference", "torch", "triton", None):
        monkeypatch.setattr(egae, "IMPL", impl)
        outs[impl] = egae.egae(r, V, lengths, finished, lam=lam)
    for impl in ("torch", "triton", None):
        assert rel_err(outs[impl][0], outs["reference"][0]) < 1e-5
    monkeypatch.setattr(egae, "IMPL", "fast")
    with pytest.raises(ValueError, match="IMPL"):
        egae.egae(r, V, lengths, finished)


# ----------------------------------------------------------------------------------------------------------------------
# Tier 2: fast paths vs the reference
# ----------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("T", [1, 2, 63, 257, 4097])
@pytest.mark.parametrize("B", [1, 5, 64])
def test_vectorized_matches_reference_fp32(B, T):
    gen = torch.Generator().manual_seed(1000 * B + T)
    r, V, lengths, finished, lam, nv = random_batch(B, T, gen)
    for gamma, bootstrap in ((1.0, "paper"), (0.97, "value")):
        ref = egae.egae_reference(r, V, lengths, finished, gamma, lam, bootstrap, nv)
        out = egae.egae_torch(r, V, lengths, finished, gamma, lam, bootstrap, nv)
        for o, f in zip(out, ref):
            assert o.dtype == torch.float32 and o.shape == (B, T)
            assert rel_err(o, f) <= 1e-5, (gamma, bootstrap, rel_err(o, f))


# The no-grad fast path has two code paths of its own: the scan written straight into the output when T is a whole
# number of chunks (T % 16 == 0), and per-row tail fills instead of a bool mask for long rows (T >= 2048).
@pytest.mark.parametrize("B, T", [(3, 16), (7, 32), (3, 2048), (2, 4096), (5, 2049)])
def test_fast_path_matches_reference_at_chunk_multiples_and_long_rows(B, T):
    gen = torch.Generator().manual_seed(31 * B + T)
    r, V, lengths, finished, lam, nv = random_batch(B, T, gen, garbage=False)
    lengths[-1] = T - 1                                      # a cut one token before the end
    pad = torch.arange(T)[None, :] >= lengths[:, None]
    r[pad], V[pad] = float("nan"), 1e30                      # padding must never leak (ROLL #447)
    for gamma, bootstrap in ((1.0, "paper"), (0.97, "value")):
        ref = egae.egae_reference(r, V, lengths, finished, gamma, lam, bootstrap, nv)
        out = egae.egae_torch(r, V, lengths, finished, gamma, lam, bootstrap, nv)
        pad = torch.arange(T)[None, :] >= lengths[:, None]
        for o, f in zip(out, ref):
            assert o.shape == (B, T) and o.is_contiguous()
            assert rel_err(o, f) <= 1e-5, (gamma, bootstrap, rel_err(o, f))
            assert torch.equal(o[pad], torch.zeros(int(pad.sum())))   # exactly 0 past l, garbage never leaks


@pytest.mark.parametrize("B, T", [(1, 1), (5, 63), (64, 257), (3, 4097)])
def test_autograd_path_forward_matches_reference(B, T):
    """Inputs that need a gradient take the out-of-place path; its forward values match the reference too."""
    gen = torch.Generator().manual_seed(77 * B + T)
    r, V, lengths, finished, lam, nv = random_batch(B, T, gen)
    ref = egae.egae_reference(r, V, lengths, finished, 0.97, lam, "value", nv)
    out = egae.egae_torch(r.requires_grad_(), V, lengths, finished, 0.97, lam, "value", nv)
    assert out[0].requires_grad                              # really the differentiable path
    for o, f in zip(out, ref):
        assert rel_err(o.detach(), f) <= 1e-5
        pad = torch.arange(T)[None, :] >= lengths[:, None]
        assert torch.equal(o.detach()[pad], torch.zeros(int(pad.sum())))


def test_egae_torch_takes_the_fast_path_only_without_gradients(monkeypatch):
    calls = []
    for name in ("_egae_torch_fast", "_egae_torch_autograd"):
        fn = getattr(egae, name)
        monkeypatch.setattr(egae, name, lambda *a, _fn=fn, _name=name: calls.append(_name) or _fn(*a))
    gen = torch.Generator().manual_seed(5)
    r, V, lengths, finished, lam, _ = random_batch(3, 20, gen, garbage=False)
    egae.egae_torch(r, V, lengths, finished, 1.0, lam)
    egae.egae_torch(r, V.clone().requires_grad_(), lengths, finished, 1.0, lam)
    with torch.no_grad():
        egae.egae_torch(r, V.clone().requires_grad_(), lengths, finished, 1.0, lam)
    assert calls == ["_egae_torch_fast", "_egae_torch_autograd", "_egae_torch_fast"]


def test_fast_path_is_stable_for_extreme_discounts_on_long_rows():
    """The same power-matrix scan inside the fast path: γλ ∈ {0, 1e-30, 0.5, 0.999999, 1} at T = 20000, no NaN/inf,
    and the fp64 reference agrees (no division by powers of γλ anywhere)."""
    T = 20000
    gen = torch.Generator().manual_seed(23)
    r = torch.randn(5, T, generator=gen, dtype=torch.float64)
    V = torch.randn(5, T, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([T, T - 1, T, 12345, T])
    finished = torch.tensor([True, False, True, False, True])
    lam = torch.tensor([0.0, 1e-30, 0.5, 0.999999, 1.0]).double()  # the fp32-rounded values, exactly
    ref = egae.egae_reference(r, V, lengths, finished, 1.0, lam)
    out = egae.egae_torch(r.float(), V.float(), lengths, finished, 1.0, lam.float())
    for o, f in zip(out, ref):
        assert torch.isfinite(o).all()
        for b in range(5):
            assert rel_err(o[b], f[b]) < 1e-5, (b, rel_err(o[b], f[b]))


def test_vectorized_gradients_match_reference():
    gen = torch.Generator().manual_seed(12)
    r, V, lengths, finished, lam, nv = random_batch(5, 70, gen, torch.float64, garbage=False)
    grads = []
    for fn in (egae.egae_reference, egae.egae_torch):
        rr, vv, nn = (x.clone().requires_grad_() for x in (r, V, nv))
        adv, ret = fn(rr, vv, lengths, finished, 0.98, lam, "value", nn)
        g_adv = torch.randn(adv.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        ((adv * g_adv).sum() + (ret * g_adv.flip(1)).sum()).backward()
        grads.append((rr.grad, vv.grad, nn.grad))
    for g_ref, g_vec in zip(*grads):
        assert rel_err(g_vec, g_ref) < 1e-10


def test_vectorized_scan_is_stable_for_extreme_discounts():
    """γλ ∈ {0, 1e-30, 0.5, 0.999999, 1} on a long row: no overflow/NaN (no division by powers of γλ)."""
    T = 20000
    x = torch.randn(5, T, generator=torch.Generator().manual_seed(13), dtype=torch.float64)
    c = torch.tensor([0.0, 1e-30, 0.5, 0.999999, 1.0]).double()  # the fp32-rounded discounts, exactly
    y = egae._reverse_scan(x.float(), c.float())
    want = torch.zeros_like(x)
    acc = torch.zeros(5, dtype=torch.float64)
    for t in reversed(range(T)):
        acc = x[:, t] + c * acc
        want[:, t] = acc
    assert torch.isfinite(y).all()
    assert torch.equal(y[0], x[0].float())                   # c = 0: y = x exactly
    for b in range(5):
        assert rel_err(y[b], want[b]) < 1e-5, (b, rel_err(y[b], want[b]))


# Triton launcher under TRITON_INTERPRET=1 (set by conftest on CPU). The interpreter runs every program in Python
# (~20 ms per program, ~5 ms per tile on this machine), so the grid is a subset: B ∈ {1, 5} at T ∈ {1, 2, 63, 257},
# T = 4097 with B = 1, and B = 64 at T ∈ {63, 257}. On a GPU the same test runs natively.
TRITON_CASES = [(B, T) for B in (1, 5) for T in (1, 2, 63, 257)] + [(1, 4097), (64, 63), (64, 257)]


@pytest.mark.parametrize("B, T", TRITON_CASES)
def test_triton_matches_reference_fp32(B, T):
    gen = torch.Generator().manual_seed(7000 * B + T)
    r, V, lengths, finished, lam, nv = random_batch(B, T, gen)
    # Both bootstrap modes where the interpreter is quick; one (alternating with T) on the larger cases.
    modes = ((1.0, "paper"), (0.97, "value")) if B * T <= 5000 else (((1.0, "paper"),) if T % 2 else ((0.97, "value"),))
    for gamma, bootstrap in modes:
        ref = egae.egae_reference(r, V, lengths, finished, gamma, lam, bootstrap, nv)
        out = egae.egae_triton(r, V, lengths, finished, gamma, lam, bootstrap, nv)
        pad = torch.arange(T)[None, :] >= lengths[:, None]
        for o, f in zip(out, ref):
            assert o.dtype == torch.float32 and o.shape == (B, T)
            assert rel_err(o, f) <= 1e-5, (gamma, bootstrap, rel_err(o, f))
            assert torch.equal(o[pad], torch.zeros(int(pad.sum())))


def test_triton_handles_zero_and_unit_discounts():
    """γλ = 0 (Â = δ) and γλ = 1 (Â = sum of the remaining δ) through the kernel's power table."""
    gen = torch.Generator().manual_seed(14)
    r, V, lengths, finished, _, _ = random_batch(4, 100, gen)
    for lam in (0.0, 1.0):
        ref = egae.egae_reference(r, V, lengths, finished, 1.0, lam)
        out = egae.egae_triton(r, V, lengths, finished, 1.0, lam)
        assert rel_err(out[0], ref[0]) <= 1e-6 and rel_err(out[1], ref[1]) <= 1e-6


def test_demo_and_bench_print_what_they_promise(capsys):
    """The worked example shows Â = 0 at the cut of the unfinished window; the bench prints its table (tiny sizes).
    Run in-process: a subprocess would spend most of the test budget importing torch and triton."""
    egae._demo()
    out = capsys.readouterr().out
    unfinished = [line for line in out.splitlines() if "unfinished Â" in line][0]
    assert unfinished.split("]")[0].endswith(" 0.0")
    threads = torch.get_num_threads()
    try:
        egae._bench(B=4, T=40, reps=1)
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "egae vectorized (chunked scan)" in out and "speedup vs loop" in out
