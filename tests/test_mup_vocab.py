"""Tests for mup_vocab.py: the claims of the paper card (shared/papers/mup_vocab.md Sec. 7)."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import mup_vocab as mv


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Every tensor here is tiny: intra-op threads only add overhead (10x slower on the loaded 2-core box)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _count_params(groups):
    return sum(len(g["params"]) for g in groups)


# --- ratio law (card 7.2) ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("regime,factor", [("lv", math.sqrt(2.0)), ("mup", 2.0), ("sp", 1.0)])
def test_embedding_hidden_ratio_law_is_exact(regime, factor):
    base = 64
    r = lambda k: mv.lr_multipliers(regime, k, base)["embedding"] / mv.lr_multipliers(regime, k, base)["hidden"]
    for n in [64, 128, 256, 512, 1024, 2048]:  # n and 2n cover 64..4096
        assert r(2 * n) / r(n) == pytest.approx(factor, rel=1e-14, abs=0)
    for n in [64, 128]:  # the same through real optimizer groups (small models only: cheap)
        m1, m2 = mv.TinyGPT(32, n, n_layer=1, head_dim=n), mv.TinyGPT(32, 2 * n, n_layer=1, head_dim=2 * n)
        g1 = {g["name"]: g["lr"] for g in mv.param_groups(m1, 3e-3, regime, n, base)}
        g2 = {g["name"]: g["lr"] for g in mv.param_groups(m2, 3e-3, regime, 2 * n, base)}
        assert (g2["embedding"] / g2["hidden"]) / (g1["embedding"] / g1["hidden"]) == pytest.approx(factor, rel=1e-14)
    # invariants of the table: lr_hidden * n constant (mup, lv); lr_emb * sqrt(n) constant (lv)
    if regime != "sp":
        vals = [mv.lr_multipliers(regime, n, base)["hidden"] * n for n in (64, 256, 4096)]
        assert np.ptp(vals) / vals[0] < 1e-14
    if regime == "lv":
        vals = [mv.lr_multipliers(regime, n, base)["embedding"] * math.sqrt(n) for n in (64, 256, 4096)]
        assert np.ptp(vals) / vals[0] < 1e-14


# --- partition (card 7.3) ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("regime", mv.REGIMES)
def test_every_parameter_in_exactly_one_group(regime, tied):
    model = mv.TinyGPT(50, 64, n_layer=2, head_dim=16, tied=tied)
    model.lm_head.bias = nn.Parameter(torch.zeros(50))  # a readout bias is a vector
    model.wpe = nn.Embedding(16, 64)                    # a positional embedding is an embedding
    lr, wd, n, base = 1e-3, 0.1, 256, 64
    groups = mv.param_groups(model, lr, regime, n, base, weight_decay=wd)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in model.parameters()} == set(ids)
    by = {g["name"]: g for g in groups}
    w = n / base
    emb_lr = {"sp": lr, "mup": lr, "lv": lr / math.sqrt(w)}[regime]
    hid_lr = lr if regime == "sp" else lr / w
    assert by["embedding"]["lr"] == pytest.approx(emb_lr) and by["hidden"]["lr"] == pytest.approx(hid_lr)
    assert by["vector"]["lr"] == lr and by["vector"]["weight_decay"] == 0.0
    assert any(p is model.lm_head.bias for p in by["vector"]["params"])
    if tied:  # the shared matrix is listed once, in the embedding group; there is no separate readout group
        assert "readout" not in by
        assert {id(p) for p in by["embedding"]["params"]} == {id(model.wte.weight), id(model.wpe.weight)}
    else:
        assert {id(p) for p in by["embedding"]["params"]} == {id(model.wte.weight), id(model.wpe.weight)}
        assert by["readout"]["lr"] == lr and by["readout"]["params"][0] is model.lm_head.weight
    for g in groups:  # coupled wd: lr_group * wd_group = lr * wd on every decayed group, whatever the width
        assert g["lr"] == pytest.approx(lr * g["lr_scale"])
        if g["name"] != "vector":
            assert g["lr"] * g["weight_decay"] == pytest.approx(lr * wd, rel=1e-12)
    hidden_ids = {id(p) for p in by["hidden"]["params"]}
    assert hidden_ids == {id(m.weight) for nm, m in model.named_modules() if isinstance(m, nn.Linear)
                          and nm != "lm_head"}
    torch.optim.AdamW(groups)  # groups are accepted by torch as they are


def test_raw_2d_gains_are_vectors_and_keep_their_init():
    """Per-head norm gains (H, D) (as in RAttention) are not width x width matrices: base LR, no decay, not re-drawn."""
    model = mv.TinyGPT(16, 64, n_layer=1, head_dim=16)
    model.blocks[0].head_gain = nn.Parameter(torch.ones(4, 16))
    mv.init_parametrization(model, "mup", 256, 64)
    assert torch.equal(model.blocks[0].head_gain, torch.ones(4, 16))
    by = {g["name"]: g for g in mv.param_groups(model, 1e-3, "mup", 256, 64, weight_decay=0.1)}
    assert any(p is model.blocks[0].head_gain for p in by["vector"]["params"])
    assert by["vector"]["weight_decay"] == 0.0 and by["vector"]["lr"] == 1e-3


def test_bad_arguments_raise():
    model = mv.TinyGPT(16, 32)
    with pytest.raises(ValueError, match="regime"):
        mv.param_groups(model, 1e-3, "ntk", 32, 32)
    with pytest.raises(ValueError, match="lr"):
        mv.param_groups(model, -1.0, "mup", 32, 32)
    with pytest.raises(ValueError, match="base_width"):
        mv.param_groups(model, 1e-3, "mup", 32, 0)
    with pytest.raises(TypeError, match="width"):
        mv.param_groups(model, 1e-3, "mup", 32.5, 32)
    with pytest.raises(ValueError, match="readout"):
        mv.param_groups(nn.Sequential(nn.Linear(3, 3)), 1e-3, "mup", 32, 32)
    with pytest.raises(ValueError, match="widths"):
        mv.coord_check(lambda n: mv.TinyGPT(16, n), [64, 32])
    with pytest.raises(ValueError, match="fan_in"):
        mv.init_stds("mup", 64, 32, 0)
    with pytest.raises(ValueError, match="readout_zero_init"):
        mv.init_parametrization(mv.TinyGPT(16, 32, tied=True), "mup", 32, 32, readout_zero_init=True)


# --- identity at the base width (card 7.1) -------------------------------------------------------------------------

@pytest.mark.parametrize("tied", [False, True])
def test_mup_and_lv_identical_at_base_width(tied):
    n = 48
    runs = {}
    for regime in ("sp", "mup", "lv"):
        torch.manual_seed(0)
        model = mv.TinyGPT(40, n, n_layer=1, head_dim=16, tied=tied)
        mult = mv.init_parametrization(model, regime, n, n)
        groups = mv.param_groups(model, 1e-2, regime, n, n, weight_decay=0.1)
        opt = torch.optim.AdamW(groups)
        idx = torch.randint(0, 40, (2, 9), generator=torch.Generator().manual_seed(1))
        logits = model(idx[:, :-1])
        nn.functional.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten()).backward()
        opt.step()
        runs[regime] = (mult, [(g["name"], g["lr"], g["weight_decay"]) for g in groups], logits.detach(),
                        [p.detach().clone() for p in model.parameters()])
    for regime in ("mup", "sp"):
        a, b = runs["lv"], runs[regime]
        assert a[0] == b[0] == 1.0 and a[1] == b[1]
        assert torch.equal(a[2], b[2])  # bitwise-equal forward
        assert all(torch.equal(x, y) for x, y in zip(a[3], b[3]))  # and bitwise-equal after one AdamW step


# --- init statistics (card 7.4) -------------------------------------------------------------------------------------

def _init_model(regime, n, base, **kw):
    torch.manual_seed(0)
    model = mv.TinyGPT(512, n, n_layer=1, head_dim=16)
    mult = mv.init_parametrization(model, regime, n, base, **kw)
    return model, mult


@pytest.mark.parametrize("regime", mv.REGIMES)
def test_init_statistics_match_the_table(regime):
    base = 64
    eff = {}
    for n in (64, 256, 512):
        model, mult = _init_model(regime, n, base)
        w = n / base
        blk = model.blocks[0]
        # hidden: sigma0 * w^(-1/2) with sigma0 = 1/sqrt(base fan_in), for fan_in = n and fan_in = 4n
        assert blk.qkv.weight.std().item() == pytest.approx(1 / math.sqrt(base) / math.sqrt(w), rel=0.03)
        assert blk.fc_out.weight.std().item() == pytest.approx(1 / math.sqrt(4 * base) / math.sqrt(w), rel=0.03)
        assert model.wte.weight.std().item() == pytest.approx(1.0, rel=0.03)  # embedding: independent of n
        eff[n] = model.lm_head.weight.std().item() * mult                    # effective readout scale
        assert model.readout_multiplier == mult == mv.readout_multiplier(regime, n, base)
    expo = -0.5 if regime == "sp" else -1.0  # std * multiplier ~ 1/sqrt(n) (sp) or 1/n (mup, lv)
    for n in (256, 512):
        assert eff[n] / eff[64] == pytest.approx((n / 64) ** expo, rel=0.03)


def test_zero_init_readout_gives_exactly_zero_logits():
    model, _ = _init_model("mup", 128, 64, readout_zero_init=True)
    logits = model(torch.randint(0, 512, (2, 7)))
    assert logits.shape == (2, 7, 512) and torch.count_nonzero(logits) == 0


# --- Adam first-step embedding oracle (card 7.5) --------------------------------------------------------------------

@pytest.mark.parametrize("regime", ["mup", "lv"])
def test_adam_first_step_moves_present_embedding_rows_by_lr_emb(regime):
    base, lr, V = 32, 1e-2, 40
    idx = torch.randint(0, 20, (2, 9), generator=torch.Generator().manual_seed(0))  # tokens 20..39 never appear
    present = torch.zeros(V, dtype=torch.bool)
    present[idx[:, :-1].flatten()] = True  # rows that get a gradient (inputs; targets only reach the readout)
    for n in (32, 128):
        torch.manual_seed(0)
        model = mv.TinyGPT(V, n, n_layer=1, head_dim=16)
        mv.init_parametrization(model, regime, n, base)
        groups = mv.param_groups(model, lr, regime, n, base)
        lr_emb = next(g["lr"] for g in groups if g["name"] == "embedding")
        assert lr_emb == pytest.approx(lr if regime == "mup" else lr / math.sqrt(n / base))
        opt = torch.optim.Adam(groups, betas=(0.9, 0.95), eps=1e-12)
        before = model.wte.weight.detach().clone()
        logits = model(idx[:, :-1])
        nn.functional.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten()).backward()
        opt.step()
        delta = (model.wte.weight.detach() - before).double()
        # step 1: m_hat = g, v_hat = g^2, so every coordinate moves by lr * g / (|g| + eps) = lr_emb * sign(g)
        assert torch.allclose(delta[present].abs(), torch.full_like(delta[present], lr_emb), rtol=1e-4, atol=0)
        rms = delta[present].pow(2).mean(-1).sqrt()
        assert torch.allclose(rms, torch.full_like(rms, lr_emb), rtol=1e-4)
        assert torch.count_nonzero(delta[~present]) == 0  # absent rows do not move


def test_absent_rows_then_move_only_by_decaying_momentum():
    """After step 1 a token that disappears moves by lr * (b1/sqrt(b2))^(t-1) * bias-correction factors."""
    b1, b2, lr, n = 0.9, 0.95, 1e-2, 64
    torch.manual_seed(0)
    model = mv.TinyGPT(30, n, n_layer=1, head_dim=16)
    mv.init_parametrization(model, "lv", n, 32)
    opt = torch.optim.Adam(mv.param_groups(model, lr, "lv", n, 32), betas=(b1, b2), eps=1e-12)
    lr_emb = lr / math.sqrt(n / 32)
    first = torch.tensor([[25, 3, 4, 5, 6]])   # token 25 appears only in the first batch
    later = torch.tensor([[1, 2, 3, 4, 5]])
    for t in range(1, 5):
        idx = first if t == 1 else later
        row = model.wte.weight[25].detach().clone()
        logits = model(idx[:, :-1])
        opt.zero_grad()
        nn.functional.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten()).backward()
        if t == 1:
            sign = -model.wte.weight.grad[25].sign()
        opt.step()
        step = (model.wte.weight[25].detach() - row).double()
        expect = (lr_emb * (b1 / math.sqrt(b2)) ** (t - 1) * (1 - b1) / (1 - b1 ** t)
                  * math.sqrt(1 - b2 ** t) / math.sqrt(1 - b2))
        assert torch.allclose(step, expect * sign.double(), rtol=1e-4, atol=1e-9)


# --- coordinate check (card 7.6) ----------------------------------------------------------------------------------

WIDTHS = [32, 64, 128, 256]


@pytest.fixture(scope="module")
def coord_slopes_by_regime():
    out = {}
    for regime in mv.REGIMES:
        stats = mv.coord_check(lambda n: mv.TinyGPT(64, n, n_layer=2, head_dim=16), WIDTHS, steps=3, lr=1e-2,
                               regime=regime)
        out[regime] = mv.coord_slopes(stats, WIDTHS)
    return out


@pytest.mark.parametrize("regime", ["mup", "lv"])
def test_coordinate_check_is_flat_under_mup_and_lv(coord_slopes_by_regime, regime):
    slopes = coord_slopes_by_regime[regime]
    assert "lm_head" in slopes and "blocks.1.attn_logits" in slopes and "wte" in slopes
    for name, s in slopes.items():
        assert np.all(np.abs(s[2:]) < 0.15), (name, s)  # t >= 2 updates: every module output flat in width


def test_coordinate_check_negative_control_sp_readout_blows_up(coord_slopes_by_regime):
    s = coord_slopes_by_regime["sp"]["lm_head"]
    assert s[1] >= 0.5, s  # SP + Adam: one step already makes logits grow with width
    # and the same check passes for muP on that module, so the test can tell the two apart
    assert abs(coord_slopes_by_regime["mup"]["lm_head"][1]) < 0.15


# --- toy large-vocabulary model (card 7.8) --------------------------------------------------------------------------

def test_toy_grads_match_autograd_reference():
    g = torch.Generator().manual_seed(0)
    m, n, B = 37, 19, 23  # awkward sizes, repeated tokens in the batch
    E, W = torch.randn(m, n, generator=g), 0.3 * torch.randn(m, n, generator=g)
    x = torch.randint(0, m, (B,), generator=g)
    teacher = mv.ToyTeacher(m, seed=3)
    ref = mv.toy_grads_reference(E, W, x, teacher.logp(x))
    out = mv.toy_grads(E, W, x, teacher.logp(x))
    for a, b in zip(out, ref):
        assert (a - b).norm() / b.norm() < 1e-5
    assert torch.count_nonzero(out[1][torch.isin(torch.arange(m), x, invert=True)]) == 0


def test_toy_student_learns_and_kl_is_nonnegative():
    scores = mv.lv_sweep(64, 32, [1e-12, 2 ** -2], [1e-12, 2 ** -7], seeds=(0,), steps=60, batch=32, tail=4)[0]
    table = mv.ToyTeacher(64).table()
    kl0 = (table.exp() * (table + math.log(64))).sum(-1).mean().item()  # W = 0: the student is uniform
    assert np.all(scores >= 0) and scores[0] == pytest.approx(kl0, rel=1e-4)  # (almost) no training: no change
    assert scores[1] < 0.5 * kl0  # training both layers cuts the excess loss


def test_token_stream_shows_every_token_equally_often():
    x = mv.token_stream(64, 20, 32, seed=3)  # 10 epochs of 64 tokens
    assert x.shape == (20, 32) and torch.equal(torch.bincount(x.flatten(), minlength=64), torch.full((64,), 10))
    assert not torch.equal(x, mv.token_stream(64, 20, 32, seed=4))


@pytest.mark.parametrize("optimizer", mv.OPTIMIZERS)
@pytest.mark.parametrize("m,batch", [(24, 8), (12, 16)])  # (12, 16): repeated tokens inside a batch
def test_batched_sweep_equals_the_per_run_loop(optimizer, m, batch):
    """All (seed, LR pair) students trained as stacked tensors give the same losses as one autograd run each."""
    lr_emb, lr_out = [2 ** -1, 2 ** -3, 2 ** -6], [2 ** -5, 2 ** -8, 2 ** -3]
    kw = dict(optimizer=optimizer, steps=12, batch=batch, tail=3, dtype=torch.float64)
    fast = mv.lv_sweep(m, 8, lr_emb, lr_out, seeds=(0, 1), **kw)
    loop = np.array([[mv.lv_run_reference(m, 8, a, b, seed=s, **kw) for a, b in zip(lr_emb, lr_out)] for s in (0, 1)])
    assert fast.shape == (2, 3) and np.ptp(loop) > 0.1  # the settings really differ
    assert np.allclose(fast, loop, rtol=1e-6, atol=0)
    f32 = mv.lv_sweep(m, 8, lr_emb, lr_out, seeds=(0, 1), **{**kw, "dtype": torch.float32})
    assert np.allclose(f32, loop, rtol=1e-3)  # float32 (the experiment's dtype) agrees too


def test_sweep_rejects_bad_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        mv.lv_sweep(16, 8, [0.1], [0.1], optimizer="sgd")
    with pytest.raises(ValueError, match="equal length"):
        mv.lv_sweep(16, 8, [0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="tail"):
        mv.lv_sweep(16, 8, [0.1], [0.1], steps=3, tail=4)


# --- interior-optimum check and alpha ------------------------------------------------------------------------------

def _surface(u, v, u0, v0, ridge=False):
    """exp of an exact quadratic in (log2 lr_emb, log2 lr_out) with its vertex at (u0, v0); ridge: depends on
    u + v only (the two LRs trade off exactly)."""
    U, V = np.meshgrid(u, v, indexing="ij")
    q = (U + V - u0 - v0) ** 2 if ridge else 0.3 * (U - u0) ** 2 + 0.2 * (U - u0) * (V - v0) + 0.5 * (V - v0) ** 2
    return np.exp(q - 3.0)


def test_fit_optimum_recovers_an_interior_vertex_and_flags_the_others():
    u, v = np.arange(-4, -1.9, 0.5), np.arange(-9, -6.9, 0.5)  # 5 x 5 half-octave grid
    f = mv.fit_optimum(u, v, _surface(u, v, -3.2, -7.9))
    assert f["interior"] and f["u"] == pytest.approx(-3.2, abs=1e-9) and f["v"] == pytest.approx(-7.9, abs=1e-9)
    f = mv.fit_optimum(u, v, _surface(u, v, -1.0, -8.0))  # vertex beyond the grid: argmin on the edge
    assert not f["interior"] and "edge" in f["why"] and f["u"] == -2.0
    f = mv.fit_optimum(u, v, _surface(u, v, -3.0, -8.0, ridge=True))  # a ridge: no isolated optimum
    assert not f["interior"]
    tilted = _surface(u, v, -3.0, -8.0, ridge=True) * _surface(u, v, -3.0, -8.0) ** 0.01  # a weak optimum
    f = mv.fit_optimum(u, v, tilted)
    assert f["interior"] and f["u"] == pytest.approx(-3.0, abs=1e-6)  # found, but barely identified:
    assert f["rise_ratio"] < 0.01 and f["rise_product"] > 0.5


def test_alpha_is_the_slope_of_the_fitted_ratio_and_the_bootstrap_covers_it():
    rng = np.random.default_rng(0)
    grids, widths = {}, [16, 32, 64, 128]
    for n in widths:  # optimum lr_emb* ~ n^-0.25, lr_out* ~ n^-0.75: ratio ~ n^0.5 (the LV claim)
        u0, v0 = -3 - 0.25 * math.log2(n / 16), -7 - 0.75 * math.log2(n / 16)
        u, v = np.round(u0 * 2) / 2 + np.arange(-2, 3) / 2, np.round(v0 * 2) / 2 + np.arange(-2, 3) / 2
        seeds = [_surface(u, v, u0 + d, v0 - d) for d in rng.normal(0, 0.1, 3)]  # seed noise along the ratio
        grids[n] = (u, v, np.stack(seeds))
    r = mv.alpha_with_bootstrap(grids, n_boot=200)
    assert all(f["interior"] for f in r["fits"].values())
    assert r["alpha"] == pytest.approx(mv.fit_alpha(widths, [r["fits"][n]["u"] - r["fits"][n]["v"] for n in widths]))
    assert abs(r["alpha"] - 0.5) < 0.15 and r["lo"] <= r["alpha"] <= r["hi"] and r["hi"] - r["lo"] > 0
    noiseless = {n: (u, v, s[:1].repeat(2, 0)) for n, (u, v, s) in grids.items()}  # identical seeds
    r0 = mv.alpha_with_bootstrap(noiseless, n_boot=50)
    assert r0["lo"] == r0["hi"] == pytest.approx(r0["alpha"])


def test_grid_search_moves_its_window_to_a_far_optimum(monkeypatch):
    """The window starts 2.5 octaves from the optimum; it must end with the optimum inside, training each point once."""
    trained = []

    def fake_sweep(m, n, lr_emb, lr_out, seeds, optimizer, **kw):
        u, v = np.log2(lr_emb), np.log2(lr_out)
        trained.extend(zip(u, v))
        s = np.exp(0.3 * (u + 0.5) ** 2 + 0.5 * (v + 9.7) ** 2)
        return np.stack([s] * len(seeds))

    monkeypatch.setattr(mv, "lv_sweep", fake_sweep)
    u, v, scores, shifts = mv.lr_grid_search(64, 8, (-3.0, -8.0), "sign", seeds=(0, 1))
    f = mv.fit_optimum(u, v, scores.mean(0))
    assert f["interior"] and f["u"] == pytest.approx(-0.5) and f["v"] == pytest.approx(-9.7)
    assert shifts >= 2 and len(trained) == len(set(trained))


# --- grid-free cross-check --------------------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", mv.OPTIMIZERS)
@pytest.mark.parametrize("sparse", [False, True])
def test_cross_check_exponent_on_a_case_with_a_known_answer(optimizer, sparse):
    """One token x, W = u v^T / n with v in {+-1}^n, embedding row h in {+-1, 0}^n with k nonzeros. A sign step
    moves E[x] by +-v, so the logits move by +-u (s_emb = RMS(u), flat in n); the readout step is
    sign(g) sign(h)^T, which moves every logit by ||h||_1 = k (s_out = k). Exponent of s_out/s_emb: 1 for k = n,
    1/2 for k = sqrt(n). Adam's first step is the sign step too (up to eps)."""
    m, ratios, widths = 40, [], [16, 64, 256]
    g = torch.Generator().manual_seed(0)
    u = torch.randn(m, 1, generator=g, dtype=torch.float64)
    for n in widths:
        k = int(math.isqrt(n)) if sparse else n
        v = torch.randint(0, 2, (1, n), generator=g).double() * 2 - 1
        h = torch.zeros(n, dtype=torch.float64)
        h[torch.randperm(n, generator=g)[:k]] = torch.randint(0, 2, (k,), generator=g).double() * 2 - 1
        E = torch.randn(m, n, generator=g, dtype=torch.float64)
        E[3] = h
        W = u @ v / n
        x = torch.tensor([[3]])
        p_star = torch.softmax(torch.randn(1, 1, m, generator=g, dtype=torch.float64), -1)
        states = [(torch.zeros_like(E)[None], torch.zeros_like(E)[None]) for _ in range(2)]
        s_emb, s_out = mv.update_sensitivity(E[None], W[None], x, p_star, optimizer, states, t=1)
        assert s_emb.item() == pytest.approx(u.pow(2).mean().sqrt().item(), rel=1e-4)  # Adam: eps
        assert s_out.item() == pytest.approx(k, rel=1e-4)
        ratios.append(s_out.item() / s_emb.item())
    assert mv.fit_alpha(widths, np.log2(ratios)) == pytest.approx(0.5 if sparse else 1.0, abs=1e-4)


def test_lv_experiment_pipeline_reports_alpha_contrast_and_cross_check():
    logs = []
    res = mv.lv_experiment(("sign",), widths=(8, 16), vocab=32, control_vocab=8, seeds=(0, 1), steps=8, batch=16,
                           warm=4, size=3, n_boot=20, log=logs.append)
    r = res["sign"]
    assert set(r) == {"lv", "mup", "contrast"} and len(logs) == 4
    assert r["lv"]["m"] == 32 and r["mup"]["m"] == 8
    for regime in ("lv", "mup"):
        a = r[regime]
        ys = [a["fits"][n]["u"] - a["fits"][n]["v"] for n in (8, 16)]
        assert a["alpha"] == pytest.approx(ys[1] - ys[0])  # two widths one octave apart: the slope is the difference
        assert math.isfinite(a["cross_alpha"]) and a["lo"] <= a["hi"]
    assert r["contrast"]["value"] == pytest.approx(r["lv"]["alpha"] - r["mup"]["alpha"])
