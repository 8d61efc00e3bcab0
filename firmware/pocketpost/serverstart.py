"""The POP3 server's start-up (server.Server's cold part): its TLS context, its login Service
(pop3server.Service's set-up, which needs auth.py) and its listeners; and the words for a session
whose TLS failed to come up (describe: loaded again for that log line only).

Loaded by server.Server while it starts (and by a Service made alone, smtpserver's) and dropped
after (heapmark.forget): a listening server keeps none of this code in its heap.
"""

from pocketpost import log
from pocketpost.compat import const, urandom
from pocketpost import listener
from pocketpost.listener import Slots

# A login's PBKDF2 (pop3server._LOGIN_SLICE_MS slices) reads the clock after every chunk of
# iterations worth half a slice at the board's assumed cost (config pbkdf2_iteration_us: ~16 on an
# ESP32, thousands on a host; a step call costs ~20 us on the unix port, so a fixed small chunk
# would double a host's hash time): at most this many.
_MAX_LOGIN_CHUNK = const(4096)
_LOGIN_SLICE_MS = const(10)  # pop3server's (a private copy)


def describe(e):
    """A session that failed as its TLS came up (server.Server._handle's log line, before any
    command over it): words a user can act on, or None (its exception's type says it)."""
    t = repr(e)
    c = e.args[0] if e.args else 0
    if c in (-0x7780, -0x7A00, -0x6E00, 32, 104) or "ALERT" in t:  # alert, or it hung up at once
        return "TLS refused by the client: does it trust this server's certificate?"
    if c in (-0x7200, -0x6E80, -0x7300, -0x7700) or "VERSION" in t or "HTTP" in t:
        return "the client does not speak TLS: a plain POP3 client on the POP3S port?"
    return None


def recover(store):
    """Each mailbox recovered from flash now (storemerge.recover_all: loaded for it, dropped after
    it, with the recovery code; the session side is not loaded), once the server listens and
    its start-up code is dropped, before any session: a mailbox's first lock since boot runs the
    recovery (storescan and storemerge, ~9 KB of .mpy, and its 1 KiB blocks), and when that lock
    is a second session's login during another's RETR (or the fetcher's first delivery) the two
    add up in the heap's peak (bench_heap b 144 -> 132 KiB, 64-bit host). Measured there too: run
    first, before Server() loads the start-up code, it cost the listening server 8 KiB (a 114 KiB
    against 106: what it leaves behind, boxes and interned names, splits the heap the start-up
    then needs); here, 3-4 KiB. The boxes' RAM state stays (~460 B each on the 64-bit host, as after
    any lock); on a board boardstart.start's store check has recovered each already and this costs a listing.
    A mailbox made after start, or one that fails here, recovers at its first lock."""
    from pocketpost import storecore
    from pocketpost.compat import ticks_diff, ticks_ms

    t0 = ticks_ms()
    try:
        n, failed = storecore._cold("storemerge", "recover_all", store)
    except Exception as e:  # the root not listed: the listeners are up, so serve; each box at its first lock
        log.warning("store: mailboxes not recovered at start (%r): each at its first lock", e)
        return
    log.info("store: %d mailboxes ready (%d left to their first lock) in %d ms", n, failed,
             ticks_diff(ticks_ms(), t0))


def build(srv, store):
    """server.Server's TLS context (None without cert and key: the one heapmark.reserve made
    before the config loaded, if any, with the certificate loaded into it), login Service and Slots."""
    from pocketpost import heapmark
    from pocketpost.pop3server import Service

    sv = srv.sv
    ctx = heapmark.tls[0]  # made before the config loaded (heapmark.reserve), or None
    heapmark.tls[0] = None
    if sv["cert"] and sv["key"]:
        from pocketpost import tls  # start-up only: dropped after (heapmark.forget)

        ctx = tls.server_context(sv["cert"], sv["key"], ctx)
    else:
        ctx = None
    svc = Service(sv, srv.cfg["users"], store, tls_available=ctx is not None)
    svc.tls_ctx = ctx  # the SMTP receiver's too (smtpserver): one context, not two
    if srv.config_path:
        svc.on_rehash = srv.save_hash
    return ctx, svc, Slots(sv, "pop3")


async def listen(srv):
    sv = srv.sv
    host = sv["host"]
    try:
        if sv["port"]:
            srv._listeners.append(await listener.listen(srv._plain, host, sv["port"]))
            log.info("pop3 listening on %s:%d (STLS %s)", host, sv["port"], "on" if srv.ctx else "off")
        if sv["pop3s_port"] and srv.ctx is not None:
            srv._listeners.append(await listener.listen(srv._implicit, host, sv["pop3s_port"]))
            log.info("pop3s listening on %s:%d", host, sv["pop3s_port"])
    except BaseException:
        # A port that cannot be had: the ports already listening are let go too, or the
        # supervisor's restart would find them taken (by this dead server) for good.
        srv.close()
        raise


def login_setup(svc, sv, users, store, tls_available):
    """pop3server.Service's set-up: its attributes (but its class defaults), made once. sv is
    config.check's "server" section: every key is there, defaults merged
    (serverconf.SERVER_DEFAULTS is the one place they are written)."""
    from pocketpost import auth, heapmark
    from pocketpost.pop3server import LOGIN_MODULES, holds

    svc.cfg = sv
    svc.users = users
    svc.store = store
    svc.tls_available = tls_available
    svc.policy = sv["plaintext_auth"]
    svc.max_failures = sv["max_auth_failures"]
    # The failed-login throttle's state (its code: loginsvc.fail/succeed/failures): per-address
    # records [failures, last failure ticks]; its delays and window are read from cfg where used,
    # as the hostname is (pop3cmd's APOP timestamp): at most 17 attributes (a table of 17
    # entries, 288 B on the 64-bit host, not 23's 384 B, once per server).
    svc.fails = {}
    svc.block_size = sv["block_size"]
    svc.units = 0  # RETR copy units out (pop3trans._RETR_UNITS)
    nets = []
    for n in sv["trusted_networks"]:
        c = auth.parse_cidr(n)
        if c is not None:
            nets.append(c)
    svc.nets = nets
    # APOP is per-user opt-in. Only when some user has it does the banner carry the RFC 1939
    # timestamp: a client that sees one may pick APOP, which would fail for everyone else.
    svc.apop_enabled = False
    for u in users.values():
        if u.get("apop_secret"):
            svc.apop_enabled = True
    # The board's count: every check costs at least this many iterations (auth.Verify pads a
    # cheaper stored hash), a stored hash with another count is rehashed to it at the next
    # successful login, and an unknown user is checked against a dummy hash made with it.
    # So known and unknown users cost the same once every hash has the board's count.
    svc.iterations = sv["pbkdf2_iterations"]
    svc._dummy = auth.hash_password(urandom(12), svc.iterations)
    svc.scram_secret = auth.scram_secret(users)
    # The chunk of PBKDF2 iterations between two clock reads (pop3login.resume).
    svc.login_chunk = max(1, min(_MAX_LOGIN_CHUNK, int(_LOGIN_SLICE_MS * 500 / sv["pbkdf2_iteration_us"])))
    if not holds[0]:
        heapmark.forget(LOGIN_MODULES)  # imported again by the first session that logs in
