"""Interop: RFC 6121 instant messaging and presence between two slixmpp
clients (Debian's python3-slixmpp) through starlingd.

alice and bob log in over STARTTLS (the test certificate is checked), each
fetches its roster before its initial presence (RFC 6121 §2.2), and then,
step by step, with every step awaited against a deadline:

  1. alice adds bob to her roster (§2.3) and asks to subscribe (§3.1.1);
     her roster shows bob with ask='subscribe', bob sees the request from
     alice's bare JID (§3.1.3) and does not see her presence yet.
  2. bob approves (§3.1.4); alice's roster says 'to', bob's 'from', and
     alice now sees bob available (§3.1.5: the contact's server sends the
     contact's presence to the new subscriber).
  3. bob subscribes back, alice approves: both rosters say 'both' (the
     pushes and a fresh roster get agree), and bob sees alice available.
  4. chat messages both ways, to the bare JID and to the full JID.
  5. bob goes away with a status text; alice's slixmpp roster shows it
     for bob's resource (§4.4.2 broadcast of subsequent presence).
  6. offline message (XEP-0160): bob disconnects (closing the stream,
     without an unavailable presence of his own: the server must send it
     for him, §4.6.1), alice sees him go, sends to bob's bare JID; bob
     logs in again and gets the message after his initial presence, once,
     with a XEP-0203 delay stamp; each sees the other again.
  7. alice unsubscribes (§3.3): her roster says 'from', bob's says 'to',
     and alice gets bob's unavailable presence (§3.3.3, the contact's
     server sends unavailable from each of the contact's resources).

bob does not auto-approve: auto_authorize is None (slixmpp neither
approves nor denies on its own) and the test sends 'subscribed' itself
when the request has been seen. It sends a bare <presence
type='subscribed'/>: slixmpp's RosterItem.authorize() would also send a
directed presence to the requester, which would hide a server that forgets
§3.1.5. Roster states are asserted on what the server pushed and on a
roster get, not on slixmpp's own bookkeeping of what it sent.

On failure the stanzas each client received are printed with the server
log.

The scenario was checked against Prosody 0.12 (mod_offline on) as a
reference: every step passes there except the unavailable presence of
§3.3.3 in step 7, which Prosody does not send.

Run: /usr/bin/python3 test_slixmpp_im.py STARLINGD STARLINGCTL
"""
import asyncio
import datetime
import logging
import os
import sys
import time
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
import harness  # noqa: E402

try:
    import slixmpp
    from slixmpp.exceptions import IqError
except ImportError:  # pragma: no cover
    slixmpp = None

# Seconds one step may take (a stanza or two through the server) and the
# whole scenario.
STEP = harness.TIMEOUT
TOTAL = 55


