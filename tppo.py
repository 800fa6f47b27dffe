"""T-PPO: Truncated Proximal Policy Optimization — successive batching with generation windows, decoupled
policy/critic updates, and a Triton token-log-prob hot path.

Paper: "Truncated Proximal Policy Optimization", Fan et al. (ByteDance Seed), arXiv 2506.15050 (June 2025).
Method details follow the reference recipe (verl PR #3728, `recipe/tppo/`) as summarized in
`shared/papers/tppo_egae.md`; the paper body was not available, so section numbers below are the card's.

What T-PPO changes in PPO. Synchronous PPO generates a whole batch of responses and waits for the longest one,
so slots whose response already ended sit idle. T-PPO generates at most W tokens per slot per step (a *window*),
trains the policy on the window's tokens at once (advantages from EGAE on the incomplete response), trains the critic
only on finished responses, carries unfinished responses into the next step (prefix folded into the prompt) and
refills finished slots with fresh prompts, so every generation batch has the same number of slots.

Equations (card numbering; 0-indexed response tokens a_0 … a_{T−1}, state s_t = (x, a_<t), V_t = V(s_t)):
  δ_t = r_t + γ V_{t+1} − V_t ;  Â_t = Σ_k (γλ)^k δ_{t+k}                               (Eq. 2/3, GAE)
  EGAE, window of l tokens without EOS:  T := l and V(s_l) ≈ V(s_{l−1}),
        so δ_{l−1} = (γ − 1) V_{l−1}                                                     (Eq. 6, via egae.py)
  λ_policy = max(0.95, 1 − 1/(α L)), α = 0.05, L = tokens so far (+ W/2 if unfinished)  (VAPO, card §5)
  critic target G_t = Σ_{t' ≥ t} r_{t'} over the whole response (λ_critic = γ = 1), finished rows only  (§6)
  ρ_t = exp(clamp(log π_θ − log π_old, −20, 20))
  ℓ_t = max(−Â ρ, −Â clip(ρ, 1 − 0.2, 1 + 0.28));  Â < 0: ℓ_t ← min(ℓ_t, 10 |Â|)          (§8, clip-higher + dual clip)
  L_policy = Σ_window-tokens ℓ_t / N_tokens + 0.1 · NLL(finished responses with reward > 0)   (§8, VAPO μ = 0.1)
        N_tokens (and the NLL's own count) = the whole batch's over all ranks, for every mini-batch (see below)
  L_value  = ½ Σ max((V − G)², (clip(V, V_old − 0.5, V_old + 0.6) − G)²) / N_tokens        (§6)
  log π(a | s) = z_a/τ − logsumexp(z/τ), τ = the sampling temperature (`temperature`), for π_old, π_θ and the NLL;
        streamed over V in blocks with an online max/sum (Triton hot path)

Which tokens each loss sees (card §7): the policy loss sees only the tokens generated in this step's window (earlier
windows are context), so each generated token is policy-trained exactly once; the value loss sees every token of
every window of *finished* responses, once, at the step where the response finishes.

Successive batching (card §9), our choices:
  * Every generation batch holds exactly `slots` rollouts: carried (unfinished) rollouts first, then fresh ones;
    each fresh prompt is expanded to `group_size` rollouts sharing a group id; leftovers of a group wait in FIFO order.
  * "Carry all unfinished" (card §13.10(e)): there is no group selection / over-sampling. Every generated rollout is
    trained and every unfinished one is carried, so no rollout is ever dropped and every sampled response is
    finished (and scored) exactly once. The ref trains a selected subset and discards unselected unfinished rows.
  * A rollout lives at most ⌈L_max / W⌉ windows; it is finished after EOS, after a window that stopped short of its
    limit, or after its last window (overlong responses are scored as they are).
PPO is the same code with W ≥ L_max: one window per response, plain (length-adaptive) GAE, synchronous batches.

Deviations from the paper / reference recipe:
  * No group selection, no over-sampling, no padding by duplication (see above). The ref's first selection
    criterion, DAPO's has-gradient filter, is offered as a policy-loss mask (`group_filter`,
    `RolloutPool.has_gradient`): a finished row is not policy-trained (the critic still sees it) when its whole
    group has finished and all scores are equal; a mate not finished yet counts as "keep". So every row of a
    mixed group is trained under T-PPO as under PPO, whatever the finish order (the ref judges the finished
    members so far, per accumulated accuracy).
  * Policy and NLL loss denominators follow the ref's `loss_agg_mode='batch'`: mini-batch k's loss is
    n_mb · Σ_k ℓ_t / N_batch (N_batch = the whole batch's policy tokens over all ranks; the NLL likewise with its
    own count), so every token weighs the same and the mean of the mini-batch losses is the batch's token mean.
  * The value loss is a token-level mean over all finished tokens of the mini-batch (the ref averages per sample,
    and pads with masked unfinished rows, which dilutes it); this keeps "each finished token counts once".
  * The last `ignore_last` tokens of unfinished windows get Â = 0 and are excluded from the whitening statistics
    (the ref leaves the second point unspecified); they stay in the policy-loss denominator.
  * Temperature (`temperature` = τ of the sampler): rollouts are drawn from softmax(z/τ), so π_old and π_θ are
    log softmax(z/τ); with raw logits any τ ≠ 1 would train against a policy that did not generate the data. The
    NLL term uses the same tempered log-probs: one forward serves both terms, and it raises the likelihood of
    correct answers under the distribution that is actually sampled. At τ = 1 nothing changes.
  * π_old from the sampler (`old_logp_from_sampler`, off by default): generate_fn may return the log-probs it
    sampled with; they replace the ref's recomputing forward (card §8). Exact only when the sampler ran the
    step-start weights at τ in the same precision, as the toy sampler and a same-process sampler do; an
    inference engine with other kernels or stale weights would make ρ absorb that mismatch (the ref's
    `rollout_probs_diff`), visible in policy/first_ratio_dev. During `critic_warmup` no π_old is computed.
  * No KL / entropy terms (the ref sets both to 0). Windows carried over are not importance-corrected (as in the ref).
  * `bootstrap="value"` (the exact V(s_l), free from the same critic forward) is offered as an ablation of EGAE's
    V(s_l) ≈ V(s_{l−1}). During the `critic_warmup` steps the window tokens are generated but not policy-trained.
  * The policy optimizer step happens once per mini-batch (`ppo_epochs` × ⌈slots / minibatch_size⌉ steps); critic
    mini-batches split the finished rows into the same number of chunks (so data-parallel ranks stay in lock-step).
  * Slot refill (`refill`, off by default; beyond the paper, which keeps synchronous windows): when a row emits
    EOS (or hits its limit) before the window's decode steps are used up, the generator calls refill() ->
    (context, max_new_tokens) | None, which takes the next fresh rollout from the pool (same FIFO / group expansion
    as next_batch) and adds it to this step's batch; it decodes in the freed slot for min(max_new_tokens, steps
    left) tokens. generate_fn(contexts, limits, refill) returns the original rows, then the refilled ones in
    hand-out order; all are recorded, rewarded, trained and carried like the others (a refilled rollout's first
    window is short, so it may live one window more, up to L_max tokens). Every slot decodes at every step, so
    utilization (useful tokens / slots × decode steps run) is 1 while prompts last. PPO (W >= L_max) never refills.
  * Per-prompt budgets (beyond the paper, which has one L_max): next_prompt may return a third item, max_len ≤
    L_max; that prompt's rollouts finish at max_len tokens (train.py: the decode budget evaluation uses).
  * Length-grouped micro-batches (`micro_batch_size=0`, the default): each mini-batch's forward/backward runs in
    calls of rows of similar length (a new call starts below half the longest row of the current one), and rows
    with no policy or NLL token are left out of the policy forward. The losses are token sums over whole-batch
    counts, so the gradient is that of one call; what changes is the padding a long carried prefix would force on
    every short row (under T-PPO, carried rows are far longer than fresh ones).

Run:  python tppo.py            (toy demo, T-PPO, a few seconds on CPU)
      python tppo.py --bench    (T-PPO vs PPO on a long-tailed toy task: utilization, tokens/s, time to target)
      pytest tests/test_tppo.py -q
"""
from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

import egae

try:  # Triton is optional: importing this file must work on a CPU-only machine.
    import triton
    import triton.language as tl
    HAS_TRITON = True
except Exception:  # pragma: no cover - depends on the machine
    triton, tl, HAS_TRITON = None, None, False

# Path override for the token log-prob dispatcher: None (auto: Triton for CUDA tensors), "reference" or "triton".
IMPL: Optional[str] = None


