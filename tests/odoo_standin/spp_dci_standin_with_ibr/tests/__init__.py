# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
from . import test_ibr_on_openspp, test_openspp_survives
