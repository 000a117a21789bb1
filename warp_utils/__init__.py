"""warp_utils: the tested helpers behind the WARP course notebooks, in wings by concern.

    config.py    every setting of the course: one frozen dataclass per concern, two profiles
    execution/   devices, threads and processes (a leaf: imports only config)
    core/        Algorithm 1 and its maths: no files, no processes
    store/       what is kept on disk: artifacts, WARP run directories
    inputs/      IMDB, the prompts, the SFT policy, the reward model
    evaluate/    rewards, KLs, fronts, judges, statistics, claims, figures
    course/      the toy WARP, the exercises and their graders
    pipeline.py  the WARP runs of a profile, built or loaded (uses every wing)
    report.py    the report: trains the studies, evaluates them, writes report/
    cli.py       `python -m warp_utils`

A module imports only from its own wing and the layers below it, in this order from low to high:
config, execution, core, store, inputs, evaluate, course, pipeline, report, cli
(tests/test_layers.py checks every import statement against it).
"""
