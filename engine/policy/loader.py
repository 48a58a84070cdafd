"""Load and validate a policy folder: `default.yaml` plus `teams/<team>.yaml` overrides.

A team file names the policy it overrides (`extends: default`, or another team); mappings merge
deeply and lists replace. Every file is validated as a whole `Policy`, and every error names the file,
line, column and key path. Nothing here changes the active policy: the store swaps in a `PolicySet`
only when all of it is valid.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.policy.errors import PolicyError, PolicyIssue
from engine.policy.models import Policy, reference_errors
from engine.stages.tier.checks import tier_reference_errors
from engine.policy.yaml_source import (
    KeyPath,
    Position,
    SourceDocument,
    display_path,
    format_key_path,
    read_policy_file,
)

BASE_NAME = "default"
# Keys that only the base policy may set: who may call the gateway is not a team's decision.
BASE_ONLY_KEYS = ("auth", "keys", "admin_keys")
# Top-level keys whose value a team replaces whole instead of merging into: a tier model's
# coefficients, standardisation and centroids belong together, so mixing two models is never valid.
REPLACED_KEYS = ("tier_model",)


@dataclass(frozen=True)
class KeyEntry:
    team: str
    name: str | None


@dataclass
class PolicySet:
    """A validated, immutable-by-convention set of policies: the base and one per team."""

    directory: Path
    version: str
    base: Policy
    teams: dict[str, Policy]
    files: list[str]
    gateway_keys: dict[str, KeyEntry] = field(default_factory=dict)  # sha256 -> team
    admin_keys: frozenset[str] = frozenset()
    warnings: list[str] = field(default_factory=list)

    def for_team(self, team: str) -> Policy:
        return self.teams.get(team, self.base)

    def team_names(self) -> list[str]:
        return [BASE_NAME, *sorted(self.teams)]


def deep_merge(base: Any, override: Any) -> Any:
    """Merge `override` over `base`: mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return copy.deepcopy(override)


def _position_for(loc: KeyPath, layers: list[SourceDocument]) -> Position:
    """Find the most specific known position of `loc`; later layers (the team file) win ties."""
    best: tuple[int, Position] | None = None
    for document in layers:
        for length in range(len(loc), -1, -1):
            position = document.positions.get(tuple(loc[:length]))
            if position is not None:
                if best is None or length >= best[0]:
                    best = (length, position)
                break
    if best is None:
        return Position("<unknown>", 1, 1)
    return best[1]


def _clean_loc(loc: tuple[Any, ...]) -> KeyPath:
    # pydantic adds pseudo-segments for unions and tagged models ("function-after[...]", "str").
    cleaned: list[str | int] = []
    for part in loc:
        if isinstance(part, int):
            cleaned.append(part)
        elif isinstance(part, str) and not any(mark in part for mark in ("[", "(", "function-")):
            cleaned.append(part)
    return tuple(cleaned)


def _issues_from_validation(error: ValidationError, layers: list[SourceDocument]) -> list[PolicyIssue]:
    issues = []
    for detail in error.errors(include_url=False):
        loc = _clean_loc(tuple(detail.get("loc", ())))
        message = detail.get("msg", "invalid value")
        if message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if detail.get("type") == "extra_forbidden":
            message = "unknown key (check the spelling against schemas/policy.schema.json)"
        elif detail.get("type") == "missing":
            message = "required key is missing"
        elif "input" in detail and detail.get("type") not in ("model_type", "dict_type", "list_type"):
            value = detail["input"]
            if isinstance(value, (str, int, float, bool)) and "api_key" not in loc and repr(value) not in message:
                message = f"{message}, got {value!r}"
        position = _position_for(loc, layers)
        issues.append(PolicyIssue(position.file, position.line, position.column, format_key_path(loc), message))
    return issues


def _check_secret_sources(document: SourceDocument) -> list[PolicyIssue]:
    """Provider keys must come from the environment, never inline in a policy file."""
    issues = []
    providers = document.data.get("providers") if isinstance(document.data, dict) else None
    if not isinstance(providers, dict):
        return issues
    for name, provider in providers.items():
        if not isinstance(provider, dict) or provider.get("api_key") in (None, ""):
            continue
        path: KeyPath = ("providers", name, "api_key")
        raw = document.raw_strings.get(path)
        if raw is None or not raw.strip().startswith("${"):
            position = document.positions.get(path, Position(display_path(document.files[0]), 1, 1))
            issues.append(
                PolicyIssue(position.file, position.line, position.column, format_key_path(path),
                            "provider keys must come from an environment variable, e.g. ${ANTHROPIC_API_KEY}; "
                            "remove the inline key from the file")
            )
    return issues


