"""The `vz` command's entry point: vz's imports run with Ctrl-C held.

A SIGINT that arrives while the interpreter imports vz (~100 ms: typer, rich, orjson...) would
raise KeyboardInterrupt inside some module's initialisation: orjson's then crashes the interpreter
(a segfault, seen in tests/test_crash.py), and any other would print a traceback. So the signal is
blocked (`pthread_sigmask`: the kernel keeps it pending) until the imports are done, then let in
where it ends the command as Ctrl-C always does: "interrupted", exit 130, nothing written. Once
the command has ended, Ctrl-C is ignored while the interpreter shuts down. Only the interpreter's
own start-up, before this module runs, is outside vz's hands (CPython then reports a fatal error in
`import site`, or dies by the signal).

From then on SIGINT raises KeyboardInterrupt as Python's default handler does, but never inside
importlib's own frames, where Python would drop it (`vzcli.interrupts`).

Only `_signal` (built in, already loaded at start-up) is imported before the signal is held:
`signal.py` alone imports enum, functools and collections, a few milliseconds.
"""

import _signal


def main() -> None:
    sigint = _signal.SIGINT
    held = hasattr(_signal, "pthread_sigmask") and _signal.getsignal(sigint) is _signal.default_int_handler
    old = _signal.pthread_sigmask(_signal.SIG_BLOCK, {sigint}) if held else None
    import sys

    from vzcli import interrupts
    from vzcli.cli import main as run
    from vzcli.errors import ExitCode
    from vzcli.render import error

    if old is not None:
        try:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, old)  # a Ctrl-C held meanwhile is raised here
        except KeyboardInterrupt:
            error("interrupted")
            sys.exit(int(ExitCode.INTERRUPTED))
        _signal.signal(sigint, interrupts.handler)  # Python's default, but never where it is dropped
    try:
        run()
    except KeyboardInterrupt:  # in the few instructions between the command's handlers and here
        error("interrupted")
        sys.exit(int(ExitCode.INTERRUPTED))
    finally:
        # the command has ended, its output written and its exit status decided: while the
        # interpreter shuts down (10-30 ms, SIGINT back at its default action), a Ctrl-C would kill
        # it with "interrupted" after a write had committed
        _signal.signal(sigint, _signal.SIG_IGN)
