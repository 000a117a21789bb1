"""How good a policy is, and what the numbers allow one to claim.

    evaluation        reward and KL of a policy, Pareto fronts, paired differences
    stats             the statistics of the claims (bootstrap, Holm, power, chord dips)
    results           the claims and their verdicts, results.json and its markdown
    dense_fronts      LITI fronts measured at target KLs
    judges            the held-out judges of reward hacking
    overoptimization  proxy against gold reward along a front
    text_metrics      simple text measures of completions
    textdiff          what changed in the text: before/after tables, token shifts
    plots             the course's figures

May import: config, execution, core, store, inputs.
"""

from ..lazy import lazy_exports

_EXPORTS = {  # the names the notebooks import from this wing, and their modules
    "FRONT_CLAIMS": "results",
    "POINT_CLAIMS": "results",
    "before_after_table": "textdiff",
    "colour_tokens_html": "textdiff",
    "committed_claims": "results",
    "committed_results": "results",
    "describe_comparison": "judges",
    "envelope_gap": "dense_fronts",
    "envelope_mean": "dense_fronts",
    "EvalContext": "evaluation",
    "evaluate_policy": "evaluation",
    "hacking_paragraph": "results",
    "judge_disagreements": "results",
    "lmc_barrier": "evaluation",
    "one_seed_verdict": "results",
    "paired_difference": "evaluation",
    "pareto_front": "evaluation",
    "plot_bars": "plots",
    "plot_front": "plots",
    "plot_study_curves": "plots",
    "plot_token_shift": "plots",
    "plot_training_curves": "plots",
    "shared_range": "dense_fronts",
    "token_log_ratios": "textdiff",
    "token_shift": "textdiff",
    "vader_scores": "evaluation",
    "words": "textdiff",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
