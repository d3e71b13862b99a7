"""``python -m pdngw --config FILE``: the PDN GW daemon."""

import sys

from pdngw.daemon import PdnGwDaemon
from s2c.runtime.node import main

if __name__ == "__main__":
    sys.exit(main(PdnGwDaemon))
