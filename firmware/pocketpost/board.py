"""Board glue: Wi-Fi, clock, watchdog and the service supervisor.

Theory of operation. firmware/boot.py decides safe mode (pocketpost.safemode: a pin held at boot,
or a flag file) and nothing else, so the REPL is always reachable. firmware/main.py builds a `Hardware` from the real
`machine`, `network` and `ntptime` modules and calls `main()`. Everything here takes those as
injected objects, so host tests pass small fakes and the unix port (no Wi-Fi, no WDT) passes
`None` for what it lacks.

`run()` is one asyncio event loop that holds:
- the watchdog feeder: started first, so a hang anywhere (Wi-Fi, NTP, a service stuck in a
  blocking call) stops the feeding and the hardware WDT resets the board;
- the Wi-Fi keeper: connects with exponential back-off, then polls the link and reconnects
  when it drops. Sessions already running are not touched: their sockets fail or recover on
  their own, and listeners bound to 0.0.0.0 serve again once the link is back;
- the clock keeper: NTP at start (TLS certificate checks need the date) and every interval;
- the supervisor: runs each service (POP3 server, fetch schedule) as a task; a service that
  raises is logged and restarted with back-off, and after too many failures in a row the
  board is reset (a fresh heap beats a wedged one) if the failure is a MemoryError or the
  service once ran for a while: one that has failed at every start since boot with anything
  else (a missing certificate file, a port taken) would fail the same after a reset, so it is
  retried at the longest back-off while the other services run. A service that ran for a
  while before failing starts its count afresh. Once every service has ended normally (none does in normal
  use) the keepers are cancelled and `main()` leaves the REPL, as with no service configured.

Ctrl-C from the REPL (mpremote does this when it connects) stops the loop. KeyboardInterrupt
unwinds only the task that happened to be running (usually none: the loop sits in its poll), so
`main()` then (pocketpost.boardend.shutdown) cancels every task (keepers, services, POP3 and SMTP
sessions, fetches) and runs the loop again until their finally blocks have run, at most
boardend._SHUTDOWN_MS: mailbox locks released,
a delivery in flight aborted (its temp file removed; a commit is a rename, so the message is
either there or not), sockets and listeners closed. Then it forgets the store's RAM state as a
reset would (store.reboot(): locks, cached mailbox state), so the next lock recovers each mailbox
from flash (finishing a deletion commit cut after its intent log) and an export or import from
the REPL sees what a freshly booted board would. A started machine.WDT cannot be stopped on an
ESP32, so `main()` then hands feeding to a hardware timer: the REPL stays usable until the next
reset. Running main.py again in the same interpreter (pocketpost.mailport.restart() on the unix
port) starts from a fresh event loop.

Every default for the config keys "wifi", "ntp", "watchdog", "services" is a named constant here
or, for what only the start-up reads (Wi-Fi retries at boot, the fetch interval), in
pocketpost.boardstart: the start-up itself (Runner.run's set-up, the secrets file, the store
opened and checked, the fetch state settled), loaded for it and dropped before the services start.
What main() does once the loop has stopped (Ctrl-C, no service left, a config mistake, a fatal
error) is pocketpost.boardend, loaded then: neither is held in the heap while the services run.
"""

import asyncio
import gc
import sys
import time

from pocketpost import log
from pocketpost.compat import IS_MICROPYTHON, WDT_TIMEOUT_MS, ConfigError, const, forget, ticks_diff, ticks_ms

_TYPING = const(0)  # a const: mpy-cross drops the block and its names (machine, network)
if _TYPING:  # never true at run time: lets mypy check calls against the ESP32 stubs
    import machine  # noqa: F401
    import network  # noqa: F401

# --- defaults for the board config keys (each overridable in config.json) -------------------

