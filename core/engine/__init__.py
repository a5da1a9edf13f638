"""The engine: one facade (``Engine``) over cohesive services that share one context.

``build.build_engine`` is the one place an engine is built. See docs/architecture.md.
"""

from core.engine.build import build_engine
from core.engine.facade import Engine

__all__ = ["Engine", "build_engine"]
