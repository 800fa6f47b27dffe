"""Tests for train.py: config/CLI, tokenizer, task sets, model, cached generation, checkpoints, smoke run, RL
robustness (resume mid-RL, NaN skip) and 2-process data-parallel training. All shapes are tiny (CPU, shared)."""
import collections
import json
import os
import pickle
import random
import re
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import train
from train import GPT, Config, bpe_train, bpe_train_reference, generate, make_encoding, parse_args

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

@pytest.fixture(autouse=True)
def _one_thread():
    """train.py runs tiny models on 1 CPU thread (see setup); on a shared 2-core machine 2 intra-op threads made
    these tests ~5x slower. Restored afterwards so other test files keep conftest's setting."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# A tiny end-to-end configuration (smaller than the smoke preset) for in-process runs.
TINY = ["--preset=smoke", "--threads=1", "--n_train=16", "--n_eval=2", "--d_model=16", "--n_heads=2", "--n_kv_heads=1",
        "--base_width=16", "--sft_batch=4", "--max_seq_len=160", "--eval_max_new_tokens=24", "--slots=4",
        "--group_size=2", "--window=8", "--max_response=24", "--log_every=1"]


# ---------------------------------------------------------------------------------------------------------------------
# Config / CLI
# ---------------------------------------------------------------------------------------------------------------------

def test_config_overrides_are_coerced_by_field_type():
    cfg = parse_args(["--d_model=64", "--lr=1e-3", "--resume", "--tokenizer=bpe", "--algo", "ppo",
                      "--eval_every=0", "--resume=false"])
    assert cfg.d_model == 64 and isinstance(cfg.d_model, int)
    assert cfg.lr == 1e-3 and isinstance(cfg.lr, float)
    assert cfg.resume is False and cfg.algo == "ppo" and cfg.eval_every == 0
    with pytest.raises(ValueError, match="d_model expects int"):
        parse_args(["--d_model=wide"])


def test_unknown_key_is_rejected_with_the_valid_names():
    with pytest.raises(ValueError) as e:
        parse_args(["--d_modle=64"])
    assert "d_modle" in str(e.value) and "d_model" in str(e.value) and "sft_steps" in str(e.value)
    with pytest.raises(ValueError, match="preset"):
        parse_args(["--preset=huge"])
    with pytest.raises(ValueError, match="algo"):
        parse_args(["--algo=grpo"])


def test_presets_set_groups_and_explicit_overrides_win():
    smoke = parse_args(["--preset", "smoke"])
    default = parse_args([])
    assert smoke.preset == "smoke" and smoke.sft_steps < default.sft_steps and smoke.d_model < default.d_model
    assert smoke.rl_steps > 0 and smoke.max_response > smoke.window  # RL with real truncation
    over = parse_args(["--sft_steps=3", "--preset=smoke"])  # order does not matter: preset first, then overrides
    assert over.sft_steps == 3 and over.d_model == smoke.d_model


def test_help_is_generated_from_every_field(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = capsys.readouterr().out
    for f in train.fields(Config):
        assert f"--{f.name}=" in out
    assert "BPE vocab" in out  # the field's doc comment


# One or more invalid values for every Config field (with the default preset as context for cross-field checks).
INVALID = {
    "run_name": ["../x", "a/b"], "out_dir": [""], "preset": ["huge"], "seed": ["-1", "1.5"],
    "device": ["tpu", "cuda:x"], "dtype": ["int8"], "threads": ["-1", "1000"], "resume": ["maybe"],
    "domains": ["chess", "", "math,math"], "n_train": ["-5", "0"], "n_eval": ["0"], "rl_prompts": ["test"], "eval_set": ["train", ""],
    "n_rl": ["-1", "0"], "rl_domains": ["chess"], "tokenizer": ["nope"], "vocab_size": ["100"], "n_layers": ["0"],
    "d_model": ["0", "36", "30"], "n_heads": ["0", "3"], "n_kv_heads": ["0", "3"], "attn_window": ["0"],
    "mlp_mult": ["0"], "max_seq_len": ["1", "400"], "mup": ["xx"], "base_width": ["0"], "sft_steps": ["-1"],
    "sft_batch": ["0"], "lr": ["nan", "0", "-1", "inf"], "weight_decay": ["-0.1", "nan"], "warmup": ["-1"],
    "grad_clip": ["-1", "inf"], "eval_every": ["-1"], "eval_max_new_tokens": ["0"], "eval_samples": ["-1"],
    "eval_batch": ["0"], "n_curate": ["0"], "curate_samples": ["1"], "algo": ["grpo"], "refill": ["yes"], "rl_steps": ["-1"],
    "window": ["0", "401"], "max_response": ["0", "640"], "slots": ["0", "1"], "group_size": ["0", "1"],
    "temperature": ["0", "nan", "-1"], "rl_lr": ["0", "nan"], "group_filter": ["maybe"], "rl_warmup": ["-1"],
    "minibatches": ["0", "33"], "critic_lr": ["-1", "inf"], "rl_weight_decay": ["-1"], "critic_warmup": ["-1"],
    "nll_weight": ["-1", "nan"], "lam_floor": ["1.5", "-0.1"], "whiten": ["maybe"], "log_every": ["0"],
    "ckpt_every": ["-1"], "stop_after": ["-2"], "init_from": ["/nonexistent/run"], "bench_seeds": ["0"],
    "bench_gain": ["nan", "2"], "bench_init": ["out/{x}"], "teacher_noise": ["-0.1", "1.5", "nan"],
    "rl_finished": ["-1"], "task_budget": ["maybe"], "sft_mix": ["1,2", "0,1,1", "a,b,c", "nan,1,1", "1,1,-2"],
}


@pytest.fixture
def no_training(monkeypatch):
    """main() must stop at validation: an accepted invalid value would start a run, so fail loudly instead."""
    def accepted(*a, **kw):
        raise AssertionError("invalid config accepted: training started")
    monkeypatch.setattr(train, "train", accepted)
    monkeypatch.setattr(train, "run_bench", accepted)


def _exit2_line(capsys, argv) -> str:
    """Run train.main(argv) in-process; assert exit status 2 and one stderr line; return that line."""
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2, err
    assert err.startswith("train.py: error: ") and "\n" not in err, err
    return err


def test_invalid_value_table_covers_every_config_field():
    """A new Config field without an entry (i.e. without a check and a test of it) fails here."""
    assert set(INVALID) == {f.name for f in train.fields(Config)}


@pytest.mark.parametrize("field,value", [(k, v) for k, vs in INVALID.items() for v in vs])
def test_every_invalid_config_value_exits_2_naming_the_field(field, value, capsys, no_training):
    err = _exit2_line(capsys, [f"--{field}={value}"])
    assert re.search(rf"(?<!\w){field}(?!\w)", err), err


def test_boundary_values_of_config_fields_are_accepted():
    """The checks are not stricter than the code: edge values that the pipeline handles still parse."""
    for argv in (["--threads=0", "--stop_after=-1", "--grad_clip=0", "--eval_samples=0", "--lam_floor=0",
                  "--warmup=0", "--ckpt_every=0", "--eval_every=0", "--weight_decay=0", "--nll_weight=0"],
                 ["--lam_floor=1", "--window=400", "--max_seq_len=401", "--minibatches=32", "--seed=0",
                  "--bench_gain=-1", "--vocab_size=259", "--d_model=8", "--n_heads=4", "--n_kv_heads=4"],
                 ["--rl_steps=0", "--n_curate=0", "--curate_samples=0", "--n_rl=0", "--max_seq_len=2"],
                 ["--algo=ppo", "--window=100000"], ["--group_filter=false", "--group_size=1"],
                 ["--rl_prompts=sft", "--n_rl=0"], ["--tokenizer=cl100k_base"], ["--device=cpu", "--dtype=float32"],
                 ["--bench_init=out/default-tppo-s{seed}", "--run_name=my-run.2"]):
        parse_args(argv)


# ---------------------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------------------

def _corpus(seed=0, n=300):
    rng = random.Random(seed)
    return "\n".join(f"math: Add {rng.randint(1, 9)} {rng.randint(1, 9)}. pick-up b{rng.randint(1, 5)} "
                     f"sibling(ann, X) :- parent(P, X). {rng.choice(['foo', 'bar', 'baz'])}" for _ in range(n))


def test_incremental_bpe_equals_reference_trainer():
    text = _corpus()
    assert bpe_train(text, 340) == bpe_train_reference(text, 340)


def test_bpe_is_deterministic_and_round_trips_through_tiktoken(tmp_path):
    text = _corpus(1)
    r1, r2 = bpe_train(text, 330), bpe_train(text, 330)
    assert r1 == r2 and sorted(r1.values()) == list(range(len(r1)))  # dense ranks
    path = str(tmp_path / "t.tiktoken")
    train.save_ranks(r1, path)
    line = open(path).readline().split()
    assert len(line) == 2 and line[1] == "0"  # "base64(token) rank"
    assert train.load_ranks(path) == r1
    tok = train.Tok(make_encoding(r1))
    for s in [text[:500], "unseen ünïcödé ☃ text\n\twith  spaces", "(stack a b)\n42"]:
        assert tok.decode(tok.encode(s)) == s
    assert len(tok.encode("sibling(ann, X)")) < len("sibling(ann, X)".encode())  # merges are used
    assert {tok.bos, tok.eos, tok.pad} == {len(r1), len(r1) + 1, len(r1) + 2}


def test_named_tiktoken_encoding_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty cache
    with pytest.raises(RuntimeError, match="not available offline"):
        train.named_encoding("cl100k_base")


# ---------------------------------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------------------------------

def test_train_and_heldout_task_sets_are_disjoint_and_engine_labelled():
    cfg = parse_args(["--n_train=40", "--n_eval=12", "--teacher_noise=0"])  # (slipped targets: their own test)
    tr, ev = train.build_tasks(cfg, log=lambda *a: None)
    for dom in ("math", "prolog", "pddl"):
        assert sum(t.domain == dom for t in ev) == 12
        assert sum(t.domain == dom for t in tr) > 20
    assert not ({t.key for t in tr} & {t.key for t in ev})
    assert not ({t.prompt for t in tr} & {t.prompt for t in ev})
    for t in tr[:30] + ev:  # the engine-labelled target earns full reward, a wrong answer earns 0
        assert train.reward(t, t.target) == 1.0, (t.domain, t.prompt, t.target)
        assert train.reward(t, "no idea") == 0.0


def test_sft_mix_sets_each_domains_share_of_the_sft_demonstrations_and_keeps_their_total():
    """--sft_mix=1,1,2 gives pddl half of 3 × n_train demonstrations; the held-out draw is untouched."""
    args = ["--n_train=40", "--n_eval=6", "--teacher_noise=0"]
    tr0, ev0 = train.build_tasks(parse_args(args), log=lambda *a: None)
    tr, ev = train.build_tasks(parse_args(args + ["--sft_mix=1,1,2"]), log=lambda *a: None)
    assert [sum(t.domain == d for t in tr0) for d in ("math", "prolog", "pddl")] == [40, 40, 40]
    assert [sum(t.domain == d for t in tr) for d in ("math", "prolog", "pddl")] == [30, 30, 60]
    assert [t.key for t in ev] == [t.key for t in ev0]
    assert not ({t.key for t in tr} & {t.key for t in ev})


def test_noisy_teacher_slips_one_step_of_a_fraction_of_sft_demonstrations_only():
    """teacher_noise: that fraction of the SFT targets carries one slipped step (the verifier scores it 0, and it
    shares its start with the clean chain); held-out tasks and their targets are never touched."""
    clean_tr, clean_ev = train.build_tasks(parse_args(["--n_train=60", "--n_eval=8", "--teacher_noise=0"]),
                                           log=lambda *a: None)
    tr, ev = train.build_tasks(parse_args(["--n_train=60", "--n_eval=8", "--teacher_noise=0.4"]), log=lambda *a: None)
    assert [t.key for t in tr] == [t.key for t in clean_tr] and ev == clean_ev
    for dom in ("math", "prolog", "pddl"):
        pairs = [(a, b) for a, b in zip(clean_tr, tr) if a.domain == dom]
        slipped = [(a, b) for a, b in pairs if a.target != b.target]
        assert 0.2 * len(pairs) <= len(slipped) <= 0.6 * len(pairs), (dom, len(slipped), len(pairs))
        for a, b in slipped:
            assert train.reward(a, a.target) == 1.0 and train.reward(b, b.target) == 0.0, (a.target, b.target)
    rng = random.Random(0)
    for maker in train.TASK_MAKERS.values():
        for t in [maker(rng) for _ in range(40)]:
            w = train.slip(t, rng)
            assert w is not None and w != t.target and train.reward(t, w) < 1.0


def test_a_right_answer_reached_through_a_wrong_step_is_not_a_pass():
    """reward = the verifier's score only when every step of the chain follows from the one before
    (derivation_ok); the SFT policy's typical faults, taken from its own outputs, score 0."""
    rng = random.Random(3)
    math_t = next(t for t in (train.make_math_task(rng) for _ in range(200)) if t.target.count("=") >= 4)
    a, b, _ = train._countdown_args(math_t)
    assert train.reward(math_t, math_t.target) == 1.0
    rest = math_t.target.split(" ", 1)[1]
    drift = f"{a}-{b}={a - b + 10 * b} {a - b + 10 * b}-{b}={a - b + 9 * b} " + " ".join(  # tens digits drift:
        f"{x}-{b}={x - b}" for x in range(a - b + 9 * b, a - b, -b)) + " " + rest  # same residue, same answer
    assert f"\\boxed{{{math_t.truth}}}" in drift and train.reward(math_t, drift) == 0.0
    assert train.reward(math_t, rest) == 0.0                                   # a step left out
    assert train.reward(math_t, math_t.target.replace("<0", "")) == 0.0        # no stop marker
    assert train.reward(math_t, f"\\boxed{{{math_t.truth}}}") == 0.0          # the answer alone
    assert train.reward(math_t, math_t.target + " 0-1=-1") == 1.0              # text after the answer: ignored
    pro = [train.make_prolog_task(rng) for _ in range(40)]
    for t in pro:
        assert train.reward(t, t.target) == 1.0
        trace, answer = t.target.split("\nAnswer:")
        calls = trace.split()
        if len(calls) >= 2:  # a call dropped, or two calls swapped: the answer line is still right
            assert train.reward(t, " ".join(calls[1:]) + "\nAnswer:" + answer) == 0.0
            assert train.reward(t, " ".join([calls[1], calls[0]] + calls[2:]) + "\nAnswer:" + answer) == 0.0
        assert train.reward(t, "Answer:" + answer) == 0.0
    for t in [train.make_pddl_task(rng) for _ in range(20)]:
        assert train.reward(t, t.target) == 1.0
        lines = t.target.split("\n")
        wrong_state = "\n".join(ln.split(" ; ")[0] + " ; hand empty" for ln in lines)   # the plan alone is valid
        assert train.reward(t, "\n".join(ln.split(" ; ")[0] for ln in lines)) == 0.0
        assert train.reward(t, wrong_state) == 0.0
    for t in pro[:5] + [math_t]:  # model output of any shape: a score in [0, 1], never an exception
        for junk in ("", "\\boxed{", "len(" * 5000, "9" * 100_000, "rev([a],[a])\nAnswer:", "\x00\n;;"):
            assert 0.0 <= train.reward(t, junk) <= 1.0


