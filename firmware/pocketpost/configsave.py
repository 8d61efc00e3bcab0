"""config.json written back (serverconf.save: the admin helpers, ppadmin, a login's rehash):
atomically, through a temp file renamed over the old one, and readable, one key per line.

Its own module, loaded for a save only: the writer's code in serverconf.py, which the server
loads at every start and drops, cost the server with two sessions ~6 KiB of heap (bench_heap b
113-114 -> 119-120 KiB on the 64-bit host; here 112-113; not traced further: the larger module
loaded and dropped at the start leaves the heap laid out differently for the sessions)."""

import json

from pocketpost.compat import IS_MICROPYTHON, ConfigError, const, rename, sync_dir, sync_file

# _write's nesting bound: a config nests 4 levels (accounts, an account, its timeouts); the
# writer recurses once per level.
_MAX_DEPTH = const(16)


def save(path, cfg):
    """Write atomically: a temp file next to it, flushed, then renamed over the old one (and the
    folder synced on a host: fetchrename's steps rely on the order of their writes). Readable
    (_write): one key per line, indented, as boards/*/config.json are written."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        _write(f, cfg, "\n")
        f.write("\n")
        sync_file(f)
    rename(tmp, path)  # atomic on POSIX and littlefs, also over an existing file
    i = path.rfind("/")
    sync_dir(path[:i] if i > 0 else "/" if i == 0 else ".")  # a host's rename is durable once its folder is


def _write(f, v, nl):
    """v as JSON into file f, a piece at a time (MicroPython's json has no indent, and the whole
    text in one string would be heap the size of the file): an object one key per line and a list
    of objects or lists one item per line, each indented two more spaces than `nl` ("\n" and the
    current indent) says; a list of plain values, and an empty object, on one line. Keys in the
    order the dict holds them: on CPython as loaded (the file's order); MicroPython's dicts keep
    none, so there sorted (the same file for the same config, whatever the table's history).
    Depth is the config's own (a JSON file's nesting, bounded by _MAX_DEPTH)."""
    if len(nl) > _MAX_DEPTH * 2 + 1:
        raise ConfigError("config: nested deeper than %d levels" % _MAX_DEPTH)
    if isinstance(v, dict) and v:
        keys = sorted(v) if IS_MICROPYTHON else v
        end = "{"
        for k in keys:
            f.write(end + nl + "  " + json.dumps(k) + ": ")
            _write(f, v[k], nl + "  ")
            end = ","
        f.write(nl + "}")
    elif isinstance(v, (list, tuple)) and [x for x in v if isinstance(x, (dict, list, tuple))]:
        end = "["
        for x in v:
            f.write(end + nl + "  ")
            _write(f, x, nl + "  ")
            end = ","
        f.write(nl + "]")
    else:
        f.write(json.dumps(v))