def _content_version(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(set(files)):
        digest.update(str(path.name).encode())
        try:
            digest.update(path.read_bytes())
        except OSError:
            pass
    return digest.hexdigest()[:12]


class _Loader:
    def __init__(self, directory: Path, environ: dict[str, str] | None):
        self.directory = directory
        self.environ = environ
        self.documents: dict[str, SourceDocument] = {}
        self.issues: list[PolicyIssue] = []
        self.warnings: list[str] = []

    def path_of(self, name: str) -> Path:
        if name == BASE_NAME:
            return self.directory / f"{BASE_NAME}.yaml"
        return self.directory / "teams" / f"{name}.yaml"

    def document(self, name: str) -> SourceDocument | None:
        if name not in self.documents:
            try:
                document = read_policy_file(self.path_of(name), self.environ)
            except PolicyError as error:
                self.issues.extend(error.issues)
                return None
            if not isinstance(document.data, dict):
                self.issues.append(PolicyIssue(display_path(self.path_of(name)), 1, 1, "", "a policy file must be a YAML mapping"))
                return None
            for env_name, position in document.missing_env:
                self.warnings.append(f"{position.file}:{position.line}:{position.column}: environment variable {env_name} is not set")
            self.issues.extend(_check_secret_sources(document))
            self.documents[name] = document
        return self.documents[name]

    def issue_at(self, name: str, document: SourceDocument | None, key: str, message: str) -> None:
        """Record an issue at `key` of a policy file, or at its first line when the key is not in it."""
        fallback = Position(display_path(self.path_of(name)), 1, 1)
        position = document.positions.get((key,), fallback) if document is not None else fallback
        self.issues.append(PolicyIssue(position.file, position.line, position.column, key, message))

    def layers(self, name: str, chain: tuple[str, ...] = ()) -> list[SourceDocument] | None:
        """Return the documents that make up a policy, base first, or None after recording an issue."""
        if name in chain:
            self.issue_at(name, None, "extends", f"extends cycle: {' -> '.join((*chain, name))}")
            return None
        document = self.document(name)
        if document is None:
            return None

        parent = document.data.get("extends")
        if name == BASE_NAME:
            if parent is not None:
                self.issue_at(name, document, "extends", "the base policy cannot extend another policy")
                return None
            return [document]

        if parent is None:
            parent = BASE_NAME
        if not isinstance(parent, str) or not (parent == BASE_NAME or self.path_of(parent).exists()):
            self.issue_at(name, document, "extends",
                          f"unknown policy {parent!r}; use `default` or the name of a file in teams/")
            return None
        for key in BASE_ONLY_KEYS:
            if key in document.data:
                self.issue_at(name, document, key, f"`{key}` may only be set in {BASE_NAME}.yaml; "
                                                   "a team file cannot change who may call the gateway")

        parents = self.layers(parent, (*chain, name))
        if parents is None:
            return None
        return [*parents, document]

    def validate(self, name: str) -> Policy | None:
        layers = self.layers(name)
        if layers is None:
            return None
        data: Any = {}
        for document in layers:
            replaced = [key for key in REPLACED_KEYS if key in document.data]
            inherited = {key: value for key, value in data.items() if key not in replaced}
            data = deep_merge(inherited, document.data)
        try:
            policy = Policy.model_validate(data)
        except ValidationError as error:
            self.issues.extend(_issues_from_validation(error, layers))
            return None
        problems = reference_errors(policy) + tier_reference_errors(policy)
        for loc, message in problems:
            position = _position_for(loc, layers)
            self.issues.append(PolicyIssue(position.file, position.line, position.column, format_key_path(loc), message))
        return None if problems else policy


def load_policy_set(directory: str | Path, environ: dict[str, str] | None = None) -> PolicySet:
    """Load and validate every policy in `directory`. Raises PolicyError listing all issues."""
    directory = Path(directory)
    if not (directory / f"{BASE_NAME}.yaml").is_file():
        raise PolicyError([PolicyIssue(display_path(directory / f"{BASE_NAME}.yaml"), 1, 1, "", "file not found; a policy folder needs default.yaml")])
    loader = _Loader(directory, environ)
    base = loader.validate(BASE_NAME)
    teams: dict[str, Policy] = {}
    team_dir = directory / "teams"
    if team_dir.is_dir():
        for path in sorted(team_dir.glob("*.yaml")):
            policy = loader.validate(path.stem)
            if policy is not None:
                teams[path.stem] = policy
    if loader.issues or base is None:
        unique = list(dict.fromkeys(loader.issues))
        raise PolicyError(unique)

    files = [path for document in loader.documents.values() for path in document.files]
    gateway_keys = {key.sha256: KeyEntry(key.team, key.name) for key in base.keys}
    unknown_teams = sorted({entry.team for entry in gateway_keys.values()} - set(teams) - {BASE_NAME})
    warnings = list(dict.fromkeys(loader.warnings))
    for team in unknown_teams:
        warnings.append(f"keys map to team {team!r}, which has no teams/{team}.yaml; it is served the default policy")
    return PolicySet(
        directory=directory,
        version=_content_version(files),
        base=base,
        teams=teams,
        files=sorted({display_path(path) for path in files}),
        gateway_keys=gateway_keys,
        admin_keys=frozenset(key.sha256 for key in base.admin_keys),
        warnings=warnings,
    )
