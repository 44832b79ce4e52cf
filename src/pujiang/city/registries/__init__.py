"""The three base registries (三大基础库): population, legal entities, addresses and buildings.

Rooms: models.py (tables), schemas.py (replies), service.py (search, masking, counts),
api.py (routes), cli.py (`pujiang registry`), and the import pipeline: the kernel's
platform/tabular.py (CSV/XLSX, encodings) -> columns.py (accepted headers) -> checks.py /
checkers.py (row checks) -> ingest.py (batches, locating through locate.py, upserts).
synthetic.py invents registries for the demo and the benchmarks. See docs/registries.md.

Other modules may call:

    import_file(session, kind, stream, source=..., options=ImportOptions(...), locator=...)
        Import a CSV or XLSX stream into a registry; returns an ImportReport or raises
        ImportRejected (every bad row listed; roll the transaction back) or FileProblem.
"""

from __future__ import annotations

from pujiang.city.registries.columns import Kind
from pujiang.city.registries.ingest import ImportOptions, ImportRejected, ImportReport, import_file

__all__ = ["ImportOptions", "ImportRejected", "ImportReport", "Kind", "import_file"]
