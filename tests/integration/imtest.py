"""Helpers for the RFC 6121 tests (test_roster, test_subscription,
test_presence, test_offline), on top of harness.py.

Pieces:
  Session    one bound client of an account: keeps what arrived while it
             waited for something else (the backlog), answers roster pushes
             as a client should (RFC 6121 §2.1.6), roster get/set, presence.
  settle()   a barrier over several sessions: marker messages between every
             pair of them, twice, so that everything a stanza caused (pushes,
             deliveries, presence generated on the contact's side) has
             arrived; returns what each session got. This is what makes
             "nothing else arrived" checks exact.
  Item       a roster item as parsed (jid, name, subscription, ask,
             approved, groups).
  Pool       fresh accounts for each test, made when the server is made, so
             that no test inherits another's rosters.
"""

import collections
import itertools
import re
import time
import xml.etree.ElementTree as ET

import harness
from harness import NS_CLIENT, ProtocolError, q, xml_escape

NS_ROSTER = 'jabber:iq:roster'
NS_ROSTERVER = 'urn:xmpp:features:rosterver'
NS_PREAPPROVAL = 'urn:xmpp:features:pre-approval'
NS_DELAY = 'urn:xmpp:delay'
NS_PING = 'urn:xmpp:ping'
NS_MARK = 'urn:starling:test:mark'

IQ = q(NS_CLIENT, 'iq')
MESSAGE = q(NS_CLIENT, 'message')
PRESENCE = q(NS_CLIENT, 'presence')
QUERY = q(NS_ROSTER, 'query')
ITEM = q(NS_ROSTER, 'item')
GROUP = q(NS_ROSTER, 'group')
STATUS = q(NS_CLIENT, 'status')
PRIORITY = q(NS_CLIENT, 'priority')
BODY = q(NS_CLIENT, 'body')

SUB_TYPES = ('subscribe', 'subscribed', 'unsubscribe', 'unsubscribed')

Item = collections.namedtuple('Item', 'jid name subscription ask approved groups')


def show(el):
    return ET.tostring(el, 'unicode') if el is not None else 'None'


def show_all(els):
    return '\n  '.join(show(e) for e in els) or '(nothing)'


def bare(jid):
    return jid.split('/', 1)[0] if jid else jid


def parse_item(el):
    return Item(jid=el.get('jid'), name=el.get('name'),
                subscription=el.get('subscription'), ask=el.get('ask'),
                approved=el.get('approved'),
                groups=tuple(g.text or '' for g in el.findall(GROUP)))


def item_view(item):
    """(subscription, ask, approved) of an Item, approved='false' shown as
    None (RFC 6121 §2.1.2.1: false is the default)."""
    if item is None:
        return None
    approved = item.approved if item.approved not in (None, 'false') else None
    return (item.subscription or 'none', item.ask, approved)


def is_roster_push(el):
    return (el.tag == IQ and el.get('type') == 'set'
            and el.find(QUERY) is not None)


def push_item(el):
    """The one item of a roster push (RFC 6121 §2.1.6: exactly one)."""
    items = el.find(QUERY).findall(ITEM)
    if len(items) != 1:
        raise ProtocolError('roster push without exactly one item: %s' % show(el))
    return parse_item(items[0])


def is_mark(el):
    return el.tag == MESSAGE and el.find(q(NS_MARK, 'mark')) is not None


def presences(els, frm=None, type_=None, types=None):
    """Presence stanzas of els, optionally only from one JID (full or, for
    a bare frm, any resource of it) and of one type (None: available)."""
    out = []
    for e in els:
        if e.tag != PRESENCE:
            continue
        t = e.get('type')
        if types is not None:
            if t not in types:
                continue
        elif t != type_:
            continue
        f = e.get('from') or ''
        if frm is not None and (f != frm if '/' in frm else bare(f) != frm):
            continue
        out.append(e)
    return out


def stanza_error(el):
    return harness.stanza_error_condition(el)


