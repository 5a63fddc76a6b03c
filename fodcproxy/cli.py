"""`python -m fodcproxy [proxy|agent|fake-agents|demo] ...`: picks the program and hands it the rest.

This module only dispatches. Each program parses its own flags and sets up its own process with
the shared helpers of `fodcproxy.process`; the proxy's flags are in `fodcproxy.config`. A program is
imported only when it runs, so the agent never loads the proxy and `--help` stays quick.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

PROGRAMS = ("proxy", "agent", "fake-agents", "demo")

def main(argv: Sequence[str] | None = None) -> None:
    """Run the program `argv[0]` names (the proxy when it names none) with the other arguments.

    Exits as the program does: 0 after SIGINT/SIGTERM, 2 with one line on a bad flag or an
    address that cannot be listened on.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args and not args[0].startswith("-") and args[0] not in PROGRAMS:
        # The proxy takes no positional argument: a word first is a mistyped program.
        sys.stderr.write(f"python -m fodcproxy: error: unknown program {args[0]!r}: "
                         f"choose one of {', '.join(PROGRAMS)} (see --help)\n")
        raise SystemExit(2)
    program = args[0] if args and args[0] in PROGRAMS else "proxy"
    if args and args[0] in PROGRAMS:
        args = args[1:]
    if program == "proxy":
        from fodcproxy.proxy import proxy_main

        proxy_main(args)
    elif program == "agent":
        from fodcproxy.agent.main import agent_main

        agent_main(args)
    elif program == "fake-agents":
        from fodcproxy.testing.cli import fake_agents_main

        fake_agents_main(args)
    else:
        from fodcproxy.testing.demo import demo_main

        demo_main(args)
