import sys

from .course.environment import check_environment

if __name__ == "__main__":  # spawned worker processes re-import this module: they must not rerun the CLI
    try:
        check_environment()  # before the CLI imports torch: a missing package is one line, not a traceback
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    from .cli import main

    raise SystemExit(main())
