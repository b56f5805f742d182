# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Duplication checks of registrants against an IBR.

Classification and the fail-closed rules are the native ``DuplicationResult``'s
(PROTOCOL §7); this model only stores what the native service decided.
"""

import json
import logging
import uuid

from psycopg2.extensions import TransactionRollbackError
from spp_dci_ibr import IBRService
from spp_dci_ibr.exceptions import DCIError, UndecidedError

from odoo import api, fields, models
from odoo.exceptions import UserError

from ..hooks import outdated_schema_message
from .notification import notification
from .spp_dci_data_source import data_source_model, ibr_source_domain

_logger = logging.getLogger(__name__)

# Fields holding personal data: identifier values, matched programmes, raw answers.
# The callback runner needs them to store what the registry sent.
PII_GROUPS = "spp_dci_client_ibr.group_dci_admin,spp_dci_client_ibr.group_dci_callback"
RESULTS = [
    ("no_match", "No Match"),
    ("possible_match", "Possible Match"),
    ("confirmed_match", "Confirmed Match"),
]
RESULT_VALUES = frozenset(value for value, _label in RESULTS)
OUTCOME_STATUSES = [
    ("pending", "Pending"),
    ("records", "Records Found"),
    ("no_records", "No Records"),
    ("failed", "Failed"),
]
DEFAULT_CHUNK_SIZE = 500
CHUNK_SIZE_PARAM = "spp_dci_client_ibr.batch_chunk_size"

# Fails checks stuck in "checking" past their data source's callback timeout (the data
# source table is the one of the checks' data-source model, see data_source_model). The
# guarded UPDATE (state is still 'checking', rows locked by an in-flight callback are
# skipped) cannot overwrite a result a callback has written.
FAIL_STUCK_CHECKS_SQL = """
    UPDATE spp_dci_duplication_check AS chk
       SET state = 'failed',
           failure_kind = 'timeout',
           error_message = %(message)s,
           result = NULL,
           is_duplicate = FALSE,
           queued = FALSE,
           completed_at = %(now)s,
           write_uid = %(uid)s,
           write_date = %(now)s
     WHERE chk.id IN (
            SELECT c.id
              FROM spp_dci_duplication_check c
              LEFT JOIN {data_source_table} ds ON ds.id = c.data_source_id
             WHERE c.state = 'checking'
               AND c.sent_at < %(now)s
                   - make_interval(mins => COALESCE(ds.async_timeout_minutes, 60))
             FOR UPDATE OF c SKIP LOCKED)
       AND chk.state = 'checking'
 RETURNING chk.id
"""
FAIL_STUCK_LINES_SQL = """
    UPDATE spp_dci_duplication_check_detail
       SET status = 'failed', reason = %(message)s, write_uid = %(uid)s, write_date = %(now)s
     WHERE check_id = ANY(%(ids)s) AND status = 'pending'
