"""The `starling` command-line client (libstarling) against starlingd.

Runs the real binary (path in the STARLING environment variable) against a
real starlingd from the harness, and checks what a person sees: exit
status, the one-line errors, and the lines `listen` prints. Feature set
client items: 3.3.1-* (header), 4-* (STARTTLS, certificate validation),
5-* / 6-2 (SASL), 7-1/7-2 (binding), 10.2-* (messages), 13-1 (presence).
"""

import base64
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import time

import harness
from harness import Server, ServerTestCase, main

STARLING = os.environ.get('STARLING')


def run(args, password='alice-secret', jid='alice@localhost', timeout=30,
        env_extra=None, check=None):
    env = dict(os.environ)
    env.pop('STARLING_PASSWORD', None)
    if password is not None:
        env['STARLING_PASSWORD'] = password
    if env_extra:
        env.update(env_extra)
    cmd = [STARLING] + (['--jid', jid] if jid else []) + args
    return subprocess.run(cmd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, text=True)


class CliTest(ServerTestCase):
    @classmethod
    def setUpClass(cls):
        # Offline storage off: a message to a user with no available
        # resource is then refused (service-unavailable), the error path
        # this exercises.
        cls.srv = Server(top={'modules': ['disco', 'ping', 'version', 'time']})
        cls.common = ['--server', '127.0.0.1:%d' % cls.srv.port,
                      '--ca-file', cls.srv.cert]

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def listen(self, jid='bob@localhost', password='bob-secret', json_out=True):
        env = dict(os.environ, STARLING_PASSWORD=password)
        args = [STARLING, '--jid', jid] + self.common + ['listen']
        if json_out:
            args.append('--json')
        p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        # Wait until it is connected (it says so on stderr).
        deadline = time.monotonic() + 20
        line = ''
        while time.monotonic() < deadline:
            line = p.stderr.readline()
            if 'listening as' in line or not line:
                break
        self.assertIn('listening as', line)
        self.addCleanup(self.stop_listener, p)
        return p

    @staticmethod
    def stop_listener(p):
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def read_json(self, p, want, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if not line:
                break
            obj = json.loads(line)
            if all(obj.get(k) == v for k, v in want.items()):
                return obj
        self.fail('no %r from listen' % (want,))

    def test_send_and_listen(self):
        """A message sent with `starling send` arrives at `starling listen`
        with its sender and body; send exits 0."""
        p = self.listen()
        r = run(self.common + ['send', 'bob@localhost', 'hello from the CLI'])
        self.assertEqual(r.returncode, 0, r.stderr)
        obj = self.read_json(p, {'kind': 'message', 'body': 'hello from the CLI'})
        self.assertTrue(obj['from'].startswith('alice@localhost/'))
        self.assertEqual(obj['type'], 'chat')

    def test_listen_plain_lines(self):
        p = self.listen(json_out=False)
        r = run(self.common + ['send', 'bob@localhost', 'one line'])
        self.assertEqual(r.returncode, 0, r.stderr)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = p.stdout.readline()
            if 'one line' in line:
                self.assertTrue(line.startswith('message chat alice@localhost/'))
                return
        self.fail('message line not printed')

    def test_send_to_offline_user_fails(self):
        """The server answers service-unavailable (no available resource):
        send says so and exits non-zero."""
        r = run(self.common + ['send', 'carol@localhost', 'anyone?'])
        self.assertEqual(r.returncode, 1)
        self.assertIn('refused', r.stderr)
        self.assertIn('service-unavailable', r.stderr)

    def test_wrong_password(self):
        r = run(self.common + ['send', 'bob@localhost', 'x'], password='nope')
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)
        self.assertIn('not-authorized', r.stderr)
        self.assertIn('password', r.stderr)

    def test_certificate_not_trusted(self):
        """Without --ca-file the self-signed certificate does not verify: a
        one-line error that says what to do, never a silent accept."""
        r = run(['--server', '127.0.0.1:%d' % self.srv.port,
                 'send', 'bob@localhost', 'x'])
        self.assertEqual(r.returncode, 1)
        self.assertIn('certificate', r.stderr)
        self.assertIn('--ca-file', r.stderr)

    def test_pin(self):
        """--pin accepts exactly the server's key."""
        der = ssl.PEM_cert_to_DER_cert(open(self.srv.cert).read())
        out = subprocess.run(['openssl', 'x509', '-inform', 'DER', '-pubkey',
                              '-noout'], input=der, stdout=subprocess.PIPE,
                             check=True).stdout
        spki = subprocess.run(['openssl', 'pkey', '-pubin', '-outform', 'DER'],
                              input=out, stdout=subprocess.PIPE,
                              check=True).stdout
        pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
        r = run(self.common + ['--pin', pin, 'presence', 'away', 'testing'])
        self.assertEqual(r.returncode, 0, r.stderr)
        bad = base64.b64encode(b'\0' * 32).decode()
        r = run(self.common + ['--pin', bad, 'presence'])
        self.assertEqual(r.returncode, 1)
        self.assertIn('pin', r.stderr)

    def test_insecure_only_when_asked(self):
        r = run(['--server', '127.0.0.1:%d' % self.srv.port, '--insecure-tls',
                 'presence'])
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_direct_tls(self):
        r = run(['--server', '127.0.0.1:%d' % self.srv.tls_port, '--direct-tls',
                 '--ca-file', self.srv.cert, 'presence'])
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_unknown_host(self):
        r = run(['--server', 'no-such-host.invalid:5222', 'presence'])
        self.assertEqual(r.returncode, 1)
        self.assertEqual(len(r.stderr.strip().splitlines()), 1, r.stderr)

    def test_connection_refused(self):
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        r = run(['--server', '127.0.0.1:%d' % port, 'presence'])
        self.assertEqual(r.returncode, 1)
        self.assertIn('connect', r.stderr)

    def test_password_never_on_command_line(self):
        r = run(self.common + ['--password', 'x', 'presence'])
        self.assertEqual(r.returncode, 2)
        self.assertIn('STARLING_PASSWORD', r.stderr)
        r = run(self.common + ['presence'], password=None)
        self.assertEqual(r.returncode, 2)

    def test_config_file(self):
        d = harness._mkdtemp()
        conf = os.path.join(d, 'starling.conf')
        with open(conf, 'w') as f:
            f.write('# test\njid = alice@localhost\npassword = alice-secret\n'
                    'server = 127.0.0.1:%d\nca-file = %s\n'
                    % (self.srv.port, self.srv.cert))
        r = run(['--config', conf, 'presence'], password=None, jid=None)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_raw(self):
        """`raw` sends a stanza and prints what comes back: here the
        server's service-unavailable for an unknown namespace."""
        p = self.listen(jid='alice@localhost', password='alice-secret',
                        json_out=False)
        del p
        r = run(self.common + ['--timeout', '2', 'raw',
                               "<message to='bob@localhost' type='chat'>"
                               "<body>raw hello</body></message>"],
                jid='carol@localhost', password='carol-secret')
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_subscribe_commands_send(self):
        for cmd in ('subscribe', 'approve', 'deny', 'unsubscribe'):
            r = run(self.common + [cmd, 'bob@localhost'])
            self.assertEqual(r.returncode, 0, '%s: %s' % (cmd, r.stderr))

    def test_dns_srv(self):
        """3.1-2 and XEP-0368: without --server the client looks the domain
        up. A dnsmasq on loopback answers _xmpps-client (direct TLS) and
        _xmpp-client SRV records for localhost pointing at the test
        server's two ports; the client prefers direct TLS, and still checks
        the certificate against the domain, not the SRV target."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
        s.close()
        log = os.path.join(harness._mkdtemp(), 'dnsmasq.log')
        dns = subprocess.Popen([
            '/usr/sbin/dnsmasq', '--no-daemon', '--conf-file=/dev/null',
            '--pid-file=', '--port=%d' % port, '--listen-address=127.0.0.1',
            '--bind-interfaces', '--no-resolv', '--no-hosts', '--local=/test/',
            '--log-queries', '--log-facility=' + log,
            '--srv-host=_xmpps-client._tcp.localhost,xmpps.srv.test,%d,0,0'
            % self.srv.tls_port,
            '--srv-host=_xmpp-client._tcp.localhost,xmpp.srv.test,%d,0,0'
            % self.srv.port,
            '--host-record=xmpps.srv.test,127.0.0.1',
            '--host-record=xmpp.srv.test,127.0.0.1'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (dns.terminate(), dns.wait(5)))
        time.sleep(0.3)
        r = run(['--dns', '127.0.0.1:%d' % port, '--ca-file', self.srv.cert,
                 '--verbose', 'presence'])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('connected as alice@localhost/', r.stderr)
        # It went to the direct TLS port: the server logs the listener.
        self.assertTrue(any('(direct TLS)' in l and 'connection from' in l
                            for l in self.srv.lines), 'no direct TLS connection')

    def test_shell(self):
        """`starling shell` reads commands (here from a pipe; libedit gives
        line editing on a terminal): /send reaches a listener, /quit ends
        with status 0."""
        p = self.listen()
        env = dict(os.environ, STARLING_PASSWORD='alice-secret')
        r = subprocess.run([STARLING, '--jid', 'alice@localhost'] + self.common
                           + ['shell'], env=env, text=True, timeout=30,
                           input='/help\n/send bob@localhost from the shell\n'
                                 '/quit\n',
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('connected as alice@localhost/', r.stdout)
        self.assertIn('/send JID TEXT', r.stdout)
        self.read_json(p, {'kind': 'message', 'body': 'from the shell'})

    def test_usage_errors(self):
        r = run(['send', 'bob@localhost'])
        self.assertEqual(r.returncode, 2)
        r = run(['frobnicate'])
        self.assertEqual(r.returncode, 2)
        r = subprocess.run([STARLING, '--help'], stdout=subprocess.PIPE,
                           text=True)
        self.assertEqual(r.returncode, 0)
        self.assertIn('listen', r.stdout)


if __name__ == '__main__':
    if not STARLING:
        raise SystemExit('set STARLING to the starling binary')
    main()
