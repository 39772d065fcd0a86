"""Interop: the services of issue 10 through slixmpp's own plugins
(Debian's python3-slixmpp), against starlingd:

  - xep_0030: the server's identity and features;
  - xep_0115: slixmpp verifies the server's caps from the stream features
    (it asks the node#ver and checks the hash), and the server verifies
    slixmpp's caps (its log says what it kept);
  - xep_0199: a ping of the server; the server's pings of an idle
    slixmpp are answered by it;
  - xep_0054: a vCard published by alice, read by bob;
  - xep_0049 (with xep_0048 bookmarks): private storage stored from one
    resource and retrieved from another;
  - xep_0191: bob blocks alice, the list says so, alice's message bounces,
    unblocked it arrives;
  - xep_0280: carbons enabled on two resources of alice; what bob sends
    to one arrives at the other as a received carbon, what one sends as a
    sent carbon;
  - xep_0163 with xep_0172 and xep_0084: bob's verified caps bring him
    alice's published nickname; her avatar data is there to fetch;
  - xep_0012: the server's uptime, and 0 for alice (online) asked by bob
    (who may see her presence);
  - xep_0077: bob changes his password; only the new one logs in then;
  - xep_0077 account creation: a new slixmpp client registers itself
    before authenticating (force_registration), then logs in with it;
  - xep_0198: two slixmpp clients with stream management exchange a
    burst; the server's count of bob's stanzas is the one slixmpp keeps
    (every one acknowledged), slixmpp answers the server's <r/>, and
    slixmpp never finds the server's numbers inconsistent;
  - xep_0198 resumption: slixmpp's connection is cut; it reconnects and
    resumes, and the message sent meanwhile arrives;
  - xep_0313: bob pages through his archive of alice's messages with
    slixmpp's RSM iterator, two at a time;
  - xep_0114: slixmpp's ComponentXMPP connects as echo.localhost with its
    secret; alice finds it in the server's disco#items, asks its disco#info
    (answered by slixmpp's xep_0030 on the component), and her message
    comes back echoed.

alice and bob have a subscription both (starlingctl).

Run: /usr/bin/python3 test_slixmpp_services.py STARLINGD STARLINGCTL
"""
import asyncio
import hashlib
import os
import re
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import test_slixmpp_im as im_test  # noqa: E402
from test_slixmpp_im import STEP, Bot, slixmpp  # noqa: E402

if slixmpp is not None:
    from slixmpp.plugins.xep_0048 import Bookmarks


class ServiceBot(Bot):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        for p in ('xep_0030', 'xep_0115', 'xep_0199', 'xep_0054', 'xep_0049',
                  'xep_0048', 'xep_0191', 'xep_0280', 'xep_0012', 'xep_0163',
                  'xep_0172', 'xep_0084', 'xep_0077'):
            self.register_plugin(p)
        self.carbons = []
        self.nicks = []
        self.add_event_handler('user_nick_publish', self.nicks.append)
        self.add_event_handler('carbon_received',
                               lambda m: self.carbons.append(('received', m)))
        self.add_event_handler('carbon_sent',
                               lambda m: self.carbons.append(('sent', m)))


class EchoComponent(slixmpp.ComponentXMPP if slixmpp else object):
    """An XEP-0114 component that echoes messages and describes itself."""

    def __init__(self, jid, secret, port):
        super().__init__(jid, secret, '127.0.0.1', port)
        self.register_plugin('xep_0030')
        self['xep_0030'].add_identity(category='automation', itype='bot',
                                      name='Echo', jid=self.boundjid)
        self.loop_ = asyncio.get_event_loop()
        self.started = self.loop_.create_future()
        self.transcript = []
        self.add_filter('in', self._record)
        self.add_event_handler('session_start', self._on_start)
        self.add_event_handler('message', self._on_message)

    def _record(self, stanza):
        self.transcript.append(str(stanza))
        return stanza

    def _on_start(self, _event):
        if not self.started.done():
            self.started.set_result(True)

    def _on_message(self, msg):
        if msg['type'] in ('chat', 'normal') and msg['body']:
            msg.reply('echo: %s' % msg['body']).send()

    def dump(self):
        return '\n'.join(['--- stanzas received by the component ---']
                         + self.transcript)


