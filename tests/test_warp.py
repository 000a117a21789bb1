"""Algorithm 1 on a tiny GPT-2 with a character-level reward: behaviour, order, resumption."""

import pandas as pd
import pytest
import torch

from warp_utils.core import rl, warp
from warp_utils.store import runstore, warp_runs
from warp_utils.config import PolicyConfig, SamplingConfig, WarpConfig
from warp_utils.execution.runtime import Components, Execution
from warp_utils.inputs.models import tiny_gpt2, train_policy_tokenizer
from warp_utils.core.rl import decode_texts, generate, left_pad

CORPUS = ["a wonderful film with a moving story", "a dull and awful mess of a movie",
          "the actors were great", "the plot was boring"] * 10
SAMPLING = SamplingConfig(max_new_tokens=6, temperature=1.0)


def vowel_reward(texts):
    """A smooth reward a random policy can climb: the share of vowels in the text."""
    return torch.tensor([sum(c in "aeiou" for c in t) / max(1, len(t)) for t in texts])


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    tokenizer = train_policy_tokenizer(CORPUS, vocab_size=300)
    policy = tiny_gpt2(PolicyConfig(n_layer=1, n_embd=32, n_head=2, n_positions=32), tokenizer).eval()
    prompts = [tokenizer(text)["input_ids"][:3] for text in CORPUS[:4]]
    return policy, tokenizer, prompts


def config(**changes):
    base = dict(I=2, M=2, T=3, batch_size=4, lr=1e-2, mu=0.2, eta=0.5, beta=0.05, seed=1)
    return WarpConfig(**{**base, **changes})


def components(policy, tokenizer, prompts, scorer=vowel_reward, checkpoint_every=10):
    return Components(policy, tokenizer, scorer, prompts, SAMPLING,
                      Execution(checkpoint_every=checkpoint_every, progress_bars=False))


def run(setup, run_dir, cfg=None, checkpoint_every=10, **kwargs):
    return warp_runs.train_warp(cfg or config(), components(*setup, checkpoint_every=checkpoint_every), run_dir, **kwargs)


def test_ema_follows_every_optimiser_step_and_matches_the_closed_form(setup, tmp_path, monkeypatch):
    events, trajectories = [], []
    real_step, real_ema = torch.optim.Adam.step, rl.ema_

    def step(self, *args, **kwargs):
        events.append("step")
        return real_step(self, *args, **kwargs)

    def ema(anchor, model, mu):
        events.append("ema")
        if not trajectories or trajectories[-1]["anchor"] is not anchor or len(trajectories[-1]["thetas"]) == 3:
            trajectories.append({"anchor": anchor, "start": warp.clone_state(anchor), "thetas": []})
        trajectories[-1]["thetas"].append(warp.clone_state(model))
        real_ema(anchor, model, mu)
        trajectories[-1]["end"] = warp.clone_state(anchor)

    monkeypatch.setattr(torch.optim.Adam, "step", step)
    monkeypatch.setattr(rl, "ema_", ema)
    cfg = config()
    run(setup, tmp_path, cfg)
    assert events == ["step", "ema"] * (cfg.I * cfg.M * cfg.T)  # T updates per run, each after a step
    assert len(trajectories) == cfg.I * cfg.M
    mu, T = cfg.mu, cfg.T
    for trajectory in trajectories:  # replay: ema_T = (1-mu)^T theta_init + sum_t mu (1-mu)^(T-t) theta_t
        for name, start in trajectory["start"].items():
            expected = (1 - mu) ** T * start.double()
            for t, theta in enumerate(trajectory["thetas"], start=1):
                expected = expected + mu * (1 - mu) ** (T - t) * theta[name].double()
            torch.testing.assert_close(trajectory["end"][name].double(), expected, rtol=1e-5, atol=1e-6)


