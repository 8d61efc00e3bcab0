#!/usr/bin/env python3
"""`make run`: build (or reuse) run/flash.img with a demo mailbox, then serve it under micropython.

    .venv/bin/python tools/run_host.py [--fresh] [--port 1100] [--pop3s-port 1995] [--dir run]
        [--smtp-port 2525] [--smtps-port 4465]

First run: a self-signed certificate (openssl, DER for MicroPython, PEM copies for CPython) in
run/tls/, a 2 MiB littlefs image run/flash.img holding /flash/config.json (boards/host/config.json
plus user "demo", password "demo"), /flash/tls/{cert,key}.der and mailbox "demo" with a few
messages (one with a base64 attachment). Later runs reuse the image (--fresh rebuilds it);
--port/--pop3s-port on a later run change the ports in the image's config (kept for later runs;
its users and mail stay); without them the image's own ports are used.
The banner lists the users in the image's own config (and the demo password only while the
demo user still has it), and gives clients DIR/tls/cert.pem, rewritten from the image's own
certificate when that changed (a `ppadmin restore` onto the image brings the archive's). A port already taken is refused in one line before anything starts.
A new image also gets the SMTP receiver for DEMO_DOMAIN (demo@ and postmaster@ land in "demo"):
port 25 style with STARTTLS on --smtp-port, submission over implicit TLS with AUTH on
--smtps-port (kept in the image like the POP3 ports).
The POP3 server and the SMTP receiver then run in the foreground: micropython tools/hostflash.py
run/flash.img -m hostserve (tools/hostserve.py), holding the image lock. Ctrl-C stops it with one line and exit status 0;
so does SIGTERM (`kill PID`, a service manager's stop), the line naming it ("server stopped (SIGTERM)"): a clean
stop is exit 0, which systemd and others count as success.
"""

import argparse
import base64
import errno
import json
import os
import signal
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import hostimage  # noqa: E402
import ppadmin  # noqa: E402

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"
IMAGE_SIZE = 2 * 1024 * 1024  # the vfs partition of a 4 MiB ESP32
BLOCK_SIZE = 4096  # tools/hostflash.py BLOCK_SIZE: the ESP32 flash erase sector
DEFAULT_PORT = 1100
DEFAULT_POP3S_PORT = 1995
DEMO_DOMAIN = "pocketpost.local"  # the SMTP receiver's domain in a new image
DEFAULT_SMTP_PORT = 2525
DEFAULT_SMTPS_PORT = 4465
EXIT_PORT_IN_USE = 3  # tools/hostserve.py exits with it too
STOP_WAIT_S = 10  # after Ctrl-C, how long the server may take to unmount the image and exit


def make_cert(tlsdir):
    der = os.path.join(tlsdir, "cert.der")
    if os.path.exists(der):
        return
    os.makedirs(tlsdir, exist_ok=True)
    pem_c = os.path.join(tlsdir, "cert.pem")
    pem_k = os.path.join(tlsdir, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", pem_k, "-out", pem_c, "-days", "3650", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-in", pem_c, "-outform", "DER", "-out", der], check=True)
    subprocess.run(["openssl", "pkey", "-in", pem_k, "-outform", "DER", "-out", os.path.join(tlsdir, "key.der")], check=True)


