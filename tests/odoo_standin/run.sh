#!/bin/bash
# tests/odoo_standin/run.sh [WHEEL]
# The addons' Odoo tests in an OpenSPP-like set-up (issue 12): the test-only stand-ins of OpenSPP's
# DCI base (spp_dci, spp_dci_client) next to the wheel's addons, through the kit's
# run-addon-tests.sh (same kit variables: ODOO_KIT_HOME, PG_PORT, HTTP_PORT, ...).
#   1. the stand-in alone: its baseline tests (OpenSPP's fields and methods, as published);
#   2. the stand-in, every addon of the wheel (the bridge spp_dci_client_ibr_openspp included)
#      and spp_dci_standin_with_ibr in one database: the stand-in's baseline again (it must
#      survive our addons), our whole addon suite on OpenSPP's models, and the bridge's tests;
#   3. lifecycle.sh on kept databases: the bridge auto-installs both ways, a plain database's
#      data sources move to OpenSPP's, the refusal without the bridge, uninstalling our addon
#      leaves the stand-in intact, and the model rename of a 0.1.0 database.
# WHEEL defaults to target/wheels/*.whl (`make wheel`). ODOO_KIT_DIR: the kit's scripts
# (default ../shared/odoo19 next to the repository).
#
# The kit's run-addon-tests.sh accepts only modules found in the venv's odoo/addons (or Odoo's
# own), so the stand-ins are linked there for the run and unlinked on exit. Inside that folder
# their names do not collide with the wheel's addons, and Odoo puts the folder ahead of every
# addons_path entry anyway (see readme/INSTALL.md of spp_dci_client_ibr).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
KIT=${ODOO_KIT_DIR:-$ROOT/../shared/odoo19}
. "$KIT/kit-env.sh"
STANDINS=(spp_dci spp_dci_client spp_dci_standin_with_ibr)

WHEEL=${1:-}
if [ -z "$WHEEL" ]; then
  WHEELS=("$ROOT"/target/wheels/*.whl)
  [ ${#WHEELS[@]} -eq 1 ] && [ -f "${WHEELS[0]}" ] || { echo "give the wheel, or build exactly one with make wheel"; exit 2; }
  WHEEL=${WHEELS[0]}
fi
[ -x "$ODOO_VENV/bin/python" ] || { echo "run $KIT/setup.sh first (no $ODOO_VENV)"; exit 2; }
SITE=$(odoo_site_addons)

unlink_standins() {
  for m in "${STANDINS[@]}"; do
    if [ -L "$SITE/$m" ]; then rm -f "$SITE/$m"; fi
  done
}
unlink_standins   # links left by an interrupted run
for m in "${STANDINS[@]}"; do
  if [ -e "$SITE/$m" ]; then
    echo "$SITE/$m exists and is not a stand-in link: this kit has a real $m; refusing to shadow it"
    exit 2
  fi
done
trap unlink_standins EXIT
for m in "${STANDINS[@]}"; do ln -s "$HERE/$m" "$SITE/$m"; done

rc=0
echo "=== OpenSPP stand-in alone"
ODOO_TEST_DB=${ODOO_TEST_DB:-kit_standin} "$KIT/run-addon-tests.sh" "$WHEEL" spp_dci_client || rc=1
echo "=== OpenSPP stand-in with every addon of the wheel, all tests in one database"
ODOO_TEST_DB=${ODOO_TEST_DB:-kit_standin} KIT_TEST_TOGETHER=1 "$KIT/run-addon-tests.sh" "$WHEEL" \
  spp_dci_client spp_dci_client_ibr spp_dci_client_ibr_queue spp_dci_client_ibr_openspp \
  spp_dci_standin_with_ibr || rc=1
echo "=== Install, switch and uninstall on kept databases"
"$HERE/lifecycle.sh" || rc=1
exit $rc
