# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
from .ibr_callbacks import CALLBACK_PREFIX, make_callback_router
from .jwks import jwks_router

__all__ = ["CALLBACK_PREFIX", "jwks_router", "make_callback_router"]
