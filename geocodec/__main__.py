import sys

from geocodec.cli.main import main

sys.exit(main())
