"""Claims of tppo.py (T-PPO, arXiv 2506.15050, card shared/papers/tppo_egae.md).

Tiers: successive-batching invariants with a scripted generator (response lengths known in advance); token
accounting through the real step function; EGAE/GAE equivalence for W ≥ L_max; loss properties; Triton log-prob
kernel parity (TRITON_INTERPRET=1 on CPU); a short learning run on the toy task.
"""
import copy
import io
import math
import random

import pytest
import torch

import tppo
from tppo import EOS, FIRST_N, TOK_A, TOK_B, RolloutPool, TPPOConfig, ToyLM

N_MAX = 20


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The toy models are tiny: with 2 intra-op threads on a shared, loaded CPU, OpenMP spin-waits make each op
    ~20x slower (measured). Run this file single-threaded and restore the setting afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------------------------------------------
# Scripted generator: rollout with prompt "n" emits n tokens, the n-th is EOS; token t is fixed by (t, n).
# ----------------------------------------------------------------------------------------------------------------

def expected_token(t, n):
    return EOS if t == n - 1 else (TOK_A if t % 3 else TOK_B)


class ScriptedGen:
    def __init__(self):
        self.calls = []

    def __call__(self, contexts, max_new_tokens):
        out, eos = [], []
        self.calls.append((copy.deepcopy(contexts), list(max_new_tokens)))
        for ctx, k in zip(contexts, max_new_tokens):
            n = ctx[0] - FIRST_N + 1
            done = len(ctx) - 1
            # window-k context = prompt + windows 0 … k−1, token for token (card §13.10(c))
            assert ctx[1:] == [expected_token(t, n) for t in range(done)], "context is not prompt + earlier windows"
            toks = []
            for t in range(done, done + k):
                toks.append(expected_token(t, n))
                if toks[-1] == EOS:
                    break
            out.append(toks)
            eos.append(toks[-1] == EOS if toks else False)
        return out, eos


class PromptStream:
    """Deterministic prompt source; its state is one int so tests can copy it for resume checks."""

    def __init__(self, seed=0):
        self.i, self.seed = 0, seed

    def __call__(self):
        self.i += 1
        n = random.Random(self.seed * 1000003 + self.i).randint(1, N_MAX)
        return [FIRST_N + n - 1], n


def scripted_reward(r):
    return 1.0 if r.eos and r.meta % 2 == 0 else 0.0


def run_pool_only(pool, steps, stream, gen):
    """Drive the pool without training (generation → record → carry); return the batches (deep copies)."""
    batches = []
    for _ in range(steps):
        b = pool.next_batch(stream)
        new, eos = gen([r.prompt + r.response for r in b], [pool.max_new_tokens(r) for r in b])
        pool.record(b, new, eos)
        batches.append(copy.deepcopy(b))
        pool.carry(b)
    return batches


# ----------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------

def test_config_defaults_are_the_cards():
    c = TPPOConfig()
    assert (c.window, c.max_response, c.max_windows) == (8192, 24576, 3)
    assert (c.gamma, c.lam_floor, c.lam_alpha, c.critic_lam) == (1.0, 0.95, 0.05, 1.0)
    assert (c.clip_low, c.clip_high, c.dual_clip) == (0.2, 0.28, 10.0)
    assert (c.value_clip_low, c.value_clip_high, c.nll_weight) == (0.5, 0.6, 0.1)
    assert (c.ignore_last, c.critic_warmup, c.ppo_epochs, c.adv_clamp, c.whiten) == (8, 10, 1, 10.0, True)
    assert (c.temperature, c.old_logp_from_sampler) == (1.0, False)
    for bad in (dict(window=0), dict(bootstrap="exact"), dict(gamma=1.5), dict(clip_low=1.0), dict(dual_clip=1.0),
                dict(temperature=0.0), dict(temperature=float("nan"))):
        with pytest.raises(ValueError):
            TPPOConfig(**bad)


# ----------------------------------------------------------------------------------------------------------------
# Successive batching
# ----------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("window,max_response", [(4, 12), (3, 8), (5, 5)])
def test_pool_invariants_with_scripted_generator(window, max_response):
    slots, group = 10, 3
    pool = RolloutPool(slots, group, window, max_response)
    gen = ScriptedGen()
    batches = run_pool_only(pool, 25, PromptStream(), gen)
    max_windows = math.ceil(max_response / window)
    first_step, n_windows, finished_at = {}, {}, {}
    prev_carried = []
    for s, b in enumerate(batches):
        assert len(b) == slots                                               # constant slot count
        carried = [r.rid for r in b if r.round > 0]
        assert [r.rid for r in b[:len(carried)]] == carried == prev_carried  # carried first, in carry order
        prev_carried = [r.rid for r in b if not r.finished]
        for r in b:
            first_step.setdefault(r.rid, s)
            n_windows[r.rid] = n_windows.get(r.rid, 0) + 1
            assert r.round == s - first_step[r.rid]                          # one window per step, no gaps
            assert len(r.window) == min(window, max_response - r.window_start) or r.finished
            if r.finished:
                assert r.rid not in finished_at                              # finished exactly once
                finished_at[r.rid] = s
                n = r.meta
                if n <= max_response:                                        # EOS reached: the whole scripted answer
                    assert r.eos and r.response == [expected_token(t, n) for t in range(n)]
                else:                                                        # forced finish after the last window
                    assert not r.eos and len(r.response) == max_response and r.round == max_windows - 1
    assert max(n_windows.values()) <= max_windows
    assert any(r.round == max_windows - 1 for b in batches for r in b) or max_windows == 1
    # every sampled rollout is finished within ⌈L_max/W⌉ steps, or still carried at the end
    last = len(batches) - 1
    for rid, s in first_step.items():
        assert rid in finished_at or (last - s < max_windows - 1 and rid in {r.rid for r in pool.carried})
    assert pool.num_finished == len(finished_at) and pool.num_sampled == len(first_step)
    # groups: group_size rollouts per prompt share the group id and the prompt
    groups = {}
    for b in batches:
        for r in b:
            groups.setdefault(r.group, {})[r.rid] = tuple(r.prompt)
    for g, members in groups.items():
        assert len(members) <= group and len(set(members.values())) == 1
    assert sum(len(m) == group for m in groups.values()) >= len(groups) - 2   # only the newest groups may be partial