def test_a_small_instance_space_is_repeated_so_every_domain_gets_n_train_demonstrations():
    """The countdown space holds ~600 problems: n_train = 900 repeats them (equal domain shares in SFT), each copy
    with its own teacher-noise draw, and the repeats never bring in a held-out problem."""
    cfg = parse_args(["--domains=math", "--n_train=900", "--n_eval=10", "--teacher_noise=0.3"])
    tr, ev = train.build_tasks(cfg, log=lambda *a: None)
    assert len(tr) == 900 and all(t.domain == "math" for t in tr)
    copies = collections.Counter(t.key for t in tr)
    assert len(copies) < 900 and max(copies.values()) >= 2
    assert not (set(copies) & {t.key for t in ev})
    clean = {t.key: t.target for t in tr if train.reward(t, t.target) == 1.0}
    mixed = [k for k in copies if copies[k] >= 2 and k in clean
             and any(t.key == k and t.target != clean[k] for t in tr)]
    assert mixed, "no repeated problem has both a clean and a slipped copy: the copies share one noise draw"


def test_fresh_rl_prompts_are_new_draws_that_never_repeat_a_heldout_problem():
    cfg = parse_args(["--n_train=40", "--n_eval=12", "--n_rl=60", "--rl_domains="])
    tr, ev = train.build_tasks(cfg, log=lambda *a: None)
    rl = train.build_rl_tasks(cfg, ev, log=lambda *a: None)
    for dom in ("math", "prolog", "pddl"):
        assert 50 <= sum(t.domain == dom for t in rl) <= 60
    assert not ({t.key for t in rl} & {t.key for t in ev})
    assert len({t.key for t in rl} - {t.key for t in tr}) > len(rl) // 2  # mostly problems SFT never saw
    for t in rl[:30]:
        assert train.reward(t, t.target) == 1.0
    with pytest.raises(ValueError, match="rl_prompts"):
        parse_args(["--rl_prompts=test"])
    only = train.build_rl_tasks(parse_args(["--n_rl=20", "--rl_domains=prolog,pddl"]), ev, log=lambda *a: None)
    assert {t.domain for t in only} == {"prolog", "pddl"}
    assert train.rl_domain_list(parse_args(["--domains=math,pddl"])) == ["math", "pddl"]  # default: all domains
    assert train.rl_domain_list(parse_args(["--domains=math,pddl", "--rl_domains=pddl,prolog"])) == ["pddl"]
    with pytest.raises(ValueError, match="rl_domains"):
        parse_args(["--domains=math", "--rl_domains=prolog"])


