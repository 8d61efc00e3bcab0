"""Crash points for the client's crash-safety tests, installed by monkeypatching: nothing of this
ships in the firmware. Runs under CPython and MicroPython (clientdriver.py, crashfetch.py).

install(point) wraps the steps of a fetch and calls point(step) right after each one:
  "chunk"      a body chunk went to the store delivery (store.Delivery.write, from clientget._StoreSink)
  "pending"    the state was saved with a pending entry (uidstate.UidState.save)
  "committed"  the store delivery committed (store.Delivery.commit)
  "stored"     a message is recorded as stored (clientget.download returned one)
  "dele"       a DELE (or a pipelined batch of them) was answered (client.Pop3Client.dele,
               clientend.deles)
  "quit"       QUIT was answered (clientend.quit)
It returns a function that undoes the patches. Once point raised (a power cut), the UIDL
state's saves write nothing more: a finally block of the client, which runs in process, cannot
then save what a cut would have lost (the records of a batch, in the slot files only). fail_pending_saves() makes the "pending" save fail
as on a full flash. The cold modules patched (clientget, clientend) are
kept loaded while installed (compat.forget passes them over): on MicroPython one dropped and
loaded again would come back without the patch.
"""


def install(point):
    from pocketpost import client, clientend, clientget, compat, store, uidstate

    saved = []
    cut = []
    inner = point

    def point(step):  # noqa: F811 - the caller's, remembering a cut
        try:
            inner(step)
        except BaseException:
            cut.append(step)
            raise

    def patch(obj, name, new):
        saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, new)

    real_write = store.Delivery.write
    real_save = uidstate.UidState.save
    real_commit = store.Delivery.commit
    real_download = clientget.download
    real_dele = client.Pop3Client.dele
    real_deles = clientend.deles
    real_quit = clientend.quit
    real_forget = compat.forget

    def write(self, *args):
        r = real_write(self, *args)
        point("chunk")
        return r

    def save(self, *args):  # (batch: clientget's save of a pending entry into its slot file)
        if cut:
            return  # the power is off
        real_save(self, *args)
        if self.pending is not None:
            point("pending")

    def commit(self, *args):  # (merge: the fetch's commits pass False)
        r = real_commit(self, *args)
        point("committed")
        return r

    async def download(*args):
        r = await real_download(*args)
        if r[1] is not None:
            point("stored")
        return r

    async def dele(self, n, next=0):  # (next: the RETR sent in DELE's write, see client.fetch_account)
        r = await real_dele(self, n, next)
        point("dele")
        return r

    async def deles(c, ns):
        r = await real_deles(c, ns)
        point("dele")
        return r

    async def quit_(c):
        r = await real_quit(c)
        point("quit")
        return r

    def forget(names):
        real_forget([n for n in names if n not in ("clientget", "clientend")])

    patch(store.Delivery, "write", write)
    patch(uidstate.UidState, "save", save)
    patch(store.Delivery, "commit", commit)
    patch(compat, "forget", forget)
    patch(clientget, "download", download)
    patch(client.Pop3Client, "dele", dele)
    patch(clientend, "deles", deles)
    patch(clientend, "quit", quit_)

    def undo():
        for obj, name, old in reversed(saved):
            setattr(obj, name, old)

    return undo


def fail_pending_saves():
    """From now on UidState.save raises OSError(28) (the flash full) while a pending entry is set;
    returns a function that undoes it."""
    from pocketpost import uidstate

    real_save = uidstate.UidState.save

    def failing_save(self, *args):
        if self.pending is not None:
            raise OSError(28, "no space")
        return real_save(self, *args)

    uidstate.UidState.save = failing_save

    def undo():
        uidstate.UidState.save = real_save

    return undo


def counter(crash, exc):
    """point(step) raising exc(step) at the k-th time `step` is reached; crash = (step, k)."""
    seen = {}

    def point(step):
        seen[step] = seen.get(step, 0) + 1
        if step == crash[0] and seen[step] == crash[1]:
            raise exc(step)

    return point
