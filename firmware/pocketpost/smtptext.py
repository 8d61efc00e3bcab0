"""The SMTP receiver's refusals (every 4xx / 5xx reply a session gives, but the few made under a
MemoryError or with the host name in them), by number: smtp.reply(n) -> text[n].

Cold code: smtp.reply loads this module for one reply and drops it again (compat.forget), so
the texts are not in the heap while sessions run (a long literal is a heap object of its own
once its module is loaded; issue 12: bench_heap c ran out loading the envelope's code, a third
of which was these texts). They are sixteen to a literal (adjacent literals are one object):
loading the module takes ~3 KB in four blocks of under 1 KB, where a literal each took ~5 KB;
entry n is line n % 16 of text[n // 16]. The callers name each entry with a private constant
(`_T_NAME = const(n)`, the number and name after each entry below; `text`: a name MicroPython
has built in, see smtp.py's module doc); host_tests/test_smtp_texts.py checks that every
caller's number is the entry its name says.
"""

text = (
    # 0-15
    b"421 4.7.0 too many errors, closing\r\n"  # 0 _T_ERRORS
    b"503 5.5.1 nothing to resume\r\n"  # 1 _T_RESUME
    b"501 5.5.2 bad AUTH response\r\n"  # 2 _T_AUTH_LINE
    b"500 5.5.2 line too long\r\n"  # 3 _T_LONG
    b"500 5.5.2 invalid octet in command\r\n"  # 4 _T_OCTET
    b"421 4.7.0 closing\r\n"  # 5 _T_CLOSING
    b"500 5.5.2 command not recognized\r\n"  # 6 _T_UNKNOWN
    b"501 5.5.4 a domain or address literal is required\r\n"  # 7 _T_HELO_ARG
    b"501 5.5.4 STARTTLS takes no argument\r\n"  # 8 _T_TLS_ARG
    b"503 5.5.1 TLS already active\r\n"  # 9 _T_TLS_ON
    b"454 4.7.0 TLS not available\r\n"  # 10 _T_NO_TLS
    b"502 5.5.1 AUTH is offered on the submission ports only\r\n"  # 11 _T_NO_AUTH
    b"503 5.5.1 EHLO first\r\n"  # 12 _T_EHLO_FIRST
    b"503 5.5.1 already authenticated\r\n"  # 13 _T_AUTHED
    b"503 5.5.1 AUTH not allowed during a mail transaction\r\n"  # 14 _T_AUTH_IN_MAIL
    b"503 5.5.1 EHLO or HELO first\r\n",  # 15 _T_HELO_FIRST
    # 16-31
    b"503 5.5.1 nested MAIL command\r\n"  # 16 _T_NESTED
    b"530 5.7.0 authentication required\r\n"  # 17 _T_AUTH_FIRST
    b"501 5.5.4 syntax: MAIL FROM:<address>\r\n"  # 18 _T_MAIL_SYNTAX
    b"501 5.1.7 bad sender address syntax\r\n"  # 19 _T_SENDER
    b"555 5.5.4 parameters need EHLO\r\n"  # 20 _T_PARAMS_EHLO
    b"501 5.5.4 bad SIZE value\r\n"  # 21 _T_SIZE
    b"501 5.5.4 BODY is 7BIT or 8BITMIME\r\n"  # 22 _T_BODY
    b"555 5.5.4 unsupported MAIL parameter\r\n"  # 23 _T_MAIL_PARAM
    b"552 5.3.4 message size exceeds fixed maximum message size %d\r\n"  # 24 _T_TOO_BIG
    b"452 4.3.1 insufficient system storage for a message of that size\r\n"  # 25 _T_NO_ROOM
    b"503 5.5.1 MAIL first\r\n"  # 26 _T_MAIL_FIRST
    b"501 5.5.4 syntax: RCPT TO:<address>\r\n"  # 27 _T_RCPT_SYNTAX
    b"555 5.5.4 unsupported RCPT parameter\r\n"  # 28 _T_RCPT_PARAM
    b"501 5.1.3 bad recipient address syntax\r\n"  # 29 _T_RCPT_ADDR
    b"452 4.5.3 too many recipients\r\n"  # 30 _T_RCPTS
    b"553 5.1.3 mailbox name not allowed\r\n",  # 31 _T_BAD_BOX
    # 32-47
    b"550 5.1.1 no such mailbox here\r\n"  # 32 _T_NO_BOX
    b"550 5.7.1 relaying denied: this server delivers only to its own domains\r\n"  # 33 _T_RELAY
    b"452 4.5.3 too many mailboxes for one message, send the rest later\r\n"  # 34 _T_BOXES
    b"452 4.3.1 insufficient storage for a message of that size\r\n"  # 35 _T_BOX_ROOM
    b"501 5.5.4 DATA takes no argument\r\n"  # 36 _T_DATA_ARG
    b"554 5.5.1 no valid recipients\r\n"  # 37 _T_NO_RCPT
    b"552 5.2.2 mailbox full\r\n"  # 38 _T_FULL
    b"452 4.3.1 insufficient system storage, try later\r\n"  # 39 _T_FLASH
    b"451 4.3.0 local storage error, try later\r\n"  # 40 _T_STORE
    b"501 5.5.4 AUTH mechanism [initial-response]\r\n"  # 41 _T_AUTH_SYNTAX
    b"504 5.5.4 unrecognized authentication type\r\n"  # 42 _T_MECH
    b"538 5.7.11 encryption required for this mechanism: use STARTTLS or SCRAM-SHA-256\r\n"  # 43 _T_CLEARTEXT
    b"501 5.0.0 authentication cancelled\r\n"  # 44 _T_CANCELLED
    b"421 4.7.0 too many authentication failures, closing\r\n"  # 45 _T_AUTH_LIMIT
    b"535 5.7.8 authentication credentials invalid\r\n"  # 46 _T_AUTH_FAILED
    b"451 4.3.0 local error, try again later\r\n",  # 47 _T_LOCAL (also smtp.reply's own, when this cannot load)
)
