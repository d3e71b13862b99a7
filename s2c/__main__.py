import sys

from s2c.cli import main

sys.exit(main())
