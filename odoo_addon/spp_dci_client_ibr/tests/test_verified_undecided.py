# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Checks say whether their answers were verified; answers the core cannot decide fail the
check with the reason, never "no match" (issue 9, addon side).

The sloppy registry here is a real HTTP server on loopback that signs its answers with its
own key (``DciSigner``) and binds them to our request as the contract requires, but answers
each identifier with an item of a shape that decides nothing."""

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from spp_dci_ibr.exceptions import UndecidedError

from odoo.exceptions import UserError
from odoo.tests import tagged
from odoo.tests.common import TransactionCase

from ..services import IBRService
from .common import (
    OUR_SENDER_ID,
    DciSigner,
    SandboxMixin,
    callback_header,
    data_sources,
    envelope,
    event_from,
    message_ts,
)

REGISTRY = "sloppy.registry"
# Item shapes that decide nothing (PROTOCOL §6): each must leave its identifier failed.
UNDECIDABLE_ITEMS = {
    "succ without data": {"status": "succ"},
    "succ with empty data": {"status": "succ", "data": {}},
    "reg_records null": {"status": "succ", "data": {"reg_records": None}},
    "reg_records a string": {"status": "succ", "data": {"reg_records": "none"}},
    "records under another key": {"status": "succ", "data": {"records": []}},
    "pending": {"status": "pdng"},
    "no status": {"data": {"reg_records": []}},
    "unknown status": {"status": "ok", "data": {"reg_records": []}},
}


class SloppyRegistry:
    """Answers every sync search with ``item`` (plus the request's reference_id), in an
    envelope signed by ``signer`` and bound to the request (action, receiver, transaction)."""

    def __init__(self, signer):
        self.signer = signer
        self.item = None
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body = json.dumps(registry.answer(request)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        host, port = self.server.server_address
        return f"http://{host}:{port}"

    def answer(self, request):
        message = request["message"]
        items = [
            dict(self.item, reference_id=query["reference_id"], timestamp=message_ts())
            for query in message["search_request"]
        ]
        header = callback_header(
            self.signer.sender_id,
            receiver_id=request["header"]["sender_id"],
            total_count=len(items),
            completed_count=len(items),
        )
        return envelope(
            self.signer,
            header,
            {
                "transaction_id": message["transaction_id"],
                "correlation_id": str(uuid.uuid4()),
                "search_response": items,
            },
        )

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@tagged("post_install", "-at_install")
class TestVerifiedAndUndecided(SandboxMixin, TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_sandbox()
        cls.signer = DciSigner(REGISTRY, "k1")
        cls.sloppy = SloppyRegistry(cls.signer)
        cls.addClassCleanup(cls.sloppy.stop)
        sender = cls.env["spp.dci.ibr.sender"].create(
            {
                "name": "Sloppy registry",
                "sender_id": REGISTRY,
                "key_ids": [
                    (0, 0, {"kid": cls.signer.kid, "jwk": json.dumps(cls.signer.public_jwk())})
                ],
            }
        )
        cls.sloppy_source = data_sources(cls.env).create(
            {
                "name": "Sloppy registry",
                "code": "sloppy",
                "base_url": cls.sloppy.url,
                "auth_type": "none",
                "allow_unsigned": True,
                "our_sender_id": OUR_SENDER_ID,
                "registry_sender_id": sender.id,
                "max_retries": 0,
            }
        )

    # ------------------------------------------------------------ verified

    def test_sync_check_against_a_signing_registry_is_verified(self):
        check = self.new_check(self.identifier("unknown"))
        check.action_run_check()
        self.assertEqual((check.state, check.result), ("completed", "no_match"))
        self.assertTrue(check.verified)

    def test_batch_checks_are_verified(self):
        checks = self.env["spp.dci.duplication.check"]
        for pair in self.identifiers("active", 2) + self.identifiers("unknown", 2):
            checks |= self.new_check(pair)
        checks.action_run_batch()
        self.run_batch_workers()
        self.assertEqual(set(checks.mapped("state")), {"completed"})
        self.assertTrue(all(checks.mapped("verified")))

    def test_a_batch_chunk_costs_as_many_queries_for_20_checks_as_for_5(self):
        """The results of a chunk are stored with a fixed number of queries (one INSERT of
        every identifier line), not a few per check."""

        def queries(count):
            checks = self.env["spp.dci.duplication.check"]
            for pair in self.identifiers("unknown", count):
                checks |= self.new_check(pair)
            # An old check date: sending writes every check's date, never only some of them
            # (a second ticking over while the checks are created would split the UPDATE).
            checks.write({"queued": True, "mode": "batch", "check_date": "2000-01-01 00:00:00"})
            self.env.flush_all()
            before = self.env.cr.sql_log_count
            checks._spp_run_chunk()
            self.env.flush_all()
            spent = self.env.cr.sql_log_count - before
            self.assertEqual(set(checks.mapped("state")), {"completed"})
            self.assertEqual(len(checks.detail_ids), count)
            return spent

        queries(3)  # warm: the client and its token
        self.assertLessEqual(queries(20), queries(5))

    def test_checks_completed_by_a_callback_are_verified(self):
        check = self.new_check(self.identifier("unknown"))
        self.assertTrue(check._spp_prepare_async())
        line = check.detail_ids
        line.reference_id = "ref-verified-1"
        signer = DciSigner(self.sandbox.sender_id)
        item = {
            "reference_id": "ref-verified-1",
            "timestamp": message_ts(),
            "status": "succ",
            "data": {"reg_records": []},
        }
        message = {"transaction_id": check.transaction_id, "search_response": [item]}
        event = event_from(envelope(signer, callback_header(self.sandbox.sender_id), message))
        self.env["spp.dci.callback.log"]._spp_sink(event)
        self.assertEqual((check.state, check.result), ("completed", "no_match"))
        self.assertTrue(check.verified)

    def test_a_failed_or_reset_check_is_not_verified(self):
        check = self.new_check(self.identifier("unknown"))
        check.action_run_check()
        self.assertTrue(check.verified)
        check._spp_reset()
        self.assertFalse(check.verified)

    # ------------------------------------------------------------ undecided

    def test_undecidable_answers_fail_sync_checks_with_the_reason(self):
        for name, item in UNDECIDABLE_ITEMS.items():
            with self.subTest(item=name):
                self.sloppy.item = item
                check = self.new_check(("UIN", f"UIN-{uuid.uuid4().hex[:8]}"), self.sloppy_source)
                check.action_run_check()
                self.assertEqual(check.state, "failed", name)
                self.assertFalse(check.result, name)
                self.assertFalse(check.is_duplicate)
                self.assertTrue(check.error_message, name)
                self.assertEqual(check.detail_ids.status, "failed", name)
                self.assertTrue(check.detail_ids.reason, name)

    def test_undecidable_answers_fail_batch_checks(self):
        self.sloppy.item = UNDECIDABLE_ITEMS["succ with empty data"]
        checks = self.env["spp.dci.duplication.check"]
        for index in range(3):
            checks |= self.new_check(("UIN", f"UIN-batch-{index}"), self.sloppy_source)
        checks.action_run_batch()
        self.run_batch_workers()
        self.assertEqual(set(checks.mapped("state")), {"failed"})
        self.assertEqual(checks.mapped("result"), [False] * 3)
        self.assertTrue(all(checks.mapped("error_message")))

    def test_an_undecidable_callback_item_fails_the_check(self):
        check = self.new_check(self.identifier("unknown"))
        self.assertTrue(check._spp_prepare_async())
        check.detail_ids.reference_id = "ref-undecided-1"
        signer = DciSigner(self.sandbox.sender_id)
        item = {"reference_id": "ref-undecided-1", "timestamp": message_ts(), "status": "succ"}
        message = {"transaction_id": check.transaction_id, "search_response": [item]}
        event = event_from(envelope(signer, callback_header(self.sandbox.sender_id), message))
        self.env["spp.dci.callback.log"]._spp_sink(event)
        self.assertEqual(check.state, "failed")
        self.assertFalse(check.result)
        self.assertTrue(check.error_message)

    def test_an_undecided_error_fails_the_check_as_undecided(self):
        check = self.new_check(self.identifier("unknown"))
        check._spp_fail_on(UndecidedError("item answered twice"))
        self.assertEqual((check.state, check.failure_kind), ("failed", "undecided"))
        self.assertFalse(check.result)
        self.assertIn("answered twice", check.error_message)

    def test_service_reports_undecidable_answers_as_errors_never_as_nothing_found(self):
        self.sloppy.item = UNDECIDABLE_ITEMS["reg_records null"]
        service = IBRService(self.sloppy_source, self.env)
        with self.assertRaisesRegex(UserError, "The IBR search failed: "):
            service.search_beneficiary("UIN", "UIN-undecided")
        partner = self.new_partner(("UIN", "UIN-undecided"))
        with self.assertRaises(UserError):
            service.check_duplication(partner)

    # ------------------------------------------------------------ retry

    def test_retrying_many_skips_those_without_identifier_and_says_so(self):
        hopeless = self.env["spp.dci.duplication.check"].create(
            {"partner_id": self.new_partner().id, "data_source_id": self.data_source.id}
        )
        hopeless.action_run_check()
        self.assertEqual(hopeless.failure_kind, "no_identifier")
        other = self.new_check(self.identifier("unknown"))
        other._spp_fail("The registry timed out")
        answer = (hopeless | other).action_retry()
        self.assertEqual(answer["params"]["type"], "warning")
        self.assertIn("no identifier to check", answer["params"]["message"])
        self.assertEqual((hopeless.state, hopeless.failure_kind), ("failed", "no_identifier"))
        self.assertEqual((other.state, other.result), ("completed", "no_match"))

    # ------------------------------------------------------------ help text

    def test_the_callback_uri_help_names_the_universal_route(self):
        help_text = data_sources(self.env)._fields["our_callback_uri"].help
        self.assertIn("/dci_ibr/registry/callback", help_text)
        self.assertNotIn("on-search\n", help_text)
        self.assertFalse(help_text.rstrip().endswith("/registry/on-search"))
