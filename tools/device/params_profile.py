"""A params profile (profiles/*.yaml: dotted keys -> values) as a `dvc exp run -S ...` line, or applied to a
params.yaml without dvc (the device runner does that in its working copy). PyYAML only.

The values are applied as dvc's `-S` applies them (tests/test_profiles.py checks this against dvc's own
dvc.utils.hydra.apply_overrides): each dotted key replaces one value, its parents must be mappings that exist, and
a key that params.yaml does not have yet is added (written `-S +key=value` in the dvc line, as Hydra requires).

usage:
  python tools/device/params_profile.py profiles/paper-scale.yaml --exp-run [--name NAME] [--set KEY=VALUE ...]
  python tools/device/params_profile.py profiles/paper-scale.yaml --apply params.yaml [--output PATH] [--set KEY=VALUE ...]
  python tools/device/params_profile.py profiles/paper-scale.yaml --check      (validates with the project's checks)
"""

from __future__ import annotations

import argparse
import copy
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*(\.[A-Za-z0-9_][A-Za-z0-9_\-]*)*$")
BARE = re.compile(r"^[A-Za-z_/][A-Za-z0-9_\-/.@]*$")   # a string Hydra reads back unquoted as the same string
YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "none", "~", "nan", "inf"}


class ProfileError(Exception):
    pass


def load_profile(path: str | Path) -> dict[str, Any]:
    """The `set:` mapping of a profile file (dotted key -> value), checked for form."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("set"), dict) or not data["set"]:
        raise ProfileError(f"{path}: expected a mapping with a non-empty 'set:' of dotted keys to values")
    unknown = set(data) - {"set", "description"}
    if unknown:
        raise ProfileError(f"{path}: unknown top-level keys {sorted(unknown)} (expected 'set' and 'description')")
    for key in data["set"]:
        if not isinstance(key, str) or not KEY.match(key):
            raise ProfileError(f"{path}: set: {key!r} is not a dotted key")
    return dict(data["set"])


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """`KEY=VALUE` strings (VALUE read as YAML, as dvc's -S reads it) -> overrides."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("+")
        if not sep or not KEY.match(key):
            raise ProfileError(f"--set {item!r}: expected KEY=VALUE with a dotted KEY")
        out[key] = yaml.safe_load(value) if value.strip() else ""
    return out


def has_key(params: dict, dotted: str) -> bool:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def apply(params: dict, overrides: dict[str, Any]) -> dict:
    """A copy of `params` with each dotted key set (parents must exist as mappings; a missing leaf is added)."""
    out = copy.deepcopy(params)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
                raise ProfileError(f"{dotted}: params has no mapping '{'.'.join(parts[:i + 1])}'")
            node = node[part]
        if not isinstance(node, dict):
            raise ProfileError(f"{dotted}: the parent is not a mapping")
        node[parts[-1]] = copy.deepcopy(value)
    return out


def hydra_value(value: Any) -> str:
    """A value in Hydra's override grammar (what `dvc exp run -S` parses), read back as the same YAML value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text if ("." in text or "e" in text or "n" in text) else text + ".0"
    if isinstance(value, str):
        plain = BARE.match(value) and value.lower() not in YAML_WORDS
        try:
            float(value)
            plain = False
        except ValueError:
            pass
        if plain:
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    raise ProfileError(f"cannot write {value!r} as a -S value")


def exp_run_args(params: dict, overrides: dict[str, Any]) -> list[str]:
    """['-S', 'key=value', ...]; `+key=value` where params does not have the key yet (Hydra's append)."""
    args = []
    for key, value in overrides.items():
        args += ["-S", f"{'' if has_key(params, key) else '+'}{key}={hydra_value(value)}"]
    return args


def exp_run_line(params: dict, overrides: dict[str, Any], name: str | None = None,
                 env: str = "GLOBALDIFF_DEVICE=cuda") -> str:
    words = ["dvc", "exp", "run"] + (["-n", name] if name else []) + exp_run_args(params, overrides)
    return (env + " " if env else "") + " ".join(shlex.quote(w) for w in words)


def write_params(params: dict, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))


def validate(params: dict) -> None:
    """The project's own checks: config.params.validate, then run.backbone.check_backbone_params per backbone."""
    from globaldiff.config.params import validate as validate_params
    from globaldiff.run.backbone import check_backbone_params

    validate_params(params)
    for name in params["backbones"]:
        check_backbone_params(params, name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", nargs="*", help="profile files, applied in order")
    ap.add_argument("--set", action="append", metavar="KEY=VALUE", help="more overrides, after the profiles")
    ap.add_argument("--params", default="params.yaml", help="the params the overrides apply to")
    ap.add_argument("--exp-run", action="store_true", help="print the `dvc exp run -S ...` line")
    ap.add_argument("--name", help="experiment name for --exp-run (-n)")
    ap.add_argument("--apply", metavar="PARAMS", help="write PARAMS with the overrides (to --output or in place)")
    ap.add_argument("--output", help="where --apply writes (default: PARAMS itself)")
    ap.add_argument("--check", action="store_true", help="validate the result with globaldiff's checks")
    args = ap.parse_args(argv)
    try:
        overrides: dict[str, Any] = {}
        for path in args.profile:
            overrides.update(load_profile(path))
        overrides.update(parse_set(args.set))
        if not overrides:
            raise ProfileError("no overrides: name a profile or --set")
        base_path = Path(args.apply or args.params)
        base = yaml.safe_load(base_path.read_text())
        result = apply(base, overrides)
        if args.check:
            validate(result)
            print(f"ok: {len(overrides)} overrides on {base_path} pass the project's validation", file=sys.stderr)
        if args.exp_run:
            print(exp_run_line(base, overrides, args.name))
        if args.apply:
            write_params(result, args.output or args.apply)
        if not (args.exp_run or args.apply or args.check):
            print(yaml.safe_dump(result, sort_keys=False), end="")
    except ProfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a ConfigError from --check
        if type(e).__name__ == "ConfigError":
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
