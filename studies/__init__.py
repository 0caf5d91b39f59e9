"""The project's studies: the main job (``make main``) and the experiments behind docs/results.md (each
written up in docs/studies/), each one entry point (``python -m studies.<name>`` or ``bash studies/<name>.sh``).
Not installed with the package: they import the packages, nothing imports them."""