def test_per_prompt_budget_finishes_each_rollout_at_its_own_max_len():
    """next_prompt may return (prompt, meta, max_len): that prompt's rollouts get at most max_len tokens (a budget
    above L_max is capped at L_max), stop there unscored-as-EOS, and the other prompts keep L_max."""
    window, max_response = 4, 12
    budgets = {}

    def stream3(inner=PromptStream(seed=5)):
        prompt, n = inner()
        cap = [0, 3, 6, 9, 40][n % 5]                       # 0 = L_max; 40 > L_max is capped at 12
        budgets[prompt[0]] = min(cap, max_response) if cap else max_response
        return prompt, n, cap

    pool = RolloutPool(6, 2, window, max_response)
    batches = run_pool_only(pool, 30, stream3, ScriptedGen())
    seen = 0
    for b in batches:
        for r in b:
            cap = budgets[r.prompt[0]]
            assert len(r.response) <= cap and pool.max_new_tokens(r) >= 0
            if r.finished:
                seen += 1
                if r.meta <= cap:                            # the whole scripted answer fits: it ends with EOS
                    assert r.eos and len(r.response) == r.meta
                else:                                        # cut at its own budget, not at L_max
                    assert not r.eos and len(r.response) == cap
            else:
                assert len(r.response) < cap and len(r.window) == window
    assert seen > 20 and len({v for v in budgets.values()}) >= 3
    with pytest.raises(ValueError, match="max_len"):
        RolloutPool(2, 1, 4, 12).take_fresh(lambda: ([FIRST_N], 1, -3))
    with pytest.raises(ValueError, match="3-tuple|tuple"):
        RolloutPool(2, 1, 4, 12).take_fresh(lambda: ([FIRST_N], 1, 4, 5))


def test_pool_state_dict_resumes_without_losing_or_duplicating_rollouts():
    gen = ScriptedGen()
    pool, stream = RolloutPool(7, 3, 4, 12), PromptStream(seed=3)
    run_pool_only(pool, 4, stream, gen)
    buf = io.BytesIO()
    torch.save(pool.state_dict(), buf)
    stream_copy = copy.deepcopy(stream)
    assert pool.carried, "the checkpoint should hold carried rollouts for this test to mean anything"
    ref = run_pool_only(pool, 5, stream, gen)
    resumed = RolloutPool(7, 3, 4, 12)
    buf.seek(0)
    resumed.load_state_dict(torch.load(buf, weights_only=False))
    got = run_pool_only(resumed, 5, stream_copy, gen)
    assert [[(r.rid, r.group, r.round, r.response, r.finished) for r in b] for b in got] == \
           [[(r.rid, r.group, r.round, r.response, r.finished) for r in b] for b in ref]
    with pytest.raises(ValueError):
        RolloutPool(8, 3, 4, 12).load_state_dict(pool.state_dict())


def test_generate_fn_overrunning_its_budget_is_rejected():
    pool = RolloutPool(2, 1, 3, 9)
    b = pool.next_batch(PromptStream())
    with pytest.raises(ValueError, match="max_new_tokens"):
        pool.record(b, [[TOK_A] * 4, [TOK_A]], [False, False])


# ----------------------------------------------------------------------------------------------------------------
# Step function: token accounting, rewards, critic targets
# ----------------------------------------------------------------------------------------------------------------

def make_models(max_response, seed=0):
    torch.manual_seed(seed)
    vocab, max_len = FIRST_N + N_MAX, max_response + 2
    policy, critic = ToyLM(vocab, max_len, 16), ToyLM(vocab, max_len, 16, out_dim=1)
    return (policy, critic, torch.optim.Adam(policy.parameters(), 1e-2),
            torch.optim.Adam(critic.parameters(), 1e-2))


def run_steps(cfg, steps, reward_fn=scripted_reward, seed=0):
    policy, critic, popt, copt = make_models(cfg.max_response, seed)
    pool, stream, gen = RolloutPool.from_config(cfg), PromptStream(seed), ScriptedGen()
    out = []
    for s in range(steps):
        m, sb = tppo.tppo_step(pool, cfg, policy=policy, critic=critic, policy_opt=popt, critic_opt=copt,
                               generate_fn=gen, reward_fn=reward_fn, next_prompt=stream, step=s, return_batch=True)
        out.append((m, sb))
    return out, pool


def small_cfg(**kw):
    base = dict(window=4, max_response=12, slots=9, group_size=3, minibatch_size=4, micro_batch_size=3,
                critic_warmup=0, ignore_last=1)
    base.update(kw)
    return TPPOConfig(**base)


def test_length_bucketed_micro_batches_give_the_same_update_as_one_call_per_minibatch():
    """micro_batch_size=0 (auto) splits each mini-batch by length, so a long carried prefix does not pad the short
    rows (issue 15: no update work that is not needed), and skips rows without a loss token. The losses are token
    sums over whole-batch counts, so the weights after several steps equal those of one forward/backward per
    mini-batch (the previous behaviour), up to float summation order."""
    lens = torch.tensor([5, 40, 9, 21, 40, 3])
    parts = tppo._micro(torch.arange(6), TPPOConfig(micro_batch_size=0), lens)
    assert [p.tolist() for p in parts] == [[1, 4, 3], [2, 0], [5]]      # longest first; new call below half
    assert [p.tolist() for p in tppo._micro(torch.arange(6), TPPOConfig(micro_batch_size=4), lens)] == \
        [[0, 1, 2, 3], [4, 5]]                                            # an explicit size is kept as given
    finals, split = [], []
    for mbs in (0, 1000):
        cfg = small_cfg(window=4, max_response=24, slots=12, group_size=3, minibatch_size=6, micro_batch_size=mbs,
                        critic_warmup=1)
        policy, critic, popt, copt = make_models(cfg.max_response, seed=3)
        pool, stream, gen = RolloutPool.from_config(cfg), PromptStream(0), ScriptedGen()
        for s in range(8):
            m, sb = tppo.tppo_step(pool, cfg, policy=policy, critic=critic, policy_opt=popt, critic_opt=copt,
                                   generate_fn=gen, reward_fn=scripted_reward, next_prompt=stream, step=s,
                                   return_batch=True)
            if mbs == 0:
                split.append(len(tppo._micro(torch.arange(len(sb.rids)), cfg, sb.seq_lens)))
        finals.append([p.detach().clone() for p in list(policy.parameters()) + list(critic.parameters())])
    assert max(split) >= 2                                                # the batches did get split by length
    for a, b in zip(*finals):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_every_generated_token_enters_policy_loss_once_and_finished_tokens_value_loss_once():
    cfg = small_cfg()
    steps, pool = run_steps(cfg, 12)
    policy_tok, value_tok, finished_len, generated, v_at_window = {}, {}, {}, {}, {}
    for m, sb in steps:
        for b, rid in enumerate(sb.rids):
            L, l = int(sb.lengths[b]), int(sb.window_lengths[b])
            generated[rid] = L
            for t in torch.nonzero(sb.window_mask[b]).flatten().tolist():
                policy_tok[(rid, t)] = policy_tok.get((rid, t), 0) + 1
                assert L - l <= t < L                                  # only this step's window
            for t in torch.nonzero(sb.value_mask[b]).flatten().tolist():
                value_tok[(rid, t)] = value_tok.get((rid, t), 0) + 1
            if bool(sb.finished[b]):
                assert rid not in finished_len
                finished_len[rid] = L
                # critic target with λ_c = γ = 1 and a terminal reward: G_t = R on every token (card §13.7)
                assert torch.equal(sb.returns[b, :L], torch.full((L,), float(sb.rewards[b])))
            else:
                # unfinished: reward 0, no value target (card §4, §6)
                assert float(sb.rewards[b]) == 0.0 and not sb.value_mask[b].any() and not sb.returns[b].any()
                assert not sb.nll_mask[b].any()
            # V_old of a finished response's earlier windows = the values saved when those windows were trained
            for t in torch.nonzero(sb.window_mask[b]).flatten().tolist():
                v_at_window[(rid, t)] = float(sb.old_values[b, t])
            if bool(sb.finished[b]):
                assert all(float(sb.old_values[b, t]) == v_at_window[(rid, t)] for t in range(L))
    assert set(policy_tok.values()) == {1} and set(value_tok.values()) == {1}
    assert set(policy_tok) == {(rid, t) for rid, L in generated.items() for t in range(L)}
    assert set(value_tok) == {(rid, t) for rid, L in finished_len.items() for t in range(L)}
    # Σ policy tokens over finished responses = Σ value tokens (card §13.10(d))
    assert sum(1 for (rid, _) in policy_tok if rid in finished_len) == len(value_tok) > 0
    assert any(int(sb.finished.logical_not().sum()) > 0 for _, sb in steps)  # truncation really happened
    assert all(m["pool/finished"] + m["pool/unfinished"] == cfg.slots for m, _ in steps)