# ---------------------------------------------------------------------------------------------------------------------
# Model and generation
# ---------------------------------------------------------------------------------------------------------------------

def _tiny_model(n_layers=4, window=3, vocab=40, head="lm"):
    cfg = parse_args(["--d_model=16", "--n_heads=2", "--n_kv_heads=1", "--base_width=16",
                      f"--n_layers={n_layers}", f"--attn_window={window}"])
    torch.manual_seed(0)
    return GPT(cfg, vocab, head=head).eval()


def test_forward_shapes_and_three_local_to_one_global_pattern():
    ra = __import__("rattention")
    m = _tiny_model(n_layers=8)
    assert m.layer_pattern() == "LLLGLLLG"
    assert [type(b.attn) for b in m.blocks].count(ra.RAttention) == 6
    assert [type(b.attn) for b in m.blocks].count(ra.GlobalAttention) == 2
    x = torch.randint(0, 40, (3, 11))
    assert m(x).shape == (3, 11, 40)
    critic = _tiny_model(n_layers=8, head="value")
    assert critic(x).shape == (3, 11)
    assert torch.all(critic(x) == critic.value_head.bias)  # scalar head starts at V ≡ bias (zero weight)


def test_cached_generation_equals_full_forward():
    """Rows of different prompt lengths (9, 6 | 3 | 1: prefilled in three length groups, spliced into one cache),
    contexts longer than the window (the RLA state is used): the log-prob of every sampled token equals the full
    parallel forward on prompt + continuation, and greedy tokens are its argmax."""
    m = _tiny_model(window=3)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11, 12], [7], [3] * 6]
    caps = [9, 6, 12, 8]
    for temp in (1.0, 0.0):
        torch.manual_seed(1)
        g = generate(m, prompts, caps, eos_id=39, pad_id=0, temperature=temp)
        assert g.tokens.shape[0] == 4 and g.lengths.tolist() <= caps
        for b, p in enumerate(prompts):
            n = int(g.lengths[b])
            assert n == caps[b] or bool(g.eos[b])
            seq = torch.tensor([p + g.tokens[b, :n].tolist()])
            logits = m(seq)[0, len(p) - 1: len(p) - 1 + n].float()
            lp = F.log_softmax(logits / (temp if temp > 0 else 1.0), -1)
            ref = lp.gather(1, g.tokens[b, :n, None])[:, 0]
            torch.testing.assert_close(g.logprobs[b, :n], ref, rtol=1e-4, atol=1e-5)
            if temp == 0.0:
                assert g.tokens[b, :n].tolist() == logits.argmax(-1).tolist()


