"""The process side of ``liteq worker``: what the supervisor (``liteq.pool``) and its worker
processes need beside the core (children, forks, hard limit, reload, pid file, logging)."""
