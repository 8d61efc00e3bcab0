"""The fetch drops the store's delivery code (store.py) after a batch of downloads when it loaded
it (client.fetch_account; the CLI's check: test_client_hostile's cold-module test). Loaded again
later (the next batch, or a server's delivery in the same process), its deliveries' temp names
stay unique in the process: the counter lives in storecore, which is never dropped.
Runs under CPython (pytest) and MicroPython (host_tests/dual/run.py)."""

import sys

from flashdev import fresh_root
from pocketpost import compat


def test_temp_names_stay_unique_across_a_reload_of_store_py():
    from pocketpost.storecore import Store

    root, cleanup = fresh_root()
    try:
        st = Store(root)
        st.create("inbox")
        d1 = st.begin("inbox")
        compat.forget(("store",))  # what the fetch does after its downloads (no-op on CPython)
        if sys.implementation.name == "micropython":
            assert "pocketpost.store" not in sys.modules
        d2 = st.begin("inbox")  # store.py loaded again on MicroPython: its module state is new
        try:
            # "<epoch>.<seq>.t<count>.<ticks & 0xFFFF>": the count goes on (a count starting again
            # would leave only the ticks' low bits to tell two deliveries in flight apart)
            n1 = int(d1.tmp.split("/")[-1].split(".")[2][1:])
            n2 = int(d2.tmp.split("/")[-1].split(".")[2][1:])
            assert n2 == n1 + 1, (d1.tmp, d2.tmp)
        finally:
            d1.abort()
            d2.abort()
    finally:
        cleanup()
