#!/usr/bin/python3
"""c2s_idle: memory per idle authenticated TLS session, server CPU per
TLS + SCRAM login, and server CPU per 1:1 message, for starlingd. A benchmark: it prints figures and asserts
nothing.

    bench/c2s_idle.py [--sessions N] [--tls13|--tls12] build/bin/starlingd build/bin/starlingctl

It starts starlingd (the integration harness's config: TLS with an EC P-256
certificate, SCRAM iterations 4096), reads the server's resident memory and
CPU time from /proc, logs N clients in over STARTTLS with SCRAM-SHA-1 (the
budget's mechanism) and binds a resource each, then reads them again. The
clients stay connected and idle while the second reading is taken.

The load generator is Python, so logins are slow on the client side; the
server's CPU time is what is measured, from /proc/PID/stat. Prosody and
ejabberd comparisons need a load generator that speaks to all three the
same way (ARCHITECTURE.md, Budgets): that comes with the client library.
"""
import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'tests', 'integration'))
import harness  # noqa: E402


def count_messages(rcv, seen, tail):
    """Reads once and counts the message end tags that arrived, also one
    split across two reads; `tail` (the last 9 bytes before) holds no whole
    tag, so none is counted twice."""
    data = tail + rcv.sock.recv(1 << 16)
    return seen + data.count(b'</message>'), data[-9:]


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    ticks = os.sysconf('SC_CLK_TCK')
    return (int(fields[11]) + int(fields[12])) / ticks


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--sessions', type=int, default=500)
    p.add_argument('--tls12', action='store_true')
    p.add_argument('--messages', type=int, default=20000)
    p.add_argument('starlingd')
    p.add_argument('starlingctl')
    a = p.parse_args()
    harness.STARLINGD = os.path.abspath(a.starlingd)
    harness.STARLINGCTL = os.path.abspath(a.starlingctl)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.sessions * 2 + 100), hard))

    users = {'u%d@localhost' % i: 'pw%d' % i for i in range(10)}
    # No per-connection rate limit: the message figure measures the server,
    # not the limiter. Every session comes from 127.0.0.1, so the
    # per-address limits are lifted too.
    srv = harness.Server(users=users, limits={
                             'idle_timeout': 0.0, 'rate_limit': 0,
                             'max_connections_per_address': 1000000,
                             'max_unauthenticated_per_address': 1000000},
                         c2s={'max_resources': 1024})
    pid = srv.proc.pid
    time.sleep(0.5)
    rss0, cpu0 = rss_kib(pid), cpu_seconds(pid)
    clients = []
    t0 = time.monotonic()
    tls_max = harness.ssl.TLSVersion.TLSv1_2 if a.tls12 else None
    for i in range(a.sessions):
        jid = 'u%d@localhost' % (i % 10)
        clients.append(harness.login(srv, jid, resource='r%d' % i,
                                     mech='SCRAM-SHA-1', tls_max=tls_max))
    elapsed = time.monotonic() - t0
    time.sleep(1.0)
    rss1, cpu1 = rss_kib(pid), cpu_seconds(pid)
    n = a.sessions
    print('starlingd, %d idle authenticated %s sessions (SCRAM-SHA-1, '
          'EC P-256 certificate):' % (n, 'TLS 1.2' if a.tls12 else 'TLS 1.3'))
    print('  resident memory: %d KiB before, %d KiB after: %.1f KiB per session'
          % (rss0, rss1, (rss1 - rss0) / n))
    print('  server CPU for the logins: %.2f s: %.2f ms per TLS + SCRAM login + bind'
          % (cpu1 - cpu0, (cpu1 - cpu0) * 1000 / n))
    print('  (client side took %.1f s; the load generator is Python)' % elapsed)
    # Server CPU per 1:1 message: one client sends, another receives.
    if a.messages > 0 and len(clients) >= 2:
        snd, rcv = clients[0], clients[1]
        stanza = ("<message to='%s' type='chat'><body>%s</body></message>"
                  % (rcv.jid, 'x' * 40)).encode()
        batch = stanza * 100
        cpu2 = cpu_seconds(pid)
        t1 = time.monotonic()
        rcv.sock.settimeout(10)
        seen, tail = 0, b''
        for i in range(a.messages // 100):
            snd.sock.sendall(batch)
            # Keep at most ~1000 messages in flight.
            while seen < (i + 1) * 100 - 1000:
                seen, tail = count_messages(rcv, seen, tail)
        while seen < (a.messages // 100) * 100:
            seen, tail = count_messages(rcv, seen, tail)
        wall = time.monotonic() - t1
        cpu3 = cpu_seconds(pid)
        print('  server CPU per 1:1 message (%d messages, 40-byte bodies, TLS): '
              '%.1f us; %.0f messages/s through one connection pair'
              % (a.messages, (cpu3 - cpu2) * 1e6 / a.messages,
                 a.messages / wall))
    for c in clients:
        c.close()
    srv.stop()


if __name__ == '__main__':
    main()
