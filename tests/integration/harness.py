"""Integration-test harness: a real starlingd on ephemeral loopback ports and
raw-socket XMPP clients, standard library only.

Every test file is a unittest module run as

    /usr/bin/python3 test_X.py STARLINGD STARLINGCTL [unittest args]

(or with the STARLINGD and STARLINGCTL environment variables) and exits
non-zero when a test fails. `main()` does that and, for a failing test,
prints the log lines the servers wrote while it ran.

Pieces:
  Server   starts starlingd with a config in a temporary directory (two
           hosts, a STARTTLS and a direct-TLS listener on port 0, a
           certificate made with the openssl CLI, users made with
           `starlingctl adduser`), parses the listening ports from its log,
           stops it with SIGTERM and checks that it exits 0.
  Client   one TCP connection: STARTTLS or direct TLS, an XML reader that
           yields the stream header, each top-level element and the close
           tag, SCRAM (SHA-1/SHA-256, -PLUS with tls-unique) and PLAIN,
           resource binding.
  login()  connect + STARTTLS + SASL + bind in one call.
"""

import atexit
import base64
import collections
import hashlib
import hmac
import os
import re
import secrets
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

NS_STREAMS = 'http://etherx.jabber.org/streams'
NS_CLIENT = 'jabber:client'
NS_XML = 'http://www.w3.org/XML/1998/namespace'
NS_TLS = 'urn:ietf:params:xml:ns:xmpp-tls'
NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl'
NS_SASL_CB = 'urn:xmpp:sasl-cb:0'
NS_BIND = 'urn:ietf:params:xml:ns:xmpp-bind'
NS_SESSION = 'urn:ietf:params:xml:ns:xmpp-session'
NS_STREAM_ERR = 'urn:ietf:params:xml:ns:xmpp-streams'
NS_STANZAS = 'urn:ietf:params:xml:ns:xmpp-stanzas'


def q(ns, name):
    """ElementTree's qualified name: '{ns}name'."""
    return '{%s}%s' % (ns, name)


STREAM_ERROR = q(NS_STREAMS, 'error')
FEATURES = q(NS_STREAMS, 'features')

# Seconds a client waits for something that must come. Generous: the same
# tests run under ASan. Checks that something does NOT come use a round
# trip (Client.sync) instead of waiting.
TIMEOUT = float(os.environ.get('STARLING_IT_TIMEOUT', '10'))

STARLINGD = os.environ.get('STARLINGD')
STARLINGCTL = os.environ.get('STARLINGCTL')
OPENSSL = shutil.which('openssl') or '/usr/bin/openssl'

HOSTS = ('localhost', 'example.org')
# Accounts every server gets unless a test says otherwise.
DEFAULT_USERS = {
    'alice@localhost': 'alice-secret',
    'bob@localhost': 'bob-secret',
    'carol@localhost': 'carol-secret',
    'dave@example.org': 'dave-secret',
}


class ProtocolError(AssertionError):
    """The server sent something other than what the test expected."""


# ------------------------------------------------------------ processes

_procs = []  # every Popen we started, killed at exit if still running
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


def _mkdtemp():
    d = tempfile.mkdtemp(prefix='starling-it-')
    _tmpdirs.append(d)
    return d


_cert = None


