"""Claims of RAttention (arXiv:2506.15545) and parity of every fast path with its literal reference.

Tiers: properties of the references; PyTorch fast paths vs references (outputs and gradients); Triton kernels vs
references under TRITON_INTERPRET=1 (tiny awkward shapes); the layer: decode == forward, prefill, padding, cache size.
"""
import pytest
import torch

import rattention as R


def rel_rms(a, b):
    """Relative RMS error ||a − b|| / ||b|| (denominator floored to avoid 0/0 on exact zeros)."""
    a, b = a.double(), b.double()
    return ((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt().clamp_min(1e-30)).item()


def qkv(B, T, H, Hkv, D, dtype=torch.float64, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, T, H, D, generator=g, dtype=dtype)
    k = torch.randn(B, T, Hkv, D, generator=g, dtype=dtype)
    v = torch.randn(B, T, Hkv, D, generator=g, dtype=dtype)
    return [x.requires_grad_(requires_grad) for x in (q, k, v)]


def grads(fn, q, k, v, seed=1):
    """Outputs and (dq, dk, dv) of fn for a fixed random cotangent."""
    o = fn(q, k, v)
    g = torch.randn(o.shape, generator=torch.Generator().manual_seed(seed), dtype=o.dtype)
    dq, dk, dv = torch.autograd.grad(o, (q, k, v), g)
    return o, dq, dk, dv


# ---------------------------------------------------------------------------------------------------------------
# Properties of the definitions
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("w", [0, 1, 3, 7, 40])
def test_swa_and_rla_masks_partition_the_causal_prefix(w):
    T = 23
    swa, rla = R.swa_mask(T, w), R.rla_mask(T, w)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    assert not (swa & rla).any()
    assert torch.equal(swa | rla, causal)
    # SWA sees min(t+1, w+1) keys (the current one included): the window covers w+1 keys
    assert torch.equal(swa.sum(1), torch.clamp(torch.arange(T) + 1, max=w + 1))


def test_paper_figure1_example_w3():
    # Fig. 1 (1-indexed, w = 3): RLA covers token 1 for query 5 and tokens 1-2 for query 6
    rla = R.rla_mask(8, 3)
    assert rla[4].nonzero().flatten().tolist() == [0]
    assert rla[5].nonzero().flatten().tolist() == [0, 1]


def test_window_zero_is_self_attention_only_and_rla_covers_all_earlier_keys():
    q, k, v = qkv(1, 9, 2, 2, 8)
    o = R.sliding_window_attention_reference(q, k, v, 0)
    assert torch.allclose(o, v, atol=1e-12)  # softmax over one key returns its value
    assert torch.equal(R.rla_mask(9, 0), torch.ones(9, 9, dtype=torch.bool).tril(-1))


def test_window_covers_w_plus_1_keys_in_attention_output():
    # put a huge value at key t−w−1 and t−w: only the latter may influence query t
    T, w = 12, 4
    q = torch.zeros(1, T, 1, 8, dtype=torch.float64)  # uniform weights over the visible keys
    k = torch.zeros(1, T, 1, 8, dtype=torch.float64)
    for t_probe in range(w + 1, T):
        v = torch.zeros(1, T, 1, 8, dtype=torch.float64)
        v[0, t_probe - w - 1] = 1.0
        o = R.sliding_window_attention_reference(q, k, v, w)
        assert o[0, t_probe].abs().max() == 0  # t−w−1 is outside
        v = torch.zeros(1, T, 1, 8, dtype=torch.float64)
        v[0, t_probe - w] = 1.0
        o = R.sliding_window_attention_reference(q, k, v, w)
        assert torch.allclose(o[0, t_probe], torch.full((1, 8), 1.0 / (w + 1), dtype=torch.float64))


def test_large_window_makes_rla_zero_and_swa_full_causal_attention():
    T = 30
    q, k, v = qkv(2, T, 4, 2, 16)
    for w in (T - 1, T, 5 * T):
        assert R.residual_linear_attention_torch(q, k, v, w).abs().max() == 0
        assert R.residual_linear_attention_reference(q, k, v, w).abs().max() == 0
        full = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k.repeat_interleave(2, 2).transpose(1, 2), v.repeat_interleave(2, 2).transpose(1, 2),
            is_causal=True).transpose(1, 2)
        assert rel_rms(R.sliding_window_attention_torch(q, k, v, w), full) < 1e-12
        assert rel_rms(R.sliding_window_attention_reference(q, k, v, w), full) < 1e-12


