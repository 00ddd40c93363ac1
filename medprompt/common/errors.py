"""The one exception type the command line turns into a one-line message."""


class MedpromptError(Exception):
    """A user-facing error: bad input, a mismatched cache, a broken checkpoint.

    The message names the file and what is wrong with it; the CLI prints it on
    one line and exits with status 2.
    """
