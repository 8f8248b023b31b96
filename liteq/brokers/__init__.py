"""Broker implementations: ``sqlite`` (default), ``stub``, ``redis``, ``rabbitmq``."""