def test_slerp_merges_the_trained_runs_not_the_emas_and_liti_interpolates(setup, tmp_path, monkeypatch):
    merged_inputs, anchors = [], []
    real_slerp, real_ema = warp_runs.slerp, rl.ema_

    def slerp(theta_init, thetas, lam=None):
        merged_inputs.append([dict(theta) for theta in thetas])
        return real_slerp(theta_init, thetas, lam)

    def ema(anchor, model, mu):
        real_ema(anchor, model, mu)
        anchors.append(warp.clone_state(anchor))

    monkeypatch.setattr(warp_runs, "slerp", slerp)
    monkeypatch.setattr(rl, "ema_", ema)
    cfg = config()
    policy = setup[0]
    theta_sft = warp.clone_state(policy)
    result = run(setup, tmp_path, cfg)

    assert len(merged_inputs) == cfg.I
    final_emas = anchors[cfg.T - 1 :: cfg.T]  # the anchor after the last step of each run
    for i in range(cfg.I):
        for m in range(cfg.M):
            trained, ema_state = merged_inputs[i][m], final_emas[i * cfg.M + m]
            name = "transformer.h.0.mlp.c_fc.weight"
            assert torch.equal(trained[name], result.theta_runs[i][m][name])
            assert not torch.allclose(trained[name], ema_state[name])
            assert torch.equal(result.theta_ema_runs[i][m][name], ema_state[name])
    previous = theta_sft
    for i in range(cfg.I):  # LITI: theta_init_i = (1 - eta) theta_init_{i-1} + eta theta_slerp_i
        for name, value in result.theta_init[i].items():
            if value.is_floating_point():
                expected = (1 - cfg.eta) * previous[name].double() + cfg.eta * result.theta_slerp[i][name].double()
                torch.testing.assert_close(value.double(), expected, rtol=1e-6, atol=1e-7)
        name = "transformer.h.0.attn.c_attn.weight"
        assert not torch.equal(result.theta_init[i][name], previous[name])
        assert not torch.equal(result.theta_init[i][name], result.theta_slerp[i][name])
        previous = result.theta_init[i]
    assert torch.equal(policy.state_dict()["transformer.wte.weight"], theta_sft["transformer.wte.weight"])


def test_artifacts_and_metrics_layout(setup, tmp_path):
    cfg = config(I=1, M=2, T=2)
    result = run(setup, tmp_path, cfg)
    assert (tmp_path / "iter_1" / "run_1" / "ema.safetensors").is_file()
    for folder in ("iter_1/run_1", "iter_1/run_2", "iter_1/slerp", "iter_1/init", "final"):
        assert (tmp_path / folder / "model.safetensors").is_file(), folder
        assert (tmp_path / folder / "tokenizer.json").is_file(), folder
    assert list(result.metrics.columns[:9]) == ["iteration", "run", "step", "reward_mean", "reward_std",
                                               "kl_to_anchor", "kl_to_sft", "kl_to_sft_sampled", "response_len"]
    assert len(result.metrics) == cfg.I * cfg.M * cfg.T
    assert (result.metrics["kl_to_sft"] >= 0).all()
    assert result.metrics.loc[result.metrics.step == 1, "kl_to_sft"].abs().max() < 1e-6  # theta_1 = theta_sft


def test_the_batches_of_the_kl_measuring_steps_are_kept_with_their_reward_and_kl(setup, tmp_path):
    cfg = config(I=2, M=2, T=3, batch_size=4)
    result = run(setup, tmp_path, cfg)  # kl_every = 5: the KL is measured at steps 1 and T = 3
    samples = result.samples
    assert sorted(set(zip(samples.iteration, samples.run, samples.step))) == [
        (i, m, t) for i in (1, 2) for m in (1, 2) for t in (1, 3)]
    assert (samples.groupby(["iteration", "run", "step"]).size() == cfg.batch_size).all()
    # each sample's reward is the reward model's on its text, the completion ends its text, and
    # the batch's mean KL is the metric row's kl_to_sft
    assert samples["reward"].tolist() == pytest.approx(vowel_reward(list(samples["text"])).tolist(), abs=1e-6)
    assert all(text.endswith(completion) for text, completion in zip(samples["text"], samples["completion"]))
    means = samples.groupby(["iteration", "run", "step"])["kl"].mean()
    measured = result.metrics.dropna(subset=["kl_to_sft"]).set_index(["iteration", "run", "step"])["kl_to_sft"]
    assert means.to_numpy() == pytest.approx(measured.loc[means.index].to_numpy(), abs=1e-6)
    # stored in each run's folder, read back by a second call that trains nothing
    again = run(setup, tmp_path, cfg)
    pd.testing.assert_frame_equal(again.samples, samples)
    assert len(runstore.read_samples(tmp_path / "iter_1" / "run_2" / runstore.SAMPLES_FILE)) == 2 * cfg.batch_size


