# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""What a person sees: the DCI menu by role, the list colours, the smart button, Retry, the
registrant picker, the callback log (issue 10, "A person's view"), and the addon's helpers
that replaced copies (issue 13)."""

import json
from xml.etree import ElementTree

from spp_dci_ibr.callbacks import CallbackEvent
from spp_dci_ibr.exceptions import ConfigError, DCIError

from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged
from odoo.tests.common import TransactionCase
from odoo.tools.safe_eval import safe_eval

from ..models.errors import dci_user_error, dci_user_errors
from .common import DciSigner, UsersMixin, callback_header, envelope, event_from, search_message

CONFIG_MENUS = (
    "menu_spp_dci_configuration",
    "menu_spp_dci_data_source",
    "menu_spp_dci_signing_key",
    "menu_spp_dci_ibr_sender",
)


def xmlid(name):
    return f"spp_dci_client_ibr.{name}"


@tagged("post_install", "-at_install")
class TestPersonView(UsersMixin, TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_users()
        cls.partner = cls.env["res.partner"].create({"name": "Registrant without identifier"})

    def visible_menus(self, user):
        menus = self.env["ir.ui.menu"].with_user(user)
        return menus.browse(menus._visible_menu_ids())

    def menu(self, name):
        return self.env.ref(xmlid(name))

    # ------------------------------------------------------------------ menus

    def test_dci_is_a_top_level_menu(self):
        root = self.menu("menu_spp_dci_root")
        self.assertFalse(root.parent_id, "DCI must not hide under Settings > Technical")

    def test_menus_by_role(self):
        checks = self.menu("menu_spp_dci_duplication_check")
        identifiers = self.menu("menu_spp_dci_partner_identifier")
        log = self.menu("menu_spp_dci_callback_log")
        registrants = self.menu("menu_spp_dci_registrants")
        config = [self.menu(name) for name in CONFIG_MENUS]
        root = self.menu("menu_spp_dci_root")

        visible = self.visible_menus(self.viewer)
        self.assertIn(root, visible)
        self.assertIn(checks, visible)
        for menu in [identifiers, log, registrants, *config]:
            self.assertNotIn(menu, visible, menu.name)

        visible = self.visible_menus(self.officer)
        self.assertIn(checks, visible)
        self.assertIn(registrants, visible)
        for menu in [identifiers, log, *config]:
            self.assertNotIn(menu, visible, menu.name)

        visible = self.visible_menus(self.manager)
        for menu in [checks, log, *config]:
            self.assertIn(menu, visible, menu.name)
        self.assertNotIn(identifiers, visible, "identifier values are for DCI administrators")

        visible = self.visible_menus(self.dci_admin)
        for menu in [checks, identifiers, log, *config]:
            self.assertIn(menu, visible, menu.name)

        self.assertNotIn(root, self.visible_menus(self.plain_user))

    def test_every_menu_a_role_sees_opens_what_it_may_read(self):
        """A menu shown to a user must not answer with an access error."""
        for user in (self.viewer, self.officer, self.manager, self.dci_admin):
            for menu in self.visible_menus(user):
                if not menu.action or menu.action._name != "ir.actions.act_window":
                    continue
                if not menu.complete_name.startswith("DCI"):
                    continue
                model = self.env[menu.action.res_model].with_user(user)
                with self.subTest(user=user.login, menu=menu.complete_name):
                    model.search([], limit=1)

    # ------------------------------------------------------------------ lists

    def test_failed_checks_are_coloured_apart_from_possible_matches(self):
        arch = self.env["spp.dci.duplication.check"].get_view(view_type="list")["arch"]
        decorations = {
            name.removeprefix("decoration-"): expr
            for name, expr in ElementTree.fromstring(arch).attrib.items()
            if name.startswith("decoration-")
        }

        def colours(**record):
            values = {"state": "completed", "result": False, **record}
            return {name for name, expr in decorations.items() if safe_eval(expr, values)}

        failed = colours(state="failed")
        possible = colours(result="possible_match")
        self.assertIn("danger", failed)
        self.assertIn("warning", possible)
        self.assertNotEqual(failed, possible)
        self.assertNotEqual(failed, colours(result="confirmed_match"))
        self.assertNotEqual(colours(result="no_match"), failed)

    def test_the_smart_button_draws_its_count_inside_the_button(self):
        arch = self.env["res.partner"].with_user(self.viewer).get_view(view_type="form")["arch"]
        tree = ElementTree.fromstring(arch)
        button = tree.find(".//button[@name='action_spp_dci_view_checks']")
        self.assertIsNotNone(button)
        self.assertIn("oe_stat_button", button.get("class"))
        value = button.find(".//span[@class='o_stat_value']")
        self.assertIsNotNone(value, "Odoo 19 draws the value of a span.o_stat_value")
        self.assertEqual(value.find("field").get("name"), "spp_dci_check_count")

    def test_the_registrant_name_takes_the_whole_title(self):
        arch = self.env["spp.dci.duplication.check"].get_view(view_type="form")["arch"]
        field = ElementTree.fromstring(arch).find(".//div[@class='oe_title']/h1/field")
        self.assertEqual(field.get("name"), "partner_id")
        self.assertIn("w-100", field.get("class", ""))

    def test_the_smart_button_counts_with_a_fixed_number_of_queries(self):
        """No query per partner (issue 13): two grouped queries, for 2 or 20 partners."""
        checks = self.env["spp.dci.duplication.check"]
        partners = self.env["res.partner"].create([{"name": f"P{i}"} for i in range(20)])
        for index, partner in enumerate(partners):
            for result in ("no_match", "possible_match")[: 1 + index % 2]:
                check = checks.create({"partner_id": partner.id})
                check.write({"state": "completed", "result": result})
        self.env.flush_all()

        def queries(records):
            records.invalidate_recordset()
            before = self.env.cr.sql_log_count
            records.mapped("spp_dci_check_count")
            return self.env.cr.sql_log_count - before

        self.assertEqual(queries(partners[:2]), queries(partners))
        self.assertEqual(partners[0].spp_dci_check_count, 1)
        self.assertEqual(partners[0].spp_dci_last_result, "no_match")
        self.assertEqual(partners[1].spp_dci_check_count, 2)
        self.assertEqual(partners[1].spp_dci_last_result, "possible_match")
        self.assertFalse(self.partner.spp_dci_last_result)

    # ------------------------------------------------------------------ retry

    def failed_for_lack_of_identifier(self):
        check = self.env["spp.dci.duplication.check"].create({"partner_id": self.partner.id})
        check.sudo()._spp_no_identifier()
        return check

    def test_retry_is_hidden_while_the_registrant_has_no_identifier(self):
        check = self.failed_for_lack_of_identifier()
        self.assertEqual(check.failure_kind, "no_identifier")
        self.assertIn("Add one", check.error_message)
        self.assertFalse(check.with_user(self.officer).can_retry)
        with self.assertRaisesRegex(UserError, "no identifier to check"):
            check.with_user(self.officer).action_retry()
        self.assertEqual(check.state, "failed", "it did not run again")

        self.partner.spp_dci_identifier_ids = [(0, 0, {"id_type": "UIN", "value": "UIN-1"})]
        check.invalidate_recordset(["can_retry"])
        self.assertTrue(check.with_user(self.officer).can_retry)

    def test_retry_stays_for_other_failures(self):
        check = self.env["spp.dci.duplication.check"].create({"partner_id": self.partner.id})
        check._spp_fail("The registry timed out")
        self.assertTrue(check.can_retry)

    def test_the_form_hides_retry_by_can_retry(self):
        arch = self.env["spp.dci.duplication.check"].get_view(view_type="form")["arch"]
        button = ElementTree.fromstring(arch).find(".//button[@name='action_retry']")
        self.assertIn("can_retry", button.get("invisible"))

    # ---------------------------------------------------- endpoint user's contact

    def test_the_endpoint_user_is_not_offered_as_a_registrant(self):
        endpoint_partner = self.callback_user.partner_id
        self.assertFalse(endpoint_partner.active)
        self.assertTrue(self.callback_user.active, "the user still runs the endpoint")
        found = self.env["res.partner"].with_user(self.officer).name_search("DCI IBR Callback")
        self.assertNotIn(endpoint_partner.id, [partner_id for partner_id, _name in found])

    # ------------------------------------------------------------- callback log

    def logged_callback(self):
        signer = DciSigner("registry.pretty")
        header = callback_header(signer.sender_id)
        message = search_message("txn-pretty", "ref-pretty")
        event = event_from(envelope(signer, header, message))
        return self.env["spp.dci.callback.log"].sudo()._spp_ingest(event), header, message

    def test_the_callback_log_shows_header_and_message_indented(self):
        log, header, message = self.logged_callback()
        as_manager = log.with_user(self.manager)
        self.assertIn('\n  "action": "on-search"', as_manager.header_pretty)
        self.assertEqual(json.loads(as_manager.header_pretty), header)
        as_admin = log.with_user(self.dci_admin)
        self.assertIn('\n  "search_response": [', as_admin.message_pretty)
        self.assertEqual(json.loads(as_admin.message_pretty), message)
        # The message holds personal data: not for managers.
        with self.assertRaises(AccessError):
            as_manager.message_pretty  # noqa: B018

    def test_the_form_shows_them_in_a_code_widget(self):
        arch = self.env["spp.dci.callback.log"].get_view(view_type="form")["arch"]
        tree = ElementTree.fromstring(arch)
        for name in ("header_pretty", "message_pretty"):
            field = tree.find(f".//field[@name='{name}']")
            self.assertIsNotNone(field, name)
            self.assertEqual(field.get("widget"), "code")

    def test_a_stored_callback_is_replayed_as_a_real_callback_event(self):
        log, header, message = self.logged_callback()
        event = log._spp_as_event()
        self.assertIsInstance(event, CallbackEvent)
        self.assertEqual(event.header, header)
        self.assertEqual(event.message, message)
        self.assertEqual(event.reference_ids, ("ref-pretty",))
        self.assertIsInstance(event.received_at, int)

    # ------------------------------------------------------------- DCIError helper

    def test_one_helper_turns_dci_errors_into_user_errors(self):
        error = dci_user_error(self.env, ConfigError("bad key"), "The key could not be read")
        self.assertIsInstance(error, UserError)
        self.assertEqual(str(error), "The key could not be read: bad key")
        with self.assertRaises(UserError) as caught, dci_user_errors(self.env, "Fetching failed"):
            raise ConfigError("no JWKS")
        self.assertIsInstance(caught.exception.__cause__, DCIError)
        self.assertEqual(str(caught.exception), "Fetching failed: no JWKS")
        with self.assertRaises(ValueError), dci_user_errors(self.env, "x"):
            raise ValueError("not a DCIError: left alone")
