import sys

from picopower.cli import main

sys.exit(main())
