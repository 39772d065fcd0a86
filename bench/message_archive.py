#!/usr/bin/python3
"""message_archive: 1:1 messages through one connection pair with the
message archive (XEP-0313) on and off — messages per second and server CPU
per message — for starlingd, Prosody and ejabberd side by side. A
benchmark: it prints figures and asserts nothing.

    bench/message_archive.py [--messages 5000] [--servers starling,prosody,ejabberd]
        build/bin/starlingd build/bin/starlingctl

Every server gets the same load from the same load generator (this script,
with the integration harness's client): alice and bob log in over STARTTLS
(TLS 1.3, the harness's EC P-256 certificate for localhost) with
SCRAM-SHA-1 and bind; bob sends initial presence. alice then writes
`messages` chat messages to bob's bare JID (40-byte bodies, each with an
id), as fast as the server reads them, and the clock stops when bob has
received the last one. A second round does the same and then has alice
ask for the archive's last page (RSM <before/>, max 10) — the figure is
the wall time until that page is there, which includes any archive writes
still queued, so a server cannot look fast by deferring them.

Server CPU is the time on CPU of all the server's threads
(/proc/PID/task/*/schedstat; for ejabberd, of the beam.smp process) over
the round, divided by the messages.

Servers and their archives, each with its default durable storage:
starlingd with the harness's config (SQLite, synchronous=NORMAL in WAL
mode), rate limits lifted, modules without "mam" for the run without the
archive. Prosody 0.12 (Debian) with mod_mam on its default "internal"
(file) storage, default_archive_policy = true. ejabberd 23.01 (Debian)
with mod_mam (default: always) on Mnesia — about 100 messages/s into its
archive here, so its archive run sends at most --ejabberd-archive
messages (1,000). Prosody and ejabberd run with their c2s rate limits off
(tests/interop/peers.py).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'tests', 'integration'))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'tests', 'interop'))
import harness  # noqa: E402
import peers  # noqa: E402
from presence_fanout import cpu_seconds, login  # noqa: E402

NS_MAM = 'urn:xmpp:mam:2'
NS_RSM = 'http://jabber.org/protocol/rsm'
USERS = {'alice@localhost': 'pw-alice', 'bob@localhost': 'pw-bob'}
NO_ARCHIVE = ['disco', 'ping', 'version', 'time', 'offline', 'private',
              'vcard', 'contact_info', 'last', 'blocking', 'carbons',
              'external_services', 'caps', 'pep', 'register', 'avatar',
              'push']


class Starling:
    name = 'starling'

    def __init__(self, archive):
        top = {} if archive else {'modules': NO_ARCHIVE}
        self.srv = harness.Server(
            users=USERS, top=top,
            limits={'idle_timeout': 0.0, 'rate_limit': 0})
        self.port = self.srv.port
        self.pid = self.srv.proc.pid

    def stop(self):
        self.srv.stop()


def _peer(cls, archive_modules):
    def make(archive):
        cert, key = harness.test_certificate()
        return cls('localhost', USERS, cert, key, peers.free_port(),
                   quiet=True, modules=archive_modules if archive else None)
    return make


Prosody = _peer(peers.Prosody, {'mam': 'default_archive_policy = true'})
Ejabberd = _peer(peers.Ejabberd, {'mod_mam': '{default: always}'})


def count_received(c, want, deadline):
    """Reads c's socket until `want` message end tags arrived."""
    seen, tail = 0, b''
    while seen < want:
        if time.monotonic() > deadline:
            raise TimeoutError('%d of %d messages arrived' % (seen, want))
        data = tail + c.sock.recv(1 << 16)
        if not data:
            raise ConnectionError('bob was disconnected')
        seen += data.count(b'</message>')
        tail = data[-9:]
    return seen


def last_page(c):
    """alice's archive's last page of 10: (ids of the results, IQ)."""
    iid = c.next_id('mam')
    c.send("<iq type='set' id='%s'><query xmlns='%s' queryid='lp'>"
           "<set xmlns='%s'><max>10</max><before/></set></query></iq>"
           % (iid, NS_MAM, NS_RSM))
    results = []
    while True:
        el = c.expect_element(timeout=120)
        if el.tag == harness.q(harness.NS_CLIENT, 'iq') and \
                el.get('id') == iid:
            return results, el
        res = el.find(harness.q(NS_MAM, 'result'))
        if res is not None:
            results.append(res)


