#!/usr/bin/python3
"""presence_fanout: one user with N online contacts changes presence; the
time until the last contact has it, the server CPU per delivered
presence, and the login time of a user with an N-item roster — for
starlingd, Prosody and ejabberd side by side. A benchmark: it prints
figures and asserts nothing.

    bench/presence_fanout.py [--contacts 100,1000] [--rounds 20]
        [--servers starling,prosody,ejabberd] build/bin/starlingd build/bin/starlingctl

Every server gets the same load, from the same load generator (this
script, with the integration harness's client): N+1 accounts, each contact
logged in over STARTTLS (TLS 1.3, the harness's EC P-256 certificate for
localhost) with SCRAM-SHA-1, bound and available; each contact subscribes
to the user and the user approves over XMPP, so the user's roster has N
items with subscription 'from' (no server-specific provisioning). Then the
user sends `rounds` presence updates, each with a fresh <status/>, one at
a time.

Timing does not depend on how fast Python reads: every contact socket has
SO_TIMESTAMPNS on, and the arrival time of a presence at a contact is the
kernel's receive timestamp of the first packet that came after the update
was sent (peeked with MSG_PEEK before the harness reads it). "Last" is the
latest of those over the N contacts, minus the send time (both on
CLOCK_REALTIME). Server CPU is the time on CPU of all the server's
threads (/proc/PID/task/*/schedstat; for ejabberd, of the beam.smp
process) over all rounds, divided by the presences delivered to
contacts.

Login: the user with the N-item roster connects, negotiates STARTTLS and
SCRAM-SHA-1, binds, gets its roster, and sends initial presence; the
figure is the wall time until the roster result (median of 5), and until
the echo of its initial presence (which comes after the server has sent
the presence to all N contacts and probed them).

Servers. starlingd: the harness's config with the per-address and rate
limits lifted (roster.max_items raised above N). Prosody 0.12 (Debian):
a throwaway config in a temporary directory, internal_hashed (SCRAM)
accounts written as files, c2s only, STARTTLS required, the same certificate.
ejabberd 23.01 (Debian): a throwaway config, node and spool in a
temporary directory, accounts with `ejabberdctl register`, started in the
foreground; if it cannot be started on this machine, it is skipped with
the reason printed.
"""
import argparse
import os
import resource
import select
import socket
import statistics
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'tests', 'integration'))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'tests', 'interop'))
import harness  # noqa: E402
import peers  # noqa: E402

SO_TIMESTAMPNS = getattr(socket, 'SO_TIMESTAMPNS', 35)
NS_ROSTER = 'jabber:iq:roster'
TIMEOUT = int(os.environ.get("FANOUT_TIMEOUT", "60"))


