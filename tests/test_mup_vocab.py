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
        expect = lr_emb * (b1 / math.sqrt(b2)) ** (t - 1) * (1 - b1) / (1 - b1 ** t) * math.sqrt(1 - b2 ** t) / math.sqrt(1 - b2)
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
    scores = mv.lv_toy_run(64, 32, [0.0, 2 ** -4], 2 ** -5, steps=60, batch=32, tail=10)
    assert np.all(scores >= 0)
    # at initialization W = 0, so the KL is the teacher's KL to uniform; training with both LRs must cut it
    x = torch.multinomial(mv.zipf_probs(64), 4096, replacement=True, generator=torch.Generator().manual_seed(0))
    lp = mv.ToyTeacher(64).logp(x)
    kl0 = (lp.exp() * (lp + math.log(64))).sum(-1).mean().item()
    assert scores[1] < 0.5 * kl0 and scores[1] < scores[0]  # training the embedding helps at this m, n


def test_optimum_log2_recovers_a_known_vertex_and_flags_edges():
    grid = [2.0 ** k for k in range(-6, 1)]
    true = -2.3
    scores = [math.exp(0.2 * (math.log2(g) - true) ** 2) for g in grid]  # log-score is an exact parabola
    l2, edge = mv.optimum_log2(grid, scores)
    assert not edge and l2 == pytest.approx(true, abs=1e-9)
    assert mv.optimum_log2(grid, sorted(scores, reverse=True)) == (0.0, True)


def test_lv_experiment_pipeline_fits_an_exponent():
    logs = []
    res = mv.lv_experiment(widths=(8, 16, 32), vocabs=(16, "2n"), grid_log2=range(-6, 0), steps=30, batch=16,
                           base_width=8, log=logs.append)
    assert [row["m"] for row in res["2n"]["rows"]] == [16, 32, 64]  # "2n": the vocabulary grows with the width
    r = res[16]
    assert len(r["rows"]) == 3 and math.isfinite(r["alpha"]) and len(logs) == 8
    ys = [row["log2_ratio"] for row in r["rows"]]
    assert r["alpha"] == pytest.approx(np.polyfit(np.log2([8, 16, 32]), ys, 1)[0])
    for row in r["rows"]:  # ratio = lr_emb* / lr_out with lr_out = eta_out * base / n
        assert row["log2_ratio"] == pytest.approx(row["log2_lr_emb_star"] - math.log2(2.0 ** -7 * 8 / row["n"]))


def test_toy_students_trained_side_by_side_are_independent():
    both = mv.lv_toy_run(48, 16, [2 ** -3, 2 ** -5], [2 ** -6, 2 ** -4], steps=25, batch=8, tail=5)
    one = mv.lv_toy_run(48, 16, [2 ** -5], 2 ** -4, steps=25, batch=8, tail=5)
    assert both[1] == pytest.approx(one[0], rel=1e-6) and both[0] != pytest.approx(both[1], rel=1e-3)
