"""Domains: everything that depends on the kind of data (loading, encoding, metrics, plots).

``base`` defines the ``Dataset``, the ``Domain`` protocol and the registry; each other module (or
subpackage, ``images/``) is one kind of data that registers itself on import.
"""

from ganforge.domains.base import (CLAIM_ORDER, DOMAINS, BaseDomain, Dataset, Domain, all_builtin, get_domain,
                                   holdout_indices, infer_domain, register_domain)
from ganforge.domains import images, points, tabular, timeseries  # noqa: F401  (they register themselves)

# The order in which domains are asked to claim a user's file: series claims only CSVs with a time
# index and window-shaped arrays, tables CSVs with non-numeric columns, so both go before points,
# which takes every other CSV; images claim folders, 4-D arrays and IDX files.
CLAIM_ORDER[:] = ["images", "series", "table", "points"]

__all__ = ["CLAIM_ORDER", "DOMAINS", "BaseDomain", "Dataset", "Domain", "all_builtin", "get_domain",
           "holdout_indices", "infer_domain", "register_domain"]