def cpu_seconds(pid):
    """CPU time of every thread of pid, in seconds, with nanosecond
    resolution (/proc/PID/task/*/schedstat; /proc/PID/stat counts in
    10 ms ticks, too coarse for a few thousand deliveries)."""
    total = 0
    for tid in os.listdir('/proc/%d/task' % pid):
        try:
            with open('/proc/%d/task/%s/schedstat' % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass  # a thread that ended meanwhile
    return total / 1e9


# ------------------------------------------------------------------ servers

class Starling:
    name = 'starling'

    def __init__(self, users, n):
        self.srv = harness.Server(
            users=users,
            limits={'idle_timeout': 0.0, 'rate_limit': 0,
                    'max_connections_per_address': 1000000,
                    'max_unauthenticated_per_address': 1000000},
            top={'roster': {'max_items': max(1000, n + 10)}})
        self.port = self.srv.port
        self.pid = self.srv.proc.pid

    def stop(self):
        self.srv.stop()


def _peer(cls):
    """A bench server class for a peer of tests/interop/peers.py: c2s on a
    free port for localhost, the harness's certificate, quiet logs."""
    def make(users, n):
        cert, key = harness.test_certificate()
        return cls('localhost', users, cert, key, peers.free_port(), quiet=True)
    return make


Prosody = _peer(peers.Prosody)
Ejabberd = _peer(peers.Ejabberd)


# ------------------------------------------------------------------ clients

def login(port, user, password, resource='b'):
    c = harness.Client(port, timeout=TIMEOUT)
    c.open_stream(to='localhost')
    c.starttls()
    c.open_stream(to='localhost')
    ok = c.auth_scram(user, password, mech='SCRAM-SHA-1')
    if not ok.tag.endswith('success'):
        raise RuntimeError('%s: SASL failed' % user)
    c.open_stream(to='localhost')
    c.bind(resource)
    return c


def roster_get(c):
    iid = c.next_id('r')
    c.send("<iq type='get' id='%s'><query xmlns='%s'/></iq>" % (iid, NS_ROSTER))
    while True:
        el = c.expect_element()
        if el.tag == harness.q(harness.NS_CLIENT, 'iq') and el.get('id') == iid:
            return el


def seen(c, text):
    """`text` (written with ' quotes) is in what c's stream received, with
    either quote character."""
    return (text.encode() in c.stream_raw or
            text.replace("'", '"').encode() in c.stream_raw)


def drain(c, upto=None):
    """Reads what is there (or until `upto` appears in the stream)."""
    while True:
        if upto is not None and seen(c, upto):
            return
        r, _, _ = select.select([c.sock], [], [], 0 if upto is None else TIMEOUT)
        if not r and c.sock.pending() == 0:
            if upto is None:
                return
            raise TimeoutError('%r never came' % upto)
        c._recv(time.monotonic() + TIMEOUT)
        c.events.clear()


def arrival_ns(c):
    """Kernel receive time of the first queued packet of c's socket."""
    s = socket.socket(fileno=os.dup(c.sock.fileno()))
    try:
        _, anc, _, _ = s.recvmsg(1, socket.CMSG_SPACE(16), socket.MSG_PEEK)
    finally:
        s.close()  # the duplicate only; c's socket stays open
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack('qq', data[:16])
            return sec * 10**9 + nsec
    return None


def run(server_cls, n, rounds):
    users = {'user@localhost': 'pw-user'}
    users.update({'c%d@localhost' % i: 'pw%d' % i for i in range(n)})
    srv = server_cls(users, n)
    out = {}
    try:
        contacts = []
        for i in range(n):
            c = login(srv.port, 'c%d' % i, 'pw%d' % i)
            c.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            c.send('<presence/>')
            contacts.append(c)
        u = login(srv.port, 'user', 'pw-user', 'main')
        roster_get(u)
        u.send('<presence/>')
        # Each contact subscribes; the user approves; the contact sees
        # the user's presence before the rounds start.
        for i, c in enumerate(contacts):
            c.send("<presence to='user@localhost' type='subscribe'/>")
        for i in range(n):
            # Approve only a request that arrived (an early 'subscribed'
            # would be a pre-approval, which not every server keeps).
            drain(u, upto="'c%d@localhost'" % i)
            u.send("<presence to='c%d@localhost' type='subscribed'/>" % i)
        u.sync()
        # A first broadcast: every contact has the subscription once it
        # sees it (servers differ in what else they send on approval).
        u.send('<presence><status>ready</status></presence>')
        for c in contacts:
            drain(c, upto='>ready<')
        time.sleep(1.0)
        for c in contacts:
            drain(c)
        drain(u)

        lasts = []
        cpu0 = cpu_seconds(srv.pid)
        for k in range(rounds):
            mark = 'mark-%d-%d' % (n, k)
            t0 = time.time_ns()
            u.send('<presence><status>%s</status></presence>' % mark)
            worst = 0
            for c in contacts:
                r, _, _ = select.select([c.sock], [], [], TIMEOUT)
                if not r:
                    raise TimeoutError('a contact never got %s' % mark)
                ts = arrival_ns(c)
                drain(c, upto=mark)
                if ts is not None:
                    worst = max(worst, ts - t0)
            lasts.append(worst / 1e6)
            drain(u)
            time.sleep(0.05)
        cpu = cpu_seconds(srv.pid) - cpu0
        out['last_ms'] = lasts
        out['cpu_us_per_delivery'] = cpu * 1e6 / (rounds * n)
        u.close()

        # Login of the user with its N-item roster.
        logins, echoes = [], []
        for _ in range(5):
            t0 = time.monotonic()
            v = login(srv.port, 'user', 'pw-user', 'login')
            r = roster_get(v)
            t1 = time.monotonic()
            items = r.find(harness.q(NS_ROSTER, 'query'))
            got = len(items) if items is not None else 0
            v.send('<presence/>')
            drain(v, upto="from='user@localhost/login'")
            t2 = time.monotonic()
            logins.append((t1 - t0) * 1e3)
            echoes.append((t2 - t0) * 1e3)
            v.close()
            for c in contacts:
                drain(c)
            time.sleep(0.2)
            for c in contacts:
                drain(c)
        out['login_ms'] = statistics.median(logins)
        out['login_presence_ms'] = statistics.median(echoes)
        out['roster_items'] = got
        for c in contacts:
            c.close()
    finally:
        srv.stop()
    return out


def p90(v):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(0.9 * (len(v) - 1))))]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--contacts', default='100,1000')
    p.add_argument('--rounds', type=int, default=20)
    p.add_argument('--servers', default='starling,prosody,ejabberd')
    p.add_argument('starlingd')
    p.add_argument('starlingctl')
    a = p.parse_args()
    harness.STARLINGD = os.path.abspath(a.starlingd)
    harness.STARLINGCTL = os.path.abspath(a.starlingctl)
    sizes = [int(x) for x in a.contacts.split(',')]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (min(hard, max(sizes) * 3 + 200), hard))
    classes = {'starling': Starling, 'prosody': Prosody, 'ejabberd': Ejabberd}
    results = {}
    for name in a.servers.split(','):
        for n in sizes:
            t = time.monotonic()
            try:
                results[(name, n)] = run(classes[name], n, a.rounds)
            except Exception as e:  # a peer that cannot start is reported
                print('%s with %d contacts: skipped after %.0f s (%s: %s)'
                      % (name, n, time.monotonic() - t,
                         type(e).__name__, str(e)[:200]), flush=True)
                continue
            r = results[(name, n)]
            print('%-8s N=%-5d last arrival median %7.2f ms  p90 %7.2f ms  '
                  'CPU %6.1f us/delivery  login %6.1f ms (roster %d items; '
                  'with presence %6.1f ms)  [%.0f s]'
                  % (name, n, statistics.median(r['last_ms']), p90(r['last_ms']),
                     r['cpu_us_per_delivery'], r['login_ms'], r['roster_items'],
                     r['login_presence_ms'], time.monotonic() - t), flush=True)
    print()
    print('ratios (peer / starling; higher is better for starling):')
    for n in sizes:
        s = results.get(('starling', n))
        if s is None:
            continue
        for peer in ('prosody', 'ejabberd'):
            r = results.get((peer, n))
            if r is None:
                continue
            print('  N=%-5d %-8s last arrival %5.1fx  CPU/delivery %5.1fx  '
                  'login %5.1fx'
                  % (n, peer,
                     statistics.median(r['last_ms']) / statistics.median(s['last_ms']),
                     r['cpu_us_per_delivery'] / s['cpu_us_per_delivery'],
                     r['login_ms'] / s['login_ms']))


if __name__ == '__main__':
    main()
