# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""The registry types, with the SPDCI namespaced values of OpenSPP's current constants.

OpenSPP's published values changed over time ("IBR", then "ns:org:RegistryType:IBR"); none of
them is our addon's "ibr", which is the point: our code must not assume its own value.
"""

from enum import StrEnum


class RegistryType(StrEnum):
    SOCIAL_REGISTRY = "ns:org:RegistryType:Social"
    CRVS = "ns:org:RegistryType:Civil"
    IBR = "ns:org:RegistryType:IBR"
    DISABILITY_REGISTRY = "ns:org:RegistryType:DR"
    FUNCTIONAL_REGISTRY = "ns:org:RegistryType:FR"
