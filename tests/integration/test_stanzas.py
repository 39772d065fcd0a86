"""Stanzas between real clients (feature set 9-1, 10-*, 10.1-3, 10.4-1..6,
10.5-1..3, 10.7-1..4, 13-4; RFC 6120 §8, §10; RFC 6121 §8.5).

Run: python3 test_stanzas.py STARLINGD STARLINGCTL
"""
import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (NS_CLIENT, NS_STANZAS, NS_XML, Server, q,  # noqa: E402
                     stanza_error_condition, xml_escape)

MESSAGE = q(NS_CLIENT, 'message')
IQ = q(NS_CLIENT, 'iq')
PRESENCE = q(NS_CLIENT, 'presence')
LANG = q(NS_XML, 'lang')


def same_tree(a, b, ignore=('from', 'to', LANG)):
    """Whether two elements are equal in name, attributes (but those
    ignored at the top), text and children."""
    def norm(e, top):
        attrs = {k: v for k, v in e.attrib.items() if not (top and k in ignore)}
        return (e.tag, attrs, (e.text or '').strip(),
                [norm(c, False) for c in e], (e.tail or '').strip() if not top else '')
    return norm(a, True) == norm(b, True)


def msgs(els):
    """The messages among what a client received (presence that RFC 6121
    §4.2.2 broadcasts to a user's own resources left out)."""
    return [e for e in els if e.tag == q(NS_CLIENT, 'message')]


