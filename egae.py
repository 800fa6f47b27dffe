"""Extended Generalized Advantage Estimation (EGAE) from T-PPO.

Paper: "Truncated Proximal Policy Optimization", Fan et al. (ByteDance Seed), arXiv 2506.15050, 2025.
Inherited pieces: length-adaptive λ from VAPO (arXiv 2504.05118), decoupled critic λ = 1 from VC-PPO (arXiv 2503.01491).
Reference implementation read for details: verl PR #3728, `recipe/tppo/tppo_algos.py`
(`compute_truncate_gae_advantage_return`). Paper card: `shared/papers/tppo_egae.md`.

T-PPO trains the policy on *windows* of at most W generated tokens. A window either ends with EOS (or is the last window
of an over-long response): it is **finished**; or it was cut after l = W tokens: it is **unfinished**, and the rest of
the response does not exist yet. EGAE computes advantages for the tokens of the current window only.

Equations (0-indexed tokens; window-local values V_0 … V_{l−1}; layout (B, T) = (rows, window positions)):

    δ_t = r_t + γ V_{t+1} − V_t                                   TD residual                 (card §3)
    Â_t = Σ_{k=0}^{T−t−1} (γλ)^k δ_{t+k},   Â_t = δ_t + γλ Â_{t+1}   GAE                         (Eq. 2/3)
    finished window:   V_T := 0                                   (terminal state)
    unfinished window: T is replaced by the cut length l,
    Â_t = Σ_{k=0}^{l−t−1} (γλ)^k δ_{t+k},  with V(s_l) ≈ V(s_{l−1})   EGAE                        (Eq. 6)
          so δ_{l−1} = r_{l−1} + (γ − 1) V_{l−1}, which is 0 for γ = 1 (the unfinished reward is 0)
    returns: ret_t = Â_t + V_t
    λ_i = max(0.95, 1 − 1/(α L_i)),  α = 0.05                    length-adaptive λ (VAPO)
    G_t = Σ_{t' ≥ t} γ^{t'−t} r_{t'}                              Monte-Carlo returns (critic targets, λ = 1)

Everything reduces to one primitive: a *reverse discounted scan* y_t = x_t + c_b y_{t+1} along T with one discount
c_b = γλ_b per row. Three implementations share the signature of `egae`:

* `egae_reference`   — the literal backward loop over t (vectorized over rows), reads like Eq. 2/6.
* `egae_torch`       — vectorized PyTorch, no loop over tokens: chunks of C tokens are solved with one (C × C)
                       upper-triangular matrix of powers c^{s−t} (a batched matmul); the chunk boundary values obey
                       the same scan with discount c^C on a C-times-shorter sequence, solved recursively. Only
                       non-negative powers of c are formed, never divisions, so it is stable for any c ∈ [0, 1] and
                       any T (the "cumsum of c^{−t} δ_t" trick overflows for small c and long T). Differentiable:
                       inputs that need a gradient take an out-of-place version; all others a no-grad version that
                       goes through rows in cache-sized blocks and writes every full-size result in place into one
                       preallocated output (no full-size temporaries, hence no page faults from fresh allocations).
* `egae_triton`      — one Triton program per row walks the row tile by tile from its end; a tile is solved with the
                       same power matrix (held in registers, fp32) and joined to the rest of the row by a carry.
                       Forward only.

`egae` dispatches: Triton for CUDA fp32/bf16/fp16 tensors when no gradient is needed, the vectorized path otherwise;
the module-level `IMPL` forces a path ("reference" | "torch" | "triton").

Deviations from the paper:
* `bootstrap="value"` (exact V(s_l), as ReaLHF/AReaL/CleanRL bootstrap truncated segments) is offered as an ablation;
  the paper's rule V(s_l) ≈ V(s_{l−1}) is the default `bootstrap="paper"`.
* The reference implementation's post-processing (zero the last 8 advantages of unfinished windows, batch whitening,
  clamp ±10) is not done here; it belongs to the training loop (`tppo.py`).
* Rewards are taken per token (any position), not only at the last token; with the usual terminal reward this is the
  paper's setting. Values and rewards past a row's length are ignored (zeroed before the recursion, card §14).
* Outputs are float32 (float64 for float64 inputs on the reference/PyTorch paths; the Triton path is fp32 only).

Run:
    python egae.py            # worked example: a finished and a truncated window side by side
    python egae.py --bench    # B = 256, T = 8192: per-token loops vs vectorized (vs Triton on CUDA); --threads N
    pytest tests/test_egae.py -q
"""
from __future__ import annotations

import argparse
import time

import torch

try:  # Triton is optional: importing this file must never fail on a CPU-only machine.
    import triton
    import triton.language as tl

    HAS_TRITON = True
except Exception:  # pragma: no cover - depends on the environment
    triton = None
    tl = None
    HAS_TRITON = False

# Force one implementation in `egae`: None (auto: Triton for CUDA, else PyTorch), "reference", "torch" or "triton".
IMPL: str | None = None
_IMPLS = (None, "reference", "torch", "triton")


# ----------------------------------------------------------------------------------------------------------------------
# Reference: the literal backward recursion (Eq. 2/6)
# ----------------------------------------------------------------------------------------------------------------------

