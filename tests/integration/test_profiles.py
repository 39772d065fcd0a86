"""Profiles and per-account storage over real sockets (issue 10):
XEP-0049 private XML storage and XEP-0054 vcard-temp, kept in the store
across a restart, with their size limits and their errors; XEP-0077
password changes by a logged-in user.

Run: python3 test_profiles.py STARLINGD STARLINGCTL
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Server, iq, q, stanza_error_condition  # noqa: E402

NS_PRIVATE = 'jabber:iq:private'
NS_VCARD = 'vcard-temp'
NS_BM = 'storage:bookmarks'


def private(child):
    return "<query xmlns='%s'>%s</query>" % (NS_PRIVATE, child)


BOOKMARKS = ("<storage xmlns='storage:bookmarks'>"
             "<conference jid='room@muc.example' autojoin='true' name='R &amp; D'>"
             "<nick>alice</nick></conference></storage>")

VCARD = ("<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN>"
         "<NICKNAME>alice</NICKNAME><EMAIL><USERID>alice@example.org</USERID>"
         "</EMAIL></vCard>")


class Profiles(harness.SharedServerTestCase):

    server_args = dict(top={'private': {'max_size': 2048},
                            'vcard': {'max_size': 4096}})

    # -- XEP-0049

    def test_private_round_trip(self):
        """§2: a set stores the element; a get with the empty element
        returns it as stored (attributes, text, escaping); another
        namespace is kept apart; nothing stored: the empty element back."""
        a = self.login(self.srv, resource='p1')
        r = iq(a, None, private(BOOKMARKS), 'set')
        self.assertEqual(r.get('type'), 'result')
        self.assertIsNone(r.get('from'))
        r = iq(a, None, private("<prefs xmlns='urn:example:prefs'><x>1</x>"
                                "</prefs>"), 'set')
        self.assertEqual(r.get('type'), 'result')
        r = iq(a, None, private("<storage xmlns='storage:bookmarks'/>"))
        self.assertEqual(r.get('type'), 'result')
        conf = r.find('%s/%s/%s' % (q(NS_PRIVATE, 'query'),
                                    q(NS_BM, 'storage'),
                                    q(NS_BM, 'conference')))
        self.assertEqual(conf.get('jid'), 'room@muc.example')
        self.assertEqual(conf.get('name'), 'R & D')
        self.assertEqual(conf.findtext(q(NS_BM, 'nick')), 'alice')
        r = iq(a, 'alice@localhost', private("<nothing xmlns='urn:x:none'/>"))
        self.assertEqual(r.get('type'), 'result')
        self.assertEqual(r.get('from'), 'alice@localhost')
        got = list(r.find(q(NS_PRIVATE, 'query')))
        self.assertEqual([e.tag for e in got], [q('urn:x:none', 'nothing')])
        self.assertEqual(len(got[0]), 0)
        # Another account has its own storage.
        b = self.login(self.srv, 'bob@localhost')
        r = iq(b, None, private("<storage xmlns='storage:bookmarks'/>"))
        self.assertEqual(len(r.find('%s/%s' % (q(NS_PRIVATE, 'query'),
                                               q(NS_BM, 'storage')))), 0)

    def test_private_replace(self):
        """A later set of a namespace replaces the earlier document."""
        a = self.login(self.srv, resource='p2')
        iq(a, None, private("<r xmlns='urn:x:r'><v>1</v></r>"), 'set')
        iq(a, None, private("<r xmlns='urn:x:r'><v>2</v></r>"), 'set')
        r = iq(a, None, private("<r xmlns='urn:x:r'/>"))
        self.assertEqual(r.findtext('%s/%s/%s' % (q(NS_PRIVATE, 'query'),
                                                  q('urn:x:r', 'r'),
                                                  q('urn:x:r', 'v'))), '2')

    def test_private_errors(self):
        """§2 and §3: another user's storage: forbidden; a get without a
        child: bad-request; a set without one: not-acceptable; a document
        over private.max_size (2048): policy-violation."""
        a = self.login(self.srv, resource='p3')
        r = iq(a, 'bob@localhost', private("<s xmlns='urn:x:s'/>"))
        self.assertEqual(stanza_error_condition(r), ('cancel', 'forbidden'))
        r = iq(a, 'bob@localhost', private("<s xmlns='urn:x:s'/>"), 'set')
        self.assertEqual(stanza_error_condition(r), ('cancel', 'forbidden'))
        r = iq(a, None, private(''))
        self.assertEqual(stanza_error_condition(r), ('modify', 'bad-request'))
        r = iq(a, None, private(''), 'set')
        self.assertEqual(stanza_error_condition(r),
                         ('modify', 'not-acceptable'))
        big = "<big xmlns='urn:x:big'>%s</big>" % ('x' * 3000)
        r = iq(a, None, private(big), 'set')
        self.assertEqual(stanza_error_condition(r),
                         ('modify', 'policy-violation'))
        r = iq(a, None, private("<big xmlns='urn:x:big'/>"))
        self.assertEqual(r.get('type'), 'result')

    # -- XEP-0054

    def test_vcard_own(self):
        """§3.1/§3.2: the account's vCard, empty until set; set (no 'to')
        then get returns it; a contact gets it from the bare JID, answered
        by the server with the bare JID as 'from' (§3.3)."""
        a = self.login(self.srv, 'carol@localhost', resource='v1')
        r = iq(a, None, "<vCard xmlns='vcard-temp'/>")
        self.assertEqual(r.get('type'), 'result')
        v = r.find(q(NS_VCARD, 'vCard'))
        self.assertIsNotNone(v)
        self.assertEqual(len(v), 0)
        r = iq(a, None, VCARD.replace('Alice Liddell', 'Carol'), 'set')
        self.assertEqual(r.get('type'), 'result')
        r = iq(a, None, "<vCard xmlns='vcard-temp'/>")
        self.assertEqual(r.findtext('%s/%s' % (q(NS_VCARD, 'vCard'),
                                               q(NS_VCARD, 'FN'))), 'Carol')
        b = self.login(self.srv, 'bob@localhost', resource='v1')
        r = iq(b, 'carol@localhost', "<vCard xmlns='vcard-temp'/>")
        self.assertEqual(r.get('type'), 'result')
        self.assertEqual(r.get('from'), 'carol@localhost')
        self.assertEqual(r.findtext('%s/%s/%s' % (
            q(NS_VCARD, 'vCard'), q(NS_VCARD, 'EMAIL'),
            q(NS_VCARD, 'USERID'))), 'alice@example.org')

    def test_vcard_errors(self):
        """§3.3: no vCard and no such account get the same
        service-unavailable; §3.2: setting another's vCard: forbidden; a
        vCard over vcard.max_size (4096): policy-violation."""
        b = self.login(self.srv, 'bob@localhost', resource='v2')
        r = iq(b, 'alice@localhost', "<vCard xmlns='vcard-temp'/>")
        self.assertEqual(stanza_error_condition(r),
                         ('cancel', 'service-unavailable'))
        r = iq(b, 'nobody@localhost', "<vCard xmlns='vcard-temp'/>")
        self.assertEqual(stanza_error_condition(r),
                         ('cancel', 'service-unavailable'))
        r = iq(b, 'carol@localhost', VCARD, 'set')
        self.assertEqual(stanza_error_condition(r), ('cancel', 'forbidden'))
        big = "<vCard xmlns='vcard-temp'><DESC>%s</DESC></vCard>" % ('y' * 5000)
        r = iq(b, None, big, 'set')
        self.assertEqual(stanza_error_condition(r),
                         ('modify', 'policy-violation'))


class Persistence(harness.ServerTestCase):

    def test_restart(self):
        """Both survive a restart of starlingd (the store)."""
        srv = Server()
        try:
            a = self.login(srv)
            iq(a, None, private(BOOKMARKS), 'set')
            iq(a, None, VCARD, 'set')
            a.close()
            srv.stop()
            srv.start()
            a = self.login(srv)
            r = iq(a, None, private("<storage xmlns='storage:bookmarks'/>"))
            self.assertIsNotNone(r.find('%s/%s/%s' % (
                q(NS_PRIVATE, 'query'), q(NS_BM, 'storage'),
                q(NS_BM, 'conference'))))
            r = iq(a, None, "<vCard xmlns='vcard-temp'/>")
            self.assertEqual(r.findtext('%s/%s' % (q(NS_VCARD, 'vCard'),
                                                   q(NS_VCARD, 'FN'))),
                             'Alice Liddell')
        finally:
            srv.stop()


NS_REG = 'jabber:iq:register'


class PasswordChange(harness.ServerTestCase):
    """XEP-0077 §3.3 for a logged-in user; the new credentials are the
    only ones that work afterwards, with SCRAM-SHA-1 and -SHA-256."""

    def test_change(self):
        srv = Server()
        try:
            a = self.login(srv)
            r = iq(a, 'localhost', "<query xmlns='%s'/>" % NS_REG)
            query = r.find(q(NS_REG, 'query'))
            self.assertIsNotNone(query.find(q(NS_REG, 'registered')))
            self.assertEqual(query.findtext(q(NS_REG, 'username')), 'alice')
            r = iq(a, 'localhost', "<query xmlns='%s'><username>alice"
                   "</username><password>n3w-s3cret</password></query>"
                   % NS_REG, 'set')
            self.assertEqual(r.get('type'), 'result')
            for mech in ('SCRAM-SHA-1', 'SCRAM-SHA-256'):
                self.login(srv, password='n3w-s3cret', mech=mech)
            with self.assertRaises(harness.ProtocolError):
                harness.login(srv, password=srv.users['alice@localhost'])
        finally:
            srv.stop()

    def test_errors(self):
        """Another's username, none, an empty password: bad-request, and
        the error does not carry the request back (no password echoed);
        the switch off: not-allowed."""
        srv = Server()
        off = Server(top={'register': {'allow_password_change': False}})
        try:
            a = self.login(srv)
            for body in ("<username>bob</username><password>x1</password>",
                         "<password>x1</password>",
                         "<username>alice</username><password/>"):
                r = iq(a, 'localhost', "<query xmlns='%s'>%s</query>"
                       % (NS_REG, body), 'set')
                self.assertEqual(stanza_error_condition(r),
                                 ('modify', 'bad-request'), body)
                self.assertIsNone(r.find(q(NS_REG, 'query')))
            b = self.login(off)
            r = iq(b, 'localhost', "<query xmlns='%s'><username>alice"
                   "</username><password>x1</password></query>" % NS_REG,
                   'set')
            self.assertEqual(stanza_error_condition(r),
                             ('cancel', 'not-allowed'))
            # The old password still works there.
            self.login(off)
        finally:
            srv.stop()
            off.stop()


if __name__ == '__main__':
    harness.main()