def demo_messages():
    attachment = bytes(range(256)) * 8  # 2 KiB of binary
    b64 = base64.encodebytes(attachment).decode().replace("\n", "\r\n")
    return [
        ("Date: Mon, 1 Jun 2026 09:00:00 +0000\r\nFrom: Ada <ada@example.org>\r\nTo: demo@pocketpost.local\r\n"
         "Subject: Welcome to pocketpost\r\nMessage-ID: <welcome@pocketpost.local>\r\n\r\n"
         "Hello! This message lives on a littlefs flash image.\r\n.A line starting with a dot.\r\n"),
        ("Date: Mon, 1 Jun 2026 09:05:00 +0000\r\nFrom: Grace <grace@example.org>\r\nTo: demo@pocketpost.local\r\n"
         "Subject: Board photo attached\r\nMessage-ID: <photo@pocketpost.local>\r\nMIME-Version: 1.0\r\n"
         "Content-Type: multipart/mixed; boundary=\"BOUNDARY\"\r\n\r\n"
         "--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe attachment is 2 KiB of binary.\r\n"
         "--BOUNDARY\r\nContent-Type: application/octet-stream; name=\"board.bin\"\r\n"
         "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"board.bin\"\r\n\r\n"
         + b64 + "--BOUNDARY--\r\n"),
        ("Date: Mon, 1 Jun 2026 09:10:00 +0000\r\nFrom: Linus <linus@example.org>\r\nTo: demo@pocketpost.local\r\n"
         "Subject: Third message\r\nMessage-ID: <third@pocketpost.local>\r\n\r\nShort and sweet.\r\n"),
    ]


SETUP = r"""
import os
from pocketpost import compat, config
from pocketpost.config import open_store
compat.makedirs("/flash/tls")
for n in ("cert.der", "key.der"):
    src = open(os.getenv("PP_TLS") + "/" + n, "rb"); data = src.read(); src.close()
    dst = open("/flash/tls/" + n, "wb"); dst.write(data); dst.close()
src = open(os.getenv("PP_CONFIG")); raw = src.read(); src.close()
dst = open("/flash/config.json", "w"); dst.write(raw); dst.close()
cfg = config.load("/flash/config.json")
st = open_store(cfg)
st.create("demo")
for path in os.getenv("PP_FILES").split("\n"):
    print("delivered", st.deliver_file("demo", path))
"""


SET_PORTS = r"""
def body():
    from pocketpost import config
    cfg = config.load_raw("/flash/config.json")
    cfg["server"]["port"] = int(os.getenv("PP_PORT"))
    cfg["server"]["pop3s_port"] = int(os.getenv("PP_POP3S_PORT"))
    sm = cfg.setdefault("smtp", {})
    sm["port"] = int(os.getenv("PP_SMTP_PORT"))
    sm["smtps_port"] = int(os.getenv("PP_SMTPS_PORT"))
    config.check(cfg)
    config.save("/flash/config.json", cfg)
run(body)
"""


def set_ports(rundir, image, port, pop3s_port, smtp_port, smtps_port):
    """Change the ports in the image's config (and its host-side copy), keeping its users and mail."""
    ppadmin.on_image(image, SET_PORTS, {"PP_PORT": str(port), "PP_POP3S_PORT": str(pop3s_port),
                                        "PP_SMTP_PORT": str(smtp_port), "PP_SMTPS_PORT": str(smtps_port)})
    # Said once done: an image that another process holds is refused above, its ports unchanged.
    print("%s: serving on ports %d and %d (SMTP %d and %d) from now on" % (image, port, pop3s_port, smtp_port,
                                                                           smtps_port))
    cfgpath = os.path.join(rundir, "config.json")
    try:
        with open(cfgpath) as f:
            cfg = json.load(f)
        cfg["server"]["port"] = port
        cfg["server"]["pop3s_port"] = pop3s_port
        cfg.setdefault("smtp", {}).update({"port": smtp_port, "smtps_port": smtps_port})
        with open(cfgpath, "w") as f:
            json.dump(cfg, f, indent=2)
    except (OSError, ValueError, KeyError):  # the host-side copy is a convenience only
        pass


