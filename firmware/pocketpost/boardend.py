"""The board's end (pocketpost.board.main): what runs once its event loop has stopped, loaded
then and not held while the services run (board.py's code is in the heap for the board's whole
life; this part only at its end: bench_heap --runner c).

- Ctrl-C (interrupted): every task cancelled and run until its finally blocks have run (at most
  _SHUTDOWN_MS), the store's RAM state forgotten as a reset would, the watchdog handed to a timer;
- no service left (idle) or a mistake in the config (config_error): the watchdog handed to a
  timer, the REPL left to the user;
- a failure outside the services (fatal): logged; board.main itself then resets the board, so a
  heap too full to load this module still resets it.
"""

import asyncio

from pocketpost import board, log
from pocketpost.compat import IS_MICROPYTHON, const, ticks_diff, ticks_ms

# After Ctrl-C: the most the cancelled tasks get to run their finally blocks. Each needs one pass
# of the loop (nothing awaits in a finally); 2 s bounds a wedged one and keeps mpremote waiting
# well under its 10 s for the raw REPL prompt.
_SHUTDOWN_MS = const(2000)
_SHUTDOWN_POLL_MS = const(10)


def shutdown(r, ms=_SHUTDOWN_MS):
    """After Ctrl-C stopped the loop: cancel every task of runner r, run the loop until they have
    all finished (at most ms), then forget the store's RAM state as a reset would (board.py's
    docstring). Returns how many tasks had not finished in time (-1: a second Ctrl-C)."""
    from pocketpost import storecore as store_mod  # (store.py: Delivery, not needed here)

    left = 0
    try:
        if IS_MICROPYTHON:  # CPython's asyncio.run has cancelled and awaited every task itself
            tasks = r.tasks + r.supervisor.tasks + r.fetch_tasks
            for srv in (r.server, r.smtp):
                if srv is not None:
                    tasks += srv.tasks()
            left = asyncio.run(_stop(tasks, ms))
    except KeyboardInterrupt:  # a second Ctrl-C: stop waiting, release everything anyway
        left = -1
    finally:
        if IS_MICROPYTHON:
            asyncio.new_event_loop()  # drop whatever did not finish: never resumed later
        store_mod.reboot()
    if left:
        log.warning("interrupted: %d tasks did not stop in time (the one Ctrl-C itself ended counts here); "
                    "mailbox locks released anyway", left)
    return left


async def _stop(tasks, ms):
    """Cancel tasks and wait until each is done, at most ms; returns how many are not.
    The cancels are made from inside the loop: outside it, MicroPython's cancel() refuses the task
    that ran last before Ctrl-C ("can't cancel self", it is still the loop's current task) though
    it may be alive and waiting. A task that Ctrl-C unwound itself (its finally blocks ran then)
    never reports done: it costs the whole wait."""
    for t in tasks:
        t.cancel()
    t0 = ticks_ms()
    while True:
        left = 0
        for t in tasks:
            if not t.done():
                left += 1
        if not left or ticks_diff(ticks_ms(), t0) >= ms:
            return left
        await board._sleep_ms(_SHUTDOWN_POLL_MS)


def _keep_fed(r, hw):
    """The loop that fed the watchdog is gone: a hardware timer feeds it (a started WDT cannot be
    stopped on an ESP32), or the board would reset every timeout. True if it did."""
    if r is not None and r.watchdog is not None and hw.keep_fed is not None:
        hw.keep_fed(r.watchdog.wdt)
        return True
    return False


def interrupted(r, hw):
    if r is not None:
        shutdown(r)
    if _keep_fed(r, hw):
        log.warning("interrupted: watchdog now fed by a timer; machine.reset() to restart")


def idle(r, hw):
    """Only reached with no service configured, or once every service has ended normally."""
    _keep_fed(r, hw)
    log.warning("no service running: REPL only (see \"services\" in the config)")


def config_error(r, hw, e):
    """The file says something wrong: a reset would read it again, and again."""
    log.error("pocketpost not started: %s", e)
    log.error("fix config.json (mpremote edit :config.json), then reset; admin.status() checks it")
    _keep_fed(r, hw)


def fatal(hw, e, delay_ms):
    log.error("pocketpost stopped: %s", board._exc_line(e))
    board._print_exception(e)
    if hw.reset is not None:
        log.error("resetting in %d ms (Ctrl-C for the REPL)", delay_ms)
