"""SP / muP / large-vocabulary (LV) parametrizations and the sqrt(width) embedding-LR rule.

Paper: Soufiane Hayou, Liyuan Liu, "Optimal Embedding Learning Rate in LLMs: The Effect of Vocabulary Size",
arXiv:2506.15025 (2025). Background tables: Tensor Programs V (TP5, Yang et al., arXiv:2203.03466) and
microsoft/mup. Paper card: shared/papers/mup_vocab.md (section numbers below refer to it).

The claim (abstract): muP lets the width n grow with the input dimension fixed, but an LLM's input dimension is
the vocabulary size m, usually m >> n. When m grows with n ("large-vocabulary regime") the optimal ratio
embedding-LR / hidden-LR scales as Theta(sqrt(n)), not Theta(n) as muP predicts.

What is implemented (Adam/AdamW; w = width / base_width; eta = the base LR tuned at base_width):

    ratio(n) = lr_emb(n) / lr_hidden(n) = w**alpha,   alpha = 0 (sp), 1 (mup), 1/2 (lv)     (card Sec. 3)

    class            | sp                    | mup                         | lv (card Sec. 3, variant (i))
    -----------------+-----------------------+-----------------------------+-------------------------------
    embedding LR     | eta                   | eta                         | eta / sqrt(w)
    hidden LR        | eta                   | eta / w                     | eta / w
    readout LR       | eta                   | eta       (TP5 Table 8)     | eta
    vector LR        | eta                   | eta                         | eta
    embedding init   | N(0, emb_std^2)       | N(0, emb_std^2)             | N(0, emb_std^2)
    hidden init      | N(0, s^2 / fan_in)    | N(0, s^2 / fan_in)          | N(0, s^2 / fan_in)
    readout init     | N(0, s^2 / fan_in)    | N(0, s^2 * w / fan_in)      | same as mup     (= const in n)
    readout mult.    | 1                     | output_mult / w             | output_mult / w
    weight decay     | wd * eta / lr_group on every matrix (so lr*wd = eta*wd, invariant in w), 0 on vectors

  (s = init_scale, default 1.) At n = base_width every regime gives the same LRs, inits and multipliers. The
  effective readout scale std * multiplier is ~ 1/n under mup/lv (TP5 Table 3's "output init var 1/n^2") and
  ~ 1/sqrt(n) under sp. The readout multiplier is applied to the readout *input* (nanoGPT-mup style), which for
  a bias-free readout equals multiplying the logits.

Contract for a model (train.py's GPT follows it):
  * embeddings are nn.Embedding modules (token `wte`, positional if any); the readout is `model.lm_head`
    (or pass `readout=`), possibly weight-tied to `wte`; every other nn.Linear / nn.ConvNd weight is a hidden
    matrix whose fan_in is prod(shape[1:]) (nn.Linear layout (out, in)); everything else (RMSNorm gains, biases,
    and raw >= 2-D parameters such as RAttention's per-head norm gains (H, D)) is a "vector": base LR, no decay,
    init left as constructed (names ending in "bias" are zeroed).
  * call `mult = init_parametrization(model, regime, width, base_width)` once after construction, then
    `torch.optim.AdamW(param_groups(model, lr, regime, width, base_width, weight_decay), betas=...)`.
  * the forward pass must compute `logits = lm_head(x * mult)` (or `F.linear(x * mult, wte.weight)` when tied).
    If the model defines a float attribute `readout_multiplier`, init_parametrization sets it to `mult`.
  * LR schedules must rescale every group relatively: `g["lr"] = g["lr_scale"] * lr_at_step(t)`; each group
    carries `lr_scale` (its LR divided by the base LR) and `name` in {"embedding","hidden","readout","vector"}.
  * attention: with a fixed head dim D (heads grow with width) 1/sqrt(D) is fine; if D grows with width muP asks
    for 1/D (card Sec. 4).

  * other output heads (e.g. a critic's Linear(n, 1) value head) in the same model are classified "hidden";
    give a separate critic its own call with `readout=critic.value_head` to treat the head as a readout.

Tied embedding/readout (card Sec. 6, pitfall 2): the tied matrix goes in the "embedding" group once, so it gets
the embedding LR (eta for sp/mup -- where it coincides with the readout LR -- and eta/sqrt(w) for lv, the rule
this file is about). It is initialized by the readout rule (std s/sqrt(base_width) under mup/lv, constant in n as
TP5 Table 8 asks of both an input and an output layer; s/sqrt(width) under sp): an N(0, 1) matrix used as readout
would give logits of size sqrt(base_width).

Measured (2-core shared CPU, torch 2.13.0; see README): the coordinate check is flat for mup/lv (|slope| <= 0.05
for every module at widths 32..512) and SP's logits grow ~ width^0.96 after one step. In the toy model the fitted
exponent of the optimal lr_emb / lr_out against width was 0.81 (m = 64), 0.94 (m = 8192) and 1.11 (m = 16 n):
muP-like in all three vocabulary regimes; this miniature did NOT reproduce the paper's sqrt(width) law at its
default 200-step horizon. At m = 8192 the exponent falls with the horizon (0.84 at 400 steps, 0.76 / 0.79 for two
seeds at 800); at m = 16 n it rises (1.20 at 800 steps).

Deviations from the paper:
  * The paper's own per-layer LV table, base width, base LR and toy settings are not retrievable (card Sec. 8);
    the lv regime here is the card's derived "variant (i)": muP everywhere except embedding LR eta/sqrt(w).
    Its constant is chosen so that lv == mup at n = base_width.
  * No SGD tables; Adam/AdamW only. The paper's theory uses SignSGD as a proxy for Adam.
  * The toy experiment (`--lv-experiment`) is this project's miniature of the paper's setting (card Sec. 7.8)
    with a fixed hidden/readout LR and a 1-D sweep of the embedding LR, not the paper's protocol.

Run:
    python mup_vocab.py                   # LR / init table for widths 64..1024 under each regime (seconds)
    python mup_vocab.py --coord           # coordinate check of a tiny transformer, slope per module (~30 s)
    python mup_vocab.py --lv-experiment   # toy embedding->readout model, emb-LR exponent (10 min on the shared
                                          #   CPU; flags: --vocabs 64,8192,16n --widths --steps --batch --seeds)
    python mup_vocab.py --readout-check   # is the fixed readout LR of the toy near-optimal at every width?
    pytest tests/test_mup_vocab.py -q
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------------------------
# Regime tables
# ----------------------------------------------------------------------------------------------------------------

REGIMES = ("sp", "mup", "lv")
GROUP_NAMES = ("embedding", "hidden", "readout", "vector")


def _check_regime(regime, width, base_width):
    if regime not in REGIMES:
        raise ValueError(f"regime must be one of {REGIMES}, got {regime!r}")
    for name, v in (("width", width), ("base_width", base_width)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be a positive int, got {type(v).__name__}")
        if v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v}")
    return float(width) / float(base_width)  # w, float64


def lr_multipliers(regime: str, width: int, base_width: int) -> dict:
    """Per-class LR multipliers (group LR = base LR * multiplier), in float64.

    Returns {"embedding", "hidden", "readout", "vector"} -> float. ratio embedding/hidden = 1, w, sqrt(w)."""
    w = _check_regime(regime, width, base_width)
    if regime == "sp":
        return {"embedding": 1.0, "hidden": 1.0, "readout": 1.0, "vector": 1.0}
    emb = 1.0 if regime == "mup" else 1.0 / math.sqrt(w)  # lv: eta / sqrt(w)  (card Sec. 3, variant (i))
    return {"embedding": emb, "hidden": 1.0 / w, "readout": 1.0, "vector": 1.0}


def readout_multiplier(regime: str, width: int, base_width: int, output_mult: float = 1.0) -> float:
    """Forward multiplier applied to the readout input: 1 (sp), output_mult / w (mup, lv; TP5 Table 8)."""
    w = _check_regime(regime, width, base_width)
    return 1.0 if regime == "sp" else float(output_mult) / w


def init_stds(regime: str, width: int, base_width: int, fan_in: int, init_scale: float = 1.0,
              emb_std: float = 1.0) -> dict:
    """Init std per class for a matrix with the given fan_in (the width-like input dimension)."""
    w = _check_regime(regime, width, base_width)
    if fan_in <= 0:
        raise ValueError(f"fan_in must be positive, got {fan_in}")
    hidden = init_scale / math.sqrt(fan_in)                      # var 1/fan_in in every regime
    readout = hidden if regime == "sp" else init_scale * math.sqrt(w / fan_in)  # mup/lv: const in n
    return {"embedding": float(emb_std), "hidden": hidden, "readout": readout}


# ----------------------------------------------------------------------------------------------------------------
# Parameter classification, optimizer groups, initialization
# ----------------------------------------------------------------------------------------------------------------

def _readout_weight(model, readout):
    if readout is None:
        readout = getattr(model, "lm_head", None)
        if readout is None:
            raise ValueError("readout: model has no attribute 'lm_head'; pass readout=<nn.Module or nn.Parameter>")
    if isinstance(readout, nn.Parameter):
        return readout, None
    if isinstance(readout, nn.Module) and isinstance(getattr(readout, "weight", None), nn.Parameter):
        b = getattr(readout, "bias", None)
        return readout.weight, b if isinstance(b, nn.Parameter) else None
    raise TypeError(f"readout must be an nn.Module with a .weight Parameter or an nn.Parameter, "
                    f"got {type(readout).__name__}")


def classify_parameters(model: nn.Module, readout=None) -> dict:
    """Map each distinct parameter to (class, name). Classes: embedding, hidden, readout, vector.

    nn.Embedding weights are embeddings (a readout tied to one stays an embedding); the readout weight is the
    readout; other nn.Linear / nn.ConvNd weights are hidden; everything else is a vector (gains, biases, the
    readout bias, raw 2-D parameters such as per-head norm gains (H, D): one width-like dim at most, so mup calls
    them vector-like)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    rw, _ = _readout_weight(model, readout)
    emb_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    mat_ids = {id(m.weight) for m in model.modules()
               if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and m.weight.ndim >= 2}
    out = {}
    for name, p in model.named_parameters():  # named_parameters() yields a shared tensor once
        if id(p) in emb_ids:
            cls = "embedding"
        elif p is rw:
            cls = "readout"
        elif id(p) in mat_ids:
            cls = "hidden"
        else:
            cls = "vector"
        out[id(p)] = (cls, name, p)
    if id(rw) not in out:
        raise ValueError("readout: its weight is not a parameter of model")
    return out