def test_feature_map_halves_sum_to_one_and_kernel_in_0_2_in_fp32():
    x = torch.randn(5, 7, 32, dtype=torch.bfloat16) * 4
    phi = R.feature_map(x)
    assert phi.dtype == torch.float32 and phi.shape == (5, 7, 64)
    assert torch.allclose(phi[..., :32].sum(-1), torch.ones(5, 7), atol=1e-6)
    assert torch.allclose(phi[..., 32:].sum(-1), torch.ones(5, 7), atol=1e-6)
    y = torch.randn(9, 32) * 4
    dots = R.feature_map(x.reshape(-1, 32).float()) @ R.feature_map(y).T
    assert (dots > 0).all() and (dots <= 2 + 1e-6).all()


def test_rla_shifting_raw_k_equals_shifting_phi_k():
    # the reference shifts raw k (zero padded) and relies on v's zero padding: φ(0)ᵀ·0 = 0
    q, k, v = qkv(1, 20, 2, 2, 8)
    w = 3
    s = w + 1
    ksh = torch.nn.functional.pad(k, (0, 0, 0, 0, s, 0))[:, :20]
    vsh = torch.nn.functional.pad(v, (0, 0, 0, 0, s, 0))[:, :20]
    inclusive = R.residual_linear_attention_reference(q, ksh, vsh, -1)  # window −1 = plain inclusive LA
    fq, fk = R.feature_map(q), R.feature_map(k)
    fksh = torch.nn.functional.pad(fk, (0, 0, 0, 0, s, 0))[:, :20]
    a = torch.einsum("bthk,bihk->bhti", fq, fksh).tril()
    by_phi = torch.einsum("bhti,bihd->bthd", a, vsh)
    naive = R.residual_linear_attention_reference(q, k, v, w)
    assert rel_rms(inclusive, naive) < 1e-12 and rel_rms(by_phi, naive) < 1e-12


# ---------------------------------------------------------------------------------------------------------------
# PyTorch fast paths vs references: outputs and gradients
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("T,w,C", [(100, 15, 16), (100, 16, 16), (63, 5, 64), (100, 63, 64), (77, 0, 16),
                                   (50, -1, 16)])
def test_rla_naive_equals_chunked_equals_recurrent_outputs_and_grads(T, w, C):
    q, k, v = qkv(2, T, 4, 2, 8, requires_grad=True)
    ref = grads(lambda *a: R.residual_linear_attention_reference(*a, w), q, k, v)
    fast = grads(lambda *a: R.residual_linear_attention_torch(*a, w, C), q, k, v)
    rec = grads(lambda *a: R.residual_linear_attention_recurrent(*a, w), q, k, v)
    for a, b, c in zip(fast, rec, ref):
        assert rel_rms(a, c) < 1e-10
        assert rel_rms(b, c) < 1e-10


@pytest.mark.parametrize("T,w", [(100, 0), (100, 7), (63, 16), (130, 40), (20, 50)])
def test_blocked_swa_equals_reference_outputs_and_grads(T, w):
    q, k, v = qkv(2, T, 4, 2, 8, requires_grad=True)
    start = torch.tensor([0, 9])
    ref = grads(lambda *a: R.sliding_window_attention_reference(*a, w, start=start), q, k, v)
    fast = grads(lambda *a: R.sliding_window_attention_torch(*a, w, start=start), q, k, v)
    for a, b in zip(fast, ref):  # (w = 0: dq, dk are exactly 0 in theory; compare those absolutely)
        assert rel_rms(a, b) < 1e-10 or (a - b).abs().max() < 1e-12


def test_rla_results_do_not_depend_on_chunk_size():
    q, k, v = qkv(1, 97, 2, 1, 8)
    outs = [R.residual_linear_attention_torch(q, k, v, 9, C) for C in (1, 7, 16, 64, 128)]
    for o in outs[1:]:
        assert rel_rms(o, outs[0]) < 1e-12


@pytest.mark.parametrize("fn", ["swa", "rla"])
def test_gqa_equals_repeated_heads_and_kv_grads_are_group_sums(fn):
    G = 3
    q, k, v = qkv(2, 41, 6, 2, 8, requires_grad=True)
    f = (lambda *a: R.sliding_window_attention_torch(*a, 6)) if fn == "swa" else \
        (lambda *a: R.residual_linear_attention_torch(*a, 6, 16))
    o, dq, dk, dv = grads(f, q, k, v)
    kr = k.detach().repeat_interleave(G, 2).requires_grad_(True)
    vr = v.detach().repeat_interleave(G, 2).requires_grad_(True)
    o2, dq2, dkr, dvr = grads(f, q, kr, vr)
    assert rel_rms(o, o2) < 1e-12 and rel_rms(dq, dq2) < 1e-12
    assert rel_rms(dk, dkr.unflatten(2, (2, G)).sum(3)) < 1e-12
    assert rel_rms(dv, dvr.unflatten(2, (2, G)).sum(3)) < 1e-12


