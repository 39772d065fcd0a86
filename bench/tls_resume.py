#!/usr/bin/python3
"""tls_resume: server CPU per login with a full TLS handshake and with a
resumed one (a TLS 1.3 session ticket), for starlingd. A benchmark: it
prints figures and asserts nothing.

    bench/tls_resume.py [--logins N] [--tls12] build/bin/starlingd build/bin/starlingctl

Each login is what a phone does when it comes back: direct TLS (XEP-0368,
ALPN xmpp-client), SCRAM-SHA-1 (4096 iterations), bind, then the stream is
closed. The first N logins make a full handshake each (a fresh client
context, no ticket); the next N present the ticket the first connection
received. The server's CPU time comes from /proc/PID/stat.
"""
import argparse
import os
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'tests', 'integration'))
import harness  # noqa: E402


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    ticks = os.sysconf('SC_CLK_TCK')
    return (int(fields[11]) + int(fields[12])) / ticks


def login(srv, ctx, session=None):
    import socket
    raw = socket.create_connection(('127.0.0.1', srv.tls_port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = harness.Client.__new__(harness.Client)
    c.timeout = 10
    c.raw, c.eof, c.reset, c.jid, c.features = bytearray(), False, False, None, None
    c.header, c.header_ns, c.header_tag, c._id, c.keylog = None, {}, None, 0, None
    c._restart()
    c.sock = ctx.wrap_socket(raw, server_hostname='localhost', session=session)
    c.tls = True
    reused = c.sock.session_reused
    c.open_stream()
    res = c.auth_scram('alice', 'alice-secret', mech='SCRAM-SHA-1')
    assert res.tag == harness.q(harness.NS_SASL, 'success'), res.tag
    c.open_stream()
    c.bind()
    sess = c.sock.session
    c.close_stream()
    c.close()
    return sess, reused


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--logins', type=int, default=300)
    p.add_argument('--tls12', action='store_true')
    p.add_argument('starlingd')
    p.add_argument('starlingctl')
    a = p.parse_args()
    harness.STARLINGD = os.path.abspath(a.starlingd)
    harness.STARLINGCTL = os.path.abspath(a.starlingctl)
    srv = harness.Server(limits={'idle_timeout': 600.0})
    ver = ssl.TLSVersion.TLSv1_2 if a.tls12 else ssl.TLSVersion.TLSv1_3
    try:
        pid = srv.proc.pid
        results = {}
        for mode in ('full', 'resumed'):
            ctx = harness.tls_context(tls_max=ver, alpn=('xmpp-client',))
            session, _ = login(srv, ctx)
            reused_count = 0
            t0, c0 = time.monotonic(), cpu_seconds(pid)
            for _ in range(a.logins):
                if mode == 'full':
                    ctx = harness.tls_context(tls_max=ver,
                                              alpn=('xmpp-client',))
                    _, reused = login(srv, ctx)
                else:
                    new, reused = login(srv, ctx, session)
                    session = new or session
                reused_count += reused
            cpu = cpu_seconds(pid) - c0
            results[mode] = (cpu / a.logins * 1e3,
                             (time.monotonic() - t0) / a.logins * 1e3,
                             reused_count)
        print('starlingd, %s, %d logins each (direct TLS + SCRAM-SHA-1 + '
              'bind + close):' % ('TLS 1.2' if a.tls12 else 'TLS 1.3',
                                  a.logins))
        for mode, (cpu, wall, reused) in results.items():
            print('  %-8s server CPU %.3f ms per login, wall %.2f ms, '
                  '%d of %d resumed' % (mode, cpu, wall, reused, a.logins))
        full, res = results['full'][0], results['resumed'][0]
        if res > 0:
            print('  a resumed login costs the server %.2fx less CPU'
                  % (full / res))
    finally:
        srv.stop()


if __name__ == '__main__':
    main()
