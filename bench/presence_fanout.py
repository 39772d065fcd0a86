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
import hashlib
import hmac
import os
import resource
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'tests', 'integration'))
import harness  # noqa: E402

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


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError('exited with %d' % proc.returncode)
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError('port %d never opened' % port)


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


class Prosody:
    name = 'prosody'

    def __init__(self, users, n):
        self.dir = tempfile.mkdtemp(prefix='bench-prosody-')
        self.port = free_port()
        cert, key = harness.test_certificate()
        data = os.path.join(self.dir, 'data')
        acc = os.path.join(data, 'localhost', 'accounts')
        os.makedirs(acc)
        for jid, pw in users.items():
            # internal_hashed's file, as `prosodyctl register` writes it
            # (one process per account would take minutes for 1,000).
            salt = 'salt-' + jid.split('@')[0]
            salted = hashlib.pbkdf2_hmac('sha1', pw.encode(), salt.encode(),
                                         4096)
            ck = hmac.new(salted, b'Client Key', 'sha1').digest()
            sk = hmac.new(salted, b'Server Key', 'sha1').digest()
            with open(os.path.join(acc, jid.split('@')[0] + '.dat'), 'w') as f:
                f.write('return { ["iteration_count"] = 4096; ["salt"] = "%s"; '
                        '["stored_key"] = "%s"; ["server_key"] = "%s"; };\n'
                        % (salt, hashlib.sha1(ck).hexdigest(), sk.hex()))
        conf = os.path.join(self.dir, 'prosody.cfg.lua')
        with open(conf, 'w') as f:
            f.write('''
run_as_root = true
pidfile = "%(d)s/prosody.pid"
data_path = "%(data)s"
certificates = "%(d)s/certs"
log = { { levels = { min = "error" }, to = "file", filename = "%(d)s/prosody.log" } }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { %(port)d }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }
component_ports = { }
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "posix" }
modules_disabled = { "s2s", "s2s_auth_certs", "offline", "limits" }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
ssl = { certificate = "%(cert)s", key = "%(key)s" }
VirtualHost "localhost"
''' % {'d': self.dir, 'data': data, 'port': self.port, 'cert': cert,
                'key': key})
        self.proc = subprocess.Popen(
            ['/usr/bin/prosody', '-F', '--config', conf],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.port, self.proc)
        self.pid = self.proc.pid

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Ejabberd:
    name = 'ejabberd'

    def __init__(self, users, n):
        self.dir = tempfile.mkdtemp(prefix='bench-ejabberd-')
        os.chmod(self.dir, 0o777)
        self.port = free_port()
        cert, key = harness.test_certificate()
        pem = os.path.join(self.dir, 'cert.pem')
        with open(pem, 'w') as out:
            for p in (cert, key):
                with open(p) as f:
                    out.write(f.read())
        self.node = 'bench%d@localhost' % os.getpid()
        conf = os.path.join(self.dir, 'ejabberd.yml')
        with open(conf, 'w') as f:
            f.write('''hosts:
  - localhost
loglevel: error
certfiles:
  - "%(pem)s"
listen:
  -
    port: %(port)d
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    max_stanza_size: 262144
    shaper: none
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  c2s:
    allow: all
  register:
    allow: all
shaper_rules:
  c2s_shaper: none
  max_user_sessions: 10000
  max_user_offline_messages: 1
auth_method: internal
auth_password_format: scram
registration_timeout: infinity
modules:
  mod_register:
    ip_access: all
    access: register
  mod_roster: {}
  mod_disco: {}
  mod_ping: {}
''' % {'pem': pem, 'port': self.port})
        self.env = dict(os.environ, HOME=self.dir)
        ctl = os.path.join(self.dir, 'ejabberdctl.cfg')
        with open(ctl, 'w') as f:
            f.write('ERLANG_NODE=%s\nINET_DIST_INTERFACE=127.0.0.1\n' % self.node)
        self.base = ['/usr/sbin/ejabberdctl', '--config', conf, '--ctl-config', ctl,
                     '--logs', self.dir, '--spool', os.path.join(self.dir, 'db'),
                     '--node', self.node]
        os.makedirs(os.path.join(self.dir, 'db'), exist_ok=True)
        os.chmod(os.path.join(self.dir, 'db'), 0o777)
        self.log = open(os.path.join(self.dir, 'out.log'), 'w')
        self.proc = subprocess.Popen(self.base + ['foreground'], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        wait_port(self.port, self.proc, timeout=90)
        # In-band registration (XEP-0077, open on this throwaway server
        # only): `ejabberdctl register` costs a second per account.
        for jid, pw in users.items():
            register_inband(self.port, jid.split('@')[0], pw)
        self.pid = self.beam_pid()

    def beam_pid(self):
        # ejabberdctl runs erl under `su ejabberd`: find the VM by its node
        # name (only beam.smp's command line has both).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = subprocess.run(['pgrep', '-f', 'beam.*-sname %s' % self.node],
                                 stdout=subprocess.PIPE).stdout.split()
            if out:
                return int(out[0])
            time.sleep(0.2)
        raise RuntimeError('no beam.smp process for %s' % self.node)

    def stop(self):
        subprocess.run(self.base + ['stop'], env=self.env, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


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


def register_inband(port, user, password):
    c = harness.Client(port, timeout=TIMEOUT)
    c.open_stream(to='localhost')
    c.starttls()
    c.open_stream(to='localhost')
    c.send("<iq type='set' id='reg'><query xmlns='jabber:iq:register'>"
           "<username>%s</username><password>%s</password></query></iq>"
           % (user, password))
    el = c.expect_element(harness.q(harness.NS_CLIENT, 'iq'))
    c.close()
    if el.get('type') != 'result':
        raise RuntimeError('in-band registration of %s refused' % user)


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
