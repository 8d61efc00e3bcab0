"""`make run`: build (or reuse) run/flash.img with a demo mailbox, then serve it under micropython.

    .venv/bin/python tools/run_host.py [--fresh] [--port 1100] [--pop3s-port 1995] [--dir run]
        [--smtp-port 2525] [--smtps-port 4465]

First run: a self-signed certificate (openssl, DER for MicroPython, PEM copies for CPython) in
run/tls/, a 2 MiB littlefs image run/flash.img holding /flash/config.json (boards/host/config.json
plus user "demo", password "demo"), /flash/tls/{cert,key}.der and mailbox "demo" with a few
messages (one with a base64 attachment). Later runs reuse the image (--fresh rebuilds it).
The POP3 server and the SMTP receiver (domain DEMO_DOMAIN; port 25 style with STARTTLS on
--smtp-port, submission over implicit TLS on --smtps-port) then run in the foreground (Ctrl-C
stops them): micropython tools/hostflash.py run/flash.img -m pocketpost.smtpserver /flash/config.json
"""

import argparse
import base64
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import ppadmin  # noqa: E402

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"
DEMO_DOMAIN = "pocketpost.local"  # mail for demo@pocketpost.local (and postmaster@) lands in "demo"
IMAGE_SIZE = 2 * 1024 * 1024  # the vfs partition of a 4 MiB ESP32


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


def image_ports(rundir):
    """The ports the existing image's config was built with (its host-side copy), or None."""
    try:
        with open(os.path.join(rundir, "config.json")) as f:
            cfg = json.load(f)
        sv = cfg["server"]
        sm = cfg["smtp"]
        return sv["port"], sv["pop3s_port"], sm["port"], sm["smtps_port"]
    except (OSError, ValueError, KeyError):
        return None


def build_image(rundir, port, pop3s_port, smtp_port=2525, smtps_port=4465):
    tlsdir = os.path.join(rundir, "tls")
    make_cert(tlsdir)
    image = os.path.join(rundir, "flash.img")
    with open(image, "wb") as f:
        f.write(b"\xff" * IMAGE_SIZE)
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
    out = ppadmin.on_image(image, SETUP, {"PP_TLS": tlsdir, "PP_CONFIG": cfgpath, "PP_FILES": "\n".join(files)}, mkfs=True)
    sys.stdout.write(out)
    return image


def main():
    ap = argparse.ArgumentParser(description="Run the pocketpost POP3 server on the host under micropython.")
    ap.add_argument("--dir", default=os.path.join(ROOT, "run"))
    ap.add_argument("--port", type=int, default=1100)
    ap.add_argument("--pop3s-port", type=int, default=1995)
    ap.add_argument("--smtp-port", type=int, default=2525)
    ap.add_argument("--smtps-port", type=int, default=4465)
    ap.add_argument("--fresh", action="store_true", help="rebuild the image")
    ap.add_argument("--no-serve", action="store_true", help="build the image only")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    image = os.path.join(args.dir, "flash.img")
    if not args.fresh and os.path.exists(image) and image_ports(args.dir) != (args.port, args.pop3s_port, args.smtp_port,
                                                                                  args.smtps_port):
        print("%s was built for other ports: rebuilding it" % image)
        args.fresh = True
    if args.fresh or not os.path.exists(image):
        print("building %s ..." % image)
        build_image(args.dir, args.port, args.pop3s_port, args.smtp_port, args.smtps_port)
    cert = os.path.join(args.dir, "tls", "cert.pem")
    print("""
pocketpost POP3 server and SMTP receiver on 127.0.0.1 (image %(image)s)
  POP3 + STLS : port %(p)d        POP3S (implicit TLS): port %(s)d
  SMTP + STARTTLS: port %(sp)d     SMTPS submission (implicit TLS, AUTH): port %(ss)d
  account     : user %(u)s, password %(pw)s (self-signed certificate: %(cert)s)

Read the mail with curl:
  curl -u %(u)s:%(pw)s pop3://127.0.0.1:%(p)d/                    # LIST
  curl -u %(u)s:%(pw)s pop3://127.0.0.1:%(p)d/1                   # RETR 1
  curl --cacert %(cert)s -u %(u)s:%(pw)s pop3s://localhost:%(s)d/2
  curl --ssl-reqd --cacert %(cert)s -u %(u)s:%(pw)s pop3://localhost:%(p)d/ -X UIDL

Thunderbird: Account Settings > Account Actions > Add Mail Account > Configure manually:
  Incoming: POP3, server 127.0.0.1, port %(s)d, Connection security SSL/TLS
            (or port %(p)d with STARTTLS), Authentication "Normal password", username %(u)s
  Accept the self-signed certificate when asked. Tick "Leave messages on server" to keep them.
Send mail to it (SMTP receiver, domain %(dom)s):
  printf 'Subject: hi\\r\\n\\r\\nhello\\r\\n' > /tmp/m.eml
  curl smtp://127.0.0.1:%(sp)d --mail-from you@example.org --mail-rcpt %(u)s@%(dom)s --upload-file /tmp/m.eml
  curl --cacert %(cert)s -u %(u)s:%(pw)s smtps://localhost:%(ss)d --mail-from %(u)s@%(dom)s \\
       --mail-rcpt %(u)s@%(dom)s --upload-file /tmp/m.eml
  swaks --server 127.0.0.1 --port %(sp)d --to %(u)s@%(dom)s --tls      # STARTTLS (swaks package)
  then read it: curl -u %(u)s:%(pw)s pop3://127.0.0.1:%(p)d/ (LIST), .../N (RETR)

Add users / deliver mail (server stopped): tools/ppadmin.py adduser %(image)s NAME;
  tools/ppadmin.py deliver %(image)s NAME FILE.eml
Ctrl-C stops the server.
""" % {"image": image, "p": args.port, "s": args.pop3s_port, "u": DEMO_USER, "pw": DEMO_PASSWORD, "cert": cert,
       "dom": DEMO_DOMAIN, "sp": args.smtp_port, "ss": args.smtps_port})
    if args.no_serve:
        return
    env = dict(os.environ)
    env["MICROPYPATH"] = os.path.join(ROOT, "firmware") + ":" + HERE + ":.frozen"
    cmd = [ppadmin.micropython(), os.path.join(HERE, "hostflash.py"), image, "-m", "pocketpost.smtpserver", "/flash/config.json"]
    sys.stdout.flush()
    try:
        sys.exit(subprocess.call(cmd, env=env))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
