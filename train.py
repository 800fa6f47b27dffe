"""train.py — the front door: verifiable tasks → byte-level BPE → local-global GPT (μP-LV) → SFT → critic → T-PPO.

This is the one place where the concept files meet (see DESIGN.md):

  proto_verify.py  Prolog answers (ProtoReasoning, arXiv 2506.15211) and PDDL plans (blocksworld, gripper), labelled by
                   the engines themselves, with rewards in [0, 1].
  guru_rewards.py  math reward (Guru, arXiv 2506.14965: \\boxed{} extraction + math_equal), dedup / decontamination of
                   the held-out set against the training set.
  rattention.py    RAttention local layers (arXiv 2506.15545) = sliding-window attention + residual linear attention,
                   stacked 3 local : 1 global (GlobalAttention), with O(1)-memory decode caches.
  mup_vocab.py     μP and the large-vocabulary rule (arXiv 2506.15025): init, per-group LRs (embedding LR η/√w in the
                   "lv" regime), readout multiplier.
  tppo.py/egae.py  Truncated PPO (arXiv 2506.15050): windows of W tokens, successive batching, EGAE advantages, a
                   finished-only Monte-Carlo critic. PPO is the same code with W ≥ L_max.

Pipeline of `python train.py` (default preset, ≤ 10 min on a 2-core CPU):

  1. tasks: seeded SFT / held-out / RL-prompt sets for math, prolog and pddl; held-out decontaminated against the
     others. RL prompts are fresh draws, not the SFT tasks (RL on memorized SFT tasks rewards recall).
  2. tokenizer: byte-level BPE trained on the training corpus (incremental trainer, deterministic tie-break: highest
     count, then smallest pair bytes), ranks written in tiktoken's file format (`base64(token) rank` per line) and
     loaded into `tiktoken.Encoding` with <|bos|>, <|eos|>, <|pad|>.
  3. SFT warm-up on engine-labelled solutions (loss on response tokens only), then held-out greedy pass@1 and avg@k
     (mean pass of k samples per task, the paper's avg@32 metric) per domain.
  4. critic = SFT trunk + scalar head, warmed up on Monte-Carlo returns (γ = λ = 1 ⇒ G_t = R) of SFT rollouts.
  5. T-PPO (or PPO) through tppo.py with this file's cached batched `generate`, held-out eval every N steps.
  6. final eval → out/<run>/summary.json (pass rates after SFT and after RL), metrics.jsonl, checkpoints.

Shapes: token batches are (B, T) right-padded with <|pad|>; valid tokens of row b are its prefix of length lengths[b].

Deviations from the papers (composition-level; each concept file lists its own):
  - Rewards are verifier scores in [0, 1] (pass = 1), not ±1 as in the T-PPO/DAPO recipes.
  - Tiny models and synthetic tasks: the math domain is our own arithmetic with a short scratchpad; held-out
    avg@4 (and greedy pass@1) on synthetic tasks replaces AIME avg@32.
  - RL settings that differ from the reference recipe, each for a reason measured on this model (README, "Why these
    RL settings"): policy λ = 1 (not VAPO's length-adaptive λ ≥ 0.95), no advantage whitening, NLL weight 1.0 (not
    0.1), DAPO's has-gradient filter as a policy-loss mask, a 10-step RL LR warm-up, fresh RL prompts, and RL on
    prolog and pddl only (`rl_domains`: RL on math lowered math, whose SFT policy cannot add).
  - Critic warm-up = the first `critic_warmup` tppo steps with the policy frozen (critic trained on Monte-Carlo
    returns G_t = R of the SFT policy's finished rollouts, the reference recipe's `critic_warmup`), not a separate
    offline regression pass.
  - Held-out decontamination uses guru_rewards.decontaminate at Jaccard threshold 1.0 (exact instances): for
    synthetic problems a changed number or block is a different problem.
  - CPU runs use the free cores (cores / ranks, at most 4) for intra-op threads; pass --threads=1 on a shared box
    (oversubscribed threads made steps ~5x slower). The smoke preset uses 1 (its model is too small to gain).

Run:
  python train.py --preset smoke          # ≤ 60 s end to end on a 2-core CPU
  python train.py                         # default: SFT + critic warm-up + T-PPO, ≤ 10 min on CPU
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
import json
import math
import os
import pickle
import platform
import random
import signal
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, fields

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


# ----------------------------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class Config:
    # run
    run_name: str = ""  # run folder under out_dir ("" → "<preset>-<algo>-s<seed>"; not --run: torchrun owns it)
    out_dir: str = "out"  # root folder of run folders
    preset: str = "default"  # preset that was applied (smoke | default | bench); set via --preset
    seed: int = 0  # one seed for tasks, init, data order and sampling (rank r samples with seed + 1000 r)
    device: str = "auto"  # auto | cpu | cuda | mps (auto: CUDA → MPS → CPU)
    dtype: str = "auto"  # auto | float32 | bfloat16 (auto: bf16 autocast on bf16-capable CUDA, else fp32)
    threads: int = 0  # torch intra-op threads (0 = auto: on CPU, the cores / ranks, at most 4)
    resume: bool = False  # continue out/<run>/ from its latest checkpoint (exact: RNG, optimizer, pool)
    # tasks
    domains: str = "math,prolog,pddl"  # comma-separated task domains
    n_train: int = 4000  # SFT tasks per domain (~1 epoch of SFT: 600 tasks/domain were memorized, not learned)
    n_eval: int = 40  # held-out tasks per domain (decontaminated against train)
    rl_prompts: str = "fresh"  # RL prompt source: fresh (new draws, not the SFT set) | sft (the SFT training tasks)
    n_rl: int = 1000  # fresh RL prompts per domain (decontaminated against held-out)
    rl_domains: str = "prolog,pddl"  # domains RL trains on, within `domains` ("" = all); eval covers every domain
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
    max_seq_len: int = 320  # longest prompt + response the model is trained on
    mup: str = "lv"  # μP regime for init and per-group LRs: sp | mup | lv
    base_width: int = 64  # μP base width (w = d_model / base_width)
    # SFT
    sft_steps: int = 600  # SFT optimizer steps
    sft_batch: int = 24  # sequences per SFT step
    lr: float = 5e-3  # base LR η at base_width (per-group LRs derived by mup_vocab)
    weight_decay: float = 0.0  # AdamW weight decay on matrices
    warmup: int = 30  # linear LR warm-up steps (SFT)
    grad_clip: float = 1.0  # global grad-norm clip (0 = off)
    # eval
    eval_every: int = 50  # RL steps between held-out evaluations (0 = only before/after RL)
    eval_max_new_tokens: int = 160  # decoding budget for held-out eval
    eval_samples: int = 4  # k: also report avg@k, mean pass of k samples/task at `temperature` (0 = greedy only)
    # RL (T-PPO / PPO)
    algo: str = "tppo"  # tppo | ppo (ppo = T-PPO code with window ≥ max_response)
    rl_steps: int = 150  # T-PPO steps after the critic warm-up (0 = SFT only)
    window: int = 48  # T-PPO window W: new tokens per rollout per step
    max_response: int = 160  # L_max: a response lives at most ceil(L_max / W) windows
    slots: int = 32  # rollouts per generation batch (constant)
    group_size: int = 4  # samples per prompt
    temperature: float = 1.0  # sampling temperature of rollouts
    rl_lr: float = 2e-4  # policy base LR in RL
    group_filter: bool = True  # DAPO has-gradient filter: no policy loss on finished groups that all scored alike
    rl_warmup: int = 10  # linear LR warm-up steps of the RL optimizers (fresh Adam's first steps are sign-like)
    minibatches: int = 2  # policy/critic optimizer steps per RL step (slots split into this many mini-batches)
    critic_lr: float = 1e-3  # critic base LR
    critic_warmup: int = 10  # critic-only steps on MC returns of SFT rollouts before RL
    nll_weight: float = 1.0  # positive-example LM loss weight (VAPO μ = 0.1; 1.0 here, see README)
    lam_floor: float = 1.0  # policy λ = max(lam_floor, 1 − 1/(0.05 L)) (VAPO); 1.0 = MC advantages R − V_t
    whiten: bool = False  # whiten advantages over the batch (the ref does; off here, see README)
    # logging / checkpoints
    log_every: int = 10  # steps between log lines (SFT)
    ckpt_every: int = 100  # steps between checkpoints (0 = only at phase ends)
    nan_step: int = -1  # testing aid: inject a NaN loss at this RL step (-1 = never)
    stop_after: int = -1  # testing aid: stop (checkpoint + exit) after this many total steps (-1 = never)
    init_from: str = ""  # run folder whose post-SFT checkpoint supplies the policy (skips SFT; used by bench)
    bench_seeds: int = 3  # bench preset: seeds per algorithm
    bench_gain: float = 0.03  # bench preset: target = held-out overall pass (avg@k if sampled) after SFT + this gain
    bench_init: str = ""  # bench preset: reuse the SFT policy of these runs ("out/default-tppo-s{seed}"; "" = run SFT)


PRESETS: dict[str, dict] = {
    # ≤ 60 s on a 2-core CPU: a few SFT steps, two RL steps, tiny everything.
    "smoke": dict(threads=1, n_train=40, n_eval=6, n_rl=40, vocab_size=512, n_layers=4, d_model=32, n_heads=2,
                  n_kv_heads=1, attn_window=8, mlp_mult=2, max_seq_len=320, base_width=32, sft_steps=8, sft_batch=8,
                  warmup=2, log_every=4, eval_max_new_tokens=48, rl_steps=2, window=16, max_response=48, slots=8,
                  group_size=2, critic_warmup=2, eval_every=0, ckpt_every=0),
    "default": dict(),
    # T-PPO vs PPO: same everything except the window; long-tailed response lengths (pddl + math sums).
    "bench": dict(rl_steps=100, eval_every=10),
}


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


def validate_config(cfg: Config) -> None:
    if cfg.algo not in ("tppo", "ppo"):
        raise ValueError(f"algo must be 'tppo' or 'ppo', got {cfg.algo!r}")
    if cfg.mup not in ("sp", "mup", "lv"):
        raise ValueError(f"mup must be one of sp, mup, lv, got {cfg.mup!r}")
    if cfg.n_layers < 1 or cfg.d_model % cfg.n_heads or cfg.n_heads % cfg.n_kv_heads:
        raise ValueError("need n_layers >= 1, d_model % n_heads == 0 and n_heads % n_kv_heads == 0")
    for d in cfg.domains.split(","):
        if d not in ("math", "prolog", "pddl"):
            raise ValueError(f"domains: unknown domain {d!r}; valid: math, prolog, pddl")
    if cfg.rl_steps > 0 and not rl_domain_list(cfg):
        raise ValueError(f"rl_domains={cfg.rl_domains!r} shares no domain with domains={cfg.domains!r}; "
                         f"set --rl_domains to some of {cfg.domains!r} (or '' for all)")
    if cfg.rl_prompts not in ("fresh", "sft"):
        raise ValueError(f"rl_prompts must be 'fresh' or 'sft', got {cfg.rl_prompts!r}")
    if cfg.tokenizer == "bpe" and cfg.vocab_size < 259:
        raise ValueError(f"vocab_size must be >= 259 (256 bytes + 3 specials), got {cfg.vocab_size}")


def run_name(cfg: Config) -> str:
    return cfg.run_name or f"{cfg.preset}-{cfg.algo}-s{cfg.seed}"


# ----------------------------------------------------------------------------------------------------------------------
# Device, dtype, seeding, distributed
# ----------------------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------------------
# Tokenizer: byte-level BPE → tiktoken
# ----------------------------------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------------------------------
# Tasks: a seeded, verifiable mix (math / prolog / pddl); held-out decontaminated against train
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class Task:
    __module__ = "train"  # pickled as train.Task even when train.py runs as a script (see the alias at the top)
    domain: str  # math | prolog | pddl
    prompt: str  # text the model conditions on (ends where the answer starts)
    target: str  # engine-labelled solution used for SFT
    truth: object  # ground truth handed to the domain's reward function
    key: str  # problem text used for dedup / decontamination


def make_math_task(rng: random.Random) -> Task:
    """Our own arithmetic with a short scratchpad and a \\boxed{} answer (scored by guru_rewards.score('math')).

    Kinds: running sum of 2–9 digits (response length grows with the list: a long tail by design), a one-digit
    product, and a two-digit minus a one-digit number."""
    kind = rng.choices(["sum", "mul", "sub"], weights=[3, 1, 1])[0]
    if kind == "sum":
        xs = [rng.randint(1, 9) for _ in range(rng.randint(2, 9))]
        q = "Add " + " ".join(map(str, xs)) + "."
        acc, steps = xs[0], []
        for x in xs[1:]:
            steps.append(f"{acc}+{x}={acc + x}")
            acc += x
        ans = acc
        work = " ".join(steps)
    elif kind == "mul":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        q, ans = f"Multiply {a} by {b}.", a * b
        work = f"{a}*{b}={ans}"
    else:
        a, b = rng.randint(10, 99), rng.randint(1, 9)
        q, ans = f"Subtract {b} from {a}.", a - b
        work = f"{a}-{b}={ans}"
    return Task("math", f"math: {q}\n", f"{work} \\boxed{{{ans}}}", str(ans), q)


def make_prolog_task(rng: random.Random) -> Task:
    """A Prolog program + query (family / graph / list / puzzle / arith) whose answer (canonical JSON) was computed
    by proto_verify's engine; the model answers with the JSON value directly (no scratchpad)."""
    t = proto_verify.generate_prolog_task(rng, difficulty=1)
    return Task("prolog", f"prolog: {t.prompt}\n", t.answer, t, t.prompt)