def is_tied(model: nn.Module, readout=None) -> bool:
    rw, _ = _readout_weight(model, readout)
    return any(isinstance(m, nn.Embedding) and m.weight is rw for m in model.modules())


def param_groups(model: nn.Module, lr: float, regime: str, width: int, base_width: int,
                 weight_decay: float = 0.0, readout=None) -> list:
    """Optimizer parameter groups for Adam/AdamW under `regime`.

    Every parameter appears in exactly one group (a tied embedding/readout once, in "embedding"). Group LR =
    lr * lr_multipliers(...)[class]. Matrices (embedding, hidden, readout) get weight_decay * lr / group_lr, so
    that torch AdamW's per-step shrink lr_group * wd = lr * weight_decay is the same for every matrix and every
    width (mup's coupled-wd default); vectors get no decay. Each group carries "name" and "lr_scale".
    Empty classes are omitted.
    """
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive float, got {lr!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a float >= 0, got {weight_decay!r}")
    mult = lr_multipliers(regime, width, base_width)
    buckets = {k: [] for k in GROUP_NAMES}
    names = {k: [] for k in GROUP_NAMES}
    for cls, name, p in classify_parameters(model, readout).values():
        if p.requires_grad:
            buckets[cls].append(p)
            names[cls].append(name)
    groups = []
    for cls in GROUP_NAMES:
        if not buckets[cls]:
            continue
        glr = float(lr) * mult[cls]
        wd = 0.0 if cls == "vector" else float(weight_decay) * float(lr) / glr
        groups.append({"params": buckets[cls], "lr": glr, "weight_decay": wd, "name": cls,
                       "lr_scale": mult[cls], "param_names": names[cls]})
    return groups


@torch.no_grad()
def init_parametrization(model: nn.Module, regime: str, width: int, base_width: int, readout=None,
                         init_scale: float = 1.0, emb_std: float = 1.0, output_mult: float = 1.0,
                         readout_zero_init: bool = False) -> float:
    """Re-initialize `model` in place for `regime` and return the readout multiplier.

    embeddings ~ N(0, emb_std^2); hidden ~ N(0, init_scale^2 / fan_in); readout ~ N(0, init_scale^2 / fan_in)
    (sp) or N(0, init_scale^2 * w / fan_in) (mup, lv), or exactly 0 with readout_zero_init; a tied matrix follows
    the readout rule; 1-D parameters whose name ends in "bias" are zeroed, other 1-D parameters (norm gains) are
    left as constructed. If `model.readout_multiplier` exists it is set to the returned value.
    The caller's RNG (torch.manual_seed) determines the draw.
    """
    _check_regime(regime, width, base_width)
    rw, rb = _readout_weight(model, readout)
    tied = is_tied(model, readout)
    if readout_zero_init and tied:
        raise ValueError("readout_zero_init=True would zero a tied embedding; untie lm_head or pass False")
    for cls, name, p in classify_parameters(model, readout).values():
        if cls == "vector":
            if name.endswith("bias"):
                p.zero_()
            continue
        fan_in = int(np.prod(p.shape[1:]))
        stds = init_stds(regime, width, base_width, fan_in, init_scale, emb_std)
        if p is rw:  # readout (tied or not)
            if readout_zero_init:
                p.zero_()
            else:
                p.normal_(0.0, stds["readout"])
        else:
            p.normal_(0.0, stds[cls])
    mult = readout_multiplier(regime, width, base_width, output_mult)
    if isinstance(getattr(model, "readout_multiplier", None), (int, float)):
        model.readout_multiplier = mult
    return mult


# ----------------------------------------------------------------------------------------------------------------
# A tiny GPT following the contract above (used by the coordinate check and the tests)
# ----------------------------------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class TinyBlock(nn.Module):
    def __init__(self, width, head_dim):
        super().__init__()
        self.h, self.d = width // head_dim, head_dim
        self.norm1, self.norm2 = RMSNorm(width), RMSNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.attn_logits = nn.Identity()  # only so the coordinate check sees q.k / sqrt(D)
        self.fc = nn.Linear(width, 4 * width, bias=False)
        self.fc_out = nn.Linear(4 * width, width, bias=False)

    def forward(self, x):  # x (B, T, n)
        B, T, n = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.h, self.d).unbind(2)  # each (B, T, H, D)
        # fixed head dim D: heads grow with width, so 1/sqrt(D) does not change with width (card Sec. 4)
        s = self.attn_logits(torch.einsum("bthd,bshd->bhts", q, k) / math.sqrt(self.d))  # (B, H, T, T)
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
        y = torch.einsum("bhts,bshd->bthd", s.softmax(-1), v).reshape(B, T, n)
        x = x + self.proj(y)
        return x + self.fc_out(F.gelu(self.fc(self.norm2(x))))


