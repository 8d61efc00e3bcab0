"""A message file named in another spelling than the store's (both runtimes).

Every reader derives a message's path from its record: the seq's bucket and the name
storecore._msg_name spells (8 lower-case hex digits, decimals without leading zeros). A file
spelt otherwise (upper-case hex, a leading zero: a hand copy, a restore tool, a filesystem that
ignores case) was parsed, indexed and listed under that spelling's values, so RETR looked for a
file that does not exist: listed, never readable. Now only the store's spelling is a message to
the first load and to merge(); another spelling makes the recovery rename the file to its
path (one rename, logged; its UID kept; never over a file: a file of that name there is the
same message, so this copy goes to damaged/). Store.check's deep read sets an unreadable file
aside from where it is, not from its seq's path. A name with other characters than ASCII digits
(and hex letters in the epoch) is no message name, in any spelling, on either runtime.
test_store_misplaced.py's helpers are reused.
"""

import os

from dualtest import skip
from flashdev import IS_MICROPYTHON
from pocketpost import compat
from pocketpost import store as store_mod
from pocketpost.store import Store
from test_store_misplaced import _bodies, _cut_every_rename, _listing, _name, _once, _power_cut_every_op, _put, _start
from test_store_misplaced import _deliver, _repaired_by_check, _with


def _moved(root, k, old, new):
    """The file `old` in b<k> is now `new` there (its spelling was not the store's)."""
    assert compat.exists(root + "/x/b%d/%s" % (k, new)), new
    assert old not in os.listdir(root + "/x/b%d" % k), old


def test_an_indexed_file_with_a_leading_zero_keeps_its_uid():
    # Seq 2's own file (its record in the index) spelt "...02...": listed, unreadable.
    def body(root, st, uids, lines):
        name = _name(uids[1], 501)
        odd = name.replace(".2.", ".02.")
        os.rename(root + "/x/b0/" + name, root + "/x/b0/" + odd)
        st = _start(root)
        _once(st, _bodies(), uids)
        _moved(root, 0, odd, name)
        assert len([ln for ln in lines if odd in ln and "moved to" in ln]) == 1, lines

    _with(body)


def test_upper_case_hex_above_the_index_is_listed_and_readable():
    # A free seq above the index, its epoch in capitals: merge() indexed it, RETR failed.
    def body(root, st, uids, lines):
        _put(root, 0, "ABCDEF01.5.700.p", b"in capitals\r\n")
        st = _start(root)
        got, order = _listing(st)
        assert order[-1] == "abcdef01.5", order  # its UID: the store's spelling of its name
        _once(st, _bodies(b"in capitals\r\n"), uids, b"in capitals\r\n")
        _moved(root, 0, "ABCDEF01.5.700.p", "abcdef01.5.700.p")

    _with(body)


def test_in_another_bucket_and_spelling_one_rename_puts_it_home():
    # Seq 3's file in b1 with its arrival spelt "0502": one rename to b0 under its name.
    def body(root, st, uids, lines):
        name = _name(uids[2], 502)
        odd = name.replace(".502.", ".0502.")
        os.mkdir(root + "/x/b1")
        os.rename(root + "/x/b0/" + name, root + "/x/b1/" + odd)
        st = _start(root)
        _once(st, _bodies(), uids)
        assert compat.exists(root + "/x/b0/" + name) and os.listdir(root + "/x/b1") == []
        assert len([ln for ln in lines if odd in ln]) == 1, lines

    _with(body)


def test_a_copy_in_another_spelling_is_set_aside_not_listed_twice():
    # Seq 2's file and a copy spelt with leading zeros next to it: the copy goes to damaged/
    # under the store's spelling (never over the file, never removed), listed once.
    def body(root, st, uids, lines):
        name = _name(uids[1], 501)
        odd = name.replace(".2.", ".002.")
        _put(root, 0, odd, b"message 1\r\n")
        st = _start(root)
        _once(st, _bodies(), uids)
        assert compat.exists(root + "/x/b0/" + name) and not compat.exists(root + "/x/b0/" + odd)
        assert os.listdir(root + "/x/damaged") == [name]

    _with(body)


def test_check_reports_it_and_repairs_it():
    # A file that is no message name in any spelling stays where it is, and is no problem.
    def body(root, st, uids, lines):
        name = _name(uids[1], 501)
        odd = name.replace(".2.", ".02.")
        os.rename(root + "/x/b0/" + name, root + "/x/b0/" + odd)
        _put(root, 0, "notes.txt", b"not a message\r\n")
        _repaired_by_check(root, root + "/x/b0/" + odd)
        _once(Store(root), _bodies(), uids)
        _moved(root, 0, odd, name)
        assert compat.exists(root + "/x/b0/notes.txt")

    _with(body)


def _misnamed(root, uids):
    """Three at once: seq 2's own file spelt "02", seq 3's in b1 spelt "0502", a free seq (5)
    in capitals. Returns the bodies to be listed once each."""
    a = _name(uids[1], 501)
    b = _name(uids[2], 502)
    os.rename(root + "/x/b0/" + a, root + "/x/b0/" + a.replace(".2.", ".02."))
    os.mkdir(root + "/x/b1")
    os.rename(root + "/x/b0/" + b, root + "/x/b1/" + b.replace(".502.", ".0502."))
    _put(root, 0, "ABCDEF01.5.700.p", b"in capitals\r\n")
    return _bodies(b"in capitals\r\n")


