#!/usr/bin/python3
"""starlingctl end to end, in a temporary directory.

Usage: test_starlingctl.py PATH/TO/starlingctl   (CTest passes the binary)

Accounts are created, listed, re-keyed and deleted through a real SQLite
file; a certificate is made and checked; the database is searched for the
password, which must not be there in any form we wrote. Rosters are
listed, added to (one side or both) and removed from.
"""
import os
import pty
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import termios
import time

CTL = None
FAILURES = []
PASSWORD = "correct horse battery staple 7"


def run(args, stdin="", cwd=None):
    """Runs starlingctl with stdin from a pipe (never a terminal)."""
    p = subprocess.run([CTL] + args, input=stdin.encode(), cwd=cwd,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def expect(cond, what, result=None):
    if cond:
        print("ok   " + what)
        return
    detail = ""
    if result is not None:
        detail = " (exit %d, stdout %r, stderr %r)" % result
    print("FAIL " + what + detail)
    FAILURES.append(what)


def expect_run(args, code, stdin="", out=None, err=None, cwd=None,
               what=None):
    """Runs and checks the exit code and substrings of stdout/stderr."""
    r = run(args, stdin, cwd)
    ok = r[0] == code
    if out is not None:
        ok = ok and out in r[1]
    if err is not None:
        ok = ok and err in r[2]
    expect(ok, what or " ".join(args), r)
    return r


def read_until(fd, token, proc, timeout=30):
    """Reads from a pty master until `token` appears or the process ends."""
    buf = b""
    end = time.monotonic() + timeout
    while token not in buf and time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            buf += chunk
        elif proc.poll() is not None:
            break
    return buf


def run_tty(args, answers, cwd=None, interrupt=False):
    """Runs starlingctl with stdin and stderr on a terminal (a pty), typing
    one answer at each password prompt. Returns (exit code, stdout, what
    the terminal showed, whether echo was on afterwards)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([CTL] + args, stdin=slave, stdout=subprocess.PIPE,
                         stderr=slave, cwd=cwd)
    shown = b""
    try:
        for answer in answers:
            shown += read_until(master, b"password: ", p)
            os.write(master, answer.encode() + b"\n")
        if interrupt:
            shown += read_until(master, b"password: ", p)
            p.send_signal(signal.SIGINT)
        out = p.communicate(timeout=60)[0]
        shown += read_until(master, b"\x00never", p, timeout=0.3)
        echo = bool(termios.tcgetattr(slave)[3] & termios.ECHO)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
        os.close(slave)
    return p.returncode, out.decode(), shown.decode(errors="replace"), echo


def roster_tests():
    """starlingctl roster: list, add, add --both, remove, and what the store
    does on deluser, through a real database in its own directory."""
    with tempfile.TemporaryDirectory(prefix="starlingctl-roster.") as d:
        conf = os.path.join(d, "starlingd.conf")
        with open(conf, "w") as f:
            f.write('hosts = [ "localhost", "example.net" ];\n'
                    'storage = { path = "roster.db"; };\n')
        db = os.path.join(d, "roster.db")
        c = ["--config", conf]

        r = expect_run(["--help"], 0, out="roster JID add CONTACT")
        expect("at their next login" in r[1],
               "--help says when a running server sees roster changes", r)

        expect_run(c + ["roster", "alice@localhost"], 1,
                   err="starlingctl: alice@localhost: no such account "
                       "(no database at ")
        expect(not os.path.exists(db), "roster creates no database")
        for jid in ("alice@localhost", "bob@example.net", "carol@localhost"):
            expect_run(c + ["adduser", jid], 0, stdin="pw\n")

        r = expect_run(c + ["roster", "Alice@LOCALHOST"], 0,
                       what="roster of a new account")
        expect(r[1] == "version 0\n", "an empty roster at version 0", r)

        expect_run(c + ["roster", "alice@localhost", "add", "Bob@Example.NET",
                        "--name", "Bob \"the\" builder", "--group",
                        "Friends", "--group=line\ntwo",
                        "--group", "Ünï 😀"], 0,
                   out="added bob@example.net to the roster of "
                       "alice@localhost: subscription none (version 1)",
                   what="roster add: a name, groups with a newline and "
                        "Unicode")
        r = expect_run(c + ["roster", "alice@localhost"], 0)
        expect(r[1] == "version 1\n"
               "item bob@example.net subscription=none ask=no approved=no "
               "name=\"Bob \\\"the\\\" builder\" "
               "groups=\"Friends\",\"line\\ntwo\",\"Ünï 😀\"\n",
               "one line per item, texts quoted and escaped", r)
        r = expect_run(c + ["roster", "bob@example.net"], 0)
        expect(r[1] == "version 0\n",
               "without --both the contact's roster is untouched", r)

        # --both: this side and the contact's (a local account).
        r = expect_run(c + ["roster", "alice@localhost", "add",
                            "bob@example.net", "--both"], 0,
                       out="updated bob@example.net in the roster of "
                           "alice@localhost: subscription both (version 2)")
        expect("added alice@localhost to the roster of bob@example.net: "
               "subscription both (version 1)" in r[1],
               "--both adds the mirror item", r)
        r = expect_run(c + ["roster", "alice@localhost"], 0)
        expect(r[1] == "version 2\n"
               "item bob@example.net subscription=both ask=no approved=no "
               "name=- groups=-\n",
               "an update replaces name and groups", r)
        r = expect_run(c + ["roster", "bob@example.net"], 0)
        expect(r[1] == "version 1\n"
               "item alice@localhost subscription=both ask=no approved=no "
               "name=- groups=-\n", "the mirror item", r)
        # Updating the name keeps the subscription.
        expect_run(c + ["roster", "bob@example.net", "add",
                        "alice@localhost", "--name", "Alice"], 0,
                   out="subscription both (version 2)")

        # --both with a remote contact changes one side; with an unknown
        # account of a local domain, nothing.
        r = expect_run(c + ["roster", "alice@localhost", "add",
                            "zoe@remote.example", "--both"], 0,
                       out="zoe@remote.example is not an account here")
        expect_run(c + ["roster", "alice@localhost", "add",
                        "nobody@example.net", "--both"], 1,
                   err="nobody@example.net: no such account, and "
                       "example.net is a domain of this server")
        r = expect_run(c + ["roster", "alice@localhost"], 0)
        expect(r[1].startswith("version 3\n")
               and "nobody@example.net" not in r[1]
               and "item zoe@remote.example subscription=both" in r[1],
               "a refused --both changed nothing", r)

        # A pending request, written as the server would.
        con = sqlite3.connect(db)
        con.execute("INSERT INTO roster_pending VALUES ('localhost', "
                    "'alice', 'eve@remote.example', ?)",
                    (b"<presence type='subscribe'/>",))
        con.commit()
        con.close()
        r = expect_run(c + ["roster", "alice@localhost"], 0)
        expect(r[1].endswith("\npending eve@remote.example\n"),
               "pending requests are listed after the items", r)

        # remove: the contact's side loses its subscription.
        expect_run(c + ["roster", "alice@localhost", "remove",
                        "bob@example.net"], 0,
                   out="removed bob@example.net from the roster of "
                       "alice@localhost (version 4)")
        r = expect_run(c + ["roster", "bob@example.net"], 0)
        expect(r[1] == "version 3\n"
               "item alice@localhost subscription=none ask=no approved=no "
               "name=\"Alice\" groups=-\n",
               "remove unsubscribes the contact's item both ways", r)
        expect_run(c + ["roster", "alice@localhost", "remove",
                        "bob@example.net"], 1,
                   err="starlingctl: alice@localhost: bob@example.net is not "
                       "in the roster")

        # deluser: every other roster loses its subscription to the account.
        expect_run(c + ["roster", "alice@localhost", "add", "carol@localhost",
                        "--both", "--group", "Work"], 0)
        expect_run(c + ["deluser", "carol@localhost"], 0)
        r = expect_run(c + ["roster", "alice@localhost"], 0)
        expect(r[1].startswith("version 6\n")
               and "item carol@localhost subscription=none ask=no "
                   "approved=no name=- groups=\"Work\"\n" in r[1],
               "deluser keeps the item, without subscription, next version",
               r)

        # Errors.
        expect_run(c + ["roster", "nobody@localhost"], 1,
                   err="starlingctl: nobody@localhost: no such account")
        expect_run(c + ["roster", "nobody@localhost", "add",
                        "bob@example.net"], 1,
                   err="nobody@localhost: no such account")
        expect_run(c + ["roster", "al ice@localhost"], 1,
                   err="al ice@localhost: not a valid JID")
        expect_run(c + ["roster", "localhost"], 1, err="needs a user name")
        expect_run(c + ["roster", "alice@localhost", "add", "b ob@x.example"],
                   1, err="b ob@x.example: not a valid JID")
        expect_run(c + ["roster", "alice@localhost", "add",
                        "bob@example.net/phone"], 1, err="without /resource")
        expect_run(c + ["roster", "alice@localhost", "add", "bob@example.net",
                        "--group", ""], 1, err="cannot be empty")
        expect_run(c + ["roster", "alice@localhost", "add", "bob@example.net",
                        "--group", "A", "--group", "A"], 1,
                   err="--group A: given twice")
        expect_run(c + ["roster", "alice@localhost", "add", "bob@example.net",
                        "--name", "a\x01b"], 1, err="--name: not UTF-8 text")
        expect_run(c + ["roster"], 2, err="usage: starlingctl roster JID")
        expect_run(c + ["roster", "alice@localhost", "add"], 2,
                   err="usage: starlingctl roster JID")
        expect_run(c + ["roster", "alice@localhost", "drop", "x@y"], 2,
                   err="usage: starlingctl roster JID")
        expect_run(c + ["roster", "alice@localhost", "remove", "x@y",
                        "--both"], 2,
                   err="--name, --group and --both go with roster JID add")
        expect_run(c + ["users", "--both"], 2,
                   err="--name, --group and --both go with roster JID add")
        expect_run(c + ["roster", "alice@localhost", "add", "x@y", "--name",
                        "a", "--name", "b"], 2, err="--name given twice")
        expect_run(c + ["roster", "alice@localhost", "add", "x@y",
                        "--group"], 2, err="--group needs a group name")
        r = expect_run(c + ["roster", "alice@localhost"], 0)
        expect(r[1].startswith("version 6\n"),
               "failed commands changed nothing", r)


def main():
    global CTL
    if len(sys.argv) != 2:
        sys.exit("usage: test_starlingctl.py STARLINGCTL")
    CTL = os.path.abspath(sys.argv[1])

    with tempfile.TemporaryDirectory(prefix="starlingctl.") as d:
        conf = os.path.join(d, "starlingd.conf")
        with open(conf, "w") as f:
            f.write('hosts = [ "localhost", "example.net" ];\n'
                    'tls = { cert = "localhost.crt";\n'
                    '        key = "localhost.key"; };\n'
                    'sasl = { digest_md5 = true; };\n'
                    'storage = { path = "accounts.db"; };\n')
        db = os.path.join(d, "accounts.db")
        c = ["--config", conf]

        # Help and version.
        r = expect_run(["--help"], 0, out="Usage: starlingctl")
        expect("never accepted on the command line" in r[1],
               "--help says where passwords come from", r)
        expect_run(["--version"], 0, out="starlingctl ")
        expect_run([], 2, err="no command given")
        expect_run(c + ["frobnicate"], 2, err="unknown command 'frobnicate'")

        # Accounts.
        expect_run(c + ["users"], 0, what="users before any account")
        expect(not os.path.exists(db), "listing creates no database")
        expect_run(c + ["adduser", "alice@localhost"], 0,
                   stdin=PASSWORD + "\n", out="created alice@localhost")
        expect_run(c + ["adduser", "Bob@Example.NET"], 0,
                   stdin=PASSWORD + "\r\n", out="created bob@example.net",
                   what="adduser prepares the JID, takes a CRLF line")
        r = expect_run(c + ["users"], 0)
        expect(r[1] == "bob@example.net\nalice@localhost\n"
               or r[1] == "alice@localhost\nbob@example.net\n",
               "users lists both, one a line", r)
        r = expect_run(c + ["users", "LOCALHOST"], 0)
        expect(r[1] == "alice@localhost\n", "users DOMAIN lists one domain", r)

        expect_run(c + ["adduser", "alice@localhost"], 1, stdin="x\n",
                   err="starlingctl: alice@localhost: account exists")
        r = expect_run(c + ["adduser", "alice@localhost", "secret"], 2,
                       err="never taken from the command line",
                       what="a password argument is a usage error")
        expect("created" not in r[1], "and nothing is created", r)
        expect_run(c + ["adduser", "nobody@example.org"], 1, stdin="pw\n",
                   err="starlingctl: nobody@example.org: example.org is not "
                       "served by this server (hosts: localhost, "
                       "example.net)")
        expect_run(c + ["adduser", "localhost"], 1, stdin="pw\n",
                   err="needs a user name")
        expect_run(c + ["adduser", "carol@localhost/phone"], 1, stdin="pw\n",
                   err="without /resource")
        expect_run(c + ["adduser", "ca rol@localhost"], 1, stdin="pw\n",
                   err="ca rol@localhost: not a valid JID")
        expect_run(c + ["adduser", "carol@localhost"], 1, stdin="\n",
                   err="starlingctl: empty password")
        expect_run(c + ["adduser", "carol@localhost"], 1, stdin="",
                   err="standard input is empty")
        expect_run(c + ["adduser", "carol@localhost"], 1, stdin="a\x07b\n",
                   err="SASLprep")
        r = expect_run(c + ["users", "localhost"], 0)
        expect(r[1] == "alice@localhost\n", "failed adds left no account", r)

        # On a terminal: asked twice, without echo.
        code, out, shown, echo = run_tty(
            c + ["adduser", "tty@localhost"], ["tty secret", "tty secret"])
        expect(code == 0 and "created tty@localhost" in out,
               "adduser on a terminal", (code, out, shown))
        expect("New password: " in shown
               and "Retype new password: " in shown
               and "tty secret" not in shown,
               "the terminal showed the prompts but not the password",
               (code, out, shown))
        expect(echo, "echo is back on afterwards")
        code, out, shown, echo = run_tty(
            c + ["adduser", "tty2@localhost"], ["one", "two"])
        expect(code == 1 and "do not match" in shown,
               "different passwords on a terminal are refused",
               (code, out, shown))
        code, out, shown, echo = run_tty(
            c + ["adduser", "tty3@localhost"], [], interrupt=True)
        expect(code != 0 and echo,
               "interrupted at the prompt: echo is restored",
               (code, out, shown))
        expect_run(c + ["deluser", "tty@localhost"], 0)

        expect_run(c + ["passwd", "alice@localhost"], 0,
                   stdin="another password\n",
                   out="changed the password of alice@localhost")
        expect_run(c + ["passwd", "zed@localhost"], 1, stdin="pw\n",
                   err="zed@localhost: no such account")
        expect_run(c + ["passwd"], 2, err="usage: starlingctl passwd JID")

        # The database holds no password, in plain text or as UTF-16.
        blobs = b""
        for name in os.listdir(d):
            if name.startswith("accounts.db"):
                with open(os.path.join(d, name), "rb") as f:
                    blobs += f.read()
        expect(len(blobs) > 0, "the database exists")
        for pw in (PASSWORD, "another password"):
            expect(pw.encode() not in blobs
                   and pw.encode("utf-16-le") not in blobs,
                   "no plaintext '%s' in the database" % pw)

        expect_run(c + ["deluser", "alice@localhost"], 0,
                   out="deleted alice@localhost")
        expect_run(c + ["deluser", "alice@localhost"], 1,
                   err="alice@localhost: no such account")
        expect_run(c + ["deluser", "bob@example.net"], 0)
        r = expect_run(c + ["users"], 0)
        expect(r[1] == "", "users is empty after deleting everyone", r)

        # Certificates and the check.
        r = expect_run(c + ["check"], 1,
                       err="starlingd.conf:2: tls.cert: cannot open",
                       what="check reports the missing certificate file "
                            "with its line")
        expect("localhost.crt: No such file or directory" in r[2]
               and "starlingd.conf:3: tls.key: cannot open" in r[2],
               "and the missing key with its line", r)
        expect_run(["cert", "localhost", "--days", "10", "--out", d], 0,
                   out="wrote ")
        expect(os.path.exists(os.path.join(d, "localhost.crt"))
               and os.path.exists(os.path.join(d, "localhost.key")),
               "cert wrote localhost.crt and localhost.key")
        mode = os.stat(os.path.join(d, "localhost.key")).st_mode & 0o777
        expect(mode == 0o600, "the key is mode 0600 (got %o)" % mode)
        expect_run(["cert", "localhost", "--out", d], 1,
                   err="exists; use --force",
                   what="cert does not overwrite without --force")
        expect_run(["cert", "localhost", "--out", d, "--force"], 0,
                   what="cert --force overwrites")
        expect_run(["cert", "localhost", "--days", "0"], 2,
                   err="--days needs a number")
        expect_run(["cert", "bad host"], 1, err="not a valid host name")

        # The certificate covers localhost but not example.net.
        r = expect_run(c + ["check"], 1,
                       err="does not cover host 'example.net'")
        with open(conf, "w") as f:
            f.write('hosts = [ "localhost" ];\n'
                    'tls = { cert = "localhost.crt";\n'
                    '        key = "localhost.key"; };\n'
                    'storage = { path = "accounts.db"; };\n')
        r = expect_run(c + ["check"], 0, out="ok: " + conf)
        expect("hosts: localhost" in r[1]
               and "127.0.0.1:5223 (direct TLS)" in r[1],
               "check prints a summary", r)

        # Errors in the file itself, with file and line.
        with open(conf, "a") as f:
            f.write('limits = {\n  max_depth = 3;\n};\n')
        expect_run(c + ["check"], 1,
                   err="starlingctl: %s:6: limits.max_depth: 3 is out of "
                       "range (8..1024)" % conf)
        expect_run(c + ["users"], 1, err="%s:6:" % conf,
                   what="account commands refuse a broken file too")

        # Without --config: ./starlingd.conf, else the built-in defaults
        # with ./starling.db.
        with open(conf, "w") as f:
            f.write('hosts = [ "here.example" ];\n')
        expect_run(["adduser", "dave@here.example"], 0, stdin="pw here\n",
                   cwd=d, what="./starlingd.conf is the default config")
        expect(os.path.exists(os.path.join(d, "starling.db")),
               "its default storage is starling.db beside it")
        empty = os.path.join(d, "empty")
        os.mkdir(empty)
        expect_run(["adduser", "erin@localhost"], 0, stdin="pw\n", cwd=empty,
                   what="built-in defaults serve localhost")
        r = expect_run(["users"], 0, cwd=empty)
        expect(r[1] == "erin@localhost\n"
               and os.path.exists(os.path.join(empty, "starling.db")),
               "built-in defaults keep accounts in ./starling.db", r)
        r = expect_run(["check"], 1, cwd=empty,
                       err="built-in defaults: c2s.require_encryption is on")

    roster_tests()

    if FAILURES:
        print("%d failure(s)" % len(FAILURES))
        sys.exit(1)
    print("all passed")


if __name__ == "__main__":
    main()
