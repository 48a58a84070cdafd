"""Write the labelled coding prompts of this folder: train.jsonl and heldout.jsonl.

Easy prompts are lookups, syntax questions and one-line fixes. Hard prompts are multi-file
refactors, concurrency bugs, design, security review, performance work under constraints and long
stack traces. Both classes span short and long texts: easy prompts include pasted code or a short
error with a simple question, and hard prompts include one-line requests, so that length alone does
not separate them.

Each row: {"id", "text", "label": "easy"|"hard", "envelope", "group"}. `envelope` names a request
template in envelopes/ (an agent's system prompt and tools) that `leangate train-tier --prompts`
wraps the text in; "bare" sends the text alone. `group` identifies the template a prompt came from:
cross-validation keeps a group in one fold, and the held-out split holds whole groups.

Run: python examples/tier-training/generate.py   (deterministic: fixed seed)
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

SEED = 20251204
COUNT_PER_LABEL = 200
HELDOUT_SHARE = 0.3
ENVELOPES = ["bare", "bare", "claude-code", "claude-code", "codex", "cursor"]

LANGS = ["Python", "TypeScript", "Go", "Rust", "Java", "Ruby", "C#", "Kotlin", "JavaScript", "Bash"]
FILES = [
    "src/api/handlers.py", "app/models/user.rb", "internal/store/postgres.go", "src/lib.rs",
    "web/src/components/Cart.tsx", "services/billing/invoice.py", "cmd/worker/main.go",
    "src/main/java/com/acme/orders/OrderService.java", "lib/utils/date.ts", "scripts/deploy.sh",
    "pkg/cache/lru.go", "backend/app/routes/auth.py", "frontend/pages/settings.vue", "core/src/parser.rs",
    "api/v2/serializers.py", "src/hooks/useDebounce.ts", "config/settings/base.py", "Makefile",
]
IDENTIFIERS = [
    ("get_user", "fetch_user"), ("totalPrice", "orderTotal"), ("tmp", "buffer"), ("cfg", "config"),
    ("handleClick", "onSubmit"), ("parse_args", "parse_cli_args"), ("UserDTO", "UserResponse"),
    ("retry_count", "max_retries"), ("isValid", "isEmailValid"), ("data", "payload"),
]

EASY_LOOKUPS = [
    "What's the syntax for a list comprehension with a condition in Python?",
    "How do I reverse a string in {lang}?",
    "How do I read a file line by line in {lang}?",
    "What is the difference between `let` and `const` in JavaScript?",
    "Which git command undoes the last commit but keeps my changes staged?",
    "How do I list all docker containers, including stopped ones?",
    "What does the `?` operator do in Rust?",
    "syntax for a switch expression in Java 17?",
    "How can I format a date as ISO 8601 in {lang}?",
    "What is the default port of PostgreSQL?",
    "how to check if a key exists in a dict",
    "What's a JWT, in one paragraph?",
    "Is there a built-in way to flatten a list of lists in Python?",
    "How do I make a POST request with curl and a JSON body?",
    "What does `git rebase -i HEAD~3` do?",
    "How do I get the length of a slice in Go?",
    "What is the shortcut to comment out a line in VS Code?",
    "Regex to match a US zip code, 5 digits or 5+4?",
    "How do I convert a string to an int in {lang}?",
    "what's the difference between == and === in JS",
    "How do I set an environment variable for one command in bash?",
    "What is the default timeout of Python's requests library?",
    "How do I pretty-print JSON from the command line?",
    "Which flag makes grep search recursively?",
    "How do I declare an optional field in a TypeScript interface?",
    "What's the syntax for a multi-line string in YAML?",
    "How do I exit vim?",
    "What does `SELECT DISTINCT ON` do in Postgres?",
    "How do I create a virtual environment with venv?",
    "remind me how to squash the last two commits",
    "What is the time complexity of `in` on a Python set?",
    "How do I sort a list of dicts by a key in Python?",
    "How do I get the current timestamp in milliseconds in {lang}?",
    "what is the null coalescing operator in C#",
    "How can I print the type of a variable in Go?",
    "How to uninstall a global npm package?",
    # Easy questions that use words of the risk and reasoning vocabularies.
    "What does the `--production` flag of npm install do?",
    "What is a mutex, in two sentences?",
    "How do I generate a random password in {lang}?",
    "What's the difference between OAuth and OpenID Connect, briefly?",
    "What's the syntax for a transaction block in Postgres?",
    "What does HTTP 401 mean compared to 403?",
    "Which header carries the CSRF token in Django by default?",
    "What is the design pattern called where an object wraps another to add behaviour?",
    "How do I check which migrations have been applied in Django?",
    "What does `atomic` mean in the context of a database write?",
]

EASY_EDITS = [
    "Fix the typo in the error message in {file}: 'recieved' should be 'received'.",
    "Rename `{old}` to `{new}` in {file}.",
    "Add `.env` and `*.log` to .gitignore.",
    "Bump the Node version in .nvmrc to 20.",
    "Add a docstring to `{old}` in {file} that says it returns None when nothing is found.",
    "Change the default page size in {file} from 20 to 50.",
    "Remove the unused import of `os` in {file}.",
    "Add a type hint for the return value of `{old}` in {file}; it returns a list of strings.",
    "Change the log level of the startup message in {file} from info to debug.",
    "Update the copyright year in the README footer to 2025.",
    "Make the button label in {file} say 'Save changes' instead of 'Submit'.",
    "Add a trailing newline to {file}.",
    "Replace the hard-coded 30 in {file} with the constant `TIMEOUT_SECONDS`.",
    "Sort the imports in {file} alphabetically.",
    "Add the `--verbose` flag to the pytest command in the Makefile test target.",
    "Fix the indentation of the `return` line in `{old}`; it's off by one level.",
    "Change the max line length in the ruff config to 100.",
    "Use an f-string instead of `%` formatting in the log call in {file}.",
    "Correct the spelling of 'seperator' to 'separator' everywhere in {file}.",
    "Mark `{old}` in {file} as deprecated with a comment.",
    "Add `SECRET_KEY=` with an empty value to .env.example.",
    "Rename the `migrate` make target to `db-migrate`.",
    "Add a newline at the end of README.md, then commit it with the message 'Fix EOF'.",
    "In {file}, change the error text 'Auth failed' to 'Authentication failed'.",
    "Set `DEBUG = False` in the production settings file.",
    "Add `pytest-cov` to the dev dependencies in pyproject.toml.",
]

EASY_SNIPPET_QUESTIONS = [
    "What does this function return when the list is empty?",
    "Can you add type hints to this?",
    "Is there a missing import here?",
    "Convert the string concatenation in this to f-strings.",
    "Add a docstring to this function.",
    "What does line 3 do?",
    "Rename the variable `x` to something clearer in this snippet.",
    "Is this valid syntax?",
    "Format this code properly.",
    "Why is my linter complaining about the unused variable here?",
    "What does this regex match?",
    "Add a comment explaining what this loop does.",
    "Can you convert this to use a list comprehension?",
    "Translate this snippet to JavaScript, same behaviour.",
]

EASY_SMALL_ERRORS = [
    ("NameError: name 'json' is not defined", "python"),
    ("ModuleNotFoundError: No module named 'requests'", "python"),
    ("TypeError: can only concatenate str (not \"int\") to str", "python"),
    ("SyntaxError: unexpected EOF while parsing", "python"),
    ("ReferenceError: fetchData is not defined", "js"),
    ("error[E0425]: cannot find value `count` in this scope", "rust"),
    ("./main.go:12:2: \"fmt\" imported and not used", "go"),
    ("IndentationError: unexpected indent", "python"),
    ("zsh: command not found: pnpm", "shell"),
    ("fatal: not a git repository (or any of the parent directories): .git", "shell"),
]
EASY_ERROR_QUESTIONS = [
    "What am I missing?",
    "Quick fix?",
    "How do I fix this?",
    "what does this mean",
    "Got this when I ran the script. Simple fix?",
]

HARD_REQUESTS = [
    "Refactor the payment flow so that {file} no longer talks to the database directly: introduce a repository layer, move the SQL out of the handlers, update every caller and keep the public API and the existing tests passing.",
    "Our {lang} worker pool deadlocks under load when a job enqueues another job. Find the cause and fix it without reducing throughput; explain the lock ordering you end up with.",
    "Design a rate limiter for our multi-region API gateway: per-tenant quotas, bursts allowed, limits must hold within 5% across regions, and a region outage must not block requests. Compare token bucket with sliding window for this and pick one.",
    "Review {file} for security issues. It handles password reset tokens and session cookies; I'm worried about timing attacks, token reuse and CSRF.",
    "This report query takes 8 seconds on 40M rows. Get it under 200 ms without changing the schema, and without adding more than one index because writes are already slow.",
    "Migrate the user service from MongoDB to Postgres with zero downtime: dual writes, backfill, verification, then cut over. Write the plan and the migration code for the first two steps.",
    "Tests in the checkout module fail about one run in twenty on CI but never locally. Figure out what's racing and make them deterministic.",
    "Split {file} into separate modules by responsibility; it's 2,400 lines and everything imports it. Do it in steps that each keep the build green.",
    "We leak memory in the ingest service: RSS grows about 200 MB an hour in production. Find the leak and fix it.",
    "Implement optimistic locking for order updates across the API, the service layer and the Postgres schema, and handle the conflict case in the UI.",
    "Add multi-tenant isolation to the reporting service: every query must be scoped by tenant, including the background jobs and the cache keys. Audit where it currently leaks across tenants.",
    "The cache and the database drift apart after failovers. Design an invalidation scheme that stays consistent when a write and an invalidation race, and implement it in {file}.",
    "Rewrite the retry logic in our HTTP client so that retries are idempotent-safe: only retry idempotent methods, respect Retry-After, add jitter, and cap the total time. It's used in about 30 places; update them.",
    "Profile the image resizing pipeline and get p99 latency below 150 ms at 500 requests per second on 4 cores. Right now it's 900 ms.",
    "Our event consumer processes some Kafka messages twice after a rebalance, and that double-charges customers. Make processing exactly-once from the customer's point of view.",
    "Replace the hand-rolled JWT validation in {file} with a proper library, support key rotation via JWKS, and make sure expired and `alg: none` tokens are rejected. Add tests for each attack.",
    "Port the synchronous job runner to asyncio without blocking the event loop anywhere; some jobs call blocking C extensions. Keep cancellation working.",
    "Design the data model and API for recurring subscriptions with proration, upgrades mid-cycle, and refunds. Explain the trade-offs of storing computed invoice lines versus recomputing them.",
    "Find why the Go service's goroutine count climbs steadily until it gets OOM-killed, and fix the leak.",
    "The search endpoint does N+1 queries. Fix it across the serializers and the views without changing the response shape, and add a test that fails if the query count grows again.",
    "Introduce feature flags into the release process: server-side evaluation, a kill switch, percentage rollouts, and audit logging. Touch the backend, the admin UI and the deploy scripts.",
    "Harden the file upload endpoint: it accepts user archives and extracts them on the server. Check path traversal, zip bombs, symlinks and content-type spoofing.",
    "Make the order totals calculation consistent between the frontend and the backend; they disagree by a cent on some discounts because of rounding. Decide on one rounding rule and apply it everywhere.",
    "Upgrade the project from Django 3.2 to 5.0: deprecations, settings changes, third-party packages that need replacing. Work through it app by app and keep the test suite green at each step.",
]

HARD_SHORT = [
    "Why does this deadlock sometimes?",
    "Find the memory leak in the ingest service.",
    "Make the cache consistent across regions.",
    "Prove this lock-free queue is linearizable.",
    "Design our sharding strategy for the events table.",
    "Fix the race in the session store.",
    "Audit the auth flow for privilege escalation.",
    "Untangle the circular imports between core and plugins.",
    "Why are we losing writes during failover?",
    "Get the test suite under 5 minutes without dropping coverage.",
    "Make the payment webhook handler idempotent.",
    "Plan the monolith split into services.",
    "Cut the cold start of the lambda in half.",
    "The totals are off by one cent for some customers. Track it down.",
    "Reduce lock contention in the connection pool.",
    "Figure out why p99 latency doubled after Tuesday's deploy.",
    "Make the scheduler survive a leader crash mid-job.",
    "Our nightly export sometimes produces duplicate rows. Why?",
    # Hard requests in plain words, without the usual marker vocabulary.
    "The nightly job got slower every week this year and now it doesn't finish before morning. Sort it out.",
    "Customers in Japan see yesterday's orders as today's. Fix it everywhere it shows up.",
    "Replace our hand-written SQL builder with SQLAlchemy Core across the code base.",
    "Two users editing the same document overwrite each other's changes. Make that stop.",
    "The mobile app and the web app show different balances for the same account.",
    "Move us off the deprecated v1 storage API before it's switched off next month; we call it from everywhere.",
    "Search results are stale for up to an hour after an edit. Get that under a minute.",
    "Half of our integration tests need a live network. Make the suite run offline.",
]

HARD_TRACE_ASKS = [
    "This only happens in production, after the last deploy, and only for some tenants. Figure out the root cause and fix it properly, not just the symptom.",
    "Happens intermittently under load. Find the cause and fix it.",
    "Started after we upgraded the driver. What's going on and how do we fix it without pinning the old version?",
    "We get this a few times a day in the worker. Find the race and make it safe.",
]

SNIPPETS = {
    "python": '''def load_orders(path):
    orders = []
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if not line:
                continue
            order_id, customer, amount = line.split(",")
            orders.append({
                "id": int(order_id),
                "customer": customer,
                "amount": float(amount),
            })
    return orders


def total_by_customer(orders):
    totals = {}
    for order in orders:
        totals[order["customer"]] = totals.get(order["customer"], 0) + order["amount"]
    return totals


def top_customers(orders, n=10):
    totals = total_by_customer(orders)
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)[:n]
''',
    "typescript": '''import { useEffect, useState } from "react";

interface Props {
  userId: string;
  onLoaded?: (name: string) => void;
}

export function UserBadge({ userId, onLoaded }: Props) {
  const [name, setName] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    fetch(`/api/users/${userId}`)
      .then((res) => res.json())
      .then((data) => {
        setName(data.name);
        onLoaded?.(data.name);
      })
      .catch((err) => setError(String(err)));
  }, [userId]);

  if (error) return <span className="badge badge-error">{error}</span>;
  if (!name) return <span className="badge">...</span>;
  return <span className="badge">{name}</span>;
}
''',
    "go": '''package store

import (
	"context"
	"database/sql"
	"time"
)

type Item struct {
	ID        int64
	Name      string
	CreatedAt time.Time
}

func ListItems(ctx context.Context, db *sql.DB, limit int) ([]Item, error) {
	rows, err := db.QueryContext(ctx, "SELECT id, name, created_at FROM items ORDER BY id LIMIT $1", limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var items []Item
	for rows.Next() {
		var it Item
		if err := rows.Scan(&it.ID, &it.Name, &it.CreatedAt); err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, rows.Err()
}
''',
    "rust": '''use std::collections::HashMap;

pub fn word_counts(text: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for word in text.split_whitespace() {
        let word = word.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
        if word.is_empty() {
            continue;
        }
        *counts.entry(word).or_insert(0) += 1;
    }
    counts
}

pub fn most_common(counts: &HashMap<String, usize>, n: usize) -> Vec<(&String, &usize)> {
    let mut pairs: Vec<_> = counts.iter().collect();
    pairs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    pairs.into_iter().take(n).collect()
}
''',
    "java": '''public class OrderService {
    private final OrderRepository repository;
    private final Map<Long, Order> cache = new HashMap<>();

    public OrderService(OrderRepository repository) {
        this.repository = repository;
    }

    public Order find(long id) {
        Order cached = cache.get(id);
        if (cached != null) {
            return cached;
        }
        Order order = repository.findById(id).orElseThrow();
        cache.put(id, order);
        return order;
    }

    public void updateStatus(long id, Status status) {
        Order order = find(id);
        order.setStatus(status);
        repository.save(order);
    }
}
''',
    "sql": '''SELECT c.id,
       c.name,
       COUNT(o.id) AS orders,
       SUM(o.total) AS revenue
FROM customers c
LEFT JOIN orders o ON o.customer_id = c.id
WHERE o.created_at >= NOW() - INTERVAL '90 days'
  AND c.region IN ('eu-west', 'eu-central')
GROUP BY c.id, c.name
HAVING SUM(o.total) > 1000
ORDER BY revenue DESC
LIMIT 50;
''',
    "bash": '''#!/usr/bin/env bash
set -euo pipefail

APP_DIR=/srv/app
BACKUP_DIR=/var/backups/app

mkdir -p "$BACKUP_DIR"
stamp=$(date +%Y%m%d-%H%M%S)
tar -czf "$BACKUP_DIR/app-$stamp.tar.gz" -C "$APP_DIR" .
find "$BACKUP_DIR" -name 'app-*.tar.gz' -mtime +14 -delete
echo "backup written: app-$stamp.tar.gz"
''',
}

HARD_SNIPPET_ASKS = [
    "This runs in 16 threads that share one instance. Make it thread-safe without a global lock, because throughput matters, and explain why your version can't lose updates.",
    "Review this for security problems before it goes to production; it's reachable from the public API.",
    "This is the hot path of our service and it's too slow at 50k items. Optimise it, keep the output identical, and tell me the complexity before and after.",
    "Redesign this so it can be split across the three services that need it, with a clear interface between them, and migrate the callers.",
    "There's a subtle bug here that corrupts data when two requests hit it at the same time. Find it and fix it.",
]

TRACES = {
    "python": '''Traceback (most recent call last):
  File "/srv/app/venv/lib/python3.11/site-packages/celery/app/trace.py", line 477, in trace_task
    R = retval = fun(*args, **kwargs)
  File "/srv/app/billing/tasks.py", line 88, in charge_invoice
    with transaction.atomic():
  File "/srv/app/venv/lib/python3.11/site-packages/django/db/transaction.py", line 263, in __exit__
    connection.commit()
  File "/srv/app/venv/lib/python3.11/site-packages/django/db/backends/base/base.py", line 305, in commit
    self._commit()
  File "/srv/app/venv/lib/python3.11/site-packages/django/db/backends/base/base.py", line 281, in _commit
    return self.connection.commit()
psycopg2.errors.SerializationFailure: could not serialize access due to concurrent update
''',
    "java": '''java.util.ConcurrentModificationException
	at java.base/java.util.HashMap$HashIterator.nextNode(HashMap.java:1597)
	at java.base/java.util.HashMap$ValueIterator.next(HashMap.java:1625)
	at com.acme.orders.OrderService.expireStale(OrderService.java:212)
	at com.acme.orders.ExpiryJob.run(ExpiryJob.java:41)
	at java.base/java.util.concurrent.Executors$RunnableAdapter.call(Executors.java:572)
	at java.base/java.util.concurrent.FutureTask.runAndReset(FutureTask.java:358)
	at java.base/java.util.concurrent.ScheduledThreadPoolExecutor$ScheduledFutureTask.run(ScheduledThreadPoolExecutor.java:305)
	at java.base/java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1144)
	at java.base/java.util.concurrent.ThreadPoolExecutor$Worker.run(ThreadPoolExecutor.java:642)
	at java.base/java.lang.Thread.run(Thread.java:1583)
''',
    "go": '''fatal error: concurrent map writes

goroutine 1187 [running]:
internal/runtime/maps.fatal({0x1a2b3c4, 0x15})
	/usr/local/go/src/runtime/panic.go:1058 +0x18
github.com/acme/ingest/pkg/cache.(*LRU).Put(0xc0001a2000, {0xc00ab12340, 0x24}, {0x1f00e20, 0xc00cd45600})
	/build/pkg/cache/lru.go:74 +0x1c5
github.com/acme/ingest/internal/pipeline.(*Stage).process(0xc000210480, {0x2041d28, 0xc0003b2000}, 0xc00ab12300)
	/build/internal/pipeline/stage.go:133 +0x2b1
created by github.com/acme/ingest/internal/pipeline.(*Stage).Start in goroutine 1
	/build/internal/pipeline/stage.go:96 +0x145
''',
    "node": '''TypeError: Cannot read properties of undefined (reading 'tenantId')
    at resolveTenant (/app/dist/middleware/tenant.js:27:31)
    at Layer.handle [as handle_request] (/app/node_modules/express/lib/router/layer.js:95:5)
    at next (/app/node_modules/express/lib/router/route.js:149:13)
    at authenticate (/app/dist/middleware/auth.js:58:12)
    at processTicksAndRejections (node:internal/process/task_queues:95:5)
    at async Promise.all (index 3)
    at async loadDashboard (/app/dist/routes/dashboard.js:112:21)
''',
}


def _fill(template: str, rng: random.Random) -> str:
    old, new = rng.choice(IDENTIFIERS)
    return template.format(lang=rng.choice(LANGS), file=rng.choice(FILES), old=old, new=new)


def _snippet(rng: random.Random) -> tuple[str, str]:
    language = rng.choice(sorted(SNIPPETS))
    return language, SNIPPETS[language]


def _easy(rng: random.Random) -> tuple[str, str]:
    kind = rng.random()
    if kind < 0.30:
        template = rng.choice(EASY_LOOKUPS)
        return _fill(template, rng), template
    if kind < 0.55:
        template = rng.choice(EASY_EDITS)
        return _fill(template, rng), template
    if kind < 0.85:
        # A long easy prompt: a pasted file, sometimes two, and a simple question about it.
        language, code = _snippet(rng)
        question = rng.choice(EASY_SNIPPET_QUESTIONS)
        preamble = rng.choice(["", f"Here's {rng.choice(FILES)}:\n", "Quick one.\n", "From our repo:\n"])
        text = f"{preamble}```{language}\n{code}```\n{question}"
        if rng.random() < 0.3:
            _, more = _snippet(rng)
            text = f"{preamble}```\n{code}\n{more}```\n{question}"
        return text, question
    error, _ = rng.choice(EASY_SMALL_ERRORS)
    return f"{error}\n{rng.choice(EASY_ERROR_QUESTIONS)}", error


def _hard(rng: random.Random) -> tuple[str, str]:
    kind = rng.random()
    if kind < 0.35:
        template = rng.choice(HARD_REQUESTS)
        return _fill(template, rng), template
    if kind < 0.55:
        text = rng.choice(HARD_SHORT)
        return text, text
    if kind < 0.78:
        language, code = _snippet(rng)
        ask = rng.choice(HARD_SNIPPET_ASKS)
        return f"```{language}\n{code}```\n{ask}", ask
    language = rng.choice(sorted(TRACES))
    lines = TRACES[language].splitlines()
    if rng.random() < 0.4:
        lines = lines[: max(3, len(lines) // 2)]
    ask = rng.choice(HARD_TRACE_ASKS)
    return "\n".join(lines) + "\n\n" + ask, ask


def generate(count_per_label: int = COUNT_PER_LABEL) -> list[dict]:
    """Return unique prompts, each with the template ("family") it came from."""
    rng = random.Random(SEED)
    rows: list[dict] = []
    seen: set[str] = set()
    for label, make in (("easy", _easy), ("hard", _hard)):
        produced = 0
        attempts = 0
        while produced < count_per_label and attempts < count_per_label * 100:
            attempts += 1
            text, family = make(rng)
            if text in seen:
                continue
            seen.add(text)
            rows.append({"text": text, "label": label, "envelope": rng.choice(ENVELOPES), "family": family})
            produced += 1
    rng.shuffle(rows)
    for index, row in enumerate(rows):
        row["id"] = f"p{index:04d}"
    return rows


def heldout_families(rows: list[dict]) -> set[str]:
    """Pick about HELDOUT_SHARE of each label's templates for the held-out split.

    Splitting by template, not by row, keeps every variant of a held-out template out of training,
    so the benchmark measures prompts whose wording the model has not seen.
    """
    rng = random.Random(SEED + 1)
    chosen: set[str] = set()
    for label in ("easy", "hard"):
        families = sorted({row["family"] for row in rows if row["label"] == label})
        chosen.update(rng.sample(families, round(len(families) * HELDOUT_SHARE)))
    return chosen


def main() -> None:
    folder = Path(__file__).parent
    rows = generate()
    held_out = heldout_families(rows)
    heldout_ids = {row["id"] for row in rows if row["family"] in held_out}
    for name, keep in (("train.jsonl", lambda row: row["id"] not in heldout_ids), ("heldout.jsonl", lambda row: row["id"] in heldout_ids)):
        with open(folder / name, "w", encoding="utf-8") as handle:
            for row in rows:
                if keep(row):
                    entry = {key: row[key] for key in ("id", "text", "label", "envelope")}
                    entry["group"] = "t" + hashlib.sha256(row["family"].encode()).hexdigest()[:8]
                    handle.write(json.dumps(entry) + "\n")
    print(f"wrote {len(rows) - len(heldout_ids)} training and {len(heldout_ids)} held-out prompts to {folder}")


if __name__ == "__main__":
    main()