def test_bf16_inputs_keep_fp32_state_and_stay_close_to_fp32_reference():
    # the card's precision budget: φ, the state and the accumulations stay fp32; only the inputs are rounded
    q, k, v = qkv(1, 70, 2, 1, 16, dtype=torch.float32, seed=5)
    lo = [x.to(torch.bfloat16) for x in (q, k, v)]
    for fast, ref in ((R.residual_linear_attention_torch, R.residual_linear_attention_reference),
                      (R.sliding_window_attention_torch, R.sliding_window_attention_reference)):
        o = fast(*lo, 9)
        assert o.dtype == torch.bfloat16
        assert rel_rms(o, ref(q, k, v, 9)) < 3e-2  # bf16 input rounding (2^-8) through one attention layer


def test_padding_never_enters_window_or_state():
    # positions < start are garbage; changing them must not change any output at positions >= start
    q, k, v = qkv(2, 50, 2, 1, 8)
    start = torch.tensor([0, 17])
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    k2[1, :17] += 100 * torch.randn(17, 1, 8, dtype=torch.float64)
    v2[1, :17] += 100
    for f in (lambda *a: R.sliding_window_attention_torch(*a, 5, start=start),
              lambda *a: R.residual_linear_attention_torch(*a, 5, 16, start=start)):
        assert torch.allclose(f(q, k, v), f(q2, k2, v2), atol=1e-12)


def test_bad_arguments_raise_with_names():
    q, k, v = qkv(1, 8, 4, 2, 8)
    with pytest.raises(ValueError, match="window"):
        R.sliding_window_attention(q, k, v, -1)
    with pytest.raises(TypeError, match="window"):
        R.residual_linear_attention(q, k, v, 2.5)
    with pytest.raises(ValueError, match="multiple"):
        R.sliding_window_attention(q, k[:, :, :1].expand(1, 8, 3, 8), v[:, :, :1].expand(1, 8, 3, 8), 2)
    with pytest.raises(ValueError, match="start"):
        R.sliding_window_attention(q, k, v, 2, start=torch.tensor([9]))
    with pytest.raises(ValueError, match="d_model"):
        R.RAttention(16, 2, window=4)(torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match="n_heads"):
        R.RAttention(16, 4, 3)


# ---------------------------------------------------------------------------------------------------------------
# The layer: decode, prefill, padding, cache size, zero-state sanity
# ---------------------------------------------------------------------------------------------------------------

def layer(kind, window=5, seed=0):
    torch.manual_seed(seed)
    if kind == "local":
        m = R.RAttention(32, 4, 2, window=window, chunk_size=16)
    else:
        m = R.GlobalAttention(32, 4, 2, window=window)
    with torch.no_grad():  # non-trivial norm scales so a swapped/omitted norm is visible
        for p in m.parameters():
            if p.dim() <= 2 and p.shape[-1] == m.head_dim:
                p.add_(0.3 * torch.randn_like(p))
    return m.double()


def _rope_complex(x, base):
    # independent RoPE: pair (x_i, x_{i+D/2}) as a complex number, rotated by t·base^(−i/(D/2))
    T, half = x.shape[1], x.shape[-1] // 2
    theta = torch.arange(T, dtype=torch.float64)[:, None] * base ** (-torch.arange(half, dtype=torch.float64) / half)
    z = torch.complex(x[..., :half], x[..., half:]) * torch.polar(torch.ones_like(theta), theta)[None, :, None, :]
    return torch.cat([z.real, z.imag], -1)


