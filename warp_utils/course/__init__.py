"""The course's own material: the toy WARP, the exercises and their graders.

    toy             a softmax-policy WARP solvable exactly, in float64
    exercises       the graders of the notebooks" exercises
    exercise_cases  their cases and oracles
    bugs            known wrong versions every grader rejects
    solutions       the reference solutions
    environment     the notebooks" first check of the Python environment

May import: config, execution, core, store, inputs, evaluate.
"""

import importlib

_EXPORTS = {  # the names the notebooks import from this wing, and their modules
    "check_environment": "environment",
}


def __getattr__(name):  # a re-exported name is imported from its module when first used
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__():
    return sorted([*globals(), *_EXPORTS])