def egae_reference(rewards, values, lengths, finished, gamma=1.0, lam=0.95, bootstrap="paper", next_values=None):
    """EGAE by the literal backward loop over t, vectorized over rows only. Same signature as `egae`.

    Args:
        rewards, values: (B, T) float. Entries at positions ≥ lengths[b] are ignored.
        lengths: (B,) int in [0, T], the valid prefix of each row in this window (l).
        finished: (B,) bool. True: EOS in the window / last window (V_T := 0). False: cut at l.
        gamma: float in [0, 1]. lam: float or (B,) tensor in [0, 1].
        bootstrap: "paper" (V(s_l) ≈ V(s_{l−1})) or "value" (V(s_l) = next_values[b]).
        next_values: (B,) float, needed for bootstrap="value".
    Returns:
        adv, ret: (B, T) float32 (float64 for float64 inputs); exactly 0 at positions ≥ lengths[b].
    """
    r, V, lengths, finished, gamma, lam, next_values = _check_args(
        rewards, values, lengths, finished, gamma, lam, bootstrap, next_values)
    B, T = r.shape
    v_boot = _bootstrap_value(V, lengths, finished, bootstrap, next_values)  # (B,)  V(s_l)
    adv = torch.zeros_like(r)                                                # (B, T)
    gae = torch.zeros_like(v_boot)                                           # Â_{t+1}, (B,)
    for t in reversed(range(T)):
        valid = t < lengths                                                  # (B,)
        if t + 1 < T:
            v_next = torch.where(t + 1 < lengths, V[:, t + 1], v_boot)       # V_{t+1}, or V(s_l) at t = l−1
        else:
            v_next = v_boot
        delta = r[:, t] + gamma * v_next - V[:, t]                           # δ_t = r_t + γ V_{t+1} − V_t
        gae = torch.where(valid, delta + gamma * lam * gae, torch.zeros_like(gae))  # Â_t = δ_t + γλ Â_{t+1}
        adv[:, t] = gae
    mask = torch.arange(T, device=r.device)[None, :] < lengths[:, None]     # (B, T)
    ret = torch.where(mask, adv + V, torch.zeros_like(adv))                  # ret_t = Â_t + V_t
    return adv, ret


def _bootstrap_value(values, lengths, finished, bootstrap, next_values) -> torch.Tensor:
    """V(s_l) used after the last valid token of each row, (B,).

    finished → 0 (terminal); unfinished → V_{l−1} (paper, Eq. 6) or next_values (exact bootstrap).
    Rows with l = 0 have no tokens; their value is irrelevant (set to 0).
    """
    B = values.shape[0]
    last = (lengths - 1).clamp(min=0)
    v_last = values.gather(1, last[:, None]).squeeze(1) if values.shape[1] > 0 else values.new_zeros(B)  # (B,)
    v_cut = v_last if bootstrap == "paper" else next_values
    boot = torch.where(finished, torch.zeros_like(v_last), v_cut)
    return torch.where(lengths > 0, boot, torch.zeros_like(boot))


# ----------------------------------------------------------------------------------------------------------------------
# Argument checking (shared by every path, so all of them reject the same inputs)
# ----------------------------------------------------------------------------------------------------------------------