def test_layer_equals_literal_paper_equation():
    # o = o_proj(RMS_swa(SWA(qknorm(RoPE(q))/√D, qknorm(RoPE(k)), v)) + RMS_rla(RLA(q, k, v)))  (card §3, ref order)
    m = layer("local", window=6)
    x = torch.randn(2, 33, 32, dtype=torch.float64)
    B, T, H, Hkv, D = 2, 33, 4, 2, m.head_dim
    q = (x @ m.q_proj.weight.T).view(B, T, H, D)
    k = (x @ m.k_proj.weight.T).view(B, T, Hkv, D)
    v = (x @ m.v_proj.weight.T).view(B, T, Hkv, D)

    def rms(z, w, eps):
        return z / (z.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w

    qs = rms(_rope_complex(q, 5e5), m.q_norm, 1e-6)  # qk-norm AFTER RoPE
    ks = rms(_rope_complex(k, 5e5), m.k_norm, 1e-6)
    o_swa = R.sliding_window_attention_reference(qs, ks, v, 6, scale=D ** -0.5)
    o_rla = R.residual_linear_attention_reference(q, k, v, 6)  # raw q, k
    y = (rms(o_swa, m.swa_norm, 1e-8) + rms(o_rla, m.rla_norm, 1e-8)).flatten(2) @ m.o_proj.weight.T
    assert rel_rms(m(x), y) < 1e-12


@pytest.mark.parametrize("kind", ["local", "global"])
def test_decode_token_by_token_equals_parallel_forward_at_every_position(kind):
    m = layer(kind)
    x = torch.randn(2, 30, 32, dtype=torch.float64)
    y = m(x)
    cache = m.new_cache(2)
    ys = torch.cat([m.decode(x[:, t:t + 1], cache) for t in range(30)], 1)
    assert rel_rms(ys, y) < 1e-12


def test_global_decode_equals_forward_while_its_kv_cache_grows():
    """The global layer's cache starts at capacity 4 and doubles on the way to 30 tokens (keys stored qk-normed,
    head-major); every decoded position still equals the parallel forward."""
    m = layer("global")
    x = torch.randn(2, 30, 32, dtype=torch.float64)
    cache = m.new_cache(2, capacity=4)
    ys = torch.cat([m.decode(x[:, t:t + 1], cache) for t in range(30)], 1)
    assert cache.k.shape[2] == 32 and rel_rms(ys, m(x)) < 1e-12


@pytest.mark.parametrize("kind", ["local", "global"])
@pytest.mark.parametrize("T1", [3, 6, 7, 20])
def test_prefill_then_decode_equals_forward(kind, T1):
    m = layer(kind)
    x = torch.randn(2, 26, 32, dtype=torch.float64)
    y = m(x)
    y1, cache = m.prefill(x[:, :T1], m.new_cache(2))
    y2 = torch.cat([m.decode(x[:, t:t + 1], cache) for t in range(T1, 26)], 1)
    assert rel_rms(y1, y[:, :T1]) < 1e-12 and rel_rms(y2, y[:, T1:]) < 1e-12


def test_prefill_state_is_sum_over_all_but_last_w_plus_1_tokens():
    m = layer("local", window=4)
    x = torch.randn(1, 13, 32, dtype=torch.float64)
    _, cache = m.prefill(x)
    _, k, v = m._qkv(x)
    S = torch.einsum("bthk,bthd->bhkd", R.feature_map(k[:, :13 - 5]), v[:, :13 - 5])
    assert rel_rms(cache.state, S) < 1e-12
    assert cache.k.shape[1] == 5  # ring of w+1 raw keys
    assert torch.equal(cache.k.sort(1).values, k[:, 8:].sort(1).values)  # it holds exactly the last w+1 raw keys


def test_local_cache_bytes_do_not_depend_on_position():
    m = R.RAttention(32, 4, 2, window=16, chunk_size=64)
    sizes = []
    with torch.no_grad():
        for T in (64, 4096):
            _, cache = m.prefill(torch.randn(1, T, 32))
            m.decode(torch.randn(1, 1, 32), cache)
            sizes.append(cache.nbytes())
    assert sizes[0] == sizes[1]
    g = R.GlobalAttention(32, 4, 2)
    with torch.no_grad():
        grow = [g.prefill(torch.randn(1, T, 32))[1].nbytes() for T in (64, 256)]
    assert grow[1] > grow[0]  # the global cache is an ordinary, growing KV cache


@pytest.mark.parametrize("kind", ["local", "global"])
def test_left_padded_rows_equal_rows_run_alone(kind):
    m = layer(kind)
    x = torch.randn(3, 24, 32, dtype=torch.float64)
    start = torch.tensor([0, 7, 15])
    alone = [m(x[b:b + 1, start[b]:]) for b in range(3)]
    y = m(x, start=start)
    for b in range(3):
        assert rel_rms(y[b:b + 1, start[b]:], alone[b]) < 1e-12
        assert y[b, :start[b]].abs().max() == 0 if start[b] > 0 else True
    # prefill a left-padded prompt, then decode: each row continues as if run alone
    y1, cache = m.prefill(x[:, :20], start=start)
    y2 = torch.cat([m.decode(x[:, t:t + 1], cache) for t in range(20, 24)], 1)
    for b in range(3):
        assert rel_rms(torch.cat([y1, y2], 1)[b:b + 1, start[b]:], alone[b]) < 1e-12


def test_no_nan_in_forward_or_backward_where_rla_output_is_exactly_zero():
    m = layer("local", window=8).float()
    x = torch.randn(2, 8, 32, requires_grad=True)  # T <= w+1: o_rla ≡ 0 everywhere, RMS(0) = 0
    y = m(x, start=torch.tensor([0, 3]))
    y.square().sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


# ---------------------------------------------------------------------------------------------------------------
# Triton kernels vs references under TRITON_INTERPRET=1 (tiny awkward shapes: the interpreter is slow)
# ---------------------------------------------------------------------------------------------------------------

needs_triton = pytest.mark.skipif(not R.HAS_TRITON, reason="triton is not installed")


def _f32(B, T, H, Hkv, D, seed):
    return qkv(B, T, H, Hkv, D, dtype=torch.float32, seed=seed, requires_grad=True)


@needs_triton
@pytest.mark.parametrize("B,T,H,Hkv,D,w,start,block", [
    (2, 63, 4, 2, 16, 7, [0, 5], 16),     # GQA, left padding, T not a multiple of the block
    (1, 100, 2, 1, 32, 40, None, 32),     # window spans several key blocks, unaligned with the block
    (1, 37, 2, 2, 24, 200, None, 16),     # window > T (full causal), D not a power of two
    (2, 90, 2, 1, 16, 20, [0, 31], 64),   # the GPU default block size (64), padding inside a block
])
def test_triton_swa_kernel_matches_reference_outputs_and_grads(B, T, H, Hkv, D, w, start, block):
    q, k, v = _f32(B, T, H, Hkv, D, seed=T + w)
    st = None if start is None else torch.tensor(start)
    tri = grads(lambda *a: R.sliding_window_attention_triton(*a, w, start=st, block=block), q, k, v)
    ref = grads(lambda *a: R.sliding_window_attention_reference(*a, w, start=st), q, k, v)
    for a, b in zip(tri, ref):
        assert rel_rms(a, b) <= 1e-4


@needs_triton
def test_triton_swa_window_zero_returns_v_and_zero_qk_grads():
    q, k, v = _f32(1, 21, 2, 1, 16, seed=3)
    o, dq, dk, dv = grads(lambda *a: R.sliding_window_attention_triton(*a, 0), q, k, v)
    assert rel_rms(o, v.repeat_interleave(2, 2)) <= 1e-6  # self only: softmax over one key
    assert dq.abs().max() < 1e-5 and dk.abs().max() < 1e-5  # output does not depend on q, k


@needs_triton
@pytest.mark.parametrize("B,T,H,Hkv,D,w,C,start", [
    (2, 63, 4, 2, 16, 7, 16, [0, 5]),      # shift 8 unaligned with C, GQA, padding
    (1, 100, 2, 1, 32, 40, 32, None),      # T not a multiple of C, shift 41 unaligned
    (1, 100, 2, 2, 16, 31, 16, None),      # shift 32 aligned with C
    (1, 37, 2, 2, 24, -1, 16, None),       # no shift: plain inclusive linear attention; D = 24
    (1, 50, 2, 1, 16, 3, 64, None),        # single chunk larger than T
])
def test_triton_rla_kernel_matches_reference_outputs_and_grads(B, T, H, Hkv, D, w, C, start):
    q, k, v = _f32(B, T, H, Hkv, D, seed=T + C)
    st = None if start is None else torch.tensor(start)
    tri = grads(lambda *a: R.residual_linear_attention_triton(*a, w, C, start=st), q, k, v)
    ref = grads(lambda *a: R.residual_linear_attention_reference(*a, w, start=st), q, k, v)
    for a, b in zip(tri, ref):
        assert rel_rms(a, b) <= 1e-4


@needs_triton
def test_layer_with_triton_path_equals_torch_path(monkeypatch):
    torch.manual_seed(0)
    m = R.RAttention(32, 2, 1, head_dim=16, window=9, chunk_size=16)
    x = torch.randn(2, 40, 32)
    st = torch.tensor([0, 6])
    monkeypatch.setattr(R, "IMPL", "torch")
    y_torch = m(x, start=st)
    monkeypatch.setattr(R, "IMPL", "triton")
    y_tri = m(x, start=st)
    assert rel_rms(y_tri, y_torch) <= 1e-4


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # these tests run many tiny ops; on the shared 2-core machine one intra-op thread avoids OpenMP wait stalls
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
