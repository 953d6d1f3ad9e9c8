"""
Dream: a whole tau cloud on one machine, for development and tests.

L{startDream} runs the nodes from this process (a test's reactor);
C{tau dream start} runs them under a supervisor process in the background
(L{tau.dream.supervisor}), which also serves the read-only web console
(L{tau.dream.console}).
"""

from tau.dream.dream import Dream, DreamNode, startDream
from tau.dream.universe import DreamError, defaultShapes, parseShapes

__all__ = ["Dream", "DreamNode", "DreamError", "defaultShapes", "parseShapes", "startDream"]
