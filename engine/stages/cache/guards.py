"""Lexical checks that a semantic cache candidate must pass on top of embedding similarity.

MiniLM scores "convert a string to an int in JavaScript" against "convert an int to a string in
JavaScript" at 0.998, and `parse_date` against `parse_time` almost as high, so similarity alone would
serve wrong responses. Each guard extracts one kind of fact from both texts and rejects the pair when
the facts differ. The guards are deliberately strict: a false miss costs one upstream call, a false
hit serves a wrong response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from engine.stages.cache.policy import CacheGuards

_WORD = re.compile(r"[a-z0-9_+#]+(?:'[a-z]+)?")
_POSSESSIVE = re.compile(r"'s$")

# Code identifiers: snake_case, camelCase / PascalCase with an inner capital, names with digits,
# dotted names (os.path.join), and names called with parentheses.
_SNAKE = re.compile(r"\b[A-Za-z_][A-Za-z0-9]*_[A-Za-z0-9_]*\b")
_CAMEL = re.compile(r"\b[a-z]+[A-Z][A-Za-z0-9]*\b|\b[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*\b")
_MIXED_DIGITS = re.compile(r"\b(?=[A-Za-z0-9]*[A-Za-z])(?=[A-Za-z0-9]*[0-9])[A-Za-z][A-Za-z0-9]*\b")
_DOTTED = re.compile(r"\b[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)+\b")
_CALLED = re.compile(r"\b([A-Za-z_][\w]*)\(")
# Upper-case names such as ENOENT or SIGTERM; common acronyms are left out below.
_ALL_CAPS = re.compile(r"\b[A-Z][A-Z0-9]{2,}\b")
# Command-line options: -r, -rf, --force, --dry-run.
_OPTION = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")
_COMMON_ACRONYMS = frozenset(
    "api apis http https url urls uri css html sql json xml yaml csv pdf cli gui ide cpu gpu ram ssd "
    "rest crud orm jwt oop tcp udp dns ssh ssl tls aws gcp ci cd pr prs id ids uuid utf ascii dom sdk mvc "
    "npm faq todo readme etc usb ui ux os vm vms io iot ai ml llm api's jvm jdk jre cors csrf xss oauth "
    "smtp ftp sftp scp ascii unicode regex gui".split()
)
# Dotted words that are prose, not code.
_NOT_IDENTIFIERS = frozenset({"e.g", "i.e", "etc", "vs"})
# Product names written in camel case; compared by the language guard instead, case-insensitively.
_BRAND_NAMES = frozenset(
    "github gitlab bitbucket macos ios iphone ipad youtube linkedin openai chatgpt vscode intellij pycharm "
    "javascript typescript postgresql mysql mongodb powershell fastapi numpy pytorch graphql jquery webpack "
    "nextjs nodejs sqlite devops oauth websocket websockets".split()
)
# Names written with a dot that are products, not file names or identifiers.
_DOTTED_NAMES = {"node.js": "nodejs", "next.js": "nextjs", "vue.js": "vue", "react.js": "react",
                 "express.js": "express", "nuxt.js": "nuxt", "d3.js": "d3", "three.js": "threejs",
                 "chart.js": "chartjs", "asp.net": "aspnet"}

_DOTTED_NAME = re.compile("|".join(re.escape(name) for name in _DOTTED_NAMES), re.IGNORECASE)

_BACKTICKED = re.compile(r"`([^`\n]+)`")
_QUOTED = re.compile(r"\"([^\"\n]{1,200})\"|(?<![A-Za-z])'([^'\n]{1,200})'(?![A-Za-z])")

_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])(?:0x[0-9a-fA-F]+|\d+(?:[.,]\d+)*)(?![A-Za-z0-9_])")

_FILE_EXTENSIONS = (
    "py|pyi|ipynb|js|mjs|cjs|jsx|ts|tsx|go|rs|java|kt|kts|scala|rb|php|cs|c|h|cc|cpp|hpp|cxx|m|mm|swift|"
    "sh|bash|zsh|ps1|sql|html|htm|css|scss|less|vue|svelte|json|yaml|yml|toml|ini|cfg|conf|env|lock|md|rst|"
    "txt|csv|tsv|xml|proto|graphql|gradle|tf|dockerfile|mod|sum|log"
)
# "async/await", "and/or", "src/utils": two plain words joined by one slash. They are compared as
# words, because prose uses them too often for the path guard to require the same spelling.
_SLASH_PAIR = re.compile(r"^[A-Za-z][A-Za-z-]*/[A-Za-z][A-Za-z-]*$")
_PATH = re.compile(
    r"(?:https?://\S+)"
    r"|(?:(?:~|\.{1,2})?/?[\w.-]+(?:/[\w.-]+)+/?)"
    r"|(?:[A-Za-z]:\\[\w\\. -]+)"
    rf"|(?:\b[\w-]+\.(?:{_FILE_EXTENSIONS})\b)",
    re.IGNORECASE,
)

# Languages, runtimes, frameworks and tools, lower-case, each mapped to one canonical name.
_LANGUAGE_ALIASES = {
    "python": "python", "python3": "python", "py": "python", "javascript": "javascript", "js": "javascript",
    "node": "node", "nodejs": "node", "node.js": "node", "deno": "deno", "bun": "bun",
    "typescript": "typescript", "ts": "typescript", "java": "java", "kotlin": "kotlin", "scala": "scala",
    "c#": "csharp", "csharp": "csharp", "f#": "fsharp", ".net": "dotnet", "dotnet": "dotnet",
    "c++": "cpp", "cpp": "cpp", "golang": "go", "rust": "rust", "ruby": "ruby", "rails": "rails",
    "php": "php", "laravel": "laravel", "swift": "swift", "objective-c": "objc", "dart": "dart",
    "flutter": "flutter", "haskell": "haskell", "elixir": "elixir", "erlang": "erlang", "clojure": "clojure",
    "lua": "lua", "perl": "perl", "julia": "julia", "matlab": "matlab", "zig": "zig", "ocaml": "ocaml",
    "bash": "bash", "shell": "shell", "zsh": "zsh", "powershell": "powershell", "sql": "sql",
    "postgres": "postgresql", "postgresql": "postgresql", "mysql": "mysql", "sqlite": "sqlite",
    "mongodb": "mongodb", "redis": "redis", "html": "html", "css": "css", "sass": "sass",
    "react": "react", "vue": "vue", "angular": "angular", "svelte": "svelte", "next.js": "nextjs",
    "nextjs": "nextjs", "django": "django", "flask": "flask", "fastapi": "fastapi", "express": "express",
    "spring": "spring", "pandas": "pandas", "numpy": "numpy", "polars": "polars", "pytorch": "pytorch",
    "tensorflow": "tensorflow", "docker": "docker", "kubernetes": "kubernetes", "k8s": "kubernetes",
    "terraform": "terraform", "git": "git", "npm": "npm", "yarn": "yarn", "pnpm": "pnpm", "pip": "pip",
    "poetry": "poetry", "cargo": "cargo", "maven": "maven", "gradle": "gradle", "webpack": "webpack",
    "vite": "vite", "jest": "jest", "pytest": "pytest", "junit": "junit", "graphql": "graphql",
    "grpc": "grpc", "linux": "linux", "windows": "windows", "macos": "macos", "aws": "aws", "gcp": "gcp",
    "azure": "azure", "jquery": "jquery", "tailwind": "tailwind", "bootstrap": "bootstrap", "asyncio": "asyncio",
    "nuxt": "nuxt", "d3": "d3", "threejs": "threejs", "chartjs": "chartjs", "aspnet": "aspnet",
    "json": "json", "yaml": "yaml", "toml": "toml", "xml": "xml", "csv": "csv", "protobuf": "protobuf",
}
# Short names that are also English words count only in these contexts ("in Go", "C code").
_AMBIGUOUS_LANGUAGE = re.compile(
    r"\b(?:in|with|using|to|from|for|into|written in)\s+(go|c|r)\b(?![+#])"
    r"|\b(go|c|r)\s+(?:code|program|programs|function|functions|struct|structs|module|modules|"
    r"library|libraries|compiler|file|files|script|package|slice|slices|map|maps|array|arrays)\b",
    re.IGNORECASE,
)

# Data types and structures, by stem, each mapped to one canonical name ("dicts" -> dict).
_DATA_TYPES = {
    "list": "list", "array": "array", "tupl": "tuple", "tuple": "tuple", "set": None, "dict": "dict",
    "dictionary": "dict", "dictionari": "dict", "hashmap": "map", "hashtabl": "map", "map": None,
    "string": "string", "str": "string", "int": "integer", "integer": "integer", "float": "float",
    "doubl": "float", "decimal": "decimal", "bool": "boolean", "boolean": "boolean", "byt": "bytes",
    "bytearray": "bytes", "char": "char", "character": "char", "enum": "enum", "struct": "struct",
    "object": "object", "class": "class", "interfac": "interface", "vector": "vector", "queu": "queue",
    "stack": "stack", "heap": "heap", "tree": "tree", "graph": "graph", "matrix": "matrix", "matric": "matrix",
    "datafram": "dataframe", "seri": "series", "column": "column", "row": "row", "fil": "file", "file": "file",
    "folder": "directory", "directory": "directory", "directori": "directory", "dat": "date", "date": "date",
    "datetim": "datetime", "timestamp": "timestamp", "timezon": "timezone",
    "regex": "regex", "uuid": "uuid", "null": "null", "none": "null", "nil": "null", "undefined": "undefined",
    "promis": "promise", "futur": "future", "generator": "generator", "iterator": "iterator",
    "callback": "callback", "thread": "thread", "process": "process", "coroutin": "coroutine",
    "mutex": "mutex", "semaphor": "semaphore", "lock": None, "pointer": "pointer", "referenc": "reference",
    "slic": "slice", "channel": "channel", "tabl": "table", "json": None,
}

# Words that coding questions use interchangeably, by stem; each group maps to its first word.
_SYNONYM_GROUPS = (
    ("make", "create", "generate", "define"), ("delete", "remove", "erase"),
    ("get", "find", "obtain", "retrieve", "locate"), ("show", "display", "see", "view"), ("exit", "quit"),
    ("big", "large", "huge"), ("small", "tiny", "little"), ("combine", "merge"), ("run", "execute"),
    ("stop", "terminate", "kill", "halt"), ("change", "modify", "edit", "update"),
    ("convert", "turn", "transform", "parse"), ("loop", "iterate"), ("item", "element", "entry", "entries"),
    ("whitespace", "space", "spaces"), ("explain", "describe", "mean"), ("error", "exception"),
    ("fast", "quick"), ("launch", "start"), ("need", "require"), ("best", "recommended"), ("way", "method"),
)
_SYNONYMS: dict[str, str] = {}  # filled below, once `stem` is defined

_NEGATIONS = frozenset(
    "non not no never without none nor neither cannot can't don't doesn't didn't isn't aren't wasn't weren't "
    "won't wouldn't shouldn't couldn't mustn't haven't hasn't hadn't avoid except excluding".split()
)
_NEGATING_PREFIXES = ("un", "non", "in", "im", "ir", "il", "dis", "de")

_OPPOSITES = (
    ("sync", "async"), ("synchronous", "asynchronous"), ("min", "max"), ("minimum", "maximum"),
    ("smallest", "largest"), ("increase", "decrease"), ("ascending", "descending"), ("asc", "desc"),
    ("encode", "decode"), ("encrypt", "decrypt"), ("compress", "decompress"), ("serialize", "deserialize"),
    ("add", "remove"), ("insert", "delete"), ("enable", "disable"), ("show", "hide"), ("true", "false"),
    ("first", "last"), ("upper", "lower"), ("uppercase", "lowercase"), ("push", "pop"), ("left", "right"),
    ("start", "end"), ("open", "close"), ("import", "export"), ("include", "exclude"), ("input", "output"),
    ("read", "write"), ("get", "set"), ("client", "server"), ("horizontal", "vertical"), ("row", "column"),
    ("rows", "columns"), ("local", "remote"), ("inner", "outer"), ("public", "private"), ("before", "after"),
    ("above", "below"), ("prefix", "suffix"), ("head", "tail"), ("key", "value"), ("keys", "values"),
    ("lock", "unlock"), ("mutable", "immutable"), ("stdin", "stdout"), ("stdout", "stderr"),
    ("upload", "download"), ("send", "receive"), ("request", "response"), ("parent", "child"),
    ("frontend", "backend"), ("static", "dynamic"), ("shallow", "deep"), ("width", "height"),
    ("even", "odd"), ("positive", "negative"),
    ("join", "split"), ("merge", "split"), ("union", "intersection"), ("union", "difference"),
    ("intersection", "difference"), ("more", "less"), ("fewer", "more"), ("faster", "slower"),
    ("older", "newer"), ("oldest", "newest"), ("earliest", "latest"), ("lazy", "eager"),
    ("mock", "real"), ("optional", "required"), ("production", "development"), ("staging", "production"),
    ("top", "bottom"), ("into", "out"), ("begin", "end"), ("allow", "deny"), ("accept", "reject"),
    ("grant", "revoke"), ("attach", "detach"), ("mount", "unmount"), ("connect", "disconnect"),
    ("success", "failure"), ("pass", "fail"), ("valid", "invalid"), ("visible", "hidden"),
    ("create", "delete"), ("create", "drop"), ("install", "uninstall"), ("zip", "unzip"),
    ("pack", "unpack"), ("wrap", "unwrap"), ("subscribe", "unsubscribe"), ("login", "logout"),
    ("push", "pull"), ("plus", "minus"), ("multiply", "divide"),
    ("all", "first"), ("all", "single"), ("all", "one"), ("every", "first"), ("any", "all"),
)

# Direction words: ("to", forward) means the word before flows into the word after; a backward
# word ("from") reverses that. Used by the word-order guard.
_DIRECTIONS = {"to": True, "into": True, "onto": True, "as": True, "than": True, "over": True, "from": False}
_STOPWORDS = frozenset(
    "a an the this that these those my our your its their of in on at for with by and or is are was were be "
    "been being do does did how what which who whom why when where can could should would will shall may "
    "might must i you we it me us them some any all each every please just also so then there here way "
    "using use used via i'm it's let's want need".split()
)


@dataclass(slots=True)
class TextFacts:
    """The facts of one text that the guards compare, extracted once per text."""

    identifiers: frozenset[str] = frozenset()
    literals: frozenset[str] = frozenset()
    numbers: frozenset[str] = frozenset()
    paths: frozenset[str] = frozenset()
    slash_words: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    data_types: frozenset[str] = frozenset()
    negation_count: int = 0
    words: frozenset[str] = frozenset()
    stems: frozenset[str] = frozenset()
    directed_pairs: frozenset[tuple[str, str]] = field(default_factory=frozenset)
    # Content words after stemming and synonym mapping, with their counts.
    content: dict[str, int] = field(default_factory=dict)


def extract_facts(text: str, guards: CacheGuards) -> TextFacts:
    """Extract the facts of `text` that the guards compare."""
    text = _DOTTED_NAME.sub(lambda match: _DOTTED_NAMES[match.group(0).lower()], text)
    paths = set()
    slash_words = set()
    for match in _PATH.finditer(text):
        path = match.group(0).rstrip(".,;:)").lower()
        if _SLASH_PAIR.match(path):
            slash_words.update(path.split("/"))
        else:
            paths.add(path)
    # Paths are compared whole; their parts must not count again as identifiers, numbers or words.
    prose = _PATH.sub(lambda match: match.group(0) if _SLASH_PAIR.match(match.group(0).rstrip(".,;:)")) else " ", text)
    prose = prose.replace("/", " ")
    words = [_POSSESSIVE.sub("", word) for word in _WORD.findall(prose.lower())]
    return TextFacts(
        identifiers=_identifiers(prose),
        literals=_literals(text),
        numbers=frozenset(match.group(0).replace(",", "") for match in _NUMBER.finditer(prose)),
        paths=frozenset(paths),
        slash_words=frozenset(slash_words),
        data_types=_data_types(words),
        languages=_languages(text, words, guards),
        negation_count=sum(1 for word in words if word in _NEGATIONS),
        words=frozenset(words),
        stems=frozenset(stem(word) for word in words),
        directed_pairs=_directed_pairs(words),
        content=_content_counts(words),
    )


def check_guards(query: TextFacts, candidate: TextFacts, guards: CacheGuards) -> str | None:
    """Return the name of the first guard that rejects the candidate, or None when all pass."""
    for name, failed in _GUARD_CHECKS:
        if getattr(guards, name) and failed(query, candidate, guards):
            return name
    return None


def stem(word: str) -> str:
    """Strip one common English suffix, so that "deleting", "deleted" and "delete" compare equal."""
    for suffix in ("ing", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _content_counts(words: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in words:
        if word in _STOPWORDS or word in _DIRECTIONS:
            continue
        stemmed = stem(word)
        canonical = _LANGUAGE_ALIASES.get(word) or _DATA_TYPES.get(stemmed) or _SYNONYMS.get(stemmed) or stemmed
        counts[canonical] = counts.get(canonical, 0) + 1
    return counts


def _data_types(words: list[str]) -> frozenset[str]:
    names = set()
    for word in words:
        name = _DATA_TYPES.get(stem(word), _DATA_TYPES.get(word))
        if name is not None:
            names.add(name)
    return frozenset(names)


def _identifiers(text: str) -> frozenset[str]:
    found: set[str] = set()
    for pattern in (_SNAKE, _CAMEL, _MIXED_DIGITS, _DOTTED, _ALL_CAPS, _OPTION):
        found.update(match.group(0) for match in pattern.finditer(text))
    found.update(match.group(1) for match in _CALLED.finditer(text))
    return frozenset(
        name
        for name in found
        if name.lower() not in _NOT_IDENTIFIERS
        and name.lower() not in _BRAND_NAMES
        and name.lower() not in _LANGUAGE_ALIASES
        and name.lower() not in _COMMON_ACRONYMS
    )


def _literals(text: str) -> frozenset[str]:
    spans = {match.group(1) for match in _BACKTICKED.finditer(text)}
    for match in _QUOTED.finditer(text):
        spans.add(match.group(1) if match.group(1) is not None else match.group(2))
    return frozenset(spans)


def _languages(text: str, words: list[str], guards: CacheGuards) -> frozenset[str]:
    names = {_LANGUAGE_ALIASES[word] for word in words if word in _LANGUAGE_ALIASES}
    lowered = text.lower()
    for spelled in ("objective-c", ".net"):
        if spelled in lowered:
            names.add(_LANGUAGE_ALIASES[spelled])
    for match in _AMBIGUOUS_LANGUAGE.finditer(text):
        names.add((match.group(1) or match.group(2)).lower())
    extra = {name.lower() for name in guards.extra_languages}
    names.update(word for word in words if word in extra)
    return frozenset(names)


def _directed_pairs(words: list[str]) -> frozenset[tuple[str, str]]:
    """Return (source, target) pairs of content words joined by a direction word.

    "convert a string to an int" gives (string, int) and (convert, int); "parse an int from a
    string" gives (string, int) too, because "from" points backwards. Two content words on each side
    are paired, so that "is X faster than Y" yields (X, Y) as well as (faster, Y).
    """
    pairs = set()
    for index, word in enumerate(words):
        forward = _DIRECTIONS.get(word)
        if forward is None:
            continue
        for before in _content_words_near(words, index, -1):
            for after in _content_words_near(words, index, +1):
                if before != after:
                    pairs.add((before, after) if forward else (after, before))
    return frozenset(pairs)


def _content_words_near(words: list[str], index: int, step: int, window: int = 4, limit: int = 2) -> list[str]:
    found: list[str] = []
    for offset in range(1, window + 1):
        position = index + step * offset
        if not 0 <= position < len(words) or len(found) == limit:
            break
        word = words[position]
        if word not in _STOPWORDS and word not in _DIRECTIONS:
            found.append(word)
    return found


def _differs(attribute: str) -> Callable[[TextFacts, TextFacts, CacheGuards], bool]:
    def check(query: TextFacts, candidate: TextFacts, guards: CacheGuards) -> bool:
        return getattr(query, attribute) != getattr(candidate, attribute)

    return check


def _slash_words_missing(query: TextFacts, candidate: TextFacts, guards: CacheGuards) -> bool:
    return not (query.slash_words <= candidate.words and candidate.slash_words <= query.words)


def _negations_differ(query: TextFacts, candidate: TextFacts, guards: CacheGuards) -> bool:
    if query.negation_count != candidate.negation_count:
        return True
    for word in query.words ^ candidate.words:
        for prefix in _NEGATING_PREFIXES:
            if word.startswith(prefix) and len(word) > len(prefix) + 2:
                stem = word[len(prefix) :].lstrip("-")
                if (stem in query.words) != (stem in candidate.words):
                    return True
    return False


def _opposites_differ(query: TextFacts, candidate: TextFacts, guards: CacheGuards) -> bool:
    for first, second in (*_OPPOSITE_STEMS, *_stem_pairs(guards.extra_opposites)):
        query_side = (first in query.stems, second in query.stems)
        candidate_side = (first in candidate.stems, second in candidate.stems)
        if query_side != candidate_side and any(query_side + candidate_side):
            # Only a word that one side uses while the other uses its opposite is a contradiction.
            if (query_side[0] and candidate_side[1] and not candidate_side[0]) or (
                query_side[1] and candidate_side[0] and not candidate_side[1]
            ):
                return True
    return False


def _word_order_differs(query: TextFacts, candidate: TextFacts, guards: CacheGuards) -> bool:
    reversed_candidate = {(target, source) for source, target in candidate.directed_pairs}
    return bool(query.directed_pairs & reversed_candidate)


def _stem_pairs(pairs) -> list[tuple[str, str]]:
    return [(stem(first.lower()), stem(second.lower())) for first, second in pairs]


_OPPOSITE_STEMS = _stem_pairs(_OPPOSITES)
_SYNONYMS.update({stem(word): stem(group[0]) for group in _SYNONYM_GROUPS for word in group})

def _one_word_substituted(query: TextFacts, candidate: TextFacts, guards: CacheGuards) -> bool:
    """Reject texts that differ by exactly one content word swapped for another.

    "run a single test" against "skip a single test" scores 0.87, and no word list can know every
    pair of such words. A real paraphrase usually rewords more than one word; the synonym groups
    above cover the common single-word ones.
    """
    only_query = [word for word, count in query.content.items() for _ in range(count - candidate.content.get(word, 0))]
    only_candidate = [
        word for word, count in candidate.content.items() for _ in range(count - query.content.get(word, 0))
    ]
    return len(only_query) == 1 and len(only_candidate) == 1


_GUARD_CHECKS: tuple[tuple[str, Callable[[TextFacts, TextFacts, CacheGuards], bool]], ...] = (
    ("identifiers", _differs("identifiers")),
    ("literals", _differs("literals")),
    ("numbers", _differs("numbers")),
    ("paths", _differs("paths")),
    ("paths", _slash_words_missing),
    ("languages", _differs("languages")),
    ("data_types", _differs("data_types")),
    ("negations", _negations_differ),
    ("opposites", _opposites_differ),
    ("word_order", _word_order_differs),
    ("substitution", _one_word_substituted),
)
