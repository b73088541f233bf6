"""ALFWorld support: data preparation (`data`), the fast engine path (`engine`), expert trajectories
(`expert`). The environment itself is `hpl.alfworld.env.AlfworldEnv` (`hpl.benchmarks.BENCHMARKS["alfworld"]`).

Submodules import the ALFWorld/textworld engine lazily where they need it, so `import hpl.alfworld.data`
stays light.
"""

from hpl.alfworld.data import prepare_alfworld_data, task_type

__all__ = ["prepare_alfworld_data", "task_type"]
