"""Interop: libstarling and the `starling` CLI against Prosody (a server
nobody here wrote), with slixmpp as a second client.

One Prosody 0.12 (Debian's `prosody` package, never its system service)
runs in the foreground with a throwaway config in a temporary directory:
loopback only, STARTTLS and direct TLS (XEP-0368) ports chosen free at
start, s2s/http/components off, `internal_hashed` accounts (SCRAM),
encryption required, and a certificate for localhost issued by a test CA
made here with the openssl CLI, so the client has to validate a real chain
(--ca-file CA), not trust a self-signed leaf. Accounts are made with
`prosodyctl register` on the data directory before Prosody starts; Prosody
is stopped with SIGTERM by its PID at the end (and killed at exit if
anything went wrong).

What is checked (feature set client items): SCRAM over STARTTLS and direct
TLS with the mechanism asserted (Prosody offers PLAIN too; the client must
not pick it), certificate validation, `send`/`listen`, the roster
(RFC 6121 §2), subscription request / approval / denial (§3), and message
and IQ exchange with slixmpp, including the library's automatic
service-unavailable for IQs nobody handles (RFC 6120 §8.4).

The direct TLS listener has a second port limited to TLS 1.2, where
Prosody 0.12 offers SCRAM-SHA-1-PLUS with tls-unique (it has no
tls-exporter and does not list its bindings with XEP-0440); on TLS 1.3 it
offers SCRAM-SHA-1 and PLAIN only.

Run: STARLING=path/to/starling /usr/bin/python3 test_prosody.py [unittest
args]; KEEP_PROSODY_LOG=FILE keeps a copy of Prosody's debug log.
"""
import asyncio
import atexit
import json
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import xml.etree.ElementTree as ET

try:
    import slixmpp
    from slixmpp.exceptions import IqError
except ImportError:  # pragma: no cover
    slixmpp = None

STARLING = os.environ.get('STARLING')
PROSODY = shutil.which('prosody') or '/usr/bin/prosody'
PROSODYCTL = shutil.which('prosodyctl') or '/usr/bin/prosodyctl'
OPENSSL = shutil.which('openssl') or '/usr/bin/openssl'

TIMEOUT = 15  # seconds to wait for anything that must come

USERS = {u: u + '-secret' for u in (
    'alice', 'bob', 'carol',          # send / listen / slixmpp
    'erin', 'frank',                  # subscribe + approve
    'grace', 'heidi',                 # subscribe + deny
    'ivan',                           # never online
    'judy',                           # roster add / remove
)}
SCRAM = ('SCRAM-SHA-1', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256',
         'SCRAM-SHA-256-PLUS', 'SCRAM-SHA-512', 'SCRAM-SHA-512-PLUS')

_procs = []
_tmpdirs = []


def _cleanup():
    for p in _procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(5)
            except Exception:
                pass
    for d in _tmpdirs:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def lua_str(s):
    return '"%s"' % s.replace('\\', '\\\\').replace('"', '\\"')