def sampled_reward(policy, tokenizer, prompts, seed=0, repeats=16):
    torch.manual_seed(seed)
    ids, mask = left_pad(prompts * repeats, tokenizer.pad_token_id)
    rollout = generate(policy, ids, mask, SAMPLING, tokenizer.eos_token_id, tokenizer.pad_token_id)
    return vowel_reward(decode_texts(tokenizer, rollout)).mean().item()


def test_short_training_raises_the_reward(setup, tmp_path):
    policy, tokenizer, prompts = setup
    result = run(setup, tmp_path, config(I=1, M=2, T=15, batch_size=16, lr=3e-2, beta=0.01))
    trained = warp.copy.deepcopy(policy)
    trained.load_state_dict(result.final)
    before, after = sampled_reward(policy, tokenizer, prompts), sampled_reward(trained, tokenizer, prompts)
    print(f"vowel reward: sft {before:.3f} -> warp {after:.3f}")
    assert after > before + 0.05


def test_interrupted_run_resumes_bitwise_identical(setup, tmp_path):
    cfg = config()
    reference = run(setup, tmp_path / "straight", cfg, checkpoint_every=2)
    calls = []

    def crash(row):
        calls.append(row)
        if (row["iteration"], row["run"], row["step"]) == (2, 1, 3):
            raise KeyboardInterrupt("simulated disconnect")

    with pytest.raises(KeyboardInterrupt):
        run(setup, tmp_path / "resumed", cfg, checkpoint_every=2, step_callback=crash)
    assert (tmp_path / "resumed" / "iter_2" / "run_1" / "checkpoint.pt").is_file()  # inside its run
    resumed = run(setup, tmp_path / "resumed", cfg, checkpoint_every=2, step_callback=calls.append)
    # only the steps after the last checkpoint (iteration 2, run 1, step 2) were run again
    assert [(r["iteration"], r["run"], r["step"]) for r in calls[-4:]] == [(2, 1, 3), (2, 2, 1), (2, 2, 2), (2, 2, 3)]
    for name, value in reference.final.items():
        assert torch.equal(value, resumed.final[name]), name
    for name, value in reference.theta_ema_runs[1][0].items():
        assert torch.equal(value, resumed.theta_ema_runs[1][0][name]), name
    assert reference.metrics["reward_mean"].tolist() == pytest.approx(resumed.metrics["reward_mean"].tolist())
    pd.testing.assert_frame_equal(reference.samples, resumed.samples)  # the judged batches survive too


def test_every_run_keeps_its_own_checkpoint_across_interrupts(setup, tmp_path):
    cfg = config(I=1, M=2, T=5)
    reference = run(setup, tmp_path / "straight", cfg, checkpoint_every=2)

    def crash_at(where):
        def callback(row):
            if (row["iteration"], row["run"], row["step"]) == where:
                raise KeyboardInterrupt("simulated disconnect")
        return callback

    with pytest.raises(KeyboardInterrupt):  # run 1 stops after its checkpoint of step 2
        run(setup, tmp_path / "resumed", cfg, checkpoint_every=2, step_callback=crash_at((1, 1, 3)))
    with pytest.raises(KeyboardInterrupt):  # run 1 resumes and ends; run 2 stops after step 4
        run(setup, tmp_path / "resumed", cfg, checkpoint_every=2, step_callback=crash_at((1, 2, 5)))
    run_1, run_2 = (tmp_path / "resumed" / "iter_1" / f"run_{m}" for m in (1, 2))
    assert (run_1 / "artifact.json").is_file() and not (run_1 / "checkpoint.pt").exists()
    assert torch.load(run_2 / "checkpoint.pt", weights_only=False)["step"] == 4
    resumed = run(setup, tmp_path / "resumed", cfg, checkpoint_every=2)
    for name, value in reference.final.items():
        assert torch.equal(value, resumed.final[name]), name
    assert reference.metrics["reward_mean"].tolist() == pytest.approx(resumed.metrics["reward_mean"].tolist())


def test_a_run_dir_trained_with_another_config_is_rebuilt_run_by_run(setup, tmp_path, monkeypatch, capsys):
    run(setup, tmp_path / "dir", config(I=2, M=1, T=2))
    trained = trained_runs(monkeypatch)
    changed = run(setup, tmp_path / "dir", config(I=2, M=1, T=2, eta=0.3))  # iteration 2 starts elsewhere
    assert trained == [(2, 1)]
    assert "rebuilding run_1: built from another config" in capsys.readouterr().out
    scratch = run(setup, tmp_path / "scratch", config(I=2, M=1, T=2, eta=0.3))
    for name, value in scratch.final.items():
        assert torch.equal(changed.final[name], value), name


