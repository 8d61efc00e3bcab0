"""Damage suite for the store (issue 11), under the real micropython binary on littlefs (VfsLfs2).

Run by pytest (test_damage below runs this same file under micropython), or directly:
    MICROPYPATH=firmware:host_tests/dual .venv/bin/micropython -X heapsize=16M host_tests/test_store_damage.py
A mailbox of messages (small and multi-block, one deletion behind it, so the index has been
rewritten and appended to) is damaged on a simulated flash (host_tests/dual/flashdev.py), then
the image is remounted (the reboot) and opened again. Damage, written through the filesystem as
a bad block would leave the bytes:
  - every record of the index (the header too): one flipped bit, all zeros, all 0xFF;
    the index truncated (at every record boundary and mid-record) and missing;
  - a pending intent log (a deletion commit cut after its commit point): every record (header
    too) flipped / zeros / 0xFF, truncated, missing;
  - every message file: truncated (to half, to nothing), missing, one flipped bit, all zeros,
    all 0xFF (the last three keep the size: the store cannot tell, see docs/ARCHITECTURE.md).
After each: check(repair=False) reports the damage (changing nothing); lock() works; every
message not damaged is present exactly once, byte-exact, under its UID; a damaged one is
absent or served at the size its file has; the mailbox takes new mail and deletions; a second
boot finds nothing left to repair. Then power cuts during the repair itself (every op of the
repair of two damaged images, three modes; POCKETPOST_FULL=1: of every index-record scenario).
"""

import os
import sys

from feed import reader
from flashdev import mine  # this process's share of each sweep (helpers.run_sweep)

IS_MP = sys.implementation.name == "micropython"
MOUNT = "/dmg"
ROOT = MOUNT + "/mail"
BOX = "box"
N_MSG = 14


def _msg(i):
    size = 5000 if i % 5 == 2 else 60 + 17 * i  # some multi-block, most small
    out = b"Subject: %d\r\n\r\n" % i
    line = b"line of message %d 0123456789 abcdefghijklmnopqrstuvwxyz\r\n" % i
    while len(out) < size:
        out += line
    return out


def _poke(path, off, data):
    f = open(path, "r+b")
    f.seek(off)
    f.write(data)
    f.close()


def _flip(path, off, bit=0x10):
    f = open(path, "rb")
    f.seek(off)
    b = f.read(1)[0]
    f.close()
    _poke(path, off, bytes([b ^ bit]))


def _truncate(path, n):
    f = open(path, "rb")
    data = f.read(n)
    f.close()
    f = open(path, "wb")
    f.write(data)
    f.close()


def _snapshot(path):
    """Every file under path with its bytes (the mailbox is small): what a read-only check must
    leave as it found it."""
    out = {}
    for e in os.ilistdir(path):
        p = path + "/" + e[0]
        if e[1] == 0x4000:
            out.update(_snapshot(p))
        else:
            try:
                f = open(p, "rb")
                out[p] = f.read()
                f.close()
            except OSError as x:
                out[p] = repr(x)
    return out


def _mount(image, dev_kw=None):
    from flashdev import FlashDev, mount_fresh

    dev = FlashDev(data=image)
    if dev_kw:
        for k in dev_kw:
            setattr(dev, k, dev_kw[k])
    mount_fresh(dev=dev, at=MOUNT)
    return dev


def _unmount(dev):
    import gc

    from flashdev import umount

    dev.detached = dev.dead  # after a cut, abandoned files must not write
    try:
        umount(MOUNT)
    except Exception:  # noqa: BLE001 - a dead device refuses the unmount's writes
        pass
    gc.collect()
    return dev.image()


