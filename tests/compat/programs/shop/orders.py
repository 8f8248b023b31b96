"""Order actors: pricing an order sends its receipt through an actor of another module."""

import liteq as dramatiq
from shop.mail import send_receipt

PRICES = {"tea": 3, "cake": 5, "jam": 4}


@dramatiq.actor(queue_name="orders")
def place_order(order_id, items):
    total = sum(PRICES[item] for item in items)
    place_order.logger.info("order %s comes to %d", order_id, total)
    send_receipt.send(order_id, total)
