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

The LV toy experiment (`--lv-experiment`, issue 16; card Sec. 7.8). Does the optimal lr_emb / lr_out grow like
n^(1/2) when m >> n and like n^1 (muP) when m <= n? The toy is the paper's setting in miniature:

    logits(x) = W E[x],  E (m x n) ~ N(0, 1),  W (m x n) = 0;  loss = batch-mean KL(p*(.|x) || softmax(logits))
    p*(.|x) = softmax(3 (A B^T)_x / sqrt(8)),  A, B (m x 8) ~ N(0, 1)   (a fixed teacher per m)

  * TP5 Table 3 form, no multipliers: under muP lr_emb = Theta(1) and lr_out = Theta(1/n) (the same 1/n as a
    hidden matrix), so lr_out stands in for lr_hidden and alpha = slope of log(lr_emb*/lr_out*) vs log n
    (muP: 1; the paper's LV regime: 1/2).
  * Tokens: uniform, drawn by epochs (random permutations): 160 steps x 128 tokens, so at m = 1024 every token is
    seen exactly 20 times (the earlier Zipf(1.1) design saw ~120 of 8192 tokens >= 10 times: effectively m ~ n).
  * LV arm: m = 1024, n in {16, 32, 64} (m/n = 64..16). muP control: m = 16 <= n, the same code and steps.
  * Optimizers (arms): SignSGD (no momentum; the paper's proxy for Adam) and Adam(0.9, 0.999, eps 1e-8); constant
    LRs; both LRs tuned.
  * Grid: 5 x 5 half-octave (lr_emb, lr_out) window per width, starting at the muP point (lr_emb fixed, lr_out ~
    1/n) from a pilot at n = 16 (CENTERS); whenever the seed-mean argmin is on the window edge the window moves one
    octave that way (<= 2 times), so an optimum up to 3 octaves (per axis) from the muP point ends inside, whatever
    alpha is. 2 seeds (init and token order; same teacher). All (seed, LR) runs of one width train at once as
    stacked tensors, one bmm per step (lv_sweep), and share each seed's init and tokens. Score = population KL
    (all m tokens) averaged over the last 4 steps.
  * Fit: log(score) ~ quadratic in (log2 lr_emb, log2 lr_out) on the 3 x 3 block around the argmin; "interior" =
    argmin off the window edge, convex fit, stationary point inside the block (else the argmin, flagged).
    alpha with a 90 % percentile bootstrap over seeds (seeds resampled per width); contrast = alpha_LV - alpha_muP.
  * Grid-free cross-check: 40 steps at the window's starting point, then the logit change per unit LR on the next
    batch from the embedding update alone (s_emb) and the readout update alone (s_out); the slope of
    log(s_out/s_emb) vs log n estimates alpha if the best LRs move the logits by a fixed amount.

Measured, coordinate check (2-core shared CPU, torch 2.13.0): flat for mup/lv (|slope| <= 0.05 for every module
at widths 32..512); SP's logits grow ~ width^0.96 after one step.

Results (`python mup_vocab.py --lv-experiment`, commit e6fef67, 2-core CPU, shared/noisy (load 4-7), torch 2.13.0,
2 threads; wall time 564 s; the numbers are deterministic, only the wall time depends on the load):

    arm   regime    | alpha [90 % boot.]    | interior | cross | KL rise 1/2 octave off, ratio / product
    sign  LV m=1024 |  2.61 [ 1.30,  2.73]  | y y N    |  1.07 | +0 / +55 %,  +1 / +69 %,  edge
    sign  muP m=16  |  1.29 [-0.21,  1.57]  | y y y    |  1.00 | +3 / +174 %, +5 / +39 %, +3 / +40 %
    sign  LV - muP  |  1.32 [ 0.40,  1.98]  |
    adam  LV m=1024 |  1.00 [ 1.00,  1.00]  | N N N    |  0.97 | edge, +1 / +58 %, edge
    adam  muP m=16  |  2.13 [ 1.75,  2.14]  | N N y    |  0.86 | (KL -> 0.0000: the task saturates)
    adam  LV - muP  | -1.13 [-1.14, -0.75]  |

  (interior: per width n = 16, 32, 64; cross: the grid-free cross-check exponent.)
  The paper's shape (alpha ~ 0.5 at m >> n, ~ 1 at m <= n) does NOT show, and the LV arm is the one that
  disagrees: there the grid cannot identify lr_emb*/lr_out* at all. This bilinear toy has an exact symmetry:
  (E, W, lr_emb, lr_out) -> (c E, W / c, c lr_emb, lr_out / c) maps SignSGD and Adam trajectories of the logits onto
  each other, broken only by the fixed N(0, 1) init of E. At m >> n the random init features are useless, the best
  runs erase them (lr_emb * 20 views >> 1), and then the KL depends on lr_emb * lr_out alone: half an octave off
  the optimum along the ratio the KL rises 0-1 %, along the product 55-69 %; along lr_emb * lr_out = 2^-11 at
  n = 64 (SignSGD, seed 0) it is 0.0478, 0.0465, 0.0464, 0.0461, 0.0450, 0.0446, 0.0455 for lr_emb = 2^-2 .. 2^4
  (`python -c "import mup_vocab as mv, numpy as np; k = np.arange(-2, 5.); print(mv.lv_sweep(1024, 64, 2 ** k,
  2 ** (-11 - k)))"`). So the optimum drifts along the ridge (n = 64 hit the window edge after the 2 allowed moves;
  with 4 moves it stopped at lr_emb* = 2^2.53) and the LV alpha and the contrast measure that drift, not a law.
  At m <= n the random E is already a full-rank feature map, the init matters and the SignSGD optima are interior:
  alpha 1.29, muP-like but with a wide interval from 2 seeds. Under Adam the m = 16 task is solved to KL ~ 1e-5,
  so its optimum is set by the edge of stability (2 of 3 fits not interior). The grid-free cross-check, measured at
  the muP point where no ridge is involved, gives a logit-sensitivity ratio s_out/s_emb ~ n^1.07 (LV) and n^1.00
  (control) for SignSGD, n^0.97 and n^0.86 for Adam: muP scaling in both regimes, no sign of sqrt(n).
  Earlier design (Zipf(1.1) over m = 8192, Adam only, 1-D sweep of lr_emb at a fixed muP lr_out, one seed): alpha
  0.81 (m = 64), 0.94 (m = 8192), 1.11 (m = 16 n); issue 16 explains why that was not a fair test.

Deviations from the paper:
  * The paper's own per-layer LV table, base width, base LR and toy settings are not retrievable (card Sec. 8);
    the lv regime here is the card's derived "variant (i)": muP everywhere except embedding LR eta/sqrt(w).
    Its constant is chosen so that lv == mup at n = base_width.
  * No SGD tables; Adam/AdamW only in param_groups. The toy experiment has SignSGD and Adam arms.
  * The toy experiment is this project's miniature (card Sec. 7.8), not the paper's protocol: uniform tokens,
    a rank-8 teacher with soft targets, widths 16..64, 20 views per token, no hidden layer (lr_out stands in for
    lr_hidden).

Run:
    python mup_vocab.py                   # LR / init table for widths 64..1024 under each regime (seconds)
    python mup_vocab.py --coord           # coordinate check of a tiny transformer, slope per module (~30 s)
    python mup_vocab.py --lv-experiment   # the LV toy experiment above (flags: --widths --vocab --control-vocab
                                          #   --optimizers --seeds --steps --batch --size --threads)
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
# Toy large-vocabulary experiment (card Sec. 7.8, issue 16): one-hot -> embedding E (m x n) -> readout W (m x n)
# ----------------------------------------------------------------------------------------------------------------

OPTIMIZERS = ("sign", "adam")  # SignSGD (the paper's proxy for Adam) and Adam(0.9, 0.999, eps 1e-8)


class ToyTeacher:
    """Fixed teacher p*(.|x) = softmax(tau * (A B^T)_x / sqrt(r)), A, B ~ N(0, 1)^(m x r) (card Sec. 7.8).

    `logp(x)` gives the (B, m) rows for a batch of tokens without forming the (m, m) matrix; `table()` gives it."""

    def __init__(self, m: int, rank: int = 8, tau: float = 3.0, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.a, self.b = torch.randn(m, rank, generator=g), torch.randn(m, rank, generator=g)
        self.scale = tau / math.sqrt(rank)

    def logp(self, x):  # x (B,) -> (B, m)
        return torch.log_softmax(self.scale * (self.a[x] @ self.b.T), dim=-1)

    def table(self):  # (m, m): row x is log p*(.|x)
        return self.logp(torch.arange(self.a.shape[0]))


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


def _stacked_grads(E, W, x, p_star):
    """toy_grads for R = S * G stacked students whose G LR settings share each seed's tokens, without the KL.
    E, W (R, m, n); x (S, B); p_star (S, B, m) teacher probabilities. Returns dE, dW (R, m, n)."""
    (R, m, n), (S, B) = E.shape, x.shape
    xr = x.repeat_interleave(R // S, 0)                                     # (R, B)
    rows = torch.arange(R)[:, None].expand(R, B)
    h = E[rows, xr]                                                         # (R, B, n)
    d = torch.softmax(torch.bmm(h, W.transpose(1, 2)), -1)                  # (R, B, m)  p(.|x)
    d.view(S, R // S, B, m).sub_(p_star[:, None]).div_(B)                   # d KL / d logits = (p - p*) / B
    dW = torch.bmm(d.transpose(1, 2), h)                                    # (R, m, n)
    dE = torch.zeros_like(E).index_put_((rows, xr), torch.bmm(d, W), accumulate=True)  # absent rows: 0
    return dE, dW


def token_stream(m: int, steps: int, batch: int, seed: int) -> torch.Tensor:
    """(steps, batch) token ids: consecutive random permutations of 0..m-1 (uniform tokens, sampled by epochs), so
    every token is seen floor(steps * batch / m) or more times -- the issue's "every token seen >= 20 times"."""
    g = torch.Generator().manual_seed(seed)
    epochs = -(-steps * batch // m)
    return torch.cat([torch.randperm(m, generator=g) for _ in range(epochs)])[:steps * batch].view(steps, batch)


def population_kl(E, W, logp_table, p_table=None):
    """Excess loss of each stacked student: mean over all m tokens (uniform law) of KL(p*(.|x) || p(.|x)).
    E, W (R, m, n); logp_table (m, m) (p_table = its exp, if at hand). Returns (R,)."""
    logp = torch.log_softmax(torch.bmm(E, W.transpose(1, 2)), -1)           # (R, m, m)
    p_table = logp_table.exp() if p_table is None else p_table
    return (p_table * (logp_table - logp)).sum(-1).mean(-1)


def _update_direction(g, state, optimizer, t, betas=(0.9, 0.999), eps=1e-8):
    """Step per unit LR (the parameter moves by -lr * this); overwrites g. SignSGD: sign(g). Adam: torch.optim.Adam's
    m_hat / (sqrt(v_hat) + eps) with bias corrections; `state` = (m1, v) is updated in place."""
    if optimizer == "sign":
        return g.sign_()
    m1, v = state
    m1.lerp_(g, 1 - betas[0])
    v.mul_(betas[1]).addcmul_(g, g, value=1 - betas[1])
    denom = torch.sqrt(v, out=g).div_(math.sqrt(1 - betas[1] ** t)).add_(eps)
    return torch.div(m1, denom, out=denom).div_(1 - betas[0] ** t)


def _init_embedding(m, n, seed):  # E ~ N(0, 1), drawn in float32 whatever the run's dtype
    return torch.randn(m, n, generator=torch.Generator().manual_seed(1000 + seed))


def lv_sweep(m, n, lr_emb, lr_out, seeds=(0,), optimizer="sign", steps=160, batch=128, tail=4, teacher=None,
             dtype=torch.float32, probe=False):
    """Train every (seed, LR pair) student of one width at once, as stacked (R, m, n) tensors (one bmm per step).

    Student (TP5 Table 3 form, no multipliers): E ~ N(0, 1) (one draw per seed), W = 0, logits = W E[x]; loss =
    batch-mean KL to the teacher; constant LRs lr_emb[g] on E and lr_out[g] on W. All LR pairs of a seed share its
    init and its token stream (common random numbers: LR comparisons are not blurred by data noise).
    Args: lr_emb, lr_out: length-G sequences; seeds: S ints; optimizer: "sign" | "adam"; tail: score = mean over
      the last `tail` steps of the population KL (uniform over all m tokens); probe: also return the cross-check's
      update sensitivities measured on the batch after the last step (see update_sensitivity).
    Returns: ndarray (S, G) of excess loss (inf where not finite) [, (s_emb, s_out) ndarrays (S, G)].
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    lr_emb, lr_out = np.atleast_1d(np.asarray(lr_emb, np.float64)), np.atleast_1d(np.asarray(lr_out, np.float64))
    if lr_emb.shape != lr_out.shape or lr_emb.ndim != 1:
        raise ValueError(f"lr_emb and lr_out must be 1-D of equal length, got {lr_emb.shape} and {lr_out.shape}")
    if not 1 <= tail <= steps:
        raise ValueError(f"tail must be in 1..steps={steps}, got {tail}")
    S, G = len(seeds), len(lr_emb)
    R = S * G
    teacher = ToyTeacher(m) if teacher is None else teacher
    table = teacher.table().to(dtype)                                       # (m, m)
    p_table = table.exp()
    E0 = torch.stack([_init_embedding(m, n, s) for s in seeds]).to(dtype)  # (S, m, n)
    E = E0.repeat_interleave(G, 0)                                          # (R, m, n)
    W = torch.zeros(R, m, n, dtype=dtype)
    X = torch.stack([token_stream(m, steps + probe, batch, s) for s in seeds])  # (S, steps, B)
    lrs = [torch.tensor(np.tile(a, S), dtype=dtype).view(R, 1, 1) for a in (lr_emb, lr_out)]
    states = [(torch.zeros_like(E), torch.zeros_like(E)), (torch.zeros_like(W), torch.zeros_like(W))] \
        if optimizer == "adam" else [None, None]                            # Adam's (m1, v) of E and of W
    score = torch.zeros(R, dtype=torch.float64)
    for t in range(1, steps + 1):
        dE, dW = _stacked_grads(E, W, X[:, t - 1], p_table[X[:, t - 1]])
        E.addcmul_(lrs[0], _update_direction(dE, states[0], optimizer, t), value=-1)
        W.addcmul_(lrs[1], _update_direction(dW, states[1], optimizer, t), value=-1)
        if t > steps - tail:
            score += population_kl(E, W, table, p_table).double() / tail
    score = np.nan_to_num(score.view(S, G).numpy(), nan=np.inf)
    if not probe:
        return score
    s = update_sensitivity(E, W, X[:, steps], p_table[X[:, steps]], optimizer, states, steps + 1)
    return score, tuple(a.view(S, G).double().numpy() for a in s)


def lv_run_reference(m, n, lr_emb, lr_out, seed=0, optimizer="sign", steps=160, batch=128, tail=4, teacher=None,
                     dtype=torch.float32):
    """One student, literally: two nn.Parameters, autograd on the batch KL, torch.optim.Adam or p -= lr*sign(grad).
    Same init, tokens and score as lv_sweep(m, n, [lr_emb], [lr_out], [seed], ...). Returns the score (float)."""
    teacher = ToyTeacher(m) if teacher is None else teacher
    table = teacher.table().to(dtype)
    E = nn.Parameter(_init_embedding(m, n, seed).to(dtype))
    W = nn.Parameter(torch.zeros(m, n, dtype=dtype))
    opt = torch.optim.Adam([{"params": [E], "lr": lr_emb}, {"params": [W], "lr": lr_out}], betas=(0.9, 0.999))
    score = 0.0
    for t, x in enumerate(token_stream(m, steps, batch, seed), start=1):
        logp_star = table[x]                                                # (B, m)
        loss = (logp_star.exp() * (logp_star - torch.log_softmax(E[x] @ W.T, -1))).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        if optimizer == "adam":
            opt.step()
        else:
            with torch.no_grad():
                E -= lr_emb * E.grad.sign()
                W -= lr_out * W.grad.sign()
        if t > steps - tail:
            with torch.no_grad():
                score += population_kl(E[None], W[None], table).item() / tail
    return score


def update_sensitivity(E, W, x, p_star, optimizer="sign", states=None, t=1):
    """Grid-free cross-check (issue 16): the logit change per unit LR on the batch tokens caused by the embedding
    update alone and by the readout update alone, to first order:

        s_emb = RMS over (b, j) of (U_E[x_b] . W_j),   s_out = RMS over (b, j) of (E[x_b] . U_W,j)

    where U is the optimizer's step per unit LR for this batch (sign(grad) for SignSGD; Adam's m_hat/(sqrt(v_hat)+
    eps) from `states` = [(m1, v) of E, (m1, v) of W] at step t, copied, not modified). If the best LRs are those
    that move the logits by a fixed amount, lr_emb*/lr_out* ~ s_out/s_emb, so the slope of log(s_out/s_emb)
    against log n is a grid-free estimate of alpha. E, W (R, m, n) with R = S * G students; x (S, B) tokens of
    each seed; p_star (S, B, m) teacher probabilities. Returns (s_emb, s_out), each (R,)."""
    R, S = E.shape[0], x.shape[0]
    dE, dW = _stacked_grads(E, W, x, p_star)
    states = [tuple(a.clone() for a in st) for st in states] if optimizer == "adam" else [None, None]
    uE = _update_direction(dE, states[0], optimizer, t)
    uW = _update_direction(dW, states[1], optimizer, t)
    xr = x.repeat_interleave(R // S, 0)
    rows = torch.arange(R)[:, None].expand_as(xr)
    rms = lambda a: a.pow(2).mean((1, 2)).sqrt()
    return (rms(torch.bmm(uE[rows, xr], W.transpose(1, 2))),               # (R,)  embedding update alone
            rms(torch.bmm(E[rows, xr], uW.transpose(1, 2))))                # (R,)  readout update alone


# --- fits -------------------------------------------------------------------------------------------------------

def fit_optimum(u, v, scores) -> dict:
    """Log-quadratic fit of one 2-D LR grid. u, v: 1-D increasing grids of log2 lr_emb and log2 lr_out;
    scores (len(u), len(v)). Fits log(score) = quadratic in (u, v) on the 3 x 3 block around the argmin and takes
    its stationary point. The optimum is *interior* only if the argmin is off the grid edge, the fitted Hessian
    is positive definite and the stationary point lies inside that block; otherwise the argmin itself is
    returned, with the reason. Returns {"u", "v", "interior", "why", "rise_ratio", "rise_product"} (the last two:
    relative KL rise half an octave from the argmin along lr_emb/lr_out at a fixed product and along the product
    at a fixed ratio; nan at an edge)."""
    u, v, s = np.asarray(u, np.float64), np.asarray(v, np.float64), np.asarray(scores, np.float64)
    i, j = np.unravel_index(int(np.argmin(np.where(np.isfinite(s), s, np.inf))), s.shape)
    out = {"u": float(u[i]), "v": float(v[j]), "interior": False, "rise_ratio": np.nan, "rise_product": np.nan}
    if i in (0, len(u) - 1) or j in (0, len(v) - 1):
        return {**out, "why": "argmin on the grid edge"}
    block = s[i - 1:i + 2, j - 1:j + 2]
    # identifiability: mean relative KL rise one grid step away along the ratio (lr_emb/lr_out) direction at a
    # fixed product, and along the product direction at a fixed ratio; rise_ratio << rise_product = a ridge
    out["rise_ratio"] = float((block[2, 0] + block[0, 2]) / (2 * block[1, 1]) - 1)
    out["rise_product"] = float((block[2, 2] + block[0, 0]) / (2 * block[1, 1]) - 1)
    if not np.all(np.isfinite(block) & (block > 0)):
        return {**out, "why": "non-finite score next to the argmin"}
    uu, vv = np.meshgrid(u[i - 1:i + 2] - u[i], v[j - 1:j + 2] - v[j], indexing="ij")
    uu, vv = uu.ravel(), vv.ravel()
    A = np.stack([np.ones_like(uu), uu, vv, uu * uu, uu * vv, vv * vv], 1)   # (9, 6)
    c = np.linalg.lstsq(A, np.log(block.ravel()), rcond=None)[0]
    H = np.array([[2 * c[3], c[4]], [c[4], 2 * c[5]]])
    if np.any(np.linalg.eigvalsh(H) <= 0):
        return {**out, "why": "fitted surface not convex (a ridge or saddle)"}
    du, dv = np.linalg.solve(H, -c[1:3])
    if abs(du) > u[i + 1] - u[i] or abs(dv) > v[j + 1] - v[j]:
        return {**out, "why": "fitted optimum outside the 3 x 3 block"}
    return {**out, "u": float(u[i] + du), "v": float(v[j] + dv), "interior": True, "why": ""}


def fit_alpha(widths, log2_ratio) -> float:
    """Least-squares slope of log2(lr_emb*/lr_out*) against log2(n): the exponent alpha (muP 1, LV claim 1/2)."""
    return float(np.polyfit(np.log2(np.asarray(widths, np.float64)), np.asarray(log2_ratio, np.float64), 1)[0])


def alpha_with_bootstrap(grids, n_boot=1000, seed=0) -> dict:
    """alpha from the seed-mean score surfaces, and a bootstrap over seeds (percentile 90 % interval).

    grids: {n: (u, v, scores (S, len(u), len(v)))}. A bootstrap draw resamples S seeds with replacement at every
    width, averages their surfaces, refits each optimum and alpha. Returns {"alpha", "lo", "hi", "fits", "draws"}."""
    widths = sorted(grids)
    fits = {n: fit_optimum(grids[n][0], grids[n][1], grids[n][2].mean(0)) for n in widths}
    alpha = fit_alpha(widths, [fits[n]["u"] - fits[n]["v"] for n in widths])
    rng, cache, draws = np.random.default_rng(seed), {}, []
    for _ in range(n_boot):
        ys = []
        for n in widths:
            u, v, sc = grids[n]
            key = (n, tuple(sorted(rng.integers(0, len(sc), len(sc)))))
            if key not in cache:
                f = fit_optimum(u, v, sc[list(key[1])].mean(0))
                cache[key] = f["u"] - f["v"]
            ys.append(cache[key])
        draws.append(fit_alpha(widths, ys))
    lo, hi = np.percentile(draws, [5, 95])
    return {"alpha": alpha, "lo": float(lo), "hi": float(hi), "fits": fits, "draws": np.array(draws)}


# --- the experiment ---------------------------------------------------------------------------------------------

def lr_grid_search(m, n, center, optimizer, seeds=(0, 1), size=5, max_shifts=2, **train):
    """Half-octave size x size grid of (log2 lr_emb, log2 lr_out) centred at `center`. While the seed-mean argmin
    sits on the window's edge, move the window one octave (2 points) that way and train only the new points (at
    most max_shifts times), so the final window contains an optimum that lies off the muP point, without knowing
    alpha. `train` goes to lv_sweep (steps, batch, tail, teacher).
    Returns (u, v, scores (S, size, size), shifts): the final window's log2 LR axes and scores, and moves made."""
    k, done, ci, cj = size // 2, {}, 0, 0
    for shifts in range(max_shifts + 1):
        win = [(i, j) for i in range(ci - k, ci + k + 1) for j in range(cj - k, cj + k + 1)]
        new = [p for p in win if p not in done]
        if new:
            sc = lv_sweep(m, n, [2.0 ** (center[0] + i / 2) for i, _ in new],
                          [2.0 ** (center[1] + j / 2) for _, j in new], seeds, optimizer, **train)
            done.update({p: sc[:, g] for g, p in enumerate(new)})
        scores = np.stack([done[p] for p in win], 1).reshape(len(seeds), size, size)
        i, j = np.unravel_index(int(np.argmin(scores.mean(0))), (size, size))
        di, dj = (2 if i == size - 1 else -2 if i == 0 else 0), (2 if j == size - 1 else -2 if j == 0 else 0)
        if (di, dj) == (0, 0) or shifts == max_shifts:
            break
        ci, cj = ci + di, cj + dj
    u = center[0] + np.arange(ci - k, ci + k + 1) / 2
    v = center[1] + np.arange(cj - k, cj + k + 1) / 2
    return u, v, scores, shifts


# log2 (lr_emb, lr_out) at n = base_width = 16 where each grid starts, per (optimizer, regime): the argmin of a
# 1-octave 9 x 9 pilot grid (lr_emb 2^-8..2^0, lr_out 2^-13..2^-5) at n = 16, seed 0, default settings. The pilot
# ran no other width. At width n the grid starts at the muP point (lr_emb const, lr_out ~ 1/n) and
# lr_grid_search moves it wherever the optimum is.
CENTERS = {("sign", "lv"): (0.0, -9.0), ("sign", "mup"): (-2.0, -12.0),
           ("adam", "lv"): (-2.0, -7.0), ("adam", "mup"): (0.0, -5.0)}


def lv_experiment(optimizers=OPTIMIZERS, widths=(16, 32, 64), vocab=1024, control_vocab=16, base_width=16,
                  seeds=(0, 1), steps=160, batch=128, tail=4, warm=40, size=5, n_boot=1000, log=print):
    """Issue 16's experiment. Per optimizer and regime (LV: m = vocab >> n; muP control: m = control_vocab <= n):
    a half-octave size x size (lr_emb, lr_out) grid per width (lr_grid_search, around the muP point), a
    log-quadratic optimum per width (fit_optimum), alpha = slope of log2(lr_emb*/lr_out*) against log2 n with a
    bootstrap over seeds (alpha_with_bootstrap), the LV - muP contrast, and the grid-free cross-check exponent
    (update_sensitivity after `warm` steps at the muP point). Returns {optimizer: {regime: {...}, "contrast"}}."""
    out = {}
    for opt in optimizers:
        out[opt] = {}
        for regime, m in (("lv", vocab), ("mup", control_vocab)):
            grids, cross, teacher = {}, {}, ToyTeacher(m)
            for n in widths:
                t0 = time.time()
                cu, cv = CENTERS[(opt, regime)]
                center = (cu, cv - math.log2(n / base_width))                    # muP point: lr_out ~ 1/n
                u, v, sc, shifts = lr_grid_search(m, n, center, opt, seeds, size, steps=steps, batch=batch,
                                                  tail=tail, teacher=teacher)
                grids[n] = (u, v, sc)
                _, (s_emb, s_out) = lv_sweep(m, n, [2.0 ** center[0]], [2.0 ** center[1]], seeds, opt, steps=warm,
                                             batch=batch, tail=1, teacher=teacher, probe=True)
                cross[n] = float(np.mean(s_out / s_emb))
                f = fit_optimum(u, v, sc.mean(0))
                log(f"  {opt:4s} {regime:3s} m={m:5d} n={n:4d} | lr_emb*=2^{f['u']:6.2f} lr_out*=2^{f['v']:6.2f} "
                    f"{'interior' if f['interior'] else 'NOT interior (' + f['why'] + ')'} | window moved "
                    f"{shifts}x | best KL {sc.mean(0).min():.4f}, +{100 * f['rise_ratio']:.0f}% / "
                    f"+{100 * f['rise_product']:.0f}% half an octave off along ratio / product | s_out/s_emb "
                    f"{cross[n]:7.1f} | {time.time() - t0:.0f}s")
            res = alpha_with_bootstrap(grids, n_boot)
            res["m"], res["grids"], res["cross"] = m, grids, cross
            res["cross_alpha"] = fit_alpha(widths, [math.log2(cross[n]) for n in widths])
            out[opt][regime] = res
        d = out[opt]["lv"]["draws"] - out[opt]["mup"]["draws"]
        out[opt]["contrast"] = {"value": out[opt]["lv"]["alpha"] - out[opt]["mup"]["alpha"],
                                "lo": float(np.percentile(d, 5)), "hi": float(np.percentile(d, 95))}
    return out


def print_lv_summary(res, widths):
    print("\nalpha = slope of log2(lr_emb*/lr_out*) vs log2 n (muP: 1, the paper's LV regime: 0.5); "
          "[90 % bootstrap over seeds]; interior = fitted optimum inside its grid, per width "
          + ",".join(map(str, widths)))
    print(f"{'arm':5s} {'regime':14s} | {'alpha':>5s} {'interval':>15s} | {'interior':10s} | {'cross-check':>11s}")
    for opt, r in res.items():
        for regime in ("lv", "mup"):
            a = r[regime]
            flags = "".join("y" if a["fits"][n]["interior"] else "N" for n in widths)
            name = f"{regime} m={a['m']}"
            print(f"{opt:5s} {name:14s} | {a['alpha']:5.2f} [{a['lo']:5.2f}, {a['hi']:5.2f}] | {flags:10s} | "
                  f"{a['cross_alpha']:11.2f}")
        c = r["contrast"]
        print(f"{opt:5s} {'LV - muP':14s} | {c['value']:5.2f} [{c['lo']:5.2f}, {c['hi']:5.2f}] |")


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
    ap.add_argument("--lv-experiment", action="store_true",
                    help="toy embedding->readout model: alpha of lr_emb*/lr_out* vs width, LV arm and muP control")
    ap.add_argument("--widths", type=str, default=None, help="comma-separated widths (default per mode)")
    ap.add_argument("--vocab", type=int, default=1024, help="--lv-experiment: m of the LV arm (m >> n)")
    ap.add_argument("--control-vocab", type=int, default=16, help="--lv-experiment: m of the muP control (m <= n)")
    ap.add_argument("--optimizers", type=str, default="sign,adam", help="--lv-experiment: arms, from sign,adam")
    ap.add_argument("--seeds", type=int, default=2, help="--lv-experiment: seeds (init + token order) per grid point")
    ap.add_argument("--steps", type=int, default=160, help="--lv-experiment: steps per run")
    ap.add_argument("--batch", type=int, default=128, help="--lv-experiment: tokens per step")
    ap.add_argument("--size", type=int, default=5, help="--lv-experiment: half-octave grid points per LR axis")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    widths = [int(v) for v in args.widths.split(",")] if args.widths else None
    if args.coord:
        run_coord_demo(widths or (32, 64, 128, 256, 512))
    elif args.lv_experiment:
        t0 = time.time()
        widths = widths or [16, 32, 64]
        print(f"toy LV experiment: uniform tokens by epochs, teacher rank 8, tau 3; E ~ N(0, 1), W = 0; "
              f"{args.steps} steps x {args.batch} tokens (every token seen >= {args.steps * args.batch // args.vocab}"
              f" times at m = {args.vocab}); score = population KL to the teacher, mean of the last 4 steps; "
              f"{args.seeds} seeds; torch threads {torch.get_num_threads()}")
        res = lv_experiment(args.optimizers.split(","), widths, args.vocab, args.control_vocab,
                            seeds=tuple(range(args.seeds)), steps=args.steps, batch=args.batch, size=args.size)
        print_lv_summary(res, widths)
        print(f"wall time {time.time() - t0:.0f} s")
    else:
        print_table(tuple(widths) if widths else (64, 128, 256, 512, 1024))


if __name__ == "__main__":
    main()