def burst(alice, n, tag):
    body = 'b' * 40
    data = ''.join("<message to='bob@localhost' type='chat' id='%s%d'>"
                   "<body>%s</body></message>" % (tag, i, body)
                   for i in range(n))
    alice.sock.sendall(data.encode())


def run(server_cls, archive, n):
    srv = server_cls(archive)
    try:
        bob = login(srv.port, 'bob', USERS['bob@localhost'])
        bob.send('<presence/>')
        alice = login(srv.port, 'alice', USERS['alice@localhost'])
        alice.sync(timeout=60)
        time.sleep(0.5)
        bob.sock.settimeout(120)
        # Round 1: until bob has them all.
        cpu0, t0 = cpu_seconds(srv.pid), time.monotonic()
        burst(alice, n, 'r')
        count_received(bob, n + 0, time.monotonic() + 300)
        t1, cpu1 = time.monotonic(), cpu_seconds(srv.pid)
        out = {'rate': n / (t1 - t0), 'cpu_us': (cpu1 - cpu0) / n * 1e6}
        if archive:
            # Round 2: until the archive's last page names the last one.
            cpu0, t0 = cpu_seconds(srv.pid), time.monotonic()
            burst(alice, n, 's')
            res, _ = last_page(alice)
            t1, cpu1 = time.monotonic(), cpu_seconds(srv.pid)
            ids = [r.find('.//{jabber:client}message').get('id') for r in res]
            out['archived_rate'] = n / (t1 - t0)
            out['archived_cpu_us'] = (cpu1 - cpu0) / n * 1e6
            out['last_ok'] = bool(ids) and ids[-1] == 's%d' % (n - 1)
        return out
    finally:
        srv.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--messages', type=int, default=5000)
    p.add_argument('--servers', default='starling,prosody,ejabberd')
    p.add_argument('--ejabberd-archive', type=int, default=1000)
    p.add_argument('starlingd')
    p.add_argument('starlingctl')
    a = p.parse_args()
    harness.STARLINGD = os.path.abspath(a.starlingd)
    harness.STARLINGCTL = os.path.abspath(a.starlingctl)
    classes = {'starling': Starling, 'prosody': Prosody, 'ejabberd': Ejabberd}
    results = {}
    for name in a.servers.split(','):
        for archive in (False, True):
            t = time.monotonic()
            try:
                n = a.messages
                if name == 'ejabberd' and archive:
                    n = min(n, a.ejabberd_archive)
                r = run(classes[name], archive, n)
            except Exception as e:  # a peer that cannot start is reported
                print('%s (archive %s): skipped after %.0f s (%s: %s)'
                      % (name, 'on' if archive else 'off',
                         time.monotonic() - t, type(e).__name__,
                         str(e)[:200]), flush=True)
                continue
            results[(name, archive)] = r
            line = ('%-8s archive %-3s %6d messages %8.0f msg/s %7.1f us '
                    'CPU/msg' % (name, 'on' if archive else 'off', n,
                                 r['rate'], r['cpu_us']))
            if archive:
                line += ('   until the archive has them: %8.0f msg/s %7.1f us '
                         'CPU/msg (last page right: %s)'
                         % (r['archived_rate'], r['archived_cpu_us'],
                            r['last_ok']))
            print(line + '  [%.0f s]' % (time.monotonic() - t), flush=True)
    print()
    print('ratios (peer / starling; higher is better for starling):')
    for archive in (False, True):
        s = results.get(('starling', archive))
        for peer in ('prosody', 'ejabberd'):
            r = results.get((peer, archive))
            if s is None or r is None:
                continue
            key_rate = 'archived_rate' if archive else 'rate'
            key_cpu = 'archived_cpu_us' if archive else 'cpu_us'
            print('  archive %-3s %-8s throughput %5.1fx  CPU/msg %5.1fx'
                  % ('on' if archive else 'off', peer,
                     s[key_rate] / r[key_rate], r[key_cpu] / s[key_cpu]))


if __name__ == '__main__':
    main()
