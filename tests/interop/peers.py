"""Prosody and ejabberd as peers for tests and benchmarks: started here,
in a temporary directory, with a throwaway configuration, on loopback,
never through the system's service scripts; stopped by the PIDs started
here. Used by tests/interop/test_s2s_peers.py (federation) and
bench/presence_fanout.py (side-by-side figures).

    Prosody(domain, users, cert, key, c2s_port, s2s_port=None, ...)
    Ejabberd(domain, users, cert, key, c2s_port, s2s_port=None, ...)

Both take the same arguments (and quiet=True: error-level logs only, for
benchmarks): the served domain; accounts {jid: password}
made before the clients come (Prosody: internal_hashed account files
written as `prosodyctl register` writes them; ejabberd: XEP-0077 in-band
registration, open on these throwaway servers only); a certificate and
key (PEM); the c2s port (STARTTLS required); for federation an s2s port,
`ca_file` (trusted for s2s peers), `dns` ("127.0.0.1:PORT", a loopback DNS
server such as dnsmasq answering SRV records for the test domains) and
`secure_auth` (True: peers must present certificates valid for their
domain; False: dialback when they do not). `.pid` is the server process
(ejabberd's beam.smp) for CPU readings, `.log_text()` its log.

Name resolution: Prosody 0.12 resolves with libunbound (Debian's
lua-unbound), pointed at the DNS server with its `unbound = { forward =
"IP@PORT" }` setting; ejabberd with Erlang's resolver, configured by an
inetrc file (`{nameserver, IP, PORT}`, lookups by DNS only) given with
ejabberdctl as ERL_INETRC (the inetrc beside the config file). So SRV records (_xmpp-server._tcp.DOMAIN) decide where each
server connects, as on the real network, without touching /etc.
"""
import hashlib
import hmac
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'integration'))
import harness  # noqa: E402

PROSODY = shutil.which('prosody') or '/usr/bin/prosody'
EJABBERDCTL = shutil.which('ejabberdctl') or '/usr/sbin/ejabberdctl'
START_TIMEOUT = 90


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=START_TIMEOUT):
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


def lua_str(s):
    return '"%s"' % s.replace('\\', '\\\\').replace('"', '\\"')


