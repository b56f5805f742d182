# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""The main flow as a user does it, through Odoo's real HTTP server and the web client's RPC
(the same calls the buttons make), against the embedded sandbox started here: configure a
data source, generate and activate a key, fetch the registry's key, test the connection,
check a partner from its form (sync, then async with the callback coming back on the
universal route), and run the batch wizard on many registrants."""

import json

from spp_dci_ibr.sandbox import IBRSandbox

from odoo.tests import HttpCase, tagged

from .common import OUR_SENDER_ID, LiveHttpMixin, UsersMixin, data_sources, signing_keys

CHECK = "spp.dci.duplication.check"


@tagged("post_install", "-at_install")
class TestUserFlow(LiveHttpMixin, UsersMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_users()
        # Registries that call back one URL dispatch on header.action: our universal route.
        sandbox = IBRSandbox(synthetic=200, seed=11, one_callback_url=True)
        cls.sandbox = sandbox.__enter__()
        cls.addClassCleanup(sandbox.__exit__, None, None, None)
        cls.commit_like_production()
        cls.env["ir.config_parameter"].sudo().set_param("spp_dci_client_ibr.batch_chunk_size", "10")

    def setUp(self):
        super().setUp()
        # The DCI administrator who is also a system administrator (secrets are theirs).
        self.authenticate(self.system_admin.login, self.system_admin.login)
        self.watch_filed_callbacks()

    # ------------------------------------------------------------ the web client's calls

    def call(self, model, method, *args, **kwargs):
        """``/web/dataset/call_kw``: what a form does to create, read and write."""
        return self.make_jsonrpc_request(
            f"/web/dataset/call_kw/{model}/{method}",
            {"model": model, "method": method, "args": list(args), "kwargs": kwargs},
        )

    def press(self, model, ids, button, context=None):
        """``/web/dataset/call_button``: a button of a form, or an action of a list."""
        return self.make_jsonrpc_request(
            f"/web/dataset/call_button/{model}/{button}",
            {
                "model": model,
                "method": button,
                "args": [ids],
                "kwargs": {"context": context or {}},
            },
        )

    def read_record(self, model, record_id, fields):
        return self.call(
            model, "web_read", [record_id], specification={name: {} for name in fields}
        )[0]

    # ------------------------------------------------------------ the flow

    def configure(self):
        """Signing key, registry sender, data source, as the configuration forms do."""
        if data_sources(self.env)._name != "spp.dci.ibr.data.source":
            # With OpenSPP's base, configuration happens on OpenSPP's own forms (other
            # fields); the stand-in's tests cover checks on its records.
            self.skipTest("configuration forms are OpenSPP's in this database")
        source_model = data_sources(self.env)._name
        key_model = signing_keys(self.env)._name
        key_id = self.call(
            key_model,
            "create",
            [{"name": "Our key", "key_id": "ui-key", "sender_id": OUR_SENDER_ID}],
        )[0]
        self.press(key_model, [key_id], "action_generate_key")
        self.press(key_model, [key_id], "action_activate")
        key = self.read_record(key_model, key_id, ["state", "public_jwk", "kid"])
        self.assertEqual(key["state"], "active")
        self.assertTrue(key["public_jwk"], "Generate Key Pair leaves a public key")
        # The registry's operator registers our public key (out of Odoo).
        self.sandbox.register_client_key(OUR_SENDER_ID, json.loads(key["public_jwk"]))

        sender_id = self.call(
            "spp.dci.ibr.sender",
            "create",
            [
                {
                    "name": "Sandbox IBR",
                    "sender_id": self.sandbox.sender_id,
                    "jwks_url": self.sandbox.jwks_url,
                    "allow_insecure_jwks": True,
                }
            ],
        )[0]
        self.press("spp.dci.ibr.sender", [sender_id], "fetch_public_key")
        sender = self.env["spp.dci.ibr.sender"].browse(sender_id)
        self.assertTrue(sender.key_ids, "Fetch Public Key stores the registry's keys")

        source_id = self.call(
            source_model,
            "create",
            [
                {
                    "name": "Sandbox IBR",
                    "code": "sandbox_ui",
                    "registry_type": data_sources(self.env)._spp_ibr_registry_types()[0],
                    "base_url": self.sandbox.url.rstrip("/"),
                    "auth_type": "oauth2",
                    "oauth2_token_url": self.sandbox.token_url,
                    "oauth2_client_id": self.sandbox.client_id,
                    "oauth2_client_secret": self.sandbox.client_secret,
                    "our_sender_id": OUR_SENDER_ID,
                    "our_callback_uri": f"{self.base_url()}/dci_ibr/registry/callback",
                    "signing_key_id": key_id,
                    "registry_sender_id": sender_id,
                    "max_retries": 0,
                }
            ],
        )[0]
        self.assertEqual(self.read_record(source_model, source_id, ["state"])["state"], "draft")
        self.press(source_model, [source_id], "action_test_connection")
        source = self.read_record(source_model, source_id, ["state", "last_error"])
        self.assertEqual(source["state"], "active", source["last_error"])
        return source_id

    def new_registrant(self, name, uin):
        """A contact with an identifier, as the contact form's IBR Identifiers tab saves it."""
        return self.call(
            "res.partner",
            "create",
            [{"name": name, "spp_dci_identifier_ids": [(0, 0, {"id_type": "UIN", "value": uin})]}],
        )[0]

    def test_main_flow(self):
        source_id = self.configure()

        # --- one registrant, from its form: smart button, New, Run Check
        (uin,) = self.sandbox.sample_identifiers(status="active", n=1)
        partner_id = self.new_registrant("Enrolled registrant", uin[1])
        action = self.press("res.partner", [partner_id], "action_spp_dci_view_checks")
        self.assertEqual(action["res_model"], CHECK)
        check_id = self.call(
            CHECK, "create", [{"data_source_id": source_id}], context=action["context"]
        )[0]
        self.press(CHECK, [check_id], "action_run_check")
        check = self.read_record(CHECK, check_id, ["partner_id", "state", "result", "verified"])
        self.assertEqual(check["partner_id"], partner_id)
        self.assertEqual((check["state"], check["result"]), ("completed", "confirmed_match"))
        self.assertTrue(check["verified"])
        counts = self.read_record(
            "res.partner", partner_id, ["spp_dci_check_count", "spp_dci_last_result"]
        )
        self.assertEqual(counts["spp_dci_check_count"], 1)
        self.assertEqual(counts["spp_dci_last_result"], "confirmed_match")

        # --- the same, asynchronously: the callback comes back on the universal route
        (unknown,) = self.sandbox.sample_identifiers(status="unknown", n=1)
        partner_id = self.new_registrant("New registrant", unknown[1])
        check_id = self.call(
            CHECK, "create", [{"partner_id": partner_id, "data_source_id": source_id}]
        )[0]
        self.press(CHECK, [check_id], "action_run_check_async")
        with self.allow_requests():
            self.assertTrue(self.callbacks_filed.wait(timeout=30), "no callback was filed")
        self.env.invalidate_all()
        check = self.env[CHECK].browse(check_id)
        self.assertEqual((check.state, check.result), ("completed", "no_match"))
        self.assertEqual(check.callback_log_ids.state, "matched")

        # --- many registrants: Registrants list, Actions > Check IBR duplicates, the wizard
        active = self.sandbox.sample_identifiers(status="active", n=5)
        others = self.sandbox.sample_identifiers(status="unknown", n=20)
        partner_ids = [
            self.new_registrant(f"Batch registrant {index}", value)
            for index, (_type, value) in enumerate(active + others)
        ]
        partner_ids.append(self.call("res.partner", "create", [{"name": "No identifier"}])[0])
        action = self.press("res.partner", partner_ids, "action_spp_dci_check_ibr_duplicates")
        self.assertEqual(action["res_model"], "spp.dci.ibr.batch.check.wizard")
        wizard_id = self.call(
            "spp.dci.ibr.batch.check.wizard",
            "create",
            [{"data_source_id": source_id}],
            context=action["context"],
        )[0]
        done = self.press("spp.dci.ibr.batch.check.wizard", [wizard_id], "action_run")
        self.assertIn("25 check(s) submitted in 3 chunk(s)", done["params"]["message"])
        self.assertIn("1 registrant(s) without identifier skipped", done["params"]["message"])
        self.run_batch_workers()
        checks = self.env[CHECK].search([("partner_id", "in", partner_ids)])
        self.assertEqual(len(checks), 25)
        self.assertEqual(set(checks.mapped("state")), {"completed"})
        by_result = {
            result: len(checks.filtered(lambda c, r=result: c.result == r))
            for result in set(checks.mapped("result"))
        }
        self.assertEqual(by_result, {"confirmed_match": 5, "no_match": 20})
        self.assertTrue(all(checks.mapped("verified")))

    def run_batch_workers(self):
        """The batch cron, or with queue_job (which installs the queue bridge) its jobs."""
        self.env.invalidate_all()
        if "queue.job" not in self.env:
            self.env[CHECK]._cron_run_queued_checks()
            return
        from odoo.addons.queue_job.job import Job  # only with queue_job

        jobs = self.env["queue.job"].search(
            [("model_name", "=", CHECK), ("state", "=", "pending")], order="id"
        )
        self.assertEqual(len(jobs), 3)
        for job in jobs:
            Job.load(self.env, job.uuid).perform()
        self.env.invalidate_all()
