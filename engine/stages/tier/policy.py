"""Policy models of tier routing: the tier model, tier rules, session stickiness and marker words.

Everything that can be compiled is compiled here at load (regexes, numpy arrays), never per request.
"""

from __future__ import annotations

import fnmatch
import math
import re
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

# The 15 tier features, in the order the model's coefficients use. The names are policy keys.
FEATURE_NAMES: tuple[str, ...] = (
    "log_input_tokens",
    "log_last_user_tokens",
    "message_count",
    "tool_result_share",
    "tool_rounds",
    "tools_offered",
    "write_tools_offered",
    "code_lines",
    "error_trace_lines",
    "file_references",
    "reasoning_markers",
    "multi_step_markers",
    "risk_markers",
    "lookup_markers",
    "semantic_difficulty",
)
SEMANTIC_INDEX = FEATURE_NAMES.index("semantic_difficulty")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Centroids(_Strict):
    """Mean unit embeddings of the hard and the easy training prompts."""

    hard: list[float] = Field(min_length=2)
    easy: list[float] = Field(min_length=2)

    @model_validator(mode="after")
    def _check_same_size(self) -> "Centroids":
        if len(self.hard) != len(self.easy):
            raise ValueError(f"hard has {len(self.hard)} values but easy has {len(self.easy)}; both must have the embedder's size")
        for name, values in (("hard", self.hard), ("easy", self.easy)):
            if not all(math.isfinite(number) for number in values) or not any(values):
                raise ValueError(f"{name}: values must be finite and not all zero")
        return self


class Provenance(_Strict):
    """Provenance of a trained model, as `leangate train-tier` writes it."""

    trained_at: str | None = Field(None, description="UTC time of training, ISO 8601.")
    rows: int | None = Field(None, ge=0, description="Labelled rows the model was fitted on.")
    hard_rows: int | None = Field(None, ge=0, description="Rows labelled hard among them.")
    cv_auc: float | None = Field(None, ge=0, le=1, description="Stratified cross-validated ROC AUC.")
    cv_folds: int | None = Field(None, ge=2)
    target_recall: float | None = Field(None, gt=0, le=1, description="Recall of hard rows the threshold aims at.")
    threshold: float | None = Field(
        None, ge=0, le=1, description="Probability that reaches target_recall; a suggestion for the cheap tier's `below`."
    )
    sources: list[str] = Field(default_factory=list, description="Input files, by name.")


class TierModel(_Strict):
    """A logistic model over the 15 tier features, with standardisation, as `leangate train-tier` writes it."""

    features: list[str] = Field(description="The 15 feature names, in order.")
    coefficients: list[float]
    intercept: float
    mean: list[float] = Field(description="Standardisation: per-feature mean of the training rows.")
    scale: list[float] = Field(description="Standardisation: per-feature standard deviation (positive).")
    embedder: str | None = Field(None, description="Name of the embedder the centroids belong to.")
    centroids: Centroids | None = Field(
        None, description="Needed when `semantic_difficulty` has a non-zero coefficient."
    )
    provenance: Provenance = Field(default_factory=Provenance)

    _weights: np.ndarray = PrivateAttr()
    _mean: np.ndarray = PrivateAttr()
    _scale: np.ndarray = PrivateAttr()
    _hard: np.ndarray | None = PrivateAttr(None)
    _easy: np.ndarray | None = PrivateAttr(None)

    @field_validator("features")
    @classmethod
    def _check_features(cls, value: list[str]) -> list[str]:
        if tuple(value) != FEATURE_NAMES:
            missing = [name for name in FEATURE_NAMES if name not in value]
            unknown = [name for name in value if name not in FEATURE_NAMES]
            details = []
            if missing:
                details.append(f"missing {missing}")
            if unknown:
                details.append(f"unknown {unknown}")
            if not details:
                details.append("same names in another order")
            raise ValueError(
                f"must list the {len(FEATURE_NAMES)} tier features in this order: {list(FEATURE_NAMES)} "
                f"({'; '.join(details)}); retrain with `leangate train-tier`"
            )
        return value

    @field_validator("coefficients", "mean", "scale")
    @classmethod
    def _check_length(cls, value: list[float]) -> list[float]:
        if len(value) != len(FEATURE_NAMES):
            raise ValueError(f"must have {len(FEATURE_NAMES)} values, one per feature, got {len(value)}")
        if not all(math.isfinite(number) for number in value):
            raise ValueError("values must be finite numbers")
        return value

    @field_validator("scale")
    @classmethod
    def _check_scale(cls, value: list[float]) -> list[float]:
        for index, number in enumerate(value):
            if number <= 0:
                raise ValueError(f"{FEATURE_NAMES[index]}: scale must be positive, got {number}")
        return value

    @model_validator(mode="after")
    def _check_centroids(self) -> "TierModel":
        if self.coefficients[SEMANTIC_INDEX] != 0 and self.centroids is None:
            raise ValueError("centroids: required because semantic_difficulty has a non-zero coefficient")
        if self.centroids is not None and not self.embedder:
            raise ValueError("embedder: name the embedder the centroids were computed with")
        return self

    def model_post_init(self, context: Any) -> None:
        self._weights = np.asarray(self.coefficients, dtype=np.float64)
        self._mean = np.asarray(self.mean, dtype=np.float64)
        self._scale = np.asarray(self.scale, dtype=np.float64)
        if self.centroids is not None:
            self._hard = _unit(np.asarray(self.centroids.hard, dtype=np.float32))
            self._easy = _unit(np.asarray(self.centroids.easy, dtype=np.float32))

    def __eq__(self, other: object) -> bool:
        # NOTE: pydantic's __eq__ also compares private attributes, and numpy arrays have no single
        # truth value, so equality is defined on the declared fields only.
        if not isinstance(other, TierModel):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]

    def probability(self, values: np.ndarray) -> float:
        """Return the strong-tier probability for raw feature values in FEATURE_NAMES order."""
        standardised = (values - self._mean) / self._scale
        logit = float(standardised @ self._weights) + self.intercept
        return _sigmoid(logit)

    def semantic_difficulty(self, embedding: np.ndarray) -> float:
        """Return cos(embedding, hard centroid) - cos(embedding, easy centroid)."""
        if self._hard is None or self._easy is None:
            raise ValueError("this tier model has no centroids")
        vector = _unit(np.asarray(embedding, dtype=np.float32).reshape(-1))
        if vector.shape != self._hard.shape:
            raise ValueError(f"embedding has {vector.shape[0]} values, the centroids {self._hard.shape[0]}")
        return float(vector @ self._hard - vector @ self._easy)

    def semantic_fallback(self) -> float:
        """Return the value that standardises to 0, used when no embedding is available."""
        return float(self._mean[SEMANTIC_INDEX])


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        raise ValueError("a centroid or embedding must not be all zeros")
    return vector / norm


