"""`python -m mlobs.drift fit|report ...` (see mlobs.drift.cli)."""

from mlobs.drift.cli import main

raise SystemExit(main())