def make_ca_and_cert(d):
    """A test CA and a localhost certificate it issued (openssl CLI).
    Returns (ca.crt, localhost.crt, localhost.key)."""
    ca_crt, ca_key = os.path.join(d, 'ca.crt'), os.path.join(d, 'ca.key')
    crt, key = os.path.join(d, 'localhost.crt'), os.path.join(d, 'localhost.key')
    csr, ext = os.path.join(d, 'localhost.csr'), os.path.join(d, 'ext.cnf')
    ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']
    run = dict(check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    subprocess.run([OPENSSL, 'req', '-x509'] + ec +
                   ['-days', '3', '-subj', '/CN=Starling Interop Test CA',
                    '-addext', 'basicConstraints=critical,CA:TRUE',
                    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
                    '-keyout', ca_key, '-out', ca_crt], **run)
    subprocess.run([OPENSSL, 'req'] + ec +
                   ['-subj', '/CN=localhost', '-keyout', key, '-out', csr], **run)
    with open(ext, 'w') as f:
        f.write('subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n'
                'keyUsage=critical,digitalSignature\n'
                'extendedKeyUsage=serverAuth\n')
    subprocess.run([OPENSSL, 'x509', '-req', '-in', csr, '-CA', ca_crt,
                    '-CAkey', ca_key, '-set_serial', '2', '-days', '3',
                    '-extfile', ext, '-out', crt], **run)
    return ca_crt, crt, key


class Prosody:
    """One Prosody process in the foreground with its own directory."""

    def __init__(self, users):
        self.dir = tempfile.mkdtemp(prefix='starling-prosody-')
        _tmpdirs.append(self.dir)
        self.conf = os.path.join(self.dir, 'prosody.cfg.lua')
        self.log = os.path.join(self.dir, 'prosody.log')
        self.pidfile = os.path.join(self.dir, 'prosody.pid')
        self.data = os.path.join(self.dir, 'data')
        os.makedirs(os.path.join(self.dir, 'certs'))  # empty: no guessing
        os.makedirs(self.data)
        self.ca, self.cert, self.key = make_ca_and_cert(self.dir)
        self.proc = None
        self.port = self.tls_port = self.tls12_port = None
        # Ports are picked free and then bound by Prosody; another process
        # may take one in between, which Prosody only logs: try again then.
        for _attempt in range(3):
            self.port, self.tls_port, self.tls12_port = (
                free_port(), free_port(), free_port())
            self.write_config()
            if _attempt == 0:
                for user, pw in users.items():
                    self.register(user, pw)
            if self.start():
                return
            self.stop()
        raise RuntimeError('prosody did not start:\n' + self.log_text())

    def write_config(self):
        ssl_ = '{ certificate = %s, key = %s }' % (lua_str(self.cert),
                                                   lua_str(self.key))
        with open(self.conf, 'w') as f:
            f.write('''-- throwaway config written by test_prosody.py
run_as_root = true
pidfile = %(pidfile)s
data_path = %(data)s
certificates = %(certs)s
log = { { levels = { min = "debug" }, to = "file", filename = %(log)s } }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { %(port)d }
c2s_direct_tls_ports = { %(tls_port)d, %(tls12_port)d }
legacy_ssl_ports = {}
s2s_ports = {}
http_ports = {}
https_ports = {}
component_ports = {}
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "posix" }
modules_disabled = { "s2s", "s2s_auth_certs", "offline" }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
ssl = %(ssl)s
-- Direct TLS replaces the global ssl table; its second port speaks TLS 1.2
-- only, where Prosody offers SCRAM-SHA-1-PLUS with tls-unique.
c2s_direct_tls_ssl = { certificate = %(cert)s, key = %(key)s,
  [%(tls12_port)d] = { protocol = "tlsv1_2" } }

VirtualHost "localhost"
  ssl = %(ssl)s
''' % {'pidfile': lua_str(self.pidfile), 'data': lua_str(self.data),
       'certs': lua_str(os.path.join(self.dir, 'certs')),
       'log': lua_str(self.log), 'port': self.port,
       'tls_port': self.tls_port, 'tls12_port': self.tls12_port,
       'cert': lua_str(self.cert), 'key': lua_str(self.key), 'ssl': ssl_})

    def register(self, user, password):
        r = subprocess.run([PROSODYCTL, '--config', self.conf, 'register',
                            user, 'localhost', password],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError('prosodyctl register %s: %s' % (user, r.stdout))

    def start(self):
        """True once Prosody logs both listeners as active."""
        if os.path.exists(self.log):
            os.rename(self.log, self.log + '.failed')
        out = open(os.path.join(self.dir, 'stdout.txt'), 'ab')
        self.proc = subprocess.Popen([PROSODY, '-F', '--config', self.conf],
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT,
                                     start_new_session=True)
        out.close()
        _procs.append(self.proc)
        ports = (self.port, self.tls_port, self.tls12_port)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = self.log_text()
            if 'Failed to open server port' in text:
                return False
            active = [l for l in text.splitlines()
                      if "Activated service 'c2s" in l]
            if (all(any('[127.0.0.1]:%d' % p in l for l in active)
                    for p in ports) and
                    all(self._accepts(p) for p in ports)):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    @staticmethod
    def _accepts(port):
        try:
            socket.create_connection(('127.0.0.1', port), 1).close()
            return True
        except OSError:
            return False

    def log_text(self, start=0):
        try:
            with open(self.log, encoding='utf-8', errors='replace') as f:
                f.seek(start)
                return f.read()
        except FileNotFoundError:
            return ''

    def log_size(self):
        try:
            return os.path.getsize(self.log)
        except FileNotFoundError:
            return 0

    def stop(self):
        """SIGTERM to our Prosody's PID; returns its exit status."""
        p = self.proc
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.proc = None
        return p.returncode


# ------------------------------------------------------------------ CLI

def starling(srv, user, args, password=None, ca=True, direct=False,
             port=None, timeout=30):
    """Runs `starling` as user@localhost; returns the CompletedProcess.
    direct: XEP-0368 direct TLS (to port, default Prosody's first one)."""
    env = dict(os.environ)
    env['STARLING_PASSWORD'] = password or USERS[user]
    env.pop('STARLING_JID', None)
    cmd = [STARLING, '--jid', user + '@localhost',
           '--server', '127.0.0.1:%d'
           % (port or (srv.tls_port if direct else srv.port))]
    if direct:
        cmd.append('--direct-tls')
    if ca:
        cmd += ['--ca-file', srv.ca]
    return subprocess.run(cmd + args, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=timeout)


class Listener:
    """`starling --verbose listen --json` in the background. Every stdout
    line must be a JSON object; they are kept in order, and expect() looks
    for the next one that matches."""

    def __init__(self, srv, user):
        env = dict(os.environ, STARLING_PASSWORD=USERS[user])
        self.p = subprocess.Popen(
            [STARLING, '--verbose', '--jid', user + '@localhost', '--server',
             '127.0.0.1:%d' % srv.port, '--ca-file', srv.ca, 'listen', '--json'],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        _procs.append(self.p)
        self.objs = []        # parsed lines, in order
        self.cursor = 0       # expect() looks from here on
        self.eof = False
        self.cond = threading.Condition()
        self.err = []
        self.jid = None
        self.mechanism = None
        self._connected = threading.Event()
        threading.Thread(target=self._read_out, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        if not self._connected.wait(TIMEOUT) or self.jid is None:
            self.stop()
            raise AssertionError('listen as %s did not connect: %s'
                                 % (user, ''.join(self.err)))
        # "listening as" comes before the initial presence is sent; a
        # message to the bare JID is only delivered to an available
        # resource, so wait until Prosody reflects our presence to us.
        self.find(start=0, kind='presence', type='available',
                  **{'from': self.jid})

    def _read_out(self):
        for line in self.p.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {'kind': 'NOT JSON', 'line': line}
            with self.cond:
                self.objs.append(obj)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    def _read_err(self):
        for line in self.p.stderr:
            self.err.append(line)
            # "starling: connected as JID with MECH" (--verbose)
            if line.startswith('starling: connected as '):
                words = line.split()
                self.jid = words[3]
                self.mechanism = words[5] if len(words) > 5 else None
            if line.startswith('starling: listening as '):
                self._connected.set()
        self._connected.set()

    def find(self, start, timeout=TIMEOUT, **want):
        """Index of the first line at or after start matching want."""
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.objs):
                    obj = self.objs[i]
                    if obj.get('kind') == 'NOT JSON':
                        raise AssertionError('listen --json printed a '
                                             'non-JSON line: %r' % obj['line'])
                    if all(obj.get(k) == v for k, v in want.items()):
                        return i
                    i += 1
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    raise AssertionError(
                        'listen printed no %r; it printed %r; stderr %r'
                        % (want, self.objs[start:], self.err))
                self.cond.wait(left)

    def expect(self, timeout=TIMEOUT, **want):
        """The next line (after the last one expected) matching want."""
        i = self.find(self.cursor, timeout, **want)
        self.cursor = i + 1
        return self.objs[i]

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


def roster_list(test, srv, user):
    """{jid: (subscription, name, asked)} from `starling roster list`."""
    r = starling(srv, user, ['roster', 'list'])
    test.assertEqual(r.returncode, 0, r.stderr)
    items = {}
    for line in r.stdout.splitlines():
        f = line.split('\t')
        items[f[0]] = (f[1], f[2] if len(f) > 2 else '',
                       '(asked)' in f[3:])
    return items


# -------------------------------------------------------------- slixmpp

class SlixBot:
    """A slixmpp client on its own thread and event loop, so that the
    tests can run the CLI with plain blocking subprocess calls."""

    def __init__(self, srv, user, resource='slix'):
        self.loop = asyncio.new_event_loop()
        self.messages = queue.Queue()
        self.started = threading.Event()
        self.failure = None
        self.thread = threading.Thread(target=self.loop.run_forever,
                                       daemon=True)
        self.thread.start()
        self.call(self._create(srv, '%s@localhost/%s' % (user, resource),
                               USERS[user]))
        if not self.started.wait(TIMEOUT) or self.failure:
            self.close()
            raise AssertionError('slixmpp login as %s failed: %s'
                                 % (user, self.failure))

    async def _create(self, srv, jid, password):
        x = slixmpp.ClientXMPP(jid, password)
        # Trust the test CA only (slixmpp verifies the hostname too).
        x.ssl_context = ssl.create_default_context(cafile=srv.ca)
        x.register_plugin('xep_0199')
        x.add_event_handler('session_start', self._on_start)
        x.add_event_handler('failed_all_auth', self._on_failed)
        x.add_event_handler('message', self.messages.put)
        self.x = x
        x.connect(('127.0.0.1', srv.port))

    def _on_start(self, _event):
        self.x.send_presence()
        self.x.get_roster()
        self.started.set()

    def _on_failed(self, _event):
        self.failure = 'authentication failed'
        self.started.set()

    def call(self, coro, timeout=TIMEOUT + 5):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        async def bye():
            fut = self.x.disconnect()
            if fut is not None:
                try:
                    await asyncio.wait_for(fut, 5)
                except Exception:
                    pass
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()
        try:
            if hasattr(self, 'x'):
                self.call(bye(), 10)
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


# ---------------------------------------------------------------- tests

class ProsodyInterop(unittest.TestCase):
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = Prosody(USERS)

    @classmethod
    def tearDownClass(cls):
        if cls.srv is not None:
            rc = cls.srv.stop()
            if rc not in (0, None):
                sys.stderr.write('prosody exited %s\n' % rc)

    def setUp(self):
        self.log_mark = self.srv.log_size()

    def listen(self, user):
        lst = Listener(self.srv, user)
        self.addCleanup(lst.stop)
        return lst

    def assert_scram(self, stderr):
        line = [l for l in stderr.splitlines() if 'connected as' in l]
        self.assertTrue(line, stderr)
        mech = line[0].split()[-1]
        self.assertIn(mech, SCRAM, line[0])
        return mech

    # -- login and TLS

    def test_scram_starttls(self):
        """STARTTLS, the chain checked against the test CA, SCRAM (Prosody
        also offers PLAIN: the client must prefer SCRAM), then presence."""
        r = starling(self.srv, 'alice', ['--verbose', 'presence'])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_scram(r.stderr)
        self.assertIn('connected as alice@localhost/', r.stderr)

    def test_scram_direct_tls(self):
        """XEP-0368 direct TLS to Prosody's c2s_direct_tls port."""
        r = starling(self.srv, 'alice', ['--verbose', 'presence', 'away', 'hi'],
                     direct=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_scram(r.stderr)

    # Prosody 0.12 offers SCRAM-SHA-1-PLUS with tls-unique on TLS 1.2 and
    # does not list its channel bindings (no XEP-0440): libstarling must
    # then use tls-unique, RFC 9266's default for TLS 1.2 (it once sent
    # tls-exporter, which Prosody refuses with malformed-request).
    def test_scram_plus_tls12(self):
        """TLS 1.2 (direct TLS port limited to it): SCRAM-SHA-1-PLUS with
        tls-unique channel binding."""
        r = starling(self.srv, 'alice', ['--verbose', 'presence'],
                     direct=True, port=self.srv.tls12_port)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.assert_scram(r.stderr), 'SCRAM-SHA-1-PLUS')

    def test_certificate_not_trusted(self):
        """Without --ca-file the test CA is unknown: exit 1 and one line
        about the certificate; no login happens."""
        r = starling(self.srv, 'alice', ['--verbose', 'presence'], ca=False)
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn('certificate', lines[0])
        self.assertNotIn('connected as', r.stderr)

    def test_wrong_password(self):
        r = starling(self.srv, 'alice', ['presence'], password='not-it')
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('not-authorized', r.stderr)

    # -- messages

    def test_send_and_listen(self):
        """`starling send` as alice arrives at bob's `starling listen`."""
        bob = self.listen('bob')
        self.assertIn(bob.mechanism, SCRAM)
        self.assertTrue(bob.jid.startswith('bob@localhost/'), bob.jid)
        body = 'hello "bob" <&> \u00e9\u6f22'
        r = starling(self.srv, 'alice', ['send', 'bob@localhost', body])
        self.assertEqual(r.returncode, 0, r.stderr)
        m = bob.expect(kind='message', body=body)
        self.assertTrue(m['from'].startswith('alice@localhost/'), m)
        self.assertEqual(m['type'], 'chat')

    def test_send_to_offline_user_fails(self):
        """Prosody (no offline storage here) bounces service-unavailable;
        send reports the refusal and exits 1."""
        r = starling(self.srv, 'alice', ['send', 'ivan@localhost', 'anyone?'])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('service-unavailable', r.stderr)

    # -- roster

    def test_roster_add_list_remove(self):
        r = starling(self.srv, 'judy', ['roster', 'add', 'dave@localhost',
                                        'Dave'])
        self.assertEqual(r.returncode, 0, r.stderr)
        items = roster_list(self, self.srv, 'judy')
        self.assertEqual(items.get('dave@localhost'), ('none', 'Dave', False),
                         items)
        r = starling(self.srv, 'judy', ['roster', 'add', 'dave@localhost',
                                        'David'])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(roster_list(self, self.srv, 'judy')
                         .get('dave@localhost'), ('none', 'David', False))
        r = starling(self.srv, 'judy', ['roster', 'remove', 'dave@localhost'])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn('dave@localhost', roster_list(self, self.srv, 'judy'))

    def test_roster_remove_unknown_item(self):
        """RFC 6121 §2.5.3: removing an item that is not there is
        item-not-found; the CLI says so and exits 1."""
        r = starling(self.srv, 'judy', ['roster', 'remove', 'nobody@localhost'])
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn('item-not-found', r.stderr)

    # -- subscriptions

    def test_subscribe_and_approve(self):
        """RFC 6121 §3.1: erin asks, frank (listening) sees the request
        from erin's bare JID, approves; erin's roster then has frank with
        subscription 'to', and frank's has erin with 'from'."""
        frank = self.listen('frank')
        r = starling(self.srv, 'erin', ['subscribe', 'frank@localhost'])
        self.assertEqual(r.returncode, 0, r.stderr)
        frank.expect(kind='presence', type='subscribe', **{'from': 'erin@localhost'})
        self.assertEqual(roster_list(self, self.srv, 'erin')
                         .get('frank@localhost'), ('none', '', True))
        r = starling(self.srv, 'frank', ['approve', 'erin@localhost'])
        self.assertEqual(r.returncode, 0, r.stderr)
        # frank's listener gets the roster push of the new state (JSON)
        frank.expect(kind='roster', jid='erin@localhost', subscription='from')
        sub, _name, asked = roster_list(self, self.srv, 'erin')['frank@localhost']
        self.assertIn(sub, ('to', 'both'))
        self.assertFalse(asked)
        self.assertEqual(roster_list(self, self.srv, 'frank')
                         ['erin@localhost'][0], 'from')

    def test_subscribe_and_deny(self):
        """RFC 6121 §3.2: heidi denies; grace (listening) sees
        'unsubscribed' from heidi and keeps no subscription."""
        grace = self.listen('grace')
        r = starling(self.srv, 'grace', ['subscribe', 'heidi@localhost'])
        self.assertEqual(r.returncode, 0, r.stderr)
        grace.expect(kind='roster', jid='heidi@localhost', ask=True)
        r = starling(self.srv, 'heidi', ['deny', 'grace@localhost'])
        self.assertEqual(r.returncode, 0, r.stderr)
        p = grace.expect(kind='presence', type='unsubscribed')
        self.assertEqual(p['from'], 'heidi@localhost')
        self.assertEqual(roster_list(self, self.srv, 'grace')
                         .get('heidi@localhost'), ('none', '', False))

    # -- slixmpp

    @unittest.skipIf(slixmpp is None, 'slixmpp is not installed')
    def test_slixmpp_exchange(self):
        """carol on slixmpp: `starling send` reaches her; her chat message
        and her IQs reach bob's `starling listen`: a ping is answered, an
        IQ in an unknown namespace gets service-unavailable from the
        library (RFC 6120 §8.4)."""
        carol = SlixBot(self.srv, 'carol')
        self.addCleanup(carol.close)

        # CLI -> slixmpp
        r = starling(self.srv, 'alice', ['send', 'carol@localhost',
                                         'to slixmpp from starling'])
        self.assertEqual(r.returncode, 0, r.stderr)
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                msg = carol.messages.get(
                    timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self.fail('slixmpp did not receive the message')
            if msg['body'] == 'to slixmpp from starling':
                break
        self.assertEqual(msg['type'], 'chat')
        self.assertEqual(msg['from'].bare, 'alice@localhost')

        # slixmpp -> CLI
        bob = self.listen('bob')
        async def send():  # slixmpp is not thread-safe: on its loop
            carol.x.send_message(mto='bob@localhost',
                                 mbody='to starling from slixmpp', mtype='chat')
        carol.call(send())
        m = bob.expect(kind='message', body='to starling from slixmpp')
        self.assertEqual(m['from'], 'carol@localhost/slix')
        self.assertEqual(m['type'], 'chat')

        # slixmpp pings bob's full JID: the CLI answers pings
        rtt = carol.call(carol.x.plugin['xep_0199'].ping(jid=bob.jid,
                                                         timeout=TIMEOUT))
        self.assertIsNotNone(rtt)

        # an IQ nobody handles: the library answers service-unavailable
        async def unknown_iq():
            iq = carol.x.make_iq_get(ito=bob.jid)
            iq.append(ET.Element('{urn:example:starling:unknown}query'))
            try:
                await iq.send(timeout=TIMEOUT)
            except IqError as e:
                return e.iq
            return None
        err = carol.call(unknown_iq())
        self.assertIsNotNone(err, 'the unknown IQ got a result')
        self.assertEqual(err['type'], 'error')
        self.assertEqual(err['error']['condition'], 'service-unavailable')
        self.assertEqual(err['error']['type'], 'cancel')
        self.assertEqual(err['from'].full, bob.jid)


class _Result(unittest.TextTestResult):
    """Prints Prosody's log lines of a failing test."""

    def _dump(self, test):
        srv = ProsodyInterop.srv
        if srv is None:
            return
        mark = getattr(test, 'log_mark', 0)
        self.stream.write('\n--- prosody log (%s) ---\n%s\n'
                          % (srv.log, srv.log_text(mark)[-20000:]))
        self.stream.flush()

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._dump(test)

    def addError(self, test, err):
        super().addError(test, err)
        self._dump(test)


if __name__ == '__main__':
    if not STARLING:
        raise SystemExit('set STARLING to the starling binary')
    runner = unittest.TextTestRunner(resultclass=_Result, verbosity=2)
    t0 = time.monotonic()
    prog = unittest.main(argv=sys.argv, testRunner=runner, exit=False)
    sys.stderr.write('test_prosody.py: %.1f s\n' % (time.monotonic() - t0))
    if ProsodyInterop.srv is not None:
        ProsodyInterop.srv.stop()
    if os.environ.get('KEEP_PROSODY_LOG'):
        shutil.copy(ProsodyInterop.srv.log, os.environ['KEEP_PROSODY_LOG'])
    _cleanup()
    sys.exit(0 if prog.result.wasSuccessful() else 1)