class Bot(slixmpp.ClientXMPP if slixmpp else object):
    """A slixmpp client that records what it receives."""

    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.ca_certs = harness.test_certificate()[0]
        self.register_plugin('xep_0203')  # msg['delay']
        # Nobody approves or denies for us: the test does (see above).
        self.auto_authorize = None
        self.auto_subscribe = False
        self.loop_ = asyncio.get_event_loop()
        self.started = self.loop_.create_future()
        self.ended = None
        self.messages = []       # message stanzas, in order
        self.sub_requests = []   # presence type='subscribe'
        self.pushes = []         # (jid, subscription, ask) of each roster push
        self.transcript = []     # (seconds, stanza text) of all received
        self.t0 = time.monotonic()
        self.add_filter('in', self._record)
        self.add_event_handler('session_start', self._on_start)
        self.add_event_handler('failed_all_auth', self._on_failed)
        self.add_event_handler('disconnected', self._on_disconnected)
        self.add_event_handler('message', self.messages.append)
        self.add_event_handler('roster_subscription_request',
                               self.sub_requests.append)
        self.add_event_handler('roster_update', self._on_roster)

    def _record(self, stanza):
        self.transcript.append((time.monotonic() - self.t0, str(stanza)))
        return stanza

    async def _on_start(self, _event):
        # RFC 6121 §2.2: the roster before initial presence makes this an
        # interested resource, which gets roster pushes.
        try:
            await self.get_roster(timeout=STEP)
            self.send_presence()
        except Exception as e:  # noqa: BLE001 - reported by the test
            if not self.started.done():
                self.started.set_exception(AssertionError(
                    '%s: roster get failed: %r' % (self.boundjid, e)))
            return
        if not self.started.done():
            self.started.set_result(True)

    def _on_failed(self, _event):
        if not self.started.done():
            self.started.set_exception(AssertionError(
                '%s: authentication failed' % self.requested_jid))

    def _on_disconnected(self, _event):
        if not self.started.done():
            self.started.set_exception(AssertionError(
                '%s: disconnected before the session started'
                % self.requested_jid))

    def _on_roster(self, iq):
        if iq['type'] != 'set':
            return
        for jid, item in iq['roster']['items'].items():
            self.pushes.append((str(jid), item['subscription'], item['ask']))

    # -- views

    def item(self, jid):
        return self.client_roster[jid]

    def subscription(self, jid):
        return self.client_roster[jid]['subscription'] \
            if jid in self.client_roster else None

    def resources(self, jid):
        """{resource: {'show', 'status', 'priority'}} slixmpp tracks for
        jid (from the available presences it received)."""
        return dict(self.client_roster[jid].resources) \
            if jid in self.client_roster else {}

    def pushed(self, jid, subscription, ask=None):
        return any(j == jid and s == subscription and (ask is None or a == ask)
                   for j, s, a in self.pushes)

    def dump(self):
        lines = ['--- stanzas received by %s ---' % (self.boundjid or self.requested_jid)]
        lines += ['%7.3f %s' % (t, s) for t, s in self.transcript]
        return '\n'.join(lines)