def test_sampled_eval_is_reproducible_and_leaves_the_training_rng_alone():
    """avg@k uses its own generator seeded by cfg.seed: two evaluations of the same model agree exactly and the
    global RNG (which drives rollouts and data order) is not advanced."""
    cfg = parse_args(["--n_train=10", "--n_eval=3", "--d_model=16", "--n_heads=2", "--n_kv_heads=1",
                      "--base_width=16", "--eval_samples=3", "--eval_max_new_tokens=6"])
    _, ev = train.build_tasks(cfg, log=lambda *a: None)
    tok = train.Tok(make_encoding(bpe_train(_corpus(), 300)))
    torch.manual_seed(0)
    model = GPT(cfg, tok.n_vocab)
    state = torch.get_rng_state()
    cfg.eval_batch = 4
    a = train.evaluate(model, tok, ev, cfg)
    b = train.evaluate(model, tok, ev, cfg)
    assert torch.equal(state, torch.get_rng_state())
    assert a == b and {"math_avg3", "prolog_avg3", "pddl_avg3", "overall_avg3", "overall", "overall_pass3",
                       "overall_avg3_se"} <= set(a)
    assert all(0.0 <= v <= 1.0 for v in a.values())
    for d in ("math", "prolog", "pddl", "overall"):  # pass@k >= avg@k: a task some sample solves counts once
        assert a[f"{d}_pass3"] >= a[f"{d}_avg3"]


def test_generation_stops_rows_at_eos_and_cap():
    class Always5(torch.nn.Module):  # readout whose greedy choice is always token 5
        def forward(self, x):
            out = torch.zeros(*x.shape[:-1], 40)
            out[..., 5] = 1.0
            return out

    m = _tiny_model()
    m.lm_head = Always5()
    g = generate(m, [[1, 2], [3]], [4, 2], eos_id=5, pad_id=0, temperature=0.0)
    assert g.lengths.tolist() == [1, 1] and g.eos.tolist() == [True, True]
    g = generate(m, [[1, 2], [3]], [4, 2], eos_id=6, pad_id=0, temperature=0.0)
    assert g.lengths.tolist() == [4, 2] and g.eos.tolist() == [False, False]
    assert g.tokens[1, 2:].tolist() == [0, 0]  # right-padded past the row's length


# ---------------------------------------------------------------------------------------------------------------------
# Run folder, checkpoints, resume
# ---------------------------------------------------------------------------------------------------------------------

def _metrics(run_dir):
    return [json.loads(line) for line in open(os.path.join(run_dir, "metrics.jsonl"))]


def test_checkpoint_resume_gives_the_same_next_step_loss(tmp_path):
    args = TINY + [f"--out_dir={tmp_path}", "--sft_steps=5", "--rl_steps=0", "--eval_max_new_tokens=1"]
    train.train(parse_args(args + ["--run_name=full"]))
    part = train.train(parse_args(args + ["--run_name=part", "--stop_after=2"]))
    assert os.path.exists(tmp_path / "part" / "ckpt.pt") and not os.path.exists(tmp_path / "part" / "ckpt.pt.tmp")
    assert "after_sft" not in part
    train.train(parse_args(args + ["--run_name=part", "--resume"]))
    a = [r["loss"] for r in _metrics(tmp_path / "full") if r.get("phase") == "sft"]
    b = [r["loss"] for r in _metrics(tmp_path / "part") if r.get("phase") == "sft"]
    assert len(a) == len(b) == 5
    assert a == b  # bitwise: same data order, same RNG, same optimizer state


def test_resume_mid_rl_reproduces_the_uninterrupted_metrics(tmp_path):
    args = TINY + [f"--out_dir={tmp_path}", "--sft_steps=2", "--critic_warmup=1", "--rl_steps=3"]
    train.train(parse_args(args + ["--run_name=full"]))
    stop = 2 + 1 + 1  # SFT steps + critic warm-up + 1 RL step: stop with rollouts carried in the pool
    train.train(parse_args(args + ["--run_name=part", f"--stop_after={stop}"]))
    ck = torch.load(tmp_path / "part" / "ckpt.pt", weights_only=False)
    assert ck["phase"] == "rl" and ck["pool"]["carried"], "the test needs carried rollouts at the cut"
    train.train(parse_args(args + ["--run_name=part", "--resume"]))
    keys = ("reward/mean", "policy/loss", "value/loss", "gen/tokens", "pool/carried_in")
    ra = [{k: r.get(k) for k in keys} for r in _metrics(tmp_path / "full") if r.get("phase") in ("critic", "rl")]
    rb = [{k: r.get(k) for k in keys} for r in _metrics(tmp_path / "part") if r.get("phase") in ("critic", "rl")]
    assert len(ra) == len(rb) == 4
    assert ra == rb
    sa = json.load(open(tmp_path / "full" / "summary.json"))
    sb = json.load(open(tmp_path / "part" / "summary.json"))
    assert sa["after_rl"] == sb["after_rl"]


def test_rl_learning_rates_warm_up_linearly_from_each_models_first_update(tmp_path):
    args = TINY + [f"--out_dir={tmp_path}", "--sft_steps=1", "--critic_warmup=2", "--rl_steps=3", "--rl_warmup=2",
                   "--rl_lr=1e-3", "--critic_lr=4e-3", "--run_name=wu"]
    train.train(parse_args(args))
    recs = [r for r in _metrics(tmp_path / "wu") if r.get("phase") in ("critic", "rl")]
    assert [r["lr/critic"] for r in recs] == pytest.approx([2e-3, 4e-3, 4e-3, 4e-3, 4e-3])
    assert [r["lr/policy"] for r in recs if r["phase"] == "rl"] == pytest.approx([5e-4, 1e-3, 1e-3])