CONFIG_PATH = "config.json"
SECRETS_PATH = "secrets.json"  # {"ssid": ..., "password": ..., "hostname": ...}; git-ignored
_WIFI_BACKOFF_MS = const(1000)  # first pause after a failed attempt; doubles each time
_WIFI_BACKOFF_MAX_MS = const(60000)  # cap: an AP that is down for hours is retried each minute
# One attempt: association + WPA2 handshake + DHCP usually take 2-6 s; a busy AP up to ~10 s.
_WIFI_CONNECT_TIMEOUT_MS = const(15000)
_WIFI_POLL_MS = const(250)  # isconnected() poll while an attempt is in progress
_WIFI_CHECK_MS = const(5000)  # link poll once up: a drop is noticed within 5 s
NTP_HOST = "pool.ntp.org"
# ESP32 RTC drift is seconds per day; certificate validity checks need minutes. 6 h is plenty.
_NTP_INTERVAL_S = const(21600)
_NTP_RETRY_S = const(60)  # after a failed sync (UDP lost, DNS down)
# WDT_TIMEOUT_MS (imported from compat, where it says why 30 s): the watchdog period.
WDT_FEED_DIVISOR = const(4)  # feed every timeout/4: three missed feeds still do not reset
# Backstop on top of an account's session_timeout (the client checks it at every wait; this
# catches what it cannot, e.g. a slow flash): the account's fetch task is cancelled there.
FETCH_DEADLINE_SLACK_S = const(30)
USB_LINK_MAGIC = b"pocketpost-live"  # a host's start line begins with this (then "1 <cmd> ...")
_USB_LINE_MAX = const(1200)  # a start line: a command and mailbox names (32 octets each); longer: ignored
_RESTART_BACKOFF_MS = const(1000)  # first pause before restarting a failed service; doubles
_RESTART_BACKOFF_MAX_MS = const(60000)
_RESTARTS_BEFORE_RESET = const(8)  # consecutive failures of one service before machine.reset()
_SERVICE_HEALTHY_MS = const(300000)  # a service that ran 5 min before failing is "healthy again"
_FATAL_RESET_DELAY_MS = const(10000)  # top-level failure: log, wait (REPL can Ctrl-C), reset
_SERVER_WAIT_MS = const(20)  # serve_smtp's poll while the POP3 server starts (one or two loop passes)
current = None  # the running Runner, for admin.status()
# boot.py's flash remount (flashfs.tuned: mount point, read size, program size; None if it did not
# run), kept here by main.py once it has dropped boot.py's modules; admin.status() shows it.
tuned = None


def _sleep_ms(ms):
    return asyncio.sleep(ms / 1000)  # asyncio.sleep_ms is MicroPython-only


def _exc_line(e):
    return "%s: %s" % (type(e).__name__, e)


def _print_exception(e):
    pe = getattr(sys, "print_exception", None)  # MicroPython; CPython has traceback instead
    if pe is not None:
        pe(e)


# --- hardware bundle ----------------------------------------------------------------------


class Hardware:
    """What main.py hands over from the real board; any part may be None (unix port, tests).
    wlan: a network.WLAN(STA_IF); ntptime: the ntptime module; make_wdt(ms) -> machine.WDT;
    reset(): machine.reset; keep_fed(wdt): feed the WDT from a timer once the loop has stopped."""

    def __init__(self, wlan=None, ntptime=None, make_wdt=None, reset=None, keep_fed=None):
        self.wlan = wlan
        self.ntptime = ntptime
        self.make_wdt = make_wdt
        self.reset = reset
        self.keep_fed = keep_fed


# --- Wi-Fi --------------------------------------------------------------------------------


