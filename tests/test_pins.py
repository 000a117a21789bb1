"""Pinned values, computed before the package was reorganised (issue 27, item 8): a move of code
must leave every config hash, run key, run folder name and result bitwise as it was, so that a
data/ built before the move is found fresh afterwards and reused without a rebuild.

The literals were printed by the code of the commit that added this file; a change here is a
change of behaviour (new run keys: every trained artifact stale), never a refactoring."""

import torch

from warp_utils import report
from warp_utils.config import artifacts_dir, config_hash
from warp_utils.execution.overrides import get_profile
from warp_utils.course import toy
from warp_utils.pipeline import warp_run_dir
from warp_utils.store import runstore

SECTION_HASHES = {"data": "868fbeb3162d3872", "policy": "37dad53e14890b19", "reward": "a1de0971f8b9953b",
                  "sampling": "3ff401890343c1cd", "warp": "280dd0c6d18ec7e8"}

# report.seed_studies of the tiny profile: (config_hash of the WarpConfig, run folder under artifacts/tiny/)
STUDIES = {
    42: {
        "warp": ("280dd0c6d18ec7e8", "warp"),
        "M = 1": ("8c2832a749c12b04", "warp_runs/I=1_M=1"),
        "M = 3": ("0210cac8a9c732b1", "warp_runs/I=1_M=3"),
        "REINFORCE, SFT anchor": ("50a5b365a6329595", "warp_runs/I=1_M=1_mu=0.0"),
        "REINFORCE, SFT anchor, equal compute": ("cd423cf1e031c785", "warp_runs/I=1_M=1_T=200_mu=0.0"),
        "mu=0.05": ("b060a382ff09dec4", "warp_runs/mu=0.05"),
        "lr=0.001": ("ff677ef7e167a14c", "warp_runs/I=1_lr=0.001"),
    },
    43: {
        "warp": ("e4d2d60647c3a2de", "warp_runs/seed=43"),
        "M = 1": ("a5c7add91b5c3466", "warp_runs/I=1_M=1_seed=43"),
        "M = 3": ("6d63ca00a9f10147", "warp_runs/I=1_M=3_seed=43"),
        "REINFORCE, SFT anchor": ("f8e5c4784579ec67", "warp_runs/I=1_M=1_mu=0.0_seed=43"),
        "REINFORCE, SFT anchor, equal compute": ("7fde8d52b035b2a2", "warp_runs/I=1_M=1_T=200_mu=0.0_seed=43"),
        "mu=0.05": ("7b277fb99d5e14b1", "warp_runs/mu=0.05_seed=43"),
        "lr=0.001": ("a9e22963786c918b", "warp_runs/I=1_lr=0.001_seed=43"),
    },
}

# config_hash(runstore.run_config(...)) of every run (i, m) of each study of seed 42, in (i, m)
# order, for a fixed theta_init and fixed input fingerprints: the keys build_once stamps runs with.
RUN_KEYS = {
    "warp": ["80f65a0b9d43d192", "11d0bab076622079", "253d0e49a8ba3827", "dc369c4fd376a09a"],
    "M = 1": ["80f65a0b9d43d192"],
    "M = 3": ["80f65a0b9d43d192", "11d0bab076622079", "4884a92e7590598c"],
    "REINFORCE, SFT anchor": ["6c3801789d7d6f5f"],
    "REINFORCE, SFT anchor, equal compute": ["a5b57f4047f9abb7"],
    "mu=0.05": ["a051b8354d024c4b", "fe7aba382fe1c665", "ff46828eb90e2202", "efcd42fd3a2cbe8c"],
    "lr=0.001": ["a97168be7c34bc8a", "23a8585b99a51e6a"],
}
THETA_INIT = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
INPUTS = {"theta_sft": "0" * 16, "prompts": "1" * 16, "reward_model": "2" * 16}

# toy.warp(make_bandit(6, 5, seed=3), I=2, M=2, T=10, seed=1), per iteration: E[r] of each run
# (float.hex), E[r] of the merge, KL(theta_next || theta_sft), and the bytes of theta_next and of
# run 2's EMA anchor (runstore.state_fingerprint).
TOY = [
    (["0x1.1d0b17974f9e7p-1", "0x1.2a16316fa66a2p-1"], "0x1.2bdf7509d9054p-1", "0x1.819c8a79e41e3p-5",
     "386e17f1570542fd", "71fcac460108018f"),
    (["0x1.3b825e6e05e52p-1", "0x1.42752cef3951cp-1"], "0x1.41feeaac1f0fcp-1", "0x1.5404667ad1569p-3",
     "66aadb975efd1214", "413d2620630761b7"),
]

# test_warp's tiny GPT-2 trained by train_warp (its default config, one thread): the final merge,
# iteration 1's two runs, and the sum of every step's mean reward.
LM = ("ba6330309074cea7", ["1b99057d700fb97c", "acfef1a9cf54a352"], "0x1.3dfece2000000p+1")


def test_the_profile_sections_hash_as_before():
    profile = get_profile("tiny")
    assert {name: config_hash(getattr(profile, name)) for name in SECTION_HASHES} == SECTION_HASHES


def test_the_studies_hash_and_name_their_folders_as_before():
    profile = get_profile("tiny")
    for seed, expected in STUDIES.items():
        got = {key: (config_hash(config), warp_run_dir(profile, config).relative_to(artifacts_dir(profile)).as_posix())
               for key, config in report.seed_studies(profile, seed).items()}
        assert got == expected


def test_the_run_keys_are_as_before():
    profile = get_profile("tiny")
    got = {key: [config_hash(runstore.run_config(config, profile.sampling, i, m, THETA_INIT, INPUTS))
                 for i in range(1, config.I + 1) for m in range(1, config.M + 1)]
           for key, config in report.studies(profile.warp).items()}
    assert got == RUN_KEYS


def test_the_toy_warp_gives_the_same_float64_numbers():
    theta_sft, reward = toy.make_bandit(num_prompts=6, num_tokens=5, seed=3)
    history = toy.warp(theta_sft, reward, toy.ToyConfig(I=2, M=2, T=10, seed=1))
    got = [([toy.expected_reward(t, reward).hex() for t in record["thetas"]],
            toy.expected_reward(record["theta_merged"], reward).hex(),
            toy.kl(record["theta_next"], theta_sft).hex(),
            runstore.state_fingerprint(record["theta_next"]),
            runstore.state_fingerprint(record["theta_emas"][1])) for record in history]
    assert got == TOY


def test_the_lm_warp_gives_the_same_weights(tmp_path):
    from test_warp import run, setup

    result = run(setup.__wrapped__(), tmp_path / "run")
    got = (runstore.state_fingerprint(result.final), [runstore.state_fingerprint(t) for t in result.theta_runs[0]],
           float(result.metrics["reward_mean"].sum()).hex())
    assert got == LM
