"""The operations side: the ``liteq`` commands other than ``worker`` (``stats``, ``dlq``,
``top``, …) and what they share; ``liteq.cli`` adds them to the command group."""