def test_a_run_of_another_theta_sft_is_retrained(setup, tmp_path, monkeypatch):
    policy, tokenizer, prompts = setup
    cfg = config(I=1, M=1, T=1)
    run(setup, tmp_path, cfg)
    trained = trained_runs(monkeypatch)
    run(setup, tmp_path, cfg)
    assert trained == []  # same inputs: loaded
    other = warp.copy.deepcopy(policy)
    with torch.no_grad():
        other.transformer.wte.weight[0, 0] += 1e-3
    warp_runs.train_warp(cfg, components(other, tokenizer, prompts), tmp_path)
    assert trained == [(1, 1)]


def test_a_bump_of_the_step_version_makes_runs_stale_and_not_reusable(setup, tmp_path, monkeypatch):
    run(setup, tmp_path / "a", config(I=1, M=1, T=1))
    trained = trained_runs(monkeypatch)
    monkeypatch.setattr(runstore, "STEP_VERSION", runstore.STEP_VERSION + 1)
    run(setup, tmp_path / "b", config(I=1, M=1, T=1), reuse_runs_from=[tmp_path / "a"])
    assert trained == [(1, 1)]  # not linked from a/
    run(setup, tmp_path / "a", config(I=1, M=1, T=1))
    assert trained == [(1, 1), (1, 1)]  # and a/ itself is rebuilt


def test_a_damaged_run_is_detected_and_retrained(setup, tmp_path, monkeypatch, capsys):
    reference = run(setup, tmp_path, config(I=1, M=2, T=2))
    (tmp_path / "iter_1" / "run_2" / "model.safetensors").unlink()
    trained = trained_runs(monkeypatch)
    again = run(setup, tmp_path, config(I=1, M=2, T=2))
    assert trained == [(1, 2)]
    assert "rebuilding run_2: model.safetensors is missing" in capsys.readouterr().out
    for name, value in reference.final.items():
        assert torch.equal(again.final[name], value), name


def trained_runs(monkeypatch):
    """Record which runs (iteration, run) train_warp actually trains."""
    trained, real_train_run = [], warp_runs.train_run

    def train_run(iteration, run, *args, **kwargs):
        trained.append((iteration, run))
        return real_train_run(iteration, run, *args, **kwargs)

    monkeypatch.setattr(warp_runs, "train_run", train_run)
    return trained


def test_a_run_with_the_same_inputs_is_copied_and_equals_training_it(setup, tmp_path, monkeypatch):
    default = run(setup, tmp_path / "default", config(I=2, M=2))
    trained = trained_runs(monkeypatch)
    study_cfg = config(I=1, M=3, eta=0.3)  # iteration 1's runs 1 and 2 do not depend on I, M or eta
    study = run(setup, tmp_path / "study", study_cfg, reuse_runs_from=[tmp_path / "default"])
    assert trained == [(1, 3)]
    shared = ("iter_1", "run_2", "model.safetensors")
    assert (tmp_path / "study").joinpath(*shared).samefile((tmp_path / "default").joinpath(*shared))  # linked
    for m in range(2):
        for name, value in default.theta_runs[0][m].items():
            assert torch.equal(study.theta_runs[0][m][name], value), (m, name)
    scratch = run(setup, tmp_path / "scratch", study_cfg)  # the same study, every run trained
    assert trained[1:] == [(1, 1), (1, 2), (1, 3)]
    for name, value in scratch.final.items():
        assert torch.equal(study.final[name], value), name
    for name, value in scratch.theta_ema_runs[0][2].items():
        assert torch.equal(study.theta_ema_runs[0][2][name], value), name
    columns = ["iteration", "run", "step", "reward_mean", "kl_to_sft"]
    assert study.metrics[columns].to_numpy().ravel().tolist() == pytest.approx(
        scratch.metrics[columns].to_numpy().ravel().tolist(), nan_ok=True)  # KL: NaN between kl_every steps


