"""``python -m cn --config FILE``: the correspondent node daemon."""

import sys

from cn.daemon import CnDaemon
from s2c.runtime.node import main

if __name__ == "__main__":
    sys.exit(main(CnDaemon))
