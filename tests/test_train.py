"""Tests for train.py: config/CLI, tokenizer, task sets, model, cached generation, checkpoints, smoke run, RL
robustness (resume mid-RL, NaN skip) and 2-process data-parallel training. All shapes are tiny (CPU, shared)."""
import json
import os
import random
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
    cfg = parse_args(["--n_train=40", "--n_eval=12"])
    tr, ev = train.build_tasks(cfg, log=lambda *a: None)
    for dom in ("math", "prolog", "pddl"):
        assert sum(t.domain == dom for t in ev) == 12
        assert sum(t.domain == dom for t in tr) > 20
    assert not ({t.key for t in tr} & {t.key for t in ev})
    assert not ({t.prompt for t in tr} & {t.prompt for t in ev})
    for t in tr[:30] + ev:  # the engine-labelled target earns full reward, a wrong answer earns 0
        assert train.reward(t, t.target) == 1.0, (t.domain, t.prompt, t.target)
        assert train.reward(t, "no idea") == 0.0


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
    """Rows of different prompt lengths, contexts longer than the window (the RLA state is used): the log-prob of
    every sampled token equals the full parallel forward on prompt + continuation, and greedy tokens are its argmax."""
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
    table = train.bench_table(rows, gain=0.0)
    assert "| tppo | 8 |" in table and "| ppo | 24 |" in table and "ratios" in table


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
    drawn = {train.next_rl_prompt(run)[1] for _ in range(3 * len(run.rl_state["prompts"]))}
    assert drawn == set(run.rl_state["prompts"])


def test_rl_ratio_is_one_on_the_first_minibatch_at_a_non_unit_temperature(tmp_path):
    """Rollouts are sampled from softmax(z / τ); π_old (the sampler's log-probs) and π_θ use the same τ, so before
    the first optimizer step ρ = 1 up to float error — at τ = 0.6 as at τ = 1."""
    args = TINY + [f"--out_dir={tmp_path}", "--sft_steps=2", "--critic_warmup=0", "--rl_steps=1", "--temperature=0.6",
                   "--run_name=temp"]
    train.train(parse_args(args))
    rl = [r for r in _metrics(tmp_path / "temp") if r.get("phase") == "rl"]
    assert rl and rl[0]["policy/first_ratio_dev"] < 1e-4
