"""Interop over federation: starlingd (starling.example) with Prosody 0.12
(prosody.example) and with ejabberd 23.01 (ejabberd.example) — Debian's
packages, started here on loopback with throwaway configs
(tests/interop/peers.py) — once over Server Dialback and once over SASL
EXTERNAL.

Name resolution is DNS, as on the real network: a dnsmasq on a loopback
port answers `_xmpp-server._tcp.DOMAIN` SRV records (and A records) for
the test domains (under .example: libunbound, which Prosody uses, answers
NXDOMAIN for .test itself, a special-use zone), pointing at each server's s2s port; starlingd uses
it through `s2s.dns`, Prosody through libunbound (`unbound.forward`),
ejabberd through Erlang's resolver (an inetrc file). Nothing in /etc is
touched and no static route is used.

Trust: a test CA made here with the openssl CLI; every server trusts it
for s2s. In the dialback classes the certificates name only "localhost"
(the chain verifies, the domain does not match), so the servers fall back
to dialback (s2s.secure_auth / s2s_secure_auth off). In the EXTERNAL
classes they name the domains and dialback is off, so SASL EXTERNAL
(XEP-0178) it must be.

Checked both ways: a chat message from a local user to a user of the
peer arrives with the sender's full JID; a subscription request, its
approval, the roster push and the presence that follows (RFC 6121 §3.1).

Run: /usr/bin/python3 test_s2s_peers.py STARLINGD STARLINGCTL [unittest args]
"""
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'integration'))
import harness  # noqa: E402
import peers  # noqa: E402
from imtest import (BODY, MESSAGE, PRESENCE, Session,  # noqa: E402
                    is_roster_push, push_item)

DNSMASQ = shutil.which('dnsmasq') or '/usr/sbin/dnsmasq'
WAIT = int(os.environ.get("S2S_WAIT", "30"))  # seconds for anything that crosses servers

ca = None


def setUpModule():
    global ca
    ca = harness.TestCA()
    harness._cert = (ca.crt, ca.key)


class Dnsmasq:
    """SRV and A records for the test domains, on a loopback port."""

    def __init__(self, records):
        self.port = peers.free_port()
        args = [DNSMASQ, '--no-daemon', '--conf-file=/dev/null', '--pid-file=',
                '--port=%d' % self.port, '--listen-address=127.0.0.1',
                '--bind-interfaces', '--no-resolv', '--no-hosts',
                '--local=/example/']
        for domain, port in records:
            # The target is "localhost": ejabberd resolves SRV targets with
            # the C library (getaddrinfo), which knows nothing of this DNS
            # server but knows localhost; Prosody's libunbound and
            # starlingd's c-ares do too.
            args.append('--srv-host=_xmpp-server._tcp.%s,localhost,%d,0,0'
                        % (domain, port))
            args.append('--host-record=%s,127.0.0.1' % domain)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        peers.wait_port(self.port, self.proc, 20)

    @property
    def server(self):
        return '127.0.0.1:%d' % self.port

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def peer_login(peer, jid, password):
    """A bound client of the peer server (STARTTLS, SCRAM-SHA-1)."""
    node, _, domain = jid.partition('@')
    c = harness.Client(peer.port, timeout=WAIT)
    c.open_stream(to=domain)
    c.starttls()
    c.open_stream(to=domain)
    res = c.auth_scram(node, password, 'SCRAM-SHA-1')
    if not res.tag.endswith('success'):
        raise AssertionError('login of %s at %s failed' % (jid, peer.name))
    c.open_stream(to=domain)
    c.bind('p')
    return c


