"""The `line_numbers` action: remove the padding of `cat -n` line-number gutters in text results.

`cat -n`, and Claude Code's Read tool after it, starts every line with a gutter: the line number
right-aligned to GUTTER_WIDTH characters with spaces, then a tab (newer Claude Code versions write
`→` in place of the tab). In cl100k the padding costs about one token per line. The action removes
only those leading spaces, so the number, the separator and every character after it stay as they
were. Because every rewritten gutter had exactly GUTTER_WIDTH characters, padding each number back
to that width restores the original bytes, and the stage checks that before it uses the result.

A text is rewritten only when it looks like a listing:

- its first line, or its second line after one header line (Edit results start with "The file ... has
  been updated. Here's the result of running `cat -n` on a snippet ..."), is a numbered line;
- the listing starts with at least MIN_LISTING_LINES numbered lines in a row with consecutive
  numbers;
- after that first run, the listing goes on while the numbers keep increasing. A numbered line
  right after another one must be numbered one higher. After lines without a gutter (an omission
  marker, for instance) any higher number may follow. The first numbered line that breaks this ends
  the listing, and it and everything after it stay byte-identical, like `<system-reminder>` blocks.

A numbered line has the gutter `^ *[0-9]+(\\t|→)` with the width of `cat -n`: GUTTER_WIDTH characters in
total, or no padding at all for numbers of GUTTER_WIDTH digits or more. A gutter of any other width
ends the listing too, so whatever is rewritten can be restored.
"""

from __future__ import annotations

import re

GUTTER_WIDTH = 6
MIN_LISTING_LINES = 3
# Maximum number of header lines before the first numbered line of a listing.
MAX_HEADER_LINES = 1

# ASCII digits only: `\d` would also match other scripts' digits, which `cat -n` never writes.
_GUTTER = re.compile(r"( *)([0-9]+)[\t→]")


def _gutter_number(line: str) -> int | None:
    """Return the line number of a `cat -n` gutter of GUTTER_WIDTH characters, or None."""
    match = _GUTTER.match(line)
    if match is None:
        return None
    padding, digits = match.group(1), match.group(2)
    if len(padding) != max(0, GUTTER_WIDTH - len(digits)):
        return None
    return int(digits)


def may_start_listing(text: str) -> bool:
    """Return whether one of the first MAX_HEADER_LINES + 1 lines starts with a gutter.

    It reads only those lines, so the stage can skip most other text results before counting tokens.
    """
    start = 0
    for _ in range(MAX_HEADER_LINES + 1):
        if _GUTTER.match(text, start) is not None:
            return True
        newline = text.find("\n", start)
        if newline < 0:
            return False
        start = newline + 1
    return False


def listing_lines(lines: list[str]) -> list[int]:
    """Return the positions of the numbered lines of the listing, or [] when `lines` is not one."""
    first = None
    for position in range(min(MAX_HEADER_LINES + 1, len(lines))):
        if _gutter_number(lines[position]) is not None:
            first = position
            break
    if first is None:
        return []

    numbered: list[int] = []
    previous: int | None = None
    previous_position = -1
    for position in range(first, len(lines)):
        number = _gutter_number(lines[position])
        in_first_run = len(numbered) < MIN_LISTING_LINES
        if number is None:
            if in_first_run:
                return []
            if _GUTTER.match(lines[position]) is not None:
                break  # a gutter of another width
            continue
        if previous is not None:
            adjacent = position == previous_position + 1
            if adjacent and number != previous + 1:
                break
            if not adjacent and number <= previous:
                break
        numbered.append(position)
        previous, previous_position = number, position
    return numbered if len(numbered) >= MIN_LISTING_LINES else []


def strip_gutters(text: str) -> tuple[str, list[int]] | None:
    """Remove the gutter padding of a `cat -n` listing.

    Returns the new text and the positions (in `text.split("\\n")`) of the numbered lines, or None
    when the text is not a listing or has no padding to remove.
    """
    if not may_start_listing(text):
        return None
    lines = text.split("\n")
    numbered = listing_lines(lines)
    changed = False
    for position in numbered:
        line = lines[position]
        if line.startswith(" "):
            lines[position] = line.lstrip(" ")
            changed = True
    if not changed:
        return None
    return "\n".join(lines), numbered


def restore_gutters(text: str, numbered: list[int]) -> str:
    """Pad the numbers of the given lines back to GUTTER_WIDTH: the inverse of `strip_gutters`."""
    lines = text.split("\n")
    for position in numbered:
        line = lines[position]
        match = _GUTTER.match(line)
        if match is None or match.group(1):
            raise ValueError(f"line {position + 1} has no unpadded gutter")
        digits = match.group(2)
        lines[position] = digits.rjust(GUTTER_WIDTH) + line[len(digits) :]
    return "\n".join(lines)
