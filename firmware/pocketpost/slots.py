"""Session slots for every listener (the POP3 server and the SMTP receiver): admission, caps
and eviction.

Fairness: connections that have not got anywhere yet ("pre-auth": a TLS handshake, POP3's
AUTHORIZATION state or a failed-login delay, SMTP before MAIL on port 25 or AUTH on submission)
can never keep a user out. When a new connection finds a cap full it takes the slot of the
oldest pre-auth connection there, which is closed at once ("evicted" in the log):
  - its address at max_sessions_per_addr: the oldest pre-auth connection of that address
    (one address churning connections only ever evicts its own);
  - else the listener at max_sessions: the oldest pre-auth connection of any address.
Only when every slot it could take has got somewhere is the new connection refused. The caps
are applied when the connection is accepted, before any TLS handshake is spent on it. So
silent peers, garbage ClientHellos and failed-login delays hold a slot only until a newer
connection needs it (and never past their deadline); a session past pre-auth is never evicted.
What remains: a peer that opens connections faster than a login takes (one TLS handshake and
one hash) can still evict a user who is logging in, and only from addresses other than its own
once the listener is full: a flood, not a camp.
"""

from pocketpost import log

LISTEN_BACKLOG = 4  # pending connections the kernel/lwIP queues per listener


class Slot:
    """One admitted connection: its task (to evict it) and whether it is still pre-auth."""

    def __init__(self, sid, ip, task):
        self.sid = sid
        self.ip = ip
        self.task = task
        self.preauth = True
        self.released = False


class Slots:
    """The slots of one service. caps: its config section (max_sessions, max_sessions_per_addr,
    read at each admission); proto: the log lines' prefix ("pop3", "smtp")."""

    def __init__(self, caps, proto):
        self.caps = caps
        self.proto = proto
        self.sessions = 0
        self.per_addr = {}
        self.slots = {}  # sid -> Slot
        self._next_id = 0

    def _cap_reached(self, here):
        """Which limit refuses one more connection (named as in the config), or None."""
        c = self.caps
        if here >= c["max_sessions_per_addr"]:
            return "per-address cap max_sessions_per_addr=%d reached" % c["max_sessions_per_addr"]
        if self.sessions >= c["max_sessions"]:
            return "global session cap max_sessions=%d reached" % c["max_sessions"]
        return None

    def _oldest_preauth(self, ip):
        best = None
        for slot in self.slots.values():
            if slot.preauth and (ip is None or slot.ip == ip) and (best is None or slot.sid < best.sid):
                best = slot
        return best

    def admit(self, ip, task):
        """A Slot for a new connection from ip (evicting the oldest pre-auth one of that address,
        or of any address, when a cap is reached), else the limit that refuses it (a str)."""
        here = self.per_addr.get(ip, 0)
        cap = self._cap_reached(here)
        if cap is not None:
            victim = self._oldest_preauth(ip if here >= self.caps["max_sessions_per_addr"] else None)
            if victim is None:
                log.warning("%s %s refused: %s, every slot logged in (open: %d in all, %d from %s)", self.proto, ip, cap,
                            self.sessions, here, ip)
                return cap
            log.info("%s #%d %s evicted: its pre-auth slot goes to a new connection (%s)", self.proto, victim.sid,
                     victim.ip, cap)
            self.release(victim)
            victim.task.cancel()
        self._next_id += 1
        slot = Slot(self._next_id, ip, task)
        self.slots[slot.sid] = slot
        self.sessions += 1
        self.per_addr[ip] = self.per_addr.get(ip, 0) + 1
        return slot

    def release(self, slot):
        if slot.released:
            return
        slot.released = True
        self.slots.pop(slot.sid, None)
        self.sessions -= 1
        k = self.per_addr.get(slot.ip, 1) - 1
        if k <= 0:
            self.per_addr.pop(slot.ip, None)
        else:
            self.per_addr[slot.ip] = k
