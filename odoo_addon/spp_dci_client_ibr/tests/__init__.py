# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
from . import (
    test_callbacks,
    test_concurrency,
    test_configuration,
    test_duplication_check,
    test_end_to_end,
    test_identifiers,
    test_install_guards,
    test_person_view,
    test_security,
    test_user_flow,
    test_verified_undecided,
)