class Registrant(slixmpp.ClientXMPP if slixmpp else object):
    """A client that creates its account in-band (XEP-0077) first."""

    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.ca_certs = harness.test_certificate()[0]
        self.register_plugin('xep_0004')
        self.register_plugin('xep_0077')
        self['xep_0077'].force_registration = True
        # slixmpp 1.8 holds back every stanza but bind before the session
        # starts ("NOT SENT" in its log), registration IQs included; its
        # own switch lets them out.
        self._always_send_everything = True
        self.loop_ = asyncio.get_event_loop()
        self.started = self.loop_.create_future()
        self.registered = False
        self.transcript = []
        self.add_filter('in', self._record)
        self.add_event_handler('register', self._on_register)
        self.add_event_handler('session_start', self._on_start)

    def _record(self, stanza):
        self.transcript.append(str(stanza))
        return stanza

    async def _on_register(self, _form):
        resp = self.Iq()
        resp['type'] = 'set'
        resp['register']['username'] = self.boundjid.user
        resp['register']['password'] = self.password
        await resp.send(timeout=STEP)
        self.registered = True

    def _on_start(self, _event):
        if not self.started.done():
            self.started.set_result(True)

    def dump(self):
        return '\n'.join(['--- stanzas received by the registrant ---']
                         + self.transcript)


COMPONENT = '''
component = {
    listen = ( { address = "127.0.0.1"; port = 0; } );
    domains = ( { domain = "echo.localhost"; secret = "echo-secret";
                  name = "Echo"; } );
};
'''