def build_image(rundir, port, pop3s_port, smtp_port=DEFAULT_SMTP_PORT, smtps_port=DEFAULT_SMTPS_PORT):
    tlsdir = os.path.join(rundir, "tls")
    make_cert(tlsdir)
    image = os.path.join(rundir, "flash.img")
    lock = hostimage.create(image, IMAGE_SIZE)  # the one explicit create: refuses an existing file
    with open(os.path.join(ROOT, "boards", "host", "config.json")) as f:
        cfg = json.load(f)
    cfg["server"]["port"] = port
    cfg["server"]["pop3s_port"] = pop3s_port
    cfg["smtp"].update({"port": smtp_port, "submission_port": 0, "smtps_port": smtps_port, "domains": [DEMO_DOMAIN],
                        "aliases": {"postmaster": DEMO_USER}})
    sys.path.insert(0, os.path.join(ROOT, "firmware"))
    from pocketpost import config

    config.add_user(cfg, DEMO_USER, DEMO_PASSWORD)
    config.check(cfg)
    cfgpath = os.path.join(rundir, "config.json")
    with open(cfgpath, "w") as f:
        json.dump(cfg, f, indent=2)
    demodir = os.path.join(rundir, "demo")
    os.makedirs(demodir, exist_ok=True)
    files = []
    for i, m in enumerate(demo_messages()):
        p = os.path.join(demodir, "%d.eml" % (i + 1))
        with open(p, "wb") as f:
            f.write(m.encode())
        files.append(p)
    try:
        out = ppadmin.on_image(image, SETUP, {"PP_TLS": tlsdir, "PP_CONFIG": cfgpath, "PP_FILES": "\n".join(files)},
                               mkfs=True, lock=lock)
    except BaseException:
        os.unlink(image)  # made above: a half-built image would be reused next time
        raise
    finally:
        lock.release()
    sys.stdout.write(out)
    return image


