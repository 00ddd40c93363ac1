"""The command line with the test backbones registered, for tests that start their own processes (torchrun):
`torchrun ... tests/medprompt_with_tiny_backbone.py VERB ...`.

With MEDPROMPT_TEST_DIE=RANK:N set, the process of that rank dies (as a killed process does, without cleaning
up) when it starts its N+1-th encoder pass: the tests' way of killing one member of a group mid-way.
"""

import os
import sys

import tiny_backbone  # noqa: F401 - registers tiny_test and tiny_vit_test, as a user's own backbone module would
from medprompt.backbones import Backbone
from medprompt.cli.main import main


def die_on_encode(rank: int, passes: int) -> None:
    """Make the process of `rank` exit abruptly at its `passes`+1-th encoder pass."""
    if int(os.environ.get("RANK", "0")) != rank:
        return
    encode, count = Backbone.encode, [0]

    def encode_then_die(self, images):
        if count[0] == passes:
            os._exit(9)
        count[0] += 1
        return encode(self, images)

    Backbone.encode = encode_then_die


if __name__ == "__main__":
    if os.environ.get("MEDPROMPT_TEST_DIE"):
        die_on_encode(*map(int, os.environ["MEDPROMPT_TEST_DIE"].split(":")))
    sys.exit(main(sys.argv[1:]))