def make_pddl_task(rng: random.Random) -> Task:
    """Blocksworld (2–4 blocks) or gripper (1–3 balls) plan generation, labelled by the BFS planner and checked
    by the validator. Plans are the longest responses of the mix (the long tail of the length distribution).
    The dedup key is the instance (first prompt line), not the action boilerplate shared by every prompt."""
    kind = rng.choice(["blocksworld", "gripper"])
    t = proto_verify.generate_pddl_task(rng, kind=kind, difficulty=rng.choice([1, 1, 2, 2, 3]))
    return Task("pddl", f"pddl: {t.prompt}\n", t.answer, t, t.prompt.split("\n")[0])


TASK_MAKERS = {"math": make_math_task, "prolog": make_prolog_task, "pddl": make_pddl_task}


def _score_value(s) -> float:
    """Verifier results come as Score(value, reason) objects or (value, reason) tuples."""
    if isinstance(s, tuple):
        return float(s[0])
    return float(getattr(s, "value", s))


def reward(task: Task, response: str) -> float:
    """Verifier score in [0, 1] for a decoded response; never raises on model output."""
    try:
        if task.domain == "math":
            return _score_value(guru_rewards.score("math", response, task.truth))
        if task.domain == "prolog":
            return _score_value(proto_verify.prolog_reward(task.truth, response))
        if task.domain == "pddl":
            return _score_value(proto_verify.pddl_reward(task.truth, response))
    except Exception:  # a verifier bug must not kill training; count it as a failure
        return 0.0
    return 0.0


