"""Algorithm 1 is one loop (issue 27, item 2): core.warp.algorithm1, run by the toy and the LM,
with the run, the executor and the store handed in; one seed formula for both."""

import torch

from warp_utils.core import warp
from warp_utils.core.weights import liti, slerp
from warp_utils.course import toy
from warp_utils.execution.distributed import World
from warp_utils.execution.executors import InProcess, ProcessGroup
from warp_utils.store import warp_runs


def state(value):
    return {"w": torch.tensor([value, 2.0 * value], dtype=torch.float64)}


class Recorder(warp.InMemory):
    """The in-memory store, noting what the loop asks it for, in order."""

    def __init__(self):
        self.calls = []

    def run(self, iteration, run, theta_init, train):
        self.calls.append(("run", iteration, run, float(theta_init["w"][0])))
        return super().run(iteration, run, theta_init, train)

    def merge(self, iteration, step, theta_init, runs, compute):
        self.calls.append((step, iteration, len(runs)))
        return super().merge(iteration, step, theta_init, runs, compute)


def fake_train(iteration, run, theta_init, folder):
    """theta_m moves theta_init by m in one direction and by 10 * i in another; its EMA elsewhere."""
    theta = {"w": theta_init["w"] + torch.tensor([run, 10.0 * iteration], dtype=torch.float64)}
    return theta, {"w": theta_init["w"] - 100.0}


def test_the_loop_reads_like_the_paper():
    config = toy.ToyConfig(I=2, M=3, eta=0.5)
    store = Recorder()
    history = list(warp.algorithm1(state(1.0), config, fake_train, InProcess(), store))
    # for i: for m: run m from theta_init, then SLERP, then LITI
    next_start = float(history[0].theta_next["w"][0])
    assert store.calls == [("run", 1, m, 1.0) for m in (1, 2, 3)] + [("slerp", 1, 3), ("liti", 1, 3)] + [
        ("run", 2, m, next_start) for m in (1, 2, 3)] + [("slerp", 2, 3), ("liti", 2, 3)]
    for it in history:
        thetas = [run.theta for run in it.runs]  # the trained weights, not the EMAs
        assert torch.equal(it.theta_slerp["w"], slerp(it.theta_init, thetas)["w"])
        assert torch.equal(it.theta_next["w"], liti(it.theta_init, it.theta_slerp, 0.5)["w"])
    assert history[1].theta_init is history[0].theta_next


def test_a_one_process_group_is_the_in_process_executor():
    """ProcessGroup on a world of one: every run and merge passes through its sharing unchanged."""
    config = toy.ToyConfig(I=2, M=2, eta=0.3)
    alone = list(warp.algorithm1(state(1.0), config, fake_train, InProcess(), warp.InMemory()))
    group = ProcessGroup(World(), like=state(0.0))
    grouped = list(warp.algorithm1(state(1.0), config, fake_train, group, warp.InMemory()))
    for a, b in zip(alone, grouped):
        assert torch.equal(a.theta_next["w"], b.theta_next["w"])
        assert [torch.equal(r.theta["w"], s.theta["w"]) for r, s in zip(a.runs, b.runs)] == [True, True]


def test_the_toy_and_the_lm_run_the_one_loop(monkeypatch):
    stores, real = [], warp.algorithm1

    def spy(theta_sft, config, train, executor, store, merge=slerp):
        stores.append(type(store).__name__)
        return real(theta_sft, config, train, executor, store, merge)

    monkeypatch.setattr(warp, "algorithm1", spy)
    theta_sft, reward = toy.make_bandit(num_prompts=3, num_tokens=4, seed=0)
    toy.warp(theta_sft, reward, toy.ToyConfig(I=1, M=2, T=2, batch_size=2))
    assert stores == ["InMemory"]
    assert warp_runs.algorithm1 is real  # train_warp's loop, with its RunFolders store


def test_one_seed_formula_for_the_toy_and_the_lm(monkeypatch):
    """The toy's run (i, m) (counted from 0) draws from core.warp.run_seed, as the LM's runs do."""
    theta_sft, reward = toy.make_bandit(num_prompts=3, num_tokens=4, seed=0)
    run = toy.make_run(reward, T=3, batch_size=2, seed=7)
    by_seed = toy.rl_run(theta_sft, reward, toy.ToyConfig(T=3, batch_size=2),
                         torch.Generator().manual_seed(warp.run_seed(7, 1, 0)))
    assert torch.equal(run(1, 0, theta_sft)[0]["table"], by_seed[0]["table"])
    monkeypatch.setattr(warp, "run_seed", lambda seed, iteration, run: 12345)
    assert not torch.equal(toy.make_run(reward, T=3, batch_size=2, seed=7)(1, 0, theta_sft)[0]["table"],
                           by_seed[0]["table"])


def test_a_caller_that_keeps_nothing_holds_no_finished_iteration():
    """The loop yields each iteration and lets go of it: while iteration 2 trains, only its
    theta_init (iteration 1's LITI) is alive of iteration 1, when the caller keeps nothing (a
    worker process: its results are on disk). The toy's tensors stand for 0.5 GB models."""
    import gc
    import weakref

    alive_in_iteration_2 = []
    refs = {}

    def train(iteration, run, theta_init, folder):
        if iteration == 2 and run == 1:
            gc.collect()
            alive_in_iteration_2.extend(name for name, ref in refs.items() if ref() is not None)
        theta, ema = fake_train(iteration, run, theta_init, folder)
        refs[f"theta {iteration}.{run}"], refs[f"ema {iteration}.{run}"] = weakref.ref(theta["w"]), weakref.ref(ema["w"])
        return theta, ema

    class Tracking(warp.InMemory):
        def merge(self, iteration, step, theta_init, runs, compute):
            merged = compute()
            refs[f"{step} {iteration}"] = weakref.ref(merged["w"])
            return merged

    for iteration in warp.algorithm1(state(1.0), toy.ToyConfig(I=2, M=2, eta=0.5), train, InProcess(), Tracking()):
        del iteration  # keep nothing (as train_warp(keep=False) does): a loop variable would hold it
    assert alive_in_iteration_2 == ["liti 1"]