def test_a_cut_rename_is_finished_by_the_next_recovery():
    _cut_every_rename(_misnamed, 3)  # at least the three renames cut


def test_power_cut_at_every_flash_op_of_the_renames():
    _power_cut_every_op(_misnamed)


def test_deep_check_sets_an_unreadable_file_aside_from_where_it_is():
    # A file that cannot be read to the size its listing gives (a damaged flash block): the
    # deep check moved it from its seq's path, which was not where it was: it stayed, listed.
    for k, spelling in ((1, "%s.5.700.p"), (0, "%s.05.700.p")):

        def body(root, st, uids, lines, k=k, spelling=spelling):
            odd = spelling % uids[0].split(".")[0]
            _put(root, k, odd, b"unreadable\r\n")
            real = compat.listdir_stat

            def lying(path):  # the listing's size is not what a read gets
                return [(n, d, s + 1 if n == odd else s) for n, d, s in real(path)]

            store_mod.reboot()
            compat.listdir_stat = lying
            try:
                rep = Store(root).check(repair=True, deep=True)
            finally:
                compat.listdir_stat = real
            assert rep["mailboxes"]["x"]["unreadable"] == 1, rep
            assert os.listdir(root + "/x/damaged") == [odd] and odd not in os.listdir(root + "/x/b%d" % k)
            store_mod.reboot()
            _once(Store(root), _bodies(), uids)

        _with(body)


def test_a_filesystem_that_ignores_case_renames_it_not_sets_it_aside():
    # FAT (VfsFat) finds "abcdef01..." for "ABCDEF01...": the same file, not a copy. Passes
    # before the fix too (FAT opened it by the other spelling); fails if the rename takes that
    # file for a copy of itself (it would go to damaged/, no longer listed).
    if not IS_MICROPYTHON:
        skip("MicroPython only: a FAT image (vfs.VfsFat)")
    import vfs

    class Ram:
        def __init__(self, n):
            self.d = bytearray(n * 512)

        def readblocks(self, b, buf, off=0):
            s = b * 512 + off
            buf[:] = self.d[s : s + len(buf)]

        def writeblocks(self, b, buf, off=0):
            s = b * 512 + off
            self.d[s : s + len(buf)] = buf

        def ioctl(self, op, arg):
            return len(self.d) // 512 if op == 4 else 512 if op == 5 else 0

    dev = Ram(512)
    vfs.VfsFat.mkfs(dev)
    at = "/fat_misnamed"
    vfs.mount(vfs.VfsFat(dev), at)
    try:
        root = at + "/mail"
        store_mod.reboot()
        st = Store(root, reserve=0)
        uids = [_deliver(st, b"message %d\r\n" % i, 500 + i) for i in range(3)]
        st.lock("x").release()
        _put(root, 0, "ABCDEF01.5.700.p", b"in capitals\r\n")
        st = _start(root)
        got, order = _listing(st)
        assert order[-1] == "abcdef01.5" and got[order[-1]] == b"in capitals\r\n", (order, got)
        assert "abcdef01.5.700.p" in os.listdir(root + "/x/b0") and not compat.isdir(root + "/x/damaged")
    finally:
        store_mod.reboot()
        vfs.umount(at)



# Names int() reads on one runtime only, or that make it raise: on CPython int() and isdigit()
# take other digits ("²", Arabic-Indic "٥") and int() takes "_" between digits, signs and spaces;
# MicroPython's take fewer ("1_0" and "+5" on both).
_NOT_MESSAGES = ("%s.5.700.d\u00b2", "%s.1_0.700.p", "%s.\u0665.700.p", "%s.+5.700.p", "%s.6.70_0.p")


def test_a_name_with_other_digits_is_no_message_on_either_runtime():
    # "...d²" made int() raise on CPython (isdigit() let it through): every lock of the mailbox
    # failed there; "1_0", "+5" were renamed to message names ("...10...", "...5...") by the
    # recovery. Now only ASCII 0-9 (a-f, A-F in the epoch) make a message name: each file stays
    # as it is, no message and no problem, on both runtimes; the mailbox locks.
    def body(root, st, uids, lines):
        epoch = uids[0].split(".")[0]
        odd = [n % epoch for n in _NOT_MESSAGES]
        for k, n in enumerate(odd):
            _put(root, k % 2, n, b"not a message\r\n")
        st = _start(root)
        _once(st, _bodies(), uids)
        for k, n in enumerate(odd):
            assert n in os.listdir(root + "/x/b%d" % (k % 2)), n
        assert st.check(deep=True)["problems"] == 0
        assert not [ln for ln in lines if "not at its path" in ln or "rewritten" in ln], lines

    _with(body)


def test_a_restore_uid_with_other_digits_is_refused():
    # begin(uid=...): "²" passed isdigit() on CPython, then int() raised ValueError.
    def body(root, st, uids, lines):
        for uid in ("0000abcd.\u00b2", "0000abcd.\u0665", "0000abcd.1_0", "0000abcd.+5", "0000abcd."):
            try:
                st.begin("x", 1, uid=uid)
            except store_mod.StoreError as e:
                assert "bad uid" in str(e), e
            else:
                raise AssertionError(uid)

    _with(body)
