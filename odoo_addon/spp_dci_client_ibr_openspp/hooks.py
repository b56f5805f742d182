# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Install and uninstall hooks of the bridge.

A database that used spp_dci_client_ibr without OpenSPP has its data sources and keys in our
own-name models. When OpenSPP's base arrives (and this bridge with it), checks move to
OpenSPP's models: ``pre_init_hook`` copies each of our rows into OpenSPP's model (with the
fields OpenSPP has; OpenSPP's constraints apply and a row they refuse stops the install with
its name) and repoints the checks before the registry moves their foreign key;
``post_init_hook`` then fills in the fields this bridge adds."""

import json
import logging

from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL

_logger = logging.getLogger(__name__)

MAP_TABLE = "spp_dci_ibr_openspp_copy"
# Fields of our data source that OpenSPP's has too (copied at pre-init, with OpenSPP's rules).
COMMON_SOURCE_FIELDS = (
    "name",
    "code",
    "base_url",
    "auth_type",
    "bearer_token",
    "oauth2_token_url",
    "oauth2_client_id",
    "oauth2_client_secret",
    "oauth2_scope",
    "verify_ssl",
    "timeout",
    "active",
    "notes",
    "our_sender_id",
    "our_callback_uri",
    "receiver_id",
    "search_endpoint",
    "subscribe_endpoint",
    "auth_endpoint",
    "state",
    "last_test_date",
    "last_error",
)
# Fields the bridge adds to OpenSPP's data source (filled at post-init).
OUR_SOURCE_FIELDS = (
    "allow_unsigned",
    "accept_unverified_answers",
    "registry_sender_id",
    "ca_bundle",
    "connect_timeout",
    "max_retries",
    "batch_size",
    "batch_concurrency",
    "async_timeout_minutes",
    "async_search_endpoint",
    "unsubscribe_endpoint",
    "txn_status_endpoint",
    "sync_txn_status_endpoint",
    "enrolled_endpoint",
    "enrollment_updates_endpoint",
    "oauth2_credential_location",
)
COMMON_KEY_FIELDS = (
    "name",
    "key_id",
    "algorithm",
    "private_key",
    "public_key",
    "state",
    "activated_date",
    "revoked_date",
    "expires_at",
)


def _table_columns(cr, table):
    cr.execute("SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))
    return {row[0] for row in cr.fetchall()}


def _rows(cr, table, columns):
    present = _table_columns(cr, table)
    if not present:
        return []
    wanted = ["id", *(c for c in columns if c in present)]
    cr.execute(
        SQL(
            "SELECT %s FROM %s ORDER BY id",
            SQL(", ").join(SQL.identifier(c) for c in wanted),
            SQL.identifier(table),
        )
    )
    return [dict(zip(wanted, row, strict=True)) for row in cr.fetchall()]


def _drop_foreign_keys(cr, table, column):
    """Drop the foreign keys of ``table.column``: Odoo adds the one to OpenSPP's table when
    it loads the bridge's field definition."""
    cr.execute(
        """SELECT con.conname FROM pg_constraint con
             JOIN pg_class rel ON rel.oid = con.conrelid
             JOIN pg_attribute att ON att.attrelid = rel.oid AND att.attnum = ANY(con.conkey)
            WHERE con.contype = 'f' AND rel.relname = %s AND att.attname = %s""",
        (table, column),
    )
    for (name,) in cr.fetchall():
        cr.execute(
            SQL("ALTER TABLE %s DROP CONSTRAINT %s", SQL.identifier(table), SQL.identifier(name))
        )


def _ibr_key(env):
    field = env["spp.dci.data.source"]._fields["registry_type"]
    keys = [
        key
        for key in field.get_values(env)
        if key.casefold() == "ibr" or key.casefold().endswith(":ibr")
    ]
    if not keys:
        raise UserError(
            env._("OpenSPP's data sources have no IBR registry type: cannot move IBR sources.")
        )
    return keys[0]


def _copy_keys(env, cr):
    mapping = {}
    keys = env["spp.dci.signing.key"].sudo()
    for row in _rows(cr, "spp_dci_ibr_signing_key", (*COMMON_KEY_FIELDS, "sender_id")):
        existing = keys.search([("key_id", "=", row["key_id"])], limit=1)
        if existing and existing.public_key != row.get("public_key"):
            raise UserError(
                env._(
                    "Signing key %(key_id)s exists both in spp_dci_client_ibr and in OpenSPP "
                    "with different key material: rename one before installing %(module)s.",
                    key_id=row["key_id"],
                    module="spp_dci_client_ibr_openspp",
                )
            )
        vals = {f: row[f] for f in COMMON_KEY_FIELDS if f in row}
        try:
            new = existing or keys.create(vals)
        except ValidationError as exc:
            raise UserError(
                env._(
                    "Signing key %(key_id)s cannot be moved to OpenSPP's keys: %(error)s",
                    key_id=row["key_id"],
                    error=exc,
                )
            ) from exc
        mapping[row["id"]] = new.id
        cr.execute(
            SQL(
                "INSERT INTO %s (kind, old_id, new_id, extra) VALUES ('key', %s, %s, %s)",
                SQL.identifier(MAP_TABLE),
                row["id"],
                new.id,
                json.dumps({"sender_id": row.get("sender_id")}),
            )
        )
    return mapping


