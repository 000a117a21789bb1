"""The course's own material: the toy WARP, the exercises and their graders.

    toy             a softmax-policy WARP solvable exactly, in float64
    exercises       the graders of the notebooks' exercises
    exercise_cases  their cases and oracles
    bugs            known wrong versions every grader rejects
    solutions       the reference solutions
    environment     the notebooks' first check of the Python environment
    smol            notebook 07's profile: smol, or its tiny GGUF fixture under the tests

May import: config, execution, core, store, inputs, evaluate.
"""

from ..lazy import lazy_exports

_EXPORTS = {  # the names the notebooks import from this wing, and their modules
    "check_environment": "environment",
    "smol_profile": "smol",
    "uses_fixture": "smol",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