class Prosody:
    name = 'prosody'

    def __init__(self, domain, users, cert, key, c2s_port, s2s_port=None,
                 ca_file=None, dns=None, secure_auth=False, quiet=False,
                 modules=None):
        """modules: more modules to enable, name -> a line of global
        config they need ('' for none) (benchmarks: "mam")."""
        self.domain = domain
        self.dir = tempfile.mkdtemp(prefix='peer-prosody-')
        self.port = c2s_port
        self.s2s_port = s2s_port
        self.log = os.path.join(self.dir, 'prosody.log')
        data = os.path.join(self.dir, 'data')
        acc = os.path.join(data, domain.replace('.', '%2e'), 'accounts')
        os.makedirs(acc)
        for jid, pw in users.items():
            # internal_hashed's file, as `prosodyctl register` writes it
            # (one process per account would take minutes for 1,000).
            node = jid.split('@')[0]
            salt = 'salt-' + node
            salted = hashlib.pbkdf2_hmac('sha1', pw.encode(), salt.encode(),
                                         4096)
            ck = hmac.new(salted, b'Client Key', 'sha1').digest()
            sk = hmac.new(salted, b'Server Key', 'sha1').digest()
            with open(os.path.join(acc, node + '.dat'), 'w') as f:
                f.write('return { ["iteration_count"] = 4096; ["salt"] = "%s"; '
                        '["stored_key"] = "%s"; ["server_key"] = "%s"; };\n'
                        % (salt, hashlib.sha1(ck).hexdigest(), sk.hex()))
        ssl = '{ certificate = %s, key = %s%s }' % (
            lua_str(cert), lua_str(key),
            ', cafile = %s' % lua_str(ca_file) if ca_file else '')
        s2s = 's2s_ports = { %d }' % s2s_port if s2s_port else 's2s_ports = { }'
        conf = os.path.join(self.dir, 'prosody.cfg.lua')
        with open(conf, 'w') as f:
            f.write('''-- throwaway config (tests/interop/peers.py)
run_as_root = true
pidfile = %(d)s
data_path = %(data)s
certificates = %(certs)s
log = { { levels = { min = %(level)s }, to = "file", filename = %(log)s } }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { %(port)d }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
%(s2s)s
s2s_direct_tls_ports = { }
http_ports = { }
https_ports = { }
component_ports = { }
modules_enabled = { "roster", "saslauth", "tls", "dialback", "disco", "ping", "posix"%(more)s }
%(more_conf)s
modules_disabled = { "offline", "limits"%(nos2s)s }
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = %(secure)s
%(unbound)s
ssl = %(ssl)s
VirtualHost %(domain)s
  ssl = %(ssl)s
''' % {'d': lua_str(os.path.join(self.dir, 'prosody.pid')),
       'data': lua_str(data), 'certs': lua_str(os.path.join(self.dir, 'certs')),
       'log': lua_str(self.log), 'port': c2s_port, 's2s': s2s,
       'level': '"error"' if quiet else '"debug"',
       'nos2s': '' if s2s_port else ', "s2s"',
       'secure': 'true' if secure_auth else 'false',
       'unbound': ('unbound = { forward = %s; resolvconf = false; '
                   'hoststxt = false }' % lua_str(dns.replace(':', '@'))
                   if dns else ''),
       'ssl': ssl, 'domain': lua_str(domain),
       'more': ''.join(', ' + lua_str(m) for m in (modules or {})),
       'more_conf': '\n'.join(v for v in (modules or {}).values() if v)})
        self.proc = subprocess.Popen([PROSODY, '-F', '--config', conf],
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        try:
            wait_port(c2s_port, self.proc)
            if s2s_port:
                wait_port(s2s_port, self.proc)
        except Exception:
            self.stop()
            raise
        self.pid = self.proc.pid

    def log_text(self):
        try:
            with open(self.log, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def register_inband(port, domain, user, password):
    c = harness.Client(port, timeout=30)
    c.open_stream(to=domain)
    c.starttls()
    c.open_stream(to=domain)
    c.send("<iq type='set' id='reg'><query xmlns='jabber:iq:register'>"
           "<username>%s</username><password>%s</password></query></iq>"
           % (user, password))
    el = c.expect_element(harness.q(harness.NS_CLIENT, 'iq'))
    c.close()
    if el.get('type') != 'result':
        raise RuntimeError('in-band registration of %s refused' % user)


class Ejabberd:
    name = 'ejabberd'

    def __init__(self, domain, users, cert, key, c2s_port, s2s_port=None,
                 ca_file=None, dns=None, secure_auth=False, quiet=False,
                 modules=None):
        """modules: more modules, name -> their options in YAML flow style
        (benchmarks: mod_mam)."""
        self.domain = domain
        self.dir = tempfile.mkdtemp(prefix='peer-ejabberd-')
        os.chmod(self.dir, 0o777)
        self.port = c2s_port
        self.s2s_port = s2s_port
        pem = os.path.join(self.dir, 'cert.pem')
        with open(pem, 'w') as out:
            for p in (cert, key):
                with open(p) as f:
                    out.write(f.read())
        os.chmod(pem, 0o644)
        self.node = 'peer%d_%d@localhost' % (os.getpid(), c2s_port)
        conf = os.path.join(self.dir, 'ejabberd.yml')
        s2s = ''
        if s2s_port:
            s2s = '''  -
    port: %d
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
''' % s2s_port
        extra = ''
        if ca_file:
            cafile = os.path.join(self.dir, 'ca.pem')
            shutil.copy(ca_file, cafile)
            os.chmod(cafile, 0o644)
            extra += 's2s_cafile: "%s"\n' % cafile
        with open(conf, 'w') as f:
            f.write('''hosts:
  - %(domain)s
loglevel: %(level)s
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
%(s2s)s
s2s_use_starttls: required
s2s_access: all
%(extra)sacl:
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
%(dialback)s%(more)s''' % {'domain': domain, 'pem': pem, 'port': c2s_port, 's2s': s2s,
                   'extra': extra, 'level': 'error' if quiet else 'info',
                   'dialback': '' if secure_auth else '  mod_s2s_dialback: {}\n',
                   'more': ''.join('  %s: %s\n' % kv
                                   for kv in (modules or {}).items())})
        self.env = dict(os.environ, HOME=self.dir)
        if dns:
            ip, port = dns.rsplit(':', 1)
            inetrc = os.path.join(self.dir, 'inetrc')
            with open(inetrc, 'w') as f:
                # resolv_conf "": the system's resolver would be asked
                # first and answer NXDOMAIN for the test domains.
                f.write('{resolv_conf, ""}.\n{hosts_file, ""}.\n'
                        '{nameserver, {%s}, %s}.\n{lookup, [dns]}.\n'
                        % (ip.replace('.', ','), port))
            os.chmod(inetrc, 0o644)
            # ejabberdctl exports ERL_INETRC=CONFIG_DIR/inetrc itself.
        ctl = os.path.join(self.dir, 'ejabberdctl.cfg')
        with open(ctl, 'w') as f:
            f.write('ERLANG_NODE=%s\nINET_DIST_INTERFACE=127.0.0.1\n' % self.node)
            if dns:
                # Also as a kernel parameter: the VM runs under `su`.
                f.write("ERL_OPTIONS='-kernel inetrc \"%s\"'\n" % inetrc)
        self.base = [EJABBERDCTL, '--config', conf, '--ctl-config', ctl,
                     '--logs', self.dir, '--spool', os.path.join(self.dir, 'db'),
                     '--node', self.node]
        os.makedirs(os.path.join(self.dir, 'db'), exist_ok=True)
        os.chmod(os.path.join(self.dir, 'db'), 0o777)
        self.out = open(os.path.join(self.dir, 'out.log'), 'w')
        self.proc = subprocess.Popen(self.base + ['foreground'], env=self.env,
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            wait_port(c2s_port, self.proc)
            for jid, pw in users.items():
                register_inband(c2s_port, domain, jid.split('@')[0], pw)
            self.pid = self.beam_pid()
        except Exception:
            self.stop()
            raise

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

    def log_text(self):
        text = ''
        for name in ('ejabberd.log', 'error.log', 'out.log'):
            try:
                with open(os.path.join(self.dir, name), errors='replace') as f:
                    text += f.read()
            except OSError:
                pass
        return text

    def stop(self):
        subprocess.run(self.base + ['stop'], env=self.env, timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # The VM runs as the ejabberd user, outside our process group.
        subprocess.run(['pkill', '-KILL', '-f', 'beam.*-sname %s' % self.node],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.out.close()
        shutil.rmtree(self.dir, ignore_errors=True)
