"""`leangate hash-key`: print the sha256 digest that the policy stores for a gateway key."""

from __future__ import annotations

import argparse
import getpass
import hashlib
import sys

DESCRIPTION = (
    "Print the sha256 hex digest of a gateway key, for `keys:` or `admin_keys:` in a policy. "
    "The key is read from standard input (or a prompt), never from the command line, so it stays out of shell history."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    del args
    key = getpass.getpass("gateway key: ") if sys.stdin.isatty() else sys.stdin.readline()
    key = key.strip()
    if not key:
        print("error: empty key", file=sys.stderr)
        return 1
    print(hashlib.sha256(key.encode()).hexdigest())
    return 0