def image_file(image, path):
    """The bytes of /flash/PATH in the image, read with littlefs-python; None if it cannot be read
    (not an image, no such file, a newer littlefs)."""
    try:
        from littlefs import LittleFS

        with open(image, "rb") as f:
            data = bytearray(f.read())
        fs = LittleFS(block_size=BLOCK_SIZE, block_count=len(data) // BLOCK_SIZE, mount=False)
        fs.context.buffer = data
        fs.mount()
        with fs.open(path, "rb") as f:
            return f.read()
    except Exception:
        return None


def image_config(image):
    """The config stored in the image (/flash/config.json): the users added by ppadmin live only
    there. None if it cannot be read (the banner then says "unknown")."""
    raw = image_file(image, "config.json")
    try:
        return json.loads(raw) if raw is not None else None
    except ValueError:
        return None


def client_cert(rundir, image, cfg):
    """The PEM file the banner gives clients (--cacert): DIR/tls/cert.pem, rewritten from the
    certificate the image's server really presents (server.cert, DER) when that differs. A
    `ppadmin restore` onto the image, or an image from elsewhere, brings its own certificate;
    the PEM made with the image's first build then no longer verifies it (curl: "self-signed
    certificate")."""
    import ssl

    pem = os.path.join(rundir, "tls", "cert.pem")
    path = ((cfg or {}).get("server") or {}).get("cert") or ""
    if path.startswith("/flash/"):
        path = path[len("/flash/"):]
    der = image_file(image, path) if path and not path.startswith("/") else None
    if der is None:
        return pem
    want = ssl.DER_cert_to_PEM_cert(bytes(der))
    try:
        with open(pem) as f:
            have = f.read()
    except OSError:
        have = None
    try:
        same = have is not None and ssl.PEM_cert_to_DER_cert(have) == bytes(der)
    except ValueError:  # not a PEM certificate
        same = False
    if not same:
        os.makedirs(os.path.dirname(pem), exist_ok=True)
        with open(pem, "w") as f:
            f.write(want)
        if have is not None:
            print("%s: rewritten from the image's certificate (/flash/%s), which is not the one it held" % (pem, path))
    return pem


def still_demo_password(user):
    """True while the user's stored hash is still that of the demo password."""
    sys.path.insert(0, os.path.join(ROOT, "firmware"))
    from pocketpost import auth

    try:
        return auth.verify_password(DEMO_PASSWORD, user.get("password"))
    except Exception:
        return False


def port_in_use(host, port):
    """True if (host, port) cannot be bound now. SO_REUSEADDR as the server sets it, so a port
    left in TIME_WAIT by the last run does not count."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return False
    except OSError as e:
        return e.errno == errno.EADDRINUSE
    finally:
        s.close()


def take_terminal():
    """Under `make run`, put this process (and the server it starts) in its own process group and
    make it the terminal's foreground group, so Ctrl-C reaches only us: make then sees a clean
    exit 0 instead of dying of SIGINT with its own "*** Interrupt" line. Returns what
    give_back_terminal() needs, or None when there is nothing to do (no terminal, or the shell
    already gave us our own group)."""
    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd) or os.getpgrp() == os.getpid() or os.tcgetpgrp(fd) != os.getpgrp():
            return None
        old = os.getpgrp()
        os.setpgid(0, 0)
        _quiet_tcsetpgrp(fd, os.getpid())
        # Ctrl-Z would stop our group behind make's back and leave the terminal to nobody.
        signal.signal(signal.SIGTSTP, signal.SIG_IGN)
        return fd, old
    except (OSError, ValueError, AttributeError):
        return None


def _quiet_tcsetpgrp(fd, pgrp):
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # a background group may not tcsetpgrp otherwise
    try:
        os.tcsetpgrp(fd, pgrp)
    finally:
        signal.signal(signal.SIGTTOU, old)


STOP_SIGNALS = (signal.SIGTERM,)  # a stop asked of this process alone, not by Ctrl-C


def _stop_child(child, signum):
    """SIGTERM (kill PID, timeout(1), a service manager) reaches this process only:
    without this it died and left the server running, holding the ports and the image. Stop the
    server as Ctrl-C does (it unmounts the image) and go on as after Ctrl-C, naming the signal."""
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
    raise Stopped(signal.Signals(signum).name)


class Stopped(KeyboardInterrupt):
    """The server is asked to stop by a signal (its name) other than Ctrl-C's."""


def give_back_terminal(held):
    if held is not None:
        try:
            _quiet_tcsetpgrp(held[0], held[1])
        except OSError:
            pass


def smtp_banner(cfg, port, smtp_port, smtps_port, cert, u, pw):
    """How to send mail to the image's SMTP receiver (or why it is off)."""
    sm = (cfg or {}).get("smtp") or {}
    doms = sm.get("domains") or []
    if not doms:
        return ("SMTP receiver: off (no smtp.domains in the image's config; make run RUN_ARGS=--fresh builds an image\n"
                "  with one, or set them in /flash/config.json)\n")
    d = doms[0]
    rcpt = (u if u != "USER" else "postmaster") + "@" + d
    return """SMTP receiver for %(doms)s: port %(sp)d (STARTTLS), port %(ss)d (implicit TLS, AUTH)
Send mail to it, then read it over POP3 as above:
  printf 'Subject: hi\\r\\n\\r\\nhello\\r\\n' > /tmp/m.eml
  curl smtp://127.0.0.1:%(sp)d --mail-from you@example.org --mail-rcpt %(rcpt)s --upload-file /tmp/m.eml
  curl --cacert %(cert)s -u %(u)s:%(pw)s smtps://localhost:%(ss)d --mail-from %(rcpt)s \\
       --mail-rcpt %(rcpt)s --upload-file /tmp/m.eml
  swaks --server 127.0.0.1 --port %(sp)d --to %(rcpt)s --tls          # STARTTLS
  curl -u %(u)s:%(pw)s pop3://127.0.0.1:%(p)d/                    # the new message is the last one
""" % {"doms": ", ".join(doms), "sp": smtp_port, "ss": smtps_port, "rcpt": rcpt, "cert": cert, "u": u, "pw": pw,
       "p": port}


def banner(image, cfg, port, pop3s_port, cert, smtp_port=DEFAULT_SMTP_PORT, smtps_port=DEFAULT_SMTPS_PORT):
    users = sorted((cfg or {}).get("users", {}).items())
    demo = [n for n, u in users if n == DEMO_USER and still_demo_password(u)]
    if cfg is None:
        accounts = "unknown (could not read /flash/config.json from the image)"
    elif not users:
        accounts = "none yet: add one with tools/ppadmin.py adduser %s NAME (server stopped)" % image
    else:
        accounts = ", ".join(n + (' (password "%s")' % DEMO_PASSWORD if n in demo else "") for n, u in users)
    u = demo[0] if demo else (users[0][0] if users else "USER")
    pw = DEMO_PASSWORD if demo else "PASSWORD"
    return """
pocketpost POP3 server and SMTP receiver on 127.0.0.1 (image %(image)s)
  POP3 + STLS : port %(p)d        POP3S (implicit TLS): port %(s)d
  users       : %(accounts)s
  certificate : %(cert)s (self-signed)

Read the mail with curl:
  curl -u %(u)s:%(pw)s pop3://127.0.0.1:%(p)d/                    # LIST
  curl -u %(u)s:%(pw)s pop3://127.0.0.1:%(p)d/1                   # RETR 1
  curl --cacert %(cert)s -u %(u)s:%(pw)s pop3s://localhost:%(s)d/2
  curl --ssl-reqd --cacert %(cert)s -u %(u)s:%(pw)s pop3://localhost:%(p)d/ -X UIDL

Thunderbird: Account Settings > Account Actions > Add Mail Account > Configure manually:
  Incoming: POP3, server 127.0.0.1, port %(s)d, Connection security SSL/TLS
            (or port %(p)d with STARTTLS), Authentication "Normal password", username %(u)s
  Accept the self-signed certificate when asked. Tick "Leave messages on server" to keep them.
%(smtp)s
Add users / deliver mail (server stopped): tools/ppadmin.py adduser %(image)s NAME;
  tools/ppadmin.py deliver %(image)s NAME FILE.eml
Ctrl-C stops the server.
""" % {"image": image, "p": port, "s": pop3s_port, "u": u, "pw": pw, "cert": cert, "accounts": accounts,
       "smtp": smtp_banner(cfg, port, smtp_port, smtps_port, cert, u, pw)}


def main():
    ap = argparse.ArgumentParser(description="Run the pocketpost POP3 server on the host under micropython.")
    ap.add_argument("--dir", default=os.path.join(ROOT, "run"))
    ap.add_argument("--port", type=int, default=None,
                    help="POP3 port, kept in the image for later runs (default: the image's; %d for a new one)" % DEFAULT_PORT)
    ap.add_argument("--pop3s-port", type=int, default=None,
                    help="POP3S port, kept in the image (default: the image's; %d for a new one)" % DEFAULT_POP3S_PORT)
    ap.add_argument("--smtp-port", type=int, default=None,
                    help="SMTP port, kept in the image (default: the image's; %d for a new one)" % DEFAULT_SMTP_PORT)
    ap.add_argument("--smtps-port", type=int, default=None,
                    help="SMTPS port, kept in the image (default: the image's; %d for a new one)" % DEFAULT_SMTPS_PORT)
    ap.add_argument("--fresh", action="store_true", help="rebuild the image (its users and mail are lost)")
    ap.add_argument("--no-serve", action="store_true", help="build the image only")
    args = ap.parse_args()
    args.dir = os.path.abspath(args.dir)  # its files reach micropython, whose current directory is /flash
    os.makedirs(args.dir, exist_ok=True)
    image = os.path.join(args.dir, "flash.img")
    try:
        if args.fresh and os.path.exists(image):
            with hostimage.ImageLock(image):  # not while a server or a tool has it
                os.unlink(image)
        if not os.path.exists(image):
            print("building %s ..." % image)
            build_image(args.dir, args.port or DEFAULT_PORT, args.pop3s_port or DEFAULT_POP3S_PORT,
                        args.smtp_port or DEFAULT_SMTP_PORT, args.smtps_port or DEFAULT_SMTPS_PORT)
        cfg = image_config(image)
        sv = (cfg or {}).get("server", {})
        port = args.port or sv.get("port") or DEFAULT_PORT
        pop3s_port = args.pop3s_port or sv.get("pop3s_port") or DEFAULT_POP3S_PORT
        sm = (cfg or {}).get("smtp") or {}
        smtp_port = args.smtp_port or sm.get("port") or DEFAULT_SMTP_PORT
        smtps_port = args.smtps_port or sm.get("smtps_port") or DEFAULT_SMTPS_PORT
        host = sv.get("host") or "127.0.0.1"
        if not args.no_serve:
            with hostimage.ImageLock(image):  # a server already on it: that, not its ports (the next hint), is the news
                pass
        if not args.no_serve:  # a port already taken: refused before anything changes
            ports = [("POP3", port, "--port N --pop3s-port M"), ("POP3S", pop3s_port, "--port N --pop3s-port M")]
            if sm.get("domains"):
                ports += [("SMTP", smtp_port, "--smtp-port N --smtps-port M"),
                          ("SMTPS", smtps_port, "--smtp-port N --smtps-port M")]
            for what, p, hint in ports:
                if p and port_in_use(host, p):
                    sys.stderr.write('make run: %s port %d on %s is already in use; choose free ports with '
                                     'make run RUN_ARGS="%s"\n' % (what, p, host, hint))
                    return EXIT_PORT_IN_USE
        if cfg is not None and (port, pop3s_port, smtp_port, smtps_port) != (
                sv.get("port"), sv.get("pop3s_port"), sm.get("port"), sm.get("smtps_port")):
            set_ports(args.dir, image, port, pop3s_port, smtp_port, smtps_port)  # in place: users and mail stay
        lock = None
        if not args.no_serve:
            lock = hostimage.ImageLock(image)  # held until the server ends (the child inherits it)
            hostimage.check(image)
    except (hostimage.ImageError, ppadmin.Refused) as e:
        sys.stderr.write("run_host: %s\n" % e)
        return 2
    cert = client_cert(args.dir, image, cfg)
    print(banner(image, cfg, port, pop3s_port, cert, smtp_port, smtps_port))
    if args.no_serve:
        return 0
    env = dict(os.environ)
    env["MICROPYPATH"] = os.path.join(ROOT, "firmware") + ":" + HERE + ":.frozen"
    cmd = [ppadmin.micropython(), os.path.join(HERE, "hostflash.py"), image, "-m", "hostserve"]
    sys.stdout.flush()
    held = take_terminal()
    child = None
    try:
        child = subprocess.Popen(cmd, env=env, pass_fds=(lock.fd,))  # the child holds the image lock too
        for signum in STOP_SIGNALS:
            signal.signal(signum, lambda signum, frame: _stop_child(child, signum))
        rc = child.wait()
        if rc == EXIT_PORT_IN_USE:
            sys.stderr.write('make run: choose free ports with make run RUN_ARGS="--port N --pop3s-port M"\n')
        return rc
    except KeyboardInterrupt as e:
        # Ctrl-C reached the server too (same process group), or _stop_child passed on SIGTERM:
        # let it unmount the image and exit.
        if child is not None:
            try:
                child.wait(STOP_WAIT_S)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(STOP_WAIT_S)
                except (subprocess.TimeoutExpired, KeyboardInterrupt):
                    child.kill()
                    child.wait()
        print("\npocketpost: server stopped (%s). Bye." % (e.args[0] if isinstance(e, Stopped) else "Ctrl-C"))
        return 0
    finally:
        give_back_terminal(held)


if __name__ == "__main__":
    # Ctrl-C always stops the server, even when started from a context that ignores SIGINT (a
    # shell's background job, some CI runners): Python then installs no KeyboardInterrupt
    # handler, and micropython (which sets its own) would stop while we went on silently.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before the server started (while the image is built)
        print("\npocketpost: interrupted before the server started.")
        sys.exit(130)