def test_unfinished_rollouts_get_reward_zero_even_if_reward_fn_would_pay():
    calls = []

    def pays_always(r):
        calls.append(r.finished)
        return 1.0
    steps, _ = run_steps(small_cfg(), 5, reward_fn=pays_always)
    assert calls and all(calls)                                      # reward_fn only sees finished rollouts
    for _, sb in steps:
        assert torch.equal(sb.rewards, sb.finished.float())


@pytest.mark.parametrize("window,max_response", [(20, 20), (30, 20), (8, 16)])
def test_ppo_is_tppo_with_window_at_least_max_response_and_gives_plain_gae(window, max_response):
    """W ≥ L_max: one window per response and EGAE = plain GAE. W < L_max: the same holds for every response
    that finishes inside its first window (card §13.1)."""
    cfg = small_cfg(window=window, max_response=max_response, lam_alpha=0.5, lam_floor=0.5, whiten=False,
                    adv_clamp=0.0)
    steps, pool = run_steps(cfg, 6)
    checked = 0
    for _, sb in steps:
        if window >= max_response:
            assert bool(sb.finished.all()) and not pool.carried         # one window per response
        for b in range(len(sb.rids)):
            L = int(sb.lengths[b])
            if not (bool(sb.finished[b]) and int(sb.window_lengths[b]) == L):
                continue
            checked += 1
            lam = max(0.5, 1 - 1 / (0.5 * L))                             # length-adaptive λ, finished: no W/2
            assert float(sb.lam[b]) == pytest.approx(lam, rel=1e-6)
            V = sb.old_values[b, :L].double().tolist() + [0.0]            # V_T = 0
            r = [0.0] * (L - 1) + [float(sb.rewards[b])]
            adv, gae = [0.0] * L, 0.0
            for t in reversed(range(L)):                                  # literal GAE (Eq. 2/3)
                gae = r[t] + cfg.gamma * V[t + 1] - V[t] + cfg.gamma * lam * gae
                adv[t] = gae
            assert torch.allclose(sb.adv_raw[b, :L].double(), torch.tensor(adv, dtype=torch.float64), atol=1e-5)
            assert torch.equal(sb.adv_raw[b, :L], sb.adv[b, :L])          # no post-processing requested
    assert checked >= 5


