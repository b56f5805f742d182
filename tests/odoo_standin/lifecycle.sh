#!/bin/bash
# tests/odoo_standin/lifecycle.sh — run by run.sh (stand-ins linked, wheel installed in the kit).
# Install, switch and uninstall paths of issue 12 on kept databases, each checked by an Odoo
# shell script that prints "OK <what>"; any other outcome fails the run. Same kit variables.
#   A. plain database with a data source, key and check of ours, then OpenSPP's base arrives
#      (-i spp_dci_client): the bridge auto-installs and moves them to OpenSPP's models.
#   B. OpenSPP database, then -i spp_dci_client_ibr: the bridge auto-installs; uninstalling
#      spp_dci_client_ibr leaves the stand-in's records and fields intact, and the stand-in's
#      baseline passes again (-u spp_dci_client --test-tags /spp_dci_client).
#   C. OpenSPP database, bridge missing from the addons path: -i spp_dci_client_ibr refuses.
#   D. a database of 0.1.0 (old model names, addon taken from git at RELEASE_COMMIT): the
#      update renames our models in place; records and the check's link survive.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KIT=${ODOO_KIT_DIR:-$ROOT/../shared/odoo19}
. "$KIT/kit-env.sh"
PY=$ODOO_VENV/bin/python
SITE=$(odoo_site_addons)
PREFIX=${ODOO_TEST_DB:-kit_standin}_life
# The last commit of 0.1.0 (19.0.1.0.0, models named spp.dci.data.source/spp.dci.signing.key).
RELEASE_COMMIT=${RELEASE_COMMIT:-2dfe46e582283aed4bf35162176c7db895b63527}
mkdir -p "$ODOO_LOG_DIR"
TMP=$(mktemp -d)
BRIDGE_AWAY=""
cleanup() {
  [ -n "$BRIDGE_AWAY" ] && [ -d "$BRIDGE_AWAY" ] && mv "$BRIDGE_AWAY" "$SITE/spp_dci_client_ibr_openspp"
  rm -rf "$TMP"
}
trap cleanup EXIT
failed=0

step() { echo "== $*"; }
fail() { echo "FAILED  $*"; failed=$((failed + 1)); }
fresh_db() { pg_psql "DROP DATABASE IF EXISTS \"$1\"" >/dev/null; }
# odoo DB LOG ARGS...: one odoo-bin run that stops after init; exit status returned.
odoo() {
  local db=$1 log=$2; shift 2
  (cd "$ODOO_SRC" && timeout "${ODOO_TEST_TIMEOUT:-1800}" "$PY" odoo-bin -c "$ODOO_CONF" -d "$db" \
     --no-http --http-port "$TEST_HTTP_PORT" --stop-after-init "$@") >"$log" 2>&1
}
# shell DB WHAT < script: runs the script in an Odoo shell; it must print "OK WHAT".
shell() {
  local db=$1 what=$2 log="$ODOO_LOG_DIR/life-$1-${2// /_}.log"
  (cd "$ODOO_SRC" && "$PY" odoo-bin shell -c "$ODOO_CONF" -d "$db" --no-http \
     --http-port "$TEST_HTTP_PORT") >"$log" 2>&1
  if grep -qx "OK $what" "$log"; then echo "   ok: $what"; else fail "$what (see $log)"; tail -5 "$log"; fi
}
ran() {  # ran WHAT LOG RC: an odoo run that must succeed
  if [ "$3" = 0 ] && ! grep -qE " (ERROR|CRITICAL) " "$2"; then echo "   ok: $1"
  else fail "$1 (exit $3, see $2)"; grep -E " (ERROR|CRITICAL) " "$2" | head -5; fi
}

