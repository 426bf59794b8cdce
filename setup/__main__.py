"""`python -m setup`: run by compose once Elasticsearch is up; safe to run again."""

import sys

from setup.elastic_setup import SetupError, main

if __name__ == "__main__":
    try:
        main()
    except SetupError as exc:
        print(f"setup failed: {exc}", file=sys.stderr, flush=True)
        sys.exit(1)
