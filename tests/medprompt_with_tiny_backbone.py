"""The command line with the test backbones registered, for tests that start their own processes (torchrun):
`torchrun ... tests/medprompt_with_tiny_backbone.py VERB ...`."""

import sys

import tiny_backbone  # noqa: F401 - registers tiny_test and tiny_vit_test, as a user's own backbone module would
from medprompt.cli.main import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
