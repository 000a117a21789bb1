"""Any config field from the command line or the environment, typed and validated by the
dataclasses themselves (no hand-kept list of flags).

    python -m warp_utils run --set warp.T=2 --set reward.epochs=0.1
    WARP_SET="warp.T=2 reward.epochs=0.1" jupyter lab        # the notebooks' get_profile()

`get_profile` is where a profile is chosen and its overrides applied (above config, which only
holds the profiles as written).

A profile with overrides is renamed `<profile>-set-<hash>` (the hash of every section), so its
artifacts go to their own folder: a smoke run never overwrites or invalidates the default ones.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import shlex
import types
import typing

from ..config import DEFAULT_PROFILE, PROFILE_ENV, PROFILES, Profile, check_sampling, config_hash

SECTIONS = ("data", "policy", "reward", "sampling", "warp")
SET_ENV = "WARP_SET"


def field_types(cls) -> dict[str, object]:
    return typing.get_type_hints(cls)


def field_help(cls) -> dict[str, str]:
    """The comment after each field in the class body: the help text of its flag."""
    helps = {}
    for line in inspect.getsource(cls).splitlines():
        match = re.match(r"\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if match:
            helps[match.group(1)] = match.group(2).strip()
    return helps


def parse_value(text: str, kind, name: str):
    """`text` as a value of the annotated type `kind` (int, float, str, bool, X | None)."""
    union = typing.get_origin(kind) in (typing.Union, types.UnionType)
    options = typing.get_args(kind) if union else (kind,)
    if type(None) in options and text.lower() == "none":
        return None
    for option in (o for o in options if o is not type(None)):
        try:
            if option is bool:
                if text.lower() in ("true", "1", "yes"):
                    return True
                if text.lower() in ("false", "0", "no"):
                    return False
                raise ValueError
            if option is int:
                return int(text)
            return option(text)
        except ValueError:
            continue
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ValueError(f"{name} must be {names}, got {text!r}")


def parse_assignments(assignments) -> dict[str, dict[str, str]]:
    """['warp.T=2', ...] -> {'warp': {'T': '2'}}; unknown sections or fields are errors."""
    changes: dict[str, dict[str, str]] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"--set expects SECTION.FIELD=VALUE, got {item!r}")
        if section not in SECTIONS:
            raise ValueError(f"--set {key}: unknown section {section!r} (one of {', '.join(SECTIONS)})")
        changes.setdefault(section, {})[name] = value.strip()
    return changes


def with_overrides(profile: Profile, assignments) -> Profile:
    """`profile` with each SECTION.FIELD=VALUE applied (typed, validated), renamed by its hash."""
    changes = parse_assignments(assignments)
    if not changes:
        return profile
    sections = {}
    for section, fields in changes.items():
        current = getattr(profile, section)
        kinds = field_types(type(current))
        for name in fields:
            if name not in kinds:
                raise ValueError(f"--set {section}.{name}: unknown field (one of {', '.join(kinds)})")
        values = {name: parse_value(text, kinds[name], f"{section}.{name}") for name, text in fields.items()}
        try:
            sections[section] = dataclasses.replace(current, **values)
        except ValueError as error:  # the dataclass's own validation, named by its section
            raise ValueError(f"{section}.{error}") from None
    changed = dataclasses.replace(profile, **sections)
    if "sampling" in sections:
        try:  # a sampling whose distribution is undefined: now, not mid-run
            check_sampling(changed.sampling)
        except ValueError as error:
            raise ValueError(f"sampling.{error}") from None
    if changed == profile:
        return profile
    base = profile.name.split("-set-")[0]
    return dataclasses.replace(changed, name=f"{base}-set-{config_hash(dataclasses.asdict(dataclasses.replace(changed, name=base)))[:8]}")


def env_assignments(environ) -> list[str]:
    return shlex.split(environ.get(SET_ENV, ""))


def get_profile(name: str | None = None, overrides=()) -> Profile:
    """The profile named by `name`, else by $WARP_PROFILE, else `tiny`; with the SECTION.FIELD=VALUE
    `overrides` and those of $WARP_SET applied."""
    name = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    return with_overrides(PROFILES[name], [*env_assignments(os.environ), *overrides])