class Wifi:
    """Station connect with exponential back-off, then a keeper that reconnects after drops."""

    def __init__(
        self,
        wlan,
        ssid,
        password,
        hostname=None,
        backoff_ms=_WIFI_BACKOFF_MS,
        backoff_max_ms=_WIFI_BACKOFF_MAX_MS,
        connect_timeout_ms=_WIFI_CONNECT_TIMEOUT_MS,
        check_ms=_WIFI_CHECK_MS,
        poll_ms=_WIFI_POLL_MS,
    ):
        # type: (network.WLAN, str, str, str | None, int, int, int, int, int) -> None
        self.wlan = wlan
        self.ssid = ssid
        self.password = password
        self.hostname = hostname
        self.backoff_ms = backoff_ms
        self.backoff_max_ms = backoff_max_ms
        self.connect_timeout_ms = connect_timeout_ms
        self.check_ms = check_ms
        self.poll_ms = poll_ms
        self.up = False
        self.attempts = 0
        self.connects = 0
        self.drops = 0
        self.last_error = None  # type: str | None
        self.address = None  # type: str | None

    def _begin(self):
        self.wlan.active(True)
        if self.hostname:
            try:
                self.wlan.config(hostname=self.hostname)
            except (OSError, ValueError):  # older firmware: dhcp_hostname, or unsupported
                pass
        try:
            self.wlan.disconnect()  # connect() while a previous attempt runs raises on ESP32
        except OSError:
            pass
        self.wlan.connect(self.ssid, self.password)

    async def _attempt(self):
        self.attempts += 1
        try:
            self._begin()
            t0 = ticks_ms()
            while not self.wlan.isconnected():
                if ticks_diff(ticks_ms(), t0) >= self.connect_timeout_ms:
                    self.last_error = "timeout, status %s" % self.wlan.status()
                    return False
                await _sleep_ms(self.poll_ms)
        except OSError as e:
            self.last_error = _exc_line(e)
            return False
        self.up = True
        self.connects += 1
        try:
            self.address = self.wlan.ifconfig()[0]
        except (OSError, IndexError):
            self.address = None
        log.info("wifi: connected to %s as %s (attempt %d)", self.ssid, self.address, self.attempts)
        return True

    async def connect(self, attempts=None):
        """Try up to `attempts` times (None: until connected), sleeping with back-off between."""
        delay = self.backoff_ms
        n = 0
        while attempts is None or n < attempts:
            n += 1
            if await self._attempt():
                return True
            if attempts is not None and n >= attempts:
                break
            log.warning("wifi: attempt %d failed (%s); retry in %d ms", n, self.last_error, delay)
            await _sleep_ms(delay)
            delay = min(delay * 2, self.backoff_max_ms)
        log.warning("wifi: not connected after %d attempts (%s)", n, self.last_error)
        return False

    async def keep(self):
        """Runs forever: notice a dropped link and reconnect (with back-off) until it is back."""
        while True:
            if not self.wlan.isconnected():
                if self.up:
                    self.up = False
                    self.drops += 1
                    log.warning("wifi: link lost (drop %d); reconnecting", self.drops)
                await self.connect()
            await _sleep_ms(self.check_ms)


# --- clock --------------------------------------------------------------------------------


class Clock:
    """NTP through the `ntptime` module: once at start, then every interval while Wi-Fi is up."""

    def __init__(self, ntptime, host=NTP_HOST, interval_s=_NTP_INTERVAL_S, retry_s=_NTP_RETRY_S):
        self.ntptime = ntptime
        self.host = host
        self.interval_s = interval_s
        self.retry_s = retry_s
        self.syncs = 0
        self.failures = 0
        self.last_error = None  # type: str | None

    def sync(self):
        """One blocking query (ntptime's own timeout, 1 s by default). True on success."""
        try:
            self.ntptime.host = self.host
            t0 = time.time()
            self.ntptime.settime()
        except (OSError, OverflowError, IndexError, ValueError) as e:
            # OSError: no route, DNS failure, UDP timeout; the rest: a malformed reply.
            self.failures += 1
            self.last_error = _exc_line(e)
            log.warning("ntp: sync with %s failed: %s", self.host, self.last_error)
            return False
        self.syncs += 1
        if current is not None:  # the clock's jump (2000 -> now at the first sync): not uptime
            current.started += time.time() - t0
        log.info("ntp: clock set from %s: %s", self.host, time.gmtime()[:6])
        return True

    async def keep(self, wifi=None):
        while True:
            ok = False
            if wifi is None or wifi.up:
                ok = self.sync()
            await _sleep_ms((self.interval_s if ok else self.retry_s) * 1000)


# --- watchdog -----------------------------------------------------------------------------