def test_non_finite_loss_skips_the_update_and_is_logged(tmp_path, monkeypatch):
    """A NaN policy output during the first RL step (injected from the test with a forward hook, not from inside the
    model) makes that step's loss non-finite: the update is skipped and counted, and training goes on."""
    args = TINY + [f"--out_dir={tmp_path}", "--sft_steps=1", "--critic_warmup=1", "--rl_steps=2", "--run_name=nan"]
    run = train.setup(parse_args(args))
    real_step = train.tppo.tppo_step

    def poisoned_step(*a, **kw):
        if kw["step"] != 1:
            return real_step(*a, **kw)
        nan = lambda mod, inp, out: out * float("nan") if torch.is_grad_enabled() else out  # noqa: E731
        hook = kw["policy"].register_forward_hook(nan)
        try:
            return real_step(*a, **kw)
        finally:
            hook.remove()

    monkeypatch.setattr(train.tppo, "tppo_step", poisoned_step)
    summary = train.run_pipeline(run)
    rl = [r for r in _metrics(tmp_path / "nan") if r.get("phase") == "rl"]
    assert rl[0]["skipped_updates"] >= 1 and rl[1]["skipped_updates"] == 0
    assert all(torch.isfinite(p).all() for p in run.policy.parameters())
    assert summary["skipped_updates"] >= 1


def test_ppo_baseline_is_the_same_loop_with_window_at_least_max_response(tmp_path):
    args = TINY + [f"--out_dir={tmp_path}", "--sft_steps=1", "--critic_warmup=0", "--rl_steps=2"]
    for algo in ("ppo", "tppo"):
        train.train(parse_args(args + [f"--algo={algo}", f"--run_name={algo}"]))
    ppo = [r for r in _metrics(tmp_path / "ppo") if r.get("phase") == "rl"]
    tppo = [r for r in _metrics(tmp_path / "tppo") if r.get("phase") == "rl"]
    assert all(r["pool/carried_in"] == 0 and r["pool/unfinished"] == 0 for r in ppo)  # one window per response
    assert any(r["pool/unfinished"] > 0 for r in tppo)  # W < L_max truncates (the untrained model rarely stops)
    rows = [train.bench_row(str(tmp_path / a), gain=0.0) for a in ("tppo", "ppo")]
    assert rows[0]["window"] == 8 and rows[1]["window"] == 24
    assert 0 < rows[0]["util"] <= 1 and 0 < rows[1]["util"] <= 1
    rec = [r for r in _metrics(tmp_path / "tppo") if r.get("phase") == "rl"]  # token-weighted util
    assert rows[0]["util"] == pytest.approx(sum(r["gen/useful_measured"] for r in rec)
                                            / sum(r["gen/slot_steps_measured"] for r in rec))
    # re-encoding: PPO's sampler encodes prompts only, T-PPO's also the carried responses; both updates read more
    # than they generate (prompt + response so far)
    assert rows[0]["ctx_per_tok"] > rows[1]["ctx_per_tok"] > 0 and rows[1]["seq_per_tok"] > 1
    for r in rec:                                    # the sampler's prefill time is a part of its generation time
        assert 0 < r["time/prefill_s"] <= r["time/gen_s"]
    assert 0 < rows[0]["prefill_share"] < 1
    table = train.bench_table(rows, gain=0.0)
    assert "| tppo | 8 |" in table and "| ppo | 24 |" in table and "PPO / tppo" in table and "Amdahl bound" in table


def test_equal_work_stop_ends_rl_at_the_first_step_that_reaches_rl_finished(tmp_path):
    """rl_finished (the bench's equal work): RL stops after the step whose finished responses, counted after the
    critic warm-up, reach the target; the warm-up's responses do not count."""
    args = TINY + [f"--out_dir={tmp_path}", "--sft_steps=1", "--critic_warmup=2", "--rl_steps=60",
                   "--rl_finished=6", "--run_name=ew"]
    s = train.train(parse_args(args))
    rl = [r for r in _metrics(tmp_path / "ew") if r.get("phase") == "rl"]
    fin = [int(r["pool/finished"]) for r in rl]
    assert s["rl"]["rl_finished"] == sum(fin) >= 6 and sum(fin[:-1]) < 6
    assert s["rl"]["rl_steps_run"] == len(rl) < 60
    assert 0 < s["rl"]["rl_time_s"] <= s["rl"]["time_s"]  # the warm-up is on the full clock only


def test_bench_runs_ppo_tppo_and_refill_arms_to_equal_work_from_one_sft_policy(tmp_path):
    """--preset bench in miniature: three arms (PPO, T-PPO, T-PPO + refill) start from the same SFT policy, each
    stops at the same number of finished responses, and the table compares each T-PPO arm with its Amdahl bound."""
    train.train(parse_args(TINY + [f"--out_dir={tmp_path}", "--sft_steps=2", "--rl_steps=0", "--run_name=sft-s0"]))
    cfg = parse_args(TINY + [f"--out_dir={tmp_path}", "--bench_seeds=1", f"--bench_init={tmp_path}/sft-s{{seed}}",
                             "--rl_steps=30", "--rl_finished=6", "--critic_warmup=1", "--eval_every=2",
                             "--eval_samples=2"])
    out = train.run_bench(cfg)
    rows = out["rows"]
    assert [r["arm"] for r in rows] == ["ppo", "tppo", "tppo + refill"]
    assert len({r["after_sft"] for r in rows}) == 1  # one SFT policy for every arm
    assert all(r["finished"] >= 6 for r in rows) and all(0 < r["util"] <= 1 for r in rows)
    assert out["table"].count("Amdahl bound") == 2 and "PPO / tppo + refill:" in out["table"]
    assert json.load(open(tmp_path / "bench.json"))["rows"] == rows


def test_ctrl_c_saves_a_checkpoint_and_resume_continues(tmp_path):
    import signal
    args = TINY + [f"--out_dir={tmp_path}", "--sft_steps=3", "--rl_steps=0", "--eval_max_new_tokens=1",
                   "--run_name=int"]
    before = signal.getsignal(signal.SIGINT)
    run = train.setup(parse_args(args))
    os.kill(os.getpid(), signal.SIGINT)  # delivered to the run's handler: finish this step, checkpoint, stop
    train.run_pipeline(run)
    assert signal.getsignal(signal.SIGINT) is before
    ck = torch.load(tmp_path / "int" / "ckpt.pt", weights_only=False)
    assert ck["phase"] == "sft" and ck["step"] == 1
    s = train.train(parse_args(args + ["--resume"]))
    assert "after_sft" in s and len([r for r in _metrics(tmp_path / "int") if r.get("phase") == "sft"]) == 3


