"""``python -m liteq``: the same as the ``liteq`` command."""

from .cli import main

# Guarded: a spawned worker process imports this module as ``__mp_main__``.
if __name__ == "__main__":
    main()
