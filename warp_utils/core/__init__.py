"""Algorithm 1 and its maths: no files, no processes.

    weights        state-dict maths: EMA, LERP, SLERP, LITI, task vectors
    rl             one RL step: sample, reward, KL to the anchor, REINFORCE
    sampling       the policy's sampler (y ~ pi(.|x)) and its checks
    decoding       the decoding loop every lean sampler shares (draw, pad ended rows, stop)
    gpt2_sampling  the KV-cache forward of GPT-2 the sampler uses
    llama_sampling the same for Llama-architecture policies (SmolLM2)
    blocked_matmul the decoding matmul of llama_sampling: y = x W^T in MKL's order of sums (C)
    scoring        log-probs and rewards of a rollout
    warp           Algorithm 1 of the paper: the one loop the toy and the LM run, the seed of a
                   run, and the T steps of one LM run

May import: config, execution.
"""

from ..lazy import lazy_exports

_EXPORTS = {  # the names the notebooks import from this wing, and their modules
    "decode_texts": "rl",
    "ema": "weights",
    "ema_": "weights",
    "exact_kl": "rl",
    "generate": "rl",
    "left_pad": "rl",
    "lerp": "weights",
    "liti": "weights",
    "next_token_log_probs": "rl",
    "reinforce_loss": "rl",
    "sequence_logprobs": "rl",
    "slerp": "weights",
    "task_norm": "weights",
    "task_vector": "weights",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
