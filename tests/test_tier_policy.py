"""Loading and validation of the tier sections: tier_model, tier_rules, tier_session, markers."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML

from engine.policy.errors import PolicyError
from engine.policy.loader import load_policy_set
from engine.stages.tier.policy import FEATURE_NAMES, MarkerVocabularies, TierModel, TierRule, TierSessionSection

ROOT = Path(__file__).resolve().parent.parent


def shipped_model_document() -> dict:
    return YAML(typ="safe").load((ROOT / "policies" / "tier-model.yaml").read_text())


def copy_policies(tmp_path: Path) -> Path:
    destination = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", destination)
    return destination


def issues_of(directory: Path) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        load_policy_set(directory, {})
    return [str(issue) for issue in caught.value.issues]


def test_shipped_model_loads_with_provenance():
    model = load_policy_set(ROOT / "policies", {}).base.tier_model
    assert model is not None
    assert model.features == list(FEATURE_NAMES)
    assert model.provenance.rows and model.provenance.rows >= 200
    assert model.provenance.cv_auc is not None and model.provenance.cv_auc > 0.9
    assert model.centroids is not None and len(model.centroids.hard) == 384
    assert model.embedder and model.embedder.startswith("all-MiniLM-L6-v2")


def test_shipped_below_is_the_trained_threshold():
    policy = load_policy_set(ROOT / "policies", {}).base
    assert policy.tiers[0].below == pytest.approx(policy.tier_model.provenance.threshold)


def test_wrong_feature_order_is_rejected_with_position(tmp_path):
    directory = copy_policies(tmp_path)
    path = directory / "tier-model.yaml"
    text = path.read_text()
    swapped = text.replace('"message_count", "tool_result_share"', '"tool_result_share", "message_count"')
    assert swapped != text
    path.write_text(swapped)

    line = 1 + text.splitlines().index(next(row for row in text.splitlines() if row.startswith("features:")))
    issues = issues_of(directory)
    assert len(issues) == 1
    assert issues[0].startswith(f"{path}:{line}:1: tier_model.features: ")
    assert "same names in another order" in issues[0]


def test_missing_feature_is_named():
    document = shipped_model_document()
    document["features"] = document["features"][:-1] + ["difficulty"]
    with pytest.raises(ValidationError) as caught:
        TierModel.model_validate(document)
    message = str(caught.value)
    assert "missing ['semantic_difficulty']" in message
    assert "unknown ['difficulty']" in message


@pytest.mark.parametrize("key", ["coefficients", "mean", "scale"])
def test_wrong_vector_length_is_rejected(key):
    document = shipped_model_document()
    document[key] = document[key][:14]
    with pytest.raises(ValidationError) as caught:
        TierModel.model_validate(document)
    assert "must have 15 values" in str(caught.value)


def test_non_positive_scale_is_rejected():
    document = shipped_model_document()
    document["scale"][3] = 0.0
    with pytest.raises(ValidationError) as caught:
        TierModel.model_validate(document)
    assert "tool_result_share: scale must be positive" in str(caught.value)


def test_semantic_weight_needs_centroids():
    document = shipped_model_document()
    del document["centroids"]
    with pytest.raises(ValidationError) as caught:
        TierModel.model_validate(document)
    assert "centroids: required" in str(caught.value)


def test_centroids_of_different_sizes_are_rejected():
    document = shipped_model_document()
    document["centroids"]["easy"] = document["centroids"]["easy"][:100]
    with pytest.raises(ValidationError):
        TierModel.model_validate(document)


def test_model_probability_is_a_dot_product():
    model = TierModel.model_validate(shipped_model_document())
    values = np.array(model.mean) + np.array(model.scale)  # every standardised value is 1
    expected_logit = sum(model.coefficients) + model.intercept
    assert model.probability(values) == pytest.approx(1 / (1 + np.exp(-expected_logit)))
    assert model.probability(np.array(model.mean)) == pytest.approx(1 / (1 + np.exp(-model.intercept)))


def test_rule_needs_exactly_one_action():
    with pytest.raises(ValidationError, match="exactly one of `force` or `floor`"):
        TierRule.model_validate({"when": {"thinking": True}, "force": "strong", "floor": "strong"})
    with pytest.raises(ValidationError, match="exactly one of `force` or `floor`"):
        TierRule.model_validate({"when": {"thinking": True}})


def test_rule_rejects_bad_regex_and_unknown_feature():
    with pytest.raises(ValidationError, match="invalid regex"):
        TierRule.model_validate({"when": {"last_user_text": "(unclosed"}, "force": "strong"})
    with pytest.raises(ValidationError, match="unknown feature 'tokens'"):
        TierRule.model_validate({"when": {"features": {"tokens": {"above": 3}}}, "floor": "strong"})
    with pytest.raises(ValidationError, match="give `above`, `below` or both"):
        TierRule.model_validate({"when": {"features": {"tool_rounds": {}}}, "floor": "strong"})


def test_rule_error_has_file_position(tmp_path):
    directory = copy_policies(tmp_path)
    path = directory / "default.yaml"
    text = path.read_text()
    edited = text.replace("    when: {thinking: true}\n    floor: strong\n", "    when: {thinking: true}\n    floor: strong\n    force: strong\n", 1)
    assert edited != text
    path.write_text(edited)
    issues = issues_of(directory)
    assert any("default.yaml:" in issue and "tier_rules[0]" in issue and "exactly one" in issue for issue in issues), issues


def test_marker_vocabulary_rejects_bad_regex():
    with pytest.raises(ValidationError, match="entry 1: invalid regex"):
        MarkerVocabularies.model_validate({"risk": ["security", "(oops"]})
    with pytest.raises(ValidationError, match="entry 0 is empty"):
        MarkerVocabularies.model_validate({"lookup": [" "]})


def test_marker_write_tools_are_globs():
    markers = MarkerVocabularies.model_validate({"write_tools": ["Edit", "mcp__*__write_*"]})
    assert markers.is_write_tool("edit")
    assert markers.is_write_tool("mcp__fs__write_file")
    assert not markers.is_write_tool("Read")


def test_session_section_rejects_negative_prices():
    with pytest.raises(ValidationError):
        TierSessionSection.model_validate({"prices": {"fast": {"input": -1, "output": 1}}})
    with pytest.raises(ValidationError):
        TierSessionSection.model_validate({"remaining_turns": 0})


def test_team_override_replaces_rules_and_keeps_model(tmp_path):
    directory = copy_policies(tmp_path)
    (directory / "teams").mkdir(exist_ok=True)
    (directory / "teams" / "payments.yaml").write_text(
        "extends: default\n"
        "tier_rules:\n"
        "  - {name: edits-strong, when: {class: edit}, floor: strong}\n"
        "tier_session: {remaining_turns: 2}\n"
        "markers: {risk: [refund]}\n",
        encoding="utf-8",
    )
    policies = load_policy_set(directory, {})
    team = policies.teams["payments"]
    assert [rule.name for rule in team.tier_rules] == ["edits-strong"]
    assert team.tier_session.remaining_turns == 2
    assert team.tier_session.prices == policies.base.tier_session.prices  # mappings merge deeply
    assert team.markers.risk == ["refund"]
    assert team.markers.lookup == policies.base.markers.lookup
    assert team.tier_model == policies.base.tier_model


def test_reference_check_passes_on_shipped_policy():
    from engine.stages.tier.checks import tier_reference_errors

    assert tier_reference_errors(load_policy_set(ROOT / "policies", {}).base) == []


def test_reference_check_names_unknown_tiers_and_classes():
    from engine.stages.tier.checks import tier_reference_errors

    policy = load_policy_set(ROOT / "policies", {}).base
    rules = [
        TierRule.model_validate({"when": {"class": ["plan", "planing"]}, "floor": "medium"}),
        TierRule.model_validate({"when": {}, "force": "strong"}),
    ]
    session = policy.tier_session.model_copy(update={"prices": {"fast": policy.tier_session.prices["fast"], "turbo": policy.tier_session.prices["fast"]}})
    errors = tier_reference_errors(policy.model_copy(update={"tier_rules": rules, "tier_session": session}))
    paths = [path for path, _ in errors]
    assert ("tier_rules", 0, "floor") in paths
    assert ("tier_rules", 0, "when", "class") in paths
    assert ("tier_session", "prices", "turbo") in paths
    assert len(errors) == 3
    assert "unknown request class 'planing'" in dict(errors)[("tier_rules", 0, "when", "class")]
