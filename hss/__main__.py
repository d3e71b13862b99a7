"""``python -m hss --config FILE``: the HSS / 3GPP AAA server daemon (docs/hss.md)."""

import sys

from hss.daemon import HssDaemon
from s2c.runtime.node import main

if __name__ == "__main__":
    sys.exit(main(HssDaemon))
