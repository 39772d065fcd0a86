"""XEP-0313 message archives over real sockets: messages archived in both
accounts with the XEP-0359 stanza id stamped on the recipient's copy,
queries (all, with a party, a time span, RSM pages forward and backward,
before-id/after-id, an unknown id), the form, preferences (never stops
archiving), hints (no-store), the archive across a kill -9 (what the
server acknowledged is there), and the disco features.

Run: python3 test_mam.py STARLINGD STARLINGCTL
"""
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import NS_CLIENT, iq, q, stanza_error_condition  # noqa: E402

NS_MAM = 'urn:xmpp:mam:2'
NS_SID = 'urn:xmpp:sid:0'
NS_RSM = 'http://jabber.org/protocol/rsm'
NS_FWD = 'urn:xmpp:forward:0'
NS_DELAY = 'urn:xmpp:delay'
NS_DATA = 'jabber:x:data'
NS_INFO = 'http://jabber.org/protocol/disco#info'
MESSAGE = q(NS_CLIENT, 'message')


def form(**fields):
    out = ("<x xmlns='%s' type='submit'><field var='FORM_TYPE' type='hidden'>"
           "<value>%s</value></field>" % (NS_DATA, NS_MAM))
    for k, v in fields.items():
        out += "<field var='%s'><value>%s</value></field>" % (
            k.replace('_', '-'), v)
    return out + '</x>'


def rsm(max_=None, after=None, before=None):
    out = "<set xmlns='%s'>" % NS_RSM
    if max_ is not None:
        out += '<max>%d</max>' % max_
    if after is not None:
        out += '<after>%s</after>' % after
    if before is not None:
        out += '<before>%s</before>' % before if before else '<before/>'
    return out + '</set>'


def query(c, payload='', qid='q1'):
    """Sends a query; returns (results, fin IQ)."""
    iid = c.next_id('mam')
    c.send("<iq type='set' id='%s'><query xmlns='%s' queryid='%s'>%s</query>"
           "</iq>" % (iid, NS_MAM, qid, payload))
    results = []
    while True:
        el = c.expect_element()
        if el.tag == q(NS_CLIENT, 'iq') and el.get('id') == iid:
            return results, el
        res = el.find(q(NS_MAM, 'result'))
        if el.tag == MESSAGE and res is not None:
            assert res.get('queryid') == qid
            results.append(res)


def bodies(results):
    return [r.find('%s/%s/%s' % (q(NS_FWD, 'forwarded'), MESSAGE,
                                 q(NS_CLIENT, 'body'))).text for r in results]


def fin_info(fin_iq):
    fin = fin_iq.find(q(NS_MAM, 'fin'))
    s = fin.find(q(NS_RSM, 'set'))
    return (fin.get('complete') == 'true', s.findtext(q(NS_RSM, 'first')),
            s.findtext(q(NS_RSM, 'last')))


