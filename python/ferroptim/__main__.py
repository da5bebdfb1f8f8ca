import sys

from ferroptim.cli import main

sys.exit(main())