# ------------------------------------------------------------------------------------------- A
db=${PREFIX}_a
step "A. plain database, then OpenSPP's base arrives ($db)"
fresh_db "$db"
odoo "$db" "$ODOO_LOG_DIR/life-a-1.log" -i spp_dci_client_ibr; ran "install spp_dci_client_ibr" "$ODOO_LOG_DIR/life-a-1.log" $?
shell "$db" "plain records created" <<'PYEOF'
key = env["spp.dci.ibr.signing.key"].create({"name": "Plain key", "key_id": "plain-key", "sender_id": "plain.sender"})
key.action_generate_key()
key.action_activate()
source = env["spp.dci.ibr.data.source"].create({
    "name": "Plain IBR", "code": "plain_ibr", "registry_type": "ibr",
    "base_url": "https://ibr.invalid", "auth_type": "oauth2",
    "oauth2_token_url": "https://ibr.invalid/token", "oauth2_client_id": "c",
    "oauth2_client_secret": "s", "our_sender_id": "plain.sender",
    "signing_key_id": key.id, "batch_size": 7, "oauth2_credential_location": "basic",
})
partner = env["res.partner"].create({"name": "Plain registrant"})
env["spp.dci.duplication.check"].create({
    "partner_id": partner.id, "identifier_type": "UIN", "data_source_id": source.id})
env.cr.commit()
print("OK plain records created")
PYEOF
odoo "$db" "$ODOO_LOG_DIR/life-a-2.log" -i spp_dci_client; ran "install spp_dci_client" "$ODOO_LOG_DIR/life-a-2.log" $?
shell "$db" "moved to OpenSPP's models" <<'PYEOF'
from odoo.addons.spp_dci.schemas.constants import RegistryType
bridge = env["ir.module.module"].search([("name", "=", "spp_dci_client_ibr_openspp")])
assert bridge.state == "installed", bridge.state
check = env["spp.dci.duplication.check"].search([("partner_id.name", "=", "Plain registrant")])
source = check.data_source_id
assert source._name == "spp.dci.data.source", source._name
assert (source.code, source.registry_type) == ("plain_ibr", RegistryType.IBR.value), source.read()
assert (source.batch_size, source.oauth2_credential_location) == (7, "basic")
assert source.sudo().oauth2_client_secret == "s"
key = source.signing_key_id
assert key._name == "spp.dci.signing.key" and key.key_id == "plain-key" and key.state == "active"
assert key.sender_id == "plain.sender", key.sender_id
assert source._spp_client_config()["key_id"] == "plain-key"
print("OK moved to OpenSPP's models")
PYEOF

# ------------------------------------------------------------------------------------------- B
db=${PREFIX}_b
step "B. OpenSPP database, then spp_dci_client_ibr; then uninstall it ($db)"
fresh_db "$db"
odoo "$db" "$ODOO_LOG_DIR/life-b-1.log" -i spp_dci_client; ran "install spp_dci_client" "$ODOO_LOG_DIR/life-b-1.log" $?
shell "$db" "OpenSPP records created" <<'PYEOF'
from odoo.addons.spp_dci.schemas.constants import RegistryType
key = env["spp.dci.signing.key"].create({"name": "Theirs", "key_id": "theirs"})
key.action_generate_key()
key.action_activate()
env["spp.dci.data.source"].create({
    "name": "Their IBR", "code": "their_ibr", "registry_type": RegistryType.IBR.value,
    "base_url": "https://ibr.invalid", "auth_type": "oauth2",
    "oauth2_token_url": "https://ibr.invalid/token", "oauth2_client_id": "c",
    "oauth2_client_secret": "s", "our_sender_id": "their.sender", "signing_key_id": key.id,
})
env.cr.commit()
print("OK OpenSPP records created")
PYEOF
odoo "$db" "$ODOO_LOG_DIR/life-b-2.log" -i spp_dci_client_ibr; ran "install spp_dci_client_ibr" "$ODOO_LOG_DIR/life-b-2.log" $?
shell "$db" "bridge installed with our addon" <<'PYEOF'
bridge = env["ir.module.module"].search([("name", "=", "spp_dci_client_ibr_openspp")])
assert bridge.state == "installed", bridge.state
source = env["spp.dci.data.source"].search([("code", "=", "their_ibr")])
assert env["spp.dci.data.source"]._spp_default_ibr_source() == source
assert source.batch_size == 100 and source.signing_key_id.sender_id
print("OK bridge installed with our addon")
PYEOF
shell "$db" "bridge alone cannot be uninstalled" <<'PYEOF'
from odoo.exceptions import UserError
try:
    env["ir.module.module"].search([("name", "=", "spp_dci_client_ibr_openspp")]).button_immediate_uninstall()