# ----------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class TPPOConfig:
    """T-PPO hyper-parameters; defaults are the card's (§10, reference recipe). Batch sizes count *responses*."""
    window: int = 8192            # W: max new tokens per rollout per step (`window_response_length`)
    max_response: int = 24576     # L_max: max response length; a rollout lives ≤ ⌈L_max / W⌉ windows
    slots: int = 8192             # rollouts per generation batch = training batch (512 prompts × 16)
    group_size: int = 16          # samples per prompt (`num_bon`); they share a group id
    gamma: float = 1.0            # discount γ (1 in every Seed recipe)
    lam_floor: float = 0.95       # λ_policy = max(lam_floor, 1 − 1/(lam_alpha · L)) (VAPO length-adaptive λ)
    lam_alpha: float = 0.05       # α of the length-adaptive λ; 0 gives the fixed λ = lam_floor
    critic_lam: float = 1.0       # λ of the critic targets (1 = Monte-Carlo reward-to-go, VC-PPO decoupled GAE)
    bootstrap: str = "paper"      # EGAE cut: "paper" V(s_l) ≈ V(s_{l−1}); "value" uses the exact V(s_l) (ablation)
    ignore_last: int = 8          # zero Â on the last k tokens of unfinished windows (`window_ignore_token_num`)
    whiten: bool = True           # whiten Â over the batch's valid window tokens (`adv_whiten`)
    adv_clamp: float = 10.0       # clamp Â to [−c, c] after whitening (0 disables)
    clip_low: float = 0.2         # ε_low of the ratio clip
    clip_high: float = 0.28       # ε_high of the ratio clip (DAPO clip-higher)
    dual_clip: float = 10.0       # c of the dual clip: for Â < 0 the token loss is at most c·|Â|
    max_log_ratio: float = 20.0   # log-ratio clamp before exp (numerical guard, as in verl)
    value_clip_low: float = 0.5   # value clip: V_clip ∈ [V_old − low, V_old + high] (asymmetric)
    value_clip_high: float = 0.6
    nll_weight: float = 0.1       # μ of the positive-example NLL over finished responses with reward > 0
    critic_warmup: int = 10       # steps (counted from 0) that update only the critic
    group_filter: bool = False    # policy-train a finished rollout only if its group's finished scores differ (DAPO)
    ppo_epochs: int = 1           # passes over the batch per step
    minibatch_size: int = 512     # responses per optimizer step
    micro_batch_size: int = 0     # responses per forward/backward (gradient accumulation); 0 = by length (_micro)
    max_grad_norm: float = 1.0    # global grad-norm clip per optimizer step (0 disables)
    temperature: float = 1.0      # τ of the sampler: π_old, π_θ and the NLL all use log softmax(z / τ)
    old_logp_from_sampler: bool = False  # π_old = generate_fn's own log-probs (no second forward); valid only when
                                         # it sampled with the step-start weights at `temperature`
    seed: int = 0                 # seeds the mini-batch shuffling (per step: seed + step)
    refill: bool = False          # beyond the paper: a slot whose rollout ends mid-window takes the next fresh
                                  # rollout at once (continuous batching); PPO (window >= max_response) never refills

    def __post_init__(self):
        for name in ("window", "max_response", "slots", "group_size", "ppo_epochs", "minibatch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"TPPOConfig.{name} must be an int >= 1, got {v!r}")
        for name in ("ignore_last", "critic_warmup", "micro_batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"TPPOConfig.{name} must be an int >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"TPPOConfig.gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 <= self.lam_floor <= 1.0 or not 0.0 <= self.critic_lam <= 1.0:
            raise ValueError("TPPOConfig.lam_floor and critic_lam must be in [0, 1]")
        if self.lam_alpha < 0:
            raise ValueError(f"TPPOConfig.lam_alpha must be >= 0, got {self.lam_alpha}")
        if self.bootstrap not in ("paper", "value"):
            raise ValueError(f"TPPOConfig.bootstrap must be 'paper' or 'value', got {self.bootstrap!r}")
        if not (0 <= self.clip_low < 1 and self.clip_high >= 0 and self.dual_clip > 1):
            raise ValueError("TPPOConfig: need 0 <= clip_low < 1, clip_high >= 0, dual_clip > 1")
        if self.value_clip_low < 0 or self.value_clip_high < 0 or self.adv_clamp < 0 or self.nll_weight < 0:
            raise ValueError("TPPOConfig: value clips, adv_clamp and nll_weight must be >= 0")
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature > 0):
            raise ValueError(f"TPPOConfig.temperature must be a finite float > 0 (greedy decoding has no policy "
                             f"ratio), got {self.temperature!r}")

    @property
    def max_windows(self) -> int:
        """⌈L_max / W⌉: the most windows (= steps) a rollout can span."""
        return -(-self.max_response // self.window)


# ----------------------------------------------------------------------------------------------------------------
# Losses (reference math; these are the hot loops only through token_logprobs below)
# ----------------------------------------------------------------------------------------------------------------

def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, x, torch.zeros_like(x)).sum() / mask.sum().clamp(min=1)


def _check_same_shape(**tensors):
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"expected tensors of one shape (B, T), got {shapes}")


