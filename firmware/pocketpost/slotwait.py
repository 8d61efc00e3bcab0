"""listener.Slots at a full cap: the waiting room (wait) and then the eviction of a pre-auth
connection, or the refusal (admit). listener.py's theory of operation says what they do and why.

Cold code: listener.Slots.wait loads it while a connection waits and drops it after the last one
(compat.release_cold), so a server whose caps are not full (bench_heap's workloads among them)
holds none of it. Nothing here makes a function or an object that outlives the call.
"""

import asyncio

from pocketpost import log
from pocketpost.compat import const, ticks_add, ticks_diff, ticks_ms
from pocketpost.listener import Slot

# Admission at a full cap (the wait itself is the config's slot_wait seconds): a waiting
# connection looks for the slot handed to it (release) and for its peer's close this often (a
# handed slot is taken up within it; a waiting connection costs a wake-up per step).
_WAIT_STEP_MS = const(100)
_WAITING_MAX = const(2)  # listener's (a private copy)
# A pre-auth session that got somewhere (a command answered, its TLS handshake done) this
# recently, and was admitted less than _YOUNG_MS ago, is not evicted by a connection from its own
# address: a client's second connection must not cut its first while it logs in (an ESP32:
# a TLS handshake of 1-2 s, a hash of ~0.3 s, round trips over Wi-Fi). Young: bounded, so that a
# peer trickling commands keeps its slot no longer (then its deadline, authorization, still runs).
_FRESH_MS = const(3000)  # listener's (a private copy)
_YOUNG_MS = const(15000)


def admit(slots, ip, task, born=None):
    """A Slot for a new connection from ip: a free one, else the slot of the oldest pre-auth
    connection it may take (evicted; see listener's module doc), else the limit that refuses it
    (a str). born: when this connection came (its wait's start): a slot admitted since (handed to
    a connection ahead of it in the waiting room) is not its to evict."""
    here = slots.per_addr.get(ip, 0)
    c = slots.caps
    per = c["max_sessions_per_addr"]
    if here >= per or slots.sessions >= c["max_sessions"]:
        # the limit that refuses one more connection, named as in the config
        cap = ("per-address cap max_sessions_per_addr=%d reached" % per if here >= per
               else "global session cap max_sessions=%d reached" % c["max_sessions"])
        # The oldest pre-auth slot: of this address at its own cap, else of any address; not
        # one of this address getting somewhere while young (listener's module doc).
        victim = None
        now = ticks_ms()
        for slot in slots.slots.values():
            if (slot.preauth and (slot.ip == ip or here < per) and (victim is None or slot.sid < victim.sid)
                    and (slot.ip != ip or slot.seen is None or ticks_diff(now, slot.seen) >= _FRESH_MS
                         or ticks_diff(now, slot.born) >= _YOUNG_MS)
                    and (born is None or ticks_diff(born, slot.born) >= 0)):
                victim = slot
        if victim is None:
            log.warning("%s %s refused: %s, every slot logged in or logging in (open: %d in all, %d from %s)",
                        slots.proto, ip, cap, slots.sessions, here, ip)
            return cap
        log.info("%s #%d %s evicted: its pre-auth slot goes to a new connection (%s)", slots.proto, victim.sid,
                 victim.ip, cap)
        # Its slot is this connection's: taken before the victim's is given up, so that
        # release() finds no slot free to hand to a waiting connection.
        slot = slots.reserve(Slot(ip, task))
        slots.release(victim)
        victim.task.cancel()
        return slot
    return slots.reserve(Slot(ip, task))


async def wait(slots, ip, task, conn, implicit):
    """After Slots.admit's None: wait (the section's slot_wait) in the waiting room for a slot,
    holding only the socket: conn, its connection (listener.ServerConn), implicit: TLS from
    the start (no greeting or TLS is spent on it here). Then the Slot that release() handed
    it (first come, first served; already released when it was evicted before it woke: the
    shell says so and closes), else what admit answers, or None: its peer left while it
    waited (see listener's module doc)."""
    w = slots.waiting
    t = slots.caps["slot_wait"]
    me = None
    if t > 0:
        n = 0
        for e in w:
            if e.ip == ip:
                n += 1
        if len(w) >= _WAITING_MAX and not n:
            # A full room and no place of its own: it takes the newest place of an address
            # that holds more than one (one host cannot keep the others from waiting); that
            # connection gets the rule at once (at its next step).
            i = len(w)
            while i and n < 2:
                i -= 1
                n = 0
                for e in w:
                    if e.ip == w[i].ip:
                        n += 1
            if n > 1:
                e = w.pop(i)
                e.released = True
                log.info("%s %s gives its place in the waiting room to %s", slots.proto, e.ip, ip)
        if len(w) < _WAITING_MAX:
            me = Slot(ip, task)
            w.append(me)
    if me is not None:
        got = False
        try:  # (from the append on: a MemoryError in the log line must not keep it in w for good)
            log.info("%s %s waits for a slot (%d waiting)", slots.proto, ip, len(w))
            end = ticks_add(ticks_ms(), int(t * 1000))
            while True:
                if not me.sid:
                    slots.release(None)  # (what a failed hand-over left free: release())
                if me.sid:  # a slot handed over
                    got = True
                    return me
                gone = conn.gone(implicit)  # (first before any wait: CPython's stops reading there)
                if gone or me.released or ticks_diff(end, ticks_ms()) <= 0:
                    break
                try:
                    await asyncio.sleep(_WAIT_STEP_MS / 1000)
                except asyncio.CancelledError:
                    if me.sid and me.released:  # handed a slot, then evicted before it woke: the
                        got = True  # shell tells its peer why (it was closed without a word)
                        return me
                    raise
        finally:
            if me in w:
                w.remove(me)
            elif me.sid and not got:  # handed a slot, then cancelled or gone: it frees again
                slots.release(me)
    else:
        gone = conn.gone(implicit)  # (one that waited in the listen backlog may have left there)
    if gone:  # it evicts no one
        log.info("%s %s gone while waiting for a slot", slots.proto, ip)
        return None
    return admit(slots, ip, task, None if me is None else me.born)
