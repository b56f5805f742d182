# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Every verified callback, kept raw for audit, and the sink that files it."""

import calendar
import json
import logging
from datetime import timedelta

from psycopg2.extensions import TransactionRollbackError
from spp_dci_ibr.callbacks import CallbackEvent, CallbackRejected

from odoo import api, fields, models

from .spp_dci_duplication_check import PII_GROUPS

_logger = logging.getLogger(__name__)

RECONCILE_WINDOW = timedelta(days=2)


def _pretty(value):
    """JSON indented for reading (keys sorted, non-ASCII kept)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=2)


def _pretty_text(text):
    """Stored JSON text, indented; text that is not JSON is shown as it is."""
    if not text:
        return False
    try:
        return _pretty(json.loads(text))
    except ValueError:
        return text


class SppDciCallbackLog(models.Model):
    _name = "spp.dci.callback.log"
    _description = "DCI Callback Log"
    _order = "received_at desc, id desc"
    _rec_name = "message_id"

    received_at = fields.Datetime(required=True, readonly=True, default=fields.Datetime.now)
    action = fields.Char(readonly=True, index=True)
    sender_id = fields.Char(string="Sender ID", readonly=True, index=True)
    message_id = fields.Char(readonly=True, index=True)
    kid = fields.Char(string="Key ID (kid)", readonly=True)
    transaction_id = fields.Char(readonly=True, index=True)
    correlation_id = fields.Char(readonly=True, index=True)
    reference_ids = fields.Text(readonly=True)
    state = fields.Selection(
        [
            ("matched", "Matched"),
            ("unmatched", "Unmatched"),
            ("late", "Late"),
            ("received", "Received"),
        ],
        required=True,
        readonly=True,
        index=True,
        help="Matched: applied to its check. Unmatched: no check of this registry waits for "
        "it (kept for audit, reconciled by the maintenance cron). Late: its check already "
        "had a final result. Received: not a search answer.",
    )
    check_id = fields.Many2one(
        "spp.dci.duplication.check", readonly=True, ondelete="set null", index=True
    )
    raw_body = fields.Text(groups=PII_GROUPS, readonly=True)
    header_json = fields.Text(string="Header", readonly=True)
    header_pretty = fields.Text(string="Header (formatted)", compute="_compute_header_pretty")
    message_pretty = fields.Text(
        string="Message (formatted)", compute="_compute_message_pretty", groups=PII_GROUPS
    )
    note = fields.Text(readonly=True)

    @api.depends("header_json")
    def _compute_header_pretty(self):
        for log in self:
            log.header_pretty = _pretty_text(log.header_json)

    @api.depends("raw_body")
    def _compute_message_pretty(self):
        """The message has personal data: the field is readable by the raw body's readers only."""
        for log in self:
            try:
                body = json.loads(log.sudo().raw_body or "null")
            except ValueError:
                body = None
            message = body.get("message") if isinstance(body, dict) else None
            log.message_pretty = _pretty(message) if message is not None else False

    # ------------------------------------------------------------------- sink

    @api.model
    def _spp_sink(self, event):
        """Sink of the callback router, after signature and replay checks.

        Runs in a savepoint: when filing fails (or is refused), nothing half-written
        stays and the replay entry is dropped, so the registry's redelivery is accepted.
        """
        try:
            with self.env.cr.savepoint():
                return self._spp_ingest(event)
        except Exception:
            self.env["spp.dci.callback.replay"].forget(event.sender_id, event.message_id)
            raise

    @api.model
    def _spp_ingest(self, event):
        raw = event.raw_body
        vals = {
            "received_at": fields.Datetime.now(),
            "action": event.action,
            "sender_id": event.sender_id,
            "message_id": event.message_id,
            "kid": event.kid or False,
            "transaction_id": event.transaction_id or False,
            "correlation_id": event.correlation_id or False,
            "reference_ids": "\n".join(str(ref) for ref in event.reference_ids or []) or False,
            "raw_body": raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw),
            "header_json": _pretty(event.header),
        }
        if event.action != "on-search":
            return self.create(dict(vals, state="received"))
        check = self._spp_find_check(event)
        if not check:
            _logger.info(
                "Callback %s from %s matches no check; kept", event.message_id, event.sender_id
            )
            return self.create(dict(vals, state="unmatched"))
        try:
            with self.env.cr.savepoint():
                state = check._spp_apply_callback(event)
        except TransactionRollbackError:
            # Another worker (the timeout cron, another callback) changed this check after
            # our transaction began. Keep the callback and let the maintenance cron file it
            # in a fresh transaction: acknowledged, never lost, never half-applied.
            _logger.info("Check %s busy; callback %s deferred", check.id, event.message_id)
            self.env.ref("spp_dci_client_ibr.ir_cron_spp_dci_ibr_maintenance").sudo()._trigger()
            return self.create(
                dict(
                    vals,
                    state="unmatched",
                    note=self.env._("Deferred: the check was being updated concurrently."),
                )
            )
        return self.create(dict(vals, state=state, check_id=check.id))

    @api.model
    def _spp_find_check(self, event):
        """The check this callback answers: by transaction_id, then correlation_id, then
        reference_id — only among checks sent to the callback's sender (PROTOCOL §8).

        transaction_id is ours and unique: a callback naming a transaction sent to
        another registry is refused, not filed.
        """
        checks = self.env["spp.dci.duplication.check"]
        sender = event.sender_id
        if event.transaction_id:
            found = checks.search([("transaction_id", "=", event.transaction_id)])
            if found:
                own = found.filtered(lambda check: check.expected_sender_id == sender)
                if not own:
                    raise CallbackRejected(
                        401,
                        "err.sender_id.invalid",
                        "The sender is not the registry of this transaction.",
                    )
                return own[:1]
        if event.correlation_id:
            found = checks.search(
                [
                    ("expected_sender_id", "=", sender),
                    "|",
                    ("correlation_id", "=", event.correlation_id),
                    ("detail_ids.correlation_id", "=", event.correlation_id),
                ],
                limit=1,
            )
            if found:
                return found
        references = [str(ref) for ref in event.reference_ids or [] if ref]
        if references:
            found = checks.search(
                [
                    ("expected_sender_id", "=", sender),
                    ("detail_ids.reference_id", "in", references),
                ],
                limit=1,
            )
            if found:
                return found
        return checks

    # -------------------------------------------------------------- reconcile

    @api.model
    def _spp_reconcile_unmatched(self):
        """File on-search callbacks that arrived before their check was committed."""
        logs = self.search(
            [
                ("state", "=", "unmatched"),
                ("action", "=", "on-search"),
                ("received_at", ">=", fields.Datetime.now() - RECONCILE_WINDOW),
            ],
            order="id",
        )
        reconciled = self.browse()
        for log in logs:
            event = log._spp_as_event()
            try:
                with self.env.cr.savepoint():
                    check = self._spp_find_check(event)
                    if not check:
                        continue
                    state = check._spp_apply_callback(event)
                    log.write(
                        {
                            "check_id": check.id,
                            "state": state,
                            "note": self.env._("Filed by the maintenance cron."),
                        }
                    )
                    reconciled |= log
            except CallbackRejected as exc:
                _logger.warning("Callback log %s cannot be filed: %s", log.id, exc)
            except TransactionRollbackError:
                _logger.info("Callback log %s: check busy, filed on the next run", log.id)
        return reconciled

    def _spp_as_event(self):
        """The stored callback as the router's ``CallbackEvent`` (it was verified when it
        arrived; only verified callbacks are logged)."""
        self.ensure_one()
        try:
            body = json.loads(self.raw_body or "{}")
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        header = body.get("header") if isinstance(body.get("header"), dict) else {}
        message = body.get("message") if isinstance(body.get("message"), dict) else {}
        return CallbackEvent(
            action=self.action or "",
            sender_id=self.sender_id or "",
            message_id=self.message_id or "",
            kid=self.kid or "",
            header=header,
            message=message,
            raw_body=(self.raw_body or "").encode(),
            transaction_id=self.transaction_id or None,
            correlation_id=self.correlation_id or None,
            reference_ids=tuple(self.reference_ids.split("\n")) if self.reference_ids else (),
            received_at=calendar.timegm(self.received_at.timetuple()) if self.received_at else 0,
        )