class Watchdog:
    """Feeds a machine.WDT from the event loop: if the loop stalls, the board resets."""

    def __init__(self, wdt, timeout_ms=WDT_TIMEOUT_MS):
        # type: (machine.WDT, int) -> None
        self.wdt = wdt
        self.timeout_ms = timeout_ms
        self.every_ms = max(1, timeout_ms // WDT_FEED_DIVISOR)
        self.feeds = 0

    def feed(self):
        self.wdt.feed()
        self.feeds += 1

    async def keep(self):
        while True:
            self.feed()
            await _sleep_ms(self.every_ms)


# --- supervisor ---------------------------------------------------------------------------


class Service:
    def __init__(self, name, factory):
        self.name = name
        self.factory = factory  # an async function of no arguments: the service's whole life
        self.state = "new"
        self.starts = 0
        self.failures = 0  # consecutive
        self.last_error = None  # type: str | None

    # True once a run of it lasted _SERVICE_HEALTHY_MS (set then: a class default until then).
    ran = False


class Supervisor:
    """Runs services as tasks; logs a failure and restarts the service after a back-off."""

    def __init__(
        self,
        reset=None,
        backoff_ms=_RESTART_BACKOFF_MS,
        backoff_max_ms=_RESTART_BACKOFF_MAX_MS,
        reset_after=_RESTARTS_BEFORE_RESET,
        healthy_ms=_SERVICE_HEALTHY_MS,
    ):
        self.reset = reset
        self.backoff_ms = backoff_ms
        self.backoff_max_ms = backoff_max_ms
        self.reset_after = reset_after
        self.healthy_ms = healthy_ms
        self.services = []  # type: list[Service]
        self.tasks = []  # type: list

    def add(self, name, factory):
        svc = Service(name, factory)
        self.services.append(svc)
        return svc

    def start(self):
        for svc in self.services:
            self.tasks.append(asyncio.create_task(self._run(svc)))

    def wait(self):
        """Awaitable: until every service is done; raises at once when one's task ends in an
        exception (its failure could not even be handled, see _run), not only when the tasks
        before it end. (The gather itself: no coroutine frame of its own held while they run.)"""
        return asyncio.gather(*self.tasks)

    def stop(self):
        for t in self.tasks:
            t.cancel()

    async def _run(self, svc):
        try:
            delay = self.backoff_ms
            while True:
                svc.state = "running"
                svc.starts += 1
                t0 = ticks_ms()
                try:
                    await svc.factory()
                    svc.state = "done"
                    log.info("service %s finished", svc.name)
                    return
                except asyncio.CancelledError:
                    svc.state = "stopped"
                    raise
                except Exception as e:  # any failure of one service: log it, restart it
                    if ticks_diff(ticks_ms(), t0) >= self.healthy_ms:
                        svc.failures = 0
                        svc.ran = True
                        delay = self.backoff_ms
                    svc.failures += 1
                    svc.last_error = _exc_line(e)
                    # A reset cures a scattered heap or a wedged network stack, not a cause that
                    # was there at boot (a certificate file missing, a port another service
                    # holds): a service that never ran and fails with anything but MemoryError is
                    # retried at the longest back-off, and the others keep running.
                    wedged = svc.ran or isinstance(e, MemoryError)
                    log.error("service %s failed (%d in a row): %s", svc.name, svc.failures, svc.last_error)
                    _print_exception(e)
                gc.collect()
                if self.reset is not None and self.reset_after and svc.failures >= self.reset_after:
                    if wedged:
                        log.error("service %s keeps failing: resetting the board", svc.name)
                        self.reset()
                    elif svc.failures == self.reset_after:
                        log.error("service %s fails at every start since boot: not resetting the board "
                                  "(that would not change it); retrying, see admin.status()", svc.name)
                svc.state = "backoff"
                await _sleep_ms(delay)
                delay = min(delay * 2, self.backoff_max_ms)
        except Exception:  # the failure's handling failed (a MemoryError while logging it): no
            svc.state = "broken"  # restart from a wedged heap; wait() raises it, board.main resets
            raise


# --- services -----------------------------------------------------------------------------


def _section(cfg, key):
    v = cfg.get(key)
    return v if isinstance(v, dict) else {}


def load_config(path=CONFIG_PATH):
    from pocketpost import config

    return config.load(path)


def _fetch_mark(info):  # info["headers"] is None: board fetches parse no headers (headers=False)
    from pocketpost import heapmark

    heapmark.sample("fetch")  # after each stored message (admin.status() shows the mark)


class Runner:
    """The running board: what admin.status() reports."""

    def __init__(self, cfg, hw):
        self.cfg = cfg
        self.hw = hw if hw is not None else Hardware()
        self.started = time.time()
        self.wifi = None  # type: Wifi | None
        self.clock = None  # type: Clock | None
        self.watchdog = None  # type: Watchdog | None
        self.supervisor = Supervisor(reset=self.hw.reset)
        self.server = None  # the pocketpost.server Server while it runs
        self.smtp = None  # the pocketpost.smtpserver SmtpServer while it runs
        self.config_path = None  # where cfg came from (main sets it)
        self.store = None
        self.fetches = {}  # type: dict
        self.tasks = []  # type: list  # keepers; CPython only weakly references bare tasks
        self.fetch_tasks = []  # type: list  # one per account while the fetch schedule runs

    async def serve(self):
        from pocketpost import server
        from pocketpost import storesession  # noqa: F401 - see below

        # storesession (the store's session side: lock, Mailbox) loads with the server, before the
        # sessions' buffers, not at the first lock in the middle of the heap (bench_heap c: ~4 KiB).
        srv = await server.start(self.cfg, self.store, self.config_path)
        self.server = srv
        logins = getattr(srv, "svc", None)
        if self.smtp is not None and logins is not None:  # a restart: SMTP shares the new one too
            self.smtp.update(logins)
        try:
            wait = getattr(srv, "wait_closed", None)
            if wait is not None:
                await wait()
                raise OSError("server listeners closed")
            while True:
                await _sleep_ms(3600000)
        finally:
            self.server = None
            try:
                srv.close()
            except OSError:
                pass

    async def serve_smtp(self):
        # The POP3 server's login service when it runs: one failed-login throttle and one TLS
        # context for both. Its start yields to the loop (its listeners) before self.server is
        # set, so wait while it is starting, or not started yet (added after SMTP, its task not
        # run yet); not when it is off or failed (SMTP then makes its own).
        for s in self.supervisor.services:
            if s.name == "server":
                while self.server is None and s.state in ("new", "running"):
                    await _sleep_ms(_SERVER_WAIT_MS)
        from pocketpost import smtpserver

        srv = await smtpserver.start(self.cfg, self.store, getattr(self.server, "svc", None))
        self.smtp = srv
        try:
            while True:
                await _sleep_ms(3600000)
        finally:
            self.smtp = None
            srv.close()

    async def fetch_schedule(self, interval_s=None):
        """One task per account, each on its own schedule and under its own deadline (the
        account's session_timeout, which the client enforces on every wait, plus
        FETCH_DEADLINE_SLACK_S as a backstop): one stuck server never holds another account.
        Cost: accounts may fetch at the same time, each with its own session buffers (~7 KB)
        and TLS context."""
        from pocketpost import client

        if interval_s is None:  # the supervisor's start: the config's (boardstart checked it is set)
            interval_s = _section(self.cfg, "services")["fetch_interval_s"]
        accts = self.cfg.get("accounts") or []
        if not accts:
            while True:
                await _sleep_ms(3600000)
        tasks = [asyncio.create_task(self.fetch_loop(client, a, interval_s)) for a in accts]
        self.fetch_tasks = tasks
        try:
            await asyncio.gather(*tasks)
        finally:
            self.fetch_tasks = []
            for t in tasks:
                t.cancel()

    async def fetch_loop(self, client, acct, interval_s):
        name = acct.get("name") or acct.get("user") or "?"
        try:
            limit = client.account_from_dict(acct)["session_timeout"] + FETCH_DEADLINE_SLACK_S
        except Exception:
            limit = client.SESSION_TIMEOUT  # a bad account: fetch_account says what is wrong
        while True:
            if "refused" in self.fetches.get(name, ()):  # at start (boardstart: fetchload.renamed): not fetched
                pass
            elif self.wifi is not None and not self.wifi.up:
                log.info("fetch %s: skipped, wifi down", name)
            else:
                try:
                    job = client.fetch_account(acct, self.store, _fetch_mark, headers=False)
                    self.fetches[name] = st = await asyncio.wait_for(job, limit)
                    if st.get("fetched") or st.get("deleted"):  # the log says when mail came in
                        log.info("fetch %s: %d fetched, %d deleted", name, st.get("fetched", 0), st.get("deleted", 0))
                except MemoryError:  # the board's own trouble: let the supervisor restart us
                    raise
                except asyncio.TimeoutError:
                    self.fetches[name] = {"error": "deadline of %ss passed" % limit}
                    log.warning("fetch %s failed: its deadline of %ss passed; next try in %ss", name, limit, interval_s)
                except Exception as e:  # network, TLS, login refused, a bad reply: try next time
                    self.fetches[name] = {"error": _exc_line(e)}
                    log.warning("fetch %s failed: %s", name, _exc_line(e))
                self.fetches[name]["at"] = time.time() - self.started  # uptime then: admin.status() says how long ago
            await _sleep_ms(interval_s * 1000)

    async def usb_link(self):
        """Export/import over USB while serving: wait for a host's start line on the serial port
        (stdin: nobody else reads it while main.py runs) and run the session
        (pocketpost.mailport.live_session; imported only then: ~13 KB of heap on the 64-bit unix
        port). Other lines are ignored; a failed session is logged and the next start line
        begins anew."""
        stdin = getattr(sys.stdin, "buffer", sys.stdin)
        reader = asyncio.StreamReader(stdin)  # type: ignore[arg-type]
        ln = bytearray()
        while True:
            # One byte per read: the serial port is a blocking stream, and readline() after the
            # poll blocks the whole loop until a line end comes: a stray partial line (a
            # terminal's keystroke, a modem prober's "AT\r") stopped every service (on a board
            # until the watchdog reset it). A byte the poll announced is there: read(1) returns.
            b = await reader.read(1)
            if not b:  # the port closed (unix port: the pty's far end): nothing more will come
                while True:
                    await _sleep_ms(3600000)
            if b != b"\n":
                if len(ln) <= _USB_LINE_MAX:  # one byte past it marks the line too long
                    ln += b
                continue
            line = bytes(ln).strip()
            ln = bytearray()
            if len(line) > _USB_LINE_MAX or not line.startswith(USB_LINK_MAGIC + b" "):
                continue
            args = line.decode().split(" ")[2:]
            from pocketpost import mailport

            log.info("usb link: %s started", " ".join(args))
            try:
                await mailport.live_session(self.store, self.config_path or CONFIG_PATH, args, reader, sys.stdout)
                log.info("usb link: %s done", " ".join(args))
            except Exception as e:  # the host went away, a bad line: logged, then the next start line
                log.warning("usb link: %s failed: %s", " ".join(args), _exc_line(e))

    async def run(self, secrets_path=None):
        from pocketpost import boardstart  # start-up only: dropped before the services start

        await boardstart.start(self, secrets_path)
        boardstart = None
        forget(("boardstart",))
        self.supervisor.start()
        log.info("pocketpost: services %s started", [s.name for s in self.supervisor.services])
        if self.supervisor.tasks:  # a keeper that dies (a MemoryError in its log line) ends the run too
            try:
                await asyncio.gather(self._services(), *self.tasks)
            except asyncio.CancelledError:  # the keepers, once every service has ended normally
                for s in self.supervisor.services:
                    if s.state != "done":  # this task itself cancelled (CPython's Ctrl-C)
                        raise

    async def _services(self):
        """Until every service has ended normally; then the keepers are cancelled, so run()
        returns and main() leaves the REPL with the watchdog fed by a timer (as with no service)."""
        await self.supervisor.wait()
        for t in self.tasks:
            t.cancel()


def main(config_path=CONFIG_PATH, hw=None, secrets_path=None, fatal_delay_ms=_FATAL_RESET_DELAY_MS):
    """Start everything from the config and run forever. On a board, a failure outside the
    services is logged and the board resets after a pause; a mistake in the config (ConfigError)
    is logged and returns to the REPL (a reset would only meet it again, every ten seconds);
    Ctrl-C returns to the REPL."""
    global current
    from pocketpost import heapmark

    heapmark.compact_gc()  # before the services load: long-lived objects stay packed (heapmark.py)
    heapmark.reserve()  # the POP3 server's TLS context, before the config scatters the heap
    hw = hw if hw is not None else Hardware()
    runner = None
    try:
        cfg = load_config(config_path)
        lv = _section(cfg, "log").get("level")
        if lv:
            log.set_level(lv)
        runner = Runner(cfg, hw)
        runner.config_path = config_path  # the server saves rehashed passwords there
        current = runner
        if IS_MICROPYTHON:  # main.py run again (mailport.restart): nothing of an old loop resumes
            asyncio.new_event_loop()
        asyncio.run(runner.run(secrets_path))
    except KeyboardInterrupt:  # the rest, and what the other endings do: pocketpost.boardend
        try:
            from pocketpost import boardend
        except MemoryError:  # no heap for it: forget the store's RAM state at least (its locks)
            from pocketpost import storecore

            storecore.reboot()
            raise KeyboardInterrupt
        boardend.interrupted(runner, hw)
        raise
    except ConfigError as e:  # the file says something wrong: a reset would read it again, and again
        from pocketpost import boardend

        boardend.config_error(runner, hw, e)
    except Exception as e:  # config unreadable, store unusable, a bug outside the supervisor
        try:
            from pocketpost import boardend

            boardend.fatal(hw, e, fatal_delay_ms)
        except Exception:  # MemoryError: a full heap must still reset, not leave a dead board
            pass
        if hw.reset is None:
            raise
        time.sleep(fatal_delay_ms / 1000)
        hw.reset()
    else:  # no service configured, or every service has ended normally
        from pocketpost import boardend

        boardend.idle(runner, hw)
