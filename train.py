"""train.py — the front door: long verifiable reasoning chains → byte-level BPE → local-global GPT (μP-LV) → SFT →
Guru curation → critic warm-up → T-PPO → held-out evaluation.

This is the one place where the concept files meet (see DESIGN.md):

  proto_verify.py  ProtoReasoning (arXiv 2506.15211): Prolog programs labelled by its engine (`solve`) and scored by
                   `prolog_reward`; blocksworld / gripper plans labelled by its BFS planner and scored by its validator.
  guru_rewards.py  Guru (arXiv 2506.14965): the math reward (\\boxed{} + math_equal), decontamination, and the curation
                   step: `difficulty_filter` on the SFT policy's samples keeps the prompts it solves sometimes.
  rattention.py    RAttention local layers (arXiv 2506.15545) = sliding-window attention + residual linear attention,
                   stacked 3 local : 1 global (GlobalAttention), with O(1)-memory decode caches.
  mup_vocab.py     μP and the large-vocabulary rule (arXiv 2506.15025): init, per-group LRs (embedding LR η/√w in the
                   "lv" regime), readout multiplier.
  tppo.py/egae.py  Truncated PPO (arXiv 2506.15050): windows of W tokens, successive batching, EGAE advantages, a
                   finished-only Monte-Carlo critic. PPO is the same code with W ≥ L_max.

Read top-down: section 1 is the Config, section 2 the pipeline (`train` → `sft` → `curate` → `rl`), section 3 the
tasks; the model, generation and evaluation follow, and the infrastructure (run state and checkpoints, tokenizer,
command line, devices, the T-PPO vs PPO bench) sits in appendices (`grep -n '^# ====' train.py`).

The tasks (section 3): every response is a step-by-step chain whose length grows with the instance, instance sizes
have a capped Pareto tail (most short, a few long), every answer is checked by a project verifier and every step
by `derivation_ok` (a right answer reached through a wrong step is not a pass):

  math    prompt   math: Start at 23, subtract 5 while the result stays at least 0.
          response 23-5=18 18-5=13 13-5=8 8-5=3 3-5=-2<0 \\boxed{3}                        (guru_rewards.score)
  prolog  prompt   prolog: rev([], R, R).  rev([X|Xs], A, R) :- rev(Xs, [X|A], R).  ?- rev([k,d,q], [], R).
          response rev([d,q],[k]) rev([q],[d,k]) rev([],[q,d,k])  Answer: [q,d,k]         (proto_verify.prolog_reward)
          (and len/3, the length of a list by counting with an accumulator, traced the same way)
  pddl    prompt   pddl: Blocksworld. Towers, bottom first: a b | c. Hand empty. Goal: a on c.
          response unstack b a ; a | c | hand b  /  put-down b ; a | c | b | hand empty  / …   (proto_verify.pddl_reward)
          (the state after each action is a `;` comment, which the plan parser ignores; gripper likewise)

The SFT demonstrations come from a deliberately noisy teacher (`teacher_noise`, see `slip`): a fraction of them has
one wrong step, and the chain goes on from it to a wrong answer. The SFT policy learns to slip about as often when
it samples; RL, rewarded by the verifiers, is what teaches it not to.

Pipeline of `python train.py` (default preset, 8.3-9.2 min on a quiet 2-core CPU; issue 14 asks ≤ 10):

  1. tasks: seeded SFT / held-out / RL-prompt sets per domain; held-out decontaminated against the others.
  2. tokenizer: byte-level BPE trained on the training corpus, ranks loaded into `tiktoken.Encoding` (no download).
  3. SFT on the engine-labelled chains (loss on response tokens; batches of similar length).
  4. held-out eval: greedy pass@1, avg@k and pass@k per domain, each with its standard error.
  5. curation (Guru): k SFT samples per candidate RL prompt; keep prompts with 0 < passes < k, per domain.
  6. critic = SFT trunk + scalar head, warmed up on Monte-Carlo returns of the SFT policy's rollouts.
  7. T-PPO (or PPO) on the curated prompts through tppo.py, then the held-out eval again → out/<run>/summary.json.

Shapes: token batches are (B, T) right-padded with <|pad|>; valid tokens of row b are its prefix of length lengths[b].

Deviations from the papers (composition-level; each concept file lists its own):
  - Rewards are verifier scores in [0, 1] (pass = 1), not ±1 as in the T-PPO/DAPO recipes, and 0 unless every step of
    the chain is right (`derivation_ok`; Guru and ProtoReasoning score the final answer only).
  - Tiny models and synthetic chains; held-out avg@k (k = 4) on 100 tasks per domain replaces AIME avg@32.
  - RL settings that differ from the reference recipe, each measured on this model (RESULTS.md, train.py section):
    policy λ = 1 (not VAPO's length-adaptive λ ≥ 0.95), no advantage whitening, NLL weight 1.0 (not 0.1), DAPO's
    has-gradient filter as a policy-loss mask, a 10-step RL LR warm-up, fresh (curated) RL prompts.
  - Curation uses k = 4 samples and keeps 0 < pass < 1 (Guru: 16 samples, thresholds per domain).
  - Held-out and curation samples may generate at most 2 × the reference length + 32 tokens (`decode_budget`): a
    correct chain is as long as the reference, so the cap only cuts rows that already went wrong. RL rollouts get
    the same per-task budget (`task_budget`; T-PPO has one L_max for every prompt), so RL rewards what eval scores.
  - Critic warm-up = the first `critic_warmup` tppo steps with the policy frozen (the reference recipe's).
  - Held-out decontamination uses guru_rewards.decontaminate at Jaccard threshold 1.0 (exact instances).
  - CPU threads: run as a script, train.py sets OMP_WAIT_POLICY=PASSIVE (unless set) before torch starts OpenMP, so
    idle intra-op threads sleep instead of spin-waiting; auto (--threads=0) then uses the usable cores / ranks, at most
    4. On the 2-core box beside one other training process, spinning threads ran SFT at 270-700 tok/s, passive ones
    at 3,700-3,800; passive, one busy loop beside the run cost 1.7-2.1x (4,200-4,900 → 2,400-2,500 tok/s). Imported
    after torch without PASSIVE in the environment, auto uses 1 thread. The smoke preset uses 1 (too small to gain).

Run:
  python train.py --preset smoke          # ≤ 60 s end to end on a 2-core CPU
  python train.py                         # default: SFT + curation + critic warm-up + T-PPO, 8.3-9.2 min on CPU
  python train.py --algo ppo              # PPO baseline = the same loop with W ≥ L_max
  python train.py --preset bench          # T-PPO vs PPO wall-clock comparison, 3 seeds
  python train.py --help                  # every Config field with its doc line
  torchrun --nproc_per_node=2 train.py --preset smoke     # data-parallel (gloo on CPU, NCCL on CUDA)
  pytest tests/test_train.py -q
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import heapq
import io
import json
import math
import os
import pickle
import platform
import random
import re
import signal
import string
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, fields

if __name__ == "__main__":  # before torch loads OpenMP, which reads this once: idle threads sleep, never spin
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # (see the threads note in the docstring)

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The concept files this script composes (DESIGN.md: train.py is the only place where they meet).
import guru_rewards
import mup_vocab
import proto_verify
import rattention
import tppo

if __name__ == "__main__":
    # Run as a script, this module is `__main__`; alias it as `train` so that pickled run files (tasks.pkl holds
    # Task objects, pickled as train.Task) load in any process that imports train (tests, notebooks, torchrun).
    sys.modules.setdefault("train", sys.modules[__name__])


# ======================================================================================================================
# 1. Config: every knob of the run, one doc line each (`--key=value`, `--help`)
# ======================================================================================================================


@dataclass
class Config:
    # run
    run_name: str = ""  # run folder under out_dir ("" → "<preset>-<algo>-s<seed>"; not --run: torchrun owns it)
    out_dir: str = "out"  # root folder of run folders
    preset: str = "default"  # preset that was applied (smoke | default | bench); set via --preset
    seed: int = 0  # one seed for tasks, init, data order and sampling (rank r samples with seed + 1000 r)
    device: str = "auto"  # auto | cpu | cuda | mps (auto: CUDA → MPS → CPU)
    dtype: str = "auto"  # auto | float32 | bfloat16 (auto: bf16 autocast on bf16-capable CUDA, else fp32)
    threads: int = 0  # intra-op threads (0 = auto: CPU cores / ranks ≤ 4 with OMP_WAIT_POLICY=PASSIVE, else 1)
    resume: bool = False  # continue out/<run>/ from its latest checkpoint (exact: RNG, optimizer, pool)
    # tasks
    domains: str = "math,prolog,pddl"  # comma-separated task domains
    n_train: int = 4000  # SFT tasks per domain (600 tasks/domain were memorized, not learned)
    n_eval: int = 100  # held-out tasks per domain (decontaminated against train and RL prompts)
    eval_set: str = "test"  # test | val: held-out draw to evaluate on (val: a separate seeded draw, for tuning)
    rl_prompts: str = "fresh"  # RL prompt source: fresh (new draws, not the SFT set) | sft (the SFT training tasks)
    n_rl: int = 1000  # fresh RL prompt draws per domain (decontaminated against held-out); curation picks from them
    sft_mix: str = ""  # SFT shares per domain in `domains` order, e.g. "1,1,2" ("" = equal: n_train each); total kept
    teacher_noise: float = 0.7  # fraction of SFT demonstrations with one slipped step (noisy teacher, slip(); val-tuned)
    rl_domains: str = ""  # domains RL trains on, within `domains` ("" = all); eval covers every domain
    # tokenizer
    tokenizer: str = "bpe"  # "bpe" (train on the corpus) or a tiktoken encoding name available offline
    vocab_size: int = 768  # BPE vocab incl. 256 bytes and 3 special tokens
    # model
    n_layers: int = 4  # transformer blocks; every 4th is global attention (3 local : 1 global)
    d_model: int = 128  # width n
    n_heads: int = 4  # query heads
    n_kv_heads: int = 2  # key/value heads (GQA)
    attn_window: int = 32  # sliding window of the local RAttention layers
    mlp_mult: int = 3  # gated-MLP hidden size = mlp_mult * d_model
    max_seq_len: int = 640  # longest prompt + response the model is trained on
    mup: str = "lv"  # μP regime for init and per-group LRs: sp | mup | lv
    base_width: int = 64  # μP base width (w = d_model / base_width)
    # SFT
    sft_steps: int = 700  # SFT optimizer steps (4.3-7 min on the quiet 2-core CPU)
    sft_batch: int = 24  # sequences per SFT step
    lr: float = 5e-3  # base LR η at base_width (per-group LRs derived by mup_vocab)
    weight_decay: float = 0.0  # SFT AdamW weight decay on matrices
    warmup: int = 30  # linear LR warm-up steps (SFT)
    grad_clip: float = 1.0  # global grad-norm clip (0 = off)
    # eval
    eval_every: int = 0  # RL steps between held-out evaluations (0 = only before/after RL)
    eval_max_new_tokens: int = 512  # decoding budget for held-out eval (and curation samples)
    eval_samples: int = 4  # k: also report avg@k and pass@k of k samples/task at `temperature` (0 = greedy only)
    eval_batch: int = 128  # decode slots in evaluation and curation (continuous batching: a stopped row takes the next)
    # curation (Guru): difficulty filter on the SFT policy's samples before RL
    n_curate: int = 64  # candidate RL prompts per domain, each sampled curate_samples times by the SFT policy
    curate_samples: int = 4  # k of the difficulty filter: keep prompts with 0 < passes < k
    # RL (T-PPO / PPO)
    algo: str = "tppo"  # tppo | ppo (ppo = T-PPO code with window ≥ max_response)
    refill: str = "off"  # on: a slot freed mid-window takes the next rollout (beyond the paper); off: synchronous windows
    rl_steps: int = 60  # T-PPO steps after the critic warm-up (0 = SFT only)
    window: int = 48  # T-PPO window W: new tokens per rollout per step
    max_response: int = 400  # L_max: a response lives at most ceil(L_max / W) windows
    task_budget: bool = True  # RL rollouts stop at their task's decode budget (2x reference + 32 ≤ L_max), as in eval
    slots: int = 32  # rollouts per generation batch (constant)
    group_size: int = 4  # samples per prompt
    temperature: float = 1.0  # sampling temperature of rollouts
    rl_lr: float = 2e-4  # policy base LR in RL (tuned on the val draw: 5e-4 broke checked math chains; RESULTS.md)
    group_filter: bool = True  # DAPO has-gradient filter: no policy loss on finished groups that all scored alike
    rl_warmup: int = 10  # linear LR warm-up steps of the RL optimizers (fresh Adam's first steps are sign-like)
    minibatches: int = 2  # policy/critic optimizer steps per RL step (slots split into this many mini-batches)
    critic_lr: float = 1e-3  # critic base LR
    rl_weight_decay: float = 0.1  # RL AdamW weight decay on matrices (reference recipe: 0.1, betas 0.9/0.999)
    critic_warmup: int = 10  # critic-only steps on MC returns of SFT rollouts before RL
    nll_weight: float = 1.0  # positive-example LM loss weight (VAPO μ = 0.1; 1.0 here, see RESULTS.md)
    lam_floor: float = 1.0  # policy λ = max(lam_floor, 1 − 1/(0.05 L)) (VAPO); 1.0 = MC advantages R − V_t
    whiten: bool = False  # whiten advantages over the batch (the ref does; off here, see RESULTS.md)
    # logging / checkpoints
    log_every: int = 10  # steps between log lines (SFT)
    ckpt_every: int = 100  # steps between checkpoints (0 = only at phase ends)
    stop_after: int = -1  # testing aid: stop (checkpoint + exit) after this many total steps (-1 = never)
    init_from: str = ""  # run folder whose post-SFT checkpoint supplies the policy (skips SFT; used by bench)
    rl_finished: int = 0  # stop RL once this many responses finished after the critic warm-up (0 = rl_steps only)
    bench_seeds: int = 3  # bench preset: seeds per algorithm
    bench_gain: float = 0.03  # bench preset: target = held-out overall pass (avg@k if sampled) after SFT + this gain
    bench_init: str = ""  # bench preset: reuse the SFT policy of these runs ("out/default-tppo-s{seed}"; "" = run SFT)


PRESETS: dict[str, dict] = {
    # ≤ 60 s on a 2-core CPU: a few SFT steps, two RL steps, tiny everything.
    "smoke": dict(threads=1, n_train=40, n_eval=6, n_rl=40, vocab_size=512, n_layers=4, d_model=32, n_heads=2,
                  n_kv_heads=1, attn_window=8, mlp_mult=2, max_seq_len=320, base_width=32, sft_steps=8, sft_batch=8,
                  warmup=2, log_every=4, eval_max_new_tokens=48, eval_batch=64, n_curate=4, curate_samples=2,
                  rl_steps=2, window=16, max_response=48, slots=8, group_size=2, critic_warmup=2, eval_every=0,
                  ckpt_every=0),
    "default": dict(),
    # PPO vs T-PPO (synchronous windows) vs T-PPO + refill, from the same SFT policy, at equal work: each arm
    # stops after 384 finished responses (rl_steps is only a cap); cheap held-out evals (20 tasks/domain, avg@2)
    # every 10 steps for the time-to-target curve (9 arms: 30 min on the quiet 2-core CPU at 66c7493).
    "bench": dict(rl_steps=400, rl_finished=384, eval_every=10, n_eval=20, eval_samples=2),
}


# ======================================================================================================================
# 2. The pipeline, top-down: what `python train.py` runs
# ======================================================================================================================


def train(cfg: Config, dist: "Dist | None" = None) -> dict:
    """tasks → tokenizer → model → SFT → held-out eval → curation → critic warm-up + T-PPO → held-out eval.

    Returns summary.json's content: held-out pass rates after SFT and after RL (with standard errors), curation
    counts and RL statistics."""
    return run_pipeline(setup(cfg, dist))  # setup: run folder, device, tasks, tokenizer, policy (or a checkpoint)


def run_pipeline(run: "Run") -> dict:
    """The phases in order. Each ends with a checkpoint; `--resume` re-enters at the saved phase (`run.phase`)."""
    cfg = run.cfg
    try:
        if run.phase == "sft":
            if not sft(run):
                return run.summary  # stopped (Ctrl-C / stop_after) with a checkpoint: continue with --resume
            if run.dist.main:  # the SFT policy on its own: RL runs can start from it (init_from, bench)
                save_checkpoint(os.path.join(run.dir, "policy_sft.pt"), {"policy": run.policy.state_dict()})
            run.phase, run.step = "sft_eval", 0
            checkpoint(run)
        if run.phase == "sft_eval":
            run.summary["after_sft"] = held_out_eval(run, "after SFT", samples={})
            run.phase = "curate" if cfg.rl_steps > 0 else "done"
            checkpoint(run)
        if run.phase == "curate":
            curate(run)
            run.phase = "critic"
            checkpoint(run)
        if run.phase in ("critic", "rl"):
            if not rl(run):
                return run.summary
            run.summary["after_rl"] = held_out_eval(run, "after RL")
        finish(run)  # summary.json, curves.png, final checkpoint
    finally:
        run.interrupt.restore()
    return run.summary


def sft(run: "Run") -> bool:
    """Supervised warm-up on the engine-labelled solutions: next-token loss on response tokens, AdamW with the μP-LV
    per-group learning rates, linear warm-up then cosine decay. Returns False if stopped early (checkpoint written)."""
    cfg, t0, toks, first = run.cfg, time.time(), 0, run.step
    while run.step < cfg.sft_steps:
        lr = lr_at(run.step, cfg.sft_steps, cfg.warmup, cfg.lr)
        set_lr(run.popt, lr)
        idx = sft_batch(run, run.step)  # rows of similar length (little padding with long-tailed responses)
        x, y, m = pad_batch([run.train_ex[i][0] for i in idx], [run.train_ex[i][1] for i in idx], run.tok.pad,
                            run.device)
        loss = lm_loss(run.policy, x, y, m, run.amp_dtype)
        run.popt.zero_grad()
        loss.backward()
        run.popt.step()  # skipped (and counted) if any gradient is non-finite
        run.step += 1
        run.gstep += 1
        toks += int(m.sum())
        lval = run.dist.mean(float(loss.detach()))
        if run.step % cfg.log_every == 0 or run.step == cfg.sft_steps or run.step == first + 1:
            dt = time.time() - t0
            eta = dt / (run.step - first) * (cfg.sft_steps - run.step)
            run.log.print(f"sft  {run.step:4d}/{cfg.sft_steps} | loss {lval:.4f} | lr {lr:.2e} | "
                          f"tok/s {toks * run.dist.world / max(dt, 1e-9):7.0f} | {dt:5.1f} s | eta {fmt_eta(eta)}"
                          + (" | SKIPPED non-finite" if run.popt.last_skipped else ""))
        run.log.metrics({"phase": "sft", "step": run.step, "gstep": run.gstep, "loss": lval, "lr": lr,
                         "skipped": run.popt.last_skipped, "time": time.time() - t0})
        if cfg.ckpt_every and run.step % cfg.ckpt_every == 0:
            checkpoint(run)
        if maybe_stop(run):
            return False
    return True


def curate(run: "Run") -> None:
    """Guru's curation step (guru_rewards.difficulty_filter): sample k responses per candidate RL prompt with the SFT
    policy and keep, per domain, the prompts it solves sometimes but not always (0 < pass rate < 1). Never-solved
    prompts give no reward to learn from and always-solved ones no gradient (every advantage ≈ 0), so RL spends its
    steps where its group-relative signal lives. The same samples measure the SFT policy's own rollouts: response
    lengths and sampled pass@1 vs pass@k, printed and kept in summary.json."""
    cfg, t0 = run.cfg, time.time()
    k = cfg.curate_samples
    doms = rl_domain_list(cfg)
    cands = [i for d in doms for i in [j for j, t in enumerate(run.rl_tasks) if t.domain == d][: cfg.n_curate]]
    gen = torch.Generator(device=run.device).manual_seed(cfg.seed + 104729)  # same draws on every rank
    rows = [i for i in cands for _ in range(k)]
    scored = sample_and_score(run.policy, run.tok, [run.rl_tasks[i] for i in rows], cfg, cfg.temperature, gen)
    lengths, per = [n for _, _, n in scored], defaultdict(list)
    for i, (r, _, _) in zip(rows, scored):
        per[i].append(r)
    stats = {}
    kept = []
    for d in doms:
        ids = [i for i in cands if run.rl_tasks[i].domain == d]
        keep = guru_rewards.difficulty_filter(ids, [per[i] for i in ids], low=0.0, high=1.0)
        solved = [sum(r >= 1.0 - 1e-6 for r in per[i]) for i in ids]
        stats[d] = {"candidates": len(ids), "kept": len(keep), "never_solved": sum(s == 0 for s in solved),
                    "always_solved": sum(s == k for s in solved),
                    "pass1": sum(solved) / max(k * len(ids), 1), f"pass{k}": sum(s > 0 for s in solved) / max(len(ids), 1)}
        run.log.print(f"curate: {d:6s} kept {len(keep):4d}/{len(ids)} (never solved {stats[d]['never_solved']}, "
                      f"always solved {stats[d]['always_solved']}) | SFT samples pass@1 {stats[d]['pass1']:.3f} "
                      f"pass@{k} {stats[d][f'pass{k}']:.3f}")
        kept += keep
    lengths.sort()
    p = lambda q: lengths[min(len(lengths) - 1, int(q * len(lengths)))]  # noqa: E731
    stats["resp_len"] = {"p50": p(0.5), "p90": p(0.9), "max": lengths[-1] if lengths else 0}
    run.log.print(f"curate: SFT rollouts' response tokens p50 {p(0.5)} p90 {p(0.9)} max {stats['resp_len']['max']} "
                  f"(p90/p50 {p(0.9) / max(p(0.5), 1):.1f}, max/p50 {stats['resp_len']['max'] / max(p(0.5), 1):.1f}) "
                  f"| {time.time() - t0:.1f} s")
    if not kept:  # e.g. the smoke preset's untrained model solves nothing: say so, and RL on every candidate
        run.log.print("curate: WARNING no prompt survived the difficulty filter; RL uses all candidates unfiltered")
        stats["unfiltered"], kept = True, list(cands)
    random.Random(f"{cfg.seed}-curated").shuffle(kept)
    run.rl_state["prompts"] = kept  # indices into run.rl_tasks; checkpointed
    run.summary["curation"] = stats
    run.summary["sft_targets"] = sft_targets(stats["resp_len"], run.summary.get("after_sft", {}), cfg)
    run.log.print("targets (issue 14, SFT policy): " + " | ".join(
        f"{name} {'ok' if ok else 'MISSED'}" for name, ok in run.summary["sft_targets"].items()))


def sft_targets(resp_len: dict, after_sft: dict, cfg: Config) -> dict:
    """The SFT policy's profile that RL should start from (long chains, a long tail, middling greedy pass and
    headroom): response tokens p50 >= 60, p90/p50 >= 3, max/p50 >= 6 on its own sampled rollouts; held-out greedy
    pass in [0.2, 0.6] and pass@k >= 1.5 x avg@k (sampled pass@1) per domain. name → met?"""
    p50 = max(resp_len["p50"], 1)
    out = {f"p50 {resp_len['p50']} >= 60": resp_len["p50"] >= 60,
           f"p90/p50 {resp_len['p90'] / p50:.1f} >= 3": resp_len["p90"] >= 3 * p50,
           f"max/p50 {resp_len['max'] / p50:.1f} >= 6": resp_len["max"] >= 6 * p50}
    k = cfg.eval_samples
    for d in cfg.domains.split(","):
        if d in after_sft:
            g = after_sft[d]
            out[f"{d} greedy {g:.2f} in [0.2, 0.6]"] = 0.2 <= g <= 0.6
        if k > 0 and f"{d}_pass{k}" in after_sft:
            a, pk = after_sft[f"{d}_avg{k}"], after_sft[f"{d}_pass{k}"]
            out[f"{d} pass@{k}/avg@{k} {pk / max(a, 1e-9):.1f} >= 1.5"] = a > 0 and pk >= 1.5 * a
    return out


def rl(run: "Run") -> bool:
    """Critic warm-up, then T-PPO (or PPO = the same loop with W ≥ L_max). One `tppo.tppo_step` is the whole RL loop:

      generate   one window of ≤ W new tokens for every slot (carried rollouts first, then fresh prompts × group)
      reward     verifier scores (proto_verify / guru_rewards) for the rollouts that finished in this window
      EGAE       advantages of the window's tokens on the truncated responses (egae.py; λ = `lam_floor`)
      critic     value regression on the Monte-Carlo returns of finished responses only
      policy     clipped policy-gradient loss on the window's tokens + NLL on finished successful responses
      carry      unfinished rollouts move to the front of the next batch (successive batching)
      refill     --refill=on (beyond the paper): a slot whose rollout ends mid-window takes the next fresh rollout at once

    The first `critic_warmup` steps update the critic only (the SFT policy generates). Returns False if stopped."""
    cfg, tcfg = run.cfg, tppo_config(run.cfg)
    if run.critic is None:
        make_critic(run)
    pool = tppo.RolloutPool.from_config(tcfg)
    if run.pool is not None:
        pool.load_state_dict(run.pool)
    total = cfg.critic_warmup + cfg.rl_steps
    all_reduce = None
    if run.dist.enabled:
        def all_reduce(t):
            torch.distributed.all_reduce(t)
            return t
    t0, first = time.time(), run.step
    hist = run.rl_state.setdefault("hist", [])
    while run.step < total:
        run.phase = "critic" if run.step < cfg.critic_warmup else "rl"
        skipped_before = run.popt.skipped + run.copt.skipped
        # linear warm-up of both RL optimizers (the critic from its first step, the policy from its first update)
        lr_c = cfg.critic_lr * min(1.0, (run.step + 1) / max(cfg.rl_warmup, 1))
        lr_p = cfg.rl_lr * min(1.0, (max(run.step - cfg.critic_warmup, 0) + 1) / max(cfg.rl_warmup, 1))
        set_lr(run.copt, lr_c)
        set_lr(run.popt, lr_p)
        run.gen_counts = [0, 0, 0.0]  # [generated tokens, rows × sampling steps, prefill seconds] of this step
        ts = time.time()
        m = tppo.tppo_step(pool, tcfg, policy=run.policy, critic=run.critic, policy_opt=run.popt,
                           critic_opt=run.copt, generate_fn=lambda ctx, lim, *rf: rl_generate(run, ctx, lim, *rf),
                           reward_fn=lambda r: rl_reward(run, r), next_prompt=lambda: next_rl_prompt(run),
                           step=run.step, pad_id=run.tok.pad, device=run.device, all_reduce=all_reduce)
        st = run.rl_state
        st["train_time"] = st.get("train_time", 0.0) + time.time() - ts  # evals excluded
        if run.phase == "rl":  # the bench's clock and work counter leave the critic warm-up out (in every arm)
            st["rl_time"] = st.get("rl_time", 0.0) + time.time() - ts
            st["rl_finished"] = st.get("rl_finished", 0) + int(m["pool/finished"])
        run.step += 1
        run.gstep += 1
        skipped = run.popt.skipped + run.copt.skipped - skipped_before
        util = run.dist.mean(run.gen_counts[0] / max(run.gen_counts[1], 1))  # measured decode utilization
        m.update({"phase": run.phase, "gstep": run.gstep, "skipped_updates": skipped, "lr/policy": lr_p,
                  "lr/critic": lr_c, "gen/util_measured": util, "time/step_wall_s": time.time() - ts,
                  "gen/useful_measured": run.gen_counts[0], "gen/slot_steps_measured": run.gen_counts[1],
                  "time/prefill_s": run.gen_counts[2]})  # part of time/gen_s: encoding the contexts
        done = run.step >= total or (cfg.rl_finished > 0 and st.get("rl_finished", 0) >= cfg.rl_finished)
        if cfg.eval_every and run.phase == "rl" and (run.step - cfg.critic_warmup) % cfg.eval_every == 0 \
                and not done:
            res = evaluate(run.policy, run.tok, run.eval_tasks, cfg, run.dist)
            m.update({f"eval/{k}": v for k, v in res.items()})
            hist.append({"step": run.step - cfg.critic_warmup, "time": st.get("rl_time", 0.0),
                         "finished": st.get("rl_finished", 0), **res})
        run.log.metrics({k: (float(v) if isinstance(v, (int, float)) else v) for k, v in m.items()})
        dt = time.time() - t0
        eta = dt / (run.step - first) * (total - run.step)
        run.log.print(
            f"{'critic' if run.phase == 'critic' else cfg.algo:6s} {run.step:3d}/{total} | "
            f"reward {m['reward/mean']:.2f} | pass {m['reward/pass']:.2f} | "
            + (f"policy {m['policy/loss']:+.3f} | " if "policy/loss" in m else "policy   --   | ")
            + f"value {m['value/loss']:.3f} | clipfrac {m.get('policy/clipfrac', 0.0):.2f} | "
            f"util {m['gen/util_measured']:.2f} | len {m['resp/len_mean']:5.1f} | "
            f"tok/s {m['gen/tokens_per_s']:6.0f} | {m['time/step_s']:4.1f} s | eta {fmt_eta(eta)}"
            + (f" | SKIPPED {skipped} non-finite update(s)" if skipped else "")
            + "".join(f" | held-out {k[5:]} {v:.2f}" for k, v in m.items()
                      if k.startswith("eval/") and not k.endswith("_se")))
        run.pool = pool.state_dict()
        if cfg.ckpt_every and run.step % cfg.ckpt_every == 0:
            checkpoint(run)
        if maybe_stop(run):
            return False
        if done:
            break
    lens = sorted(run.rl_state.get("finished_lens", [0]))
    run.summary["rl"] = {"algo": cfg.algo, "window": tcfg.window, "max_response": tcfg.max_response,
                         "steps": cfg.rl_steps, "critic_warmup": cfg.critic_warmup,
                         "time_s": run.rl_state.get("train_time", 0.0), "eval_history": hist,
                         "rl_time_s": run.rl_state.get("rl_time", 0.0), "rl_steps_run": run.step - cfg.critic_warmup,
                         "rl_finished": run.rl_state.get("rl_finished", 0),
                         "resp_len_p50": lens[len(lens) // 2], "resp_len_p90": lens[int(0.9 * (len(lens) - 1))],
                         "finished": len(lens)}
    return True


def tppo_config(cfg: Config) -> "tppo.TPPOConfig":
    """The train.py Config fields that tppo.py needs. PPO = T-PPO with one window per response (W = L_max)."""
    W = cfg.window if cfg.algo == "tppo" else cfg.max_response
    return tppo.TPPOConfig(window=W, max_response=cfg.max_response, slots=cfg.slots, group_size=cfg.group_size,
                           critic_warmup=cfg.critic_warmup, minibatch_size=max(1, cfg.slots // cfg.minibatches),
                           nll_weight=cfg.nll_weight, whiten=cfg.whiten, group_filter=cfg.group_filter,
                           lam_floor=cfg.lam_floor, ignore_last=min(8, max(W // 4, 1)), max_grad_norm=cfg.grad_clip,
                           temperature=cfg.temperature, old_logp_from_sampler=True, seed=cfg.seed,
                           refill=cfg.refill == "on")


def next_rl_prompt(run: "Run") -> tuple[list[int], int, int]:
    """The next curated RL prompt of this rank (a per-rank shuffled order, reshuffled every pass): (tokens, task id,
    response budget). With task_budget the budget is the one held-out evaluation decodes with (decode_budget: 2x the
    reference + 32), so RL never rewards a response that evaluation would have cut off; else L_max (0)."""
    st = run.rl_state
    prompts = st.get("prompts") or list(range(len(run.rl_tasks)))
    if not st.get("order") or st["cursor"] >= len(st["order"]):
        order = list(prompts)
        random.Random(f"{run.cfg.seed}-rl-{run.dist.rank}-{st.get('epoch', 0)}").shuffle(order)
        st.update(order=order, cursor=0, epoch=st.get("epoch", 0) + 1)
    i = st["order"][st["cursor"]]
    st["cursor"] += 1
    task = run.rl_tasks[i]
    budget = min(decode_budget(run.tok, task, run.cfg), run.cfg.max_response) if run.cfg.task_budget else 0
    return [run.tok.bos] + run.tok.encode(task.prompt), i, budget


def rl_generate(run: "Run", contexts: list, limits: list, refill=None):
    """tppo's generate_fn: sample one window per row with the decode caches; also returns the sampling log-probs.
    With refill (--refill=on) the rollouts refilled into freed slots follow the original rows, in hand-out order."""
    g = generate(run.policy, contexts, limits, run.tok.eos, run.tok.pad, temperature=run.cfg.temperature,
                 refill=refill)
    run.gen_counts[0] += int(g.lengths.sum()) + sum(len(t) for t, _, _ in g.refilled)
    run.gen_counts[1] += len(contexts) * g.steps
    run.gen_counts[2] += g.prefill_s
    L = g.lengths.tolist()
    return ([g.tokens[b, : L[b]].tolist() for b in range(len(contexts))] + [t for t, _, _ in g.refilled],
            g.eos.tolist() + [e for _, e, _ in g.refilled],
            [g.logprobs[b, : L[b]].tolist() for b in range(len(contexts))]   # π_old of the window: no 2nd forward
            + [lp for _, _, lp in g.refilled])


def rl_reward(run: "Run", r) -> float:
    """tppo's reward_fn, called for finished rollouts only: the domain verifier's score of the decoded response."""
    run.rl_state.setdefault("finished_lens", []).append(len(r.response))
    return reward(run.rl_tasks[r.meta], run.tok.decode([t for t in r.response if t != run.tok.eos]))


def held_out_eval(run: "Run", when: str, samples: dict | None = None) -> dict:
    """Held-out greedy pass@1, avg@k and pass@k per domain with standard errors; logged and returned."""
    t0 = time.time()
    res = evaluate(run.policy, run.tok, run.eval_tasks, run.cfg, run.dist, samples=samples)
    for dom, (p, r) in (samples or {}).items():
        run.log.print(f"  sample [{dom}] {p.splitlines()[0][:70]!r}… → {r[:70]!r}")
    run.log.print(f"eval {when} ({time.time() - t0:.1f} s): " + fmt_eval(res))
    run.log.metrics({"phase": "eval", "gstep": run.gstep, "after": when.split()[-1].lower(), **res})
    return res


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    try:
        cfg = parse_args(argv)
        if cfg.resume:  # continue with the run's own config; explicit overrides on the command line still apply
            resume_config(cfg, argv)
    except ValueError as e:  # a bad --key=value, or an unusable config.json (RunFileError)
        print(f"train.py: error: {e}", file=sys.stderr)
        raise SystemExit(2)
    try:
        if cfg.preset == "bench" and not cfg.resume:
            return run_bench(cfg)
        dist = Dist()
        summary = train(cfg, dist)
    except RunFileError as e:  # a run-folder file that cannot be used: which file and why, in one line
        print(f"train.py: error: {e}", file=sys.stderr)
        raise SystemExit(2)
    if dist.enabled:
        torch.distributed.destroy_process_group()
    return summary


# ======================================================================================================================
# 3. Tasks: long, verifiable reasoning chains (math / prolog / pddl), labelled by the project's engines
# ======================================================================================================================


@dataclass
class Task:
    __module__ = "train"  # pickled as train.Task even when train.py runs as a script (see the alias at the top)
    domain: str  # math | prolog | pddl
    prompt: str  # text the model conditions on (ends where the answer starts)
    target: str  # engine-labelled solution used for SFT
    truth: object  # ground truth handed to the domain's reward function
    key: str  # problem text used for dedup / decontamination


def _tail(rng: random.Random, lo: int, hi: int) -> int:
    """Instance size with a capped Pareto tail, P(n >= k) ≈ lo / k for lo <= k <= hi: most instances are small, a
    few are long (the long-tail length distribution of reasoning responses that T-PPO is about)."""
    return min(hi, int(lo / (1.0 - rng.random())))


def make_math_task(rng: random.Random) -> Task:
    """Countdown: "start at a, subtract b while the result stays at least 0", answered as the chain of
    subtractions, the step that would go below 0, and a \\boxed{} answer, scored by guru_rewards.score('math').
    Each step is local arithmetic (numbers below 200, b in 2..5).

        prompt:   math: Start at 23, subtract 5 while the result stays at least 0.
        response: 23-5=18 18-5=13 13-5=8 8-5=3 3-5=-2<0 \\boxed{3}
    """
    b = rng.randint(2, 5)
    t = 0  # a threshold t > 0 (compare every value with t) was never learned by the SFT policy: 0 % greedy
    n = min(_tail(rng, 3, 48), (199 - t - (b - 1)) // b)     # subtractions that stay >= t; numbers stay below 200
    a = t + n * b + rng.randint(0, b - 1)
    x, chain = _countdown(a, b, t)
    q = f"Start at {a}, subtract {b} while the result stays at least {t}."
    return Task("math", f"math: {q}\n", chain, str(x), q)


def _countdown(a: int, b: int, t: int, slip_at: int = -1, delta: int = 0) -> tuple[int, str]:
    """The countdown chain and its answer; step `slip_at` writes x − b + delta instead of x − b (a teacher's slip),
    and the chain goes on consistently from the wrong value."""
    steps, x = [], a
    while True:
        y = x - b + (delta if len(steps) == slip_at else 0)
        if y < t:
            steps.append(f"{x}-{b}={y}<{t}")
            return x, " ".join(steps) + f" \\boxed{{{x}}}"
        steps.append(f"{x}-{b}={y}")
        x = y


PROLOG_LEN = "len([], N, N).\nlen([_|Xs], A, N) :- B is A + 1, len(Xs, B, N)."
PROLOG_REV = "rev([], R, R).\nrev([X|Xs], A, R) :- rev(Xs, [X|A], R)."


def make_prolog_task(rng: random.Random) -> Task:
    """A list program with an accumulator (length by counting, or reverse) on a list of letters, and a query; the
    response traces the recursive calls one per step and ends with `Answer: <value>`. The reference answer is
    computed by proto_verify's Prolog engine (`solve`) and checked by `prolog_reward`; the trace is for SFT only.

        prompt:   prolog: rev([], R, R).  rev([X|Xs], A, R) :- rev(Xs, [X|A], R).  ?- rev([k,d,q], [], R).
        response: rev([d,q],[k]) rev([q],[d,k]) rev([],[q,d,k])  Answer: [q,d,k]
    (A sum of digits traced the same way, acc + digit per step, was learned at 2 % greedy: dropped.)
    """
    xs = [rng.choice(string.ascii_lowercase) for _ in range(_tail(rng, 2, 12))]
    if rng.random() < 0.5:
        prog, query, var = PROLOG_LEN, f"len([{','.join(xs)}], 0, N)", "N"
    else:
        prog, query, var = PROLOG_REV, f"rev([{','.join(xs)}], [], R)", "R"
    target = _list_trace(query[:3], xs)
    answer = proto_verify.solve(prog, query)[0][var]         # the engine labels the task
    assert target.endswith(f"\nAnswer: {answer}"), (target, answer)
    truth = json.dumps(proto_verify.term_to_json(proto_verify.read_term(answer)[0]))
    prompt = f"prolog: {prog}\n?- {query}.\n"
    return Task("prolog", prompt, target, truth, query)


def _list_trace(kind: str, xs: list, acc: list | None = None) -> str:
    """The len/3 or rev/3 trace of list xs, one call per step, then `Answer:`. `acc` replaces the true accumulator of
    each step (len: the counts; rev: the elements as pushed), for a teacher's slip."""
    if kind == "len":
        acc = acc or list(range(1, len(xs) + 1))
        steps, answer = [f"len([{','.join(xs[i + 1:])}],{acc[i]})" for i in range(len(xs))], str(acc[-1])
    else:
        acc = acc or xs
        steps = [f"rev([{','.join(xs[i + 1:])}],[{','.join(reversed(acc[:i + 1]))}])" for i in range(len(xs))]
        answer = f"[{','.join(reversed(acc))}]"
    return " ".join(steps) + f"\nAnswer: {answer}"


def _render_blocks(towers: list, hand) -> str:
    return " | ".join(" ".join(t) for t in towers if t) + f" | hand {hand or 'empty'}"


def _pddl_trace(kind: str, prompt: str, plan) -> list:
    """The state after each action of a blocksworld / gripper plan, in the prompt's own notation."""
    out = []
    if kind == "blocksworld":
        towers = [t.split() for t in prompt.split("bottom first: ", 1)[1].split(".", 1)[0].split(" | ")]
        hand = None
        for name, *args in plan:
            if name in ("pick-up", "unstack"):
                hand = args[0]
                for t in towers:
                    if t and t[-1] == hand:
                        t.pop()
            elif name == "put-down":
                towers.append([hand])
                hand = None
            else:  # stack X Y
                next(t for t in towers if t and t[-1] == args[1]).append(hand)
                hand = None
            towers = [t for t in towers if t]
            out.append(_render_blocks(towers, hand))
    else:
        head, balls = prompt.split("Balls: ", 1)
        robot = head.split("Robot in ", 1)[1].split(",", 1)[0]
        where = dict(p.split(" in ") for p in balls.split(". Goal", 1)[0].split(", "))
        grip = {"left": "-", "right": "-"}
        for name, *args in plan:
            if name == "move":
                robot = args[1]
            elif name == "pick":
                grip[args[2]], where[args[0]] = args[0], "robot"
            else:  # drop BALL ROOM GRIPPER
                grip[args[2]], where[args[0]] = "-", args[1]
            at = " ".join(f"{b}@{r}" for b, r in sorted(where.items()) if r != "robot")
            out.append(f"robot {robot} | left {grip['left']} right {grip['right']} | {at or 'none'}")
    return out


def make_pddl_task(rng: random.Random) -> Task:
    """Blocksworld (2–4 blocks) or gripper (1–3 balls) plan generation, labelled by proto_verify's BFS planner and
    checked by its validator (`pddl_reward`). Each action line carries the state after it as a `;` comment (which
    the plan parser ignores), so the plan is a chain whose preconditions can be read off the line before.

        prompt:   pddl: Blocksworld. Towers, bottom first: a b | c. Hand empty. Goal: a on c.
        response: unstack b a ; a | c | hand b \\n put-down b ; a | c | b | hand empty \\n ...
    The prompt is the instance line of proto_verify's task (its action list is left out) and the dedup key."""
    kind = rng.choice(["blocksworld", "gripper"])
    diff = rng.choices([1, 2, 3], weights=[4, 3, 1])[0]  # blocksworld 2-4 blocks, gripper 1-3 balls (smaller
    # instances alone leave only ~300 distinct tasks: the SFT set would hold ~200 of them)
    t = proto_verify.generate_pddl_task(rng, kind=kind, difficulty=diff)
    states = _pddl_trace(kind, t.prompt, t.plan)
    target = "\n".join(f"{' '.join(a)} ; {s}" for a, s in zip(t.plan, states))
    instance = t.prompt.split("\n")[0]  # the action list line is left out: SFT teaches the actions, and without
    # it the instance sits within the local layers' window of where the plan starts
    return Task("pddl", f"pddl: {instance}\n", target, t, instance)


def _countdown_args(task: Task) -> tuple[int, int, int]:
    """(a, b, t) of a countdown task, read off its key ("Start at a, subtract b while the result stays at least t.")."""
    a, b, t = (int(v) for v in re.findall(r"-?\d+", task.key))
    return a, b, t


def _trace_items(task: Task) -> list[str]:
    """The list of a len/rev task, read off its key (`len([k,d,q], 0, N)` → ['k', 'd', 'q'])."""
    return task.key.split("[", 1)[1].split("]", 1)[0].split(",")


def slip(task: Task, rng: random.Random) -> str | None:
    """A noisy teacher's version of task.target: one step goes wrong and the chain goes on consistently from the
    wrong state, so the answer is wrong (checked by the verifier; None if no wrong variant was found).

      math    one subtraction off by ±1            47-9=38 38-9=28 28-9=19 19-9=10<12 \\boxed{19}
      prolog  one count off by ±1 (len) or one element miscopied (rev)
      pddl    one action left out (its state line with it)

    Used on a `teacher_noise` fraction of the SFT demonstrations (never on held-out or RL targets): the SFT policy
    learns to slip at about the teacher's rate when it samples, while its greedy (modal) answer stays right; RL with
    the verifier's reward is what removes the slips (RESULTS.md, train.py section)."""
    for _ in range(8):
        if task.domain == "math":
            a, b, t = _countdown_args(task)
            n = task.target.count("=")
            _, out = _countdown(a, b, t, rng.randrange(n), rng.choice((-1, 1)))
        elif task.domain == "prolog":
            items = _trace_items(task)
            i = rng.randrange(len(items))
            if task.key.startswith("len"):
                counts, n, d = [], 0, rng.choice((-1, 1))
                for j in range(len(items)):
                    n += 1 + (d if j == i and n + 1 + d >= 0 else 0)
                    counts.append(n)
                out = _list_trace("len", items, counts)
            else:
                ys = list(items)
                ys[i] = rng.choice([c for c in string.ascii_lowercase if c != ys[i]])
                out = _list_trace("rev", items, ys)
        else:
            lines = task.target.split("\n")
            del lines[rng.randrange(len(lines))]
            out = "\n".join(lines)
        if out != task.target and reward(task, out) < 1.0:
            return out
    return None


TASK_MAKERS = {"math": make_math_task, "prolog": make_prolog_task, "pddl": make_pddl_task}


def _score_value(s) -> float:
    """Verifier results come as Score(value, reason) objects or (value, reason) tuples."""
    if isinstance(s, tuple):
        return float(s[0])
    return float(getattr(s, "value", s))


def reward(task: Task, response: str) -> float:
    """Verifier score in [0, 1] for a decoded response, and 0 unless every step of the shown work is right
    (`derivation_ok`): a right answer reached through wrong steps is not a pass. Never raises on model output."""
    try:
        if task.domain == "math":
            score = _score_value(guru_rewards.score("math", response, task.truth))
        elif task.domain == "prolog":
            score = _score_value(proto_verify.prolog_reward(task.truth, response))
        elif task.domain == "pddl":
            score = _score_value(proto_verify.pddl_reward(task.truth, response))
        else:
            return 0.0
        return score if score <= 0.0 or derivation_ok(task, response) else 0.0
    except Exception:  # a verifier bug must not kill training; count it as a failure
        return 0.0


_MATH_STEP = re.compile(r"(-?\d+)-(\d+)=(-?\d+)(?:<(-?\d+))?")
_TRACE_STEP = re.compile(r"(len|rev)\(\[([a-z,]*)\],(\[[a-z,]*\]|-?\d+)\)")


def derivation_ok(task: Task, response: str) -> bool:
    """Does each step of the response's chain follow from the one before, by the task's rule? (The verifiers
    check the answer only. The SFT policy often reaches the right answer through wrong steps: a countdown whose
    tens digits drift keeps its residue mod b. Rewarding those teaches the wrong steps: RL then breaks the chain.)

      math    tokens `x-b=y` before \\boxed: x starts at a, y = x − b, the next x is y; only the last has `<0`, y < 0
      prolog  calls `len(T,n)` / `rev(T,A)` before `Answer:`: T drops one head per call, n counts up, A pushes the
              head; the last call has T = []
      pddl    each `action ; state` line: the state is the one the action leads to (the validator checks the plan)"""
    if task.domain == "math":
        a, b, t = _countdown_args(task)
        steps = response.split("\\boxed", 1)[0].split()
        x = a
        for i, step in enumerate(steps):
            m = _MATH_STEP.fullmatch(step)
            last = i == len(steps) - 1
            if not m or int(m[1]) != x or int(m[2]) != b or int(m[3]) != x - b \
                    or (m[4] is not None) != last or (last and (int(m[4]) != t or x - b >= t)):
                return False
            x = x - b
        return bool(steps)
    if task.domain == "prolog":
        kind, items = task.key[:3], _trace_items(task)
        calls = response.split("Answer:", 1)[0].split()
        if len(calls) != len(items):
            return False
        for i, call in enumerate(calls):
            m = _TRACE_STEP.fullmatch(call)
            acc = str(i + 1) if kind == "len" else f"[{','.join(reversed(items[:i + 1]))}]"
            if not m or m[1] != kind or m[2] != ",".join(items[i + 1:]) or m[3] != acc:
                return False
        return True
    if task.domain == "pddl":
        lines = [ln.split(";", 1) for ln in response.strip().split("\n")]
        if any(len(ln) != 2 for ln in lines):
            return False
        states = _pddl_trace(task.truth.kind, task.prompt, [tuple(a.split()) for a, _ in lines])
        return [st.strip() for _, st in lines] == states
    return False


def build_tasks(cfg: Config, log=print) -> tuple[list[Task], list[Task]]:
    """Seeded train / held-out task lists. The held-out set is drawn first (its own seed); the training draws are
    then decontaminated against it with guru_rewards.decontaminate (normalized exact match + n-gram Jaccard at
    threshold 1.0), so no held-out problem appears in training."""
    train, held = [], []
    doms, mix = cfg.domains.split(","), sft_shares(cfg)
    for dom, share in zip(doms, mix):
        n_train = round(cfg.n_train * len(doms) * share / sum(mix))  # this domain's SFT demonstrations
        split = "eval" if cfg.eval_set == "test" else "val"  # val: never the test draw, for tuning without peeking
        ev = _draw_unique(TASK_MAKERS[dom], random.Random(f"{cfg.seed}-{split}-{dom}"), cfg.n_eval)
        # 10 % headroom for decontamination (it drops < 2 % here); the kept prefix does not depend on the headroom
        tr = _draw_unique(TASK_MAKERS[dom], random.Random(f"{cfg.seed}-train-{dom}"), n_train * 11 // 10 + 20)
        # threshold 1.0: for synthetic instances a changed number/block is a different problem, so only identical
        # (normalized) problems and identical shingle sets count as contamination
        keep = guru_rewards.decontaminate([t.key for t in tr], [t.key for t in ev], threshold=1.0)
        dropped = len(tr) - len(keep)
        tr = [tr[i] for i in keep][: n_train]
        distinct = len(tr)  # a small instance space (the countdown: ~600 problems) runs out before n_train: its
        # problems are repeated so every domain gets its share of the demonstrations, each copy with its own
        # teacher-noise draw below
        tr = [tr[i % distinct] for i in range(n_train)] if distinct else tr
        noise = random.Random(f"{cfg.seed}-teacher-{dom}")
        tr = [dataclasses.replace(t, target=w) if noise.random() < cfg.teacher_noise and (w := slip(t, noise))
              else t for t in tr]
        train += tr
        held += ev
        log(f"tasks: {dom:6s} train {len(tr):4d} ({distinct} distinct) held-out {len(ev):3d} "
            f"(decontamination dropped {dropped})")
    random.Random(f"{cfg.seed}-shuffle").shuffle(train)
    return train, held


def sft_shares(cfg: Config) -> list[float]:
    """Relative SFT shares of the domains in `domains` order: `sft_mix` parsed, all 1.0 when it is "" (equal)."""
    return [float(w) for w in cfg.sft_mix.split(",")] if cfg.sft_mix else [1.0] * len(cfg.domains.split(","))


def rl_domain_list(cfg: Config) -> list[str]:
    """The RL prompt domains: `domains` ∩ `rl_domains` (all of `domains` when rl_domains is "", the default: Guru's
    curation, not a dropped domain, decides which prompts RL sees)."""
    doms = cfg.domains.split(",")
    return [d for d in doms if d in cfg.rl_domains.split(",")] if cfg.rl_domains else doms


def build_rl_tasks(cfg: Config, held: list[Task], log=print) -> list[Task]:
    """Fresh RL prompts: `n_rl` new draws per domain from their own seed, decontaminated against the held-out set.
    RL on the SFT tasks mostly rewards answers SFT memorized (train greedy pass ≈ 3-4x held-out after SFT); fresh
    prompts make the RL reward measure what held-out evaluation measures. They may repeat an SFT instance by chance
    (small instance spaces such as one-digit products); they never repeat a held-out one."""
    out = []
    for dom in rl_domain_list(cfg):
        ev = [t.key for t in held if t.domain == dom]
        rl = _draw_unique(TASK_MAKERS[dom], random.Random(f"{cfg.seed}-rl-{dom}"), cfg.n_rl)
        keep = guru_rewards.decontaminate([t.key for t in rl], ev, threshold=1.0)
        out += [rl[i] for i in keep]
        log(f"tasks: {dom:6s} RL prompts {len(keep):4d} (fresh draws; decontamination dropped {len(rl) - len(keep)})")
    random.Random(f"{cfg.seed}-rl-shuffle").shuffle(out)
    return out


def _draw_unique(maker, rng: random.Random, n: int) -> list[Task]:
    out, seen = [], set()
    for _ in range(n * 20):
        if len(out) >= n:
            break
        t = maker(rng)
        if t.key not in seen:
            seen.add(t.key)
            out.append(t)
    return out


# ======================================================================================================================
# 4. Model: local-global GPT (3 RAttention : 1 GlobalAttention), pre-norm RMSNorm, gated MLP, μP-LV
# ======================================================================================================================


def is_global_layer(i: int) -> bool:
    """RAttention paper's pattern: every 4th block is global (L L L G L L L G …)."""
    return i % 4 == 3


def _make_attn(cfg: Config, local: bool) -> nn.Module:
    kw = dict(d_model=cfg.d_model, n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads)
    if local:
        return rattention.RAttention(window=cfg.attn_window, **kw)
    return rattention.GlobalAttention(**kw)


class GatedMLP(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.gate = nn.Linear(d, hidden, bias=False)
        self.up = nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: Config, local: bool):
        super().__init__()
        self.local = local
        self.norm1 = nn.RMSNorm(cfg.d_model, eps=1e-6)
        self.attn = _make_attn(cfg, local)
        self.norm2 = nn.RMSNorm(cfg.d_model, eps=1e-6)
        self.mlp = GatedMLP(cfg.d_model, cfg.mlp_mult * cfg.d_model)

    def forward(self, x):  # (B, T, d)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def prefill(self, x, cache, start):  # (B, T, d), left-padded rows: start (B,) = first real position
        a, _ = self.attn.prefill(self.norm1(x), cache, start)
        x = x + a
        return x + self.mlp(self.norm2(x))

    def decode(self, x, cache):  # (B, 1, d)
        x = x + self.attn.decode(self.norm1(x), cache)
        return x + self.mlp(self.norm2(x))


class GPT(nn.Module):
    """Token embedding → blocks → RMSNorm → readout. No positional embedding: RoPE lives inside the local layers'
    sliding-window branch; global layers are NoPE (RAttention paper).

    head="lm": readout `lm_head` (V logits, μP readout multiplier applied to its input).
    head="value": scalar `value_head` (the critic), same trunk."""

    def __init__(self, cfg: Config, vocab: int, head: str = "lm"):
        super().__init__()
        if head not in ("lm", "value"):
            raise ValueError(f"head must be 'lm' or 'value', got {head!r}")
        self.cfg, self.vocab, self.head = cfg, vocab, head
        self.wte = nn.Embedding(vocab, cfg.d_model)
        self.blocks = nn.ModuleList([Block(cfg, local=not is_global_layer(i)) for i in range(cfg.n_layers)])
        self.norm = nn.RMSNorm(cfg.d_model, eps=1e-6)
        if head == "lm":
            self.lm_head = nn.Linear(cfg.d_model, vocab, bias=False)
        else:
            self.value_head = nn.Linear(cfg.d_model, 1, bias=True)
        self.readout_multiplier = 1.0
        self.readout_multiplier = mup_vocab.init_parametrization(self, cfg.mup, cfg.d_model, cfg.base_width,
                                                          readout=self.readout)
        if head == "value":
            with torch.no_grad():  # start the critic at V ≡ 0; the warm-up fits it to MC returns
                self.value_head.weight.zero_()

    @property
    def readout(self) -> nn.Module:
        return self.lm_head if self.head == "lm" else self.value_head

    def layer_pattern(self) -> str:
        return "".join("G" if not b.local else "L" for b in self.blocks)

    def _out(self, x):
        y = self.readout(self.norm(x) * self.readout_multiplier)
        return y if self.head == "lm" else y.squeeze(-1)

    def forward(self, idx):
        """idx (B, T) int → logits (B, T, V) (lm) or values (B, T) (value)."""
        x = self.wte(idx)
        for blk in self.blocks:
            x = blk(x)
        return self._out(x)

    def new_cache(self, batch_size: int) -> list:
        return [blk.attn.new_cache(batch_size) for blk in self.blocks]

    def prefill(self, idx, start, cache) -> torch.Tensor:
        """Left-padded prompts idx (B, T), start (B,) first real position → output at the last position (B, V)
        (lm) or (B,) (value); fills `cache` (one entry per block)."""
        x = self.wte(idx)
        for blk, c in zip(self.blocks, cache):
            x = blk.prefill(x, c, start)
        return self._out(x[:, -1:])[:, 0]

    def decode(self, tok, cache):
        """tok (B,) int, one new token per row → logits (B, V). Every row advances by one position."""
        x = self.wte(tok[:, None])
        for blk, c in zip(self.blocks, cache):
            x = blk.decode(x, c)
        return self._out(x)[:, 0]

    @staticmethod
    def cache_put_row(cache: list, b: int, src: list, i: int = 0) -> None:
        """Splice row i of the caches `src` (e.g. a fresh prefill) into row b of the running caches `cache`, layer
        by layer: a LocalCache row is its whole ring (raw and SWA keys), fp32 state and n; a GlobalCache row is its
        first n entries (left-aligned; the capacity grows if needed; entries beyond n are masked by n)."""
        for c, s in zip(cache, src):
            if hasattr(c, "state"):                                  # rattention.LocalCache
                c.k[b], c.v[b], c.ks[b], c.state[b], c.n[b] = s.k[i], s.v[i], s.ks[i], s.state[i], s.n[i]
            else:                                                    # rattention.GlobalCache
                n = int(s.n[i])
                if c.k.shape[2] < n:
                    pad = (0, 0, 0, max(n, 2 * c.k.shape[2]) - c.k.shape[2])
                    c.k, c.v = F.pad(c.k, pad), F.pad(c.v, pad)
                c.k[b, :, :n], c.v[b, :, :n], c.n[b] = s.k[i, :, :n], s.v[i, :, :n], n

    def trunk_state(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if not k.startswith(("lm_head", "value_head"))}


def make_optimizer(model: GPT, cfg: Config, lr: float, rl: bool = False) -> torch.optim.Optimizer:
    """AdamW over mup_vocab's per-group learning rates (embedding / hidden / readout / vectors; decay on matrices).
    SFT: betas (0.9, 0.95) as nanoGPT; RL: the reference recipe's AdamW, betas (0.9, 0.999), weight decay 0.1."""
    wd = cfg.rl_weight_decay if rl else cfg.weight_decay
    groups = mup_vocab.param_groups(model, lr, cfg.mup, cfg.d_model, cfg.base_width, wd, readout=model.readout)
    for g in groups:
        g.pop("param_names", None)
    fused = dict(foreach=True) if next(model.parameters()).device.type != "cpu" else {}
    return torch.optim.AdamW(groups, betas=(0.9, 0.999) if rl else (0.9, 0.95), eps=1e-8, **fused)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = g["lr_scale"] * lr  # μP: rescale every group relatively (mup_vocab contract)


# ======================================================================================================================
# 5. Generation, SFT batches and held-out evaluation
# ======================================================================================================================


@dataclass
class Generation:
    tokens: torch.Tensor  # (B, T_new) generated ids, right-padded with pad
    lengths: torch.Tensor  # (B,) number of generated tokens (EOS included when emitted)
    eos: torch.Tensor  # (B,) bool: row emitted EOS
    logprobs: torch.Tensor  # (B, T_new) log-prob of each generated token under the sampling distribution, 0 on pad
    steps: int  # sampling steps run (1 prefill + decodes); slot-steps = B * steps
    refilled: list = None  # with refill: (tokens, eos, logprobs) of each refilled rollout, in hand-out order
    prefill_s: float = 0.0  # seconds spent prefilling contexts (the first pass and the refills), within the call


def _left_pad(seqs: list[list[int]], pad_id: int, dev) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists left-padded to a common length: (x (B, Pmax), start (B,) = first real position of each row)."""
    P = torch.tensor([len(q) for q in seqs], device=dev)
    Pmax = int(P.max())
    x = torch.full((len(seqs), Pmax), pad_id, dtype=torch.long, device=dev)
    for b, q in enumerate(seqs):
        x[b, Pmax - len(q):] = torch.tensor(q, device=dev)
    return x, Pmax - P


def prefill_rows(model: GPT, prompts: list[list[int]], pad_id: int, dev) -> tuple[list, torch.Tensor]:
    """Prefill prompts of different lengths into one decode cache: (cache for len(prompts) rows, next-token logits
    (B, V)). Rows go in groups of similar length (`tppo.length_groups`, as the update's micro-batches), each group
    left-padded only to its own longest and spliced into the batch cache row by row (GPT.cache_put_row). T-PPO
    re-prefills carried contexts of a few hundred tokens next to fresh prompts of a few dozen: one left-padded call
    would pad every fresh prompt to the longest context."""
    B = len(prompts)
    cache, logits = None, None
    for g in tppo.length_groups(torch.arange(B), torch.tensor([len(p) for p in prompts])):
        g = g.sort().values.tolist()                 # row order within a group is free: keep the batch's
        x, start = _left_pad([prompts[b] for b in g], pad_id, dev)
        src = model.new_cache(len(g))
        lg = model.prefill(x, start, src).float()
        if len(g) == B:                              # one group: its cache is the batch's
            return src, lg
        cache = model.new_cache(B) if cache is None else cache
        logits = lg.new_empty(B, lg.shape[-1]) if logits is None else logits
        for i, b in enumerate(g):
            model.cache_put_row(cache, b, src, i)
            logits[b] = lg[i]
    return cache, logits


@torch.no_grad()
def generate(model: GPT, prompts: list[list[int]], max_new_tokens, eos_id: int, pad_id: int,
             temperature: float = 1.0, generator: torch.Generator | None = None, refill=None,
             horizon: int | None = None) -> Generation:
    """Sample continuations for a batch of prompts of different lengths with the layers' decode caches.

    Prompts are prefilled in parallel passes over groups of similar length (`prefill_rows`: left-padded, `start` =
    first real position of each row, so RoPE positions and attention ignore the padding); then one decode step per
    new token for the whole batch. Row b stops at EOS or after max_new_tokens[b] tokens (an int or a per-row list);
    decoding stops when every row has stopped. temperature 0 = greedy (log-probs then come from the unscaled
    distribution). refill (continuous batching): a callable () -> (context, max_new_tokens) | None. After a decode
    step, every row that stopped with steps left takes the next rollout: the new contexts are prefilled
    (`prefill_rows`) and spliced into the freed rows of the running caches (GPT.cache_put_row); a refilled rollout
    decodes for min(max_new_tokens, steps left) tokens. Its results go to Generation.refilled (original rows stay in
    tokens).
    horizon: decode steps at most (default: the largest max_new_tokens, a T-PPO window). Evaluation streams a whole
    task list through a fixed number of slots with refill and a horizon no rollout reaches (`stream_generate`).
    """
    B = len(prompts)
    if B == 0:
        raise ValueError("prompts must be a non-empty list of token lists")
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (use BOS)")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    dev = next(model.parameters()).device
    cap = torch.as_tensor(list(max_new_tokens) if isinstance(max_new_tokens, (list, tuple)) else [max_new_tokens] * B,
                          device=dev)
    if cap.shape != (B,):
        raise ValueError(f"max_new_tokens must be an int or a list of {B} ints, got shape {tuple(cap.shape)}")
    Tnew = max(int(cap.max()), 0)                # columns of the original rows' outputs
    horizon = Tnew if horizon is None else horizon
    out = torch.full((B, max(Tnew, 1)), pad_id, dtype=torch.long, device=dev)
    lps = torch.zeros((B, max(Tnew, 1)), device=dev)
    n_gen = torch.zeros(B, dtype=torch.long, device=dev)
    done = cap <= 0
    eos = torch.zeros(B, dtype=torch.bool, device=dev)
    rows = torch.arange(B, device=dev)
    steps = 0
    extra = []                                   # refilled rollouts: [tokens, eos, logprobs]
    owner = [-1] * B                             # row → index in extra (-1: the row's own prompt)
    orig = torch.ones(B, dtype=torch.bool, device=dev)
    cnt, lim = torch.zeros(B, dtype=torch.long, device=dev), cap.clone()   # tokens / limit of the row's occupant
    prefill_s = 0.0
    if horizon > 0:
        t0 = time.perf_counter()
        cache, logits = prefill_rows(model, prompts, pad_id, dev)  # (B, V): next-token logits of every row
        prefill_s += _synced_elapsed(t0, dev)
        for s in range(horizon):
            steps += 1
            if temperature > 0:
                logp = F.log_softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(logp.exp(), 1, generator=generator)[:, 0]
            else:
                logp = F.log_softmax(logits, dim=-1)
                nxt = logits.argmax(-1)
            live = ~done
            mine = live & orig
            if s < Tnew:                         # past Tnew only refilled rollouts are live
                out[rows[mine], s] = nxt[mine]
                lps[rows[mine], s] = logp[rows, nxt][mine]
            n_gen += mine.long()
            cnt += live.long()
            hit = live & (nxt == eos_id)
            eos |= hit & orig
            done |= hit | (cnt >= lim)
            if extra:
                lp_b = logp[rows, nxt].tolist()
                for b in (live & ~orig).nonzero().flatten().tolist():
                    e = extra[owner[b]]
                    e[0].append(int(nxt[b])), e[2].append(lp_b[b])
                    e[1] = e[1] or bool(hit[b])
            free = done.nonzero().flatten().tolist() if refill is not None and s + 1 < horizon else []
            if bool(done.all()) and not free:
                break
            logits = model.decode(torch.where(done, pad_id, nxt), cache).float()
            got = []
            for b in free:
                r = refill()
                if r is None:
                    refill = None
                    break
                got.append((b, [int(t) for t in r[0]], int(r[1])))
            if got:                              # prefill the new rollouts together, splice them into their rows
                t0 = time.perf_counter()
                src, lg = prefill_rows(model, [c for _, c, _ in got], pad_id, dev)
                prefill_s += _synced_elapsed(t0, dev)
                for i, (b, _, k) in enumerate(got):
                    model.cache_put_row(cache, b, src, i)
                    logits[b] = lg[i]
                    owner[b], orig[b] = len(extra), False
                    extra.append([[], False, []])
                    cnt[b], lim[b] = 0, min(k, horizon - s - 1)
                    done[b] = lim[b] <= 0
            elif bool(done.all()):
                break
    T = int(n_gen.max())
    return Generation(out[:, :T], n_gen, eos, lps[:, :T], steps, [tuple(e) for e in extra], prefill_s)


def _synced_elapsed(t0: float, dev) -> float:
    """Seconds since perf_counter() t0, after the device's queued work (CUDA runs asynchronously)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter() - t0




def encode_task(tok: Tok, task: Task, max_len: int) -> tuple[list[int], int]:
    """BOS + prompt + target + EOS (truncated to max_len) and the prompt length (BOS included)."""
    p = [tok.bos] + tok.encode(task.prompt)
    ids = (p + tok.encode(task.target) + [tok.eos])[:max_len]
    return ids, len(p)


def pad_batch(seqs: list[list[int]], n_prompt: list[int], pad: int, device) -> tuple[torch.Tensor, ...]:
    """Right-padded next-token batch: x (B, T), y (B, T), mask (B, T) = 1 where y is a response token or EOS."""
    T = max(len(s) for s in seqs) - 1
    x = torch.full((len(seqs), T), pad, dtype=torch.long)
    y = torch.full((len(seqs), T), pad, dtype=torch.long)
    m = torch.zeros((len(seqs), T))
    for b, (s, p) in enumerate(zip(seqs, n_prompt)):
        x[b, : len(s) - 1] = torch.tensor(s[:-1])
        y[b, : len(s) - 1] = torch.tensor(s[1:])
        m[b, p - 1: len(s) - 1] = 1.0
    return x.to(device), y.to(device), m.to(device)


def lm_loss(model: GPT, x, y, mask, autocast_dtype=torch.float32) -> torch.Tensor:
    with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype != torch.float32):
        logits = model(x)
    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
    return (ce * mask.reshape(-1)).sum() / mask.sum().clamp(min=1)


def decode_budget(tok: Tok, task: Task, cfg: Config) -> int:
    """Tokens a held-out / curation sample may generate: twice the reference solution plus 32, at most
    eval_max_new_tokens. A correct chain is as long as the reference (a valid pddl plan may be longer: 2x covers
    it), so the cap only cuts off rows that already went wrong; without it one looping row keeps its whole batch
    decoding to the global cap."""
    return min(cfg.eval_max_new_tokens, 2 * len(tok.encode(task.target)) + 32)


def stream_generate(model: GPT, prompts: list[list[int]], budgets: list[int], slots: int, eos_id: int, pad_id: int,
                    temperature: float, generator: torch.Generator | None = None) -> list[list[int]]:
    """Continuous batching for evaluation: every prompt decodes up to its own budget, `slots` rows at a time; a row
    that stops takes the next prompt at once (generate's refill), longest budget first, so the batch never waits
    for a straggler while short rows idle (length-sorted fixed batches used ~1/3 of their slot-steps). Returns the
    generated tokens of each prompt, in the order given."""
    order = sorted(range(len(prompts)), key=lambda i: -budgets[i])  # longest first: the tail ends with short rows
    first, rest = order[:slots], order[slots:]
    handed = []

    def refill():
        if len(handed) == len(rest):
            return None
        i = rest[len(handed)]
        handed.append(i)
        return prompts[i], budgets[i]
    g = generate(model, [prompts[i] for i in first], [budgets[i] for i in first], eos_id, pad_id,
                 temperature=temperature, generator=generator, refill=refill, horizon=sum(budgets) + 1)
    out = [None] * len(prompts)
    for b, i in enumerate(first):
        out[i] = g.tokens[b, : int(g.lengths[b])].tolist()
    for i, (toks, _, _) in zip(handed, g.refilled):
        out[i] = toks
    return out


def sample_and_score(model: GPT, tok: Tok, tasks: list[Task], cfg: Config, temperature: float,
                     generator: torch.Generator | None = None) -> list[tuple[float, str, int]]:
    """Sample one response per task (each within its decode_budget, cfg.eval_batch slots, continuous batching):
    (verifier reward, decoded response, generated tokens) per task. Shared by held-out evaluation and curation."""
    gen = stream_generate(model, [[tok.bos] + tok.encode(t.prompt) for t in tasks],
                          [decode_budget(tok, t, cfg) for t in tasks], cfg.eval_batch, tok.eos, tok.pad,
                          temperature, generator)
    out = []
    for t, toks in zip(tasks, gen):
        text = tok.decode(toks)
        out.append((reward(t, text), text, len(toks)))
    return out


@torch.no_grad()
def evaluate(model: GPT, tok: Tok, tasks: list[Task], cfg: Config, dist: "Dist | None" = None,
             samples: dict | None = None) -> dict:
    """Held-out pass rates per domain and overall (pass = verifier score 1), each with its standard error.

    `<d>`: greedy pass@1. With k = cfg.eval_samples > 0 samples per task at the rollout temperature: `<d>_avg<k>`, the
    mean pass of the k samples (the paper's avg@k metric, AIME avg@32), and `<d>_pass<k>`, the fraction of tasks that
    at least one sample solves (the headroom RL can turn into pass@1). `<key>_se` is the standard error over tasks
    (sqrt(p(1-p)/n) for greedy and pass@k; the std of the per-task means / sqrt(n) for avg@k). Samples come from a
    generator seeded by cfg.seed alone: every evaluation of a run draws the same random numbers and never touches the
    training RNG (exact resume). Ranks split the tasks and sum the counts. `samples`, if given, receives one (prompt,
    greedy response) per domain for display."""
    model.eval()
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    mine = sorted(tasks[rank::world], key=lambda t: (len(t.target), t.domain))  # shortest first: the display sample
    k = cfg.eval_samples
    domains = cfg.domains.split(",")
    # per domain: [tasks, greedy hits, sum of per-task avg@k, sum of its squares, pass@k hits]
    acc = {d: [0.0] * 5 for d in domains}
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(cfg.seed + 7919 * rank)

    def run(rows, temperature, generator=None):
        scored = sample_and_score(model, tok, rows, cfg, temperature, generator)
        return [float(r >= 1.0 - 1e-6) for r, _, _ in scored], [text for _, text, _ in scored]

    hits, texts = run(mine, 0.0)  # greedy: one stream of all tasks
    for t, h, s in zip(mine, hits, texts):
        acc[t.domain][0] += 1
        acc[t.domain][1] += h
        if samples is not None and t.domain not in samples:
            samples[t.domain] = (t.prompt, s)
    if k > 0:  # k samples per task: one stream of k × tasks rows
        hs, _ = run([t for t in mine for _ in range(k)], cfg.temperature, gen)
        for i, t in enumerate(mine):
            p = sum(hs[i * k: (i + 1) * k]) / k
            a = acc[t.domain]
            a[2], a[3], a[4] = a[2] + p, a[3] + p * p, a[4] + float(p > 0)
    vec = torch.tensor([acc[d] for d in domains], dtype=torch.float64)  # (n_domains, 5)
    if dist is not None and dist.enabled:
        vec = vec.to(dist.comm_device)
        torch.distributed.all_reduce(vec)
        vec = vec.cpu()
    rows = {d: vec[i].tolist() for i, d in enumerate(domains)}
    rows["overall"] = vec.sum(0).tolist()
    res = {}
    for d, (n, g, s, s2, pk) in rows.items():
        n = max(n, 1.0)
        res[d], res[f"{d}_se"] = g / n, math.sqrt(g / n * (1 - g / n) / n)
        if k > 0:
            var = max(s2 / n - (s / n) ** 2, 0.0)
            res[f"{d}_avg{k}"], res[f"{d}_avg{k}_se"] = s / n, math.sqrt(var / n)
            res[f"{d}_pass{k}"], res[f"{d}_pass{k}_se"] = pk / n, math.sqrt(pk / n * (1 - pk / n) / n)
    model.train()
    return res


# ======================================================================================================================
# Appendix A. Run state: setup, checkpoints and resume, logging, optimizer wrapper
# ======================================================================================================================


class Run:
    """Everything one training run holds; plain attributes (no behaviour), so the pipeline above reads top-down.

    cfg, dist, dir, device, amp_dtype, log, interrupt · tok, train_tasks, eval_tasks, rl_tasks, train_ex ·
    policy, popt, critic, copt, pool (RolloutPool state) · phase (sft | sft_eval | curate | critic | rl | done),
    step (within the phase), gstep (global), summary (→ summary.json), rl_state (prompt cursor, curated prompts,
    eval history, RL clock; checkpointed)."""


def setup(cfg: Config, dist: "Dist | None" = None) -> Run:
    """Run folder, device and threads, tasks (pickled once by rank 0), tokenizer, policy and SFT optimizer; then the
    checkpoint of `--resume` or the SFT policy of `--init_from`."""
    run = Run()
    run.cfg, run.dist, run.t_start = cfg, dist or Dist(), time.time()
    run.dir = os.path.join(cfg.out_dir, run_name(cfg))
    os.makedirs(run.dir, exist_ok=True)
    run.device, run.amp_dtype, why = pick_device(cfg)
    if cfg.threads > 0 or run.device.type == "cpu":
        # auto on CPU: the usable cores divided among the ranks, at most 4 (a tiny model gains little beyond), if
        # OpenMP's idle threads sleep (OMP_WAIT_POLICY=PASSIVE, set before torch starts when run as a script). With
        # the default spin-wait, one competing process slowed 2 threads 5-14x on a 2-core box; then use 1.
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        policy = os.environ.get("OMP_WAIT_POLICY", "")
        auto = max(1, min(4, cores // run.dist.world)) if policy.upper() == "PASSIVE" else 1
        torch.set_num_threads(cfg.threads if cfg.threads > 0 else auto)
        why += f"; {torch.get_num_threads()} intra-op thread(s), OMP_WAIT_POLICY={policy or '<unset: spin>'}"
    resume_state = None
    if cfg.resume:
        path = rank_ckpt(run, run.dist.rank)
        if not os.path.exists(path):
            raise RunFileError(f"{path}: no checkpoint to --resume from (start without --resume)")
        resume_state = load_checkpoint(path, RESUME_KEYS)
    run.log = RunLog(run.dir, run.dist.main, resume_state["gstep"] if resume_state else None)
    run.log.print(f"train.py | python {platform.python_version()} | torch {torch.__version__} | "
                  f"numpy {np.__version__} | world {run.dist.world}")
    run.log.print(f"device: {run.device} ({why})")
    run.log.print("config: " + json.dumps(dataclasses.asdict(cfg)))
    if run.dist.main:
        with open(os.path.join(run.dir, "config.json"), "w") as f:
            json.dump(dataclasses.asdict(cfg), f, indent=1)
    seed_everything(cfg.seed)
    # Rank 0 builds the task sets once and pickles them into the run folder; other ranks and --resume load that file,
    # so every process sees the same tasks even if a generator is not reproducible across processes.
    tasks_path = os.path.join(run.dir, "tasks.pkl")
    if run.dist.main and not (cfg.resume and os.path.exists(tasks_path)):
        src = os.path.join(cfg.init_from, "tasks.pkl") if cfg.init_from else ""
        if src and os.path.exists(src):  # RL from another run's SFT policy: same SFT / held-out tasks
            run.train_tasks, run.eval_tasks = load_tasks(src)[:2]
            run.eval_tasks = [t for d in cfg.domains.split(",")  # at most n_eval per domain (the bench's cheap evals)
                              for t in [t for t in run.eval_tasks if t.domain == d][: cfg.n_eval]]
            if cfg.eval_set == "val":  # tuning from another run's SFT policy: held-out = a val draw unseen in SFT
                seen = {t.key for t in run.train_tasks}
                run.eval_tasks = [t for d in cfg.domains.split(",") for t in [
                    t for t in _draw_unique(TASK_MAKERS[d], random.Random(f"{cfg.seed}-val-{d}"), 2 * cfg.n_eval)
                    if t.key not in seen][: cfg.n_eval]]
        else:
            run.train_tasks, run.eval_tasks = build_tasks(cfg, log=run.log.print)
        if cfg.rl_prompts == "fresh" and cfg.rl_steps > 0:
            run.rl_tasks = build_rl_tasks(cfg, run.eval_tasks, log=run.log.print)
        else:
            run.rl_tasks = [t for t in run.train_tasks if t.domain in rl_domain_list(cfg)]
        write_checked(tasks_path, pickle.dumps((run.train_tasks, run.eval_tasks, run.rl_tasks)))
    run.dist.barrier()
    if not hasattr(run, "train_tasks"):
        run.train_tasks, run.eval_tasks, run.rl_tasks = load_tasks(tasks_path)[:3]
        run.log.print(f"tasks: loaded {len(run.train_tasks)} train / {len(run.eval_tasks)} held-out / "
                      f"{len(run.rl_tasks)} RL from {tasks_path}")
    if run.dist.main:
        corpus = "\n".join(t.prompt + t.target for t in run.train_tasks)
        enc = build_tokenizer(cfg, corpus, run.dir, log=run.log.print)
    run.dist.barrier()
    if not run.dist.main:
        enc = named_encoding(cfg.tokenizer) if cfg.tokenizer != "bpe" else \
            make_encoding(load_ranks(os.path.join(run.dir, "tokenizer.tiktoken")))
    run.tok = Tok(enc)
    run.train_ex = [encode_task(run.tok, t, cfg.max_seq_len) for t in run.train_tasks]
    lens = sorted(len(e[0]) - e[1] for e in run.train_ex)
    run.log.print(f"SFT targets' response tokens: p50 {lens[len(lens) // 2]} p90 {lens[int(len(lens) * 0.9)]} "
                  f"max {lens[-1]} (p90/p50 {lens[int(len(lens) * 0.9)] / max(1, lens[len(lens) // 2]):.1f})")
    torch.manual_seed(cfg.seed)  # same init on every rank (also broadcast below)
    run.policy = GPT(cfg, run.tok.n_vocab).to(run.device)
    run.dist.broadcast_params(run.policy)
    n_params = sum(p.numel() for p in run.policy.parameters())
    run.log.print(f"model: {n_params / 1e6:.2f}M params, layers {run.policy.layer_pattern()}, "
                  f"width {cfg.d_model}, vocab {run.tok.n_vocab}, μP regime {cfg.mup}")
    run.popt = TrainOpt(make_optimizer(run.policy, cfg, cfg.lr), run.policy.parameters(), run.dist, cfg.grad_clip)
    run.critic = run.copt = run.pool = None
    run.phase, run.step, run.gstep = "sft", 0, 0
    run.summary = {"run": run_name(cfg), "algo": cfg.algo, "preset": cfg.preset, "seed": cfg.seed}
    run.rl_state = {}
    run.interrupt = Interrupt()
    seed_everything(cfg.seed + 1000 * run.dist.rank)  # sampling differs per rank
    if resume_state is not None:
        try:
            load_state(run, resume_state)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError, RuntimeError) as e:  # e.g. other shapes
            raise RunFileError(f"{rank_ckpt(run, run.dist.rank)}: does not fit this run ({_why(e)})") from None
        run.log.print(f"resumed from {rank_ckpt(run, run.dist.rank)}: phase {run.phase}, step {run.step}, "
                      f"gstep {run.gstep}")
    elif cfg.init_from:
        init_from(run, cfg.init_from)
    return run


def init_from(run: Run, run_dir: str) -> None:
    """Start RL from another run's SFT policy (same tasks and tokenizer required), skipping SFT."""
    st = load_checkpoint(os.path.join(run_dir, "ckpt.pt"), ("summary",))
    if not isinstance(st["summary"], dict) or "after_sft" not in st["summary"] \
            or not os.path.exists(os.path.join(run_dir, "policy_sft.pt")):
        raise RunFileError(f"init_from={run_dir!r}: no finished SFT phase (ckpt.pt + policy_sft.pt) there")
    st["policy"] = load_checkpoint(os.path.join(run_dir, "policy_sft.pt"), ("policy",))["policy"]
    path = os.path.join(run_dir, "tokenizer.tiktoken")
    try:
        theirs = load_ranks(path)
    except (OSError, ValueError) as e:  # binascii.Error is a ValueError
        raise RunFileError(f"{path}: not a tiktoken rank file ({_why(e)})") from None
    if theirs != dict(run.tok.enc._mergeable_ranks):
        raise RunFileError(f"{path}: init_from's tokenizer differs from this run's (same tasks needed)")
    try:
        run.policy.load_state_dict(st["policy"])
    except (RuntimeError, TypeError, AttributeError) as e:
        raise RunFileError(f"{os.path.join(run_dir, 'policy_sft.pt')}: does not fit this model ({_why(e)})") from None
    run.summary["init_from"] = run_dir
    run.phase = "sft_eval"  # evaluate the loaded policy on this run's held-out set (the same draw: same numbers)
    run.log.print(f"init_from {run_dir}: SFT policy loaded")


def make_critic(run: Run) -> None:
    """Critic = SFT policy trunk + scalar head (V ≡ 0 at start); fresh AdamW for both models' RL phase.
    Built under a forked RNG so that creating it never shifts the run's random stream (exact resume)."""
    cfg = run.cfg
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 17)
        run.critic = GPT(cfg, run.tok.n_vocab, head="value").to(run.device)
    missing, unexpected = run.critic.load_state_dict(run.policy.trunk_state(), strict=False)
    assert not unexpected and all(k.startswith("value_head") for k in missing), (missing, unexpected)
    # tppo_step sums gradients over ranks itself (all_reduce hook) and clips; TrainOpt only guards NaN/inf
    run.copt = TrainOpt(make_optimizer(run.critic, cfg, cfg.critic_lr, rl=True), run.critic.parameters(),
                        Dist.off(), clip=0.0)
    run.popt = TrainOpt(make_optimizer(run.policy, cfg, cfg.rl_lr, rl=True), run.policy.parameters(), Dist.off(),
                        clip=0.0)


def state_dict(run: Run) -> dict:
    st = {"phase": run.phase, "step": run.step, "gstep": run.gstep, "summary": run.summary,
          "policy": run.policy.state_dict(), "popt": run.popt.state_dict(), "rl_state": run.rl_state,
          "config": dataclasses.asdict(run.cfg)}
    if run.critic is not None:
        st["critic"], st["copt"] = run.critic.state_dict(), run.copt.state_dict()
    if run.pool is not None:
        st["pool"] = run.pool
    st["rng"] = rng_state()
    return st


def load_state(run: Run, st: dict) -> None:
    run.phase, run.step, run.gstep, run.summary = st["phase"], st["step"], st["gstep"], st["summary"]
    run.policy.load_state_dict(st["policy"])
    if "critic" in st:  # RL phase: build critic + RL optimizers first, then load their states
        make_critic(run)
        run.critic.load_state_dict(st["critic"])
        run.copt.load_state_dict(st["copt"])
    run.popt.load_state_dict(st["popt"])
    run.rl_state = st.get("rl_state", {})
    run.pool = st.get("pool")
    set_rng_state(st["rng"])


def checkpoint(run: Run) -> None:
    """Rank 0 writes ckpt.pt; other ranks write ckpt.rank<r>.pt (their own pool, prompt cursor and RNG)."""
    save_checkpoint(rank_ckpt(run, run.dist.rank), state_dict(run))
    run.dist.barrier()


def rank_ckpt(run: Run, rank: int) -> str:
    return os.path.join(run.dir, "ckpt.pt" if rank == 0 else f"ckpt.rank{rank}.pt")


def maybe_stop(run: Run) -> bool:
    """Checkpoint and stop on Ctrl-C or when the --stop_after testing aid is reached."""
    stop = run.interrupt.hit or (run.cfg.stop_after >= 0 and run.gstep >= run.cfg.stop_after)
    if run.dist.enabled:
        t = torch.tensor([float(stop)], device=run.dist.comm_device)
        torch.distributed.all_reduce(t)
        stop = bool(t.item() > 0)
    if stop:
        checkpoint(run)
        run.log.print(f"stopped at gstep {run.gstep}; checkpoint {rank_ckpt(run, 0)} (continue with --resume)")
    return stop


def finish(run: Run) -> None:
    """summary.json, curves.png and the final checkpoint (phase 'done')."""
    run.summary["wall_s"] = run.summary.get("wall_s", 0.0) + time.time() - run.t_start
    run.summary["skipped_updates"] = run.popt.skipped + (run.copt.skipped if run.copt else 0)
    if run.dist.main:
        plot_curves(run.dir)
        with open(os.path.join(run.dir, "summary.json"), "w") as f:
            json.dump(run.summary, f, indent=1)
    run.phase = "done"
    checkpoint(run)
    run.log.print(f"summary: {json.dumps(run.summary)}")


def sft_batch(run: Run, step: int) -> list:
    """Indices of SFT batch `step`: each epoch shuffles the training set (seeded by seed, rank and epoch), sorts runs
    of 32 batches by length and cuts them into batches, so rows of one batch have similar lengths (little padding
    with long-tailed responses); the batch order is shuffled again. A pure function of step (exact resume)."""
    n, B = len(run.train_ex), run.cfg.sft_batch
    per_epoch = max(1, n // B)
    epoch, k = divmod(step, per_epoch)
    if getattr(run, "sft_epoch", None) != epoch:
        rng = random.Random(f"{run.cfg.seed}-sft-{run.dist.rank}-{epoch}")
        order = list(range(n))
        rng.shuffle(order)
        batches = []
        for c in range(0, per_epoch * B, 32 * B):
            chunk = sorted(order[c: min(c + 32 * B, per_epoch * B)], key=lambda i: len(run.train_ex[i][0]))
            batches += [chunk[j: j + B] for j in range(0, len(chunk), B)]
        rng.shuffle(batches)
        run.sft_epoch, run.sft_order = epoch, batches
    return run.sft_order[k]


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up, then cosine decay to 10% of peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


class RunLog:
    """Rank 0 prints one line per step and appends the same values as JSON to metrics.jsonl."""

    def __init__(self, run_dir: str, main: bool, resume_step: int | None = None):
        self.main, self.path = main, os.path.join(run_dir, "metrics.jsonl")
        if main and resume_step is not None and os.path.exists(self.path):
            # drop records written after the checkpoint we resume from: no step is logged twice
            with open(self.path, "rb") as f:
                lines = f.read().split(b"\n")
            keep = []
            for i, ln in enumerate(lines):
                if not ln.strip():
                    continue
                try:
                    rec = json.loads(ln)
                    if not isinstance(rec, dict) or not isinstance(rec.get("gstep", 0), (int, float)):
                        raise ValueError("not a JSON object with a numeric gstep")
                except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                    if i == len(lines) - 1:  # no "\n" after it: a write cut off by a crash; truncate it
                        self.print(f"{self.path}: dropped a torn last line ({len(ln)} bytes, {_why(e)})")
                        continue
                    raise RunFileError(f"{self.path}: line {i + 1} is not a JSON record ({_why(e)})") from None
                if rec.get("gstep", 0) <= resume_step:
                    keep.append(ln.decode() + "\n")
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.writelines(keep)
            os.replace(tmp, self.path)
        elif main and resume_step is None and os.path.exists(self.path):
            os.remove(self.path)

    def print(self, *a):
        if self.main:
            print(*a, flush=True)

    def metrics(self, rec: dict) -> None:
        if self.main:
            with open(self.path, "a") as f:
                f.write(json.dumps(rec) + "\n")


def plot_curves(run_dir: str) -> None:
    """curves.png (SFT loss, RL reward and held-out pass) when matplotlib is installed; silently skipped otherwise."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    recs = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"))]
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.5))
    sft = [r for r in recs if r.get("phase") == "sft"]
    ax[0].plot([r["step"] for r in sft], [r["loss"] for r in sft])
    ax[0].set(title="SFT loss", xlabel="step", yscale="log")
    rl = [r for r in recs if r.get("phase") in ("critic", "rl")]
    ax[1].plot([r["step"] for r in rl], [r["reward/mean"] for r in rl])
    ax[1].set(title="RL reward (finished rollouts)", xlabel="step")
    ev = [r for r in recs if any(k.startswith("eval/") for k in r)]
    for k in sorted({k for r in ev for k in r if k.startswith("eval/")}):
        ax[2].plot([r["step"] for r in ev], [r[k] for r in ev], marker="o", label=k[5:])
    ax[2].set(title="held-out pass@1 during RL", xlabel="step")
    if ev:
        ax[2].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "curves.png"), dpi=100)
    plt.close(fig)


def fmt_eval(res: dict) -> str:
    """`math 0.41±0.05 | math_avg4 0.30±0.04 | …`: each held-out rate with its standard error."""
    return " | ".join(f"{k} {v:.3f}±{res.get(k + '_se', 0.0):.3f}" for k, v in res.items() if not k.endswith("_se"))


def fmt_eta(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def save_checkpoint(path: str, state: dict) -> None:
    """torch.save bytes + a sha256 trailer (write_checked: atomic, verified by load_checkpoint)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_checked(path, buf.getvalue())


class RunFileError(ValueError):
    """A run-folder file that cannot be used (missing, empty, cut off, corrupted, wrong content): the message names
    the file and the reason in one line; main prints it and exits 2."""


# A checked file is its payload followed by this trailer and the payload's sha256 (hex) and "\n". Trailing bytes
# are ignored by torch.load (zip: the directory is found from the end) and by pickle.load (stops at STOP), so
# checked files stay readable by plain torch.load / pickle.load.
CHECK_TAG = b"\ntrain.py sha256 "
CHECK_LEN = len(CHECK_TAG) + 64 + 1


def write_checked(path: str, data: bytes) -> None:
    """Atomic: write payload + sha256 trailer to a temp file, then os.replace (a crash never leaves a half-written
    file under `path`)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data + CHECK_TAG + hashlib.sha256(data).hexdigest().encode() + b"\n")
    os.replace(tmp, path)


def read_checked(path: str) -> bytes:
    """The payload of a file written by write_checked, after verifying its sha256; RunFileError otherwise."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise RunFileError(f"{path}: cannot read ({e.strerror or e})") from None
    if not raw:
        raise RunFileError(f"{path}: empty file (0 bytes)")
    data, tag, digest = raw[:-CHECK_LEN], raw[-CHECK_LEN:-65], raw[-65:-1]
    if len(raw) < CHECK_LEN or tag != CHECK_TAG or raw[-1:] != b"\n":
        raise RunFileError(f"{path}: no sha256 trailer (cut off, or not written by train.py), {len(raw)} bytes")
    if hashlib.sha256(data).hexdigest().encode() != digest:
        raise RunFileError(f"{path}: sha256 mismatch (corrupted: the content changed after it was written)")
    return data


def _why(e: BaseException) -> str:
    """One line for an exception: its type and the first line of its message."""
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0][:200]}" if msg else type(e).__name__


def load_checkpoint(path: str, keys: tuple = ()) -> dict:
    """A checkpoint written by save_checkpoint (sha256 verified), with `keys` present; RunFileError otherwise."""
    data = read_checked(path)
    try:
        st = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 — any unpickling failure means the same thing: unusable file
        raise RunFileError(f"{path}: not a torch checkpoint ({_why(e)})") from None
    if not isinstance(st, dict):
        raise RunFileError(f"{path}: holds a {type(st).__name__}, not a checkpoint dict")
    missing = [k for k in keys if k not in st]
    if missing:
        raise RunFileError(f"{path}: missing key(s) {', '.join(missing)}")
    if "phase" in keys and st["phase"] not in ("sft", "sft_eval", "curate", "critic", "rl", "done"):
        raise RunFileError(f"{path}: unknown phase {st['phase']!r}")
    return st


def resume_config(cfg: Config, argv: list[str]) -> None:
    """--resume: the run folder's config.json values, except the keys given on the command line; re-validated."""
    path = os.path.join(cfg.out_dir, run_name(cfg), "config.json")
    if not os.path.exists(path):
        return
    saved = load_run_config(path)
    given = {a[2:].split("=")[0].replace("-", "_") for a in argv if a.startswith("--")}
    for k, v in saved.items():
        if k not in given and k != "resume":
            setattr(cfg, k, v)
    try:
        validate_config(cfg)
    except ValueError as e:
        raise RunFileError(f"{path}: {e}") from None


RESUME_KEYS = ("phase", "step", "gstep", "summary", "policy", "popt", "rng")


def load_tasks(path: str) -> tuple:
    """tasks.pkl (sha256 verified): (train, held-out, RL) lists of Task; RunFileError otherwise."""
    data = read_checked(path)
    try:
        tasks = pickle.loads(data)
    except Exception as e:  # noqa: BLE001
        raise RunFileError(f"{path}: not a task pickle ({_why(e)})") from None
    if not (isinstance(tasks, tuple) and len(tasks) >= 3 and all(isinstance(ts, list) for ts in tasks)
            and all(isinstance(t, Task) for ts in tasks for t in ts)):
        raise RunFileError(f"{path}: not a (train, held-out, RL) tuple of Task lists")
    return tasks


def load_run_config(path: str) -> dict:
    """config.json of a run folder: a JSON object whose keys are Config fields; RunFileError otherwise. Values are
    checked by validate_config once applied (main)."""
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except json.JSONDecodeError as e:
        raise RunFileError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunFileError(f"{path}: cannot read ({_why(e)})") from None
    if not isinstance(saved, dict):
        raise RunFileError(f"{path}: holds a JSON {type(saved).__name__}, not an object of config fields")
    unknown = sorted(set(saved) - {f.name for f in fields(Config)})
    if unknown:
        raise RunFileError(f"{path}: unknown config key(s) {', '.join(unknown)}")
    return saved


class TrainOpt:
    """Optimizer wrapper used by every phase: averages gradients over ranks, skips the update (and counts it) when
    any gradient is non-finite, clips the global norm, then steps AdamW. Every rank takes the same decision because
    the check runs after the all-reduce."""

    def __init__(self, opt: torch.optim.Optimizer, params, dist: Dist, clip: float):
        self.opt, self.params, self.dist, self.clip = opt, [p for p in params if p.requires_grad], dist, clip
        self.skipped = 0
        self.last_skipped = False

    @property
    def param_groups(self):  # a property: load_state_dict replaces the inner optimizer's group list
        return self.opt.param_groups

    def zero_grad(self, set_to_none: bool = True):
        self.opt.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        self.dist.all_reduce_grads(self.params)
        grads = [p.grad for p in self.params if p.grad is not None]
        finite = all(bool(torch.isfinite(g).all()) for g in grads)
        self.last_skipped = not finite
        if not finite:
            self.skipped += 1
            self.opt.zero_grad(set_to_none=True)
            return None
        if self.clip > 0 and grads:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        return self.opt.step()

    def state_dict(self):
        return {"opt": self.opt.state_dict(), "skipped": self.skipped}

    def load_state_dict(self, sd):
        self.opt.load_state_dict(sd["opt"])
        self.skipped = sd["skipped"]


class Interrupt:
    """Ctrl-C (SIGINT) sets a flag; the training loops checkpoint at the next step boundary and exit. A second
    Ctrl-C aborts at once. `restore()` puts the previous handler back (run_pipeline calls it on exit)."""

    def __init__(self):
        self.hit = False
        self._old = None
        try:
            self._old = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not in the main thread
            pass

    def _handler(self, signum, frame):
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True
        print("\n[ctrl-c] saving a checkpoint at the end of this step (press again to abort)", flush=True)

    def restore(self):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


# ======================================================================================================================
# Appendix B. Tokenizer: byte-level BPE → tiktoken
# ======================================================================================================================


# GPT-4-style pre-tokenizer, except that every digit is its own pre-token (arithmetic stays digit-aligned).
PAT_STR = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
SPECIALS = ("<|bos|>", "<|eos|>", "<|pad|>")


def _pretokenize(text: str, pat_str: str) -> Counter:
    import regex

    return Counter(m.encode("utf-8") for m in regex.findall(pat_str, text))


def bpe_train_reference(text: str, n_ranks: int, pat_str: str = PAT_STR) -> dict[bytes, int]:
    """Literal BPE: recount every pair over the whole corpus per merge. Tie-break: highest count, then smallest pair
    (a, b) in byte order. Slow, used only as the oracle for `bpe_train`."""
    ranks = {bytes([i]): i for i in range(256)}
    words = [([bytes([c]) for c in w], n) for w, n in _pretokenize(text, pat_str).items()]
    while len(ranks) < n_ranks:
        counts: Counter = Counter()
        for toks, n in words:
            for a, b in zip(toks, toks[1:]):
                counts[(a, b)] += n
        if not counts:
            break
        best = min(counts, key=lambda p: (-counts[p], p))
        if best[0] + best[1] not in ranks:
            ranks[best[0] + best[1]] = len(ranks)
        new_words = []
        for toks, n in words:
            out, i = [], 0
            while i < len(toks):
                if i + 1 < len(toks) and (toks[i], toks[i + 1]) == best:
                    out.append(toks[i] + toks[i + 1])
                    i += 2
                else:
                    out.append(toks[i])
                    i += 1
            new_words.append((out, n))
        words = new_words
    return ranks


def bpe_train(text: str, n_ranks: int, pat_str: str = PAT_STR) -> dict[bytes, int]:
    """Incremental byte-level BPE (same result as `bpe_train_reference`).

    Keeps unique pre-tokens with counts, pair → count, pair → words containing it, and a lazy max-heap keyed by
    (−count, a, b); each merge rewrites only the words that contain the merged pair.
    Returns mergeable ranks: bytes → rank, ranks 0..255 are the single bytes, merge k gets rank 256 + k (dense).
    """
    ranks = {bytes([i]): i for i in range(256)}
    wc = _pretokenize(text, pat_str)
    words = [[bytes([c]) for c in w] for w in wc]
    freq = list(wc.values())
    pair_count: dict = defaultdict(int)
    where: dict = defaultdict(set)
    for wi, toks in enumerate(words):
        for a, b in zip(toks, toks[1:]):
            pair_count[(a, b)] += freq[wi]
            where[(a, b)].add(wi)
    heap = [(-c, p[0], p[1]) for p, c in pair_count.items()]
    heapq.heapify(heap)
    while len(ranks) < n_ranks and heap:
        negc, a, b = heapq.heappop(heap)
        if pair_count.get((a, b), 0) != -negc or negc == 0:
            continue  # stale entry
        best = (a, b)
        if a + b not in ranks:
            ranks[a + b] = len(ranks)
        touched = set()
        for wi in sorted(where.pop(best, ())):
            toks, n = words[wi], freq[wi]
            for x, y in zip(toks, toks[1:]):  # remove this word's old pairs
                pair_count[(x, y)] -= n
                touched.add((x, y))
            out, i = [], 0
            while i < len(toks):
                if i + 1 < len(toks) and toks[i] == a and toks[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(toks[i])
                    i += 1
            words[wi] = out
            for x, y in zip(out, out[1:]):  # add the new pairs
                pair_count[(x, y)] += n
                where[(x, y)].add(wi)
                touched.add((x, y))
        pair_count.pop(best, None)
        touched.discard(best)
        for p in touched:
            c = pair_count.get(p, 0)
            if c > 0:
                heapq.heappush(heap, (-c, p[0], p[1]))
            else:
                pair_count.pop(p, None)
                where.pop(p, None)
    return ranks


def save_ranks(ranks: dict[bytes, int], path: str) -> None:
    """tiktoken's file format: `base64(token) rank` per line, sorted by rank. Written atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="ascii") as f:
        for tok, r in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{base64.b64encode(tok).decode()} {r}\n")
    os.replace(tmp, path)


def load_ranks(path: str) -> dict[bytes, int]:
    with open(path, encoding="ascii") as f:
        return {base64.b64decode(t): int(r) for t, r in (line.split() for line in f if line.strip())}


def make_encoding(ranks: dict[bytes, int], name: str = "train_bpe", pat_str: str = PAT_STR):
    import tiktoken

    n = len(ranks)
    specials = {s: n + i for i, s in enumerate(SPECIALS)}
    return tiktoken.Encoding(name, pat_str=pat_str, mergeable_ranks=ranks, special_tokens=specials,
                             explicit_n_vocab=n + len(SPECIALS))


def named_encoding(name: str):
    """A tiktoken encoding by name, offline only: a cache miss fails with a clear message instead of downloading."""
    import tiktoken
    import tiktoken.load

    real = tiktoken.load.read_file

    def no_download(blobpath):
        if "://" in blobpath:
            raise RuntimeError(
                f"tokenizer={name!r} is not available offline (its ranks are not in tiktoken's cache, "
                f"TIKTOKEN_CACHE_DIR={os.environ.get('TIKTOKEN_CACHE_DIR', '<unset>')}); train.py never downloads. "
                f"Seed the cache or use --tokenizer=bpe.")
        return real(blobpath)

    tiktoken.load.read_file = no_download
    try:
        base = tiktoken.get_encoding(name)
    except ValueError as e:
        raise RuntimeError(f"tokenizer={name!r}: {e}") from None
    finally:
        tiktoken.load.read_file = real
    n = base.n_vocab
    specials = {s: n + i for i, s in enumerate(SPECIALS)}
    return tiktoken.Encoding(name + "_rl", pat_str=base._pat_str, mergeable_ranks=base._mergeable_ranks,
                             special_tokens=specials)


def build_tokenizer(cfg: Config, corpus: str, run_dir: str, log=print):
    """Train (or load from the corpus-hash cache) the BPE ranks, copy them into the run folder, build the Encoding."""
    if cfg.tokenizer != "bpe":
        return named_encoding(cfg.tokenizer)
    n_ranks = cfg.vocab_size - len(SPECIALS)
    key = hashlib.sha256(f"{n_ranks}\n{PAT_STR}\n{corpus}".encode()).hexdigest()[:16]
    cache_dir = os.path.join(cfg.out_dir, ".bpe_cache")
    os.makedirs(cache_dir, exist_ok=True)
    cached = os.path.join(cache_dir, f"{key}.tiktoken")
    t0 = time.time()
    if os.path.exists(cached):
        ranks, how = load_ranks(cached), "cache hit"
    else:
        ranks, how = bpe_train(corpus, n_ranks), "trained"
        save_ranks(ranks, cached)
    save_ranks(ranks, os.path.join(run_dir, "tokenizer.tiktoken"))
    enc = make_encoding(ranks)
    log(f"tokenizer: byte-level BPE, {len(ranks)} ranks + {len(SPECIALS)} specials ({how} in {time.time()-t0:.2f}s, "
        f"corpus {len(corpus)} chars, hash {key})")
    return enc


class Tok:
    """The few things the rest of the file needs from a tiktoken.Encoding."""

    def __init__(self, enc):
        self.enc = enc
        self.bos, self.eos, self.pad = (enc.encode_single_token(s) for s in SPECIALS)
        self.n_vocab = enc.n_vocab

    def encode(self, text: str) -> list[int]:
        return self.enc.encode_ordinary(text)

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids if int(i) < self.bos]
        return self.enc.decode(ids)


# ======================================================================================================================
# Appendix C. Command line: --key=value overrides, presets, validation
# ======================================================================================================================


def _coerce(f: dataclasses.Field, raw: str):
    typ = f.type if isinstance(f.type, type) else {"int": int, "float": float, "str": str, "bool": bool}[f.type]
    if typ is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on", ""):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"--{f.name} expects a bool (true/false), got {raw!r}")
    try:
        return typ(raw)
    except ValueError:
        raise ValueError(f"--{f.name} expects {typ.__name__}, got {raw!r}") from None


def config_help() -> str:
    """--help text generated from the Config fields and their doc comments."""
    src = open(os.path.abspath(__file__), encoding="utf-8").read()
    docs = {}
    for line in src.split("class Config:")[1].split("PRESETS")[0].splitlines():
        s = line.strip()
        if ":" in s and "#" in s and not s.startswith("#"):
            docs[s.split(":")[0].strip()] = s.split("#", 1)[1].strip()
    lines = ["usage: python train.py [--preset smoke|default|bench] [--algo tppo|ppo] [--resume] [--key=value ...]", ""]
    for f in fields(Config):
        lines.append(f"  {'--' + f.name + '=' + str(f.default):<32} {docs.get(f.name, '')}")
    lines.append("")
    lines.append("presets: " + "; ".join(f"{k}: {v}" for k, v in PRESETS.items()))
    return "\n".join(lines)


def parse_args(argv: list[str]) -> Config:
    """Defaults → preset → explicit `--key=value` overrides (coerced by field type). Unknown keys raise ValueError."""
    valid = {f.name: f for f in fields(Config)}
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(config_help())
            raise SystemExit(0)
        if not a.startswith("--"):
            raise ValueError(f"unexpected argument {a!r}; use --key=value with key in: {', '.join(valid)}")
        key, eq, val = a[2:].partition("=")
        key = key.replace("-", "_")
        if key not in valid:
            raise ValueError(f"unknown config key {key!r}; valid keys: {', '.join(valid)}")
        if not eq:  # `--flag` (bool) or `--key value`
            if valid[key].type in (bool, "bool"):
                val = "true"
            elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                i += 1
                val = argv[i]
            else:
                raise ValueError(f"--{key} needs a value (--{key}=...)")
        pairs.append((key, val))
        i += 1
    preset = "default"
    for k, v in pairs:
        if k == "preset":
            preset = v
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    cfg = Config(**PRESETS[preset])
    cfg.preset = preset
    for k, v in pairs:
        if k != "preset":
            setattr(cfg, k, _coerce(valid[k], v))
    validate_config(cfg)
    return cfg


# Ranges of the numeric fields: (lowest, highest) allowed, None = unbounded. Floats must also be finite; lr-like
# fields must be > 0 (POSITIVE). Conditional lower bounds (fields used only by some phases) are in validate_config.
INT_RANGE = dict(seed=(0, 2**62), threads=(0, 256), n_train=(1, None), n_eval=(1, None), n_rl=(0, None),
                 vocab_size=(259, None), n_layers=(1, None), d_model=(1, None), n_heads=(1, None),
                 n_kv_heads=(1, None), attn_window=(1, None), mlp_mult=(1, None), max_seq_len=(2, None),
                 base_width=(1, None), sft_steps=(0, None), sft_batch=(1, None), warmup=(0, None),
                 eval_every=(0, None), eval_max_new_tokens=(1, None), eval_samples=(0, None), eval_batch=(1, None),
                 n_curate=(0, None), curate_samples=(0, None), rl_steps=(0, None), window=(1, None),
                 max_response=(1, None), slots=(1, None), group_size=(1, None), rl_warmup=(0, None),
                 minibatches=(1, None), critic_warmup=(0, None), log_every=(1, None), ckpt_every=(0, None),
                 stop_after=(-1, None), rl_finished=(0, None), bench_seeds=(1, None))
FLOAT_RANGE = dict(lr=(0.0, None), weight_decay=(0.0, None), grad_clip=(0.0, None), temperature=(0.0, None),
                   rl_lr=(0.0, None), critic_lr=(0.0, None), rl_weight_decay=(0.0, None), nll_weight=(0.0, None),
                   lam_floor=(0.0, 1.0), bench_gain=(-1.0, 1.0), teacher_noise=(0.0, 1.0))
POSITIVE = ("lr", "temperature", "rl_lr", "critic_lr")
CHOICES = dict(preset=tuple(PRESETS), device=("auto", "cpu", "cuda", "mps"), dtype=("auto", "float32", "bfloat16"),
               rl_prompts=("fresh", "sft"), eval_set=("test", "val"), mup=("sp", "mup", "lv"), algo=("tppo", "ppo"),
               refill=("on", "off"))


def validate_config(cfg: Config) -> None:
    """Every field's type, range or choices, and the constraints between fields. Raises ValueError with one line
    that names the field (main: exit 2)."""
    def bad(name: str, want: str):
        raise ValueError(f"{name} must be {want}, got {getattr(cfg, name)!r}")

    for f in fields(Config):  # types first (config.json values arrive here without --key=value coercion)
        v, typ = getattr(cfg, f.name), f.type if isinstance(f.type, str) else f.type.__name__
        ok = {"bool": isinstance(v, bool), "str": isinstance(v, str),
              "int": isinstance(v, int) and not isinstance(v, bool),
              "float": isinstance(v, (int, float)) and not isinstance(v, bool)}[typ]
        if not ok or (typ == "str" and "\0" in v):
            bad(f.name, f"a{'n' if typ == 'int' else ''} {typ}")
    for name, (lo, hi) in INT_RANGE.items():
        v = getattr(cfg, name)
        if v < lo or (hi is not None and v > hi):
            bad(name, f">= {lo}" if hi is None else f"in [{lo}, {hi}]")
    for name, (lo, hi) in FLOAT_RANGE.items():
        v = getattr(cfg, name)
        v = v if isinstance(v, float) or abs(v) < 2**1000 else math.inf  # a huge JSON int: float(v) would raise
        if not math.isfinite(v) or v < lo or (hi is not None and v > hi) or (name in POSITIVE and v <= 0):
            bad(name, f"finite and {'> 0' if name in POSITIVE else f'>= {lo}'}"
                + (f" and <= {hi}" if hi is not None else ""))
    for name, choices in CHOICES.items():
        if getattr(cfg, name) not in choices and not (name == "device" and cfg.device.startswith("cuda:")):
            bad(name, "one of " + ", ".join(choices))
    # run folder: one folder name under out_dir
    if cfg.run_name in (".", "..") or "/" in cfg.run_name or os.sep in cfg.run_name:
        bad("run_name", "a folder name (no path separator, not . or ..)")
    if not cfg.out_dir:
        bad("out_dir", "a non-empty path")
    # device: known and available
    if cfg.device.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        idx = cfg.device[5:] if cfg.device.startswith("cuda:") else "0"
        if not idx.isdigit() or int(idx) >= n:
            bad("device", f"an available CUDA device ({n} here)")
    if cfg.device == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                    and torch.backends.mps.is_available()):
        bad("device", "an available device (MPS is not available here)")
    # tasks
    doms = cfg.domains.split(",")
    if not all(d in TASK_MAKERS for d in doms) or len(set(doms)) != len(doms):
        bad("domains", f"distinct comma-separated names from {', '.join(TASK_MAKERS)}")
    if cfg.sft_mix:
        try:
            mix = sft_shares(cfg)
        except ValueError:
            mix = []
        if len(mix) != len(doms) or not all(math.isfinite(w) and w > 0 for w in mix):
            bad("sft_mix", f"'' or {len(doms)} positive comma-separated numbers, one per domain in {cfg.domains!r}")
    if cfg.rl_domains and not all(d in TASK_MAKERS for d in cfg.rl_domains.split(",")):
        bad("rl_domains", f"'' (all) or comma-separated names from {', '.join(TASK_MAKERS)}")
    if cfg.rl_steps > 0 and not rl_domain_list(cfg):
        raise ValueError(f"rl_domains={cfg.rl_domains!r} shares no domain with domains={cfg.domains!r}; "
                         f"set --rl_domains to some of {cfg.domains!r} (or '' for all)")
    if cfg.tokenizer != "bpe":
        import tiktoken
        if cfg.tokenizer not in tiktoken.list_encoding_names():
            bad("tokenizer", "'bpe' or a tiktoken encoding: " + ", ".join(tiktoken.list_encoding_names()))
    # model
    if cfg.d_model % cfg.n_heads or (cfg.d_model // cfg.n_heads) % 2:
        raise ValueError(f"d_model must be a multiple of n_heads with an even head size (RoPE), got "
                         f"d_model={cfg.d_model}, n_heads={cfg.n_heads}")
    if cfg.n_heads % cfg.n_kv_heads:
        raise ValueError(f"n_kv_heads must divide n_heads, got n_kv_heads={cfg.n_kv_heads}, n_heads={cfg.n_heads}")
    # RL: only constrained when RL runs
    if cfg.rl_steps > 0:
        if cfg.rl_prompts == "fresh" and cfg.n_rl < 1:
            bad("n_rl", ">= 1 when rl_steps > 0 and rl_prompts=fresh")
        if cfg.n_curate < 1:
            bad("n_curate", ">= 1 when rl_steps > 0")
        if cfg.curate_samples < 2:
            bad("curate_samples", ">= 2 when rl_steps > 0 (the filter keeps 0 < passes < k: k = 1 keeps nothing)")
        if cfg.algo == "tppo" and cfg.window > cfg.max_response:
            raise ValueError(f"window must be <= max_response, got window={cfg.window}, "
                             f"max_response={cfg.max_response}")
        if cfg.max_seq_len <= cfg.max_response:
            raise ValueError(f"max_seq_len must be > max_response (SFT trains on prompt + response sequences of at "
                             f"most max_seq_len tokens), got max_seq_len={cfg.max_seq_len}, "
                             f"max_response={cfg.max_response}")
        if cfg.minibatches > cfg.slots:
            raise ValueError(f"minibatches must be <= slots, got minibatches={cfg.minibatches}, slots={cfg.slots}")
        if cfg.group_filter and cfg.group_size < 2:
            bad("group_size", ">= 2 with group_filter (a group of one always scores alike: no policy loss)")
    # init_from / bench
    if cfg.init_from and not os.path.isdir(cfg.init_from):
        bad("init_from", "'' or an existing run folder")
    if cfg.bench_init:
        try:
            cfg.bench_init.format(seed=0)
        except (KeyError, IndexError, ValueError, AttributeError) as e:
            bad("bench_init", f"'' or a folder pattern with {{seed}} only ({_why(e)})")


def run_name(cfg: Config) -> str:
    return cfg.run_name or f"{cfg.preset}-{cfg.algo}-s{cfg.seed}"


# ======================================================================================================================
# Appendix D. Device, dtype, seeding, distributed
# ======================================================================================================================


def pick_device(cfg: Config) -> tuple[torch.device, torch.dtype, str]:
    """CUDA → MPS → CPU; bf16 autocast on bf16-capable CUDA, else fp32. Returns (device, autocast dtype, reason)."""
    if cfg.device != "auto":
        dev = torch.device(cfg.device)
        why = f"device={cfg.device} requested"
    elif torch.cuda.is_available():
        dev, why = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))), "CUDA available"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        dev, why = torch.device("mps"), "no CUDA, MPS available"
    else:
        dev, why = torch.device("cpu"), "no CUDA or MPS"
    if cfg.dtype == "auto":
        if dev.type == "cuda" and torch.cuda.is_bf16_supported():
            dt, why2 = torch.bfloat16, "bf16 autocast: GPU supports bf16"
        else:
            dt, why2 = torch.float32, f"fp32: {dev.type} has no fast bf16 path"
    else:
        dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.dtype]
        why2 = f"dtype={cfg.dtype} requested"
    return dev, dt, f"{why}; {why2}"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


class Dist:
    """torch.distributed wrapper: no-op when not launched by torchrun."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.enabled = self.world > 1
        self.comm_device = torch.device("cpu")  # where small reduction tensors live (NCCL needs CUDA tensors)
        if self.enabled and torch.cuda.is_available():
            self.comm_device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.comm_device)
        if self.enabled and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend=backend)

    @classmethod
    def off(cls) -> "Dist":
        """A Dist that never communicates (for optimizers whose gradients tppo_step already all-reduced)."""
        d = cls.__new__(cls)
        d.world, d.rank, d.enabled, d.comm_device = 1, 0, False, torch.device("cpu")
        return d

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_reduce_grads(self, params) -> None:
        """Average gradients over ranks (one flat buffer; None grads count as zeros so every rank sends the same)."""
        if not self.enabled:
            return
        params = [p for p in params if p.requires_grad]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        off = 0
        for p in params:
            n = p.numel()
            p.grad = flat[off:off + n].view_as(p).clone()
            off += n

    def mean(self, x: float) -> float:
        if not self.enabled:
            return x
        t = torch.tensor([float(x)], dtype=torch.float64, device=self.comm_device)
        torch.distributed.all_reduce(t)
        return float(t.item() / self.world)

    def broadcast_params(self, module: nn.Module) -> None:
        if self.enabled:
            for t in list(module.parameters()) + list(module.buffers()):
                torch.distributed.broadcast(t.data, 0)

    def barrier(self):
        if self.enabled:
            torch.distributed.barrier()


