"""The export/import/backup/restore subcommands of ppadmin.py (the work is in mailport.py)."""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mailport  # noqa: E402
import ppadmin  # noqa: E402  (its exit status scheme, name rule)
from ppadmin import EXIT_INCOMPLETE, EXIT_PARTLY, EXIT_REFUSED, EXIT_USAGE  # noqa: E402

COMMANDS = ("export", "import", "backup", "restore")
TARGET = "a flash image file, or a board's serial port (/dev/ttyUSB0, the pseudo-board's tty)"
TARGET_DIR = TARGET + ", or the fetch CLI's config.json (or its folder): a store in a host folder"
NO_RESTART = "over USB: leave the board at the REPL afterwards (default: its services start again)"
LIVE = "over USB: while the board goes on serving (its usb_link service; no Ctrl-C, no restart)"


def _link_options(p):
    """What every subcommand takes: how it reports and how it treats a board on USB."""
    p.add_argument("--progress", action="store_true")
    p.add_argument("--no-restart", action="store_true", help=NO_RESTART)
    p.add_argument("--live", action="store_true", help=LIVE)


def _image_size(text):
    """restore --size: what `create --size` takes (2M, 512K, bytes: whole 4 KiB blocks)."""
    try:
        return mailport.hostimage.parse_size(text)
    except mailport.hostimage.ImageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parsers(sub):
    e = sub.add_parser("export", help="export mailboxes as Maildir, mbox (mboxrd) or Maildir + dovecot-uidlist",
                       epilog=ppadmin.EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("image", help=TARGET_DIR)
    e.add_argument("mailboxes", nargs="*", help="default: every mailbox")
    g = e.add_mutually_exclusive_group(required=True)
    g.add_argument("--maildir", metavar="DIR", help="DIR/<mailbox>/{cur,new,tmp}")
    g.add_argument("--mbox", metavar="FILE", help="one mailbox: FILE; several (or FILE a folder): FILE/<mailbox>.mbox")
    g.add_argument("--dovecot", metavar="DIR", help="DIR/<mailbox>/ Maildir with dovecot-uidlist (POP3 UIDL + order)")
    e.add_argument("--mbox-quoting", choices=("rd", "o"), default="rd",
                   help="rd: '>*From ' gets one more '>' (default; import takes it back exactly); o: only 'From ' "
                        "does (for readers that never remove a '>': neomutt, Dovecot's mbox)")
    _link_options(e)
    i = sub.add_parser("import", help="import a Maildir, an mbox or .eml files into a mailbox (idempotent)")
    i.add_argument("image", help=TARGET_DIR)
    i.add_argument("mailbox")
    i.add_argument("source")
    i.add_argument("--mbox-quoting", choices=("rd", "o"), default="rd",
                   help="rd: '>+From ' loses one '>' (default); o: only '>From ' becomes 'From '")
    i.add_argument("--create-mailbox", action="store_true",
                   help="import into a new mailbox no user reads (without it such a mailbox, a typo, is refused, exit 2)")
    _link_options(i)
    b = sub.add_parser("backup", help="one archive of every mailbox (UIDs, arrival times), users and config")
    b.add_argument("image", help=TARGET)
    b.add_argument("file")
    _link_options(b)
    r = sub.add_parser("restore", help="restore a backup archive onto an image (made if missing)")
    r.add_argument("file")
    r.add_argument("image", help=TARGET + " (an image file is made if missing)")
    r.add_argument("--size", type=_image_size,
                   help="bytes or K/M, as create takes it, for a new image (default: twice the archive, at least 2 MiB)")
    r.add_argument("--salvage", action="store_true",
                   help="a damaged or cut archive: restore what is intact and name the rest (without it such an "
                        "archive is refused in one line, exit 3, before the target is touched)")
    _link_options(r)


def _report(line):
    print(line, flush=True)


def run(args):
    """Returns the exit status, as ppadmin.EXIT_STATUS says for every command."""
    mailport.UsbLink.restart = not args.no_restart
    mailport.LIVE[0] = args.live
    names = args.mailboxes if args.cmd == "export" else [args.mailbox] if args.cmd == "import" else []
    for name in names:  # before anything starts: the board side would end in a traceback
        if not ppadmin.ppconfig.valid_name(name):
            print("ppadmin %s: bad mailbox name %r: %s" % (args.cmd, name, ppadmin.NAME_RULE), file=sys.stderr)
            return EXIT_USAGE
    try:
        if args.cmd == "export":
            if args.mbox:
                # one mailbox named: one file, unless --mbox names a folder (out/: out/<mailbox>.mbox)
                folder = args.mbox.endswith("/") or os.path.isdir(args.mbox)
                single = len(args.mailboxes) == 1 and not folder
                if not single and os.path.exists(args.mbox) and not folder:
                    print("ppadmin export: %s is a file: several mailboxes go into a folder (--mbox DIR/, a "
                          "DIR/<mailbox>.mbox each); name one mailbox to write one file" % args.mbox, file=sys.stderr)
                    return EXIT_REFUSED
                w = mailport.MboxWriter(args.mbox, single, args.mbox_quoting)
            elif args.dovecot:
                w = mailport.DovecotWriter(args.dovecot)
            else:
                w = mailport.MaildirWriter(args.maildir)
            missing = []
            locked = []
            counts = mailport.export(args.image, args.mailboxes, w, progress=args.progress, missing=missing,
                                     locked=locked)
            kept = getattr(w, "kept", None) or {}
            gone = getattr(w, "gone", None) or {}
            for name in sorted(counts):
                # An earlier export's file is left as it is (a reader may have changed its flags);
                # --dovecot: one deleted there since is not written again (DovecotWriter)
                notes = []
                if kept.get(name):
                    notes.append("%d of them already there, left as they were" % kept[name])
                if gone.get(name):
                    notes.append("%d deleted there since an earlier export, not written again" % gone[name])
                print("exported %s: %d messages%s" % (name, counts[name], " (%s)" % "; ".join(notes) if notes else ""))
            if locked:  # a script doing `export && wipe` must not go on: that mail is not in the export
                held = ("mailboxes %s were" if len(locked) > 1 else "mailbox %s was") % ", ".join(locked)
                print("ppadmin export: incomplete: %s in use (a POP3 session held it), not exported: run again"
                      % held, file=sys.stderr)
            return EXIT_PARTLY if missing else EXIT_INCOMPLETE if locked else 0
        if args.cmd == "import":
            try:
                r = mailport.import_messages(args.image, args.mailbox, args.source, _report, args.mbox_quoting,
                                             args.progress, create_mailbox=args.create_mailbox)
            except mailport.NoSuchMailbox as e:
                print("ppadmin import: %s" % e, file=sys.stderr)
                return EXIT_USAGE
            print("import %s: %d added, %d skipped (already there), %d refused%s"
                  % (args.mailbox, r["added"], r["skipped"], r["refused"], ", stopped: no room" if r["full"] else ""))
            return EXIT_USAGE if r["full"] else (EXIT_PARTLY if r["refused"] else 0)
        if args.cmd == "backup":
            counts = mailport.backup(args.image, args.file, args.progress)
            print("backup %s: %d mailboxes, %d messages" % (args.file, len(counts), sum(counts.values())))
            return 0
        if args.size and (os.path.exists(args.image) or mailport.is_serial(args.image)):
            print("ppadmin restore: --size is for a new image; %s exists (its size stays)" % args.image, file=sys.stderr)
            return EXIT_USAGE
        r = mailport.restore(args.file, args.image, _report, args.progress, size=args.size, salvage=args.salvage)
        renum = " (%d of them under a new UIDL)" % r["renumbered"] if r.get("renumbered") else ""
        print("restore %s: %d messages restored%s, %d already there, %d files, %d damaged, %d refused"
              % (args.image, r["restored"], renum, r["present"], r["files"], len(r["damaged"]) + len(r["missing"]),
                 r["refused"]))
        return EXIT_USAGE if r["full"] else EXIT_PARTLY if (r["damaged"] or r["missing"] or r["refused"]) else 0
    except (mailport.PortError, mailport.hostimage.ImageError, OSError) as e:
        print("ppadmin %s: %s" % (args.cmd, e), file=sys.stderr)
        return EXIT_REFUSED
