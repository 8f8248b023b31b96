"""A shop whose actors are spread over several modules (Dramatiq's "actors from different
files" layout). The worker imports the setup module first, then the actor modules::

    liteq worker shop.setup shop.orders shop.mail     # dramatiq shop.setup shop.orders ...
    python -m shop 5                                  # place five orders
"""
