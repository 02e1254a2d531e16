"""The `lico-tune` command.

    parser.py     the parser (every command's options) and main(argv)
    commands.py   the spec and trial commands (specs, validate, schema, train, run, resume, trust,
                  rerun, explain)
    arguments.py  checks of arguments argparse cannot make (ports, --host, -o files, unknown options)
    results.py    report, index, dashboard
    dashboard.py  `lico-tune dashboard`: the Streamlit server, stopped with its parent
    help.py       epilogs with examples; output.py: exit codes and messages; shipped.py: the
                  dashboard app and example specs of an installation or a checkout (a spec by name)
"""
from .parser import build_parser, main

__all__ = ["build_parser", "main"]