def policy_loss(logp, old_logp, adv, mask, clip_low=0.2, clip_high=0.28, dual_clip=10.0, *, max_log_ratio=20.0,
                denominator=None):
    """Clip-higher + dual-clip PPO loss, token-level mean (card §8).

    Args: logp, old_logp, adv (B, T) float; mask (B, T) bool (the tokens the loss sees).
      denominator: token count to divide by (default mask.sum()); pass the global count of the mini-batch when the
      batch is split into micro-batches or across data-parallel ranks, so the sum of the parts is the whole loss.
    Returns: (loss scalar, stats dict of detached tensors: clipfrac, dual_clip_frac, approx_kl, ratio_mean,
      ratio_max_dev = max |ρ − 1|; all over masked tokens).
    """
    _check_same_shape(logp=logp, old_logp=old_logp, adv=adv, mask=mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    if not (0 <= clip_low < 1 and clip_high >= 0 and dual_clip > 1):
        raise ValueError("policy_loss: need 0 <= clip_low < 1, clip_high >= 0, dual_clip > 1")
    log_ratio = (logp - old_logp).clamp(-max_log_ratio, max_log_ratio)
    ratio = torch.exp(log_ratio)                                       # ρ_t
    pg_unclipped = -adv * ratio
    pg_clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss_clip = torch.maximum(pg_unclipped, pg_clipped)              # PPO pessimistic bound
    loss_dual = torch.minimum(loss_clip, -adv * dual_clip)            # Â < 0: at most c·|Â|
    tok_loss = torch.where(adv < 0, loss_dual, loss_clip)
    denom = mask.sum().clamp(min=1) if denominator is None else denominator
    loss = torch.where(mask, tok_loss, torch.zeros_like(tok_loss)).sum() / denom
    with torch.no_grad():
        stats = {
            "clipfrac": _masked_mean((pg_clipped > pg_unclipped).float(), mask),
            "dual_clip_frac": _masked_mean(((adv < 0) & (loss_clip > -adv * dual_clip)).float(), mask),
            "approx_kl": _masked_mean((ratio - 1) - log_ratio, mask),   # k3 estimator of KL(π_old ‖ π_θ)
            "ratio_mean": _masked_mean(ratio, mask),
            "ratio_max_dev": torch.where(mask, (ratio - 1).abs(), torch.zeros_like(ratio)).max()
            if mask.any() else ratio.new_zeros(()),
        }
    return loss, stats


def value_loss(values, old_values, returns, mask, clip_low=0.5, clip_high=0.6, *, denominator=None):
    """Asymmetrically clipped value loss ½·max((V − G)², (clip(V, V_old − low, V_old + high) − G)²), token mean.

    Args: values, old_values, returns (B, T) float; mask (B, T) bool (finished responses' tokens).
      denominator: as in `policy_loss`.
    Returns: (loss, stats dict: clipfrac = fraction of tokens where the clipped term is the larger one).
    """
    _check_same_shape(values=values, old_values=old_values, returns=returns, mask=mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")
    if clip_low < 0 or clip_high < 0:
        raise ValueError(f"value_loss: clip_low/clip_high must be >= 0, got {clip_low}, {clip_high}")
    v_clip = old_values + (values - old_values).clamp(-clip_low, clip_high)
    l_unclipped = (values - returns) ** 2
    l_clipped = (v_clip - returns) ** 2
    tok = torch.maximum(l_unclipped, l_clipped)
    denom = mask.sum().clamp(min=1) if denominator is None else denominator
    loss = 0.5 * torch.where(mask, tok, torch.zeros_like(tok)).sum() / denom
    with torch.no_grad():
        stats = {"clipfrac": _masked_mean((l_clipped > l_unclipped).float(), mask)}
    return loss, stats


# ----------------------------------------------------------------------------------------------------------------
# Token log-probabilities: reference, Triton kernels, autograd.Function, dispatcher
# ----------------------------------------------------------------------------------------------------------------
# Why a kernel: log π(a|s) needs logsumexp over the vocabulary for every token. torch's log_softmax writes the whole
# (N, V) fp32 result (for N = 8k tokens and V = 150k that is 4.9 GB) only to read back one column per row.
# The kernel reads each logit once, keeps a running max/sum per lane (online softmax), and writes 2 floats per row;
# the backward recomputes softmax from the saved logsumexp instead of storing it.

def token_logprobs_reference(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[targets] in fp32. logits (..., V), targets (...) int64 → (...) fp32."""
    x = logits.float()
    return x.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(x, dim=-1)   # z_a − logsumexp(z)


if HAS_TRITON:
    @triton.jit
    def _logprob_fwd_kernel(
        logits_ptr, targets_ptr, logp_ptr, lse_ptr,      # pointers: (N, V) logits, (N,) targets, (N,) outputs
        V, stride_row,                                   # sizes / strides (the vocabulary dim is contiguous)
        BLOCK_V: tl.constexpr,                           # meta: vocabulary block streamed per iteration
    ):
        row = tl.program_id(0).to(tl.int64)
        base = logits_ptr + row * stride_row
        offs = tl.arange(0, BLOCK_V)
        # Per-lane running max m and sum s of exp(x − m). The sentinel is finite so that lanes past V
        # (always −inf) never compute exp(−inf − (−inf)) = nan.
        m = tl.full([BLOCK_V], -1e30, tl.float32)
        s = tl.zeros([BLOCK_V], tl.float32)
        for start in range(0, V, BLOCK_V):
            cols = start + offs
            x = tl.load(base + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
            m_new = tl.maximum(m, x)
            s = s * tl.exp(m - m_new) + tl.exp(x - m_new)   # rescale the old sum to the new max
            m = m_new
        m_row = tl.max(m, axis=0)
        lse = m_row + tl.log(tl.sum(s * tl.exp(m - m_row), axis=0))   # logsumexp over the whole row
        tgt = tl.load(targets_ptr + row)
        x_t = tl.load(base + tgt).to(tl.float32)                        # the target logit z_a
        tl.store(logp_ptr + row, x_t - lse)
        tl.store(lse_ptr + row, lse)

    @triton.jit
    def _logprob_bwd_kernel(
        logits_ptr, targets_ptr, lse_ptr, grad_out_ptr, grad_logits_ptr,
        V, stride_row, stride_grad_row,
        BLOCK_V: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        g = tl.load(grad_out_ptr + row).to(tl.float32)
        lse = tl.load(lse_ptr + row)
        tgt = tl.load(targets_ptr + row)
        offs = tl.arange(0, BLOCK_V)
        for start in range(0, V, BLOCK_V):
            cols = start + offs
            valid = cols < V
            x = tl.load(logits_ptr + row * stride_row + cols, mask=valid, other=0.0).to(tl.float32)
            p = tl.exp(x - lse)                                         # softmax recomputed from the saved lse
            d = g * (tl.where(cols == tgt, 1.0, 0.0) - p)               # ∂ log p_a / ∂ z_v = 1[v = a] − p_v
            tl.store(grad_logits_ptr + row * stride_grad_row + cols,
                     d.to(grad_logits_ptr.dtype.element_ty), mask=valid)


def _block_v(V: int, block_v: Optional[int]) -> int:
    if block_v is None:
        block_v = min(4096, triton.next_power_of_2(V))
    if block_v < 16 or block_v & (block_v - 1):
        raise ValueError(f"block_v must be a power of two >= 16, got {block_v}")
    return block_v


class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits2d, targets1d, block_v):
        N, V = logits2d.shape
        logp = torch.empty(N, device=logits2d.device, dtype=torch.float32)
        lse = torch.empty(N, device=logits2d.device, dtype=torch.float32)
        bv = _block_v(V, block_v)
        if N > 0:
            _logprob_fwd_kernel[(N,)](logits2d, targets1d, logp, lse, V, logits2d.stride(0), BLOCK_V=bv)
        ctx.save_for_backward(logits2d, targets1d, lse)
        ctx.block_v = bv
        return logp

    @staticmethod
    def backward(ctx, grad_out):
        logits2d, targets1d, lse = ctx.saved_tensors
        N, V = logits2d.shape
        grad_out = grad_out.contiguous()
        grad = torch.empty_like(logits2d)
        if N > 0:
            _logprob_bwd_kernel[(N,)](logits2d, targets1d, lse, grad_out, grad, V, logits2d.stride(0),
                                      grad.stride(0), BLOCK_V=ctx.block_v)
        return grad, None, None


def _check_logprob_args(logits, targets):
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() < 1:
        raise TypeError("logits must be a floating tensor of shape (..., V)")
    if not isinstance(targets, torch.Tensor) or targets.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"targets must be an int64/int32 tensor, got {getattr(targets, 'dtype', type(targets))}")
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"targets must have shape logits.shape[:-1] = {tuple(logits.shape[:-1])}, "
                         f"got {tuple(targets.shape)}")
    V = logits.shape[-1]
    if V < 1:
        raise ValueError("logits must have a vocabulary dimension V >= 1")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= V):
        raise ValueError(f"targets must lie in [0, V={V})")


def token_logprobs_triton(logits: torch.Tensor, targets: torch.Tensor, block_v: Optional[int] = None):
    """Triton path of `token_logprobs` (same signature; `block_v` only for tests). Differentiable in logits."""
    if not HAS_TRITON:
        raise RuntimeError("token_logprobs_triton needs triton (pip install triton)")
    _check_logprob_args(logits, targets)
    V = logits.shape[-1]
    lead = logits.shape[:-1]
    logits2d = logits.reshape(-1, V)
    if logits2d.stride(-1) != 1:
        logits2d = logits2d.contiguous()
    targets1d = targets.reshape(-1).to(torch.int64).contiguous()
    return _TokenLogprobs.apply(logits2d, targets1d, block_v).reshape(lead)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log π(targets | ·) from logits, fp32. logits (..., V), targets (...) → (...).

    Uses the Triton kernel for CUDA tensors (when triton imports), the fp32 reference otherwise; the module-level
    `IMPL` ("reference" | "triton") forces a path (tests use it to run the kernel under TRITON_INTERPRET=1).
    """
    impl = IMPL or ("triton" if (HAS_TRITON and logits.is_cuda) else "reference")
    if impl == "triton":
        return token_logprobs_triton(logits, targets)
    if impl != "reference":
        raise ValueError(f"tppo.IMPL must be None, 'reference' or 'triton', got {impl!r}")
    _check_logprob_args(logits, targets)
    return token_logprobs_reference(logits, targets)


# ----------------------------------------------------------------------------------------------------------------
# Successive batching: rollouts and the pool
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Rollout:
    """One sampled response, possibly spanning several windows (steps).

    `response` holds every token generated so far (all windows); the current window is response[window_start:].
    `values[t]` = V(s_t) saved at the step that trained token t's window (V_old for the critic's later clip);
    it covers the tokens before `window_start`.
    """
    rid: int                      # unique rollout id (never reused)
    group: int                    # group id shared by the group_size samples of one prompt
    prompt: list                  # prompt token ids
    meta: Any = None              # whatever next_prompt returned with the prompt (e.g. the reference answer)
    response: list = field(default_factory=list)
    values: list = field(default_factory=list)
    window_start: int = 0         # index in `response` where the current window starts
    round: int = 0                # window index: 0 … ⌈L_max/W⌉ − 1
    finished: bool = False
    refilled: bool = False        # entered mid-window through refill (its first window is shorter than W)
    max_len: int = 0              # this rollout's own response budget (≤ L_max; 0 = L_max), from next_prompt
    eos: bool = False             # finished by emitting EOS (vs. stopped short / overlong)
    reward: float = 0.0           # verifier score when finished, else 0

    @property
    def window(self) -> list:
        return self.response[self.window_start:]


class RolloutPool:
    """Successive batching with a constant generation batch of `slots` rollouts (card §9).

    `next_batch` returns carried rollouts first (in the order they were carried), then fresh rollouts; fresh prompts
    come from `next_prompt() -> (prompt_tokens, meta)` or `(prompt_tokens, meta, max_len)` (a per-prompt response
    budget below L_max, e.g. the evaluation's decode budget) and each becomes `group_size` rollouts of one group.
    Leftover rollouts of a group wait (FIFO) for the next batch. After generation `record` appends each window and decides
    `finished`; after training `carry` moves every unfinished rollout to the front of the next batch (round + 1).
    There is no selection step: nothing is discarded (see the module docstring).

    Checkpointing: `state_dict()` between steps holds the carried and waiting rollouts and the id counters (plain
    Python data; `meta` must be picklable for torch.save); with `load_state_dict` the next batch is exactly the one
    the original pool would have produced.
    Data-parallel: give every rank its own pool (and its own prompt stream).
    """

    def __init__(self, slots: int, group_size: int, window: int, max_response: int):
        for name, v in (("slots", slots), ("group_size", group_size), ("window", window),
                        ("max_response", max_response)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"RolloutPool: {name} must be an int >= 1, got {v!r}")
        self.slots, self.group_size, self.window, self.max_response = slots, group_size, window, max_response
        self.carried: list[Rollout] = []
        self.waiting: list[Rollout] = []
        self.next_rid = 0
        self.next_group = 0
        self.num_sampled = 0      # fresh rollouts that entered a generation batch
        self.num_finished = 0     # rollouts that left the pool finished
        self.group_scores: dict[int, list] = {}   # group id → rewards of its members finished so far

    @classmethod
    def from_config(cls, cfg: TPPOConfig) -> "RolloutPool":
        return cls(cfg.slots, cfg.group_size, cfg.window, cfg.max_response)

    @property
    def max_windows(self) -> int:
        return -(-self.max_response // self.window)

    def next_batch(self, next_prompt: Callable[[], tuple]) -> list:
        """The next generation batch: exactly `slots` rollouts, carried first."""
        batch, self.carried = self.carried, []
        assert len(batch) <= self.slots
        while len(batch) < self.slots:
            batch.append(self.take_fresh(next_prompt))
        return batch

    def take_fresh(self, next_prompt: Callable[[], tuple]) -> Rollout:
        """The next fresh rollout (FIFO; a new prompt expands into group_size waiting rollouts when none wait)."""
        if not self.waiting:
            got = tuple(next_prompt())
            if len(got) not in (2, 3):
                raise ValueError(f"next_prompt() must return (prompt, meta) or (prompt, meta, max_len), got a "
                                 f"{len(got)}-tuple")
            prompt, meta, max_len = got[0], got[1], (got[2] if len(got) == 3 else 0)
            prompt = [int(t) for t in prompt]
            if not prompt:
                raise ValueError("next_prompt() returned an empty prompt; a prompt needs >= 1 token")
            if not isinstance(max_len, int) or max_len < 0:
                raise ValueError(f"next_prompt() returned max_len={max_len!r}; need an int >= 0 (0 = L_max)")
            for _ in range(self.group_size):
                self.waiting.append(Rollout(rid=self.next_rid, group=self.next_group, prompt=prompt, meta=meta,
                                            max_len=min(max_len, self.max_response) if max_len else 0))
                self.next_rid += 1
            self.next_group += 1
        self.num_sampled += 1
        return self.waiting.pop(0)

    def budget(self, r: Rollout) -> int:
        """r's whole response budget: its own max_len if next_prompt gave one, else L_max."""
        return r.max_len or self.max_response

    def max_new_tokens(self, r: Rollout) -> int:
        """Token budget of r's current window: W, or what is left of r's budget in its last window."""
        return min(self.window, self.budget(r) - len(r.response))

    def record(self, batch: list, new_tokens: list, eos: list, n_slots: Optional[int] = None) -> None:
        """Append each row's window and set `finished` (EOS, stopped short of its budget, or last window).
        Rows from index n_slots on were refilled mid-window: the generator stopped them at the window's end, so
        stopping short is not a finish for them, and a refilled rollout may live one window more (its first
        window was short); it finishes by EOS or at its budget (L_max or its own max_len)."""
        n_slots = len(batch) if n_slots is None else n_slots
        if len(new_tokens) != len(batch) or len(eos) != len(batch):
            raise ValueError(f"generate_fn must return one token list and one eos flag per row ({len(batch)}), "
                             f"got {len(new_tokens)} and {len(eos)}")
        for i, (r, toks, e) in enumerate(zip(batch, new_tokens, eos)):
            budget = self.max_new_tokens(r)
            toks = [int(t) for t in toks]
            if len(toks) > budget:
                raise ValueError(f"generate_fn returned {len(toks)} tokens for rollout {r.rid}, "
                                 f"more than max_new_tokens={budget}")
            r.window_start = len(r.response)
            r.response.extend(toks)
            r.eos = bool(e)
            r.finished = r.eos or (len(toks) < budget and i < n_slots) \
                or (r.round == self.max_windows - 1 and not r.refilled) or len(r.response) >= self.budget(r)

    def has_gradient(self, batch: list) -> list:
        """DAPO's has-gradient test as a per-row policy-loss mask, after rewards. A group whose members all scored
        alike carries no learning signal for the policy (its advantages are only critic noise), so the reference
        recipe trains such groups last (card §9, step 4). Rule: a finished rollout is dropped only when its
        whole group has finished (this batch included) and every score is equal; a mate that has not finished
        yet counts as "keep"; unfinished rollouts always count.

        Why this rule: a row's decision is due at the step it finishes (its last window is trained then), before
        its unfinished mates are scored. Judging on the mates finished so far (the earlier rule) dropped rows of
        groups that later turned out mixed, i.e. rows PPO keeps, depending on finish order. With this rule every
        row of a mixed group is kept for any finish order and window size, exactly as under PPO; in a uniform
        group only the rows that finish together with its last member are dropped (the others, decided while a
        mate was unknown, are kept), so T-PPO drops a subset of PPO's rows, all of them when the group finishes
        in one step (PPO with slots a multiple of group_size: PPO's decisions are unchanged). No online rule can
        do better: a row finishing before a mate must be kept in case the mate makes the group mixed.
        `group_scores` (group → scores of its members finished so far) is in state_dict for exact resume."""
        for r in batch:
            if r.finished:
                self.group_scores.setdefault(r.group, []).append(float(r.reward))

        def uniform_and_complete(g):
            s = self.group_scores[g]
            return len(s) >= self.group_size and len(set(s)) == 1
        keep = [not r.finished or not uniform_and_complete(r.group) for r in batch]
        for g in {r.group for r in batch if r.finished}:
            if len(self.group_scores[g]) >= self.group_size:   # every member finished: forget the group
                del self.group_scores[g]
        return keep

    def carry(self, batch: list) -> None:
        """After training: unfinished rollouts go (in batch order) to the front of the next batch."""
        for r in batch:
            if r.finished:
                self.num_finished += 1
            else:
                r.round += 1
                r.window_start = len(r.response)
                self.carried.append(r)

    def state_dict(self) -> dict:
        return {"config": {"slots": self.slots, "group_size": self.group_size, "window": self.window,
                           "max_response": self.max_response},
                "carried": [asdict(r) for r in self.carried], "waiting": [asdict(r) for r in self.waiting],
                "next_rid": self.next_rid, "next_group": self.next_group,
                "num_sampled": self.num_sampled, "num_finished": self.num_finished,
                "group_scores": {g: list(v) for g, v in self.group_scores.items()}}

    def load_state_dict(self, state: dict) -> None:
        cfg = {"slots": self.slots, "group_size": self.group_size, "window": self.window,
               "max_response": self.max_response}
        if state.get("config") != cfg:
            raise ValueError(f"RolloutPool.load_state_dict: saved config {state.get('config')} != pool {cfg}")
        self.carried = [Rollout(**d) for d in state["carried"]]
        self.waiting = [Rollout(**d) for d in state["waiting"]]
        for k in ("next_rid", "next_group", "num_sampled", "num_finished"):
            setattr(self, k, int(state[k]))
        self.group_scores = {int(g): list(v) for g, v in state.get("group_scores", {}).items()}


# ----------------------------------------------------------------------------------------------------------------
# One T-PPO step
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class StepBatch:
    """The tensors of one step, in response layout (S rows, Lr = longest response; token t of row b is
    response[t], predicted at absolute position prompt_len + t − 1). The masks here are the masks the losses use."""
    rids: list
    tokens: torch.Tensor          # (S, T) prompt + response, right-padded with pad_id
    seq_lens: torch.Tensor        # (S,) prompt length + response length
    pred_pos: torch.Tensor        # (S, Lr) position whose output predicts response token t (and holds V(s_t))
    targets: torch.Tensor         # (S, Lr) response token ids
    resp_mask: torch.Tensor       # (S, Lr) t < len(response)
    window_mask: torch.Tensor     # (S, Lr) tokens of this step's window
    policy_mask: torch.Tensor     # (S, Lr) window tokens of the rows the policy trains on: the policy loss
    value_mask: torch.Tensor      # (S, Lr) every token of finished responses: the value loss
    nll_mask: torch.Tensor        # (S, Lr) every token of finished responses with reward > 0: the NLL loss
    finished: torch.Tensor        # (S,) bool
    rewards: torch.Tensor         # (S,) verifier score (0 for unfinished)
    lengths: torch.Tensor         # (S,) response length so far
    window_lengths: torch.Tensor  # (S,) l = tokens generated this step
    lam: torch.Tensor             # (S,) policy λ used by EGAE
    old_logp: torch.Tensor        # (S, Lr) log π_old on window tokens (0 elsewhere)
    old_values: torch.Tensor      # (S, Lr) saved values for earlier windows, fresh values for this window
    adv_raw: torch.Tensor         # (S, Lr) EGAE advantages before ignore/whiten/clamp
    adv: torch.Tensor             # (S, Lr) advantages the policy loss uses
    returns: torch.Tensor         # (S, Lr) critic targets (0 for unfinished rows)


def _values_of(critic, tokens):
    v = critic(tokens)
    if v.dim() == 3 and v.shape[-1] == 1:
        v = v.squeeze(-1)
    if v.shape != tokens.shape:
        raise ValueError(f"critic(tokens) must return values of shape (B, T) = {tuple(tokens.shape)}, "
                         f"got {tuple(v.shape)}")
    return v.float()


def _response_logprobs(policy, tokens, pred_pos, targets, temperature=1.0):
    """log softmax(z / τ)[a_t] at the response positions: the distribution the sampler drew a_t from."""
    logits = policy(tokens)                                               # (B, T, V)
    if logits.dim() != 3 or logits.shape[:2] != tokens.shape:
        raise ValueError(f"policy(tokens) must return logits (B, T, V) with (B, T) = {tuple(tokens.shape)}, "
                         f"got {tuple(logits.shape)}")
    V = logits.shape[-1]
    sel = logits.gather(1, pred_pos.unsqueeze(-1).expand(-1, -1, V))     # (B, Lr, V) only response positions
    if temperature != 1.0:
        sel = sel.div_(temperature)   # in place: gather allocated sel, and its backward does not need it
    return token_logprobs(sel, targets)                                  # (B, Lr)


def _whiten(x, mask, all_reduce):
    """(x − mean) / std over the masked entries of the global batch."""
    s = torch.stack([torch.where(mask, x, 0).sum(), torch.where(mask, x * x, 0).sum(), mask.sum().to(x.dtype)])
    if all_reduce is not None:
        s = all_reduce(s)
    n = s[2].clamp(min=1)
    mean = s[0] / n
    var = (s[1] / n - mean * mean).clamp(min=0)
    return (x - mean) * torch.rsqrt(var + 1e-8)


def _sampler_old_logp(batch, sampler_logp, Lr):
    """(S, Lr) π_old from generate_fn's per-token log-probs of each row's current window (0 elsewhere)."""
    if sampler_logp is None:
        raise ValueError("TPPOConfig.old_logp_from_sampler=True needs generate_fn to return the per-token sampling "
                         "log-probs as a third value: (new_tokens, eos, logprobs)")
    if len(sampler_logp) != len(batch):
        raise ValueError(f"generate_fn returned log-probs for {len(sampler_logp)} rows, expected {len(batch)}")
    out = torch.zeros(len(batch), Lr)
    for b, (r, lp) in enumerate(zip(batch, sampler_logp)):
        if len(lp) != len(r.window):
            raise ValueError(f"generate_fn returned {len(lp)} log-probs for rollout {r.rid}, which has "
                             f"{len(r.window)} new tokens; give one log-prob per new token")
        row = torch.as_tensor(lp, dtype=torch.float32).reshape(-1)
        if not bool(torch.isfinite(row).all()):
            raise ValueError(f"generate_fn returned a non-finite log-prob for rollout {r.rid}: {lp}")
        out[b, r.window_start:len(r.response)] = row
    return out


@torch.no_grad()
def build_step_batch(batch: list, cfg: TPPOConfig, policy, critic, *, pad_id=0, device=None,
                     all_reduce=None, policy_rows=None, sampler_logp=None, need_old_logp=True) -> StepBatch:
    """Old log-probs, values, EGAE advantages and critic targets for a generated (recorded, rewarded) batch.
    `policy_rows` (S,) bools: rows the policy trains on (default all; see RolloutPool.has_gradient).
    `sampler_logp`: per row, the sampler's log-probs of this window's tokens; used as π_old when
      cfg.old_logp_from_sampler (required then). `need_old_logp=False` (critic warm-up) leaves old_logp at 0.
    The policy forward runs only when π_old is recomputed (needed, not from the sampler, some policy token)."""
    if device is None:   # default: where the policy's parameters live (CPU for a parameter-free callable)
        p = next(iter(policy.parameters()), None) if isinstance(policy, nn.Module) else None
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    S = len(batch)
    P = torch.tensor([len(r.prompt) for r in batch], device=device)
    L = torch.tensor([len(r.response) for r in batch], device=device)
    ws = torch.tensor([r.window_start for r in batch], device=device)
    wl = L - ws                                                           # l
    finished = torch.tensor([r.finished for r in batch], device=device)
    rewards = torch.tensor([float(r.reward) for r in batch], device=device)
    T = int((P + L).max())
    Lr = max(int(L.max()), 1)
    tokens = torch.full((S, T), pad_id, dtype=torch.long)                # built on the host, one copy to device
    saved = torch.zeros(S, Lr)                                            # values saved for earlier windows
    for b, r in enumerate(batch):
        seq = r.prompt + r.response
        tokens[b, :len(seq)] = torch.tensor(seq, dtype=torch.long)
        if r.window_start:
            saved[b, :r.window_start] = torch.tensor(r.values[:r.window_start])
    tokens, saved = tokens.to(device), saved.to(device)
    t = torch.arange(Lr, device=device)[None]                             # (1, Lr)
    resp_mask = t < L[:, None]
    window_mask = resp_mask & (t >= ws[:, None])
    rows = torch.ones(S, dtype=torch.bool) if policy_rows is None else torch.as_tensor(policy_rows, dtype=torch.bool)
    policy_mask = window_mask & rows.to(device)[:, None]
    pred_pos = (P[:, None] + t - 1).clamp(max=T - 1)                      # (S, Lr)
    targets = torch.where(resp_mask, tokens.gather(1, (pred_pos + 1).clamp(max=T - 1)), 0)
    value_mask = resp_mask & finished[:, None]
    nll_mask = value_mask & (rewards > 0)[:, None]

    # π_old at the step-start weights, on current-window tokens (card §8): the sampler's own log-probs when they
    # come from the same weights and τ (issue 15), else recomputed; skipped when the policy does not train.
    if need_old_logp and cfg.old_logp_from_sampler:
        old_logp = _sampler_old_logp(batch, sampler_logp, Lr).to(device)
    elif need_old_logp and bool(policy_mask.any()):
        old_logp = torch.where(window_mask, _response_logprobs(policy, tokens, pred_pos, targets, cfg.temperature),
                               0.0)
    else:
        old_logp = torch.zeros(S, Lr, device=device)
    # V at the step-start weights: fresh for this window's tokens, the saved values for earlier windows.
    values_all = torch.zeros(S, T, device=device)                        # (S, T); 0 past each row's end
    for mic in _micro(torch.arange(S, device=device), cfg, P + L):       # length buckets (see _micro)
        Tm = int((P + L)[mic].max())
        values_all[mic, :Tm] = _values_of(critic, tokens[mic, :Tm])
    fresh = values_all.gather(1, pred_pos)                                # (S, Lr) V(s_t)
    old_values = torch.where(window_mask, fresh, saved)
    old_values = torch.where(resp_mask, old_values, 0.0)

    # Window-local layout for EGAE: index j ↔ response token ws + j (card §3).
    Wm = max(int(wl.max()), 1)
    j = torch.arange(Wm, device=device)[None]
    jvalid = j < wl[:, None]
    values_w = torch.where(jvalid, fresh.gather(1, (ws[:, None] + j).clamp(max=Lr - 1)), 0.0)
    rewards_w = torch.where(finished[:, None] & (j == wl[:, None] - 1), rewards[:, None], 0.0)
    next_values = values_all.gather(1, (P + L - 1).clamp(max=T - 1)[:, None]).squeeze(1)   # V(s_l), exact bootstrap
    if cfg.lam_alpha > 0:
        lam = egae.length_adaptive_lambda(L, alpha=cfg.lam_alpha, floor=cfg.lam_floor, finished=finished,
                                          window=cfg.window)             # unfinished rows use L + W/2
    else:
        lam = torch.full((S,), cfg.lam_floor, device=device)
    adv_w, _ = egae.egae(rewards_w, values_w, wl, finished, gamma=cfg.gamma, lam=lam, bootstrap=cfg.bootstrap,
                         next_values=next_values)
    adv_w = torch.where(jvalid, adv_w.float(), 0.0)
    # Post-processing (card §5): ignore last k of unfinished windows → whiten → clamp.
    ignored = (~finished)[:, None] & (j >= wl[:, None] - cfg.ignore_last)
    keep = jvalid & ~ignored & rows.to(device)[:, None]
    adv_pp = _whiten(adv_w, keep, all_reduce) if cfg.whiten else adv_w
    if cfg.adv_clamp > 0:
        adv_pp = adv_pp.clamp(-cfg.adv_clamp, cfg.adv_clamp)
    adv_pp = torch.where(keep, adv_pp, 0.0)

    # Back to response layout by gathering (never scatter: padded j would collide with real positions).
    jj = (t - ws[:, None]).clamp(0, Wm - 1)
    adv_raw = torch.where(window_mask, adv_w.gather(1, jj), 0.0)
    adv = torch.where(window_mask, adv_pp.gather(1, jj), 0.0)

    # Critic targets over the whole response, finished rows only (card §6).
    rewards_full = torch.where(finished[:, None] & (t == L[:, None] - 1), rewards[:, None], 0.0)
    if cfg.critic_lam == 1.0:
        ret = egae.monte_carlo_returns(rewards_full, L, gamma=cfg.gamma)
    else:
        ret = egae.egae(rewards_full, old_values, L, torch.ones_like(finished), gamma=cfg.gamma,
                        lam=cfg.critic_lam)[1]
    returns = torch.where(value_mask, ret.float(), 0.0)
    return StepBatch(rids=[r.rid for r in batch], tokens=tokens, seq_lens=P + L, pred_pos=pred_pos, targets=targets,
                     resp_mask=resp_mask, window_mask=window_mask, policy_mask=policy_mask, value_mask=value_mask,
                     nll_mask=nll_mask,
                     finished=finished, rewards=rewards, lengths=L, window_lengths=wl, lam=lam, old_logp=old_logp,
                     old_values=old_values, adv_raw=adv_raw, adv=adv, returns=returns)


def _reduce(x, all_reduce):
    return all_reduce(x) if all_reduce is not None else x


def _optimizer_step(params, opt, cfg, all_reduce):
    if all_reduce is not None:   # sum grads over ranks (each rank's loss is already divided by global counts)
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            p.grad = all_reduce(p.grad)
    norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm) if cfg.max_grad_norm > 0 else None
    opt.step()
    return norm


def _micro(idx, cfg, seq_lens=None):
    """Micro-batches (forward/backward calls, gradients accumulate) of the row indices idx.

    cfg.micro_batch_size > 0: chunks of that many rows. 0 (auto): with `seq_lens`, rows grouped by length — longest
    first, and a new micro-batch starts at the first row shorter than half of its micro-batch's longest — so that one
    long carried prefix does not pad every short row of its mini-batch to its length (each call runs on
    rows × longest row tokens); without seq_lens, one call. Every loss here is a sum over tokens divided by
    whole-batch counts, so the split changes the gradient only by float summation order (tested)."""
    if cfg.micro_batch_size or seq_lens is None or len(idx) <= 1:
        n = cfg.micro_batch_size or max(len(idx), 1)
        return [idx[i:i + n] for i in range(0, len(idx), n)] or [idx]
    return length_groups(idx, seq_lens)


def length_groups(idx, seq_lens):
    """The row indices idx (≥ 1 of them) in groups of similar length: longest first, and a new group starts at the
    first row shorter than half of its group's longest (each row then carries at most ~2x its own length in
    padding). seq_lens is indexed by row. Used for the update's micro-batches and by train.py's prefill."""
    lens = seq_lens[idx]
    order = idx[torch.argsort(lens, descending=True, stable=True)]
    out, start, head = [], 0, int(lens.max())
    for i, n in enumerate(seq_lens[order].tolist()):
        if 2 * n < head:
            out.append(order[start:i])
            start, head = i, n
    return out + [order[start:]]


def _trim(sb, rows):
    """Row subset of the batch, with the token tensor cut to the longest row of the subset."""
    Tm = int(sb.seq_lens[rows].max())
    return sb.tokens[rows, :Tm], sb.pred_pos[rows].clamp(max=Tm - 1)


def update_critic(sb: StepBatch, cfg: TPPOConfig, critic, critic_opt, n_minibatches: int, all_reduce=None) -> dict:
    """Clipped value regression on finished rows (every token of every window), `n_minibatches` optimizer steps."""
    params = [p for p in critic.parameters() if p.requires_grad]
    rows = torch.nonzero(sb.finished).squeeze(1)
    loss_sum, clip_sum, tok_sum = 0.0, 0.0, 0.0
    for chunk in torch.tensor_split(rows, n_minibatches):
        n_tok = _reduce(sb.value_mask[chunk].sum().float(), all_reduce)
        if float(n_tok) == 0:
            continue   # no finished token on any rank: every rank skips together
        critic_opt.zero_grad(set_to_none=True)
        for mic in _micro(chunk, cfg, sb.seq_lens):
            if len(mic) == 0:
                continue
            tok, pp = _trim(sb, mic)
            v = _values_of(critic, tok).gather(1, pp)
            loss, st = value_loss(v, sb.old_values[mic], sb.returns[mic], sb.value_mask[mic],
                                  cfg.value_clip_low, cfg.value_clip_high, denominator=n_tok)
            loss.backward()
            k = float(sb.value_mask[mic].sum())
            loss_sum += float(loss.detach()) * float(n_tok)
            clip_sum += float(st["clipfrac"]) * k
            tok_sum += k
        _optimizer_step(params, critic_opt, cfg, all_reduce)
    return {"value/loss": loss_sum / max(tok_sum, 1), "value/clipfrac": clip_sum / max(tok_sum, 1)}


def update_policy(sb: StepBatch, cfg: TPPOConfig, policy, policy_opt, step: int, all_reduce=None) -> dict:
    """PPO epochs over shuffled mini-batches: clip-higher/dual-clip loss on window tokens + μ·NLL.

    Loss denominators (card §8, `loss_agg_mode='batch'`): mini-batch k's loss is
      n_mb · Σ_{t ∈ k} ℓ_t / N_policy + μ · n_mb · Σ_{t ∈ k} −log π_θ(a_t) / N_nll,
    with N_policy / N_nll the policy / NLL token counts of the *whole batch* summed over ranks and n_mb the number of
    mini-batches per epoch. Every token weighs the same wherever it lands (a per-mini-batch token mean overweights
    the tokens of a small mini-batch), and the mean of the n_mb mini-batch losses is the whole-batch token mean, so
    the gradient scale (and what lr and max_grad_norm mean) is that of a token mean."""
    params = [p for p in policy.parameters() if p.requires_grad]
    S = sb.tokens.shape[0]
    gen = torch.Generator().manual_seed(cfg.seed + step)
    agg = {k: 0.0 for k in ("loss", "nll", "clipfrac", "dual_clip_frac", "approx_kl", "tokens")}
    first_dev, n_updates = 0.0, 0
    for _ in range(cfg.ppo_epochs):
        perm = torch.randperm(S, generator=gen).to(sb.tokens.device)
        mbs = perm.split(cfg.minibatch_size)                     # same split on every rank (same S, same seed)
        # per-mini-batch (policy, NLL) token counts of all ranks, in one reduction; their sum is the batch's
        counts = _reduce(torch.stack([torch.stack([sb.policy_mask[mb].sum(), sb.nll_mask[mb].sum()])
                                      for mb in mbs]).float(), all_reduce)               # (n_mb, 2)
        n_mb = len(mbs)
        d_pol = counts[:, 0].sum().clamp(min=1) / n_mb           # N_policy / n_mb
        d_nll = counts[:, 1].sum().clamp(min=1) / n_mb           # N_nll / n_mb
        for k_mb, mb in enumerate(mbs):
            if float(counts[k_mb].sum()) == 0:
                continue   # no policy or NLL token on any rank: every rank skips together
            policy_opt.zero_grad(set_to_none=True)
            mb = mb[(sb.policy_mask[mb] | sb.nll_mask[mb]).any(1)]   # rows with no loss token add 0: skip their forward
            for mic in _micro(mb, cfg, sb.seq_lens):
                if len(mic) == 0:
                    continue
                tok, pp = _trim(sb, mic)
                logp = _response_logprobs(policy, tok, pp, sb.targets[mic], cfg.temperature)
                loss, st = policy_loss(logp, sb.old_logp[mic], sb.adv[mic], sb.policy_mask[mic], cfg.clip_low,
                                       cfg.clip_high, cfg.dual_clip, max_log_ratio=cfg.max_log_ratio,
                                       denominator=d_pol)
                nll = -torch.where(sb.nll_mask[mic], logp, 0.0).sum() / d_nll
                (loss + cfg.nll_weight * nll).backward()
                k = float(sb.policy_mask[mic].sum())
                if n_updates == 0:   # ρ = 1 up to numerics before the first optimizer step (card §13.9)
                    first_dev = max(first_dev, float(st["ratio_max_dev"]))
                agg["loss"] += float(loss.detach()) * float(d_pol)   # this rank's Σ ℓ_t
                agg["nll"] += float(nll.detach()) * float(d_nll)
                for key in ("clipfrac", "dual_clip_frac", "approx_kl"):
                    agg[key] += float(st[key]) * k
                agg["tokens"] += k
            _optimizer_step(params, policy_opt, cfg, all_reduce)
            n_updates += 1
    n = max(agg["tokens"], 1)
    n_nll = max(float(sb.nll_mask.sum()) * cfg.ppo_epochs, 1)
    return {"policy/loss": agg["loss"] / n, "policy/nll": agg["nll"] / n_nll,
            "policy/clipfrac": agg["clipfrac"] / n, "policy/dual_clip_frac": agg["dual_clip_frac"] / n,
            "policy/approx_kl": agg["approx_kl"] / n, "policy/first_ratio_dev": first_dev, "policy/updates": n_updates}


def tppo_step(pool: RolloutPool, cfg: TPPOConfig, *, policy, critic, policy_opt, critic_opt, generate_fn,
              reward_fn, next_prompt, step: int, pad_id: int = 0, device=None, all_reduce=None,
              return_batch: bool = False):
    """One T-PPO step: generate one window per slot → rewards → EGAE → critic update → policy update → carry.

    Interfaces (all model-agnostic):
      policy(tokens (B, T) long) -> logits (B, T, V); critic(tokens) -> values (B, T) (or (B, T, 1)). Both must be
        causal (output at position p depends on tokens ≤ p only); rows are right-padded with `pad_id`. The output at
        position p predicts token p + 1 and is the value of the state before it (V(s_t) sits before a_t).
      generate_fn(contexts: list[list[int]], max_new_tokens: list[int]) -> (new_tokens: list[list[int]],
        eos: list[bool]) or (new_tokens, eos, logprobs: list[list[float]]). Row b continues contexts[b] (= prompt +
        response so far) with at most max_new_tokens[b] tokens, its EOS token included when it emits one (then
        eos[b] = True). Sampling uses the current policy at cfg.temperature. The optional logprobs[b][i] =
        log softmax(z/τ)[new_tokens[b][i]] under which the token was drawn; with cfg.old_logp_from_sampler they
        are π_old (no recomputing forward). That is exact only when the sampler ran the step-start weights at
        cfg.temperature (as here: it is called first in the step); a different engine, precision or stale weights
        would make ρ ≠ 1 at the first mini-batch (see policy/first_ratio_dev).
      reward_fn(rollout: Rollout) -> float: the verifier score of a finished rollout (rollout.prompt, .response,
        .meta, .eos); only called for finished rollouts; never expected to raise.
      next_prompt() -> (prompt_tokens: list[int], meta) or (prompt_tokens, meta, max_len: int): a fresh prompt; each
        becomes group_size rollouts. max_len (optional, ≤ L_max) is that prompt's own response budget: its rollouts
        finish (unscored tail cut, as in evaluation) at max_len tokens instead of L_max.
      policy_opt / critic_opt: torch optimizers; this function calls zero_grad/step itself, once per mini-batch.
        The forward passes must be deterministic (no dropout), or ρ = 1 on the first mini-batch does not hold.
      device: where the step's tensors live (default: the policy's parameters' device).
      all_reduce: optional callable summing a tensor over data-parallel ranks and returning it (e.g.
        `lambda t: (dist.all_reduce(t), t)[1]`). It is applied to token counts, whitening moments, gradients (do
        NOT wrap the models in DDP) and the additive metrics. Every rank runs its own pool with the same config.
    Returns: metrics dict (see README glossary), plus the StepBatch when return_batch=True.
    Checkpoint between steps with pool.state_dict(): it holds every carried and waiting rollout (with saved values).
    """
    t0 = time.perf_counter()
    batch = pool.next_batch(next_prompt)
    n_slots = len(batch)
    n_carried = sum(r.round > 0 for r in batch)
    limits = [pool.max_new_tokens(r) for r in batch]
    contexts = [r.prompt + r.response for r in batch]
    if cfg.refill and cfg.window < cfg.max_response:     # continuous batching (beyond the paper); PPO never refills
        def refill():
            r = pool.take_fresh(next_prompt)
            r.refilled = True
            batch.append(r)                               # part of this step's batch, in hand-out order
            return r.prompt + r.response, pool.max_new_tokens(r)
        out = tuple(generate_fn(contexts, limits, refill))
    else:
        out = tuple(generate_fn(contexts, limits))
    if len(out) not in (2, 3):
        raise ValueError(f"generate_fn must return (new_tokens, eos) or (new_tokens, eos, logprobs), got a "
                         f"{len(out)}-tuple")
    new_tokens, eos = out[:2]
    sampler_logp = out[2] if len(out) == 3 else None
    t_gen = time.perf_counter() - t0
    pool.record(batch, new_tokens, eos, n_slots)
    t1 = time.perf_counter()
    for r in batch:
        r.reward = float(reward_fn(r)) if r.finished else 0.0   # unfinished: score forced to 0 (card §4)
        if not math.isfinite(r.reward):
            raise ValueError(f"reward_fn returned a non-finite reward {r.reward} for rollout {r.rid}")

    t2 = time.perf_counter()
    rows = pool.has_gradient(batch) if cfg.group_filter else None
    sb = build_step_batch(batch, cfg, policy, critic, pad_id=pad_id, device=device, all_reduce=all_reduce,
                          policy_rows=rows, sampler_logp=sampler_logp, need_old_logp=step >= cfg.critic_warmup)
    t3 = time.perf_counter()
    n_mb = -(-len(batch) // cfg.minibatch_size)
    metrics = update_critic(sb, cfg, critic, critic_opt, n_mb, all_reduce)          # critic first (card §9)
    t4 = time.perf_counter()
    if step >= cfg.critic_warmup:
        metrics.update(update_policy(sb, cfg, policy, policy_opt, step, all_reduce))
    t5 = time.perf_counter()
    # Save this window's step-start values: they are V_old of these tokens when the response finishes later.
    fresh = sb.old_values.cpu()
    for b, r in enumerate(batch):
        r.values = fresh[b, :len(r.response)].tolist()
    pool.carry(batch)

    # Metrics. Additive quantities are summed over ranks; percentiles are this rank's.
    wl = sb.window_lengths.float()
    fin = sb.finished
    vm = sb.value_mask
    ret, v_old = sb.returns[vm], sb.old_values[vm]
    # decode steps run: the longest original row; with refills every slot stays busy to the window's end
    steps_run = max(wl[:n_slots].max(), torch.tensor(float(max(limits))) if len(batch) > n_slots else wl.max())
    sums = torch.tensor([float(x) for x in (wl.sum(), n_slots * steps_run, fin.sum(), sb.rewards[fin].sum(),
                                            (sb.rewards[fin] > 0).sum(), sb.lengths[fin].sum(),
                                            (sb.seq_lens - wl).sum(), sb.seq_lens.sum())], device=sb.tokens.device)
    if all_reduce is not None:
        sums = all_reduce(sums)
    tokens, slot_steps, n_fin, r_sum, n_pass, len_sum, ctx_tokens, seq_tokens = sums.cpu().tolist()
    fin_len = sb.lengths[fin].float()
    wm = sb.window_mask
    metrics.update({
        "step": step,
        "gen/util": tokens / max(slot_steps, 1),            # useful token-slots / slot-steps (synchronous decode)
        "gen/tokens": tokens,
        "gen/slot_steps": slot_steps,                       # slots × decode steps of this step's generate call
        "gen/time_s": t_gen,
        "gen/tokens_per_s": tokens / max(t_gen, 1e-9),
        # re-encoding (T-PPO pays it for every carried rollout, every window; PPO for prompts only):
        "gen/context_tokens": ctx_tokens,                   # prompt + response before this window, every row (the
                                                            # sampler prefills them, refilled rows included)
        "update/seq_tokens": seq_tokens,                    # tokens of the step's sequences, which each update
                                                            # forward reads in full (prompt + whole response so far)
        "pool/finished": n_fin,
        "pool/carried_in": n_carried,
        "pool/refilled": len(batch) - n_slots,              # fresh rollouts that took a freed slot mid-window
        "pool/unfinished": len(batch) - int(fin.sum()),
        "pool/filtered": len(batch) - sum(rows) if rows is not None else 0,   # rows left out of the policy loss
        "resp/len_mean": len_sum / max(n_fin, 1),
        "resp/len_p90": float(torch.quantile(fin_len, 0.9)) if fin_len.numel() else 0.0,
        "reward/mean": r_sum / max(n_fin, 1),
        "reward/pass": n_pass / max(n_fin, 1),
        # 1 − Var[G − V_old] / Var[G]; undefined (reported 0) when every target is the same
        "value/explained_var": float(1 - (ret - v_old).var() / ret.var()) if ret.numel() > 1
        and float(ret.var()) > 1e-8 else 0.0,
        "adv/mean": float(sb.adv[wm].mean()) if wm.any() else 0.0,
        "adv/std": float(sb.adv[wm].std()) if int(wm.sum()) > 1 else 0.0,
        "adv/raw_abs_mean": float(sb.adv_raw[wm].abs().mean()) if wm.any() else 0.0,
        "lam/mean": float(sb.lam.mean()),
        "time/step_s": time.perf_counter() - t0,
        # per-phase profile of this step (seconds): where the time goes
        "time/gen_s": t_gen,                                 # generate_fn (the sampler)
        "time/reward_s": t2 - t1,                            # verifier calls of finished rollouts
        "time/batch_s": t3 - t2,                             # forwards building the StepBatch (values, π_old)
        "time/critic_s": t4 - t3,                            # critic mini-batch updates
        "time/policy_s": t5 - t4,                            # policy mini-batch updates (0 during warm-up)
    })
    return (metrics, sb) if return_batch else metrics


# ----------------------------------------------------------------------------------------------------------------
# Toy problem: "emit exactly n copies of A, then EOS" (a verifiable, variable-length answer)
# ----------------------------------------------------------------------------------------------------------------

PAD, EOS, TOK_A, TOK_B, FIRST_N = 0, 1, 2, 3, 4     # prompt token FIRST_N + n − 1 means "n"


class ToyLM(nn.Module):
    """Tiny causal model: output at position p = MLP(e_pair[x_0, p] + e_tok[x_p]).

    The embedding is indexed by (prompt token, position), so the toy can learn "stop after n tokens" for each n
    without learning arithmetic. Causal by construction. As a policy its output vocabulary is {EOS, A, B} (other
    logits are −1e9); as a critic (out_dim=1) it returns (B, T) values.
    """

    def __init__(self, vocab: int, max_len: int, d: int = 64, out_dim: Optional[int] = None):
        super().__init__()
        self.max_len = max_len
        self.pair, self.tok = nn.Embedding(vocab * max_len, d), nn.Embedding(vocab, d)
        self.mlp = nn.Sequential(nn.Tanh(), nn.Linear(d, 2 * d), nn.Tanh(), nn.Linear(2 * d, out_dim or vocab))
        self.is_critic = out_dim == 1
        mask = torch.full((vocab,), -1e9)
        mask[[EOS, TOK_A, TOK_B]] = 0.0
        self.register_buffer("out_mask", mask if not self.is_critic else torch.zeros(1))

    def features(self, first, cur, pos):
        return self.mlp(self.pair(first * self.max_len + pos) + self.tok(cur)) + self.out_mask

    def forward(self, tokens):                                            # (B, T) → (B, T, V) or (B, T)
        B, T = tokens.shape
        out = self.features(tokens[:, :1], tokens, torch.arange(T, device=tokens.device)[None])
        return out.squeeze(-1) if self.is_critic else out


@torch.no_grad()
def toy_generate(model: ToyLM, contexts, max_new_tokens, gen: torch.Generator, temperature: float = 1.0,
                 return_logprobs: bool = False, refill: Optional[Callable] = None):
    """Synchronous batched sampling from softmax(z / τ): one decode step for the whole batch until every row is
    done (like a GPU engine without continuous batching), so the cost grows with the longest row.
    With `refill` (continuous batching): before each decode step, every stopped slot calls refill() ->
    (context, max_new_tokens) | None and decodes that rollout for min(max_new_tokens, steps left) tokens; the
    results then list the original rows, then the refilled rollouts in hand-out order.
    Returns (tokens, eos), plus the per-token sampling log-probs log softmax(z / τ)[a_t] when return_logprobs."""
    B = len(contexts)
    S = max(max_new_tokens, default=0)
    first = torch.tensor([c[0] for c in contexts])
    cur = torch.tensor([c[-1] for c in contexts])
    pos = torch.tensor([len(c) - 1 for c in contexts])
    limit = list(max_new_tokens)
    rows, lps = [[] for _ in range(B)], [[] for _ in range(B)]
    slot = list(range(B))                      # slot b → index of the rollout it decodes in rows
    done = [k <= 0 for k in limit]
    for s in range(S):
        for b in range(B):
            if done[b] and refill is not None:
                got = refill()
                if got is None:
                    refill = None
                    break
                ctx, k = got
                slot[b] = len(rows)
                rows.append([]), lps.append([])
                first[b], cur[b], pos[b] = ctx[0], ctx[-1], len(ctx) - 1
                limit[b] = min(k, S - s)
                done[b] = limit[b] <= 0
        if all(done):
            break
        z = model.features(first, cur, pos) / temperature                                   # (B, V)
        nxt = torch.multinomial(torch.softmax(z, -1), 1, generator=gen).squeeze(1)
        lp = torch.log_softmax(z, -1).gather(1, nxt[:, None]).squeeze(1).tolist()
        for b, t in enumerate(nxt.tolist()):
            if done[b]:
                continue
            rows[slot[b]].append(t)
            lps[slot[b]].append(lp[b])
            cur[b], pos[b] = t, pos[b] + 1
            done[b] = t == EOS or len(rows[slot[b]]) >= limit[b]
    eos = [bool(r) and r[-1] == EOS for r in rows]
    if return_logprobs:
        return rows, eos, lps
    return rows, eos


class ToyTask:
    """Prompt "n" (n ~ p(n) ∝ 1/n on 1…n_max: long-tailed answer lengths); the answer is A×n EOS.

    Verifier (in [−1, 1], like the ±1 math rewards of the card): +1 for the exact answer; a well-formed answer
    A×k EOS with k ≠ n scores −|k − n|/n (≥ −1); anything else (a B, no EOS / overlong) scores −1. Only exact answers
    are positive, so the NLL term (reward > 0) imitates correct answers only."""

    def __init__(self, n_max: int, seed: int):
        self.n_max, self.rng = n_max, random.Random(seed)
        self.weights = [1.0 / n for n in range(1, n_max + 1)]

    def next_prompt(self):
        n = self.rng.choices(range(1, self.n_max + 1), self.weights)[0]
        return [FIRST_N + n - 1], n

    @staticmethod
    def reward(r: Rollout) -> float:
        n, resp = r.meta, r.response
        if not r.eos or any(t != TOK_A for t in resp[:-1]):
            return -1.0
        k = len(resp) - 1
        return 1.0 if k == n else -min(1.0, abs(k - n) / n)


def run_toy(cfg: TPPOConfig, steps: int, *, n_max: int = 16, seed: int = 0, lr: float = 3e-3, critic_lr: float = 1e-2,
            d: int = 64, target_reward: Optional[float] = None, reward_window: int = 256,
            max_seconds: Optional[float] = None, log: Optional[Callable[[str], None]] = None) -> list:
    """Train the toy task with T-PPO (PPO when cfg.window >= cfg.max_response); returns the metrics per step.

    Each metrics dict also has 'reward/recent' (mean reward of the last `reward_window` finished responses) and
    'time/elapsed_s'; training stops early once reward/recent >= target_reward (if given)."""
    torch.manual_seed(seed)
    vocab = FIRST_N + n_max
    max_len = 1 + cfg.max_response + 1
    policy, critic = ToyLM(vocab, max_len, d), ToyLM(vocab, max_len, d, out_dim=1)
    popt = torch.optim.Adam(policy.parameters(), lr=lr)
    copt = torch.optim.Adam(critic.parameters(), lr=critic_lr)
    task, pool, gen = ToyTask(n_max, seed), RolloutPool.from_config(cfg), torch.Generator().manual_seed(seed)
    recent, hist, t_start = [], [], time.perf_counter()
    for step in range(steps):
        m, sb = tppo_step(pool, cfg, policy=policy, critic=critic, policy_opt=popt, critic_opt=copt,
                          generate_fn=lambda ctx, k, refill=None: toy_generate(
                              policy, ctx, k, gen, cfg.temperature, return_logprobs=cfg.old_logp_from_sampler,
                              refill=refill),
                          reward_fn=task.reward, next_prompt=task.next_prompt, step=step, return_batch=True)
        recent = (recent + sb.rewards[sb.finished].tolist())[-reward_window:]
        m["reward/recent"] = sum(recent) / max(len(recent), 1)
        m["time/elapsed_s"] = time.perf_counter() - t_start
        m["resp/lengths"] = sb.lengths[sb.finished].tolist()
        hist.append(m)
        if log is not None:
            log(format_metrics(m, steps))
        if target_reward is not None and len(recent) >= reward_window // 2 and m["reward/recent"] >= target_reward:
            break
        if max_seconds is not None and m["time/elapsed_s"] > max_seconds:
            break
    return hist


def format_metrics(m: dict, steps: int) -> str:
    return (f"step {m['step']:4d}/{steps} | reward {m['reward/mean']:.2f} | recent {m.get('reward/recent', 0):.2f} "
            f"| fin {m['pool/finished']:3.0f} carry {m['pool/unfinished']:3d} "
            f"| len {m['resp/len_mean']:5.1f} p90 {m['resp/len_p90']:5.1f} "
            f"| policy {m.get('policy/loss', 0):+.3f} | value {m['value/loss']:.3f} "
            f"| clipfrac {m.get('policy/clipfrac', 0):.2f} | ev {m['value/explained_var']:+.2f} "
            f"| util {m['gen/util']:.2f} | {m['time/step_s']:.2f} s")


# ----------------------------------------------------------------------------------------------------------------
# Demo and benchmark
# ----------------------------------------------------------------------------------------------------------------

def _toy_config(window: int, **kw) -> TPPOConfig:
    base = dict(window=window, max_response=48, slots=64, group_size=4, minibatch_size=32, critic_warmup=2,
                ignore_last=1)
    base.update(kw)
    return TPPOConfig(**base)


def bench(seeds=(0, 1, 2), steps=500, target=0.5, n_max=40, max_seconds=120.0):
    """T-PPO (W = 8, without and with slot refill) vs PPO (W = L_max = 48) on the toy task, same seeds; prints a
    table and the ratios (T-PPO = the paper's synchronous windows, first row group, vs PPO, last)."""
    rows = []
    for name, window, refill in (("T-PPO W=8", 8, False), ("T-PPO+refill", 8, True), ("PPO W=L_max", 48, False)):
        for seed in seeds:
            cfg = _toy_config(window, refill=refill)
            hist = run_toy(cfg, steps, n_max=n_max, seed=seed, target_reward=target, max_seconds=max_seconds)
            tok = sum(m["gen/tokens"] for m in hist)
            slot_steps = sum(m["gen/slot_steps"] for m in hist)
            gen_t = sum(m["gen/time_s"] for m in hist)
            lens = sorted(x for m in hist for x in m["resp/lengths"])
            p50, p90 = lens[len(lens) // 2], lens[int(0.9 * (len(lens) - 1))]
            reached = hist[-1]["reward/recent"] >= target
            nan = float("nan")
            rows.append(dict(algo=name, seed=seed, util=tok / slot_steps, tok_s=tok / gen_t, steps=len(hist),
                             gen_share=gen_t / hist[-1]["time/elapsed_s"],
                             decode=slot_steps / cfg.slots if reached else nan, gen_s=gen_t if reached else nan,
                             wall=hist[-1]["time/elapsed_s"] if reached else nan, p50=p50, p90=p90,
                             reward=hist[-1]["reward/recent"]))
    print(f"toy task: n ~ 1/n on 1..{n_max}, slots 64 (16 prompts x 4), L_max 48; target = mean reward of the last "
          f"256 finished responses >= {target}; nan = not reached within {steps} steps / {max_seconds:.0f} s")
    hdr = (f"{'algo':12s} {'seed':>4s} {'util':>6s} {'gen tok/s':>9s} {'steps':>5s} {'decode steps':>12s} "
           f"{'gen s':>6s} {'wall s':>6s} {'gen %':>5s} {'len p50/p90':>11s} {'reward':>6s}")
    print(hdr)
    for r in rows:
        print(f"{r['algo']:12s} {r['seed']:4d} {r['util']:6.3f} {r['tok_s']:9.0f} {r['steps']:5d} {r['decode']:12.0f} "
              f"{r['gen_s']:6.2f} {r['wall']:6.1f} {100 * r['gen_share']:5.1f} {r['p50']:5d}/{r['p90']:<5d} "
              f"{r['reward']:6.2f}")

    def mean(algo, k):
        v = [r[k] for r in rows if r["algo"] == algo]
        return sum(v) / len(v)
    a, b = rows[0]["algo"], rows[-1]["algo"]
    print(f"T-PPO vs PPO, mean over seeds {list(seeds)}:"
          f" generation utilization {mean(a, 'util') / mean(b, 'util'):.2f}x"
          f" | generation tokens/s {mean(a, 'tok_s') / mean(b, 'tok_s'):.2f}x"
          f" | to reward {target}, PPO/T-PPO: decode steps {mean(b, 'decode') / mean(a, 'decode'):.2f}x,"
          f" generation time {mean(b, 'gen_s') / mean(a, 'gen_s'):.2f}x,"
          f" wall-clock {mean(b, 'wall') / mean(a, 'wall'):.2f}x (> 1: T-PPO is faster)")
    print(f"response lengths p90/p50: T-PPO {mean(a, 'p90') / mean(a, 'p50'):.1f}, "
          f"PPO {mean(b, 'p90') / mean(b, 'p50'):.1f}")
    return rows


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="T-PPO toy demo / benchmark (CPU)")
    ap.add_argument("--bench", action="store_true", help="T-PPO vs PPO on a long-tailed toy task")
    ap.add_argument("--steps", type=int, default=60, help="demo steps")
    ap.add_argument("--seed", type=int, default=0, help="seed for everything (demo)")
    ap.add_argument("--seeds", type=str, default="0,1,2", help="bench: comma-separated seeds, same for both algos")
    ap.add_argument("--target", type=float, default=0.5, help="bench: target reward (mean of last 256 finished)")
    args = ap.parse_args()
    torch.set_num_threads(1)   # tiny toy models: extra threads only add OpenMP sync overhead
    if args.bench:
        bench(seeds=tuple(int(x) for x in args.seeds.split(",")), target=args.target)
    else:
        cfg = _toy_config(window=8, seed=args.seed)
        print(f"device cpu | T-PPO toy: W={cfg.window}, L_max={cfg.max_response}, slots={cfg.slots}, "
              f"group={cfg.group_size}, ≤ {cfg.max_windows} windows per response")
        hist = run_toy(cfg, args.steps, seed=args.seed, log=print)
        util = sum(m["gen/tokens"] for m in hist) / sum(m["gen/slot_steps"] for m in hist)
        print(f"reward (mean of the last 256 finished responses): {hist[0]['reward/recent']:+.2f} -> "
              f"{hist[-1]['reward/recent']:+.2f} | generation utilization {util:.2f} | rollouts carried into a later "
              f"window: {sum(m['pool/carried_in'] for m in hist):.0f} rollout-steps")
