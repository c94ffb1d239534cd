"""`python -m probe` is the same as the `registry-probe` console script."""

from probe.cli import main

raise SystemExit(main())
