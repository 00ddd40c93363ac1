"""The command line with the test backbones registered, for tests that start their own processes (torchrun):
`torchrun ... tests/medprompt_with_tiny_backbone.py VERB ...`.

With MEDPROMPT_TEST_DIE=RANK:N[:step] set, the process of that rank dies (as a killed process does, without
cleaning up) when it starts its N+1-th encoder pass (or training step): the tests' way of killing one member of a
group mid-way.
"""

import os
import sys

import tiny_backbone  # noqa: F401 - registers tiny_test and tiny_vit_test, as a user's own backbone module would
from medprompt.backbones import Backbone
from medprompt.cli.main import main
from medprompt.training.trainer import Trainer

PASSES = {"encode": (Backbone, "encode"), "step": (Trainer, "step")}


def die_at(rank: int, passes: int, what: str = "encode") -> None:
    """Make the process of `rank` exit abruptly at its `passes`+1-th call of `what`."""
    if int(os.environ.get("RANK", "0")) != rank:
        return
    owner, name = PASSES[what]
    method, count = getattr(owner, name), [0]

    def call_then_die(self, *args):
        if count[0] == passes:
            os._exit(9)
        count[0] += 1
        return method(self, *args)

    setattr(owner, name, call_then_die)


if __name__ == "__main__":
    if os.environ.get("MEDPROMPT_TEST_DIE"):
        rank, passes, *what = os.environ["MEDPROMPT_TEST_DIE"].split(":")
        die_at(int(rank), int(passes), *what)
    sys.exit(main(sys.argv[1:]))