except UserError as exc:
    assert "cannot be uninstalled alone" in str(exc), exc
    print("OK bridge alone cannot be uninstalled")
PYEOF
log=$ODOO_LOG_DIR/life-b-3.log
(cd "$ODOO_SRC" && "$PY" odoo-bin module uninstall -c "$ODOO_CONF" -d "$db" spp_dci_client_ibr) >"$log" 2>&1
ran "odoo-bin module uninstall spp_dci_client_ibr" "$log" $?
shell "$db" "stand-in intact" <<'PYEOF'
states = dict(env["ir.module.module"].search([("name", "in", ("spp_dci_client_ibr", "spp_dci_client_ibr_openspp", "spp_dci_client"))]).mapped(lambda m: (m.name, m.state)))
assert states == {"spp_dci_client_ibr": "uninstalled", "spp_dci_client_ibr_openspp": "uninstalled", "spp_dci_client": "installed"}, states
source = env["spp.dci.data.source"].search([("code", "=", "their_ibr")])
assert source and source.sudo().oauth2_client_secret == "s" and source.signing_key_id.key_id == "theirs"
assert "batch_size" not in source._fields and "sender_id" not in source.signing_key_id._fields
assert source.signing_key_id.get_jwks_entry()["kid"].endswith("|theirs|ed25519")
env.cr.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'spp_dci_data_source'")
columns = {row[0] for row in env.cr.fetchall()}
assert "batch_size" not in columns and {"_oauth2_access_token", "oauth2_client_secret"} <= columns, columns
source.active = False  # the baseline below expects no other active IBR source
env.cr.commit()
print("OK stand-in intact")
PYEOF
log=$ODOO_LOG_DIR/life-b-4.log
odoo "$db" "$log" -u spp_dci_client --test-tags /spp_dci_client; rc=$?
summary=$(grep -oE "[0-9]+ failed, [0-9]+ error\(s\) of [0-9]+ tests" "$log" | tail -1)
if [ "$rc" = 0 ] && [[ "$summary" =~ ^0\ failed,\ 0\ error\(s\)\ of\ [1-9] ]]; then
  echo "   ok: stand-in baseline after the uninstall ($summary)"
else fail "stand-in baseline after the uninstall (exit $rc, ${summary:-no summary}; see $log)"; fi

# ------------------------------------------------------------------------------------------- C
db=${PREFIX}_c
step "C. OpenSPP database, bridge missing from the addons path ($db)"
fresh_db "$db"
odoo "$db" "$ODOO_LOG_DIR/life-c-1.log" -i spp_dci_client; ran "install spp_dci_client" "$ODOO_LOG_DIR/life-c-1.log" $?
BRIDGE_AWAY=$TMP/bridge-away
mv "$SITE/spp_dci_client_ibr_openspp" "$BRIDGE_AWAY"
log=$ODOO_LOG_DIR/life-c-2.log
odoo "$db" "$log" -i spp_dci_client_ibr
mv "$BRIDGE_AWAY" "$SITE/spp_dci_client_ibr_openspp"; BRIDGE_AWAY=""
if grep -q "neither installed nor being installed" "$log"; then echo "   ok: refused, with the command to run"
else fail "no refusal without the bridge (see $log)"; fi
shell "$db" "nothing installed" <<'PYEOF'
ours = env["ir.module.module"].search([("name", "=", "spp_dci_client_ibr")])
assert ours.state != "installed", ours.state
print("OK nothing installed")
PYEOF

