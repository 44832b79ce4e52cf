"""Every module's tables on one MetaData, for Alembic and for the model/migration drift test."""

from __future__ import annotations

from sqlalchemy import MetaData

# Imported for their side effect: each module's tables register on Base.metadata.
import pujiang.cases.models
import pujiang.catalog.models
import pujiang.city.models
import pujiang.city.registries.models
import pujiang.context.models
import pujiang.context.subscription_models
import pujiang.iot.models
import pujiang.platform.models  # noqa: F401 - the binding `pujiang` is shared
from pujiang.platform.db import Base

metadata: MetaData = Base.metadata
