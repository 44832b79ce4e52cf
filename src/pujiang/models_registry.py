"""Every module's tables on one MetaData, for Alembic and for the model/migration drift test."""

from __future__ import annotations

from sqlalchemy import MetaData

import pujiang.platform.models  # noqa: F401 - registers the kernel tables
from pujiang.platform.db import Base

metadata: MetaData = Base.metadata