# Corrupted run folders: every unusable file gives one line naming it and exit status 2

RESUME = TINY + ["--sft_steps=3", "--rl_steps=0", "--eval_max_new_tokens=1", "--run_name=r"]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A tiny run stopped after SFT step 2 (ckpt.pt, tasks.pkl, config.json, metrics.jsonl), built once."""
    root = tmp_path_factory.mktemp("stopped")
    train.train(parse_args(RESUME + [f"--out_dir={root}", "--stop_after=2"]))
    return root


@pytest.fixture
def run_copy(stopped_run, tmp_path):
    """A fresh copy of the stopped run's out_dir: (out_dir, run folder)."""
    shutil.copytree(stopped_run, tmp_path / "out")
    return tmp_path / "out", tmp_path / "out" / "r"


def _resume_fails(capsys, out, name) -> str:
    err = _exit2_line(capsys, RESUME + [f"--out_dir={out}", "--resume"])
    assert name in err, err
    return err


def _flip(path, n, seed=0):
    data = bytearray(open(path, "rb").read())
    for i in random.Random(seed).sample(range(len(data)), n):
        data[i] ^= 0xFF
    open(path, "wb").write(bytes(data))


def test_checkpoint_with_256_flipped_bytes_is_refused(run_copy, capsys):
    out, run = run_copy
    assert torch.load(run / "ckpt.pt", weights_only=False)["step"] == 2  # still a plain torch.load-able file
    _flip(run / "ckpt.pt", 256)
    assert "sha256" in _resume_fails(capsys, out, "ckpt.pt")


@pytest.mark.parametrize("n_flips", [1, 2])
def test_checkpoint_with_a_flipped_byte_anywhere_is_refused(run_copy, capsys, n_flips):
    out, run = run_copy
    _flip(run / "ckpt.pt", n_flips, seed=n_flips)
    _resume_fails(capsys, out, "ckpt.pt")


@pytest.mark.parametrize("content,why", [
    (b"", "empty file"),
    ("random", "no sha256 trailer"),
    ("plain", "no sha256 trailer"),   # torch.save({...}) without train.py's checksum
    ("half", "no sha256 trailer"),    # cut off
    ("empty_dict", "missing key(s) phase"),
    ("not_dict", "not a checkpoint dict"),
    ("bad_phase", "unknown phase"),
    ("wrong_model", "does not fit this run"),
])
def test_unusable_checkpoint_exits_2_naming_the_file(run_copy, capsys, content, why):
    out, run = run_copy
    path = str(run / "ckpt.pt")
    st = torch.load(path, weights_only=False)
    if content == "plain":
        torch.save(st, path)
    elif content == "half":
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
    elif content == "empty_dict":
        train.save_checkpoint(path, {})
    elif content == "not_dict":
        train.save_checkpoint(path, [1, 2])
    elif content == "bad_phase":
        train.save_checkpoint(path, {**st, "phase": "pretrain"})
    elif content == "wrong_model":
        train.save_checkpoint(path, {**st, "policy": {"wte.weight": torch.zeros(3, 5)}})
    elif content == "random":
        open(path, "wb").write(random.Random(0).randbytes(4096))
    else:
        open(path, "wb").write(content)
    assert why in _resume_fails(capsys, out, "ckpt.pt")


def test_missing_checkpoint_on_resume_exits_2(run_copy, capsys):
    out, run = run_copy
    os.remove(run / "ckpt.pt")
    assert "no checkpoint" in _resume_fails(capsys, out, "ckpt.pt")