@unittest.skipIf(slixmpp is None, 'slixmpp is not installed')
class SlixmppIM(unittest.TestCase):

    def setUp(self):
        self.bots = []
        # slixmpp 1.8 computes tls-unique on TLS 1.3 for -PLUS (see
        # test_slixmpp.py): without -PLUS offered it uses SCRAM-SHA-256.
        self.srv = harness.Server(sasl={'offer_plus': False})
        self.addCleanup(self.srv.stop)

    # -- plumbing

    def run_scenario(self, coro):
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._guarded(coro))
        finally:
            # slixmpp leaves tasks behind (its filter loop): end them here
            pending = asyncio.all_tasks(loop)
            for t in pending:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
            asyncio.set_event_loop(None)

    async def _guarded(self, coro):
        try:
            await asyncio.wait_for(coro, TOTAL)
        except BaseException:
            for bot in self.bots:
                sys.stderr.write('\n' + bot.dump() + '\n')
            raise
        finally:
            for bot in self.bots:
                await self.disconnect(bot)

    async def login(self, user, resource):
        jid = '%s@localhost/%s' % (user, resource)
        bot = Bot(jid, self.srv.users['%s@localhost' % user])
        self.bots.append(bot)
        bot.connect(('127.0.0.1', self.srv.port))
        await asyncio.wait_for(bot.started, STEP)
        self.assertEqual(str(bot.boundjid), jid)
        return bot

    async def disconnect(self, bot):
        if bot.transport is None:
            return
        fut = bot.disconnect()
        if fut is not None:
            try:
                await asyncio.wait_for(fut, 5)
            except Exception:  # noqa: BLE001 - teardown
                pass

    async def until(self, what, pred, timeout=STEP):
        """Polls pred() until it is true; fails with `what` at the
        deadline."""
        deadline = time.monotonic() + timeout
        while True:
            value = pred()
            if value:
                return value
            if time.monotonic() >= deadline:
                self.fail('timed out after %.0f s waiting for %s' % (timeout, what))
            await asyncio.sleep(0.05)

    async def roster_get(self, bot):
        """{jid: (subscription, ask)} of a fresh roster get (the server's
        view, whatever slixmpp has cached)."""
        iq = bot.Iq()
        iq['type'] = 'get'
        iq.enable('roster')
        res = await iq.send(timeout=STEP)
        return {str(j): (it['subscription'], it['ask'] or None)
                for j, it in res['roster']['items'].items()}

    async def sync(self, bot):
        """A round trip to the server (XEP-0199 ping of our own server):
        everything the server queued for us before the answer is in."""
        iq = bot.Iq()
        iq['type'] = 'get'
        iq['to'] = 'localhost'
        iq.append(ET.Element('{urn:xmpp:ping}ping'))
        try:
            await iq.send(timeout=STEP)
        except IqError:
            pass  # an error answer is a round trip too

    # -- the scenario

    def test_im_scenario(self):
        self.run_scenario(self.scenario())

    async def scenario(self):
        A, B = 'alice@localhost', 'bob@localhost'
        alice = await self.login('alice', 'slix-a')
        bob = await self.login('bob', 'slix-b')
        self.assertEqual(alice.subscription(B), None, 'alice starts with an empty roster')
        self.assertEqual(bob.subscription(A), None, 'bob starts with an empty roster')

        # 1. roster add + subscribe
        await alice.update_roster(B, name='Bob', groups=['Friends'], timeout=STEP)
        await self.until('the roster push of bob (none) to alice',
                         lambda: alice.pushed(B, 'none'))
        self.assertEqual((alice.item(B)['name'], alice.item(B)['groups']),
                         ('Bob', ['Friends']))
        alice.send_presence(pto=B, ptype='subscribe')
        await self.until("the roster push of bob with ask='subscribe' to alice",
                         lambda: alice.pushed(B, 'none', 'subscribe'))
        req = await self.until("bob's view of alice's subscription request",
                               lambda: bob.sub_requests and bob.sub_requests[0])
        self.assertEqual(req['from'].full, A, 'a request comes from the bare JID (§3.1.3)')
        self.assertEqual(req['type'], 'subscribe')
        await self.sync(alice)
        self.assertEqual(alice.resources(B), {},
                         'alice sees bob before he approved')

        # 2. bob approves
        bob.send_presence(pto=A, ptype='subscribed')
        await self.until("bob's roster push of alice with 'from'",
                         lambda: bob.pushed(A, 'from'))
        await self.until("alice's roster push of bob with 'to'",
                         lambda: alice.pushed(B, 'to'))
        await self.until("bob's presence at alice after the approval (§3.1.5)",
                         lambda: alice.resources(B))
        self.assertEqual(list(alice.resources(B)), ['slix-b'])
        await self.sync(bob)
        self.assertEqual(bob.resources(A), {},
                         "bob sees alice although he has no 'to' subscription")

        # 3. bob subscribes back, alice approves
        bob.send_presence(pto=A, ptype='subscribe')
        req = await self.until("alice's view of bob's subscription request",
                               lambda: alice.sub_requests and alice.sub_requests[0])
        self.assertEqual(req['from'].full, B)
        alice.send_presence(pto=B, ptype='subscribed')
        await self.until("alice's roster push of bob with 'both'",
                         lambda: alice.pushed(B, 'both'))
        await self.until("bob's roster push of alice with 'both'",
                         lambda: bob.pushed(A, 'both'))
        await self.until("alice's presence at bob after the approval",
                         lambda: bob.resources(A))
        self.assertEqual(list(bob.resources(A)), ['slix-a'])
        self.assertEqual(alice.subscription(B), 'both')
        self.assertEqual(bob.subscription(A), 'both')
        self.assertEqual((await self.roster_get(alice)).get(B), ('both', None))
        self.assertEqual((await self.roster_get(bob)).get(A), ('both', None))

        # 4. chat both ways: to the bare JID and to the full JID
        alice.send_message(mto=B, mbody='hello bob', mtype='chat')
        msg = await self.until('alice -> bob',
                               lambda: [m for m in bob.messages if m['body'] == 'hello bob'])
        self.assertEqual(msg[0]['from'].full, alice.boundjid.full)
        self.assertEqual(msg[0]['type'], 'chat')
        bob.send_message(mto=alice.boundjid.full, mbody='hi alice', mtype='chat')
        msg = await self.until('bob -> alice',
                               lambda: [m for m in alice.messages if m['body'] == 'hi alice'])
        self.assertEqual(msg[0]['from'].full, bob.boundjid.full)
        self.assertEqual(msg[0]['type'], 'chat')

        # 5. bob goes away with a status text
        bob.send_presence(pshow='away', pstatus='in a meeting')
        await self.until("bob's away status at alice",
                         lambda: alice.resources(B).get('slix-b', {}).get('show') == 'away')
        self.assertEqual(alice.resources(B)['slix-b']['status'], 'in a meeting')

        # 6. offline message: bob leaves (alice sees it: the server sends
        # his unavailable presence for him), alice sends to his bare JID,
        # bob comes back and gets it after his initial presence
        await self.disconnect(bob)
        await self.until("bob's unavailable presence at alice after he closed "
                         "his stream (§4.6.1)", lambda: not alice.resources(B))
        sent_at = datetime.datetime.now(datetime.timezone.utc)
        alice.send_message(mto=B, mbody='while you were out', mtype='chat')
        await self.sync(alice)
        errors = [m for m in alice.messages if m['type'] == 'error']
        self.assertEqual(errors, [], 'the message to offline bob bounced')
        bob = await self.login('bob', 'slix-b2')
        msg = await self.until('the offline message at bob',
                               lambda: [m for m in bob.messages
                                        if m['body'] == 'while you were out'])
        m = msg[0]
        self.assertEqual(m['from'].bare, A)
        self.assertEqual(m['type'], 'chat')
        stamp = m['delay']['stamp']
        self.assertIsNotNone(stamp, 'the offline message has no XEP-0203 delay: %s' % m)
        self.assertIsNotNone(stamp.tzinfo, 'a delay stamp without time zone (XEP-0082 '
                             'wants UTC with Z): %s' % m['delay'])
        slack = datetime.timedelta(seconds=5)
        self.assertLessEqual(sent_at - slack, stamp)
        self.assertLessEqual(stamp, datetime.datetime.now(datetime.timezone.utc) + slack)
        await self.sync(bob)
        self.assertEqual(len([m for m in bob.messages if m['body'] == 'while you were out']),
                         1, 'the offline message came twice')
        # the new session is 'both' with alice: each sees the other again
        await self.until("bob's new resource at alice",
                         lambda: 'slix-b2' in alice.resources(B))
        await self.until("alice's presence at bob's new resource (probe, §4.3)",
                         lambda: bob.resources(A))

        # 7. alice unsubscribes from bob
        alice.send_presence(pto=B, ptype='unsubscribe')
        await self.until("alice's roster push of bob with 'from'",
                         lambda: alice.pushed(B, 'from'))
        await self.until("bob's unavailable presence at alice (§3.3.3)",
                         lambda: not alice.resources(B))
        await self.until("bob's roster push of alice with 'to'",
                         lambda: bob.pushed(A, 'to'))
        self.assertEqual(bob.subscription(A), 'to')
        self.assertEqual(alice.subscription(B), 'from')
        self.assertEqual((await self.roster_get(alice)).get(B), ('from', None))
        self.assertEqual((await self.roster_get(bob)).get(A), ('to', None))
        # bob keeps his subscription to alice: her presence stays with him
        self.assertEqual(list(bob.resources(A)), ['slix-a'])

if __name__ == '__main__':
    logging.basicConfig(level=logging.WARNING)
    harness.main()
