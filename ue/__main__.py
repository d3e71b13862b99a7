"""``python -m ue --config FILE``: the UE daemon."""

import sys

from s2c.runtime.node import main
from ue.daemon import UeDaemon

if __name__ == "__main__":
    sys.exit(main(UeDaemon))