def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check_lengths(lengths, B: int, T: int, device) -> torch.Tensor:
    if not isinstance(lengths, torch.Tensor):
        raise TypeError(f"lengths must be an integer tensor of shape ({B},), got {type(lengths).__name__}")
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},) (one valid length per row), got {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be an integer tensor, got dtype {lengths.dtype}")
    if lengths.device != device:
        raise ValueError(f"lengths is on {lengths.device}, expected {device} like rewards")
    if B > 0 and (int(lengths.min()) < 0 or int(lengths.max()) > T):
        raise ValueError(f"lengths must lie in [0, T={T}], got min {int(lengths.min())}, max {int(lengths.max())}")
    return lengths.long()


def _check_unit_interval(name: str, x, B: int, device, dtype) -> torch.Tensor:
    """A float in [0, 1] or a (B,) tensor of them → (B,) tensor."""
    if isinstance(x, torch.Tensor):
        if x.dim() == 0:
            x = x.reshape(1).expand(B)
        if x.shape != (B,):
            raise ValueError(f"{name} must be a float or a tensor of shape ({B},), got shape {tuple(x.shape)}")
        if x.device != device:
            raise ValueError(f"{name} is on {x.device}, expected {device} like rewards")
        x = x.to(dtype)
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        x = torch.full((B,), float(x), dtype=dtype, device=device)
    else:
        raise TypeError(f"{name} must be a float in [0, 1] or a ({B},) tensor, got {type(x).__name__}")
    if B > 0 and not bool(((x >= 0) & (x <= 1)).all()):  # NaN fails this too
        raise ValueError(f"{name} must lie in [0, 1], got values in [{float(x.min())}, {float(x.max())}]")
    return x


def _check_args(rewards, values, lengths, finished, gamma, lam, bootstrap, next_values):
    """Validate the `egae` arguments; return them normalized (fp32/fp64 copies, (B,) tensors)."""
    for name, x in (("rewards", rewards), ("values", values)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a float tensor of shape (B, T), got {type(x).__name__}")
        if not x.dtype.is_floating_point:
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape (B, T), got {tuple(rewards.shape)}")
    if values.shape != rewards.shape:
        raise ValueError(f"values must have the shape of rewards {tuple(rewards.shape)}, got {tuple(values.shape)}")
    if values.device != rewards.device:
        raise ValueError(f"values is on {values.device}, expected {rewards.device} like rewards")
    B, T = rewards.shape
    device = rewards.device
    dtype = _compute_dtype(rewards) if rewards.dtype == values.dtype else torch.float32
    lengths = _check_lengths(lengths, B, T, device)
    if not isinstance(finished, torch.Tensor):
        raise TypeError(f"finished must be a bool tensor of shape ({B},), got {type(finished).__name__}")
    if finished.shape != (B,):
        raise ValueError(f"finished must have shape ({B},), got {tuple(finished.shape)}")
    if finished.device != device:
        raise ValueError(f"finished is on {finished.device}, expected {device} like rewards")
    if finished.dtype != torch.bool:
        if finished.dtype.is_floating_point or not bool(((finished == 0) | (finished == 1)).all()):
            raise TypeError(f"finished must be a bool tensor (or integers 0/1), got dtype {finished.dtype}")
        finished = finished.bool()
    if isinstance(gamma, torch.Tensor) or not isinstance(gamma, (int, float)) or isinstance(gamma, bool):
        raise TypeError(f"gamma must be a float in [0, 1], got {type(gamma).__name__}")
    if not 0.0 <= float(gamma) <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    lam = _check_unit_interval("lam", lam, B, device, dtype)
    if bootstrap not in ("paper", "value"):
        raise ValueError(f"bootstrap must be 'paper' (V(s_l) ≈ V(s_(l-1)), Eq. 6) or 'value' (exact V(s_l)), "
                         f"got {bootstrap!r}")
    if bootstrap == "value":
        if next_values is None:
            raise ValueError(f"bootstrap='value' needs next_values, a float tensor of shape ({B},) holding V(s_l)")
        if not isinstance(next_values, torch.Tensor) or not next_values.dtype.is_floating_point:
            raise TypeError(f"next_values must be a float tensor of shape ({B},)")
        if next_values.shape != (B,):
            raise ValueError(f"next_values must have shape ({B},), got {tuple(next_values.shape)}")
        if next_values.device != device:
            raise ValueError(f"next_values is on {next_values.device}, expected {device} like rewards")
        next_values = next_values.to(dtype)
    return rewards.to(dtype), values.to(dtype), lengths, finished, float(gamma), lam, next_values


# ----------------------------------------------------------------------------------------------------------------------
# Vectorized PyTorch path: chunked reverse discounted scan
# ----------------------------------------------------------------------------------------------------------------------

_CHUNK = 16  # tokens per chunk: the work is O(B·T·C) multiply-adds, the number of levels log_C(T). Measured on the
#              2-core EPYC, one thread, 2M tokens: bmm at C = 8, 16, 32, 64 takes 2.7, 1.0, 1.6, 3.0 ms.
# Chunk of the upper levels (the scans of chunk starts, T/16 long and shorter): there the cost is per batched-matmul
# entry, not per multiply-add, so fewer, larger levels win: a (32, 512) scan takes 128 µs with 16, 56 µs with 32.
_UPPER_CHUNK = 32
# Rows per block: a block's (rows × T) temporaries stay in the L2 cache instead of streaming full-size temporaries
# through DRAM, which (not arithmetic) dominates on a CPU; the block buffers are allocated once and reused.
_BLOCK_ELEMS = 1 << 18
# From this row length on, padding is zeroed by one slice fill per row (~3 µs of Python each) instead of a (b, T) bool
# mask: on this CPU build ops on bool tensors are 4–6x slower than on floats (`lt` → bool 0.96 ms per 2M elements,
# `where`/`masked_fill_` 1.2–1.7 ms; a float `mul_` 0.18 ms), so for long rows the row loop is far cheaper.
_ROW_LOOP_MIN_T = 2048


def _powers(c: torch.Tensor, C: int) -> torch.Tensor:
    """c^0 … c^C per row, (B, C+1), by a running product: no division, no slow elementwise pow. Powers that underflow
    to subnormals are flushed to 0: they change nothing (< 1e-38 relative) but make x86 matmuls slow."""
    pw = torch.cumprod(torch.cat([torch.ones_like(c)[:, None], c[:, None].expand(-1, C)], 1), 1)  # (B, C+1)
    return torch.where(pw >= torch.finfo(c.dtype).tiny, pw, 0.0)


def _scan_plan(c: torch.Tensor, T: int, chunk: int = _CHUNK, upper: int = _UPPER_CHUNK):
    """Matrices for the chunked reverse scan y_t = x_t + c_b · y_{t+1} of length T, for every row b.  c: (B,) in [0, 1].

    Inside a chunk of C positions, y^loc_t = Σ_{s ≥ t, s in chunk} c^{s−t} x_s is one batched matmul with the upper-
    triangular matrix P[t, s] = c^{s−t}. Across chunks y_t = y^loc_t + c^{e−t} · y_e (e = the first position of the next
    chunk), and the chunk-start values obey Y_n = y^loc_{nC} + c^C · Y_{n+1}: the same scan with discount c^C on a
    sequence C times shorter, which is the next level. Only non-negative powers of c are formed (never c^{−t}), so this
    is stable for any c ∈ [0, 1] and any T; torch.pow(0, 0) = 1, so c = 0 gives y = x.
    Level 0 uses chunks of `chunk` tokens, the upper levels chunks of `upper`.
    Returns a list of levels (C, N, P^T (B, C, C) contiguous, decay c^{C−k} (B, C) or None).
    """
    plan = []
    while True:
        C = max(1, min(chunk, T))
        N = (T + C - 1) // C
        pw = _powers(c, C)                                                 # (B, C+1)  c^0 … c^C
        k = torch.arange(C, device=c.device)
        # P^T[s, t] = c^(s−t) for s ≥ t, else 0: gather the powers by s − t, then zero the upper triangle with a 0/1
        # mask (the powers are finite, so the product is exact). Measured: torch.flip of a Toeplitz view took 1.1 ms
        # of a 1.3 ms plan (B = 256), batched tril 0.1 ms more than this.
        idx = (k[:, None] - k[None, :]).clamp(min=0)                       # (C, C)  s − t
        lower = (k[:, None] >= k[None, :]).to(pw.dtype)                    # (C, C)  s ≥ t
        Pt = pw.index_select(1, idx.flatten()).view(-1, C, C).mul_(lower)  # (B, C, C)
        decay = pw[:, C - k] if N > 1 else None                            # (B, C)  c^(e−t) = c^(C−k)
        plan.append((C, N, Pt, decay))
        if N == 1:
            return plan
        c, T, chunk = pw[:, C], N, upper                                    # next level: chunk starts, discount c^C


def _scan_apply(x: torch.Tensor, plan, i: int, j: int, level: int = 0) -> torch.Tensor:
    """Run the planned scan on x (b, T) = rows i..j−1 of the planned batch.  Returns (b, T)."""
    C, N, Pt, decay = plan[level]
    b, T = x.shape
    xp = x if N * C == T else torch.nn.functional.pad(x, (0, N * C - T))   # zero-padded tail
    y = torch.bmm(xp.reshape(b, N, C), Pt[i:j])                            # (b, N, C)  y^loc_t = Σ_s P[t, s] x_s
    if N > 1:
        Y = _scan_apply(y[:, :, 0], plan, i, j, level + 1)                 # (b, N)  full-sequence y at chunk starts
        carry = torch.nn.functional.pad(Y[:, 1:], (0, 1))                  # (b, N)  y_e for each chunk, 0 after the end
        y = torch.addcmul(y, carry[:, :, None], decay[i:j, None, :])       # (b, N, C)  y^loc_t + c^(e−t) · y_e
    return y.view(b, N * C)[:, :T]


def _reverse_scan(x: torch.Tensor, c: torch.Tensor, chunk: int = _CHUNK) -> torch.Tensor:
    """y_t = x_t + c_b · y_{t+1} along the last dim, y_T = 0.  x: (B, T), c: (B,) in [0, 1].  Returns (B, T)."""
    B, T = x.shape
    if B == 0 or T == 0:
        return x.clone()
    plan = _scan_plan(c, T, chunk)
    rows = max(1, _BLOCK_ELEMS // T)
    return torch.cat([_scan_apply(x[i:i + rows], plan, i, min(B, i + rows)) for i in range(0, B, rows)])


def _zero_padding_(x: torch.Tensor, lengths: torch.Tensor, L: list | None) -> None:
    """x[k, lengths[k]:] = 0 in place for every row k of a contiguous x (b, n), whatever x holds there (NaN included).
    L = lengths as a Python list selects one slice fill per row (long rows, see _ROW_LOOP_MIN_T; slicing the flat view
    is ~30% cheaper than x[k, l:]); None a bool mask."""
    n = x.shape[1]
    if L is not None:
        flat = x.view(-1)                                                  # (b·n,)
        for k, l in enumerate(L):
            if l < n:
                flat[k * n + l:(k + 1) * n].zero_()
    else:
        x.masked_fill_(torch.arange(n, device=x.device)[None, :] >= lengths[:, None], 0.0)


def _egae_torch_autograd(r, V, lengths, gamma, c, v_boot):
    """Differentiable vectorized EGAE on checked arguments: out-of-place ops only, so autograd can record them.
    r, V: (B, T); lengths: (B,) long; c = γλ: (B,); v_boot = V(s_l): (B,).  Returns adv, ret (B, T)."""
    B, T = r.shape
    adv = torch.empty_like(r)                                              # (B, T), every entry written below
    ret = torch.empty_like(r)                                              # (B, T)
    # δ at the last valid token, t = l−1: r_{l−1} + γ V(s_l) − V_{l−1}, with V(s_l) = 0 (finished), V_{l−1} (Eq. 6)
    # or next_values (exact bootstrap). Computed per row; it replaces whatever the shifted V put there.
    last = (lengths - 1).clamp(min=0)[:, None]                              # (B, 1)
    delta_last = r.gather(1, last) + gamma * v_boot[:, None] - V.gather(1, last)  # (B, 1)
    plan = _scan_plan(c, T)                                                # discount c_b = γ λ_b
    pos = torch.arange(T, device=r.device)                                 # (T,)
    rows = max(1, _BLOCK_ELEMS // T)
    for i in range(0, B, rows):
        j = min(B, i + rows)
        mask = pos[None, :] < lengths[i:j, None]                           # (b, T)
        delta = r[i:j] - V[i:j]                                            # r_t − V_t
        delta[:, :-1].add_(V[i:j, 1:], alpha=gamma)                        # + γ V_{t+1}
        # Padding may hold garbage (even NaN): cut it out before the recursion (ROLL #447), then overwrite t = l−1,
        # whose V_{t+1} was padding too. Rows with l = 0 have no valid position; the scatter writes a masked slot.
        delta = torch.where(mask, delta, 0.0)
        delta.scatter_(1, last[i:j], torch.where(lengths[i:j, None] > 0, delta_last[i:j], 0.0))
        a = _scan_apply(delta, plan, i, j)                                 # Â_t = δ_t + γλ Â_{t+1}; exactly 0 past l
        adv[i:j] = a
        ret[i:j] = torch.where(mask, a + V[i:j], 0.0)                      # ret_t = Â_t + V_t
    return adv, ret


@torch.no_grad()
def _egae_torch_fast(r, V, lengths, gamma, c, v_boot):
    """The same computation as `_egae_torch_autograd` without autograd, written for a CPU: every full-size result is
    written in place (`out=`, `add_`, `addcmul_`) into the outputs or into one reused block buffer, so a call makes
    one output allocation and a handful of cache-sized passes over the data. Same arguments and outputs."""
    B, T = r.shape
    C = min(_CHUNK, T)
    N = (T + C - 1) // C
    Tp = N * C                                                             # T rounded up to whole chunks
    plan = _scan_plan(c, T)
    _, _, Pt, decay = plan[0]                                              # (B, C, C), (B, C) or None
    # adv and ret share one allocation, and there are no other full-size temporaries. Why: memory that glibc hands
    # out fresh costs one page fault per 4 KiB on first touch. Our reading of glibc's malloc: it raises its mmap
    # threshold to the size of the last freed mmap chunk and trims the heap top only past twice that; so with one
    # 16 MB block the freed outputs of the previous call stay in the heap and are reused, while two 8 MB blocks
    # (16 MB free, trim threshold 16 MB) are trimmed and faulted in again. Measured in the `--bench` setting
    # (B = 256, T = 8192): 134 vs 4064 faults per call, 7 vs 15–16 ms. Outputs over 32 MB (glibc's mmap threshold
    # ceiling) are mmapped afresh on every call whatever we do.
    out = torch.empty(2, B, T, dtype=r.dtype, device=r.device)
    adv, ret = out[0], out[1]                                              # (B, T) each, contiguous
    last = (lengths - 1).clamp(min=0)                                      # (B,)  t = l−1
    # δ_{l−1} = r_{l−1} + γ V(s_l) − V_{l−1} (see the autograd path); 0 for empty rows, whose slot 0 is padding.
    delta_last = r.gather(1, last[:, None]).squeeze(1) + gamma * v_boot - V.gather(1, last[:, None]).squeeze(1)
    delta_last = torch.where(lengths > 0, delta_last, 0.0)                 # (B,)
    rows = max(1, min(B, _BLOCK_ELEMS // Tp))
    d = r.new_zeros(rows, Tp)                                              # δ of one block; [T, Tp) stays 0
    y = r.new_empty(rows, N, C) if Tp != T else None                       # scan output when it cannot be adv itself
    starts = r.new_empty(rows, N)                                          # y^loc at the chunk starts, contiguous
    L = lengths.tolist() if T >= _ROW_LOOP_MIN_T else None
    for i in range(0, B, rows):
        j = min(B, i + rows)
        b = j - i
        db = d[:b, :T]                                                     # (b, T)
        torch.sub(r[i:j], V[i:j], out=db)                                  # r_t − V_t
        db[:, :-1].add_(V[i:j, 1:], alpha=gamma)                           # + γ V_{t+1}
        # Cut the padding (it may hold NaN) out before the recursion, then overwrite t = l−1, whose V_{t+1} was
        # padding too: one index write for the whole block.
        _zero_padding_(d[:b], lengths[i:j], None if L is None else L[i:j])  # (the [T, Tp) tail is 0 anyway)
        db[torch.arange(b, device=r.device), last[i:j]] = delta_last[i:j]
        yb = adv[i:j].view(b, N, C) if Tp == T else y[:b]                  # (b, N, C)
        torch.bmm(d[:b].view(b, N, C), Pt[i:j], out=yb)                    # y^loc_t = Σ_s c^{s−t} δ_s in each chunk
        if N > 1:
            # Copy the chunk starts (stride C) into a contiguous buffer first: the strided reshape inside
            # _scan_apply took a slow copy path (~3x the time of this copy_).
            Y = _scan_apply(starts[:b].copy_(yb[:, :, 0]), plan, i, j, 1)  # (b, N)  Â at chunk starts (short scan)
            carry = torch.nn.functional.pad(Y[:, 1:], (0, 1))              # (b, N)  Â_e of the next chunk, 0 at the end
            yb.addcmul_(carry[:, :, None], decay[i:j, None, :])            # Â_t = y^loc_t + c^(e−t) · Â_e
        if Tp != T:
            adv[i:j] = yb.view(b, Tp)[:, :T]
        # Â is exactly 0 past l (δ is 0 there); ret_t = Â_t + V_t, whose padding must be cut again.
        torch.add(adv[i:j], V[i:j], out=ret[i:j])
        _zero_padding_(ret[i:j], lengths[i:j], None if L is None else L[i:j])
    return adv, ret


def egae_torch(rewards, values, lengths, finished, gamma=1.0, lam=0.95, bootstrap="paper", next_values=None):
    """Vectorized EGAE (no loop over tokens); same signature and outputs as `egae_reference`. Differentiable.

    Inputs that need a gradient go through `_egae_torch_autograd` (out-of-place ops); everything else through
    `_egae_torch_fast` (the same chunked scan with in-place ops into the outputs). Both are tested against the reference.
    On the fast path adv and ret are the two halves of one (2, B, T) buffer (both contiguous); holding one keeps both.
    """
    r, V, lengths, finished, gamma, lam, next_values = _check_args(
        rewards, values, lengths, finished, gamma, lam, bootstrap, next_values)
    B, T = r.shape
    if B == 0 or T == 0:
        return torch.zeros_like(r), torch.zeros_like(r)
    v_boot = _bootstrap_value(V, lengths, finished, bootstrap, next_values)  # (B,)  V(s_l)
    c = gamma * lam                                                        # (B,)  discount c_b = γ λ_b
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (r, V, v_boot, c))
    fn = _egae_torch_autograd if needs_grad else _egae_torch_fast
    return fn(r, V, lengths, gamma, c, v_boot)


# ----------------------------------------------------------------------------------------------------------------------
# Triton kernel: one program per row, tiles of BLOCK_T tokens walked from the end of the row
# ----------------------------------------------------------------------------------------------------------------------
# Memory traffic: the kernel reads r and V once and writes adv and ret once, 16 bytes per token in fp32
# (B = 256, T = 8192: 34 MB, ~10 µs of H100 bandwidth), versus ~8 in-cache passes per row block for the PyTorch path and
# T kernel launches for the per-token loop. Inside a tile the scan is solved like the PyTorch path, with the
# upper-triangular power matrix P[j, s] = c^{s−j} (loaded once per program from the powers c^0 … c^BLOCK_T), and the
# tile is joined to the later part of the row by the carry y_e: y_j = y^loc_j + c^{BLOCK_T − j} · y_e.

if HAS_TRITON:

    @triton.jit
    def _egae_kernel(
        r_ptr, v_ptr, len_ptr, boot_ptr, pw_ptr, adv_ptr, ret_ptr,   # pointers
        T, stride_r, stride_v, stride_pw, stride_adv, stride_ret,    # sizes and row strides (last dim contiguous)
        gamma,                                                       # γ
        BLOCK_T: tl.constexpr,                                       # tile length, a power of two
    ):
        b = tl.program_id(0).to(tl.int64)                            # int64 row offsets: B·T may exceed 2^31
        l = tl.load(len_ptr + b)                                     # valid tokens of this row
        v_boot = tl.load(boot_ptr + b).to(tl.float32)                # V(s_l): 0, V_{l−1} (Eq. 6) or next_values
        j = tl.arange(0, BLOCK_T)                                    # position inside the tile
        s = j[None, :]                                               # (1, BLOCK_T)  summed-over position
        # P[j, s] = c^{s−j} for s ≥ j, else 0; decay[j] = c^{BLOCK_T − j}. Powers come precomputed (no division).
        P = tl.load(pw_ptr + b * stride_pw + (s - j[:, None]), mask=s >= j[:, None], other=0.0)  # (BLOCK_T, BLOCK_T)
        decay = tl.load(pw_ptr + b * stride_pw + BLOCK_T - j, mask=j < BLOCK_T, other=0.0)         # (BLOCK_T,)
        carry = tl.sum(tl.zeros([BLOCK_T], dtype=tl.float32), axis=0)  # Â at the first position of the next tile
        n_tiles = tl.cdiv(T, BLOCK_T)
        for k in range(0, n_tiles):
            t = (n_tiles - 1 - k) * BLOCK_T + j                      # token positions of this tile
            valid = t < l                                            # every load and store below is masked
            r = tl.load(r_ptr + b * stride_r + t, mask=valid, other=0.0).to(tl.float32)
            v = tl.load(v_ptr + b * stride_v + t, mask=valid, other=0.0).to(tl.float32)
            v_next = tl.load(v_ptr + b * stride_v + t + 1, mask=t + 1 < l, other=0.0).to(tl.float32)
            v_next = tl.where(t + 1 == l, v_boot, v_next)            # V(s_l) after the last valid token
            delta = tl.where(valid, r + gamma * v_next - v, 0.0)     # δ_t = r_t + γ V_{t+1} − V_t, 0 past l
            y = tl.sum(P * delta[None, :], axis=1) + decay * carry   # Â_t = Σ_{s ≥ t} (γλ)^{s−t} δ_s
            tl.store(adv_ptr + b * stride_adv + t, y, mask=t < T)    # exactly 0 past l (δ = 0 there)
            tl.store(ret_ptr + b * stride_ret + t, tl.where(valid, y + v, 0.0), mask=t < T)
            carry = tl.sum(tl.where(j == 0, y, 0.0), axis=0)         # Â at this tile's first position


def egae_triton(rewards, values, lengths, finished, gamma=1.0, lam=0.95, bootstrap="paper", next_values=None):
    """EGAE with the Triton kernel; same signature as `egae_reference`. Forward only (no autograd), fp32 outputs.

    Runs on CUDA tensors, and on CPU tensors under TRITON_INTERPRET=1 (how the tests check it).
    """
    if not HAS_TRITON:
        raise RuntimeError("egae_triton needs the triton package; use egae_torch (or egae, which dispatches)")
    r, V, lengths, finished, gamma, lam, next_values = _check_args(
        rewards, values, lengths, finished, gamma, lam, bootstrap, next_values)
    B, T = r.shape
    adv = torch.zeros(B, T, dtype=torch.float32, device=r.device)          # (B, T)
    ret = torch.zeros(B, T, dtype=torch.float32, device=r.device)          # (B, T)
    if B == 0 or T == 0:
        return adv, ret
    r = r.detach().float().contiguous()
    V = V.detach().float().contiguous()
    v_boot = _bootstrap_value(V, lengths, finished, bootstrap,
                              None if next_values is None else next_values.detach().float()).contiguous()  # (B,)
    block_t = max(16, min(64, triton.next_power_of_2(T)))
    pw = _powers((gamma * lam).float(), block_t).contiguous()               # (B, BLOCK_T + 1)  (γλ)^0 … (γλ)^BLOCK_T
    _egae_kernel[(B,)](
        r, V, lengths.to(torch.int32).contiguous(), v_boot, pw, adv, ret,
        T, r.stride(0), V.stride(0), pw.stride(0), adv.stride(0), ret.stride(0),
        gamma,
        BLOCK_T=block_t,
    )
    return adv, ret


# ----------------------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------------------

def egae(rewards, values, lengths, finished, gamma=1.0, lam=0.95, bootstrap="paper", next_values=None):
    """Extended GAE over one window per row (Eq. 6). See `egae_reference` for arguments and shapes.

    Dispatch: `IMPL` if set; otherwise Triton for CUDA tensors that need no gradient (the kernel has no backward)
    and are not float64 (the kernel computes in fp32); the vectorized PyTorch path for everything else.
    """
    impl = IMPL
    if impl not in _IMPLS:
        raise ValueError(f"egae.IMPL must be one of {_IMPLS}, got {impl!r}")
    if impl is None:
        needs_grad = torch.is_grad_enabled() and any(
            isinstance(x, torch.Tensor) and x.requires_grad for x in (rewards, values, next_values))
        on_cuda = isinstance(rewards, torch.Tensor) and rewards.is_cuda
        fp64 = isinstance(rewards, torch.Tensor) and rewards.dtype == torch.float64  # the kernel computes in fp32
        impl = "triton" if (HAS_TRITON and on_cuda and not needs_grad and not fp64) else "torch"
    fn = {"reference": egae_reference, "torch": egae_torch, "triton": egae_triton}[impl]
    return fn(rewards, values, lengths, finished, gamma=gamma, lam=lam, bootstrap=bootstrap, next_values=next_values)


def length_adaptive_lambda(lengths, alpha=0.05, floor=0.95, finished=None, window=None):
    """VAPO's length-adaptive policy λ: λ_i = max(floor, 1 − 1/(α · L_i)), so the horizon 1/(1−λ) = α·L (card §5).

    Args:
        lengths: (B,) tokens generated so far over all windows (int or float tensor, ≥ 0).
        alpha: > 0 (0.05 in VAPO and the T-PPO reference). floor: in [0, 1] (0.95 = the reference's `lam`).
        finished, window: optional. If both are given, unfinished rows use L + window/2 as a guess of the final length
            (the T-PPO reference: 8192 + 4096 → λ ≈ 0.99837).
    Returns:
        (B,) float32 λ (float64 for float64 lengths).
    """
    if not isinstance(lengths, torch.Tensor):
        raise TypeError(f"lengths must be a (B,) tensor, got {type(lengths).__name__}")
    if lengths.dim() != 1:
        raise ValueError(f"lengths must have shape (B,), got {tuple(lengths.shape)}")
    if not (isinstance(alpha, (int, float)) and alpha > 0):
        raise ValueError(f"alpha must be a float > 0, got {alpha!r}")
    if not (isinstance(floor, (int, float)) and 0.0 <= floor <= 1.0):
        raise ValueError(f"floor must lie in [0, 1], got {floor!r}")
    L = lengths.to(_compute_dtype(lengths))
    if L.numel() and not bool((L >= 0).all()):
        raise ValueError(f"lengths must be >= 0, got min {float(L.min())}")
    if (finished is None) != (window is None):
        raise ValueError("finished and window must be given together (unfinished rows add window/2)")
    if finished is not None:
        if not isinstance(finished, torch.Tensor) or finished.shape != lengths.shape:
            raise ValueError(f"finished must be a tensor of shape {tuple(lengths.shape)}")
        if not (isinstance(window, (int, float)) and window > 0):
            raise ValueError(f"window must be a positive number, got {window!r}")
        L = L + torch.where(finished.bool(), torch.zeros_like(L), torch.full_like(L, window / 2))
    # L = 0 gives 1 − 1/0 = −inf, which the floor absorbs.
    return torch.clamp(1.0 - 1.0 / (alpha * L), min=floor)


def monte_carlo_returns(rewards, lengths, gamma=1.0):
    """Reward-to-go G_t = Σ_{t ≤ t' < l} γ^{t'−t} r_{t'} (the critic target with λ_critic = 1, card §6); 0 past l.

    Args: rewards (B, T) float; lengths (B,) int in [0, T]; gamma float in [0, 1].
    Returns: (B, T) float32 (float64 for float64 rewards).
    """
    if not isinstance(rewards, torch.Tensor) or not rewards.dtype.is_floating_point:
        raise TypeError("rewards must be a float tensor of shape (B, T)")
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape (B, T), got {tuple(rewards.shape)}")
    B, T = rewards.shape
    lengths = _check_lengths(lengths, B, T, rewards.device)
    if isinstance(gamma, torch.Tensor) or not isinstance(gamma, (int, float)) or isinstance(gamma, bool):
        raise TypeError(f"gamma must be a float in [0, 1], got {type(gamma).__name__}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0, 1], got {gamma}")
    r = rewards.to(_compute_dtype(rewards))
    mask = torch.arange(T, device=r.device)[None, :] < lengths[:, None]     # (B, T)
    r = torch.where(mask, r, torch.zeros_like(r))
    G = _reverse_scan(r, torch.full((B,), float(gamma), dtype=r.dtype, device=r.device))  # G_t = r_t + γ G_{t+1}
    return torch.where(mask, G, torch.zeros_like(G))


# ----------------------------------------------------------------------------------------------------------------------
# Demo and benchmark
# ----------------------------------------------------------------------------------------------------------------------

def _demo():
    torch.set_printoptions(precision=3, sci_mode=False, linewidth=120)
    T = 6
    V = torch.tensor([[0.20, 0.30, 0.45, 0.60, 0.70, 0.80]] * 2)            # same critic values in both rows
    r = torch.zeros(2, T)
    r[0, T - 1] = 1.0                                                      # row 0: EOS at t = 5, verifier says +1
    lengths = torch.tensor([T, T])
    finished = torch.tensor([True, False])                                 # row 1: same tokens, but cut at l = 6
    print("EGAE worked example (γ = 1, λ = 0.95): two windows with identical critic values V")
    print("  row 0 finished (EOS, reward +1 at the last token)   row 1 unfinished (cut at l = 6, reward 0)")
    print(f"  V                 = {[round(x, 4) for x in V[0].tolist()]}")
    adv, ret = egae(r, V, lengths, finished, gamma=1.0, lam=0.95)
    print(f"  finished   Â      = {[round(x, 4) for x in adv[0].tolist()]}   (standard GAE, V_T := 0)")
    print(f"  unfinished Â      = {[round(x, 4) for x in adv[1].tolist()]}   (Eq. 6, V(s_l) := V(s_(l-1)))")
    print("  At the cut δ_(l−1) = (γ−1)·V_(l−1) = 0, so the truncated row's last advantage is exactly 0 and the")
    print("  earlier ones are a λ-average of the rising in-window values minus V_t (card §5, closed form).")
    adv_v, _ = egae(r, V, lengths, finished, gamma=1.0, lam=0.95, bootstrap="value",
                    next_values=torch.tensor([0.0, 0.9]))
    print(f"  unfinished, exact bootstrap V(s_l) = 0.9 (ablation): Â = {[round(x, 4) for x in adv_v[1].tolist()]}")
    lam = length_adaptive_lambda(torch.tensor([300, 2000, 8192]), finished=torch.tensor([True, True, False]),
                                 window=8192)
    print(f"  length-adaptive λ for L = 300, 2000, 8192 (+4096 unfinished): {[round(x, 6) for x in lam.tolist()]}")
    print(f"  critic targets (MC, γ = 1) of the finished row: {monte_carlo_returns(r[:1], lengths[:1])[0].tolist()}")


def _plain_loop_gae(rewards, values, gamma, lam):
    """The per-token loop of TRL / OpenRLHF-style GAE (vectorized over rows, one step per token), for --bench."""
    T = rewards.shape[1]
    gl = gamma * lam                  # hoisted: with a per-row λ tensor it would otherwise cost one op per token
    lastgaelam = 0.0
    advantages_reversed = []
    for t in reversed(range(T)):
        nextvalues = values[:, t + 1] if t < T - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gl * lastgaelam
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)
    return advantages, advantages + values


def _masked_loop_gae(rewards, values, response_mask, gamma, lam):
    """verl's mask-aware per-token loop (`compute_gae_advantage_return`): masked positions carry the running next
    value and advantage through unchanged. For --bench."""
    T = rewards.shape[1]
    gl = gamma * lam
    nextvalues, lastgaelam = 0.0, 0.0
    advantages_reversed = []
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam_ = delta + gl * lastgaelam
        m = response_mask[:, t]
        nextvalues = values[:, t] * m + (1 - m) * nextvalues
        lastgaelam = lastgaelam_ * m + (1 - m) * lastgaelam
        advantages_reversed.append(lastgaelam)
    advantages = torch.stack(advantages_reversed[::-1], dim=1)
    return advantages, advantages + values


def _time_ms(fn, sync, reps):
    """(wall ms, CPU ms of this process), each the best of `reps` runs: the runs least disturbed by other jobs.
    On a shared CPU the wall time includes time spent descheduled; the CPU time does not."""
    fn()
    sync()
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        sync()
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return min(wall), min(cpu)


def _bench(B=256, T=8192, reps=15, threads=None):
    if threads:
        torch.set_num_threads(threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(0)
    r = torch.randn(B, T, generator=g).to(device)
    V = torch.randn(B, T, generator=g).to(device)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=g).to(device)
    finished = (torch.rand(B, generator=g) < 0.5).to(device)
    mask = (torch.arange(T, device=device)[None, :] < lengths[:, None]).float()
    lam = length_adaptive_lambda(lengths)                                  # per-row λ, as T-PPO uses
    print(f"EGAE benchmark: B = {B}, T = {T}, fp32, per-row λ, device = {device}, torch {torch.__version__}, "
          f"threads = {torch.get_num_threads()}; best of {reps} (loops: of {max(1, reps // 5)})")
    rows = [("per-token loop (TRL/OpenRLHF style)", lambda: _plain_loop_gae(r, V, 1.0, lam)),
            ("per-token loop, mask-aware (verl)", lambda: _masked_loop_gae(r, V, mask, 1.0, lam)),
            ("egae_reference (masked loop)", lambda: egae_reference(r, V, lengths, finished, 1.0, lam)),
            ("egae vectorized (chunked scan)", lambda: egae_torch(r, V, lengths, finished, 1.0, lam))]
    if device == "cuda" and HAS_TRITON:
        rows.append(("egae Triton kernel", lambda: egae_triton(r, V, lengths, finished, 1.0, lam)))
    times = [(name, *_time_ms(fn, sync, reps if "loop" not in name else max(1, reps // 5))) for name, fn in rows]
    (_, base, base_cpu), (_, base_verl, _) = times[0], times[1]
    print(f"| {'path':38s} | {'wall ms':>9s} | {'speedup vs loop':>15s} | {'vs verl loop':>12s} "
          f"| {'CPU ms':>8s} | {'CPU speedup vs loop':>19s} |")
    print(f"|{'-' * 40}|{'-' * 11}|{'-' * 17}|{'-' * 14}|{'-' * 10}|{'-' * 21}|")
    for name, ms, cpu in times:
        print(f"| {name:38s} | {ms:9.2f} | {base / ms:14.1f}x | {base_verl / ms:11.1f}x "
              f"| {cpu:8.2f} | {base_cpu / cpu:18.1f}x |")
    mb = 4 * B * T * 4 / 1e6
    print(f"(memory traffic floor: read r, V and write adv, ret = {mb:.0f} MB per call)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench", action="store_true", help="time loop vs vectorized (vs Triton) at B=256, T=8192")
    parser.add_argument("--B", type=int, default=256, help="rows for --bench")
    parser.add_argument("--T", type=int, default=8192, help="window length for --bench")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads for --bench (default 1: on a shared CPU, multi-threaded kernels stall "
                             "whenever one of their threads is descheduled)")
    args = parser.parse_args()
    if args.bench:
        _bench(args.B, args.T, threads=args.threads)
    else:
        _demo()
