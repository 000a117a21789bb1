"""warp_utils.evaluate.overoptimization on curves of known shape: where hacking starts is known exactly."""

import math

import numpy as np
import pandas as pd
import pytest

from warp_utils.evaluate import overoptimization as oo


def curve(kls, heldout, hacked, proxy=None):
    kls = np.asarray(kls, dtype=float)
    return pd.DataFrame({"kl": kls, "proxy": kls if proxy is None else proxy,
                         "heldout_sentiment": np.asarray(heldout, float), "hacked_share": np.asarray(hacked, float)})


def test_training_curve_averages_each_step_and_standardizes_the_proxy():
    samples = pd.DataFrame({"iteration": [1, 1, 1, 2, 2], "step": [1, 1, 5, 1, 1],
                            "reward": [1.0, 3.0, 5.0, 7.0, 9.0], "kl": [0.0, 0.2, 1.0, 2.0, 4.0]})
    judged = pd.DataFrame({"heldout_sentiment": [0.5, 0.7, 0.6, 0.2, 0.4], "hacked": [False, True, False, True, True]})
    out = oo.training_curve(samples, judged, T=5, sft_rewards=[-1.0, 1.0, 3.0])  # mean 1, sd 2
    assert out["global_step"].tolist() == [1, 5, 6]  # iteration 2's step 1 follows iteration 1's T = 5
    assert out["kl"].tolist() == pytest.approx([0.1, 1.0, 3.0])
    assert out["proxy"].tolist() == pytest.approx([0.5, 2.0, 3.5])  # (mean r - 1) / 2
    assert out["heldout_sentiment"].tolist() == pytest.approx([0.6, 0.6, 0.3])
    assert out["hacked_share"].tolist() == pytest.approx([0.5, 0.0, 1.0])
    with pytest.raises(ValueError, match="one row per sample"):
        oo.training_curve(samples, judged.iloc[:3], T=5, sft_rewards=[-1.0, 1.0])


def test_mean_curve_interpolates_every_seed_on_the_shared_range():
    a = curve([0, 0.5, 1, 2, 4], [0.5, 0.6, 0.7, 0.8, 0.9], [0, 0, 0, 0, 0])
    b = curve([0, 1, 3], [0.5, 0.5, 0.5], [0, 0.2, 0.6])
    out = oo.mean_curve([a, b], points=5)
    # grid: 0, then geometric from max(first non-zero) = 1 to min(max) = 3
    assert out["kl"].tolist() == pytest.approx([0.0, *np.geomspace(1.0, 3.0, 5)])
    for kl, value, hacked in zip(out["kl"], out["heldout_sentiment"], out["hacked_share"]):
        expected_a = np.interp(kl, a["kl"], a["heldout_sentiment"])
        assert value == pytest.approx((expected_a + 0.5) / 2)
        assert hacked == pytest.approx(np.interp(kl, b["kl"], b["hacked_share"]) / 2)
    assert set(out["n_seeds"]) == {2}


def test_mean_curve_reads_a_training_path_that_doubles_back_in_kl_order():
    # iteration 2 starts nearer SFT than iteration 1 ended: rows in step order are not in KL order
    path = curve([0.0, 2.0, 4.0, 1.0, 3.0], [0.5, 0.7, 0.9, 0.6, 0.8], [0, 0, 0, 0, 0])
    out = oo.mean_curve([path], points=4)
    assert out["heldout_sentiment"].to_numpy() == pytest.approx(0.5 + out["kl"].to_numpy() / 10)


def test_mean_curve_without_a_shared_range_is_empty():
    out = oo.mean_curve([curve([0, 1], [0.5, 0.6], [0, 0]), curve([0, 2, 3], [0.5, 0.5, 0.5], [0, 0, 0])])
    # first non-zero KLs 1 and 2, largest KLs 1 and 3: no KL is measured by both beyond 0
    assert out.empty


def test_hacking_starts_at_the_interior_peak_of_held_out_sentiment():
    where = oo.hacking_start(curve([0, 1, 2, 3], [0.5, 0.7, 0.6, 0.4], [0, 0, 0.05, 0.08]), sft_hacked_share=0.0)
    assert where == {"kl": 1.0, "reason": "held-out sentiment peaks"}


def test_hacking_starts_where_the_hacked_share_passes_sft_plus_the_margin_if_earlier():
    where = oo.hacking_start(curve([0, 1, 2, 3], [0.5, 0.6, 0.7, 0.6], [0.02, 0.11, 0.13, 0.3]), sft_hacked_share=0.02)
    assert where["kl"] == 2.0 and "hacked share" in where["reason"]  # 0.13 > 0.12; 0.11 is not
    # the peak (KL 2) and the share (KL 2) tie: either way KL 2


def test_no_hacking_when_sentiment_still_rises_and_the_share_stays_low():
    where = oo.hacking_start(curve([0, 1, 2], [0.5, 0.6, 0.7], [0.0, 0.05, 0.09]), sft_hacked_share=0.0)
    assert where["kl"] is None and "not within KL <= 2" in where["reason"]
    assert oo.hacking_sentence(where, "training") == "Along training, no sign of hacking: not within KL <= 2."
    found = {"kl": 1.5, "reason": "held-out sentiment peaks"}
    assert oo.hacking_sentence(found, "training") == ("Along training, hacking starts at KL 1.5 nats "
                                                      "(held-out sentiment peaks).")


def test_front_curve_reads_the_front_columns_sorted_by_kl():
    front = pd.DataFrame({"kl_to_sft": [2.0, 0.0, 1.0], "reward_sd": [0.3, 0.0, 0.2],
                          "heldout_sentiment": [0.4, 0.5, 0.6], "hacked_share": [0.2, 0.0, 0.1], "eta": [1, 0, 0.5]})
    out = oo.front_curve(front)
    assert out["kl"].tolist() == [0.0, 1.0, 2.0] and out["proxy"].tolist() == [0.0, 0.2, 0.3]
    assert out["heldout_sentiment"].tolist() == [0.5, 0.6, 0.4] and not math.isnan(out["hacked_share"].sum())
