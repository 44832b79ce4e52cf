"""Data resources: the government data catalog, inter-department sharing with a hash-chained
exchange log, and the open-data portal with a CKAN-compatible Action API.

Other modules use only what is named here:

- `register_view(name, title, produce)`: offer a live dataset (rows computed from the module's
  own data); a catalog resource whose `live_view` names it is refreshed from `produce(session)`
  on its update cycle. Cases' monthly statistics by district are registered by the catalog
  itself ("cases.monthly_by_district", `views.py`) over `pujiang.cases`' exported function.
"""

from pujiang.catalog.views import register_view

__all__ = ["register_view"]