def pre_init_hook(env):
    cr = env.cr
    sources = _rows(
        cr,
        "spp_dci_ibr_data_source",
        (*COMMON_SOURCE_FIELDS, *OUR_SOURCE_FIELDS, "registry_type", "signing_key_id"),
    )
    if not sources:
        return
    cr.execute(
        SQL(
            "CREATE TABLE IF NOT EXISTS %s "
            "(kind varchar NOT NULL, old_id int NOT NULL, new_id int NOT NULL, extra jsonb)",
            SQL.identifier(MAP_TABLE),
        )
    )
    key_map = _copy_keys(env, cr)
    ibr_key = _ibr_key(env)
    model = env["spp.dci.data.source"].sudo()
    source_map = {}
    for row in sources:
        if model.with_context(active_test=False).search_count([("code", "=", row["code"])]):
            raise UserError(
                env._(
                    "Data source code %(code)s exists both in spp_dci_client_ibr and in "
                    "OpenSPP: rename one before installing %(module)s.",
                    code=row["code"],
                    module="spp_dci_client_ibr_openspp",
                )
            )
        vals = {f: row[f] for f in COMMON_SOURCE_FIELDS if f in row}
        vals["registry_type"] = ibr_key if row.get("registry_type") == "ibr" else False
        vals["signing_key_id"] = key_map.get(row.get("signing_key_id")) or False
        if row.get("oauth2_credential_location") in ("body", "query"):
            vals["oauth2_credential_location"] = row["oauth2_credential_location"]
        try:
            new = model.create(vals)
            env.flush_all()
        except ValidationError as exc:
            raise UserError(
                env._(
                    "Data source %(name)s cannot be moved to OpenSPP's data sources (%(error)s)."
                    " Complete it (or delete it) with spp_dci_client_ibr first.",
                    name=row["name"],
                    error=exc,
                )
            ) from exc
        source_map[row["id"]] = new.id
        extra = {f: row[f] for f in OUR_SOURCE_FIELDS if f in row}
        cr.execute(
            SQL(
                "INSERT INTO %s (kind, old_id, new_id, extra) VALUES ('source', %s, %s, %s)",
                SQL.identifier(MAP_TABLE),
                row["id"],
                new.id,
                json.dumps(extra, default=str),
            )
        )
    _drop_foreign_keys(cr, "spp_dci_duplication_check", "data_source_id")
    cr.execute(
        SQL(
            """UPDATE spp_dci_duplication_check c SET data_source_id = m.new_id
                 FROM %s m WHERE m.kind = 'source' AND m.old_id = c.data_source_id""",
            SQL.identifier(MAP_TABLE),
        )
    )
    moved = cr.rowcount
    if _table_columns(cr, "spp_dci_ibr_batch_check_wizard"):
        _drop_foreign_keys(cr, "spp_dci_ibr_batch_check_wizard", "data_source_id")
        cr.execute("DELETE FROM spp_dci_ibr_batch_check_wizard")
    _logger.warning(
        "Moved %s data source(s) and %s signing key(s) of spp_dci_client_ibr to OpenSPP's "
        "models; %s check(s) now point to OpenSPP's data sources",
        len(source_map),
        len(key_map),
        moved,
    )


def post_init_hook(env):
    cr = env.cr
    if not _table_columns(cr, MAP_TABLE):
        return
    cr.execute(
        SQL("SELECT kind, new_id, extra FROM %s ORDER BY kind, old_id", SQL.identifier(MAP_TABLE))
    )
    for kind, new_id, extra in cr.fetchall():
        if kind == "source":
            env["spp.dci.data.source"].sudo().browse(new_id).write(extra)
        elif kind == "key" and extra.get("sender_id"):
            env["spp.dci.signing.key"].sudo().browse(new_id).sender_id = extra["sender_id"]
    cr.execute(SQL("DROP TABLE %s", SQL.identifier(MAP_TABLE)))


def uninstall_hook(env):
    """Refuse to remove the bridge while spp_dci_client_ibr stays: its checks point to
    OpenSPP's data sources through this bridge."""
    ours = env["ir.module.module"].search([("name", "=", "spp_dci_client_ibr")])
    if ours.state in ("installed", "to upgrade"):
        raise UserError(
            env._(
                "spp_dci_client_ibr_openspp cannot be uninstalled alone: spp_dci_client_ibr's "
                "checks use OpenSPP's data sources through it. Uninstall spp_dci_client_ibr "
                "too, or keep both."
            )
        )
