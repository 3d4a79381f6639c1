"""One module per ``riskwatch`` sub-command.

Each module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args, beam_args) -> int``.
The command line finds them by scanning this package, so adding a command touches no other file.
"""
