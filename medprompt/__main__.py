"""`python -m medprompt`: the command line, as the `medprompt` console script runs it."""

import sys

from medprompt.cli.main import main

sys.exit(main())