class Session:
    """One bound client of an account (harness.Client underneath)."""

    def __init__(self, client, name=None):
        self.c = client
        self.jid = client.jid
        self.bare = bare(client.jid)
        self.name = name or self.jid
        self.backlog = []
        self.interested = False   # requested the roster (RFC 6121 §2.2)
        self.available = False    # sent initial presence (RFC 6121 §4.2)
        self.ack_pushes = True

    def __repr__(self):
        return '<Session %s>' % self.jid

    def send(self, data):
        self.c.send(data)

    def _got(self, el):
        """Every element read goes through here: a roster push is answered
        with a result, as RFC 6121 §2.1.6 asks of clients."""
        if self.ack_pushes and is_roster_push(el) and el.get('id'):
            self.c.send("<iq type='result' id='%s'/>" % xml_escape(el.get('id')))
        return el

    def read(self, timeout=None):
        return self._got(self.c.expect_element(timeout=timeout))

    def wait(self, pred, what='a stanza', timeout=None):
        """The first element (backlog first) for which pred is true; the
        others read meanwhile go to the backlog."""
        for i, el in enumerate(self.backlog):
            if pred(el):
                return self.backlog.pop(i)
        deadline = time.monotonic() + (harness.TIMEOUT if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError('%s: timed out waiting for %s; got meanwhile:\n  %s'
                                    % (self.jid, what, show_all(self.backlog)))
            ev = self.c.next_event(left)
            if ev is None:
                continue
            if ev[0] != 'element':
                raise ProtocolError('%s: waiting for %s, got %r; backlog:\n  %s'
                                    % (self.jid, what, ev, show_all(self.backlog)))
            el = self._got(ev[1])
            if pred(el):
                return el
            self.backlog.append(el)

    def drain(self):
        """Everything received so far: the backlog, then what arrives
        before the answer to a ping to the server."""
        got, self.backlog = self.backlog, []
        for el in self.c.sync():
            got.append(self._got(el))
        return [e for e in got if not is_mark(e)]

    def quiet_for(self, seconds, pred=lambda el: True):
        """Everything (backlog first) that arrives within `seconds` and
        matches pred; for the rare check with no ordered round trip to
        wait on (a reply the server may send on behalf of an account that
        does not exist comes after an asynchronous look-up)."""
        got = [e for e in self.backlog if pred(e)]
        self.backlog = [e for e in self.backlog if not pred(e)]
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            ev = self.c.next_event(left)
            if ev is None:
                continue
            if ev[0] != 'element':
                raise ProtocolError('%s: %r' % (self.jid, ev))
            el = self._got(ev[1])
            if is_mark(el):
                continue
            (got if pred(el) else self.backlog).append(el)

    def close(self):
        """Ends the stream with our close tag and waits for the server's
        and the end of TCP; what arrives meanwhile is dropped."""
        self.c.send('</stream:stream>')
        while True:
            ev = self.c.next_event()
            if ev is None:
                raise ProtocolError('%s: no close tag after ours' % self.jid)
            if ev[0] in ('close', 'eof'):
                break
        if ev[0] == 'close':
            self.c.expect_eof()

    def expect_nothing(self, test, why=''):
        got = self.drain()
        test.assertEqual(got, [], '%s received %s\n  %s' % (self.jid, why, show_all(got)))

    # -- IQs

    def iq(self, type_, payload='', to=None, id_=None):
        """Sends an IQ; returns its answer (result or error)."""
        iid = id_ or self.c.next_id('iq')
        to_attr = " to='%s'" % xml_escape(to) if to else ''
        self.send("<iq type='%s' id='%s'%s>%s</iq>" % (type_, iid, to_attr, payload))
        return self.wait(lambda e: e.tag == IQ and e.get('id') == iid
                         and e.get('type') in ('result', 'error'),
                         'the answer to IQ %s' % iid)

    def roster_get(self, ver=None, to=None):
        """The answer to a roster get (result or error)."""
        v = '' if ver is None else " ver='%s'" % xml_escape(ver)
        res = self.iq('get', "<query xmlns='%s'%s/>" % (NS_ROSTER, v), to=to)
        if res.get('type') == 'result':
            self.interested = True
        return res

    def roster(self):
        """{contact bare JID: Item} of a roster get, which must succeed."""
        res = self.roster_get()
        if res.get('type') != 'result':
            raise ProtocolError('%s: roster get failed: %s' % (self.jid, show(res)))
        query = res.find(QUERY)
        if query is None:
            raise ProtocolError('%s: roster result without <query/>: %s'
                                % (self.jid, show(res)))
        items = {}
        for el in query.findall(ITEM):
            it = parse_item(el)
            if it.jid in items:
                raise ProtocolError('%s: roster lists %s twice' % (self.jid, it.jid))
            items[it.jid] = it
        return items

    def roster_set(self, jid, name=None, groups=(), subscription=None,
                   extra_attrs='', to=None, raw=None):
        """The answer to a roster set of one item (or of raw <query/>
        content)."""
        if raw is None:
            attrs = " jid='%s'" % xml_escape(jid)
            if name is not None:
                attrs += " name='%s'" % xml_escape(name)
            if subscription is not None:
                attrs += " subscription='%s'" % subscription
            attrs += extra_attrs
            inner = ''.join('<group>%s</group>' % xml_escape(g) for g in groups)
            raw = '<item%s>%s</item>' % (attrs, inner)
        return self.iq('set', "<query xmlns='%s'>%s</query>" % (NS_ROSTER, raw), to=to)

    def roster_add(self, jid, name=None, groups=()):
        res = self.roster_set(jid, name, groups)
        if res.get('type') != 'result':
            raise ProtocolError('%s: roster set of %s failed: %s' % (self.jid, jid, show(res)))
        return res

    # -- presence

    def presence(self, priority=None, show_=None, status=None, type_=None, to=None,
                 extra=''):
        """Sends presence (no sync)."""
        attrs = ''
        if type_ is not None:
            attrs += " type='%s'" % type_
        if to is not None:
            attrs += " to='%s'" % xml_escape(to)
        body = ''
        if show_ is not None:
            body += '<show>%s</show>' % show_
        if status is not None:
            body += '<status>%s</status>' % xml_escape(status)
        if priority is not None:
            body += '<priority>%d</priority>' % priority
        self.send('<presence%s>%s%s</presence>' % (attrs, body, extra))
        if to is None:
            self.available = type_ is None
        return self

    def subscription(self, type_, to, extra=''):
        """Sends a subscription-related presence stanza to `to`."""
        assert type_ in SUB_TYPES
        self.send("<presence type='%s' to='%s'>%s</presence>" % (type_, xml_escape(to), extra))

    def message(self, to, body, type_='chat', id_=None, extra=''):
        i = " id='%s'" % id_ if id_ else ''
        t = " type='%s'" % type_ if type_ else ''
        self.send("<message to='%s'%s%s><body>%s</body>%s</message>"
                  % (xml_escape(to), t, i, xml_escape(body), extra))


_marks = itertools.count()


def settle(sessions, rounds=2):
    """Barrier over sessions (all logged in and reading): each session
    sends a marker message (headline, to the full JID) to every other,
    and waits for every marker addressed to it; `rounds` times. The
    server processes a stream's stanzas in order (RFC 6120 §10.1), so all
    that any of them sent before, and everything that caused, has been
    delivered. Returns {session: [elements received, markers excluded]},
    the backlogs included (and emptied). Ends with a ping round trip on
    each."""
    got = {s: list(s.backlog) for s in sessions}
    for s in sessions:
        s.backlog = []
    for _ in range(rounds):
        expect = {s: set() for s in sessions}
        for s in sessions:
            for t in sessions:
                if t is s:
                    continue
                mid = 'mark%d' % next(_marks)
                s.send("<message type='headline' to='%s' id='%s'><mark xmlns='%s'/></message>"
                       % (xml_escape(t.jid), mid, NS_MARK))
                expect[t].add(mid)
        for t in sessions:
            while expect[t]:
                try:
                    el = t.read()
                except ProtocolError as e:
                    raise ProtocolError('%s: settle markers %s did not arrive (%s); got:\n  %s'
                                        % (t.jid, sorted(expect[t]), e, show_all(got[t])))
                if is_mark(el) and el.get('id') in expect[t]:
                    expect[t].discard(el.get('id'))
                elif is_mark(el):
                    continue
                else:
                    got[t].append(el)
    for s in sessions:
        got[s].extend(s.drain())
    return got


class Pool:
    """Fresh accounts: Pool.users(n) for Server(users=...), then take()
    hands out unused ones in order."""

    def __init__(self, prefix, count, domain='localhost'):
        self.names = ['%s%03d@%s' % (prefix, i, domain) for i in range(count)]
        self.next = 0

    def users(self):
        u = dict(harness.DEFAULT_USERS)
        for n in self.names:
            u[n] = 'pw-' + n.split('@')[0]
        return u

    def take(self, n=1):
        if self.next + n > len(self.names):
            raise AssertionError('account pool exhausted: make it larger')
        out = self.names[self.next:self.next + n]
        self.next += n
        return out if n > 1 else out[0]


DELAY_STAMP = re.compile(r'^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?Z$')


def parse_stamp(s):
    """Seconds since the epoch of a XEP-0082 DateTime in UTC ('Z'), or
    None when s is not one."""
    import calendar
    m = DELAY_STAMP.match(s or '')
    if not m:
        return None
    y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
    frac = float(m.group(7)) if m.group(7) else 0.0
    try:
        return calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0)) + frac
    except (ValueError, OverflowError):
        return None
