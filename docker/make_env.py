"""Create or complete .env from .env.example: `python3 docker/make_env.py [--env .env]`.

Empty secrets (names containing PASSWORD, KEY, TOKEN or SECRET) get random values; variables
already in .env keep their value (changing a password after the first start needs `make clean`,
because Elasticsearch keeps the one it was created with). Secrets are never printed.
Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

SECRET_WORDS = ("PASSWORD", "KEY", "TOKEN", "SECRET")


def parse(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def is_secret(key: str) -> bool:
    return any(word in key for word in SECRET_WORDS)


def new_secret() -> str:
    return secrets.token_hex(24)  # 48 hex characters: enough for Kibana's 32-character key


def complete(example: str, existing: str) -> tuple[str, list[str]]:
    """The .env text: `existing` plus every variable of `example` it lacks, secrets filled."""
    have = parse(existing)
    added, lines = [], [existing.rstrip("\n")] if existing.strip() else []
    for key, value in parse(example).items():
        if key in have:
            continue
        if is_secret(key) and not value:
            value = new_secret()
        lines.append(f"{key}={value}")
        added.append(key)
    return "\n".join(lines) + "\n", added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=Path, default=Path(".env.example"))
    parser.add_argument("--env", type=Path, default=Path(".env"))
    args = parser.parse_args(argv)
    existing = args.env.read_text() if args.env.exists() else ""
    text, added = complete(args.example.read_text(), existing)
    if not added:
        print(f"{args.env} is complete")
        return 0
    args.env.write_text(text)
    os.chmod(args.env, 0o600)  # secrets: readable by the owner only
    secrets_added = [k for k in added if is_secret(k)]
    print(
        f"{'created' if not existing else 'completed'} {args.env}: {len(added)} variables, "
        f"{len(secrets_added)} random secrets ({', '.join(secrets_added) or 'none'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
