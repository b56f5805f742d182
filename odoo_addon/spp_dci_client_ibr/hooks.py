# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Install-time guards, shared with ``migrations/0.0.0/pre-migrate.py`` (every update).

In a database with OpenSPP's DCI base (``spp_dci_client``), our checks run on OpenSPP's
data sources through the bridge ``spp_dci_client_ibr_openspp``, which installs itself with
us. If the bridge is missing (its directory removed, or an update of a database switched
from OpenSPP's own ``spp_dci_client_ibr`` without ``-i``), refuse loudly instead of running
our checks on a set-up nobody configured."""

import logging
import os

from odoo.exceptions import UserError
from odoo.modules.module import Manifest
from odoo.tools import SQL

_logger = logging.getLogger(__name__)

BRIDGE = "spp_dci_client_ibr_openspp"
SWITCH_COMMAND = "odoo-bin -d <db> -u spp_dci_client_ibr -i spp_dci_client_ibr_openspp"
PRESENT = ("installed", "to install", "to upgrade")


def openspp_without_bridge(cr, bridge_found=None):
    """True when OpenSPP's spp_dci_client is (to be) installed and the bridge is not, or
    cannot be loaded: a module whose directory is gone keeps its database row, and Odoo
    still marks it "to install" (then skips it), so its state alone proves nothing."""
    cr.execute(
        "SELECT name, state FROM ir_module_module WHERE name IN ('spp_dci_client', %s)",
        (BRIDGE,),
    )
    states = dict(cr.fetchall())
    if states.get("spp_dci_client") not in PRESENT:
        return False
    if bridge_found is None:
        bridge_found = Manifest.for_addon(BRIDGE, display_warning=False) is not None
    return not bridge_found or states.get(BRIDGE) not in PRESENT


def refuse_openspp_without_bridge(env):
    if openspp_without_bridge(env.cr):
        raise UserError(
            env._(
                "spp_dci_client_ibr: OpenSPP's spp_dci_client is installed in this database but "
                "the bridge %(bridge)s is neither installed nor being installed (is it on the "
                "addons path? it ships in the spp-dci-client-ibr wheel). Run: %(command)s "
                "--stop-after-init. Nothing was changed.",
                bridge=BRIDGE,
                command=SWITCH_COMMAND,
            )
        )


def pre_init_hook(env):
    refuse_openspp_without_bridge(env)


# ---------------------------------------------------------------- model rename (0.1.0 -> 2.1)

RENAMED_MODELS = (
    ("spp.dci.data.source", "spp.dci.ibr.data.source"),
    ("spp.dci.signing.key", "spp.dci.ibr.signing.key"),
)


def _exists(cr, query, params=()):
    cr.execute(query, params)
    return cr.fetchone() is not None


def _ours_alone(cr, model):
    """True when ``model`` was created by spp_dci_client_ibr and no other module declares it
    (in an OpenSPP database the name is OpenSPP's: never rename theirs)."""
    xmlid = "model_" + model.replace(".", "_")
    cr.execute("SELECT module FROM ir_model_data WHERE model = 'ir.model' AND name = %s", (xmlid,))
    modules = {row[0] for row in cr.fetchall()}
    return modules == {"spp_dci_client_ibr"}


def rename_own_models(cr):
    """Rename our 0.1.0 models to their own names, with their tables, sequences, constraints,
    indexes and every metadata row naming them. Idempotent; does nothing for a model that is
    not ours alone or whose new name exists already."""
    for old, new in RENAMED_MODELS:
        if not _ours_alone(cr, old) or _exists(
            cr, "SELECT 1 FROM ir_model WHERE model = %s", (new,)
        ):
            continue
        old_table, new_table = old.replace(".", "_"), new.replace(".", "_")
        _logger.info("spp_dci_client_ibr: renaming model %s to %s", old, new)
        if _exists(cr, "SELECT 1 FROM pg_class WHERE relname = %s AND relkind = 'r'", (old_table,)):
            cr.execute(
                SQL(
                    "ALTER TABLE %s RENAME TO %s",
                    SQL.identifier(old_table),
                    SQL.identifier(new_table),
                )
            )
            # Sequence, primary key, unique/check constraints and indexes named after the table.
            cr.execute(
                """SELECT c.relname, c.relkind FROM pg_class c
                    WHERE c.relname LIKE %s AND c.relkind IN ('S', 'i')""",
                (old_table.replace("_", r"\_") + r"\_%",),
            )
            for name, kind in cr.fetchall():
                renamed = new_table + name[len(old_table) :]
                what = SQL("SEQUENCE") if kind == "S" else SQL("INDEX")
                cr.execute(
                    SQL(
                        "ALTER %s %s RENAME TO %s",
                        what,
                        SQL.identifier(name),
                        SQL.identifier(renamed),
                    )
                )
            cr.execute(
                """SELECT conname FROM pg_constraint
                    WHERE conrelid = %s::regclass AND conname LIKE %s AND contype IN ('c', 'u', 'p', 'f')""",
                (new_table, old_table.replace("_", r"\_") + r"\_%"),
            )
            for (name,) in cr.fetchall():
                renamed = new_table + name[len(old_table) :]
                if not _exists(cr, "SELECT 1 FROM pg_constraint WHERE conname = %s", (renamed,)):
                    cr.execute(
                        SQL(
                            "ALTER TABLE %s RENAME CONSTRAINT %s TO %s",
                            SQL.identifier(new_table),
                            SQL.identifier(name),
                            SQL.identifier(renamed),
                        )
                    )
            cr.execute(
                "UPDATE ir_model_constraint SET name = %s || substr(name, %s) "
                "WHERE name LIKE %s AND model IN (SELECT id FROM ir_model WHERE model = %s)",
                (new_table, len(old_table) + 1, old_table.replace("_", r"\_") + r"\_%", old),
            )
        cr.execute("UPDATE ir_model SET model = %s WHERE model = %s", (new, old))
        cr.execute("UPDATE ir_model_fields SET model = %s WHERE model = %s", (new, old))
        cr.execute("UPDATE ir_model_fields SET relation = %s WHERE relation = %s", (new, old))
        cr.execute("UPDATE ir_model_data SET model = %s WHERE model = %s", (new, old))
        # External ids naming the model (as Odoo names them): model_<table>,
        # field_<table>__<field>, selection__<table>__<field>__<value>,
        # constraint_<table>_<name>. One left under the old name would be "stale" at the
        # end of the update, and Odoo would delete the record it points to (dropping the
        # table's constraints).
        for old_prefix, new_prefix in (
            ("model_" + old_table, "model_" + new_table),
            ("field_" + old_table + "__", "field_" + new_table + "__"),
            ("selection__" + old_table + "__", "selection__" + new_table + "__"),
            ("constraint_" + old_table + "_", "constraint_" + new_table + "_"),
        ):
            cr.execute(
                "UPDATE ir_model_data SET name = %s || substr(name, %s) "
                "WHERE module = 'spp_dci_client_ibr' AND (name = %s OR name LIKE %s)",
                (
                    new_prefix,
                    len(old_prefix) + 1,
                    old_prefix,
                    old_prefix.replace("_", r"\_") + "%",
                ),
            )
        # Anything else that names the model by its technical name.
        for table, column in (
            ("ir_act_window", "res_model"),
            ("ir_ui_view", "model"),
            ("ir_attachment", "res_model"),
            ("ir_filters", "model_id"),
            ("ir_act_server", "model_name"),
            ("ir_model_fields", "related_model"),
        ):
            if _exists(
                cr,
                "SELECT 1 FROM information_schema.columns WHERE table_name = %s AND column_name = %s",
                (table, column),
            ):
                cr.execute(
                    SQL(
                        "UPDATE %s SET %s = %s WHERE %s = %s",
                        SQL.identifier(table),
                        SQL.identifier(column),
                        new,
                        SQL.identifier(column),
                        old,
                    )
                )


# ------------------------------------------------------------ code served on a foreign schema


def outdated_schema_message(cr):
    """A message when the database's check table was made by another module of this name
    (OpenSPP's own spp_dci_client_ibr: no ``transaction_id`` column) and not updated since
    this code replaced it; None when the schema is ours. Odoo does not compare code and
    schema at start: without this, the first check would fail on SQL."""
    cr.execute("SELECT to_regclass('spp_dci_duplication_check')")
    if not cr.fetchone()[0]:
        return None
    cr.execute(
        """SELECT 1 FROM information_schema.columns
            WHERE table_name = 'spp_dci_duplication_check' AND column_name = 'transaction_id'"""
    )
    if cr.fetchone():
        return None
    return (
        "spp_dci_client_ibr: this database's checks were made by another spp_dci_client_ibr "
        "(OpenSPP's own?) and the switch was not run: stop serving it and run "
        f"{SWITCH_COMMAND} --stop-after-init"
    )


def shadowed_copies(paths, module="spp_dci_client_ibr"):
    """Other directories on ``paths`` holding a module named ``module``, after the first one
    (the one Odoo loads): e.g. OpenSPP's own spp_dci_client_ibr, shadowed by the wheel's."""
    found = [
        os.path.join(path, module)
        for path in paths
        if os.path.isfile(os.path.join(path, module, "__manifest__.py"))
    ]
    return found[1:]


def post_load():
    """Server-wide, once: say which other spp_dci_client_ibr this one shadows (switching from
    OpenSPP's own is done on purpose, but should never go unnoticed)."""
    import odoo.addons

    for path in shadowed_copies(list(odoo.addons.__path__)):
        _logger.warning(
            "spp_dci_client_ibr from %s shadows another module of the same name in %s "
            "(OpenSPP's own?): this one is loaded. See readme/INSTALL.md, 'Switching'.",
            os.path.dirname(os.path.dirname(__file__)),
            path,
        )
