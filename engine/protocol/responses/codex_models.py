"""The model list that Codex CLI reads from `GET {base_url}/models?client_version=...`."""

from __future__ import annotations

from typing import Any

# Codex's own default for models it does not know (codex-rs `find_model_info_for_slug`).
DEFAULT_CONTEXT_WINDOW = 272_000


def codex_models_body(
    model_ids: list[str],
    *,
    context_window: int = DEFAULT_CONTEXT_WINDOW,
    base_instructions: str = "",
) -> dict[str, Any]:
    """Build the `{"models": [...]}` body in the shape of codex-rs `ModelsResponse`.

    Codex deserialises every entry into its `ModelInfo` struct with serde. Each field that the
    struct requires is present: slug, display_name, description, supported_reasoning_levels,
    shell_type, visibility, supported_in_api, priority, upgrade, base_instructions,
    supports_reasoning_summaries, support_verbosity, default_verbosity, apply_patch_tool_type,
    truncation_policy, supports_parallel_tool_calls, context_window and
    experimental_supported_tools (read from openai/codex `codex-rs/protocol/src/openai_models.rs`,
    2026 snapshots). A missing required field makes Codex drop the whole list and fall back to its
    bundled catalog.

    NOTE: Codex uses `base_instructions` of a listed model as its system prompt. An empty string
    makes Codex send no base prompt for that model, so pass the prompt to use, or list only
    models whose prompt the client sets itself.
    """
    models = []
    for priority, model_id in enumerate(model_ids):
        models.append(
            {
                "slug": model_id,
                "display_name": model_id,
                "description": f"{model_id} through the leangate gateway",
                "default_reasoning_level": "medium",
                "supported_reasoning_levels": [
                    {"effort": "low", "description": "Fast answers, little reasoning"},
                    {"effort": "medium", "description": "Balanced speed and reasoning"},
                    {"effort": "high", "description": "Most reasoning, slowest"},
                ],
                "shell_type": "shell_command",
                "visibility": "list",
                "supported_in_api": True,
                "priority": priority,
                "upgrade": None,
                "base_instructions": base_instructions,
                "supports_reasoning_summaries": True,
                "support_verbosity": False,
                "default_verbosity": None,
                "apply_patch_tool_type": "freeform",
                "truncation_policy": {"mode": "tokens", "limit": 10_000},
                "supports_parallel_tool_calls": False,
                "context_window": context_window,
                "experimental_supported_tools": [],
                "input_modalities": ["text", "image"],
            }
        )
    return {"models": models}
