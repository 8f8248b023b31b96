"""Place N orders: ``python -m shop N`` (the setup module is imported first)."""

import argparse
import sys

from shop import setup  # noqa: F401 - the broker is set up before the actors are imported
from shop.orders import place_order


def main(argv=None):
    parser = argparse.ArgumentParser(description="Place numbered orders.")
    parser.add_argument("count", type=int)
    args = parser.parse_args(argv)
    menu = ["tea", "cake", "jam"]
    for n in range(args.count):
        place_order.send(f"order-{n}", menu[: 1 + n % 3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