def build_tasks(cfg: Config, log=print) -> tuple[list[Task], list[Task]]:
    """Seeded train / held-out task lists. The held-out set is drawn first (its own seed); the training draws are
    then decontaminated against it with guru_rewards.decontaminate (normalized exact match + n-gram Jaccard at
    threshold 1.0), so no held-out problem appears in training."""
    train, held = [], []
    for dom in cfg.domains.split(","):
        ev = _draw_unique(TASK_MAKERS[dom], random.Random(f"{cfg.seed}-eval-{dom}"), cfg.n_eval)
        # 10 % headroom for decontamination (it drops < 2 % here); the kept prefix does not depend on the headroom
        tr = _draw_unique(TASK_MAKERS[dom], random.Random(f"{cfg.seed}-train-{dom}"), cfg.n_train * 11 // 10 + 20)
        # threshold 1.0: for synthetic instances a changed number/block is a different problem, so only identical
        # (normalized) problems and identical shingle sets count as contamination
        keep = guru_rewards.decontaminate([t.key for t in tr], [t.key for t in ev], threshold=1.0)
        dropped = len(tr) - len(keep)
        tr = [tr[i] for i in keep][: cfg.n_train]
        train += tr
        held += ev
        log(f"tasks: {dom:6s} train {len(tr):4d} held-out {len(ev):3d} (decontamination dropped {dropped})")
    random.Random(f"{cfg.seed}-shuffle").shuffle(train)
    return train, held


def rl_domain_list(cfg: Config) -> list[str]:
    """The RL prompt domains: `domains` ∩ `rl_domains` (all of `domains` when rl_domains is ""). Math is left out by
    default: this model's SFT policy cannot add, and RL on math only learned digit priors and lowered it (README)."""
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


# ----------------------------------------------------------------------------------------------------------------------
# Model: local-global GPT (3 RAttention : 1 GlobalAttention), pre-norm RMSNorm, gated MLP, μP-LV
# ----------------------------------------------------------------------------------------------------------------------


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
        self.nan_inject = False
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
        y = self._out(x)
        if self.nan_inject and torch.is_grad_enabled():  # testing aid (Config.nan_step): a non-finite loss
            y = y * float("nan")
        return y

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

    def trunk_state(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if not k.startswith(("lm_head", "value_head"))}


def make_optimizer(model: GPT, cfg: Config, lr: float) -> torch.optim.Optimizer:
    groups = mup_vocab.param_groups(model, lr, cfg.mup, cfg.d_model, cfg.base_width, cfg.weight_decay,
                             readout=model.readout)
    for g in groups:
        g.pop("param_names", None)
    fused = dict(foreach=True) if next(model.parameters()).device.type != "cpu" else {}
    return torch.optim.AdamW(groups, betas=(0.9, 0.95), eps=1e-8, **fused)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = g["lr_scale"] * lr  # μP: rescale every group relatively (mup_vocab contract)


# ----------------------------------------------------------------------------------------------------------------------
# Generation: batched incremental decoding with the layers' caches
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class Generation:
    tokens: torch.Tensor  # (B, T_new) generated ids, right-padded with pad
    lengths: torch.Tensor  # (B,) number of generated tokens (EOS included when emitted)
    eos: torch.Tensor  # (B,) bool: row emitted EOS
    logprobs: torch.Tensor  # (B, T_new) log-prob of each generated token under the sampling distribution, 0 on pad
    steps: int  # sampling steps run (1 prefill + decodes); slot-steps = B * steps


@torch.no_grad()
def generate(model: GPT, prompts: list[list[int]], max_new_tokens, eos_id: int, pad_id: int,
             temperature: float = 1.0, generator: torch.Generator | None = None) -> Generation:
    """Sample continuations for a batch of prompts of different lengths with the layers' decode caches.

    Prompts are left-padded to a common length and prefilled in one parallel pass (`start` = first real position
    of each row, so RoPE positions and attention ignore the padding); then one decode step per new token for the
    whole batch. Row b stops at EOS or after max_new_tokens[b] tokens (an int or a per-row list); decoding stops
    when every row has stopped. temperature 0 = greedy (log-probs then come from the unscaled distribution).
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
    P = torch.tensor([len(p) for p in prompts], device=dev)
    Pmax, Tnew = int(P.max()), max(int(cap.max()), 0)
    idx = torch.full((B, Pmax), pad_id, dtype=torch.long, device=dev)
    for b, p in enumerate(prompts):
        idx[b, Pmax - len(p):] = torch.tensor(p, device=dev)  # left-padded
    out = torch.full((B, max(Tnew, 1)), pad_id, dtype=torch.long, device=dev)
    lps = torch.zeros((B, max(Tnew, 1)), device=dev)
    n_gen = torch.zeros(B, dtype=torch.long, device=dev)
    done = cap <= 0
    eos = torch.zeros(B, dtype=torch.bool, device=dev)
    rows = torch.arange(B, device=dev)
    steps = 0
    if Tnew > 0:
        cache = model.new_cache(B)
        logits = model.prefill(idx, Pmax - P, cache).float()  # (B, V): next-token logits of every row
        for s in range(Tnew):
            steps += 1
            if temperature > 0:
                logp = F.log_softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(logp.exp(), 1, generator=generator)[:, 0]
            else:
                logp = F.log_softmax(logits, dim=-1)
                nxt = logits.argmax(-1)
            live = ~done
            out[rows[live], s] = nxt[live]
            lps[rows[live], s] = logp[rows, nxt][live]
            n_gen += live.long()
            hit = live & (nxt == eos_id)
            eos |= hit
            done |= hit | (n_gen >= cap)
            if bool(done.all()):
                break
            logits = model.decode(torch.where(done, pad_id, nxt), cache).float()
    T = int(n_gen.max())
    return Generation(out[:, :T], n_gen, eos, lps[:, :T], steps)


# ----------------------------------------------------------------------------------------------------------------------
# SFT and held-out evaluation
# ----------------------------------------------------------------------------------------------------------------------


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


@torch.no_grad()
def evaluate(model: GPT, tok: Tok, tasks: list[Task], cfg: Config, dist: "Dist | None" = None,
             batch: int = 64, samples: dict | None = None) -> dict:
    """Held-out pass rates per domain and overall (pass = verifier score 1); ranks split the tasks and sum counts.

    `<domain>`: greedy pass@1. `<domain>_avg<k>` (when cfg.eval_samples = k > 0): the mean pass over k samples per
    task at the rollout temperature, the paper's metric (AIME avg@32). The samples come from a generator seeded
    by cfg.seed alone, so every evaluation of a run draws the same random numbers (less noise between evals) and
    evaluation never touches the training RNG streams (exact resume). `samples`, if given, receives one (prompt,
    greedy response) per domain for display."""
    model.eval()
    rank, world = (dist.rank, dist.world) if dist is not None else (0, 1)
    mine = sorted(tasks[rank::world], key=lambda t: (t.domain, len(t.prompt)))  # similar lengths share a batch
    hits: dict = defaultdict(float)
    counts: dict = defaultdict(float)
    k = cfg.eval_samples
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(cfg.seed + 7919 * rank)
    for i in range(0, len(mine), batch):
        chunk = mine[i: i + batch]
        prompts = [[tok.bos] + tok.encode(t.prompt) for t in chunk]
        g = generate(model, prompts, cfg.eval_max_new_tokens, tok.eos, tok.pad, temperature=0.0)
        for b, t in enumerate(chunk):
            text = tok.decode(g.tokens[b, : int(g.lengths[b])].tolist())
            hits[t.domain] += float(reward(t, text) >= 1.0 - 1e-6)
            counts[t.domain] += 1
            if samples is not None and t.domain not in samples:
                samples[t.domain] = (t.prompt, text)
        for j in range(0, len(chunk) * k, batch):  # k samples per task, `batch` rows per generate call
            rows = [chunk[r % len(chunk)] for r in range(j, min(j + batch, len(chunk) * k))]
            g = generate(model, [[tok.bos] + tok.encode(t.prompt) for t in rows], cfg.eval_max_new_tokens, tok.eos,
                         tok.pad, temperature=cfg.temperature, generator=gen)
            for b, t in enumerate(rows):
                text = tok.decode(g.tokens[b, : int(g.lengths[b])].tolist())
                hits[t.domain + "@"] += float(reward(t, text) >= 1.0 - 1e-6) / k
    domains = cfg.domains.split(",")
    keys = domains + ([d + "@" for d in domains] if k > 0 else [])
    vec = torch.tensor([hits[d] for d in keys] + [counts[d] for d in domains], dtype=torch.float64)
    if dist is not None and dist.enabled:
        vec = vec.to(dist.comm_device)
        torch.distributed.all_reduce(vec)
        vec = vec.cpu()
    n, cnt = len(domains), vec[len(keys):]
    res = {d: float(vec[i] / max(cnt[i], 1)) for i, d in enumerate(domains)}
    res["overall"] = float(vec[:n].sum() / max(cnt.sum(), 1))
    if k > 0:
        for i, d in enumerate(domains):
            res[f"{d}_avg{k}"] = float(vec[n + i] / max(cnt[i], 1))
        res[f"overall_avg{k}"] = float(vec[n:2 * n].sum() / max(cnt.sum(), 1))
    model.train()
    return res


# ----------------------------------------------------------------------------------------------------------------------
# Run folder, logging, checkpoints, robustness
# ----------------------------------------------------------------------------------------------------------------------


class RunLog:
    """Rank 0 prints one line per step and appends the same values as JSON to metrics.jsonl."""

    def __init__(self, run_dir: str, main: bool, resume_step: int | None = None):
        self.main, self.path = main, os.path.join(run_dir, "metrics.jsonl")
        if main and resume_step is not None and os.path.exists(self.path):
            # drop records written after the checkpoint we resume from: no step is logged twice
            keep = [ln for ln in open(self.path) if ln.strip() and json.loads(ln).get("gstep", 0) <= resume_step]
            with open(self.path, "w") as f:
                f.writelines(keep)
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


def fmt_eta(seconds: float) -> str:
    s = int(max(0, seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def save_checkpoint(path: str, state: dict) -> None:
    """Atomic: write a temp file, then os.replace (a crash never leaves a half-written checkpoint)."""
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


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
    Ctrl-C aborts at once. `restore()` puts the previous handler back (Trainer.run calls it on exit)."""

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


# ----------------------------------------------------------------------------------------------------------------------
# The pipeline: tasks → tokenizer → SFT → eval → critic warm-up → T-PPO → eval
# ----------------------------------------------------------------------------------------------------------------------


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up, then cosine decay to 10% of peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


class Trainer:
    def __init__(self, cfg: Config, dist: Dist | None = None):
        self.cfg, self.dist = cfg, dist or Dist()
        self.run_dir = os.path.join(cfg.out_dir, run_name(cfg))
        self.ckpt_path = os.path.join(self.run_dir, "ckpt.pt")
        os.makedirs(self.run_dir, exist_ok=True)
        self.device, self.amp_dtype, why = pick_device(cfg)
        if cfg.threads > 0 or self.device.type == "cpu":
            # auto on CPU: the cores divided among the ranks, at most 4 (a tiny model gains little beyond). On a
            # quiet 2-core machine 2 threads made SFT 1.6x faster than 1; more threads than free cores (other jobs,
            # or torchrun ranks) made steps ~5x slower, so pass --threads=1 when the machine is shared.
            auto = max(1, min(4, (os.cpu_count() or 1) // self.dist.world))
            torch.set_num_threads(cfg.threads if cfg.threads > 0 else auto)
            why += f"; {torch.get_num_threads()} intra-op thread(s)"
        resume_state = None
        if cfg.resume:
            path = self._rank_ckpt(self.dist.rank)
            if not os.path.exists(path):
                raise FileNotFoundError(f"--resume: no checkpoint at {path}")
            resume_state = torch.load(path, map_location="cpu", weights_only=False)
        self.log = RunLog(self.run_dir, self.dist.main, resume_state["gstep"] if resume_state else None)
        self.log.print(f"train.py | python {platform.python_version()} | torch {torch.__version__} | "
                       f"numpy {np.__version__} | world {self.dist.world}")
        self.log.print(f"device: {self.device} ({why})")
        self.log.print("config: " + json.dumps(dataclasses.asdict(cfg)))
        if self.dist.main:
            with open(os.path.join(self.run_dir, "config.json"), "w") as f:
                json.dump(dataclasses.asdict(cfg), f, indent=1)
        seed_everything(cfg.seed)
        # Rank 0 builds the task sets once and pickles them into the run folder; other ranks and --resume load that
        # file, so every process sees the same tasks even if a generator is not reproducible across processes.
        tasks_path = os.path.join(self.run_dir, "tasks.pkl")
        if self.dist.main and not (cfg.resume and os.path.exists(tasks_path)):
            src = os.path.join(cfg.init_from, "tasks.pkl") if cfg.init_from else ""
            if src and os.path.exists(src):  # RL from another run's SFT policy: same SFT / held-out tasks
                with open(src, "rb") as f:
                    self.train_tasks, self.eval_tasks = pickle.load(f)[:2]
            else:
                self.train_tasks, self.eval_tasks = build_tasks(cfg, log=self.log.print)
            if cfg.rl_prompts == "fresh" and cfg.rl_steps > 0:
                self.rl_tasks = build_rl_tasks(cfg, self.eval_tasks, log=self.log.print)
            else:
                self.rl_tasks = [t for t in self.train_tasks if t.domain in rl_domain_list(cfg)]
            tmp = tasks_path + ".tmp"
            with open(tmp, "wb") as f:
                pickle.dump((self.train_tasks, self.eval_tasks, self.rl_tasks), f)
            os.replace(tmp, tasks_path)
        self.dist.barrier()
        if not hasattr(self, "train_tasks"):
            with open(tasks_path, "rb") as f:
                self.train_tasks, self.eval_tasks, self.rl_tasks = pickle.load(f)
            self.log.print(f"tasks: loaded {len(self.train_tasks)} train / {len(self.eval_tasks)} held-out / "
                           f"{len(self.rl_tasks)} RL from {tasks_path}")
        if self.dist.main:
            corpus = "\n".join(t.prompt + t.target for t in self.train_tasks)
            enc = build_tokenizer(cfg, corpus, self.run_dir, log=self.log.print)
        self.dist.barrier()
        if not self.dist.main:
            enc = named_encoding(cfg.tokenizer) if cfg.tokenizer != "bpe" else \
                make_encoding(load_ranks(os.path.join(self.run_dir, "tokenizer.tiktoken")))
        self.tok = Tok(enc)
        self.train_ex = [encode_task(self.tok, t, cfg.max_seq_len) for t in self.train_tasks]
        self.by_domain = [[i for i, t in enumerate(self.train_tasks) if t.domain == d] for d in cfg.domains.split(",")]
        lens = sorted(len(e[0]) - e[1] for e in self.train_ex)
        self.log.print(f"response tokens: p50 {lens[len(lens) // 2]} p90 {lens[int(len(lens) * 0.9)]} "
                       f"max {lens[-1]} (p90/p50 {lens[int(len(lens) * 0.9)] / max(1, lens[len(lens) // 2]):.1f})")
        torch.manual_seed(cfg.seed)  # same init on every rank (also broadcast below)
        self.policy = GPT(cfg, self.tok.n_vocab).to(self.device)
        self.dist.broadcast_params(self.policy)
        n_params = sum(p.numel() for p in self.policy.parameters())
        self.log.print(f"model: {n_params / 1e6:.2f}M params, layers {self.policy.layer_pattern()}, "
                       f"width {cfg.d_model}, vocab {self.tok.n_vocab}, μP regime {cfg.mup}")
        self.popt = TrainOpt(make_optimizer(self.policy, cfg, cfg.lr), self.policy.parameters(), self.dist,
                             cfg.grad_clip)
        self.critic = self.copt = self.pool = None
        self.phase, self.step, self.gstep = "sft", 0, 0
        self.summary: dict = {"run": run_name(cfg), "algo": cfg.algo, "preset": cfg.preset, "seed": cfg.seed}
        self.rl_state: dict = {}
        self.interrupt = Interrupt()
        seed_everything(cfg.seed + 1000 * self.dist.rank)  # data order / sampling differ per rank
        if resume_state is not None:
            self._load(resume_state)
            self.log.print(f"resumed from {self.ckpt_path}: phase {self.phase}, step {self.step}, gstep {self.gstep}")
        elif cfg.init_from:
            self._init_from(cfg.init_from)

    def _init_from(self, run_dir: str) -> None:
        """Start RL from another run's SFT policy (same tasks and tokenizer required), skipping SFT."""
        st = torch.load(os.path.join(run_dir, "ckpt.pt"), map_location="cpu", weights_only=False)
        if "after_sft" not in st["summary"] or not os.path.exists(os.path.join(run_dir, "policy_sft.pt")):
            raise ValueError(f"init_from={run_dir!r}: no finished SFT phase (ckpt.pt + policy_sft.pt) there")
        st["policy"] = torch.load(os.path.join(run_dir, "policy_sft.pt"), map_location="cpu")["policy"]
        theirs = load_ranks(os.path.join(run_dir, "tokenizer.tiktoken"))
        if theirs != dict(self.tok.enc._mergeable_ranks):
            raise ValueError(f"init_from={run_dir!r}: its tokenizer differs from this run's")
        self.policy.load_state_dict(st["policy"])
        self.summary["after_sft"] = st["summary"]["after_sft"]
        self.summary["init_from"] = run_dir
        self.phase = "critic" if self.cfg.rl_steps > 0 else "done"
        self.log.print(f"init_from {run_dir}: SFT policy loaded, after-SFT eval {st['summary']['after_sft']}")

    # -- checkpoints ---------------------------------------------------------------------------------------------------
    def _state(self) -> dict:
        st = {"phase": self.phase, "step": self.step, "gstep": self.gstep, "summary": self.summary,
              "policy": self.policy.state_dict(), "popt": self.popt.state_dict(), "rl_state": self.rl_state,
              "config": dataclasses.asdict(self.cfg)}
        if self.critic is not None:
            st["critic"], st["copt"] = self.critic.state_dict(), self.copt.state_dict()
        if self.pool is not None:
            st["pool"] = self.pool
        st["rng"] = rng_state()
        return st

    def _load(self, st: dict) -> None:
        self.phase, self.step, self.gstep, self.summary = st["phase"], st["step"], st["gstep"], st["summary"]
        self.policy.load_state_dict(st["policy"])
        if "critic" in st:  # RL phase: build critic + RL optimizers first, then load their states
            self._make_critic()
            self.critic.load_state_dict(st["critic"])
            self.copt.load_state_dict(st["copt"])
        self.popt.load_state_dict(st["popt"])
        self.rl_state = st.get("rl_state", {})
        self.pool = st.get("pool")
        set_rng_state(st["rng"])

    def checkpoint(self) -> None:
        """Rank 0 writes ckpt.pt; other ranks write ckpt.rank<r>.pt (their own pool, prompt cursor and RNG)."""
        save_checkpoint(self._rank_ckpt(self.dist.rank), self._state())
        self.dist.barrier()

    def _rank_ckpt(self, rank: int) -> str:
        return self.ckpt_path if rank == 0 else os.path.join(self.run_dir, f"ckpt.rank{rank}.pt")

    def _maybe_stop(self) -> bool:
        """Checkpoint and stop on Ctrl-C or when the --stop_after testing aid is reached."""
        stop = self.interrupt.hit or (self.cfg.stop_after >= 0 and self.gstep >= self.cfg.stop_after)
        if self.dist.enabled:
            t = torch.tensor([float(stop)], device=self.dist.comm_device)
            torch.distributed.all_reduce(t)
            stop = bool(t.item() > 0)
        if stop:
            self.checkpoint()
            self.log.print(f"stopped at gstep {self.gstep}; checkpoint {self.ckpt_path} (continue with --resume)")
        return stop

    # -- SFT -----------------------------------------------------------------------------------------------------------
    def sft(self) -> bool:
        cfg, t0, toks = self.cfg, time.time(), 0
        first = self.step
        while self.step < cfg.sft_steps:
            lr = lr_at(self.step, cfg.sft_steps, cfg.warmup, cfg.lr)
            set_lr(self.popt, lr)
            # one domain per batch, cycling: balances the mix and pads short math rows only to math lengths
            pool = self.by_domain[self.step % len(self.by_domain)]
            idx = [pool[i] for i in torch.randint(len(pool), (cfg.sft_batch,)).tolist()]
            x, y, m = pad_batch([self.train_ex[i][0] for i in idx], [self.train_ex[i][1] for i in idx],
                                self.tok.pad, self.device)
            loss = lm_loss(self.policy, x, y, m, self.amp_dtype)
            self.popt.zero_grad()
            if torch.isfinite(loss):
                loss.backward()
            else:  # non-finite loss: skip the update, keep going (logged below)
                for p in self.policy.parameters():
                    p.grad = torch.full_like(p, float("nan"))
            self.popt.step()
            self.step += 1
            self.gstep += 1
            toks += int(m.sum())
            lval = self.dist.mean(float(loss.detach()))
            if self.step % cfg.log_every == 0 or self.step == cfg.sft_steps or self.step == first + 1:
                dt = time.time() - t0
                tps = toks * self.dist.world / max(dt, 1e-9)
                eta = dt / (self.step - first) * (cfg.sft_steps - self.step)
                self.log.print(f"sft  {self.step:4d}/{cfg.sft_steps} | loss {lval:.4f} | lr {lr:.2e} | "
                               f"tok/s {tps:7.0f} | {dt:5.1f} s | eta {fmt_eta(eta)}"
                               + (" | SKIPPED non-finite" if self.popt.last_skipped else ""))
            self.log.metrics({"phase": "sft", "step": self.step, "gstep": self.gstep, "loss": lval, "lr": lr,
                              "skipped": self.popt.last_skipped, "time": time.time() - t0})
            if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                self.checkpoint()
            if self._maybe_stop():
                return False
        return True

    # -- main ----------------------------------------------------------------------------------------------------------
    def run(self) -> dict:
        try:
            return self._run()
        finally:
            self.interrupt.restore()

    def _run(self) -> dict:
        cfg, t_start = self.cfg, time.time()
        if self.phase == "sft":
            if not self.sft():
                return self.summary
            self.phase, self.step = "sft_eval", 0
            if self.dist.main:  # the SFT policy on its own: RL runs can start from it (init_from, bench)
                save_checkpoint(os.path.join(self.run_dir, "policy_sft.pt"), {"policy": self.policy.state_dict()})
            self.checkpoint()
        if self.phase == "sft_eval":
            t0 = time.time()
            samples: dict = {}
            res = evaluate(self.policy, self.tok, self.eval_tasks, cfg, self.dist, samples=samples)
            self.summary["after_sft"] = res
            for dom, (p, r) in samples.items():
                self.log.print(f"  sample [{dom}] {p.splitlines()[0][:70]!r}… → {r[:70]!r}")
            self.log.print(f"eval after SFT ({time.time() - t0:.1f} s): " +
                           " | ".join(f"{k} {v:.2f}" for k, v in res.items()))
            self.log.metrics({"phase": "eval", "gstep": self.gstep, "after": "sft", **res})
            self.phase = "critic" if cfg.rl_steps > 0 else "done"
            self.checkpoint()
        if self.phase in ("critic", "rl"):
            if not self.rl():
                return self.summary
        self.summary["wall_s"] = self.summary.get("wall_s", 0.0) + time.time() - t_start
        if self.dist.main:
            plot_curves(self.run_dir)
        self.summary["skipped_updates"] = self.popt.skipped + (self.copt.skipped if self.copt else 0)
        if self.dist.main:
            with open(os.path.join(self.run_dir, "summary.json"), "w") as f:
                json.dump(self.summary, f, indent=1)
        self.phase = "done"
        self.checkpoint()
        self.log.print(f"summary: {json.dumps(self.summary)}")
        return self.summary

    # -- critic warm-up + T-PPO -------------------------------------------------------------------------------------
    def _make_critic(self) -> None:
        """Critic = SFT policy trunk + scalar head (V ≡ 0 at start); fresh AdamW for both models' RL phase.
        Built under a forked RNG so that creating it never shifts the run's random stream (exact resume)."""
        cfg = self.cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 17)
            self.critic = GPT(cfg, self.tok.n_vocab, head="value").to(self.device)
        missing, unexpected = self.critic.load_state_dict(self.policy.trunk_state(), strict=False)
        assert not unexpected and all(k.startswith("value_head") for k in missing), (missing, unexpected)
        # tppo_step sums gradients over ranks itself (all_reduce hook) and clips; TrainOpt only guards NaN/inf
        self.copt = TrainOpt(make_optimizer(self.critic, cfg, cfg.critic_lr), self.critic.parameters(),
                             Dist.off(), clip=0.0)
        self.popt = TrainOpt(make_optimizer(self.policy, cfg, cfg.rl_lr), self.policy.parameters(), Dist.off(),
                             clip=0.0)

    def _tppo_config(self):
        cfg = self.cfg
        W = cfg.window if cfg.algo == "tppo" else cfg.max_response  # PPO = T-PPO with W >= L_max
        return tppo.TPPOConfig(window=W, max_response=cfg.max_response, slots=cfg.slots, group_size=cfg.group_size,
                               critic_warmup=cfg.critic_warmup, minibatch_size=max(1, cfg.slots // cfg.minibatches),
                               nll_weight=cfg.nll_weight, whiten=cfg.whiten, group_filter=cfg.group_filter,
                               lam_floor=cfg.lam_floor, ignore_last=min(8, max(W // 4, 1)),
                               max_grad_norm=cfg.grad_clip, seed=cfg.seed)

    def _next_prompt(self):
        """Fresh prompt stream of this rank: training tasks in a per-rank shuffled order, cycling."""
        st = self.rl_state
        if not st.get("order") or st["cursor"] >= len(st["order"]):
            order = list(range(len(self.rl_tasks)))
            random.Random(f"{self.cfg.seed}-rl-{self.dist.rank}-{st.get('epoch', 0)}").shuffle(order)
            st.update(order=order, cursor=0, epoch=st.get("epoch", 0) + 1)
        i = st["order"][st["cursor"]]
        st["cursor"] += 1
        return [self.tok.bos] + self.tok.encode(self.rl_tasks[i].prompt), i

    def _generate_fn(self, contexts, limits):
        g = generate(self.policy, contexts, limits, self.tok.eos, self.tok.pad, temperature=self.cfg.temperature)
        self._gen_slot_steps += len(contexts) * g.steps
        self._gen_tokens += int(g.lengths.sum())
        L = g.lengths.tolist()
        return [g.tokens[b, : L[b]].tolist() for b in range(len(contexts))], g.eos.tolist()

    def _reward_fn(self, r) -> float:
        """Called by tppo_step for finished rollouts only."""
        self.rl_state.setdefault("finished_lens", []).append(len(r.response))
        text = self.tok.decode([t for t in r.response if t != self.tok.eos])
        return reward(self.rl_tasks[r.meta], text)

    def rl(self) -> bool:
        """Critic warm-up (tppo steps < critic_warmup update only the critic, on Monte-Carlo returns of the frozen
        SFT policy's finished rollouts), then T-PPO/PPO steps, eval every eval_every steps, final eval."""
        cfg, tcfg = self.cfg, self._tppo_config()
        if self.critic is None:
            self._make_critic()
        pool = tppo.RolloutPool.from_config(tcfg)
        if self.pool is not None:
            pool.load_state_dict(self.pool)
        total = cfg.critic_warmup + cfg.rl_steps
        all_reduce = None
        if self.dist.enabled:
            def all_reduce(t):
                torch.distributed.all_reduce(t)
                return t
        t0, first = time.time(), self.step
        hist = self.rl_state.setdefault("hist", [])
        while self.step < total:
            self.phase = "critic" if self.step < cfg.critic_warmup else "rl"
            self._gen_slot_steps, self._gen_tokens = 0, 0
            self.policy.nan_inject = self.step == cfg.nan_step  # testing aid: NaN loss → update must be skipped
            skipped_before = self.popt.skipped + self.copt.skipped
            # linear warm-up of both RL optimizers (the critic from its first step, the policy from its first update)
            k_pol = self.step - cfg.critic_warmup
            lr_c = cfg.critic_lr * min(1.0, (self.step + 1) / max(cfg.rl_warmup, 1))
            lr_p = cfg.rl_lr * min(1.0, (max(k_pol, 0) + 1) / max(cfg.rl_warmup, 1))
            set_lr(self.copt, lr_c)
            set_lr(self.popt, lr_p)
            ts = time.time()
            m = tppo.tppo_step(pool, tcfg, policy=self.policy, critic=self.critic, policy_opt=self.popt,
                               critic_opt=self.copt, generate_fn=self._generate_fn, reward_fn=self._reward_fn,
                               next_prompt=self._next_prompt, step=self.step, pad_id=self.tok.pad,
                               device=self.device, all_reduce=all_reduce)
            self.policy.nan_inject = False
            # training clock of the RL phase (generation + updates; held-out evals excluded)
            self.rl_state["train_time"] = self.rl_state.get("train_time", 0.0) + time.time() - ts
            self.step += 1
            self.gstep += 1
            skipped = self.popt.skipped + self.copt.skipped - skipped_before
            # measured decode utilization: generated tokens / (rows × sampling steps actually run)
            util = self.dist.mean(self._gen_tokens / max(self._gen_slot_steps, 1))
            m.update({"phase": self.phase, "gstep": self.gstep, "skipped_updates": skipped, "lr/policy": lr_p,
                      "lr/critic": lr_c,
                      "gen/util_measured": util, "time/step_wall_s": time.time() - ts})
            if cfg.eval_every and self.phase == "rl" and (self.step - cfg.critic_warmup) % cfg.eval_every == 0 \
                    and self.step < total:
                res = evaluate(self.policy, self.tok, self.eval_tasks, cfg, self.dist)
                m.update({f"eval/{k}": v for k, v in res.items()})
                hist.append({"step": self.step - cfg.critic_warmup, "time": self.rl_state["train_time"], **res})
            self.log.metrics({k: (float(v) if isinstance(v, (int, float)) else v) for k, v in m.items()})
            dt = time.time() - t0
            eta = dt / (self.step - first) * (total - self.step)
            self.log.print(
                f"{'critic' if self.phase == 'critic' else cfg.algo:6s} {self.step:3d}/{total} | "
                f"reward {m['reward/mean']:.2f} | pass {m['reward/pass']:.2f} | "
                + (f"policy {m['policy/loss']:+.3f} | " if "policy/loss" in m else "policy   --   | ")
                + f"value {m['value/loss']:.3f} | clipfrac {m.get('policy/clipfrac', 0.0):.2f} | "
                f"util {m['gen/util_measured']:.2f} | "
                f"tok/s {m['gen/tokens_per_s']:6.0f} | {m['time/step_s']:4.1f} s | eta {fmt_eta(eta)}"
                + (f" | SKIPPED {skipped} non-finite update(s)" if skipped else "")
                + ("".join(f" | held-out {k[5:]} {v:.2f}" for k, v in m.items() if k.startswith("eval/"))))
            self.pool = pool.state_dict()
            if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                self.checkpoint()
            if self._maybe_stop():
                return False
        res = evaluate(self.policy, self.tok, self.eval_tasks, cfg, self.dist)
        self.summary["after_rl"] = res
        t_train = self.rl_state.get("train_time", 0.0)
        hist.append({"step": cfg.rl_steps, "time": t_train, **res})
        self.summary["rl"] = {"algo": cfg.algo, "window": tcfg.window, "max_response": tcfg.max_response,
                              "steps": cfg.rl_steps, "critic_warmup": cfg.critic_warmup,
                              "time_s": t_train, "eval_history": hist}
        lens = sorted(self.rl_state.get("finished_lens", [0]))
        self.summary["rl"].update(resp_len_p50=lens[len(lens) // 2], resp_len_p90=lens[int(0.9 * (len(lens) - 1))],
                                  finished=len(lens))
        self.log.print(f"eval after RL: " + " | ".join(f"{k} {v:.2f}" for k, v in res.items()))
        self.log.metrics({"phase": "eval", "gstep": self.gstep, "after": "rl", **res})
        return True


def run_bench(cfg: Config) -> dict:
    """T-PPO vs PPO, same everything except the window: per seed, one SFT run (or the SFT policy of an existing run,
    `bench_init`), then RL from that SFT checkpoint with algo=tppo (W = cfg.window) and algo=ppo (W = L_max).
    Reports RL wall-clock, time to reach the target held-out pass rate, final pass rates, measured generation
    utilization, generated tokens/s and the generation share of a step, with ratios (bench.json + a table)."""
    rows = []
    for i in range(cfg.bench_seeds):
        seed = cfg.seed + i
        if cfg.bench_init:
            sft_dir = cfg.bench_init.format(seed=seed)
        else:
            sft = dataclasses.replace(cfg, seed=seed, rl_steps=0, run_name=f"bench-sft-s{seed}", resume=False)
            sft_dir = os.path.join(cfg.out_dir, sft.run_name)
            if not os.path.exists(os.path.join(sft_dir, "summary.json")):
                Trainer(sft).run()
        for algo in ("tppo", "ppo"):
            rc = dataclasses.replace(cfg, seed=seed, algo=algo, run_name=f"bench-{algo}-s{seed}", init_from=sft_dir,
                                     resume=False)
            Trainer(rc).run()
            rows.append(bench_row(os.path.join(cfg.out_dir, rc.run_name), cfg.bench_gain))
    table = bench_table(rows, cfg.bench_gain)
    print(table)
    out = {"rows": rows, "gain": cfg.bench_gain, "table": table}
    with open(os.path.join(cfg.out_dir, "bench.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


def bench_metric(res: dict) -> str:
    """The held-out rate the bench targets: overall avg@k when the runs sampled it (less noisy), else greedy."""
    return next((k for k in res if k.startswith("overall_avg")), "overall")


def bench_row(run_dir: str, gain: float) -> dict:
    """One bench row from a finished RL run folder (summary.json + metrics.jsonl)."""
    summ = json.load(open(os.path.join(run_dir, "summary.json")))
    recs = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"))]
    rl = [r for r in recs if r.get("phase") in ("critic", "rl")]
    key = bench_metric(summ["after_sft"])
    target = summ["after_sft"][key] + gain
    hit = [h["time"] for h in summ["rl"]["eval_history"] if h.get(key, -1.0) >= target - 1e-9]
    return {"algo": summ["algo"], "seed": summ["seed"], "window": summ["rl"]["window"], "metric": key,
            "rl_time_s": summ["rl"]["time_s"], "time_to_target_s": hit[0] if hit else None,
            "after_sft": summ["after_sft"][key], "final_pass": summ["after_rl"][key],
            "final_greedy": summ["after_rl"]["overall"],
            "util": sum(r["gen/util_measured"] for r in rl) / max(len(rl), 1),
            "gen_tok_s": sum(r["gen/tokens"] for r in rl) / max(sum(r["gen/time_s"] for r in rl), 1e-9),
            # share of the RL step spent generating: the most a faster generator could save is this fraction
            "gen_share": sum(r["gen/time_s"] for r in rl) / max(sum(r["time/step_wall_s"] for r in rl), 1e-9),
            "len_p50": summ["rl"]["resp_len_p50"], "len_p90": summ["rl"]["resp_len_p90"]}


def bench_table(rows: list[dict], gain: float) -> str:
    def mean(algo, k):
        v = [r[k] for r in rows if r["algo"] == algo and r[k] is not None]
        return sum(v) / len(v) if v else float("nan")

    metric = rows[0]["metric"] if rows else "overall"
    lines = [f"| algo | W | seeds | RL wall-clock s | time to target s (reached) | {metric} after SFT | "
             f"{metric} final | greedy final | gen util | gen tok/s | gen share of step | resp len p50 / p90 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for algo in ("tppo", "ppo"):
        rs = [r for r in rows if r["algo"] == algo]
        reached = sum(r["time_to_target_s"] is not None for r in rs)
        lines.append(f"| {algo} | {rs[0]['window']} | {len(rs)} | {mean(algo, 'rl_time_s'):.0f} | "
                     f"{mean(algo, 'time_to_target_s'):.0f} ({reached}/{len(rs)}) | {mean(algo, 'after_sft'):.3f} | "
                     f"{mean(algo, 'final_pass'):.3f} | {mean(algo, 'final_greedy'):.3f} | {mean(algo, 'util'):.2f} | "
                     f"{mean(algo, 'gen_tok_s'):.0f} | {mean(algo, 'gen_share'):.2f} | "
                     f"{mean(algo, 'len_p50'):.0f} / {mean(algo, 'len_p90'):.0f} |")
    ratio = lambda k: mean("ppo", k) / max(mean("tppo", k), 1e-9)  # noqa: E731
    lines.append(f"\nratios PPO / T-PPO: RL wall-clock {ratio('rl_time_s'):.2f}x, time to target "
                 f"{ratio('time_to_target_s'):.2f}x (target: {metric} after SFT + {gain}); T-PPO / PPO: util "
                 f"{mean('tppo', 'util') / max(mean('ppo', 'util'), 1e-9):.2f}x, gen tok/s "
                 f"{mean('tppo', 'gen_tok_s') / max(mean('ppo', 'gen_tok_s'), 1e-9):.2f}x; bound on the PPO / T-PPO "
                 f"wall-clock ratio if T-PPO generated for free and updated as fast as PPO: 1 / (1 - PPO gen share) = "
                 f"{1 / max(1 - mean('ppo', 'gen_share'), 1e-9):.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    try:
        cfg = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        raise SystemExit(2)
    if cfg.resume:  # continue with the run's own config; explicit overrides on the command line still apply
        path = os.path.join(cfg.out_dir, run_name(cfg), "config.json")
        if os.path.exists(path):
            saved = json.load(open(path))
            given = {a[2:].split("=")[0].replace("-", "_") for a in (sys.argv[1:] if argv is None else argv)
                     if a.startswith("--")}
            for k, v in saved.items():
                if k not in given and k != "resume":
                    setattr(cfg, k, v)
    if cfg.preset == "bench" and not cfg.resume:
        return run_bench(cfg)
    trainer = Trainer(cfg)
    summary = trainer.run()
    if trainer.dist.enabled:
        torch.distributed.destroy_process_group()
    return summary


if __name__ == "__main__":
    main()