"""
LOCK_CHECK_SQL = "SELECT state FROM spp_dci_duplication_check WHERE id = %s FOR UPDATE"
# Tries to store an ACK while a callback files the same check.
STORE_ACK_ATTEMPTS = 5


def _dump(value):
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


class SppDciDuplicationCheck(models.Model):
    _name = "spp.dci.duplication.check"
    _description = "DCI Duplication Check"
    _order = "check_date desc, id desc"

    partner_id = fields.Many2one(
        "res.partner", string="Registrant", required=True, ondelete="cascade", index=True
    )
    identifier_type = fields.Char(help="Identifier type, e.g. UIN, BRN, MRN, DRN")
    identifier_value = fields.Char(groups=PII_GROUPS)
    check_date = fields.Datetime(required=True, default=fields.Datetime.now, readonly=True)
    result = fields.Selection(RESULTS, readonly=True, copy=False, help="Empty until the check ran")
    is_duplicate = fields.Boolean(readonly=True, copy=False)
    verified = fields.Boolean(
        readonly=True,
        copy=False,
        help="Every registry answer this result was read from was verified against the "
        "registry's keys. False when the data source accepted unverified answers.",
    )
    matched_programs = fields.Text(groups=PII_GROUPS, readonly=True, copy=False)
    raw_response = fields.Text(groups=PII_GROUPS, readonly=True, copy=False)
    state = fields.Selection(
        [
            ("ready", "Ready"),
            ("checking", "Checking"),
            ("completed", "Completed"),
            ("failed", "Failed"),
        ],
        default="ready",
        required=True,
        readonly=True,
        copy=False,
        index=True,
    )
    mode = fields.Selection(
        [("sync", "Synchronous"), ("async", "Asynchronous"), ("batch", "Batch")],
        readonly=True,
        copy=False,
    )
    # OpenSPP's bridge redefines the comodel as spp.dci.data.source; code asks the field.
    data_source_id = fields.Many2one("spp.dci.ibr.data.source", domain=ibr_source_domain)
    expected_sender_id = fields.Char(
        string="Registry Sender ID",
        readonly=True,
        copy=False,
        help="Only callbacks signed by this sender may complete the check",
    )
    transaction_id = fields.Char(readonly=True, copy=False, index=True)
    correlation_id = fields.Char(readonly=True, copy=False, index=True)
    sent_at = fields.Datetime(readonly=True, copy=False)
    completed_at = fields.Datetime(readonly=True, copy=False)
    queued = fields.Boolean(readonly=True, copy=False, help="Waiting for a batch worker")
    failure_kind = fields.Selection(
        [
            ("error", "Error"),
            ("timeout", "Callback Timeout"),
            ("no_identifier", "No Identifier"),
            ("undecided", "Undecided Answer"),
        ],
        readonly=True,
        copy=False,
    )
    error_message = fields.Text(readonly=True, copy=False)
    notes = fields.Text()
    can_retry = fields.Boolean(
        compute="_compute_can_retry",
        help="A failed check may run again: not when it failed for lack of an identifier "
        "and the registrant still has none (it could only fail again).",
    )
    detail_ids = fields.One2many(
        "spp.dci.duplication.check.detail", "check_id", string="Identifiers", readonly=True
    )
    callback_log_ids = fields.One2many(
        "spp.dci.callback.log", "check_id", string="Callbacks", readonly=True
    )

    @api.depends("partner_id", "identifier_type", "check_date")
    def _compute_display_name(self):
        for check in self:
            parts = [check.partner_id.display_name or ""]
            if check.identifier_type:
                parts.append(check.identifier_type)
            if check.check_date:
                parts.append(fields.Datetime.to_string(check.check_date)[:16])
            check.display_name = " - ".join(part for part in parts if part)

    def _register_hook(self):
        res = super()._register_hook()
        message = outdated_schema_message(self.env.cr)
        if message:
            _logger.critical(message)
        return res

    @api.depends("state", "failure_kind", "partner_id")
    def _compute_can_retry(self):
        for check in self:
            check.can_retry = check.state == "failed" and (
                check.failure_kind != "no_identifier" or check._spp_has_identifier()
            )

    # ------------------------------------------------------------------ helpers

    def _spp_has_identifier(self):
        """The registrant (or the check itself) has an identifier to send. Read with sudo:
        values are personal data; whether one exists is not."""
        self.ensure_one()
        check = self.sudo()
        return bool(
            check.partner_id._spp_dci_ibr_partner_pairs()
            or (check.identifier_type and check.identifier_value)
        )

    def _spp_data_source(self):
        self.ensure_one()
        source = self.data_source_id or data_source_model(self.env)._spp_default_ibr_source()
        if not source:
            raise UserError(
                self.env._("No active IBR data source is configured. Configure one first.")
            )
        if not self.data_source_id:
            self.data_source_id = source
        return source

    def _spp_identifiers(self, own_pairs=None):
        """(type, value) pairs: the registrant's own (``own_pairs`` when the caller read
        them for many registrants at once), else the check's."""
        self.ensure_one()
        pairs = self.partner_id._spp_dci_ibr_partner_pairs() if own_pairs is None else own_pairs
        if not pairs and self.identifier_type and self.identifier_value:
            pairs = [(self.identifier_type.strip(), self.identifier_value.strip())]
        if pairs and not self.identifier_type:
            self.write({"identifier_type": pairs[0][0], "identifier_value": pairs[0][1]})
        return pairs

    def _spp_fail(self, message, kind="error"):
        self.write(self._spp_failure_vals(message, kind))

    @api.model
    def _spp_failure_vals(self, message, kind="error"):
        return {
            "state": "failed",
            "result": False,
            "is_duplicate": False,
            "error_message": message,
            "failure_kind": kind,
            "completed_at": fields.Datetime.now(),
            "queued": False,
        }

    def _spp_fail_on(self, exc):
        self.write(self._spp_error_vals(exc))

    @api.model
    def _spp_error_vals(self, exc):
        """Failure values for a ``DCIError`` or ``UserError``: an answer the core could not
        decide (``UndecidedError``) is said so, and is never a "no match"."""
        return self._spp_failure_vals(
            str(exc), kind="undecided" if isinstance(exc, UndecidedError) else "error"
        )

    def _spp_no_identifier(self):
        self._spp_fail(
            self.env._(
                "The registrant has no identifier to check. Add one on the contact's IBR "
                "Identifiers tab (a DCI administrator can), then retry."
            ),
            kind="no_identifier",
        )

    def _spp_reset(self):
        self.detail_ids.unlink()
        self.write(
            {
                "state": "ready",
                "result": False,
                "is_duplicate": False,
                "verified": False,
                "matched_programs": False,
                "raw_response": False,
                "error_message": False,
                "failure_kind": False,
                "transaction_id": False,
                "correlation_id": False,
                "expected_sender_id": False,
                "sent_at": False,
                "completed_at": False,
                "queued": False,
            }
        )

    def _spp_apply_result(self, result, pairs=None, rebuild_lines=False, new_lines=None):
        """Store a native ``DuplicationResult``; ``result`` stays empty when it failed.

        ``rebuild_lines``: replace the identifier lines by one per outcome. With ``new_lines``
        (a list), the caller has removed the old lines and creates the new ones, appended
        here, in one go for many checks (a batch)."""
        self.ensure_one()
        outcomes = list(result.outcomes)
        vals = self._spp_result_vals(result)
        completed = vals["state"] == "completed"
        if rebuild_lines:
            line_vals = [
                dict(line, check_id=self.id)
                for line in self._spp_line_vals(outcomes, pairs or [], final=not completed)
            ]
            if new_lines is not None:
                new_lines.extend(line_vals)
            else:
                self.detail_ids.unlink()
                self.env["spp.dci.duplication.check.detail"].create(line_vals)
        else:
            self._spp_update_lines(outcomes)
        if not completed and not rebuild_lines:
            # A failed result is final: nothing will answer its pending identifiers.
            for line in self.detail_ids.filtered(lambda line: line.status == "pending"):
                line.write(
                    {
                        "status": "failed",
                        "reason": line.reason
                        or self.env._("The registry did not decide this identifier."),
                    }
                )
        if self.transaction_id:
            vals.pop("transaction_id", None)
        self.write(vals)

    @api.model
    def _spp_result_vals(self, result):
        """The check's values for a native ``DuplicationResult``: only a completed result of
        a known class is one; anything else fails the check."""
        completed = result.state == "completed" and result.result in RESULT_VALUES
        reasons = [reason for reason in (result.reasons or []) if reason]
        if completed:
            state_vals = {
                "state": "completed",
                "result": result.result,
                "is_duplicate": bool(result.is_duplicate),
                "error_message": False,
                "failure_kind": False,
            }
        else:
            state_vals = {
                "state": "failed",
                "result": False,
                "is_duplicate": False,
                "error_message": "\n".join(reasons)
                or self.env._("The registry answer could not be classified."),
                "failure_kind": "error",
            }
        vals = dict(
            state_vals,
            matched_programs="\n".join(result.matched_programs or []) or False,
            raw_response=_dump(result.raw_responses or []),
            verified=bool(result.verified),
            completed_at=fields.Datetime.now(),
            queued=False,
        )
        if result.transaction_id:
            vals["transaction_id"] = result.transaction_id
        return vals

    @api.model
    def _spp_line_vals(self, outcomes, pairs, final):
        """Values (without ``check_id``) of the identifier lines of a check, one per outcome
        (or identifier); a ``final`` result leaves no line pending."""
        line_vals = []
        for index in range(max(len(pairs), len(outcomes))):
            outcome = outcomes[index] if index < len(outcomes) else None
            id_type, id_value = pairs[index] if index < len(pairs) else (None, None)
            vals = {
                "sequence": index,
                "id_type": getattr(outcome, "id_type", None) or id_type,
                "id_value": getattr(outcome, "id_value", None) or id_value,
            }
            vals.update(self._spp_outcome_vals(outcome))
            if final and vals["status"] == "pending":
                vals["status"] = "failed"
                vals["reason"] = vals["reason"] or self.env._(
                    "The registry did not decide this identifier."
                )
            line_vals.append(vals)
        return line_vals

    def _spp_update_lines(self, outcomes):
        """Write each outcome on its identifier line: by reference_id, else by position."""
        lines = self.detail_ids.sorted("sequence")
        by_reference = {line.reference_id: line for line in lines if line.reference_id}
        for index, outcome in enumerate(outcomes):
            line = by_reference.get(getattr(outcome, "reference_id", None))
            if not line and index < len(lines):
                line = lines[index]
            if line:
                line.write(self._spp_outcome_vals(outcome))

    @api.model
    def _spp_outcome_vals(self, outcome):
        if outcome is None:
            return {
                "status": "failed",
                "reason": self.env._("No answer for this identifier."),
                "record_count": 0,
            }
        status = outcome.status if outcome.status in dict(OUTCOME_STATUSES) else "failed"
        return {
            "status": status,
            "reason": outcome.reason or False,
            "record_count": outcome.record_count or 0,
        }

    @api.model
    def _spp_chunk_size(self):
        value = self.env["ir.config_parameter"].sudo().get_param(CHUNK_SIZE_PARAM)
        try:
            size = int(value or DEFAULT_CHUNK_SIZE)
        except ValueError:
            size = DEFAULT_CHUNK_SIZE
        return max(size, 1)

    # ------------------------------------------------------------- synchronous

    def action_run_check(self):
        """Run the checks now, synchronously (PII is read and written with sudo after
        checking that the user may write these checks)."""
        self.check_access("write")
        for check in self.sudo():
            if check.state != "ready":
                _logger.info("Check %s is %s; not run again", check.id, check.state)
                continue
            check._spp_run_sync()
        return True

    def _spp_run_sync(self):
        self.ensure_one()
        source = self._spp_data_source()
        service = source._spp_ibr_service()
        pairs = self._spp_identifiers()
        if not pairs:
            self._spp_no_identifier()
            return
        now = fields.Datetime.now()
        self.write({"mode": "sync", "check_date": now, "sent_at": now})
        try:
            result = service.check_duplication(pairs)
        except DCIError as exc:
            self._spp_fail_on(exc)
            return
        self._spp_apply_result(result, pairs, rebuild_lines=True)

    # ------------------------------------------------------------ asynchronous

    def action_run_check_async(self):
        """Send the checks asynchronously: they stay ``checking`` until the registry's
        signed on-search callback completes them (or the timeout cron fails them).

        The checks are prepared in this transaction and sent only once it is committed,
        so that a registry answering at once finds them in the database."""
        self.check_access("write")
        prepared = self.sudo().browse()
        for check in self.sudo():
            if check.state == "ready" and check._spp_prepare_async():
                prepared |= check
        if prepared:
            prepared._spp_send_after_commit()
        return True

    def _spp_prepare_async(self):
        """Mark the check ``checking`` under a new transaction id with a pending line per
        identifier; False when it failed for lack of an identifier."""
        self.ensure_one()
        source = self._spp_data_source()
        if not source.our_callback_uri:
            raise UserError(
                self.env._(
                    "Data source %(name)s has no callback URI for asynchronous checks.",
                    name=source.name,
                )
            )
        if not source.registry_sender_id:
            raise UserError(
                self.env._(
                    "Data source %(name)s has no registry sender: its callbacks could not "
                    "be verified.",
                    name=source.name,
                )
            )
        source._spp_dci_client()  # a misconfiguration is reported now, not after the commit
        pairs = self._spp_identifiers()
        if not pairs:
            self._spp_no_identifier()
            return False
        now = fields.Datetime.now()
        self.detail_ids.unlink()
        self.env["spp.dci.duplication.check.detail"].create(
            [
                {
                    "check_id": self.id,
                    "sequence": index,
                    "id_type": id_type,
                    "id_value": id_value,
                    "status": "pending",
                }
                for index, (id_type, id_value) in enumerate(pairs)
            ]
        )
        self.write(
            {
                "mode": "async",
                "state": "checking",
                "transaction_id": str(uuid.uuid4()),
                "correlation_id": False,
                "expected_sender_id": source.registry_sender_id.sender_id,
                "check_date": now,
                "sent_at": now,
                "completed_at": False,
                "result": False,
                "error_message": False,
                "failure_kind": False,
            }
        )
        return True

    def _spp_send_after_commit(self):
        """Once the current transaction is committed, send each of these prepared checks
        (one envelope per check, one item per identifier), each on its own cursors: read,
        send with no transaction open, then store the ACK."""
        registry, uid, context = self.env.registry, self.env.uid, dict(self.env.context)
        check_ids = self.ids

        def env_on(cr):
            return api.Environment(cr, uid, context, su=True)[self._name]

        @self.env.cr.postcommit.add
        def send_prepared_checks():
            for check_id in check_ids:
                try:
                    with registry.cursor() as cr:
                        request = env_on(cr).browse(check_id)._spp_async_request()
                    if request is None:
                        continue
                    client, transaction_id, queries = request
                    try:
                        ack = client.search_async_batch(queries, transaction_id=transaction_id)
                    except DCIError as exc:
                        ack = exc
                    for attempt in range(1, STORE_ACK_ATTEMPTS + 1):
                        try:
                            with registry.cursor() as cr:
                                env_on(cr).browse(check_id)._spp_store_ack(ack)
                            break
                        except TransactionRollbackError:
                            # A callback was filing this check at the same moment.
                            _logger.info("Check %s busy, ACK stored again (%s)", check_id, attempt)
                    else:
                        _logger.warning("The ACK of check %s could not be stored", check_id)
                except Exception:
                    # After the commit nobody can be told: log it; the timeout cron fails
                    # a check that stays "checking".
                    _logger.exception("Asynchronous check %s could not be sent", check_id)

    def _spp_async_request(self):
        """(client, transaction id, queries) of a prepared check not sent yet, else None."""
        self.ensure_one()
        lines = self.detail_ids.sorted("sequence")
        if self.state != "checking" or not lines or any(lines.mapped("reference_id")):
            return None
        queries = [
            ("idtype-value", {"type": line.id_type, "value": line.id_value}) for line in lines
        ]
        return self._spp_data_source()._spp_dci_client(), self.transaction_id, queries

    def _spp_store_ack(self, ack):
        """Store the registry's ACK (reference ids on the lines, in order), or fail the check
        closed when the request was not acknowledged (``ack`` is then the ``DCIError``)."""
        self.ensure_one()
        state = self._spp_lock()
        if isinstance(ack, DCIError):
            if state == "checking":
                self._spp_fail_on(ack)
            return
        if ack.get("ack_status") != "ACK":
            if state == "checking":
                self._spp_fail(
                    self.env._(
                        "The registry did not acknowledge the request (%(status)s).",
                        status=ack.get("ack_status") or "-",
                    )
                )
            return
        correlation_id = ack.get("correlation_id") or False
        lines = self.detail_ids.sorted("sequence")
        for line, reference_id in zip(lines, ack.get("reference_ids") or [], strict=False):
            if not line.reference_id:
                line.write({"reference_id": reference_id, "correlation_id": correlation_id})
        if not self.correlation_id:
            self.correlation_id = correlation_id

    def _spp_lock(self):
        """Lock the check's row (callbacks, the ACK and the timeout cron each lock it before
        writing) and return its state. A concurrent change raises TransactionRollbackError;
        the callers handle it, so PostgreSQL's error is not logged as one."""
        self.ensure_one()
        self.flush_recordset()
        self.env.cr.execute(LOCK_CHECK_SQL, (self.id,), log_exceptions=False)
        (state,) = self.env.cr.fetchone()
        self.invalidate_recordset()
        self.detail_ids.invalidate_recordset()
        return state

    def _spp_accepts_callback(self):
        """A callback completes a check waiting for it, or one failed only by the timeout
        (the answer arrived late but is verified: it is the better information)."""
        self.ensure_one()
        return self.state == "checking" or (
            self.state == "failed" and self.failure_kind == "timeout"
        )

    def _spp_apply_callback(self, event):
        """Apply a verified on-search callback; returns the callback log state."""
        self.ensure_one()
        self._spp_lock()
        if not self._spp_accepts_callback():
            return "late"
        message = event.message if isinstance(event.message, dict) else {}
        items = [item for item in message.get("search_response") or [] if isinstance(item, dict)]
        lines = self.detail_ids.sorted("sequence")
        merged = message
        if lines and items:
            if not self._spp_store_items(lines, items):
                return "unmatched"
            if any(not line.response_json for line in lines):
                return "matched"  # more callbacks are due for this transaction
            merged = dict(message)
            merged["search_response"] = [json.loads(line.response_json) for line in lines]
        references = [line.reference_id for line in lines]
        result = IBRService.parse_callback(
            merged,
            reference_ids=references if lines and all(references) else None,
            identifiers=[(line.id_type, line.id_value) for line in lines] or None,
            # Only callbacks the router verified are filed (live, or kept in the log).
            verified=True,
        )
        if any(outcome.status == "pending" for outcome in result.outcomes):
            self._spp_update_lines(result.outcomes)
            return "matched"
        self._spp_apply_result(result)
        if event.correlation_id and not self.correlation_id:
            self.correlation_id = event.correlation_id
        return "matched"

    @api.model
    def _spp_store_items(self, lines, items):
        """Store each answered item on its identifier line: by reference_id, or by
        position only when no reference_id can be compared and the counts match (PROTOCOL §6)."""
        stored = False
        by_reference = {line.reference_id: line for line in lines if line.reference_id}
        if by_reference and any(item.get("reference_id") for item in items):
            for item in items:
                line = by_reference.get(item.get("reference_id"))
                if line:
                    line.response_json = _dump(item)
                    stored = True
            return stored
        pending = lines.filtered(lambda line: not line.response_json)
        if len(pending) != len(items):
            return False
        for line, item in zip(pending, items, strict=True):
            line.response_json = _dump(item)
        return True

    # ------------------------------------------------------------------ retries

    def action_retry(self):
        """Run failed checks again, the way they were first run. A check that failed for
        lack of an identifier is not run again while its registrant still has none: the
        user is told to add one first (an error when no check could run, else a warning
        next to the ones that ran)."""
        self.check_access("write")
        failed = self.filtered(lambda check: check.state == "failed")
        hopeless = failed.filtered(lambda check: not check.can_retry)
        if hopeless:
            message = self.env._(
                "%(names)s: no identifier to check. Add one on the contact's IBR Identifiers "
                "tab (a DCI administrator can), then retry.",
                names=", ".join(hopeless.mapped("partner_id.display_name")),
            )
            if hopeless == failed:
                raise UserError(message)
            failed -= hopeless
        async_checks = failed.filtered(lambda check: check.mode == "async")
        failed.sudo()._spp_reset()
        async_checks.action_run_check_async()
        (failed - async_checks).action_run_check()
        return notification(message, "warning") if hopeless else True

    def action_reset_to_draft(self):
        """OpenSPP-compatible: put failed checks back to ready."""
        self.check_access("write")
        self.filtered(lambda check: check.state == "failed").sudo()._spp_reset()
        return True

    # ------------------------------------------------------------------- batches

    def action_run_batch(self):
        """Run many checks through the native batch (``check_many``), in chunks."""
        self.check_access("write")
        checks = self.filtered(lambda check: check.state in ("ready", "failed"))
        checks.filtered(lambda check: check.state == "failed").sudo()._spp_reset()
        return checks._spp_dispatch_batch()

    def _spp_dispatch_batch(self):
        ids = self.ids
        chunks = self._spp_chunks(ids)
        self.write({"queued": True, "mode": "batch"})
        if chunks:
            self._spp_dispatch_chunks(chunks)
        return self._spp_batch_submitted(len(ids), len(chunks))

    @api.model
    def _spp_chunks(self, items):
        size = self._spp_chunk_size()
        return [items[start : start + size] for start in range(0, len(items), size)]

    @api.model
    def _spp_batch_submitted(self, count, chunks):
        return notification(
            self.env._(
                "%(count)s check(s) submitted in %(chunks)s chunk(s).", count=count, chunks=chunks
            )
        )

    @api.model
    def _spp_registrants(self, partners):
        """(partner id, identifier pairs) of the registrants among ``partners`` that have an
        identifier."""
        pairs_by_partner = partners._spp_dci_ibr_pairs_by_partner(fallback=True)
        return [(partner_id, pairs) for partner_id, pairs in pairs_by_partner.items() if pairs]

    @api.model
    def _spp_new_vals(self, source, partner_id, pairs):
        return {
            "partner_id": partner_id,
            "data_source_id": source.id,
            "identifier_type": pairs[0][0],
            "identifier_value": pairs[0][1],
            "mode": "batch",
        }

    @api.model
    def _spp_create_for_partners(self, source, partners):
        """New queued batch checks on ``source`` for the registrants among ``partners`` that
        have an identifier (the first is the check's). Identifier values are personal data
        the user may trigger a check on but not read: created with sudo after checking the
        user may create checks (the creator stays the user), in one batch."""
        self.check_access("create")
        vals_list = [
            dict(self._spp_new_vals(source, partner_id, pairs), queued=True)
            for partner_id, pairs in self._spp_registrants(partners)
        ]
        return self.sudo().create(vals_list).with_env(self.env)

    @api.model
    def _spp_submit_batch(self, checks, source, partners):
        """Submit ``checks`` and new checks on ``source`` for ``partners`` as one batch.
        ``spp_dci_client_ibr_queue`` overrides this: there each chunk's job checks its own
        registrants, so the user's request does not wait for thousands of creations."""
        return (checks | self._spp_create_for_partners(source, partners))._spp_dispatch_batch()

    @api.model
    def _spp_check_partners(self, source, partners):
        """Check one chunk of new registrants (a queue job's work): ask the registry first,
        then create every check with its result, and the lines of all, in one batch each
        (sudo, as in ``_spp_create_for_partners``): no check is written twice. A registrant
        deleted since the batch was queued is left out."""
        self.check_access("create")
        registrants = self._spp_registrants(partners.exists())
        pairs_by_partner = dict(registrants)
        now = fields.Datetime.now()
        vals_list, lines = [], []
        for partner_id, answer in self._spp_check_many(source, registrants):
            pairs = pairs_by_partner[partner_id]
            vals = dict(self._spp_new_vals(source, partner_id, pairs), check_date=now, sent_at=now)
            if isinstance(answer, Exception):
                vals.update(self._spp_error_vals(answer))
                lines.append([])
            else:
                vals.update(self._spp_result_vals(answer))
                final = vals["state"] != "completed"
                lines.append(self._spp_line_vals(list(answer.outcomes), pairs, final))
            vals_list.append(vals)
        checks = self.sudo().create(vals_list)
        self.env["spp.dci.duplication.check.detail"].sudo().create(
            [
                dict(line, check_id=check.id)
                for check, check_lines in zip(checks, lines, strict=True)
                for line in check_lines
            ]
        )
        return True

    @api.model
    def _spp_check_many(self, source, registrants):
        """``(key, result)`` for each of ``registrants`` (``(key, pairs)``) from one native
        ``check_many`` on ``source``; ``(key, error)`` for each the batch left unanswered
        when it failed or ended early: fail closed, no registrant is left out."""
        done = set()
        try:
            service = source._spp_ibr_service()
            for result in service.check_many(
                registrants, batch_size=source.batch_size, concurrency=source.batch_concurrency
            ):
                if result.key not in done:
                    done.add(result.key)
                    yield result.key, result
            error = UserError(self.env._("The registry gave no result for this registrant."))
        except (DCIError, UserError) as exc:
            error = exc
        for key, _pairs in registrants:
            if key not in done:
                yield key, error

    def _spp_dispatch_chunks(self, chunks):
        """Run one chunk inline; hand more to the batch cron. ``spp_dci_client_ibr_queue``
        overrides this to turn every chunk into a queue job."""
        if len(chunks) == 1:
            self.browse(chunks[0])._spp_run_chunk()
        else:
            self.env.ref("spp_dci_client_ibr.ir_cron_spp_dci_ibr_batch").sudo()._trigger()

    def _spp_run_chunk(self):
        """Check a chunk of queued checks with one ``check_many`` per data source."""
        self.check_access("write")
        checks = self.sudo().filtered(
            lambda check: check.queued and check.state in ("ready", "failed")
        )
        by_source = {}
        for check in checks:
            try:
                source = check._spp_data_source()
            except UserError as exc:
                check._spp_fail(str(exc))
                continue
            by_source.setdefault(source, self.browse().sudo())
            by_source[source] |= check
        for source, group in by_source.items():
            group._spp_run_chunk_on(source)
        return True

    def _spp_run_chunk_on(self, source):
        registrants, pairs_by_id = [], {}
        own_pairs = self.partner_id._spp_dci_ibr_pairs_by_partner()
        for check in self:
            pairs = check._spp_identifiers(own_pairs.get(check.partner_id.id, []))
            if pairs:
                pairs_by_id[check.id] = pairs
                registrants.append((check.id, pairs))
            else:
                check._spp_no_identifier()
        if not registrants:
            return
        now = fields.Datetime.now()
        sent = self.browse(list(pairs_by_id))  # shares the chunk's prefetch
        sent.write({"check_date": now, "sent_at": now})
        sent.detail_ids.unlink()
        by_id = {check.id: check for check in sent}
        new_lines = []
        for check_id, answer in self._spp_check_many(source, registrants):
            if isinstance(answer, Exception):
                by_id[check_id]._spp_fail_on(answer)
            else:
                by_id[check_id]._spp_apply_result(
                    answer, pairs_by_id[check_id], rebuild_lines=True, new_lines=new_lines
                )
        # One INSERT for the lines of the whole chunk, not one per check.
        self.env["spp.dci.duplication.check.detail"].create(new_lines)

    @api.model
    def _cron_run_queued_checks(self, limit=None):
        """Batch cron: run queued checks chunk by chunk; re-trigger while some remain."""
        size = self._spp_chunk_size()
        domain = [("queued", "=", True), ("state", "in", ("ready", "failed"))]
        checks = self.search(domain, order="id", limit=limit or size * 4)
        for start in range(0, len(checks), size):
            checks[start : start + size]._spp_run_chunk()
        if self.search_count(domain, limit=1):
            self.env.ref("spp_dci_client_ibr.ir_cron_spp_dci_ibr_batch")._trigger()
        return True

    # --------------------------------------------------------------- maintenance

    @api.model
    def _cron_spp_callback_maintenance(self):
        """Reconcile callbacks that overtook their check, fail checks whose callback
        never came, forget expired replay entries."""
        self.env["spp.dci.callback.log"]._spp_reconcile_unmatched()
        self._spp_fail_stuck_checks()
        self.env["spp.dci.callback.replay"]._spp_purge_expired()
        return True

    @api.model
    def _spp_fail_stuck_checks(self, now=None):
        now = now or fields.Datetime.now()
        message = self.env._("No callback arrived before the timeout.")
        params = {"message": message, "now": now, "uid": self.env.uid}
        self.env.flush_all()
        try:
            with self.env.cr.savepoint(flush=False):
                query = FAIL_STUCK_CHECKS_SQL.format(
                    data_source_table=data_source_model(self.env)._table
                )
                self.env.cr.execute(query, params, log_exceptions=False)
                ids = [row[0] for row in self.env.cr.fetchall()]
                if ids:
                    self.env.cr.execute(FAIL_STUCK_LINES_SQL, dict(params, ids=ids))
        except TransactionRollbackError:
            # A callback completed one of them since this transaction began: it won.
            _logger.info("A stuck check was completed meanwhile; timeouts run again next time")
            ids = []
        if ids:
            _logger.info("%s asynchronous check(s) timed out", len(ids))
        self.env.invalidate_all()
        return self.browse(ids)


class SppDciDuplicationCheckDetail(models.Model):
    _name = "spp.dci.duplication.check.detail"
    _description = "DCI Duplication Check Identifier"
    _order = "check_id, sequence, id"
    _rec_name = "id_type"

    check_id = fields.Many2one(
        "spp.dci.duplication.check", required=True, ondelete="cascade", index=True
    )
    sequence = fields.Integer(default=0)
    id_type = fields.Char(string="Identifier Type")
    id_value = fields.Char(string="Identifier Value", groups=PII_GROUPS)
    reference_id = fields.Char(index=True, copy=False)
    correlation_id = fields.Char(index=True, copy=False)
    status = fields.Selection(OUTCOME_STATUSES, default="pending", required=True)
    reason = fields.Text()
    record_count = fields.Integer()
    response_json = fields.Text(string="Registry Answer", groups=PII_GROUPS, copy=False)
    check_state = fields.Selection(related="check_id.state", string="Check State")
