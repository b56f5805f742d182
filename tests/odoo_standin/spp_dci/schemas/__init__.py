# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
from .constants import RegistryType

__all__ = ["RegistryType"]