def make_base(with_intent=False):
    """The undamaged image and what it holds: (image, {uid: bytes}, [uid in index order], files,
    intent uids). files: uid -> path of its message file."""
    from flashdev import FlashDev
    from pocketpost import store as store_mod
    from pocketpost import storesession
    from pocketpost.store import Store
    import vfs

    dev = FlashDev(blocks=64)
    vfs.VfsLfs2.mkfs(dev)
    dev = _mount(dev.image())
    store_mod.reboot()
    st = Store(ROOT)
    uids = []
    for i in range(N_MSG - 2):
        uids.append(st.deliver_stream(BOX, reader(_msg(i)), 1000 + i))
    mb = st.lock(BOX)
    mb.commit([1])  # the index is rewritten once
    del uids[1]
    for i in range(N_MSG - 2, N_MSG + 1):
        uids.append(st.deliver_stream(BOX, reader(_msg(i)), 1000 + i))
    mb = st.lock(BOX)  # appended to
    model = {}
    files = {}
    for i in range(mb.count):
        u = mb.uid(i)
        f = mb.open(i)
        model[u] = f.read()
        f.close()
        files[u] = mb._box.msg_path(*mb._rec(i)[:4])
    assert [mb.uid(i) for i in range(mb.count)] == uids
    gone = []
    if with_intent:  # a deletion commit cut right after its commit point
        pick = (0, 4, mb.count - 1)
        gone = [uids[p] for p in pick]
        storesession.write_intent(mb._box, [mb._rec(p) for p in pick])
    mb.release()
    store_mod.reboot()
    return _unmount(dev), model, uids, files, gone


def verify(label, model, uids, damaged=(), maybe_gone=(), gone=()):
    """Reboot onto the mounted image: check, lock, compare; then new mail and a deletion."""
    from pocketpost import store as store_mod
    from pocketpost.store import Store

    store_mod.reboot()
    st = Store(ROOT)
    mb = st.lock(BOX)
    got = {}
    order = []
    total = 0
    for i in range(mb.count):
        u = mb.uid(i)
        assert u not in got, (label, "duplicate", u)
        # After the reboot's recovery nothing is refused: LIST's size is the file's, always.
        f = mb.open(i)
        data = f.read()
        f.close()
        assert len(data) == mb.size(i), (label, "LIST size is not the file's", u)
        got[u] = data
        order.append(u)
        total += mb.size(i)
    assert total == mb.total_size, (label, "total")
    for u in uids:
        if u in damaged or u in maybe_gone:
            continue
        if u in gone:
            assert u not in got, (label, "deleted message back", u)
            continue
        assert u in got, (label, "lost", u)
        assert got[u] == model[u], (label, "changed", u)
    for u in got:
        assert u in model, (label, "unknown message", u)
    assert [u for u in uids if u in got] == order, (label, "order")
    mb.release()
    new = st.deliver_stream(BOX, reader(b"after the damage\r\n"))
    assert new not in model, (label, "uid reuse")
    mb = st.lock(BOX)
    assert mb.uid(mb.count - 1) == new
    first = mb.uid(0)
    mb.commit([0])
    store_mod.reboot()
    st = Store(ROOT)
    rep = st.check(repair=False, deep=True)
    assert rep["problems"] == 0, (label, "left after repair", rep)
    mb = st.lock(BOX)
    left = [mb.uid(i) for i in range(mb.count)]
    assert first not in left and left[-1] == new and len(left) == len(order), (label, "after", left)
    mb.release()


def scenario(base, label, damage, expect_report=True, damaged=(), maybe_gone=(), gone=(), aside=None):
    from pocketpost import store as store_mod
    from pocketpost.store import Store

    image, model, uids, files, _ = base
    dev = _mount(image)
    try:
        damage(files)
    finally:
        image2 = _unmount(dev)
    dev = _mount(image2)  # the reboot
    try:
        store_mod.reboot()
        st = Store(ROOT)
        before = _snapshot(ROOT + "/" + BOX)
        rep = st.check(repair=False, deep=True)
        assert _snapshot(ROOT + "/" + BOX) == before, (label, "check(repair=False) changed the flash")
        if expect_report:
            assert rep["problems"] > 0, (label, "damage not reported", rep)
        verify(label, model, uids, damaged, maybe_gone, gone)
        if aside is not None:  # the damaged file is kept, under its name (its UID), in damaged/
            assert os.listdir(ROOT + "/" + BOX + "/damaged") == [aside.rsplit("/", 1)[1]], (label, "not set aside")
    finally:
        store_mod.reboot()
        _unmount(dev)
    return image2


