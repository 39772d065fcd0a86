"""Interop: two people on Profanity (Debian's `profanity`, a console client
on libstrophe) add each other, subscribe, see each other online and chat,
through starlingd.

Each Profanity runs in its own session of a private tmux server (socket in
the test's directory, its own config: no status line, 200x50, panes kept
when the program exits) with an empty environment apart from HOME, the XDG
directories (all inside the test's directory, so accounts, preferences and
logs never clash), TERM=screen and LANG=C.UTF-8. The test types into it
with `tmux send-keys` what a person would type, and reads the screen with
`tmux capture-pane` (plain text: colours never reach the assertions).
Every distinct screen is saved to USER-screens.txt in the test's
directory; when a step fails, the last screens of both panes and the tail
of each Profanity's debug log (libstrophe's SENT/RECV lines) are printed
and the directory is kept.

TLS is real and verified. Profanity hands libstrophe one "certificate
path" (`tls.certpath` in profrc, what `/tls certpath set DIR` writes): an
OpenSSL hashed directory holding the test certificate. libstrophe then
verifies the server's chain and host name (localhost, the JID's domain)
against it like any CA, so no `tls trust` / `tls disable` account policy
and no interactive `/tls allow` is needed; a certificate that does not
verify shows Profanity's "TLS certificate verification failed" prompt,
which fails the test at once.

Preferences written before the first start (profrc): the certificate path;
no version check, splash or desktop notifications; no autoping (a lost
pong must not log anyone out in the middle of a step); a short input
block (100 ms, not dynamic) so that Profanity handles network events
promptly while nobody types.

The scenario (RFC 6121 through a real client's UI):
  1. both log in with /connect JID server 127.0.0.1 port PORT, typing the
     password at Profanity's prompt;
  2. alice: /roster add bob@localhost, /sub request bob@localhost; her
     /sub sent lists bob (the server's roster push has ask='subscribe');
  3. bob's console says "Received authorization request from
     alice@localhost", /sub received lists alice; bob: /sub allow;
  4. alice's console says "Subscription received from bob@localhost" and
     /sub show says 'to'; bob: /sub request alice@localhost; alice sees the
     request and /sub allow-s it;
  5. /sub show says 'both' on both sides, each console announces the other
     online ("++ ... is online") and /roster online lists the other;
  6. alice: /msg bob@localhost TEXT; bob's console announces the message,
     bob opens the chat window (/msg alice@localhost) and sees it, answers
     by typing in that window; alice's chat window shows the answer;
  7. alice: /blocked add bob@localhost (XEP-0191); /blocked lists him, and
     at bob she is gone from /roster online; /blocked remove brings her
     back;
  8. neither Profanity received a single error reply, from the login on
     (libstrophe's log of the traffic).

Run: /usr/bin/python3 test_profanity.py STARLINGD STARLINGCTL; with
KEEP_PROFANITY_DIR=1 the directory is kept when the test passes too.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import harness  # noqa: E402

TMUX = shutil.which('tmux') or '/usr/bin/tmux'
PROFANITY = shutil.which('profanity') or '/usr/bin/profanity'
OPENSSL = shutil.which('openssl') or '/usr/bin/openssl'

# Seconds a step may take: Profanity polls its input every 100 ms and the
# server answers at once; generous for a loaded CI machine.
STEP = max(harness.TIMEOUT, 10)
COLS, ROWS = 200, 50

# Screens that end a wait at once: nothing good can follow them.
FATAL = (
    (r'TLS certificate verification failed', 'Profanity did not accept the '
     'server certificate (tls.certpath not honoured?)'),
    (r'Login failed', 'Profanity could not log in'),
    (r'Lost connection', 'Profanity lost its connection to the server'),
)


class Tmux:
    """A tmux server of our own on a socket in `d`, with a config file of
    ours (not ~/.tmux.conf). Sessions are started detached at COLSxROWS."""

    def __init__(self, d):
        self.sock = os.path.join(d, 'tmux.sock')
        self.conf = os.path.join(d, 'tmux.conf')
        with open(self.conf, 'w') as f:
            f.write('set -g status off\n'
                    'set -g remain-on-exit on\n'
                    'set -g default-terminal screen\n'
                    'set -g history-limit 2000\n')
        self.env = {k: v for k, v in os.environ.items() if k != 'TMUX'}
        self.server_pid = None

    def run(self, *args, check=True):
        r = subprocess.run([TMUX, '-S', self.sock, '-f', self.conf] + list(args),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=self.env,
                           timeout=15)
        if check and r.returncode != 0:
            raise AssertionError('tmux %s failed (%d): %s'
                                 % (' '.join(args), r.returncode, r.stderr))
        return r.stdout

    def new_session(self, name, argv, env):
        """Starts argv in a new detached session with exactly env; returns
        the program's PID (the pane's: the shell execs into it)."""
        cmd = 'exec env -i %s %s' % (
            ' '.join(shlex.quote('%s=%s' % kv) for kv in sorted(env.items())),
            ' '.join(shlex.quote(a) for a in argv))
        self.run('new-session', '-d', '-s', name, '-x', str(COLS), '-y', str(ROWS), cmd)
        if self.server_pid is None:
            self.server_pid = int(self.run('display-message', '-p', '-t', name,
                                           '#{pid}').strip())
        return int(self.run('display-message', '-p', '-t', name,
                            '#{pane_pid}').strip())

    def stop(self):
        """kill-server on our socket; then SIGKILL to its PID if needed."""
        if self.server_pid is None:
            return
        self.run('kill-server', check=False)
        _wait_gone(self.server_pid, 5)
        _kill(self.server_pid)
        self.server_pid = None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is gone for our purpose.
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def _wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _alive(pid)


def _kill(pid):
    if _alive(pid):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def trusted_cert_dir(d, cert):
    """An OpenSSL hashed certificate directory (what libstrophe's capath
    wants) holding cert: the cert and a HASH.0 link to it."""
    os.makedirs(d)
    shutil.copy(cert, os.path.join(d, 'starling-test.pem'))
    h = subprocess.run([OPENSSL, 'x509', '-hash', '-noout', '-in', cert],
                       check=True, stdout=subprocess.PIPE, text=True).stdout.strip()
    os.symlink('starling-test.pem', os.path.join(d, h + '.0'))
    return d


class Profanity:
    """One Profanity in a tmux session named after its user."""

    def __init__(self, tmux, d, user, password):
        self.tmux = tmux
        self.user = user
        self.jid = user + '@localhost'
        self.password = password
        self.home = os.path.join(d, user)
        config = os.path.join(self.home, '.config')
        data = os.path.join(self.home, '.local', 'share')
        for sub in (os.path.join(config, 'profanity'), data,
                    os.path.join(self.home, '.cache')):
            os.makedirs(sub)
        certs = trusted_cert_dir(os.path.join(self.home, 'certs'),
                                 harness.test_certificate()[0])
        with open(os.path.join(config, 'profanity', 'profrc'), 'w') as f:
            f.write('[connection]\n'
                    'tls.certpath=%s\n'
                    'autoping=0\n'
                    '[ui]\n'
                    'splash=false\n'
                    'vercheck=false\n'
                    'inpblock=100\n'
                    'inpblock.dynamic=false\n'
                    '[notifications]\n'
                    'message=false\n'
                    'room=false\n'
                    'invite=false\n'
                    'sub=false\n'
                    'typing=false\n' % certs)
        self.log = os.path.join(data, 'profanity', 'logs', 'profanity.log')
        self.screens_file = os.path.join(d, user + '-screens.txt')
        self.screens = []        # distinct screens, in order
        self.t0 = time.monotonic()
        env = {'HOME': self.home, 'XDG_CONFIG_HOME': config,
               'XDG_DATA_HOME': data, 'XDG_CACHE_HOME': os.path.join(self.home, '.cache'),
               'TERM': 'screen', 'LANG': 'C.UTF-8', 'PATH': '/usr/bin:/bin'}
        self.pid = tmux.new_session(user, [PROFANITY, '--log', 'DEBUG'], env)

    # -- keyboard and screen

    def type(self, line):
        """Types line and Enter, as a person would."""
        self.tmux.run('send-keys', '-t', self.user, '-l', '--', line)
        self.tmux.run('send-keys', '-t', self.user, 'Enter')

    def screen(self):
        """The visible screen as text (trailing blanks cut); each new one
        is appended to USER-screens.txt."""
        text = self.tmux.run('capture-pane', '-p', '-t', self.user)
        text = '\n'.join(l.rstrip() for l in text.split('\n')).rstrip('\n')
        if not self.screens or self.screens[-1] != text:
            self.screens.append(text)
            with open(self.screens_file, 'a') as f:
                f.write('===== %s, %.2f s =====\n%s\n'
                        % (self.user, time.monotonic() - self.t0, text))
        return text

    def dead(self):
        return self.tmux.run('display-message', '-p', '-t', self.user,
                             '#{pane_dead}', check=False).strip() == '1'

    def poll(self, what, check, resend=None, every=2.0, timeout=STEP):
        """Reads the screen until check(screen) is true and returns its
        value. With resend, types that command first and again every
        `every` seconds (for answers that depend on what the server has
        sent by then). Fails at the deadline, at a FATAL screen, or when
        Profanity has exited."""
        deadline = time.monotonic() + timeout
        next_send = time.monotonic()
        while True:
            if resend is not None and time.monotonic() >= next_send:
                self.type(resend)
                next_send = time.monotonic() + every
            text = self.screen()
            value = check(text)
            if value:
                return value
            for pat, why in FATAL:
                if re.search(pat, text):
                    raise AssertionError('%s: %s while waiting for %s'
                                         % (self.user, why, what))
            if self.dead():
                raise AssertionError('%s: Profanity exited while waiting for %s'
                                     % (self.user, what))
            if time.monotonic() >= deadline:
                raise AssertionError('%s: timed out after %.0f s waiting for %s'
                                     % (self.user, timeout, what))
            time.sleep(0.1)

    def expect(self, pattern, what=None, **kw):
        """poll() for a regex (re.M) on the screen; returns the match."""
        rx = re.compile(pattern, re.M)
        return self.poll(what or '/%s/' % pattern, rx.search, **kw)

    def expect_last(self, pattern, value, what, resend, **kw):
        """Types resend until the LAST match of pattern on the screen has
        group 1 == value (older answers stay on the screen above)."""
        rx = re.compile(pattern, re.M)

        def check(text):
            found = rx.findall(text)
            return bool(found) and found[-1] == value
        return self.poll(what, check, resend=resend, **kw)

    # -- steps

    def login(self, port):
        self.expect(r'Welcome to Profanity', 'the first-run console')
        self.type('/connect %s server 127.0.0.1 port %d' % (self.jid, port))
        self.expect(r'Enter password:', 'the password prompt')
        self.type(self.password)
        self.expect(r'%s/\S+ logged in successfully' % re.escape(self.jid),
                    'the login of %s' % self.jid)
        # The first-run text fills half the console: clear it, so that
        # what the steps wait for does not scroll away. Nobody else acts
        # before both are logged in, so nothing is lost by it.
        self.type('/clear')
        self.poll('the cleared console',
                  lambda text: 'Welcome to Profanity' not in text)

    def quit(self):
        if self.dead():
            return
        try:
            self.type('/quit')
        except AssertionError:
            return
        _wait_gone(self.pid, 5)

    def debug_tail(self, lines=60):
        """The last libstrophe SENT/RECV lines of the debug log."""
        try:
            with open(self.log, encoding='utf-8', errors='replace') as f:
                out = [l.rstrip('\n') for l in f
                       if ' SENT: ' in l or ' RECV: ' in l or ': ERR: ' in l
                       or ': WRN: ' in l]
        except OSError as e:
            return '(no log: %s)' % e
        return '\n'.join(out[-lines:])

    def report(self, screens=3):
        out = []
        for s in self.screens[-screens:]:
            out.append('----- %s screen -----\n%s' % (self.user, s))
        out.append('----- %s: Profanity debug log, XMPP traffic (tail) -----\n%s'
                   % (self.user, self.debug_tail()))
        return '\n'.join(out)


class ProfanityInterop(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='starling-profanity-')
        self.srv = harness.Server()
        self.tmux = Tmux(self.dir)
        self.profs = []
        self.failed = False
        self.addCleanup(self._teardown)

    def _teardown(self):
        for p in self.profs:
            p.quit()
        self.tmux.stop()
        for p in self.profs:
            _kill(p.pid)
        if self.failed:
            for p in self.profs:
                sys.stderr.write('\n' + p.report() + '\n')
            sys.stderr.write('\nscreens and Profanity logs kept in %s\n' % self.dir)
        elif os.environ.get('KEEP_PROFANITY_DIR'):
            sys.stderr.write('\nscreens and Profanity logs kept in %s\n' % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.srv.stop()

    def start(self, user):
        p = Profanity(self.tmux, self.dir, user, self.srv.users[user + '@localhost'])
        self.profs.append(p)
        return p

    def test_subscribe_presence_chat(self):
        try:
            self.scenario()
        except BaseException:
            self.failed = True
            raise

    def scenario(self):
        alice = self.start('alice')
        bob = self.start('bob')
        alice.login(self.srv.port)
        bob.login(self.srv.port)

        # alice adds bob and asks for his presence
        alice.type('/roster add bob@localhost')
        alice.expect(r'Roster item added: bob@localhost', "the roster push of bob to alice")
        alice.type('/sub request bob@localhost')
        alice.expect(r'Sent subscription request to bob@localhost\.')
        alice.expect(r'Awaiting subscription responses from:.*\n.* -   bob@localhost\b',
                     "bob in alice's pending requests (ask='subscribe' pushed)",
                     resend='/sub sent')

        # bob sees the request and allows it
        bob.expect(r'Received authorization request from alice@localhost\b',
                   "alice's request at bob")
        bob.expect(r'Outstanding subscription requests from:.*\n.* -   alice@localhost\b',
                   "alice in bob's /sub received", resend='/sub received')
        bob.type('/sub allow alice@localhost')
        bob.expect(r'Accepted subscription for alice@localhost')

        alice.expect(r'Subscription received from bob@localhost\b',
                     "bob's approval at alice")
        alice.expect_last(r'bob@localhost subscription status: (\w+)', 'to',
                          "alice's subscription to bob ('to')",
                          resend='/sub show bob@localhost')

        # bob asks back, alice allows
        bob.type('/sub request alice@localhost')
        alice.expect(r'Received authorization request from bob@localhost\b',
                     "bob's request at alice")
        alice.type('/sub allow bob@localhost')
        bob.expect(r'Subscription received from alice@localhost\b',
                   "alice's approval at bob")

        # both: 'both', and each sees the other online
        alice.expect_last(r'bob@localhost subscription status: (\w+)', 'both',
                          "'both' in alice's roster", resend='/sub show bob@localhost')
        bob.expect_last(r'alice@localhost subscription status: (\w+)', 'both',
                        "'both' in bob's roster", resend='/sub show alice@localhost')
        alice.expect(r'\+\+ bob@localhost\b.* is online', "bob online at alice")
        bob.expect(r'\+\+ alice@localhost\b.* is online', "alice online at bob")
        for me, other in ((alice, 'bob@localhost'), (bob, 'alice@localhost')):
            me.poll('%s in /roster online of %s' % (other, me.user),
                    lambda text, other=other: _roster_lists(text, other, 'both'),
                    resend='/roster online')

        # chat: alice writes, bob reads it in his chat window and answers there
        alice.type('/msg bob@localhost hello bob, this is alice')
        alice.expect(r'me: hello bob, this is alice', "alice's own line in her chat window")
        bob.expect(r'<< chat message: alice@localhost\b', "the message notice at bob")
        bob.type('/msg alice@localhost')
        bob.expect(r'^ alice@localhost\b.*\[online\]',
                   "bob's chat window with alice, alice shown online")
        bob.expect(r'alice@localhost(?:/\S+)?: hello bob, this is alice',
                   "alice's message in bob's chat window")
        bob.type('hi alice, bob here')
        bob.expect(r'me: hi alice, bob here', "bob's own line")
        alice.expect(r'^ bob@localhost\b.*\[online\]', "alice's chat window, bob online")
        alice.expect(r'bob@localhost(?:/\S+)?: hi alice, bob here',
                     "bob's answer in alice's chat window")

        # XEP-0191: alice blocks bob from her console; her list shows him,
        # and at bob she disappears from /roster online; unblocked, she is
        # back.
        for p in (alice, bob):
            p.type('/win 1')
        alice.type('/blocked add bob@localhost')
        alice.expect(r'User bob@localhost successfully blocked',
                     "the block's result at alice")
        alice.expect(r'Blocked users:\n(?:.*\n)*?.*bob@localhost',
                     "bob in alice's /blocked", resend='/blocked')
        bob.expect(r'-- alice@localhost \(\S+\) is offline',
                   "alice offline at bob (XEP-0191 §3.3)")
        bob.poll("alice gone from bob's /roster online",
                 lambda text: _roster_online_lacks(text, 'alice@localhost'),
                 resend='/roster online')
        alice.type('/blocked remove bob@localhost')
        alice.expect(r'User bob@localhost successfully unblocked',
                     "the unblock's result at alice")
        bob.poll("alice back in bob's /roster online",
                 lambda text: _roster_lists(text, 'alice@localhost', 'both'),
                 resend='/roster online')

        # Issue 10: not one error reply all along, from the login on (the
        # XMPP traffic libstrophe logged for each).
        for p in (alice, bob):
            with open(p.log, encoding='utf-8', errors='replace') as f:
                errors = [l.strip() for l in f
                          if ' RECV: ' in l and 'type="error"' in l]
            self.assertEqual(errors, [], '%s got error replies' % p.user)


def _roster_lists(text, jid, subscription):
    """True when the last `/roster online` output on the screen lists jid
    with that subscription."""
    head = text.rfind('Roster: jid (nick) - subscription - groups')
    if head < 0:
        return False
    return re.search(r'-   %s - %s\b' % (re.escape(jid), subscription),
                     text[head:]) is not None


def _roster_online_lacks(text, jid):
    """True when the last `/roster online` answer on the screen does not
    list jid (or says that nobody is online)."""
    head = text.rfind('Roster: jid (nick) - subscription - groups')
    none = text.rfind('No contacts are online.')
    if none > head:
        return True
    if head < 0:
        return False
    return re.search(r'-   %s - ' % re.escape(jid), text[head:]) is None


if __name__ == '__main__':
    harness.main()
