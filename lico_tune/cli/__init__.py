"""The `lico-tune` command.

    commands.py   the parser and the spec and trial commands (validate, schema, train, run, resume,
                  rerun, explain)
    arguments.py  checks of arguments argparse cannot make (ports, --host, -o files, unknown options)
    results.py    report, index
    dashboard.py  `lico-tune dashboard`: the Streamlit server, stopped with its parent
    help.py       epilogs with examples; output.py: exit codes and messages; shipped.py: the
                  dashboard app and example specs of an installation or a checkout
"""
from .commands import build_parser, main

__all__ = ["build_parser", "main"]