class TinyGPT(nn.Module):
    """wte -> n_layer x (attention + MLP, pre-RMSNorm) -> RMSNorm -> lm_head(x * readout_multiplier)."""

    def __init__(self, vocab_size, width, n_layer=2, head_dim=16, tied=False):
        super().__init__()
        if width % head_dim:
            raise ValueError(f"width must be a multiple of head_dim={head_dim}, got {width}")
        self.wte = nn.Embedding(vocab_size, width)
        self.blocks = nn.ModuleList(TinyBlock(width, head_dim) for _ in range(n_layer))
        self.norm_f = RMSNorm(width)
        self.lm_head = nn.Linear(width, vocab_size, bias=False)
        if tied:
            self.lm_head.weight = self.wte.weight
        self.readout_multiplier = 1.0  # set by init_parametrization

    def forward(self, idx):  # idx (B, T) -> logits (B, T, V)
        x = self.wte(idx)
        for blk in self.blocks:
            x = blk(x)
        return self.lm_head(self.norm_f(x) * self.readout_multiplier)


# ----------------------------------------------------------------------------------------------------------------
# Coordinate check (card Sec. 4 and 7.6; mup.coord_check's method)
# ----------------------------------------------------------------------------------------------------------------

def coord_check(make_model, widths, steps=3, lr=1e-2, regime="mup", base_width=None, batch=None, seeds=(0, 1),
                betas=(0.9, 0.95), readout_zero_init=True, vocab_size=64, seq_len=8, batch_size=2, num_threads=1):
    """Train each width `steps` Adam steps on one fixed batch; record mean |output| of every leaf module.

    Defaults: the readout is zero-initialized, so the logits are exactly 0 at t = 0 and not "exempt" at t = 1
    (card Sec. 7.6); the batch is small (2 x 8 tokens) because the infinite-width behaviour needs
    width >> number of tokens whose features the Adam update averages (with 64 tokens and width 32..256 the
    muP readout slope was about -0.2 at t = 2, with 16 tokens about -0.02; measured while building this file).
    num_threads: torch intra-op threads while it runs (restored after); these ops are tiny, and on the shared
    2-core machine 2 threads took 30-40 s where 1 thread took 0.6-5 s.

    Args: make_model(width) -> nn.Module following the contract (readout `lm_head`); widths: increasing ints;
      regime: "sp" | "mup" | "lv"; base_width: defaults to widths[0]; batch: LongTensor (B, T+1) of token ids
      (default: random tokens from `vocab_size`, fixed by seed 1234). Loss = next-token cross-entropy.
    Returns: {module_name: ndarray (len(widths), steps + 1)}: entry [i, t] is mean |output| during the forward
      pass after t updates, averaged over seeds (t = 0 is the initialization).
    """
    widths = list(widths)
    if len(widths) < 2 or any(b <= a for a, b in zip(widths, widths[1:])):
        raise ValueError(f"widths must be >= 2 increasing ints, got {widths}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    base_width = widths[0] if base_width is None else base_width
    if batch is None:
        batch = torch.randint(0, vocab_size, (batch_size, seq_len + 1), generator=torch.Generator().manual_seed(1234))
    stats, old_threads = {}, torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        _coord_check_loop(make_model, widths, steps, lr, regime, base_width, batch, seeds, betas, readout_zero_init,
                          stats)
    finally:
        torch.set_num_threads(old_threads)
    return stats


def _coord_check_loop(make_model, widths, steps, lr, regime, base_width, batch, seeds, betas, readout_zero_init,
                      stats):
    for i, n in enumerate(widths):
        for seed in seeds:
            torch.manual_seed(seed)
            model = make_model(n)
            init_parametrization(model, regime, n, base_width, readout_zero_init=readout_zero_init)
            opt = torch.optim.Adam(param_groups(model, lr, regime, n, base_width), betas=betas)
            record, hooks = {}, []
            for name, mod in model.named_modules():
                if name and not list(mod.children()):
                    hooks.append(mod.register_forward_hook(
                        lambda m, a, out, name=name: record.__setitem__(name, out.detach().abs().mean().item())))
            for t in range(steps + 1):
                logits = model(batch[:, :-1])
                for name, v in record.items():
                    stats.setdefault(name, np.zeros((len(widths), steps + 1)))[i, t] += v / len(seeds)
                if t == steps:
                    break
                loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            for h in hooks:
                h.remove()


def fit_slope(x, y) -> float:
    """Least-squares slope of log(y) against log(x)."""
    lx, ly = np.log(np.asarray(x, dtype=np.float64)), np.log(np.asarray(y, dtype=np.float64))
    return float(np.polyfit(lx, ly, 1)[0])


def coord_slopes(stats: dict, widths) -> dict:
    """{module: ndarray (steps + 1,)} log-log slope of mean |output| against width, per step (nan where 0)."""
    out = {}
    for name, a in stats.items():
        out[name] = np.array([fit_slope(widths, a[:, t]) if np.all(a[:, t] > 0) else float("nan")
                              for t in range(a.shape[1])])
    return out


# ----------------------------------------------------------------------------------------------------------------
# Toy large-vocabulary experiment (card Sec. 7.8): one-hot -> embedding E (m x n) -> readout W (m x n)
# ----------------------------------------------------------------------------------------------------------------

def zipf_probs(m: int, s: float = 1.1) -> torch.Tensor:
    """p(x) proportional to 1 / (x + 1)^s over x = 0..m-1, float64, shape (m,)."""
    p = 1.0 / torch.arange(1, m + 1, dtype=torch.float64) ** s
    return p / p.sum()


class ToyTeacher:
    """Fixed teacher p*(.|x) = softmax(tau * (A B^T)_x / sqrt(r)), A, B ~ N(0, 1)^(m x r) (card Sec. 7.8).

    `logp(x)` gives the (B, m) rows for a batch of tokens without ever forming the (m, m) matrix."""

    def __init__(self, m: int, rank: int = 8, tau: float = 3.0, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.a, self.b = torch.randn(m, rank, generator=g), torch.randn(m, rank, generator=g)
        self.scale = tau / math.sqrt(rank)

    def logp(self, x):  # x (B,) -> (B, m)
        return torch.log_softmax(self.scale * (self.a[x] @ self.b.T), dim=-1)


def toy_grads_reference(E, W, x, logp_star):
    """Literal autograd version of toy_grads. E, W (m, n); x (B,); logp_star (B, m)."""
    E, W = E.detach().clone().requires_grad_(True), W.detach().clone().requires_grad_(True)
    logits = E[x] @ W.T                                                     # (B, m)
    kl = (logp_star.exp() * (logp_star - torch.log_softmax(logits, -1))).sum(-1).mean()
    kl.backward()
    return kl.detach(), E.grad, W.grad


def toy_grads(E, W, x, logp_star):
    """Batch-mean KL(p*(.|x) || softmax(W E[x])) and its gradients, written out by hand (no autograd graph).

    E, W (m, n); x (B,) token ids; logp_star (B, m). Returns kl (scalar), dE (m, n), dW (m, n)."""
    h = E[x]                                                                # (B, n)
    logp = torch.log_softmax(h @ W.T, -1)                                   # (B, m)
    p_star = logp_star.exp()
    kl = (p_star * (logp_star - logp)).sum(-1).mean()
    dlogits = (logp.exp() - p_star) / x.shape[0]                            # (B, m)   d KL / d logits
    dW = dlogits.T @ h                                                      # (m, n)
    dE = torch.zeros_like(E).index_add_(0, x, dlogits @ W)                  # (m, n)   rows of absent tokens: 0
    return kl, dE, dW


def lv_toy_run(m, n, lr_emb, lr_out, steps=250, batch=64, seed=0, zipf_s=1.1, tail=50, teacher=None):
    """Train one toy student per entry of lr_emb on the same token stream; return mean KL over the last `tail`.

    Student (TP5 Table 3 form, no multipliers): E ~ N(0, 1), W = 0, logits = W E[x]. torch Adam (fused),
    betas (0.9, 0.999), no weight decay, constant LR: lr_emb[g] on E_g, lr_out on W_g. Every student sees the
    same init and the same tokens (common random numbers, so LR comparisons are not blurred by data noise).
    Returns ndarray (G,) of excess loss (KL to the teacher; inf if it diverged)."""
    lr_emb = [float(v) for v in np.atleast_1d(lr_emb)]
    lr_out = [float(v) for v in np.broadcast_to(np.asarray(lr_out, dtype=np.float64), (len(lr_emb),))]
    teacher = ToyTeacher(m) if teacher is None else teacher
    gen = torch.Generator().manual_seed(seed)
    E0 = torch.randn(m, n, generator=gen)
    Es = [nn.Parameter(E0.clone()) for _ in lr_emb]
    Ws = [nn.Parameter(torch.zeros(m, n)) for _ in lr_emb]
    groups = ([{"params": [e], "lr": lr} for e, lr in zip(Es, lr_emb)]
              + [{"params": [w], "lr": lr} for w, lr in zip(Ws, lr_out)])
    opt = torch.optim.Adam(groups, betas=(0.9, 0.999), fused=True)
    probs = zipf_probs(m, zipf_s)
    scores = np.zeros(len(lr_emb))
    for t in range(1, steps + 1):
        x = torch.multinomial(probs, batch, replacement=True, generator=gen)  # (B,)  Zipf tokens
        logp_star = teacher.logp(x)                                            # (B, m)
        for g, (E, W) in enumerate(zip(Es, Ws)):
            kl, E.grad, W.grad = toy_grads(E.data, W.data, x, logp_star)
            if t > steps - tail:
                scores[g] += kl.item() / tail
        opt.step()
    return np.nan_to_num(scores, nan=float("inf"))


def optimum_log2(grid, scores) -> tuple:
    """log2 of the best LR: parabola through the argmin and its two neighbours in log2(LR) (argmin at an edge:
    the edge itself, flagged). Returns (log2_lr_star, at_edge)."""
    lg = np.log2(np.asarray(grid, dtype=np.float64))
    s = np.asarray(scores, dtype=np.float64)
    i = int(np.argmin(s))
    if i == 0 or i == len(s) - 1 or not np.all(np.isfinite(s[i - 1:i + 2])):
        return float(lg[i]), True
    a, b, _ = np.polyfit(lg[i - 1:i + 2], np.log(s[i - 1:i + 2]), 2)  # log-loss is smoother near the optimum
    x = -b / (2 * a) if a > 0 else lg[i]
    return float(np.clip(x, lg[i - 1], lg[i + 1])), False


def _vocab_size(spec, n):
    """A vocab spec is an int m (fixed) or a string "<k>n" (m = k * n: the vocabulary grows with the width)."""
    if isinstance(spec, str) and spec.endswith("n"):
        return int(spec[:-1]) * n
    return int(spec)


def lv_experiment(widths=(32, 64, 128, 256, 512), vocabs=(64, 8192, "16n"), grid_log2=range(-7, 0),
                  eta_out=2.0 ** -7, base_width=32, steps=200, batch=64, seeds=(0,), log=print):
    """Sweep the embedding LR at a fixed readout LR lr_out(n) = eta_out * base_width / n (muP/TP5 Table 3) for
    each (m, n); fit log2(lr_emb*/lr_out) = alpha * log2(n) + c per vocab spec.

    vocabs: ints (fixed m) or "<k>n" strings (m = k * n, the paper's "m grows with n"). Scores are averaged over
    seeds (each seed: its own init and token stream, one teacher per m). Returns {spec: {"rows": [...], "alpha"}}."""
    grid = [2.0 ** k for k in grid_log2]
    out = {}
    for spec in vocabs:
        rows = []
        for n in widths:
            t0 = time.time()
            m = _vocab_size(spec, n)
            teacher = ToyTeacher(m)
            lr_out = eta_out * base_width / n
            scores = np.mean([lv_toy_run(m, n, grid, lr_out, steps=steps, batch=batch, seed=s, teacher=teacher)
                              for s in seeds], axis=0)
            l2, edge = optimum_log2(grid, scores)
            rows.append({"m": m, "n": n, "lr_out": lr_out, "log2_lr_emb_star": l2, "at_edge": edge,
                         "log2_ratio": l2 - math.log2(lr_out), "scores": scores, "seconds": time.time() - t0})
            log(f"m={m:5d} n={n:4d} lr_out=2^{math.log2(lr_out):6.2f} lr_emb*=2^{l2:6.2f}{' (grid edge!)' if edge else ''}"
                f" ratio=2^{l2 - math.log2(lr_out):5.2f} | KL per lr_emb 2^{grid_log2[0]}..: "
                + " ".join(f"{v:.3f}" for v in scores) + f" | {time.time() - t0:.0f}s")
        alpha = float(np.polyfit(np.log2([r["n"] for r in rows]), [r["log2_ratio"] for r in rows], 1)[0])
        out[spec] = {"rows": rows, "alpha": alpha}
        log(f"m={spec}: fitted exponent of lr_emb*/lr_out vs width: alpha = {alpha:.2f}  (muP: 1, LV claim: 0.5)")
    return out


def readout_check(widths=(32, 512), vocab=8192, lr_emb=2.0 ** -2.5, grid_log2=range(-10, -3), base_width=32,
                  steps=200, batch=64, seed=0, log=print):
    """Is the fixed readout LR of lv_experiment (eta_out * base_width / n) near-optimal at every width? Sweep
    eta_out at a fixed embedding LR; muP's readout rule holds if the optimal eta_out does not move with n.
    Returns {n: log2 eta_out*}."""
    grid = [2.0 ** k for k in grid_log2]
    out = {}
    for n in widths:
        t0 = time.time()
        m = _vocab_size(vocab, n)
        scores = lv_toy_run(m, n, [lr_emb] * len(grid), [g * base_width / n for g in grid], steps=steps,
                            batch=batch, seed=seed)
        out[n], edge = optimum_log2(grid, scores)
        log(f"m={m:5d} n={n:4d} lr_emb=2^{math.log2(lr_emb):.2f} eta_out*=2^{out[n]:6.2f}{' (grid edge!)' if edge else ''}"
            f" | KL per eta_out 2^{grid_log2[0]}..: " + " ".join(f"{v:.3f}" for v in scores)
            + f" | {time.time() - t0:.0f}s")
    return out


# ----------------------------------------------------------------------------------------------------------------
# Demo
# ----------------------------------------------------------------------------------------------------------------

def print_table(widths=(64, 128, 256, 512, 1024), base_width=64, lr=1e-3):
    print(f"base width {base_width}, base LR {lr:g} (Adam); init std for a fan_in = width matrix; "
          f"ratio = lr_emb / lr_hidden")
    print(f"{'regime':6s} {'width':>5s} | {'lr_emb':>9s} {'lr_hidden':>9s} {'lr_readout':>10s} {'ratio':>7s} | "
          f"{'std_emb':>7s} {'std_hid':>7s} {'std_out':>7s} {'mult':>7s} {'std*mult':>8s}")
    for regime in REGIMES:
        for n in widths:
            lm, st = lr_multipliers(regime, n, base_width), init_stds(regime, n, base_width, n)
            mult = readout_multiplier(regime, n, base_width)
            print(f"{regime:6s} {n:5d} | {lr * lm['embedding']:9.3g} {lr * lm['hidden']:9.3g} "
                  f"{lr * lm['readout']:10.3g} {lm['embedding'] / lm['hidden']:7.3g} | {st['embedding']:7.3g} "
                  f"{st['hidden']:7.3g} {st['readout']:7.3g} {mult:7.3g} {st['readout'] * mult:8.3g}")


def run_coord_demo(widths=(32, 64, 128, 256, 512), steps=3, lr=1e-2):
    print(f"coordinate check: TinyGPT(vocab 64, 2 layers, head dim 16), Adam lr {lr:g}, 2 seeds, fixed 2x8 batch, "
          f"zero-init readout; log-log slope of mean |output| vs width {list(widths)} after t = 1..{steps} steps")
    for regime in REGIMES:
        stats = coord_check(lambda n: TinyGPT(64, n), widths, steps=steps, lr=lr, regime=regime)
        slopes = coord_slopes(stats, widths)
        print(f"\n[{regime}]  {'module':24s} " + " ".join(f"t={t:<5d}" for t in range(1, steps + 1)))
        for name, s in slopes.items():
            flag = "  <-- not flat" if np.nanmax(np.abs(s[1:])) >= 0.15 else ""
            print(f"      {name:24s} " + " ".join(f"{v:+.2f}  " for v in s[1:]) + flag)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--coord", action="store_true", help="coordinate check of a tiny transformer (slopes)")
    ap.add_argument("--lv-experiment", action="store_true", help="toy embedding->readout model, emb-LR exponent")
    ap.add_argument("--readout-check", action="store_true",
                    help="sweep the readout LR at a fixed embedding LR (is eta_out * 32 / n near-optimal?)")
    ap.add_argument("--widths", type=str, default=None, help="comma-separated widths (default per mode)")
    ap.add_argument("--vocabs", type=str, default="64,8192,16n",
                    help="--lv-experiment: vocab sizes m; '16n' means m = 16 * width")
    ap.add_argument("--seeds", type=int, default=1, help="--lv-experiment: seeds averaged per (m, n, lr)")
    ap.add_argument("--first-seed", type=int, default=0, help="--lv-experiment: seeds are first-seed, first-seed+1, ..")
    ap.add_argument("--steps", type=int, default=200, help="--lv-experiment: Adam steps per run")
    ap.add_argument("--batch", type=int, default=64, help="--lv-experiment: tokens per step")
    ap.add_argument("--eta-out", type=float, default=2.0 ** -7, help="--lv-experiment: readout LR at width 32")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads; 1 by default: on the shared 2-core machine 2 threads ran 2-10x slower")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    widths = [int(v) for v in args.widths.split(",")] if args.widths else None
    if args.readout_check:
        for v in args.vocabs.split(","):
            readout_check(widths or (32, 512), v if v.endswith("n") else int(v), steps=args.steps, batch=args.batch)
    elif args.coord:
        run_coord_demo(widths or (32, 64, 128, 256, 512))
    elif args.lv_experiment:
        t0 = time.time()
        print(f"toy LV experiment: Zipf(1.1) tokens, teacher rank 8, tau 3; Adam(0.9, 0.999), {args.steps} steps x "
              f"{args.batch} tokens; score = mean KL to the teacher over the last 50 steps; torch threads "
              f"{torch.get_num_threads()}")
        vocabs = [v if v.endswith("n") else int(v) for v in args.vocabs.split(",")]
        res = lv_experiment(widths or (32, 64, 128, 256, 512), vocabs, steps=args.steps, batch=args.batch,
                            eta_out=args.eta_out,
                            seeds=tuple(range(args.first_seed, args.first_seed + args.seeds)))
        print("\nsummary: fitted alpha (lr_emb*/lr_out ~ width^alpha); muP predicts 1, the paper's LV regime 0.5")
        for m, r in res.items():
            print(f"  m = {m!s:>5s}: alpha = {r['alpha']:.2f}   optima log2 lr_emb*: "
                  + ", ".join(f"n={row['n']}: {row['log2_lr_emb_star']:.2f}" for row in r["rows"]))
        print(f"total {time.time() - t0:.0f} s")
    else:
        print_table(tuple(widths) if widths else (64, 128, 256, 512, 1024))


if __name__ == "__main__":
    main()