def _sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    exp = math.exp(logit)
    return exp / (1.0 + exp)


class FeatureBound(_Strict):
    """A bound on one feature's raw value; the condition holds when every given bound holds."""

    above: float | None = Field(None, description="Holds when the value is greater than this.")
    below: float | None = Field(None, description="Holds when the value is less than this.")

    @model_validator(mode="after")
    def _check_any(self) -> "FeatureBound":
        if self.above is None and self.below is None:
            raise ValueError("give `above`, `below` or both")
        return self

    def holds(self, value: float) -> bool:
        if self.above is not None and not value > self.above:
            return False
        if self.below is not None and not value < self.below:
            return False
        return True


class RuleCondition(_Strict):
    """Conditions of a tier rule; all given conditions must hold."""

    request_class: str | list[str] | None = Field(
        None, alias="class", description="Request class name(s) set by the classifier (ctx.scratch['class'])."
    )
    last_user_text: str | None = Field(None, description="Regex searched in the last user text.")
    thinking: bool | None = Field(None, description="True: the client asked for extended thinking.")
    features: dict[str, FeatureBound] = Field(default_factory=dict, description="Feature name -> bound.")

    _pattern: re.Pattern[str] | None = PrivateAttr(None)

    @field_validator("last_user_text")
    @classmethod
    def _check_regex(cls, value: str | None) -> str | None:
        if value is not None:
            _compile_regex(value)
        return value

    @field_validator("features")
    @classmethod
    def _check_feature_names(cls, value: dict[str, FeatureBound]) -> dict[str, FeatureBound]:
        for name in value:
            if name not in FEATURE_NAMES:
                raise ValueError(f"unknown feature {name!r}; use one of {list(FEATURE_NAMES)}")
        return value

    def model_post_init(self, context: Any) -> None:
        if self.last_user_text is not None:
            self._pattern = re.compile(self.last_user_text)

    @property
    def pattern(self) -> re.Pattern[str] | None:
        return self._pattern


class TierRule(_Strict):
    """A declarative override: when the condition holds, force a tier or raise it to a floor."""

    name: str | None = Field(None, description="Shown in the decision record (default: tier_rules[index]).")
    when: RuleCondition
    force: str | None = Field(None, description="Tier to use, whatever the model's probability.")
    floor: str | None = Field(None, description="Lowest tier allowed; a stronger choice is kept.")

    @model_validator(mode="after")
    def _check_action(self) -> "TierRule":
        if (self.force is None) == (self.floor is None):
            raise ValueError("give exactly one of `force` or `floor`")
        return self

    @property
    def target(self) -> str:
        return self.force if self.force is not None else self.floor  # type: ignore[return-value]


