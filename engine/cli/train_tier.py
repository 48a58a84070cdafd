"""`leangate train-tier`: fit the tier model on labelled requests and write it as a policy fragment."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

DESCRIPTION = (
    "Fit the tier model (standardisation + logistic regression over the 15 tier features) on decision logs "
    "joined with labels, or on a labelled prompt file. Prints the cross-validated AUC and the confusion "
    "matrix at the threshold that reaches the target recall of hard requests, saves a calibration plot, "
    "and writes the model as YAML for `tier_model: !include FILE`."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--logs", nargs="+", type=Path, default=[], metavar="FILE", help="Decision logs (JSON Lines).")
    parser.add_argument(
        "--labels", type=Path, metavar="FILE", help="request_id -> easy|hard, as JSON Lines or CSV (columns request_id,label)."
    )
    parser.add_argument(
        "--prompts", nargs="+", type=Path, default=[], metavar="FILE",
        help="Labelled prompts, JSON Lines or YAML: {text, label: easy|hard, envelope?}.",
    )
    parser.add_argument(
        "--envelopes", type=Path, metavar="DIR",
        help="Folder of request templates named by the prompts' `envelope` (default: envelopes/ beside the first prompt file).",
    )

    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="Where to write the tier_model YAML.")
    parser.add_argument(
        "--target-recall", type=float, default=0.95, metavar="R",
        help="Share of hard requests that must reach a stronger tier; sets the suggested `below` threshold (default 0.95).",
    )
    parser.add_argument(
        "--policy", type=Path, default=Path("policies"), metavar="DIR",
        help="Policy folder whose markers, tiers, embedder and current centroids are used (default: policies).",
    )
    parser.add_argument("--plot", type=Path, metavar="FILE", help="Calibration plot PNG (default: --out with .png).")

    parser.add_argument("--folds", type=int, default=5, help="Cross-validation folds (default 5).")
    parser.add_argument(
        "--lexical-only", action="store_true", help="Leave out semantic_difficulty (no embedder needed)."
    )
    parser.add_argument(
        "--implicit-easy", action="store_true",
        help="Label logged requests that went to the cheapest tier without a failure or retry as easy.",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the cross-validation split (default 0).")


def run(args: argparse.Namespace) -> int:
    from engine.stages.tier.training_data import TrainingDataError

    try:
        return _train(args)
    except TrainingDataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _train(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    problem = _check_arguments(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        import sklearn  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError as error:
        print(f"error: training needs scikit-learn and matplotlib ({error}); install them with `pip install 'leangate[train]'`", file=sys.stderr)
        return 1

    from engine.policy.errors import PolicyError
    from engine.policy.loader import load_policy_set

    try:
        policy = load_policy_set(args.policy).base
    except PolicyError as error:
        print(
            f"error: cannot load the policy folder {args.policy} (training needs its markers, tiers and embedder; "
            f"choose another folder with --policy):\n{error}",
            file=sys.stderr,
        )
        return 1

    rows, mode, sources = _collect_rows(args, policy, console)
    return _fit_and_write(args, policy, rows, mode, sources, console)


def _check_arguments(args: argparse.Namespace) -> str | None:
    if args.labels and not args.logs:
        return "--labels needs --logs: labels are joined with decision logs by request_id"
    if not args.logs and not args.prompts:
        return "give --logs FILE... (with --labels or outcomes in the logs) or --prompts FILE"
    if not 0 < args.target_recall <= 1:
        return f"--target-recall must be in (0, 1], got {args.target_recall}"
    if args.folds < 2:
        return f"--folds must be at least 2, got {args.folds}"
    return None


def _collect_rows(args: argparse.Namespace, policy, console):
    """Read the inputs into labelled rows, and decide how feature 15 is obtained."""
    from engine.stages.tier.training_data import (
        TrainingDataError,
        load_envelopes,
        outcome_labels,
        read_decision_logs,
        read_labels,
        read_prompts,
        request_for_prompt,
        rows_from_logs,
        Row,
    )

    rows: list[Row] = []
    sources: list[str] = []
    if args.prompts:
        prompts = [prompt for path in args.prompts for prompt in read_prompts(path)]
        folder = args.envelopes or args.prompts[0].parent / "envelopes"
        envelopes = load_envelopes(folder, {prompt["envelope"] for prompt in prompts})
        for prompt in prompts:
            body = request_for_prompt(prompt["text"], envelopes.get(prompt["envelope"]))
            rows.append(
                Row(
                    key=prompt["id"],
                    label=prompt["label"],
                    features={},
                    text=prompt["text"],
                    body=body,
                    source="prompts",
                    group=prompt["group"],
                )
            )
        sources += [path.name for path in args.prompts]

    if args.logs:
        records = read_decision_logs(args.logs)
        cheap_tiers = {tier.name for tier in policy.tiers[:-1]}
        labels = outcome_labels(records, cheap_tiers, args.implicit_easy)
        if args.labels:
            from_file = read_labels(args.labels)
            known = {record.request_id for record in records}
            unmatched = len(set(from_file) - known)
            if unmatched:
                console.print(f"[yellow]{unmatched} of {len(from_file)} labels match no decision record with tier features[/]")
            labels.update(from_file)
            sources.append(args.labels.name)
        log_rows = rows_from_logs(records, labels)
        console.print(f"decision logs: {len(records)} records with tier features, {len(log_rows)} labelled")
        rows += log_rows
        sources += [path.name for path in args.logs]

    hard = sum(1 for row in rows if row.label == "hard")
    easy = len(rows) - hard
    if min(hard, easy) < args.folds:
        raise TrainingDataError(
            f"need at least {args.folds} easy and {args.folds} hard rows for {args.folds}-fold cross-validation, "
            f"got {easy} easy and {hard} hard"
        )

    if args.lexical_only:
        mode = "off"
    elif all(row.text for row in rows):
        mode = "embed"
    else:
        missing = sum(1 for row in rows if not row.text)
        base = policy.tier_model
        if base is None or base.centroids is None:
            raise TrainingDataError(
                f"{missing} labelled rows have no prompt text, so semantic_difficulty cannot be computed and the policy "
                "has no centroids to keep; log prompt text (decision_log.prompt_text: true) or pass --lexical-only"
            )
        if any("semantic_difficulty" not in row.features for row in rows if not row.text):
            raise TrainingDataError("rows without prompt text must carry tier.features.semantic_difficulty; pass --lexical-only")
        mode = "fixed"
    return rows, mode, sources


def _load_embedder(policy):
    from engine.embedding import EmbeddingError, load_embedder

    config = getattr(policy.cache, "embedder", None)
    try:
        return load_embedder(config)
    except (EmbeddingError, OSError) as error:
        from engine.stages.tier.training_data import TrainingDataError

        raise TrainingDataError(f"cannot load the embedder ({error}); pass --lexical-only to train without semantic_difficulty") from None


def _build_dataset(rows, policy, mode: str, embedder, console):
    from rich.progress import Progress

    from engine.stages.tier.training import Dataset, embed_texts, group_array, lexical_matrix, semantic_column

    labels = np.array([1 if row.label == "hard" else 0 for row in rows], dtype=np.int64)
    lexical = lexical_matrix(rows, policy.markers)
    data = Dataset(lexical=lexical, labels=labels, groups=group_array(rows))
    if mode == "off":
        return data

    texts = [row.text or "" for row in rows]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("embedding prompts", total=sum(1 for text in texts if text))
        if mode == "embed":
            data.embeddings = embed_texts(embedder, texts, lambda count: progress.advance(task, count))
            return data
        # mode "fixed": keep the policy's centroids; rows with text are scored with them.
        base = policy.tier_model
        semantic = np.array([row.features.get("semantic_difficulty", 0.0) for row in rows], dtype=np.float64)
        with_text = [index for index, text in enumerate(texts) if text]
        if with_text:
            vectors = embed_texts(embedder, [texts[index] for index in with_text], lambda count: progress.advance(task, count))
            semantic[with_text] = semantic_column(vectors, base._hard, base._easy)
    data.semantic = semantic
    return data


def _fit_and_write(args: argparse.Namespace, policy, rows, mode: str, sources: list[str], console) -> int:
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from engine.stages.tier import training
    from engine.stages.tier.training_data import TrainingDataError

    embedder = None if mode == "off" else _load_embedder(policy)
    if mode == "fixed" and embedder.name != policy.tier_model.embedder:
        raise TrainingDataError(
            f"the policy's centroids belong to embedder {policy.tier_model.embedder!r} but {embedder.name!r} is configured; "
            "log prompt text to recompute them, or pass --lexical-only"
        )
    data = _build_dataset(rows, policy, mode, embedder, console)

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("cross-validating", total=args.folds)
        try:
            probabilities = training.cross_validated_probabilities(
                data, mode, args.folds, seed=args.seed, advance=lambda: progress.advance(task)
            )
        except ValueError as error:
            # scikit-learn raises ValueError when the groups or labels cannot fill the folds.
            raise TrainingDataError(f"cross-validation failed: {error}; use fewer --folds or more labelled rows") from None
    cv_auc = training.auc(data.labels, probabilities)
    threshold = training.threshold_for_recall(data.labels, probabilities, args.target_recall)
    counts = training.confusion(data.labels, probabilities, threshold)
    model = training.fit(data, mode, seed=args.seed)
    if mode == "fixed":
        # The logged semantic_difficulty values were computed with the policy's centroids; keep them.
        model.hard_centroid = np.asarray(policy.tier_model.centroids.hard)
        model.easy_centroid = np.asarray(policy.tier_model.centroids.easy)

    document = training.model_document(
        model,
        embedder_name=None if embedder is None else embedder.name,
        rows=len(data),
        hard_rows=int(data.labels.sum()),
        cv_auc=cv_auc,
        folds=args.folds,
        target_recall=args.target_recall,
        threshold=threshold,
        sources=sources,
    )
    header = [
        "Tier model written by `leangate train-tier`; include it with `tier_model: !include <this file>`.",
        f"Suggested `below` of the cheapest tier: {threshold:.4f} (reaches {args.target_recall:.0%} recall of hard",
        "requests in cross-validation). Edit by retraining, not by hand.",
    ]
    plot = args.plot or args.out.with_suffix(".png")
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(training.render_yaml(document, header), encoding="utf-8")
        training.save_calibration_plot(data.labels, probabilities, plot, f"Tier model calibration ({args.folds}-fold CV)")
    except OSError as error:
        raise TrainingDataError(f"cannot write {error.filename}: {error.strerror}") from None

    table = Table(title="tier model", show_header=False)
    table.add_row("rows (hard / easy)", f"{len(data)} ({int(data.labels.sum())} / {len(data) - int(data.labels.sum())})")
    table.add_row("semantic_difficulty", {"embed": "centroids fitted", "fixed": "policy centroids kept", "off": "left out"}[mode])
    table.add_row(f"cross-validated AUC ({args.folds} folds)", f"{cv_auc:.4f}")
    table.add_row(f"threshold for {args.target_recall:.0%} hard recall", f"{threshold:.4f}")
    table.add_row("hard -> strong / hard -> cheap", f"{counts['hard_to_strong']} / {counts['hard_to_cheap']}")
    table.add_row("easy -> cheap / easy -> strong", f"{counts['easy_to_cheap']} / {counts['easy_to_strong']}")
    table.add_row("model written to", str(args.out))
    table.add_row("calibration plot", str(plot))
    Console().print(table)
    console.print(f"set `below: {threshold:.4f}` on tier {policy.tiers[0].name!r} to route at this threshold")
    return 0
