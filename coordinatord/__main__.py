import sys

from coordinatord.cli import main

sys.exit(main())