PATTERNS = (("flip", None), ("zeros", b"\x00" * 24), ("ones", b"\xff" * 24))


def record_damages(path, nrec):
    """(label, damage function) for every record of an index-like file of nrec records."""
    out = []
    for r in range(nrec):
        for name, data in PATTERNS:
            if data is None:
                def fn(files, r=r):
                    _flip(path, r * 24 + (r * 7) % 24, 1 << (r % 8))
            else:
                def fn(files, r=r, data=data):
                    _poke(path, r * 24, data)
            out.append(("%s record %d %s" % (path.rsplit("/", 1)[1], r, name), fn))
    cuts = sorted(set([0, 10, 24, 24 + 13] + [24 * k for k in range(2, nrec)] + [24 * (nrec - 1) + 5]))
    for n in cuts:
        out.append(("%s truncated to %d" % (path.rsplit("/", 1)[1], n), lambda files, n=n: _truncate(path, n)))
    out.append(("%s missing" % path.rsplit("/", 1)[1], lambda files: os.remove(path)))
    return out


def _reported(label, floor_at):
    """Is this damage visible as such? An index cut cleanly at a record boundary past the
    header's floor looks exactly like deliveries not indexed yet (they are indexed as such)."""
    if " truncated to " not in label:
        return True
    n = int(label.rsplit(" ", 1)[1])
    return n % 24 or n < floor_at


def index_scenarios(base):
    index = ROOT + "/" + BOX + "/index"
    nrec = len(base[2]) + 1
    runs = 0
    floor_at = 24 * (1 + N_MSG - 3)  # records below the floor the deletion set (see make_base)
    for label, fn in record_damages(index, nrec):
        if mine():
            scenario(base, label, fn, _reported(label, floor_at))
            runs += 1
    return runs


def intent_scenarios(base):
    intent = ROOT + "/" + BOX + "/commit"
    gone = base[4]
    runs = 0
    # Undamaged: the commit is rolled forward, and check() reports it pending first.
    if mine():
        scenario(base, "intent intact", lambda files: None, True, gone=gone)
        runs += 1
    for label, fn in record_damages(intent, len(gone) + 1):
        # A log that is gone leaves no trace to report: the deletion simply did not happen.
        if mine():
            scenario(base, label, fn, not label.endswith("missing"), maybe_gone=gone)
            runs += 1
    return runs