# ------------------------------------------------------------------------------------------- D
db=${PREFIX}_d
step "D. a 0.1.0 database (addon of $RELEASE_COMMIT), updated to this version ($db)"
fresh_db "$db"
mkdir -p "$TMP/old/odoo/addons"
git -C "$ROOT" archive "$RELEASE_COMMIT" odoo_addon/spp_dci_client_ibr | tar -x -C "$TMP/old" \
  && mv "$TMP/old/odoo_addon/spp_dci_client_ibr" "$TMP/old/odoo/addons/" \
  || fail "cannot read the addon of $RELEASE_COMMIT from git"
log=$ODOO_LOG_DIR/life-d-1.log
PYTHONPATH=$TMP/old odoo "$db" "$log" -i spp_dci_client_ibr; ran "install 0.1.0" "$log" $?
grep -q "spp_dci_client_ibr.*19.0.1.0.0\|19.0.1.0.0" "$TMP/old/odoo/addons/spp_dci_client_ibr/__manifest__.py" \
  || fail "$RELEASE_COMMIT is not 19.0.1.0.0"
PYTHONPATH=$TMP/old shell "$db" "0.1.0 records created" <<'PYEOF'
key = env["spp.dci.signing.key"].create({"name": "Old key", "key_id": "old-key", "sender_id": "old.sender"})
key.action_generate_key()
key.action_activate()
source = env["spp.dci.data.source"].create({
    "name": "Old IBR", "code": "old_ibr", "base_url": "https://ibr.invalid",
    "auth_type": "none", "allow_unsigned": True, "our_sender_id": "old.sender",
    "signing_key_id": key.id})
partner = env["res.partner"].create({"name": "Old registrant"})
env["spp.dci.duplication.check"].create({
    "partner_id": partner.id, "identifier_type": "UIN", "data_source_id": source.id})
env.cr.commit()
print("OK 0.1.0 records created")
PYEOF
log=$ODOO_LOG_DIR/life-d-2.log
odoo "$db" "$log" -u spp_dci_client_ibr; ran "update to this version" "$log" $?
shell "$db" "models renamed" <<'PYEOF'
assert "spp.dci.data.source" not in env and "spp.dci.signing.key" not in env
module = env["ir.module.module"].search([("name", "=", "spp_dci_client_ibr")])
assert module.latest_version == "19.0.2.1.0", module.latest_version
source = env["spp.dci.ibr.data.source"].search([("code", "=", "old_ibr")])
assert source and source.signing_key_id.key_id == "old-key" and source.signing_key_id.state == "active"
check = env["spp.dci.duplication.check"].search([("partner_id.name", "=", "Old registrant")])
assert check.data_source_id == source
assert source._spp_client_config()["key_id"] == "old-key"
assert env.ref("spp_dci_client_ibr.action_spp_dci_data_source").res_model == "spp.dci.ibr.data.source"
assert env.ref("spp_dci_client_ibr.model_spp_dci_ibr_data_source").model == "spp.dci.ibr.data.source"
assert env["ir.model"].search_count([("model", "in", ("spp.dci.data.source", "spp.dci.signing.key"))]) == 0
env.cr.execute("SELECT to_regclass('spp_dci_data_source'), to_regclass('spp_dci_ibr_data_source')")
assert env.cr.fetchone() == (None, "spp_dci_ibr_data_source")
try:
    with env.cr.savepoint():
        source.copy({"name": "dup"})  # UNIQUE(code) still enforced after the rename
        env.flush_all()
    raise AssertionError("duplicate code accepted")
except AssertionError:
    raise
except Exception as exc:
    assert "unique" in str(exc).lower() or "duplicate" in str(exc).lower(), exc
print("OK models renamed")
PYEOF

echo "lifecycle: $failed failed"
[ "$failed" = 0 ]
