"""Interop: OpenSSL's s_client (-starttls xmpp) against starlingd.

  - s_client's own XMPP STARTTLS dialogue completes a verified handshake
    (TLS 1.3 and TLS 1.2);
  - through s_client, a SCRAM-SHA-256-PLUS login with the tls-exporter
    channel binding (RFC 9266) that s_client computes itself
    (-keymatexport EXPORTER-Channel-Binding; TLS 1.3, where "no context"
    and "empty context" agree).

Run: /usr/bin/python3 test_openssl_starttls.py STARLINGD STARLINGCTL
"""
import os
import re
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import harness  # noqa: E402
from harness import NS_SASL, Scram  # noqa: E402


def s_client_args(server, *extra):
    return [harness.OPENSSL, 's_client', '-starttls', 'xmpp',
            '-connect', '127.0.0.1:%d' % server.port, '-xmpphost', 'localhost',
            '-CAfile', server.cert, '-verify_return_error',
            '-verify_hostname', 'localhost'] + list(extra)


class SClientXMPP:
    """s_client as a transport for harness.Scram: what we write goes to its
    stdin, what the server sends comes out of its stdout (after its own
    handshake report)."""

    def __init__(self, server, *extra):
        self.p = subprocess.Popen(s_client_args(server, '-nocommands', *extra),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        harness._procs.append(self.p)
        self.out = b''
        self.lock = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.pos = 0  # where the server's XML starts being parsed

    def _read(self):
        while True:
            b = self.p.stdout.read1(65536)
            with self.lock:
                if not b:
                    self.done = True
                    self.lock.notify_all()
                    return
                self.out += b
                self.lock.notify_all()

    def wait_for(self, pattern, timeout=harness.TIMEOUT, start=0):
        rx = re.compile(pattern, re.S)
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                m = rx.search(self.out, start)
                if m:
                    return m
                left = deadline - time.monotonic()
                if left <= 0 or (getattr(self, 'done', False)):
                    raise AssertionError('s_client output lacks %r:\n%s'
                                         % (pattern, self.out.decode(errors='replace')))
                self.lock.wait(left)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def expect_element(self, tag=None, timeout=None):
        """The next SASL element from the server (challenge, success or
        failure): found by pattern in s_client's output."""
        m = self.wait_for(rb"<(challenge|success|failure)\b[^>]*?(/>|>(.*?)</\1>)",
                          start=self.pos)
        self.pos = m.end()
        return harness.ET.fromstring(m.group(0).decode())

    def close(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.close()
            except OSError:
                pass
            try:
                self.p.wait(5)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)


class OpenSSLStartTLS(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = harness.Server()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def handshake(self, *extra):
        r = subprocess.run(s_client_args(self.srv, *extra),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        out = r.stdout.decode(errors='replace')
        self.assertIn('Verify return code: 0 (ok)', out, out)
        return out

    def test_starttls_tls13(self):
        """s_client -starttls xmpp: verified TLS 1.3 handshake."""
        out = self.handshake()
        self.assertRegex(out, r'Protocol\s*: TLSv1\.3|New, TLSv1\.3')

    def test_starttls_tls12(self):
        """s_client -starttls xmpp -tls1_2: verified TLS 1.2 handshake with
        an AEAD, forward-secret suite (RFC 7590)."""
        out = self.handshake('-tls1_2')
        self.assertRegex(out, r'Protocol\s*: TLSv1\.2')
        m = re.search(r'Cipher\s*: (\S+)', out)
        self.assertTrue(m and ('GCM' in m.group(1) or 'CHACHA20' in m.group(1))
                        and 'ECDHE' in m.group(1), out)

    def test_scram_plus_tls_exporter_via_s_client(self):
        """SCRAM-SHA-256-PLUS with tls-exporter computed by OpenSSL's own
        exporter (s_client -keymatexport) succeeds over TLS 1.3."""
        c = SClientXMPP(self.srv, '-keymatexport', 'EXPORTER-Channel-Binding',
                        '-keymatexportlen', '32')
        try:
            m = c.wait_for(rb'Keying material: ([0-9A-Fa-f]{64})')
            ekm = bytes.fromhex(m.group(1).decode())
            c.wait_for(rb'TLSv1\.3')
            c.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                   "xmlns:stream='http://etherx.jabber.org/streams' "
                   "to='localhost' version='1.0'>")
            feats = c.wait_for(rb'</stream:features>')
            c.pos = feats.end()
            text = c.out.decode(errors='replace')
            self.assertIn('SCRAM-SHA-256-PLUS', text)
            self.assertIn("type='tls-exporter'", text.replace('"', "'"))
            s = Scram(c, 'alice', self.srv.users['alice@localhost'],
                      'SCRAM-SHA-256-PLUS', cb_type='tls-exporter', cb_data=ekm)
            res = s.run()
            self.assertEqual(res.tag, harness.q(NS_SASL, 'success'),
                             harness.ET.tostring(res, 'unicode'))
        finally:
            c.close()


if __name__ == '__main__':
    harness.main()
