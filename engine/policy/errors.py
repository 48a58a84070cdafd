"""Policy errors that name the file, line, column and key path."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyIssue:
    file: str
    line: int  # 1-based
    column: int  # 1-based
    key_path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        if self.key_path:
            return f"{where}: {self.key_path}: {self.message}"
        return f"{where}: {self.message}"


class PolicyError(Exception):
    """Raised when a policy set cannot be loaded; carries every issue found."""

    def __init__(self, issues: list[PolicyIssue]):
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))