def test_runs_with_other_inputs_are_trained(setup, tmp_path, monkeypatch):
    run(setup, tmp_path / "default", config(I=2, M=2))
    trained = trained_runs(monkeypatch)
    # another eta: iteration 2 starts from another theta_init, iteration 1 is shared
    run(setup, tmp_path / "eta", config(I=2, M=2, eta=0.3), reuse_runs_from=[tmp_path / "default"])
    assert trained == [(2, 1), (2, 2)]
    # another mu changes every run
    run(setup, tmp_path / "mu", config(I=1, M=2, mu=0.5), reuse_runs_from=[tmp_path / "default"])
    assert trained[2:] == [(1, 1), (1, 2)]
    # another theta_sft (the KL-to-SFT reference of the logged metrics) changes every run too
    policy, tokenizer, prompts = setup
    other = warp.copy.deepcopy(policy)
    with torch.no_grad():
        other.transformer.wte.weight[0, 0] += 1e-3
    warp_runs.train_warp(config(I=1, M=1), components(other, tokenizer, prompts), tmp_path / "other_sft",
                    reuse_runs_from=[tmp_path / "default"])
    assert trained[4:] == [(1, 1)]


class ModelScorer:
    """vowel_reward plus a bias read from a model's weights: a scorer with a fingerprintable `.model`."""

    def __init__(self, bias):
        self.model = torch.nn.Linear(1, 1)
        with torch.no_grad():
            self.model.weight.fill_(1.0)
            self.model.bias.fill_(bias)

    def __call__(self, texts):
        return vowel_reward(texts) + self.model.bias.detach()


def test_a_run_of_another_reward_model_is_retrained_and_not_reused(setup, tmp_path, monkeypatch):
    policy, tokenizer, prompts = setup
    cfg = config(I=1, M=1, T=1)

    def train(scorer, run_dir, **kwargs):
        return warp_runs.train_warp(cfg, components(policy, tokenizer, prompts, scorer), run_dir, **kwargs)

    train(ModelScorer(0.0), tmp_path / "a")
    trained = trained_runs(monkeypatch)
    train(ModelScorer(0.0), tmp_path / "a")
    assert trained == []
    train(ModelScorer(1.0), tmp_path / "b", reuse_runs_from=[tmp_path / "a"])
    assert trained == [(1, 1)]  # another reward model: trained, not linked
    train(ModelScorer(0.0), tmp_path / "c", reuse_runs_from=[tmp_path / "a"])
    assert trained == [(1, 1)]  # the same one: linked
    train(ModelScorer(1.0), tmp_path / "a")
    assert trained == [(1, 1), (1, 1)]  # a/ with another reward model: stale, retrained


def test_bf16_autocast_trains_fp32_master_weights(setup, tmp_path):
    """Mixed precision is an execution setting: forwards under bf16 autocast, weights, EMA and
    merges in fp32; the same steps land near the fp32 run, not on it."""
    policy, tokenizer, prompts = setup
    cfg = config(I=1, M=1, T=2)
    fp32 = run(setup, tmp_path / "fp32", cfg)
    mixed = Components(policy, tokenizer, vowel_reward, prompts, SAMPLING,
                       Execution(progress_bars=False, precision="bf16"))
    bf16 = warp_runs.train_warp(cfg, mixed, tmp_path / "bf16")
    assert all(t.dtype == torch.float32 for t in bf16.final.values() if t.is_floating_point())
    assert bf16.metrics[["reward_mean", "kl_to_anchor", "loss"]].notna().all().all()
    name = "transformer.h.0.mlp.c_fc.weight"
    assert not torch.equal(bf16.final[name], fp32.final[name])  # bf16 forwards really ran
    torch.testing.assert_close(bf16.final[name], fp32.final[name], atol=5e-2, rtol=0)


def test_prompts_fingerprint_hashes_each_row_as_json_writes_it():
    """Run stamps written before hold json.dumps-based fingerprints: the faster formatting must
    give the same digest (an oracle: the json.dumps loop)."""
    import hashlib
    import json

    from warp_utils.store.runstore import prompts_fingerprint

    rows = [[50256, 12, 7], [], [0], list(range(300))]
    digest = hashlib.sha256()
    for ids in rows:
        digest.update(json.dumps(list(ids)).encode())
    assert prompts_fingerprint(rows) == digest.hexdigest()[:16]
    assert prompts_fingerprint(rows[:-1]) != prompts_fingerprint(rows)