def test_unfinished_rows_use_length_plus_half_window_in_lambda_and_zero_ignored_tail():
    cfg = small_cfg(lam_alpha=0.5, lam_floor=0.5, ignore_last=2, whiten=True)
    steps, _ = run_steps(cfg, 3)
    seen_unfinished = False
    for _, sb in steps:
        for b in range(len(sb.rids)):
            L, l = int(sb.lengths[b]), int(sb.window_lengths[b])
            fin = bool(sb.finished[b])
            lam = max(0.5, 1 - 1 / (0.5 * (L + (0 if fin else cfg.window / 2))))
            assert float(sb.lam[b]) == pytest.approx(lam, rel=1e-6)
            if not fin:
                seen_unfinished = True
                assert torch.all(sb.adv[b, L - 2:L] == 0)                  # last k tokens of a truncated window
        # whitening statistics over the window tokens that are not ignored: mean 0, std 1 over the whole batch
        keep = sb.window_mask.clone()
        for b in range(len(sb.rids)):
            if not bool(sb.finished[b]):
                keep[b, int(sb.lengths[b]) - 2:int(sb.lengths[b])] = False
        a = sb.adv[keep].double()
        assert abs(float(a.mean())) < 1e-5 and float(a.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    assert seen_unfinished


def test_has_gradient_filter_drops_only_finished_rows_of_complete_groups_that_all_scored_alike():
    """DAPO's has-gradient filter (card §9 step 4) as a policy-loss mask: a finished row is dropped only when its
    whole group has finished with equal scores; an unfinished mate counts as "keep"; unfinished rows always
    train; a group is forgotten once every member has finished, and a partial group survives resume."""
    from tppo import Rollout
    pool = RolloutPool(slots=4, group_size=2, window=4, max_response=8)
    b1 = [Rollout(0, 0, [5], finished=True, reward=1.0), Rollout(1, 0, [5], finished=True, reward=1.0),
          Rollout(2, 1, [6], finished=True, reward=0.0), Rollout(3, 1, [6])]
    assert pool.has_gradient(b1) == [False, False, True, True]  # group 0 complete and uniform; rid 3 unknown
    assert pool.group_scores == {1: [0.0]}                       # group 0 complete and forgotten
    state = pool.state_dict()
    b2 = [Rollout(3, 1, [6], finished=True, reward=0.0)]
    assert pool.has_gradient(b2) == [False] and pool.group_scores == {}   # complete and uniform now
    pool.load_state_dict(state)                                  # resume restores the partial group
    assert pool.group_scores == {1: [0.0]}
    assert pool.has_gradient([Rollout(3, 1, [6], finished=True, reward=1.0)]) == [True]   # mixed: keep


class RidLengthGen:
    """Rollout rid emits A tokens and then EOS at a length drawn from its rid alone (1 … 12 tokens), so finish
    order inside a group varies while the outcomes do not depend on the window size."""

    def __init__(self, rids_of_batch):
        self.rids_of_batch = rids_of_batch

    def __call__(self, contexts, max_new_tokens):
        out, eos = [], []
        for rid, ctx, k in zip(self.rids_of_batch(), contexts, max_new_tokens):
            n, done = random.Random(rid).randint(1, 12), len(ctx) - 1
            toks = [EOS if t == n - 1 else TOK_A for t in range(done, min(done + k, n))]
            out.append(toks)
            eos.append(bool(toks) and toks[-1] == EOS)
        return out, eos


def filter_decisions(window, steps=40, slots=9, group=3):
    """Drive a pool (no training) with outcome(rid) fixed; return {rid: (kept, finish step)} and the groups'
    outcomes. Groups g % 3 == 0 all score 1, g % 3 == 1 all 0, g % 3 == 2 are mixed (rid % 3 == 0 scores 1)."""
    def outcome(rid):
        g = rid // group
        return 1.0 if g % 3 == 0 else 0.0 if g % 3 == 1 else float(rid % 3 == 0)
    pool, stream, cur = RolloutPool(slots, group, window, 12), PromptStream(seed=5), []
    gen = RidLengthGen(lambda: [r.rid for r in cur])
    decision = {}
    for s in range(steps):
        cur = pool.next_batch(stream)
        new, eos = gen([r.prompt + r.response for r in cur], [pool.max_new_tokens(r) for r in cur])
        pool.record(cur, new, eos)
        for r in cur:
            r.reward = outcome(r.rid) if r.finished else 0.0
        for r, keep in zip(cur, pool.has_gradient(cur)):
            assert keep or r.finished                            # unfinished rows always train
            if r.finished:
                decision[r.rid] = (keep, s)
        pool.carry(cur)
    return decision, outcome


def test_has_gradient_filter_keeps_every_row_ppo_keeps_whatever_the_finish_order():
    """Issue 14 point 4: the same final (group, reward) outcomes give every row of a mixed group the decision
    "keep" under PPO and under T-PPO with any window size, whatever the finish order; in uniform groups T-PPO
    drops only rows PPO drops (those finishing with the group's last member); PPO drops every uniform group."""
    group = 3
    ppo, outcome = filter_decisions(window=12)
    runs = {w: filter_decisions(window=w)[0] for w in (1, 2, 3, 5)}
    groups = {}
    for rid in ppo:
        groups.setdefault(rid // group, []).append(rid)
    complete = {g: m for g, m in groups.items() if len(m) == group}
    assert len(complete) >= 20
    for g, members in complete.items():
        mixed = len({outcome(r) for r in members}) > 1
        assert all(ppo[r][0] == mixed for r in members)          # PPO: drop exactly the uniform groups
    order_mattered = 0
    for w, dec in runs.items():
        for g, members in complete.items():
            if not all(r in dec for r in members):
                continue
            mixed = len({outcome(r) for r in members}) > 1
            last = max(dec[r][1] for r in members)
            for r in members:
                kept, s = dec[r]
                assert kept == (mixed or s < last), (w, g, r)   # = PPO's decision, or kept while a mate was unknown
                assert kept or not ppo[r][0]                      # never drops a row PPO keeps
            early = [r for r in members if dec[r][1] < last]
            # the case the earlier rule got wrong: the early finishers alone look uniform, the group is mixed
            order_mattered += mixed and len(early) >= 2 and len({outcome(r) for r in early}) == 1
    assert order_mattered > 0


def test_filtered_rows_carry_no_policy_loss_but_still_train_the_critic():
    def reward_by_rid(r):
        return float(r.group % 2 == 0 and r.rid % 3 == 0)       # even groups mixed, odd groups all 0
    cfg = small_cfg(group_filter=True, whiten=False, adv_clamp=0.0, ignore_last=0)
    steps, _ = run_steps(cfg, 6, reward_fn=reward_by_rid)
    filtered = 0
    for m, sb in steps:
        row_on = sb.policy_mask.any(1)
        for b in range(len(sb.rids)):
            if not bool(row_on[b]) and bool(sb.window_mask[b].any()):
                filtered += 1
                assert bool(sb.finished[b]) and torch.all(sb.adv[b] == 0)
                assert bool(sb.value_mask[b].any())              # the critic still sees the response
            else:
                assert torch.equal(sb.policy_mask[b], sb.window_mask[b])
        assert m["pool/filtered"] == int((~row_on & sb.window_mask.any(1)).sum())
    assert filtered > 0


def test_ratio_is_one_on_first_minibatch_and_drifts_after():
    cfg = small_cfg(minibatch_size=3, micro_batch_size=2)
    steps, _ = run_steps(cfg, 4)
    for m, _ in steps:
        assert m["policy/first_ratio_dev"] < 1e-5
        assert m["policy/updates"] == 3
    assert max(m["policy/approx_kl"] for m, _ in steps) > 1e-7      # later mini-batches see updated weights


class ToySampler:
    """toy_generate at temperature τ that records the log-probs under which it sampled each token."""

    def __init__(self, policy, temperature, seed=0, pass_logprobs=False):
        self.policy, self.temperature, self.pass_logprobs = policy, temperature, pass_logprobs
        self.gen, self.logps = torch.Generator().manual_seed(seed), []

    def __call__(self, contexts, max_new_tokens):
        toks, eos, lp = tppo.toy_generate(self.policy, contexts, max_new_tokens, self.gen, self.temperature,
                                          return_logprobs=True)
        self.logps.append(lp)
        return (toks, eos, lp) if self.pass_logprobs else (toks, eos)


def run_toy_sampler_steps(cfg, steps, pass_logprobs=False, seed=0):
    policy, critic, popt, copt = make_models(cfg.max_response, seed)
    pool, stream = RolloutPool.from_config(cfg), PromptStream(seed)
    sampler = ToySampler(policy, cfg.temperature, seed, pass_logprobs)
    out = [tppo.tppo_step(pool, cfg, policy=policy, critic=critic, policy_opt=popt, critic_opt=copt,
                          generate_fn=sampler, reward_fn=scripted_reward, next_prompt=stream, step=s,
                          return_batch=True) for s in range(steps)]
    return out, sampler


def test_temperature_correct_ratio_old_logp_is_the_sampling_distribution_and_ratio_is_one():
    """Rollouts come from softmax(z / τ): π_old must be that distribution, and π_θ the same function of the
    weights, so ρ = 1 on the first mini-batch at τ ≠ 1 (issue 14 point 4)."""
    tau = 0.7
    cfg = small_cfg(temperature=tau, minibatch_size=3)
    steps, sampler = run_toy_sampler_steps(cfg, 4)
    carried = 0
    for (m, sb), lps in zip(steps, sampler.logps):
        assert m["policy/first_ratio_dev"] < 1e-5
        for b, lp in enumerate(lps):
            ws, L = int(sb.lengths[b] - sb.window_lengths[b]), int(sb.lengths[b])
            carried += ws > 0
            assert torch.allclose(sb.old_logp[b, ws:L], torch.tensor(lp), atol=1e-5), (b, lp)
    assert carried > 0                                                 # later windows of carried rollouts too
    # the claim can fail: the raw-logit log-probs (what π_old was before) are far from the sampler's
    policy0 = make_models(cfg.max_response)[0]                         # the step-0 weights
    sb = steps[0][1]
    with torch.no_grad():
        raw = tppo._response_logprobs(policy0, sb.tokens, sb.pred_pos, sb.targets)
    assert float((raw - sb.old_logp)[sb.window_mask].abs().max()) > 1e-2
    with pytest.raises(ValueError, match="temperature"):
        TPPOConfig(temperature=0.0)


@pytest.mark.parametrize("tau", [1.0, 0.7])
def test_old_logp_from_sampler_equals_the_recomputed_one_and_skips_the_policy_forward(tau):
    """Issue 15 point 1: the sampler's own log-probs (same weights, same τ) are π_old within fp32 tolerance, so
    taking them saves build_step_batch's policy forward and trains the same; during the critic warm-up no
    policy forward runs at all."""
    params, batches, forwards = [], [], []
    for from_sampler in (False, True):
        cfg = small_cfg(temperature=tau, old_logp_from_sampler=from_sampler, critic_warmup=1)
        policy, critic, popt, copt = make_models(cfg.max_response)
        n_fwd = [0]
        policy.register_forward_hook(lambda *_: n_fwd.__setitem__(0, n_fwd[0] + 1))   # toy_generate bypasses it
        pool, stream = RolloutPool.from_config(cfg), PromptStream()
        sampler = ToySampler(policy, tau, pass_logprobs=True)
        sbs, fw = [], []
        for s in range(4):
            n_fwd[0] = 0
            m, sb = tppo.tppo_step(pool, cfg, policy=policy, critic=critic, policy_opt=popt, critic_opt=copt,
                                   generate_fn=sampler, reward_fn=scripted_reward, next_prompt=stream, step=s,
                                   return_batch=True)
            sbs.append(sb)
            fw.append((n_fwd[0], m.get("policy/updates", 0)))
            if s >= 1:
                assert m["policy/first_ratio_dev"] < 1e-5
        params.append(torch.cat([p.detach().flatten() for p in policy.parameters()]))
        batches.append(sbs)
        forwards.append(fw)
    for a, b in zip(*batches):
        assert torch.equal(a.tokens, b.tokens)                  # same samples in both runs
        assert torch.allclose(a.old_logp, b.old_logp, atol=1e-5)   # sampler log-probs = recomputed π_old
        assert bool(b.window_mask.any()) and not b.old_logp[~b.window_mask].any()   # π_old on window tokens only
    assert torch.allclose(params[0], params[1], rtol=1e-4, atol=1e-6)
    assert forwards[0][0][0] == forwards[1][0][0] == 0           # critic warm-up: the policy never runs
    for (n_re, _), (n_sa, _) in zip(forwards[0][1:], forwards[1][1:]):
        assert n_re == n_sa + 1 and n_sa > 0                      # exactly the π_old forward is saved


def test_old_logp_from_sampler_rejects_missing_or_misshapen_logprobs():
    cfg = small_cfg(old_logp_from_sampler=True)

    def step(gen):
        policy, critic, popt, copt = make_models(cfg.max_response)
        tppo.tppo_step(RolloutPool.from_config(cfg), cfg, policy=policy, critic=critic, policy_opt=popt,
                       critic_opt=copt, generate_fn=gen, reward_fn=scripted_reward, next_prompt=PromptStream(),
                       step=0)
    scripted = ScriptedGen()
    with pytest.raises(ValueError, match="third value"):
        step(scripted)
    with pytest.raises(ValueError, match="one log-prob per new token"):
        step(lambda c, k: (lambda t, e: (t, e, [[-0.1] * (len(x) + 1) for x in t]))(*scripted(c, k)))
    with pytest.raises(ValueError, match="non-finite"):
        step(lambda c, k: (lambda t, e: (t, e, [[float("nan")] * len(x) for x in t]))(*scripted(c, k)))
    with pytest.raises(ValueError, match="4-tuple"):
        step(lambda c, k: (*scripted(c, k), None, None))


class GradRecorder(torch.optim.Optimizer):
    """lr = 0: records the gradient of every optimizer step and leaves the weights alone (ρ = 1 throughout)."""

    def __init__(self, params):
        super().__init__(params, {})
        self.grads = []

    def step(self, closure=None):
        self.grads.append(torch.cat([p.grad.flatten() for g in self.param_groups for p in g["params"]]))


def test_loss_denominator_is_the_whole_batchs_token_count_for_every_minibatch(monkeypatch):
    """Mini-batches of 8 and 1 rollouts (very different token counts): the mean of the two mini-batch losses is the
    whole-batch token-mean loss computed once, and the summed gradients are n_mb × the whole-batch gradient of
    L_PPO + μ·NLL, each a token mean over the whole batch (issue 14 point 4; card §8 `loss_agg_mode='batch'`)."""
    cfg = small_cfg(minibatch_size=8, micro_batch_size=0, max_grad_norm=0.0, nll_weight=0.5, whiten=False)
    policy, critic, _, copt = make_models(cfg.max_response)
    popt = GradRecorder(policy.parameters())
    losses = []
    real = tppo.policy_loss
    monkeypatch.setattr(tppo, "policy_loss", lambda *a, **k: (lambda out: (losses.append(out[0].detach()), out)[1])(
        real(*a, **k)))
    m, sb = tppo.tppo_step(RolloutPool.from_config(cfg), cfg, policy=policy, critic=critic, policy_opt=popt,
                           critic_opt=copt, generate_fn=ScriptedGen(), reward_fn=scripted_reward,
                           next_prompt=PromptStream(), step=0, return_batch=True)
    assert m["policy/updates"] == 2 and len(losses) == 2 and len(popt.grads) == 2
    gen = torch.Generator().manual_seed(cfg.seed)                   # update_policy's shuffle of step 0
    small = torch.randperm(cfg.slots, generator=gen)[8:]
    n_small, n_all = int(sb.policy_mask[small].sum()), int(sb.policy_mask.sum())
    assert 0 < 3 * n_small < n_all - n_small                        # very different token counts
    assert int(sb.nll_mask.sum()) > 0
    logp = tppo._response_logprobs(policy, sb.tokens, sb.pred_pos, sb.targets)
    whole, _ = real(logp, sb.old_logp, sb.adv, sb.policy_mask)      # token mean over the whole batch
    assert abs(float(whole.detach())) > 1e-2                               # (no whitening: Â does not average to 0)
    assert float(sum(losses)) / 2 == pytest.approx(float(whole.detach()), rel=1e-5, abs=1e-7)
    nll = -logp[sb.nll_mask].sum() / sb.nll_mask.sum()
    policy.zero_grad()
    (whole + cfg.nll_weight * nll).backward()
    g_whole = torch.cat([p.grad.flatten() for p in policy.parameters()])
    assert torch.allclose(popt.grads[0] + popt.grads[1], 2 * g_whole, rtol=1e-4, atol=1e-6)


def test_critic_warmup_steps_leave_the_policy_untouched():
    cfg = small_cfg(critic_warmup=2)
    policy, critic, popt, copt = make_models(cfg.max_response)
    before = [p.detach().clone() for p in policy.parameters()]
    c_before = [p.detach().clone() for p in critic.parameters()]
    pool, stream, gen = RolloutPool.from_config(cfg), PromptStream(), ScriptedGen()
    for s in range(2):
        m = tppo.tppo_step(pool, cfg, policy=policy, critic=critic, policy_opt=popt, critic_opt=copt,
                           generate_fn=gen, reward_fn=scripted_reward, next_prompt=stream, step=s)
        assert "policy/loss" not in m
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(c_before, critic.parameters()))


# ----------------------------------------------------------------------------------------------------------------
# Loss claims
# ----------------------------------------------------------------------------------------------------------------

def _pg_grad(ratio, adv, **kw):
    logp = torch.tensor([math.log(ratio)], requires_grad=True)
    loss, _ = tppo.policy_loss(logp[None], torch.zeros(1, 1), torch.tensor([[adv]]), torch.ones(1, 1, dtype=torch.bool),
                               **kw)
    loss.backward()
    return loss.item(), logp.grad.item()


def test_zero_gradient_outside_the_clip_region_on_the_right_side():
    assert _pg_grad(1.5, +1.0)[1] == 0.0          # Â > 0, ρ > 1 + ε_high: no push further up
    assert _pg_grad(0.5, -1.0)[1] == 0.0          # Â < 0, ρ < 1 − ε_low: no push further down
    assert _pg_grad(0.5, +1.0)[1] != 0.0          # wrong side of the clip: the unclipped term still acts
    assert _pg_grad(1.5, -1.0)[1] != 0.0
    assert _pg_grad(1.1, +1.0)[1] != 0.0 and _pg_grad(0.9, -1.0)[1] != 0.0


def test_clip_higher_is_asymmetric():
    # 1 + 0.28 upper bound: ρ = 1.25 still learns for Â > 0, while ρ = 0.75 (< 1 − 0.2) is clipped for Â < 0
    assert _pg_grad(1.25, +1.0)[1] != 0.0 and _pg_grad(1.30, +1.0)[1] == 0.0
    assert _pg_grad(0.85, -1.0)[1] != 0.0 and _pg_grad(0.75, -1.0)[1] == 0.0
    # with the symmetric clip 0.2/0.2, ρ = 1.25 would already be clipped
    assert _pg_grad(1.25, +1.0, clip_low=0.2, clip_high=0.2)[1] == 0.0


def test_dual_clip_bounds_the_loss_for_negative_advantages():
    loss, grad = _pg_grad(100.0, -2.0)
    assert loss == pytest.approx(10.0 * 2.0) and grad == 0.0      # min(ρ·|Â|, c·|Â|) = c·|Â|
    loss, grad = _pg_grad(5.0, -2.0)
    assert loss == pytest.approx(10.0) and grad != 0.0            # below the bound: ordinary PPO
    loss, _ = _pg_grad(100.0, +2.0)
    assert loss == pytest.approx(-2.0 * 1.28)                     # positive Â: unaffected by the dual clip


def test_policy_loss_is_token_mean_and_micro_batch_split_invariant():
    torch.manual_seed(0)
    B, T = 6, 9
    logp, old, adv = torch.randn(B, T) * 0.3, torch.randn(B, T) * 0.3, torch.randn(B, T)
    mask = torch.rand(B, T) > 0.3
    whole, _ = tppo.policy_loss(logp, old, adv, mask)
    n = mask.sum()
    parts = sum(tppo.policy_loss(logp[i:i + 2], old[i:i + 2], adv[i:i + 2], mask[i:i + 2], denominator=n)[0]
                for i in range(0, B, 2))
    assert float(whole) == pytest.approx(float(parts), rel=1e-6)
    logp[~mask] = float("nan")                                    # padding garbage never leaks in
    assert torch.isfinite(tppo.policy_loss(logp, old, adv, mask)[0])
    with pytest.raises(ValueError):
        tppo.policy_loss(logp, old[:, :3], adv, mask)
    with pytest.raises(TypeError):
        tppo.policy_loss(logp, old, adv, mask.float())


def test_value_clipping_is_asymmetric_around_old_values():
    def vl(v, old, ret):
        v = torch.tensor([[v]], requires_grad=True)
        loss, st = tppo.value_loss(v, torch.tensor([[old]]), torch.tensor([[ret]]), torch.ones(1, 1, dtype=torch.bool))
        loss.backward()
        return loss.item(), v.grad.item(), float(st["clipfrac"])
    loss, grad, cf = vl(2.0, 0.0, 3.0)             # V − V_old = 2 > 0.6: clipped to 0.6, (0.6 − 3)² wins
    assert loss == pytest.approx(0.5 * 2.4 ** 2) and grad == 0.0 and cf == 1.0
    loss, grad, _ = vl(-2.0, 0.0, -3.0)            # clipped to −0.5
    assert loss == pytest.approx(0.5 * 2.5 ** 2) and grad == 0.0
    assert vl(0.55, 0.0, 3.0)[1] != 0.0            # inside [V_old − 0.5, V_old + 0.6]
    assert vl(-0.55, 0.0, -3.0)[1] == 0.0          # outside on the low side (0.55 > 0.5): asymmetric
    loss, grad, cf = vl(2.0, 0.0, 1.0)             # clipping never lowers the loss: max of the two terms
    assert loss == pytest.approx(0.5 * 1.0) and grad != 0.0 and cf == 0.0


# ----------------------------------------------------------------------------------------------------------------
# Token log-prob kernel (TRITON_INTERPRET=1 on CPU)
# ----------------------------------------------------------------------------------------------------------------

def _rel(a, b):
    return float((a - b).detach().norm() / b.detach().norm().clamp(min=1e-12))


needs_triton = pytest.mark.skipif(not tppo.HAS_TRITON, reason="triton is not installed")


@needs_triton
@pytest.mark.parametrize("shape,V,block_v,scale,dtype", [
    ((7,), 50, 16, 3.0, torch.float32),          # V not a multiple of the block
    ((2, 5), 1000, 256, 1.0, torch.float32),     # several blocks + tail, leading dims
    ((3,), 33, None, 30.0, torch.float32),       # large logits: online max must be stable
    ((4,), 129, 64, 1.0, torch.float16),         # half-precision input, fp32 accumulation
])
def test_logprob_kernel_matches_reference_outputs_and_gradients(shape, V, block_v, scale, dtype):
    torch.manual_seed(V)
    x = (torch.randn(*shape, V) * scale).to(dtype)
    x[..., 0] += 1e3 if scale > 10 else 0.0
    t = torch.randint(0, V, shape)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a = tppo.token_logprobs_triton(xa, t, block_v=block_v)
    b = tppo.token_logprobs_reference(xb, t)
    assert a.dtype == torch.float32 and a.shape == shape
    assert _rel(a, b) < 1e-5
    g = torch.randn(shape)
    (a * g).sum().backward()
    (b * g).sum().backward()
    tol = 1e-5 if dtype == torch.float32 else 2e-3
    assert xa.grad.dtype == dtype and _rel(xa.grad.float(), xb.grad.float()) < tol


@needs_triton
def test_dispatcher_override_and_argument_checks(monkeypatch):
    x, t = torch.randn(3, 4, 40), torch.randint(0, 40, (3, 4))
    monkeypatch.setattr(tppo, "IMPL", "triton")
    a = tppo.token_logprobs(x, t)
    monkeypatch.setattr(tppo, "IMPL", "reference")
    b = tppo.token_logprobs(x, t)
    assert _rel(a, b) < 1e-5
    xs = torch.randn(3, 80)[:, ::2]                                     # non-contiguous vocabulary dim
    ts = torch.randint(0, 40, (3,))
    assert _rel(tppo.token_logprobs_triton(xs, ts, block_v=16), tppo.token_logprobs_reference(xs, ts)) < 1e-5
    with pytest.raises(ValueError, match="targets"):
        tppo.token_logprobs(x, torch.full((3, 4), 40))
    with pytest.raises(ValueError, match="shape"):
        tppo.token_logprobs(x, t[:, :2])
    with pytest.raises(TypeError):
        tppo.token_logprobs(x, t.float())
    with pytest.raises(ValueError, match="block_v"):
        tppo.token_logprobs_triton(x, t, block_v=24)


@needs_triton
def test_step_with_triton_logprobs_equals_step_with_reference(monkeypatch):
    cfg = small_cfg()
    monkeypatch.setattr(tppo, "IMPL", "reference")
    ref, _ = run_steps(cfg, 2)
    monkeypatch.setattr(tppo, "IMPL", "triton")
    tri, _ = run_steps(cfg, 2)
    for (m1, s1), (m2, s2) in zip(ref, tri):
        assert torch.allclose(s1.old_logp, s2.old_logp, atol=1e-5)
        assert m1["policy/loss"] == pytest.approx(m2["policy/loss"], rel=1e-4, abs=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Learning
# ----------------------------------------------------------------------------------------------------------------

def test_tppo_raises_mean_reward_on_the_toy_task():
    """Toy: prompt n (long-tailed), answer A×n EOS, reward +1 exact / ≤ 0 otherwise. Windows of 4 tokens, L_max 24."""
    cfg = tppo._toy_config(window=4, max_response=24)
    hist = tppo.run_toy(cfg, 70, n_max=12, seed=0, max_seconds=40)
    assert any(m["pool/carried_in"] > 0 for m in hist)          # responses really span several windows
    first = sum(m["reward/mean"] for m in hist[:5]) / 5
    last = hist[-1]["reward/recent"]                              # mean over the last 256 finished responses
    assert first < -0.5 and last > first + 0.6, (first, last)


# ----------------------------------------------------------------------------------------------------------------
# Data-parallel hook
# ----------------------------------------------------------------------------------------------------------------

def test_all_reduce_hook_keeps_data_parallel_ranks_in_lock_step():
    """Two 'ranks' (threads) with their own pools and prompt streams: summing grads/counts through the hook must
    give bit-identical updates on both ranks (and they must actually move)."""
    import threading
    n_ranks, steps = 2, 3
    barrier, buf = threading.Barrier(n_ranks), [None] * n_ranks

    def make_all_reduce(rank):
        def all_reduce(t):
            buf[rank] = t.detach().clone()
            barrier.wait()
            total = sum(buf[i] for i in range(n_ranks))   # same order on every rank → same bits
            barrier.wait()
            return total
        return all_reduce

    cfg = small_cfg()
    results, errors = [None] * n_ranks, []
    # Models are built here, one rank after the other: make_models seeds torch's *global* RNG, which the two
    # threads would otherwise race on (a test artefact; real ranks are processes with their own RNG).
    models = [make_models(cfg.max_response, seed=0) for _ in range(n_ranks)]

    def worker(rank):
        try:
            policy, critic, popt, copt = models[rank]
            init = [p.detach().clone() for p in policy.parameters()]
            pool, stream, gen = RolloutPool.from_config(cfg), PromptStream(seed=10 + rank), ScriptedGen()
            ms = [tppo.tppo_step(pool, cfg, policy=policy, critic=critic, policy_opt=popt, critic_opt=copt,
                                 generate_fn=gen, reward_fn=scripted_reward, next_prompt=stream, step=s,
                                 all_reduce=make_all_reduce(rank)) for s in range(steps)]
            results[rank] = (init, [p.detach().clone() for p in policy.parameters()],
                             [p.detach().clone() for p in critic.parameters()], ms)
        except BaseException as e:  # surface thread failures in the test
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(n_ranks)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors, errors
    (init0, pol0, cri0, m0), (_, pol1, cri1, m1) = results
    assert all(torch.equal(a, b) for a, b in zip(pol0, pol1))
    assert all(torch.equal(a, b) for a, b in zip(cri0, cri1))
    assert not all(torch.equal(a, b) for a, b in zip(init0, pol0))
    assert [m["gen/util"] for m in m0] == [m["gen/util"] for m in m1]        # additive metrics are global


def test_exact_bootstrap_ablation_uses_the_critic_value_after_the_window():
    """bootstrap="value": the last advantage of an unfinished window is γ·V(s_l) − V_{l−1} (V(s_l) = the critic's
    output at the window's last token); the paper's rule gives (γ − 1)·V_{l−1} = 0 for γ = 1."""
    for bootstrap in ("paper", "value"):
        cfg = small_cfg(bootstrap=bootstrap, whiten=False, adv_clamp=0.0, ignore_last=0)
        policy, critic, popt, copt = make_models(cfg.max_response)
        pool, stream, gen = RolloutPool.from_config(cfg), PromptStream(), ScriptedGen()
        _, sb = tppo.tppo_step(pool, cfg, policy=policy, critic=critic, policy_opt=popt, critic_opt=copt,
                               generate_fn=gen, reward_fn=scripted_reward, next_prompt=stream, step=0,
                               return_batch=True)
        _, start_critic, _, _ = make_models(cfg.max_response)      # same seed: the step-start critic weights
        with torch.no_grad():
            v_all = start_critic(sb.tokens)
        unfinished = torch.nonzero(~sb.finished).flatten().tolist()
        assert unfinished
        for b in unfinished:
            L = int(sb.lengths[b])
            v_last = float(sb.old_values[b, L - 1])
            v_next = float(v_all[b, int(sb.seq_lens[b]) - 1])
            want = (v_next - v_last) if bootstrap == "value" else 0.0
            assert float(sb.adv_raw[b, L - 1]) == pytest.approx(want, abs=1e-6)


def test_micro_batch_split_does_not_change_the_update():
    """Token-level aggregation with the whole batch's token count as denominator (card §8, §13.11): gradient
    accumulation over micro-batches gives the same optimizer step as one big forward/backward."""
    params = []
    for micro in (0, 1, 2):
        cfg = small_cfg(minibatch_size=9, micro_batch_size=micro)
        policy, critic, popt, copt = make_models(cfg.max_response)
        pool, stream, gen = RolloutPool.from_config(cfg), PromptStream(), ScriptedGen()
        for s in range(2):
            tppo.tppo_step(pool, cfg, policy=policy, critic=critic, policy_opt=popt, critic_opt=copt,
                           generate_fn=gen, reward_fn=scripted_reward, next_prompt=stream, step=s)
        params.append(torch.cat([p.detach().flatten() for p in list(policy.parameters()) + list(critic.parameters())]))
    init = torch.cat([p.detach().flatten() for m in make_models(12)[:2] for p in m.parameters()])
    assert not torch.allclose(params[0], init)
    for p in params[1:]:
        assert torch.allclose(p, params[0], rtol=1e-4, atol=1e-6)


def test_every_step_records_a_per_phase_profile_that_sums_to_at_most_the_step_time():
    cfg = small_cfg(critic_warmup=1)
    out, _ = run_steps(cfg, 3)
    phases = ("time/gen_s", "time/reward_s", "time/batch_s", "time/critic_s", "time/policy_s")
    for s, (m, _) in enumerate(out):
        assert all(m[k] >= 0 for k in phases)
        assert sum(m[k] for k in phases) <= m["time/step_s"] + 1e-9
        assert m["time/gen_s"] == m["gen/time_s"]
    assert out[0][0]["time/policy_s"] < 1e-3            # warm-up step: no policy update ran


@pytest.mark.parametrize("refill", [False, True])
def test_work_counters_show_that_tppo_re_encodes_carried_prefixes_and_ppo_only_prompts(refill):
    """gen/context_tokens counts what the sampler encodes before decoding (prompt + response so far of every row, the
    refilled ones included) and update/seq_tokens what each update forward reads (prompt + whole response so far):
    the re-encoding that T-PPO pays per window (issue 15). Under PPO (W >= L_max) the sampler encodes prompts only."""
    for window in (4, 12):
        _, _, out = _refill_toy(refill, window=window)
        for _, m, sb in out:
            assert m["gen/context_tokens"] == int((sb.seq_lens - sb.window_lengths).sum())
            assert m["update/seq_tokens"] == int(sb.seq_lens.sum())
        prompts = sum(int((sb.seq_lens - sb.lengths).sum()) for _, _, sb in out)
        context = sum(m["gen/context_tokens"] for _, m, _ in out)
        if window == 12:                                # PPO: nothing is carried, so only prompts are encoded
            assert context == prompts
        else:                                           # T-PPO: carried rows come back with their responses
            assert context > prompts



# ----------------------------------------------------------------------------------------------------------------
# Slot refill (continuous batching, beyond the paper; cfg.refill)
# ----------------------------------------------------------------------------------------------------------------

class _LoggingPool(RolloutPool):
    """Logs every record() call: (rids, rounds, new-token counts, n_slots) per step."""
    def __init__(self, *a):
        super().__init__(*a)
        self.log = []

    def record(self, batch, new_tokens, eos, n_slots=None):
        self.log.append(([r.rid for r in batch], [r.round for r in batch], [len(t) for t in new_tokens], n_slots))
        super().record(batch, new_tokens, eos, n_slots)


def _refill_toy(refill, steps=8, seed=0, n_max=8, slots=8, window=4, max_response=12):
    torch.manual_seed(seed)
    cfg = TPPOConfig(window=window, max_response=max_response, slots=slots, group_size=2, minibatch_size=4,
                     critic_warmup=1, ignore_last=1, refill=refill)
    task = tppo.ToyTask(n_max, seed)
    policy = ToyLM(FIRST_N + n_max, max_response + 2, 16)
    critic = ToyLM(FIRST_N + n_max, max_response + 2, 16, out_dim=1)
    popt, copt = torch.optim.Adam(policy.parameters(), 1e-3), torch.optim.Adam(critic.parameters(), 1e-3)
    pool, gen = _LoggingPool(slots, 2, window, max_response), torch.Generator().manual_seed(seed)
    rewarded, out = [], []

    def generate_fn(ctx, k, refill=None):
        assert len(ctx) == cfg.slots                      # the generator always holds `slots` rows
        return tppo.toy_generate(policy, ctx, k, gen, refill=refill)

    def reward_fn(r):
        rewarded.append(r.rid)
        return task.reward(r)
    for step in range(steps):
        carried = [r.rid for r in pool.carried]
        m, sb = tppo.tppo_step(pool, cfg, policy=policy, critic=critic, policy_opt=popt, critic_opt=copt,
                               generate_fn=generate_fn, reward_fn=reward_fn, next_prompt=task.next_prompt,
                               step=step, return_batch=True)
        out.append((carried, m, sb))
    return pool, rewarded, out


def test_refill_pool_invariants_nothing_lost_or_duplicated_each_token_trained_once():
    pool, rewarded, out = _refill_toy(True)
    total_refilled, tokens_per_rid, final_len = 0, {}, {}
    for (carried, m, sb), (rids, rounds, ntok, n_slots) in zip(out, pool.log):
        assert n_slots == pool.slots and len(rids) == pool.slots + m["pool/refilled"]
        total_refilled += m["pool/refilled"]
        assert rids[:len(carried)] == carried                      # carried rollouts first, in carry order
        assert all(r == 0 for r in rounds[len(carried):])          # then fresh ones (refilled ones included)
        assert len(set(rids)) == len(rids)                         # each rollout once per window
        for rid, n in zip(rids, ntok):
            tokens_per_rid[rid] = tokens_per_rid.get(rid, 0) + n
        # each generated token is in exactly one policy window: this step's windows are its new tokens
        assert int(sb.window_lengths.sum()) == sum(ntok) == m["gen/tokens"]
        # every slot decodes at every decode step (refill always finds a fresh rollout): utilization 1
        assert m["gen/tokens"] == m["gen/slot_steps"]
        # critic: every token of each response finishing this step, once
        assert int(sb.value_mask.sum()) == int(sb.lengths[sb.finished].sum())
        for b in sb.finished.nonzero().flatten().tolist():
            final_len[rids[b]] = int(sb.lengths[b])
    assert total_refilled > 0, "the toy batch must exercise refill"
    assert len(rewarded) == len(set(rewarded)) == pool.num_finished == len(final_len)   # finished exactly once
    carried = [r.rid for r in pool.carried]
    assert len(set(carried)) == len(carried) <= pool.slots and not set(carried) & set(rewarded)
    assert pool.num_sampled == pool.num_finished + len(carried)    # nothing lost
    for rid, n in final_len.items():                              # all windows of a response add up to it
        assert tokens_per_rid[rid] == n
    for r in pool.carried:
        assert tokens_per_rid[r.rid] == len(r.response)


def test_refill_util_at_least_no_refill_on_a_long_tailed_batch():
    for seed in (0, 1):
        util = {}
        for refill in (False, True):
            _, _, out = _refill_toy(refill, steps=4, seed=seed, n_max=12, window=6, max_response=14)
            util[refill] = sum(m["gen/tokens"] for _, m, _ in out) / sum(m["gen/slot_steps"] for _, m, _ in out)
        assert util[True] >= util[False] and util[True] == 1.0 and util[False] < 1.0


def test_refill_toy_generate_same_tokens_per_rollout_with_greedy_frozen_policy():
    """Near-greedy sampling (τ tiny) of a frozen policy: a rollout's tokens do not depend on its slot or start."""
    torch.manual_seed(0)
    policy = ToyLM(FIRST_N + 8, 20, 16)
    prompts = [[FIRST_N + (i % 8)] for i in range(10)]
    gen = torch.Generator().manual_seed(0)
    alone, _ = tppo.toy_generate(policy, prompts, [6] * 10, gen, temperature=1e-4)
    queue = list(range(3, 10))

    def refill():
        if not queue:
            return None
        i = queue.pop(0)
        return prompts[i], 6
    rows, eos = tppo.toy_generate(policy, prompts[:3], [6] * 3, gen, temperature=1e-4, refill=refill)
    assert len(rows) > 3
    for i, row in enumerate(rows):      # a refilled rollout is cut at the window's end: a prefix of its solo run
        assert row == alone[i][:len(row)]
        assert eos[i] == (bool(row) and row[-1] == EOS)


def test_refill_off_for_ppo_and_by_default():
    assert TPPOConfig().refill is False
    pool, _, out = _refill_toy(True, steps=2, window=12, max_response=12)   # W >= L_max: PPO never refills
    assert all(m["pool/refilled"] == 0 for _, m, _ in out)