def message_scenarios(base):
    _, model, uids, files, _ = base
    runs = 0
    for u in uids:
        path = files[u]
        n = len(model[u])
        cases = [
            ("truncated to half", lambda files, p=path, n=n: _truncate(p, n // 2), True, path),
            ("truncated to nothing", lambda files, p=path: _truncate(p, 0), True, path),
            ("missing", lambda files, p=path: os.remove(p), True, None),
            # Same size, other bytes: no check covers a message's content (reported as a limit).
            ("one bit flipped", lambda files, p=path, n=n: _flip(p, n // 3), False, None),
            ("all zeros", lambda files, p=path, n=n: _poke(p, 0, b"\x00" * n), False, None),
            ("all 0xFF", lambda files, p=path, n=n: _poke(p, 0, b"\xff" * n), False, None),
        ]
        for name, fn, reported, aside in cases:
            if mine():
                scenario(base, "message %s %s" % (u, name), fn, reported, damaged=(u,), aside=aside)
                runs += 1
    return runs


def flash_scenarios(base):
    """Damage written to the flash itself, under littlefs: every block in use, all zeros, all
    0xFF, one flipped bit. littlefs may then refuse to mount (its metadata is gone: not the
    store's to fix) or mount an older state of a directory (a file gone, shorter, or an older
    index); a message's data block just reads wrong. Whatever mounts: the repair (deep check)
    and then lock, reading every message (LIST size = file size), delivery and deletion work,
    across a reboot. Returns (runs, unmountable, most messages lost or changed by one block)."""
    from pocketpost import store as store_mod
    from pocketpost.store import Store

    from pocketpost.store import StoreError, StoreFull

    image, model, uids, files, _ = base
    bs = 4096
    runs = unmountable = worst = 0
    refused = [0]
    overcount = [0]
    for b in range(len(image) // bs):
        if image[b * bs : (b + 1) * bs] == b"\xff" * bs:
            continue  # erased: not in use
        for name in ("zeros", "ones", "flip"):
            img = bytearray(image)
            if name == "zeros":
                img[b * bs : (b + 1) * bs] = bytes(bs)
            elif name == "ones":
                img[b * bs : (b + 1) * bs] = b"\xff" * bs
            else:
                img[b * bs + 100] ^= 0x04
            label = "flash block %d %s" % (b, name)
            runs += 1
            try:
                dev = _mount(bytes(img))
            except OSError:
                unmountable += 1
                continue
            try:
                store_mod.reboot()
                st = Store(ROOT)
                st.check(repair=True, deep=True)
                mb = st.lock(BOX)
                got = {}
                for i in range(mb.count):
                    f = mb.open(i)
                    data = f.read()
                    f.close()
                    assert len(data) == mb.size(i), (label, "LIST size is not the file's")
                    got[mb.uid(i)] = data
                mb.release()
                hit = len([u for u in uids if got.get(u) != model[u]])
                worst = max(worst, hit)
                if hit > 1:
                    print("  %s: %d messages lost or changed (littlefs mounted an older state)" % (label, hit))
                try:
                    new = st.deliver_stream(BOX, reader(b"after the damage\r\n"))
                except StoreError:
                    # Seen once (a flipped bit in a directory's metadata block): littlefs said
                    # "no space" to the first mkdir; after a reboot the store must take mail.
                    refused[0] += 1
                    image2 = _unmount(dev)
                    dev = _mount(image2)
                    store_mod.reboot()
                    st = Store(ROOT)
                    try:
                        new = st.deliver_stream(BOX, reader(b"after the damage\r\n"))
                    except StoreFull:
                        # littlefs counts more blocks in use than the flash has (its count is
                        # best effort, never below the truth): compat.free_bytes then reads
                        # "none free" rather than give the deletion reserve away on a guess.
                        # Counted and shown; the mail already there was checked above.
                        overcount[0] += 1
                        print("  %s: littlefs reports more blocks in use than the flash has: new mail "
                              "refused (flash full)" % label)
                        continue
                mb = st.lock(BOX)
                assert mb.uid(mb.count - 1) == new, (label, "new mail")
                mb.commit([mb.count - 1])
                new = st.deliver_stream(BOX, reader(b"again\r\n"))
                store_mod.reboot()
                mb = Store(ROOT).lock(BOX)
                assert mb.uid(mb.count - 1) == new and mb.count == len(got) + 1, (label, "after reboot")
                mb.release()
            finally:
                store_mod.reboot()
                _unmount(dev)
    assert overcount[0] <= 2, ("littlefs over-counted its blocks in use after too many damaged blocks", overcount[0])
    return runs, unmountable, worst, refused[0]


def repair_cuts(base, label, damage, full, maybe_gone=()):
    """Damage, reboot, then cut the power at every op of the repair (the first lock), in three
    modes; after each cut, reboot again and check as verify() does."""
    from flashdev import PowerCut
    from pocketpost import store as store_mod
    from pocketpost.store import Store

    image, model, uids, files, _ = base
    dev = _mount(image)
    damage(files)
    damaged_image = _unmount(dev)
    # How many program/erase ops does the repair take?
    dev = _mount(damaged_image)
    store_mod.reboot()
    a = dev.ops
    Store(ROOT).lock(BOX).release()
    total = dev.ops - a
    _unmount(dev)
    store_mod.reboot()
    runs = 0
    points = range(1, total + 1) if full or total <= 60 else range(1, total + 1, max(1, total // 60))
    for mode in ("raise", "drop", "torn"):
        for n in points:
            if not mine():
                continue
            dev = _mount(damaged_image)
            dev.cut_at = dev.ops + n
            dev.mode = mode
            try:
                store_mod.reboot()
                Store(ROOT).lock(BOX).release()
            except Exception as e:  # noqa: BLE001 - only allowed once the power is gone
                if not dev.dead:
                    raise
                if not isinstance(e, (PowerCut, OSError)) and type(e).__name__ not in ("StoreError", "StoreFull"):
                    raise
            image2 = _unmount(dev)
            dev = _mount(image2)
            try:
                verify("%s, cut at repair op %d (%s)" % (label, n, mode), model, uids, damaged=[u for u in uids if
                       files[u] in _damaged_paths[0]], maybe_gone=maybe_gone)
            finally:
                store_mod.reboot()
                _unmount(dev)
            runs += 1
    print("  repair of %s: %d ops, cut at %d points x 3 modes ok (%d here)" % (label, total, len(points), runs))
    return runs


_damaged_paths = [()]


def delivery_cuts(base):
    """A cut at every op of a delivery (write, flush, rename into the bucket), three modes:
    after the reboot, the first lock leaves no temp file (not one at the boot after), and the
    mailbox holds the old messages plus at most that one, whole."""
    from flashdev import PowerCut
    from pocketpost import store as store_mod
    from storeread import temp_files
    from pocketpost.store import Store

    image, model, uids, files, _ = base
    data = _msg(99)
    dev = _mount(image)
    store_mod.reboot()
    st = Store(ROOT)
    st.lock(BOX).release()
    a = dev.ops
    st.deliver_stream(BOX, reader(data))
    total = dev.ops - a
    store_mod.reboot()
    _unmount(dev)
    runs = 0
    for mode in ("raise", "drop", "torn"):
        for n in range(1, total + 1):
            if not mine():
                continue
            dev = _mount(image)
            store_mod.reboot()
            st = Store(ROOT)
            st.lock(BOX).release()
            dev.cut_at = dev.ops + n
            dev.mode = mode
            try:
                st.deliver_stream(BOX, reader(data))
            except Exception as e:  # noqa: BLE001 - only allowed once the power is gone
                if not dev.dead or not (isinstance(e, (PowerCut, OSError)) or "Store" in type(e).__name__):
                    raise
            image2 = _unmount(dev)
            dev = _mount(image2)
            try:
                store_mod.reboot()
                st = Store(ROOT)
                mb = st.lock(BOX)
                assert temp_files(ROOT + "/" + BOX) == [], (mode, n, "temp file left at this boot")
                got = [mb.uid(i) for i in range(mb.count)]
                assert got[: len(uids)] == uids and len(got) <= len(uids) + 1, (mode, n, got)
                if len(got) > len(uids):
                    f = mb.open(len(uids))
                    assert f.read() == data, (mode, n, "partial delivery")
                    f.close()
                mb.release()
            finally:
                store_mod.reboot()
                _unmount(dev)
            runs += 1
    print("  delivery: %d ops, cut at every one x 3 modes (%d here): no temp file after the first lock of the reboot"
          % (total, runs))
    return runs


def main():
    import time

    from pocketpost import log

    full = os.getenv("POCKETPOST_FULL") == "1"
    lines = []
    log.set_sink(lines.append)  # hundreds of expected warnings; counted, not printed
    t0 = time.ticks_ms()
    base = make_base()
    n = index_scenarios(base)
    print("index damage: %d scenarios ok" % n)
    total = n
    n = message_scenarios(base)
    print("message file damage: %d scenarios ok" % n)
    total += n
    if mine():  # one share: its bound on littlefs over-counting holds over every block together
        n, bad_mount, worst, refused = flash_scenarios(base)
        print("flash block damage: %d scenarios ok (%d left littlefs unmountable; at most %d messages lost or changed "
              "by one damaged block; %d refused the first delivery until a reboot)" % (n, bad_mount, worst, refused))
        total += n
    ibase = make_base(with_intent=True)
    n = intent_scenarios(ibase)
    print("intent log damage: %d scenarios ok" % n)
    total += n
    index = ROOT + "/" + BOX + "/index"
    uids, files = base[2], base[3]
    victim = files[uids[2]]  # a multi-block message
    cuts = [("index record 3 zeroed + a truncated message",
             lambda f: (_poke(index, 72, b"\x00" * 24), _truncate(victim, 100)), (victim,)),
            ("index missing", lambda f: os.remove(index), ()),
            ("a missing message + index record 9 flipped", lambda f: (os.remove(files[uids[5]]), _flip(index, 24 * 9 + 4)),
             (files[uids[5]],))]
    if full:
        for label, fn in record_damages(index, len(uids) + 1):
            cuts.append((label, fn, ()))
    for label, fn, dpaths in cuts:
        _damaged_paths[0] = dpaths
        total += repair_cuts(base, label, fn, full)
    # The roll-forward of a pending deletion commit over a damaged index, cut at every op.
    _damaged_paths[0] = ()
    total += repair_cuts(ibase, "pending deletion + index record 2 zeroed", lambda f: _poke(index, 48, b"\x00" * 24),
                         full, maybe_gone=ibase[4])
    total += delivery_cuts(base)
    warned = len([ln for ln in lines if "WARN" in ln])
    log.set_sink(None)
    print("DAMAGE OK: %d runs (%s), %d warning lines logged, in %d ms"
          % (total, "full" if full else "default slice", warned, time.ticks_diff(time.ticks_ms(), t0)))


if IS_MP and __name__ == "__main__":
    from flashdev import shard_report

    main()
    shard_report()


def test_damage():
    from helpers import run_sweep

    run_sweep("host_tests/test_store_damage.py", "DAMAGE OK", timeout=3600)


def test_ppadmin_check_reports_and_repairs_an_image(tmp_path):
    # The host tool on a littlefs image file: the same store code the board runs, under micropython.
    import subprocess

    from helpers import ROOT as REPO

    sys.path.insert(0, os.path.join(REPO, "tools"))
    import ppadmin

    image = str(tmp_path / "flash.img")
    with open(image, "wb") as f:
        f.write(b"\xff" * (256 * 4096))
    setup = (
        "import json\n"
        "f = open('/flash/config.json', 'w'); f.write(json.dumps({'store': {'root': '/flash/mail', 'quota': 0}})); f.close()\n"
        "from pocketpost.store import Store\n"
        "st = Store('/flash/mail')\n"
        "for i in range(8):\n"
        "    d = st.begin('alice'); d.write(b'message %d\\r\\n' % i); print('uid', d.commit())\n"
        "mb = st.lock('alice'); p = mb._box.msg_path(*mb._rec(5)[:4]); mb.release()\n"
        "f = open('/flash/mail/alice/index', 'r+b'); f.seek(24 * 3 + 9); f.write(b'\\x00'); f.close()\n"
        "f = open(p, 'wb'); f.write(b'mess'); f.close()\n"
    )
    out = ppadmin.on_image(image, setup, mkfs=True)
    uids = [ln.split()[1] for ln in out.splitlines() if ln.startswith("uid ")]
    assert len(uids) == 8
    tool = [sys.executable, os.path.join(REPO, "tools", "ppadmin.py"), "check", image]
    r = subprocess.run(tool, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "mailbox alice: 7 messages, index damaged, 1 bad records, 1 damaged, 1 recovered" in r.stdout, r.stdout
    r = subprocess.run(tool + ["--repair"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "mailbox alice: 7 messages, index rebuilt, 1 bad records, 1 damaged, 1 recovered" in r.stdout, r.stdout
    r = subprocess.run(tool, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "problems: 0" in r.stdout, r.stdout
    listing = (
        "from pocketpost.store import Store\n"
        "import os\n"
        "mb = Store('/flash/mail').lock('alice')\n"
        "print(' '.join(mb.uid(i) for i in range(mb.count)))\n"
        "print(os.listdir('/flash/mail/alice/damaged'))\n"
    )
    out = ppadmin.on_image(image, listing).splitlines()
    assert out[0].split() == uids[:5] + uids[6:]
    assert uids[5] in out[1]


def test_poplib_against_a_damaged_mailbox(tmp_path):
    # A real client (poplib) against the real server under micropython. Before the server starts,
    # an index record is zeroed and one message file truncated: the session sees every other
    # message byte-exact under its UID, with LIST sizes that are the files'. During a session a
    # file is truncated behind LIST's back: its RETR gets -ERR [SYS/PERM], the others work, and
    # the next session no longer lists it.
    import poplib

    from serverharness import Pop3Server, msg

    msgs = [msg(i, 3 + 40 * (i % 3)) for i in range(6)]
    srv = Pop3Server(str(tmp_path), {"alice": msgs})
    uids = srv.uids["alice"]
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "firmware"))
    from pocketpost import store as store_mod
    from pocketpost.store import Store, _parse_msg_name

    store_mod.reboot()
    Store(srv.store_root, quota=0, reserve=0).lock("alice").release()  # indexed (deliveries are not)
    store_mod.reboot()
    box = os.path.join(srv.store_root, "alice")
    paths = {}
    for d in os.listdir(box):
        if d.startswith("b"):
            for fn in os.listdir(os.path.join(box, d)):
                m = _parse_msg_name(fn)
                paths["%08x.%d" % (m[0], m[1])] = os.path.join(box, d, fn)
    with open(os.path.join(box, "index"), "r+b") as f:
        f.seek(24 * 2)
        f.write(b"\x00" * 24)
    with open(paths[uids[3]], "r+b") as f:
        f.truncate(10)
    srv.start()
    try:
        p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
        try:
            p.user("alice")
            p.pass_("alice pass")
            keep = [0, 1, 2, 4, 5]
            assert p.stat() == (5, sum(len(msgs[k]) for k in keep))
            assert [ln.split()[1].decode() for ln in p.uidl()[1]] == [uids[k] for k in keep]
            assert [int(ln.split()[1]) for ln in p.list()[1]] == [len(msgs[k]) for k in keep]
            for n, k in enumerate(keep):
                assert b"\r\n".join(p.retr(n + 1)[1]) + b"\r\n" == msgs[k]
            with open(paths[uids[5]], "r+b") as f:  # damaged while the session runs
                f.truncate(7)
            try:
                p.retr(5)
                raise AssertionError("RETR of a file shorter than LIST said")
            except poplib.error_proto as e:
                assert b"[SYS/PERM]" in e.args[0], e
            assert b"\r\n".join(p.retr(1)[1]) + b"\r\n" == msgs[0]  # the session goes on
            p.dele(1)
            p.quit()
        finally:
            p.close()
        p = poplib.POP3("127.0.0.1", srv.port, timeout=10)
        try:
            p.user("alice")
            p.pass_("alice pass")
            assert [ln.split()[1].decode() for ln in p.uidl()[1]] == [uids[k] for k in (1, 2, 4)]
            p.quit()
        finally:
            p.close()
        log = srv.log()
        assert "damaged (size 10, index says" in log and "damaged (size 7, index says" in log, log[-3000:]
    finally:
        srv.stop()
    assert sorted(os.listdir(os.path.join(box, "damaged"))) == sorted(
        os.path.basename(paths[uids[k]]) for k in (3, 5))
