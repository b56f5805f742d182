# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Synchronous checks, batches and failures against the embedded sandbox (loopback)."""

import logging
import socket
from datetime import timedelta

from odoo import fields
from odoo.exceptions import AccessError, UserError
from odoo.service.model import get_public_method
from odoo.tests import tagged
from odoo.tests.common import TransactionCase

from ..services import IBRService
from .common import SandboxMixin, UsersMixin, data_sources

CHUNK_PARAM = "spp_dci_client_ibr.batch_chunk_size"


def closed_port():
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.lines = []

    def emit(self, record):
        try:
            self.lines.append(record.getMessage())
        except (TypeError, ValueError):
            self.lines.append(str(record.msg))


@tagged("post_install", "-at_install")
class TestDuplicationCheck(SandboxMixin, UsersMixin, TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_users()
        cls.setup_sandbox()

    def assert_failed_closed(self, check):
        self.assertEqual(check.state, "failed")
        self.assertFalse(check.result, "a failed check must never carry a result")
        self.assertFalse(check.is_duplicate)
        self.assertTrue(check.error_message)

    # -------------------------------------------------------------- sync

    def test_new_check_has_no_result(self):
        check = self.new_check(self.identifier("active"))
        self.assertEqual(check.state, "ready")
        self.assertFalse(check.result)

    def test_sync_confirmed_match(self):
        check = self.new_check(self.identifier("active"))
        check.with_user(self.officer).action_run_check()
        self.assertEqual(check.state, "completed", check.error_message)
        self.assertEqual(check.result, "confirmed_match")
        self.assertTrue(check.is_duplicate)
        self.assertTrue(check.matched_programs)
        self.assertEqual(check.mode, "sync")
        self.assertTrue(check.raw_response)
        self.assertEqual(len(check.detail_ids), 1)
        self.assertEqual(check.detail_ids.status, "records")
        self.assertGreaterEqual(check.detail_ids.record_count, 1)

    def test_sync_no_match(self):
        check = self.new_check(self.identifier("unknown"))
        check.with_user(self.officer).action_run_check()
        self.assertEqual(check.state, "completed", check.error_message)
        self.assertEqual(check.result, "no_match")
        self.assertFalse(check.is_duplicate)
        self.assertFalse(check.matched_programs)
        self.assertEqual(check.detail_ids.status, "no_records")

    def test_sync_possible_match_for_graduated(self):
        check = self.new_check(self.identifier("graduated"))
        check.with_user(self.officer).action_run_check()
        self.assertEqual(check.state, "completed", check.error_message)
        self.assertEqual(check.result, "possible_match")

    def test_completed_check_is_not_run_again(self):
        check = self.new_check(self.identifier("unknown"))
        check.action_run_check()
        completed_at = check.completed_at
        check.action_run_check()
        self.assertEqual(check.completed_at, completed_at)

    # ---------------------------------------------------------- failures

    def test_wrong_client_secret_fails_closed(self):
        source = data_sources(self.env).create(
            self.data_source_vals(code="bad_secret", oauth2_client_secret="wrong-secret")
        )
        check = self.new_check(self.identifier("unknown"), source=source)
        check.action_run_check()
        self.assert_failed_closed(check)
        self.assertNotIn("wrong-secret", check.error_message)

    def test_unreachable_registry_fails_closed(self):
        port = closed_port()
        source = data_sources(self.env).create(
            self.data_source_vals(
                code="unreachable",
                base_url=f"http://127.0.0.1:{port}",
                oauth2_token_url=f"http://127.0.0.1:{port}/oauth2/client/token",
            )
        )
        check = self.new_check(self.identifier("unknown"), source=source)
        check.action_run_check()
        self.assert_failed_closed(check)

    def test_answer_signed_by_unexpected_key_fails_closed(self):
        impostor = self.env["spp.dci.ibr.sender"].create(
            {
                "name": "Wrong keys",
                "sender_id": "impostor.registry",
                "public_key": self.signing_key.public_key,
            }
        )
        source = data_sources(self.env).create(
            self.data_source_vals(code="wrong_keys", registry_sender_id=impostor.id)
        )
        check = self.new_check(self.identifier("unknown"), source=source)
        check.action_run_check()
        self.assert_failed_closed(check)

    def test_check_without_identifier_fails(self):
        partner = self.env["res.partner"].create({"name": "No identifier"})
        check = self.env["spp.dci.duplication.check"].create(
            {"partner_id": partner.id, "data_source_id": self.data_source.id}
        )
        check.action_run_check()
        self.assert_failed_closed(check)
        self.assertEqual(check.failure_kind, "no_identifier")

    def test_retry_after_failure_converges(self):
        source = data_sources(self.env).create(
            self.data_source_vals(code="flaky", oauth2_client_secret="wrong-secret")
        )
        check = self.new_check(self.identifier("active"), source=source)
        check.action_run_check()
        self.assert_failed_closed(check)
        source.sudo().oauth2_client_secret = self.sandbox.client_secret
        check.with_user(self.officer).action_retry()
        self.assertEqual(check.state, "completed", check.error_message)
        self.assertEqual(check.result, "confirmed_match")
        self.assertFalse(check.error_message)

    def test_missing_configuration_is_reported(self):
        source = data_sources(self.env).create(
            self.data_source_vals(code="no_key", signing_key_id=False)
        )
        check = self.new_check(self.identifier("unknown"), source=source)
        with self.assertRaises(UserError):
            check.action_run_check()

    # ------------------------------------------------------------ batches

    def test_batch_in_several_chunks_runs_in_the_background(self):
        self.env["ir.config_parameter"].sudo().set_param(CHUNK_PARAM, "7")
        active = self.identifiers("active", 8)
        unknown = self.identifiers("unknown", 12)
        checks = self.env["spp.dci.duplication.check"]
        for pair in active + unknown:
            checks |= self.new_check(pair)
        checks.with_user(self.officer).action_run_batch()
        self.assertTrue(all(checks.mapped("queued")))
        self.assertEqual(set(checks.mapped("state")), {"ready"})
        self.run_batch_workers()
        self.assertEqual(set(checks.mapped("state")), {"completed"}, checks.mapped("error_message"))
        self.assertFalse(any(checks.mapped("queued")))
        results = {check.identifier_value: check.result for check in checks}
        for _type, value in active:
            self.assertEqual(results[value], "confirmed_match")
        for _type, value in unknown:
            self.assertEqual(results[value], "no_match")

    def test_batch_in_one_chunk_runs_at_once(self):
        if "queue.job" in self.env:
            self.skipTest("with the queue bridge every chunk is a queue job (tested there)")
        self.env["ir.config_parameter"].sudo().set_param(CHUNK_PARAM, "50")
        checks = self.env["spp.dci.duplication.check"]
        for pair in self.identifiers("unknown", 5):
            checks |= self.new_check(pair)
        checks.with_user(self.officer).action_run_batch()
        self.assertEqual(set(checks.mapped("result")), {"no_match"})

    def test_batch_against_unreachable_registry_never_no_match(self):
        port = closed_port()
        source = data_sources(self.env).create(
            self.data_source_vals(
                code="down",
                base_url=f"http://127.0.0.1:{port}",
                oauth2_token_url=f"http://127.0.0.1:{port}/oauth2/client/token",
            )
        )
        checks = self.env["spp.dci.duplication.check"]
        for pair in self.identifiers("unknown", 4):
            checks |= self.new_check(pair, source=source)
        checks.action_run_batch()
        self.run_batch_workers()
        for check in checks:
            self.assert_failed_closed(check)

    def test_contacts_action_runs_the_checks_that_never_ran(self):
        """Contacts whose only identifier is on a check that never ran: the wizard runs that
        check (it does not stay "ready" beside a new one) and skips contacts without any."""
        self.env["ir.config_parameter"].sudo().set_param(CHUNK_PARAM, "50")
        first_checks = self.env["spp.dci.duplication.check"]
        for pair in self.identifiers("active", 3):
            first_checks |= self.new_check(pair)
        partners = first_checks.partner_id
        no_identifier = self.env["res.partner"].create({"name": "Nobody"})
        action = (
            (partners | no_identifier).with_user(self.officer).action_spp_dci_check_ibr_duplicates()
        )
        wizard = (
            self.env["spp.dci.ibr.batch.check.wizard"]
            .with_user(self.officer)
            .with_context(**action["context"])
            .create({"data_source_id": self.data_source.id})
        )
        self.assertEqual(wizard.partner_count, 4)
        result = wizard.action_run()
        self.assertIn("without identifier", result["params"]["message"])
        self.run_batch_workers()
        checks = self.env["spp.dci.duplication.check"].search([("partner_id", "in", partners.ids)])
        self.assertEqual(checks, first_checks)
        self.assertEqual(set(checks.mapped("mode")), {"batch"})
        self.assertEqual(set(checks.mapped("result")), {"confirmed_match"})
        self.assertFalse(
            self.env["spp.dci.duplication.check"].search([("partner_id", "=", no_identifier.id)])
        )
        self.assertEqual(partners[0].with_user(self.viewer).spp_dci_last_result, "confirmed_match")
        self.assertEqual(partners[0].with_user(self.viewer).spp_dci_check_count, 1)

    # ------------------------------------------------------ stuck checks

    def test_cron_fails_only_checks_stuck_past_the_timeout(self):
        old = fields.Datetime.now() - timedelta(minutes=self.data_source.async_timeout_minutes + 5)
        stuck = self.new_check(self.identifier("unknown"))
        fresh = self.new_check(self.identifier("unknown"))
        done = self.new_check(self.identifier("unknown"))
        stuck.write({"state": "checking", "transaction_id": "t-stuck", "sent_at": old})
        fresh.write(
            {"state": "checking", "transaction_id": "t-fresh", "sent_at": fields.Datetime.now()}
        )
        done.write({"state": "completed", "result": "no_match", "sent_at": old})
        failed = self.env["spp.dci.duplication.check"]._spp_fail_stuck_checks()
        self.assertEqual(failed, stuck)
        self.assertEqual(stuck.state, "failed")
        self.assertEqual(stuck.failure_kind, "timeout")
        self.assertFalse(stuck.result)
        self.assertEqual(fresh.state, "checking")
        self.assertEqual(done.result, "no_match")

    # ----------------------------------------------------- OpenSPP API

    def test_openspp_service_api(self):
        pair = self.identifier("active")
        partner = self.new_check(pair).partner_id
        service = IBRService(self.data_source, self.env)
        outcome = service.check_duplication(partner)
        self.assertTrue(outcome["is_duplicate"])
        self.assertTrue(outcome["matched_programs"])
        self.assertIsInstance(outcome["raw_response"], list)
        self.assertEqual(outcome["result"], "confirmed_match")
        beneficiaries = service.search_beneficiary(*pair)
        self.assertTrue(beneficiaries)
        self.assertIsInstance(beneficiaries[0], dict)
        status = service.get_enrollment_status(*pair)
        self.assertTrue(status["enrolled"])
        self.assertTrue(status["programs"])

    def test_service_model_is_the_api_and_not_reachable_over_rpc(self):
        pair = self.identifier("active")
        partner = self.new_check(pair).partner_id
        service = self.env["spp.dci.ibr.service"]
        outcome = service.check_duplication(self.data_source, partner)
        self.assertEqual(outcome["result"], "confirmed_match")
        self.assertEqual(
            [(o["id_type"], o["id_value"], o["status"]) for o in outcome["outcomes"]],
            [(pair[0], pair[1], "records")],
        )
        self.assertTrue(service.get_enrollment_status(self.data_source, *pair)["enrolled"])
        for method in ("check_duplication", "search_beneficiary", "get_enrollment_status"):
            with self.assertRaises(AccessError, msg=method):
                get_public_method(service, method)

    def test_openspp_service_never_reports_an_outage_as_clean(self):
        source = data_sources(self.env).create(
            self.data_source_vals(code="svc_down", oauth2_client_secret="wrong-secret")
        )
        partner = self.new_check(self.identifier("unknown"), source=source).partner_id
        with self.assertRaises(UserError):
            IBRService(source, self.env).check_duplication(partner)
        with self.assertRaises(UserError):
            IBRService(source, self.env).check_duplication(
                self.env["res.partner"].create({"name": "x"})
            )

    def test_connection_test(self):
        self.data_source.action_spp_test_ibr_connection()
        self.assertEqual(self.data_source.state, "active", self.data_source.last_error)
        source = data_sources(self.env).create(
            self.data_source_vals(code="conn_bad", oauth2_client_secret="wrong-secret")
        )
        source.action_spp_test_ibr_connection()
        self.assertEqual(source.state, "error")
        self.assertNotIn("wrong-secret", source.last_error)

    # ----------------------------------------------------------- secrets

    def test_full_flow_at_debug_never_logs_secrets(self):
        bad_secret = "wrong-" + "x" * 12
        bad = data_sources(self.env).create(
            self.data_source_vals(code="dbg_bad", oauth2_client_secret=bad_secret)
        )
        handler = ListHandler()
        loggers = [
            logging.getLogger(name) for name in ("spp_dci_ibr", "odoo.addons.spp_dci_client_ibr")
        ]
        previous = [logger.level for logger in loggers]
        for logger in loggers:
            logger.addHandler(handler)
            logger.setLevel(logging.DEBUG)
        try:
            self.data_source.action_spp_test_ibr_connection()
            for status in ("active", "unknown"):
                self.new_check(self.identifier(status)).action_run_check()
            self.new_check(self.identifier("unknown"), source=bad).action_run_check()
            bad.action_spp_test_ibr_connection()
        finally:
            for logger, level in zip(loggers, previous, strict=True):
                logger.removeHandler(handler)
                logger.setLevel(level)
        private_body = self.signing_key.sudo().private_key.split("-----")[2].strip()[:40]
        for line in handler.lines:
            self.assertNotIn(self.sandbox.client_secret, line)
            self.assertNotIn(bad_secret, line)
            self.assertNotIn(private_body, line)
            self.assertNotIn("PRIVATE KEY", line)
        self.assertNotIn(bad_secret, bad.last_error or "")
