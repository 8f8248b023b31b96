"""``liteq.brokers.rabbitmq.RabbitmqBroker``: Dramatiq's RabbitMQ queues, with pika."""

from .broker import DEAD_MESSAGE_TTL, RabbitmqBroker
from .consumer import RabbitmqConsumer

__all__ = ["DEAD_MESSAGE_TTL", "RabbitmqBroker", "RabbitmqConsumer"]
