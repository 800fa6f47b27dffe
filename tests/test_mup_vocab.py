"""Tests for mup_vocab.py: the claims of the paper card (shared/papers/mup_vocab.md Sec. 7)."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import mup_vocab as mv


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
        assert "readout" not in by and any(p is model.wte.weight for p in by["embedding"]["params"])
        assert len(by["embedding"]["params"]) == 1
    else:
        assert by["readout"]["lr"] == lr and by["readout"]["params"][0] is model.lm_head.weight
    for g in groups:  # coupled wd: lr_group * wd_group = lr * wd on every decayed group, whatever the width
        assert g["lr"] == pytest.approx(lr * g["lr_scale"])
        if g["name"] != "vector":
            assert g["lr"] * g["weight_decay"] == pytest.approx(lr * wd, rel=1e-12)
    hidden_ids = {id(p) for p in by["hidden"]["params"]}
    assert hidden_ids == {id(p) for nm, p in model.named_parameters() if p.ndim == 2 and "wte" not in nm
                          and "lm_head" not in nm}
    torch.optim.AdamW(groups)  # groups are accepted by torch as they are


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