class Federation:
    """Run once per peer (Peer) and authentication (secure_auth)."""

    Peer = None
    secure_auth = False

    @classmethod
    def setUpClass(cls):
        peer_domain = cls.Peer.name + '.example'
        cls.peer_domain = peer_domain
        sport, pport = peers.free_port(), peers.free_port()
        cls.dns = Dnsmasq([('starling.example', sport), (peer_domain, pport)])
        names = cls.secure_auth
        cert = ca.cert('starling-%d' % sport,
                       ['localhost', 'starling.example'] if names else ['localhost'])
        cls.srv = harness.Server(
            users={'alice@starling.example': 'pa', 'carol@starling.example': 'pc'},
            hosts=['starling.example'], cert=cert,
            raw=('s2s = { enabled = true; listen = ( { address = "127.0.0.1"; '
                 'port = %d; } ); dns = "%s"; ca_file = "%s"; secure_auth = %s; '
                 'dialback = %s; connect_timeout = 5; };'
                 % (sport, cls.dns.server, ca.crt,
                    'true' if cls.secure_auth else 'false',
                    'false' if cls.secure_auth else 'true')))
        pcert, pkey = ca.cert('%s-%d' % (cls.Peer.name, pport),
                              ['localhost', peer_domain] if names
                              else ['localhost'])
        try:
            cls.peer = cls.Peer(peer_domain,
                                {'bob@' + peer_domain: 'pb',
                                 'dave@' + peer_domain: 'pd'},
                                pcert, pkey, peers.free_port(), pport,
                                ca_file=ca.crt, dns=cls.dns.server,
                                secure_auth=cls.secure_auth)
        except Exception:
            cls.srv.stop()
            cls.dns.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.peer.stop()
        cls.srv.stop()
        cls.dns.stop()

    def setUp(self):
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()
        if os.environ.get('PEER_LOG'):
            sys.stderr.write(self.peer.log_text()[-6000:])

    def local(self, jid, resource):
        s = Session(harness.login(self.srv, jid, password=self.srv.users[jid],
                                  resource=resource))
        self.clients.append(s.c)
        s.roster()
        s.presence(status='st-' + resource)
        return s

    def remote(self, node, password):
        s = Session(peer_login(self.peer, node + '@' + self.peer_domain,
                               password))
        self.clients.append(s.c)
        s.roster()
        s.presence(status='st-peer')
        return s

    def test_messages(self):
        alice = self.local('alice@starling.example', 'm')
        bob = self.remote('bob', 'pb')
        bob_jid = 'bob@%s/p' % self.peer_domain
        alice.message(bob_jid, 'hello %s' % self.Peer.name)
        m = bob.wait(lambda el: el.tag == MESSAGE and
                     el.findtext(BODY) == 'hello %s' % self.Peer.name,
                     'message at the peer', timeout=WAIT)
        self.assertEqual(m.get('from'), 'alice@starling.example/m')
        bob.message('alice@starling.example/m', 'hello starling')
        m = alice.wait(lambda el: el.tag == MESSAGE and
                       el.findtext(BODY) == 'hello starling',
                       'message from the peer', timeout=WAIT)
        self.assertEqual(m.get('from'), bob_jid)
        mech = 'SASL EXTERNAL' if self.secure_auth else 'dialback'
        self.srv.wait_log(r's2s starling\.example -> %s ready \(%s\)'
                          % (self.peer_domain.replace('.', r'\.'), mech), 10)

    def test_subscriptions(self):
        carol = self.local('carol@starling.example', 's')
        dave = self.remote('dave', 'pd')
        dave_bare = 'dave@' + self.peer_domain
        # Ours subscribes to theirs.
        carol.subscription('subscribe', dave_bare)
        req = dave.wait(lambda el: el.tag == PRESENCE and
                        el.get('type') == 'subscribe', 'subscribe at the peer',
                        timeout=WAIT)
        self.assertEqual(req.get('from'), 'carol@starling.example')
        dave.subscription('subscribed', 'carol@starling.example')
        carol.wait(lambda el: is_roster_push(el) and
                   push_item(el).jid == dave_bare and
                   push_item(el).subscription == 'to', 'push to', timeout=WAIT)
        carol.wait(lambda el: el.tag == PRESENCE and el.get('type') is None and
                   (el.get('from') or '').startswith(dave_bare + '/'),
                   "the peer user's presence", timeout=WAIT)
        # Theirs subscribes to ours.
        dave.subscription('subscribe', 'carol@starling.example')
        req = carol.wait(lambda el: el.tag == PRESENCE and
                         el.get('type') == 'subscribe', 'subscribe from the peer',
                         timeout=WAIT)
        self.assertEqual(req.get('from'), dave_bare)
        carol.subscription('subscribed', dave_bare)
        carol.wait(lambda el: is_roster_push(el) and
                   push_item(el).subscription == 'both', 'push both',
                   timeout=WAIT)
        dave.wait(lambda el: el.tag == PRESENCE and el.get('type') is None and
                  el.get('from') == 'carol@starling.example/s',
                  'our presence at the peer', timeout=WAIT)


class ProsodyDialback(Federation, unittest.TestCase):
    Peer = peers.Prosody
    secure_auth = False


class ProsodyExternal(Federation, unittest.TestCase):
    Peer = peers.Prosody
    secure_auth = True


class EjabberdDialback(Federation, unittest.TestCase):
    Peer = peers.Ejabberd
    secure_auth = False


class EjabberdExternal(Federation, unittest.TestCase):
    Peer = peers.Ejabberd
    secure_auth = True


if __name__ == '__main__':
    harness.main()