class TierPrice(_Strict):
    """Prices of one tier's model, in any one currency unit per token, e.g. dollars per million tokens."""

    input: float = Field(gt=0)
    output: float = Field(ge=0)


class TierSessionSection(_Strict):
    """Session stickiness: within an agent session the tier escalates at once and steps down only past break-even."""

    enabled: bool = True
    prices: dict[str, TierPrice] = Field(
        default_factory=dict,
        description="Tier name -> prices. A tier without an entry is priced by `price_ratio`.",
    )
    price_ratio: float = Field(
        3.0, gt=0, description="Without `prices`: each tier costs this many times the tier before it."
    )
    remaining_turns: float = Field(
        8.0, gt=0, description="Expected turns left in a session; more turns make stepping down pay sooner."
    )
    output_tokens_per_turn: int = Field(400, ge=0, description="Expected output tokens of one turn.")
    cache_read: float = Field(0.1, ge=0, description="Price multiplier of input tokens read from the prompt cache.")
    cache_write: float = Field(1.25, ge=0, description="Price multiplier of input tokens written to the prompt cache.")
    min_saving: float = Field(
        0.0, ge=0, lt=1, description="Step down only when the saving exceeds this share of the cost of staying."
    )
    return_risk: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Expected chance that a session which steps down escalates again and writes its prefix "
        "on the stronger tier once more; counted as a cost of stepping down. A session that has already "
        "escalated once is counted at 1.0.",
    )


def _compile_regex(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise ValueError(f"invalid regex {pattern!r}: {error}") from None


MarkerList = Annotated[list[str], Field(description="Regex fragments, matched case-insensitively on word boundaries.")]


class MarkerVocabularies(_Strict):
    """Word lists behind the marker features, compiled into one regex each at load."""

    reasoning: MarkerList = Field(default_factory=list)
    multi_step: MarkerList = Field(default_factory=list)
    risk: MarkerList = Field(default_factory=list)
    lookup: MarkerList = Field(default_factory=list)
    error_lines: list[str] = Field(
        default_factory=list,
        description="Regexes; a line of the last user text or last tool result that matches one counts as an "
        "error or trace line. A regex that starts with ^ is matched at the start of each line.",
    )
    write_tools: list[str] = Field(
        default_factory=list, description="Tool names or globs (case-insensitive) of write and shell tools."
    )

    _compiled: dict[str, re.Pattern[str] | None] = PrivateAttr(default_factory=dict)
    _write_tools: re.Pattern[str] | None = PrivateAttr(None)

    @field_validator("reasoning", "multi_step", "risk", "lookup", "error_lines")
    @classmethod
    def _check_fragments(cls, value: list[str]) -> list[str]:
        for index, fragment in enumerate(value):
            if not fragment.strip():
                raise ValueError(f"entry {index} is empty")
            try:
                re.compile(fragment)
            except re.error as error:
                raise ValueError(f"entry {index}: invalid regex {fragment!r}: {error}") from None
        return value

    def model_post_init(self, context: Any) -> None:
        for name in ("reasoning", "multi_step", "risk", "lookup"):
            fragments = getattr(self, name)
            self._compiled[name] = (
                re.compile(r"(?<!\w)(?:" + "|".join(f"(?:{item})" for item in fragments) + r")(?!\w)", re.IGNORECASE | re.MULTILINE)
                if fragments
                else None
            )
        # Line-anchored regexes are tried only at the start of each line, with `match`: searching
        # for `^` at every position of a long tool result costs several times more.
        anchored = [item[1:] for item in self.error_lines if item.startswith("^")]
        floating = [item for item in self.error_lines if not item.startswith("^")]
        self._compiled["error_lines_anchored"] = re.compile("|".join(f"(?:{item})" for item in anchored)) if anchored else None
        self._compiled["error_lines_floating"] = re.compile("|".join(f"(?:{item})" for item in floating)) if floating else None
        globs = [fnmatch.translate(item) for item in self.write_tools]
        self._write_tools = re.compile("|".join(globs), re.IGNORECASE) if globs else None

    def pattern(self, name: str) -> re.Pattern[str] | None:
        """Return the compiled regex of one vocabulary, or None when it is empty."""
        return self._compiled.get(name)

    def count_error_lines(self, text: str) -> int:
        """Count the lines of text that match one of the `error_lines` regexes."""
        anchored = self._compiled["error_lines_anchored"]
        floating = self._compiled["error_lines_floating"]
        if not text or (anchored is None and floating is None):
            return 0
        count = 0
        for line in text.split("\n"):
            if (anchored is not None and anchored.match(line)) or (floating is not None and floating.search(line)):
                count += 1
        return count

    def is_write_tool(self, tool_name: str) -> bool:
        return self._write_tools is not None and self._write_tools.match(tool_name) is not None