@unittest.skipIf(slixmpp is None, 'slixmpp is not installed')
class SlixmppServices(im_test.SlixmppIM):
    # The plumbing of SlixmppIM, not its scenario.
    test_im_scenario = None

    def setUp(self):
        self.bots = []
        self.srv = harness.Server(sasl={'offer_plus': False},
                                  limits={'idle_timeout': 2.0,
                                          'ping_timeout': 2.0},
                                  raw=COMPONENT)
        self.addCleanup(self.srv.stop)
        self.srv.befriend('alice@localhost', 'bob@localhost')

    async def login(self, user, resource):
        jid = '%s@localhost/%s' % (user, resource)
        bot = ServiceBot(jid, self.srv.users['%s@localhost' % user])
        self.bots.append(bot)
        bot.connect(('127.0.0.1', self.srv.port))
        await asyncio.wait_for(bot.started, STEP)
        return bot

    async def logged(self, pattern, timeout=STEP):
        """The server logged pattern (without blocking the loop the
        clients run on)."""
        await self.until('/%s/ in the log' % pattern,
                         lambda: re.search(pattern, self.srv.log_text()),
                         timeout)

    async def until(self, what, pred, timeout=STEP):
        deadline = asyncio.get_event_loop().time() + timeout
        while not pred():
            if asyncio.get_event_loop().time() > deadline:
                raise AssertionError('timed out waiting for ' + what)
            await asyncio.sleep(0.05)

    def test_services(self):
        self.run_scenario(self.scenario())
        # xep_0077 (last step): bob's new password is the one that works.
        c = harness.login(self.srv, 'bob@localhost', password='b0b-n3w')
        c.close()
        with self.assertRaises(harness.ProtocolError):
            harness.login(self.srv, 'bob@localhost',
                          password=self.srv.users['bob@localhost'])

    def test_stream_management(self):
        """slixmpp's xep_0198 against the server's stream management."""
        import logging

        class Catch(logging.Handler):
            def __init__(self):
                super().__init__(logging.ERROR)
                self.records = []

            def emit(self, record):
                self.records.append(record.getMessage())

        catch = Catch()
        sm_log = logging.getLogger('slixmpp.plugins.xep_0198.stream_management')
        sm_log.addHandler(catch)
        self.addCleanup(sm_log.removeHandler, catch)
        self.run_scenario(self.stream_management())
        self.assertEqual([r for r in catch.records if 'Inconsistent' in r], [])

    async def stream_management(self):
        bots = []
        for user in ('alice', 'bob'):
            bot = Bot('%s@localhost/sm' % user,
                      self.srv.users['%s@localhost' % user])
            bot.register_plugin('xep_0198')
            bot['xep_0198'].allow_resume = False
            self.bots.append(bot)
            bot.connect(('127.0.0.1', self.srv.port))
            await asyncio.wait_for(bot.started, STEP)
            await self.until('stream management on %s' % user,
                             lambda b=bot: 'stream_management' in b.features)
            bots.append(bot)
        alice, bob = bots
        n = len(alice.messages)
        for i in range(12):
            bob.send_message(mto='alice@localhost/sm', mbody='sm %d' % i,
                             mtype='chat')
        bob['xep_0198'].request_ack()
        # Every message counted by the server as slixmpp counts it: its
        # acks reach the 12 (a count beyond slixmpp's would be logged as
        # inconsistent, and fail the test).
        await self.until('bob\'s messages acknowledged by the server',
                         lambda: bob['xep_0198'].last_ack >= 12)
        await self.until('the burst at alice',
                         lambda: len(alice.messages) >= n + 12)
        self.assertEqual([m['body'] for m in alice.messages[n:]],
                         ['sm %d' % i for i in range(12)])
        await self.logged(r'stream management enabled')

    def test_stream_resumption(self):
        """slixmpp's xep_0198 resumes a session whose connection broke;
        what was sent meanwhile arrives."""
        self.run_scenario(self.resumption())

    async def resumption(self):
        bob = Bot('bob@localhost/phone', self.srv.users['bob@localhost'])
        bob.register_plugin('xep_0198')
        resumed = []
        bob.add_event_handler('session_resumed', resumed.append)
        self.bots.append(bob)
        bob.connect(('127.0.0.1', self.srv.port))
        await asyncio.wait_for(bob.started, STEP)
        await self.until('a resumable session',
                         lambda: bob['xep_0198'].sm_id is not None)
        alice = await self.login('alice', 'a')
        bob.transport.abort()  # the phone drops off the network
        await self.logged(r'session kept \d+ s for resumption')
        alice.send_message(mto='bob@localhost/phone', mbody='while away',
                           mtype='chat')
        await asyncio.sleep(0.2)
        bob.connect(('127.0.0.1', self.srv.port))
        await self.until('the resumption', lambda: resumed)
        await self.logged(r'resumed from')
        await self.until('the message sent meanwhile',
                         lambda: any(m['body'] == 'while away'
                                     for m in bob.messages))
        self.assertEqual(str(bob.boundjid), 'bob@localhost/phone')

    def test_archive(self):
        """slixmpp's xep_0313 pages through an archive (RSM)."""
        self.run_scenario(self.archive())

    async def archive(self):
        alice = await self.login('alice', 'arch')
        bob = Bot('bob@localhost/arch', self.srv.users['bob@localhost'])
        bob.register_plugin('xep_0313')
        self.bots.append(bob)
        bob.connect(('127.0.0.1', self.srv.port))
        await asyncio.wait_for(bob.started, STEP)
        for i in range(5):
            alice.send_message(mto='bob@localhost', mbody='kept %d' % i,
                               mtype='chat')
        await self.until('the messages at bob',
                         lambda: sum(1 for m in bob.messages
                                     if m['body'].startswith('kept')) == 5)
        got = []
        async for page in bob['xep_0313'].retrieve(
                with_jid=slixmpp.JID('alice@localhost'), iterator=True,
                rsm={'max': 2}):
            got += [r['mam_result']['forwarded']['stanza']['body']
                    for r in page['mam']['results']]
        self.assertEqual(got, ['kept %d' % i for i in range(5)])

    def test_registration(self):
        """slixmpp's xep_0077 creates an account before logging in."""
        self.srv.stop()
        self.srv = harness.Server(sasl={'offer_plus': False},
                                  top={'register': {'allow_registration':
                                                    True}})
        self.addCleanup(self.srv.stop)
        self.run_scenario(self.registration())
        c = harness.login(self.srv, 'newcomer@localhost', password='n3w-c0mer')
        c.close()

    async def registration(self):
        bot = Registrant('newcomer@localhost/r', 'n3w-c0mer')
        self.bots.append(bot)
        bot.connect(('127.0.0.1', self.srv.port))
        await asyncio.wait_for(bot.started, STEP)
        self.assertTrue(bot.registered)
        self.assertEqual(str(bot.boundjid), 'newcomer@localhost/r')
        await self.logged(r'registered newcomer@localhost')

    async def scenario(self):
        a1 = await self.login('alice', 'a1')
        a2 = await self.login('alice', 'a2')
        bob = await self.login('bob', 'b')

        # xep_0030
        info = await a1['xep_0030'].get_info(jid='localhost', timeout=STEP)
        ids = info['disco_info']['identities']
        self.assertIn(('server', 'im'), [(i[0], i[1]) for i in ids])
        feats = info['disco_info']['features']
        for f in ('vcard-temp', 'jabber:iq:private', 'urn:xmpp:blocking',
                  'urn:xmpp:carbons:2', 'urn:xmpp:ping', 'jabber:iq:last',
                  'http://jabber.org/protocol/caps'):
            self.assertIn(f, feats)

        # xep_0115: slixmpp checked the server's caps (stream features)
        # and kept them; the server checked slixmpp's (its initial
        # presence went out before slixmpp had computed its own ver: it
        # announces them again).
        await a1['xep_0115'].update_caps()
        a1.send_presence()
        await self.until('slixmpp to verify the server caps',
                         lambda: a1['xep_0115'].get_verstring(
                             slixmpp.JID('localhost')) is not None)
        await self.logged(r'caps \S+: \d+ features')

        # xep_0199 and the server's pings of an idle client (2 s here).
        await a1['xep_0199'].ping('localhost', timeout=STEP)
        await self.logged(r'idle: pinged bob@localhost/b')
        await bob['xep_0199'].ping('localhost', timeout=STEP)

        # xep_0054
        vcard = a1['xep_0054'].make_vcard()
        vcard['FN'] = 'Alice Liddell'
        vcard['NICKNAME'] = 'alice'
        await a1['xep_0054'].publish_vcard(vcard, timeout=STEP)
        got = await bob['xep_0054'].get_vcard(slixmpp.JID('alice@localhost'),
                                              cached=False, timeout=STEP)
        self.assertEqual(got['vcard_temp']['FN'], 'Alice Liddell')

        # xep_0049, with xep_0048's bookmarks (what old clients keep there)
        bm = Bookmarks()
        bm.add_conference('room@muc.example', 'alice', name='R&D',
                          autojoin=True)
        await a1['xep_0048'].set_bookmarks(bm, method='xep_0049',
                                           timeout=STEP)
        got = await a2['xep_0048'].get_bookmarks(method='xep_0049',
                                                 timeout=STEP)
        confs = got['private']['bookmarks']['conferences']
        self.assertEqual([(str(c['jid']), c['nick'], c['name'], c['autojoin'])
                          for c in confs],
                         [('room@muc.example', 'alice', 'R&D', True)])

        # xep_0191
        await bob['xep_0191'].block(['alice@localhost'], timeout=STEP)
        blocked = await bob['xep_0191'].get_blocked(timeout=STEP)
        self.assertEqual([str(j) for j in blocked['blocklist']['items']],
                         ['alice@localhost'])
        errors = []
        a1.add_event_handler('message_error', errors.append)
        a1.send_message(mto='bob@localhost/b', mbody='blocked?', mtype='chat')
        await self.until('the bounce', lambda: errors)
        self.assertEqual(errors[0]['error']['condition'], 'service-unavailable')
        await bob['xep_0191'].unblock(['alice@localhost'], timeout=STEP)
        n = len(bob.messages)
        a1.send_message(mto='bob@localhost/b', mbody='now', mtype='chat')
        await self.until('the message', lambda: len(bob.messages) > n)

        # xep_0280
        await a1['xep_0280'].enable(timeout=STEP)
        await a2['xep_0280'].enable(timeout=STEP)
        bob.send_message(mto='alice@localhost/a1', mbody='to a1', mtype='chat')
        await self.until('a received carbon at a2',
                         lambda: any(k == 'received' for k, _ in a2.carbons))
        kind, m = a2.carbons[-1]
        self.assertEqual(m['carbon_received']['body'], 'to a1')
        a1.send_message(mto='bob@localhost', mbody='from a1', mtype='chat')
        await self.until('a sent carbon at a2',
                         lambda: any(k == 'sent' for k, _ in a2.carbons))
        kind, m = a2.carbons[-1]
        self.assertEqual(m['carbon_sent']['body'], 'from a1')
        self.assertEqual(a1.carbons, [])

        # xep_0163 with xep_0172 and xep_0084: bob's caps say
        # nick+notify (slixmpp adds it for the plugin); verified by the
        # server, they bring him alice's nickname; her avatar's data is
        # there for him to fetch.
        await bob['xep_0115'].update_caps()
        bob.send_presence()
        ver = await bob['xep_0115'].get_verstring(bob.boundjid)
        self.assertTrue(ver)
        await self.logged(r'caps %s: \d+ features' % re.escape(ver))
        await a1['xep_0172'].publish_nick('Alice L.', timeout=STEP)
        await self.until('the nick at bob', lambda: bob.nicks)
        ev = bob.nicks[-1]
        self.assertEqual(str(ev['from']), 'alice@localhost')
        self.assertEqual(ev['pubsub_event']['items']['item']['nick']['nick'],
                         'Alice L.')
        png = b'\x89PNG\r\n\x1a\n' + bytes(range(64))
        await a1['xep_0084'].publish_avatar(png, timeout=STEP)
        avatar_id = hashlib.sha1(png).hexdigest()
        got = await bob['xep_0084'].retrieve_avatar(
            slixmpp.JID('alice@localhost'), avatar_id, timeout=STEP)
        data = got['pubsub']['items']['item']['avatar_data']['value']
        self.assertEqual(data, png)

        # xep_0012
        last = await a1['xep_0012'].get_last_activity(
            slixmpp.JID('localhost'), timeout=STEP)
        self.assertGreaterEqual(last['last_activity']['seconds'], 0)
        # alice is online, and bob may see her presence: 0 seconds.
        last = await bob['xep_0012'].get_last_activity(
            slixmpp.JID('alice@localhost'), timeout=STEP)
        self.assertEqual(last['last_activity']['seconds'], 0)

        # xep_0077: bob changes his password in-band.
        await bob['xep_0077'].change_password('b0b-n3w', jid='localhost',
                                              timeout=STEP)

        # xep_0114: a slixmpp component.
        comp = EchoComponent('echo.localhost', 'echo-secret',
                             self.srv.component_port)
        self.bots.append(comp)
        comp.connect()
        await asyncio.wait_for(comp.started, STEP)
        await self.logged(r'component echo\.localhost connected')
        items = await a1['xep_0030'].get_items(jid='localhost', timeout=STEP)
        self.assertIn(('echo.localhost', None, 'Echo'),
                      items['disco_items']['items'])
        info = await a1['xep_0030'].get_info(jid='echo.localhost',
                                             timeout=STEP)
        self.assertIn(('automation', 'bot', None, 'Echo'),
                      info['disco_info']['identities'])
        n = len(a1.messages)
        a1.send_message(mto='echo.localhost', mbody='ping?', mtype='chat')
        await self.until('the echo', lambda: len(a1.messages) > n)
        echo = a1.messages[-1]
        self.assertEqual(str(echo['from']), 'echo.localhost')
        self.assertEqual(echo['body'], 'echo: ping?')


if __name__ == '__main__':
    harness.main()