def new_certificate(cn='localhost', sans=HOSTS):
    """(cert, key) paths of a fresh self-signed certificate (openssl CLI)."""
    d = _mkdtemp()
    crt, key = os.path.join(d, 'test.crt'), os.path.join(d, 'test.key')
    subprocess.run(
        [OPENSSL, 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
         'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3',
         '-subj', '/CN=' + cn,
         '-addext', 'subjectAltName=' + ','.join('DNS:' + h for h in sans),
         '-keyout', key, '-out', crt],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return crt, key


def test_certificate():
    """(cert, key) of the self-signed certificate for localhost and
    example.org that every server uses, made once per process."""
    global _cert
    if _cert is None:
        _cert = new_certificate()
    return _cert


class TestCA:
    """A test CA (openssl CLI) and certificates it signs."""

    def __init__(self):
        self.dir = _mkdtemp()
        self.crt = os.path.join(self.dir, 'ca.crt')
        self.key = os.path.join(self.dir, 'ca.key')
        subprocess.run([OPENSSL, 'req', '-x509', '-newkey', 'ec', '-pkeyopt',
                        'ec_paramgen_curve:prime256v1', '-nodes', '-days', '3',
                        '-subj', '/CN=Starling test CA', '-addext',
                        'basicConstraints=critical,CA:TRUE', '-addext',
                        'keyUsage=critical,keyCertSign,cRLSign',
                        '-keyout', self.key, '-out', self.crt],
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    def cert(self, name, sans):
        crt = os.path.join(self.dir, name + '.crt')
        key = os.path.join(self.dir, name + '.key')
        csr = os.path.join(self.dir, name + '.csr')
        ext = os.path.join(self.dir, name + '.ext')
        with open(ext, 'w') as f:
            f.write('subjectAltName=%s\n' % ','.join('DNS:' + s for s in sans))
        subprocess.run([OPENSSL, 'req', '-new', '-newkey', 'ec', '-pkeyopt',
                        'ec_paramgen_curve:prime256v1', '-nodes', '-subj',
                        '/CN=' + sans[0], '-keyout', key, '-out', csr],
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
        subprocess.run([OPENSSL, 'x509', '-req', '-in', csr, '-CA', self.crt,
                        '-CAkey', self.key, '-CAcreateserial', '-days', '3',
                        '-extfile', ext, '-out', crt],
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
        return crt, key


def _conf_value(v):
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return '"%s"' % v.replace('\\', '\\\\').replace('"', '\\"')
    if isinstance(v, (list, tuple)):
        return '[ %s ]' % ', '.join(_conf_value(x) for x in v)
    raise TypeError(v)


class Server:
    """One starlingd process with its own temporary directory.

    Keyword groups override the settings of the generated config file, e.g.
    Server(c2s={'allow_plain_loopback': True}, limits={'idle_timeout': 1.0}).
    `top` adds settings at the top level of the file: a list is written as
    an array, a dict as a group, e.g.
    Server(top={'modules': ['ping'], 'version': {'show_os': True}}).
    """

    registry = []  # every server made in this process (for failure logs)

    def __init__(self, users=None, hosts=HOSTS, tls=True, direct_tls=True,
                 c2s=None, sasl=None, limits=None, top=None, start=True,
                 raw='', cert=None):
        self.dir = _mkdtemp()
        self.conf = os.path.join(self.dir, 'starlingd.conf')
        self.hosts = tuple(hosts)
        self.tls = tls
        self.direct_tls = direct_tls and tls
        self.cert, self.key = (cert or test_certificate()) if tls else (None, None)
        # Config text appended as is (groups the keyword arguments cannot
        # express, such as s2s with its lists of groups).
        self.raw = raw
        self.s2s_port = None  # the first s2s listener, from the log
        self.component_port = None  # the first component listener
        self.users = dict(DEFAULT_USERS if users is None else users)
        self.settings = {
            'c2s': {'require_encryption': True,
                    'allow_plain_loopback': False,
                    'resource_conflict': 'new-wins',
                    'max_resources': 32},
            'sasl': {'plain': True,
                     'offer_plus': True,
                     'scram_iterations': 4096,
                     'max_auth_failures': 3,
                     # Failures slow every later attempt from 127.0.0.1
                     # down; only the test of that delay turns it on.
                     'auth_failure_delay': 0.0},
            'limits': {'idle_timeout': 60.0,
                       'close_timeout': 2.0,
                       'handshake_timeout': 30.0},
        }
        for group, over in (('c2s', c2s), ('sasl', sasl), ('limits', limits)):
            self.settings[group].update(over or {})
        self.top = dict(top or {})
        self.proc = None
        self.lines = []
        self.mark = 0
        self.port = None      # STARTTLS listener
        self.tls_port = None  # direct TLS listener
        self.exit_code = None
        self._cond = threading.Condition()
        Server.registry.append(self)
        self.write_config(ports=(0, 0))
        for jid, pw in self.users.items():
            self.adduser(jid, pw)
        if start:
            self.start()

    # -- configuration

    def write_config(self, ports):
        out = ['# written by tests/integration/harness.py',
               'hosts = [ %s ];' % ', '.join(_conf_value(h) for h in self.hosts)]
        listen = ['{ address = "127.0.0.1"; port = %d; direct_tls = false; }'
                  % ports[0]]
        if self.direct_tls:
            listen.append('{ address = "127.0.0.1"; port = %d; '
                          'direct_tls = true; }' % ports[1])
        out.append('c2s = {')
        out.append('    listen = ( %s );' % ', '.join(listen))
        for k, v in self.settings['c2s'].items():
            out.append('    %s = %s;' % (k, _conf_value(v)))
        out.append('};')
        top = dict(self.top)
        if self.tls:
            # top={'tls': {...}} adds settings to this group.
            extra = ''.join(' %s = %s;' % (n, _conf_value(x))
                            for n, x in top.pop('tls', {}).items())
            out.append('tls = { cert = %s; key = %s;%s };'
                       % (_conf_value(self.cert), _conf_value(self.key),
                          extra))
        for group in ('sasl', 'limits'):
            out.append('%s = {' % group)
            for k, v in self.settings[group].items():
                out.append('    %s = %s;' % (k, _conf_value(v)))
            out.append('};')
        out.append('storage = { path = %s; };'
                   % _conf_value(os.path.join(self.dir, 'starling.db')))
        out.append('log = { level = "debug"; };')
        for k, v in top.items():
            if isinstance(v, dict):
                out.append('%s = { %s };' % (k, ' '.join(
                    '%s = %s;' % (n, _conf_value(x)) for n, x in v.items())))
            else:
                out.append('%s = %s;' % (k, _conf_value(v)))
        if self.raw:
            out.append(self.raw)
        with open(self.conf, 'w') as f:
            f.write('\n'.join(out) + '\n')

    def befriend(self, a, b):
        """`starlingctl roster A add B --both`: a subscription both between
        the two accounts, provisioned in the store."""
        r = subprocess.run([STARLINGCTL, '--config', self.conf, 'roster', a,
                            'add', b, '--both'], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        if r.returncode != 0:
            raise RuntimeError('starlingctl roster %s add %s failed: %s'
                               % (a, b, r.stdout.decode(errors='replace')))

    def adduser(self, jid, password):
        """`starlingctl --config CONF adduser JID`, password on stdin."""
        r = subprocess.run([STARLINGCTL, '--config', self.conf, 'adduser', jid],
                           input=(password + '\n').encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError('starlingctl adduser %s failed (%d): %s'
                               % (jid, r.returncode, r.stdout.decode(errors='replace')))

    # -- process

    def _reader(self, stream):
        for raw in iter(stream.readline, b''):
            line = raw.decode('utf-8', errors='replace').rstrip('\n')
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _spawn(self):
        self.lines = []
        self.mark = 0
        self.proc = subprocess.Popen([STARLINGD, '--config', self.conf],
                                     stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        _procs.append(self.proc)
        t = threading.Thread(target=self._reader, args=(self.proc.stdout,),
                             daemon=True)
        t.start()
        self._thread = t

    def start(self, timeout=TIMEOUT * 2):
        self._spawn()
        self.wait_log(r'\bready\b', timeout)
        for line in self.lines:
            m = re.search(r'c2s listening on 127\.0\.0\.1:(\d+) \((STARTTLS|direct TLS)\)',
                          line)
            m2 = re.search(r's2s listening on [0-9.:]+:(\d+) ', line)
            if m2 and self.s2s_port is None:
                self.s2s_port = int(m2.group(1))
            m3 = re.search(r'component listening on [0-9.:]+:(\d+) ', line)
            if m3 and self.component_port is None:
                self.component_port = int(m3.group(1))
            if m:
                if m.group(2) == 'STARTTLS':
                    self.port = int(m.group(1))
                else:
                    self.tls_port = int(m.group(1))
        if self.port is None or (self.direct_tls and self.tls_port is None):
            raise AssertionError('no listening ports in the log:\n'
                                 + self.log_text())

    def wait_log(self, pattern, timeout=TIMEOUT, start=0):
        """Waits for a log line matching pattern (from line index start);
        returns the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    m = rx.search(line)
                    if m:
                        return m
                if self.proc.poll() is not None and not self._thread.is_alive():
                    raise AssertionError(
                        'starlingd exited (%s) before logging /%s/:\n%s'
                        % (self.proc.returncode, pattern, self.log_text()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError('starlingd did not log /%s/ in %.1f s:\n%s'
                                         % (pattern, timeout, self.log_text()))
                self._cond.wait(min(left, 0.2))

    def log_text(self, start=0):
        with self._cond:
            return '\n'.join(self.lines[start:])

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=TIMEOUT):
        """SIGTERM; asserts a clean exit (code 0) within timeout."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self.wait_exit(timeout)
            if rc is None:
                self.proc.kill()
                self.proc.wait(5)
                self._thread.join(5)
                raise AssertionError('starlingd did not exit within %.1f s of '
                                     'SIGTERM:\n%s' % (timeout, self.log_text()))
        self._thread.join(5)
        self.exit_code = self.proc.returncode
        if self.exit_code != 0:
            raise AssertionError('starlingd exited with %s:\n%s'
                                 % (self.exit_code, self.log_text()))
        self.check_sanitizers()

    def check_sanitizers(self):
        """Under ASan/UBSan a report in the log fails the test even when
        the process survived it."""
        bad = [l for l in self.lines
               if re.search(r'AddressSanitizer|LeakSanitizer|runtime error:', l)]
        if bad:
            raise AssertionError('sanitizer report from starlingd:\n'
                                 + self.log_text())

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


# --------------------------------------------------------------- client

class Client:
    """One connection to the server, with an XML reader on the current
    stream. Events: ('header', attrib, nsdecls), ('element', Element),
    ('close',) for the server's close tag, ('eof',) for TCP end."""

    def __init__(self, port, timeout=TIMEOUT, tls=False, alpn=('xmpp-client',),
                 cafile=None, tls_max=None, tls_min=None, server_hostname='localhost',
                 source=None):
        self.timeout = timeout
        # source: the local address to connect from (127.0.0.2 is a
        # second client address on Linux loopback).
        self.sock = socket.create_connection(
            ('127.0.0.1', port), timeout=timeout,
            source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tls = False
        self.raw = bytearray()          # everything received, all layers
        self.eof = False
        self.reset = False
        self.jid = None
        self.features = None
        self.header = None
        self.header_ns = {}
        self.header_tag = None
        self._id = 0
        self.keylog = None
        self._restart()
        if tls:
            ctx = tls_context(cafile=cafile, tls_max=tls_max, tls_min=tls_min,
                              alpn=alpn)
            self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
            self.tls = True

    # -- plumbing

    def _restart(self):
        """A new stream: a fresh parser for what the server sends next."""
        self.parser = ET.XMLPullParser(events=('start', 'end', 'start-ns'))
        self.depth = 0
        self.pending_ns = []
        self.events = collections.deque()
        self.stream_raw = bytearray()   # received on the current stream
        self.closed = False             # the server's close tag came
        self.after_close = bytearray()  # bytes after that close tag

    def next_id(self, prefix='i'):
        self._id += 1
        return '%s%d' % (prefix, self._id)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode('utf-8')
        self.sock.sendall(data)

    def _feed(self, data):
        if self.closed:
            self.after_close += data
            return
        # The parser refuses anything after the root's end tag; what follows
        # our peer's close tag is kept apart (and must be nothing, 3.5-3).
        end = data.find(b'</stream:stream>')
        if end >= 0:
            self.after_close += data[end + 16:]
            data = data[:end + 16]
        self.stream_raw += data
        try:
            self.parser.feed(data)
            if hasattr(self.parser, 'flush'):
                self.parser.flush()
        except ET.ParseError as e:
            raise ProtocolError('server sent malformed XML (%s): %r'
                                % (e, bytes(self.stream_raw[-400:])))
        for ev, obj in self.parser.read_events():
            if ev == 'start-ns':
                self.pending_ns.append(obj)
            elif ev == 'start':
                if self.depth == 0:
                    self.header = dict(obj.attrib)
                    self.header_ns = dict(self.pending_ns)
                    self.header_tag = obj.tag
                    self.events.append(('header', dict(obj.attrib),
                                        dict(self.pending_ns)))
                self.pending_ns = []
                self.depth += 1
            elif ev == 'end':
                self.depth -= 1
                if self.depth == 1:
                    self.events.append(('element', obj))
                elif self.depth == 0:
                    self.closed = True
                    self.events.append(('close',))

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            raise TimeoutError
        except (ConnectionResetError, BrokenPipeError):
            self.reset = True
            data = b''
        except ssl.SSLError as e:
            # A TLS alert or a close without close_notify ends the stream.
            self.reset = True
            self.ssl_error = e
            data = b''
        if not data:
            self.eof = True
            self.events.append(('eof',))
            return
        self.raw += data
        self._feed(data)

    def next_event(self, timeout=None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.events:
            if self.eof:
                return ('eof',)
            try:
                self._recv(deadline)
            except TimeoutError:
                return None
        return self.events.popleft()

    def _describe(self):
        return 'received so far on this stream: %r' % bytes(self.stream_raw[-1500:])

    def expect_header(self, timeout=None):
        ev = self.next_event(timeout)
        if ev is None or ev[0] != 'header':
            raise ProtocolError('expected a stream header, got %r; %s'
                                % (ev, self._describe()))
        return ev[1]

    def expect_element(self, tag=None, timeout=None):
        """The next top-level element (with that tag, if given)."""
        ev = self.next_event(timeout)
        if ev is None:
            raise ProtocolError('timed out waiting for %s; %s'
                                % (tag or 'an element', self._describe()))
        if ev[0] != 'element':
            raise ProtocolError('expected %s, got %r; %s'
                                % (tag or 'an element', ev, self._describe()))
        el = ev[1]
        if tag is not None and el.tag != tag:
            raise ProtocolError('expected %s, got %s: %s'
                                % (tag, el.tag, ET.tostring(el, 'unicode')))
        return el

    def expect_close(self, timeout=None):
        ev = self.next_event(timeout)
        if ev is None or ev[0] != 'close':
            raise ProtocolError('expected </stream:stream>, got %r; %s'
                                % (ev, self._describe()))

    def expect_eof(self, timeout=None):
        """The TCP connection ends (nothing but the end may come)."""
        ev = self.next_event(timeout)
        if ev is None:
            raise ProtocolError('connection still open after %.1f s'
                                % (self.timeout if timeout is None else timeout))
        if ev[0] != 'eof':
            raise ProtocolError('expected the connection to end, got %r' % (ev,))
        if self.after_close:
            raise ProtocolError('data after the close tag: %r'
                                % bytes(self.after_close))

    def expect_stream_error(self, condition, answer=True, timeout=None):
        """The next element is <stream:error> with that condition, then the
        close tag; with answer, we send ours and the connection must end.
        Returns the <stream:error> element."""
        el = self.expect_element(timeout=timeout)
        if el.tag != STREAM_ERROR:
            raise ProtocolError('expected <stream:error><%s/>, got %s'
                                % (condition, ET.tostring(el, 'unicode')))
        conds = [c.tag for c in el if c.tag != q(NS_STREAM_ERR, 'text')]
        if conds != [q(NS_STREAM_ERR, condition)]:
            raise ProtocolError('expected stream error %s, got %s'
                                % (condition, ET.tostring(el, 'unicode')))
        self.expect_close(timeout)
        if answer:
            try:
                self.send('</stream:stream>')
            except OSError:
                pass
            self.expect_eof(timeout)
        return el

    def close_stream(self):
        """Sends our close tag; expects the server's and the end of TCP."""
        self.send('</stream:stream>')
        self.expect_close()
        self.expect_eof()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- negotiation

    def open_stream(self, to='localhost', frm=None, lang='en', version='1.0',
                    xmlns=NS_CLIENT, decl=True, extra='', features=True):
        """Sends our stream header; returns the server's header attributes
        (the features element is kept in self.features)."""
        self._restart()
        attrs = ''
        if to is not None:
            attrs += " to='%s'" % to
        if frm is not None:
            attrs += " from='%s'" % frm
        if version is not None:
            attrs += " version='%s'" % version
        if lang is not None:
            attrs += " xml:lang='%s'" % lang
        self.send("%s<stream:stream xmlns='%s' xmlns:stream='%s'%s%s>"
                  % ("<?xml version='1.0'?>" if decl else '', xmlns,
                     NS_STREAMS, attrs, extra))
        hdr = self.expect_header()
        if features:
            self.features = self.expect_element(FEATURES)
        return hdr

    def feature(self, ns, name):
        return self.features.find(q(ns, name)) if self.features is not None else None

    def mechanisms(self):
        m = self.feature(NS_SASL, 'mechanisms')
        return [e.text for e in m.findall(q(NS_SASL, 'mechanism'))] if m is not None else []

    def cb_types(self):
        cb = self.feature(NS_SASL_CB, 'sasl-channel-binding')
        if cb is None:
            return None
        return [e.get('type') for e in cb.findall(q(NS_SASL_CB, 'channel-binding'))]

    def starttls(self, cafile=None, tls_max=None, tls_min=None, ctx=None,
                 server_hostname='localhost', keylog=False):
        self.send("<starttls xmlns='%s'/>" % NS_TLS)
        self.expect_element(q(NS_TLS, 'proceed'))
        self.wrap_tls(cafile, tls_max, tls_min, ctx, server_hostname, keylog)

    def wrap_tls(self, cafile=None, tls_max=None, tls_min=None, ctx=None,
                 server_hostname='localhost', keylog=False):
        if ctx is None:
            if keylog:
                self.keylog = os.path.join(_mkdtemp(), 'keylog')
            ctx = tls_context(cafile=cafile, tls_max=tls_max, tls_min=tls_min,
                              keylog=self.keylog if keylog else None)
        self.sock.settimeout(self.timeout)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        self.tls = True
        self._restart()

    def auth_plain(self, user, password, authzid='', trailer=''):
        msg = ('%s\0%s\0%s' % (authzid, user, password)).encode()
        self.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>%s"
                  % (NS_SASL, base64.b64encode(msg).decode(), trailer))
        return self.expect_element()

    def auth_scram(self, user, password, mech='SCRAM-SHA-256', **kw):
        """A SCRAM exchange; returns the final element (<success/> or
        <failure/>). See Scram for the keywords."""
        return Scram(self, user, password, mech, **kw).run()

    def bind(self, resource=None, expect_ok=True):
        iid = self.next_id('bind')
        inner = ('<resource>%s</resource>' % xml_escape(resource)
                 if resource is not None else '')
        self.send("<iq type='set' id='%s'><bind xmlns='%s'>%s</bind></iq>"
                  % (iid, NS_BIND, inner))
        iq = self.expect_element(q(NS_CLIENT, 'iq'))
        if iq.get('id') != iid:
            raise ProtocolError('bind answer with id %r' % iq.get('id'))
        if not expect_ok:
            return iq
        if iq.get('type') != 'result':
            raise ProtocolError('bind failed: %s' % ET.tostring(iq, 'unicode'))
        self.jid = iq.find('%s/%s' % (q(NS_BIND, 'bind'), q(NS_BIND, 'jid'))).text
        return self.jid

    def tls_exporter(self):
        """RFC 9266 tls-exporter of this TLS 1.3 connection (needs
        keylog=True at STARTTLS): TLS-Exporter("EXPORTER-Channel-Binding",
        empty context, 32) per RFC 8446 §7.5, from the exporter secret in
        the key log."""
        if self.sock.version() != 'TLSv1.3':
            raise ValueError('tls13_exporter needs TLS 1.3')
        secret = None
        with open(self.keylog) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[0] == 'EXPORTER_SECRET':
                    secret = bytes.fromhex(parts[2])
        if secret is None:
            raise ValueError('no EXPORTER_SECRET in the key log')
        hname = 'sha384' if self.sock.cipher()[0].endswith('SHA384') else 'sha256'
        return tls13_exporter(hname, secret, b'EXPORTER-Channel-Binding', b'', 32)

    # -- stanzas

    def sync(self, timeout=None):
        """Round trip to the server: everything the server sent us before
        the answer to this IQ is returned as a list of elements, so a test
        can check that something did NOT arrive. Also guarantees that all
        we sent before has been routed."""
        iid = self.next_id('sync')
        self.send("<iq type='get' id='%s'><ping xmlns='urn:xmpp:ping'/></iq>" % iid)
        before = []
        while True:
            el = self.expect_element(timeout=timeout)
            if el.tag == q(NS_CLIENT, 'iq') and el.get('id') == iid:
                return before
            before.append(el)

    def presence(self, priority=None, extra=''):
        body = '' if priority is None else '<priority>%d</priority>' % priority
        self.send('<presence>%s%s</presence>' % (body, extra))
        self.sync()

    def expect_stanza(self, name, timeout=None):
        return self.expect_element(q(NS_CLIENT, name), timeout)


def tls_context(cafile=None, tls_max=None, tls_min=None, alpn=None,
                keylog=None):
    ctx = ssl.create_default_context(cafile=cafile or test_certificate()[0])
    if keylog is not None:
        # NSS key log: lets tls13_exporter() derive RFC 9266 tls-exporter,
        # which Python's ssl module does not offer.
        ctx.keylog_filename = keylog
    if tls_max is not None:
        ctx.maximum_version = tls_max
    if tls_min is not None:
        ctx.minimum_version = tls_min
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def _hkdf_expand_label(hname, secret, label, context, length):
    full = b'tls13 ' + label
    info = (length.to_bytes(2, 'big') + bytes([len(full)]) + full
            + bytes([len(context)]) + context)
    out, block, i = b'', b'', 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hname).digest()
        out += block
        i += 1
    return out[:length]


def tls13_exporter(hname, exporter_secret, label, context, length):
    """RFC 8446 §7.5: HKDF-Expand-Label(Derive-Secret(secret, label, ""),
    "exporter", Hash(context), length)."""
    h = lambda d: hashlib.new(hname, d).digest()  # noqa: E731
    derived = _hkdf_expand_label(hname, exporter_secret, label, h(b''),
                                 hashlib.new(hname).digest_size)
    return _hkdf_expand_label(hname, derived, b'exporter', h(context), length)


def xml_escape(s):
    return (s.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
            .replace("'", '&apos;').replace('"', '&quot;'))


# ----------------------------------------------------------------- SCRAM

class Scram:
    """Client side of SCRAM (RFC 5802, RFC 7677) with knobs for bad input.

    mech      'SCRAM-SHA-1', 'SCRAM-SHA-256', or their -PLUS variants
    cb_type   channel binding name for -PLUS (default 'tls-unique')
    cb_data   binding data (default: the socket's tls-unique)
    flag      override the gs2 cbind flag ('n', 'y', 'p=...')
    authzid   a= value
    initial   send the client-first in <auth/> (False: empty <auth/>, then
              the client-first in <response/> after the empty challenge)
    """

    def __init__(self, client, user, password, mech='SCRAM-SHA-256',
                 cb_type='tls-unique', cb_data=None, flag=None, authzid=None,
                 initial=True, nonce=None, trailer=''):
        self.c = client
        self.user = user
        self.password = password
        self.mech = mech
        self.plus = mech.endswith('-PLUS')
        base = mech[:-5] if self.plus else mech
        self.hname = {'SCRAM-SHA-1': 'sha1', 'SCRAM-SHA-256': 'sha256'}[base]
        self.cb_type = cb_type
        self.cb_data = cb_data
        if flag is None:
            flag = 'p=' + cb_type if self.plus else 'n'
        self.flag = flag
        self.authzid = authzid
        self.initial = initial
        self.trailer = trailer  # sent right after the final response
        self.cnonce = nonce or base64.b64encode(secrets.token_bytes(18)).decode()
        self.server_first = None
        self.server_first_attrs = None

    @staticmethod
    def saslname(s):
        return s.replace('=', '=3D').replace(',', '=2C')

    def client_first(self):
        az = 'a=' + self.saslname(self.authzid) if self.authzid else ''
        self.gs2 = '%s,%s,' % (self.flag, az)
        self.first_bare = 'n=%s,r=%s' % (self.saslname(self.user), self.cnonce)
        return self.gs2 + self.first_bare

    def run(self):
        c = self.c
        first = self.client_first().encode()
        if self.initial:
            c.send("<auth xmlns='%s' mechanism='%s'>%s</auth>"
                   % (NS_SASL, self.mech, base64.b64encode(first).decode()))
        else:
            c.send("<auth xmlns='%s' mechanism='%s'/>" % (NS_SASL, self.mech))
            ch = c.expect_element()
            if ch.tag != q(NS_SASL, 'challenge'):
                return ch
            if (ch.text or '') not in ('', '='):
                raise ProtocolError('expected an empty challenge, got %r' % ch.text)
            c.send("<response xmlns='%s'>%s</response>"
                   % (NS_SASL, base64.b64encode(first).decode()))
        ch = c.expect_element()
        if ch.tag != q(NS_SASL, 'challenge'):
            return ch
        sf = base64.b64decode(ch.text or '').decode()
        self.server_first = sf
        attrs = {}
        for part in sf.split(','):
            k, _, v = part.partition('=')
            attrs[k] = v
        self.server_first_attrs = attrs
        if not attrs.get('r', '').startswith(self.cnonce):
            raise ProtocolError('server nonce does not extend ours: %r' % sf)
        salt = base64.b64decode(attrs['s'])
        iters = int(attrs['i'])
        if self.plus:
            data = self.cb_data
            if data is None and self.cb_type == 'tls-exporter':
                data = c.tls_exporter()
            elif data is None:
                data = c.sock.get_channel_binding(self.cb_type)
            cbind = self.gs2.encode() + data
        else:
            cbind = self.gs2.encode()
        without_proof = 'c=%s,r=%s' % (base64.b64encode(cbind).decode(), attrs['r'])
        salted = hashlib.pbkdf2_hmac(self.hname, self.password.encode(), salt, iters)
        client_key = hmac.new(salted, b'Client Key', self.hname).digest()
        stored_key = hashlib.new(self.hname, client_key).digest()
        auth_message = ('%s,%s,%s' % (self.first_bare, sf, without_proof)).encode()
        sig = hmac.new(stored_key, auth_message, self.hname).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        server_key = hmac.new(salted, b'Server Key', self.hname).digest()
        self.expected_v = base64.b64encode(
            hmac.new(server_key, auth_message, self.hname).digest()).decode()
        final = '%s,p=%s' % (without_proof, base64.b64encode(proof).decode())
        c.send("<response xmlns='%s'>%s</response>%s"
               % (NS_SASL, base64.b64encode(final.encode()).decode(), self.trailer))
        res = c.expect_element()
        if res.tag == q(NS_SASL, 'success'):
            data = base64.b64decode(res.text or '').decode()
            if data != 'v=' + self.expected_v:
                raise ProtocolError('wrong server signature: %r (want v=%s)'
                                    % (data, self.expected_v))
        return res


def sasl_failure_condition(el):
    """'not-authorized' for <failure><not-authorized/></failure>; raises
    when el is not a SASL failure."""
    if el.tag != q(NS_SASL, 'failure'):
        raise ProtocolError('expected a SASL <failure/>, got %s'
                            % ET.tostring(el, 'unicode'))
    conds = [c.tag.split('}')[1] for c in el if c.tag != q(NS_SASL, 'text')]
    if len(conds) != 1:
        raise ProtocolError('SASL failure without one condition: %s'
                            % ET.tostring(el, 'unicode'))
    return conds[0]


def stanza_error_condition(el):
    """(type, condition) of a stanza's <error/>."""
    err = el.find(q(NS_CLIENT, 'error'))
    if el.get('type') != 'error' or err is None:
        raise ProtocolError('expected a stanza error, got %s'
                            % ET.tostring(el, 'unicode'))
    conds = [c.tag for c in err if c.tag.startswith('{%s}' % NS_STANZAS)
             and c.tag != q(NS_STANZAS, 'text')]
    if len(conds) != 1:
        raise ProtocolError('stanza error without one condition: %s'
                            % ET.tostring(el, 'unicode'))
    return err.get('type'), conds[0].split('}')[1]


# ----------------------------------------------------------------- login

def iq(c, to, payload, type_='get'):
    """Sends an IQ from client c (to None: for the account) and returns
    the answer with the same id, skipping other stanzas."""
    iid = c.next_id('iq')
    attr = '' if to is None else " to='%s'" % to
    c.send("<iq type='%s' id='%s'%s>%s</iq>" % (type_, iid, attr, payload))
    while True:
        el = c.expect_stanza('iq')
        if el.get('id') == iid:
            return el


def login(server, jid='alice@localhost', password=None, resource=None,
          mech='SCRAM-SHA-256', transport='starttls', tls_max=None):
    """A bound client: connect, STARTTLS (or direct TLS, or plaintext on
    loopback with transport='plain'), SASL, new stream, bind."""
    node, _, domain = jid.partition('@')
    if password is None:
        password = server.users[jid]
    if transport == 'direct':
        c = Client(server.tls_port, tls=True, tls_max=tls_max)
        c.open_stream(to=domain)
    else:
        c = Client(server.port)
        c.open_stream(to=domain)
        if transport == 'starttls':
            c.starttls(tls_max=tls_max)
            c.open_stream(to=domain)
    if mech == 'PLAIN':
        res = c.auth_plain(node, password)
    else:
        res = c.auth_scram(node, password, mech)
    if res.tag != q(NS_SASL, 'success'):
        raise ProtocolError('login of %s failed: %s' % (jid, ET.tostring(res, 'unicode')))
    c.open_stream(to=domain)
    c.bind(resource)
    return c


# ------------------------------------------------------------ test runner

class ServerTestCase(unittest.TestCase):
    """Closes every client a test opened (self.client(...) / self.login)."""

    def setUp(self):
        self._clients = []

    def tearDown(self):
        # Close politely, so that the server has unbound every session of
        # this test before the next one starts.
        open_ = []
        for c in self._clients:
            try:
                if not c.eof and not c.closed:
                    c.send('</stream:stream>')
                    open_.append(c)
            except Exception:
                pass
        deadline = time.monotonic() + 1.5
        for c in open_:
            try:
                while not c.eof and time.monotonic() < deadline:
                    c._recv(deadline)
            except Exception:
                pass
        for c in self._clients:
            c.close()

    def track(self, c):
        self._clients.append(c)
        return c

    def client(self, server, direct=False, **kw):
        port = server.tls_port if direct else server.port
        return self.track(Client(port, tls=direct, **kw))

    def login(self, server, *a, **kw):
        return self.track(login(server, *a, **kw))

    def assertStreamError(self, c, condition, answer=True):
        return c.expect_stream_error(condition, answer=answer)


class SharedServerTestCase(ServerTestCase):
    """One server (self.srv) for all the tests of the class, started with
    the keyword arguments of `server_args` (a dict)."""

    server_args = {}

    @classmethod
    def setUpClass(cls):
        cls.srv = Server(**cls.server_args)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()


class FreshServerTestCase(ServerTestCase):
    """A server of its own (self.srv) for each test, started with
    `server_args`; each pair in `friends` gets a subscription both
    (Server.befriend) before the test runs."""

    server_args = {}
    friends = ()

    def setUp(self):
        super().setUp()
        self.srv = Server(**self.server_args)
        for a, b in self.friends:
            self.srv.befriend(a, b)

    def tearDown(self):
        super().tearDown()
        self.srv.stop()


class _Result(unittest.TextTestResult):
    """Prints the server log lines of a failing test."""

    def startTest(self, test):
        for s in Server.registry:
            s.mark = len(s.lines)
        self._before = len(Server.registry)
        super().startTest(test)

    def _dump(self):
        out = []
        for i, s in enumerate(Server.registry):
            mark = s.mark if i < getattr(self, "_before", 0) else 0
            text = s.log_text(mark)
            if text:
                out.append('--- starlingd log (%s) ---\n%s' % (s.conf, text))
        if out:
            self.stream.write('\n' + '\n'.join(out) + '\n')
            self.stream.flush()

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._dump()

    def addError(self, test, err):
        super().addError(test, err)
        self._dump()


def main():
    global STARLINGD, STARLINGCTL
    args = sys.argv[1:]
    if len(args) >= 2 and not args[0].startswith('-'):
        STARLINGD, STARLINGCTL = os.path.abspath(args[0]), os.path.abspath(args[1])
        args = args[2:]
    if not STARLINGD or not STARLINGCTL:
        sys.stderr.write('usage: %s STARLINGD STARLINGCTL [unittest args]\n'
                         % sys.argv[0])
        sys.exit(2)
    runner = unittest.TextTestRunner(resultclass=_Result, verbosity=2)
    t0 = time.monotonic()
    prog = unittest.main(module='__main__', argv=[sys.argv[0]] + args,
                         testRunner=runner, exit=False)
    sys.stderr.write('%s: %.1f s\n' % (os.path.basename(sys.argv[0]),
                                       time.monotonic() - t0))
    _cleanup()
    sys.exit(0 if prog.result.wasSuccessful() else 1)
