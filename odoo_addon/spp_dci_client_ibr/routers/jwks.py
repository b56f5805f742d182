# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""GET {root}/.well-known/jwks.json: the public keys of our active signing keys."""

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from odoo.api import Environment

from odoo.addons.fastapi.dependencies import odoo_env

from ..models.spp_dci_data_source import signing_key_model

jwks_router = APIRouter(tags=["keys"])


@jwks_router.get("/.well-known/jwks.json")
def get_jwks(env: Annotated[Environment, Depends(odoo_env)]) -> JSONResponse:
    return JSONResponse(
        signing_key_model(env)._spp_public_jwks(),
        headers={"Cache-Control": "public, max-age=300"},
    )
