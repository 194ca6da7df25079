"""The ``autopyfactory`` command and its subcommands."""
