"""Class-based actors: subclass ``GenericActor``, implement ``perform``, configure in ``Meta``."""

from __future__ import annotations

from typing import Any

from .actors import actor


def _meta_options(meta: type | None) -> dict[str, Any]:
    """The public attributes a ``Meta`` class defines itself (not through its bases)."""
    if meta is None:
        return {}
    return {name: getattr(meta, name) for name in vars(meta) if not name.startswith("_")}


class generic_actor(type):  # noqa: N801 - Dramatiq's name
    """Metaclass that turns each concrete ``GenericActor`` subclass into an actor.

    A class whose own ``Meta`` says ``abstract = True`` stays a class to inherit from.
    Any other subclass is instantiated once and declared through ``Meta.actor`` (the
    ``actor`` decorator by default) with the remaining ``Meta`` attributes as its
    options; the class name is then bound to that instance, which forwards unknown
    attributes (``send``, ``queue_name``, ``options``...) to the actor in ``__actor__``.
    A subclass without its own ``Meta`` uses the one it inherits.
    """

    def __new__(
        mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> Any:
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        own_meta = namespace.get("Meta")
        if own_meta is not None and vars(own_meta).get("abstract", False):
            return cls
        options = _meta_options(getattr(cls, "Meta", None))
        options.pop("abstract", None)
        registry = options.pop("actor", actor)
        instance = cls()
        instance.__actor__ = registry(instance, **options)
        return instance

    def __getattr__(cls, name: str) -> Any:
        raise AttributeError(f"type object {cls.__name__!r} has no attribute {name!r}")


class GenericActor(metaclass=generic_actor):
    """Base class of class-based actors; subclasses implement :meth:`perform`.

    Options go in an inner ``Meta`` class (``queue_name``, ``max_retries``, ``broker``,
    ``actor_name``, ``actor`` for a custom decorator...). ``Meta.abstract = True`` makes
    a base class whose subclasses inherit its ``Meta``::

        class BaseTask(GenericActor):
            class Meta:
                abstract = True
                queue_name = "tasks"

            def perform(self, name):
                print(f"{self.greeting}, {name}")

        class Hello(BaseTask):
            greeting = "Hello"

        Hello.send("world")
    """

    class Meta:
        abstract = True

    @property
    def __name__(self) -> str:
        """The actor's default name: the name of the class."""
        cls: type = type(self)  # not this property, which the class sees as __name__
        return cls.__name__

    def __getattr__(self, name: str) -> Any:
        try:
            declared = self.__dict__["__actor__"]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}"
            ) from None
        return getattr(declared, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run :meth:`perform` here, synchronously."""
        return self.perform(*args, **kwargs)

    def perform(self, *args: Any, **kwargs: Any) -> Any:
        """What the actor does with a message's arguments; every concrete subclass defines it."""
        raise NotImplementedError(f"{type(self).__name__} does not implement perform()")
