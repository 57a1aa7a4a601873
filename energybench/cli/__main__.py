"""``python -m energybench.cli``: the ``energybench`` command."""

from energybench.cli import main

raise SystemExit(main())