# ======================================================================================================================
# Appendix E. T-PPO vs PPO bench (--preset bench)
# ======================================================================================================================


BENCH_ARMS = (("ppo", "off"), ("tppo", "off"), ("tppo", "on"))  # (algo, refill): PPO, the paper's T-PPO, + refill


def run_bench(cfg: Config) -> dict:
    """PPO vs T-PPO (the paper's synchronous windows) vs T-PPO with slot refill, at equal work. Per seed, one SFT
    policy (`bench_init`'s run, or a fresh SFT run) and from it one RL run per arm, each stopping after
    `rl_finished` finished responses. Reports per arm: RL wall-clock to the equal-work end and to the held-out
    target (after-SFT rate + bench_gain), token-weighted generation utilization, generated tokens/s, the generation
    share of a step, the final held-out rate with its standard error, and a per-phase profile of a step; plus the
    PPO / T-PPO ratios next to the Amdahl bound 1 / ((1 - g) + g / u_gain). The critic warm-up steps are left out of
    every arm's clock and work count (bench.json + a table)."""
    rows = []
    for i in range(cfg.bench_seeds):
        seed = cfg.seed + i
        if cfg.bench_init:
            sft_dir = cfg.bench_init.format(seed=seed)
        else:
            sft = dataclasses.replace(cfg, seed=seed, rl_steps=0, run_name=f"bench-sft-s{seed}", resume=False)
            sft_dir = os.path.join(cfg.out_dir, sft.run_name)
            if not os.path.exists(os.path.join(sft_dir, "summary.json")):
                train(sft)
        for algo, refill in BENCH_ARMS:
            name = f"bench-{algo}{'-refill' if refill == 'on' else ''}-s{seed}"
            rc = dataclasses.replace(cfg, seed=seed, algo=algo, refill=refill, run_name=name, init_from=sft_dir,
                                     resume=False)
            train(rc)
            rows.append(bench_row(os.path.join(cfg.out_dir, name), cfg.bench_gain))
    table = bench_table(rows, cfg.bench_gain)
    print(table)
    out = {"rows": rows, "gain": cfg.bench_gain, "table": table}
    with open(os.path.join(cfg.out_dir, "bench.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


def bench_metric(res: dict) -> str:
    """The held-out rate the bench targets: overall avg@k when the runs sampled it (less noisy), else greedy."""
    return next((k for k in res if k.startswith("overall_avg") and not k.endswith("_se")), "overall")


PHASES = ("gen", "reward", "batch", "critic", "policy")  # tppo_step's per-phase profile (time/<phase>_s)


def bench_row(run_dir: str, gain: float) -> dict:
    """One bench row from a finished RL run folder (summary.json + metrics.jsonl); RL-phase steps only."""
    summ = json.load(open(os.path.join(run_dir, "summary.json")))
    cfg = json.load(open(os.path.join(run_dir, "config.json")))
    recs = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"))]
    rl = [r for r in recs if r.get("phase") == "rl"]
    key = bench_metric(summ["after_sft"])
    target = summ["after_sft"][key] + gain
    hit = [h for h in summ["rl"]["eval_history"] if h.get(key, -1.0) >= target - 1e-9]
    if not hit and summ["after_rl"][key] >= target - 1e-9:  # reached only at the end
        hit = [{"time": summ["rl"]["rl_time_s"], "finished": summ["rl"]["rl_finished"]}]
    wall = sum(r["time/step_wall_s"] for r in rl)
    gen_s, gen_tok = sum(r["gen/time_s"] for r in rl), sum(r["gen/tokens"] for r in rl)
    return {"arm": summ["algo"] + (" + refill" if cfg.get("refill") == "on" else ""), "algo": summ["algo"],
            "seed": summ["seed"], "window": summ["rl"]["window"], "metric": key,
            "rl_time_s": summ["rl"]["rl_time_s"], "steps": summ["rl"]["rl_steps_run"],
            "finished": summ["rl"]["rl_finished"],
            "time_to_target_s": hit[0]["time"] if hit else None,
            "finished_at_target": hit[0]["finished"] if hit else None,
            "after_sft": summ["after_sft"][key], "final": summ["after_rl"][key],
            "final_se": summ["after_rl"].get(key + "_se", 0.0), "final_greedy": summ["after_rl"]["overall"],
            # token-weighted (total useful tokens / total slot-steps), not a mean of per-step ratios
            "util": sum(r.get("gen/useful_measured", 0) for r in rl) / max(sum(r.get("gen/slot_steps_measured", 0)
                                                                               for r in rl), 1),
            "gen_tok_s": gen_tok / max(gen_s, 1e-9),
            # share of the RL step spent generating: the most a faster generator could save is this fraction
            "gen_share": gen_s / max(wall, 1e-9),
            "profile": {p: sum(r.get(f"time/{p}_s", 0.0) for r in rl) / max(len(rl), 1) for p in PHASES},
            # share of the generation time spent prefilling contexts (T-PPO: every carried rollout, every window)
            "prefill_share": sum(r.get("time/prefill_s", 0.0) for r in rl) / max(gen_s, 1e-9),
            # re-encoding per generated token: what the sampler prefills, what each update forward reads
            "ctx_per_tok": sum(r.get("gen/context_tokens", 0) for r in rl) / max(gen_tok, 1),
            "seq_per_tok": sum(r.get("update/seq_tokens", 0) for r in rl) / max(gen_tok, 1),
            "len_p50": summ["rl"]["resp_len_p50"], "len_p90": summ["rl"]["resp_len_p90"]}


def bench_table(rows: list[dict], gain: float) -> str:
    """Per arm: medians (min–max) over seeds of the times, means of the rest; then ratios vs PPO and the bounds."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))

    def vals(arm, k):
        return [r[k] for r in rows if r["arm"] == arm and r[k] is not None]

    def mean(arm, k):
        v = vals(arm, k)
        return sum(v) / len(v) if v else float("nan")

    def med(arm, k):
        v = sorted(vals(arm, k))
        return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2 if v else float("nan")

    def spread(arm, k):
        v = vals(arm, k)
        return f"{med(arm, k):.0f} ({min(v):.0f}–{max(v):.0f})" if v else "–"

    metric = rows[0]["metric"] if rows else "overall"
    lines = [f"| arm | W | seeds | steps | finished | RL s to equal work, median (range) | RL s to target, median "
             f"(range) [reached] | {metric} SFT → final (± SE) | greedy final | gen util (token-weighted) | "
             f"gen tok/s | gen share | prefill share of gen | s/step: " + " / ".join(PHASES) + " | encoded per "
             f"generated token: sampler / update |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in arms:
        rs = [r for r in rows if r["arm"] == a]
        prof = " / ".join(f"{sum(r['profile'][p] for r in rs) / len(rs):.2f}" for p in PHASES)
        lines.append(f"| {a} | {rs[0]['window']} | {len(rs)} | {mean(a, 'steps'):.0f} | {mean(a, 'finished'):.0f} | "
                     f"{spread(a, 'rl_time_s')} | {spread(a, 'time_to_target_s')} "
                     f"[{len(vals(a, 'time_to_target_s'))}/{len(rs)}] | {mean(a, 'after_sft'):.3f} → "
                     f"{mean(a, 'final'):.3f} ± {mean(a, 'final_se'):.3f} | {mean(a, 'final_greedy'):.3f} | "
                     f"{mean(a, 'util'):.2f} | {mean(a, 'gen_tok_s'):.0f} | {mean(a, 'gen_share'):.2f} | "
                     f"{mean(a, 'prefill_share'):.2f} | {prof} | "
                     f"{mean(a, 'ctx_per_tok'):.2f} / {mean(a, 'seq_per_tok'):.2f} |")
    lines.append(f"\ncritic warm-up steps excluded from every arm's clock and work; target = {metric} after SFT + "
                 f"{gain}; times are RL wall-clock without the held-out evals.")
    if "ppo" in arms:
        g, u_ppo = mean("ppo", "gen_share"), mean("ppo", "util")
        for a in arms:
            if a == "ppo":
                continue
            u_gain = mean(a, "util") / max(u_ppo, 1e-9)
            bound = 1 / max((1 - g) + g / max(u_gain, 1e-9), 1e-9)
            work = med("ppo", "rl_time_s") / max(med(a, "rl_time_s"), 1e-9)
            tgt = med("ppo", "time_to_target_s") / max(med(a, "time_to_target_s"), 1e-9)
            lines.append(f"PPO / {a}: wall-clock to equal work {work:.2f}x, to target {tgt:.2f}x (medians); util "
                         f"gain {u_gain:.2f}x; Amdahl bound 1 / ((1 - g) + g / u_gain) = {bound:.2f}x with g = PPO's "
                         f"gen share {g:.2f} → equal-work ratio = {work / bound:.0%} of the bound")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
