# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Replay guard shared by every worker: the database's unique (sender, message_id)."""

from datetime import datetime, timedelta, timezone

from psycopg2.extensions import TransactionRollbackError

from odoo import api, fields, models

# PROTOCOL §3: a message id is remembered until its signature expires; lifetimes are at
# most an hour, plus the clock skew we accept.
MAX_REMEMBER = timedelta(hours=2)
PURGE_GRACE = timedelta(minutes=5)

REMEMBER_SQL = """
    INSERT INTO spp_dci_callback_replay
           (sender_id, message_id, expires, received_at,
            create_uid, create_date, write_uid, write_date)
    VALUES (%(sender_id)s, %(message_id)s, %(expires)s, %(now)s,
            %(uid)s, %(now)s, %(uid)s, %(now)s)
    ON CONFLICT (sender_id, message_id) DO NOTHING
    RETURNING id
"""
FORGET_SQL = "DELETE FROM spp_dci_callback_replay WHERE sender_id = %s AND message_id = %s"
PURGE_SQL = "DELETE FROM spp_dci_callback_replay WHERE expires < %s"


def _expiry(expires, now):
    """The signature's ``expires`` (Unix seconds or datetime) as a naive UTC datetime,
    clamped to [now, now + MAX_REMEMBER]."""
    value = None
    if isinstance(expires, datetime):
        value = expires.astimezone(timezone.utc).replace(tzinfo=None) if expires.tzinfo else expires
    elif isinstance(expires, int | float | str) and not isinstance(expires, bool):
        try:
            value = datetime.fromtimestamp(float(expires), tz=timezone.utc).replace(tzinfo=None)
        except (ValueError, OverflowError, OSError):
            value = None
    if value is None or value > now + MAX_REMEMBER:
        return now + MAX_REMEMBER
    return max(value, now)


class SppDciCallbackReplay(models.Model):
    _name = "spp.dci.callback.replay"
    _description = "DCI Callback Replay Guard"
    _order = "received_at desc, id desc"
    _rec_name = "message_id"

    sender_id = fields.Char(string="Sender ID", required=True, readonly=True)
    message_id = fields.Char(required=True, readonly=True)
    expires = fields.Datetime(required=True, readonly=True, index=True)
    received_at = fields.Datetime(required=True, readonly=True, default=fields.Datetime.now)

    _sender_message_uniq = models.Constraint(
        "UNIQUE(sender_id, message_id)", "This message was already received from this sender."
    )

    @api.model
    def remember(self, sender_id, message_id, expires):
        """Record (sender, message_id); False when it was already there (a replay).

        One INSERT ... ON CONFLICT DO NOTHING: two workers delivering the same message at
        once serialise on the unique index, and exactly one of them gets True (the other
        waits for it, then sees the conflict).
        """
        self.check_access("create")
        now = fields.Datetime.now()
        try:
            with self.env.cr.savepoint(flush=False):
                self.env.cr.execute(
                    REMEMBER_SQL,
                    {
                        "sender_id": sender_id,
                        "message_id": message_id,
                        "expires": _expiry(expires, now),
                        "now": now,
                        "uid": self.env.uid,
                    },
                    log_exceptions=False,
                )
                return self.env.cr.fetchone() is not None
        except TransactionRollbackError:
            # Under REPEATABLE READ, ON CONFLICT fails this way only when the conflicting
            # row was committed by a concurrent transaction: the same message, delivered
            # twice at once. It is a replay (an expected race: not logged as an error).
            return False

    @api.model
    def forget(self, sender_id, message_id):
        """Drop an entry whose callback was refused or not stored, so that a redelivery
        of the same message is not mistaken for a replay."""
        self.check_access("unlink")
        self.env.cr.execute(FORGET_SQL, (sender_id, message_id))
        self.invalidate_model()

    @api.model
    def _spp_purge_expired(self):
        self.env.cr.execute(PURGE_SQL, (fields.Datetime.now() - PURGE_GRACE,))
        self.invalidate_model()
        return True