@pytest.mark.parametrize("how", ["empty", "half", "flipped", "wrong_content"])
def test_unusable_tasks_pickle_exits_2_naming_the_file(run_copy, capsys, how):
    out, run = run_copy
    path = run / "tasks.pkl"
    data = open(path, "rb").read()
    assert len(pickle.load(open(path, "rb"))) == 3  # checked files stay plain pickle.load-able
    if how == "empty":
        open(path, "wb").close()
    elif how == "half":
        open(path, "wb").write(data[: len(data) // 2])
    elif how == "flipped":
        _flip(path, 1)
    else:
        train.write_checked(str(path), pickle.dumps({"train": []}))
    _resume_fails(capsys, out, "tasks.pkl")


@pytest.mark.parametrize("text,why", [
    ('{"seed": 0, "n_tr', "not valid JSON (line 1"),   # cut off
    ("", "not valid JSON"),
    ("[1, 2]", "not an object"),
    ('{"warmup": -1}', "warmup must be >= 0"),       # a key not given on the command line
    ('{"lr": "fast"}', "lr must be a float"),
    ('{"lr": 1' + "0" * 400 + "}", "lr must be finite"),   # a JSON int too large for a float
    ('{"d_modle": 64}', "unknown config key(s) d_modle"),
])
def test_unusable_config_json_exits_2_naming_the_file(run_copy, capsys, text, why, no_training):
    out, run = run_copy
    open(run / "config.json", "w").write(text)
    assert why in _resume_fails(capsys, out, "config.json")


@pytest.mark.parametrize("victim", ["policy_sft.pt", "ckpt.pt", "tasks.pkl", "tokenizer.tiktoken"])
def test_unusable_init_from_run_exits_2_naming_the_file(tmp_path, capsys, victim):
    args = TINY + [f"--out_dir={tmp_path}", "--sft_steps=1", "--eval_max_new_tokens=1"]
    train.train(parse_args(args + ["--rl_steps=0", "--run_name=sft"]))
    _flip(tmp_path / "sft" / victim, 1)
    err = _exit2_line(capsys, args + ["--rl_steps=1", "--run_name=rl", f"--init_from={tmp_path / 'sft'}"])
    assert victim in err, err


@pytest.mark.parametrize("policy", ["PASSIVE", None])
def test_auto_threads_use_the_cores_only_when_openmp_threads_sleep(tmp_path, monkeypatch, policy):
    """Spin-waiting OpenMP threads slowed SFT 5-14x beside another training process (2-core box): auto uses every
    usable core (at most 4) only under OMP_WAIT_POLICY=PASSIVE, which train.py sets before torch as a script."""
    if policy:
        monkeypatch.setenv("OMP_WAIT_POLICY", policy)
    else:
        monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    run = train.setup(parse_args(TINY + [f"--out_dir={tmp_path}", "--threads=0"]))
    cores = len(os.sched_getaffinity(0))
    assert torch.get_num_threads() == (max(1, min(4, cores)) if policy else 1)
    run.interrupt.restore()


def test_script_sets_passive_openmp_wait_policy_before_torch_loads():
    """OpenMP reads OMP_WAIT_POLICY once, when torch loads it: an import hook records the value at `import torch`."""
    code = """if True:
        import os, runpy, sys
        SET
        class Spy:  # sees the first `import torch` (train.py's) and the environment at that moment
            def find_spec(self, name, path=None, target=None):
                if name == "torch":
                    print("at import torch:", os.environ.get("OMP_WAIT_POLICY"))
                    sys.meta_path.remove(self)
        sys.meta_path.insert(0, Spy())
        sys.argv = ["train.py", "--help"]
        try:
            runpy.run_path("train.py", run_name="__main__")
        except SystemExit:
            pass
    """
    for setting, want in (("os.environ.pop('OMP_WAIT_POLICY', None)", "PASSIVE"),
                          ("os.environ['OMP_WAIT_POLICY'] = 'ACTIVE'", "ACTIVE")):  # the user's own setting wins
        r = subprocess.run([sys.executable, "-c", code.replace("SET", setting)], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        assert f"at import torch: {want}" in r.stdout, r.stdout[-500:] + r.stderr[-500:]


def test_torn_last_metrics_line_is_dropped_and_resume_continues(run_copy, capsys):
    """A crash while appending metrics.jsonl leaves a half-written last line; resuming the good checkpoint drops it
    and finishes the run with one record per step."""
    out, run = run_copy
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"phase": "sft", "step": 3, "gstep": 3, "lo')
    s = train.main(RESUME + [f"--out_dir={out}", "--resume", "--stop_after=-1"])
    assert "after_sft" in s
    assert "dropped a torn last line" in capsys.readouterr().out
    assert [r["step"] for r in _metrics(run) if r.get("phase") == "sft"] == [1, 2, 3]


def test_corrupt_metrics_line_before_the_last_exits_2(run_copy, capsys):
    out, run = run_copy
    lines = open(run / "metrics.jsonl").readlines()
    lines[0] = lines[0][:10] + "\n"
    open(run / "metrics.jsonl", "w").writelines(lines)
    assert "line 1" in _resume_fails(capsys, out, "metrics.jsonl")


# ---------------------------------------------------------------------------------------------------------------------
# End to end (subprocesses)
# ---------------------------------------------------------------------------------------------------------------------

def test_smoke_preset_runs_sft_and_rl_end_to_end(tmp_path):
    r = subprocess.run([sys.executable, "train.py", "--preset", "smoke", f"--out_dir={tmp_path}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    run = tmp_path / "smoke-tppo-s0"
    s = json.load(open(run / "summary.json"))
    for phase in ("after_sft", "after_rl"):
        assert set(s[phase]) == {d + suffix + se for d in ("math", "prolog", "pddl", "overall")
                                 for suffix in ("", "_avg4", "_pass4") for se in ("", "_se")}
    assert {"math", "prolog", "pddl", "resp_len"} <= set(s["curation"])
    recs = _metrics(run)
    rl = [x for x in recs if x.get("phase") == "rl"]
    assert len(rl) == parse_args(["--preset=smoke"]).rl_steps and all("policy/loss" in x for x in rl)
    assert "eval after RL" in r.stdout and (run / "tokenizer.tiktoken").exists() and (run / "ckpt.pt").exists()
    # the script's tasks.pkl loads in a process that imports train (it names train.Task, not __main__.Task)
    import pickle
    tr, ev, rl = pickle.load(open(run / "tasks.pkl", "rb"))
    assert isinstance(tr[0], train.Task) and {t.domain for t in ev} == {"math", "prolog", "pddl"}
    assert {t.domain for t in rl} == {"math", "prolog", "pddl"} and not ({t.key for t in rl} & {t.key for t in ev})


def test_two_process_data_parallel_ends_with_identical_weights(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", "train.py"]
    r = subprocess.run(cmd + TINY + [f"--out_dir={tmp_path}", "--sft_steps=2", "--critic_warmup=1", "--rl_steps=1",
                                     "--run_name=ddp"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    a = torch.load(tmp_path / "ddp" / "ckpt.pt", weights_only=False)
    b = torch.load(tmp_path / "ddp" / "ckpt.rank1.pt", weights_only=False)
    assert a["phase"] == b["phase"] == "done"
    for k in a["policy"]:
        assert torch.equal(a["policy"][k], b["policy"][k]), k
    for k in a["critic"]:
        assert torch.equal(a["critic"][k], b["critic"][k]), k
    assert a["pool"] != b["pool"]  # each rank ran its own rollout pool (own prompts and samples)


# ---------------------------------------------------------------------------------------------------------------------
# Curation (Guru's difficulty filter) and the temperature-correct ratio, in the pipeline
# ---------------------------------------------------------------------------------------------------------------------

def test_curation_drops_prompts_the_sft_policy_always_or_never_solves(tmp_path, monkeypatch):
    """curate() samples k responses per candidate and keeps exactly the prompts with 0 < passes < k, per domain.
    The verifier is replaced by a scripted one: a third of the candidates always pass, a third never, a third pass
    on every other sample."""
    args = TINY + [f"--out_dir={tmp_path}", "--run_name=cur", "--sft_steps=1", "--rl_steps=1", "--n_rl=12",
                   "--n_curate=9", "--curate_samples=4"]
    run = train.setup(parse_args(args))
    ids = {id(t): i for i, t in enumerate(run.rl_tasks)}
    calls = {}

    def scripted(task, response):
        i = ids.get(id(task))
        calls[i] = calls.get(i, 0) + 1
        return [1.0, 0.0, float(calls[i] % 2)][i % 3]

    monkeypatch.setattr(train, "reward", scripted)
    train.curate(run)
    cands = [i for d in ("math", "prolog", "pddl")
             for i in [j for j, t in enumerate(run.rl_tasks) if t.domain == d][:9]]
    assert all(calls[i] == 4 for i in cands)  # k samples each
    assert sorted(run.rl_state["prompts"]) == sorted(i for i in cands if i % 3 == 2)
    for d in ("math", "prolog", "pddl"):
        c = run.summary["curation"][d]
        mine = [i for i in cands if run.rl_tasks[i].domain == d]
        assert c["candidates"] == len(mine) and c["kept"] == sum(i % 3 == 2 for i in mine)
        assert c["always_solved"] == sum(i % 3 == 0 for i in mine) and c["never_solved"] == sum(i % 3 == 1 for i in mine)
    # RL then draws only curated prompts
    drawn = [train.next_rl_prompt(run) for _ in range(3 * len(run.rl_state["prompts"]))]
    assert {i for _, i, _ in drawn} == set(run.rl_state["prompts"])
    # each RL prompt carries the decode budget held-out evaluation would give its task (task_budget, the default)
    for _, i, budget in drawn:
        assert budget == min(train.decode_budget(run.tok, run.rl_tasks[i], run.cfg), run.cfg.max_response) > 0
    run.cfg.task_budget = False
    assert train.next_rl_prompt(run)[2] == 0  # 0 = the pool's L_max


def test_rl_ratio_is_one_on_the_first_minibatch_at_a_non_unit_temperature(tmp_path):
    """Rollouts are sampled from softmax(z / τ); π_old (the sampler's log-probs) and π_θ use the same τ, so before
    the first optimizer step ρ = 1 up to float error — at τ = 0.6 as at τ = 1."""
    args = TINY + [f"--out_dir={tmp_path}", "--sft_steps=2", "--critic_warmup=0", "--rl_steps=1", "--temperature=0.6",
                   "--run_name=temp"]
    train.train(parse_args(args))
    rl = [r for r in _metrics(tmp_path / "temp") if r.get("phase") == "rl"]
    assert rl and rl[0]["policy/first_ratio_dev"] < 1e-4


# ---------------------------------------------------------------------------------------------------------------------
# Slot refill inside a window (--refill=on, continuous batching, issue 15)
# ---------------------------------------------------------------------------------------------------------------------

def _refill_queue(contexts, limit):
    q = list(contexts)
    handed = []

    def refill():
        if not q:
            return None
        handed.append(q.pop(0))
        return handed[-1], limit
    return refill, handed


def test_decode_with_mid_batch_refill_equals_fresh_prefill_and_decode():
    """RAttention (w = 3, ring wraps, RLA state non-zero) + a global layer, fp32: every token a refilled rollout
    samples has the log-prob of the full parallel forward on its context + continuation (rtol 1e-4), and greedy
    tokens are its argmax — the spliced cache rows behave like a fresh prefill + decode of that rollout alone."""
    m = _tiny_model(n_layers=4, window=3)
    assert m.layer_pattern() == "LLLG"
    prompts = [[1, 2], [4, 5, 6, 7, 8, 9, 10, 11, 12], [7]]
    later = [[3] * 6, [5, 6, 7, 8, 9, 10, 11], [2, 9], [8] * 11, [1, 3, 5]]
    for temp in (1.0, 0.0):
        torch.manual_seed(2)
        refill, handed = _refill_queue(later, 7)
        g = generate(m, prompts, [3, 12, 5], eos_id=39, pad_id=0, temperature=temp, refill=refill)
        assert len(g.refilled) >= 2, "the test needs refills"
        assert any(len(c) + len(t) > 5 for c, (t, _, _) in zip(handed, g.refilled))   # past the w + 1 ring
        for c, (toks, eos, lp) in zip(handed, g.refilled):
            n = len(toks)
            assert n >= 1 and len(lp) == n and eos == (toks[-1] == 39)
            logits = m(torch.tensor([c + toks]))[0, len(c) - 1: len(c) - 1 + n].float()
            ref = F.log_softmax(logits / (temp if temp > 0 else 1.0), -1).gather(1, torch.tensor(toks)[:, None])[:, 0]
            torch.testing.assert_close(torch.tensor(lp), ref, rtol=1e-4, atol=1e-5)
            if temp == 0.0:
                assert toks == logits.argmax(-1).tolist()


def test_refill_on_off_give_the_same_tokens_per_rollout_greedy_frozen_weights():
    m = _tiny_model(n_layers=4, window=3)
    prompts = [[1, 2], [4, 5, 6, 7, 8, 9, 10, 11, 12], [7]]
    later = [[3] * 6, [5, 6, 7, 8, 9, 10, 11], [2, 9]]
    refill, handed = _refill_queue(later, 10)
    g = generate(m, prompts, [2, 10, 4], eos_id=39, pad_id=0, temperature=0.0, refill=refill)
    solo = generate(m, prompts + later, [2, 10, 4] + [10] * 3, eos_id=39, pad_id=0, temperature=0.0)
    for b in range(3):
        assert g.tokens[b, :int(g.lengths[b])].tolist() == solo.tokens[b, :int(solo.lengths[b])].tolist()
    assert g.refilled
    for i, (toks, _, _) in enumerate(g.refilled):  # cut at the window's end: a prefix of the solo rollout
        assert toks == solo.tokens[3 + i, :len(toks)].tolist()


def test_stream_generate_gives_each_prompt_its_solo_greedy_tokens_within_its_budget():
    """Evaluation's continuous batching: 7 prompts through 3 slots (refilled as rows stop, the horizon beyond every
    budget) give each prompt exactly the greedy tokens of generating it alone with its own budget, in input order."""
    m = _tiny_model(n_layers=4, window=3)
    prompts = [[1, 2], [4, 5, 6, 7, 8, 9], [7], [3] * 6, [5, 6, 7], [2, 9], [8] * 11]
    budgets = [3, 14, 5, 9, 1, 12, 6]
    out = train.stream_generate(m, prompts, budgets, 3, eos_id=39, pad_id=0, temperature=0.0)
    assert len(out) == len(prompts)
    for p, k, toks in zip(prompts, budgets, out):
        solo = generate(m, [p], [k], eos_id=39, pad_id=0, temperature=0.0)
        assert toks == solo.tokens[0, : int(solo.lengths[0])].tolist() and 1 <= len(toks) <= k


def test_smoke_run_with_refill_on(tmp_path, monkeypatch):
    """--refill=on end to end; π_old from the sampler still equals the recomputed one (ρ = 1 at the first
    mini-batch) with refilled rollouts in the batch. The tiny model never emits EOS, so the sampler's limit of every
    other original row is halved: those rows stop (finished short of budget) mid-window and their slots refill."""
    orig = train.generate

    def gen(model, prompts, caps, *a, **k):
        if k.get("refill") is not None:
            caps = [c if i % 2 else max(1, c // 2) for i, c in enumerate(caps)]
        return orig(model, prompts, caps, *a, **k)
    monkeypatch.setattr(train, "generate", gen)
    args = TINY + [f"--out_dir={tmp_path}", "--sft_steps=2", "--critic_warmup=0", "--rl_steps=2", "--refill=on",
                   "--run_name=refill"]
    train.train(parse_args(args))
    rl = [r for r in _metrics(tmp_path / "refill") if r.get("phase") == "rl"]
    assert len(rl) == 2 and all(r["policy/first_ratio_dev"] < 1e-4 for r in rl)
    assert all(r["pool/refilled"] > 0 for r in rl)