class Stanzas(harness.ServerTestCase):

    @classmethod
    def setUpClass(cls):
        cls.srv = Server()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def pair(self):
        a = self.login(self.srv, 'alice@localhost', resource='a')
        b = self.login(self.srv, 'bob@localhost', resource='b')
        return a, b

    # ---- addressing of the sender (10.1-2, 10.1-3)

    def test_from_stamped(self):
        """10.1-3: a stanza without 'from' arrives with the sender's full
        JID stamped; 'to' as sent."""
        a, b = self.pair()
        a.send("<message to='bob@localhost/b' id='m1'><body>hi</body></message>")
        m = b.expect_stanza('message')
        self.assertEqual(m.get('from'), 'alice@localhost/a')
        self.assertEqual(m.get('to'), 'bob@localhost/b')
        self.assertEqual(m.get('id'), 'm1')

    def test_from_own_full_or_bare_accepted(self):
        """10.1-3: a 'from' that is the sender's own full or bare JID is
        accepted as is."""
        a, b = self.pair()
        a.send("<message from='alice@localhost/a' to='bob@localhost/b'><body>1</body></message>")
        self.assertEqual(b.expect_stanza('message').get('from'), 'alice@localhost/a')
        a.send("<message from='alice@localhost' to='bob@localhost/b'><body>2</body></message>")
        self.assertEqual(b.expect_stanza('message').get('from'), 'alice@localhost')

    def test_spoofed_from(self):
        """10.1-3, §4.9.3.9: a 'from' of another account is invalid-from,
        and the spoofed stanza is not delivered."""
        a, b = self.pair()
        a.send("<message from='bob@localhost/b' to='bob@localhost/b'>"
               "<body>spoof</body></message>")
        a.expect_stream_error('invalid-from')
        self.assertEqual(b.sync(), [])

    def test_spoofed_from_other_resource(self):
        """invalid-from also for another resource of the same account."""
        a = self.login(self.srv, 'alice@localhost', resource='x1')
        a.send("<message from='alice@localhost/other' to='bob@localhost'/>")
        a.expect_stream_error('invalid-from')

    # ---- IQ rules (10.4)

    def test_iq_without_id(self):
        """10.4-1: an IQ without 'id' gets bad-request."""
        a = self.login(self.srv)
        a.send("<iq type='get' to='localhost'><query xmlns='jabber:iq:version'/></iq>")
        err = a.expect_stanza('iq')
        self.assertEqual(stanza_error_condition(err), ('modify', 'bad-request'))

    def test_iq_bad_type(self):
        """10.4-2: type missing or not one of the four: bad-request."""
        a = self.login(self.srv)
        for t in ('', " type='fetch'"):
            a.send("<iq id='t1'%s to='localhost'><query xmlns='jabber:iq:version'/></iq>" % t)
            err = a.expect_stanza('iq')
            self.assertEqual(err.get('id'), 't1')
            self.assertEqual(stanza_error_condition(err), ('modify', 'bad-request'))

    def test_iq_get_two_children(self):
        """10.4-4: a get with two children: bad-request."""
        a = self.login(self.srv)
        a.send("<iq type='get' id='g2' to='localhost'><query xmlns='urn:a'/>"
               "<query xmlns='urn:b'/></iq>")
        err = a.expect_stanza('iq')
        self.assertEqual(err.get('id'), 'g2')
        self.assertEqual(stanza_error_condition(err), ('modify', 'bad-request'))

    def test_iq_get_no_child(self):
        """10.4-4: a set with no child: bad-request."""
        a = self.login(self.srv)
        a.send("<iq type='set' id='s0' to='localhost'/>")
        self.assertEqual(stanza_error_condition(a.expect_stanza('iq')),
                         ('modify', 'bad-request'))

    def test_iq_result_two_children(self):
        """10.4-5: a result with two children: bad-request."""
        a = self.login(self.srv)
        a.send("<iq type='result' id='r2' to='localhost'><a xmlns='urn:a'/>"
               "<b xmlns='urn:b'/></iq>")
        err = a.expect_stanza('iq')
        self.assertEqual(err.get('id'), 'r2')
        self.assertEqual(stanza_error_condition(err), ('modify', 'bad-request'))

    def test_iq_unknown_namespace_to_server(self):
        """10.4-3, 10.4-6, 10.6-1: a get to the server in a namespace it does
        not handle gets service-unavailable (cancel), from the server, to
        the sender, with the original child included."""
        a = self.login(self.srv)
        a.send("<iq type='get' id='u1' to='localhost'><query xmlns='urn:example:nothing'>"
               "<item a='1'/></query></iq>")
        err = a.expect_stanza('iq')
        self.assertEqual(err.get('id'), 'u1')
        self.assertEqual(err.get('from'), 'localhost')
        self.assertEqual(err.get('to'), a.jid)
        self.assertEqual(stanza_error_condition(err), ('cancel', 'service-unavailable'))
        child = err.find(q('urn:example:nothing', 'query'))
        self.assertIsNotNone(child, ET.tostring(err, 'unicode'))
        self.assertIsNotNone(child.find(q('urn:example:nothing', 'item')))

    def test_iq_no_to_handled_by_server(self):
        """10.7-1: an IQ without 'to' is handled by the server for the
        account (service-unavailable for an unknown namespace); the error
        comes from the account's bare JID or the server."""
        a = self.login(self.srv)
        a.send("<iq type='set' id='n1'><query xmlns='urn:example:nothing'/></iq>")
        err = a.expect_stanza('iq')
        self.assertEqual(stanza_error_condition(err), ('cancel', 'service-unavailable'))
        self.assertIn(err.get('from'), (None, 'localhost', 'alice@localhost'))

    def test_no_error_reply_to_error(self):
        """10.5-2: an error (IQ or message) sent to the server or to an
        offline address gets nothing back; the next IQ's answer is the first
        thing that arrives."""
        a = self.login(self.srv)
        err = ("<error type='cancel'><service-unavailable xmlns='%s'/></error>"
               % NS_STANZAS)
        a.send("<iq type='error' id='e1' to='localhost'>%s</iq>" % err)
        a.send("<iq type='error' id='e2' to='nobody@localhost/x'>%s</iq>" % err)
        a.send("<message type='error' to='localhost'>%s</message>" % err)
        a.send("<message type='error' to='nobody@localhost'>%s</message>" % err)
        a.send("<message type='error' to='nobody@elsewhere.example'>%s</message>" % err)
        self.assertEqual(a.sync(), [])

    def test_result_to_server_consumed(self):
        """An IQ result to the server is consumed silently."""
        a = self.login(self.srv)
        a.send("<iq type='result' id='x9' to='localhost'/>")
        self.assertEqual(a.sync(), [])

    def test_iq_between_clients(self):
        """10.4-3: a get from A to B's full JID reaches B with from = A; B's
        result reaches A with from = B."""
        a, b = self.pair()
        a.send("<iq type='get' id='q1' to='bob@localhost/b'>"
               "<query xmlns='jabber:iq:version'/></iq>")
        got = b.expect_stanza('iq')
        self.assertEqual((got.get('type'), got.get('id'), got.get('from')),
                         ('get', 'q1', 'alice@localhost/a'))
        self.assertIsNotNone(got.find(q('jabber:iq:version', 'query')))
        b.send("<iq type='result' id='q1' to='alice@localhost/a'>"
               "<query xmlns='jabber:iq:version'><name>test</name></query></iq>")
        res = a.expect_stanza('iq')
        self.assertEqual((res.get('type'), res.get('id'), res.get('from')),
                         ('result', 'q1', 'bob@localhost/b'))
        self.assertEqual(res.findtext('%s/%s' % (q('jabber:iq:version', 'query'),
                                                 q('jabber:iq:version', 'name'))),
                         'test')

    def test_iq_to_offline_full_jid(self):
        """10.7-4 (RFC 6121 §8.5.3.2.2): an IQ get to a full JID with no
        session gets service-unavailable."""
        a = self.login(self.srv)
        a.send("<iq type='get' id='o1' to='bob@localhost/gone'>"
               "<query xmlns='jabber:iq:version'/></iq>")
        err = a.expect_stanza('iq')
        self.assertEqual(err.get('from'), 'bob@localhost/gone')
        self.assertEqual(stanza_error_condition(err), ('cancel', 'service-unavailable'))

    def test_iq_to_bare_jid(self):
        """RFC 6121 §8.5.2.1.3: an IQ to a bare JID is answered by the server
        for the account, not forwarded to a resource."""
        a, b = self.pair()
        a.send("<iq type='get' id='bare1' to='bob@localhost'>"
               "<query xmlns='urn:example:nothing'/></iq>")
        err = a.expect_stanza('iq')
        self.assertEqual(err.get('from'), 'bob@localhost')
        self.assertEqual(stanza_error_condition(err)[1], 'service-unavailable')
        self.assertEqual(b.sync(), [])

    # ---- messages (10.2, 9-1, 10.6)

    def test_message_types_pass_through(self):
        """10.2-1..3, 10.6-1: messages of every type, with body, subject,
        thread and an unknown extension, arrive unchanged at a full JID."""
        a, b = self.pair()
        for mtype in ('normal', 'chat', 'groupchat', 'headline', 'error'):
            extra = ("<error type='cancel'><item-not-found xmlns='%s'/></error>"
                     % NS_STANZAS if mtype == 'error' else '')
            text = ("<message type='%s' to='bob@localhost/b' id='t-%s'>"
                    "<subject>S &amp; s</subject><body>Body &lt;%s&gt;</body>"
                    "<thread parent='p1'>th-1</thread>"
                    "<x xmlns='urn:example:ext' a='1'><y>text</y><z/></x>%s"
                    "</message>" % (mtype, mtype, mtype, extra))
            a.send(text)
            got = b.expect_stanza('message')
            # The one thing the server adds: the XEP-0359 id its archive
            # (XEP-0313) gave a chat or normal message with a body.
            sid = got.find('{urn:xmpp:sid:0}stanza-id')
            self.assertEqual(sid is not None, mtype in ('normal', 'chat'))
            if sid is not None:
                self.assertEqual(sid.get('by'), 'bob@localhost')
                got.remove(sid)
            sent = ET.fromstring(text.replace('<message ', "<message xmlns='jabber:client' ", 1))
            self.assertTrue(same_tree(sent, got), '%s\n%s' % (
                ET.tostring(sent, 'unicode'), ET.tostring(got, 'unicode')))
            self.assertEqual(got.get('from'), 'alice@localhost/a')

    def test_message_without_type_and_to_domain_part(self):
        """A message without type is normal; it reaches the full JID."""
        a, b = self.pair()
        a.send("<message to='bob@localhost/b'><body>plain</body></message>")
        self.assertEqual(b.expect_stanza('message').findtext(q(NS_CLIENT, 'body')),
                         'plain')

    def test_escaping(self):
        """9-1: the five predefined entities and non-ASCII text survive the
        round trip in text and attribute values."""
        a, b = self.pair()
        body = 'a & b < c > d \' e " f \u00e9\u4e2d\U0001f600'
        a.send("<message to='bob@localhost/b' id='%s'><body>%s</body></message>"
               % (xml_escape(body), xml_escape(body)))
        m = b.expect_stanza('message')
        self.assertEqual(m.findtext(q(NS_CLIENT, 'body')), body)
        self.assertEqual(m.get('id'), body)
        raw = bytes(b.stream_raw)
        self.assertNotIn(b'<!--', raw)

    def test_stanza_lang(self):
        """10.1-6 (RFC 6120 §8.1.5): a stanza without xml:lang carries the
        stream's language; one with its own keeps it."""
        a, b = self.pair()
        a.send("<message to='bob@localhost/b'><body>x</body></message>")
        self.assertEqual(b.expect_stanza('message').get(LANG), 'en')
        a.send("<message to='bob@localhost/b' xml:lang='de'><body>x</body></message>")
        self.assertEqual(b.expect_stanza('message').get(LANG), 'de')

    def test_message_to_jid_is_prepared(self):
        """2.1-1, 2.2-1: the 'to' is nodeprep'd and nameprep'd before
        routing (BOB@LocalHost reaches bob)."""
        a, b = self.pair()
        a.send("<message to='BOB@LocalHost/b'><body>case</body></message>")
        m = b.expect_stanza('message')
        self.assertEqual(m.get('to'), 'bob@localhost/b')

    def test_message_other_local_domain(self):
        """10.7-4: both served domains route locally (alice@localhost to
        dave@example.org)."""
        a = self.login(self.srv, 'alice@localhost', resource='a')
        d = self.login(self.srv, 'dave@example.org', resource='d')
        a.send("<message to='dave@example.org/d'><body>x-domain</body></message>")
        m = d.expect_stanza('message')
        self.assertEqual(m.get('from'), 'alice@localhost/a')

    # ---- routing of messages to bare JIDs (RFC 6121 §8.5.2)

    def bob3(self, prios):
        """Bob online with a resource per priority (None: no presence)."""
        res = []
        for i, p in enumerate(prios):
            c = self.login(self.srv, 'bob@localhost', resource='p%d' % i)
            if p is not None:
                c.presence(priority=p)
            res.append(c)
        # Each available resource gets the presence of those after it
        # (RFC 6121 §4.2.2): drain them, so the tests see what follows.
        for c in res:
            c.sync()
        return res

    def test_bare_highest_priority(self):
        """10.7-4, RFC 6121 §8.5.2.1.1: a chat message to the bare JID goes
        to the resource with the highest priority only (5 beats 1)."""
        a = self.login(self.srv, resource='a')
        hi, lo = self.bob3([5, 1])
        a.send("<message type='chat' to='bob@localhost'><body>bare</body></message>")
        a.sync()
        m = hi.sync()
        self.assertEqual([e.findtext(q(NS_CLIENT, 'body')) for e in m], ['bare'])
        self.assertEqual(m[0].get('to'), 'bob@localhost')
        self.assertEqual(lo.sync(), [])

    def test_bare_equal_priority(self):
        """§8.5.2.1.1: equal highest priorities: every one of them gets it."""
        a = self.login(self.srv, resource='a')
        r1, r2 = self.bob3([3, 3])
        a.send("<message type='normal' to='bob@localhost'><body>both</body></message>")
        a.sync()
        self.assertEqual(len(msgs(r1.sync())), 1)
        self.assertEqual(len(msgs(r2.sync())), 1)

    def test_bare_headline_to_all(self):
        """§8.5.2.1.1: a headline goes to every non-negative resource."""
        a = self.login(self.srv, resource='a')
        r1, r2, r3 = self.bob3([5, 0, -1])
        a.send("<message type='headline' to='bob@localhost'><body>news</body></message>")
        a.sync()
        self.assertEqual(len(msgs(r1.sync())), 1)
        self.assertEqual(len(msgs(r2.sync())), 1)
        self.assertEqual(msgs(r3.sync()), [])

    def test_bare_negative_priority(self):
        """§8.5.2.1.1/§8.5.2.2: a negative priority never receives bare-JID
        messages; with no other resource the message is stored offline
        (XEP-0160) — with offline storage off, the sender gets
        service-unavailable (test_offline covers both)."""
        a = self.login(self.srv, resource='a')
        (neg,) = self.bob3([-1])
        a.send("<message type='chat' id='n1' to='bob@localhost'><body>x</body></message>")
        self.assertEqual(a.sync(), [])
        self.assertEqual(neg.sync(), [])

    def test_bare_no_available_resource(self):
        """§8.5.2.2: bound but without presence is not available: the
        message is not given to it (it waits offline)."""
        a = self.login(self.srv, resource='a')
        (silent,) = self.bob3([None])
        a.send("<message type='chat' id='n2' to='bob@localhost'><body>x</body></message>")
        self.assertEqual(a.sync(), [])
        self.assertEqual(silent.sync(), [])

    def test_bare_unavailable_presence(self):
        """RFC 6121 §4.5: after presence type=unavailable a resource no
        longer receives bare-JID messages."""
        a = self.login(self.srv, resource='a')
        r1, r2 = self.bob3([1, 2])
        r2.send("<presence type='unavailable'/>")
        r2.sync()
        a.send("<message type='chat' to='bob@localhost'><body>x</body></message>")
        a.sync()
        self.assertEqual(len(msgs(r1.sync())), 1)
        self.assertEqual(msgs(r2.sync()), [])

    def test_full_jid_offline_falls_back_to_bare(self):
        """RFC 6121 §8.5.3.2.1: a message to a full JID with no session is
        handled as if sent to the bare JID."""
        a = self.login(self.srv, resource='a')
        (r,) = self.bob3([0])
        a.send("<message type='chat' to='bob@localhost/offline'><body>fb</body></message>")
        a.sync()
        got = r.sync()
        self.assertEqual([e.findtext(q(NS_CLIENT, 'body')) for e in got], ['fb'])

    def test_groupchat_to_bare(self):
        """RFC 6121 §8.5.2.1.2: groupchat to a bare JID is an error."""
        a = self.login(self.srv, resource='a')
        (r,) = self.bob3([0])
        a.send("<message type='groupchat' id='gc' to='bob@localhost'><body>x</body></message>")
        self.assertEqual(stanza_error_condition(a.expect_stanza('message'))[1],
                         'service-unavailable')
        self.assertEqual(r.sync(), [])

    def test_message_without_to(self):
        """10.7-1 (RFC 6120 §10.3.1): a message with no 'to' is handled as
        if sent to the sender's own bare JID."""
        a = self.login(self.srv, resource='self')
        a.presence(priority=1)
        a.send("<message type='chat'><body>note to self</body></message>")
        got = msgs(a.sync())
        self.assertEqual([e.findtext(q(NS_CLIENT, 'body')) for e in got],
                         ['note to self'])
        self.assertEqual(got[0].get('from'), a.jid)

    def test_message_to_server(self):
        """10.7-3: a chat message to the server's domain gets
        service-unavailable; headline is dropped."""
        a = self.login(self.srv)
        a.send("<message type='chat' id='srv' to='localhost'><body>x</body></message>")
        err = a.expect_stanza('message')
        self.assertEqual(err.get('from'), 'localhost')
        self.assertEqual(stanza_error_condition(err)[1], 'service-unavailable')
        a.send("<message type='headline' to='localhost'><body>x</body></message>")
        self.assertEqual(a.sync(), [])

    def test_remote_domain(self):
        """10.7-2: a domain we do not serve: remote-server-not-found (no
        federation yet)."""
        a = self.login(self.srv)
        a.send("<message id='r1' to='someone@remote.example'><body>x</body></message>")
        err = a.expect_stanza('message')
        self.assertEqual(err.get('from'), 'someone@remote.example')
        self.assertEqual(stanza_error_condition(err), ('cancel', 'remote-server-not-found'))

    def test_jid_malformed(self):
        """10.5-3 (RFC 6120 §8.3.3.8): 'to' that is not a JID: jid-malformed
        (modify), from the server's domain (never the malformed address
        itself as 'from'), for messages and IQs."""
        a = self.login(self.srv)
        for i, to in enumerate(('@@@', '', 'a@b@c', 'x@/r', 'x@localhost/',
                                '%s@localhost' % ('n' * 1100))):
            a.send("<message id='j%d' to='%s'><body>x</body></message>" % (i, to))
            err = a.expect_stanza('message')
            self.assertEqual(err.get('id'), 'j%d' % i)
            self.assertEqual(stanza_error_condition(err), ('modify', 'jid-malformed'), to)
            self.assertEqual(err.get('from'), 'localhost', repr(to))
            self.assertEqual(err.get('to'), a.jid)
        a.send("<iq type='get' id='jm' to='@@@'><q xmlns='urn:x'/></iq>")
        err = a.expect_stanza('iq')
        self.assertEqual(stanza_error_condition(err), ('modify', 'jid-malformed'))
        self.assertEqual(err.get('from'), 'localhost')

    # ---- presence (13-4)

    def test_directed_presence(self):
        """13-4: presence with a 'to' of a full JID goes to that resource
        only, with from stamped."""
        a, b = self.pair()
        b2 = self.login(self.srv, 'bob@localhost', resource='b2')
        a.send("<presence to='bob@localhost/b'><show>away</show></presence>")
        p = b.expect_stanza('presence')
        self.assertEqual(p.get('from'), 'alice@localhost/a')
        self.assertEqual(p.findtext(q(NS_CLIENT, 'show')), 'away')
        self.assertEqual(b2.sync(), [])
        a.send("<presence type='unavailable' to='bob@localhost/b'/>")
        self.assertEqual(b.expect_stanza('presence').get('type'), 'unavailable')

    def test_directed_presence_to_bare(self):
        """13-4: directed presence to a bare JID reaches the available
        resources."""
        a = self.login(self.srv, resource='a')
        r1, r2 = self.bob3([1, None])
        a.send("<presence to='bob@localhost'/>")
        a.sync()
        got = r1.sync()
        self.assertEqual([e.tag for e in got], [PRESENCE])
        self.assertEqual(r2.sync(), [])

    def test_presence_to_offline_resource_ignored(self):
        """RFC 6121 §8.5.3.2.3: presence to a full JID with no session is
        ignored (no error)."""
        a = self.login(self.srv)
        a.send("<presence to='bob@localhost/nowhere'/>")
        self.assertEqual(a.sync(), [])


if __name__ == '__main__':
    harness.main()