class Archive(harness.FreshServerTestCase):

    def talk(self, alice, bob, n, tag='m'):
        for i in range(n):
            alice.send("<message to='bob@localhost' type='chat' id='%s%d'>"
                       "<body>%s%d</body></message>" % (tag, i, tag, i))
        alice.sync()
        got = []
        while len(got) < n:
            el = bob.expect_element()
            if el.tag == MESSAGE:
                got.append(el)
        return got

    def pair(self):
        alice = self.login(self.srv, 'alice@localhost', resource='a')
        bob = self.login(self.srv, 'bob@localhost', resource='b')
        bob.presence()
        return alice, bob

    def test_archive_and_query(self):
        alice, bob = self.pair()
        got = self.talk(alice, bob, 6)
        # XEP-0359 on the recipient's copy, by its archive.
        sids = [m.find(q(NS_SID, 'stanza-id')) for m in got]
        self.assertTrue(all(s is not None and s.get('by') == 'bob@localhost'
                            for s in sids))
        bob.send("<message to='alice@localhost' type='chat'><body>reply"
                 "</body></message>")
        bob.sync()
        # alice's archive: her 6 and bob's reply, oldest first.
        res, fin = query(alice)
        self.assertEqual(bodies(res), ['m%d' % i for i in range(6)] +
                         ['reply'])
        self.assertEqual(fin.get('type'), 'result')
        complete, first, last = fin_info(fin)
        self.assertTrue(complete)
        self.assertEqual((first, last), (res[0].get('id'), res[-1].get('id')))
        fwd = res[0].find(q(NS_FWD, 'forwarded'))
        self.assertIsNotNone(fwd.find(q(NS_DELAY, 'delay')).get('stamp'))
        self.assertEqual(fwd.find(MESSAGE).get('to'), 'bob@localhost')
        # bob's archive holds the ids he was given.
        res, _ = query(bob)
        self.assertEqual([r.get('id') for r in res[:6]],
                         [s.get('id') for s in sids])
        # RSM: pages of 2 forward, then the last page backward.
        res, fin = query(alice, rsm(max_=2))
        self.assertEqual(bodies(res), ['m0', 'm1'])
        self.assertFalse(fin_info(fin)[0])
        res, fin = query(alice, rsm(max_=2, after=fin_info(fin)[2]))
        self.assertEqual(bodies(res), ['m2', 'm3'])
        res, fin = query(alice, rsm(max_=3, before=''))
        self.assertEqual(bodies(res), ['m4', 'm5', 'reply'])
        self.assertFalse(fin_info(fin)[0])
        res, fin = query(alice, rsm(max_=3, before=fin_info(fin)[1]))
        self.assertEqual(bodies(res), ['m1', 'm2', 'm3'])
        # Filters: a party, ids, a time span that holds nothing.
        res, _ = query(alice, form(**{'with': 'bob@localhost/b'}))
        self.assertEqual(bodies(res), ['reply'])
        all_res, _ = query(alice)
        res, _ = query(alice, form(after_id=all_res[1].get('id'),
                                   before_id=all_res[4].get('id')))
        self.assertEqual(bodies(res), ['m2', 'm3'])
        past = '2001-01-01T00:00:00Z'
        res, fin = query(alice, form(end=past))
        self.assertEqual(res, [])
        self.assertTrue(fin_info(fin)[0])
        now = datetime.datetime.now(datetime.timezone.utc)
        res, _ = query(alice, form(start=(now - datetime.timedelta(
            minutes=5)).strftime('%Y-%m-%dT%H:%M:%S.000Z')))
        self.assertEqual(len(res), 7)
        # An unknown id: item-not-found; a bad form: bad-request.
        _, fin = query(alice, rsm(after='nope'))
        self.assertEqual(stanza_error_condition(fin),
                         ('cancel', 'item-not-found'))
        _, fin = query(alice, form(start='yesterday'))
        self.assertEqual(stanza_error_condition(fin), ('modify', 'bad-request'))

    def test_form_prefs_hints_disco(self):
        alice, bob = self.pair()
        r = iq(alice, None, "<query xmlns='%s'/>" % NS_MAM)
        fields = [f.get('var') for f in r.iter(q(NS_DATA, 'field'))]
        for v in ('FORM_TYPE', 'with', 'start', 'end', 'before-id',
                  'after-id'):
            self.assertIn(v, fields)
        r = iq(alice, 'alice@localhost', "<query xmlns='%s'/>" % NS_INFO)
        feats = {f.get('var') for f in r.iter(q(NS_INFO, 'feature'))}
        self.assertTrue({NS_MAM, NS_SID} <= feats)
        r = iq(alice, None, "<prefs xmlns='%s'/>" % NS_MAM)
        self.assertEqual(r.find(q(NS_MAM, 'prefs')).get('default'), 'always')
        r = iq(alice, None, "<prefs xmlns='%s' default='never'/>" % NS_MAM,
               'set')
        self.assertEqual(r.find(q(NS_MAM, 'prefs')).get('default'), 'never')
        self.talk(alice, bob, 1, 'n')
        res, _ = query(alice)
        self.assertEqual(res, [])
        # bob's archive still has it (his preference).
        res, _ = query(bob)
        self.assertEqual(bodies(res), ['n0'])
        # A no-store hint: in nobody's archive.
        alice.send("<message to='bob@localhost' type='chat'><body>secret"
                   "</body><no-store xmlns='urn:xmpp:hints'/></message>")
        alice.sync()
        res, _ = query(bob)
        self.assertEqual(bodies(res), ['n0'])
        r = iq(alice, None, "<prefs xmlns='%s' default='sometimes'/>" % NS_MAM,
               'set')
        self.assertEqual(stanza_error_condition(r), ('modify', 'bad-request'))

    def test_survives_sigkill(self):
        """What the sender saw acknowledged (an answer after it) is in
        the archive after a kill -9."""
        alice, bob = self.pair()
        self.talk(alice, bob, 3, 'k')
        self.srv.kill()
        self.srv.start()
        alice = self.login(self.srv, 'alice@localhost', resource='a2')
        res, _ = query(alice)
        self.assertEqual(bodies(res), ['k0', 'k1', 'k2'])


if __name__ == '__main__':
    harness.main()
